"""Route actuator: per-link tables and rules, and each group's route onto its active link(s).

Level-triggered, like every actuator (controller.actuators.base): `observe()` reads what the
kernel has, `plan(desired, actual)` (PURE: no I/O, no clock) lists the steps that make the
kernel match the desired state, and `apply(plan)` carries them out, recording errors
instead of raising.
`reconcile()` does all three each cycle, so a manual change, a lost event or a restart
converges by itself, and a kernel that already matches yields an empty plan. Ownership is
by protocol tag: lifeline writes every route (`proto`) and rule (FRA_PROTOCOL) with
`Desired.protocol` and only ever deletes what carries that tag; a foreign route that sits
where a group's route should go is reported as a conflict and left alone unless the group
says `takeover`. Both address families are handled alike: a route's identity is
(family, table, destination, metric), a link's family is its gateway's, and a group's family
is given (`GroupRoute.family`) or follows from its destination or its active links, so an
IPv4 and an IPv6 group may both own "default" in table main. The kernel is reached only
through controller.actuators.netlink.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

from controller.actuators.base import Actuator, ApplyResult, StepError
from controller.actuators.netlink import (
    DEFAULT_DST,
    Nexthop,
    RouteEntry,
    RouteKey,
    RuleEntry,
    effective_metric,
    family_of,
    normalize_dst,
)

if TYPE_CHECKING:
    from controller.actuators.netlink import Netlink

__all__ = [
    "Actual",
    "AddRule",
    "Conflict",
    "DeleteRoute",
    "DeleteRule",
    "Desired",
    "GroupRoute",
    "LinkRoute",
    "Plan",
    "ReplaceRoute",
    "RouteReconciler",
    "RouteResult",
    "Step",
    "apply",
    "group_family",
    "group_key",
    "observe",
    "plan",
    "reconcile",
]


# -- desired state ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkRoute:
    """One uplink: its own table (default via its gateway) and, with a source, its rule."""

    name: str
    ifname: str
    gateway: str
    source: str | None
    table: int
    weight: int = 1

    @property
    def family(self) -> int:
        """4 or 6, from the gateway: the link's table and rule live in that family."""
        return family_of(self.gateway)


@dataclass(frozen=True, slots=True)
class GroupRoute:
    """A route the operator's traffic follows (e.g. main's default), pointed at `active`."""

    name: str
    table: int
    destination: str  # "default" or a CIDR
    metric: int
    active: tuple[str, ...]  # link names; empty = leave whatever is there alone
    takeover: bool = False  # replace a foreign route at this (family, table, dst, metric)
    # 4 or 6; None: from a CIDR destination, else from the active links' gateways. The
    # daemon always sets it, so a "default" group with nothing active still knows its key.
    family: int | None = None


@dataclass(frozen=True, slots=True)
class Desired:
    links: tuple[LinkRoute, ...]
    groups: tuple[GroupRoute, ...]
    protocol: int = 201
    rule_priority: int = 1000


@dataclass(frozen=True, slots=True)
class Actual:
    """What observe() found: lifeline-tagged routes and rules, plus whatever occupies a
    group's or link's key (so a foreign route there is seen as a conflict); observed
    without a desired state, every route and rule."""

    routes: tuple[RouteEntry, ...]
    rules: tuple[RuleEntry, ...]


# -- plan ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplaceRoute:
    route: RouteEntry
    why: str

    def describe(self) -> str:
        return f"replace {_route_text(self.route)}  ({self.why})"


@dataclass(frozen=True, slots=True)
class DeleteRoute:
    route: RouteEntry
    why: str

    def describe(self) -> str:
        return f"delete {_route_text(self.route)}  ({self.why})"


@dataclass(frozen=True, slots=True)
class AddRule:
    rule: RuleEntry
    why: str

    def describe(self) -> str:
        return f"add rule {_rule_text(self.rule)}  ({self.why})"


@dataclass(frozen=True, slots=True)
class DeleteRule:
    rule: RuleEntry
    why: str

    def describe(self) -> str:
        return f"delete rule {_rule_text(self.rule)}  ({self.why})"


Step = ReplaceRoute | DeleteRoute | AddRule | DeleteRule


@dataclass(frozen=True, slots=True)
class Conflict:
    """Something lifeline will not do on its own; reported every cycle until resolved."""

    owner: str  # group or link name
    message: str

    def describe(self) -> str:
        return f"CONFLICT {self.owner}: {self.message}"


@dataclass(frozen=True, slots=True)
class Plan:
    steps: tuple[Step, ...] = ()
    conflicts: tuple[Conflict, ...] = ()

    @property
    def empty(self) -> bool:
        """True when nothing would be changed (conflicts change nothing either)."""
        return not self.steps

    def describe(self) -> str:
        """One line per change and per conflict, for --dry-run and the journal."""
        if not self.steps and not self.conflicts:
            return "routes: in sync, nothing to change"
        return "\n".join(
            [s.describe() for s in self.steps] + [c.describe() for c in self.conflicts]
        )


def _route_text(r: RouteEntry) -> str:
    hops = " ".join(f"nexthop via {h.gateway} dev {h.ifname} weight {h.weight}" for h in r.nexthops)
    if len(r.nexthops) == 1:
        hops = f"via {r.nexthops[0].gateway} dev {r.nexthops[0].ifname}"
    kind = "" if r.kind == "unicast" else f"{r.kind} "
    # "::/0" says which default it is where no gateway would (a foreign blackhole route)
    dst = "::/0" if r.family == 6 and r.dst == DEFAULT_DST else r.dst
    return f"{kind}{dst} {hops} table {r.table} metric {r.metric} proto {r.proto}".replace(
        "  ", " "
    )


def _rule_text(r: RuleEntry) -> str:
    everyone = "all" if r.family == 4 else "all (IPv6)"
    return f"{r.priority}: from {r.src or everyone} lookup {r.table} proto {r.proto}"


def _link_route(link: LinkRoute, proto: int) -> RouteEntry:
    fam = link.family
    return RouteEntry(
        table=link.table,
        dst=DEFAULT_DST,
        metric=effective_metric(fam, 0),
        proto=proto,
        nexthops=(Nexthop(_gateway(link), link.ifname, 1),),
        family=fam,
    )


def _link_rule(link: LinkRoute, index: int, desired: Desired) -> RuleEntry | None:
    if link.source is None:
        return None
    fam = link.family
    host = 32 if fam == 4 else 128
    return RuleEntry(
        priority=desired.rule_priority + index,
        src=normalize_dst(link.source if "/" in link.source else f"{link.source}/{host}"),
        table=link.table,
        proto=desired.protocol,
        family=fam,
    )


def _gateway(link: LinkRoute) -> str:
    # the kernel reads gateways back in canonical form ("2001:db8::1"); so must the plan
    return str(ipaddress.ip_address(link.gateway))


def _family_name(fam: int) -> str:
    return f"IPv{fam}"


def group_family(group: GroupRoute, links: Mapping[str, LinkRoute]) -> int | None:
    """PURE: the group's address family, or None when it cannot be told (active links of
    both families). Explicit family first, then a CIDR destination, then the active links;
    a "default" group with nothing active and no family is taken as IPv4, as before IPv6."""
    if group.family is not None:
        return group.family
    if normalize_dst(group.destination) != DEFAULT_DST:
        return family_of(group.destination)
    fams = {links[n].family for n in group.active if n in links}
    if len(fams) > 1:
        return None
    return fams.pop() if fams else 4


def group_key(group: GroupRoute, links: Mapping[str, LinkRoute] | Iterable[LinkRoute]) -> RouteKey:
    """PURE: the kernel key of the group's route, e.g. (6, 254, "default", 1024).

    Raises ValueError when the family cannot be told or the destination is of the other
    family; plan() reports those as conflicts instead.
    """
    by_name = links if isinstance(links, Mapping) else {link.name: link for link in links}
    fam = group_family(group, by_name)
    if fam is None:
        raise ValueError(f"group {group.name}: active links of both address families")
    return (
        fam,
        group.table,
        normalize_dst(group.destination, fam),
        effective_metric(fam, group.metric),
    )


def desired_rules(desired: Desired) -> tuple[RuleEntry, ...]:
    rules = (_link_rule(link, i, desired) for i, link in enumerate(desired.links))
    return tuple(r for r in rules if r is not None)


def plan(desired: Desired, actual: Actual, owned: frozenset[RouteKey] = frozenset()) -> Plan:
    """PURE: the steps that turn `actual` into `desired`, and what must be left to a human.

    `owned` holds the route keys lifeline has held in this run (see RouteReconciler): a
    foreign route found there is a manual change to lifeline's route and is put back; a
    foreign route at a key lifeline never held is the operator's and only reported.

    Order matters for traffic, not for correctness: link tables first (so rules never point
    at an empty table), then rules, then group routes (each one NLM_F_REPLACE: the route is
    never absent), and deletions last.
    """
    proto = desired.protocol
    by_key: dict[RouteKey, RouteEntry] = {}
    for r in actual.routes:
        by_key.setdefault(r.key, r)
    links = {link.name: link for link in desired.links}
    claimed: dict[RouteKey, str] = {}
    link_steps: list[Step] = []
    group_steps: list[Step] = []
    conflicts: list[Conflict] = []

    def want(owner: str, route: RouteEntry, takeover: bool, why: str, out: list[Step]) -> None:
        if route.key in claimed:
            conflicts.append(
                Conflict(owner, f"{_route_text(route)} has the same key as {claimed[route.key]}")
            )
            return
        claimed[route.key] = owner
        have = by_key.get(route.key)
        if have == route:
            return
        if have is not None and have.proto != proto and route.key in owned:
            why = f"{why}; put back, was changed by hand to {_route_text(have)}"
        elif have is not None and have.proto != proto and not takeover:
            conflicts.append(
                Conflict(
                    owner,
                    f"found foreign {_route_text(have)} where lifeline would put "
                    f"{_route_text(route)}; left alone (set takeover to let lifeline own it)",
                )
            )
            return
        out.append(ReplaceRoute(route, why))

    for link in desired.links:
        want(link.name, _link_route(link, proto), False, f"table of link {link.name}", link_steps)

    for group in desired.groups:
        try:
            key = group_key(group, links)
        except ValueError as exc:
            # Whatever lifeline holds at the keys this group could mean stays: an unclear
            # group must not get its route swept as stale.
            for maybe in _candidate_keys(group):
                claimed.setdefault(maybe, group.name)
            conflicts.append(Conflict(group.name, f"{exc}; left alone"))
            continue
        fam = key[0]
        if not group.active:
            # "leave alone": keep the key claimed so our own route there is not swept as stale
            claimed.setdefault(key, group.name)
            continue
        unknown = [n for n in group.active if n not in links]
        if unknown:
            claimed.setdefault(key, group.name)
            conflicts.append(Conflict(group.name, f"active link(s) not configured: {unknown}"))
            continue
        other = [n for n in group.active if links[n].family != fam]
        if other:
            claimed.setdefault(key, group.name)
            conflicts.append(
                Conflict(
                    group.name,
                    f"{_family_name(fam)} route via {_family_name(6 if fam == 4 else 4)} "
                    f"link(s) {other}; left alone",
                )
            )
            continue
        hops = {
            Nexthop(
                _gateway(links[n]), links[n].ifname, links[n].weight if len(group.active) > 1 else 1
            )
            for n in group.active
        }
        route = RouteEntry(
            table=key[1],
            dst=key[2],
            metric=key[3],
            proto=proto,
            nexthops=tuple(sorted(hops)),
            family=fam,
        )
        why = f"group {group.name} -> {'+'.join(group.active)}"
        want(group.name, route, group.takeover, why, group_steps)

    want_rules = set(desired_rules(desired))
    have_rules = {r for r in actual.rules if r.proto == proto}
    add_rules: list[Step] = [
        AddRule(r, f"source rule of table {r.table}") for r in sorted(want_rules - have_rules)
    ]
    # A duplicate of a rule we want (the kernel allows identical rules) is removed too:
    # deleting one copy leaves the other, and the next cycle sees it in sync.
    seen: set[RuleEntry] = set()
    del_rules: list[Step] = []
    for rule in actual.rules:
        if rule.proto != proto:
            continue
        if rule not in want_rules or rule in seen:
            del_rules.append(DeleteRule(rule, "lifeline rule no longer configured"))
        seen.add(rule)

    del_routes: list[Step] = [
        DeleteRoute(r, "lifeline route no longer configured")
        for r in actual.routes
        if r.proto == proto and r.key not in claimed
    ]
    return Plan(
        steps=tuple(link_steps + add_rules + group_steps + del_rules + del_routes),
        conflicts=tuple(conflicts),
    )


# -- I/O ----------------------------------------------------------------------------------------


def _candidate_keys(group: GroupRoute) -> list[RouteKey]:
    dst = normalize_dst(group.destination)
    fams = (4, 6) if dst == DEFAULT_DST else (family_of(dst),)
    return [(f, group.table, dst, effective_metric(f, group.metric)) for f in fams]


def _keys_of_interest(desired: Desired) -> set[RouteKey]:
    keys = {_link_route(link, desired.protocol).key for link in desired.links}
    links = {link.name: link for link in desired.links}
    for g in desired.groups:
        try:
            keys.add(group_key(g, links))
        except ValueError:
            continue  # plan() reports it
    return keys


async def observe(nl: Netlink, desired: Desired | None = None) -> Actual:
    """Read lifeline's routes and rules, and whatever sits at a key lifeline wants.

    Without `desired`: every route and rule the kernel holds. plan() gives the same steps
    either way (it looks only at lifeline's tag and at the keys it wants); the filter only
    keeps a large table out of memory.
    """
    routes = await nl.routes()
    rules = await nl.rules()
    if desired is None:
        return Actual(routes=tuple(routes), rules=tuple(rules))
    keys = _keys_of_interest(desired)
    return Actual(
        routes=tuple(r for r in routes if r.proto == desired.protocol or r.key in keys),
        rules=tuple(r for r in rules if r.proto == desired.protocol),
    )


RouteResult: TypeAlias = ApplyResult[Plan, Step]


async def apply(nl: Netlink, the_plan: Plan) -> RouteResult:
    """Carry out every step; a failing step is recorded and the others still run.

    A typical failure is ENETUNREACH when a nexthop's interface is administratively down
    (the kernel then also drops the link's routes; the next cycle puts them back once the
    interface is up). `onlink` is not used on purpose: these gateways sit in the link's
    connected subnet, so forcing onlink would only hide a wrong gateway address.
    """
    done: list[Step] = []
    errors: list[StepError[Step]] = []
    durations: list[float] = []
    started = time.perf_counter()
    for step in the_plan.steps:
        t0 = time.perf_counter()
        try:
            if isinstance(step, ReplaceRoute):
                await nl.replace_route(step.route)
            elif isinstance(step, DeleteRoute):
                await nl.delete_route(step.route)
            elif isinstance(step, AddRule):
                await nl.add_rule(step.rule)
            else:
                await nl.delete_rule(step.rule)
        except (OSError, ValueError) as exc:  # NetlinkError is an OSError
            errors.append(StepError(step, _error_text(exc)))
            continue
        durations.append(time.perf_counter() - t0)
        done.append(step)
    return ApplyResult(
        the_plan, tuple(done), tuple(errors), tuple(durations),
        calls=len(the_plan.steps), seconds=time.perf_counter() - started,
    )  # fmt: skip


def _error_text(exc: BaseException) -> str:
    args: Iterable[object] = getattr(exc, "args", ())
    return " ".join(str(a) for a in args) or type(exc).__name__


def _tagged(actual: Actual, protocol: int) -> set[RouteKey]:
    return {r.key for r in actual.routes if r.proto == protocol}


class RouteReconciler:
    """The daemon's route actuator (observe / plan / apply), one `reconcile()` per cycle.

    It remembers which route keys lifeline has held in this run (written by it, or found
    with its tag), so a route replaced by hand at such a key (`ip route replace` tags it
    `boot`) is put back, while a foreign route at a key lifeline never held stays a conflict.
    After a restart the memory starts from what carries lifeline's tag.
    """

    def __init__(self, nl: Netlink) -> None:
        self.nl = nl
        self.owned: set[RouteKey] = set()

    async def observe(self, desired: Desired | None = None) -> Actual:
        return await observe(self.nl, desired)

    def plan(self, desired: Desired, actual: Actual) -> Plan:
        """PURE: the module's plan(), with the keys lifeline holds (remembered, or found
        carrying its tag now) as its own."""
        return plan(desired, actual, frozenset(self.owned | _tagged(actual, desired.protocol)))

    async def apply(self, the_plan: Plan) -> RouteResult:
        result = await apply(self.nl, the_plan)
        for step in result.done:
            if isinstance(step, ReplaceRoute):
                self.owned.add(step.route.key)
            elif isinstance(step, DeleteRoute):
                self.owned.discard(step.route.key)
        return result

    async def reconcile(self, desired: Desired, *, dry_run: bool = False) -> RouteResult:
        actual = await self.observe(desired)
        self.owned |= _tagged(actual, desired.protocol)
        the_plan = self.plan(desired, actual)
        if dry_run:
            return ApplyResult(the_plan)
        return await self.apply(the_plan)


if TYPE_CHECKING:  # mypy holds the reconciler to the one actuator shape

    def _is_an_actuator(r: RouteReconciler) -> Actuator[Desired, Actual, Plan, Step]:
        return r


async def reconcile(nl: Netlink, desired: Desired, *, dry_run: bool = False) -> RouteResult:
    """One stateless cycle (observe, plan, apply unless dry_run): e.g. for a one-shot CLI."""
    the_plan = plan(desired, await observe(nl, desired))
    if dry_run:
        return ApplyResult(the_plan)
    return await apply(nl, the_plan)
