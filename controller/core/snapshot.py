"""PURE: the one frozen picture of what the daemon knows, published once per control cycle.

The runtime builds a ``Snapshot`` at the end of every cycle; everything that tells (the
Prometheus collector, ``/api/v1/status``, ``/api/v1/dids``, ``lifeline status``) reads
the latest one and nothing else, so what an operator sees on a dashboard, in the API and
in the terminal is the same state, and no exporter can reach into live runtime objects.
Counters and histograms are cumulative values the runtime keeps (``Tally``), copied in.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from controller.core.didplan import DidPlan
from controller.core.health import HealthState
from controller.core.powersnap import PowerSnap
from controller.core.recsnap import RecordingsSnap
from controller.core.services import ServiceSnap

# Label values of one series, in the order of the metric's label names.
Labels = tuple[str, ...]

# RTT buckets from LAN-fast to satellite-slow; probes time out well before 2 s.
RTT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0)
RECONCILE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
PUSH_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


@dataclass(frozen=True, slots=True)
class Histo:
    """A cumulative histogram: per-bucket counts (not cumulative), the +Inf count and sum."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]  # len(bounds) + 1: the last is above every bound
    total: float  # sum of observed values


class Tally:
    """Monotonic counters and histograms the runtime keeps between snapshots.

    ``init`` declares a label set at 0 so ``increase()`` sees its first event; ``add``
    counts; ``observe`` files a value into a histogram. ``freeze`` copies it all into
    read-only mappings for a snapshot.
    """

    def __init__(self) -> None:
        self._counts: dict[str, dict[Labels, float]] = {}
        self._histos: dict[str, dict[Labels, list[float]]] = {}
        self._bounds: dict[str, tuple[float, ...]] = {}

    def init(self, name: str, *label_sets: Labels) -> None:
        series = self._counts.setdefault(name, {})
        for labels in label_sets:
            series.setdefault(labels, 0.0)

    def add(self, name: str, labels: Labels = (), amount: float = 1.0) -> None:
        series = self._counts.setdefault(name, {})
        series[labels] = series.get(labels, 0.0) + amount

    def histogram(self, name: str, bounds: tuple[float, ...], *label_sets: Labels) -> None:
        """Declare histogram ``name`` with ``bounds`` (and label sets that start at 0)."""
        self._bounds[name] = bounds
        series = self._histos.setdefault(name, {})
        for labels in label_sets:
            series.setdefault(labels, [0.0] * (len(bounds) + 2))

    def observe(self, name: str, value: float, labels: Labels = ()) -> None:
        bounds = self._bounds[name]
        cells = self._histos[name].setdefault(labels, [0.0] * (len(bounds) + 2))
        cells[bisect.bisect_left(bounds, value)] += 1
        cells[-1] += value

    def value(self, name: str, labels: Labels = ()) -> float:
        return self._counts.get(name, {}).get(labels, 0.0)

    def freeze(self) -> tuple[Mapping[str, Mapping[Labels, float]],
                              Mapping[str, Mapping[Labels, Histo]]]:
        counts = MappingProxyType({
            name: MappingProxyType(dict(series)) for name, series in self._counts.items()
        })
        histos = MappingProxyType({
            name: MappingProxyType({
                labels: Histo(self._bounds[name], tuple(int(c) for c in cells[:-1]), cells[-1])
                for labels, cells in series.items()
            })
            for name, series in self._histos.items()
        })
        return counts, histos


@dataclass(frozen=True, slots=True)
class LinkSnap:
    name: str
    interface: str
    gateway: str
    source: str | None
    tier: int
    state: HealthState
    since: float | None  # seconds in this state
    reason: str
    carrier: bool
    loss_ratio: float
    latency: float | None
    jitter: float | None
    mos: float | None
    rounds: int
    hold_down_remaining: float
    flap_penalty: float
    loss_one_way: float = 0.0  # estimated from loss_ratio (controller.core.lossmodel)
    loss_evidence: float = 0.0  # the loss CUSUM's score; degraded at its level


@dataclass(frozen=True, slots=True)
class GroupSnap:
    name: str
    table: int
    destination: str
    links: tuple[str, ...]
    applied: tuple[str, ...]  # what the kernel route has
    decided: tuple[str, ...]  # what the policy chose (ahead of applied while it applies)
    reason: str
    since_change: float | None


@dataclass(frozen=True, slots=True)
class PeerSnap:
    """A SIP peer lifeline probes: a trunk (carrier SBC) or a destination (PBX, DR)."""

    name: str
    uri: str
    state: HealthState
    reason: str
    last_code: int | None
    last_rtt: float | None
    hold_down_remaining: float
    registered: bool | None = None  # trunks with a registration only
    edge_tripped: str | None = None  # why the edge's failed calls hold it (trunks)
    dids: int = 0  # numbers whose calls use it now (trunks)
    maintenance: str | None = None  # why the trunk is out of service (trunks)
    # Why a destination answering OPTIONS counts as down: a service it needs is down
    # (controller.core.services), e.g. "pbx down: needs crm, which is down: HTTP 500".
    service_down: str | None = None


@dataclass(frozen=True, slots=True)
class EdgeSnap:
    name: str
    in_sync: bool  # the edge holds the plan of this cycle
    error: str | None


@dataclass(frozen=True, slots=True)
class OverrideSnap:
    """An operator override held now (controller.core.overrides) and whether it applies."""

    kind: str  # route, did, maintenance
    target: str
    value: str | None
    reason: str
    by: str
    since: float  # wall clock, seconds since the epoch
    until: float  # when it lapses, wall clock
    applied: bool
    why_not: str | None = None  # why it is held but not applied


@dataclass(frozen=True, slots=True)
class JournalSnap:
    """Where decisions are written: on disk, or in memory when the disk failed us."""

    path: str
    mode: str = "disk"  # "memory": this run's events end with the process
    damaged_moved_to: str | None = None  # an unusable journal file found at start
    problem: str | None = None  # why the journal is in memory


@dataclass(frozen=True)
class Snapshot:
    site: str
    version: str
    dry_run: bool
    taken_at: float  # wall clock, seconds since the epoch
    uptime: float
    links: tuple[LinkSnap, ...] = ()
    groups: tuple[GroupSnap, ...] = ()
    trunks: tuple[PeerSnap, ...] = ()
    destinations: tuple[PeerSnap, ...] = ()
    edges: tuple[EdgeSnap, ...] = ()
    plan: DidPlan | None = None
    destination_uris: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()  # standing problems (conflicts, failed steps), newest last
    journal: JournalSnap = JournalSnap("")
    counters: Mapping[str, Mapping[Labels, float]] = field(default_factory=dict)
    histograms: Mapping[str, Mapping[Labels, Histo]] = field(default_factory=dict)
    telephony: bool = False  # trunks or DIDs are configured
    config_path: str | None = None  # the file SIGHUP re-reads
    reload_error: str | None = None  # why the last reload was refused; None after a good one
    overrides: tuple[OverrideSnap, ...] = ()  # the operator's, held now
    power: PowerSnap | None = None  # the site's UPSes; None: no power section
    services: tuple[ServiceSnap, ...] = ()  # the site's software (``services:``)
    recordings: RecordingsSnap | None = None  # None: no recordings section

    def count(self, name: str, labels: Labels = ()) -> float:
        return self.counters.get(name, {}).get(labels, 0.0)

    def total(self, name: str) -> float:
        return sum(self.counters.get(name, {}).values())


def pairs(items: Iterable[str]) -> tuple[Labels, ...]:
    """Every ordered (from, to) pair of distinct ``items``: the failovers a group can make."""
    names = list(items)
    return tuple((a, b) for a in names for b in names if a != b)
