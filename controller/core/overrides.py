"""PURE: the operator's overrides: what they are, which are valid, which still hold, and
how they feed the route policy and the DID plan.

At 3 a.m. nobody edits YAML: the operator forces a route group to one of its links, pins a
DID range to a trunk or to its disaster-recovery destination (a DR drill), or puts a link or
a trunk in maintenance, each with a reason, who asked, and an expiry after which it lapses
by itself. The rules, safe first (docs/overrides.md says the same to the operator):

1. An override never makes a number unroutable nor a site unreachable: a force or a pin to
   a link, trunk or DR destination that is down is *held but not applied*; the policy then
   decides as usual, the status says why, and the override applies again once it is back.
2. route (target: a group, value: one of its links): that link alone, while it is up or
   degraded and not in maintenance; down: not applied; not known yet (start): kept if the
   route uses it already, else not applied until it is judged.
3. did (target: a range as the plan names it, value: a trunk the range lists, or "dr"):
   the range's calls go to that trunk while it is not down (maintenance counts as down);
   "dr" delivers the range to its DR destination while that is not down.
4. maintenance on "link:NAME": the route groups leave the link while another link of the
   group is up or degraded; with nothing else usable they keep using it (a link in
   maintenance beats no route). Trunks pinned to that link are not touched: put them in
   maintenance too if they must stop carrying calls.
   maintenance on "trunk:NAME": the trunk gets no call, as a config ``maintenance:`` does.
5. Every override has an expiry (wall clock) no further than MAX_DURATION ahead; at that
   time it lapses. An override whose target left the config is held but not applied.

No I/O, no clock: ``now`` (seconds since the epoch) comes in as an argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from controller.core.didplan import PIN_DR
from controller.core.e164 import NumberRange
from controller.core.health import HealthState

__all__ = [
    "DR",
    "KINDS",
    "MAX_DURATION",
    "MAX_REASON",
    "Assessment",
    "Override",
    "Targets",
    "assess",
    "forced_links",
    "links_in_maintenance",
    "make",
    "pins",
    "split_lapsed",
    "trunk_maintenance",
]

KINDS = ("route", "did", "maintenance")
DR = PIN_DR  # a pin's value that means the range's disaster-recovery destination
MAX_DURATION = 7 * 86400.0  # a week: longer is a config change, reviewed like one
MAX_REASON = 200  # one line in status, journal and alerts
MAX_BY = 64
LINK, TRUNK = "link:", "trunk:"


@dataclass(frozen=True, slots=True)
class Override:
    """One operator override; ``since`` and ``until`` are wall clock (epoch seconds)."""

    kind: str  # route, did, maintenance
    target: str  # group name; range ("+39...-+39..."); "link:NAME" or "trunk:NAME"
    value: str | None  # link name; trunk name or "dr"; None for maintenance
    reason: str
    by: str
    since: float
    until: float

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.target)

    def lapsed(self, now: float) -> bool:
        return now >= self.until

    def describe(self) -> str:
        """``route internet -> fibre-b`` / ``maintenance trunk:a1``: for journal lines."""
        what = f"{self.kind} {self.target}"
        return f"{what} -> {self.value}" if self.value is not None else what


@dataclass(frozen=True, slots=True)
class Targets:
    """The names an override may use, as the config holds them now."""

    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # group -> links
    links: frozenset[str] = frozenset()
    trunks: frozenset[str] = frozenset()
    # str(range) -> (its capable trunks, its DR destination or None)
    ranges: Mapping[str, tuple[tuple[str, ...], str | None]] = field(default_factory=dict)


def _line(text: str, limit: int) -> str:
    return " ".join(text.split())[:limit]


def check_target(kind: str, target: str, targets: Targets) -> None:
    """KeyError (a sentence) when ``target`` names nothing of ``kind`` in the config;
    ValueError for a kind that does not exist."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    if kind == "route":
        if target not in targets.groups:
            raise KeyError(f"no route group named {target!r}")
    elif kind == "did":
        if target not in targets.ranges:
            raise KeyError(f"no DID range {target!r} in the plan")
    elif target.startswith(LINK):
        if target[len(LINK):] not in targets.links:
            raise KeyError(f"no link named {target[len(LINK):]!r}")
    elif target.startswith(TRUNK):
        if target[len(TRUNK):] not in targets.trunks:
            raise KeyError(f"no trunk named {target[len(TRUNK):]!r}")
    else:
        raise KeyError(f"a maintenance target is link:NAME or trunk:NAME, not {target!r}")


def _check_value(kind: str, target: str, value: str | None, targets: Targets) -> str | None:
    if kind == "maintenance":
        if value not in (None, ""):
            raise ValueError("a maintenance override takes no value")
        return None
    if not value:
        raise ValueError(f"a {kind} override needs a value "
                         + ("(one of the group's links)" if kind == "route"
                            else "(one of the range's trunks, or \"dr\")"))
    if kind == "route":
        links = targets.groups[target]
        if value not in links:
            raise ValueError(f"{value!r} is not a link of group {target} "
                             f"(its links: {', '.join(links)})")
        return value
    trunks, dr = targets.ranges[target]
    if value == DR:
        if dr is None:
            raise ValueError(f"range {target} has no dr_destination: nothing to drill")
        return value
    if value not in trunks:
        raise ValueError(f"{value!r} is not a trunk of range {target} "
                         f"(its trunks: {', '.join(trunks)}, or \"dr\")")
    return value


def make(kind: str, target: str, value: str | None, reason: str, by: str, until: float,
         now: float, targets: Targets, max_duration: float = MAX_DURATION) -> Override:
    """A valid override set at ``now``. KeyError (a sentence) for a target the config does
    not hold; ValueError (a sentence) for a value not allowed, an ``until`` not after
    ``now`` or more than ``max_duration`` ahead, or no reason."""
    check_target(kind, target, targets)
    checked = _check_value(kind, target, value, targets)
    if not isinstance(until, int | float) or until != until:  # NaN fails every comparison
        raise ValueError("until must be a time in seconds since the epoch")
    if until <= now:
        raise ValueError(f"until ({until:.0f}) is not in the future (now {now:.0f})")
    if until - now > max_duration:
        raise ValueError(f"until is {(until - now) / 3600:.1f} h ahead; at most "
                         f"{max_duration / 3600:.0f} h (a longer one belongs in the config)")
    why = _line(reason, MAX_REASON)
    if not why:
        raise ValueError("a reason is required (it reaches the journal and the status)")
    who = _line(by, MAX_BY) or "unknown"
    return Override(kind, target, checked, why, who, now, float(until))


def split_lapsed(overrides: Iterable[Override], now: float
                 ) -> tuple[tuple[Override, ...], tuple[Override, ...]]:
    """(still holding, lapsed at ``now``)."""
    held: list[Override] = []
    lapsed: list[Override] = []
    for ov in overrides:
        (lapsed if ov.lapsed(now) else held).append(ov)
    return tuple(held), tuple(lapsed)


# -- what the policy and the DID plan take ------------------------------------------------
def forced_links(overrides: Iterable[Override]) -> dict[str, str]:
    """Group -> the link it is forced to (controller.core.policy's ``forced``)."""
    return {ov.target: ov.value for ov in overrides
            if ov.kind == "route" and ov.value is not None}


def links_in_maintenance(overrides: Iterable[Override]) -> frozenset[str]:
    return frozenset(ov.target[len(LINK):] for ov in overrides
                     if ov.kind == "maintenance" and ov.target.startswith(LINK))


def trunk_maintenance(overrides: Iterable[Override]) -> dict[str, Override]:
    """Trunk name -> its maintenance override."""
    return {ov.target[len(TRUNK):]: ov for ov in overrides
            if ov.kind == "maintenance" and ov.target.startswith(TRUNK)}


def pins(overrides: Iterable[Override], ranges: Mapping[str, NumberRange]
         ) -> dict[NumberRange, str]:
    """Range -> trunk name or DR (controller.core.didplan's ``pins``); a range no longer in
    ``ranges`` (str(range) -> range, from the config) pins nothing."""
    out: dict[NumberRange, str] = {}
    for ov in overrides:
        if ov.kind == "did" and ov.value is not None and ov.target in ranges:
            out[ranges[ov.target]] = ov.value
    return out


# -- whether each override holds ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Assessment:
    applied: bool
    why_not: str | None  # None when applied


_YES = Assessment(True, None)


_USABLE = (HealthState.UP, HealthState.DEGRADED)


def _link_why(link: str, state: HealthState | None) -> str:
    if state is None or state is HealthState.UNKNOWN:
        return f"{link}'s health is not known yet"
    return f"{link} is {state.value}"


def assess(ov: Override, targets: Targets, links: Mapping[str, HealthState],
           maintenance: frozenset[str] = frozenset(),
           trunks: Mapping[str, tuple[HealthState, str]] | None = None,
           destinations: Mapping[str, HealthState] | None = None,
           decided: Mapping[str, tuple[str, ...]] | None = None) -> Assessment:
    """Whether ``ov`` changes what lifeline does, and if not why, by the very conditions
    controller.core.policy and controller.core.didplan apply: from each link's health, the
    links in ``maintenance``, each trunk's effective state and why
    (didplan.effective_trunk_state), each destination's health and each group's decided
    links. A trunk or destination not mentioned is unknown (as the plan counts it)."""
    try:
        check_target(ov.kind, ov.target, targets)
        _check_value(ov.kind, ov.target, ov.value, targets)
    except (KeyError, ValueError) as exc:
        return Assessment(False, f"not in the config any more: {exc.args[0]}")
    if ov.kind == "route":
        assert ov.value is not None
        state = links.get(ov.value)
        if ov.value in maintenance:
            return Assessment(False, f"{ov.value} is in maintenance")
        if state in _USABLE or (state is HealthState.UNKNOWN
                                and (decided or {}).get(ov.target) == (ov.value,)):
            return _YES
        return Assessment(False, _link_why(ov.value, state))
    if ov.kind == "maintenance":
        if ov.target.startswith(TRUNK):
            return _YES  # a trunk in maintenance gets no call, whatever its health
        link = ov.target[len(LINK):]
        stuck = [g for g, members in targets.groups.items() if link in members
                 and not any(links.get(o) in _USABLE for o in members
                             if o not in maintenance)]
        if not stuck:
            return _YES
        return Assessment(False, f"no other link of {', '.join(stuck)} is up or degraded: "
                                 f"{link} may still carry the route")
    trunk_states = trunks or {}
    if ov.value == DR:
        _, dr = targets.ranges[ov.target]
        if (destinations or {}).get(str(dr), HealthState.UNKNOWN) is HealthState.DOWN:
            return Assessment(False, f"DR destination {dr} is down")
        return _YES
    assert ov.value is not None
    state, why = trunk_states.get(ov.value, (HealthState.UNKNOWN, ""))
    if state is HealthState.DOWN:
        return Assessment(False, f"{ov.value} {why}" if why.startswith("in maintenance")
                          else f"{ov.value} is down" + (f" ({why})" if why else ""))
    return _YES
