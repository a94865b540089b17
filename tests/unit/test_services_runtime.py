"""The site's services in the daemon, without the network: service checks -> service health
-> the destinations that need them -> the DID plan (DR and back), and what the snapshot,
status, ``/api/v1/dids`` and ``/metrics`` say of them.

The real ``Daemon.run`` loop on looptime's fast clock (tests.unit.test_runtime); checks are
fed the way the scheduler feeds them (``ServiceChecks.on_reading`` with the loop's time),
except in the last tests, where a fake reader stands in for ``read_service`` behind the
real RecheckScheduler."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from controller.config import parse_config
from controller.core.didplan import DR_SERVICE, DidDecision
from controller.core.health import HealthState
from controller.core.services import CertStatus, ServiceSnap
from controller.core.snapshot import Snapshot, Tally
from controller.runtime.daemon import Daemon
from controller.runtime.journal import Journal, read_events
from controller.runtime.services import ServiceChecks
from exporters.metrics import registry_for
from exporters.status import did_document, status_document
from exporters.statusview import render_status
from probes.sample import ErrorKind, ProbeSpec
from probes.service import ServiceReading
from tests.unit.test_override_runtime import T0, daemon_with, latest
from tests.unit.test_override_runtime import feed as feed_sip
from tests.unit.test_runtime import _config as _links_config
from tests.unit.test_runtime import _kernel, fast_clock
from tests.unit.test_telephony import CONFIG

ROME = "+390212345650"  # a1/a2, pbx, DR dr
MILAN = "+390298765420"  # b1, pbx, no DR destination
NOT_AFTER = T0 + 10 * 86400.0

SERVICES = """
services:
  - {name: crm, http: {url: "https://crm.example/health"}, interval: 1s, timeout: 500ms,
     recheck_interval: 500ms, thresholds: {down_after: 3, hold_down: 10s, rise: 2},
     needed_by: [pbx]}
  - {name: wiki, tcp: {host: 192.0.2.50, port: 80}, interval: 1s, timeout: 500ms,
     recheck_interval: 500ms, thresholds: {down_after: 3, hold_down: 10s, rise: 2}}
"""

OK = ServiceReading(True, latency=0.02, code=200, cert_days_left=10.0, cert_not_after=NOT_AFTER)
E500 = ServiceReading(False, latency=0.01, error=ErrorKind.BAD_STATUS,
                      detail="HTTP 500 Internal Server Error", code=500)
TCP_OK = ServiceReading(True, latency=0.001)
REFUSED = ServiceReading.failure(ErrorKind.REFUSED, "connection refused")


def _site(state: Path) -> str:
    return (_links_config(state) + CONFIG.split(
        "route_groups: [{name: internet, links: [fibre-a]}]\n", 1)[1] + SERVICES)


async def feed(daemon: Daemon, seconds: float, **readings: ServiceReading) -> None:
    """Every service checked every second (``crm=E500``: crm answers 500; the others
    answer), links and SIP peers answering, for ``seconds`` of loop time."""
    loop = asyncio.get_running_loop()
    for _ in range(round(seconds)):
        for name, c in daemon.services.services.items():
            default = OK if c.cfg.kind == "http" else TCP_OK
            daemon.services.on_reading(name, loop.time(), readings.get(name, default))
        await feed_sip(daemon, 1.0)


async def until(daemon: Daemon, what: str, check: Callable[[], bool], timeout: float = 30.0,
                **readings: ServiceReading) -> float:
    """Feed until ``check()`` holds; the loop time it took."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    while not check():
        assert loop.time() - began < timeout, f"not within {timeout} s: {what}"
        await feed(daemon, 1.0, **readings)
    return loop.time() - began


def decision(daemon: Daemon, number: str) -> DidDecision:
    plan = latest(daemon).plan
    found = None if plan is None else plan.lookup(number)
    assert found is not None, number
    return found


def service(snap: Snapshot, name: str) -> ServiceSnap:
    return next(s for s in snap.services if s.name == name)


def metric(snap: Snapshot, name: str, **labels: str) -> float | None:
    return registry_for(lambda: snap).get_sample_value(name, labels)


@fast_clock
async def test_crm_down_sends_the_pbx_ranges_to_dr_and_back_after_its_hold_down(
        tmp_path: Path) -> None:
    async with daemon_with(tmp_path, _kernel(), _site(tmp_path / "state")) as daemon:
        await until(daemon, "crm up, Rome on the PBX",
                    lambda: service(latest(daemon), "crm").state is HealthState.UP
                    and decision(daemon, ROME).destination == "pbx")
        assert all(s["last_error"] is None
                   for s in status_document(latest(daemon))["services"])  # none failed
        # Two failed checks are not down_after (3): nothing moves yet.
        await feed(daemon, 2, crm=E500)
        assert service(latest(daemon), "crm").state is not HealthState.DOWN
        assert decision(daemon, ROME).destination == "pbx"
        await until(daemon, "Rome on DR", lambda: decision(daemon, ROME).on_dr, timeout=3,
                    crm=E500)
        rome = decision(daemon, ROME)
        assert (rome.destination, rome.dr_cause) == ("dr", DR_SERVICE)
        assert "pbx down: needs crm, which is down: HTTP 500" in rome.reason, rome.reason
        snap = latest(daemon)
        answer = did_document(snap, ROME)
        assert answer is not None and answer["disaster_recovery"]
        assert answer["dr_cause"] == "service"
        assert "needs crm, which is down: HTTP 500" in answer["reason"]
        # A range without a DR destination stays with the PBX, and says why.
        milan = decision(daemon, MILAN)
        assert milan.destination == "pbx" and not milan.on_dr
        assert "needs crm" in milan.reason and "no DR destination" in milan.reason
        doc = status_document(snap)
        pbx = next(d for d in doc["destinations"] if d["name"] == "pbx")
        assert pbx["state"] == "up"  # it answers OPTIONS; it is counted down
        assert "needs crm, which is down: HTTP 500" in pbx["service_down"]
        crm = next(s for s in doc["services"] if s["name"] == "crm")
        assert (crm["state"], crm["code"], crm["needed_by"]) == ("down", 500, ["pbx"])
        assert "HTTP 500" in crm["reason"]
        text = render_status(doc)
        assert "counted DOWN: pbx down: needs crm" in text
        assert metric(snap, "lifeline_service_up", service="crm") == 0.0
        assert metric(snap, "lifeline_service_state", service="crm", state="down") == 1.0
        assert metric(snap, "lifeline_service_checks_total", service="crm",
                      result="bad_status") == 3.0
        downs = [e for e in read_events(daemon.journal.path, 100, "transition")
                 if e.subject == "crm" and e.data.get("new") == "down"]
        assert len(downs) == 1 and "HTTP 500" in downs[0].message, downs
        decided = [e.message for e in read_events(daemon.journal.path, 100, "decision")]
        assert any("needs crm, which is down" in m for m in decided), decided

        # The CRM answers again: the ranges wait for its hold-down (10 s), then return.
        took = await until(daemon, "Rome back on the PBX",
                           lambda: decision(daemon, ROME).destination == "pbx", timeout=20)
        assert 9.0 <= took <= 14.0, took
        back = decision(daemon, ROME)
        assert back.dr_cause is None and "needs crm" not in back.reason
        assert service(latest(daemon), "crm").state is HealthState.UP
        # Back, its last failed check is still told (the status page shows it).
        crm = next(s for s in status_document(latest(daemon))["services"]
                   if s["name"] == "crm")
        assert crm["state"] == "up" and "HTTP 500" in crm["last_error"], crm


@fast_clock
async def test_a_service_no_destination_needs_only_alerts(tmp_path: Path) -> None:
    async with daemon_with(tmp_path, _kernel(), _site(tmp_path / "state")) as daemon:
        await until(daemon, "wiki up, Rome on the PBX",
                    lambda: service(latest(daemon), "wiki").state is HealthState.UP
                    and decision(daemon, ROME).destination == "pbx")
        await until(daemon, "wiki down",
                    lambda: service(latest(daemon), "wiki").state is HealthState.DOWN,
                    timeout=5, wiki=REFUSED)
        await feed(daemon, 3, wiki=REFUSED)
        snap = latest(daemon)
        assert snap.plan is not None
        assert not any(d.on_dr for d in snap.plan.decisions)
        assert all("wiki" not in d.reason for d in snap.plan.decisions)
        assert metric(snap, "lifeline_service_up", service="wiki") == 0.0
        assert metric(snap, "lifeline_service_state", service="wiki", state="down") == 1.0
        assert metric(snap, "lifeline_service_checks_total", service="wiki",
                      result="refused") is not None
        assert metric(snap, "lifeline_service_up", service="crm") == 1.0
        assert all(d["service_down"] is None for d in status_document(snap)["destinations"])


@fast_clock
async def test_the_certificate_days_left_and_expiry_are_served(tmp_path: Path) -> None:
    async with daemon_with(tmp_path, _kernel(), _site(tmp_path / "state")) as daemon:
        await until(daemon, "crm checked", lambda: service(latest(daemon), "crm").cert
                    is not None)
        crm = service(latest(daemon), "crm")
        # 10 days left, fewer than the default cert_warn_days (21): expiring, not down.
        assert crm.cert is CertStatus.EXPIRING and crm.cert_days_left == 10.0
        snap = latest(daemon)
        assert metric(snap, "lifeline_service_cert_expiry_timestamp_seconds",
                      service="crm") == NOT_AFTER
        assert metric(snap, "lifeline_service_cert_expiry_timestamp_seconds",
                      service="wiki") is None
        # The alert's threshold is the service's own cert_warn_days (default 21).
        assert metric(snap, "lifeline_service_cert_warn_seconds", service="crm") == 21 * 86400
        assert metric(snap, "lifeline_service_cert_warn_seconds", service="wiki") is None
        assert metric(snap, "lifeline_service_latency_seconds", service="crm") == 0.02
        doc = next(s for s in status_document(snap)["services"] if s["name"] == "crm")
        assert (doc["cert_days_left"], doc["cert"]) == (10.0, "expiring")
        assert "10d expiring" in render_status(status_document(snap))


@fast_clock
async def test_a_reload_keeps_an_unchanged_check_and_restarts_a_changed_one(
        tmp_path: Path) -> None:
    text = _site(tmp_path / "state")
    async with daemon_with(tmp_path, _kernel(), text) as daemon:
        await until(daemon, "both services up",
                    lambda: all(s.state is HealthState.UP for s in latest(daemon).services))
        assert daemon.config_path is not None
        daemon.config_path.write_text(
            text.replace("needed_by: [pbx]}", "needed_by: [pbx, dr]}")
                .replace("port: 80}", "port: 8080}"))
        assert await daemon.reload()
        checks = daemon.services.services
        assert checks["crm"].watch.state is HealthState.UP  # same check: health kept
        assert checks["crm"].watch.needed_by == ("pbx", "dr")
        assert checks["wiki"].watch.state is HealthState.UNKNOWN  # new port: anew
        reloads = [e.message for e in read_events(daemon.journal.path, 50, "action")
                   if "config reloaded" in e.message]
        assert any("service wiki: check changed, health anew" in m for m in reloads), reloads


def _checks(tmp_path: Path, read: Callable[[ProbeSpec, float], object]) -> ServiceChecks:
    cfg = parse_config(_site(tmp_path / "state"))
    return ServiceChecks(cfg.services[:1], Journal(tmp_path / "j.sqlite3"), Tally(),
                         read=read)  # type: ignore[arg-type]


@fast_clock
async def test_the_scheduler_checks_through_the_reader_and_keeps_the_whole_reading(
        tmp_path: Path) -> None:
    """The real RecheckScheduler with a fake reader: the watch gets the status code and the
    certificate, and a failing service is rechecked at recheck_interval, not interval."""
    answers: list[ServiceReading] = [OK]
    sent: list[float] = []

    async def read(spec: ProbeSpec, timeout: float) -> ServiceReading:
        sent.append(asyncio.get_running_loop().time())
        assert spec.kind == "http" and timeout == 0.5
        return answers[0]

    checks = _checks(tmp_path, read)
    checks.start()
    try:
        await asyncio.sleep(5.5)
        crm = checks.snapshot(5.5)[0]
        assert crm.state is HealthState.UP and crm.code == 200
        assert crm.cert_not_after == NOT_AFTER
        answers[0] = E500
        began = asyncio.get_running_loop().time()
        while checks.services["crm"].watch.state is not HealthState.DOWN:
            assert asyncio.get_running_loop().time() - began < 4.0, "not down in 4 s"
            await asyncio.sleep(0.1)
        took = asyncio.get_running_loop().time() - began
        # At most one interval, then two rechecks 500 ms apart (plus the 100 ms polling).
        assert took <= 1.0 + 2 * 0.5 + 0.2, took
        crm = checks.snapshot(0.0)[0]
        assert crm.code == 500 and "HTTP 500" in crm.reason
    finally:
        await checks.stop()
    assert len(sent) >= 8


@fast_clock
async def test_services_are_watched_without_telephony(tmp_path: Path) -> None:
    """A site with links only still watches (and tells) its services."""
    text = _links_config(tmp_path / "state") + SERVICES.replace(
        "\n     needed_by: [pbx]}", "}")
    async with daemon_with(tmp_path, _kernel(), text) as daemon:
        assert daemon.telephony is None
        await until(daemon, "wiki down",
                    lambda: service(latest(daemon), "wiki").state is HealthState.DOWN,
                    timeout=10, wiki=REFUSED)
        snap = latest(daemon)
        assert service(snap, "crm").state is HealthState.UP
        doc = status_document(snap)
        assert "trunks" not in doc
        assert {s["name"]: s["state"] for s in doc["services"]} == {"crm": "up",
                                                                    "wiki": "down"}
        assert metric(snap, "lifeline_service_up", service="wiki") == 0.0
