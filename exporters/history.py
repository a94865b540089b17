"""The last hour of link quality and trunk RTT, for the status page's small plots.

Prometheus keeps the real history; the status page must work without it (offline, on a
phone in the server room), so the daemon keeps its own short one. It is fed from each
published snapshot and nothing else (exporters read snapshots, never the runtime), and it
is bounded twice: one point per ``step`` seconds, ``window`` seconds of them. A point holds
the *worst* value seen during its step (highest loss, latency, jitter and RTT, lowest MOS),
so a spike that made the daemon fail over still shows on a 10-second grid.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.core.snapshot import Snapshot

# (series name, how two values of one step combine): the page plots the worst of a step.
LINK_SERIES: tuple[tuple[str, Callable[[float, float], float]], ...] = (
    ("loss", max), ("latency", max), ("jitter", max), ("mos", min),
)
TRUNK_SERIES: tuple[tuple[str, Callable[[float, float], float]], ...] = (("rtt", max),)

Values = dict[str, float | None]


@dataclass(frozen=True, slots=True)
class Point:
    """One step: its start (wall clock, seconds since the epoch) and each series' value."""

    t: float
    links: Mapping[str, Values]
    trunks: Mapping[str, Values]

    def as_json(self) -> dict[str, Any]:
        return {"t": self.t, "links": {k: dict(v) for k, v in self.links.items()},
                "trunks": {k: dict(v) for k, v in self.trunks.items()}}


def _link_values(snap: Snapshot) -> dict[str, Values]:
    return {k.name: {"loss": k.loss_ratio, "latency": k.latency, "jitter": k.jitter,
                     "mos": k.mos} for k in snap.links}


def _trunk_values(snap: Snapshot) -> dict[str, Values]:
    return {t.name: {"rtt": t.last_rtt} for t in snap.trunks}


def _merge(into: dict[str, Values], new: dict[str, Values],
           series: tuple[tuple[str, Callable[[float, float], float]], ...]) -> None:
    for name, values in new.items():
        have = into.setdefault(name, {})
        for key, worst in series:
            v, old = values.get(key), have.get(key)
            have[key] = v if old is None else old if v is None else worst(old, v)


@dataclass
class History:
    """A ring buffer of ``Point``s; ``record`` takes every snapshot, keeps one per step."""

    step: float = 10.0
    window: float = 3600.0
    _points: deque[Point] = field(init=False)
    _open_t: float | None = field(default=None, init=False)
    _open_links: dict[str, Values] = field(default_factory=dict, init=False)
    _open_trunks: dict[str, Values] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        if self.step <= 0 or self.window < self.step:
            raise ValueError("history needs step > 0 and window >= step")
        self._points = deque(maxlen=int(self.window // self.step))

    def record(self, snap: Snapshot) -> Point | None:
        """Fold ``snap`` into its step; return the point of the step it closed, if any."""
        t = snap.taken_at - snap.taken_at % self.step
        closed: Point | None = None
        if self._open_t is not None and t != self._open_t:
            if t < self._open_t:  # the wall clock went back: what was kept is in the future
                self._points.clear()
            else:
                closed = Point(self._open_t, self._open_links, self._open_trunks)
                self._points.append(closed)
            self._open_links, self._open_trunks = {}, {}
        self._open_t = t
        _merge(self._open_links, _link_values(snap), LINK_SERIES)
        _merge(self._open_trunks, _trunk_values(snap), TRUNK_SERIES)
        return closed

    def points(self) -> list[Point]:
        return list(self._points)

    def as_json(self, now: float | None = None) -> dict[str, Any]:
        """Columns the page plots directly: ``t`` and, per link or trunk and series, one
        value per ``t`` (null where it had none, e.g. before a reload added it). Points
        older than ``window`` before ``now`` are left out (a daemon idle for a while)."""
        points = [p for p in self._points
                  if now is None or p.t > now - self.window - self.step]
        links: dict[str, dict[str, list[float | None]]] = {}
        trunks: dict[str, dict[str, list[float | None]]] = {}
        for i, p in enumerate(points):
            for out, have, series in ((links, p.links, LINK_SERIES),
                                      (trunks, p.trunks, TRUNK_SERIES)):
                for name, values in have.items():
                    cols = out.setdefault(name, {key: [None] * len(points)
                                                 for key, _ in series})
                    for key, _ in series:
                        cols[key][i] = values.get(key)
        return {"step": self.step, "window": self.window, "t": [p.t for p in points],
                "links": links, "trunks": trunks}
