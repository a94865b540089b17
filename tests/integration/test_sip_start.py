"""A calm start, end to end: starting or restarting lifeline pages nothing and moves no DID.

The real daemon in the lab's site with Kamailio, sipp SBCs and PBX (``lab.sipsite``). At a
first start the kernel has no default route until lifeline proves a link up and installs
one, so every OPTIONS sent before fails on the site, not at a carrier; lifeline used to
call every trunk down for it and journal every DID range unroutable until the hold-down
passed. A restart (SIGTERM, start again with the same state dir) finds the route in place.
Both runs place calls while it happens and sample ``/metrics`` all along; afterwards the
journal must hold no "unroutable" error, no trunk gone down and no DID range moved off its
first trunk. Timings are loose bounds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from controller.runtime.journal import read_events
from tests.integration.conftest import SIP_LAB
from tests.integration.test_sip_e2e import A_DID, B_DID
from tests.lab.lifelined import LifelineProcess
from tests.lab.sipsite import DID_RANGES, SipSite, site_ready
from tests.lab.topology import Lab

pytestmark = SIP_LAB

FIRST_TRUNK = {numbers: trunks[0] for numbers, trunks in DID_RANGES}


class UnroutableWatch(threading.Thread):
    """Reads ``lifeline_dids_unroutable`` off the daemon's /metrics every 0.1 s until
    stopped; a daemon that is not answering (stopped, starting) is simply not sampled."""

    def __init__(self, daemon: LifelineProcess) -> None:
        super().__init__(daemon=True)
        self.daemon_proc = daemon
        self.values: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            try:
                text = self.daemon_proc.metrics_text(timeout=1.0)
            except OSError:
                continue
            for line in text.splitlines():
                if line.startswith("lifeline_dids_unroutable "):
                    self.values.append(float(line.split()[1]))

    def stop(self) -> list[float]:
        self.done.set()
        self.join(10)
        return self.values


class CallLoop(threading.Thread):
    """Calls to and from both DID ranges, one after the other, until stopped (bounded by
    ``limit`` calls): (what, sipp's exit code) per call."""

    def __init__(self, sip: SipSite, limit: int = 200) -> None:
        super().__init__(daemon=True)
        self.sip, self.limit = sip, limit
        self.results: list[tuple[str, int]] = []
        self.done = threading.Event()

    def run(self) -> None:
        calls: tuple[tuple[str, Callable[[], int]], ...] = (
            ("out A", lambda: self.sip.outbound(A_DID, timeout=4)),
            ("out B", lambda: self.sip.outbound(B_DID, timeout=4)),
            ("in A", lambda: self.sip.inbound(A_DID, timeout=4)),
            ("in B", lambda: self.sip.inbound(B_DID, timeout=4)))
        while not self.done.is_set() and len(self.results) < self.limit:
            what, call = calls[len(self.results) % len(calls)]
            self.results.append((what, call()))

    def stop(self) -> list[tuple[str, int]]:
        self.done.set()
        self.join(30)
        return self.results


def alarms(daemon: LifelineProcess) -> list[str]:
    """What in the journal would page or move a DID: an unroutable range, a trunk gone
    down, a range decided onto another than its first trunk (or routable *again*)."""
    out = []
    for e in read_events(daemon.state_dir / "journal.sqlite3", 5000):
        if "unroutable" in e.message or "routable again" in e.message:
            out.append(f"{e.kind} {e.subject}: {e.message}")
        elif e.kind == "transition" and e.data.get("peer") == "trunk" \
                and e.data.get("new") == "down":
            out.append(f"trunk down: {e.message}")
        elif e.kind == "decision" and e.subject == "dids":
            numbers = e.message.split(": ", 1)[0]
            if e.data.get("trunk") != FIRST_TRUNK.get(numbers):
                out.append(f"DIDs moved: {e.message}")
    return out


def plan_pushed(st: dict[str, object]) -> bool:
    edges = st.get("edges")
    return isinstance(edges, list) and bool(edges) and all(e["in_sync"] for e in edges)


def test_a_start_with_calls_going_on_pages_nothing_and_moves_no_did(
        lab: Lab, tmp_path: Path) -> None:
    sip = SipSite(lab, tmp_path / "sip").start()
    daemon = sip.start_daemon(tmp_path / "state", ready_timeout=None)
    watch = UnroutableWatch(daemon)
    watch.start()
    calls = CallLoop(sip)
    try:
        daemon.wait_for(plan_pushed, 20, "the first plan pushed to Kamailio")
        started = time.monotonic()
        calls.start()
        st = daemon.wait_for(site_ready, 20, "every trunk up, the plan whole")
        took = time.monotonic() - started
        time.sleep(2.0)  # a few calls more with everything known
    finally:
        results = calls.stop()
        values = watch.stop()
    failed = [r for r in results if r[1] != 0]
    print(f"\nplan pushed -> all trunks up after {took:.2f} s; {len(results)} calls, "
          f"{len(values)} metric samples (max {max(values, default=0):g})")
    assert len(results) >= 8 and not failed, f"calls failed at start: {failed} of {results}"
    assert values and max(values) == 0, f"lifeline_dids_unroutable during start: {values}"
    assert alarms(daemon) == []
    assert {t["name"]: t["dids"] for t in st["trunks"]} == {
        "carrier-a-sbc1": 100, "carrier-a-sbc2": 0, "carrier-b-sbc1": 50}


def test_a_restart_under_calls_drops_no_call_and_pages_nothing(
        lab: Lab, tmp_path: Path) -> None:
    """Calls go on while lifeline is stopped and started again: Kamailio keeps the plan
    and the kernel the route meanwhile, and the new daemon adopts the route and pushes the
    same plan. The journal of the whole run (the first start too) holds no alarm."""
    sip = SipSite(lab, tmp_path / "sip").start()
    daemon = sip.start_daemon(tmp_path / "state")  # and waited for until site_ready
    watch = UnroutableWatch(daemon)
    calls = CallLoop(sip)
    watch.start()
    calls.start()
    try:
        time.sleep(1.0)
        assert daemon.stop() == 0  # SIGTERM: the routes and Kamailio's plan stay in place
        stopped = len(calls.results)
        time.sleep(1.0)
        daemon.start()  # the same config and state dir
        daemon.wait_for(site_ready, 20, "every trunk up again after the restart")
        restarted = len(calls.results)
        time.sleep(2.0)
    finally:
        results = calls.stop()
        values = watch.stop()
    failed = [r for r in results if r[1] != 0]
    print(f"\n{len(results)} calls across the restart ({restarted - stopped} while stopped "
          f"or starting), {len(values)} metric samples (max {max(values, default=0):g})")
    assert restarted > stopped, "no call was placed while the daemon restarted"
    assert not failed, f"calls failed across the restart: {failed} of {results}"
    assert values and max(values) == 0, f"lifeline_dids_unroutable across restart: {values}"
    assert alarms(daemon) == []


def test_a_restart_onto_a_fibre_that_died_meanwhile_pages_nothing(
        lab: Lab, tmp_path: Path) -> None:
    """fibre-a dies while lifeline is stopped (an upgrade, say): the route found at start
    leads nowhere, so OPTIONS fail until lifeline has moved it to fibre-b. That is the
    link's fault, found and fixed in about a second, not the carriers': no trunk goes
    down, no range is unroutable (fails on the old code: every trunk down, both ranges
    unroutable for a hold-down after the route moved)."""
    sip = SipSite(lab, tmp_path / "sip").start()
    daemon = sip.start_daemon(tmp_path / "state")  # and waited for until site_ready
    assert daemon.stop() == 0
    lab.faults.blackhole("fibre-a")
    daemon.start()
    watch = UnroutableWatch(daemon)
    watch.start()
    try:
        daemon.wait_active(["fibre-b"], timeout=15)
        daemon.wait_for(site_ready, 20, "every trunk up over fibre-b")
        time.sleep(1.0)
    finally:
        values = watch.stop()
    assert values and max(values) == 0, f"lifeline_dids_unroutable after restart: {values}"
    assert alarms(daemon) == []
    assert sip.outbound(A_DID) == 0 and sip.outbound(B_DID) == 0
