"""Unit tests of the pure route planner: what it changes, what it refuses to touch, and that
planning again after applying a plan gives nothing to do (simulated kernel, hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

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
    plan,
)
from controller.netlink import Nexthop, RouteEntry, RuleEntry

P = 201
FIBRE_A = LinkRoute("fibre-a", "wan0", "198.51.100.1", "198.51.100.2", 101, weight=3)
FIBRE_B = LinkRoute("fibre-b", "wan1", "198.51.100.5", "198.51.100.6", 102)
LTE = LinkRoute("lte", "wwan0", "198.51.100.9", None, 103)


def desired(active: tuple[str, ...] = ("fibre-a",), **group_kw: object) -> Desired:
    group = GroupRoute("internet", 254, "default", 10, active, **group_kw)  # type: ignore[arg-type]
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
    assert replaced[(101, "default", 0)].nexthops == (Nexthop("198.51.100.1", "wan0"),)
    assert replaced[(103, "default", 0)].nexthops == (Nexthop("198.51.100.9", "wwan0"),)
    group = replaced[(254, "default", 10)]
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
    p = plan(desired(), Actual((by_hand,), ()), owned=frozenset({(254, "default", 10)}))
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
            assert s.route.key != (254, "default", 10)


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
        route(254, "198.51.100.9", "wwan0", metric=10) if r.key == (254, "default", 10) else r
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


# -- property: plan, apply (simulated), plan again = nothing ------------------------------------

names = ["a", "b", "c", "d"]
Scenario = tuple[Desired, Actual, frozenset[tuple[int, str, int]]]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n = draw(st.integers(1, 4))
    links = tuple(
        LinkRoute(
            names[i],
            f"wan{i}",
            f"198.51.100.{4 * i + 1}",
            draw(st.sampled_from([None, f"198.51.100.{4 * i + 2}"])),
            draw(st.sampled_from([100 + i, 110 + i])),
            draw(st.integers(1, 5)),
        )
        for i in range(n)
    )
    groups = tuple(
        GroupRoute(
            f"g{j}",
            draw(st.sampled_from([254, 200])),
            draw(st.sampled_from(["default", "203.0.113.0/24"])),
            draw(st.sampled_from([0, 10])),
            tuple(draw(st.lists(st.sampled_from(names[:n]), unique=True, max_size=n))),
            draw(st.booleans()),
        )
        for j in range(draw(st.integers(0, 3)))
    )
    d = Desired(links, groups, P, draw(st.sampled_from([1000, 2000])))
    route_st = st.builds(
        RouteEntry,
        table=st.sampled_from([100, 101, 110, 200, 254]),
        dst=st.sampled_from(["default", "203.0.113.0/24", "192.0.2.0/24"]),
        metric=st.sampled_from([0, 10, 20]),
        proto=st.sampled_from([P, 4, 3]),
        nexthops=st.lists(
            st.builds(
                Nexthop,
                st.sampled_from(["198.51.100.1", "198.51.100.5"]),
                st.sampled_from(["wan0", "wan1"]),
                st.integers(1, 3),
            ),
            min_size=1,
            max_size=2,
            unique=True,
        ).map(lambda hs: tuple(sorted(hs))),
    )
    routes = draw(st.lists(route_st, max_size=6, unique_by=lambda r: r.key))
    rule_st = st.builds(
        RuleEntry,
        priority=st.sampled_from([1000, 1001, 2000, 3000]),
        src=st.sampled_from([None, "198.51.100.2/32", "198.51.100.6/32"]),
        table=st.sampled_from([100, 101, 110, 254]),
        proto=st.sampled_from([P, 4]),
    )
    rules = draw(st.lists(rule_st, max_size=6))
    owned = draw(st.sets(st.sampled_from([r.key for r in routes]))) if routes else set()
    return d, Actual(tuple(routes), tuple(rules)), frozenset(owned)


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_apply_then_plan_again_is_empty(case: Scenario) -> None:
    d, actual, owned = case
    p = plan(d, actual, owned)
    after = simulate(actual, p)
    again = plan(d, after, owned)
    assert again.empty, again.describe()
    assert set(again.conflicts) == set(p.conflicts)


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_never_touches_foreign_state(case: Scenario) -> None:
    d, actual, owned = case
    takeover_keys = {
        (g.table, "default" if g.destination == "default" else g.destination, g.metric)
        for g in d.groups
        if g.takeover
    }
    foreign = {r.key: r for r in actual.routes if r.proto != P}
    for s in plan(d, actual, owned).steps:
        if isinstance(s, DeleteRoute):
            assert s.route.proto == P
        elif isinstance(s, DeleteRule):
            assert s.rule.proto == P
        elif isinstance(s, ReplaceRoute) and s.route.key in foreign:
            assert s.route.key in takeover_keys | owned
