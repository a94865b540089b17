"""Make ``docs/status-page.png``: the status page of the lab's SIP site after a few minutes
of life and a failover, in headless Chromium.

Run as root from the repository:
``python -m tests.lab.statuspage_shot [--out docs/status-page.png] [--minutes 3]``.
It builds the lab and the SIP site (Kamailio, carrier SBCs, PBX), a UPS on mains (upsd
with dummy-ups, tests.lab.nut) and the CRM the PBX needs (HTTPS from the lab CA,
tests.lab.servicethread), all on the site's loopback, runs the real daemon,
puts some loss and delay on the LTE link so the plots have a shape, blackholes fibre-a for
the last minute (the internet group fails over to fibre-b; the trunks follow the route),
and saves the page at a NOC-wall size. Everything it starts is removed at the end, also
on failure; the browser runs in the site's namespace and reaches nothing else.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.lab.browser import browser, browser_skip_reason
from tests.lab.httpservice import make_pki, openssl_missing
from tests.lab.nut import Upsd, nut_skip_reason
from tests.lab.pageview import open_page, wait_active, watch_active
from tests.lab.servicethread import ServiceThread
from tests.lab.sipsite import SipSite
from tests.lab.topology import Lab


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def site_software(config: dict[str, Any], ups: Upsd, crm: ServiceThread, ca: Path,
                  secret: Path) -> None:
    """The UPS and the CRM (needed by the PBX) in the daemon's config, at their defaults
    (the dummy UPS's figures are flat: never stale by sameness)."""
    secret.write_text("lab-secret\n")
    secret.chmod(0o600)
    config["power"] = {"ups": [{
        "name": "rack-ups", "stale_after": None,
        "nut": {"host": "127.0.0.1", "port": ups.port, "ups": ups.ups,
                "username": "monitor", "password_file": str(secret)}}]}
    config["services"] = [{"name": "crm", "http": {"url": crm.url(), "ca_file": str(ca)},
                           "needed_by": ["pbx"]}]


def shoot(out: Path, minutes: float, width: int, height: int) -> None:
    with tempfile.TemporaryDirectory(prefix="lifeline-shot-") as tmp, Lab() as lab:
        work = Path(tmp)
        ups = Upsd(work / "nut", ns=lab.site)
        pki = make_pki(work / "pki")
        crm = ServiceThread(lab.site, tls=pki.valid)
        sip = None
        daemon = None
        try:
            ups.start()
            ups.set(input_voltage=229.4, load=41, runtime=1620)
            sip = SipSite(lab, work / "sip").start()
            daemon = sip.start_daemon(work / "state", edit=lambda c: site_software(
                c, ups, crm, pki.ca, work / "nut-password"))
            lab.faults.loss("lte", 0.02)
            try:
                lab.faults.delay("lte", 30.0, 15.0)
            except Exception as exc:  # a delayer that cannot run only flattens a plot
                log(f"no delay on lte: {exc}")
            calm = max(0.0, minutes * 60 - 60)
            log(f"running {calm:.0f} s before the failover")
            time.sleep(calm)
            lab.faults.blackhole("fibre-a")
            daemon.wait_active(["fibre-b"], timeout=20.0)
            time.sleep(min(60.0, minutes * 60))
            with browser(lab.site, work / "browser", width=width, height=height) as b:
                watch_active(b, "internet", "fibre-b")
                open_page(b, active="fibre-b")
                wait_active(b, "internet", "fibre-b", timeout=5.0)
                time.sleep(1.5)  # the history has arrived and been drawn
                out.parent.mkdir(parents=True, exist_ok=True)
                if not b.call(lambda: b.driver.save_screenshot(str(out))):
                    raise RuntimeError("the screenshot was not saved")
            log(f"wrote {out}")
        finally:
            try:
                if daemon is not None:
                    daemon.stop()
                if sip is not None:
                    sip.stop()
            finally:
                crm.close()
                ups.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/status-page.png"))
    parser.add_argument("--minutes", type=float, default=3.0,
                        help="how long the site runs before the shot (default 3)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1400)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        log("statuspage_shot: needs root (the lab's network namespaces)")
        return 2
    for reason in (browser_skip_reason(), nut_skip_reason(), openssl_missing()):
        if reason is not None:
            log(f"statuspage_shot: {reason}")
            return 2
    if not 1.0 <= args.minutes <= 60.0:
        parser.error("--minutes must be 1..60")
    shoot(args.out, args.minutes, args.width, args.height)
    return 0


if __name__ == "__main__":
    sys.exit(main())
