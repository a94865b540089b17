"""PURE: a simplified ITU-T G.107 E-model, from link figures to the MOS a call would get.

A link can answer every ping and still be useless for voice; this module turns what the
probes measure (round-trip latency, jitter, loss) into the rating factor R and the mean
opinion score MOS, so health.py can call a link degraded in the operator's own terms.
It models one call leg over the link with default values for everything G.107 lets us
leave at its defaults (no echo, no background noise, random loss), and is a pure
function of its arguments: no I/O, no state. Inputs are in seconds and ratios (0..1), as
everywhere else in lifeline; G.107's own formulas work in milliseconds and percent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["CODECS", "Codec", "mos_from", "mos_from_r", "one_way_delay", "r_factor"]


@dataclass(frozen=True, slots=True)
class Codec:
    """What a codec costs: fixed impairment Ie, loss robustness Bpl, and its own delay.

    ``delay`` is what the codec adds before the first bit leaves (packetization, look-ahead);
    it counts in the one-way delay like the network's share does.
    """

    ie: float  # equipment impairment factor
    bpl: float  # packet-loss robustness factor
    delay: float  # seconds of packetization and algorithmic delay


# Ie and Bpl from ITU-T G.113 Appendix I (random loss). G.711 with packet loss
# concealment is what every SIP phone and PBX does today, so it is the default.
CODECS: dict[str, Codec] = {
    "g711": Codec(ie=0.0, bpl=25.1, delay=0.020),  # 20 ms frames, PLC
    "g711-noplc": Codec(ie=0.0, bpl=4.3, delay=0.020),  # 20 ms frames, no concealment
    "g729": Codec(ie=11.0, bpl=19.0, delay=0.025),  # 2 x 10 ms frames + 5 ms look-ahead
}

# The R of a connection with nothing wrong (G.107 default values throughout).
R0_MINUS_IS = 93.2
# A jitter buffer never goes below this much, even on a quiet LAN: phones start near 20 ms.
MIN_JITTER_BUFFER = 0.020
# The knee of G.107's delay impairment: beyond ~177 ms one way, talkers start to collide.
DELAY_KNEE_MS = 177.3


def _codec(name: str) -> Codec:
    try:
        return CODECS[name.lower()]
    except KeyError:
        known = ", ".join(sorted(CODECS))
        raise ValueError(f"unknown codec {name!r}; known codecs: {known}") from None


def _check(latency_rtt: float, jitter: float, loss_ratio: float) -> None:
    # NaN would silently compare false everywhere and make a bad link look perfect.
    for label, value in (("latency", latency_rtt), ("jitter", jitter), ("loss", loss_ratio)):
        if math.isnan(value) or value < 0:
            raise ValueError(f"{label} must be a non-negative number, got {value!r}")


def one_way_delay(latency_rtt: float, jitter: float, codec: str = "g711") -> float:
    """Mouth-to-ear delay in seconds: half the RTT, the jitter buffer, and the codec.

    The jitter buffer matters because a phone has to wait out the jitter to play smoothly:
    jitter costs delay even when no packet is lost. Two times the jitter is what adaptive
    buffers settle on.
    """
    _check(latency_rtt, jitter, 0.0)
    return latency_rtt / 2 + max(2 * jitter, MIN_JITTER_BUFFER) + _codec(codec).delay


def r_factor(latency_rtt: float, jitter: float, loss_ratio: float, codec: str = "g711") -> float:
    """G.107 rating factor R (0..100 for real calls; 93.2 is a perfect G.711 call).

    R = 93.2 - Id - Ie_eff: Id from the one-way delay, Ie_eff from the codec and the loss.
    Loss above 100 % is clamped rather than rejected: a probe round cannot lose more
    than everything, and a rounding error must not raise in the middle of a decision.
    """
    _check(latency_rtt, jitter, loss_ratio)
    c = _codec(codec)
    d_ms = one_way_delay(latency_rtt, jitter, codec) * 1000.0
    i_d = 0.024 * d_ms
    if d_ms > DELAY_KNEE_MS:
        i_d += 0.11 * (d_ms - DELAY_KNEE_MS)
    ppl = min(loss_ratio, 1.0) * 100.0
    # Written as 95 - (95 - Ie) * Bpl / (Ppl + Bpl), the same value as
    # Ie + (95 - Ie) * Ppl / (Ppl + Bpl), because this form stays monotone under
    # floating-point rounding: more loss never yields a (tiny) better score.
    ie_eff = 95.0 - (95.0 - c.ie) * c.bpl / (ppl + c.bpl)
    return R0_MINUS_IS - i_d - ie_eff


def mos_from_r(r: float) -> float:
    """G.107's mapping from R to MOS (1.0 .. 4.5).

    The cubic dips slightly below 1 for R under ~6.5; MOS is clamped at 1 there so that
    the score stays monotone in R (a worse call never scores better).
    """
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    return max(1.0, 1.0 + 0.035 * r + 7e-6 * r * (r - 60.0) * (100.0 - r))


def mos_from(latency_rtt: float, jitter: float, loss_ratio: float, codec: str = "g711") -> float:
    """MOS a call over this link would get: RTT and jitter in seconds, loss as a ratio."""
    return mos_from_r(r_factor(latency_rtt, jitter, loss_ratio, codec))
