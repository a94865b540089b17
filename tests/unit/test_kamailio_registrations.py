"""Pure registration part of the Kamailio actuator: uac records, plan, refresh, redaction."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.actuators.sipedge.kamailio import (
    REG_UUID_PREFIX,
    AddRegistration,
    EdgeActual,
    KamailioError,
    Registration,
    RemoveRegistration,
    desired_registrations,
    plan,
    refresh_steps,
    simulate,
)
from controller.actuators.sipedge.kamailio.answers import parse_registrations
from controller.actuators.sipedge.plan import EdgePlan, TrunkState

SECRET = "s3cr3t-do-not-print"
CARRIER = "192.0.2.10:5060"

REG = TrunkState(
    "carrier-b", "sip:198.51.100.7:5060", 2, True,
    register_user="site1", register_domain="carrier-b.test",
    register_password=SECRET, register_expires=300,
)  # fmt: skip
REG_TCP = TrunkState(
    "carrier-c", "sip:198.51.100.8:5060;transport=TCP", 3, True,
    register_user="site9", register_domain="carrier-c.test", register_password=SECRET,
)  # fmt: skip
PLAIN = TrunkState("carrier-a-sbc1", "sip:203.0.113.5:5060", 1, True)


def _regs(desired: EdgePlan, carrier: str | None = CARRIER) -> dict[str, Registration]:
    return desired_registrations(desired, EdgeActual(carrier=carrier))


def _via(host: str | None, *trunks: TrunkState) -> EdgePlan:
    """A plan whose trunks leave from ``host`` (the active link's address)."""
    return EdgePlan(trunks=tuple(replace(t, source=host) for t in trunks))


def _synced(desired: EdgePlan, carrier: str | None = CARRIER) -> EdgeActual:
    actual = EdgeActual(carrier=carrier)
    return simulate(actual, plan(desired, actual).steps)


def test_only_registration_trunks_get_records() -> None:
    regs = _regs(EdgePlan(trunks=(PLAIN, REG, REG_TCP)))
    assert set(regs) == {REG_UUID_PREFIX + "carrier-b", REG_UUID_PREFIX + "carrier-c"}
    b = regs[REG_UUID_PREFIX + "carrier-b"]
    assert (b.user, b.domain, b.proxy, b.expires) == (
        "site1",
        "carrier-b.test",
        "sip:198.51.100.7:5060",
        300,
    )
    assert b.password == SECRET
    assert b.trunk == "carrier-b" and b.owned


def test_register_leaves_from_the_carrier_socket_over_the_trunk_transport() -> None:
    regs = _regs(EdgePlan(trunks=(REG, REG_TCP)))
    assert regs[REG_UUID_PREFIX + "carrier-b"].socket == "udp:192.0.2.10:5060"
    assert regs[REG_UUID_PREFIX + "carrier-c"].socket == "tcp:192.0.2.10:5060"
    # An edge that does not say where its carrier side is: Kamailio picks the socket.
    assert (
        _regs(EdgePlan(trunks=(REG,)), None)[REG_UUID_PREFIX + "carrier-b"].socket
        == ""
    )
    tls = TrunkState("t", "sip:h:5061;transport=tls", 1, True, "u", "d")
    regs = _regs(EdgePlan(trunks=(tls,)))
    assert regs[REG_UUID_PREFIX + "t"].socket == ""


def test_missing_registration_is_added_and_in_sync_plans_nothing() -> None:
    desired = EdgePlan(trunks=(PLAIN, REG))
    steps = plan(desired, EdgeActual(carrier=CARRIER)).steps
    added = [s for s in steps if isinstance(s, AddRegistration)]
    assert [a.registration.uuid for a in added] == [REG_UUID_PREFIX + "carrier-b"]
    assert plan(desired, _synced(desired)).empty


def test_changed_registration_is_removed_then_added() -> None:
    before = EdgePlan(trunks=(REG,))
    actual = _synced(before)
    rotated = TrunkState(
        REG.name, REG.uri, REG.group, REG.enabled, REG.register_user, REG.register_domain,
        "new-secret", REG.register_expires,
    )  # fmt: skip
    steps = plan(EdgePlan(trunks=(rotated,)), actual).steps
    assert steps == (
        RemoveRegistration(REG_UUID_PREFIX + "carrier-b"),
        AddRegistration(
            _regs(EdgePlan(trunks=(rotated,)))[
                REG_UUID_PREFIX + "carrier-b"
            ]
        ),
    )


def test_flags_do_not_count_as_a_difference() -> None:
    desired = EdgePlan(trunks=(REG,))
    actual = _synced(desired)
    progressed = replace(
        actual,
        registrations=tuple(
            Registration(r.uuid, r.user, r.domain, r.proxy, r.expires, r.socket, r.password, 20)
            for r in actual.registrations
        ),
    )
    assert plan(desired, progressed).empty
    assert all(r.registered for r in progressed.registrations)


def test_unwanted_registrations_removed_only_if_ours() -> None:
    theirs = Registration("pbx-own", "x", "y.test", "sip:192.0.2.99", 600, "")
    ours = Registration(REG_UUID_PREFIX + "gone", "x", "y.test", "sip:192.0.2.98", 600, "")
    steps = plan(EdgePlan(), EdgeActual(registrations=(theirs, ours))).steps
    assert steps == (RemoveRegistration(REG_UUID_PREFIX + "gone"),)


def test_refresh_is_remove_then_add_of_held_records_only() -> None:
    desired = EdgePlan(trunks=(PLAIN, REG, REG_TCP))
    actual = _synced(EdgePlan(trunks=(PLAIN, REG)))  # carrier-c not held yet
    request = EdgePlan(
        trunks=desired.trunks,
        refresh_registrations=("carrier-b", "carrier-b", "carrier-a-sbc1", "carrier-c"),
    )
    planned = plan(request, actual).steps
    refresh = refresh_steps(request, actual, planned)
    uuid_b = REG_UUID_PREFIX + "carrier-b"
    # carrier-b once (duplicates collapse); carrier-a-sbc1 does not register; carrier-c is
    # being added by the plan itself, so its REGISTER goes out anyway.
    assert refresh == (
        RemoveRegistration(uuid_b),
        AddRegistration(_regs(desired)[uuid_b]),
    )
    after = simulate(actual, planned + refresh)
    assert plan(request, after).empty


def test_password_never_printed() -> None:
    reg = _regs(EdgePlan(trunks=(REG,)))[REG_UUID_PREFIX + "carrier-b"]
    step = AddRegistration(reg)
    for text in (repr(REG), repr(reg), repr(step), step.describe(),
                 repr(plan(EdgePlan(trunks=(REG,)), EdgeActual()))):  # fmt: skip
        assert SECRET not in text
    assert "site1@carrier-b.test" in step.describe()
    err = KamailioError("uac.reg_add", "uuid already exists", 409)
    assert SECRET not in str(err)


def test_parse_reg_dump_answer() -> None:
    answer = [
        {
            "l_uuid": "lifeline-carrier-b", "l_username": "site1", "l_domain": "carrier-b.test",
            "r_username": "site1", "r_domain": "carrier-b.test", "realm": "",
            "auth_username": "site1", "auth_password": SECRET, "auth_ha1": "none",
            "auth_proxy": "sip:198.51.100.7:5060", "expires": 300, "flags": 20,
            "diff_expires": 3597, "timer_expires": 1, "reg_init": 1, "reg_delay": 0,
            "contact_addr": CARRIER, "socket": "udp:192.0.2.10:5060",
        },
        "junk",
        {"no": "uuid"},
    ]  # fmt: skip
    (rec,) = parse_registrations(answer)
    desired = _via("192.0.2.10", REG)
    assert rec.contact == CARRIER
    assert rec == _regs(desired)[rec.uuid]
    steps = plan(desired, EdgeActual(registrations=(rec,), carrier=CARRIER)).steps
    assert not [s for s in steps if isinstance(s, AddRegistration | RemoveRegistration)]
    assert rec.registered and rec.flags == 20
    assert SECRET not in repr(rec)
    assert parse_registrations({"not": "a list"}) == ()


def test_without_a_socket_on_the_source_the_contact_is_source_and_carrier_port() -> None:
    uuid = REG_UUID_PREFIX + "carrier-b"
    via_a = _via("192.0.2.1", REG)
    assert _regs(via_a, "0.0.0.0:5070")[uuid].contact == "192.0.2.1:5070"
    v6 = _via("2001:db8::1", REG)
    assert _regs(v6, "[::]:5060")[uuid].contact == "[2001:db8::1]:5060"
    # Without an address or a published carrier socket, the cfg's default stands.
    assert _regs(EdgePlan(trunks=(REG,)))[uuid].contact == ""
    assert _regs(via_a, None)[uuid].contact == ""


def test_failover_changes_the_contact_so_the_record_is_added_again() -> None:
    uuid = REG_UUID_PREFIX + "carrier-b"
    via_a = _via("192.0.2.1", REG)
    via_b = _via("198.51.100.1", REG)
    actual = _synced(via_a)
    assert plan(via_a, actual).empty
    steps = plan(via_b, actual).steps
    assert steps == (
        RemoveRegistration(uuid),
        AddRegistration(_regs(via_b)[uuid]),
    )
    assert plan(via_b, simulate(actual, steps)).empty


def test_default_contact_matches_what_kamailio_resolved() -> None:
    """A wanted contact of "" is shown back by reg_dump as the cfg's reg_contact_addr."""
    desired = EdgePlan(trunks=(REG,))
    (want,) = _regs(desired).values()
    held = replace(want, contact="0.0.0.0:5060")
    steps = plan(desired, EdgeActual(registrations=(held,), carrier=CARRIER)).steps
    assert not [s for s in steps if isinstance(s, AddRegistration | RemoveRegistration)]


_names = st.sampled_from(["a", "b", "c", "d"])


@st.composite
def _reg_plans(draw: st.DrawFn) -> EdgePlan:
    names = draw(st.lists(_names, unique=True, max_size=4))
    trunks = tuple(
        TrunkState(
            n,
            f"sip:198.51.100.{i + 1}:5060",
            1,
            True,
            register_user=draw(st.sampled_from(["u1", "u2"])) if draw(st.booleans()) else None,
            register_domain="carrier.test",
            register_password=draw(st.sampled_from(["p1", "p2", None])),
            register_expires=draw(st.sampled_from([60, 600])),
        )
        for i, n in enumerate(names)
    )
    refresh = tuple(draw(st.lists(_names, max_size=3)))
    host = draw(st.sampled_from([None, "192.0.2.1", "198.51.100.1", "2001:db8::1"]))
    trunks = tuple(replace(t, source=host) for t in trunks)
    return EdgePlan(trunks=trunks, refresh_registrations=refresh)


@settings(max_examples=200, deadline=None)
@given(before=_reg_plans(), after=_reg_plans(), carrier=st.sampled_from([None, CARRIER]))
def test_apply_then_plan_is_empty(before: EdgePlan, after: EdgePlan, carrier: str | None) -> None:
    actual = _synced(before, carrier)
    steps = plan(after, actual).steps
    steps += refresh_steps(after, actual, steps)
    assert plan(after, simulate(actual, steps)).empty
