"""DID continuity end to end: the real daemon, Kamailio in the site, sipp SBCs and PBX, real calls.

Each test builds a lab, starts the site's telephony (``lab.sipsite``) and lifeline with its
trunks, destinations and DID plan, waits until every trunk is up and no DID is unroutable,
checks that calls to and from every DID range work, then breaks one thing (an SBC, a fibre,
all trunks of a range, Kamailio itself) and checks what lifeline reports and that calls work
again. Every test compares the plan (status and ``/api/v1/dids`` for a sample of each range)
before and after: a DID may change trunk, never leave the plan. Timings are loose bounds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from controller.runtime.journal import read_events
from tests.integration.conftest import SIP_LAB
from tests.lab.lifelined import LifelineProcess
from tests.lab.sipsite import (
    DID_RANGES,
    SipSite,
    header_values,
    site_ready,
)
from tests.lab.topology import Lab
from tests.lab.wait import until

pytestmark = SIP_LAB

A_DID = "+390212345601"  # carrier A: sbc1, then sbc2
B_DID = "+390298765401"  # carrier B: sbc1 only


def samples() -> list[str]:
    """First, a middle and last number of each DID range."""
    out: list[str] = []
    for numbers, _ in DID_RANGES:
        first, last = (int(n) for n in numbers.replace("+", "").split("-"))
        out += [f"+{n}" for n in (first, (first + last) // 2, last)]
    return out


def dids_lookup(daemon: LifelineProcess, number: str) -> tuple[int, dict[str, Any]]:
    """GET /api/v1/dids?number=... over the daemon's unix socket."""

    async def fetch() -> tuple[int, dict[str, Any]]:
        conn = aiohttp.UnixConnector(path=str(daemon.socket))
        async with aiohttp.ClientSession(
            connector=conn, timeout=aiohttp.ClientTimeout(total=3)
        ) as session, session.get("http://lifeline/api/v1/dids",
                                  params={"number": number}) as resp:
            doc: dict[str, Any] = await resp.json()
            return resp.status, doc

    return asyncio.run(fetch())


def plan_snapshot(daemon: LifelineProcess) -> dict[str, Any]:
    """The plan as an operator sees it: totals from status, then each sample's range."""
    st = daemon.status()
    assert st is not None
    snap: dict[str, Any] = {"ranges": st["dids"]["ranges"], "numbers": st["dids"]["numbers"]}
    for number in samples():
        code, doc = dids_lookup(daemon, number)
        assert code == 200, (number, doc)
        snap[number] = doc["range"]
    return snap


def edge_hops(invite: str) -> tuple[str, str]:
    """(top Via host, first Record-Route host) of an INVITE the edge sent (IPv4 lab)."""
    via = header_values(invite, "Via")[0].split()[1].split(";")[0]
    route = header_values(invite, "Record-Route")[0].removeprefix("<sip:").split(";")[0]
    return via.split(":")[0], route.split(":")[0]


def trunk(st: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(next(t for t in st["trunks"] if t["name"] == name))


Site = tuple[Lab, SipSite, LifelineProcess, dict[str, Any]]


@pytest.fixture
def site(lab: Lab, tmp_path: Path) -> Iterator[Site]:
    """A ready site: telephony up, daemon running, all trunks up, plan pushed, baseline calls
    checked; yields the plan snapshot taken then. The lab kills every process by PID."""
    sip = SipSite(lab, tmp_path / "sip").start()
    daemon = sip.start_daemon(tmp_path / "state")  # and waited for until site_ready
    before = plan_snapshot(daemon)
    assert before["ranges"] == 2 and before["numbers"] == 150
    pbx = sip.peers["pbx"]
    for number in samples():
        assert sip.inbound(number) == 0, f"inbound call to {number} failed"
        assert pbx.invites_to(number) >= 1, f"{number} did not reach the PBX"
    assert dids_lookup(daemon, A_DID)[1]["trunk"] == "carrier-a-sbc1"
    assert sip.outbound(A_DID) == 0
    assert sip.peers["carrier-a-sbc1"].invites_from(A_DID) == 1
    assert sip.outbound(B_DID) == 0
    assert sip.peers["carrier-b-sbc1"].invites_from(B_DID) == 1
    yield lab, sip, daemon, before
    # Whatever the test did, no DID left the plan.
    assert plan_snapshot(daemon) == before


def test_sbc_failover_and_recovery(site: Site) -> None:
    """(a) carrier-a-sbc1 dies: its DIDs move to sbc2 and calls from them work; (e) it comes
    back: after the hold-down its DIDs return to it."""
    _, sip, daemon, _ = site
    sbc1, sbc2 = sip.peers["carrier-a-sbc1"], sip.peers["carrier-a-sbc2"]
    killed = time.monotonic()
    sip.stop_peer("carrier-a-sbc1")
    first_bad: float | None = None
    first_good_after: float | None = None
    results: list[tuple[int, float]] = []  # (sipp exit code, call duration)
    for _ in range(30):  # bounded: one call every ~0.5 s, at most ~30 calls
        t = time.monotonic()
        code = sip.outbound(A_DID, timeout=4)
        results.append((code, round(time.monotonic() - t, 2)))
        if code != 0 and first_bad is None:
            first_bad = t
        if code == 0 and sbc2.invites_from(A_DID) >= 1:
            first_good_after = t
            if dids_lookup(daemon, A_DID)[1]["trunk"] == "carrier-a-sbc2":
                break
        time.sleep(max(0.0, 0.5 - (time.monotonic() - t)))
    st = daemon.wait_for(lambda s: trunk(s, "carrier-a-sbc1")["state"] == "down", 10,
                         "carrier-a-sbc1 down")
    assert trunk(st, "carrier-a-sbc2")["state"] == "up"
    code, doc = dids_lookup(daemon, A_DID)
    assert code == 200 and doc["trunk"] == "carrier-a-sbc2", doc
    assert first_good_after is not None, f"no good call through sbc2: {results}"
    gap = 0.0 if first_bad is None else first_good_after - first_bad
    print(f"\n(a) sbc1 killed -> good call via sbc2 after {first_good_after - killed:.2f} s; "
          f"failed-call gap {gap:.2f} s; (exit, seconds) per call {results}")
    # Calls now go straight to sbc2, and inbound from the carrier still reaches the PBX.
    n2 = sbc2.invites_from(A_DID)
    assert sip.outbound(A_DID) == 0 and sbc2.invites_from(A_DID) == n2 + 1
    assert sip.inbound(A_DID, sbc="carrier-a-sbc2") == 0

    # (e) recovery: back on sbc1 only after its hold-down (2 s).
    sip.start_sbc("carrier-a-sbc1")
    restarted = time.monotonic()
    until(lambda: dids_lookup(daemon, A_DID)[1]["trunk"] == "carrier-a-sbc1", 15, 0.1,
          "DIDs back on carrier-a-sbc1")
    back_after = time.monotonic() - restarted
    assert back_after >= 1.5, f"DIDs returned after {back_after:.2f} s: hold-down ignored?"
    print(f"(e) sbc1 restarted -> DIDs back on it after {back_after:.2f} s")
    n1 = sbc1.invites_from(A_DID)
    until(lambda: sip.outbound(A_DID) == 0 and sbc1.invites_from(A_DID) > n1, 10, 0.5,
          "a call from A_DID via sbc1")
    daemon.wait_for(site_ready, 10, "everything ready again")


def test_sbc_that_answers_options_but_fails_calls(site: Site) -> None:
    """The edge signal: carrier-a-sbc1 answers OPTIONS 200 but every INVITE 503. After a
    few calls fail at the edge (each carried on by sbc2 within the call) its DIDs move to
    sbc2 and stay there for the trip's hold-down, though OPTIONS keep answering (no flap);
    tried again and still failing, it trips for twice as long; repaired, its DIDs return."""
    _, sip, daemon, _ = site
    sbc1 = sip.peers["carrier-a-sbc1"]
    journal = daemon.state_dir / "journal.sqlite3"

    def on(name: str) -> bool:
        return bool(dids_lookup(daemon, A_DID)[1]["trunk"] == name)

    def calls_until_moved() -> int:
        for n in range(1, 21):  # bounded: 3 failures trip it, read every 2 s
            assert sip.outbound(A_DID) == 0, "the edge should carry the call on via sbc2"
            if on("carrier-a-sbc2"):
                return n
            time.sleep(0.3)
        raise AssertionError("the DIDs never left the trunk that fails calls")

    sip.stop_peer("carrier-a-sbc1")
    sip.start_sbc("carrier-a-sbc1", "uas_503.xml")
    daemon.wait_for(site_ready, 15, "sbc1 answering OPTIONS again")
    until(lambda: on("carrier-a-sbc1"), 15, 0.2, "DIDs on carrier-a-sbc1")

    placed = calls_until_moved()
    st = daemon.status()
    assert st is not None
    sbc1_doc = trunk(st, "carrier-a-sbc1")
    assert sbc1_doc["state"] == "up", sbc1_doc  # OPTIONS alone would keep it in use
    assert "held off 6 s" in sbc1_doc["edge_tripped"], sbc1_doc
    doc = dids_lookup(daemon, A_DID)[1]
    assert "OPTIONS answered but" in doc["reason"], doc
    assert sbc1.invites_from(A_DID) >= 3

    # No flap: back on sbc1 only when the 6 s hold ends, not as soon as nothing fails.
    started = time.monotonic()
    until(lambda: on("carrier-a-sbc1"), 15, 0.2, "DIDs tried on carrier-a-sbc1 again")
    held = time.monotonic() - started
    assert held >= 4.0, f"DIDs came back after {held:.1f} s: the trip did not hold"
    placed_again = calls_until_moved()
    st = daemon.status()
    assert st is not None
    assert "held off 12 s" in trunk(st, "carrier-a-sbc1")["edge_tripped"]
    assert 'lifeline_trunk_edge_trips_total{trunk="carrier-a-sbc1"} 2.0' in (
        daemon.metrics_text())
    trips = [e for e in read_events(journal, 500) if e.data.get("peer") == "edge"]
    assert len(trips) == 2, trips
    print(f"\nedge signal: moved after {placed} and {placed_again} calls (all carried on "
          f"by sbc2); first trip held {held:.1f} s")

    # Repaired: its DIDs return (at once if its restart looked like an outage to OPTIONS,
    # else when the 12 s trip ends) and calls go through it again.
    sip.stop_peer("carrier-a-sbc1")
    sip.start_sbc("carrier-a-sbc1")
    until(lambda: on("carrier-a-sbc1"), 20, 0.2, "DIDs back on the repaired carrier-a-sbc1")
    n1 = sbc1.invites_from(A_DID)
    until(lambda: sip.outbound(A_DID) == 0 and sbc1.invites_from(A_DID) > n1, 10, 0.5,
          "a call via the repaired sbc1")
    daemon.wait_for(site_ready, 10, "everything ready again")


def test_fibre_failover_keeps_dids(site: Site) -> None:
    """(b) fibre-a blackholed: the route moves to fibre-b, trunks are up over it and calls
    work again, inbound now sent to the site's fibre-b address."""
    lab, sip, daemon, _ = site
    sbc1 = sip.peers["carrier-a-sbc1"]
    fibre_a, fibre_b = (str(lab.link(n).site_addr) for n in ("fibre-a", "fibre-b"))
    # Calls name the link they leave by in Via and Record-Route (never 0.0.0.0), so the
    # carrier's in-dialog requests come back over it.
    assert edge_hops(sbc1.last_invite()) == (fibre_a, fibre_a)
    started = time.monotonic()
    cut = time.time()
    lab.faults.blackhole("fibre-a")
    daemon.wait_active(["fibre-b"], timeout=15)
    daemon.wait_for(site_ready, 20, "trunks up over fibre-b")
    ready = time.monotonic() - started
    started = time.monotonic()
    until(lambda: sip.outbound(A_DID) == 0 and sip.outbound(B_DID) == 0, 15, 0.5,
          "calls through fibre-b")
    took = time.monotonic() - started
    assert edge_hops(sbc1.last_invite()) == (fibre_b, fibre_b)
    for number in samples():
        assert sip.inbound(number, link="fibre-b") == 0, f"inbound {number} via fibre-b"
    assert sip.inbound(A_DID, link="fibre-a", timeout=2) != 0  # the blackhole holds
    # The OPTIONS lost over fibre-a while it failed were fibre-a's loss, not the carriers':
    # no trunk went down and no DID was unroutable on the way (peerpath, rule 6).
    journal = [e for e in read_events(daemon.state_dir / "journal.sqlite3", 500)
               if e.ts >= cut]
    assert [e.message for e in journal if e.data.get("peer") == "trunk"
            and e.data.get("new") == "down"] == []
    assert [e.message for e in journal if e.kind == "error"] == []
    print(f"\n(b) fibre-a blackholed -> all ready on fibre-b after {ready:.2f} s, "
          f"calls good {took:.2f} s later")


def test_all_trunks_of_a_range_fail(site: Site) -> None:
    """(c) carrier-b-sbc1 dies: its range is unroutable (status, metrics, journal); the
    other range keeps working."""
    _, sip, daemon, _ = site
    b_range = DID_RANGES[1][0]
    sip.stop_peer("carrier-b-sbc1")
    st = daemon.wait_for(lambda s: s["dids"]["unroutable"] == [b_range], 10,
                         "carrier B's range unroutable")
    assert st["dids"]["unroutable_numbers"] == 50
    metrics = daemon.metrics_text()
    line = next(ln for ln in metrics.splitlines() if ln.startswith("lifeline_dids_unroutable "))
    assert float(line.split()[1]) == 50
    errors = read_events(daemon.state_dir / "journal.sqlite3", 500, "error")
    assert any(b_range in e.message for e in errors), errors
    code, doc = dids_lookup(daemon, B_DID)
    assert code == 200 and doc["unroutable"] and doc["range"] == b_range, doc
    assert sip.outbound(B_DID, timeout=3) != 0  # no trunk left for it
    for number in samples()[:3]:
        assert sip.inbound(number) == 0
    assert sip.outbound(A_DID) == 0
    # Recovery, so the fixture's comparison sees the same plan.
    sip.start_sbc("carrier-b-sbc1")
    daemon.wait_for(site_ready, 15, "carrier B back")
    until(lambda: sip.outbound(B_DID) == 0, 10, 0.5, "a call from B_DID")


def test_kamailio_restart_gets_plan_again(site: Site) -> None:
    """(d) Kamailio restarted empty: lifeline pushes the plan again and calls work."""
    _, sip, daemon, _ = site
    sip.stop_kamailio()
    daemon.wait_for(lambda s: s["edges"][0]["error"] is not None, 10, "the push failing")
    sip.start_kamailio()
    restarted = time.monotonic()
    daemon.wait_for(site_ready, 15, "plan pushed again")
    started = time.monotonic()
    until(lambda: sip.outbound(A_DID) == 0 and sip.inbound(B_DID) == 0, 10, 0.5,
          "calls after the restart")
    took = time.monotonic() - started
    print(f"\n(d) Kamailio restarted -> in sync after {time.monotonic() - restarted - took:.2f}"
          f" s, calls good {took:.2f} s later")
    for number in samples():
        assert sip.inbound(number) == 0
