"""Tests of didplan's rule 5: the whole site in DR (power), and why each range is on DR."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.didplan import (
    DR_DESTINATION_DOWN,
    DR_PIN,
    PIN_DR,
    DidEntry,
    DidPlan,
    TrunkView,
    compute_plan,
    diff,
)
from controller.core.e164 import parse_range
from controller.core.health import HealthState

UP, DOWN, UNK = HealthState.UP, HealthState.DOWN, HealthState.UNKNOWN

ROME = parse_range("+390212345600-+390212345699")
MILAN = parse_range("+390287654300-+390287654349")
SINGLE = parse_range("+390612340000")
ENTRIES = (
    DidEntry(ROME, ("a-sbc1", "a-sbc2"), "pbx-rome", "dr-milan"),
    DidEntry(MILAN, ("b-sbc1",), "pbx-rome", "dr-cloud"),
    DidEntry(SINGLE, ("a-sbc2",), "pbx-rome", None),
)
TRUNKS = {n: TrunkView(n, UP) for n in ("a-sbc1", "a-sbc2", "b-sbc1")}


def plan(dests: dict[str, HealthState] | None = None, site_dr: str | None = None,
         pins: dict[str, str] | None = None) -> DidPlan:
    by_text = {str(e.numbers): e.numbers for e in ENTRIES}
    return compute_plan(ENTRIES, TRUNKS, {}, dests or {},
                        pins={by_text[k]: v for k, v in (pins or {}).items()},
                        site_dr=site_dr)


def test_without_site_dr_the_plan_is_as_before() -> None:
    assert [(d.destination, d.on_dr, d.dr_cause) for d in plan().decisions] == [
        ("pbx-rome", False, None)] * 3


def test_site_dr_sends_every_range_with_a_dr_destination_to_it() -> None:
    p = plan({"pbx-rome": UP}, site_dr="power")
    assert [(d.destination, d.on_dr, d.dr_cause) for d in p.decisions] == [
        ("dr-milan", True, "power"), ("dr-cloud", True, "power"), ("pbx-rome", False, None)]
    assert p.decisions[0].reason == "a-sbc1 up; site in DR (power); delivering to DR dr-milan"
    assert p.decisions[2].reason == (
        "a-sbc2 up; site in DR (power) but the range has no DR destination")


def test_site_dr_moves_destinations_never_trunks() -> None:
    before, after = plan(), plan(site_dr="power")
    assert [d.trunk for d in before.decisions] == [d.trunk for d in after.decisions]
    assert [d.fallback for d in before.decisions] == [d.fallback for d in after.decisions]


def test_a_dr_destination_that_is_down_keeps_the_primary_and_says_so() -> None:
    p = plan({"dr-milan": DOWN}, site_dr="power")
    rome, milan, _ = p.decisions
    assert (rome.destination, rome.on_dr, rome.dr_cause) == ("pbx-rome", False, None)
    assert rome.reason.endswith("site in DR (power) but DR dr-milan is down")
    assert (milan.destination, milan.dr_cause) == ("dr-cloud", "power")


def test_primary_and_dr_both_down_stays_on_the_primary() -> None:
    rome = plan({"pbx-rome": DOWN, "dr-milan": DOWN}, site_dr="power").decisions[0]
    assert (rome.destination, rome.on_dr) == ("pbx-rome", False)
    assert rome.reason.endswith("pbx-rome and DR dr-milan both down")


def test_dr_because_the_primary_is_down_says_destination_down() -> None:
    rome = plan({"pbx-rome": DOWN}).decisions[0]
    assert (rome.destination, rome.dr_cause) == ("dr-milan", DR_DESTINATION_DOWN)


def test_the_site_cause_wins_over_a_down_primary() -> None:
    rome = plan({"pbx-rome": DOWN}, site_dr="power").decisions[0]
    assert (rome.destination, rome.dr_cause) == ("dr-milan", "power")


def test_a_dr_drill_says_pin_and_a_site_dr_keeps_its_cause_under_a_pin() -> None:
    drill = plan(pins={str(ROME): PIN_DR}).decisions[0]
    assert (drill.destination, drill.dr_cause) == ("dr-milan", DR_PIN)
    both = plan(site_dr="power", pins={str(ROME): PIN_DR})
    rome = both.decisions[0]
    assert (rome.destination, rome.dr_cause) == ("dr-milan", "power")
    assert rome.reason.endswith("(also pinned to DR by the operator)")
    assert both.pins[ROME] is None  # the pin holds


def test_leaving_site_dr_is_a_diff_back_to_the_primary() -> None:
    on, off = plan(site_dr="power"), plan()
    assert [d.numbers for d in diff(on, off).changed] == [ROME, MILAN]
    assert diff(on, plan(site_dr="service")).changed == ()  # a new cause alone: no push


states = st.sampled_from([UP, DOWN, UNK])


@given(st.dictionaries(st.sampled_from(["pbx-rome", "dr-milan", "dr-cloud"]), states),
       st.sampled_from(["power", "service"]))
@settings(max_examples=100, deadline=None)
def test_site_dr_reaches_every_dr_destination_that_is_not_down(
        dests: dict[str, HealthState], cause: str) -> None:
    for entry, d in zip(ENTRIES, plan(dests, site_dr=cause).decisions, strict=True):
        dr = entry.dr_destination
        if dr is not None and dests.get(dr, UNK) is not DOWN:
            assert (d.destination, d.on_dr, d.dr_cause) == (dr, True, cause)
        else:
            assert d.destination == entry.destination and d.dr_cause is None
        assert d.on_dr == (d.dr_cause is not None)


def test_a_power_decision_feeds_the_plan_and_its_end_brings_the_numbers_back() -> None:
    from controller.core.power import PolicyParams, PowerPolicy, PowerState, SitePower

    policy = PowerPolicy(PolicyParams(hold_down=60.0))
    low = policy.step(0.0, SitePower(PowerState.BATTERY_LOW, "ups-a: battery low (LB OB)"))
    on = plan(site_dr=low.site_dr)
    assert [d.dr_cause for d in on.decisions] == ["power", "power", None]
    back = policy.step(60.0, SitePower(PowerState.MAINS, "ups-a: on mains (OL)"))
    assert back.dr and plan(site_dr=back.site_dr).decisions[0].on_dr  # still holding
    done = policy.step(120.0, SitePower(PowerState.MAINS, "ups-a: on mains (OL)"))
    assert done.site_dr is None
    assert [d.destination for d in plan(site_dr=done.site_dr).decisions] == ["pbx-rome"] * 3
