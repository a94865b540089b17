"""What the plan says is what the edge does: real daemon, real Kamailio from the reference
cfg, sipp SBCs and PBX, real calls. A trunk the plan does not name for a range gets no
INVITE of that range, whatever the reason it was left: tripped by the edge's failure
signal (OPTIONS 200, INVITE 503), in maintenance (config or `lifeline maintenance`), or
healthy but second in the range's order. Counted at the SBCs (sipp's message logs), not
read from lifeline. The figures printed are the issue's: calls that reached the 503 SBC
after the trip (goal 0), calls that failed with the edge's in-call failover off (goal:
only those before the trip).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import SIP_LAB
from tests.integration.test_sip_e2e import A_DID, dids_lookup, trunk
from tests.lab.lifelined import LifelineProcess
from tests.lab.sipsite import SipSite, site_ready
from tests.lab.topology import Lab
from tests.lab.wait import until

pytestmark = SIP_LAB

SBC1, SBC2 = "carrier-a-sbc1", "carrier-a-sbc2"
A_BLOCK = "+3902123456xx"  # A's range (...600-...699) is this one block at the edge
CALLS_AFTER = 15  # calls placed while the plan has left sbc1 (bounded, ~0.3 s each)


def long_trip(config: dict[str, Any]) -> None:
    """A trip that holds for the whole count (the lab's default is 6 s)."""
    for t in config["trunks"]:
        t["edge_signal"]["hold_down"] = "60s"


def on(daemon: LifelineProcess, name: str) -> bool:
    return bool(dids_lookup(daemon, A_DID)[1]["trunk"] == name)


def start(lab: Lab, tmp_path: Path, *, failover: bool = True,
          edit: Any = None) -> tuple[SipSite, LifelineProcess]:
    sip = SipSite(lab, tmp_path / "sip", trunk_failover=failover).start()
    daemon = sip.start_daemon(tmp_path / "state", edit=edit)
    until(lambda: on(daemon, SBC1), 15, 0.2, "A's DIDs on sbc1")
    return sip, daemon


@pytest.fixture(params=[True, False], ids=["in-call-failover-on", "in-call-failover-off"])
def failover(request: pytest.FixtureRequest) -> Iterator[bool]:
    yield bool(request.param)


def test_a_tripped_trunk_gets_no_invite(lab: Lab, tmp_path: Path, failover: bool) -> None:
    """sbc1 answers OPTIONS 200 and every INVITE 503. Calls fail on it until the edge's
    failure signal trips it; from then on every call goes straight to sbc2 and sbc1 sees
    none, in-call failover on or off; repaired, the DIDs and the calls come back to it."""
    sip, daemon = start(lab, tmp_path, failover=failover, edit=long_trip)
    sbc1, sbc2 = sip.peers[SBC1], sip.peers[SBC2]
    sip.stop_peer(SBC1)
    sip.start_sbc(SBC1, "uas_503.xml")
    daemon.wait_for(site_ready, 15, "sbc1 answering OPTIONS again")
    until(lambda: on(daemon, SBC1), 15, 0.2, "A's DIDs on sbc1")

    before_failed = before_calls = 0
    sbc2_before = sbc2.invites_from(A_DID)
    for _ in range(30):  # bounded: the trip needs 3 failures within 10 s, read every 2 s
        before_calls += 1
        # A failed call waits for sipp's timeout: kept short so 3 fit in the lab's window
        # (a real site's calls overlap; these are one at a time).
        before_failed += sip.outbound(A_DID, timeout=1.5) != 0
        if on(daemon, SBC2):
            break
        time.sleep(0.3)
    else:
        raise AssertionError("the DIDs never left the trunk that fails calls")
    st = daemon.status()
    assert st is not None and trunk(st, SBC1)["state"] == "up"  # OPTIONS still answered
    assert trunk(st, SBC1)["edge_tripped"], trunk(st, SBC1)
    at_trip1, at_trip2 = sbc1.invites_from(A_DID), sbc2.invites_from(A_DID)
    if failover:
        assert before_failed == 0  # each carried on by sbc2 within the call
    else:
        # Nothing carries them: they fail at sbc1, until the edge holds the trip (a call
        # may reach sbc2 between the push and the status the loop reads).
        assert before_failed >= 3
        assert at_trip2 - sbc2_before == before_calls - before_failed

    after_failed = 0
    for _ in range(CALLS_AFTER):
        after_failed += sip.outbound(A_DID, timeout=4) != 0
    assert on(daemon, SBC2), "the trip should still hold (60 s)"
    reached_sbc1 = sbc1.invites_from(A_DID) - at_trip1
    reached_sbc2 = sbc2.invites_from(A_DID) - at_trip2
    print(f"\n503 SBC, in-call failover {'on' if failover else 'off'}: tripped after "
          f"{before_calls} calls ({before_failed} failed); then {CALLS_AFTER} calls: "
          f"{reached_sbc1} reached the 503 SBC, {reached_sbc2} went to sbc2, "
          f"{after_failed} failed")
    assert reached_sbc1 == 0
    assert reached_sbc2 == CALLS_AFTER and after_failed == 0

    # Repaired: taken down for the repair (OPTIONS prove it down, which ends the trip) and
    # back with a scenario that answers calls; its DIDs return after the hold-down (2 s).
    sip.stop_peer(SBC1)
    daemon.wait_for(lambda s: trunk(s, SBC1)["state"] == "down", 10, "sbc1 down")
    sip.start_sbc(SBC1)
    started = time.monotonic()
    until(lambda: on(daemon, SBC1), 20, 0.2, "DIDs back on the repaired sbc1")
    assert time.monotonic() - started >= 1.5  # not before the hold-down
    n1 = sbc1.invites_from(A_DID)
    until(lambda: sip.outbound(A_DID) == 0 and sbc1.invites_from(A_DID) > n1, 10, 0.5,
          "a call via the repaired sbc1")


def lifeline_cli(daemon: LifelineProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """The operator's `lifeline` command, talking to the daemon over its unix socket."""
    return subprocess.run([sys.executable, "-m", "controller", *args,
                           "--socket", str(daemon.socket)],
                          capture_output=True, text=True, timeout=20, check=False)


def edge_rpc(lab: Lab, sip: SipSite, method: str, *params: str | int) -> Any:
    """A JSON-RPC to the edge by hand, from inside the site (where its RPC port listens),
    as an operator with kamcmd would; the answer's result."""
    body = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1})
    code = ("import sys, urllib.request as u; "
            f"r = u.urlopen(u.Request({sip.rpc_url!r}, data=sys.argv[1].encode(), "
            "headers={'Content-Type': 'application/json'}), timeout=3); "
            "sys.stdout.write(r.read().decode())")
    out = lab.run(lab.site, [sys.executable, "-c", code, body]).stdout
    return json.loads(out).get("result")


def did_value(lab: Lab, sip: SipSite, key: str) -> str | None:
    """The edge's `did` htable value for one block key, or None."""
    for entry in edge_rpc(lab, sip, "htable.dump", "did") or []:
        for slot in entry.get("slot", []):
            if slot.get("name") == key:
                return str(slot.get("value"))
    return None


def sbc1_target(lab: Lab, sip: SipSite) -> tuple[int, str, str]:
    """sbc1 at the edge: (dispatcher set, URI, flags: "A..." active, "D..." disabled)."""
    (found,) = [(int(rec["SET"]["ID"]), str(t["DEST"]["URI"]), str(t["DEST"]["FLAGS"]))
                for rec in edge_rpc(lab, sip, "dispatcher.list")["RECORDS"]
                for t in rec["SET"]["TARGETS"]
                if f"name={SBC1};" in t["DEST"]["ATTRS"]["BODY"]]
    return found


def calls_reaching(sip: SipSite, count: int) -> dict[str, int]:
    """Place ``count`` calls from A_DID; INVITEs each SBC of carrier A got for them."""
    before = {n: sip.peers[n].invites_from(A_DID) for n in (SBC1, SBC2)}
    for _ in range(count):
        assert sip.outbound(A_DID, timeout=4) == 0
    return {n: sip.peers[n].invites_from(A_DID) - before[n] for n in (SBC1, SBC2)}


def test_maintenance_and_second_in_order_get_no_call(lab: Lab, tmp_path: Path) -> None:
    """Both SBCs healthy: sbc2, second in the range's order, gets none of its calls. sbc1
    put in maintenance through the API (`lifeline maintenance`), then through the config
    (SIGHUP): it gets none, though it answers OPTIONS; lifted, it gets them back."""
    sip, daemon = start(lab, tmp_path)
    assert calls_reaching(sip, 5) == {SBC1: 5, SBC2: 0}

    done = lifeline_cli(daemon, "maintenance", SBC1, "--reason", "SBC swap, lab")
    assert done.returncode == 0, done.stderr
    assert "in maintenance, gets no calls (SBC swap, lab (set by the operator))" in done.stdout
    until(lambda: on(daemon, SBC2), 5, 0.1, "DIDs off sbc1")
    st = daemon.status()
    assert st is not None and trunk(st, SBC1)["state"] == "up"
    assert trunk(st, SBC1)["maintenance"] == "SBC swap, lab (set by the operator)"
    assert 'lifeline_trunk_maintenance{trunk="carrier-a-sbc1"} 1.0' in daemon.metrics_text()
    assert calls_reaching(sip, 5) == {SBC1: 0, SBC2: 5}
    shown = lifeline_cli(daemon, "status")
    assert "IN MAINTENANCE, gets no calls" in shown.stdout, shown.stdout

    # A hand change at the edge (the range pointed back at sbc1's set, sbc1 enabled) is put
    # back by the next cycle (reconcile_interval 1 s): the edge holds what the plan says.
    block = A_BLOCK
    planned = did_value(lab, sip, block)
    assert planned is not None and planned.startswith("2|"), planned  # sbc2's set alone
    edge_rpc(lab, sip, "htable.sets", "did", block, "1|" + planned.split("|", 1)[1])
    set1, uri1, flags1 = sbc1_target(lab, sip)
    assert set1 == 1 and flags1.startswith("D")  # its own set, disabled: no range names it
    edge_rpc(lab, sip, "dispatcher.set_state", "a", set1, uri1)  # raises if refused
    until(lambda: did_value(lab, sip, block) == planned
          and sbc1_target(lab, sip)[2].startswith("D"), 5, 0.1, "the hand change put back")
    assert calls_reaching(sip, 3) == {SBC1: 0, SBC2: 3}

    off = lifeline_cli(daemon, "maintenance", SBC1, "--off")
    assert off.returncode == 0 and "in service" in off.stdout, off
    until(lambda: on(daemon, SBC1), 5, 0.1, "DIDs back on sbc1")
    assert calls_reaching(sip, 3) == {SBC1: 3, SBC2: 0}

    # Through the config: maintenance: "<reason>" and a reload.
    config = yaml.safe_load(daemon.config_path.read_text())
    next(t for t in config["trunks"] if t["name"] == SBC1)["maintenance"] = "carrier works"
    daemon.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    assert daemon.pid is not None
    os.kill(daemon.pid, signal.SIGHUP)
    until(lambda: on(daemon, SBC2), 10, 0.1, "DIDs off sbc1 after the reload")
    assert calls_reaching(sip, 5) == {SBC1: 0, SBC2: 5}
    unknown = lifeline_cli(daemon, "maintenance", "no-such-trunk")
    assert unknown.returncode == 2 and "no trunk named 'no-such-trunk'" in unknown.stderr
