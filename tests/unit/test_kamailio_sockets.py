"""Pure socket part of the Kamailio actuator: which address each trunk leaves from.

A trunk's `source` (its pinned link's address, else the active link's) must end up as the
edge's send socket for that trunk ("socket::<trunk>" in the `edgecfg` htable) and as the
socket and Contact of its registration, but only where the edge really listens: anything
else would make Kamailio refuse the socket, so it falls back and is reported.
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.actuators.sipedge.kamailio import (
    REG_UUID_PREFIX,
    DeleteSetting,
    EdgeActual,
    EdgeSocket,
    SetDid,
    SetSetting,
    desired_registrations,
    desired_settings,
    plan,
    simulate,
    trunk_socket,
)
from controller.actuators.sipedge.kamailio.answers import parse_sockets
from controller.actuators.sipedge.plan import DidRoute, EdgePlan, TrunkState

FIBRE_A, FIBRE_B, LTE = "198.51.100.2", "203.0.113.2", "100.64.0.2"
SOCKETS = (
    *(EdgeSocket(proto, host, 5060) for host in (FIBRE_A, FIBRE_B) for proto in ("udp", "tcp")),
    EdgeSocket("udp", "10.0.0.1", 5070),  # the PBX side
    EdgeSocket("udp", "[2001:db8::2]", 5060),
)
EDGE = EdgeActual(carrier=f"{FIBRE_A}:5060", settings={}, sockets=SOCKETS)

SBC1 = TrunkState("a-sbc1", "sip:192.0.2.21:5060", 1, True)
SBC_TCP = TrunkState("b-sbc1", "sip:192.0.2.23:5060;transport=tcp", 2, True)
REG = TrunkState("r", "sip:192.0.2.24:5060", 3, True, register_user="site1",
                 register_domain="r.test", register_password="pw")  # fmt: skip


def _via(host: str | None, *trunks: TrunkState) -> EdgePlan:
    return EdgePlan(trunks=tuple(replace(t, source=host) for t in trunks))


def test_each_trunk_gets_the_socket_on_its_source() -> None:
    want, warnings = desired_settings(_via(FIBRE_B, SBC1, SBC_TCP), EDGE)
    assert want == {"socket::a-sbc1": FIBRE_B, "socket::b-sbc1": FIBRE_B}
    assert warnings == ()
    pinned = EdgePlan(trunks=(replace(SBC1, source=FIBRE_A), replace(SBC_TCP, source=FIBRE_B)))
    assert desired_settings(pinned, EDGE)[0] == {
        "socket::a-sbc1": FIBRE_A, "socket::b-sbc1": FIBRE_B,
    }  # fmt: skip


def test_ipv6_source_matches_the_bracketed_socket() -> None:
    edge = replace(EDGE, carrier="[2001:db8::2]:5060")
    want, _ = desired_settings(_via("2001:db8:0::2", SBC1), edge)
    assert want == {"socket::a-sbc1": "[2001:db8::2]"}


def test_a_source_without_a_socket_falls_back_and_is_reported() -> None:
    want, warnings = desired_settings(_via(LTE, SBC1), EDGE)
    assert want == {}
    (warning,) = warnings
    assert "a-sbc1" in warning and f"no udp socket on {LTE}:5060" in warning
    # Nothing to report when the edge's sockets are unknown (no corex) or no source is set.
    assert desired_settings(_via(LTE, SBC1), replace(EDGE, sockets=None)) == ({}, ())
    assert desired_settings(_via(None, SBC1), EDGE) == ({}, ())
    # The port must be the carrier port too: 10.0.0.1 only listens on 5070 (PBX side).
    assert desired_settings(_via("10.0.0.1", SBC1), EDGE)[0] == {}


def test_an_edge_without_the_htable_gets_no_writes_and_a_warning() -> None:
    edge = replace(EDGE, settings=None)
    steps = plan(_via(FIBRE_B, SBC1), edge)
    assert not [s for s in steps.steps if isinstance(s, SetSetting | DeleteSetting)]
    (warning,) = steps.warnings
    assert "no edgecfg htable" in warning


def test_failover_rewrites_the_socket_and_drops_stale_keys() -> None:
    via_a = _via(FIBRE_A, SBC1, SBC_TCP)
    actual = simulate(EDGE, plan(via_a, EDGE).steps)
    assert actual.settings == {"socket::a-sbc1": FIBRE_A, "socket::b-sbc1": FIBRE_A}
    assert plan(via_a, actual).empty
    via_b = _via(FIBRE_B, SBC1)  # b-sbc1 left the plan
    steps = plan(via_b, actual).steps
    assert SetSetting("socket::a-sbc1", FIBRE_B) in steps
    assert DeleteSetting("socket::b-sbc1") in steps
    assert plan(via_b, simulate(actual, steps)).empty


def test_a_trunks_socket_is_set_before_dids_send_calls_to_it() -> None:
    desired = replace(_via(FIBRE_B, SBC1),
                      routes=(DidRoute("+390212345600", "+390212345699", "a-sbc1", None),))
    steps = plan(desired, EDGE).steps
    kinds = [type(s) for s in steps]
    assert kinds.index(SetSetting) < kinds.index(SetDid)


def test_registration_leaves_from_the_source_socket_with_its_contact() -> None:
    uuid = REG_UUID_PREFIX + "r"
    reg = desired_registrations(_via(FIBRE_B, REG), EDGE)[uuid]
    assert (reg.socket, reg.contact) == (f"udp:{FIBRE_B}:5060", f"{FIBRE_B}:5060")
    # Behind NAT the socket advertises the public address: the Contact says that one.
    natted = replace(EDGE, sockets=(EdgeSocket("udp", FIBRE_B, 5060, "192.0.2.200:5060"),))
    reg = desired_registrations(_via(FIBRE_B, REG), natted)[uuid]
    assert (reg.socket, reg.contact) == (f"udp:{FIBRE_B}:5060", "192.0.2.200:5060")
    # No socket on the source: the published carrier socket, the source in the Contact.
    reg = desired_registrations(_via(LTE, REG), EDGE)[uuid]
    assert (reg.socket, reg.contact) == (f"udp:{FIBRE_A}:5060", f"{LTE}:5060")


def test_trunk_socket_needs_the_same_transport() -> None:
    only_udp = replace(EDGE, sockets=(EdgeSocket("udp", FIBRE_B, 5060),))
    assert trunk_socket(only_udp, FIBRE_B, "udp") is not None
    assert trunk_socket(only_udp, FIBRE_B, "tcp") is None
    assert trunk_socket(replace(EDGE, carrier=None), FIBRE_B, "udp") is None


def test_parse_list_sockets_answer() -> None:
    answer = [
        {"PROTO": "udp", "NAME": FIBRE_A, "ADDRLIST": {"ADDR": FIBRE_A}, "PORT": "5060",
         "MCAST": "no", "MHOMED": "no", "VIRTUAL": "no", "SOCKNAME": "-", "ADVERTISE": "-"},
        {"PROTO": "TCP", "NAME": "2001:db8::2", "PORT": "5060",
         "ADVERTISE": "192.0.2.200:5060"},
        {"PROTO": "udp", "NAME": FIBRE_A, "PORT": "not a port"},
        "junk",
    ]  # fmt: skip
    assert parse_sockets(answer) == (
        EdgeSocket("udp", FIBRE_A, 5060),
        EdgeSocket("tcp", "[2001:db8::2]", 5060, "192.0.2.200:5060"),
    )
    assert parse_sockets({"not": "a list"}) == ()


_hosts = st.sampled_from([None, FIBRE_A, FIBRE_B, LTE, "2001:db8::2"])


@st.composite
def _plans(draw: st.DrawFn) -> EdgePlan:
    trunks = draw(st.lists(st.sampled_from([SBC1, SBC_TCP, REG]), unique=True))
    return EdgePlan(trunks=tuple(replace(t, source=draw(_hosts)) for t in trunks))


@settings(max_examples=200, deadline=None)
@given(before=_plans(), after=_plans())
def test_apply_then_plan_is_empty(before: EdgePlan, after: EdgePlan) -> None:
    actual = simulate(EDGE, plan(before, EDGE).steps)
    steps = plan(after, actual).steps
    final = simulate(actual, steps)
    assert plan(after, final).empty
    assert set(final.settings or {}) <= {f"socket::{t.name}" for t in after.trunks}


def test_tls_trunks_use_the_tls_socket_on_its_own_port() -> None:
    tls = TrunkState("t-sbc", "sip:192.0.2.30:5061;transport=tls", 4, True)
    edge = replace(EDGE, sockets=(*SOCKETS, EdgeSocket("tls", FIBRE_B, 5061)))
    assert desired_settings(_via(FIBRE_B, tls), edge) == ({"socket::t-sbc": FIBRE_B}, ())
    (warning,) = desired_settings(_via(FIBRE_A, tls), edge)[1]
    assert f"no tls socket on {FIBRE_A};" in warning
