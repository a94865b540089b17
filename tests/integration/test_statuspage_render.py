"""What the status page renders, in a real headless Chromium, for states a lab run does not
easily reach: operator overrides, DID ranges on the DR destination and unroutable, a trunk
in maintenance and one tripped at the edge, a service down that sends DIDs to DR next to
one whose certificate is expiring, call recordings with a stale backup, missing names and
a degraded RAID; free text that looks like HTML stays text; the
page falls back to polling when the stream is refused and still follows each snapshot; and
it loads with no console error.

The daemon's HTTP app (``exporters.http.make_app`` with the ``StatusPage``) runs in this
process, on 127.0.0.1 of a namespace the test creates with only ``lo``, and the browser
runs in the same namespace: nothing of it can reach any other host. Snapshots are built
from the core's own types and published the way the daemon publishes them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from controller.core.didplan import DidEntry, TrunkView, compute_plan
from controller.core.e164 import parse_range
from controller.core.health import HealthState
from controller.core.powersnap import PowerSnap, UpsSnap
from controller.core.recordings import (
    BackupFacts,
    RaidFacts,
    RecordingsParams,
    StoreFacts,
    judge,
)
from controller.core.recsnap import ScanStats, SourceInfo, recordings_snap
from controller.core.services import CertStatus, ServiceSnap
from controller.core.snapshot import EdgeSnap, GroupSnap, LinkSnap, PeerSnap, Snapshot
from exporters.http import make_app
from exporters.status import status_document
from exporters.statuspage import StatusPage
from tests.lab import netns
from tests.lab.browser import Browser, browser, browser_skip_reason
from tests.lab.pageview import active_text, conn_mode, horizontal_overflow, severe, wait_until

UP, DEG, DOWN = HealthState.UP, HealthState.DEGRADED, HealthState.DOWN
PORT = 9730
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("LIFELINE_ARTIFACTS", REPO / "tmp" / "artifacts"))
HOSTILE = '<img src=x id="pwned">'

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a network namespace)"),
    pytest.mark.skipif(browser_skip_reason() is not None, reason=str(browser_skip_reason())),
]

OVERRIDES = [
    {"kind": "route", "target": "internet", "value": "fibre-b", "reason": "fibre-a works",
     "by": "alice", "since": time.time() - 600, "until": time.time() + 3000},
    {"kind": "dids", "target": "+390212345600-+390212345699", "value": "dr",
     "reason": f"DR drill {HOSTILE}", "by": "bob", "since": time.time() - 60, "until": None},
]


def snapshot(t: float, active: str) -> Snapshot:
    links = (
        LinkSnap("fibre-a", "wan-a", "198.51.100.1", None, 1,
                 DOWN if active != "fibre-a" else UP, 3.0, f"fibre-a: blackholed {HOSTILE}",
                 True, 1.0 if active != "fibre-a" else 0.0, None, None, None, 50, 2.0, 1.0),
        LinkSnap("fibre-b", "wan-b", "198.51.100.5", None, 1, UP, 60.0, "answering", True,
                 0.01, 0.021, 0.002, 4.3, 50, 0.0, 0.0, 0.005),
        LinkSnap("lte", "lte0", "198.51.100.9", None, 2, DEG, 60.0, "lte: MOS 3.1 < 3.6",
                 True, 0.04, 0.180, 0.030, 3.1, 50, 0.0, 0.0, 0.02),
    )
    groups = (GroupSnap("internet", 254, "default", ("fibre-a", "fibre-b", "lte"), (active,),
                        (active,), f"{active} is the best up link", 5.0),)
    entries = (
        DidEntry(parse_range("+390212345600-+390212345699"), ("a-sbc1",), "pbx", "dr"),
        DidEntry(parse_range("+390287654300-+390287654349"), ("a-sbc1", "a-sbc2"), "pbx", "dr"),
        DidEntry(parse_range("+390612340000"), ("b-sbc1",), "pbx", None),
    )
    views = {"a-sbc1": TrunkView("a-sbc1", UP), "a-sbc2": TrunkView("a-sbc2", UP),
             "b-sbc1": TrunkView("b-sbc1", DOWN)}
    plan = compute_plan(entries, views, {}, {"pbx": DOWN, "dr": UP})
    trunks = (
        PeerSnap("a-sbc1", "sip:192.0.2.21", UP, "200 OK", 200, 0.012, 0.0, dids=150),
        PeerSnap("a-sbc2", "sip:192.0.2.22", UP, "200 OK", 200, 0.015, 0.0,
                 maintenance="carrier works tonight"),
        PeerSnap("b-sbc1", "sip:192.0.2.23", DOWN, "OPTIONS timeout", None, None, 0.0,
                 edge_tripped="12 of 12 calls failed with 503"),
    )
    return Snapshot(site="rome", version="9.9", dry_run=False, taken_at=t, uptime=3600.0,
                    links=links, groups=groups, trunks=trunks, plan=plan,
                    edges=(EdgeSnap("kamailio", True, None),),
                    problems=(f"a standing problem {HOSTILE}",), telephony=True)


class PageServer:
    """The app on 127.0.0.1:PORT of namespace ``ns``, on its own event loop and thread."""

    def __init__(self, ns: str, page: StatusPage) -> None:
        self.ns, self.page = ns, page
        self.latest: Snapshot | None = None
        self.loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(make_app(lambda: self.latest, page=page))
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.error: BaseException | None = None

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            with netns.inside(self.ns):  # the listening socket is made in the namespace
                self.loop.run_until_complete(self._runner.setup())
                self.loop.run_until_complete(
                    web.TCPSite(self._runner, "127.0.0.1", PORT).start())
        except BaseException as exc:
            self.error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self._runner.cleanup())
        self.loop.close()

    def start(self) -> PageServer:
        self._thread.start()
        self._ready.wait(10)
        if self.error is not None:
            raise self.error
        return self

    def publish(self, snap: Snapshot) -> None:
        def do() -> None:
            self.latest = snap
            self.page.published(snap)

        self.loop.call_soon_threadsafe(do)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(15)


@pytest.fixture
def web_ns() -> Iterator[str]:
    """A namespace with only ``lo``, removed at the end."""
    prefix = netns.new_prefix()
    name = prefix + "web"
    netns.write_owner(prefix)
    try:
        netns.add_namespaces([name])
        netns.run_cmd(["ip", "-n", name, "link", "set", "lo", "up"])
        yield name
    finally:
        netns.delete_namespaces([name])
        netns.remove_owner(prefix)


@pytest.fixture
def with_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """The status document as it is once operator overrides exist (issue 11, part 7)."""
    plain: Callable[[Snapshot], dict[str, Any]] = status_document
    monkeypatch.setattr("exporters.statuspage.status_document",
                        lambda s: plain(s) | {"overrides": OVERRIDES})


def js(b: Browser, script: str, *args: Any) -> Any:
    return b.call(lambda: b.driver.execute_script(script, *args))


@contextmanager
def served(web_ns: str, tmp_path: Path, **page_args: Any) -> Iterator[tuple[PageServer, Browser]]:
    server = PageServer(web_ns, StatusPage(**page_args)).start()
    try:
        server.publish(snapshot(time.time(), "fibre-a"))
        with browser(web_ns, tmp_path / "browser", width=1280, height=900) as b:
            b.call(lambda: b.driver.get(f"http://127.0.0.1:{PORT}/"))
            yield server, b
    finally:
        server.stop()


@pytest.mark.usefixtures("with_overrides")
def test_overrides_dr_maintenance_and_tripped_are_shown_and_html_stays_text(
        web_ns: str, tmp_path: Path) -> None:
    with served(web_ns, tmp_path) as (server, b):
        wait_until(b, lambda: conn_mode(b) == "live" and active_text(b, "internet") == "fibre-a",
                   10, "the page live")
        got = js(b, """
            const text = (sel) => [...document.querySelectorAll(sel)].map((e) => e.textContent);
            return {
              overridesHidden: document.getElementById('overrides-sec').hidden,
              overrides: text('#overrides li'),
              ranges: text('[data-range]'),
              dids: document.getElementById('dids').textContent,
              trunkA2: document.querySelector('[data-trunk="a-sbc2"]').textContent,
              trunkB: document.querySelector('[data-trunk="b-sbc1"]').textContent,
              banner: document.getElementById('banner').textContent,
              level: document.getElementById('banner').dataset.level,
              problems: text('#problems li'),
              pwned: document.querySelectorAll('#pwned, img').length,
              power: document.getElementById('power').textContent,
            };""")
        assert not got["overridesHidden"]
        assert len(got["overrides"]) == 2
        assert "route internet" in got["overrides"][0] and "alice" in got["overrides"][0]
        assert "until" in got["overrides"][0] and "no expiry" in got["overrides"][1]
        assert HOSTILE in got["overrides"][1]  # shown as the text it is
        assert got["pwned"] == 0  # and never became an element
        assert HOSTILE in got["problems"][0]
        ranges = " ".join(got["ranges"])
        assert "unroutable" in ranges and "DR" in ranges
        assert "150" in got["dids"]
        assert "maintenance" in got["trunkA2"] and "carrier works tonight" in got["trunkA2"]
        assert "tripped" in got["trunkB"]
        assert got["level"] == "crit" and "1 DID unroutable" in got["banner"]
        assert "override" in got["banner"]
        assert got["power"] == "not monitored yet"
        # The next snapshot (a failover) reaches the page through the stream.
        server.publish(snapshot(time.time(), "fibre-b"))
        wait_until(b, lambda: active_text(b, "internet") == "fibre-b", 2.0, "the failover")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert b.call(lambda: b.driver.save_screenshot(str(ARTIFACTS / "status-page-render.png")))
        b.viewport(360, 760, mobile=True)
        time.sleep(0.2)
        scroll, inner = horizontal_overflow(b)
        assert scroll <= inner == 360
        assert b.call(lambda: b.driver.save_screenshot(
            str(ARTIFACTS / "status-page-render-360.png")))
        errors = severe(b.console())
        assert not errors, errors


def test_without_overrides_the_section_stays_hidden(web_ns: str, tmp_path: Path) -> None:
    with served(web_ns, tmp_path) as (_, b):
        wait_until(b, lambda: conn_mode(b) == "live", 10, "the page live")
        assert js(b, "return document.getElementById('overrides-sec').hidden;") is True
        assert not severe(b.console())


def test_the_power_section_shows_the_phase_and_each_ups_as_text(
        web_ns: str, tmp_path: Path) -> None:
    with served(web_ns, tmp_path) as (server, b):
        wait_until(b, lambda: conn_mode(b) == "live", 10, "the page live")
        ups = (UpsSnap("rack-a", "nut", "battery_low", f"rack-a: battery low {HOSTILE}", 40.0,
                       ("DISCHRG", "LB", "OB"), 0.12, 45.0, 0.0, 0.35, True, ""),
               UpsSnap("rack-b", "snmp", "unknown", "rack-b: 3 reads failed in a row", 9.0,
                       read_ok=False, read_detail="timeout"))
        power = PowerSnap("battery_low", "dr", "desks dark: rack-a: battery low", 40.0,
                          outage=True, dr=True, upses=ups)
        server.publish(dataclasses.replace(snapshot(time.time(), "fibre-a"), power=power))
        wait_until(b, lambda: js(b, "return document.querySelectorAll('[data-ups]').length")
                   == 2, 3.0, "the power section")
        got = js(b, """
            const q = (sel) => document.querySelector(sel).textContent;
            return {power: q('#power'), a: q('[data-ups="rack-a"]'),
                    b: q('[data-ups="rack-b"]'), banner: q('#banner'),
                    pwned: document.querySelectorAll('#pwned, img').length};""")
        assert "DR: DID ranges on their DR destination" in got["power"]
        assert "battery_low" in got["a"] and "LB" in got["a"] and "runtime 45 s" in got["a"]
        assert "charge 12%" in got["a"] and HOSTILE in got["a"] and got["pwned"] == 0
        assert "last read failed: timeout" in got["b"]
        assert "power: DIDs to DR" in got["banner"]
        assert not severe(b.console())


def services_snapshot(t: float) -> Snapshot:
    """The CRM the PBX needs answering 500 (the PBX counted down, its ranges on DR for a
    service), a web front answering with a certificate 5 days from expiry, and a TCP
    check that failed once and is back."""
    entries = (
        DidEntry(parse_range("+390212345600-+390212345699"), ("a-sbc1",), "pbx", "dr"),
        DidEntry(parse_range("+390287654300-+390287654349"), ("a-sbc1",), "pbx", "dr"),
    )
    crm_down = f"pbx down: needs crm, which is down: HTTP 500 Internal Server Error {HOSTILE}"
    plan = compute_plan(entries, {"a-sbc1": TrunkView("a-sbc1", UP)}, {},
                        {"pbx": DOWN, "dr": UP}, service_down={"pbx": crm_down})
    services = (
        ServiceSnap("crm", "http", "GET https://crm.lifeline.test/health", DOWN,
                    f"crm: HTTP 500 Internal Server Error {HOSTILE}", 0.042, 500, 27.5,
                    t + 27.5 * 86400, ("pbx",), CertStatus.OK, 0.0,
                    f"HTTP 500 Internal Server Error {HOSTILE}"),
        ServiceSnap("web", "http", "GET https://web.lifeline.test/", UP, "web: up", 0.011,
                    200, 5.2, t + 5.2 * 86400, (), CertStatus.EXPIRING),
        ServiceSnap("sbc-tcp", "tcp", "tcp 192.0.2.50:5061", UP, "sbc-tcp: up", 0.003, None,
                    None, None, (), None, 0.0, "connection refused (path is up)"),
    )
    destinations = (
        PeerSnap("pbx", "sip:192.0.2.30", UP, "200 OK", 200, 0.004, 0.0,
                 service_down=crm_down),
        PeerSnap("dr", "sip:192.0.2.31", UP, "200 OK", 200, 0.005, 0.0),
    )
    return dataclasses.replace(snapshot(t, "fibre-a"), plan=plan, services=services,
                               destinations=destinations)


def test_the_services_section_shows_a_service_down_that_sends_dids_to_dr(
        web_ns: str, tmp_path: Path) -> None:
    with served(web_ns, tmp_path) as (server, b):
        wait_until(b, lambda: conn_mode(b) == "live", 10, "the page live")
        assert js(b, "return document.getElementById('services-sec').hidden;") is True
        server.publish(services_snapshot(time.time()))
        wait_until(b, lambda: js(b, "return document.querySelectorAll('[data-service]')"
                                    ".length") == 3, 3.0, "the services section")
        got = js(b, """
            const q = (sel) => document.querySelector(sel);
            const card = (name) => {
              const c = q(`[data-service="${name}"]`);
              const part = (sel) => { const e = c.querySelector(sel); return e && e.textContent; };
              return {text: c.textContent, state: c.dataset.state,
                      takes: part('[data-takes-down]'), needed: part('[data-needed-by]'),
                      error: part('[data-last-error]')};
            };
            return {crm: card('crm'), web: card('web'), tcp: card('sbc-tcp'),
                    hidden: q('#services-sec').hidden, banner: q('#banner').textContent,
                    pwned: document.querySelectorAll('#pwned, img').length};""")
        crm, web, tcp = got["crm"], got["web"], got["tcp"]
        assert not got["hidden"]
        assert crm["state"] == "down" and "DIDs to DR" in crm["text"]
        assert crm["takes"] == "pbx counted down: 150 DIDs on DR for a service"
        assert "needed by pbx" in crm["needed"]
        assert "HTTP 500 Internal Server Error" in crm["text"] and HOSTILE in crm["text"]
        assert crm["error"] is None  # the reason already says it
        assert "42.0 ms" in crm["text"] and "500" in crm["text"] and "27 d" in crm["text"]
        assert web["state"] == "up" and web["takes"] is None and "alerts only" in web["needed"]
        assert "cert expiring" in web["text"] and "5 d" in web["text"]
        assert tcp["error"] == "last failed check: connection refused (path is up)"
        assert "cert" not in tcp["text"]
        assert "service down: crm" in got["banner"]
        assert "150 DIDs on DR (service)" in got["banner"]
        assert "certificate expiring: web (5 d left)" in got["banner"]
        assert got["pwned"] == 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        b.viewport(1280, 1400)  # the services are below the trunks
        time.sleep(0.2)
        assert b.call(lambda: b.driver.save_screenshot(
            str(ARTIFACTS / "status-page-services.png")))
        b.viewport(360, 760, mobile=True)
        time.sleep(0.2)
        scroll, inner = horizontal_overflow(b)
        assert scroll <= inner == 360
        assert not severe(b.console())


def test_a_refused_stream_falls_back_to_polling(web_ns: str, tmp_path: Path) -> None:
    with served(web_ns, tmp_path, max_streams=0) as (server, b):
        wait_until(b, lambda: conn_mode(b) == "polling"
                   and active_text(b, "internet") == "fibre-a", 10, "the page polling")
        server.publish(snapshot(time.time(), "fibre-b"))
        wait_until(b, lambda: active_text(b, "internet") == "fibre-b", 3.0,
                   "the failover through polling")
        # The refused stream is a failed load (503) in the log, which also shows the log
        # is really read (the control for the other tests' "no console errors").
        logged = severe(b.console())
        assert any("events/stream" in e and "503" in e for e in logged), logged
        errors = [e for e in logged if "events/stream" not in e]
        assert not errors, errors


def recordings_snapshot(t: float) -> Snapshot:
    """A recordings section from hand-made facts judged by the core: the NAS's copy did not
    run last night (stale) and skipped 120 recordings earlier, one with another size; the
    restic repository is fresh and whole; the store's md0 is degraded; a file name carries
    markup (names are text)."""
    day = 86400.0
    params = RecordingsParams(retention=5 * 365 * day)
    missing = (f"2026/12/02/{HOSTILE}.wav",
               *(f"2026/12/02/call-{i:04}.wav" for i in range(1, 120)))
    store = StoreFacts(files=5000, newest_mtime=t - 300, oldest_mtime=t - 90 * day,
                       free_bytes=400 * 2**30, total_bytes=2000 * 2**30,
                       written_recent_bytes=8 * 2**30, recent_window_s=day,
                       raid=(RaidFacts("md0", degraded=True, failed_devices=("sdb1",),
                                       detail="raid1 [2/1] [U_]"),))
    nas = BackupFacts("nas", newest_mtime=t - 2 * day - 3 * 3600, pending_since=t - 2 * day,
                      missing=len(missing), missing_names=missing, mismatched=1,
                      mismatched_names=("2026/12/01/short.wav",), verified=700,
                      oldest_mtime=t - 90 * day)
    offsite = BackupFacts("offsite", newest_mtime=t - 5 * 3600, last_run=t - 4 * 3600,
                          verified=650, oldest_mtime=t - 90 * day)
    backups = [nas, offsite]
    verdict = judge(params, store, backups, t)
    rec = recordings_snap(
        params, store, backups, verdict, now=t,
        sources=(SourceInfo("store", "store", "/srv/recordings"),
                 SourceInfo("nas", "folder", "/mnt/nas/recordings"),
                 SourceInfo("offsite", "restic", "/mnt/usb/restic")),
        scans={"store": ScanStats(5000, 5000 * 2**20, t - 20, 0.4, False)},
        verify_days=30, interval=300.0, verified_this_period=1250)
    return dataclasses.replace(snapshot(t, "fibre-a"), recordings=rec)


def test_the_recordings_section_shows_a_stale_backup_missing_names_and_a_degraded_raid(
        web_ns: str, tmp_path: Path) -> None:
    with served(web_ns, tmp_path) as (server, b):
        wait_until(b, lambda: conn_mode(b) == "live", 10, "the page live")
        assert js(b, "return document.getElementById('recordings-sec').hidden;") is True
        server.publish(recordings_snapshot(time.time()))
        wait_until(b, lambda: js(b, "return document.querySelectorAll('[data-backup]')"
                                    ".length") == 2, 3.0, "the recordings section")
        got = js(b, """
            const q = (sel) => document.querySelector(sel);
            const card = (name) => {
              const c = q(`[data-backup="${name}"]`);
              const d = c.querySelector('details[data-names="missing"]');
              return {text: c.textContent, state: c.dataset.state,
                      summary: d && d.querySelector('summary').textContent,
                      names: d ? [...d.querySelectorAll('li')].map((e) => e.textContent) : [],
                      open: d ? d.open : null};
            };
            return {nas: card('nas'), offsite: card('offsite'),
                    hidden: q('#recordings-sec').hidden, store: q('[data-store]').textContent,
                    verifier: q('[data-verifier]').textContent,
                    banner: q('#banner').textContent, level: q('#banner').dataset.level,
                    pwned: document.querySelectorAll('#pwned, img').length};""")
        nas, offsite = got["nas"], got["offsite"]
        assert not got["hidden"]
        assert nas["state"] == "down" and "stale" in nas["text"]
        assert "a recording made 2d ago is not there" in nas["text"]
        assert "missing120" in nas["text"] and "mismatched1" in nas["text"]
        assert nas["summary"] == "missing: 120" and nas["open"] is False  # names on expand
        assert len(nas["names"]) == 101 and nas["names"][-1] == "and 20 more"  # 100 kept
        assert nas["names"][0] == f"2026/12/02/{HOSTILE}.wav" and got["pwned"] == 0
        assert offsite["state"] == "up" and "fresh" in offsite["text"]
        assert "verified650" in offsite["text"] and offsite["summary"] is None
        assert "md0 degraded" in got["store"] and "d left" in got["store"]
        assert "one more disk failure" in got["store"]
        assert "verified 25% of the recordings this period" in got["verifier"]
        assert got["level"] == "crit"
        assert "recordings: " in got["banner"] and "nas stale" in got["banner"]
        assert "120 missing from nas" in got["banner"] and "md0 degraded" in got["banner"]
        # Expanding the list shows the names as text.
        js(b, "document.querySelector('[data-backup=\"nas\"] details[data-names=\"missing\"]')"
              ".open = true;")
        assert js(b, "return document.querySelector('[data-backup=\"nas\"] "
                     "details[data-names=\"missing\"] li').offsetHeight") > 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        b.viewport(1280, 1600)
        time.sleep(0.2)
        assert b.call(lambda: b.driver.save_screenshot(
            str(ARTIFACTS / "status-page-recordings.png")))
        b.viewport(360, 760, mobile=True)
        time.sleep(0.2)
        scroll, inner = horizontal_overflow(b)
        assert scroll <= inner == 360
        assert not severe(b.console())
