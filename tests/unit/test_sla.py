"""The SLA report's core: hand-built journals in, figures out; every second of the period
lands in exactly one bucket, and what the journal cannot see is said, not guessed."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.sla import BUCKETS, Report, SubjectFigures, compute


@dataclass(frozen=True)
class Ev:
    ts: float
    kind: str
    subject: str
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def start(t: float, site: str = "rome") -> Ev:
    return Ev(t, "start", "daemon", "lifeline started", {"site": site})


def stop(t: float) -> Ev:
    return Ev(t, "stop", "daemon", "stopped")


def link(t: float, name: str, new: str, old: str = "?", fault_age: float | None = None) -> Ev:
    data: dict[str, Any] = {"old": old, "new": new}
    if fault_age is not None:
        data["fault_age"] = fault_age
    return Ev(t, "transition", name, f"{name}: now {new}", data)


def trunk(t: float, name: str, new: str) -> Ev:
    return Ev(t, "transition", name, f"{name}: {new}", {"old": "?", "new": new,
                                                        "peer": "trunk"})


def route(t: float, group: str, old: list[str], new: list[str]) -> Ev:
    return Ev(t, "decision", group, f"{','.join(new)} is the best up link",
              {"old": old, "new": new})


R1 = "+390212345600-+390212345699"


def dids(t: float, on_dr: bool | None, numbers: str = R1) -> Ev:
    data: dict[str, Any] = {"trunk": "a1", "destination": "dr" if on_dr else "pbx"}
    if on_dr is not None:
        data |= {"numbers": numbers, "on_dr": on_dr}
    return Ev(t, "decision", "dids", f"{numbers}: a1 up", data)


def by_name(items: tuple[SubjectFigures, ...]) -> dict[str, SubjectFigures]:
    return {s.name: s for s in items}


def seconds(r: Report, name: str) -> dict[str, float]:
    return {k: round(v, 6) for k, v in by_name(r.links)[name].seconds.items() if v}


def test_a_failover_and_its_failback_with_their_times() -> None:
    events = [start(0), link(10, "fibre-a", "up"), link(10, "lte", "up"),
              route(11, "internet", [], ["fibre-a"]),
              link(100, "fibre-a", "down"), route(100.8, "internet", ["fibre-a"], ["lte"]),
              link(200, "fibre-a", "up"), route(260, "internet", ["lte"], ["fibre-a"])]
    r = compute(events, 0, 1000, now=1000)
    assert seconds(r, "fibre-a") == {"unknown": 10, "up": 890, "down": 100}
    a = by_name(r.links)["fibre-a"]
    assert a.availability == pytest.approx(890 / 1000)
    assert len(a.outages) == 1 and a.time_to_recover == pytest.approx(100)
    over, back = r.changes
    assert (over.kind, over.cause, over.old, over.new) == ("failover", "fibre-a",
                                                           ("fibre-a",), ("lte",))
    assert over.delay == pytest.approx(0.8)
    assert (back.kind, back.cause) == ("failback", "fibre-a")
    assert back.delay == pytest.approx(60)
    assert r.failovers.count == 1 and r.failbacks.count == 1  # the first route is neither
    assert r.site.seconds["up"] == pytest.approx(990) and r.site.no_link_seconds == 0
    assert r.site_name == "rome"
    assert r.notes == ("no stop after the last start: lifeline counts as running to the end "
                       "of the period",)


def test_a_stopped_daemon_is_unmonitored_and_its_verdicts_do_not_carry_over() -> None:
    events = [start(0), link(1, "fibre-a", "up"), stop(100), start(300),
              link(301, "fibre-a", "up")]
    r = compute(events, 0, 400, now=1000)
    assert seconds(r, "fibre-a") == {"unknown": 2, "up": 198, "unmonitored": 200}
    assert by_name(r.links)["fibre-a"].availability == pytest.approx(198 / 200)
    assert r.site.seconds["unmonitored"] == pytest.approx(200)
    assert not any("crash" in n for n in r.notes)


def test_a_run_without_stop_is_unmonitored_from_its_last_event_and_said() -> None:
    events = [start(0), link(1, "fibre-a", "up"), link(50, "fibre-a", "down"), start(300)]
    r = compute(events, 0, 400, now=400)
    assert seconds(r, "fibre-a") == {"unknown": 101, "up": 49, "unmonitored": 250}
    (outage,) = by_name(r.links)["fibre-a"].outages
    assert outage.end is None and outage.seen == 0  # the daemon died as it went down
    assert any("ended without a stop event" in n and "until its start" in n for n in r.notes)


def test_state_before_the_period_carries_in() -> None:
    events = [start(-1000), link(-999, "fibre-a", "up"), link(-10, "fibre-a", "down"),
              link(50, "fibre-a", "up")]
    r = compute(events, 0, 100, now=100)
    assert seconds(r, "fibre-a") == {"down": 50, "up": 50}
    (outage,) = by_name(r.links)["fibre-a"].outages
    assert (outage.start, outage.end) == (-10, 50)  # its whole length, not just the part
    assert by_name(r.links)["fibre-a"].time_to_recover == 60


def test_events_after_the_period_are_not_counted() -> None:
    events = [start(0), link(1, "fibre-a", "up"), link(150, "fibre-a", "down")]
    r = compute(events, 0, 100, now=1000)
    assert seconds(r, "fibre-a") == {"unknown": 1, "up": 99}
    assert not by_name(r.links)["fibre-a"].outages


def test_a_journal_that_begins_late_leaves_the_start_unmonitored_and_says_why() -> None:
    r = compute([start(50), link(50, "fibre-a", "up")], 0, 100, now=100)
    assert seconds(r, "fibre-a") == {"unmonitored": 50, "up": 50}
    assert any("begins at 1970-01-01 00:00:50Z (lifeline's first start)" in n
               for n in r.notes)


def test_a_pruned_journal_counts_from_its_first_kept_event() -> None:
    """The first kept event is in the middle of a run: lifeline ran from there on, and
    links with no event kept are unknown until their next one."""
    events = [link(20, "fibre-a", "down"), link(60, "lte", "up")]
    r = compute(events, 0, 100, now=100, pruned=True)
    assert seconds(r, "fibre-a") == {"unmonitored": 20, "down": 80}
    assert seconds(r, "lte") == {"unmonitored": 20, "unknown": 40, "up": 40}
    assert any("pruned" in n for n in r.notes)
    assert r.site.no_link_seconds == 0  # lte had no verdict: not proven down
    assert r.site.seconds["unknown"] == pytest.approx(40)


def test_a_pruned_journal_that_covers_the_period_says_so() -> None:
    r = compute([start(-50), link(-40, "fibre-a", "up")], 0, 100, now=100, pruned=True)
    assert seconds(r, "fibre-a") == {"up": 100}
    assert any("states carried into the period come from the events kept" in n
               for n in r.notes)


def test_an_empty_journal_is_all_unmonitored_with_no_figures() -> None:
    r = compute([], 0, 3600, now=3600)
    assert r.site.seconds["unmonitored"] == 3600 and r.site.availability is None
    assert (r.links, r.trunks, r.groups, r.ranges) == ((), (), (), ())
    assert any("no events" in n for n in r.notes)


def test_site_down_when_every_link_is_down_or_dids_are_unroutable() -> None:
    events = [start(0), link(0, "fibre-a", "up"), link(0, "lte", "up"),
              link(10, "fibre-a", "down"), link(20, "lte", "down"), link(30, "lte", "up"),
              Ev(50, "error", "dids", f"{R1} unroutable: no capable trunk healthy",
                 {"numbers": R1, "routable": False}),
              Ev(70, "decision", "dids", f"{R1} routable again",
                 {"numbers": R1, "routable": True})]
    r = compute(events, 0, 100, now=100)
    assert r.site.no_link_seconds == pytest.approx(10)
    assert r.site.unroutable_seconds == pytest.approx(20)
    assert r.site.seconds["down"] == pytest.approx(30)
    assert r.site.availability == pytest.approx(0.7)
    assert [(d.numbers, d.unroutable_seconds) for d in r.ranges] == [(R1, 20)]


def test_unroutable_events_of_an_older_journal_are_read_from_their_message() -> None:
    events = [start(0), link(0, "fibre-a", "up"),
              Ev(50, "error", "dids", f"{R1} unroutable: no capable trunk healthy"),
              Ev(60, "decision", "dids", f"{R1} routable again")]
    r = compute(events, 0, 100, now=100)
    assert r.site.unroutable_seconds == pytest.approx(10)


def test_time_in_dr_per_range_and_for_the_site() -> None:
    r2 = "+390212345700-+390212345799"
    events = [start(0), link(0, "fibre-a", "up"), dids(0, False), dids(0, False, r2),
              dids(10, True), dids(40, True, r2), dids(70, False), stop(80)]
    r = compute(events, 0, 100, now=100)
    assert {d.numbers: d.dr_seconds for d in r.ranges} == {R1: 60, r2: 40}
    assert r.site.dr_seconds == pytest.approx(70)  # at least one range on DR: 10 to 80
    assert r.site.seconds["up"] == pytest.approx(80)  # DR is delivered: the site is up


def test_dr_decisions_that_do_not_say_are_not_guessed_and_the_gap_is_said() -> None:
    r = compute([start(0), dids(10, None)], 0, 100, now=100)
    assert r.site.dr_seconds == 0
    assert any("undercounted" in n for n in r.notes)


def test_trunks_and_destinations_have_their_own_tables() -> None:
    events = [start(0), trunk(0, "a1", "up"), trunk(40, "a1", "down"),
              Ev(45, "transition", "a1", "a1: not registered", {"peer": "registration"}),
              Ev(50, "transition", "pbx", "pbx: up", {"old": "?", "new": "up",
                                                      "peer": "destination"}),
              link(0, "fibre-a", "up")]
    r = compute(events, 0, 100, now=100)
    a1 = by_name(r.trunks)["a1"]
    assert a1.seconds["up"] == 40 and a1.seconds["down"] == 60
    assert a1.outages[0].end is None and a1.longest_outage == 60
    assert [d.name for d in r.destinations] == ["pbx"]
    assert [x.name for x in r.links] == ["fibre-a"]


def test_time_to_fail_over_starts_at_the_fault_when_the_journal_knows_its_age() -> None:
    events = [start(0), link(0, "fibre-a", "up"), link(0, "lte", "up"),
              link(100, "fibre-a", "down", fault_age=0.6),
              route(100.001, "internet", ["fibre-a"], ["lte"]),
              link(200, "lte", "down"), route(200.002, "internet", ["lte"], ["fibre-a"])]
    r = compute(events, 0, 300, now=300)
    first, second = r.changes
    assert first.detect == 0.6 and first.delay == pytest.approx(0.001)
    assert first.total == pytest.approx(0.601)
    assert second.detect is None and second.total == pytest.approx(0.002)  # loss: no age
    assert r.failovers.median == pytest.approx(0.3015)
    assert r.failovers.worst == pytest.approx(0.601)


def test_a_failover_from_a_link_down_before_the_run_has_no_measured_delay() -> None:
    events = [start(0), route(5, "internet", ["fibre-a"], ["lte"]),
              link(6, "lte", "up")]
    r = compute(events, 0, 100, now=100)
    (change,) = r.changes
    assert change.kind == "failover" and change.delay is None  # fibre-a had no verdict
    assert r.failovers.count == 1 and r.failovers.measured == 0


def test_the_cause_of_a_failover_is_the_link_left_that_failed_last() -> None:
    events = [start(0), link(0, "a", "up"), link(0, "b", "up"), link(0, "c", "up"),
              link(10, "a", "down"), link(20, "b", "degraded"),
              route(21, "g", ["a", "b"], ["c"])]
    (change,) = compute(events, 0, 100, now=100).changes
    assert (change.cause, change.delay) == ("b", 1)


def test_the_period_cannot_end_after_now_nor_be_empty() -> None:
    r = compute([start(0)], 0, 200, now=100)
    assert r.until == 100 and any("cut at now" in n for n in r.notes)
    with pytest.raises(ValueError, match="empty"):
        compute([], 100, 100, now=200)


def test_a_clock_that_steps_back_keeps_the_journal_order() -> None:
    events = [start(0), link(50, "fibre-a", "up"), link(40, "fibre-a", "down")]
    r = compute(events, 0, 100, now=100)
    assert seconds(r, "fibre-a") == {"unknown": 50, "down": 50}
    assert any("stepped back 1 time" in n for n in r.notes)


# -- the property: every second lands in one bucket ----------------------------------------

LINKS = ("fibre-a", "fibre-b", "lte")


@st.composite
def journals(draw: st.DrawFn) -> list[Ev]:
    events: list[Ev] = []
    t = draw(st.floats(-500, 500))
    for _ in range(draw(st.integers(0, 40))):
        t += draw(st.floats(0, 100))
        what = draw(st.sampled_from(("start", "stop", "link", "route", "dr", "unroutable")))
        if what == "start":
            events.append(start(t))
        elif what == "stop":
            events.append(stop(t))
        elif what == "link":
            events.append(link(t, draw(st.sampled_from(LINKS)),
                               draw(st.sampled_from(("up", "degraded", "down", "unknown")))))
        elif what == "route":
            events.append(route(t, "internet", draw(st.lists(st.sampled_from(LINKS),
                                                             max_size=2, unique=True)),
                                draw(st.lists(st.sampled_from(LINKS), min_size=1,
                                              max_size=2, unique=True))))
        elif what == "dr":
            events.append(dids(t, draw(st.booleans())))
        else:
            events.append(Ev(t, "error" if draw(st.booleans()) else "decision", "dids",
                             "", {"numbers": R1, "routable": draw(st.booleans())}))
    return events


@settings(max_examples=300, deadline=None)
@given(journals(), st.floats(-600, 2000), st.floats(1, 3000), st.floats(0, 500))
def test_every_second_of_the_period_is_in_exactly_one_bucket(
        events: list[Ev], since: float, length: float, after: float) -> None:
    until = since + length
    r = compute(events, since, until, now=until + after)
    for s in (*r.links, *r.trunks, *r.destinations):
        assert math.isclose(sum(s.seconds.values()), length, rel_tol=1e-9, abs_tol=1e-6)
        assert set(s.seconds) == set(BUCKETS) and min(s.seconds.values()) >= 0
        a = s.availability
        assert a is None or -1e-9 <= a <= 1 + 1e-9
        assert all(o.start <= o.seen_until and (o.end is None or o.end == o.seen_until)
                   for o in s.outages)
    site = r.site.seconds
    assert math.isclose(sum(site.values()), length, rel_tol=1e-9, abs_tol=1e-6)
    watched = length - site["unmonitored"]
    for part in (r.site.dr_seconds, r.site.unroutable_seconds, r.site.no_link_seconds):
        assert -1e-6 <= part <= watched + 1e-6
    assert r.site.no_link_seconds + r.site.unroutable_seconds >= site["down"] - 1e-6
    assert all(since <= c.at <= until and (c.delay is None or c.delay >= 0)
               for c in r.changes)
