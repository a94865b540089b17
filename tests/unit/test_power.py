"""Tests of the pure power core: one UPS's state, the site's, and the battery-event policy."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.power import (
    Phase,
    PolicyParams,
    Power,
    PowerDecision,
    PowerPolicy,
    PowerState,
    SitePower,
    Ups,
    UpsParams,
    judge,
    site_power,
)
from probes.sample import ErrorKind
from probes.ups import UpsReading

MAINS, OB, LOW, UNK = (PowerState.MAINS, PowerState.ON_BATTERY, PowerState.BATTERY_LOW,
                       PowerState.UNKNOWN)


def reading(status: str, runtime: float | None = 1800.0, charge: float | None = 1.0,
            voltage: float | None = 230.0, load: float | None = 0.35) -> UpsReading:
    return UpsReading(ok=True, flags=frozenset(status.split()), charge=charge,
                      runtime=runtime, input_voltage=voltage, load=load)


FAILED = UpsReading.failure(ErrorKind.TIMEOUT, "no answer in 2 s")


# ------------------------------------------------------------------------------ one UPS

@pytest.mark.parametrize(("status", "state"), [
    ("OL", MAINS), ("OL CHRG", MAINS), ("OL BYPASS", MAINS), ("OL LB CHRG", MAINS),
    ("OB DISCHRG", OB), ("OL OB", OB), ("OB LB", LOW), ("OL FSD", LOW), ("FSD", LOW),
    ("", UNK), ("OFF", UNK), ("LB", UNK), ("CHRG RB", UNK),
])
def test_status_words_decide_the_state(status: str, state: PowerState) -> None:
    assert judge(reading(status))[0] is state


def test_a_ups_is_unknown_until_its_first_reading() -> None:
    ups = Ups("ups-a", UpsParams())
    assert ups.state is UNK and ups.reason == "ups-a: no reading yet"
    assert ups.tick(100.0) is None and ups.state is UNK
    change = ups.observe(101.0, reading("OB DISCHRG", runtime=750))
    assert change is not None and (change.old, change.new) == (UNK, OB)
    assert change.reason == "ups-a: on battery (DISCHRG OB), runtime 12m30s, charge 100%"


def test_failed_reads_are_tolerated_up_to_fail_after() -> None:
    ups = Ups("ups-a", UpsParams(fail_after=3))
    ups.observe(0.0, reading("OL"))
    assert ups.observe(2.0, FAILED) is None and ups.state is MAINS
    assert ups.observe(4.0, FAILED) is None and ups.state is MAINS
    change = ups.observe(6.0, FAILED)
    assert change is not None and change.new is UNK
    assert "3 reads failed in a row (timeout: no answer in 2 s)" in change.reason
    assert ups.observe(8.0, reading("OL", voltage=229.0)) is not None and ups.state is MAINS


def test_a_good_read_resets_the_failed_run() -> None:
    ups = Ups("ups-a", UpsParams(fail_after=2))
    ups.observe(0.0, reading("OL"))
    for t in range(1, 20):
        ups.observe(2.0 * t, FAILED if t % 2 else reading("OL", load=t / 100))
        assert ups.state is MAINS


def test_readings_identical_for_stale_after_make_the_ups_unknown() -> None:
    ups = Ups("ups-a", UpsParams(stale_after=60.0))
    for t in range(0, 62, 2):
        ups.observe(float(t), reading("OL"))
    assert ups.state is MAINS  # 60 s unchanged: not yet over the limit
    ups.observe(62.0, reading("OL"))
    assert ups.state is UNK and "readings unchanged for 1m02s (stale after 1m)" in ups.reason
    ups.observe(64.0, reading("OL", voltage=231.0))  # it moved: the driver is alive
    assert ups.state is MAINS


def test_any_field_that_moves_keeps_a_ups_fresh() -> None:
    ups = Ups("ups-a", UpsParams(stale_after=10.0))
    for t in range(0, 200, 2):
        ups.observe(float(t), reading("OL", load=0.30 + (t % 4) / 100))
    assert ups.state is MAINS


def test_stale_after_none_never_stales_but_a_stalled_prober_still_does() -> None:
    ups = Ups("ups-a", UpsParams(interval=2.0, timeout=2.0, stale_after=None, fail_after=3))
    for t in range(0, 600, 2):
        ups.observe(float(t), reading("OL"))
    assert ups.state is MAINS
    assert ups.tick(598.0 + 11.0) is None  # 3 x (2 s + 2 s) = 12 s of silence allowed
    change = ups.tick(598.0 + 12.0)
    assert change is not None and change.new is UNK and "no read came back" in change.reason


def test_silence_makes_a_ups_unknown_by_staleness_via_tick() -> None:
    ups = Ups("ups-a", UpsParams(interval=2.0, timeout=1.0, stale_after=5.0, fail_after=5))
    ups.observe(0.0, reading("OB"))
    assert ups.tick(5.0) is None
    change = ups.tick(5.5)
    assert change is not None and change.new is UNK


def test_bad_ups_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="fail_after must be >= 1"):
        UpsParams(fail_after=0)
    with pytest.raises(ValueError, match="stale_after must be > 0"):
        UpsParams(stale_after=0.0)


# ------------------------------------------------------------------------------ the site

def ups_in(name: str, status: str | None, runtime: float | None = 1800.0) -> Ups:
    ups = Ups(name, UpsParams())
    if status is not None:
        ups.observe(0.0, reading(status, runtime=runtime))
    return ups


def test_the_worst_known_ups_decides_the_site() -> None:
    assert site_power([ups_in("a", "OL"), ups_in("b", "OL")]).state is MAINS
    assert site_power([ups_in("a", "OL"), ups_in("b", "OB")]).state is OB
    assert site_power([ups_in("a", "OB LB"), ups_in("b", "OB")]).state is LOW
    assert site_power([ups_in("a", "OL"), ups_in("b", "FSD")]).state is LOW


def test_unknown_upses_do_not_vote_and_none_known_is_unknown() -> None:
    site = site_power([ups_in("a", "OL"), ups_in("b", None)])
    assert site.state is MAINS and "(b unknown, not counted)" in site.reason
    assert site_power([ups_in("a", None), ups_in("b", "")]).state is UNK
    assert site_power([]).state is UNK


def test_the_site_runtime_is_the_least_among_upses_on_battery() -> None:
    site = site_power([ups_in("a", "OB", runtime=900), ups_in("b", "OB", runtime=400),
                       ups_in("c", "OL", runtime=60), ups_in("d", "OB", runtime=None)])
    assert (site.runtime, site.runtime_ups) == (400, "b")
    assert site_power([ups_in("a", "OL", runtime=60)]).runtime is None


# ------------------------------------------------------------------------------ the policy

def site(state: PowerState, runtime: float | None = None, why: str = "ups-a: test") -> SitePower:
    return SitePower(state, why, runtime, "ups-a" if runtime is not None else None)


def run(policy: PowerPolicy, steps: list[tuple[float, SitePower]]) -> list[PowerDecision]:
    return [policy.step(t, s) for t, s in steps]


def test_on_battery_past_the_grace_time_pages_and_mains_back_holds_it() -> None:
    policy = PowerPolicy(PolicyParams(grace=30.0, hold_down=300.0))
    d = policy.step(0.0, site(OB))
    assert (d.phase, d.outage, d.dr, d.changed) == (Phase.BATTERY, False, False, True)
    assert not policy.step(29.0, site(OB)).outage
    d = policy.step(30.0, site(OB))
    assert d.outage and d.changed and not d.dr
    assert d.reason.startswith("on battery for 30 s (grace 30 s): the generator did not")
    d = policy.step(40.0, site(MAINS))
    assert d.outage and d.changed and d.mains_since == 40.0
    assert policy.step(339.0, site(MAINS)).outage
    d = policy.step(340.0, site(MAINS))
    assert (d.phase, d.changed) == (Phase.NORMAL, True)
    assert d.reason == "mains stable for 5m: outage over"


def test_a_blip_within_the_grace_time_ends_quietly() -> None:
    policy = PowerPolicy(PolicyParams(grace=30.0))
    decisions = run(policy, [(0.0, site(OB)), (10.0, site(OB)), (20.0, site(MAINS))])
    assert not any(d.outage or d.dr for d in decisions)
    assert decisions[-1].phase is Phase.NORMAL and decisions[-1].changed


@pytest.mark.parametrize(("s", "params", "start"), [
    (site(LOW), PolicyParams(), "desks dark: ups-a: test"),
    (site(OB, runtime=299.0), PolicyParams(), "desks dark: ups-a runtime 4m59s below the 5m"),
    (site(OB), PolicyParams(dr_after=0.0), "desks dark: on battery for 0.0 s (dr_after 0.0"),
])
def test_each_sign_of_dark_desks_moves_to_dr(s: SitePower, params: PolicyParams,
                                              start: str) -> None:
    d = PowerPolicy(params).step(0.0, s)
    assert d.dr and d.outage and d.changed and d.reason.startswith(start)


def test_dr_after_counts_the_current_stint_on_battery() -> None:
    policy = PowerPolicy(PolicyParams(grace=30.0, dr_after=120.0))
    assert not policy.step(0.0, site(OB)).dr
    assert not policy.step(119.0, site(OB)).dr
    assert policy.step(120.0, site(OB)).dr


def test_dr_holds_through_flapping_mains_until_it_is_stable() -> None:
    policy = PowerPolicy(PolicyParams(hold_down=60.0))
    policy.step(0.0, site(LOW))
    for t, s in [(10.0, MAINS), (50.0, OB), (55.0, MAINS), (100.0, UNK), (105.0, MAINS)]:
        assert policy.step(t, site(s)).dr
    assert policy.step(164.0, site(MAINS)).dr
    d = policy.step(165.0, site(MAINS))
    assert not d.dr and d.reason == "mains stable for 1m: leaving DR"


def test_unknown_during_an_event_keeps_its_clocks_running() -> None:
    policy = PowerPolicy(PolicyParams(grace=30.0, dr_after=100.0))
    policy.step(0.0, site(OB))
    assert policy.step(31.0, site(UNK)).outage
    d = policy.step(101.0, site(UNK))
    assert d.dr and "on battery for 1m41s (dr_after 1m40s)" in d.reason


def test_unknown_without_an_event_starts_nothing() -> None:
    policy = PowerPolicy(PolicyParams(dr_after=0.0, grace=0.0))
    d = policy.step(0.0, site(UNK))
    assert (d.phase, d.outage, d.dr, d.changed) == (Phase.NORMAL, False, False, False)


def test_the_command_runs_on_battery_low_once_per_event() -> None:
    policy = PowerPolicy(PolicyParams(hold_down=10.0, command=True))
    steps = [(0.0, OB), (5.0, LOW), (6.0, LOW), (7.0, MAINS), (8.0, LOW), (30.0, MAINS),
             (40.0, MAINS), (41.0, LOW)]
    ran = [t for t, s in steps if policy.step(t, site(s)).run_command]
    assert ran == [5.0, 41.0]


def test_no_command_configured_never_asks_to_run_one() -> None:
    policy = PowerPolicy(PolicyParams(command=False))
    assert not policy.step(0.0, site(LOW)).run_command


def test_power_wires_upses_to_the_policy() -> None:
    power = Power({"ups-a": UpsParams(), "ups-b": UpsParams()}, PolicyParams(grace=5.0))
    power.observe("ups-a", 0.0, reading("OL"))
    power.observe("ups-b", 0.0, reading("OB", runtime=1000))
    changes, d = power.decide(0.0)
    assert changes == [] and d.state is OB and d.phase is Phase.BATTERY
    power.observe("ups-b", 2.0, reading("OB LB", runtime=200))
    _, d = power.decide(2.0)
    assert d.dr and "ups-b: battery low (LB OB), runtime 3m20s" in d.reason
    assert d.site_dr == "power"
    power.observe("ups-b", 4.0, reading("OL", runtime=200))
    _, d = power.decide(4.0)
    assert d.dr and d.site_dr == "power"  # holding for the hold-down


def test_dr_due_tells_a_runtime_crossing_the_margin_and_changes_nothing() -> None:
    """The runtime falling below the margin leaves the UPS on_battery (no UpsChange to
    wake the daemon): dr_due is what tells the runtime to decide at once."""
    power = Power({"ups-a": UpsParams(stale_after=None)}, PolicyParams(runtime_margin=60.0))
    power.observe("ups-a", 0.0, reading("OL"))
    power.decide(0.0)
    assert not power.dr_due(0.0)
    power.observe("ups-a", 1.0, reading("OB DISCHRG", runtime=1200))
    assert not power.dr_due(1.0)
    power.decide(1.0)
    assert power.observe("ups-a", 2.0, reading("OB DISCHRG", runtime=30)) is None
    assert power.dr_due(2.0) and power.dr_due(2.0)  # asking twice moves nothing
    assert power.policy.phase is Phase.BATTERY
    _, d = power.decide(2.0)
    assert d.dr and not power.dr_due(2.5)


def test_site_dr_is_none_outside_dr() -> None:
    d = PowerPolicy(PolicyParams(grace=0.0)).step(0.0, site(OB))
    assert d.outage and not d.dr and d.site_dr is None


# ------------------------------------------------------------------------------ properties

@dataclass
class Sim:
    """A UPS read every ``interval`` from t=0, with the readings the test scripts."""

    power: Power
    decisions: list[tuple[float, PowerState, PowerDecision]]


def simulate(statuses: list[tuple[float, UpsReading]], policy: PolicyParams,
             ups: UpsParams | None = None) -> list[tuple[float, PowerState, PowerDecision]]:
    power = Power({"ups": ups or UpsParams(stale_after=None)}, policy)
    out = []
    for t, r in statuses:
        power.observe("ups", t, r)
        _, d = power.decide(t)
        out.append((t, power.upses["ups"].state, d))
    return out


durations = st.floats(min_value=0.0, max_value=600.0, allow_nan=False)
policies = st.builds(PolicyParams, grace=durations,
                     dr_after=st.none() | durations, runtime_margin=durations,
                     hold_down=durations, command=st.booleans())
statuses = st.sampled_from(["OL", "OL CHRG", "OB", "OB DISCHRG", "OB LB", "FSD", "OFF", ""])
readings = st.builds(
    lambda status, runtime, ok: reading(status, runtime=runtime) if ok else FAILED,
    statuses, st.none() | st.floats(0.0, 7200.0), st.booleans() | st.just(True))


@given(policies, st.lists(st.tuples(st.floats(0.1, 10.0), readings), max_size=60))
@settings(max_examples=300, deadline=None)
def test_dr_due_is_always_followed_by_dr_at_the_same_moment(
        policy: PolicyParams, script: list[tuple[float, UpsReading]]) -> None:
    """Reads at most 10 s apart (a UPS never falls silent): whenever dr_due says so after
    a reading, deciding at that moment enters DR; it never says so in DR."""
    power = Power({"ups": UpsParams(stale_after=None)}, policy)
    t = 0.0
    for gap, r in script:
        t += gap
        power.observe("ups", t, r)
        due, was_dr = power.dr_due(t), power.policy.phase is Phase.DR
        _, d = power.decide(t)
        if due:
            assert d.dr and not was_dr, (t, d)


@given(policies, st.lists(st.tuples(st.floats(0.1, 60.0), readings), max_size=80))
@settings(max_examples=300, deadline=None)
def test_dr_is_only_ever_entered_while_the_site_is_not_on_mains(
        policy: PolicyParams, script: list[tuple[float, UpsReading]]) -> None:
    t, timed = 0.0, []
    for gap, r in script:
        t += gap
        timed.append((t, r))
    before = Phase.NORMAL
    for _, _, d in simulate(timed, policy):
        if d.dr and before is not Phase.DR:
            assert d.state is not MAINS
        before = d.phase


@given(policies, st.lists(st.sampled_from(["OL", "OL CHRG", "OL BYPASS", "OL LB CHRG",
                                           "OL TRIM"]), max_size=50))
@settings(max_examples=200, deadline=None)
def test_a_site_always_on_mains_never_pages_nor_goes_to_dr(
        policy: PolicyParams, script: list[str]) -> None:
    timed = [(2.0 * k, reading(s, runtime=10.0, load=k / 100)) for k, s in enumerate(script)]
    assert not any(d.outage or d.dr or d.run_command for _, _, d in simulate(timed, policy))


@given(grace=st.floats(5.0, 120.0), dr_after=st.none() | st.floats(5.0, 600.0),
       stints=st.lists(st.tuples(st.floats(0.0, 1.0), st.floats(0.5, 30.0)), max_size=40),
       interval=st.floats(0.2, 2.0))
@settings(max_examples=300, deadline=None)
def test_a_ups_toggling_faster_than_the_grace_time_never_pages_nor_moves_calls(
        grace: float, dr_after: float | None, stints: list[tuple[float, float]],
        interval: float) -> None:
    """Each stint on battery (as a fraction of the shorter of grace and dr_after) is followed
    by a read on mains; the runtime stays far above the margin."""
    limit = min(grace, dr_after) if dr_after is not None else grace
    policy = PolicyParams(grace=grace, dr_after=dr_after, runtime_margin=300.0)
    t, timed = 0.0, []
    for fraction, on_mains in stints:
        ob_for = fraction * limit * 0.99
        start = t
        while t - start < ob_for - interval:  # reads every interval within the stint
            timed.append((t, reading("OB DISCHRG", runtime=3600.0, load=t % 1)))
            t += interval
        timed.append((start + ob_for, reading("OB DISCHRG", runtime=3600.0, load=0.5)))
        t = start + ob_for + interval
        end = t + on_mains
        while t < end:
            timed.append((t, reading("OL CHRG", runtime=3600.0, load=t % 1)))
            t += interval
    assert not any(d.outage or d.dr for _, _, d in simulate(timed, policy))


@given(runtime0=st.floats(60.0, 1800.0), rate=st.floats(0.5, 3.0),
       margin=st.floats(10.0, 900.0), interval=st.floats(1.0, 5.0),
       seed=st.integers(0, 2**32), loss=st.floats(0.0, 0.5), fail_after=st.integers(1, 4))
@settings(max_examples=150, deadline=None)
def test_dr_comes_before_the_runtime_the_margin_protects_runs_out(
        runtime0: float, rate: float, margin: float, interval: float,
        seed: int, loss: float, fail_after: int) -> None:
    """From mains loss the UPS's runtime falls at ``rate`` seconds per second; a share
    ``loss`` of the reads fail, never ``fail_after`` in a row. DR comes while at least the
    margin less the run of reads it may take to see it is left (the runtime at the start
    if it was below the margin already), so always before the battery is empty when the
    margin covers those reads."""
    ups = UpsParams(interval=interval, timeout=interval, stale_after=None,
                    fail_after=fail_after)
    rnd = random.Random(seed)
    t, timed, run_of_failures = 0.0, [], 0
    while (left := runtime0 - rate * t) >= 0:
        if rnd.random() < loss and run_of_failures + 1 < fail_after:
            run_of_failures += 1
            timed.append((t, FAILED))
        else:
            run_of_failures = 0
            timed.append((t, reading("OB DISCHRG", runtime=left, charge=left / 7200)))
        t += interval
    entered = next(((t, d) for t, _, d in simulate(timed, PolicyParams(
        grace=30.0, runtime_margin=margin), ups) if d.dr), None)
    seen_within = fail_after * interval  # the good read that shows it: within fail_after
    if entered is None:  # only when failed reads hid the whole span below the margin
        assert margin <= rate * seen_within, "never went to DR"
        return
    at, _ = entered
    assert runtime0 - rate * at >= min(margin, runtime0) - rate * seen_within - 1e-6
    if runtime0 >= margin > rate * seen_within:
        assert runtime0 - rate * at > 0


@given(policies.map(lambda p: PolicyParams(p.grace, p.dr_after, p.runtime_margin,
                                           p.hold_down, command=True)),
       st.lists(st.tuples(st.floats(0.1, 200.0), readings), max_size=80))
@settings(max_examples=300, deadline=None)
def test_the_command_runs_at_most_once_per_battery_event(
        policy: PolicyParams, script: list[tuple[float, UpsReading]]) -> None:
    t, timed = 0.0, []
    for gap, r in script:
        t += gap
        timed.append((t, r))
    runs = 0
    for _, _, d in simulate(timed, policy):
        if d.phase is Phase.NORMAL:
            runs = 0  # a new event may run it again
        runs += d.run_command
        assert runs <= 1
        if d.run_command:
            assert d.state is LOW


@given(st.lists(st.tuples(st.floats(0.1, 100.0), readings), max_size=80),
       st.none() | st.floats(1.0, 100.0), st.integers(1, 4))
@settings(max_examples=300, deadline=None)
def test_an_unknown_ups_is_never_mains(script: list[tuple[float, UpsReading]],
                                       stale_after: float | None, fail_after: int) -> None:
    ups = Ups("ups", UpsParams(interval=1.0, timeout=1.0, stale_after=stale_after,
                               fail_after=fail_after))
    t, fails = 0.0, 0
    for gap, r in script:
        t += gap
        ups.observe(t, r)
        fails = 0 if r.ok else fails + 1
        if fails >= fail_after or (r.ok and judge(r)[0] is UNK):
            assert ups.state is UNK
        site = site_power([ups])
        if ups.state is UNK:
            assert site.state is UNK
        if ups.state is MAINS:
            assert ups.reading is not None and judge(ups.reading)[0] is MAINS and fails < fail_after


def test_the_timeline_of_docs_power_md() -> None:
    """docs/power.md's timeline, read every 2 s (t in seconds from 10:00:00)."""
    power = Power({"ups-a": UpsParams()}, PolicyParams(command=True))

    def ups_says(t: int) -> UpsReading:
        if 4 <= t < 20:
            return reading("OB DISCHRG", runtime=1200 - (t - 4), charge=0.98)
        if 60 <= t < 1020 or 1200 <= t < 1205:
            return reading("OB DISCHRG", runtime=1148 - (t - 60) if t < 1020 else 120,
                           charge=0.9)
        if 1020 <= t < 1140:
            return reading("OB LB", runtime=200 - (t - 1020), charge=0.1)
        return reading("OL CHRG" if t >= 1140 else "OL", load=0.30 + (t % 7) / 100)

    steps: list[tuple[int, Phase, str, bool]] = []
    for t in [*range(0, 1200, 2), 1200, 1202, 1204, *range(1205, 1600, 2)]:
        power.observe("ups-a", float(t), ups_says(t))
        _, d = power.decide(float(t))
        if d.changed:
            steps.append((t, d.phase, d.reason, d.run_command))
    assert [(t, phase) for t, phase, _, _ in steps] == [
        (4, Phase.BATTERY), (20, Phase.NORMAL), (60, Phase.BATTERY), (90, Phase.OUTAGE),
        (910, Phase.DR), (1020, Phase.DR), (1140, Phase.DR), (1200, Phase.DR),
        (1205, Phase.DR), (1505, Phase.NORMAL)]
    assert steps[0][2] == "ups-a: on battery (DISCHRG OB), runtime 20m, charge 98%"
    assert steps[1][2].startswith("mains back within the grace time")
    assert steps[3][2].startswith("on battery for 30 s (grace 30 s): the generator did not")
    assert steps[4][2] == "desks dark: ups-a runtime 4m58s below the 5m margin"
    assert steps[5][2].endswith("running on_battery_low") and steps[5][3]
    assert steps[-1][2] == "mains stable for 5m: leaving DR"
    assert steps[-3][2].startswith("hold-down restarted: site on_battery; ups-a: on battery")
