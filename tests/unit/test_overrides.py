"""The operator's overrides, pure: validation, expiry, and what they do to the route policy
and the DID plan (examples, then properties: the assessment the status shows agrees with
what the policy and the plan really do)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core import overrides as ov
from controller.core.didplan import DidEntry, TrunkView, compute_plan, effective_trunk_state
from controller.core.e164 import Number, NumberRange, parse_range
from controller.core.health import HealthState
from controller.core.overrides import MAX_DURATION, Override, Targets, assess, make
from controller.core.policy import GroupSpec, LinkView, decide, decide_all

UP, DOWN, DEG, UNKNOWN = (HealthState.UP, HealthState.DOWN, HealthState.DEGRADED,
                          HealthState.UNKNOWN)
NOW = 1_800_000_000.0
ROME = "+390212345600-+390212345699"
MILAN = "+390298765400-+390298765449"
TARGETS = Targets(
    groups={"internet": ("fibre-a", "fibre-b", "lte"), "voice": ("fibre-b", "lte")},
    links=frozenset({"fibre-a", "fibre-b", "lte"}),
    trunks=frozenset({"a1", "a2", "b1"}),
    ranges={ROME: (("a1", "a2"), "dr-site"), MILAN: (("b1",), None)})
WAN = GroupSpec("internet", ("fibre-a", "fibre-b", "lte"))
TIERS = {"fibre-a": 1, "fibre-b": 2, "lte": 3}


def views(**states: HealthState) -> dict[str, LinkView]:
    return {name.replace("_", "-"): LinkView(name.replace("_", "-"), TIERS[name.replace(
        "_", "-")], state) for name, state in states.items()}


def route(link: str, until: float = NOW + 3600) -> Override:
    return make("route", "internet", link, "carrier works on fibre-a", "alice", until, NOW,
                TARGETS)


# -- validation ------------------------------------------------------------------------------
def test_a_valid_override_is_normalised_and_stamped() -> None:
    got = make("route", "internet", "fibre-b", "  works on\n fibre-a ", " alice ",
               NOW + 60, NOW, TARGETS)
    assert got == Override("route", "internet", "fibre-b", "works on fibre-a", "alice",
                           NOW, NOW + 60)
    assert got.describe() == "route internet -> fibre-b"


@pytest.mark.parametrize(("kind", "target", "value", "error", "words"), [
    ("route", "nope", "fibre-a", KeyError, "no route group named 'nope'"),
    ("route", "voice", "fibre-a", ValueError, "not a link of group voice"),
    ("route", "internet", None, ValueError, "needs a value"),
    ("did", "+390200000000", "a1", KeyError, "no DID range"),
    ("did", ROME, "b1", ValueError, "not a trunk of range"),
    ("did", MILAN, "dr", ValueError, "has no dr_destination"),
    ("maintenance", "link:nope", None, KeyError, "no link named 'nope'"),
    ("maintenance", "trunk:zz", None, KeyError, "no trunk named 'zz'"),
    ("maintenance", "fibre-a", None, KeyError, "link:NAME or trunk:NAME"),
    ("maintenance", "link:lte", "on", ValueError, "takes no value"),
    ("reboot", "internet", None, ValueError, "kind must be one of"),
])
def test_bad_requests_are_refused_with_a_sentence(kind: str, target: str, value: str | None,
                                                  error: type[Exception], words: str) -> None:
    with pytest.raises(error) as raised:
        make(kind, target, value, "why", "bob", NOW + 60, NOW, TARGETS)
    assert words in str(raised.value.args[0])


@pytest.mark.parametrize(("until", "words"), [
    (NOW, "not in the future"), (NOW - 5, "not in the future"),
    (NOW + MAX_DURATION + 1, "at most 168 h"), (float("nan"), "seconds since the epoch"),
])
def test_an_until_in_the_past_or_too_far_is_refused(until: float, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        make("maintenance", "trunk:a1", None, "swap", "bob", until, NOW, TARGETS)


def test_a_reason_is_required_and_kept_to_one_line() -> None:
    with pytest.raises(ValueError, match="reason is required"):
        make("maintenance", "trunk:a1", None, " \n ", "bob", NOW + 60, NOW, TARGETS)
    long = make("maintenance", "trunk:a1", "", "x" * 500, "", NOW + 60, NOW, TARGETS)
    assert len(long.reason) == ov.MAX_REASON and long.by == "unknown" and long.value is None


def test_expiry_splits_the_held_from_the_lapsed() -> None:
    soon, later = route("fibre-b", NOW + 10), route("lte", NOW + 20)
    assert ov.split_lapsed([soon, later], NOW + 10) == ((later,), (soon,))
    assert ov.split_lapsed([soon, later], NOW + 9.9) == ((soon, later), ())


# -- the route policy ------------------------------------------------------------------------
def test_a_forced_group_uses_the_backup_link_while_it_is_up() -> None:
    links = views(fibre_a=UP, fibre_b=UP, lte=UP)
    d = decide(WAN, links, ("fibre-a",), forced="fibre-b")
    assert d.active == ("fibre-b",) and d.changed
    assert d.reason == "fibre-a up but tier 1; forced to fibre-b by the operator (fibre-b up)"
    # A degraded forced link still holds: the operator knows why.
    assert decide(WAN, views(fibre_a=UP, fibre_b=DEG, lte=UP), ("fibre-b",),
                  forced="fibre-b").active == ("fibre-b",)


def test_after_a_restart_the_route_on_the_forced_link_stays_until_its_health_is_known(
) -> None:
    links = views(fibre_a=UP, fibre_b=UNKNOWN, lte=UP)
    d = decide(WAN, links, ("fibre-b",), forced="fibre-b")
    assert d.active == ("fibre-b",) and not d.changed
    assert decide(WAN, links, ("fibre-b",)).active == ("fibre-a",)  # the force is why
    verdict = assess(route("fibre-b"), TARGETS, {n: v.state for n, v in links.items()},
                     decided={"internet": ("fibre-b",)})
    assert verdict.applied


@pytest.mark.parametrize("state", [DOWN, UNKNOWN])
def test_a_forced_link_down_or_not_known_is_not_applied(state: HealthState) -> None:
    links = views(fibre_a=UP, fibre_b=state, lte=UP)
    assert decide(WAN, links, ("fibre-a",), forced="fibre-b") == decide(WAN, links, ("fibre-a",))
    why = assess(route("fibre-b"), TARGETS, {n: v.state for n, v in links.items()})
    assert not why.applied and why.why_not is not None and "fibre-b" in why.why_not


def test_a_link_in_maintenance_is_left_while_another_is_usable() -> None:
    links = views(fibre_a=UP, fibre_b=UP, lte=UP)
    d = decide(WAN, links, ("fibre-a",), maintenance=frozenset({"fibre-a"}))
    assert d.active == ("fibre-b",)
    assert d.reason.startswith("fibre-a in maintenance (operator); fibre-b is the best up link")
    # A force onto a link in maintenance does not hold.
    assert decide(WAN, links, ("fibre-b",), forced="fibre-a",
                  maintenance=frozenset({"fibre-a"})).active == ("fibre-b",)
    # Nothing else usable: the link in maintenance beats no route.
    alone = views(fibre_a=UP, fibre_b=DOWN, lte=DOWN)
    assert decide(WAN, alone, ("fibre-a",), maintenance=frozenset({"fibre-a"})).active == (
        "fibre-a",)
    held = make("maintenance", "link:fibre-a", None, "splice", "bob", NOW + 60, NOW, TARGETS)
    verdict = assess(held, TARGETS, {n: v.state for n, v in alone.items()},
                     frozenset({"fibre-a"}))
    assert not verdict.applied and "no other link of internet" in str(verdict.why_not)


def test_decide_all_takes_the_force_per_group() -> None:
    voice = GroupSpec("voice", ("fibre-b", "lte"))
    got = decide_all([WAN, voice], views(fibre_a=UP, fibre_b=UP, lte=UP),
                     {"internet": ("fibre-a",), "voice": ("fibre-b",)}, {"voice": "lte"})
    assert got["internet"].active == ("fibre-a",) and got["voice"].active == ("lte",)


# -- the DID plan ----------------------------------------------------------------------------
ENTRIES = (DidEntry(parse_range(ROME), ("a1", "a2"), "pbx", "dr-site"),
           DidEntry(parse_range(MILAN), ("b1",), "pbx"))
LINK_STATES = {"fibre-a": UP}


def trunks(**states: HealthState) -> dict[str, TrunkView]:
    return {n: TrunkView(n, s) for n, s in states.items()}


def test_a_range_pinned_to_its_second_trunk_moves_and_keeps_a_fallback() -> None:
    pins = {parse_range(ROME): "a2"}
    plan = compute_plan(ENTRIES, trunks(a1=UP, a2=UP, b1=UP), LINK_STATES, {}, pins=pins)
    rome, milan = plan.decisions
    assert (rome.trunk, rome.fallback, rome.reason) == ("a2", ("a1",),
                                                        "pinned to a2 by the operator")
    assert milan.trunk == "b1" and plan.pins == {parse_range(ROME): None}
    assert plan.numbers_per_trunk == {"a1": 0, "a2": 100, "b1": 50}


def test_a_pin_to_a_trunk_that_is_down_is_not_applied_and_says_why() -> None:
    pins = {parse_range(ROME): "a2"}
    plan = compute_plan(ENTRIES, trunks(a1=UP, a2=DOWN, b1=UP), LINK_STATES, {}, pins=pins)
    rome = plan.decisions[0]
    assert rome.trunk == "a1" and rome.reason.startswith("pin to a2 not applied: a2 down")
    assert plan.pins == {parse_range(ROME): "a2 down"}
    # Maintenance counts as down.
    held = {"a2": TrunkView("a2", UP, maintenance="swap"), "a1": TrunkView("a1", UP)}
    plan = compute_plan(ENTRIES, held, LINK_STATES, {}, pins=pins)
    assert plan.decisions[0].trunk == "a1"
    assert plan.pins[parse_range(ROME)] == "a2 in maintenance: swap"


def test_a_dr_drill_sends_the_range_to_its_dr_destination_while_it_is_not_down() -> None:
    pins = {parse_range(ROME): "dr"}
    plan = compute_plan(ENTRIES, trunks(a1=UP, a2=UP, b1=UP), LINK_STATES,
                        {"pbx": UP, "dr-site": UP}, pins=pins)
    rome, milan = plan.decisions
    assert rome.destination == "dr-site" and rome.on_dr and rome.trunk == "a1"
    assert "DR drill: delivering to DR dr-site" in rome.reason
    assert milan.destination == "pbx" and not milan.on_dr
    plan = compute_plan(ENTRIES, trunks(a1=UP, a2=UP, b1=UP), LINK_STATES,
                        {"pbx": UP, "dr-site": DOWN}, pins=pins)
    assert plan.decisions[0].destination == "pbx"
    assert plan.pins == {parse_range(ROME): "DR destination dr-site is down"}
    assert "pin to DR not applied" in plan.decisions[0].reason


def test_pins_only_name_ranges_of_the_config() -> None:
    ranges = {ROME: parse_range(ROME)}
    pin = make("did", ROME, "a2", "test", "bob", NOW + 60, NOW, TARGETS)
    gone = Override("did", "+390100000000", "a1", "old", "bob", NOW, NOW + 60)
    assert ov.pins([pin, gone], ranges) == {parse_range(ROME): "a2"}
    verdict = assess(gone, TARGETS, {})
    assert not verdict.applied and "not in the config any more" in str(verdict.why_not)


# -- properties ------------------------------------------------------------------------------
NAMES = ("a", "b", "c", "d")
GROUP_TARGETS = Targets(groups={"g": NAMES}, links=frozenset(NAMES))


@st.composite
def route_cases(draw: st.DrawFn) -> tuple[GroupSpec, dict[str, LinkView], tuple[str, ...],
                                          str, frozenset[str]]:
    members = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    group = GroupSpec("g", tuple(members), multipath=draw(st.booleans()))
    links = {n: LinkView(n, draw(st.integers(0, 2)), draw(st.sampled_from(list(HealthState))))
             for n in members}
    current = tuple(draw(st.lists(st.sampled_from(members), max_size=2, unique=True)))
    forced = draw(st.sampled_from(members))
    maintenance = frozenset(draw(st.lists(st.sampled_from(members), max_size=2)))
    return group, links, current, forced, maintenance


@given(case=route_cases(), since=st.floats(0, 1e6), length=st.floats(1, MAX_DURATION),
       later=st.floats(0, 1e6))
def test_an_expired_override_never_changes_a_decision(
        case: tuple[GroupSpec, dict[str, LinkView], tuple[str, ...], str, frozenset[str]],
        since: float, length: float, later: float) -> None:
    group, links, current, forced, maintenance = case
    given_ = [Override("route", "g", forced, "r", "b", since, since + length)] + [
        Override("maintenance", f"link:{n}", None, "r", "b", since, since + length)
        for n in sorted(maintenance)]
    held, lapsed = ov.split_lapsed(given_, since + length + later)
    assert held == () and lapsed == tuple(given_)
    assert decide_all([group], links, {"g": current}, ov.forced_links(held),
                      ov.links_in_maintenance(held)) == decide_all([group], links,
                                                                   {"g": current})


@given(case=route_cases())
def test_a_forced_link_is_chosen_exactly_when_the_status_says_applied(
        case: tuple[GroupSpec, dict[str, LinkView], tuple[str, ...], str, frozenset[str]],
) -> None:
    group, links, current, forced, maintenance = case
    targets = Targets(groups={"g": group.links}, links=frozenset(group.links))
    d = decide(group, links, current, forced, maintenance)
    verdict = assess(Override("route", "g", forced, "r", "b", 0, 1), targets,
                     {n: v.state for n, v in links.items()}, maintenance,
                     decided={"g": d.active})
    state = links[forced].state
    assert verdict.applied == (forced not in maintenance and (
        state in (UP, DEG) or (state is UNKNOWN and current == (forced,))))
    if verdict.applied:
        assert d.active == (forced,)
    if links[forced].state is DOWN:
        # A forced link that is down is never chosen for the force: the rules decide.
        assert d == decide(group, links, current, None, maintenance)
    # A link in maintenance is never chosen while another link of the group is usable.
    for name in maintenance:
        others = [v for n, v in links.items() if n not in maintenance]
        if any(v.state in (UP, DEG) for v in others):
            assert name not in d.active


@st.composite
def plan_cases(draw: st.DrawFn) -> tuple[tuple[DidEntry, ...], dict[str, TrunkView],
                                         dict[str, HealthState], dict[str, HealthState],
                                         dict[NumberRange, str]]:
    names = ["t0", "t1", "t2", "t3"]
    entries = []
    for k in range(draw(st.integers(1, 6))):
        first = 390200000000 + k * 1000
        entries.append(DidEntry(NumberRange(Number(first, 12), Number(first + 99, 12)),
                                tuple(draw(st.lists(st.sampled_from(names), min_size=1,
                                                    max_size=3, unique=True))),
                                "pbx", draw(st.sampled_from([None, "dr-site"]))))
    states = st.sampled_from(list(HealthState))
    views = {n: TrunkView(n, draw(states), links=("l1",) if draw(st.booleans()) else (),
                          maintenance=draw(st.sampled_from([None, None, "swap"])),
                          edge_tripped=draw(st.booleans()))
             for n in names}
    links = {"l1": draw(states)}
    dests = {"pbx": draw(states), "dr-site": draw(states)}
    pins = {}
    for e in entries:
        choice = draw(st.sampled_from([None, "dr", *e.trunks]))
        if choice is not None and (choice != "dr" or e.dr_destination is not None):
            pins[e.numbers] = choice
    return tuple(entries), views, links, dests, pins


@given(case=plan_cases())
def test_a_pin_holds_exactly_when_the_status_says_applied(
        case: tuple[tuple[DidEntry, ...], dict[str, TrunkView], dict[str, HealthState],
                    dict[str, HealthState], dict[NumberRange, str]]) -> None:
    entries, views, links, dests, pins = case
    plan = compute_plan(entries, views, links, dests, pins=pins)
    free = compute_plan(entries, views, links, dests)
    targets = Targets(trunks=frozenset(views), ranges={
        str(e.numbers): (e.trunks, e.dr_destination) for e in entries})
    effective: Mapping[str, tuple[HealthState, str]] = {
        n: effective_trunk_state(v, links) for n, v in views.items()}
    for mine, theirs in zip(plan.decisions, free.decisions, strict=True):
        pin = pins.get(mine.numbers)
        if pin is None:
            assert mine.target() == theirs.target() and mine.numbers not in plan.pins
            continue
        verdict = assess(Override("did", str(mine.numbers), pin, "r", "b", 0, 1), targets,
                         links, trunks=effective, destinations=dests)
        assert verdict.applied == (plan.pins[mine.numbers] is None)
        if not verdict.applied:  # not applied: exactly what the rules decide without it
            assert mine.target() == theirs.target()
        elif pin == "dr":
            assert mine.on_dr and mine.trunk == theirs.trunk
        else:
            assert mine.trunk == pin and effective[pin][0] is not DOWN
            assert pin not in mine.fallback
