"""The telephony runtime without the network: probe results -> trunk health -> DID plan ->
edge plan, the edge signal from the SIP edge, and the DID lookup the API serves."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from controller.actuators.sipedge.document import PushResult
from controller.actuators.sipedge.plan import EdgePlan
from controller.config import parse_config
from controller.core.health import HealthState
from controller.core.snapshot import Snapshot, Tally
from controller.runtime.journal import Journal, read_events
from controller.runtime.trunks import Telephony
from exporters.http import make_app
from exporters.metrics import registry_for
from exporters.status import did_document
from probes.sample import ErrorKind, Sample
from probes.scheduler import next_probe_at
from probes.sip import SipResult, SipTarget

CONFIG = """
site: tel
links:
  - {name: fibre-a, interface: wan-a, gateway: 198.51.100.1, source: 198.51.100.2,
     probes: {targets: [{icmp: 192.0.2.1}]}}
route_groups: [{name: internet, links: [fibre-a]}]
trunks:
  - {name: a1, carrier: carrier-a, uri: "sip:192.0.2.21", interval: 200ms, timeout: 200ms,
     thresholds: {down_after: 3, hold_down: 2s}}
  - {name: a2, carrier: carrier-a, uri: "sip:192.0.2.22", interval: 200ms, timeout: 200ms,
     thresholds: {down_after: 3, hold_down: 2s}}
  - {name: b1, carrier: carrier-b, uri: "sip:192.0.2.23", interval: 200ms, timeout: 200ms,
     thresholds: {down_after: 3, hold_down: 2s}}
destinations:
  - {name: pbx, uri: "sip:192.0.2.130"}
  - {name: dr, uri: "sip:192.0.2.140"}
dids:
  - {numbers: "+390212345600-+390212345699", trunks: [a1, a2], destination: pbx,
     dr_destination: dr}
  - {numbers: "+390298765400-+390298765449", trunks: [b1], destination: pbx}
"""

OK = Sample(ok=True, rtt=0.01, code=200)
LOST = Sample.failure(ErrorKind.TIMEOUT)


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.plans: list[EdgePlan] = []
        self.counts: dict[str, int] = {}  # the edge's failed calls per trunk

    async def push(self, plan: EdgePlan) -> PushResult:
        self.plans.append(plan)
        return PushResult(ok=True, attempts=0, status=None, error=None, seconds=0.0)

    async def failures(self) -> dict[str, int]:
        return dict(self.counts)

    async def close(self) -> None:
        pass


@pytest.fixture
def tel(tmp_path: Path) -> Telephony:
    cfg = parse_config(CONFIG)
    return Telephony(cfg, Journal(tmp_path / "j.sqlite3"), Tally(), [Recorder()])


def snap(tel: Telephony, now: float = 0.0) -> Snapshot:
    """What the daemon would publish of ``tel`` (its telephony part)."""
    trunks, destinations, edges = tel.snapshot(now)
    counters, histograms = tel.tally.freeze()
    return Snapshot(site="tel", version="test", dry_run=False, taken_at=0.0, uptime=0.0,
                    trunks=trunks, destinations=destinations, edges=edges, plan=tel.plan,
                    destination_uris=tel.destination_uris, counters=counters,
                    histograms=histograms, telephony=True)


def lookup(tel: Telephony, number: str) -> dict[str, Any] | None:
    """What ``/api/v1/dids?number=`` answers now."""
    return did_document(snap(tel), number)


def feed(tel: Telephony, kind: str, name: str, result: Sample, start: float,
         rounds: int) -> float:
    peers = tel.trunks if kind == "trunk" else tel.destinations
    interval = peers[name].interval
    t = start
    for _ in range(rounds):
        tel.on_result(kind, peers[name], t, result)
        t += interval
    return t


def all_up(tel: Telephony) -> float:
    t = 0.0
    for name in tel.trunks:
        t = max(t, feed(tel, "trunk", name, OK, 0.0, 6))
    for name in tel.destinations:
        feed(tel, "destination", name, OK, 0.0, 6)
    return t


LINKS = {"fibre-a": HealthState.UP}


def trunk_state(tel: Telephony, name: str) -> HealthState:
    """Read through a call: mypy keeps an attribute chain narrowed across the feed() that
    changes it, and would call the assertion after it unreachable."""
    return tel.trunks[name].health.state


def test_every_did_routes_when_all_is_up(tel: Telephony) -> None:
    now = all_up(tel)
    plan = tel.decide(now, LINKS)
    assert plan.unroutable_numbers == 0
    assert plan.numbers_per_trunk["a1"] == 100 and plan.numbers_per_trunk["b1"] == 50
    found = lookup(tel, "+390212345601")
    assert found is not None and found["trunk"] == "a1" and found["destination"] == "pbx"
    assert lookup(tel, "+390212345700") is None


def test_a_dead_sbc_moves_its_dids_to_the_next_trunk(tel: Telephony) -> None:
    now = all_up(tel)
    now = feed(tel, "trunk", "a1", LOST, now, 3)
    plan = tel.decide(now, LINKS)
    assert plan.lookup("+390212345650") is not None
    found = lookup(tel, "+390212345650")
    assert found is not None and found["trunk"] == "a2"
    assert "a1" in found["reason"]
    edge = tel.to_edge_plan(plan)
    states = {t.name: t.enabled for t in edge.trunks}
    assert states == {"a1": False, "a2": True, "b1": True}
    groups = {t.name: t.group for t in edge.trunks}
    assert groups["a1"] == groups["a2"] != groups["b1"]  # one dispatcher set per carrier


def test_all_trunks_of_a_did_down_is_unroutable_and_journaled(tel: Telephony,
                                                             tmp_path: Path) -> None:
    now = all_up(tel)
    now = feed(tel, "trunk", "b1", LOST, now, 3)
    plan = tel.decide(now, LINKS)
    assert [str(r) for r in plan.unroutable] == ["+390298765400-+390298765449"]
    served = registry_for(lambda: snap(tel, now)).get_sample_value("lifeline_dids_unroutable")
    assert served == 50
    found = lookup(tel, "+390212345601")
    assert found is not None and found["trunk"] == "a1"
    errors = read_events(tmp_path / "j.sqlite3", kind="error")
    assert any("unroutable" in e.message for e in errors)


def test_dead_pbx_sends_inbound_calls_to_dr(tel: Telephony) -> None:
    now = all_up(tel)
    feed(tel, "destination", "pbx", LOST, now, 3)
    plan = tel.decide(now + 1.0, LINKS)
    found = lookup(tel, "+390212345601")
    assert found is not None and found["destination"] == "dr" and found["disaster_recovery"]
    edge = tel.to_edge_plan(plan)
    assert {r.destination_uri for r in edge.routes if r.first.startswith("+3902123")} == {
        "sip:192.0.2.140:5060;transport=udp"}


async def test_push_records_the_plan_and_counts(tel: Telephony) -> None:
    now = all_up(tel)
    plan = tel.decide(now, LINKS)
    await tel.push(plan)
    recorder = tel.edges[0]
    assert isinstance(recorder, Recorder) and len(recorder.plans) == 1
    assert len(recorder.plans[0].routes) == 2
    assert [(e.name, e.error, e.in_sync) for e in tel.snapshot(now)[2]] == [
        ("recorder", None, True)]


async def test_an_edge_that_stops_taking_the_same_plan_is_out_of_sync_until_it_takes_it(
        tel: Telephony, monkeypatch: pytest.MonkeyPatch) -> None:
    """A dead Kamailio holds nothing: the plan unchanged is no reason to say it is held."""
    now = all_up(tel)
    plan = tel.decide(now, LINKS)
    recorder = tel.edges[0]
    assert isinstance(recorder, Recorder)
    assert await tel.push(plan)

    async def refuse(plan: EdgePlan) -> PushResult:
        return PushResult(ok=False, attempts=1, status=None, error="connection refused",
                          seconds=0.0)

    with monkeypatch.context() as patch:
        patch.setattr(recorder, "push", refuse)
        assert not await tel.push(plan)
        (edge,) = tel.snapshot(now)[2]
        assert not edge.in_sync and edge.error is not None
    assert await tel.push(plan)
    assert [(e.in_sync, e.error) for e in tel.snapshot(now)[2]] == [(True, None)]


async def test_edge_failures_trip_a_trunk_its_dids_move_and_the_trip_is_journaled(
        tel: Telephony, tmp_path: Path) -> None:
    now = all_up(tel)
    edge = tel.edges[0]
    assert isinstance(edge, Recorder)
    edge.counts = {"a1": 5, "b1": 1, "elsewhere": 9}
    await tel.read_edge_failures(now)
    edge.counts["a1"] = 8  # 3 failed calls within the window
    await tel.read_edge_failures(now + 2)
    plan = tel.decide(now + 2, LINKS)
    found = lookup(tel, "+390212345650")
    assert found is not None and found["trunk"] == "a2"
    assert "OPTIONS answered but 3 calls failed at the SIP edge" in found["reason"]
    a1 = next(t for t in tel.snapshot(now + 2)[0] if t.name == "a1")
    assert a1.state is HealthState.UP and (a1.edge_tripped or "").startswith("3 calls failed")
    assert plan.numbers_per_trunk["a2"] == 100
    trips = [e for e in read_events(tmp_path / "j.sqlite3") if e.data.get("peer") == "edge"]
    assert len(trips) == 1 and "a1: 3 calls failed" in trips[0].message
    # The DIDs stay moved after the window, while the trip holds (60 s by default), though
    # every OPTIONS is answered.
    for name in tel.trunks:
        feed(tel, "trunk", name, OK, now, int(70 / 0.2))
    tel.decide(now + 40, LINKS)
    found = lookup(tel, "+390212345650")
    assert found is not None and found["trunk"] == "a2"
    tel.decide(now + 70, LINKS)
    found = lookup(tel, "+390212345650")
    assert found is not None and found["trunk"] == "a1"


async def test_dids_endpoint(tel: Telephony) -> None:
    tel.decide(all_up(tel), LINKS)
    app = make_app(lambda: snap(tel))
    async with TestClient(TestServer(app)) as client:
        ok = await client.get("/api/v1/dids", params={"number": "+390212345601"})
        assert ok.status == 200 and (await ok.json())["trunk"] == "a1"
        spaced = await client.get("/api/v1/dids?number=%20390212345601")  # '+' lost in a URL
        assert spaced.status == 200
        missing = await client.get("/api/v1/dids", params={"number": "+391111111111"})
        assert missing.status == 404
        assert (await client.get("/api/v1/dids")).status == 400


async def test_names_are_resolved_and_kept_as_tls_server_name() -> None:
    from probes.resolve import resolved
    from probes.sample import ProbeSpec, SipOptions

    literal = ProbeSpec("sip", "192.0.2.21", 5060)
    assert await resolved(literal) is literal
    # localhost comes from /etc/hosts: no query leaves the machine
    named = await resolved(ProbeSpec("sip", "localhost", 5061, sip=SipOptions("tls")))
    assert isinstance(named, ProbeSpec)
    assert named.host in ("127.0.0.1", "::1") and named.name == "localhost"
    assert SipTarget.from_spec(named).server_name == "localhost"
    # A failed lookup is a failed sample; the resolver is stubbed so no query leaves.
    loop = asyncio.get_running_loop()

    async def refuse(*_: object, **__: object) -> list[Any]:
        raise OSError(-2, "Name or service not known")

    original = loop.getaddrinfo
    loop.getaddrinfo = refuse  # type: ignore[method-assign]
    try:
        failed = await resolved(ProbeSpec("sip", "sbc1.carrier.example", 5060))
    finally:
        loop.getaddrinfo = original  # type: ignore[method-assign]
    assert isinstance(failed, Sample) and failed.error is ErrorKind.NETWORK
    assert "cannot resolve sbc1.carrier.example" in failed.detail
    # A resolver that never answers costs the timeout, not the verdict.

    async def hang(*_: object, **__: object) -> list[Any]:
        await asyncio.sleep(3600)
        return []

    loop.getaddrinfo = hang  # type: ignore[method-assign]
    try:
        slow = await resolved(ProbeSpec("sip", "sbc1.carrier.example", 5060), timeout=0.05)
    finally:
        loop.getaddrinfo = original  # type: ignore[method-assign]
    assert isinstance(slow, Sample) and slow.error is ErrorKind.TIMEOUT


def test_edge_plan_carries_registrations_with_the_password_from_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "carrier-b"
    secret.write_text("s3cret\n")
    text = CONFIG.replace(
        '  - {name: b1, carrier: carrier-b, uri: "sip:192.0.2.23",',
        f'  - {{name: b1, carrier: carrier-b, uri: "sip:192.0.2.23", register: '
        f'{{user: site1, domain: carrier-b.example, password_file: {secret}}},')
    tel = Telephony(parse_config(text), Journal(tmp_path / "j.sqlite3"), Tally(), [])
    plan = tel.decide(all_up(tel), LINKS)
    trunks = {t.name: t for t in tel.to_edge_plan(plan, ("b1",)).trunks}
    assert trunks["b1"].register_user == "site1"
    assert trunks["b1"].register_password == "s3cret"
    assert "s3cret" not in repr(trunks["b1"])
    assert trunks["a1"].register_user is None
    secret.unlink()  # unreadable now: the registration is still described, without password
    trunks = {t.name: t for t in tel.to_edge_plan(plan).trunks}
    assert trunks["b1"].register_user == "site1" and trunks["b1"].register_password is None


def test_trunks_leave_from_the_active_link_unless_pinned(tmp_path: Path) -> None:
    text = CONFIG.replace(
        "route_groups: [{name: internet, links: [fibre-a]}]",
        "  - {name: lte, interface: wwan0, gateway: 100.64.0.1,\n"
        "     probes: {targets: [{icmp: 192.0.2.1}]}}\n"
        "route_groups: [{name: internet, links: [fibre-a, lte]}]",
    ).replace('uri: "sip:192.0.2.23",', 'uri: "sip:192.0.2.23", links: [fibre-a], pinned: true,')
    tel = Telephony(parse_config(text), Journal(tmp_path / "j.sqlite3"), Tally(), [])
    plan = tel.decide(all_up(tel), LINKS)
    # lte's address was found on its interface at start (the daemon's sources, not config).
    sources = {"fibre-a": "198.51.100.2", "lte": "100.64.0.7"}
    on_lte = {t.name: t.source for t in tel.to_edge_plan(plan, (), sources, "lte").trunks}
    assert on_lte == {"a1": "100.64.0.7", "a2": "100.64.0.7", "b1": "198.51.100.2"}
    on_fibre = {t.name: t.source for t in tel.to_edge_plan(plan, (), sources, "fibre-a").trunks}
    assert set(on_fibre.values()) == {"198.51.100.2"}
    # No route applied yet: trunks that follow it have no source; the pinned one keeps its.
    none = {t.name: t.source for t in tel.to_edge_plan(plan, (), sources, None).trunks}
    assert none == {"a1": None, "a2": None, "b1": "198.51.100.2"}


def test_next_probe_keeps_the_cadence_while_answered_or_down() -> None:
    def at(planned: float, sent: float, suspect: bool, down: bool) -> float:
        return next_probe_at(planned, sent, suspect=suspect, down=down, interval=1.0,
                             recheck=0.2)

    assert at(10.0, 10.003, False, False) == 11.0
    assert at(10.0, 10.003, True, True) == 11.0  # down: the normal pace
    # The loop fell behind by more than an interval: re-anchored, no burst to catch up.
    assert at(10.0, 12.5, False, False) == 13.5
    # Suspect (lost, or the newest still unanswered) and not down: recheck soon.
    assert at(10.0, 10.003, True, False) == pytest.approx(10.203)


@given(planned=st.floats(0, 1e6), late=st.floats(0, 100), suspect=st.booleans(),
       down=st.booleans(), interval=st.floats(0.01, 60), share=st.floats(0.01, 1.0))
def test_next_probe_comes_after_the_last_and_within_an_interval(
        planned: float, late: float, suspect: bool, down: bool, interval: float,
        share: float) -> None:
    recheck = interval * share
    sent = planned + late
    nxt = next_probe_at(planned, sent, suspect=suspect, down=down, interval=interval,
                        recheck=recheck)
    assert sent < nxt <= sent + interval * 1.001
    if suspect and not down:
        assert nxt == sent + recheck


async def test_rechecks_overlap_an_unanswered_options_and_stop_once_down(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real probe loop with a stand-in for the network: a1's SBC dies; the rechecks go
    out while the first lost OPTIONS is still unanswered, and a down trunk is polled at the
    normal pace again. Bounds are loose (real event-loop time)."""
    loop = asyncio.get_running_loop()
    interval, timeout, recheck = 0.5, 0.4, 0.1
    dies_at = loop.time() + 1.2
    sent: list[float] = []

    answered = SipResult(reachable=True, code=200, rtt=0.01)

    async def fake_options(target: SipTarget, *, timeout: float) -> SipResult:
        if target.host != "192.0.2.21":
            return answered
        now = loop.time()
        sent.append(now)
        if now < dies_at:
            await asyncio.sleep(0.005)
            return answered
        await asyncio.sleep(timeout)
        return SipResult(reachable=False, error=ErrorKind.TIMEOUT)

    monkeypatch.setattr("probes.sip.options", fake_options)
    tel = Telephony(parse_config(CONFIG), Journal(tmp_path / "j.sqlite3"), Tally(), [])
    peer = tel.trunks["a1"]
    peer.interval, peer.timeout, peer.recheck = interval, timeout, recheck
    tel.note_paths(loop.time(), "fibre-a", LINKS)  # the route is there from the start
    tel.start(asyncio.Event())
    try:
        async with asyncio.timeout(8):
            while peer.health.state is not HealthState.DOWN:
                await asyncio.sleep(0.02)
        down_at = loop.time()
        await asyncio.sleep(3 * interval)
    finally:
        await tel.stop()
    healthy = [t for t in sent if t < dies_at]
    assert len(healthy) <= 1.2 / interval + 2  # no rechecks while answered
    first, second, third = [t for t in sent if t >= dies_at][:3]
    assert third - first < timeout  # the third went out before the first timed out
    assert second - first >= recheck * 0.9
    assert down_at - dies_at <= interval + timeout + 2 * recheck + 0.3
    after = [t for t in sent if t > down_at + 0.05]
    assert after and all(b - a >= interval * 0.9 for a, b in itertools.pairwise(after))


async def test_edge_failures_around_an_outage_seen_by_options_do_not_trip(
        tel: Telephony) -> None:
    """Calls in flight to an SBC that died fail at the edge too; once OPTIONS call the trunk
    down, those failures are explained, so they cannot hold it off after it recovers."""
    now = all_up(tel)
    edge = tel.edges[0]
    assert isinstance(edge, Recorder)
    edge.counts = {"a1": 0}
    await tel.read_edge_failures(now)
    edge.counts = {"a1": 4}
    await tel.read_edge_failures(now + 0.5)
    assert tel.trunks["a1"].edge_signal.verdict(now + 0.5)[0]
    now = feed(tel, "trunk", "a1", LOST, now + 0.5, 3)  # OPTIONS see it die
    assert trunk_state(tel, "a1") is HealthState.DOWN
    assert tel.trunks["a1"].edge_signal.verdict(now) == (False, "")
    edge.counts = {"a1": 9}  # calls that were in flight, read late
    await tel.read_edge_failures(now)
    now = feed(tel, "trunk", "a1", OK, now, int(2.2 / 0.2))  # back after its 2 s hold-down
    assert trunk_state(tel, "a1") is HealthState.UP
    await tel.read_edge_failures(now)
    for name in ("a2", "b1"):
        feed(tel, "trunk", name, OK, now - 2.4, 13)
    tel.decide(now, LINKS)
    found = lookup(tel, "+390212345650")
    assert found is not None and found["trunk"] == "a1"
