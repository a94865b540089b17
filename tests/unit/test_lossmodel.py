"""The loss model: one-way loss from round-trip loss, and the CUSUM that proves a line bad."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.lossmodel import LossEvidence, one_way_loss, round_trip_loss

ratios = st.floats(0.0, 1.0, allow_nan=False)


def test_one_percent_each_way_is_about_two_percent_of_probes() -> None:
    assert round_trip_loss(0.01) == pytest.approx(0.0199)
    assert one_way_loss(0.0199) == pytest.approx(0.01)
    assert one_way_loss(0.0) == 0.0 and one_way_loss(1.0) == 1.0


@given(ratios)
def test_one_way_and_round_trip_are_inverse(p: float) -> None:
    assert one_way_loss(round_trip_loss(p)) == pytest.approx(p, abs=1e-9)


@given(ratios)
def test_one_way_is_never_above_the_round_trip_figure(rt: float) -> None:
    # ... and never below half of it: the truth lies between symmetric and one-sided loss.
    assert rt / 2 - 1e-12 <= one_way_loss(rt) <= rt + 1e-12


def test_out_of_range_inputs_are_clamped_not_raised() -> None:
    assert one_way_loss(-0.1) == 0.0 and one_way_loss(1.5) == 1.0
    assert one_way_loss(math.nan) == 0.0
    assert round_trip_loss(2.0) == 1.0 and round_trip_loss(-1.0) == 0.0


def test_evidence_weights_are_the_log_likelihood_ratio() -> None:
    e = LossEvidence(0.02, 0.04, 5.0)
    p0, p1 = round_trip_loss(0.02), round_trip_loss(0.04)
    assert e.per_loss == pytest.approx(math.log(p1 / p0))
    assert e.per_answer == pytest.approx(math.log((1 - p1) / (1 - p0)))
    assert e.per_loss > 0 > e.per_answer


def test_evidence_never_goes_below_zero_and_is_proven_at_the_level() -> None:
    e = LossEvidence(0.02, 0.04, 5.0)
    assert e.add(0, 1000) == 0.0
    assert not e.proven
    for _ in range(7):
        e.add(1, 0)
    assert not e.proven  # 7 x 0.683 = 4.78
    assert e.add(1, 0) >= 5.0 and e.score >= e.level
    e.reset()
    assert e.score == 0.0 and not e.proven


@pytest.mark.parametrize(
    ("acceptable", "bad", "level"),
    [(0.0, 0.04, 5.0), (0.04, 0.02, 5.0), (0.02, 1.0, 5.0), (0.02, 0.04, 0.0)],
)
def test_nonsense_parameters_are_refused(acceptable: float, bad: float, level: float) -> None:
    with pytest.raises(ValueError):
        LossEvidence(acceptable, bad, level)


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        LossEvidence(0.02, 0.04, 5.0).add(-1, 0)


def _score_path(one_way: float, probes: int, seed: int) -> float:
    """Highest score a line losing ``one_way`` each way reaches over ``probes`` probes."""
    rng = random.Random(seed)
    e = LossEvidence(0.02, 0.04, 5.0)
    top = 0.0
    for _ in range(probes):
        lost = rng.random() < one_way or rng.random() < one_way
        top = max(top, e.add(int(lost), int(not lost)))
    return top


def test_the_drift_points_the_right_way() -> None:
    # 12,000 probes (10 minutes of two targets at 10 a second): under the threshold the
    # score stays low, at three times it the level is passed many times over.
    assert max(_score_path(0.01, 12_000, seed) for seed in range(5)) < 5.0
    assert min(_score_path(0.06, 12_000, seed) for seed in range(5)) > 20.0
