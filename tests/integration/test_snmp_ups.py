"""The SNMP UPS probe (probes/snmpups.py) against a real agent: snmpsim answering the UPS-MIB
on 127.0.0.1 (tests/lab/snmpups.py), its record set changed mid-test as a UPS would change
(mains -> battery -> battery low -> bypass -> mains), the agent gone and back, a wrong
community, SNMPv3 users right and wrong, and a peer that answers garbage. Loopback only:
no namespaces, no root needed."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from probes.sample import ErrorKind
from probes.snmpups import SnmpUps, SnmpV3User, read_snmp_ups
from tests.lab.snmpups import (
    BATTERY_LOW,
    BYPASS,
    COMMUNITY,
    MAINS,
    ON_BATTERY,
    V3_AUTH_KEY,
    V3_PRIV_KEY,
    V3_USER,
    LabSnmpUps,
    UpsState,
    snmp_ups,
)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("snmpsim") is None,
                                reason="the SNMP lab needs snmpsim (PyPI snmpsim 1.2)")

TIMEOUT = 1.0
# How long a failed read may take beyond its timeout (a loaded CI machine, pysnmp's timer).
SLACK = 2.0


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[LabSnmpUps]:
    with snmp_ups(tmp_path / "snmpsim") as ups:
        yield ups


@pytest.fixture
async def v2c(agent: LabSnmpUps) -> AsyncIterator[SnmpUps]:
    ups = SnmpUps("127.0.0.1", agent.port, community=COMMUNITY)
    yield ups
    await ups.aclose()


def v3_user(**changes: str) -> SnmpV3User:
    fields = {"user": V3_USER, "auth_protocol": "sha", "auth_key": V3_AUTH_KEY,
              "priv_protocol": "aes", "priv_key": V3_PRIV_KEY, **changes}
    return SnmpV3User(**fields)


async def test_a_ups_on_mains_reads_ol_with_its_values(v2c: SnmpUps) -> None:
    reading = await v2c.read(timeout=TIMEOUT)
    assert reading.ok, reading.detail
    assert reading.flags == {"OL"}
    assert reading.charge == 1.0
    assert reading.runtime == MAINS.minutes * 60  # type: ignore[operator]
    assert reading.input_voltage == 230.0
    assert reading.load == pytest.approx(0.35)
    assert reading.detail == ""


@pytest.mark.parametrize(("state", "flags"), [
    (ON_BATTERY, {"OB", "DISCHRG"}),
    (BATTERY_LOW, {"OB", "DISCHRG", "LB"}),
    (BYPASS, {"OL", "BYPASS"}),
])
async def test_each_state_of_the_agent_reads_as_nut_flags(
        agent: LabSnmpUps, state: UpsState, flags: set[str]) -> None:
    agent.set(state)
    reading = await read_snmp_ups("127.0.0.1", agent.port, timeout=TIMEOUT,
                                  community=COMMUNITY)
    assert reading.ok, reading.detail
    assert reading.flags == flags
    assert reading.charge == pytest.approx(state.charge / 100)  # type: ignore[operator]
    assert reading.runtime == state.minutes * 60  # type: ignore[operator]


async def test_a_power_failure_and_return_are_seen_read_by_read(agent: LabSnmpUps,
                                                                v2c: SnmpUps) -> None:
    seen = []
    for state in (MAINS, ON_BATTERY, BATTERY_LOW, MAINS):
        agent.set(state)
        reading = await v2c.read(timeout=TIMEOUT)
        assert reading.ok, reading.detail
        seen.append(sorted(reading.flags))
    assert seen == [["OL"], ["DISCHRG", "OB"], ["DISCHRG", "LB", "OB"], ["OL"]]


async def test_objects_the_agent_lacks_or_garbles_leave_the_reading_usable(
        agent: LabSnmpUps, v2c: SnmpUps) -> None:
    # No runtime estimate at all, and an input voltage sent as a string (type 4).
    agent.set(UpsState(output_source=5, minutes=None, input_voltage=None,
                       extra=("1.3.6.1.2.1.33.1.3.3.1.3.1|4|230V",)))
    reading = await v2c.read(timeout=TIMEOUT)
    assert reading.ok, reading.detail
    assert reading.flags == {"OB", "DISCHRG"}
    assert reading.runtime is None
    assert reading.input_voltage is None
    assert "upsInputVoltage ignored: not an integer (OctetString '230V')" in reading.detail


async def test_an_agent_without_the_ups_mib_is_not_ok(agent: LabSnmpUps,
                                                      v2c: SnmpUps) -> None:
    agent.set(UpsState(output_source=None, battery_status=None, minutes=None, charge=None,
                       input_voltage=None, load=None, extra=("1.3.6.1.2.1.1.5.0|4|router",)))
    reading = await v2c.read(timeout=TIMEOUT)
    assert not reading.ok
    assert reading.error is ErrorKind.BAD_REPLY
    assert "no upsOutputSource" in reading.detail


async def test_the_agent_gone_is_a_timeout_and_its_return_is_read_again(
        agent: LabSnmpUps, v2c: SnmpUps) -> None:
    assert (await v2c.read(timeout=TIMEOUT)).ok
    agent.stop()
    started = time.monotonic()
    reading = await v2c.read(timeout=TIMEOUT)
    took = time.monotonic() - started
    assert not reading.ok
    assert reading.error is ErrorKind.TIMEOUT
    assert f"127.0.0.1:{agent.port}" in reading.detail
    assert TIMEOUT * 0.9 <= took <= TIMEOUT + SLACK
    agent.set(ON_BATTERY)
    agent.start()
    back = await v2c.read(timeout=TIMEOUT)
    assert back.ok, back.detail
    assert back.flags == {"OB", "DISCHRG"}


async def test_a_wrong_community_is_a_timeout_that_says_why(agent: LabSnmpUps) -> None:
    reading = await read_snmp_ups("127.0.0.1", agent.port, timeout=TIMEOUT,
                                  community="not-" + COMMUNITY)
    assert not reading.ok
    assert reading.error is ErrorKind.TIMEOUT
    assert "wrong community" in reading.detail


async def test_snmpv3_with_auth_and_privacy_reads_the_ups(agent: LabSnmpUps) -> None:
    ups = SnmpUps("127.0.0.1", agent.port, v3=v3_user())
    try:
        first = await ups.read(timeout=TIMEOUT)
        agent.set(BATTERY_LOW)
        second = await ups.read(timeout=TIMEOUT)
    finally:
        await ups.aclose()
    assert first.ok, first.detail
    assert first.flags == {"OL"}
    assert second.ok, second.detail
    assert second.flags == {"OB", "DISCHRG", "LB"}


@pytest.mark.parametrize(("changes", "words"), [
    ({"auth_key": "not-the-auth-key"}, "Wrong SNMP PDU digest"),
    ({"user": "mallory"}, "Unknown USM user"),
    ({"priv_key": "not-the-priv-key"}, "refused"),
    ({"auth_protocol": "md5"}, "Wrong SNMP PDU digest"),
])
async def test_a_refused_snmpv3_user_is_a_bad_reply_naming_the_user(
        agent: LabSnmpUps, changes: dict[str, str], words: str) -> None:
    user = v3_user(**changes)
    started = time.monotonic()
    reading = await read_snmp_ups("127.0.0.1", agent.port, timeout=TIMEOUT, v3=user)
    assert not reading.ok
    assert reading.error is ErrorKind.BAD_REPLY
    assert f"SNMPv3 user {user.user} refused" in reading.detail
    assert words in reading.detail
    assert time.monotonic() - started < TIMEOUT + SLACK
    for key in (user.auth_key, user.priv_key):
        assert key is not None and key not in reading.detail


async def test_snmpv3_reads_again_at_most_one_read_after_the_agent_restarts(
        agent: LabSnmpUps) -> None:
    ups = SnmpUps("127.0.0.1", agent.port, v3=v3_user())
    try:
        assert (await ups.read(timeout=TIMEOUT)).ok
        agent.stop()
        agent.start()  # same engine ID, but its boots and clock start again
        readings = [await ups.read(timeout=TIMEOUT) for _ in range(2)]
    finally:
        await ups.aclose()
    # The first read may still go to the old engine (no answer); the next one rediscovers.
    assert readings[0].ok or readings[0].error is ErrorKind.TIMEOUT, readings[0].detail
    assert readings[1].ok, readings[1].detail


class _Garbage(asyncio.DatagramProtocol):
    """A peer that answers every datagram with bytes that are not SNMP."""

    transport: asyncio.DatagramTransport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(b"\x30\x82\xff\xffnot snmp at all" + data[:3], addr)


async def test_a_peer_answering_garbage_is_a_failure_reading() -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_Garbage, local_addr=("127.0.0.1", 0))
    try:
        port = transport.get_extra_info("sockname")[1]
        reading = await read_snmp_ups("127.0.0.1", port, timeout=0.5, community="public")
    finally:
        transport.close()
    assert not reading.ok
    assert reading.error is ErrorKind.TIMEOUT
    assert "no SNMP answer" in reading.detail


async def test_reads_leave_no_task_or_socket_behind(agent: LabSnmpUps) -> None:
    before = {t for t in asyncio.all_tasks()}
    ups = SnmpUps("127.0.0.1", agent.port, community=COMMUNITY)
    for _ in range(3):
        assert (await ups.read(timeout=TIMEOUT)).ok
        assert {t for t in asyncio.all_tasks()} == before  # pysnmp's timer is gone
        assert ups._engine.transport_dispatcher is None  # and its socket
    await ups.aclose()


async def test_snmpv3_privacy_without_a_cipher_library_says_what_is_missing(
        agent: LabSnmpUps, monkeypatch: pytest.MonkeyPatch) -> None:
    from pysnmp.proto.secmod.rfc3826.priv import aes

    monkeypatch.setattr(aes, "PysnmpCryptoError", True)  # as if `cryptography` were absent
    reading = await read_snmp_ups("127.0.0.1", agent.port, timeout=TIMEOUT, v3=v3_user())
    assert not reading.ok
    assert reading.error is ErrorKind.INTERNAL
    assert "cryptography" in reading.detail


async def test_the_engine_is_kept_between_reads_and_dropped_after_an_unanswered_v3_read(
        agent: LabSnmpUps) -> None:
    v2c = SnmpUps("127.0.0.1", agent.port, community=COMMUNITY)
    v3 = SnmpUps("127.0.0.1", agent.port, v3=v3_user())
    try:
        for ups in (v2c, v3):
            assert (await ups.read(timeout=TIMEOUT)).ok
        engines = (v2c._engine, v3._engine)
        for ups in (v2c, v3):
            assert (await ups.read(timeout=TIMEOUT)).ok
        assert (v2c._engine, v3._engine) == engines  # built once, ~45 ms of CPU each
        agent.stop()
        for ups in (v2c, v3):
            assert (await ups.read(timeout=0.3)).error is ErrorKind.TIMEOUT
        assert v2c._engine is engines[0]  # v2c keeps no state about the agent
        assert v3._engine is None  # v3 rediscovers the agent on the next read
    finally:
        await v2c.aclose()
        await v3.aclose()
