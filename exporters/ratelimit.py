"""Token buckets for the operator API's writes: one per caller and one shared by all.

Pure: the caller hands in the time (a monotonic clock), so the tests need no sleeping.
A bucket holds up to ``burst`` writes and refills at ``per_minute`` writes a minute; a
write takes one from the caller's bucket and one from the shared one, or none at all when
either is empty (a refused write must not use up the caller's allowance).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class Bucket:
    per_minute: float
    burst: int
    level: float
    at: float | None = None  # when last refilled; None: never (the bucket starts full)

    def refill(self, now: float) -> None:
        if self.at is None:
            self.at = now
        elif now > self.at:
            self.level = min(float(self.burst),
                             self.level + (now - self.at) * self.per_minute / 60.0)
            self.at = now

    def wait(self) -> float:
        """Seconds until one write is allowed (0 when it is now)."""
        if self.level >= 1.0:
            return 0.0
        if self.per_minute <= 0:
            return math.inf
        return (1.0 - self.level) * 60.0 / self.per_minute


class WriteLimiter:
    """Per-caller buckets (keyed by token name or unix user) and one shared bucket.

    ``shared`` names the callers that also draw on the shared bucket (the TCP callers):
    a flood through the network must not lock the console on the unix socket out.
    """

    def __init__(self, per_minute: float, burst: int, shared_per_minute: float,
                 shared_burst: int) -> None:
        self._per_minute, self._burst = per_minute, burst
        self._shared = Bucket(shared_per_minute, shared_burst, float(shared_burst))
        self._callers: dict[str, Bucket] = {}

    def take(self, caller: str, now: float, *, shared: bool) -> float:
        """Take one write for ``caller``: 0.0 when allowed, else the seconds to wait."""
        own = self._callers.get(caller)
        if own is None:
            own = self._callers[caller] = Bucket(self._per_minute, self._burst,
                                                 float(self._burst))
        own.refill(now)
        buckets = [own, self._shared] if shared else [own]
        if shared:
            self._shared.refill(now)
        wait = max(b.wait() for b in buckets)
        if wait > 0:
            return wait
        for b in buckets:
            b.level -= 1.0
        return 0.0
