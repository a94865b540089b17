"""The status page in a real headless Chromium, in front of the real lifeline running the
lab's SIP site (Kamailio, carrier SBCs, PBX): it loads with no console errors, shows the
links, trunks and DID plan, shows a real failover (fibre-a blackholed) within 2 s of the
kernel's route moving, fits a 360 px wide phone without horizontal scroll, and marks a
force to the dead link as held, not applied; and its services section follows real services
(up; then the CRM down, its PBX's DIDs on DR, and a tool down that only alerts). The browser
runs inside the site's namespace, reaching only the daemon on the site's loopback.

Screenshots go to ``$LIFELINE_ARTIFACTS`` (default ``tmp/artifacts`` in the repository);
with ``LIFELINE_DOCS_SCREENSHOT=docs/status-page.png`` the wall-size one is also written
there (``tests/lab/statuspage_shot.py`` makes a richer one with an hour of history).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from exporters.operator_client import Daemon, call, path_of
from tests.integration.conftest import SIP_LAB
from tests.lab.browser import Browser, browser, browser_skip_reason
from tests.lab.httpservice import make_pki, openssl_missing
from tests.lab.lifelined import route_devices
from tests.lab.pageview import (
    active_text,
    full_height,
    horizontal_overflow,
    open_page,
    severe,
    wait_active,
    wait_until,
    watch_active,
)
from tests.lab.routewatch import RouteWatch
from tests.lab.servicethread import ServiceThread
from tests.lab.sipsite import DR_PORT, SipSite
from tests.lab.topology import Lab

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("LIFELINE_ARTIFACTS", REPO / "tmp" / "artifacts"))

pytestmark = [*SIP_LAB, pytest.mark.skipif(browser_skip_reason() is not None,
                                           reason=str(browser_skip_reason()))]


def test_the_page_shows_the_site_and_a_failover_within_2_s(lab: Lab, tmp_path: Path) -> None:
    sip = SipSite(lab, tmp_path / "sip").start()
    daemon = sip.start_daemon(tmp_path / "state")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    console: list[dict[str, Any]] = []
    with browser(lab.site, tmp_path / "browser", width=1280, height=900) as b:
        open_page(b, active="fibre-a")
        # What the daemon knows is on the page: every link, trunk and the DID plan.
        shown = b.call(lambda: b.driver.execute_script("""
            const names = (sel, attr) => [...document.querySelectorAll(sel)]
                .map((e) => e.getAttribute(attr)).sort();
            return {links: names('[data-link]', 'data-link'),
                    trunks: names('[data-trunk]', 'data-trunk'),
                    dids: document.getElementById('dids').textContent,
                    didsHidden: document.getElementById('dids-sec').hidden,
                    edges: names('[data-edge]', 'data-edge'),
                    events: document.querySelectorAll('#events li').length,
                    plots: document.querySelectorAll('.plot svg').length};"""))
        st = daemon.status()
        assert st is not None
        assert shown["links"] == sorted(lk["name"] for lk in st["links"])
        assert shown["trunks"] == sorted(t["name"] for t in st["trunks"])
        assert shown["edges"] == sorted(e["name"] for e in st["edges"])
        assert not shown["didsHidden"] and str(st["dids"]["numbers"]) in shown["dids"]
        assert shown["events"] >= 1  # the journal's start, at least
        assert shown["plots"] == 3 * len(st["links"]) + len(st["trunks"])

        # A real failover: the page follows the kernel's route within 2 s.
        assert route_devices(lab) == [lab.link("fibre-a").site_ifname]
        watch_active(b, "internet", "fibre-b")
        route = RouteWatch(lab.site, lab.link("fibre-b").site_ifname).start()
        fault_at = time.time()
        lab.faults.blackhole("fibre-a")
        rendered, seen = wait_active(b, "internet", "fibre-b", timeout=20.0)
        route.join()
        assert route.at is not None, route.error or "the kernel route never moved"
        assert route_devices(lab) == [lab.link("fibre-b").site_ifname]
        print(f"fault -> route {route.at - fault_at:.3f} s, route -> page rendered "
              f"{rendered - route.at:.3f} s, -> test saw it {seen - route.at:.3f} s")
        assert rendered - route.at < 2.0
        assert seen - route.at < 2.0
        link_a = b.call(lambda: b.driver.execute_script(
            "return document.querySelector('[data-link=\"fibre-a\"]').dataset.state;"))
        wait_until(b, lambda: b.call(lambda: b.driver.execute_script(
            "return document.querySelector('[data-link=\"fibre-a\"]').dataset.state;"))
            == "down", 10.0, "fibre-a shown down")
        assert link_a in ("up", "degraded", "down")

        # The wall: what an operator sees now, saved as the artifact.
        time.sleep(1.0)  # the events list and plots of the next snapshot
        height = min(full_height(b), 2000)
        b.viewport(1280, height)
        assert b.call(lambda: b.driver.save_screenshot(str(ARTIFACTS / "status-page.png")))
        docs = os.environ.get("LIFELINE_DOCS_SCREENSHOT")
        if docs:
            assert b.call(lambda: b.driver.save_screenshot(str(REPO / docs)))

        # A phone: 360 px wide, nothing sticks out sideways.
        b.viewport(360, 760, mobile=True)
        time.sleep(0.3)  # a layout pass and a snapshot at the new size
        scroll, inner = horizontal_overflow(b)
        assert inner == 360
        assert scroll <= inner, f"the page is {scroll} px wide at 360 px"
        assert active_text(b, "internet") == "fibre-b"
        assert b.call(lambda: b.driver.save_screenshot(str(ARTIFACTS / "status-page-360.png")))

        # A force to the link that is down is held, not applied: the page says so, and
        # still shows the route the site uses.
        code, answer = asyncio.run(call(Daemon(socket=daemon.socket), "PUT",
                                        path_of("groups", "internet", "force"),
                                        {"link": "fibre-a", "reason": "test", "for": "10m"}))
        assert code == 200 and answer["applied"] is False, answer
        held = ("const h = document.querySelector('[data-override=\"internet\"] [data-held]');"
                " return h ? h.textContent : null;")
        wait_until(b, lambda: b.call(lambda: b.driver.execute_script(held)) is not None, 10.0,
                   "held override shown")
        text = b.call(lambda: b.driver.execute_script(held))
        assert text.startswith("held, not applied: "), text
        assert active_text(b, "internet") == "fibre-b"
        console += b.console()
    print(f"browser console: {len(console)} entries: "
          + "; ".join(f"{e.get('level')} {e.get('message')}" for e in console)[:2000])
    errors = severe(console)
    assert not errors, f"console errors: {errors}"
    daemon.stop()
    assert daemon.exit_code == 0


def _cards(b: Browser) -> dict[str, dict[str, Any]]:
    """Every service card as the page shows it: state, text, and its marked parts."""
    found: dict[str, dict[str, Any]] = b.call(lambda: b.driver.execute_script("""
        const out = {};
        for (const c of document.querySelectorAll('[data-service]')) {
          const part = (sel) => { const e = c.querySelector(sel); return e && e.textContent; };
          out[c.dataset.service] = {state: c.dataset.state, text: c.textContent,
                                    takes: part('[data-takes-down]'),
                                    needed: part('[data-needed-by]'),
                                    error: part('[data-last-error]')};
        }
        return out;"""))
    return found


@pytest.mark.skipif(openssl_missing() is not None, reason=str(openssl_missing()))
def test_the_services_section_shows_real_services_and_one_down_sending_dids_to_dr(
        lab: Lab, tmp_path: Path) -> None:
    """Two real services the daemon checks on the site's loopback: the CRM (HTTPS, the lab
    CA, needed by the PBX) and a workforce tool (HTTP, alerts only). Both up, then the CRM
    answers 500 and the tool stops: the page shows the CRM down with the PBX counted down
    and every DID on DR for it, the tool down with no DID moved; the CRM mended, it is up
    again and its last failed check stays on its card."""
    pki = make_pki(tmp_path / "pki")
    crm = ServiceThread(lab.site, tls=pki.valid)
    wfm = ServiceThread(lab.site)
    daemon = None
    try:
        sip = SipSite(lab, tmp_path / "sip").start()
        sip.start_uas("dr", lab.lan, str(lab.lan_host_addr), DR_PORT)
        pace = {"interval": "1s", "timeout": "500ms", "recheck_interval": "250ms",
                "thresholds": {"down_after": 3, "hold_down": "3s"}}

        def with_services(config: dict[str, Any]) -> None:
            config["services"] = [
                {"name": "crm", "http": {"url": crm.url(), "ca_file": str(pki.ca)},
                 "needed_by": ["pbx"], **pace},
                {"name": "wfm", "http": {"url": wfm.url()}, **pace},
            ]

        daemon = sip.start_daemon(tmp_path / "state", edit=with_services)
        console: list[dict[str, Any]] = []
        with browser(lab.site, tmp_path / "browser", width=1280, height=1400) as b:
            open_page(b)
            wait_until(b, lambda: {n: c["state"] for n, c in _cards(b).items()}
                       == {"crm": "up", "wfm": "up"}, 20.0, "both services shown up")
            cards = _cards(b)
            assert "needed by pbx" in cards["crm"]["needed"]
            assert "alerts only" in cards["wfm"]["needed"]
            assert re.search(r"cert(29|30) d \(\d{4}-\d\d-\d\d\)", cards["crm"]["text"]), cards
            assert re.search(r"latency\d+\.\d ms", cards["crm"]["text"]), cards
            assert "code200" in cards["wfm"]["text"] and "cert" not in cards["wfm"]["text"]
            assert cards["crm"]["takes"] is None and cards["crm"]["error"] is None

            crm.set(status=500)
            wfm.close()
            wait_until(b, lambda: _cards(b)["crm"]["takes"] is not None
                       and _cards(b)["wfm"]["state"] == "down", 20.0,
                       "the CRM down with the PBX counted down, the tool down")
            st = daemon.status()
            assert st is not None
            cards = _cards(b)
            numbers = st["dids"]["numbers"]  # every range of the lab names pbx and dr
            assert cards["crm"]["takes"] == f"pbx counted down: {numbers} DIDs on DR for a service"
            assert "DIDs to DR" in cards["crm"]["text"] and "HTTP 500" in cards["crm"]["text"]
            assert cards["wfm"]["takes"] is None and "refused" in cards["wfm"]["text"]
            banner = b.call(lambda: b.driver.execute_script(
                "return document.getElementById('banner').textContent;"))
            assert "service down: crm, wfm" in banner and "DIDs on DR (service)" in banner
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            assert b.call(lambda: b.driver.save_screenshot(
                str(ARTIFACTS / "status-page-services-lab.png")))

            crm.set(status=200)
            wait_until(b, lambda: _cards(b)["crm"]["state"] == "up"
                       and _cards(b)["crm"]["takes"] is None, 20.0,
                       "the CRM back after its hold-down")
            error = _cards(b)["crm"]["error"]
            assert error is not None and error.startswith("last failed check: HTTP 500"), error
            console += b.console()
        errors = severe(console)
        assert not errors, f"console errors: {errors}"
    finally:
        try:
            if daemon is not None:
                assert daemon.stop() == 0
        finally:
            crm.close()
            wfm.close()
