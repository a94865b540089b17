"""The demo's recordings act, its pure parts: the made-up day is one the daemon must judge
as the act says (the skipped recordings past the grace, nothing stale before the copy),
and the summary says why a step failed."""

from __future__ import annotations

import time

from controller.core.durations import parse_duration
from tests.lab.demo_recordings import (
    NS,
    RecAct,
    RecOutcome,
    RecTiming,
    _calls,
    recordings_summary,
)


def test_the_skipped_calls_are_past_the_grace_and_nothing_is_stale_before_the_copy() -> None:
    t = RecTiming.for_demo(quick=False)
    now = time.time()
    past, today = _calls(now, t)
    assert len(past) == t.days * t.per_day and len(today) == t.per_day
    assert len({r.rel for r in past + today}) == len(past) + len(today)
    newest_copied = max(r.mtime_ns for i, r in enumerate(today) if i not in t.skipped)
    grace = parse_duration(t.grace)
    for i in t.skipped:  # missing only once the copy went past it by the grace
        assert (newest_copied - today[i].mtime_ns) / NS > grace
    # Today's oldest call has waited less than schedule + grace: not stale, no other page.
    assert now - min(r.mtime_ns for r in today) / NS < parse_duration(t.schedule) + grace
    assert all(r.mtime_ns / NS < now for r in past + today)


def test_summary_names_a_failed_step_and_the_figures() -> None:
    act = RecAct(RecTiming.for_demo(quick=True))
    act.outcomes = [RecOutcome("all ok", "ok, no page", True, 3.0),
                    RecOutcome("skips 3", "3 missing, 1 page", False, None, ("a.wav",),
                               "lifeline named ['a.wav'], expected 3")]
    act.figures.trees_untouched = True
    text = recordings_summary(act)
    assert "FAILED: lifeline named ['a.wav'], expected 3" in text
    assert "lifeline named 1" in text and "untouched" in text
    assert not act.passed
