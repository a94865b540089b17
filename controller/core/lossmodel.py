"""PURE: what a probe's round-trip loss says about a call's loss, and when it is proven bad.

Two questions, two tools.

*How much does a call lose?* A probe is lost when its request or its reply is lost, so it
measures round-trip loss; an RTP stream suffers one direction's loss only, and that is
what the voice thresholds and the E-model are written for. The model: each direction loses
packets independently with the same probability ``p``, so a round trip survives with
``(1 - p)^2`` and ``p = 1 - sqrt(1 - round_trip_loss)``. Symmetric loss is the assumption
(lines that drop on congestion or noise mostly drop both ways alike); when all the loss is
in one direction, the true one-way loss is up to twice this estimate, and the estimate is
still never above the round-trip figure.

*Is it really over the threshold?* At 1 % one way a link loses about 2 % of its probes,
and 50 or 100 probes cannot tell 2 % from 6 % (3 losses in 50 happen by chance about once
a minute), so a plain ratio over a window calls a good line degraded again and again.
``LossEvidence`` is a one-sided CUSUM (Page's cumulative sum): every probe adds the
log-likelihood ratio of "the line loses ``bad`` one way" against "it loses ``acceptable``"
(a loss adds a lot, an answer takes a little away, never below zero), and the line is
proven bad when the sum reaches ``level``, i.e. when the evidence favours the bad rate by
about e^level to 1. A line far over the threshold gets there in a few seconds; one under
it drifts back to zero and, in practice, never gets there; there is no window edge for
three unlucky losses to fall into.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["LossEvidence", "one_way_loss", "round_trip_loss"]


def one_way_loss(round_trip: float) -> float:
    """One direction's loss ratio from a round-trip loss ratio (symmetric, independent)."""
    if math.isnan(round_trip) or round_trip <= 0.0:
        return 0.0
    if round_trip >= 1.0:
        return 1.0
    return 1.0 - math.sqrt(1.0 - round_trip)


def round_trip_loss(one_way: float) -> float:
    """The round-trip loss a probe sees when each direction loses ``one_way``."""
    p = min(max(one_way, 0.0), 1.0)
    return 1.0 - (1.0 - p) ** 2


@dataclass(slots=True)
class LossEvidence:
    """CUSUM of probe outcomes: ``acceptable`` and ``bad`` are one-way loss ratios.

    ``score`` is the accumulated log-likelihood ratio, floored at 0; ``proven`` is whether
    it has reached ``level``. One instance per watched subject; ``reset`` when its history
    stops meaning anything (it went down, its prober stalled).
    """

    acceptable: float
    bad: float
    level: float
    score: float = 0.0
    _per_loss: float = field(init=False, repr=False, default=0.0)
    _per_answer: float = field(init=False, repr=False, default=0.0)

    def __post_init__(self) -> None:
        if not 0.0 < self.acceptable < self.bad < 1.0:
            raise ValueError(
                f"loss evidence needs 0 < acceptable < bad < 1, got {self.acceptable} "
                f"and {self.bad}"
            )
        if not self.level > 0.0:
            raise ValueError(f"loss evidence level must be > 0, got {self.level}")
        p0 = round_trip_loss(self.acceptable)
        p1 = round_trip_loss(self.bad)
        self._per_loss = math.log(p1 / p0)
        self._per_answer = math.log((1.0 - p1) / (1.0 - p0))

    @property
    def per_loss(self) -> float:
        """What one lost probe adds (positive)."""
        return self._per_loss

    @property
    def per_answer(self) -> float:
        """What one answered probe adds (negative)."""
        return self._per_answer

    @property
    def proven(self) -> bool:
        return self.score >= self.level

    def add(self, lost: int, answered: int) -> float:
        """Account for ``lost`` and ``answered`` probes of one round; returns the score.

        A round's probes are added together, then floored: the order of outcomes within
        a round carries no information.
        """
        if lost < 0 or answered < 0:
            raise ValueError("probe counts must be >= 0")
        self.score = max(0.0, self.score + lost * self._per_loss + answered * self._per_answer)
        return self.score

    def reset(self) -> None:
        self.score = 0.0
