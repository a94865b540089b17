"""Health: windows, thresholds, hysteresis, hold-down, damping, carrier, reliability.

Time is a plain number fed in with every round, so nothing here sleeps; the driver
below advances it by the probe interval.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.health import Health, HealthParams, HealthState, ProbeRound, Transition

UP = HealthState.UP
DOWN = HealthState.DOWN
DEGRADED = HealthState.DEGRADED
UNKNOWN = HealthState.UNKNOWN

OK = 0.010  # a healthy 10 ms RTT


class Driver:
    """Feeds rounds to one Health at the probe interval and keeps every transition."""

    def __init__(self, health: Health, start: float = 100.0) -> None:
        self.h = health
        self.t = start
        self.transitions: list[Transition] = []

    def round(self, *rtts: float | None) -> Transition | None:
        tr = self.h.observe(ProbeRound(self.t, tuple(rtts)))
        self.t += self.h.params.interval
        if tr is not None:
            self.transitions.append(tr)
        return tr

    def rounds(self, n: int, *rtts: float | None) -> list[Transition]:
        out = []
        for _ in range(n):
            tr = self.round(*rtts)
            if tr is not None:
                out.append(tr)
        return out

    def seconds(self, secs: float, *rtts: float | None) -> list[Transition]:
        return self.rounds(round(secs / self.h.params.interval), *rtts)

    def carrier(self, up: bool) -> Transition | None:
        tr = self.h.carrier(up, self.t)
        if tr is not None:
            self.transitions.append(tr)
        return tr


def link(
    params: HealthParams | None = None,
    targets: int = 1,
    reliability: int = 1,
    name: str = "fibre-a",
) -> Driver:
    return Driver(Health(name, params or HealthParams(), targets, reliability))


def up_link(params: HealthParams | None = None, targets: int = 1, reliability: int = 1) -> Driver:
    """A link that has reached UP with a full window of clean rounds."""
    d = link(params, targets, reliability)
    d.seconds(d.h.params.window, *([OK] * targets))
    assert d.h.state is UP
    d.transitions.clear()
    return d


def down_link(params: HealthParams | None = None) -> Driver:
    d = up_link(params)
    d.rounds(d.h.params.down_after, None)
    assert d.h.state is DOWN
    d.transitions.clear()
    return d


# -- start-up -----------------------------------------------------------------------------


def test_starts_unknown_with_a_reason() -> None:
    h = Health("fibre-a", HealthParams(), 1, 1)
    assert h.state is UNKNOWN
    assert h.since is None
    assert h.reason.startswith("fibre-a:")
    assert h.metrics().rounds == 0
    assert h.metrics().latency is None


def test_unknown_goes_up_after_rise_alive_rounds() -> None:
    d = link()
    assert d.rounds(4, OK) == []
    tr = d.round(OK)
    assert tr is not None and (tr.old, tr.new) == (UNKNOWN, UP)
    assert tr.reason.startswith("fibre-a: 5 rounds answered in a row")
    assert d.h.since == tr.at


def test_a_dead_round_restarts_the_rise_count() -> None:
    d = link()
    d.rounds(4, OK)
    d.round(None)
    assert d.rounds(4, OK) == []
    assert d.h.state is UNKNOWN
    assert d.round(OK) is not None


def test_unknown_goes_down_after_down_after_dead_rounds() -> None:
    d = link()
    assert d.rounds(2, None) == []
    tr = d.round(None)
    assert tr is not None and (tr.old, tr.new) == (UNKNOWN, DOWN)


# -- going down ---------------------------------------------------------------------------


def test_sub_second_detection_three_dead_rounds() -> None:
    d = up_link()
    first_lost = d.t
    assert d.round(None) is None
    assert d.round(None) is None
    tr = d.round(None)
    assert tr is not None and (tr.old, tr.new) == (UP, DOWN)
    assert tr.at - first_lost == pytest.approx(0.2)  # decided on the 3rd round, 0.2 s in
    assert tr.reason == "fibre-a: 3 rounds lost in a row (0.3 s)"
    assert d.h.reason == tr.reason


def test_two_dead_rounds_in_a_row_do_not_fail_a_link() -> None:
    d = up_link()
    for _ in range(20):
        d.rounds(2, None)
        d.rounds(3, OK)
    assert all(t.new is not DOWN for t in d.transitions)


def test_loss_over_the_window_takes_a_link_down_without_a_dead_run() -> None:
    # Two of three rounds lost, never three in a row: 67 % loss > 50 %.
    d = up_link()
    seen: list[Transition] = []
    for _ in range(40):
        seen += d.rounds(2, None)
        seen += d.rounds(1, OK)
    downs = [t for t in seen if t.new is DOWN]
    assert len(downs) == 1
    assert "loss" in downs[0].reason and "> 50.0%" in downs[0].reason


# -- reliability --------------------------------------------------------------------------


def test_one_dead_target_of_three_does_not_fail_the_link() -> None:
    d = up_link(targets=3, reliability=2)
    assert d.rounds(500, OK, None, 0.020) == []
    m = d.h.metrics()
    assert d.h.state is UP
    assert m.loss_ratio == 0.0  # the silent target is not counted
    assert m.latency == pytest.approx(0.015)  # mean of the two that answer


def test_two_dead_targets_of_three_fail_the_link() -> None:
    d = up_link(targets=3, reliability=2)
    d.rounds(2, OK, None, None)
    tr = d.round(None, OK, None)
    assert tr is not None and tr.new is DOWN
    assert "fewer than 2 of 3 targets answering" in tr.reason


def test_reliability_one_needs_every_target_silent() -> None:
    d = up_link(targets=3, reliability=1)
    assert d.rounds(100, None, None, OK) == []
    tr = d.rounds(3, None, None, None)
    assert [t.new for t in tr] == [DOWN]
    assert "none of 3 targets answering" in tr[0].reason


def test_loss_is_the_reliability_th_best_target() -> None:
    d = up_link(HealthParams(degraded_loss=1.0, down_loss=1.0), targets=3, reliability=2)
    # Target 0 loses every 5th probe, target 1 every 2nd, target 2 nothing.
    for i in range(100):
        d.round(None if i % 5 == 0 else OK, None if i % 2 == 0 else OK, OK)
    m = d.h.metrics()
    assert m.rounds == 100
    assert m.loss_ratio == pytest.approx(20 / 100)  # second best: target 0
    assert m.lost == 20


# -- window metrics -----------------------------------------------------------------------


def test_window_is_counted_in_rounds_and_forgets_old_rounds() -> None:
    params = HealthParams(degraded_loss=1.0, down_loss=1.0)
    assert params.window_rounds() == 100
    assert HealthParams(window=0.05).window_rounds() == 1
    d = up_link(params)
    for i in range(100):
        d.round(None if i % 10 == 0 else OK)
    assert d.h.metrics().loss_ratio == pytest.approx(0.1)
    assert d.h.metrics().rounds == 100
    assert d.h.metrics().span == pytest.approx(10.0)
    d.rounds(100, OK)
    assert d.h.metrics().loss_ratio == 0.0


def test_latency_is_the_mean_rtt_of_the_window() -> None:
    d = up_link()
    d.rounds(50, 0.020)
    d.rounds(50, 0.040)
    assert d.h.metrics().latency == pytest.approx(0.030)


def test_jitter_follows_rfc3550() -> None:
    d = link()
    d.round(0.010)
    d.round(0.020)
    assert d.h.metrics().jitter == pytest.approx(0.010 / 16)
    for i in range(300):
        d.round(0.010 if i % 2 else 0.020)
    assert d.h.metrics().jitter == pytest.approx(0.010, rel=1e-3)


def test_mos_comes_from_the_window_figures() -> None:
    d = up_link()
    m = d.h.metrics()
    assert m.mos is not None and m.mos > 4.3


# -- degraded -----------------------------------------------------------------------------


def test_proven_loss_makes_a_link_degraded() -> None:
    d = up_link(HealthParams(degraded_mos=1.0))  # the loss rule alone, not the MOS
    seen: list[Transition] = []
    for _ in range(20):  # 1 probe in 5 lost: 20 % round trip, about 10.6 % one way
        seen += d.rounds(1, None)
        seen += d.rounds(4, OK)
    assert [t.new for t in seen] == [DEGRADED]
    reason = seen[0].reason
    assert reason.startswith("fibre-a: loss ") and " one way > 2.0% (evidence " in reason
    assert ">= 5)" in reason
    m = d.h.metrics()
    assert m.loss_one_way == pytest.approx(1 - math.sqrt(1 - m.loss_ratio))
    assert m.loss_evidence >= 5.0


def test_the_loss_that_proves_a_link_bad_is_counted_in_log_odds() -> None:
    # Each loss adds ln(p1/p0) = 0.68 and each answer takes 0.04 away: 7 losses with an
    # answer after each are 4.5, short of the level 5; the 8th reaches it. A loss is
    # weighed once its target has answered again within silent_rounds (here 1).
    d = up_link(HealthParams(silent_rounds=1, degraded_mos=1.0))
    for _ in range(7):
        d.round(None)
        d.round(OK)
    assert d.h.state is UP
    assert 4.0 < d.h.metrics().loss_evidence < 5.0
    d.round(None)
    tr = d.round(OK)
    assert tr is not None and tr.new is DEGRADED


def test_latency_over_threshold_is_degraded_from_the_start() -> None:
    d = link()
    tr = d.rounds(5, 0.200)
    assert [t.new for t in tr] == [DEGRADED]
    assert "latency 200 ms > 150 ms" in tr[0].reason


def test_jitter_over_threshold_is_degraded() -> None:
    d = up_link()
    seen: list[Transition] = []
    for i in range(200):
        tr = d.round(0.010 if i % 2 else 0.090)
        if tr:
            seen.append(tr)
    assert [t.new for t in seen] == [DEGRADED]
    assert "jitter" in seen[0].reason and "> 30 ms" in seen[0].reason


def test_low_mos_is_degraded() -> None:
    # Only the MOS threshold can trip: the others are out of reach.
    params = HealthParams(degraded_latency=10, degraded_jitter=10, degraded_loss=1, down_loss=1)
    d = up_link(params)
    tr = d.seconds(10, 1.0)  # 1 s RTT: talkers collide, MOS falls well under 3.6
    assert [t.new for t in tr] == [DEGRADED]
    assert "MOS" in tr[0].reason and "< 3.60" in tr[0].reason


def test_one_lost_probe_in_a_short_window_is_not_degradation() -> None:
    d = link()
    d.rounds(5, OK)
    assert d.h.state is UP
    d.round(None)
    assert d.rounds(20, OK) == []  # 1 of 26 lost (4 %): one probe proves nothing
    assert d.h.metrics().loss_evidence < 1.0


def test_a_target_that_goes_silent_on_its_own_is_no_loss_evidence() -> None:
    # Far target 2 stops answering ping; the others see a clean path. Its losses are
    # never weighed (it does not answer again), and it leaves the pool once its window
    # count is out of line with the others'.
    d = up_link(targets=3)
    assert d.seconds(60, OK, OK, None) == []
    m = d.h.metrics()
    assert m.loss_evidence == 0.0 and m.loss_one_way == 0.0


def test_an_outage_is_no_loss_evidence() -> None:
    # Two whole rounds lost (a 200-400 ms glitch) are the down rule's business: short of
    # down_after they change nothing, and they are not a loss rate.
    d = up_link(targets=2)
    d.rounds(2, None, None)
    assert d.rounds(20, OK, OK) == []
    assert d.h.metrics().loss_evidence == 0.0


def test_a_link_that_improves_leaves_degraded_after_the_hold_down() -> None:
    d = up_link()
    for _ in range(20):
        d.round(None)
        d.rounds(4, OK)
    assert d.h.state is DEGRADED
    start = d.t
    tr = d.seconds(40, OK)
    assert [t.new for t in tr] == [UP]
    assert tr[0].at - start >= 10.0  # the window must clear, then the hold-down runs


def test_degraded_recovers_only_under_stricter_bounds_after_hold_down() -> None:
    d = up_link()
    tr = d.seconds(10, 0.160)
    assert [t.new for t in tr] == [DEGRADED]
    # 140 ms: under the 150 ms threshold, above the 120 ms recovery bound. Stays.
    assert d.seconds(60, 0.140) == []
    assert d.h.state is DEGRADED
    assert d.h.hold_down_remaining(d.t) == 0.0
    start = d.t
    tr = d.seconds(30, 0.100)
    assert [t.new for t in tr] == [UP]
    # The window mean needs a while to fall under 120 ms, then the 10 s hold-down runs.
    assert tr[0].at - start >= 10.0
    assert tr[0].reason.startswith("fibre-a: quality within bounds for 10 s")


def test_hold_down_of_degraded_restarts_when_quality_slips() -> None:
    d = up_link()
    d.seconds(10, 0.200)
    assert d.h.state is DEGRADED
    d.seconds(15, 0.050)  # the window is clean by now and the hold-down is running
    assert d.h.state is DEGRADED
    assert 0 < d.h.hold_down_remaining(d.t) < 10
    d.seconds(10, 0.300)  # bad again before the hold-down ended
    d.seconds(12, 0.050)
    assert d.h.state is DEGRADED


def test_up_to_degraded_is_immediate_once_the_window_says_so() -> None:
    d = up_link()
    d.rounds(61, 0.400)  # mean = (39 * 10 + 61 * 400) / 100 ms = 248 ms
    # Mean crosses 150 ms at the 36th slow round: (64*10 + 36*400)/100 = 150.4 ms.
    assert [t.new for t in d.transitions] == [DEGRADED]
    assert d.transitions[0].at == pytest.approx(100.0 + 10.0 + 35 * 0.1)


# -- hold-down ----------------------------------------------------------------------------


def test_recovery_only_after_the_hold_down() -> None:
    d = down_link()
    first_good = d.t
    assert d.rounds(100, OK) == []  # 0 .. 9.9 s of good rounds
    assert d.h.hold_down_remaining(d.t - 0.1) == pytest.approx(0.1)
    tr = d.round(OK)  # the round at 10.0 s
    assert tr is not None and (tr.old, tr.new) == (DOWN, UP)
    assert tr.at - first_good == pytest.approx(10.0)
    assert "hold-down 10 s" in tr.reason
    assert d.h.hold_down_remaining(d.t) == 0.0


def test_a_long_outage_does_not_hold_the_link_down_past_its_hold_down() -> None:
    # An outage longer than half the window leaves window loss over down_loss; once the
    # link answers again, that old loss must not keep it down: recovery is the hold-down.
    params = HealthParams(hold_down=4.0)
    d = down_link(params)
    d.seconds(6, None)  # a 6 s outage: 30 of the 50 rounds of the window lost
    first_good = d.t
    tr = d.seconds(6, OK)
    assert [t.new for t in tr] == [UP]
    assert tr[0].at - first_good == pytest.approx(4.0)


def test_a_dead_round_restarts_the_hold_down() -> None:
    d = down_link()
    d.seconds(9, OK)
    d.round(None)
    restart = d.t
    tr = d.seconds(12, OK)
    assert [t.new for t in tr] == [UP]
    assert tr[0].at - restart == pytest.approx(10.0)


def test_down_link_counts_the_full_hold_down_while_dead() -> None:
    d = down_link()
    d.rounds(30, None)
    assert d.h.hold_down_remaining(d.t) == pytest.approx(10.0)


def test_recovery_into_degraded_when_the_link_comes_back_bad() -> None:
    d = down_link()
    tr = d.seconds(11, 0.300)
    assert [t.new for t in tr] == [DEGRADED]
    assert "but latency 300 ms > 150 ms" in tr[0].reason


# -- flap damping -------------------------------------------------------------------------


def _flap_once(d: Driver) -> tuple[float, float]:
    """Take the link down, then count how long until it is back up."""
    d.rounds(3, None)
    assert d.h.state is DOWN
    start = d.t
    while d.h.state is DOWN:
        d.round(OK)
        assert d.t - start < 1000
    return d.t - start, d.h.penalty(d.t)


def test_one_failure_uses_the_plain_hold_down() -> None:
    d = up_link()
    took, penalty = _flap_once(d)
    assert took == pytest.approx(10.1)
    assert 0.8 < penalty <= 1.0


def test_repeated_flapping_stretches_the_hold_down_up_to_the_ceiling() -> None:
    # A long half-life, so the penalty builds up faster than it decays.
    d = up_link(HealthParams(flap_max_hold_down=60.0, flap_half_life=3600.0))
    holds = [_flap_once(d)[0] for _ in range(8)]
    assert holds[:3] == pytest.approx([10.2, 20.2, 40.2], abs=1.0)
    assert holds[1] > holds[0] * 1.3
    assert holds == sorted(holds)  # each flap holds at least as long as the last
    assert max(holds) <= 60.0 + 0.4  # the ceiling (plus a round of granularity)
    assert holds[-1] == pytest.approx(60.2, abs=0.3)


def test_penalty_decays_with_the_half_life() -> None:
    d = up_link()
    d.rounds(3, None)
    at = d.t
    assert d.h.penalty(at) == pytest.approx(1.0, abs=0.02)
    assert d.h.penalty(at + 60) == pytest.approx(0.5, abs=0.02)
    assert d.h.penalty(at + 600) < 0.001
    assert d.h.effective_hold_down(at + 600) == 10.0


def test_flapping_every_second_never_comes_up_during_the_flapping() -> None:
    d = up_link()
    for _ in range(10):  # 20 s: 1 s dead, 1 s answering
        d.seconds(1, None)
        d.seconds(1, OK)
    assert [t.new for t in d.transitions] == [DOWN]
    d.seconds(12, OK)
    assert [t.new for t in d.transitions] == [DOWN, UP]


def _slow_flaps(params: HealthParams) -> list[Transition]:
    # Down 1 s, up 20 s: long enough for the plain hold-down, so only damping limits it.
    d = up_link(params)
    for _ in range(30):
        d.seconds(1, None)
        d.seconds(20, OK)
    return [t for t in d.transitions if t.new is UP]


def test_slow_flapping_is_bounded_by_damping() -> None:
    undamped = _slow_flaps(HealthParams(flap_max_hold_down=10.0))  # ceiling = plain hold-down
    damped = _slow_flaps(HealthParams())
    assert len(undamped) == 30
    assert len(damped) <= 20
    assert any("hold-down 10 s" not in t.reason for t in damped)  # some were stretched


# -- carrier ------------------------------------------------------------------------------


def test_carrier_loss_is_down_at_once_and_rounds_cannot_undo_it() -> None:
    d = up_link()
    tr = d.carrier(False)
    assert tr is not None and (tr.old, tr.new) == (UP, DOWN)
    assert tr.reason == "fibre-a: carrier lost"
    assert d.carrier(False) is None  # repeated event: no second flap
    assert d.h.penalty(d.t) == pytest.approx(1.0)
    assert d.seconds(60, OK) == []
    assert d.h.state is DOWN
    assert d.h.hold_down_remaining(d.t) == pytest.approx(10.0)


def test_carrier_back_still_needs_the_hold_down() -> None:
    d = up_link()
    d.carrier(False)
    d.seconds(5, None)
    assert d.carrier(True) is None
    assert d.h.state is DOWN
    assert "carrier back" in d.h.reason
    back = d.t
    tr = d.seconds(12, OK)
    assert [t.new for t in tr] == [UP]
    assert tr[0].at - back == pytest.approx(10.0)


def test_carrier_lost_on_a_down_link_updates_the_reason_only() -> None:
    d = down_link()
    since = d.h.since
    assert d.carrier(False) is None
    assert d.h.reason == "fibre-a: carrier lost"
    assert d.h.since == since


def test_carrier_up_on_a_healthy_link_changes_nothing() -> None:
    d = up_link()
    assert d.carrier(True) is None
    assert d.h.state is UP


# -- random loss: calm under noise, quick on a bad line ---------------------------------------


def _run_loss_each_way(
    seed: int,
    one_way: float,
    *,
    targets: int = 3,
    reliability: int = 1,
    silent: Sequence[int] = (),
    seconds: float = 600.0,
    onset: float = 0.0,
) -> Driver:
    """A link whose probes cross a line that drops ``one_way`` of the packets in each
    direction (a probe is lost if its request or its reply is), from ``onset`` seconds on;
    targets in ``silent`` never answer (they filter ping on their own)."""
    rng = random.Random(seed)
    d = link(targets=targets, reliability=reliability)
    end = d.t + seconds
    bad_from = d.t + onset
    while d.t < end:
        p = one_way if d.t >= bad_from else 0.0
        d.round(*(
            None if i in silent or rng.random() < p or rng.random() < p
            else 0.010 + rng.random() * 0.002
            for i in range(targets)
        ))
    return d


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1))
def test_loss_under_the_threshold_is_never_degraded(seed: int) -> None:
    # The line: 1 % each way (2 % of probes), one far target dead, 10 minutes.
    d = _run_loss_each_way(seed, 0.01, silent=(2,))
    assert [t.new for t in d.transitions] == [UP]


@settings(max_examples=15, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1))
def test_loss_under_the_threshold_with_reliability_two_is_calm(seed: int) -> None:
    d = _run_loss_each_way(seed, 0.01, reliability=2)
    assert [t.new for t in d.transitions] == [UP]


def test_loss_near_the_threshold_is_rarely_degraded() -> None:
    # 1.5 % each way: under the 2 % threshold, 3 % of probes lost. 10 fixed seeds x
    # 10 minutes: most never leave UP, none goes down.
    runs = [_run_loss_each_way(seed, 0.015) for seed in range(10)]
    assert sum([t.new for t in d.transitions] == [UP] for d in runs) >= 8
    assert not any(t.new is DOWN for d in runs for t in d.transitions)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1))
def test_loss_twice_the_threshold_is_degraded_within_two_minutes(seed: int) -> None:
    # 4 % each way, one far target dead: median 14 s, p99 about 50 s over 150 seeds.
    d = _run_loss_each_way(seed, 0.04, silent=(2,), seconds=160.0, onset=30.0)
    bad = [t for t in d.transitions if t.new is DEGRADED]
    assert bad, "4 % each way never called degraded"
    assert bad[0].at - (100.0 + 30.0) <= 120.0
    assert not any(t.new is DOWN for t in d.transitions)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1))
def test_a_voice_bad_line_is_degraded_within_a_minute(seed: int) -> None:
    # 5 % each way on three targets: median 6 s, p90 12 s over 150 seeds (the benchmark
    # measures it on the lab); the bound here is what no seed may exceed.
    d = _run_loss_each_way(seed, 0.05, seconds=90.0, onset=30.0)
    bad = [t for t in d.transitions if t.new is DEGRADED]
    assert bad and bad[0].at - (100.0 + 30.0) <= 60.0
    # and it stays degraded while the line is bad: no flapping back
    assert [t.new for t in d.transitions] == [UP, DEGRADED]


@settings(max_examples=10, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1))
def test_one_percent_random_loss_on_a_single_target_never_goes_down(seed: int) -> None:
    d = _run_loss_each_way(seed, 0.01, targets=1, seconds=300.0)
    assert sum(t.new is DOWN for t in d.transitions) <= 1  # 3 lost in a row: ~8e-6 a round


# -- stale rounds -------------------------------------------------------------------------


def test_a_stalled_prober_makes_an_up_link_unknown_not_down() -> None:
    d = up_link()
    assert d.h.tick(d.t + 1.0) is None
    tr = d.h.tick(d.t + 5.0)
    assert tr is not None and (tr.old, tr.new) == (UP, UNKNOWN)
    assert "no probe results for" in tr.reason
    assert d.h.metrics().rounds == 0


def test_tick_leaves_a_down_link_down() -> None:
    d = down_link()
    assert d.h.tick(d.t + 100) is None
    assert d.h.state is DOWN


def test_a_gap_in_rounds_does_not_count_as_hold_down() -> None:
    d = down_link()
    d.seconds(5, OK)
    d.t += 30  # the prober stalled for 30 s
    tr = d.seconds(9.8, OK)
    assert tr == []
    assert d.h.state is DOWN


# -- bad input ----------------------------------------------------------------------------


def test_bad_construction_and_bad_rounds_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="at least one target"):
        Health("x", HealthParams(), 0, 1)
    with pytest.raises(ValueError, match="reliability"):
        Health("x", HealthParams(), 2, 3)
    with pytest.raises(ValueError, match="interval"):
        HealthParams(interval=0)
    with pytest.raises(ValueError, match="down_loss"):
        HealthParams(down_loss=2)
    h = Health("x", HealthParams(), 2, 1)
    with pytest.raises(ValueError, match="2 targets"):
        h.observe(ProbeRound(0.0, (OK,)))
    with pytest.raises(ValueError, match="bad RTT"):
        h.observe(ProbeRound(0.0, (OK, math.nan)))
    assert h.metrics().rounds == 0  # a rejected round leaves no trace


# -- invariants over every short history --------------------------------------------------

SMALL = HealthParams(interval=1.0, window=4.0, down_after=2, rise=2, hold_down=3.0, min_rounds=2)


def _check_history(events: Sequence[str], params: HealthParams) -> None:
    """Replay events ('a' alive round, 'd' dead round, 'c' carrier lost, 'C' carrier back).

    Checks the invariants every history must keep: transitions chain, reasons name the
    link, no recovery from DOWN without hold_down seconds of alive rounds and carrier,
    DOWN while the carrier is lost, DOWN after down_after dead rounds.
    """
    h = Health("l", params, 1, 1)
    t = 0.0
    state = UNKNOWN
    carrier = True
    alive_run: list[float] = []  # times of the current run of alive rounds under carrier
    dead_run = 0
    for ev in events:
        if ev in "ad":
            tr = h.observe(ProbeRound(t, (OK if ev == "a" else None,)))
            if ev == "a" and carrier:
                alive_run.append(t)
                dead_run = 0
            else:
                alive_run = []
                dead_run += 1
        else:
            if carrier != (ev == "C"):
                alive_run = []  # a real carrier change; a repeated event is a no-op
            carrier = ev == "C"
            tr = h.carrier(carrier, t)
        if tr is not None:
            assert tr.old is state and tr.new is not state
            assert tr.reason.startswith("l: ")
            assert tr.at == t
            if tr.old is DOWN:
                assert alive_run and t - alive_run[0] >= h.effective_hold_down(t) - 1e-6
            if tr.old is UNKNOWN and tr.new is not DOWN:
                assert len(alive_run) >= params.rise
            state = tr.new
        assert h.state is state
        if not carrier:
            assert state is DOWN
        if dead_run >= params.down_after:
            assert state is DOWN
        assert h.hold_down_remaining(t) >= 0
        t += params.interval


@pytest.mark.parametrize("length", range(1, 11))
def test_every_alive_dead_history_keeps_the_invariants(length: int) -> None:
    for events in itertools.product("ad", repeat=length):
        _check_history(events, SMALL)


@settings(max_examples=300, deadline=None)
@given(events=st.lists(st.sampled_from("aaaaaaddcC"), max_size=80))
def test_random_histories_with_carrier_events_keep_the_invariants(events: list[str]) -> None:
    _check_history(events, SMALL)


def test_a_link_down_before_a_restart_needs_the_full_hold_down() -> None:
    d = link(HealthParams(hold_down=4.0))
    tr = d.h.resume_down(d.t, "down before the restart")
    assert tr is not None and (tr.old, tr.new) == (UNKNOWN, DOWN)
    first_good = d.t
    trs = d.seconds(6, OK)
    assert [t.new for t in trs] == [UP]
    assert trs[0].at - first_good == pytest.approx(4.0)  # not after `rise` rounds
    assert d.h.resume_down(d.t, "again") is None  # only from UNKNOWN


def test_a_link_dead_at_start_is_no_flap() -> None:
    d = link(HealthParams(hold_down=4.0))
    d.rounds(3, None)
    assert d.h.state is DOWN
    assert d.h.penalty(d.t) == 0.0
    first_good = d.t
    trs = d.seconds(6, OK)
    assert [t.new for t in trs] == [UP]
    assert trs[0].at - first_good == pytest.approx(4.0)  # the plain hold-down, not doubled
    # ...and its first real failure then counts as one flap
    d.rounds(3, None)
    assert d.h.penalty(d.t) == pytest.approx(1.0, abs=0.01)


def test_retune_keeps_state_and_history_and_judges_the_next_round_anew() -> None:
    """A config reload: new thresholds, the same known health (never back to unknown)."""
    h = Health("fibre-a", HealthParams(interval=0.2, window=10.0, hold_down=10.0), 1, 1)
    t = 0.0
    for _ in range(50):
        h.observe(ProbeRound(sent_at=t, rtts=(0.020,)))
        t += 0.2
    assert h.state is HealthState.UP and h.metrics().rounds == 50
    h.retune(HealthParams(interval=0.2, window=2.0, hold_down=3.0, degraded_latency=0.01))
    assert h.state is HealthState.UP  # kept through the reload
    assert h.metrics().rounds == 10  # the window trimmed to its new length, newest kept
    assert h.metrics().latency == pytest.approx(0.020)
    tr = h.observe(ProbeRound(sent_at=t, rtts=(0.020,)))  # judged by the new thresholds
    assert tr is not None and tr.new is HealthState.DEGRADED


def test_retune_to_the_same_params_changes_nothing() -> None:
    p = HealthParams(interval=0.2)
    a, b = Health("x", p, 2, 1), Health("x", p, 2, 1)
    t = 0.0
    for i in range(30):
        rnd = ProbeRound(sent_at=t, rtts=(0.01, None if i % 3 else 0.02))
        a.observe(rnd)
        b.observe(rnd)
        t += 0.2
    b.retune(p)
    assert (a.state, a.reason, a.metrics()) == (b.state, b.reason, b.metrics())
