"""Power and a dead PBX end to end in the SIP site lab: the real daemon in the site reads
the real upsd (NUT's dummy-ups driver on the site's own loopback, tests.lab.nut) and
pushes its DID plan to the real Kamailio; sipp carriers place real calls, counted at the
PBX and at the DR PBX (a second sipp UAS on the LAN host).

- Mains lost (OB, runtime well above the margin): the outage shows after the grace time
  and not before, and every DID stays on the PBX.
- Runtime below the margin: a call to every DID range reaches the DR PBX, not the PBX; a
  call out from the DR PBX's host still leaves with the DID as caller at the carrier's SBC.
- Mains back: the DIDs stay on DR through the hold-down (a call placed then still rings
  there), then return, and calls reach the PBX again.
- The PBX killed: its DIDs go to DR (cause ``destination_down``) and calls follow; the PBX
  restarted, they come back. (test_promql_fit kills the PBX too, but only to see a metric;
  no other test places calls through a dead PBX's DR.)

Lab-pace settings (UPS read every 500 ms, grace 2 s, hold-down 4 s); timing asserts are
loose bounds, the figures are bench_power's.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import SIP_LAB
from tests.integration.test_sip_e2e import dids_lookup, samples
from tests.lab.lifelined import LifelineProcess
from tests.lab.nut import Upsd, nut_skip_reason
from tests.lab.sipsite import (
    DID_RANGES,
    DR_PORT,
    PBX_PORT,
    SipPeer,
    SipSite,
    header_values,
    plan_ready,
)
from tests.lab.topology import Lab
from tests.lab.wait import until

pytestmark = [*SIP_LAB, pytest.mark.skipif(nut_skip_reason() is not None,
                                            reason=str(nut_skip_reason()))]

A_DID = "+390212345601"  # carrier A's range (sbc1 first)
B_DID = "+390298765401"  # carrier B's range (sbc1 only)
# Which SBC carries each range's calls (tests.lab.sipsite.DID_RANGES).
SBC_OF = {"+3902123456": "carrier-a-sbc1", "+3902987654": "carrier-b-sbc1"}
GRACE = 2.0
HOLD_DOWN = 4.0
MARGIN = 60.0


def sbc_for(number: str) -> str:
    return next(sbc for prefix, sbc in SBC_OF.items() if number.startswith(prefix))


def power_section(upsd: Upsd) -> dict[str, Any]:
    """The ``power:`` section at lab pace for the lab's upsd in the site namespace."""
    return {
        "grace": f"{GRACE:g}s", "hold_down": f"{HOLD_DOWN:g}s",
        "runtime_margin": f"{MARGIN:g}s",
        "ups": [upsd.ups_config()],
    }


@pytest.fixture
def upsd(lab: Lab, tmp_path: Path) -> Iterator[Upsd]:
    with Upsd(tmp_path / "nut", ns=lab.site).running() as server:
        yield server


@pytest.fixture
def site(lab: Lab, tmp_path: Path) -> Iterator[SipSite]:
    sip = SipSite(lab, tmp_path / "sip")
    try:
        sip.start()
        sip.start_uas("dr", lab.lan, str(lab.lan_host_addr), DR_PORT)
        yield sip
    finally:
        sip.stop()


def _start(sip: SipSite, state_dir: Path,
           edit: Callable[[dict[str, Any]], None] | None = None) -> LifelineProcess:
    daemon = sip.start_daemon(state_dir, edit=edit)
    daemon.wait_for(lambda st: any(d["name"] == "dr" and d["state"] == "up"
                                   for d in st["destinations"]), 20, "the DR PBX up")
    return daemon


def _stop(daemon: LifelineProcess) -> None:
    assert daemon.stop() == 0, daemon.log()[-3000:]


def _metric(text: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    assert found is not None, f"{series} not served"
    return float(found.group(1))


def _destinations(daemon: LifelineProcess) -> dict[str, tuple[str, str | None]]:
    """number -> (destination, dr_cause) for the first, middle and last of each range."""
    out = {}
    for number in samples():
        code, doc = dids_lookup(daemon, number)
        assert code == 200, (number, doc)
        out[number] = (doc["destination"], doc["dr_cause"])
    return out


def _all_on(destination: str, cause: str | None) -> Callable[[dict[str, Any]], bool]:
    """A status whose plan sends every range to ``destination`` (``cause``: why on DR;
    None: on the PBX, none on DR) and is pushed to the edge."""
    ranges = sorted(numbers for numbers, _ in DID_RANGES)

    def ready(st: dict[str, Any]) -> bool:
        if not plan_ready(st):
            return False
        on_dr = sorted((d["range"], d["destination"], d["cause"]) for d in st["dids"]["on_dr"])
        return on_dr == ([] if cause is None else [(r, destination, cause) for r in ranges])
    return ready


def _calls_reach(sip: SipSite, to: SipPeer, other: SipPeer) -> None:
    """A carrier's call to every sample of every range lands at ``to``, not at ``other``."""
    for number in samples():
        before = (to.invites_to(number), other.invites_to(number))
        assert sip.inbound(number, sbc=sbc_for(number)) == 0, f"call to {number} failed"
        assert (to.invites_to(number), other.invites_to(number)) == (
            before[0] + 1, before[1]), f"{number} did not ring at {to.name} alone"


def _outbound_keeps_the_did(sip: SipSite, source: str) -> None:
    """A call out from ``source``'s host with each range's DID as caller reaches that
    range's carrier SBC presenting the same DID."""
    for did in (A_DID, B_DID):
        sbc = sip.peers[sbc_for(did)]
        seen = sbc.invites_from(did)
        assert sip.outbound(did, source=source) == 0, f"outbound from {did} failed"
        assert sbc.invites_from(did) == seen + 1, f"{did} did not leave via {sbc.name}"
        (caller,) = header_values(sbc.last_invite(), "From")
        assert caller.startswith(f"<sip:{did}@"), caller


def _first_seen(daemon: LifelineProcess, goal: str,
                conditions: dict[str, Callable[[dict[str, Any]], bool]],
                timeout: float) -> dict[str, float]:
    """Poll the status until ``conditions[goal]`` holds; when each condition first held
    (monotonic seconds), to tell what came before what."""
    seen: dict[str, float] = {}

    def poll() -> bool:
        st = daemon.status()
        if st is None:
            return False
        now = time.monotonic()
        for name, cond in conditions.items():
            if name not in seen and cond(st):
                seen[name] = now
        return goal in seen

    until(poll, timeout, 0.05, goal, detail=lambda: f"seen so far: {seen}; "
          f"status: {daemon.status()}")
    return seen


def test_a_power_failure_moves_every_did_to_the_dr_pbx_and_back(
        lab: Lab, site: SipSite, upsd: Upsd, tmp_path: Path) -> None:
    sip = site
    pbx, dr = sip.peers["pbx"], sip.peers["dr"]

    def with_power(config: dict[str, Any]) -> None:
        config["power"] = power_section(upsd)

    daemon = _start(sip, tmp_path / "state", with_power)
    try:
        daemon.wait_for(lambda st: st["power"] is not None and st["power"]["state"] == "mains",
                        15, "mains read from upsd")
        assert set(_destinations(daemon).values()) == {("pbx", None)}

        # (a) Mains lost, plenty of runtime: an outage after the grace time, not before.
        upsd.set(status="OB DISCHRG", charge=90, runtime=1200, input_voltage=0)
        seen = _first_seen(daemon, "outage", {
            "battery": lambda st: st["power"]["phase"] == "battery",
            "outage": lambda st: st["power"]["outage"],
        }, 20)
        assert "battery" in seen, "the outage came without a battery phase first"
        waited = seen["outage"] - seen["battery"]
        assert waited >= GRACE - 0.5, f"outage after {waited:.2f} s: grace ({GRACE:g} s) ignored"
        assert waited < GRACE + 5, waited
        st = daemon.status()
        assert st is not None
        assert st["power"]["phase"] == "outage", st["power"]
        assert "generator did not take over" in st["power"]["reason"], st["power"]
        metrics = daemon.metrics_text()
        assert _metric(metrics, "lifeline_power_outage") == 1
        assert _metric(metrics, 'lifeline_site_power_state{state="on_battery"}') == 1
        # Runtime 20 m is far above the 60 s margin: the desks still work, no DID moves.
        assert set(_destinations(daemon).values()) == {("pbx", None)}
        assert sip.inbound(A_DID) == 0 and pbx.invites_to(A_DID) == 1
        assert dr.invites_to(A_DID) == 0

        # (b) Runtime below the margin (no LB yet): every range to DR, both ways.
        upsd.set(runtime=MARGIN / 2, charge=20)
        daemon.wait_for(_all_on("dr", "power"), 20,
                        "every range on DR for power, the plan pushed")
        assert set(_destinations(daemon).values()) == {("dr", "power")}
        st = daemon.status()
        assert st is not None
        assert st["power"]["phase"] == "dr", st["power"]
        assert "runtime 30 s below the 1m margin" in st["power"]["reason"], st["power"]
        assert {d["cause"] for d in st["dids"]["on_dr"]} == {"power"}
        assert _metric(daemon.metrics_text(),
                       'lifeline_dids_on_dr_by_cause{cause="power"}') == 150
        _calls_reach(sip, dr, pbx)
        _outbound_keeps_the_did(sip, source="dr")
        # LB raised on top: still DR (a new cause of the same event), still at the DR PBX.
        upsd.set(status="OB LB DISCHRG", runtime=MARGIN / 4, charge=8)
        daemon.wait_for(lambda st: st["power"]["state"] == "battery_low", 10, "LB seen")
        assert set(_destinations(daemon).values()) == {("dr", "power")}

        # (c) Mains back: the DIDs stay on DR for the hold-down, then return.
        upsd.set(status="OL CHRG", charge=10, runtime=90, input_voltage=230)
        daemon.wait_for(lambda st: st["power"]["state"] == "mains", 10, "mains seen")
        mains_seen = time.monotonic()  # the cycle that saw mains started the hold-down
        # Within the hold-down: a call still rings at the DR PBX.
        n = dr.invites_to(B_DID)
        assert sip.inbound(B_DID, sbc="carrier-b-sbc1") == 0 and dr.invites_to(B_DID) == n + 1
        st = daemon.status()
        assert st is not None
        assert st["power"]["phase"] == "dr" and "mains back" in st["power"]["reason"], st
        daemon.wait_for(_all_on("pbx", None), 25, "every range back on the PBX")
        held = time.monotonic() - mains_seen
        assert held >= HOLD_DOWN - 1.0, f"DIDs back {held:.2f} s into a {HOLD_DOWN:g} s hold"
        st = daemon.status()
        assert st is not None
        assert st["power"]["phase"] == "normal", st["power"]
        assert not st["power"]["outage"]
        assert set(_destinations(daemon).values()) == {("pbx", None)}
        metrics = daemon.metrics_text()
        assert _metric(metrics, "lifeline_power_outage") == 0
        assert _metric(metrics, 'lifeline_dids_on_dr_by_cause{cause="power"}') == 0
        _calls_reach(sip, pbx, dr)
        print(f"\noutage {waited:.2f} s after the battery phase began (grace {GRACE:g} s); "
              f"DIDs back {held:.2f} s after mains was seen (hold-down {HOLD_DOWN:g} s)")
    finally:
        _stop(daemon)


def test_a_dead_pbx_sends_its_dids_to_the_dr_pbx_and_back(
        lab: Lab, site: SipSite, tmp_path: Path) -> None:
    sip = site
    pbx, dr = sip.peers["pbx"], sip.peers["dr"]
    daemon = _start(sip, tmp_path / "state")
    try:
        _calls_reach(sip, pbx, dr)
        killed = time.monotonic()
        sip.stop_peer("pbx")
        daemon.wait_for(_all_on("dr", "destination_down"), 20,
                        "every range on DR for the dead PBX, the plan pushed")
        took = time.monotonic() - killed
        assert set(_destinations(daemon).values()) == {("dr", "destination_down")}
        code, doc = dids_lookup(daemon, A_DID)
        assert code == 200 and doc["disaster_recovery"] is True, doc
        assert "pbx" in doc["reason"] and "down" in doc["reason"], doc
        _calls_reach(sip, dr, pbx)
        _outbound_keeps_the_did(sip, source="dr")

        sip.start_uas("pbx", lab.lan, str(lab.lan_host_addr), PBX_PORT)
        restarted = time.monotonic()
        daemon.wait_for(_all_on("pbx", None), 30, "every range back on the PBX")
        back = time.monotonic() - restarted
        assert set(_destinations(daemon).values()) == {("pbx", None)}
        _calls_reach(sip, pbx, dr)
        # Detection: 3 missed OPTIONS a second apart; return: the destination's 10 s
        # hold-down (controller/runtime/trunks.py). Loose bounds.
        assert took < 10, took
        assert back >= 5, f"back on the PBX after {back:.2f} s: hold-down ignored?"
        print(f"\nPBX killed -> DIDs on DR in {took:.2f} s; restarted -> back in {back:.2f} s")
    finally:
        _stop(daemon)
