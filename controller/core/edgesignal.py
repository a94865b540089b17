"""PURE: the SIP edge's call failures for one trunk -> "this trunk fails calls" (the edge signal).

A trunk can answer every OPTIONS with 200 and still fail every INVITE with 503. The SIP edge
counts such failures per trunk (408, 5xx, no answer); lifeline reads that counter every few
seconds and feeds it here. When it rises by ``failures`` within ``window`` seconds the
trunk *trips*: it counts as degraded (its DIDs move to a trunk that is up) for a hold-down.
Once its DIDs have moved the trunk gets no calls, so no failures either: judging it by the
window alone would bring its DIDs back after ``window`` seconds, fail some calls, move
them again, and so on for ever. So a trip holds for its own hold-down; after it, the trunk
is tried again with real calls (OPTIONS cannot tell), and a trunk that fails again trips for
twice as long, up to a ceiling (the same damping as a flapping link, decaying with a
half-life). The failures that caused a trip never count towards the next one, nor do
failures around an outage the trunk's own OPTIONS saw (``forget``).

No I/O and no clock: time comes in as an argument. Which trunk is chosen is didplan's job.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from controller.core.damping import Penalty, damped


@dataclass(frozen=True, slots=True)
class EdgeSignalParams:
    failures: int = 3  # failed calls within the window that trip the trunk
    window: float = 30.0  # seconds
    hold_down: float = 60.0  # seconds of the first trip; later trips double it
    max_hold_down: float = 900.0
    half_life: float = 600.0  # seconds (not held) for the trip penalty to halve

    def __post_init__(self) -> None:
        if self.failures < 1 or not self.window > 0 or not self.hold_down > 0:
            raise ValueError("edge signal: failures >= 1, window > 0 and hold_down > 0")
        if self.max_hold_down < self.hold_down or not self.half_life > 0:
            raise ValueError("edge signal: max_hold_down >= hold_down and half_life > 0")


class EdgeSignal:
    """One trunk's trip state, fed with the edge's cumulative failure counter."""

    def __init__(self, params: EdgeSignalParams | None = None) -> None:
        self.params = params or EdgeSignalParams()
        self._readings: deque[tuple[float, int]] = deque()
        self._until: float | None = None
        self._penalty = Penalty(self.params.half_life)  # trips, decayed
        self.trips = 0
        self._reason = ""

    def observe(self, now: float, count: int) -> bool:
        """A reading of the edge's failure counter for this trunk; True when it trips now."""
        p = self.params
        if self._readings and count < self._readings[-1][1]:
            self._readings.clear()  # the edge restarted: its counter began again at 0
        self._readings.append((now, count))
        while self._readings and now - self._readings[0][0] > p.window:
            self._readings.popleft()
        if self.tripped(now):
            # Failures while tripped (calls in flight, or it is all that is left) are spent.
            self._readings = deque([(now, count)])
            return False
        rise = count - self._readings[0][1]
        if rise < p.failures:
            return False
        hold = damped(p.hold_down, self._penalty.at(now), p.max_hold_down)
        # The penalty decays from the end of the hold: a trunk that fails every time it is
        # tried must not earn shorter holds for the time it spent held.
        self._until = now + hold
        self._penalty.add(now, decay_from=self._until)
        self.trips += 1
        self._readings = deque([(now, count)])
        self._reason = (f"{rise} calls failed at the SIP edge within {p.window:g} s; "
                        f"held off {hold:.0f} s")
        return True

    def forget(self) -> None:
        """The trunk went down or came back by its own OPTIONS: failures so far are explained
        by that outage (calls in flight to a dead SBC), so they are dropped and a trip in
        force is lifted; the OPTIONS hold-down decides when the trunk is used again. The
        penalty stays: a trunk that fails calls again after it trips for longer."""
        self._readings.clear()
        self._until = None

    def tripped(self, now: float) -> bool:
        return self._until is not None and now < self._until

    def verdict(self, now: float) -> tuple[bool, str]:
        """(fails calls, why): True while a trip holds."""
        if not self.tripped(now):
            return False, ""
        assert self._until is not None
        return True, f"{self._reason} ({self._until - now:.0f} s left)"

    def hold_remaining(self, now: float) -> float:
        return max(0.0, self._until - now) if self._until is not None else 0.0
