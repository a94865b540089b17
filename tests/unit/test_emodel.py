"""E-model: known points of G.107 and monotonicity in every impairment."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.emodel import CODECS, mos_from, mos_from_r, one_way_delay, r_factor


def lan(loss: float, codec: str = "g711") -> float:
    """MOS on a clean LAN (1 ms RTT, 0.2 ms jitter) with the given loss."""
    return mos_from(0.001, 0.0002, loss, codec)


rtts = st.floats(min_value=0.0, max_value=2.0, allow_nan=False)
jitters = st.floats(min_value=0.0, max_value=0.5, allow_nan=False)
losses = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
codecs = st.sampled_from(sorted(CODECS))
# Floating-point slack for "never better": the cubic is evaluated in doubles.
SLACK = 1e-9


def test_clean_lan_is_toll_quality() -> None:
    mos = lan(0.0)
    assert 4.3 <= mos <= 4.45
    assert r_factor(0.001, 0.0002, 0.0) == pytest.approx(92.2, abs=0.1)


def test_five_percent_loss_is_bad_for_voice() -> None:
    # G.711 with concealment (Bpl 25.1) is robust: 5 % random loss costs R ~16 (MOS ~3.9).
    # Without concealment, or on G.729, the same loss falls under the 3.6 voice threshold.
    clean = lan(0.0)
    plc = lan(0.05)
    assert clean - plc > 0.4
    assert plc < 4.0
    assert lan(0.05, "g711-noplc") < 3.6
    assert lan(0.05, "g729") < 3.6
    assert lan(0.10) < 3.6


def test_delay_knee_at_177_ms_one_way() -> None:
    # Below the knee Id grows 0.024 per ms; past it 0.134 per ms.
    base = one_way_delay(0.0, 0.0) * 1000
    below = r_factor(2 * (150 - base) / 1000, 0.0, 0.0) - r_factor(2 * (160 - base) / 1000, 0, 0)
    above = r_factor(2 * (200 - base) / 1000, 0.0, 0.0) - r_factor(2 * (210 - base) / 1000, 0, 0)
    assert below == pytest.approx(0.24)
    assert above == pytest.approx(1.34)


def test_jitter_buffer_has_a_floor_and_grows_with_jitter() -> None:
    assert one_way_delay(0.0, 0.0) == pytest.approx(0.040)  # 20 ms buffer + 20 ms frame
    assert one_way_delay(0.0, 0.005) == pytest.approx(0.040)  # still under the floor
    assert one_way_delay(0.100, 0.030) == pytest.approx(0.050 + 0.060 + 0.020)


def test_mos_mapping_end_points() -> None:
    assert mos_from_r(-5) == 1.0
    assert mos_from_r(0) == 1.0
    assert mos_from_r(3) == 1.0  # the cubic dips under 1 here; clamped
    assert mos_from_r(100) == 4.5
    assert mos_from_r(150) == 4.5
    assert mos_from_r(93.2) == pytest.approx(4.41, abs=0.01)
    assert mos_from_r(50) == pytest.approx(2.58, abs=0.01)


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="codec"):
        mos_from(0.01, 0.0, 0.0, codec="opus-magic")
    with pytest.raises(ValueError, match="latency"):
        mos_from(-0.01, 0.0, 0.0)
    with pytest.raises(ValueError, match="loss"):
        mos_from(0.01, 0.0, math.nan)


def test_codec_names_are_case_insensitive() -> None:
    assert mos_from(0.02, 0.0, 0.01, codec="G729") == mos_from(0.02, 0.0, 0.01, codec="g729")


@given(r1=st.floats(-10, 120), r2=st.floats(-10, 120))
def test_mos_is_monotone_in_r(r1: float, r2: float) -> None:
    lo, hi = sorted((r1, r2))
    assert mos_from_r(lo) <= mos_from_r(hi) + SLACK
    assert 1.0 <= mos_from_r(lo) <= 4.5


@given(a=rtts, b=rtts, jitter=jitters, loss=losses, codec=codecs)
def test_mos_never_improves_with_latency(
    a: float, b: float, jitter: float, loss: float, codec: str
) -> None:
    lo, hi = sorted((a, b))
    assert mos_from(hi, jitter, loss, codec) <= mos_from(lo, jitter, loss, codec) + SLACK


@given(rtt=rtts, a=jitters, b=jitters, loss=losses, codec=codecs)
def test_mos_never_improves_with_jitter(
    rtt: float, a: float, b: float, loss: float, codec: str
) -> None:
    lo, hi = sorted((a, b))
    assert mos_from(rtt, hi, loss, codec) <= mos_from(rtt, lo, loss, codec) + SLACK


@given(rtt=rtts, jitter=jitters, a=losses, b=losses, codec=codecs)
def test_mos_never_improves_with_loss(
    rtt: float, jitter: float, a: float, b: float, codec: str
) -> None:
    lo, hi = sorted((a, b))
    assert mos_from(rtt, jitter, hi, codec) <= mos_from(rtt, jitter, lo, codec) + SLACK
    assert 1.0 <= mos_from(rtt, jitter, hi, codec) <= 4.5
