"""PURE: probe rounds and carrier events -> per-link health (state machine in one place).

No I/O and no clock: every method takes the time as an argument, so the whole state
machine is tested exhaustively and property-based without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class LinkState(StrEnum):
    UNKNOWN = "unknown"  # just started, not enough rounds yet
    UP = "up"
    DEGRADED = "degraded"  # alive but bad for voice: used only when nothing is up
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class HealthParams:
    """Thresholds of one link; defaults aim at sub-second detection of a dead link."""

    interval: float = 0.2  # seconds between probe rounds
    window: float = 10.0  # seconds of rounds behind loss/latency/jitter/MOS
    down_after: int = 3  # consecutive failed rounds -> down
    down_loss: float = 0.5  # loss ratio over the window -> down
    rise: int = 5  # consecutive good rounds before an unknown link counts
    hold_down: float = 10.0  # seconds of stable good rounds before down -> up
    degraded_loss: float = 0.02
    degraded_latency: float = 0.15  # mean RTT, seconds
    degraded_jitter: float = 0.03  # seconds
    degraded_mos: float = 3.6
    flap_half_life: float = 60.0  # seconds for the flap penalty to halve
    flap_max_hold_down: float = 300.0  # ceiling of the damped hold-down


@dataclass(frozen=True, slots=True)
class Round:
    """One probe round of a link: every target probed once, answered or lost."""

    sent_at: float  # monotonic seconds
    rtts: tuple[float | None, ...]  # one per target in config order; None = lost


@dataclass(frozen=True, slots=True)
class LinkMetrics:
    loss_ratio: float
    latency: float | None  # mean RTT, seconds
    jitter: float | None  # RFC 3550-style interarrival jitter of the RTT, seconds
    mos: float | None  # E-model estimate, 1.0 .. 4.5
    rounds: int  # rounds in the window


@dataclass(frozen=True, slots=True)
class Transition:
    link: str
    old: LinkState
    new: LinkState
    at: float
    reason: str  # e.g. "fibre-a: 3 rounds lost in a row (0.6 s)"
