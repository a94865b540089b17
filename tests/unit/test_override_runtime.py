"""The operator's overrides at runtime: the book on disk (restart, migration from the old
maintenance.json, an unreadable file, a write that fails), and the daemon's real loop on a
kernel in memory with a fast clock: a forced group switches its route and goes back when
the override lapses, a forced link that dies is left, a pinned range moves to its trunk or
to DR, and overrides survive a restart of the daemon."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import cast

import pytest

from controller.actuators.netlink import Netlink
from controller.config import parse_config
from controller.core.health import HealthState
from controller.core.overrides import MAX_DURATION, Override
from controller.core.snapshot import Snapshot
from controller.runtime.daemon import Daemon
from controller.runtime.journal import Journal, read_events
from controller.runtime.overridebook import MIGRATED_BY, OverrideBook
from controller.runtime.overrides import Overrides
from exporters.metrics import registry_for
from exporters.status import status_document
from exporters.statusview import render_status
from tests.unit.daemonloop import looping
from tests.unit.fakenetlink import FakeKernel
from tests.unit.test_runtime import ALIVE, GW, LOST, _kernel, fast_clock
from tests.unit.test_runtime import _config as _links_config
from tests.unit.test_telephony import CONFIG
from tests.unit.test_telephony import LOST as SIP_LOST
from tests.unit.test_telephony import OK as SIP_OK

T0 = 1_800_000_000.0  # the wall clock at loop time 0
ROME = "+390212345600-+390212345699"


def ov(target: str = "trunk:a1", until: float = T0 + 60) -> Override:
    return Override("maintenance", target, None, "swap", "alice", T0, until)


# -- the book --------------------------------------------------------------------------------
def test_overrides_survive_a_new_book_and_lapse_on_time(tmp_path: Path) -> None:
    path = tmp_path / "state" / "overrides.json"
    book = OverrideBook(path)
    assert book.put(ov()) and book.put(ov("link:fibre-a", T0 + 30))
    again = OverrideBook(path)
    assert again.all() == (ov("link:fibre-a", T0 + 30), ov()) and again.problem is None
    assert again.lapse(T0 + 29.9) == ()
    assert again.lapse(T0 + 30) == (ov("link:fibre-a", T0 + 30),)
    assert OverrideBook(path).all() == (ov(),)
    assert again.remove("maintenance", "trunk:a1") == ov()
    assert again.remove("maintenance", "trunk:a1") is None
    assert OverrideBook(path).all() == ()
    assert not (path.parent / "overrides.json.tmp").exists()


def test_an_unreadable_file_is_moved_aside_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "overrides.json"
    for junk in ("{not json", '{"overrides": [{"kind": "reboot", "target": "x"}]}', "[]"):
        path.write_text(junk)
        book = OverrideBook(path)
        assert book.all() == () and "cannot read" in (book.problem or "")
        assert (tmp_path / "overrides.json.unreadable").read_text() == junk
        assert not path.exists()
    assert book.put(ov()) and book.problem is None and OverrideBook(path).all() == (ov(),)


def test_a_write_that_fails_holds_in_memory_and_says_so(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    book = OverrideBook(blocker / "overrides.json")
    assert not book.put(ov())
    assert book.all() == (ov(),) and not book.kept_on_disk
    assert "cannot write" in (book.problem or "")


def test_old_maintenance_marks_are_migrated_once_with_an_expiry(tmp_path: Path) -> None:
    legacy = tmp_path / "maintenance.json"
    legacy.write_text(json.dumps({"trunks": {"a1": {"reason": "SBC swap", "since": 5.0},
                                             "b1": {"since": 7.0}}}))
    path = tmp_path / "overrides.json"
    held = OverrideBook(path)
    held.put(Override("maintenance", "trunk:b1", None, "newer", "bob", T0, T0 + 99))
    book = OverrideBook(path, legacy, now=T0)
    assert book.all() == (
        Override("maintenance", "trunk:a1", None, "SBC swap", MIGRATED_BY, 5.0,
                 T0 + MAX_DURATION),
        Override("maintenance", "trunk:b1", None, "newer", "bob", T0, T0 + 99))
    assert book.notes and "a1 migrated from maintenance.json" in book.notes[0]
    assert not legacy.exists() and (tmp_path / "maintenance.json.migrated").exists()
    assert OverrideBook(path, legacy, now=T0 + 5).all() == book.all()  # not again
    legacy.write_text("[1, 2")
    damaged = OverrideBook(path, legacy, now=T0)
    assert "maintenance marks were dropped" in (damaged.problem or "")
    assert (tmp_path / "maintenance.json.unreadable").read_text() == "[1, 2"


def test_the_desk_sets_clears_resolves_and_journals_who_why_and_until(tmp_path: Path) -> None:
    cfg = parse_config(CONFIG)
    journal = Journal(tmp_path / "j.sqlite3")
    clock = [T0]
    desk = Overrides(cfg, OverrideBook(tmp_path / "overrides.json"), journal,
                     lambda: clock[0])
    links = {"fibre-a": HealthState.UP}
    answer = desk.set("did", ROME, "a2", "carrier test", "alice", T0 + 600, links)
    assert answer == {"kind": "did", "target": ROME, "value": "a2", "reason": "carrier test",
                      "by": "alice", "since": T0, "until": T0 + 600, "applied": True,
                      "why_not": None, "kept_on_disk": True}
    assert desk.resolve_did("+390212345650") == ROME
    assert desk.resolve_did("+390212345650 ") == ROME
    assert desk.resolve_did("+391111111111") is None and desk.resolve_did("abc") is None
    with pytest.raises(KeyError):
        desk.set("route", "nope", "fibre-a", "x", "bob", T0 + 60, links)
    with pytest.raises(ValueError, match="not in the future"):
        desk.set("route", "internet", "fibre-a", "x", "bob", T0, links)
    forced = desk.set("route", "internet", "fibre-a", "x", "bob", T0 + 60,
                      {"fibre-a": HealthState.DOWN})
    assert forced["applied"] is False and forced["why_not"] == "fibre-a is down"
    assert desk.clear("route", "internet", "bob", "done")["cleared"] is True
    assert desk.clear("route", "internet", "bob", "again")["cleared"] is False
    with pytest.raises(KeyError):
        desk.clear("maintenance", "trunk:zz", "bob", "")
    clock[0] = T0 + 600
    assert [o.target for o in desk.lapse()] == [ROME]
    lines = [e.message for e in read_events(journal.path, 50, "action")]
    assert lines == [
        f"override set: did {ROME} -> a2 by alice until 2027-01-15 08:10 UTC: carrier test",
        "override set: route internet -> fibre-a by bob until 2027-01-15 08:01 UTC: x "
        "(not applied: fibre-a is down)",
        "override cleared: route internet -> fibre-a by bob: done",
        f"override lapsed: did {ROME} -> a2 (set by alice: carrier test)",
    ]
    event = read_events(journal.path, 50, "action")[0]
    assert event.data["by"] == "alice" and event.data["until"] == T0 + 600


def test_an_override_whose_target_left_the_config_is_held_not_applied(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    desk = Overrides(parse_config(CONFIG), OverrideBook(None), journal, lambda: T0)
    desk.set("did", ROME, "dr", "drill", "erin", T0 + 60, {})
    assert desk.tell({})[0].applied
    fewer = CONFIG.replace(f'  - {{numbers: "{ROME}", trunks: [a1, a2], destination: pbx,\n'
                           "     dr_destination: dr}\n", "")
    assert fewer != CONFIG
    desk.reconfigure(parse_config(fewer))
    assert desk.pins() == {}
    (snap,) = desk.tell({})
    assert not snap.applied and "not in the config any more" in str(snap.why_not)
    assert desk.clear("did", ROME, "erin", "range gone")["cleared"] is True
    messages = [e.message for e in read_events(journal.path, 50, "action")]
    assert any(m.startswith(f"override not applied: did {ROME} -> dr: not in the config")
               for m in messages), messages


# -- the daemon's real loop ------------------------------------------------------------------
@contextlib.asynccontextmanager
async def daemon_with(tmp_path: Path, kernel: FakeKernel, text: str) -> AsyncIterator[Daemon]:
    """The real loop on ``kernel`` with ``text`` as config; the wall clock is T0 plus the
    (fast) loop time, so overrides lapse in loop time."""
    path = tmp_path / "lifeline.yaml"
    path.write_text(text)
    loop = asyncio.get_running_loop()
    daemon = Daemon(parse_config(text), netlink=cast(Callable[[str | None], Netlink],
                                                     kernel.adapter),
                    start_probes=False, config_path=path, wall_clock=lambda: T0 + loop.time())
    async with looping(daemon):
        yield daemon


async def feed(daemon: Daemon, seconds: float, links: dict[str, object] | None = None,
               sip_down: tuple[str, ...] = ()) -> None:
    """Rounds every 200 ms: links answer (unless ``links`` says LOST), SIP peers answer
    except ``sip_down``."""
    loop = asyncio.get_running_loop()
    for _ in range(round(seconds / 0.2)):
        now = loop.time()
        for name, rt in daemon.routing.links.items():
            sample = (links or {}).get(name, ALIVE)
            daemon.routing.on_round(name, now, [sample] * len(rt.specs))  # type: ignore[list-item]
        tel = daemon.telephony
        if tel is not None:
            for kind, peers in (("trunk", tel.trunks), ("destination", tel.destinations)):
                for name, peer in peers.items():
                    tel.on_result(kind, peer, now, SIP_LOST if name in sip_down else SIP_OK)
        await asyncio.sleep(0.2)


async def until(daemon: Daemon, what: str, check: Callable[[], bool], timeout: float = 30.0,
                **kw: object) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"not within {timeout} s: {what}"
        await feed(daemon, 0.2, **kw)  # type: ignore[arg-type]


def latest(daemon: Daemon) -> Snapshot:
    assert daemon.latest is not None
    return daemon.latest


@fast_clock
async def test_a_forced_group_switches_and_goes_back_when_the_override_lapses(
        tmp_path: Path) -> None:
    kernel = _kernel()
    async with daemon_with(tmp_path, kernel, _links_config(tmp_path / "state")) as daemon:
        await until(daemon, "route via fibre-a", lambda: kernel.default_via() == [GW["fibre-a"]])
        loop = asyncio.get_running_loop()
        lapses_at = T0 + loop.time() + 20
        answer = daemon.set_override("route", "internet", "fibre-b", "carrier works on a",
                                     "alice", lapses_at)
        assert answer["applied"] is True and answer["kept_on_disk"] is True
        await until(daemon, "forced to fibre-b", lambda: kernel.default_via() == [GW["fibre-b"]],
                    timeout=2)
        await feed(daemon, 0.4)
        (snap,) = latest(daemon).overrides
        assert (snap.kind, snap.target, snap.value, snap.by, snap.applied) == (
            "route", "internet", "fibre-b", "alice", True)
        doc = status_document(latest(daemon))
        assert doc["overrides"][0]["until"] == lapses_at and doc["overrides"][0]["applied"]
        assert "route internet -> fibre-b" in render_status(doc)
        metrics = registry_for(lambda: latest(daemon))
        labels = {"kind": "route", "target": "internet"}
        assert metrics.get_sample_value("lifeline_override_active", labels) == 1.0
        assert metrics.get_sample_value("lifeline_override_expiry_timestamp_seconds",
                                        labels) == lapses_at
        assert "forced to fibre-b by the operator" in latest(daemon).groups[0].reason
        await until(daemon, "back on fibre-a at the lapse",
                    lambda: kernel.default_via() == [GW["fibre-a"]], timeout=30)
        assert T0 + loop.time() >= lapses_at
        assert T0 + loop.time() < lapses_at + 2  # on time, not an interval late
        await feed(daemon, 0.4)
        assert latest(daemon).overrides == ()
        assert metrics.get_sample_value("lifeline_override_active", labels) is None
    events = read_events(daemon.journal.path, 200)
    moves = [e for e in events if e.kind == "decision" and e.subject == "internet"
             and e.data["old"]]
    assert [(m.data["new"], m.data.get("operator")) for m in moves] == [
        (["fibre-b"], True), (["fibre-a"], None)]
    lapsed = [e for e in events if e.message.startswith("override lapsed")]
    assert [e.message for e in lapsed] == [
        "override lapsed: route internet -> fibre-b (set by alice: carrier works on a)"]


@fast_clock
async def test_a_forced_link_that_dies_is_left_and_the_force_holds_again_when_back(
        tmp_path: Path) -> None:
    kernel = _kernel()
    async with daemon_with(tmp_path, kernel, _links_config(tmp_path / "state")) as daemon:
        await until(daemon, "route via fibre-a", lambda: kernel.default_via() == [GW["fibre-a"]])
        loop = asyncio.get_running_loop()
        daemon.set_override("route", "internet", "fibre-b", "test", "bob",
                            T0 + loop.time() + 3600)
        await until(daemon, "forced", lambda: kernel.default_via() == [GW["fibre-b"]])
        await until(daemon, "fibre-b dies: back to fibre-a",
                    lambda: kernel.default_via() == [GW["fibre-a"]], links={"fibre-b": LOST})
        await feed(daemon, 0.4, links={"fibre-b": LOST})
        (snap,) = latest(daemon).overrides
        assert not snap.applied and snap.why_not == "fibre-b is down"
        metrics = registry_for(lambda: latest(daemon))
        assert metrics.get_sample_value("lifeline_override_active",
                                        {"kind": "route", "target": "internet"}) == 0.0
        assert "NOT APPLIED: fibre-b is down" in render_status(daemon.status())
        await until(daemon, "fibre-b back after its hold-down: forced again",
                    lambda: kernel.default_via() == [GW["fibre-b"]], timeout=60)
    messages = [e.message for e in read_events(daemon.journal.path, 300, "action")]
    assert "override not applied: route internet -> fibre-b: fibre-b is down" in messages
    assert "override applied again: route internet -> fibre-b" in messages


@fast_clock
async def test_a_link_in_maintenance_is_left_while_the_other_is_up(tmp_path: Path) -> None:
    kernel = _kernel()
    async with daemon_with(tmp_path, kernel, _links_config(tmp_path / "state")) as daemon:
        await until(daemon, "route via fibre-a", lambda: kernel.default_via() == [GW["fibre-a"]])
        loop = asyncio.get_running_loop()
        daemon.set_override("maintenance", "link:fibre-a", None, "splice", "carol",
                            T0 + loop.time() + 3600)
        await until(daemon, "off fibre-a", lambda: kernel.default_via() == [GW["fibre-b"]],
                    timeout=2)
        # fibre-b dies too: a link in maintenance beats no route.
        await until(daemon, "back on fibre-a", lambda: kernel.default_via() == [GW["fibre-a"]],
                    links={"fibre-b": LOST})
        await feed(daemon, 0.4, links={"fibre-b": LOST})
        (snap,) = latest(daemon).overrides
        assert not snap.applied and "no other link of internet" in str(snap.why_not)
        assert daemon.clear_override("maintenance", "link:fibre-a", "carol", "done") == {
            "kind": "maintenance", "target": "link:fibre-a", "cleared": True,
            "kept_on_disk": True}


@fast_clock
async def test_overrides_survive_a_restart_and_the_route_never_goes_back_meanwhile(
        tmp_path: Path) -> None:
    kernel = _kernel()
    config = _links_config(tmp_path / "state")
    async with daemon_with(tmp_path, kernel, config) as daemon:
        await until(daemon, "route via fibre-a", lambda: kernel.default_via() == [GW["fibre-a"]])
        loop = asyncio.get_running_loop()
        until_at = T0 + loop.time() + 3600
        daemon.set_override("route", "internet", "fibre-b", "test", "bob", until_at)
        await until(daemon, "forced", lambda: kernel.default_via() == [GW["fibre-b"]])
    seen: list[list[str]] = []
    async with daemon_with(tmp_path, kernel, config) as again:
        (held,) = again.overrides.book.all()
        assert (held.target, held.value, held.until) == ("internet", "fibre-b", until_at)
        # fibre-a is judged first: the route found on the forced fibre-b still stays.
        loop = asyncio.get_running_loop()
        specs = len(again.routing.links["fibre-a"].specs)
        for _ in range(10):
            again.routing.on_round("fibre-a", loop.time(), [ALIVE] * specs)
            await asyncio.sleep(0.2)
            seen.append(kernel.default_via())
        assert again.routing.links["fibre-a"].health.state is HealthState.UP
        assert again.routing.links["fibre-b"].health.state is HealthState.UNKNOWN
        for _ in range(30):
            await feed(again, 0.2)
            seen.append(kernel.default_via())
        (snap,) = latest(again).overrides
        assert snap.applied
    assert all(via == [GW["fibre-b"]] for via in seen), seen


def _telephony_config(state: Path) -> str:
    return _links_config(state) + CONFIG.split(
        "route_groups: [{name: internet, links: [fibre-a]}]\n", 1)[1]


@fast_clock
async def test_a_pinned_range_moves_to_its_trunk_and_a_dr_drill_to_dr(tmp_path: Path) -> None:
    kernel = _kernel()
    async with daemon_with(tmp_path, kernel, _telephony_config(tmp_path / "state")) as daemon:
        def rome() -> tuple[str | None, str]:
            plan = latest(daemon).plan
            decision = None if plan is None else plan.lookup("+390212345650")
            return (None, "") if decision is None else (decision.trunk, decision.destination)

        await until(daemon, "Rome on a1 to the PBX", lambda: rome() == ("a1", "pbx"))
        loop = asyncio.get_running_loop()
        target = daemon.resolve_did("+390212345650")
        assert target == ROME
        with pytest.raises(ValueError, match="not a trunk of range"):
            daemon.set_override("did", ROME, "b1", "x", "bob", T0 + loop.time() + 60)
        daemon.set_override("did", ROME, "a2", "carrier test", "dave", T0 + loop.time() + 600)
        await until(daemon, "Rome pinned to a2", lambda: rome() == ("a2", "pbx"), timeout=2)
        daemon.set_override("did", ROME, "dr", "DR drill", "dave", T0 + loop.time() + 600)
        await until(daemon, "Rome on DR", lambda: rome() == ("a1", "dr"), timeout=2)
        assert latest(daemon).overrides[0].applied
        # The DR site stops answering: the drill is not applied, the PBX gets the calls.
        await until(daemon, "DR down: Rome back to the PBX", lambda: rome() == ("a1", "pbx"),
                    sip_down=("dr",))
        await feed(daemon, 0.4, sip_down=("dr",))
        (snap,) = latest(daemon).overrides
        assert not snap.applied and snap.why_not == "DR destination dr is down"
        daemon.set_maintenance("a1", True, "swap")
        await until(daemon, "a1 in maintenance", lambda: rome() == ("a2", "pbx"), timeout=2,
                    sip_down=("dr",))
        await feed(daemon, 0.4, sip_down=("dr",))
        held = {(o.kind, o.target): o for o in latest(daemon).overrides}
        trunk = held[("maintenance", "trunk:a1")]
        assert trunk.applied and trunk.by == "the operator"
        assert trunk.until == pytest.approx(T0 + loop.time() + MAX_DURATION, abs=5)
