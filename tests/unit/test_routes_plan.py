"""Unit tests of the pure route planner: what it changes, what it refuses to touch, and that
planning again after applying a plan gives nothing to do (simulated kernel, and the
reconciler against a fake one; hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.actuators.netlink import Nexthop, RouteEntry, RouteKey, RuleEntry
from controller.actuators.routes import (
    Actual,
    AddRule,
    DeleteRoute,
    DeleteRule,
    Desired,
    GroupRoute,
    LinkRoute,
    Plan,
    ReplaceRoute,
    RouteReconciler,
    group_key,
    plan,
)
from tests.unit.isolated_loop import run

P = 201
FIBRE_A = LinkRoute("fibre-a", "wan0", "198.51.100.1", "198.51.100.2", 101, weight=3)
FIBRE_B = LinkRoute("fibre-b", "wan1", "198.51.100.5", "198.51.100.6", 102)
LTE = LinkRoute("lte", "wwan0", "198.51.100.9", None, 103)
# the same uplinks in IPv6: one gateway per link, so dual-stack means a second link per
# interface; fibre-b6 has a link-local gateway, as many ISPs hand out
FIBRE_A6 = LinkRoute("fibre-a6", "wan0", "2001:db8:a::1", "2001:db8:a::2", 201, weight=3)
FIBRE_B6 = LinkRoute("fibre-b6", "wan1", "fe80::1", "2001:db8:b::2", 202)


def desired(active: tuple[str, ...] = ("fibre-a",), takeover: bool = False) -> Desired:
    group = GroupRoute("internet", 254, "default", 10, active, takeover=takeover)
    return Desired(links=(FIBRE_A, FIBRE_B, LTE), groups=(group,), protocol=P, rule_priority=1000)


def simulate(actual: Actual, p: Plan) -> Actual:
    """What the kernel would hold after the plan's steps (the way it keys routes and rules)."""
    routes = list(actual.routes)
    rules = list(actual.rules)
    for step in p.steps:
        if isinstance(step, ReplaceRoute):
            routes = [r for r in routes if r.key != step.route.key] + [step.route]
        elif isinstance(step, DeleteRoute):
            routes = [
                r for r in routes if not (r.key == step.route.key and r.proto == step.route.proto)
            ]
        elif isinstance(step, AddRule):
            rules.append(step.rule)
        else:
            rules.remove(step.rule)
    return Actual(tuple(routes), tuple(rules))


def route(table: int, gw: str, dev: str, metric: int = 0, proto: int = P) -> RouteEntry:
    return RouteEntry(table, "default", metric, proto, (Nexthop(gw, dev),))


def test_empty_kernel_gets_tables_rules_and_group_route() -> None:
    p = plan(desired(), Actual((), ()))
    replaced = {s.route.key: s.route for s in p.steps if isinstance(s, ReplaceRoute)}
    assert replaced[(4, 101, "default", 0)].nexthops == (Nexthop("198.51.100.1", "wan0"),)
    assert replaced[(4, 103, "default", 0)].nexthops == (Nexthop("198.51.100.9", "wwan0"),)
    group = replaced[(4, 254, "default", 10)]
    assert group.nexthops == (Nexthop("198.51.100.1", "wan0", 1),)
    assert all(r.proto == P for r in replaced.values())
    rules = [s.rule for s in p.steps if isinstance(s, AddRule)]
    # one rule per link with a source, at rule_priority + the link's index
    assert rules == [
        RuleEntry(1000, "198.51.100.2/32", 101, P),
        RuleEntry(1001, "198.51.100.6/32", 102, P),
    ]
    # tables before rules before the group route: nothing ever points at an empty table
    kinds = [type(s).__name__ for s in p.steps]
    assert kinds == ["ReplaceRoute"] * 3 + ["AddRule"] * 2 + ["ReplaceRoute"]
    assert "replace default via 198.51.100.1 dev wan0 table 254 metric 10" in p.describe()


def test_in_sync_gives_empty_plan_and_says_so() -> None:
    d = desired()
    after = simulate(Actual((), ()), plan(d, Actual((), ())))
    p = plan(d, after)
    assert p.empty and not p.conflicts
    assert p.describe() == "routes: in sync, nothing to change"


def test_switch_is_a_single_replace_never_delete() -> None:
    before = simulate(Actual((), ()), plan(desired(), Actual((), ())))
    p = plan(desired(("fibre-b",)), before)
    assert [type(s) for s in p.steps] == [ReplaceRoute]
    step = p.steps[0]
    assert isinstance(step, ReplaceRoute)
    assert step.route.nexthops == (Nexthop("198.51.100.5", "wan1"),)


def test_multipath_uses_link_weights() -> None:
    p = plan(desired(("fibre-a", "fibre-b")), Actual((), ()))
    group = [s.route for s in p.steps if isinstance(s, ReplaceRoute) and s.route.table == 254]
    assert group[0].nexthops == (
        Nexthop("198.51.100.1", "wan0", 3),
        Nexthop("198.51.100.5", "wan1", 1),
    )


def test_empty_active_leaves_group_route_alone() -> None:
    before = simulate(Actual((), ()), plan(desired(), Actual((), ())))
    p = plan(desired(()), before)
    assert p.empty  # our old route at that key is neither replaced nor swept as stale


def test_foreign_route_at_group_key_is_a_conflict_unless_takeover() -> None:
    foreign = route(254, "198.51.100.77", "wan0", metric=10, proto=4)  # proto static
    p = plan(desired(), Actual((foreign,), ()))
    assert not any(isinstance(s, ReplaceRoute) and s.route.table == 254 for s in p.steps)
    assert len(p.conflicts) == 1 and "foreign" in p.conflicts[0].message
    assert p.conflicts[0].owner == "internet"
    taken = plan(desired(takeover=True), Actual((foreign,), ()))
    assert any(isinstance(s, ReplaceRoute) and s.route.table == 254 for s in taken.steps)
    assert not taken.conflicts


def test_foreign_route_at_a_key_lifeline_held_is_put_back() -> None:
    by_hand = route(254, "198.51.100.77", "wan0", metric=10, proto=3)  # `ip route replace`
    p = plan(desired(), Actual((by_hand,), ()), owned=frozenset({(4, 254, "default", 10)}))
    assert not p.conflicts
    put_back = [s for s in p.steps if isinstance(s, ReplaceRoute) and s.route.table == 254]
    assert len(put_back) == 1 and "changed by hand" in put_back[0].why


def test_foreign_routes_and_rules_elsewhere_are_never_touched() -> None:
    foreign = (
        route(254, "198.51.100.77", "wan0", metric=0, proto=4),  # other metric
        route(254, "198.51.100.77", "wan0", metric=10, proto=3),  # boot proto, group key
        route(50, "198.51.100.77", "wan0", proto=4),  # other table
    )
    foreign_rule = RuleEntry(1000, "198.51.100.2/32", 50, 4)
    p = plan(desired(takeover=False), Actual(foreign, (foreign_rule,)))
    for s in p.steps:
        if isinstance(s, DeleteRoute | DeleteRule):
            pytest_fail = f"deleted something foreign: {s.describe()}"
            assert (s.route.proto if isinstance(s, DeleteRoute) else s.rule.proto) == P, pytest_fail
        if isinstance(s, ReplaceRoute):
            assert s.route.key != (4, 254, "default", 10)


def test_stale_lifeline_rule_and_table_are_removed() -> None:
    stale_rule = RuleEntry(1005, "198.51.100.14/32", 105, P)
    stale_route = route(105, "198.51.100.13", "wan5")
    before = simulate(Actual((), ()), plan(desired(), Actual((), ())))
    p = plan(desired(), Actual((*before.routes, stale_route), (*before.rules, stale_rule)))
    assert [type(s) for s in p.steps] == [DeleteRule, DeleteRoute]
    assert "no longer configured" in p.describe()


def test_manual_change_is_put_back() -> None:
    d = desired()
    good = simulate(Actual((), ()), plan(d, Actual((), ())))
    # someone pointed our route elsewhere (keeping our tag) and deleted a rule
    tampered = tuple(
        route(254, "198.51.100.9", "wwan0", metric=10) if r.key == (4, 254, "default", 10) else r
        for r in good.routes
    )
    p = plan(d, Actual(tampered, good.rules[1:]))
    assert len(p.steps) == 2
    assert simulate(Actual(tampered, good.rules[1:]), p).rules == (*good.rules[1:], good.rules[0])
    assert plan(d, simulate(Actual(tampered, good.rules[1:]), p)).empty


def test_unknown_active_link_is_reported_not_applied() -> None:
    p = plan(desired(("fibre-z",)), Actual((), ()))
    assert any("fibre-z" in c.message for c in p.conflicts)
    assert not any(isinstance(s, ReplaceRoute) and s.route.table == 254 for s in p.steps)


def test_group_on_a_link_table_key_is_a_conflict() -> None:
    d = Desired(
        links=(FIBRE_A,),
        groups=(GroupRoute("clash", 101, "0.0.0.0/0", 0, ("fibre-a",)),),
        protocol=P,
    )
    p = plan(d, Actual((), ()))
    assert [c.owner for c in p.conflicts] == ["clash"]


# -- IPv6 and dual stack ---------------------------------------------------------------------


def desired6(active: tuple[str, ...] = ("fibre-a6",), metric: int = 0,
             takeover: bool = False) -> Desired:
    group = GroupRoute("internet6", 254, "default", metric, active, takeover=takeover, family=6)
    return Desired(links=(FIBRE_A6, FIBRE_B6), groups=(group,), protocol=P, rule_priority=1000)


def dual(
    active4: tuple[str, ...] = ("fibre-a",), active6: tuple[str, ...] = ("fibre-a6",)
) -> Desired:
    groups = (
        GroupRoute("internet", 254, "default", 0, active4, family=4),
        GroupRoute("internet6", 254, "default", 0, active6, family=6),
    )
    links = (FIBRE_A, FIBRE_B, FIBRE_A6, FIBRE_B6)
    return Desired(links=links, groups=groups, protocol=P, rule_priority=1000)


def route6(table: int, gw: str, dev: str, metric: int = 1024, proto: int = P) -> RouteEntry:
    return RouteEntry(table, "default", metric, proto, (Nexthop(gw, dev),), family=6)


def test_ipv6_link_tables_rules_and_group_route() -> None:
    p = plan(desired6(), Actual((), ()))
    replaced = {s.route.key: s.route for s in p.steps if isinstance(s, ReplaceRoute)}
    # IPv6 has no metric 0: the kernel stores 1024, so that is what is planned
    assert set(replaced) == {
        (6, 201, "default", 1024),
        (6, 202, "default", 1024),
        (6, 254, "default", 1024),
    }
    assert replaced[(6, 202, "default", 1024)].nexthops == (Nexthop("fe80::1", "wan1"),)
    assert replaced[(6, 254, "default", 1024)].nexthops == (Nexthop("2001:db8:a::1", "wan0"),)
    rules = [s.rule for s in p.steps if isinstance(s, AddRule)]
    assert rules == [
        RuleEntry(1000, "2001:db8:a::2/128", 201, P, family=6),
        RuleEntry(1001, "2001:db8:b::2/128", 202, P, family=6),
    ]
    assert "replace ::/0 via 2001:db8:a::1 dev wan0 table 254 metric 1024" in p.describe()
    after = simulate(Actual((), ()), p)
    assert plan(desired6(), after).empty


def test_ipv6_switch_and_multipath() -> None:
    before = simulate(Actual((), ()), plan(desired6(), Actual((), ())))
    p = plan(desired6(("fibre-b6",)), before)
    assert [type(s) for s in p.steps] == [ReplaceRoute]
    both = plan(desired6(("fibre-a6", "fibre-b6"), metric=10), Actual((), ()))
    group = [s.route for s in both.steps if isinstance(s, ReplaceRoute) and s.route.table == 254]
    assert group[0].key == (6, 254, "default", 10)
    assert group[0].nexthops == (
        Nexthop("2001:db8:a::1", "wan0", 3),
        Nexthop("fe80::1", "wan1", 1),
    )


def test_dual_stack_defaults_in_one_table_are_two_routes() -> None:
    d = dual()
    p = plan(d, Actual((), ()))
    assert not p.conflicts, p.describe()
    groups = {s.route.key for s in p.steps if isinstance(s, ReplaceRoute) and s.route.table == 254}
    assert groups == {(4, 254, "default", 0), (6, 254, "default", 1024)}
    rules = {(s.rule.family, s.rule.priority) for s in p.steps if isinstance(s, AddRule)}
    # priorities follow the link's position; the two families are separate rule lists
    assert rules == {(4, 1000), (4, 1001), (6, 1002), (6, 1003)}
    after = simulate(Actual((), ()), p)
    assert plan(d, after).empty
    # failing over one family leaves the other alone
    p6 = plan(dual(active6=("fibre-b6",)), after)
    assert [s.route.key for s in p6.steps if isinstance(s, ReplaceRoute)] == [
        (6, 254, "default", 1024)
    ]


def test_ipv6_foreign_route_is_a_conflict_and_ipv4_route_is_no_clash() -> None:
    foreign6 = route6(254, "2001:db8:a::77", "wan0", proto=9)  # proto ra: from a router advert
    foreign4 = route(254, "198.51.100.77", "wan0", metric=0, proto=4)
    p = plan(desired6(), Actual((foreign6, foreign4), ()))
    assert [c.owner for c in p.conflicts] == ["internet6"]
    assert "::/0 via 2001:db8:a::77" in p.conflicts[0].message
    assert not any(isinstance(s, ReplaceRoute) and s.route.table == 254 for s in p.steps)
    taken = plan(desired6(takeover=True), Actual((foreign6, foreign4), ()))
    assert not taken.conflicts
    replaced = [s.route.key for s in taken.steps if isinstance(s, ReplaceRoute)]
    assert (6, 254, "default", 1024) in replaced and (4, 254, "default", 0) not in replaced
    assert not any(isinstance(s, DeleteRoute) for s in taken.steps)


def test_ipv6_stale_rule_removed_ipv4_rule_of_same_priority_kept() -> None:
    before = simulate(Actual((), ()), plan(desired6(), Actual((), ())))
    stale6 = RuleEntry(1005, "2001:db8:c::2/128", 205, P, family=6)
    foreign4 = RuleEntry(1000, "198.51.100.2/32", 101, 4)
    p = plan(desired6(), Actual(before.routes, (*before.rules, stale6, foreign4)))
    assert [s.rule for s in p.steps if isinstance(s, DeleteRule)] == [stale6]


def test_group_mixing_families_is_a_conflict_and_its_route_kept() -> None:
    links = (FIBRE_A, FIBRE_A6)
    mixed = GroupRoute("mixed", 254, "default", 0, ("fibre-a", "fibre-a6"))
    ours = route(254, "198.51.100.1", "wan0")
    p = plan(Desired(links, (mixed,), P), Actual((ours,), ()))
    assert [c.owner for c in p.conflicts] == ["mixed"]
    assert "both address families" in p.conflicts[0].message
    assert not any(
        isinstance(s, ReplaceRoute | DeleteRoute) and s.route.table == 254 for s in p.steps
    )
    told = GroupRoute("v6", 254, "default", 0, ("fibre-a",), family=6)
    p = plan(Desired(links, (told,), P), Actual((), ()))
    assert [c.owner for c in p.conflicts] == ["v6"] and "IPv4 link(s)" in p.conflicts[0].message
    wrong_dst = GroupRoute("v6", 300, "203.0.113.0/24", 0, ("fibre-a6",), family=6)
    p = plan(Desired(links, (wrong_dst,), P), Actual((), ()))
    assert [c.owner for c in p.conflicts] == ["v6"]


def test_idle_ipv6_group_keeps_its_route() -> None:
    before = simulate(Actual((), ()), plan(desired6(), Actual((), ())))
    assert plan(desired6(()), before).empty


def test_group_key_family_from_destination_or_links() -> None:
    links = (FIBRE_A, FIBRE_A6)
    cidr = GroupRoute("carrier", 300, "2001:db8:5000::/48", 0, ())
    assert group_key(cidr, links) == (6, 300, "2001:db8:5000::/48", 1024)
    by_link = GroupRoute("internet6", 254, "::/0", 5, ("fibre-a6",))
    assert group_key(by_link, links) == (6, 254, "default", 5)
    assert group_key(GroupRoute("i", 254, "0.0.0.0/0", 0, ()), links) == (4, 254, "default", 0)


def test_route_and_rule_refuse_the_other_family() -> None:
    with pytest.raises(ValueError):
        RouteEntry(254, "default", 0, P, (Nexthop("2001:db8:a::1", "wan0"),))
    with pytest.raises(ValueError):
        RouteEntry(254, "2001:db8::/32", 0, P, (), family=4)
    with pytest.raises(ValueError):
        RuleEntry(1000, "198.51.100.2/32", 101, P, family=6)


# -- property: plan, apply (simulated), plan again = nothing ------------------------------------

names = ["a", "b", "c", "d"]
Scenario = tuple[Desired, Actual, frozenset[RouteKey]]


def _gw(i: int, fam: int) -> str:
    return f"198.51.100.{4 * i + 1}" if fam == 4 else f"2001:db8:{i}::1"


def _src(i: int, fam: int) -> str:
    return f"198.51.100.{4 * i + 2}" if fam == 4 else f"2001:db8:{i}::2"


@st.composite
def route_entries(draw: st.DrawFn) -> RouteEntry:
    """A route as the kernel could hold it: dst and gateways of one family, and never an
    IPv6 metric 0 (the kernel stores 1024)."""
    fam = draw(st.sampled_from([4, 6]))
    dsts = (
        ["default", "203.0.113.0/24", "192.0.2.0/24"]
        if fam == 4
        else ["default", "2001:db8:f::/48"]
    )
    return RouteEntry(
        table=draw(st.sampled_from([100, 101, 110, 200, 254])),
        dst=draw(st.sampled_from(dsts)),
        metric=draw(st.sampled_from([0, 10, 20] if fam == 4 else [10, 20, 1024])),
        proto=draw(st.sampled_from([P, 4, 3])),
        nexthops=tuple(
            sorted(
                draw(
                    st.lists(
                        st.builds(
                            Nexthop,
                            st.sampled_from([_gw(0, fam), _gw(1, fam)]),
                            st.sampled_from(["wan0", "wan1"]),
                            st.integers(1, 3),
                        ),
                        min_size=1,
                        max_size=2,
                        unique=True,
                    )
                )
            )
        ),
        family=fam,
    )


@st.composite
def rule_entries(draw: st.DrawFn) -> RuleEntry:
    fam = draw(st.sampled_from([4, 6]))
    host = "/32" if fam == 4 else "/128"
    return RuleEntry(
        priority=draw(st.sampled_from([1000, 1001, 2000, 3000])),
        src=draw(st.sampled_from([None, _src(0, fam) + host, _src(1, fam) + host])),
        table=draw(st.sampled_from([100, 101, 110, 254])),
        proto=draw(st.sampled_from([P, 4])),
        family=fam,
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    """Links of both families (two links may share an interface, as dual stack does),
    groups with a given, derived or mixed family, and a kernel holding routes and rules of
    both families, ours and foreign."""
    n = draw(st.integers(1, 4))
    links = []
    for i in range(n):
        fam = draw(st.sampled_from([4, 6]))
        links.append(
            LinkRoute(
                names[i],
                f"wan{draw(st.integers(0, 1))}",
                _gw(i, fam),
                draw(st.sampled_from([None, _src(i, fam)])),
                draw(st.sampled_from([100 + i, 110 + i])),
                draw(st.integers(1, 5)),
            )
        )
    groups = tuple(
        GroupRoute(
            f"g{j}",
            draw(st.sampled_from([254, 200])),
            draw(st.sampled_from(["default", "203.0.113.0/24", "2001:db8:f::/48", "::/0"])),
            draw(st.sampled_from([0, 10, 1024])),
            tuple(draw(st.lists(st.sampled_from(names[:n]), unique=True, max_size=n))),
            draw(st.booleans()),
            draw(st.sampled_from([None, 4, 6])),
        )
        for j in range(draw(st.integers(0, 3)))
    )
    d = Desired(tuple(links), groups, P, draw(st.sampled_from([1000, 2000])))
    routes = draw(st.lists(route_entries(), max_size=6, unique_by=lambda r: r.key))
    rules = draw(st.lists(rule_entries(), max_size=6))
    owned = draw(st.sets(st.sampled_from([r.key for r in routes]))) if routes else set()
    return d, Actual(tuple(routes), tuple(rules)), frozenset(owned)


@settings(max_examples=600, deadline=None)
@given(scenarios())
def test_apply_then_plan_again_is_empty(case: Scenario) -> None:
    d, actual, owned = case
    p = plan(d, actual, owned)
    after = simulate(actual, p)
    again = plan(d, after, owned)
    assert again.empty, again.describe()
    assert set(again.conflicts) == set(p.conflicts)


@settings(max_examples=600, deadline=None)
@given(scenarios())
def test_never_touches_foreign_state(case: Scenario) -> None:
    d, actual, owned = case
    takeover_keys = set()
    for g in d.groups:
        if g.takeover:
            try:
                takeover_keys.add(group_key(g, d.links))
            except ValueError:
                continue
    foreign = {r.key: r for r in actual.routes if r.proto != P}
    for s in plan(d, actual, owned).steps:
        if isinstance(s, DeleteRoute):
            assert s.route.proto == P
        elif isinstance(s, DeleteRule):
            assert s.rule.proto == P
        elif isinstance(s, ReplaceRoute):
            if s.route.key in foreign:
                assert s.route.key in takeover_keys | owned
            # what is written is what the kernel will report back
            assert not (s.route.family == 6 and s.route.metric == 0)


# -- property: reconcile against a fake kernel, plan again = nothing -----------------------------


class FakeKernel:
    """The kernel's routes and rules as netlink shows them, keyed the way it keys them: a
    replace takes the route's key, a delete or rule removal of what is not there fails."""

    def __init__(self, actual: Actual) -> None:
        self._routes = list(actual.routes)
        self._rules = list(actual.rules)

    async def routes(self) -> list[RouteEntry]:
        return list(self._routes)

    async def rules(self) -> list[RuleEntry]:
        return list(self._rules)

    async def replace_route(self, route: RouteEntry) -> None:
        self._routes = [r for r in self._routes if r.key != route.key] + [route]

    async def delete_route(self, route: RouteEntry) -> None:
        keep = [r for r in self._routes if not (r.key == route.key and r.proto == route.proto)]
        if len(keep) == len(self._routes):
            raise OSError(3, "No such process")
        self._routes = keep

    async def add_rule(self, rule: RuleEntry) -> None:
        self._rules.append(rule)

    async def delete_rule(self, rule: RuleEntry) -> None:
        if rule not in self._rules:
            raise OSError(2, "No such file or directory")
        self._rules.remove(rule)


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_reconcile_against_a_fake_kernel_then_plan_is_empty(case: Scenario) -> None:
    d, actual, owned = case

    async def cycle() -> None:
        rec = RouteReconciler(FakeKernel(actual))  # type: ignore[arg-type]
        rec.owned = set(owned)
        # What observe() leaves out (foreign routes away from lifeline's keys) never
        # changes the plan.
        assert rec.plan(d, await rec.observe()) == rec.plan(d, await rec.observe(d))
        result = await rec.reconcile(d)
        assert result.ok, result.describe()
        assert result.done == result.plan.steps
        again = rec.plan(d, await rec.observe(d))
        assert again.empty, again.describe()
        assert set(again.conflicts) == set(result.plan.conflicts)
        assert (await rec.reconcile(d)).done == ()

    run(cycle())
