"""A calm start: OPTIONS that fail only because lifeline has not installed a route yet are no
evidence against a carrier, so a start neither takes trunks down nor pages "unroutable".

First the pure rule (controller.core.peerpath), then the telephony runtime fed by hand with
times of our choosing, then the daemon's real loop on a kernel in memory under a fast clock
(the patterns of test_telephony and test_runtime).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.actuators.netlink import Netlink
from controller.config import parse_config
from controller.core.didplan import DidEntry, TrunkView, compute_plan
from controller.core.e164 import parse_range
from controller.core.health import HealthState
from controller.core.peerpath import PeerPath, counts, follow, judge_time, pending
from controller.core.snapshot import Tally
from controller.runtime.daemon import Daemon
from controller.runtime.journal import Journal, read_events
from controller.runtime.trunks import Peer, Telephony
from exporters.metrics import registry_for
from probes.sip import SipResult
from tests.unit.daemonloop import looping
from tests.unit.fakenetlink import FakeKernel
from tests.unit.test_runtime import ALIVE, GW, _kernel, fast_clock
from tests.unit.test_runtime import _config as _runtime_config
from tests.unit.test_telephony import CONFIG, LOST, OK, Recorder, feed, lookup, snap

UP, DOWN, UNKNOWN = HealthState.UP, HealthState.DOWN, HealthState.UNKNOWN
A_RANGE, B_RANGE = "+390212345600-+390212345699", "+390298765400-+390298765449"


# -- the rule ---------------------------------------------------------------------------------


def test_no_route_or_a_link_not_proven_up_is_no_path() -> None:
    assert follow(None, 1.0, None, {}) == PeerPath(None, None, "no route applied yet")
    unknown = follow(None, 1.0, "fibre-a", {"fibre-a": UNKNOWN})
    assert not unknown.exists and unknown.why == "its link fibre-a is not proven up yet"
    down = follow(None, 1.0, "fibre-a", {"fibre-a": DOWN})
    assert down.why == "its link fibre-a is down" and down.link_down and not unknown.link_down
    assert not follow(None, 1.0, "fibre-a", {}).exists  # a link nobody reported
    dark = follow(None, 1.0, None, {"fibre-a": DOWN, "fibre-b": DOWN})
    assert dark == PeerPath(None, None, "every link is down", link_down=True)
    assert not follow(None, 1.0, None, {"fibre-a": DOWN, "fibre-b": UNKNOWN}).link_down


def test_a_path_keeps_its_start_while_it_exists_and_across_a_failover() -> None:
    first = follow(None, 1.0, "fibre-a", {"fibre-a": UP})
    assert first == PeerPath("fibre-a", 1.0)
    later = follow(first, 5.0, "fibre-a", {"fibre-a": HealthState.DEGRADED})
    assert later.since == 1.0
    moved = follow(later, 6.0, "fibre-b", {"fibre-a": DOWN, "fibre-b": UP})
    assert moved == PeerPath("fibre-b", 1.0)
    gone = follow(moved, 7.0, "fibre-b", {"fibre-b": DOWN})
    assert not gone.exists
    assert follow(gone, 9.0, "fibre-b", {"fibre-b": UP}).since == 9.0  # a new path


@pytest.mark.parametrize(("ok", "judged", "sent_at", "path", "expected"), [
    (True, False, 0.0, None, True),  # an answer proves path and peer
    (False, True, 0.0, None, True),  # a judged peer counts everything, as before
    (False, False, 0.0, None, False),  # never judged, no path noted yet
    (False, False, 3.0, PeerPath(None, None, "no route applied yet"), False),
    (False, False, 1.9, PeerPath("fibre-a", 2.0), False),  # sent before the path existed
    (False, False, 2.0, PeerPath("fibre-a", 2.0), True),
    (False, False, 30.0, PeerPath(None, None, "no route applied yet"), True),  # patience out
    (False, False, 99.0, PeerPath("lte", None, "its link lte is down", link_down=True), False),
])
def test_which_probes_count(ok: bool, judged: bool, sent_at: float, path: PeerPath | None,
                            expected: bool) -> None:
    assert counts(ok, judged, sent_at, path, patience_end=30.0) is expected


paths = st.one_of(
    st.none(),
    st.builds(PeerPath, st.sampled_from([None, "fibre-a"]),
              st.one_of(st.none(), st.floats(0, 100)), st.just(""), st.booleans()))
times = st.floats(0, 100)


@given(ok=st.booleans(), judged=st.booleans(), sent_at=times, later=times, path=paths,
       patience=st.one_of(st.none(), times))
def test_a_counted_probe_is_followed_by_counted_ones_and_a_verdict_counts_all(
        ok: bool, judged: bool, sent_at: float, later: float, path: PeerPath | None,
        patience: float | None) -> None:
    assert counts(ok, True, sent_at, path, patience) and counts(True, judged, sent_at, path,
                                                                 patience)
    if counts(ok, judged, sent_at, path, patience):
        assert counts(ok, judged, max(sent_at, later), path, patience)


def test_nothing_counts_against_a_peer_before_any_path_is_noted() -> None:
    assert not counts(False, False, 1e9, None, patience_end=None)


def test_a_peer_is_pending_until_judged_or_given_the_time_to_be() -> None:
    judging = judge_time(rise=5, interval=0.2, timeout=0.2)
    assert judging == pytest.approx(2.8)
    path = PeerPath("fibre-a", 10.0)
    assert pending(False, None, 1.0, judging, 30.0)  # no path noted yet
    assert pending(False, PeerPath(None, None, "no route applied yet"), 29.0, judging, 30.0)
    assert pending(False, path, 12.7, judging, 30.0)
    assert not pending(False, path, 12.9, judging, 30.0)  # had its chance: a flaky one
    assert not pending(True, path, 10.1, judging, 30.0)  # judged
    assert not pending(False, None, 30.0, judging, 30.0)  # patience out
    assert not pending(False, None, 1.0, judging, None)  # nothing noted: no start-up hold
    gone = PeerPath("lte", None, "its link lte is down", link_down=True)
    assert not pending(False, gone, 1.0, judging, 30.0)  # no path is coming soon


def test_the_hold_keeps_only_the_ranges_a_waiting_trunk_leads() -> None:
    """Ranges [a1, c1] and [c1, d1], a1 still waiting, c1 and d1 up: the first range stays
    on a1, the second takes c1 as it would anyway (a global hold would have sent it to d1
    and back)."""
    entries = (DidEntry(parse_range("+390212345600-+390212345699"), ("a1", "c1"), "pbx"),
               DidEntry(parse_range("+390298765400-+390298765449"), ("c1", "d1"), "pbx"))
    views = {"a1": TrunkView("a1", UNKNOWN), "c1": TrunkView("c1", UP),
             "d1": TrunkView("d1", UP)}
    first, second = compute_plan(entries, views, {}, {}, frozenset({"a1"})).decisions
    assert first.trunk == "a1" and first.reason == (
        "a1 unknown; health not known yet, first capable trunk (start)")
    assert first.fallback == ("c1",)
    assert second.trunk == "c1" and second.fallback == ("d1",)
    # Nothing waits for a trunk in maintenance or down: its range is left at once.
    views["a1"] = TrunkView("a1", UNKNOWN, maintenance="swap")
    assert compute_plan(entries, views, {}, {}, frozenset({"a1"})).decisions[0].trunk == "c1"
    views["a1"] = TrunkView("a1", HealthState.DOWN)
    assert compute_plan(entries, views, {}, {}, frozenset({"a1"})).decisions[0].trunk == "c1"
    # A waiting trunk after the choice holds nothing.
    assert compute_plan(entries, {**views, "a1": TrunkView("a1", UP)}, {}, {},
                        frozenset({"c1"})).decisions[0].trunk == "a1"


@given(st.data())
def test_a_held_range_is_on_its_first_trunk_not_down(data: st.DataObject) -> None:
    names = ["t1", "t2", "t3", "t4"]
    order = tuple(data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=4,
                                     unique=True)))
    views = {n: TrunkView(n, data.draw(st.sampled_from(list(HealthState))),
                          edge_tripped=data.draw(st.booleans())) for n in names}
    waiting = frozenset(data.draw(st.sets(st.sampled_from(names))))
    entry = DidEntry(parse_range("+390212345600-+390212345699"), order, "pbx")
    (held,) = compute_plan((entry,), views, {}, {}, waiting).decisions
    (free,) = compute_plan((entry,), views, {}, {}).decisions
    if held.trunk != free.trunk:
        # Held: the first trunk not down in order, and a waiting one comes before the
        # free choice (or is the held choice itself).
        assert held.trunk is not None and free.trunk is not None
        up_to = order.index(free.trunk)
        assert any(n in waiting and views[n].state is not HealthState.DOWN
                   and not views[n].edge_tripped for n in order[:up_to])
        assert held.trunk == next(n for n in order if views[n].state is not HealthState.DOWN)
    assert (held.trunk is None) == (free.trunk is None)  # the hold never makes a range unroutable


# -- the telephony runtime, fed by hand ---------------------------------------------------------


LINKS_UP = {"fibre-a": UP}


@pytest.fixture
def tel(tmp_path: Path) -> Telephony:
    return Telephony(parse_config(CONFIG), Journal(tmp_path / "j.sqlite3"), Tally(),
                     [Recorder()])


def state(tel: Telephony, kind: str, name: str) -> HealthState:
    peers = tel.trunks if kind == "trunk" else tel.destinations
    return peers[name].health.state


def fail_everything(tel: Telephony, start: float, rounds: int) -> float:
    """Every trunk and destination misses ``rounds`` OPTIONS from ``start`` on."""
    t = start
    for name in tel.trunks:
        t = max(t, feed(tel, "trunk", name, LOST, start, rounds))
    for name in tel.destinations:
        feed(tel, "destination", name, LOST, start, rounds)
    return t


def test_failures_before_the_route_exists_leave_every_peer_unknown_and_nothing_unroutable(
        tel: Telephony, tmp_path: Path) -> None:
    """The start as it was: OPTIONS go out before the first route; on the old code every
    trunk went down and both ranges were journaled unroutable."""
    now = fail_everything(tel, 0.0, 10)
    tel.note_paths(now, None, {"fibre-a": UNKNOWN})
    plan = tel.decide(now, {"fibre-a": UNKNOWN})
    assert {state(tel, "trunk", n) for n in tel.trunks} == {UNKNOWN}
    assert {state(tel, "destination", n) for n in tel.destinations} == {UNKNOWN}
    assert plan.unroutable == ()
    # The configured order while nothing is known, and no detour to the DR destination.
    found = lookup(tel, "+390212345601")
    assert found is not None and (found["trunk"], found["destination"]) == ("a1", "pbx")
    served = registry_for(lambda: snap(tel, now)).get_sample_value("lifeline_dids_unroutable")
    assert served == 0
    journal = read_events(tmp_path / "j.sqlite3", 100)
    assert [e for e in journal if e.kind in ("error", "transition")] == []
    # Not lost from sight: counted as responses, the last answer, and the status says why.
    s = snap(tel, now)
    assert s.count("lifeline_trunk_responses_total", ("a1", "timeout")) == 10
    a1 = next(t for t in s.trunks if t.name == "a1")
    assert a1.state is UNKNOWN
    assert a1.reason == ("a1: 10 failed probe(s) not counted, sent before its path existed "
                         "(no route applied yet)")


def test_once_the_path_exists_failures_take_a_trunk_down_as_before(
        tel: Telephony, tmp_path: Path) -> None:
    now = fail_everything(tel, 0.0, 5)
    tel.note_paths(now, "fibre-a", LINKS_UP)  # the first route, via a link proven up
    for name in ("a1", "a2"):
        feed(tel, "trunk", name, OK, now, 6)
    feed(tel, "trunk", "b1", LOST, now, 3)  # carrier B's SBC is really dead
    plan = tel.decide(now + 1.2, LINKS_UP)
    assert state(tel, "trunk", "b1") is DOWN and state(tel, "trunk", "a1") is UP
    assert [str(r) for r in plan.unroutable] == [B_RANGE]
    errors = read_events(tmp_path / "j.sqlite3", kind="error")
    assert [e.message for e in errors] == [f"{B_RANGE} unroutable: no capable trunk healthy"]


def test_a_failure_sent_before_the_path_existed_but_answered_after_is_not_counted(
        tel: Telephony) -> None:
    tel.note_paths(1.0, "fibre-a", LINKS_UP)
    peer = tel.trunks["b1"]
    for sent_at in (0.6, 0.8, 0.99):  # timed out after the route came
        tel.on_result("trunk", peer, sent_at, LOST)
    assert state(tel, "trunk", "b1") is UNKNOWN and peer.uncounted == 3
    feed(tel, "trunk", "b1", LOST, 1.0, 3)
    assert state(tel, "trunk", "b1") is DOWN


def test_answers_count_before_the_path_exists(tel: Telephony) -> None:
    """A pinned or LAN peer may answer before lifeline's route: that is proof enough."""
    feed(tel, "trunk", "a1", OK, 0.0, 6)
    assert state(tel, "trunk", "a1") is UP


def test_a_trunk_proven_up_goes_down_as_before_also_without_a_path(tel: Telephony) -> None:
    tel.note_paths(0.0, "fibre-a", LINKS_UP)
    now = feed(tel, "trunk", "a1", OK, 0.0, 6)
    assert state(tel, "trunk", "a1") is UP
    tel.note_paths(now, None, {"fibre-a": DOWN})  # the route is gone: a1 was judged, counts
    feed(tel, "trunk", "a1", LOST, now, 3)
    assert state(tel, "trunk", "a1") is DOWN


def _pinned_to_lte(tmp_path: Path, sbc: str) -> Telephony:
    """CONFIG with a second link, lte, and the trunk of SBC ``sbc`` pinned to it."""
    text = CONFIG.replace(
        "route_groups: [{name: internet, links: [fibre-a]}]",
        "  - {name: lte, interface: wwan0, gateway: 100.64.0.1,\n"
        "     probes: {targets: [{icmp: 192.0.2.1}]}}\n"
        "route_groups: [{name: internet, links: [fibre-a, lte]}]",
    ).replace(f'uri: "sip:{sbc}",', f'uri: "sip:{sbc}", links: [lte], pinned: true,')
    return Telephony(parse_config(text), Journal(tmp_path / "j.sqlite3"), Tally(), [])


def test_a_pinned_trunk_waits_for_its_own_link(tmp_path: Path) -> None:
    tel = _pinned_to_lte(tmp_path, "192.0.2.23")
    links = {"fibre-a": UP, "lte": UNKNOWN}
    tel.note_paths(0.0, "fibre-a", links)  # the route is there, lte is not proven up yet
    now = feed(tel, "trunk", "b1", LOST, 0.0, 5)
    assert state(tel, "trunk", "b1") is UNKNOWN
    assert "its link lte is not proven up yet" in snap(tel, now).trunks[2].reason
    feed(tel, "trunk", "a1", LOST, 0.0, 3)  # follows the route: counts
    assert state(tel, "trunk", "a1") is DOWN
    tel.note_paths(now, "fibre-a", {**links, "lte": UP})
    feed(tel, "trunk", "b1", LOST, now, 3)
    assert state(tel, "trunk", "b1") is DOWN


def test_nothing_waits_for_a_first_trunk_whose_link_is_down(tmp_path: Path) -> None:
    """a1 is pinned to lte, which is down: a2, up, takes the range at once."""
    tel = _pinned_to_lte(tmp_path, "192.0.2.21")
    links = {"fibre-a": UP, "lte": DOWN}
    tel.note_paths(0.0, "fibre-a", links)
    now = feed(tel, "trunk", "a2", OK, 0.0, 6)
    tel.decide(now, links)
    assert state(tel, "trunk", "a1") is UNKNOWN
    assert trunk_of(tel, "+390212345601") == "a2"


def test_a_destination_waits_for_the_route_too(tel: Telephony) -> None:
    """A DR platform is across the internet: its OPTIONS fail until the first route."""
    now = feed(tel, "destination", "dr", LOST, 0.0, 5)
    assert state(tel, "destination", "dr") is UNKNOWN
    tel.note_paths(now, "fibre-a", LINKS_UP)
    feed(tel, "destination", "dr", LOST, now, 3)
    assert state(tel, "destination", "dr") is DOWN


def trunk_of(tel: Telephony, number: str) -> str | None:
    found = lookup(tel, number)
    assert found is not None
    return cast(str | None, found["trunk"])


def test_at_start_a_range_keeps_its_first_trunk_until_that_one_is_judged(
        tel: Telephony, tmp_path: Path) -> None:
    """a2 happens to be judged up before a1: the range stays on a1 (no move and back)."""
    tel.note_paths(0.0, "fibre-a", LINKS_UP)
    now = feed(tel, "trunk", "a2", OK, 0.0, 6)
    tel.decide(now, LINKS_UP)
    assert state(tel, "trunk", "a2") is UP and state(tel, "trunk", "a1") is UNKNOWN
    assert trunk_of(tel, "+390212345601") == "a1"
    found = lookup(tel, "+390212345601")
    assert found is not None and "first capable trunk" in found["reason"]
    now = feed(tel, "trunk", "a1", OK, now, 6)
    tel.decide(now, LINKS_UP)
    assert trunk_of(tel, "+390212345601") == "a1"
    decisions = read_events(tmp_path / "j.sqlite3", 100, "decision")
    assert [e.data["trunk"] for e in decisions] == ["a1", "b1"]  # the first plan only


def test_at_start_a_dead_first_trunk_is_left_at_once(tel: Telephony) -> None:
    tel.note_paths(0.0, "fibre-a", LINKS_UP)
    now = feed(tel, "trunk", "a2", OK, 0.0, 6)
    feed(tel, "trunk", "a1", LOST, 0.0, 3)
    tel.decide(now, LINKS_UP)
    assert trunk_of(tel, "+390212345601") == "a2"


def test_a_first_trunk_that_stays_unknown_holds_its_range_only_for_a_while(
        tel: Telephony) -> None:
    """A flaky a1 (one OPTIONS in three lost: never 5 answers in a row, never 3 losses,
    under 50 % loss) is not waited for forever."""
    tel.note_paths(0.0, "fibre-a", LINKS_UP)
    now = feed(tel, "trunk", "a2", OK, 0.0, 6)
    flaky = tel.trunks["a1"]
    for k in range(15):
        tel.on_result("trunk", flaky, k * 0.2, LOST if k % 3 == 2 else OK)
    tel.decide(now, LINKS_UP)
    assert trunk_of(tel, "+390212345601") == "a1"
    tel.decide(3.0, LINKS_UP)  # past a1's judge time (2.8 s after its path came)
    assert state(tel, "trunk", "a1") is UNKNOWN
    assert trunk_of(tel, "+390212345601") == "a2"


def test_patience_ends_and_no_path_at_all_is_then_worth_a_page(
        tel: Telephony, tmp_path: Path) -> None:
    """A route lifeline never applies (a foreign one it may not replace, a dry run): 30 s
    after the first noted paths, failures count again."""
    tel.note_paths(0.0, None, {"fibre-a": UP})
    feed(tel, "trunk", "b1", LOST, 0.0, 150)
    assert state(tel, "trunk", "b1") is UNKNOWN
    now = feed(tel, "trunk", "b1", LOST, 30.0, 3)
    assert state(tel, "trunk", "b1") is DOWN
    tel.decide(now, {"fibre-a": UP})
    errors = read_events(tmp_path / "j.sqlite3", kind="error")
    assert [e.message for e in errors] == [f"{B_RANGE} unroutable: no capable trunk healthy"]


def test_links_slow_to_come_up_at_boot_do_not_run_out_the_trunks_patience(
        tel: Telephony, tmp_path: Path) -> None:
    """fibre-a is down for 40 s after boot (a slow PPPoE): its DIDs are rightly unroutable
    meanwhile (the link's fault, paged for as such), but the trunks are not judged by
    OPTIONS that could not leave, so they are up as soon as the route is."""
    dark = {"fibre-a": DOWN}
    t = 0.0
    while t < 40.0:
        tel.note_paths(t, None, dark)
        feed(tel, "trunk", "a1", LOST, t, 5)
        t += 1.0
    plan = tel.decide(t, dark)
    assert state(tel, "trunk", "a1") is UNKNOWN and len(plan.unroutable) == 2
    tel.note_paths(t, "fibre-a", LINKS_UP)
    now = feed(tel, "trunk", "a1", OK, t, 6)
    assert state(tel, "trunk", "a1") is UP
    tel.decide(now, LINKS_UP)
    assert trunk_of(tel, "+390212345601") == "a1"


def registration(peer: Peer) -> SipResult | None:
    """Read through a call, so mypy does not keep the narrowing across the awaits."""
    return peer.registered


async def test_a_register_check_that_fails_before_the_path_is_not_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """REGISTER from a site without a route fails too: still unknown, nothing journaled;
    the first check after the route is reported."""
    monkeypatch.setenv("B1_PASSWORD", "s3cret")
    monkeypatch.setattr("controller.runtime.trunks.REGISTER_RETRY", 0.01)
    text = CONFIG.replace(
        '  - {name: b1, carrier: carrier-b, uri: "sip:192.0.2.23",',
        '  - {name: b1, carrier: carrier-b, uri: "sip:192.0.2.23", register: '
        '{user: site1, domain: carrier-b.example, password_env: B1_PASSWORD},')
    tel = Telephony(parse_config(text), Journal(tmp_path / "j.sqlite3"), Tally(), [])
    checks: list[float] = []
    loop = asyncio.get_running_loop()

    async def refused(*_: object, **__: object) -> SipResult:
        checks.append(loop.time())
        return SipResult(reachable=False, detail="network unreachable")

    monkeypatch.setattr("controller.runtime.trunks.register_check", refused)
    peer = tel.trunks["b1"]
    task = asyncio.create_task(tel._register_loop(peer))
    try:
        async with asyncio.timeout(5):
            while len(checks) < 3:
                await asyncio.sleep(0.01)
            assert registration(peer) is None
            assert read_events(tmp_path / "j.sqlite3", 100) == []
            tel.note_paths(loop.time(), "fibre-a", LINKS_UP)
            while registration(peer) is None:
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    result = registration(peer)
    assert result is not None and not result.reachable
    [event] = read_events(tmp_path / "j.sqlite3", 100)
    assert event.message == "b1: not registered: network unreachable"


# -- the daemon's real loop, on a kernel in memory ---------------------------------------------


def _config(state_dir: Path) -> str:
    """test_runtime's two-fibre daemon config plus this module's trunks, DIDs and edge."""
    telephony = CONFIG.split("route_groups: [{name: internet, links: [fibre-a]}]\n", 1)[1]
    return _runtime_config(state_dir) + telephony


@contextlib.asynccontextmanager
async def daemon_on(tmp_path: Path, kernel: FakeKernel) -> AsyncIterator[Daemon]:
    """The real loop with trunks, destinations and DIDs, no probes (the test feeds them)."""
    path = tmp_path / "lifeline.yaml"
    path.write_text(_config(tmp_path / "state"))
    adapter = cast(Callable[[str | None], Netlink], kernel.adapter)
    daemon = Daemon(parse_config(path.read_text()), netlink=adapter, start_probes=False,
                    config_path=path)
    async with looping(daemon):
        yield daemon


async def start_like_a_site(daemon: Daemon, kernel: FakeKernel, seconds: float,
                            dead: tuple[str, ...] = ()) -> list[float]:
    """Both links answer from the first round; every SIP peer's OPTIONS fail while the
    kernel has no default route (as on a real site), then answer, except the ``dead``
    ones. Returns the unroutable numbers of the snapshot after each round."""
    loop = asyncio.get_running_loop()
    tel = daemon.telephony
    assert tel is not None
    seen: list[float] = []
    for _ in range(round(seconds / 0.2)):
        now = loop.time()
        for name, rt in daemon.routing.links.items():
            daemon.routing.on_round(name, now, [ALIVE] * len(rt.specs))
        routed = bool(kernel.default_via())
        for kind, peers in (("trunk", tel.trunks), ("destination", tel.destinations)):
            for name, peer in peers.items():
                ok = routed and name not in dead and name != "dr"  # nobody runs a DR here
                tel.on_result(kind, peer, now, OK if ok else LOST)
        await asyncio.sleep(0.2)
        assert daemon.latest is not None
        plan = daemon.latest.plan  # None before the first cycle: no gauge served yet
        seen.append(0 if plan is None else plan.unroutable_numbers)
    return seen


@fast_clock
async def test_a_start_pages_nothing_and_moves_no_did(tmp_path: Path) -> None:
    """Fails on the code before the calm start: every trunk went down before the route."""
    kernel = _kernel()
    async with daemon_on(tmp_path, kernel) as daemon:
        seen = await start_like_a_site(daemon, kernel, 6.0)
        assert kernel.default_via() == [GW["fibre-a"]]
        tel = daemon.telephony
        assert tel is not None
        assert {p.health.state for p in tel.trunks.values()} == {UP}
        assert max(seen) == 0, seen
    events = read_events(daemon.journal.path, 500)
    assert [e.message for e in events if e.kind == "error"] == []
    downs = [e for e in events if e.kind == "transition" and e.data.get("new") == "down"]
    assert [e.subject for e in downs] == ["dr"]  # the DR destination nobody runs, after the route
    moved = [e for e in events if e.kind == "decision" and e.subject == "dids"
             and e.data.get("trunk") not in ("a1", "b1")]
    assert moved == []


@fast_clock
async def test_a_trunk_dead_at_start_still_goes_down_and_its_range_is_unroutable(
        tmp_path: Path) -> None:
    kernel = _kernel()
    async with daemon_on(tmp_path, kernel) as daemon:
        seen = await start_like_a_site(daemon, kernel, 6.0, dead=("b1",))
        tel = daemon.telephony
        assert tel is not None and tel.trunks["b1"].health.state is DOWN
        assert seen[-1] == 50
    errors = read_events(daemon.journal.path, 500, "error")
    assert [e.message for e in errors] == [f"{B_RANGE} unroutable: no capable trunk healthy"]


@fast_clock
async def test_a_restart_counts_failures_once_the_adopted_routes_link_is_proven_up(
        tmp_path: Path) -> None:
    """The route stays at stop and is adopted at start: the path is there as soon as its
    link is proven up again (rise rounds), so a trunk that died meanwhile is found at once."""
    kernel = _kernel()
    async with daemon_on(tmp_path, kernel) as first:
        await start_like_a_site(first, kernel, 3.0)
    async with daemon_on(tmp_path, kernel) as second:
        assert second.routing.applied_link() == "fibre-a"  # adopted, before any round
        seen = await start_like_a_site(second, kernel, 3.0, dead=("a1",))
        tel = second.telephony
        assert tel is not None and tel.trunks["a1"].health.state is DOWN
        assert max(seen) == 0  # a2 carries its range
        found = tel.plan.lookup("+390212345601") if tel.plan is not None else None
        assert found is not None and found.trunk == "a2"
