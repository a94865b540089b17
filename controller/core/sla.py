"""PURE: the SLA report's figures, replayed from the journal's events (no I/O, no clock).

``compute(events, since, until, now)`` walks the journal in its own order and keeps, at
each moment, what lifeline knew then: whether the daemon ran, every link's, trunk's and
destination's health state, each route group's links, and each DID range's destination
(DR or not) and routability. Every second of the period ``[since, until]`` lands in one
bucket per subject, so the buckets add up to the period:

- ``up`` / ``degraded`` / ``down``: lifeline ran and its verdict was that state;
- ``unknown``: lifeline ran but had no verdict yet (just started; the state before was
  not kept across the restart, or the subject first appears later, e.g. after a reload);
- ``unmonitored``: lifeline did not run (stopped; crashed: from the last event of the
  run that ended without a ``stop`` to the next ``start``; before the journal's first
  event, which is where pruning or a fresh install leaves us). Never counted as up.

Availability is (up + degraded) over the monitored time (the period minus unmonitored):
degraded still carries traffic, only worse for voice; unknown counts against it.
The **site** is available while at least one link is usable (up or degraded) and no DID
range is unroutable; it is down while every link is down or a range is unroutable, and
unknown while no link is usable but some have no verdict.

A **failover** is a route group leaving a link that is down, degraded or unknown; its time
to fail over runs from the fault to the group's route decision: the fault's age when
health judged it (``fault_age`` of the link's transition: the dead run of probe rounds,
0 for a lost carrier) plus the time from that transition to the decision. Without an age
(loss over the window, a journal from before it was recorded) it runs from detection.
Any other change of a group's links is a **failback** (back to a link that recovered);
its time to recover runs from that link's transition to up (health judges it up only
after its hold-down, which the outage's length holds) to the decision. The first route
after a start is neither. Outages are a subject's down
spells; one the daemon stopped during is "not seen to end" and has no recovery time.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

BUCKETS = ("up", "degraded", "down", "unknown", "unmonitored")
USABLE = ("up", "degraded")
BAD = ("down", "degraded", "unknown")

# Messages of the DID events the runtime wrote before it recorded their numbers as data.
_UNROUTABLE = re.compile(r"^(\S+) unroutable\b")
_ROUTABLE_AGAIN = re.compile(r"^(\S+) routable again$")


class JournalEntry(Protocol):
    """One journal event (controller.runtime.journal.Event has this shape)."""

    @property
    def ts(self) -> float: ...
    @property
    def kind(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def data(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Outage:
    """A down spell of one subject: from its transition to down until it left down."""

    start: float
    end: float | None  # None: not seen to end (still down, or lifeline stopped meanwhile)
    seen_until: float  # the end, or the last moment lifeline watched it down

    @property
    def seen(self) -> float:
        return self.seen_until - self.start


@dataclass(frozen=True, slots=True)
class SubjectFigures:
    """Where each second of the period went for one link, trunk or destination."""

    name: str
    seconds: Mapping[str, float]  # by bucket, see BUCKETS; they add up to the period
    outages: tuple[Outage, ...] = ()

    @property
    def monitored(self) -> float:
        return sum(v for k, v in self.seconds.items() if k != "unmonitored")

    @property
    def availability(self) -> float | None:
        """Up or degraded over the monitored time; None when never monitored."""
        watched = self.monitored
        if watched <= 0:
            return None
        return (self.seconds["up"] + self.seconds["degraded"]) / watched

    @property
    def time_to_recover(self) -> float | None:
        """Mean length of the outages seen to end."""
        ended = [o.end - o.start for o in self.outages if o.end is not None]
        return statistics.fmean(ended) if ended else None

    @property
    def longest_outage(self) -> float | None:
        return max((o.seen for o in self.outages), default=None)


@dataclass(frozen=True, slots=True)
class RouteChange:
    """One change of a route group's links, with what caused it and how long it took."""

    at: float
    group: str
    old: tuple[str, ...]
    new: tuple[str, ...]
    kind: str  # "failover" or "failback"
    cause: str | None  # the link that failed (failover) or came back (failback)
    delay: float | None  # fault detected -> route changed, or link back -> route back
    reason: str
    detect: float | None = None  # failover: the fault's age when health judged it

    @property
    def total(self) -> float | None:
        """Time to fail over from the fault (or from its detection when its start is not
        known), or time to recover; None when not measured."""
        return None if self.delay is None else self.delay + (self.detect or 0.0)


@dataclass(frozen=True, slots=True)
class GroupFigures:
    name: str
    changes: tuple[RouteChange, ...]

    def of(self, kind: str) -> tuple[RouteChange, ...]:
        return tuple(c for c in self.changes if c.kind == kind)


@dataclass(frozen=True, slots=True)
class RangeFigures:
    """A DID range that spent time on the DR destination or unroutable."""

    numbers: str
    dr_seconds: float
    unroutable_seconds: float


@dataclass(frozen=True, slots=True)
class SiteFigures:
    seconds: Mapping[str, float]  # by bucket, like a subject's
    no_link_seconds: float  # monitored, every link down
    unroutable_seconds: float  # monitored, at least one DID range unroutable
    dr_seconds: float  # monitored, at least one DID range on its DR destination

    @property
    def availability(self) -> float | None:
        return SubjectFigures("site", self.seconds).availability


@dataclass(frozen=True, slots=True)
class Delays:
    """Count, median and worst of the delays of some route changes (unknown ones apart)."""

    count: int
    measured: int
    median: float | None
    worst: float | None

    @classmethod
    def of(cls, changes: Iterable[RouteChange]) -> Delays:
        changes = list(changes)
        known = sorted(c.total for c in changes if c.total is not None)
        return cls(len(changes), len(known), statistics.median(known) if known else None,
                   known[-1] if known else None)


@dataclass(frozen=True, slots=True)
class Report:
    since: float
    until: float
    now: float
    events: int  # journal events replayed (up to ``until``, from before ``since`` too)
    first_event: float | None  # the oldest event the journal still holds
    pruned: bool  # older events were deleted (journal limits)
    site: SiteFigures
    links: tuple[SubjectFigures, ...]
    trunks: tuple[SubjectFigures, ...]
    destinations: tuple[SubjectFigures, ...]
    groups: tuple[GroupFigures, ...]
    ranges: tuple[RangeFigures, ...]  # only ranges with DR or unroutable time
    notes: tuple[str, ...] = field(default=())  # what the figures cannot see, in words
    site_name: str | None = None  # as the last start in the journal names it

    @property
    def period(self) -> float:
        return self.until - self.since

    @property
    def changes(self) -> tuple[RouteChange, ...]:
        return tuple(sorted((c for g in self.groups for c in g.changes), key=lambda c: c.at))

    @property
    def failovers(self) -> Delays:
        return Delays.of(c for c in self.changes if c.kind == "failover")

    @property
    def failbacks(self) -> Delays:
        return Delays.of(c for c in self.changes if c.kind == "failback")


# -- the replay ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Track:
    """One subject's state during the replay. Its seconds are booked when its bucket
    changes (``mark``: since when the current bucket runs), not at every event: a big
    site's journal holds 200,000 events over hundreds of subjects."""

    state: str = "unknown"
    since: float | None = None  # when it entered ``state`` in this run (None: unknown)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0.0))
    outages: list[Outage] = field(default_factory=list)
    down_since: float | None = None
    mark: float = -math.inf
    fault_age: float | None = None  # how old the fault was when judged (links down)

    def set(self, state: str, at: float, fault_age: float | None = None) -> None:
        if self.down_since is not None:
            self.outages.append(Outage(self.down_since, at if state in USABLE else None, at))
            self.down_since = None
        if state == "down":
            self.down_since = at
        self.state, self.since, self.fault_age = state, at, fault_age


@dataclass(slots=True)
class _Range:
    on_dr: bool | None = None
    unroutable: bool = False
    dr_seconds: float = 0.0
    unroutable_seconds: float = 0.0
    mark: float = -math.inf


def _kind_of(ev: JournalEntry) -> str | None:
    """Which table a transition belongs to: links have no ``peer``; trunks' registration
    and SIP-edge notes are no health states."""
    if ev.kind != "transition" or "new" not in ev.data:
        return None
    peer = ev.data.get("peer")
    return {None: "link", "trunk": "trunk", "destination": "destination"}.get(peer)


def _is_route_decision(ev: JournalEntry) -> bool:
    return (ev.kind == "decision" and ev.subject != "dids"
            and isinstance(ev.data.get("new"), list) and isinstance(ev.data.get("old"), list))


def _range_of(ev: JournalEntry) -> tuple[str, bool | None, bool | None] | None:
    """(numbers, on_dr, routable) of a DID event; None for other events. on_dr None: the
    event does not say (a routability event, or a journal from before ``on_dr``)."""
    if ev.subject != "dids":
        return None
    numbers = ev.data.get("numbers")
    if ev.kind == "error":
        match = _UNROUTABLE.match(ev.message)
        if numbers is None and match is not None:
            numbers = match[1]
        return None if numbers is None else (str(numbers), None, False)
    if ev.kind != "decision":
        return None
    again = _ROUTABLE_AGAIN.match(ev.message)
    if again is not None or ev.data.get("routable") is True:
        return str(numbers or (again[1] if again else "")), None, True
    if numbers is None:
        numbers = ev.message.partition(": ")[0]
    on_dr = ev.data.get("on_dr")
    return str(numbers), on_dr if isinstance(on_dr, bool) else None, None


def _entered(pair: tuple[str | None, _Track]) -> float:
    return -math.inf if pair[1].since is None else pair[1].since


class _Replay:
    def __init__(self, events: Sequence[JournalEntry], since: float, until: float) -> None:
        self.since, self.until = since, until
        self.tracks: dict[str, dict[str, _Track]] = {"link": {}, "trunk": {}, "destination": {}}
        self.ranges: dict[str, _Range] = {}
        self.groups: dict[str, list[RouteChange]] = {}
        for ev in events:  # every subject is known from the period's first second
            table = _kind_of(ev)
            if table is not None:
                self.tracks[table].setdefault(ev.subject, _Track())
            elif _is_route_decision(ev):
                self.groups.setdefault(ev.subject, [])
            else:
                found = _range_of(ev)
                if found is not None and found[0]:
                    self.ranges.setdefault(found[0], _Range())
        # The site's state is read off counts, kept as links and ranges change.
        self.link_states = Counter(t.state for t in self.tracks["link"].values())
        self.unroutable = 0  # ranges unroutable now
        self.on_dr = 0  # ranges on DR now
        self.site = dict.fromkeys(BUCKETS, 0.0)
        self.site_no_link = self.site_unroutable = self.site_dr = 0.0
        self.site_mark = -math.inf
        self.monitored = False
        self.crashes: list[tuple[float, float]] = []
        self.clock_back = 0
        self.legacy_dr = 0
        self.site_name: str | None = None

    def span(self, a: float, b: float) -> float:
        return max(0.0, min(b, self.until) - max(a, self.since))

    # -- booking the time since the last change ------------------------------------------
    def book_track(self, track: _Track, at: float) -> None:
        track.seconds[track.state if self.monitored else "unmonitored"] += self.span(
            track.mark, at)
        track.mark = at

    def book_range(self, r: _Range, at: float) -> None:
        span = self.span(r.mark, at) if self.monitored else 0.0
        r.dr_seconds += span if r.on_dr else 0.0
        r.unroutable_seconds += span if r.unroutable else 0.0
        r.mark = at

    def book_site(self, at: float) -> None:
        span = self.span(self.site_mark, at)
        self.site_mark = at
        if span <= 0:
            return
        if not self.monitored:
            self.site["unmonitored"] += span
            return
        states = self.link_states
        no_link = states["down"] > 0 and states["down"] == sum(states.values())
        self.site_no_link += span if no_link else 0.0
        self.site_unroutable += span if self.unroutable else 0.0
        self.site_dr += span if self.on_dr else 0.0
        if self.unroutable or no_link:
            state = "down"
        elif states["up"]:
            state = "up"
        elif states["degraded"]:
            state = "degraded"
        else:
            state = "unknown"
        self.site[state] += span

    def book_all(self, at: float) -> None:
        """Before lifeline starts or stops: every subject changes bucket."""
        self.book_site(at)
        for table in self.tracks.values():
            for track in table.values():
                self.book_track(track, at)
        for r in self.ranges.values():
            self.book_range(r, at)

    # -- changes ---------------------------------------------------------------------------
    def set_state(self, table: str, track: _Track, state: str, at: float,
                  fault_age: float | None = None) -> None:
        if state == track.state:
            return
        self.book_track(track, at)
        if table == "link":
            self.link_states[track.state] -= 1
            self.link_states[state] += 1
        track.set(state, at, fault_age)

    def set_range(self, r: _Range, at: float, on_dr: bool | None, unroutable: bool) -> None:
        self.book_range(r, at)
        self.on_dr += bool(on_dr) - bool(r.on_dr)
        self.unroutable += unroutable - r.unroutable
        r.on_dr, r.unroutable = on_dr, unroutable

    def watching(self, on: bool, at: float) -> None:
        self.book_all(at)
        self.monitored = on

    def stop(self, at: float) -> None:
        """Lifeline stopped: verdicts do not carry into the next run."""
        self.watching(False, at)
        for table, tracks in self.tracks.items():
            for track in tracks.values():
                self.set_state(table, track, "unknown", at)
                track.since = None
        for r in self.ranges.values():
            self.set_range(r, at, None, False)

    def apply(self, ev: JournalEntry, at: float) -> None:
        if ev.kind == "start":
            self.watching(True, at)
            self.site_name = str(ev.data.get("site") or self.site_name or "") or None
            return
        if ev.kind == "stop":
            self.stop(at)
            return
        if not self.monitored:  # the first event of a pruned journal: lifeline ran
            self.watching(True, at)
        table = _kind_of(ev)
        if table is not None:
            age = ev.data.get("fault_age")
            self.set_state(table, self.tracks[table][ev.subject], str(ev.data["new"]), at,
                           float(age) if isinstance(age, int | float) else None)
            return
        if _is_route_decision(ev):
            self.route(ev, at)
            return
        found = _range_of(ev)
        if found is None or not found[0]:
            return
        numbers, on_dr, routable = found
        r = self.ranges[numbers]
        if routable is not None:
            self.set_range(r, at, r.on_dr, not routable)
        elif on_dr is None:
            self.legacy_dr += 1
        else:
            self.set_range(r, at, on_dr, r.unroutable)

    def route(self, ev: JournalEntry, at: float) -> None:
        old = tuple(str(x) for x in ev.data["old"])
        new = tuple(str(x) for x in ev.data["new"])
        if not old or old == new:
            return  # the first route after a start moves no traffic
        links = self.tracks["link"]
        left: list[tuple[str | None, _Track]] = [(n, links.get(n, _Track())) for n in old
                                                 if n not in new]
        failed = [(n, track) for n, track in left if track.state in BAD]
        if failed:  # the cause: of the links it left, the one that failed last
            name, track = max(failed, key=_entered)
            kind = "failover"
        else:
            joined: list[tuple[str | None, _Track]] = [(n, links.get(n, _Track()))
                                                       for n in new if n not in old]
            name, track = max(joined, key=_entered, default=(None, _Track()))
            kind = "failback"
        delay = None if track.since is None else max(0.0, at - track.since)
        detect = track.fault_age if kind == "failover" and delay is not None else None
        if self.since <= at <= self.until:
            self.groups[ev.subject].append(
                RouteChange(at, ev.subject, old, new, kind, name, delay, ev.message, detect))

    def run(self, events: Sequence[JournalEntry]) -> None:
        last = -math.inf
        for ev in events:
            at = ev.ts
            if at < last:  # the wall clock stepped back: keep the journal's order
                self.clock_back += 1
                at = last
            if ev.kind == "start" and self.monitored:
                # The run before ended without a stop: from its last event, nobody watched.
                self.stop(last)
                self.crashes.append((last, at))
            self.book_site(at)  # the site's state may change with this event
            self.apply(ev, at)
            last = at
        self.book_all(self.until)


def compute(events: Sequence[JournalEntry], since: float, until: float, now: float, *,
            pruned: bool = False) -> Report:
    """The report for ``[since, until]`` from ``events``, the journal in its order, every
    event up to ``until`` (those before ``since`` carry their state into the period).
    ``pruned``: the journal deleted older events. ``until`` past ``now`` is cut to ``now``."""
    notes: list[str] = []
    if until > now:
        until = now
        notes.append("the period ends in the future: cut at now")
    if since >= until:
        raise ValueError("the period is empty: its start is not before its end")
    events = [ev for ev in events if ev.ts <= until]
    replay = _Replay(events, since, until)
    replay.run(events)
    first = events[0].ts if events else None
    if not events:
        notes.append("the journal holds no events up to the end of the period: nothing "
                     "was monitored")
    elif first is not None and first > since:
        why = ("older events were pruned (journal keep_days/keep_events)" if pruned else
               "lifeline's first start")
        notes.append(f"the journal begins at {utc(first)} ({why}): the period before "
                     "counts as unmonitored")
    elif pruned:
        notes.append("older events were pruned (journal keep_days/keep_events): states "
                     "carried into the period come from the events kept")
    for last, start in replay.crashes:
        if start > since and last < until:
            notes.append(f"lifeline ended without a stop event (crash, kill or power loss) "
                         f"after {utc(last)}: until its start at {utc(start)} counts as "
                         "unmonitored")
    if replay.monitored and until >= now:
        notes.append("no stop after the last start: lifeline counts as running to the end "
                     "of the period")
    if replay.clock_back:
        notes.append(f"the wall clock stepped back {replay.clock_back} time(s): those events "
                     "count at the time of the event before them")
    if replay.legacy_dr:
        notes.append(f"{replay.legacy_dr} DID decision(s) do not say whether they went to "
                     "the DR destination (journal written before that was recorded): time "
                     "in DR may be undercounted")

    def figures(table: str) -> tuple[SubjectFigures, ...]:
        out = []
        for name, track in sorted(replay.tracks[table].items()):
            outages = list(track.outages)
            if track.down_since is not None:
                outages.append(Outage(track.down_since, None, until))
            seen = tuple(o for o in outages if o.start < until and o.seen_until > since)
            out.append(SubjectFigures(name, dict(track.seconds), seen))
        return tuple(out)

    site = SiteFigures(dict(replay.site), replay.site_no_link, replay.site_unroutable,
                       replay.site_dr)
    return Report(
        since=since, until=until, now=now, events=len(events), first_event=first,
        pruned=pruned, site=site, links=figures("link"), trunks=figures("trunk"),
        destinations=figures("destination"),
        groups=tuple(GroupFigures(n, tuple(c)) for n, c in sorted(replay.groups.items())),
        ranges=tuple(RangeFigures(n, r.dr_seconds, r.unroutable_seconds)
                     for n, r in sorted(replay.ranges.items())
                     if r.dr_seconds > 0 or r.unroutable_seconds > 0),
        notes=tuple(notes), site_name=replay.site_name,
    )


def utc(t: float) -> str:
    """A time as the report shows it: UTC, to the second (sites span time zones)."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
