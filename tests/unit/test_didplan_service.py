"""Tests of didplan's rule 3 when a destination is down only because a service it needs is
(``service_down``, fed from controller.core.services): the ranges say so, with dr_cause
``service``, and the other causes keep their words."""

from __future__ import annotations

from controller.core.didplan import (
    DR_DESTINATION_DOWN,
    DR_PIN,
    DR_SERVICE,
    PIN_DR,
    DidEntry,
    DidPlan,
    TrunkView,
    compute_plan,
)
from controller.core.e164 import parse_range
from controller.core.health import HealthState
from controller.core.services import ServiceView, effective_destinations

UP, DOWN = HealthState.UP, HealthState.DOWN
ROME = parse_range("+390212345600-+390212345699")
SINGLE = parse_range("+390612340000")
ENTRIES = (
    DidEntry(ROME, ("a1",), "pbx", "dr"),
    DidEntry(SINGLE, ("a1",), "pbx", None),
)
TRUNKS = {"a1": TrunkView("a1", UP)}
NEEDS = "pbx down: needs crm, which is down: HTTP 500 Internal Server Error"


def plan(dests: dict[str, HealthState], service_down: dict[str, str] | None = None,
         pin: str | None = None, site_dr: str | None = None) -> DidPlan:
    return compute_plan(ENTRIES, TRUNKS, {}, dests, service_down=service_down,
                        pins={} if pin is None else {ROME: pin}, site_dr=site_dr)


def test_a_destination_down_for_its_service_goes_to_dr_saying_which_and_why() -> None:
    rome, single = plan({"pbx": DOWN, "dr": UP}, {"pbx": NEEDS}).decisions
    assert (rome.destination, rome.on_dr, rome.dr_cause) == ("dr", True, DR_SERVICE)
    assert rome.reason.endswith(f"{NEEDS}; delivering to DR dr"), rome.reason
    assert (single.destination, single.on_dr, single.dr_cause) == ("pbx", False, None)
    assert single.reason.endswith(f"{NEEDS}; no DR destination"), single.reason


def test_the_dr_destination_down_too_keeps_the_primary_and_says_both() -> None:
    rome = plan({"pbx": DOWN, "dr": DOWN}, {"pbx": NEEDS}).decisions[0]
    assert (rome.destination, rome.on_dr) == ("pbx", False)
    assert rome.reason.endswith(f"{NEEDS}; DR dr down too"), rome.reason


def test_without_a_service_reason_the_old_cause_and_words_stay() -> None:
    rome = plan({"pbx": DOWN, "dr": UP}).decisions[0]
    assert rome.dr_cause == DR_DESTINATION_DOWN
    assert rome.reason.endswith("pbx down; delivering to DR dr")
    # A service reason for a destination that is not down changes nothing.
    rome = plan({"pbx": UP, "dr": UP}, {"pbx": NEEDS}).decisions[0]
    assert (rome.destination, rome.dr_cause) == ("pbx", None) and "crm" not in rome.reason


def test_a_pin_to_dr_and_the_site_in_dr_win_over_the_service_cause() -> None:
    rome = plan({"pbx": DOWN, "dr": UP}, {"pbx": NEEDS}, pin=PIN_DR).decisions[0]
    assert (rome.destination, rome.dr_cause) == ("dr", DR_PIN)
    rome = plan({"pbx": DOWN, "dr": UP}, {"pbx": NEEDS}, site_dr="power").decisions[0]
    assert (rome.destination, rome.dr_cause) == ("dr", "power")


def test_the_core_verdict_feeds_the_plan() -> None:
    """effective_destinations -> compute_plan, as Telephony.decide chains them."""
    crm = ServiceView("crm", DOWN, "crm: 3 failed checks", "HTTP 500 Internal Server Error",
                      ("pbx",))
    verdicts = effective_destinations({"pbx": (UP, ""), "dr": (UP, "")}, [crm])
    rome = plan({n: v.state for n, v in verdicts.items()},
                {n: v.reason for n, v in verdicts.items() if v.cause == "service"}).decisions[0]
    assert (rome.destination, rome.dr_cause) == ("dr", DR_SERVICE)
    assert NEEDS in rome.reason
