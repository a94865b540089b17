"""PURE: link health -> desired active link(s) per route group, with a human reason.

``decide`` takes one route group (the links that may carry its default route, in the
operator's order), a view of every link's health, and the link(s) the route uses now,
and says which link(s) it should use, why, and whether that is a change. It reads no
clock and touches no route: the routes actuator applies the decision. The rules, in
order of strength:

1. Up beats degraded, whatever the tiers; degraded beats down and unknown.
2. Among up links the lowest tier wins; a multipath group uses all of that tier.
3. No needless change: the current link stays while it is among the best choices.
4. Never remove the last route: with nothing better, the current route is kept, even
   on a down link (a route to a dead link costs nothing; no route costs everything).
5. Unknown is not bad: while a link that could outrank the choice is still unknown
   (startup), a working current route is kept, so a restart changes nothing until
   health is known.

The operator's overrides (controller.core.overrides) come first: a group ``forced`` to a
link uses that link alone while it is up or degraded and not in maintenance, or while it
is the current route and its health is not known yet (a restart); else the rules above
decide. A link in ``maintenance`` is left out while another link of the group is up
or degraded, and chosen by the rules above when none is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from controller.core.health import HealthState

# Degraded links whose MOS and loss are this close count as equally good, so that the
# noise of two bad links does not swap the route back and forth every round.
MOS_MARGIN = 0.1
LOSS_MARGIN = 0.01


@dataclass(frozen=True, slots=True)
class LinkView:
    name: str
    tier: int
    state: HealthState
    weight: int = 1
    mos: float | None = None
    loss_ratio: float = 0.0
    reason: str = ""  # health's reason, e.g. "fibre-a: 3 rounds lost in a row (0.6 s)"


@dataclass(frozen=True, slots=True)
class GroupSpec:
    name: str
    links: tuple[str, ...]  # operator's order: the tie-break within a tier
    multipath: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    group: str
    active: tuple[str, ...]  # empty = leave the route as it is (nothing known yet)
    reason: str
    changed: bool  # active differs from the current one


def _names(views: Iterable[LinkView]) -> str:
    return ", ".join(v.name for v in views)


def _detail(view: LinkView) -> str:
    """``fibre-a down: 3 rounds lost in a row (0.6 s)``: the state plus health's own why."""
    why = view.reason
    prefix = f"{view.name}: "
    if why.startswith(prefix):
        why = why[len(prefix) :]
    return f"{view.name} {view.state.value}" + (f": {why}" if why else "")


def _mos(view: LinkView) -> float:
    return view.mos if view.mos is not None else 1.0  # no estimate: assume the worst


def _current_alive(current: tuple[str, ...], links: Mapping[str, LinkView]) -> bool:
    """Current route exists and none of its links is known to be down."""
    return bool(current) and all(
        c in links and links[c].state is not HealthState.DOWN for c in current
    )


def _pick(best: list[LinkView], current: tuple[str, ...], multipath: bool) -> tuple[LinkView, ...]:
    """All of ``best`` for multipath, else one: the current link if it is there."""
    if multipath:
        return tuple(best)
    for view in best:
        if view.name in current:
            return (view,)
    return (best[0],)


def _best_degraded(degraded: list[LinkView]) -> list[LinkView]:
    """Degraded links of the lowest tier that are as good as the best (within margins)."""
    tier = min(v.tier for v in degraded)
    same_tier = [v for v in degraded if v.tier == tier]
    top = min(same_tier, key=lambda v: (-_mos(v), v.loss_ratio))
    return [
        v
        for v in same_tier
        if _mos(v) >= _mos(top) - MOS_MARGIN and v.loss_ratio <= top.loss_ratio + LOSS_MARGIN
    ]


def _why_left(
    group: GroupSpec, links: Mapping[str, LinkView], current: tuple[str, ...], chosen: set[str],
    maintenance: frozenset[str] = frozenset(),
) -> str:
    """Why the links of the current route are being left; empty if none are."""
    parts = []
    for name in current:
        if name in chosen:
            continue
        view = links.get(name)
        if name in maintenance:
            parts.append(f"{name} in maintenance (operator)")
        elif view is None:
            parts.append(f"{name} not known in group {group.name}")
        elif view.state is HealthState.UP:
            parts.append(f"{name} up but tier {view.tier}")
        else:
            parts.append(_detail(view))
    return "; ".join(parts)


_USABLE = (HealthState.UP, HealthState.DEGRADED)


def decide(group: GroupSpec, links: Mapping[str, LinkView], current: tuple[str, ...],
           forced: str | None = None, maintenance: frozenset[str] = frozenset()) -> Decision:
    """Desired active link(s) of one group; see the module docstring for the rules.

    A link of the group that ``links`` does not mention cannot be chosen (nothing is
    known of it). ``active`` is empty only when ``current`` is empty and nothing usable
    is known yet: the actuator then leaves the kernel route alone. ``forced`` and
    ``maintenance``: the operator's overrides (module docstring).
    """
    view = links.get(forced) if forced is not None and forced in group.links else None
    if view is not None and view.name not in maintenance:
        if view.state in _USABLE:
            left = _why_left(group, links, current, {view.name}, maintenance)
            what = f"forced to {view.name} by the operator ({_detail(view)})"
            return Decision(group.name, (view.name,), f"{left}; {what}" if left else what,
                            set(current) != {view.name})
        if view.state is HealthState.UNKNOWN and current == (view.name,):
            # After a restart the route found on the forced link stays while its health is
            # not known yet, rather than move away and back (rule 5).
            return Decision(group.name, current, f"forced to {view.name} by the operator; "
                            "keeping it while its health is not known yet", False)
    held = frozenset(n for n in group.links if n in maintenance)
    if held and any(v.state in _USABLE for n, v in links.items()
                    if n in group.links and n not in held):
        links = {n: v for n, v in links.items() if n not in held}
    else:
        held = frozenset()
    return _decide(group, links, current, held)


def _decide(group: GroupSpec, links: Mapping[str, LinkView], current: tuple[str, ...],
            maintenance: frozenset[str]) -> Decision:
    """The rules 1-5, with the links in maintenance already left out of ``links``."""
    views = [links[n] for n in group.links if n in links]
    up = [v for v in views if v.state is HealthState.UP]
    degraded = [v for v in views if v.state is HealthState.DEGRADED]
    unknown = [v for v in views if v.state is HealthState.UNKNOWN]
    current_set = set(current)

    def result(active: tuple[str, ...], reason: str) -> Decision:
        return Decision(group.name, active, reason, set(active) != current_set)

    def keep(reason: str) -> Decision:
        return result(tuple(current), reason)

    if up:
        tier = min(v.tier for v in up)
        chosen = _pick([v for v in up if v.tier == tier], current, group.multipath)
        outranking = [v for v in unknown if v.tier < tier]
        if not current and not group.multipath:
            # At start the operator's order breaks a tie within the tier, so an earlier
            # link of that tier still unknown is waited for too: otherwise whichever link
            # answered first would win, and rule 3 would keep it.
            first = views.index(chosen[0])
            outranking += [v for v in views[:first] if v in unknown and v.tier == tier]
        what = (
            f"{_names(chosen)} are the best up links (tier {tier})"
            if len(chosen) > 1
            else f"{chosen[0].name} is the best up link (tier {tier})"
        )
    elif degraded:
        chosen = _pick(_best_degraded(degraded), current, group.multipath)
        outranking = unknown  # any of them, once up, beats a degraded link
        best = chosen[0]
        mos = f"MOS {best.mos:.2f}" if best.mos is not None else "no MOS estimate"
        what = (
            f"no link up; {_names(chosen)} is the best degraded "
            f"(tier {best.tier}, {mos}, loss {best.loss_ratio * 100:.1f}%)"
        )
    else:
        if unknown:
            if not current:
                return result((), "waiting for first probe results")
            waiting = f"waiting for {_names(unknown)} (unknown)"
            if _current_alive(current, links):
                return keep(f"{waiting}; keeping {', '.join(current)}")
            down = [links[c] for c in current if c in links]
            lead = "; ".join(_detail(v) for v in down)
            return keep(f"{lead}; {waiting}; keeping {', '.join(current)}, nothing better")
        if not current:
            return result((), "all links down; no route to keep")
        return keep(f"all links down; keeping {', '.join(current)}, nothing better")

    active = tuple(v.name for v in chosen)
    if not current and outranking:
        # At start, with no route yet: a better link that is still unknown gets its first
        # rounds (about a second) rather than a route that moves again right after.
        return result((), f"waiting for {_names(outranking)} (unknown) before choosing ({what})")
    if set(active) != current_set and outranking and _current_alive(current, links):
        return keep(
            f"waiting for {_names(outranking)} (unknown) before changing; keeping "
            f"{', '.join(current)} ({what})"
        )
    if set(active) == current_set:
        if outranking:
            what += f"; waiting for {_names(outranking)} (unknown)"
        return result(active, what)
    left = _why_left(group, links, current, {v.name for v in chosen}, maintenance)
    return result(active, f"{left}; {what}" if left else what)


def decide_all(
    groups: Iterable[GroupSpec],
    links: Mapping[str, LinkView],
    current: Mapping[str, tuple[str, ...]],
    forced: Mapping[str, str] | None = None,
    maintenance: frozenset[str] = frozenset(),
) -> dict[str, Decision]:
    """``decide`` for every group; a group missing from ``current`` has no route yet.
    ``forced``: group -> link, and ``maintenance``: the operator's overrides."""
    force = forced or {}
    return {g.name: decide(g, links, current.get(g.name, ()), force.get(g.name), maintenance)
            for g in groups}
