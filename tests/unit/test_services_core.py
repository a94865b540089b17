"""controller.core.services: service checks through the shared health machine, and the
rule that a needed service takes its destinations down with it (time passed in, no I/O)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.didplan import DidEntry, compute_plan
from controller.core.e164 import parse_range
from controller.core.health import HealthParams, HealthState
from controller.core.services import (
    CertStatus,
    DestinationVerdict,
    ServiceCheck,
    ServiceView,
    ServiceWatch,
    cert_status,
    effective_destinations,
)

UP, DOWN = HealthState.UP, HealthState.DOWN
UNKNOWN, DEGRADED = HealthState.UNKNOWN, HealthState.DEGRADED
PARAMS = HealthParams(interval=5.0, window=100.0, down_after=3, rise=2, hold_down=60.0,
                      degraded_latency=2.0, degraded_jitter=2.0, degraded_mos=1.0)
HTTP_500 = "HTTP 500 Internal Server Error"


def feed(watch: ServiceWatch, start: float, n: int, ok: bool, detail: str = "HTTP 200",
         step: float = 5.0) -> float:
    """``n`` checks from ``start`` every ``step`` s; returns the time of the next one."""
    t = start
    for _ in range(n):
        watch.observe(ServiceCheck(t, ok, 0.05 if ok else None, detail))
        t += step
    return t


def test_a_service_goes_down_after_down_after_failed_checks_with_the_checks_words() -> None:
    crm = ServiceWatch("crm", PARAMS, needed_by=("pbx",))
    t = feed(crm, 0.0, 2, True)
    assert crm.state is UP
    t = feed(crm, t, 2, False, HTTP_500)
    assert crm.state is UP  # two failures: not yet
    feed(crm, t, 1, False, HTTP_500)
    assert crm.state is DOWN
    view = crm.view()
    assert view.failure == HTTP_500 and view.needed_by == ("pbx",)
    assert "3 rounds lost in a row" in view.reason


def test_a_service_comes_back_only_after_its_hold_down() -> None:
    crm = ServiceWatch("crm", PARAMS)
    t = feed(crm, 0.0, 2, True)
    t = feed(crm, t, 3, False, HTTP_500)
    assert crm.state is DOWN
    back_at = t
    t = feed(crm, t, 12, True)  # 55 s of good checks: short of the 60 s hold-down
    assert crm.state is DOWN
    feed(crm, t, 1, True)
    assert crm.state is UP
    assert crm.health.since == back_at + 60.0


def test_stalled_checks_make_an_up_service_unknown_never_down() -> None:
    crm = ServiceWatch("crm", PARAMS)
    t = feed(crm, 0.0, 3, True)
    assert crm.tick(t + 1000.0) is not None
    assert crm.state is UNKNOWN


def test_the_certificate_is_graded_never_judged_as_health() -> None:
    crm = ServiceWatch("crm", PARAMS, cert_warn_days=21)
    crm.observe(ServiceCheck(0.0, True, 0.05, cert_days_left=3.0, cert_not_after=1e9))
    crm.observe(ServiceCheck(5.0, True, 0.05, cert_days_left=2.9, cert_not_after=1e9))
    assert crm.state is UP
    assert crm.cert() is CertStatus.EXPIRING and crm.cert_not_after == 1e9
    assert cert_status(None, 21) is None
    assert cert_status(-0.5, 21) is CertStatus.EXPIRED
    assert cert_status(0.0, 21) is CertStatus.EXPIRED
    assert cert_status(20.9, 21) is CertStatus.EXPIRING
    assert cert_status(21.0, 21) is CertStatus.OK


def test_a_needed_service_down_takes_its_destination_down_with_the_reason() -> None:
    crm = ServiceView("crm", DOWN, "crm: 3 rounds lost in a row (15 s)", HTTP_500, ("pbx",))
    out = effective_destinations({"pbx": (UP, "pbx: up"), "dr": (UP, "dr: up")}, [crm])
    pbx = out["pbx"]
    assert pbx.state is DOWN and pbx.own_state is UP
    assert pbx.reason == f"pbx down: needs crm, which is down: {HTTP_500}"
    assert pbx.services_down == ("crm",) and pbx.cause == "service"
    assert out["dr"] == DestinationVerdict("dr", UP, "dr: up", UP)
    assert out["dr"].cause is None


def test_a_destination_down_on_its_own_says_both_and_blames_itself() -> None:
    crm = ServiceView("crm", DOWN, "crm: 3 rounds lost in a row (15 s)", "", ("pbx",))
    out = effective_destinations({"pbx": (DOWN, "pbx: OPTIONS timeout")}, [crm])
    assert out["pbx"].reason == ("pbx down: OPTIONS timeout; also needs crm, which is down: "
                                 "3 rounds lost in a row (15 s)")
    assert out["pbx"].cause == "destination"


def test_unknown_and_degraded_services_change_nothing() -> None:
    for state in (UNKNOWN, DEGRADED, UP):
        svc = ServiceView("crm", state, "", HTTP_500, ("pbx",))
        out = effective_destinations({"pbx": (UP, "pbx: up")}, [svc])
        assert out["pbx"].state is UP, state


def test_several_needed_services_are_all_named_in_config_order() -> None:
    views = [ServiceView("crm", DOWN, "", HTTP_500, ("pbx",)),
             ServiceView("ldap", UP, "", "", ("pbx",)),
             ServiceView("wfm", DOWN, "", "timeout", ("pbx", "dr"))]
    out = effective_destinations({"pbx": (UP, ""), "dr": (UP, "")}, views)
    assert out["pbx"].services_down == ("crm", "wfm")
    assert "needs crm" in out["pbx"].reason and "needs wfm, which is down: timeout" in \
        out["pbx"].reason
    assert out["dr"].services_down == ("wfm",)


def test_a_destination_without_health_taken_down_by_a_service_is_reported() -> None:
    out = effective_destinations({}, [ServiceView("crm", DOWN, "", HTTP_500, ("pbx",))])
    assert out["pbx"].state is DOWN and out["pbx"].own_state is UNKNOWN


def test_the_crm_down_sends_the_dids_to_dr_and_back_after_its_hold_down() -> None:
    """The whole chain, checks to DID plan: the CRM failing moves the range to DR."""
    entries = [DidEntry(parse_range("+390212345600-+390212345699"), ("a1",), "pbx", "dr")]
    crm = ServiceWatch("crm", PARAMS, needed_by=("pbx",))

    def plan_destination() -> tuple[str, bool]:
        dests = effective_destinations({"pbx": (UP, ""), "dr": (UP, "")}, [crm.view()])
        plan = compute_plan(entries, {}, {}, {n: v.state for n, v in dests.items()})
        d = plan.decisions[0]
        return d.destination, d.on_dr

    t = feed(crm, 0.0, 2, True)
    assert plan_destination() == ("pbx", False)
    t = feed(crm, t, 3, False, HTTP_500)
    assert plan_destination() == ("dr", True)
    t = feed(crm, t, 12, True)
    assert plan_destination() == ("dr", True)  # the hold-down: not yet
    feed(crm, t, 1, True)
    assert plan_destination() == ("pbx", False)


# -- properties ----------------------------------------------------------------------------

_STATES = st.sampled_from(list(HealthState))
_DESTS = ["pbx", "dr", "sw"]


@st.composite
def _inputs(draw: st.DrawFn) -> tuple[dict[str, tuple[HealthState, str]], list[ServiceView]]:
    dests = {n: (draw(_STATES), f"{n}: own") for n in draw(st.sets(st.sampled_from(_DESTS)))}
    views = [ServiceView(f"s{i}", draw(_STATES), "", draw(st.text(max_size=5)),
                         tuple(draw(st.lists(st.sampled_from(_DESTS), max_size=3))))
             for i in range(draw(st.integers(0, 4)))]
    return dests, views


@given(_inputs())
def test_only_a_down_needed_service_ever_changes_a_destination(
        inputs: tuple[dict[str, tuple[HealthState, str]], list[ServiceView]]) -> None:
    dests, views = inputs
    out = effective_destinations(dests, views)
    for name, (state, reason) in dests.items():
        needed = [v for v in views if name in v.needed_by]
        down = [v for v in needed if v.state is DOWN]
        verdict = out[name]
        if not down:
            # Needs no service, or every needed one is up (or unknown, or degraded).
            assert (verdict.state, verdict.reason) == (state, reason)
            assert verdict.services_down == ()
        else:
            assert verdict.state is DOWN
            assert verdict.services_down == tuple(dict.fromkeys(v.name for v in down))
            assert all(f"needs {v.name}, which is down" in verdict.reason for v in down)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=80))
def test_a_destination_returns_only_after_a_hold_down_of_good_checks(
        oks: list[bool]) -> None:
    crm = ServiceWatch("crm", PARAMS, needed_by=("pbx",))
    was_down = False
    for k, ok in enumerate(oks):
        t = 5.0 * k
        crm.observe(ServiceCheck(t, ok, 0.05 if ok else None, "" if ok else HTTP_500))
        verdict = effective_destinations({"pbx": (UP, "")}, [crm.view()])["pbx"]
        down = verdict.state is DOWN
        if not ok:
            # A failed check never brings it back.
            assert down or not was_down
        if was_down and not down:
            window = oks[max(0, k - 12):k + 1]  # 60 s of checks at 5 s
            assert len(window) == 13 and all(window)
        if down and not was_down:
            # Down on evidence: down_after failed checks in a row, or most of the window's.
            window = oks[max(0, k - 19):k + 1]
            assert oks[max(0, k - 2):k + 1] == [False] * 3 or (
                len(window) >= 10 and window.count(False) > len(window) / 2)
        was_down = down
