"""The status page in a real headless Chromium, in front of the real lifeline running the
lab's SIP site (Kamailio, carrier SBCs, PBX): it loads with no console errors, shows the
links, trunks and DID plan, shows a real failover (fibre-a blackholed) within 2 s of the
kernel's route moving, fits a 360 px wide phone without horizontal scroll, and marks a
force to the dead link as held, not applied. The browser
runs inside the site's namespace, reaching only the daemon on the site's loopback.

Screenshots go to ``$LIFELINE_ARTIFACTS`` (default ``tmp/artifacts`` in the repository);
with ``LIFELINE_DOCS_SCREENSHOT=docs/status-page.png`` the wall-size one is also written
there (``tests/lab/statuspage_shot.py`` makes a richer one with an hour of history).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from exporters.operator_client import Daemon, call, path_of
from tests.integration.conftest import SIP_LAB
from tests.lab.browser import browser, browser_skip_reason
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
from tests.lab.sipsite import SipSite
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
