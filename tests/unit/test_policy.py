"""policy.decide: examples with their reasons, then properties over every small case."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.health import HealthState
from controller.core.policy import Decision, GroupSpec, LinkView, decide, decide_all

UP = HealthState.UP
DOWN = HealthState.DOWN
DEGRADED = HealthState.DEGRADED
UNKNOWN = HealthState.UNKNOWN

WAN = GroupSpec("wan", ("fibre-a", "fibre-b", "lte"))
WAN_MP = GroupSpec("wan", ("fibre-a", "fibre-b", "lte"), multipath=True)
TIERS = {"fibre-a": 0, "fibre-b": 0, "lte": 1}


def views(
    states: Mapping[str, HealthState],
    tiers: Mapping[str, int] = TIERS,
    mos: Mapping[str, float] | None = None,
    loss: Mapping[str, float] | None = None,
) -> dict[str, LinkView]:
    return {
        name: LinkView(
            name,
            tiers[name],
            state,
            mos=(mos or {}).get(name),
            loss_ratio=(loss or {}).get(name, 0.0),
        )
        for name, state in states.items()
    }


# -- examples -----------------------------------------------------------------------------


def test_failover_names_the_failed_link_and_the_new_one() -> None:
    links = views(
        {"fibre-a": DOWN, "fibre-b": UP, "lte": UP}, tiers={"fibre-a": 0, "fibre-b": 1, "lte": 2}
    )
    links["fibre-a"] = LinkView(
        "fibre-a", 0, DOWN, reason="fibre-a: 3 rounds lost in a row (0.6 s)"
    )
    d = decide(WAN, links, ("fibre-a",))
    assert d == Decision(
        "wan",
        ("fibre-b",),
        "fibre-a down: 3 rounds lost in a row (0.6 s); fibre-b is the best up link (tier 1)",
        changed=True,
    )


def test_failback_to_the_lower_tier() -> None:
    links = views({"fibre-a": UP, "fibre-b": DOWN, "lte": UP})
    d = decide(WAN, links, ("lte",))
    assert d.active == ("fibre-a",) and d.changed
    assert d.reason == "lte up but tier 1; fibre-a is the best up link (tier 0)"


def test_no_needless_change_within_a_tier() -> None:
    links = views({"fibre-a": UP, "fibre-b": UP, "lte": UP})
    d = decide(WAN, links, ("fibre-b",))
    assert d.active == ("fibre-b",) and not d.changed
    assert d.reason == "fibre-b is the best up link (tier 0)"
    # With nothing in place yet, the operator's order breaks the tie.
    assert decide(WAN, links, ()).active == ("fibre-a",)


def test_multipath_uses_every_up_link_of_the_best_tier_in_group_order() -> None:
    links = views({"fibre-a": UP, "fibre-b": UP, "lte": UP})
    d = decide(WAN_MP, links, ("fibre-b",))
    assert d.active == ("fibre-a", "fibre-b") and d.changed
    assert "fibre-a, fibre-b are the best up links (tier 0)" in d.reason
    same = decide(WAN_MP, links, ("fibre-b", "fibre-a"))
    assert same.active == ("fibre-a", "fibre-b") and not same.changed


def test_multipath_drops_a_failed_member() -> None:
    links = views({"fibre-a": UP, "fibre-b": DOWN, "lte": UP})
    d = decide(WAN_MP, links, ("fibre-a", "fibre-b"))
    assert d.active == ("fibre-a",) and d.changed
    assert d.reason.startswith("fibre-b down")


def test_up_beats_degraded_whatever_the_tier() -> None:
    links = views({"fibre-a": DEGRADED, "fibre-b": DEGRADED, "lte": UP})
    d = decide(WAN, links, ("fibre-a",))
    assert d.active == ("lte",)
    assert d.reason.startswith("fibre-a degraded")


def test_degraded_only_lowest_tier_then_best_mos() -> None:
    links = views(
        {"fibre-a": DEGRADED, "fibre-b": DEGRADED, "lte": DEGRADED},
        mos={"fibre-a": 3.0, "fibre-b": 3.4, "lte": 4.0},
    )
    d = decide(WAN, links, ())
    assert d.active == ("fibre-b",)
    assert "best degraded (tier 0, MOS 3.40, loss 0.0%)" in d.reason


def test_degraded_ties_on_mos_go_to_lower_loss() -> None:
    links = views(
        {"fibre-a": DEGRADED, "fibre-b": DEGRADED, "lte": DOWN},
        mos={"fibre-a": 3.4, "fibre-b": 3.4},
        loss={"fibre-a": 0.08, "fibre-b": 0.03},
    )
    assert decide(WAN, links, ()).active == ("fibre-b",)


def test_degraded_keeps_current_while_it_is_about_as_good() -> None:
    links = views(
        {"fibre-a": DEGRADED, "fibre-b": DEGRADED, "lte": DOWN},
        mos={"fibre-a": 3.35, "fibre-b": 3.40},
    )
    d = decide(WAN, links, ("fibre-a",))
    assert d.active == ("fibre-a",) and not d.changed
    worse = views(
        {"fibre-a": DEGRADED, "fibre-b": DEGRADED, "lte": DOWN},
        mos={"fibre-a": 2.9, "fibre-b": 3.40},
    )
    assert decide(WAN, worse, ("fibre-a",)).active == ("fibre-b",)


def test_waiting_for_first_probe_results_leaves_the_route_alone() -> None:
    links = views({"fibre-a": UNKNOWN, "fibre-b": UNKNOWN, "lte": UNKNOWN})
    assert decide(WAN, links, ()) == Decision("wan", (), "waiting for first probe results", False)
    kept = decide(WAN, links, ("lte",))
    assert kept.active == ("lte",) and not kept.changed


def test_restart_while_failed_over_changes_nothing_until_health_is_known() -> None:
    links = views({"fibre-a": UNKNOWN, "fibre-b": UNKNOWN, "lte": UP})
    d = decide(WAN, links, ("lte",))
    assert d.active == ("lte",) and not d.changed
    assert "waiting for fibre-a, fibre-b (unknown)" in d.reason
    links = views({"fibre-a": UP, "fibre-b": UNKNOWN, "lte": UP})
    assert decide(WAN, links, ("lte",)).active == ("fibre-a",)


def test_startup_does_not_keep_a_route_through_a_down_link() -> None:
    links = views({"fibre-a": UNKNOWN, "fibre-b": DOWN, "lte": UP})
    d = decide(WAN, links, ("fibre-b",))
    assert d.active == ("lte",) and d.changed


def test_all_links_down_keeps_the_last_route() -> None:
    links = views({"fibre-a": DOWN, "fibre-b": DOWN, "lte": DOWN})
    d = decide(WAN, links, ("lte",))
    assert d == Decision("wan", ("lte",), "all links down; keeping lte, nothing better", False)
    assert decide(WAN, links, ()).active == ()


def test_current_link_down_while_others_are_still_unknown_is_kept() -> None:
    links = views({"fibre-a": DOWN, "fibre-b": UNKNOWN, "lte": UNKNOWN})
    d = decide(WAN, links, ("fibre-a",))
    assert d.active == ("fibre-a",) and not d.changed
    assert "waiting for fibre-b, lte (unknown)" in d.reason and "nothing better" in d.reason


def test_links_missing_from_the_view_are_never_chosen() -> None:
    links = views({"fibre-b": UP})
    d = decide(WAN, links, ("fibre-a",))
    assert d.active == ("fibre-b",)
    assert "fibre-a not known in group wan" in d.reason


def test_decide_all_covers_every_group() -> None:
    links = views({"fibre-a": DOWN, "fibre-b": UP, "lte": UP})
    voice = GroupSpec("voice", ("lte", "fibre-a"))
    out = decide_all([WAN, voice], links, {"wan": ("fibre-a",)})
    assert set(out) == {"wan", "voice"}
    assert out["wan"].active == ("fibre-b",)
    assert out["voice"].active == ("lte",) and out["voice"].changed


# -- properties ---------------------------------------------------------------------------

NAMES = ("a", "b", "c", "d")


@st.composite
def cases(draw: st.DrawFn) -> tuple[GroupSpec, dict[str, LinkView], tuple[str, ...]]:
    members = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    group = GroupSpec("g", tuple(members), multipath=draw(st.booleans()))
    links = {
        n: LinkView(
            n,
            draw(st.integers(0, 2)),
            draw(st.sampled_from(list(HealthState))),
            mos=draw(st.none() | st.floats(1.0, 4.5)),
            loss_ratio=draw(st.floats(0.0, 1.0)),
        )
        for n in members
        if draw(st.integers(0, 9)) > 0  # now and then a link the view does not know
    }
    current = tuple(draw(st.lists(st.sampled_from((*members, "zz")), max_size=3, unique=True)))
    return group, links, current


def check(group: GroupSpec, links: Mapping[str, LinkView], current: tuple[str, ...]) -> None:
    d = decide(group, links, current)
    states = [links[n].state for n in group.links if n in links]
    any_up = UP in states
    any_unknown = UNKNOWN in states
    active_states = [links[n].state for n in d.active if n in links]

    assert d.group == group.name
    assert d.changed == (set(d.active) != set(current))
    assert d.reason
    assert set(d.active) <= set(group.links) | set(current)
    # Only with nothing in place can the answer be "leave it alone".
    if current:
        assert d.active
    # Never a DOWN link while an UP one exists.
    if any_up:
        assert DOWN not in active_states
    # Never empty while something usable is known and nothing is still unknown.
    if (any_up or DEGRADED in states) and not any_unknown:
        assert d.active
    # Up beats degraded; unknown links can only hold the current route in place.
    if any_up:
        assert all(s is UP for s in active_states) or d.active == current
    if any_up and not any_unknown:
        tier = min(links[n].tier for n in group.links if n in links and links[n].state is UP)
        best = [
            n for n in group.links if n in links and links[n].state is UP and links[n].tier == tier
        ]
        if group.multipath:
            assert d.active == tuple(best)
        else:
            assert len(d.active) == 1 and d.active[0] in best
            if len(current) == 1 and current[0] in best:
                assert d.active == current  # no needless change
    # Stable: the answer fed back as the current route is the same answer, unchanged.
    again = decide(group, links, d.active)
    assert again.active == d.active
    assert not again.changed


@given(case=cases())
def test_decide_properties(case: tuple[GroupSpec, dict[str, LinkView], tuple[str, ...]]) -> None:
    check(*case)


@pytest.mark.parametrize("multipath", [False, True])
def test_decide_properties_on_every_small_case(multipath: bool) -> None:
    group = GroupSpec("g", ("a", "b", "c"), multipath=multipath)
    tiers = {"a": 0, "b": 0, "c": 1}
    currents = [()] + [p for k in (1, 2) for p in itertools.permutations(group.links, k)]
    for combo in itertools.product(list(HealthState), repeat=3):
        links = {
            n: LinkView(n, tiers[n], s, mos=3.0 + i / 10)
            for i, (n, s) in enumerate(zip(group.links, combo, strict=True))
        }
        for current in currents:
            check(group, links, current)


def test_at_start_a_better_unknown_link_is_waited_for() -> None:
    # lte answers first; fibre-a (better tier) is still unknown: no route yet.
    d = decide(WAN, views({"fibre-a": UNKNOWN, "fibre-b": DOWN, "lte": UP}), ())
    assert d.active == () and "waiting for fibre-a" in d.reason
    # once fibre-a is known, it is chosen directly: one route install, not two.
    d = decide(WAN, views({"fibre-a": UP, "fibre-b": DOWN, "lte": UP}), ())
    assert d.active == ("fibre-a",) and d.changed


def test_at_start_the_operators_order_breaks_a_tie_within_a_tier() -> None:
    # fibre-b (same tier as fibre-a, later in the list) answered first.
    d = decide(WAN, views({"fibre-a": UNKNOWN, "fibre-b": UP, "lte": UP}), ())
    assert d.active == () and "fibre-a" in d.reason
    d = decide(WAN, views({"fibre-a": UP, "fibre-b": UP, "lte": UP}), ())
    assert d.active == ("fibre-a",)
    # with a route in place, the tie-break does not move it (no needless change)
    d = decide(WAN, views({"fibre-a": UP, "fibre-b": UP, "lte": UP}), ("fibre-b",))
    assert d.active == ("fibre-b",) and not d.changed
