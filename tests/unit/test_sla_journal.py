"""What the telephony runtime journals is what the SLA report needs: each DID decision
says its range and whether it goes to DR, an unroutable range says so as data, and the
report replays those very events."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import parse_config
from controller.core.health import Health, HealthParams, HealthState, ProbeRound
from controller.core.sla import compute
from controller.core.snapshot import Tally
from controller.runtime.history import read_history
from controller.runtime.journal import Journal, read_events
from controller.runtime.trunks import Telephony
from tests.unit.test_calm_start import A_RANGE, B_RANGE, LINKS_UP
from tests.unit.test_telephony import CONFIG, LOST, OK, Recorder, feed


def test_did_decisions_and_unroutable_ranges_carry_their_numbers_and_dr(
        tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    journal = Journal(path)
    journal.record("start", "daemon", "lifeline started", site="rome")
    tel = Telephony(parse_config(CONFIG), journal, Tally(), [Recorder()])
    tel.note_paths(0.0, "fibre-a", LINKS_UP)
    now = 0.0
    for name in ("a1", "a2"):
        now = max(now, feed(tel, "trunk", name, OK, 0.0, 6))
    feed(tel, "trunk", "b1", LOST, 0.0, 3)  # carrier B is dead: its range is unroutable
    feed(tel, "destination", "pbx", LOST, 0.0, 3)  # the PBX is dead: A's range goes to DR
    feed(tel, "destination", "dr", OK, 0.0, 6)
    tel.decide(now, LINKS_UP)
    assert tel.destinations["pbx"].health.state is HealthState.DOWN
    decisions = {e.data["numbers"]: e.data for e in read_events(path, 100, "decision")}
    assert decisions[A_RANGE]["on_dr"] is True and decisions[A_RANGE]["destination"] == "dr"
    (error,) = read_events(path, 100, "error")
    assert error.data == {"numbers": B_RANGE, "routable": False}
    feed(tel, "trunk", "b1", OK, now, 20)
    tel.decide(now + 60, LINKS_UP)
    again = [e for e in read_events(path, 100, "decision") if "routable again" in e.message]
    assert [e.data for e in again] == [{"numbers": B_RANGE, "routable": True}]
    journal.close()

    history = read_history(path, until=1e12)
    first = history.events[0].ts
    report = compute(history.events, first, history.events[-1].ts + 1, now=1e12)
    assert {d.numbers for d in report.ranges} == {A_RANGE, B_RANGE}
    assert report.site.dr_seconds > 0 and report.site.unroutable_seconds > 0
    assert not any("undercounted" in n for n in report.notes)


def test_the_history_reader_sees_pruning_and_stops_at_the_end_of_the_period(
        tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "j.sqlite3"
    journal = Journal(path)
    for i in range(5):
        journal.record("transition", "fibre-a", f"event {i}", old="up", new="down")
    journal.close()
    whole = read_history(path, until=1e12)
    assert [e.message for e in whole.events] == [f"event {i}" for i in range(5)]
    assert not whole.pruned
    cut = whole.events[2].ts
    assert all(e.ts <= cut for e in read_history(path, until=cut).events)
    with sqlite3.connect(path) as db:  # what the journal's limits do to old rows
        db.execute("DELETE FROM events WHERE id <= 2")
    db.close()
    pruned = read_history(path, until=1e12)
    assert pruned.pruned and len(pruned.events) == 3


def test_a_link_judged_down_tells_how_old_its_fault_was() -> None:
    """The age the SLA report adds to the route decision's delay: the dead run as the
    reason states it, 0 for a carrier loss."""
    params = HealthParams(interval=0.2, down_after=3)
    h = Health("fibre-a", params, 1, 1)
    t = 0.0
    for _ in range(5):
        h.observe(ProbeRound(t, (0.01,)))
        t += 0.2
    down = None
    while down is None:
        down = h.observe(ProbeRound(t, (None,)))
        t += 0.2
    assert down.new is HealthState.DOWN and "(0.6 s" in down.reason
    assert down.fault_age == pytest.approx(0.6)

    cut = Health("fibre-b", params, 1, 1)
    for i in range(5):
        cut.observe(ProbeRound(i * 0.2, (0.01,)))
    lost = cut.carrier(False, 1.0)
    assert lost is not None and lost.fault_age == 0.0
