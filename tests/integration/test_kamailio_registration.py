"""Registration-based trunks at a real Kamailio 5.6 edge (reference kamailio.cfg), on loopback.

A sipp registrar (tests/integration/sipp/register-digest.xml: 401 with a digest challenge,
then 200 to a REGISTER that carries an Authorization header for user site1) stands for the
carrier's SBC. The actuator adds the uac record; the registrar must see an authorized
REGISTER from the edge's carrier-side socket and Kamailio must report the record registered;
a refresh (remove + add) must make a new REGISTER, with a new Call-ID, arrive. Kamailio and
sipp are started with known PIDs and killed by PID in finalizers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.actuators.sipedge.kamailio import (
    REG_FLAG_INITIALISED,
    REG_FLAG_REGISTERED,
    REG_UUID_PREFIX,
    AddRegistration,
    KamailioActuator,
    Registration,
    RemoveRegistration,
)
from controller.actuators.sipedge.plan import EdgePlan, TrunkState
from tests.lab.kamailio import LabKamailio, free_port
from tests.lab.wait import until_async

SIPP_DIR = Path(__file__).resolve().parent / "sipp"
SECRET = "pw-never-logged-7f3a"
UUID = REG_UUID_PREFIX + "carrier-b"

pytestmark = [
    pytest.mark.skipif(shutil.which("kamailio") is None, reason="needs kamailio (Debian kamailio)"),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="needs sipp (Debian sip-tester)"),
]


@pytest.fixture
def registrar(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A sipp registrar challenging with digest; (its UDP port, its message log)."""
    port = free_port(socket.SOCK_DGRAM)
    log = tmp_path / "registrar_messages.log"
    argv = ["sipp", "-sf", str(SIPP_DIR / "register-digest.xml"), "-key", "algorithm", "MD5",
            "-i", "127.0.0.1", "-p", str(port), "-nostdin", "-trace_msg",
            "-message_file", str(log), "-trace_err",
            "-error_file", str(tmp_path / "registrar_errors.log")]  # fmt: skip
    proc = subprocess.Popen(
        argv, cwd=tmp_path, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield port, log
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)


def authorized_registers(log: Path) -> list[str]:
    """REGISTERs the registrar received that carry an Authorization header for site1."""
    if not log.exists():
        return []
    chunks = log.read_text(errors="replace").split("----------------------------------------------")
    return [
        c
        for c in chunks
        if "received" in c
        and "REGISTER sip:" in c
        and 'Authorization: Digest username="site1"' in c
    ]


def call_id(message: str) -> str:
    for line in message.splitlines():
        if line.lower().startswith("call-id:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no Call-ID in {message!r}")


async def wait_for_registered(actuator: KamailioActuator, timeout: float = 15.0) -> Registration:
    """Poll uac.reg_dump until our record is registered (generous bound; ~1 s is usual)."""
    last: Registration | None = None

    async def registered() -> Registration | None:
        nonlocal last
        for rec in await actuator.registrations():
            if rec.uuid == UUID:
                last = rec
                if rec.flags & REG_FLAG_REGISTERED:
                    return rec
        return None

    return await until_async(registered, timeout, 0.2, "our record to be registered",
                             detail=lambda: f"last: {last!r}")


async def wait_for_registers(log: Path, count: int, timeout: float = 15.0) -> list[str]:
    def enough() -> list[str] | None:
        found = authorized_registers(log)
        return found if len(found) >= count else None

    return await until_async(enough, timeout, 0.2, f"{count} authorized REGISTERs")


def _plan(registrar_port: int, refresh: tuple[str, ...] = ()) -> EdgePlan:
    trunk = TrunkState(
        "carrier-b", f"sip:127.0.0.1:{registrar_port}", 1, True,
        register_user="site1", register_domain="lifeline.test",
        register_password=SECRET, register_expires=600,
    )  # fmt: skip
    return EdgePlan(trunks=(trunk,), refresh_registrations=refresh)


async def test_registration_trunk_registers_and_refreshes(
    edge: LabKamailio, actuator: KamailioActuator, registrar: tuple[int, Path]
) -> None:
    port, log = registrar
    steps, result = await actuator.reconcile(_plan(port))
    assert result.ok, result.errors
    assert any(isinstance(s, AddRegistration) for s in steps.steps)

    rec = await wait_for_registered(actuator)
    assert rec.flags & REG_FLAG_INITIALISED
    assert rec.socket == f"udp:127.0.0.1:{edge.carrier_port}"
    first = await wait_for_registers(log, 1)
    # It left from the carrier-side socket, not the PBX-side one.
    assert f"Via: SIP/2.0/UDP 127.0.0.1:{edge.carrier_port};" in first[0]
    assert f"<sip:{UUID}@127.0.0.1:{edge.carrier_port}>" in first[0]

    # In sync: nothing to write, and the password never shows in what the actuator reports.
    steps, result = await actuator.reconcile(_plan(port))
    assert result.ok and steps.empty, steps
    assert SECRET not in repr(steps) and SECRET not in repr(rec)

    # After a failover the daemon asks for a refresh: remove + add, a NEW REGISTER goes out.
    steps, result = await actuator.reconcile(_plan(port, refresh=("carrier-b",)))
    assert result.ok, result.errors
    assert [type(s) for s in steps.steps] == [RemoveRegistration, AddRegistration]
    second = await wait_for_registers(log, 2)
    assert call_id(second[-1]) != call_id(first[0])
    await wait_for_registered(actuator)
    # The same request is not sent twice.
    steps, result = await actuator.reconcile(_plan(port, refresh=("carrier-b",)))
    assert result.ok and steps.empty, steps

    # A trunk that no longer registers: lifeline's record goes.
    steps, result = await actuator.reconcile(EdgePlan())
    assert result.ok, result.errors
    assert RemoveRegistration(UUID) in steps.steps
    assert all(r.uuid != UUID for r in await actuator.registrations())


async def test_edge_restart_registers_again(
    edge: LabKamailio, actuator: KamailioActuator, registrar: tuple[int, Path]
) -> None:
    """Records live in Kamailio's memory only: after a restart the next cycle adds them."""
    port, log = registrar
    _, result = await actuator.reconcile(_plan(port))
    assert result.ok, result.errors
    await wait_for_registered(actuator)
    edge.restart()
    assert await actuator.registrations() == ()
    _, result = await actuator.reconcile(_plan(port))
    assert result.ok, result.errors
    await wait_for_registered(actuator)
    registers = await wait_for_registers(log, 2)
    assert len({call_id(m) for m in registers}) >= 2
