"""``lifeline demo``'s telephony act: a trunk failover with calls going on through it.

On a fresh lab it starts the site's telephony (``lab.sipsite``: Kamailio in the site, sipp
SBCs in inet, the PBX on the LAN) and the real daemon with the trunks and DID plan, prints the
DID plan as the daemon reports it, then keeps a bounded background load of calls running (one
outbound call from a carrier-A DID and one inbound call to it every ~0.5 s) while it kills
carrier-a-sbc1, brings it back, puts it in maintenance with ``lifeline maintenance`` and
lifts that, and kills carrier-b-sbc1. The timeline prints what the status
API and ``/api/v1/dids`` say as it changes, and the calls completed each second. Each step has
an expectation (what the daemon reports, and carrier-A calls succeeding after the switch);
the outcomes go into the demo's summary. This module plays and reports; lifeline decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tests.lab.lifelined import LifelineProcess
from tests.lab.sipsite import DID_RANGES, SipSite, plan_ready
from tests.lab.topology import Lab
from tests.lab.wait import until

__all__ = [
    "A_DID",
    "B_DID",
    "Call",
    "CallLoad",
    "SipOutcome",
    "SipStep",
    "View",
    "run_sip_act",
    "sip_scenario",
    "sip_summary",
    "tally",
]

A_DID = "+390212345601"  # carrier A's range: carrier-a-sbc1, then carrier-a-sbc2
B_DID = "+390298765401"  # carrier B's range: carrier-b-sbc1 only
A_RANGE, B_RANGE = DID_RANGES[0][0], DID_RANGES[1][0]
SAMPLES = {A_RANGE: A_DID, B_RANGE: B_DID}  # the number asked for each range's trunk


@dataclass(frozen=True, slots=True)
class Call:
    direction: str  # "out" (PBX -> carrier) or "in" (carrier -> PBX)
    started: float  # time.monotonic()
    ended: float
    ok: bool


def tally(calls: list[Call], since: float, until: float,
          direction: str | None = None) -> tuple[int, int]:
    """(ok, failed) among calls that ended in [since, until), optionally of one direction."""
    chosen = [c for c in calls if since <= c.ended < until
              and (direction is None or c.direction == direction)]
    ok = sum(c.ok for c in chosen)
    return ok, len(chosen) - ok


class CallLoad:
    """One outbound and one inbound call every ``interval``, each direction on its own
    thread so a slow failing call in one does not hold up the other. Bounded by
    ``max_seconds`` and a call count, and stopped by ``stop()``."""

    def __init__(self, sip: SipSite, *, interval: float = 0.5, max_seconds: float = 150.0,
                 call_timeout: float = 5.0) -> None:
        self.sip = sip
        self.interval = interval
        self.max_seconds = max_seconds
        self.call_timeout = call_timeout
        # The carrier sends inbound calls from an SBC it has alive: the act moves this.
        self.inbound_sbc = "carrier-a-sbc1"
        self._calls: list[Call] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(d,), name=f"calls-{d}",
                                          daemon=True) for d in ("out", "in")]

    def start(self) -> CallLoad:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.call_timeout + 10)

    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def _run(self, direction: str) -> None:
        deadline = time.monotonic() + self.max_seconds
        for _ in range(int(self.max_seconds / self.interval) + 1):
            started = time.monotonic()
            if self._stop.is_set() or started >= deadline:
                return
            try:
                if direction == "out":
                    code = self.sip.outbound(A_DID, timeout=self.call_timeout)
                else:
                    code = self.sip.inbound(A_DID, sbc=self.inbound_sbc,
                                            timeout=self.call_timeout)
            except (OSError, RuntimeError):
                code = -1  # the lab is going away under us: a failed call, not a crash
            with self._lock:
                self._calls.append(Call(direction, started, time.monotonic(), code == 0))
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))


@dataclass(frozen=True, slots=True)
class View:
    """What the daemon reports at one moment: its status and each range's trunk."""

    status: dict[str, Any]
    ranges: dict[str, str]  # DID range -> trunk, or "unroutable"
    reasons: dict[str, str]  # DID range -> the lookup's reason


@dataclass
class SipStep:
    title: str
    action: Callable[[SipSite, CallLoad], None] | None
    expect: str  # short, for the summary
    done: Callable[[View], bool]
    timeout: float
    min_wait: float = 0.0  # the switch must not come sooner (the hold-down)


@dataclass
class SipOutcome:
    step: SipStep
    ok: bool
    switch_after: float | None
    out_calls: tuple[int, int]  # (ok, failed) during the step
    in_calls: tuple[int, int]
    note: str = ""


def _trunk(st: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(next(t for t in st["trunks"] if t["name"] == name))


def _ready(v: View) -> bool:
    return plan_ready(v.status) and v.ranges == {A_RANGE: "carrier-a-sbc1",
                                                 B_RANGE: "carrier-b-sbc1"}


def maintenance_cli(daemon: LifelineProcess) -> Callable[[str, bool], None]:
    """Runs the operator's ``lifeline maintenance TRUNK [--off]`` against ``daemon``."""

    def run(trunk: str, on: bool) -> None:
        args = ["--reason", "SBC swap (demo)"] if on else ["--off"]
        done = subprocess.run([sys.executable, "-m", "controller", "maintenance", trunk,
                               *args, "--socket", str(daemon.socket)],
                              capture_output=True, text=True, timeout=20, check=False)
        print(f"   $ lifeline maintenance {trunk} {' '.join(args)}\n   "
              + (done.stdout or done.stderr).strip(), flush=True)

    return run


def sip_scenario(hold_down: float,
                 maintenance: Callable[[str, bool], None] | None = None) -> list[SipStep]:
    """The act's steps; ``hold_down`` is the trunks' recovery hold-down in seconds;
    ``maintenance`` (the operator's command) adds the maintenance steps."""

    def kill_a1(sip: SipSite, load: CallLoad) -> None:
        load.inbound_sbc = "carrier-a-sbc2"  # carrier A now reaches the site from its other SBC
        sip.stop_peer("carrier-a-sbc1")

    def restart_a1(sip: SipSite, load: CallLoad) -> None:
        sip.start_sbc("carrier-a-sbc1")
        load.inbound_sbc = "carrier-a-sbc1"

    def kill_b1(sip: SipSite, _: CallLoad) -> None:
        sip.stop_peer("carrier-b-sbc1")

    def a_on(trunk: str, other: str, state: str) -> Callable[[View], bool]:
        return lambda v: (v.ranges.get(A_RANGE) == trunk
                          and _trunk(v.status, other)["state"] == state)

    def b_unroutable(v: View) -> bool:
        dids = v.status.get("dids") or {}
        return (dids.get("unroutable") == [B_RANGE] and v.ranges.get(B_RANGE) == "unroutable"
                and v.ranges.get(A_RANGE) == "carrier-a-sbc1")

    def in_maintenance(v: View) -> bool:
        sbc1 = _trunk(v.status, "carrier-a-sbc1")
        return (v.ranges.get(A_RANGE) == "carrier-a-sbc2" and sbc1["state"] == "up"
                and sbc1.get("maintenance") is not None)

    steps = [
        SipStep("trunks up: calls to and from carrier A's DIDs", None, "A:sbc1,B:sbc1",
                _ready, 20),
        SipStep("carrier-a-sbc1 killed: DIDs move to carrier-a-sbc2", kill_a1,
                "A:sbc2", a_on("carrier-a-sbc2", "carrier-a-sbc1", "down"), 10),
        SipStep("carrier-a-sbc1 back: DIDs return after hold-down",
                restart_a1, "A:sbc1", a_on("carrier-a-sbc1", "carrier-a-sbc1", "up"),
                hold_down + 15, min_wait=hold_down * 0.9),
    ]
    if maintenance is not None:
        op = maintenance
        steps += [
            SipStep("carrier-a-sbc1 in maintenance: up, yet gets no call",
                    lambda _s, _l: op("carrier-a-sbc1", True), "A:sbc2", in_maintenance, 10),
            SipStep("maintenance lifted: DIDs back on carrier-a-sbc1",
                    lambda _s, _l: op("carrier-a-sbc1", False), "A:sbc1",
                    a_on("carrier-a-sbc1", "carrier-a-sbc1", "up"), 10),
        ]
    return [*steps, SipStep("carrier-b-sbc1 killed: B unroutable, A calls go on", kill_b1,
                            "B:none", b_unroutable, 10)]


class SipTimeline:
    """Prints trunk states, each range's trunk and the calls of every second, as they change."""

    def __init__(self, t0: float, load: CallLoad | None = None) -> None:
        self.t0 = t0
        self.load = load
        self.trunks: dict[str, str] = {}
        self.ranges: dict[str, str] = {}
        self.edge_errors: dict[str, str | None] = {}
        self.per_trunk: str = ""
        self.next_second: float | None = None

    def stamp(self, at: float | None = None) -> str:
        return f"{(time.monotonic() if at is None else at) - self.t0:7.2f}s"

    def seed(self, v: View) -> None:
        """Take ``v`` as the starting point without printing it (the plan is printed whole)."""
        with contextlib.redirect_stdout(io.StringIO()):
            self.update(v)

    def update(self, v: View) -> None:
        self.tick()  # the seconds passed first, so the lines stay in time order
        stamp = self.stamp()
        for t in v.status["trunks"]:
            if self.trunks.get(t["name"]) != t["state"]:
                self.trunks[t["name"]] = t["state"]
                print(f"  {stamp}  trunk {t['name']:<15} {t['state']:<5} {t['reason']}",
                      flush=True)
        for rng, trunk in v.ranges.items():
            if self.ranges.get(rng) != trunk:
                old = self.ranges.get(rng, "none")
                self.ranges[rng] = trunk
                reason = v.reasons.get(rng, "")
                reason = reason if len(reason) <= 90 else reason[:89] + "..."
                print(f"  {stamp}  dids  {rng} {old} -> {trunk} "
                      f"(/api/v1/dids?number={SAMPLES[rng]}: {reason})", flush=True)
        dids = v.status.get("dids") or {}
        per_trunk = (", ".join(f"{t['name']} {t['dids']}" for t in v.status["trunks"])
                     + f"; unroutable {dids.get('unroutable_numbers', '?')}")
        if per_trunk != self.per_trunk:
            self.per_trunk = per_trunk
            print(f"  {stamp}  dids  per trunk (status): {per_trunk}", flush=True)
        for e in v.status["edges"]:
            if self.edge_errors.get(e["name"], "") != e["error"]:
                self.edge_errors[e["name"]] = e["error"]
                if e["error"] is not None:
                    print(f"  {stamp}  edge  {e['name']}: {e['error']}", flush=True)

    def tick(self) -> None:
        """One line per whole second passed: the calls that ended in it."""
        if self.load is None:
            return
        now = time.monotonic()
        if self.next_second is None:
            self.next_second = now + 1.0
        while now >= self.next_second:
            since = self.next_second - 1.0
            calls = self.load.calls()
            o_ok, o_bad = tally(calls, since, self.next_second, "out")
            i_ok, i_bad = tally(calls, since, self.next_second, "in")
            print(f"  {self.stamp(self.next_second)}  calls out {o_ok} ok {o_bad} failed, "
                  f"in {i_ok} ok {i_bad} failed", flush=True)
            self.next_second += 1.0


def dids_lookup(daemon: LifelineProcess, number: str) -> dict[str, Any] | None:
    """GET /api/v1/dids?number=... over the daemon's unix socket (None if it did not answer)."""

    async def fetch() -> dict[str, Any] | None:
        conn = aiohttp.UnixConnector(path=str(daemon.socket))
        async with aiohttp.ClientSession(
            connector=conn, timeout=aiohttp.ClientTimeout(total=3)
        ) as session, session.get("http://lifeline/api/v1/dids",
                                  params={"number": number}) as resp:
            if resp.status != 200:
                return None
            doc: dict[str, Any] = await resp.json()
            return doc

    try:
        return asyncio.run(fetch())
    except (TimeoutError, OSError, aiohttp.ClientError):
        return None


def observe(daemon: LifelineProcess) -> View | None:
    st = daemon.status()
    if st is None or not st.get("trunks"):
        return None
    ranges: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for rng, number in SAMPLES.items():
        doc = dids_lookup(daemon, number)
        if doc is None:
            return None
        ranges[rng] = "unroutable" if doc["unroutable"] else str(doc["trunk"])
        reasons[rng] = str(doc.get("reason", ""))
    return View(st, ranges, reasons)


def print_plan(v: View) -> None:
    dids = v.status["dids"]
    print(f"DID plan (status API): {dids['numbers']} numbers in {dids['ranges']} ranges, "
          f"{dids['unroutable_numbers']} unroutable", flush=True)
    for rng, capable in DID_RANGES:
        print(f"  {rng}  -> {v.ranges.get(rng, '?'):<15} (capable: {', '.join(capable)})",
              flush=True)
    print("  trunks: " + ", ".join(f"{t['name']} {t['state']} ({t['dids']} DIDs)"
                                   for t in v.status["trunks"]), flush=True)


def good_calls_after(load: CallLoad, at: float, within: float, watch: Callable[[], None],
                     settle: float = 0.0) -> dict[str, bool]:
    """Which directions ("out", "in") had a good call placed at or after ``at``, waited for
    until both have and ``settle`` has passed, or ``within`` seconds from ``at``; ``watch``
    runs on each poll (the timeline goes on while the calls are waited for)."""
    good = {"out": False, "in": False}

    def both() -> bool:
        for c in load.calls():
            if c.started >= at and c.ok:
                good[c.direction] = True
        if all(good.values()) and time.monotonic() >= at + settle:
            return True
        watch()
        return False

    with contextlib.suppress(TimeoutError):  # the caller judges from what it returns
        until(both, at + within - time.monotonic(), 0.1, "good calls both ways")
    return good


def _play(site: SipSite, daemon: LifelineProcess, load: CallLoad, step: SipStep,
          timeline: SipTimeline, settle: float) -> SipOutcome:
    print(f"\n== {step.title}", flush=True)
    begun = time.monotonic()
    if step.action is not None:
        step.action(site, load)

    def done() -> bool:
        v = observe(daemon)
        if v is None:
            return False
        timeline.update(v)
        return step.done(v)

    switched: float | None = None
    with contextlib.suppress(TimeoutError):  # a step that does not play out is an outcome
        until(done, begun + step.timeout - time.monotonic(), 0.1, step.expect)
        switched = time.monotonic()
    # Watch on: carrier-A calls placed after the switch must succeed, both ways.
    def watch_on() -> None:
        v = observe(daemon)
        if v is not None:
            timeline.update(v)

    after_ok = ({"out": False, "in": False} if switched is None
                else good_calls_after(load, switched, settle + 6.0, watch_on, settle))
    ended = time.monotonic()
    calls = load.calls()
    out_calls = tally(calls, begun, ended, "out")
    in_calls = tally(calls, begun, ended, "in")
    slowest = max((c.ended - c.started for c in calls if begun <= c.ended < ended),
                  default=0.0)
    after = None if switched is None or step.action is None else switched - begun
    ok, note = switched is not None, ""
    if switched is None:
        note = f"not seen within {step.timeout:g} s: {step.expect}"
    elif after is not None and after < step.min_wait:
        ok, note = False, f"switched after {after:.1f} s, before the hold-down"
    elif not all(after_ok.values()):
        failed = [d for d, good in after_ok.items() if not good]
        ok, note = False, f"no good {'/'.join(failed)} call after the switch"
    print(f"   -> {step.expect}"
          + (f"; switched {after:.2f} s after the change" if after is not None else "")
          + f"; calls out {out_calls[0]} ok {out_calls[1]} failed, "
            f"in {in_calls[0]} ok {in_calls[1]} failed (slowest {slowest:.2f} s)"
          + (f"; {note}" if note else ""),
          flush=True)
    return SipOutcome(step, ok, after, out_calls, in_calls, note)


def sip_summary(outcomes: list[SipOutcome]) -> str:
    def s(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} s"

    rows = [f"{'telephony step':<52} {'expect':<13} {'switch':>8} {'out ok/failed':>13} "
            f"{'in ok/failed':>12}  result"]
    for o in outcomes:
        rows.append(f"{o.step.title[:52]:<52} {o.step.expect:<13} {s(o.switch_after):>8} "
                    f"{o.out_calls[0]:>6}/{o.out_calls[1]:<6} {o.in_calls[0]:>5}/{o.in_calls[1]:<6}"
                    "  " + ("ok" if o.ok else f"FAILED: {o.note}"))
    return "\n".join(rows)


def run_sip_act(quick: bool = False, keep_going: bool = False) -> list[SipOutcome]:
    """Play the act on a fresh lab; its outcomes (fewer than the steps if it stopped)."""
    hold_down = 3.0 if quick else 5.0
    outcomes: list[SipOutcome] = []
    workdir = Path(tempfile.mkdtemp(prefix="lifeline-demo-sip-"))
    try:
        with Lab() as lab:
            t0 = time.monotonic()
            def trunk_hold_down(config: dict[str, Any]) -> None:
                for trunk in config["trunks"]:
                    trunk["thresholds"]["hold_down"] = f"{hold_down:g}s"

            try:
                site = SipSite(lab, workdir / "sip").start()
                # Ready is judged below, with the DID lookups too.
                daemon = site.start_daemon(workdir / "state", edit=trunk_hold_down,
                                           ready_timeout=None)
            except (OSError, RuntimeError) as exc:  # TimeoutError is an OSError
                print(f"telephony did not start: {exc}", flush=True)
                return outcomes
            print(f"lab {lab.prefix.rstrip('-')}: Kamailio in {lab.site} (pid "
                  f"{site.kamailio.pid if site.kamailio else '?'}), SBCs "
                  + ", ".join(f"{n} ({p.addr})" for n, p in site.peers.items() if n != "pbx")
                  + f" in {lab.inet}, PBX {site.peers['pbx'].addr} on the LAN; "
                  f"lifeline pid {daemon.proc.pid}", flush=True)
            # The daemon's start-up (trunks found, then up after their first hold-down)
            # is not the scenario: wait for it quietly, then show the plan it settled on.
            def ready_view() -> View | None:
                v = observe(daemon)
                return v if v is not None and _ready(v) else None

            try:
                ready = until(ready_view, 20, 0.1, "trunks up, plan routable and pushed")
            except TimeoutError:
                print("telephony not ready within 20 s (trunks up, plan routable and pushed)"
                      f"; last status: {daemon.status()}", flush=True)
                return outcomes
            print(f"trunks up and plan pushed {time.monotonic() - t0:.2f} s after the start",
                  flush=True)
            timeline = SipTimeline(t0)
            timeline.seed(ready)
            print_plan(ready)
            print("calls: one outbound from and one inbound to "
                  f"{A_DID} every 0.5 s, in the background", flush=True)
            load = CallLoad(site).start()
            timeline.load = load
            try:
                for step in sip_scenario(hold_down, maintenance_cli(daemon)):
                    outcome = _play(site, daemon, load, step, timeline, settle=2.0)
                    outcomes.append(outcome)
                    if not outcome.ok and not keep_going:
                        break
            finally:
                load.stop()
            daemon.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return outcomes
