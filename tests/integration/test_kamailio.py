"""The Kamailio actuator against a real Kamailio 5.6 started from the reference kamailio.cfg.

Everything runs on loopback with free ports: Kamailio (carrier-side and PBX-side sockets,
JSON-RPC on localhost), sipp UAS as the PBX and as two carrier SBCs, sipp UAC placing the
calls. Every process is started with a known PID and killed by that PID in a finalizer.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from dataclasses import replace
from pathlib import Path

import pytest

from controller.actuators.sipedge.kamailio import KamailioActuator
from controller.actuators.sipedge.kamailio.planner import SetTrunkState
from controller.actuators.sipedge.plan import DidRoute, EdgePlan, TrunkState
from tests.integration.conftest import SECOND_UPLINK, SIPP_DIR, Uas
from tests.lab.kamailio import LabKamailio, free_port
from tests.lab.sipsite import header_values

pytestmark = [
    pytest.mark.skipif(shutil.which("kamailio") is None, reason="needs kamailio (Debian kamailio)"),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="needs sipp (Debian sip-tester)"),
]


async def call(
    tmp_path: Path, scenario: str, target: tuple[str, int], called: str, caller: str
) -> tuple[int, str]:
    """One sipp UAC call; (exit code, its error log). 0 = the scenario completed."""
    errors = tmp_path / f"uac_{called}_{os.urandom(3).hex()}.log"
    argv = ["sipp", f"{target[0]}:{target[1]}", "-sf", str(SIPP_DIR / scenario),
            "-s", called, "-key", "caller", caller, "-i", "127.0.0.1",
            "-p", str(free_port(socket.SOCK_DGRAM)), "-m", "1", "-nostdin",
            "-timeout", "15s", "-timeout_error",
            "-trace_err", "-error_file", str(errors)]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    err = errors.read_text(errors="replace") if errors.exists() else ""
    return proc.returncode or 0, err + stderr.decode(errors="replace")


def invites(log: Path) -> list[str]:
    """The INVITEs a sipp UAS received (its message log), each as text."""
    if not log.exists():
        return []
    chunks = log.read_text(errors="replace").split("----------------------------------------------")
    return [c for c in chunks if "received" in c and "INVITE sip:" in c]


def _peers(uas: Uas) -> tuple[EdgePlan, dict[str, Path]]:
    """PBX, sbc1 and sbc2 started; the plan routing the test DIDs over them, and each
    peer's message log."""
    ports, logs = {}, {}
    for name in ("pbx", "sbc1", "sbc2"):
        ports[name], logs[name] = uas(name)
    pbx, sbc1, sbc2 = (f"sip:127.0.0.1:{ports[n]}" for n in ("pbx", "sbc1", "sbc2"))
    return _plan(pbx, sbc1, sbc2), logs


def _plan(pbx: str, sbc1: str, sbc2: str) -> EdgePlan:
    return EdgePlan(
        trunks=(
            TrunkState("carrierA-sbc1", sbc1, 1, True),
            TrunkState("carrierA-sbc2", sbc2, 1, True),
        ),
        routes=(
            DidRoute("+390212345600", "+390212345699", "carrierA-sbc1", pbx,
                     ("carrierA-sbc2",)),
            DidRoute("+390298765005", "+390298765017", "carrierA-sbc1", pbx,
                     ("carrierA-sbc2",)),
        ),
    )


async def test_calls_follow_the_plan(
    edge: LabKamailio,
    actuator: KamailioActuator,
    uas: Uas,
    tmp_path: Path,
) -> None:
    desired, logs = _peers(uas)
    pbx_log, sbc1_log, sbc2_log = logs["pbx"], logs["sbc1"], logs["sbc2"]
    carrier_side = ("127.0.0.1", edge.carrier_port)
    pbx_side = ("127.0.0.1", edge.pbx_port)

    steps, result = await actuator.reconcile(desired)
    assert result.ok, result.errors
    assert not steps.empty
    actual = await actuator.observe()
    assert actuator.plan(desired, actual).empty, actuator.plan(desired, actual)
    assert {t.name for t in actual.targets} == {"carrierA-sbc1", "carrierA-sbc2"}

    # Inbound: a DID of range 1 (one block) and one of range 2 (split blocks) reach the PBX.
    for did in ("+390212345642", "+390298765011"):
        code, err = await call(tmp_path, "kam_uac.xml", carrier_side, did, "+4930123456")
        assert code == 0, err + edge.log_tail()
    assert len(invites(pbx_log)) == 2
    # An unknown DID, and one just outside range 2, get 404.
    for did in ("+390299999999", "+390298765018"):
        code, err = await call(tmp_path, "kam_uac_404.xml", carrier_side, did, "+4930123456")
        assert code == 0, err + edge.log_tail()

    # Outbound from the PBX with a DID as caller: leaves through sbc1, caller ID kept.
    code, err = await call(tmp_path, "kam_uac.xml", pbx_side, "+4930999000", "+390212345601")
    assert code == 0, err + edge.log_tail()
    (sent,) = invites(sbc1_log)
    assert "sip:+390212345601@" in sent.split("From:", 1)[1].splitlines()[0]
    assert invites(sbc2_log) == []

    # The plan leaves sbc1 (tripped, in maintenance...): its ranges name sbc2 alone, sbc1's
    # set is disabled once no block names it, and the next outbound call goes to sbc2.
    moved = replace(desired, routes=tuple(replace(r, trunk="carrierA-sbc2", fallback=())
                                          for r in desired.routes))
    steps, result = await actuator.reconcile(moved)
    assert result.ok, result.errors
    assert steps.steps[-1] == SetTrunkState(1, desired.trunks[0].uri, "d"), steps
    assert actuator.plan(moved, await actuator.observe()).empty
    code, err = await call(tmp_path, "kam_uac.xml", pbx_side, "+4930999000", "+390298765005")
    assert code == 0, err + edge.log_tail()
    assert len(invites(sbc1_log)) == 1 and len(invites(sbc2_log)) == 1

    # A hand change at the edge (sbc1 enabled again, a block pointed back at it) is seen
    # by observe and put back by the next reconcile.
    rpc = actuator.client
    await rpc.call("dispatcher.set_state", "a", 1, desired.trunks[0].uri)
    await rpc.call("htable.sets", "did", "+3902123456xx", f"1|{desired.routes[0].destination_uri}")
    drift = actuator.plan(moved, await actuator.observe())
    assert len(drift.steps) == 2, drift
    steps, result = await actuator.reconcile(moved)
    assert result.ok and actuator.plan(moved, await actuator.observe()).empty
    code, err = await call(tmp_path, "kam_uac.xml", pbx_side, "+4930999000", "+390212345601")
    assert code == 0, err + edge.log_tail()
    assert len(invites(sbc1_log)) == 1 and len(invites(sbc2_log)) == 2

    # Kamailio restarted: empty again; one reconcile pushes everything and calls work.
    edge.restart()
    after = await actuator.observe()
    assert after.dids == {} and after.targets == ()
    steps, result = await actuator.reconcile(desired)
    assert result.ok, result.errors
    assert actuator.plan(desired, await actuator.observe()).empty
    code, err = await call(tmp_path, "kam_uac.xml", carrier_side, "+390212345699", "+4930123456")
    assert code == 0, err + edge.log_tail()
    code, err = await call(tmp_path, "kam_uac.xml", pbx_side, "+4930999000", "+390212345600")
    assert code == 0, err + edge.log_tail()
    assert len(invites(sbc1_log)) == 2


async def test_failed_trunk_is_counted_and_skipped(
    edge: LabKamailio,
    actuator: KamailioActuator,
    uas: Uas,
    tmp_path: Path,
) -> None:
    """A trunk that does not answer INVITEs: the call goes on via the next, and is counted."""
    pbx_port, _ = uas("pbx")
    sbc2_port, sbc2_log = uas("sbc2")
    dead = free_port(socket.SOCK_DGRAM)  # nobody listens: every INVITE times out
    desired = _plan(
        f"sip:127.0.0.1:{pbx_port}", f"sip:127.0.0.1:{dead}", f"sip:127.0.0.1:{sbc2_port}"
    )
    _, result = await actuator.reconcile(desired)
    assert result.ok, result.errors
    assert await actuator.failures() == {}
    code, err = await call(
        tmp_path, "kam_uac.xml", ("127.0.0.1", edge.pbx_port), "+4930999000", "+390212345601"
    )
    assert code == 0, err + edge.log_tail()
    assert len(invites(sbc2_log)) == 1
    assert await actuator.failures() == {"carrierA-sbc1": 1}


async def test_push_cost_of_1000_ranges(actuator: KamailioActuator) -> None:
    """1,000 ranges of 100 DIDs (100,000 numbers): one key each; measured, then in sync."""
    routes = tuple(
        DidRoute(f"+3902{i:05d}00", f"+3902{i:05d}99", "t1", "sip:127.0.0.1:5999")
        for i in range(1000)
    )
    desired = EdgePlan(trunks=(TrunkState("t1", "sip:127.0.0.1:5998", 1, True),), routes=routes)
    steps, result = await actuator.reconcile(desired)
    assert result.ok, result.errors[:3]
    assert len(steps.steps) == 1001
    print(f"\npush of 1,000 ranges: {result.calls} RPCs in {result.seconds:.3f} s")
    actual = await actuator.observe()
    assert len(actual.dids) == 1000
    assert actuator.plan(desired, actual).empty
    assert result.seconds < 60  # generous: a few seconds here


async def test_each_trunks_calls_leave_from_the_address_lifeline_names(
    edge: LabKamailio,
    actuator: KamailioActuator,
    uas: Uas,
    tmp_path: Path,
) -> None:
    """Via and Record-Route toward the carrier name the trunk's source socket (the link it
    uses now), so the carrier's BYE and re-INVITEs come back over that link; a failover
    to the other address changes them for the next call."""
    plan, logs = _peers(uas)
    sbc1_log = logs["sbc1"]
    pbx_side = ("127.0.0.1", edge.pbx_port)

    for source in (SECOND_UPLINK, "127.0.0.1"):
        desired = replace(plan, trunks=tuple(replace(t, source=source) for t in plan.trunks))
        steps, result = await actuator.reconcile(desired)
        assert result.ok and not steps.warnings, (result.errors, steps.warnings)
        held = await actuator.settings()
        assert held == {"socket::carrierA-sbc1": source, "socket::carrierA-sbc2": source}
        code, err = await call(tmp_path, "kam_uac.xml", pbx_side, "+4930999000",
                               "+390212345601")
        assert code == 0, err + edge.log_tail()
        sent = invites(sbc1_log)[-1]
        assert header_values(sent, "Via")[0].startswith(f"SIP/2.0/UDP {source}:{edge.carrier_port}")
        # Double Record-Route: the carrier side's entry first, then the PBX side's.
        routes = header_values(sent, "Record-Route")
        assert f"sip:{source}:{edge.carrier_port};" in routes[0], routes
        assert "0.0.0.0" not in sent

    # A source the edge has no socket on: calls leave from the default and it is reported.
    desired = replace(plan, trunks=tuple(replace(t, source="127.0.0.9") for t in plan.trunks))
    steps, result = await actuator.reconcile(desired)
    assert result.ok and len(steps.warnings) == 2, steps
    assert await actuator.settings() == {}
    code, err = await call(tmp_path, "kam_uac.xml", pbx_side, "+4930999000", "+390212345601")
    assert code == 0, err + edge.log_tail()
    assert header_values(invites(sbc1_log)[-1], "Via")[0].startswith(
        f"SIP/2.0/UDP 127.0.0.1:{edge.carrier_port}")


async def test_a_call_to_a_registration_contact_is_routed_by_the_to_user(
    edge: LabKamailio,
    actuator: KamailioActuator,
    uas: Uas,
    tmp_path: Path,
) -> None:
    """Carriers send calls for a registration trunk to its Contact (R-URI user
    lifeline-<trunk>) with the dialled DID in To: the PBX gets them with the DID."""
    pbx_port, pbx_log = uas("pbx")
    sbc_port, _ = uas("sbc1")
    _, result = await actuator.reconcile(_plan(
        f"sip:127.0.0.1:{pbx_port}", f"sip:127.0.0.1:{sbc_port}", f"sip:127.0.0.1:{sbc_port}"))
    assert result.ok, result.errors
    scenario = tmp_path / "to_contact.xml"
    text = (SIPP_DIR / "kam_uac.xml").read_text()
    assert "INVITE sip:[service]@" in text
    scenario.write_text(text.replace("INVITE sip:[service]@", "INVITE sip:lifeline-carrier-r@"))
    carrier_side = ("127.0.0.1", edge.carrier_port)
    code, err = await call(tmp_path, str(scenario), carrier_side, "+390212345642", "+4930123")
    assert code == 0, err + edge.log_tail()
    (got,) = invites(pbx_log)
    assert got.split("INVITE ", 1)[1].startswith("sip:+390212345642@")
    # Not a DID of ours in To: refused like any unknown number.
    scenario_404 = tmp_path / "to_contact_404.xml"
    scenario_404.write_text((SIPP_DIR / "kam_uac_404.xml").read_text().replace(
        "INVITE sip:[service]@", "INVITE sip:lifeline-carrier-r@"))
    code, err = await call(tmp_path, str(scenario_404), carrier_side, "+390299999999", "+49301")
    assert code == 0, err + edge.log_tail()
