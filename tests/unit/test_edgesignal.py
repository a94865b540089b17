"""The edge signal: edge call failures -> a trunk held degraded, without flapping."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.edgesignal import EdgeSignal, EdgeSignalParams

P = EdgeSignalParams(failures=3, window=30.0, hold_down=60.0, max_hold_down=900.0, half_life=600.0)


def test_needs_enough_failures_within_the_window() -> None:
    b = EdgeSignal(P)
    assert not b.observe(0.0, 10)
    assert not b.observe(10.0, 12)  # 2 in the window
    assert not b.observe(45.0, 13)  # 3 since 0 s, but 0 s and 10 s left the window
    assert b.verdict(45.0) == (False, "")
    assert not b.observe(50.0, 15)  # 13 -> 15: 2
    assert b.observe(55.0, 16)  # 13 -> 16: 3 within 10 s
    assert b.trips == 1


def test_two_failures_in_a_window_never_trip() -> None:
    b = EdgeSignal(P)
    for k in range(100):
        assert not b.observe(k * 20.0, k * 1)  # one failure every 20 s: 2 per window at most
    assert b.trips == 0


def test_a_trip_holds_after_the_window_then_the_trunk_is_tried_again() -> None:
    b = EdgeSignal(P)
    b.observe(0.0, 0)
    assert b.observe(2.0, 3)
    failing, why = b.verdict(40.0)  # the window has passed: still held
    assert failing and "3 calls failed at the SIP edge within 30 s; held off 60 s" in why
    assert b.hold_remaining(40.0) == pytest.approx(22.0)
    assert b.verdict(62.5) == (False, "")
    # The failures that tripped it are spent: one more does not trip it again.
    assert not b.observe(63.0, 4)


def test_failing_again_doubles_the_hold_up_to_the_ceiling() -> None:
    b = EdgeSignal(P)
    t, count, holds = 0.0, 0, []
    b.observe(t, count)
    for _ in range(8):
        while not b.observe(t, count):  # one failed call a second while it gets calls
            t += 1.0
            count += 1
        holds.append(b.hold_remaining(t))
        t += holds[-1]  # no calls (and no failures) while the trip holds
    assert holds[0] == pytest.approx(60.0)
    assert holds[1] > 1.8 * holds[0]
    assert all(b2 >= b1 - 1e-6 for b1, b2 in itertools.pairwise(holds))
    assert max(holds) == pytest.approx(900.0)


def test_the_penalty_decays_so_a_rare_trip_gets_the_base_hold() -> None:
    b = EdgeSignal(P)
    b.observe(0.0, 0)
    assert b.observe(1.0, 3)
    b.observe(10_000.0, 3)
    assert b.observe(10_001.0, 6)
    assert b.hold_remaining(10_001.0) == pytest.approx(60.0, rel=0.01)


def test_an_edge_restart_resets_the_counter_without_a_trip() -> None:
    b = EdgeSignal(P)
    b.observe(0.0, 50)
    assert not b.observe(2.0, 0)  # Kamailio restarted: counting from 0 again
    assert not b.observe(4.0, 2)
    assert b.observe(6.0, 3)


def test_a_permanently_broken_trunk_trips_a_few_times_an_hour_not_every_window() -> None:
    """Calls go to the trunk whenever it is not held, and each fails: one failure a second."""
    b = EdgeSignal(P)
    count = 0
    for second in range(3600):
        if not b.tripped(float(second)):
            count += 1
        b.observe(float(second), count)
    assert 4 <= b.trips <= 9  # 60, ~120, ~240, ~480, then 900 s holds; without holds: ~1200


@given(st.lists(st.tuples(st.floats(0.5, 60.0), st.integers(0, 5)), max_size=60))
def test_held_only_after_a_trip_and_never_longer_than_the_ceiling(
        steps: list[tuple[float, int]]) -> None:
    b = EdgeSignal(P)
    t, count = 0.0, 0
    b.observe(t, count)
    for gap, failed in steps:
        t += gap
        count += failed
        b.observe(t, count)
        failing, _ = b.verdict(t)
        assert failing == (b.trips > 0 and b.hold_remaining(t) > 0)
        assert b.hold_remaining(t) <= P.max_hold_down


@pytest.mark.parametrize("kwargs", [{"failures": 0}, {"window": 0.0}, {"hold_down": 0.0},
                                    {"hold_down": 100.0, "max_hold_down": 50.0},
                                    {"half_life": 0.0}])
def test_bad_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        EdgeSignalParams(**kwargs)  # type: ignore[arg-type]


def test_an_outage_seen_by_options_is_forgotten_and_lifts_a_trip() -> None:
    b = EdgeSignal(P)
    b.observe(0.0, 0)
    assert not b.observe(2.0, 2)
    b.forget()  # the trunk went down by its own OPTIONS
    assert not b.observe(4.0, 3)  # a baseline again: calls in flight to the dead SBC
    assert b.observe(6.0, 6)
    b.forget()  # ... and a trip in force is lifted when it comes back by OPTIONS
    assert b.verdict(7.0) == (False, "")
    b.observe(8.0, 6)
    assert b.observe(9.0, 9)
    assert b.hold_remaining(9.0) > 100.0  # the penalty stayed: the second hold is longer
