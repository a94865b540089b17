"""The SNMP UPS probe's edges that need no agent (probes/snmpups.py): SNMPv3 users the probe
refuses before sending anything, settings that can never work, keys kept out of reprs, and
how a reply's values (pysnmp's own types) become the mapping's input. Reads against a real
agent are in tests/integration/test_snmp_ups.py."""

from __future__ import annotations

from typing import Any

import pytest
from pysnmp.hlapi.v3arch import asyncio as hlapi
from pysnmp.proto.rfc1902 import ObjectName

from probes.sample import ErrorKind
from probes.snmpups import AUTH_PROTOCOLS, PRIV_PROTOCOLS, SnmpUps, SnmpV3User, _values
from probes.upsmib import OBJECTS

NAMES = list(OBJECTS)


def reply(*values: Any) -> list[tuple[Any, Any]]:
    return [(ObjectName(OBJECTS[name]), value) for name, value in zip(NAMES, values,
                                                                      strict=False)]


def test_a_good_user_has_no_problem_with_every_protocol() -> None:
    for auth in AUTH_PROTOCOLS:
        for priv in PRIV_PROTOCOLS:
            user = SnmpV3User("ups", auth, None if auth == "none" else "auth-key-1",
                              priv, None if priv == "none" else "priv-key-1")
            expect_ok = not (auth == "none" and priv != "none")
            assert (user.problem() is None) == expect_ok, (auth, priv, user.problem())


@pytest.mark.parametrize(("user", "words"), [
    (SnmpV3User("u", "sha1x", "12345678", "none"), "unknown SNMPv3 auth protocol 'sha1x'"),
    (SnmpV3User("u", "sha", "12345678", "blowfish", "12345678"), "privacy protocol"),
    (SnmpV3User("u", "sha", None, "none"), "needs its key"),
    (SnmpV3User("u", "none", "12345678", "none"), "none takes no key"),
    (SnmpV3User("u", "sha", "1234567", "none"), "at least 8 characters"),
    (SnmpV3User("u", "sha", "12345678", "aes", "short"), "at least 8 characters"),
    (SnmpV3User("u", "none", None, "aes", "12345678"), "privacy needs authentication"),
])
def test_a_user_pysnmp_would_refuse_is_explained(user: SnmpV3User, words: str) -> None:
    problem = user.problem()
    assert problem is not None
    assert words in problem


def test_keys_never_show_in_a_repr() -> None:
    user = SnmpV3User("ups", "sha", "secret-auth-1", "aes", "secret-priv-1")
    assert "secret" not in repr(user)
    assert "ups" in repr(user)


@pytest.mark.parametrize(("ups", "words"), [
    (SnmpUps("127.0.0.1", 161), "either a community (v2c) or an SNMPv3 user"),
    (SnmpUps("127.0.0.1", 161, community="public", v3=SnmpV3User("u", "none", None, "none")),
     "not both"),
    (SnmpUps("127.0.0.1", 0, community="public"), "outside 1..65535"),
    (SnmpUps("ups.example", 161, community="public"), "not an IP address"),
    (SnmpUps("127.0.0.1", 161, v3=SnmpV3User("u", "md5", "123", "none")), "8 characters"),
])
async def test_settings_that_cannot_work_fail_without_sending(ups: SnmpUps, words: str) -> None:
    reading = await ups.read(timeout=0.1)
    await ups.aclose()
    assert not reading.ok
    assert reading.error is ErrorKind.INTERNAL
    assert words in reading.detail


def test_integers_of_every_smi_type_are_numbers() -> None:
    values = _values(hlapi, NAMES, reply(hlapi.Integer(5), hlapi.Integer32(3),
                                         hlapi.Gauge32(45), hlapi.Unsigned32(99),
                                         hlapi.Counter32(230), hlapi.Counter64(35)))
    assert values == dict(zip(NAMES, [5, 3, 45, 99, 230, 35], strict=True))


def test_objects_the_agent_lacks_are_none() -> None:
    values = _values(hlapi, NAMES, reply(hlapi.Integer(3), hlapi.NoSuchObject(""),
                                         hlapi.NoSuchInstance(""), hlapi.EndOfMibView(""),
                                         hlapi.Integer(230), hlapi.Integer(35)))
    assert isinstance(values, dict)
    assert [values[n] for n in NAMES] == [3, None, None, None, 230, 35]


def test_a_value_of_the_wrong_type_is_described_not_trusted() -> None:
    values = _values(hlapi, NAMES, reply(hlapi.OctetString("battery"), hlapi.Integer(2),
                                         hlapi.IpAddress("192.0.2.1"), hlapi.Integer(5),
                                         hlapi.Null(""), hlapi.Integer(35)))
    assert isinstance(values, dict)
    assert values["upsOutputSource"] == "OctetString 'battery'"
    assert values["upsEstimatedMinutesRemaining"] == "IpAddress '192.0.2.1'"
    assert values["upsInputVoltage"] == "Null ''"
    assert values["upsBatteryStatus"] == 2


def test_a_reply_that_does_not_answer_the_request_is_refused() -> None:
    short = _values(hlapi, NAMES, reply(hlapi.Integer(3)))
    assert short == "SNMP reply has 1 values for the 6 asked"
    swapped = reply(*(hlapi.Integer(1) for _ in NAMES))
    swapped[0], swapped[1] = swapped[1], swapped[0]
    refused = _values(hlapi, NAMES, swapped)
    assert isinstance(refused, str)
    assert "upsOutputSource" in refused
    assert OBJECTS["upsBatteryStatus"] in refused
