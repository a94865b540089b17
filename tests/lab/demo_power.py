"""``lifeline demo``'s power act: the site's UPS runs down and every number rings at the
disaster-recovery PBX, then comes back.

On a fresh lab it starts the site's telephony (``lab.sipsite``), a second sipp PBX on the
LAN host as the DR destination, a real upsd with NUT's dummy-ups driver on the site
namespace's own loopback (``lab.nut``), and the real daemon with a ``power:`` section at lab
pace (grace, runtime margin and hold-down in seconds). It prints the power policy and the
DID plan, keeps the telephony act's background calls going (``demo_sip.CallLoad``: one
inbound call to a carrier-A DID and one outbound call from it every ~0.5 s), and plays:
mains lost (``OB DISCHRG``) -> on battery past the grace (the page; the calls stay on the
PBX) -> runtime below the margin (the DIDs move to DR) -> calls ring at the DR PBX -> mains
back (``OL CHRG``: DR held for the hold-down) -> the calls return to the PBX. Where each
inbound call rang is read from the PBXes' own sipp message logs (one arrival per Call-ID,
with sipp's timestamp), so the figures are the callers' view: runtime low -> first call at
DR, mains back -> first call at the PBX again. This module plays and reports; lifeline
decides.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.lab.demo_sip import (
    A_DID,
    A_RANGE,
    Call,
    CallLoad,
    dids_lookup,
    good_calls_after,
    tally,
)
from tests.lab.lifelined import LifelineProcess
from tests.lab.nut import Upsd
from tests.lab.sipsite import DID_RANGES, DR_PORT, SipPeer, SipSite, plan_ready
from tests.lab.topology import Lab
from tests.lab.wait import until

__all__ = [
    "InviteLog",
    "PowerAct",
    "PowerFigures",
    "PowerOutcome",
    "PowerStep",
    "PowerTiming",
    "power_scenario",
    "power_summary",
    "run_power_act",
]

UPS = "rack-ups"
_SEPARATOR = "-" * 47  # sipp's -trace_msg puts one before every message
_STAMP_RE = re.compile(r"\s*(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)")
_CALL_ID_RE = re.compile(r"^(?:call-id|i)\s*:\s*(\S+)", re.I | re.M)


@dataclass(frozen=True, slots=True)
class PowerTiming:
    """The act's policy, at lab pace (an operator's defaults are minutes)."""

    grace: float
    runtime_margin: float
    hold_down: float
    interval: float = 0.5  # how often the daemon reads the UPS
    driver_poll: int = 1  # how often dummy-ups re-reads its file (NUT's default is 2 s)
    runtime_low: float = 90.0  # what the UPS says when its battery runs down

    @classmethod
    def for_demo(cls, quick: bool) -> PowerTiming:
        return cls(grace=2.0, runtime_margin=120.0, hold_down=3.0) if quick else cls(
            grace=3.0, runtime_margin=120.0, hold_down=5.0)


class InviteLog:
    """The inbound calls to ``called`` one sipp PBX received: monotonic arrival times, one
    per Call-ID (a retransmitted INVITE is the same call). Reads the message log's new bytes
    at each ``poll`` and only whole messages (sipp may be halfway through one)."""

    def __init__(self, peer: SipPeer, called: str) -> None:
        self.path = peer.message_log
        self.needle = f"INVITE sip:{called}@"
        self._offset = 0
        self._pending = ""
        self._seen: dict[str, float] = {}
        # sipp stamps messages with the wall clock (local time); the act runs on monotonic.
        self._to_monotonic = time.monotonic() - time.time()

    def poll(self) -> list[float]:
        with contextlib.suppress(FileNotFoundError), self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
            self._offset += len(data)
            self._pending += data.decode(errors="replace")
        *whole, self._pending = self._pending.split(_SEPARATOR)
        for chunk in whole:
            if "received" not in chunk or self.needle not in chunk:
                continue
            stamp, call_id = _STAMP_RE.match(chunk), _CALL_ID_RE.search(chunk)
            if stamp is None or call_id is None or call_id.group(1) in self._seen:
                continue
            wall = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S.%f").timestamp()
            self._seen[call_id.group(1)] = wall + self._to_monotonic
        return sorted(self._seen.values())


@dataclass(frozen=True, slots=True)
class PowerView:
    """What the daemon reports at one moment, and where the inbound calls rang so far."""

    status: dict[str, Any]
    power: dict[str, Any]
    destination: str | None  # A_DID's destination now
    dr_cause: str | None
    reason: str
    pbx: tuple[float, ...]  # arrival times of the inbound calls at the PBX
    dr: tuple[float, ...]  # and at the DR PBX

    @property
    def state(self) -> str:
        return str(self.power["state"])

    @property
    def phase(self) -> str:
        return str(self.power["phase"])

    @property
    def pushed(self) -> bool:
        return plan_ready(self.status)


Marks = dict[str, float]  # what happened when (monotonic): "mains lost", "runtime low", ...


@dataclass
class PowerStep:
    title: str
    action: Callable[[Upsd], None] | None
    expect: str  # short, for the summary
    done: Callable[[PowerView, Marks], bool]
    timeout: float
    mark: str | None = None  # the action's moment is recorded under this name
    since: str | None = None  # "took" counts from this mark (default: the step's start)
    min_wait: float = 0.0  # must not come sooner (the grace, the hold-down)
    dr_forbidden: bool = False  # an inbound call ringing at DR in this step fails it


@dataclass
class PowerOutcome:
    step: PowerStep
    ok: bool
    took: float | None
    placed: int  # calls (both ways) that ended during the step
    failed: int
    at_pbx: int  # inbound calls that rang at the PBX during the step
    at_dr: int
    note: str = ""


@dataclass(frozen=True, slots=True)
class PowerFigures:
    placed: int
    failed: int
    at_pbx: int
    at_dr: int
    to_dr_plan: float | None  # runtime low -> the daemon's plan on DR, pushed to the edge
    to_first_dr_call: float | None  # runtime low -> first inbound call at the DR PBX
    to_first_pbx_call: float | None  # mains back -> first inbound call at the PBX again


@dataclass
class PowerAct:
    timing: PowerTiming
    outcomes: list[PowerOutcome] = field(default_factory=list)
    figures: PowerFigures | None = None

    @property
    def passed(self) -> bool:
        return (len(self.outcomes) == len(power_scenario(self.timing))
                and all(o.ok for o in self.outcomes))


def power_scenario(t: PowerTiming) -> list[PowerStep]:
    """The act's steps, for the policy ``t``."""

    def mains_lost(ups: Upsd) -> None:
        ups.set(status="OB DISCHRG", charge=95, runtime=1500, input_voltage=0)

    def runtime_low(ups: Upsd) -> None:
        ups.set(runtime=t.runtime_low, charge=20)

    def mains_back(ups: Upsd) -> None:
        ups.set(status="OL CHRG", charge=21, runtime=600, input_voltage=230)

    def rang_since(calls: tuple[float, ...], marks: Marks, mark: str) -> bool:
        return mark in marks and any(at >= marks[mark] for at in calls)

    return [
        PowerStep("mains: calls to the DIDs ring at the PBX", None, "PBX",
                  lambda v, m: (v.state, v.phase, v.destination) == ("mains", "normal", "pbx")
                  and rang_since(v.pbx, m, "start"), 15, dr_forbidden=True),
        PowerStep("mains lost (OB DISCHRG): on battery, still the PBX", mains_lost,
                  "battery", lambda v, _: (v.state, v.phase, v.destination)
                  == ("on_battery", "battery", "pbx"), 10, mark="mains lost",
                  dr_forbidden=True),
        PowerStep(f"on battery past the {t.grace:g} s grace: outage paged", None, "outage",
                  lambda v, _: (v.phase, v.destination) == ("outage", "pbx"), t.grace + 10,
                  since="mains lost", min_wait=t.grace * 0.9, dr_forbidden=True),
        PowerStep(f"runtime low ({t.runtime_low:g} s < {t.runtime_margin:g} s margin): "
                  "DIDs to DR", runtime_low, "DR",
                  lambda v, _: (v.phase, v.destination, v.dr_cause) == ("dr", "dr", "power")
                  and v.pushed, 10, mark="runtime low"),
        PowerStep("calls ring at the DR PBX", None, "DR rings",
                  lambda v, m: rang_since(v.dr, m, "runtime low"), 10, since="runtime low"),
        PowerStep("mains back (OL CHRG): DR held for the hold-down", mains_back, "held",
                  lambda v, _: (v.state, v.phase, v.destination) == ("mains", "dr", "dr"),
                  10, mark="mains back"),
        PowerStep(f"after the {t.hold_down:g} s hold-down: calls return to the PBX", None,
                  "PBX rings", lambda v, m: (v.phase, v.destination) == ("normal", "pbx")
                  and v.pushed and rang_since(v.pbx, m, "mains back"), t.hold_down + 15,
                  since="mains back", min_wait=t.hold_down * 0.9),
    ]


class PowerTimeline:
    """Prints the site's power, the UPS's reading, where the DIDs go and the calls of every
    second, as they change; stamped with seconds since the act's start."""

    def __init__(self, t0: float, load: CallLoad) -> None:
        self.t0 = t0
        self.load = load
        self.shown: dict[str, str] = {}
        self.next_second: float | None = None
        self.rung = (0, 0)  # inbound arrivals at (PBX, DR) already counted by tick()

    def stamp(self, at: float | None = None) -> str:
        return f"{(time.monotonic() if at is None else at) - self.t0:7.2f}s"

    def _changed(self, key: str, text: str) -> bool:
        if self.shown.get(key) == text:
            return False
        self.shown[key] = text
        return True

    def update(self, v: PowerView) -> None:
        self.tick(v)
        stamp = self.stamp()
        p = v.power
        if self._changed("power", f"{p['state']} {p['phase']}"):
            print(f"  {stamp}  power {p['state']:<11} {p['phase']:<7} {p['reason']}",
                  flush=True)
        for u in p["ups"]:
            charge = "?" if u["charge"] is None else f"{u['charge'] * 100:.0f}%"
            runtime = "?" if u["runtime"] is None else f"{u['runtime']:.0f} s"
            volts = "?" if u["input_voltage"] is None else f"{u['input_voltage']:.0f} V"
            reading = (f"[{' '.join(u['flags']) or '-'}] runtime {runtime}, charge {charge}, "
                       f"input {volts}")
            if self._changed(f"ups {u['name']}", reading):
                print(f"  {stamp}  ups   {u['name']:<11} {reading}", flush=True)
        for d in v.status.get("destinations") or []:
            if self._changed(f"dest {d['name']}", d["state"]):
                print(f"  {stamp}  dest  {d['name']:<11} {d['state']:<7} {d['reason']}",
                      flush=True)
        if self._changed("did", f"{v.destination} {v.dr_cause}"):
            old = self.shown.get("did-dest", "none")
            self.shown["did-dest"] = str(v.destination)
            # The reason's destination part (the trunk's part is the telephony act's story).
            at = v.reason.find("site in DR")
            why = v.reason[at:] if at >= 0 else "its own destination, no DR cause"
            print(f"  {stamp}  dids  {A_RANGE} {old} -> {v.destination} "
                  f"(/api/v1/dids?number={A_DID}: {why})", flush=True)
        on_dr = (v.status.get("dids") or {}).get("on_dr") or []
        ranges = f"{len(on_dr)} of {len(DID_RANGES)} ranges on DR" + (
            f" ({', '.join(sorted({str(r['cause']) for r in on_dr}))})" if on_dr else "")
        if self._changed("on_dr", ranges):
            print(f"  {stamp}  dids  {ranges}", flush=True)

    def tick(self, v: PowerView) -> None:
        """One line per whole second passed: the calls that ended in it, and where the
        inbound ones rang."""
        now = time.monotonic()
        if self.next_second is None:
            self.next_second = now + 1.0
        while now >= self.next_second:
            since, upto = self.next_second - 1.0, self.next_second
            calls = self.load.calls()
            o_ok, o_bad = tally(calls, since, upto, "out")
            i_ok, i_bad = tally(calls, since, upto, "in")
            pbx = sum(since <= at < upto for at in v.pbx)
            dr = sum(since <= at < upto for at in v.dr)
            print(f"  {self.stamp(upto)}  calls out {o_ok} ok {o_bad} failed, in {i_ok} ok "
                  f"{i_bad} failed; rang at PBX {pbx}, DR {dr}", flush=True)
            self.next_second += 1.0


class _Watch:
    """Reads the daemon's status, A_DID's lookup and both PBXes' logs into a PowerView."""

    def __init__(self, daemon: LifelineProcess, pbx: SipPeer, dr: SipPeer) -> None:
        self.daemon = daemon
        self.pbx = InviteLog(pbx, A_DID)
        self.dr = InviteLog(dr, A_DID)

    def view(self) -> PowerView | None:
        st = self.daemon.status()
        if st is None or st.get("power") is None or st.get("dids") is None:
            return None
        doc = dids_lookup(self.daemon, A_DID)
        if doc is None:
            return None
        return PowerView(st, st["power"], doc.get("destination"), doc.get("dr_cause"),
                         str(doc.get("reason", "")), tuple(self.pbx.poll()),
                         tuple(self.dr.poll()))


def _play(ups: Upsd, watch: _Watch, load: CallLoad, step: PowerStep, timeline: PowerTimeline,
          marks: Marks) -> PowerOutcome:
    print(f"\n== {step.title}", flush=True)
    begun = time.monotonic()
    if step.action is not None:
        step.action(ups)
        if step.mark is not None:
            marks[step.mark] = time.monotonic()
    last: list[PowerView] = []

    def done() -> bool:
        v = watch.view()
        if v is None:
            return False
        last[:] = [v]
        timeline.update(v)
        return step.done(v, marks)

    reached: float | None = None
    with contextlib.suppress(TimeoutError):  # a step that does not play out is an outcome
        until(done, begun + step.timeout - time.monotonic(), 0.1, step.expect)
        reached = time.monotonic()
    # Watch on: calls placed once the step has played out must succeed, both ways.
    def watch_on() -> None:
        v = watch.view()
        if v is not None:
            last[:] = [v]
            timeline.update(v)

    good = ({"out": False, "in": False} if reached is None
            else good_calls_after(load, reached, 8.0, watch_on))
    watch_on()  # the step's tally below counts the calls that rang up to its very end
    ended = time.monotonic()
    calls = [c for c in load.calls() if begun <= c.ended < ended]
    failed = sum(not c.ok for c in calls)
    pbx = sum(begun <= at < ended for at in (last[0].pbx if last else ()))
    dr = sum(begun <= at < ended for at in (last[0].dr if last else ()))
    origin = marks.get(step.since or step.mark or "", begun)  # the fault's moment if any
    took = None if reached is None else reached - origin
    ok, note = reached is not None, ""
    if reached is None:
        note = f"not seen within {step.timeout:g} s: {step.expect}"
    elif took is not None and took < step.min_wait:
        ok, note = False, f"after {took:.1f} s, sooner than {step.min_wait:g} s"
    elif step.dr_forbidden and dr:
        ok, note = False, f"{dr} inbound call(s) rang at DR"
    elif not all(good.values()):
        ok, note = False, ("no good " + "/".join(d for d, g in good.items() if not g)
                           + " call after it")
    print(f"   -> {step.expect}" + ("" if took is None else f" after {took:.2f} s")
          + f"; calls placed {len(calls)}, rang at PBX {pbx}, at DR {dr}, failed {failed}"
          + (f"; {note}" if note else ""), flush=True)
    return PowerOutcome(step, ok, took, len(calls), failed, pbx, dr, note)


def _figures(calls: list[Call], since: float, watch: _Watch, marks: Marks,
             dr_plan_at: float | None) -> PowerFigures:
    pbx, dr = watch.pbx.poll(), watch.dr.poll()

    def first_after(arrivals: list[float], mark: str) -> float | None:
        if mark not in marks:
            return None
        later = [at for at in arrivals if at >= marks[mark]]
        return min(later) - marks[mark] if later else None

    mine = [c for c in calls if c.ended >= since]
    low = marks.get("runtime low")
    return PowerFigures(
        placed=len(mine), failed=sum(not c.ok for c in mine),
        at_pbx=sum(at >= since for at in pbx), at_dr=sum(at >= since for at in dr),
        to_dr_plan=None if dr_plan_at is None or low is None else dr_plan_at - low,
        to_first_dr_call=first_after(dr, "runtime low"),
        to_first_pbx_call=first_after(pbx, "mains back"))


def power_summary(act: PowerAct) -> str:
    def s(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} s"

    rows = [f"{'power step':<52} {'expect':<9} {'took':>7} {'placed':>6} {'PBX':>4} "
            f"{'DR':>4} {'failed':>6}  result"]
    for o in act.outcomes:
        rows.append(f"{o.step.title[:52]:<52} {o.step.expect:<9} {s(o.took):>7} "
                    f"{o.placed:>6} {o.at_pbx:>4} {o.at_dr:>4} {o.failed:>6}  "
                    + ("ok" if o.ok else f"FAILED: {o.note}"))
    f, t = act.figures, act.timing
    if f is not None:
        rows += [
            f"calls during the act: {f.placed} placed (both ways), {f.failed} failed; inbound "
            f"rang at the "
            f"PBX {f.at_pbx}, at the DR PBX {f.at_dr}",
            f"runtime low -> DIDs on DR and pushed to the edge: {s(f.to_dr_plan)}; "
            f"-> first call at the DR PBX: {s(f.to_first_dr_call)} "
            f"(dummy-ups polls every {t.driver_poll} s, the daemon reads upsd every "
            f"{t.interval:g} s, a call every 0.5 s)",
            f"mains back -> first call at the PBX again: {s(f.to_first_pbx_call)} "
            f"(hold-down {t.hold_down:g} s)",
        ]
    return "\n".join(rows)


def _power_config(t: PowerTiming, ups: Upsd, secret: Path) -> dict[str, Any]:
    return {
        "grace": f"{t.grace:g}s", "runtime_margin": f"{t.runtime_margin:g}s",
        "hold_down": f"{t.hold_down:g}s",
        "ups": [{"name": UPS, "interval": f"{t.interval * 1000:g}ms",
                 "timeout": f"{t.interval * 1000:g}ms",
                 # dummy-ups serves flat figures between the act's steps: not a frozen driver.
                 "stale_after": None,
                 "nut": {"host": ups.host, "port": ups.port, "ups": ups.ups,
                         "username": "monitor", "password_file": str(secret)}}],
    }


def _print_plan(t: PowerTiming, ups: Upsd, ns: str, st: dict[str, Any]) -> None:
    print(f"power (config): {UPS} over NUT, upsd {ups.host}:{ups.port} in {ns} (dummy-ups "
          f"{ups.ups}, logged in as monitor, password from a file), read every "
          f"{t.interval:g} s; on battery {t.grace:g} s: page; runtime below "
          f"{t.runtime_margin:g} s or LB: DIDs to DR; mains stable {t.hold_down:g} s: back",
          flush=True)
    dids = st["dids"]
    print(f"DID plan (status API): {dids['numbers']} numbers in {dids['ranges']} ranges, "
          f"{len(dids['on_dr'])} on DR", flush=True)
    for rng, _ in DID_RANGES:
        print(f"  {rng}  -> pbx (DR destination: dr)", flush=True)
    print("  destinations: " + ", ".join(f"{d['name']} {d['uri']} {d['state']}"
                                         for d in st["destinations"]), flush=True)


def _print_journal(daemon: LifelineProcess, lab: Lab) -> None:
    out = lab.run(lab.site, [sys.executable, "-m", "controller", "events", "--state-dir",
                             str(daemon.state_dir), "--subject", "power", "-n", "8"],
                  check=False)
    text = (out.stdout or out.stderr).rstrip()
    if text:
        print("journal, the power policy's steps (lifeline events --subject power):\n"
              + text, flush=True)


def run_power_act(quick: bool = False, keep_going: bool = False) -> PowerAct:
    """Play the act on a fresh lab; its outcomes (fewer than the steps if it stopped)."""
    timing = PowerTiming.for_demo(quick)
    act = PowerAct(timing)
    workdir = Path(tempfile.mkdtemp(prefix="lifeline-demo-power-"))
    try:
        with Lab() as lab:
            t0 = time.monotonic()
            ups = Upsd(workdir / "nut", ns=lab.site, pollinterval=timing.driver_poll)
            site = SipSite(lab, workdir / "sip")
            daemon = None
            try:
                try:
                    ups.start()
                    site.start()
                    dr = site.start_uas("dr", lab.lan, str(lab.lan_host_addr), DR_PORT)
                    secret = workdir / "nut.password"
                    secret.write_text(ups.users["monitor"][0] + "\n")
                    secret.chmod(0o600)

                    def with_power(config: dict[str, Any]) -> None:
                        config["power"] = _power_config(timing, ups, secret)

                    daemon = site.start_daemon(workdir / "state", edit=with_power,
                                               ready_timeout=None)
                except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                    print(f"the power act did not start: {exc}", flush=True)
                    return act
                upsd_pid = ups.upsd.pid if ups.upsd is not None else "?"
                print(f"lab {lab.prefix.rstrip('-')}: upsd (pid {upsd_pid}) and dummy-ups in "
                      f"{lab.site}, Kamailio in {lab.site}, PBX "
                      f"{site.peers['pbx'].uri} and DR PBX {dr.uri} on the LAN; lifeline pid "
                      f"{daemon.proc.pid}", flush=True)
                watch = _Watch(daemon, site.peers["pbx"], dr)

                running = daemon

                def ready() -> dict[str, Any] | None:
                    st = running.status()
                    return st if (st is not None and plan_ready(st) and st.get("power")
                                  and st["power"]["state"] == "mains"
                                  and all(d["state"] == "up" for d in st["destinations"])
                                  ) else None

                try:
                    st = until(ready, 25, 0.1, "trunks, PBX and DR up, the UPS on mains")
                except TimeoutError:
                    print("power act not ready within 25 s (trunks, PBX and DR up, the UPS on "
                          f"mains); last status: {daemon.status()}", flush=True)
                    return act
                print(f"site ready {time.monotonic() - t0:.2f} s after the start", flush=True)
                _print_plan(timing, ups, lab.site, st)
                print(f"calls: one inbound to and one outbound from {A_DID} every 0.5 s, in "
                      "the background; where each inbound call rang is read from the PBXes' "
                      "sipp logs", flush=True)
                load = CallLoad(site, max_seconds=180).start()
                marks: Marks = {"start": time.monotonic()}
                timeline = PowerTimeline(t0, load)
                dr_plan_at: float | None = None
                try:
                    for step in power_scenario(timing):
                        outcome = _play(ups, watch, load, step, timeline, marks)
                        act.outcomes.append(outcome)
                        if step.mark == "runtime low" and outcome.took is not None:
                            dr_plan_at = marks["runtime low"] + outcome.took
                        if not outcome.ok and not keep_going:
                            break
                finally:
                    load.stop()
                act.figures = _figures(load.calls(), marks["start"], watch, marks,
                                       dr_plan_at)
                print()
                _print_journal(daemon, lab)
            finally:
                try:
                    if daemon is not None:
                        daemon.stop()
                finally:
                    ups.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return act
