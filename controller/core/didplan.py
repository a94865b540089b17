"""PURE: trunk, link and destination health -> which trunk and destination every DID range uses.

``compute_plan`` takes the operator's DID entries (a number range, its capable trunks in
order of preference, a primary and a disaster-recovery destination), what health says of
each trunk, link and destination, and returns a ``DidPlan``: one ``DidDecision`` per range,
in the operator's order, each with a human reason. Decisions are per range, never per
number, so a plan for 100,000 numbers in 1,000 ranges costs 1,000 small steps; ``lookup``
finds a single number's decision by binary search. ``diff`` gives what changed between two
plans: the part an actuator pushes to the SIP edge. No I/O, no clock, no config parsing:
the daemon feeds it, actuators consume it. The rules:

1. A trunk in maintenance (config or API) is never used. A trunk whose every allowed link is
   down is down (a pinned trunk: its one link), and an up trunk whose calls fail at the
   SIP edge (``edge_tripped``: OPTIONS 200, INVITE 503) counts as degraded, so OPTIONS
   alone cannot keep a broken trunk in use.
2. Per range: the first up capable trunk; else the first degraded one; else the first
   whose health is not known yet (start-up: sending calls to an untested trunk beats
   refusing them); else a tripped one; a down trunk is never chosen. No such trunk: the
   range is unroutable.
   At start (``waiting``: trunks never judged whose verdict is still coming), a range whose
   better choice comes after a waiting trunk keeps the configured order instead: its first
   trunk that is not down, up to the waiting one, so it does not move to a trunk judged a
   moment earlier and back. Only that range: a trunk is held nowhere else.
   The chosen trunk gets every new call of the range; ``fallback`` lists the other capable
   trunks a call that fails on it (408, 5xx, no answer) may try within the call, best
   first, never one that is down, tripped or in maintenance: the edge's in-call failover
   is a safety net that cannot undo the plan.
3. Destination: the primary unless it is down; then the DR destination unless that is
   down too; with both down the primary (the edge then fails the call towards the carrier,
   whose own failover may still deliver it).
4. The operator's pins (controller.core.overrides) come first: a range pinned to a trunk
   uses it while it is not down (maintenance counts as down), its fallback as rule 2 says;
   a range pinned to ``dr`` goes to its DR destination while that is not down. A pin that
   cannot hold is not applied (the rules above decide) and ``DidPlan.pins`` says why.
5. The whole site in DR (``site_dr``: its cause, e.g. "power" when the agents' desks go
   dark, controller.core.power): every range that names a DR destination is delivered to
   it, whatever the primary's health, while that DR destination is not down; with the DR
   destination down the range stays with rule 3 (its primary may still answer on its
   last minutes of battery, and nowhere better is left), and the reason says so. A range
   without a DR destination stays too. Trunks are chosen as rule 2 says: DR moves the
   destination, never the numbers.
Every range on DR says why in ``dr_cause``, a bounded word for status, journal and metric
labels: the site's cause (``site_dr``), ``destination_down`` (rule 3), ``service`` (rule 3,
the primary down only because a service it needs is, controller.core.services; the reason
then says which and why) or ``pin`` (rule 4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from controller.core.e164 import Number, NumberRange, RangeIndex
from controller.core.health import HealthState

__all__ = [
    "DR_DESTINATION_DOWN",
    "DR_PIN",
    "DR_SERVICE",
    "MAINTENANCE",
    "PIN_DR",
    "DidDecision",
    "DidEntry",
    "DidPlan",
    "PlanDiff",
    "TrunkView",
    "compute_plan",
    "diff",
    "effective_trunk_state",
]


# The why of a trunk in maintenance starts with this; the reasons then say it, not "down".
MAINTENANCE = "in maintenance"
PIN_DR = "dr"  # a pin to the range's disaster-recovery destination
# DidDecision.dr_cause of a range on DR because its primary is down, or pinned there.
DR_DESTINATION_DOWN = "destination_down"
DR_PIN = "pin"
# ... because a service its primary needs is down (controller.core.services).
DR_SERVICE = "service"


@dataclass(frozen=True, slots=True)
class DidEntry:
    """One DID range of the operator's plan (config's ``dids[i]``)."""

    numbers: NumberRange
    trunks: tuple[str, ...]  # capable trunks, operator's order of preference
    destination: str
    dr_destination: str | None = None


@dataclass(frozen=True, slots=True)
class TrunkView:
    """What health knows of one trunk, plus the links it may use."""

    name: str
    state: HealthState
    reason: str = ""  # health's why, e.g. "carrier-a-sbc1: OPTIONS timeout"
    links: tuple[str, ...] = ()  # empty: follows the active route (any link)
    pinned: bool = False  # only links[0] carries it
    # The edge signal: the SIP edge sees INVITEs fail (5xx) while OPTIONS answer.
    edge_tripped: bool = False
    edge_reason: str = ""  # e.g. "12 of 12 calls failed with 503 in 30 s"
    # Taken out of service by the operator (config ``maintenance`` or the API): no calls.
    maintenance: str | None = None  # None: in service; else why ("" if no reason given)


@dataclass(frozen=True, slots=True)
class DidDecision:
    """Where the numbers of one range go now, and why."""

    numbers: NumberRange
    trunk: str | None  # None: unroutable (every capable trunk down)
    trunk_state: HealthState | None  # effective state of the chosen trunk
    destination: str
    on_dr: bool  # the destination is the disaster-recovery one
    reason: str
    # Trunks a call that fails on ``trunk`` may try next within the call, in order.
    fallback: tuple[str, ...] = ()
    # Why the range is on DR (None when it is not): the site's cause (e.g. "power"),
    # DR_DESTINATION_DOWN or DR_PIN.
    dr_cause: str | None = None

    @property
    def unroutable(self) -> bool:
        return self.trunk is None

    def target(self) -> tuple[str | None, tuple[str, ...], str]:
        """What an actuator holds for this range: (trunk, fallback, destination)."""
        return (self.trunk, self.fallback, self.destination)


def _why(name: str, reason: str) -> str:
    """Health's reason without the repeated ``name: `` prefix."""
    prefix = f"{name}: "
    return reason[len(prefix) :] if reason.startswith(prefix) else reason


def effective_trunk_state(view: TrunkView,
                          links: Mapping[str, HealthState]) -> tuple[HealthState, str]:
    """The state the choice uses for one trunk, and a short why (empty for a plain up).

    A link missing from ``links`` is unknown, never down: only links known to be down can
    take a trunk down. A trunk that follows the active route may use every known link.
    A trunk in maintenance counts as down, whatever its health: it must get no call.
    """
    if view.maintenance is not None:
        return HealthState.DOWN, MAINTENANCE + (f": {view.maintenance}"
                                                if view.maintenance else "")
    allowed: Sequence[str]
    if view.pinned and view.links:
        allowed = view.links[:1]
    elif view.links:
        allowed = view.links
    else:
        allowed = tuple(links)
    if allowed and all(links.get(name) is HealthState.DOWN for name in allowed):
        which = ", ".join(allowed)
        word = "its link" if len(allowed) == 1 else "all its links"
        return HealthState.DOWN, f"{word} down ({which})"
    if view.state is HealthState.UP and view.edge_tripped:
        why = view.edge_reason or "INVITEs fail at the SIP edge"
        return HealthState.DEGRADED, f"OPTIONS answered but {why}"
    return view.state, _why(view.name, view.reason)


def _detail(name: str, state: HealthState, why: str) -> str:
    if why.startswith(MAINTENANCE):
        return f"{name} {why}"
    return f"{name} {state.value}" + (f" ({why})" if why else "")


# Preference of states; DOWN is absent: never chosen. A tripped trunk (degraded because
# its calls fail) ranks after all of them: it is proven to fail calls, which a lossy or
# not yet probed trunk is not; it is still used when nothing else is left.
_RANK = {HealthState.UP: 0, HealthState.DEGRADED: 1, HealthState.UNKNOWN: 2}
_TRIPPED_RANK = 3


@dataclass(frozen=True, slots=True)
class _TrunkChoice:
    trunk: str | None
    state: HealthState | None
    reason: str
    fallback: tuple[str, ...] = ()


def _fallback(trunks: tuple[str, ...], chosen: str,
              states: Mapping[str, tuple[HealthState, str]],
              tripped: frozenset[str]) -> tuple[str, ...]:
    """The other trunks a failed call may try: best state first, then the operator's order;
    never down (maintenance included) nor tripped, since a retry there only adds a round
    trip to a call that will fail again."""
    usable = [(k, n) for k, n in enumerate(trunks)
              if n != chosen and n not in tripped and states[n][0] in _RANK]
    usable.sort(key=lambda kn: (_RANK[states[kn[1]][0]], kn[0]))
    return tuple(n for _, n in usable)


def _choose_trunk(
    trunks: tuple[str, ...], states: Mapping[str, tuple[HealthState, str]],
    tripped: frozenset[str] = frozenset(), waiting: frozenset[str] = frozenset(),
) -> _TrunkChoice:
    best: int | None = None
    best_rank = 99
    for k, name in enumerate(trunks):
        rank = _RANK.get(states[name][0], 99)
        if name in tripped and rank < 99:
            rank = _TRIPPED_RANK
        if rank < best_rank:
            best, best_rank = k, rank
            if rank == 0:
                break
    if best is None:
        skipped = "; ".join(_detail(n, *states[n]) for n in trunks)
        return _TrunkChoice(None, None, f"unroutable: {skipped or 'no capable trunk'}")
    held_by = next((k for k, n in enumerate(trunks[:best])
                    if n in waiting and states[n][0] is not HealthState.DOWN), None)
    if held_by is not None:
        # The first trunk not down up to the waiting one: the configured order (rule 2).
        best = next(k for k in range(held_by + 1)
                    if states[trunks[k]][0] is not HealthState.DOWN)
    name = trunks[best]
    state, why = states[name]
    fallback = _fallback(trunks, name, states, tripped)
    if held_by is not None:
        head = _detail(name, state, why) + (
            "; health not known yet, first capable trunk (start)" if best == held_by else
            f"; kept in the configured order until {trunks[held_by]} is judged (start)")
        return _TrunkChoice(name, state, head, fallback)
    passed = [_detail(n, *states[n]) for n in trunks[:best]]
    if not passed:
        head = _detail(name, state, why)
        if state is HealthState.UNKNOWN:
            head += "; health not known yet, first capable trunk"
        return _TrunkChoice(name, state, head, fallback)
    using = f"using {name}" if state is HealthState.UP else f"using {_detail(name, state, why)}"
    return _TrunkChoice(name, state, "; ".join(passed) + f"; {using}", fallback)


# (destination, on DR, why (empty when plain), DR cause or None)
_Dest = tuple[str, bool, str, str | None]


def _choose_destination(
    entry: DidEntry, destinations: Mapping[str, HealthState], site_dr: str | None = None,
    service_down: Mapping[str, str] | None = None,
) -> _Dest:
    dr = entry.dr_destination
    dr_down = dr is not None and destinations.get(dr, HealthState.UNKNOWN) is HealthState.DOWN
    site_note = ""
    if site_dr is not None:
        if dr is None:
            site_note = f"site in DR ({site_dr}) but the range has no DR destination"
        elif dr_down:
            site_note = f"site in DR ({site_dr}) but DR {dr} is down"
        else:
            return dr, True, f"site in DR ({site_dr}); delivering to DR {dr}", site_dr
    primary_state = destinations.get(entry.destination, HealthState.UNKNOWN)
    if primary_state is not HealthState.DOWN:
        return entry.destination, False, site_note, None
    needs = (service_down or {}).get(entry.destination)
    if dr is None:
        return entry.destination, False, (needs + "; no DR destination" if needs else
                                          f"{entry.destination} down, no DR destination"), None
    if dr_down:
        return entry.destination, False, (needs + f"; DR {dr} down too" if needs else
                                          f"{entry.destination} and DR {dr} both down"), None
    if needs:
        return dr, True, f"{needs}; delivering to DR {dr}", DR_SERVICE
    return (dr, True, f"{entry.destination} down; delivering to DR {dr}",
            DR_DESTINATION_DOWN)


# Reasons repeat across ranges that share trunks and destinations: build each once.
_Key = tuple[tuple[str, ...], str, str | None]


@dataclass(frozen=True)
class DidPlan:
    """Decisions for every DID range, in the operator's order, with counts for metrics."""

    decisions: tuple[DidDecision, ...]
    numbers_per_trunk: Mapping[str, int]  # every capable trunk named, 0 if it carries none
    _index: RangeIndex = field(repr=False, compare=False)
    # The operator's pinned ranges: None where the pin holds, else why it does not.
    pins: Mapping[NumberRange, str | None] = field(default_factory=dict)

    @property
    def unroutable(self) -> tuple[NumberRange, ...]:
        return tuple(d.numbers for d in self.decisions if d.trunk is None)

    @property
    def unroutable_numbers(self) -> int:
        return sum(d.numbers.size for d in self.decisions if d.trunk is None)

    @property
    def total_numbers(self) -> int:
        return sum(d.numbers.size for d in self.decisions)

    def lookup(self, number: Number | str) -> DidDecision | None:
        """The decision for the range holding ``number``; None when no range holds it."""
        pos = self._index.find(number)
        return None if pos is None else self.decisions[pos]

    def by_range(self) -> dict[NumberRange, DidDecision]:
        return {d.numbers: d for d in self.decisions}


def _pinned(entry: DidEntry, pin: str, states: Mapping[str, tuple[HealthState, str]],
            tripped: frozenset[str], choice: _TrunkChoice,
            destination: _Dest, destinations: Mapping[str, HealthState],
            ) -> tuple[_TrunkChoice, _Dest, str | None]:
    """Rule 4: the choice and destination with the pin, and why it does not hold (None:
    it holds)."""
    if pin == PIN_DR:
        dr = entry.dr_destination
        if dr is None:
            return choice, destination, "the range has no DR destination"
        if destinations.get(dr, HealthState.UNKNOWN) is HealthState.DOWN:
            why = f"DR destination {dr} is down"
            dest, on_dr, dest_why, cause = destination
            note = f"pin to DR not applied: {why}"
            return choice, (dest, on_dr, f"{dest_why}; {note}" if dest_why else note,
                            cause), why
        if destination[1] and destination[3] not in (DR_DESTINATION_DOWN, DR_SERVICE):
            # Already on DR for the whole site: the pin holds, the site's cause stays.
            dest, on_dr, dest_why, cause = destination
            return choice, (dest, on_dr, f"{dest_why} (also pinned to DR by the operator)",
                            cause), None
        return choice, (dr, True, f"DR drill: delivering to DR {dr} (pinned by the "
                                  "operator)", DR_PIN), None
    if pin not in entry.trunks:
        return choice, destination, f"{pin} is not a trunk of the range"
    state, why = states[pin]
    if state is HealthState.DOWN:
        not_held = _detail(pin, state, why)
        return (_TrunkChoice(choice.trunk, choice.state,
                             f"pin to {pin} not applied: {not_held}; {choice.reason}",
                             choice.fallback), destination, not_held)
    head = f"pinned to {pin} by the operator" + (
        "" if state is HealthState.UP else f" ({_detail(pin, state, why)})")
    return (_TrunkChoice(pin, state, head, _fallback(entry.trunks, pin, states, tripped)),
            destination, None)


def compute_plan(
    entries: Sequence[DidEntry],
    trunks: Mapping[str, TrunkView],
    links: Mapping[str, HealthState],
    destinations: Mapping[str, HealthState],
    waiting: frozenset[str] = frozenset(),
    pins: Mapping[NumberRange, str] | None = None,
    site_dr: str | None = None,
    service_down: Mapping[str, str] | None = None,
) -> DidPlan:
    """The plan for ``entries``; see the module docstring for the rules.

    ``waiting``: trunks never judged whose verdict is still coming (the start-up hold,
    controller.core.peerpath); a trunk in maintenance or tripped is never waited for.
    ``pins``: range -> trunk name or PIN_DR, the operator's pins (rule 4).
    ``site_dr``: the whole site is in DR, and why in one bounded word (rule 5; e.g.
    "power"); None when it is not.
    ``service_down``: destination -> why, for a destination ``destinations`` counts as down
    only because a service it needs is down (controller.core.services' verdict reason,
    "pbx down: needs crm, which is down: HTTP 500"): its ranges on DR say so, with
    dr_cause DR_SERVICE.

    A trunk an entry names but ``trunks`` does not hold counts as unknown. The entries'
    ranges must not overlap (config guarantees it); ValueError otherwise, since a number
    with two decisions is a plan an edge cannot hold.
    """
    index = RangeIndex(e.numbers for e in entries)
    states: dict[str, tuple[HealthState, str]] = {}
    for entry in entries:
        for name in entry.trunks:
            if name not in states:
                view = trunks.get(name)
                states[name] = (
                    effective_trunk_state(view, links)
                    if view is not None
                    else (HealthState.UNKNOWN, "no health reported")
                )
    tripped = frozenset(name for name, view in trunks.items() if view.edge_tripped)
    waiting = frozenset(n for n in waiting if n not in tripped
                        and states.get(n, (HealthState.UNKNOWN,))[0] is not HealthState.DOWN)
    per_trunk: dict[str, int] = dict.fromkeys(states, 0)
    cache: dict[_Key, tuple[_TrunkChoice, _Dest]] = {}
    decisions: list[DidDecision] = []
    held: dict[NumberRange, str | None] = {}
    for entry in entries:
        key = (entry.trunks, entry.destination, entry.dr_destination)
        hit = cache.get(key)
        if hit is None:
            hit = (_choose_trunk(entry.trunks, states, tripped, waiting),
                   _choose_destination(entry, destinations, site_dr, service_down))
            cache[key] = hit
        pin = pins.get(entry.numbers) if pins else None
        if pin is not None:
            choice, dest_choice, held[entry.numbers] = _pinned(
                entry, pin, states, tripped, *hit, destinations)
            hit = (choice, dest_choice)
        choice, (dest, on_dr, dest_why, cause) = hit
        reason = f"{choice.reason}; {dest_why}" if dest_why else choice.reason
        decisions.append(DidDecision(entry.numbers, choice.trunk, choice.state, dest, on_dr,
                                     reason, choice.fallback, cause if on_dr else None))
        if choice.trunk is not None:
            per_trunk[choice.trunk] += entry.numbers.size
    return DidPlan(tuple(decisions), per_trunk, index, held)


@dataclass(frozen=True, slots=True)
class PlanDiff:
    """What an actuator must change: ranges with a new (trunk, destination), ranges gone."""

    changed: tuple[DidDecision, ...]  # new or moved ranges, in the new plan's order
    removed: tuple[NumberRange, ...]  # ranges the new plan no longer has

    def __bool__(self) -> bool:
        return bool(self.changed or self.removed)


def diff(old: DidPlan | None, new: DidPlan) -> PlanDiff:
    """Changes from ``old`` to ``new``; ``old`` None (nothing pushed yet) means everything.

    A changed reason alone is no change: the edge holds trunks, fallbacks and destinations,
    not prose.
    """
    if old is None:
        return PlanDiff(new.decisions, ())
    before = {d.numbers: d.target() for d in old.decisions}
    changed = tuple(d for d in new.decisions if before.get(d.numbers, _ABSENT) != d.target())
    now = {d.numbers for d in new.decisions}
    removed = tuple(d.numbers for d in old.decisions if d.numbers not in now)
    return PlanDiff(changed, removed)


_ABSENT: tuple[str | None, tuple[str, ...], str] = (None, (), "\0absent")
