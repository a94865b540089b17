"""PURE: the flap penalty behind every damped hold-down (links, trunks, the edge's trips).

Each failure adds 1 to a penalty that halves every half-life; a hold-down doubles per unit
of penalty up to a ceiling. Links (controller.core.health) and the edge's call-failure trips
(controller.core.edgesignal) share it, so "damped" means the same everywhere. No clock: time is
an argument.
"""

from __future__ import annotations

import math


class Penalty:
    """A decaying count of failures: +1 per ``add``, halving every ``half_life`` seconds."""

    def __init__(self, half_life: float) -> None:
        self.half_life = half_life
        self._value = 0.0
        self._at = 0.0  # the decay runs from here

    def at(self, now: float) -> float:
        if self._value == 0.0:
            return 0.0
        age = max(0.0, now - self._at)
        return self._value * math.pow(2.0, -age / self.half_life)

    def add(self, now: float, decay_from: float | None = None) -> None:
        """One more failure at ``now``; the decay starts at ``decay_from`` (default now)."""
        self._value = self.at(now) + 1.0
        self._at = now if decay_from is None else decay_from


def damped(base: float, doublings: float, ceiling: float) -> float:
    """``base`` doubled ``doublings`` times (none when <= 0), at most ``ceiling``."""
    return min(ceiling, base * math.pow(2.0, max(0.0, doublings)))
