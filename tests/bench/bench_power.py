"""Benchmark: from the UPS raising LB to the first call ringing at the DR destination.

Run as root: ``python -m tests.bench.bench_power [--trials 3] [--interval 500ms]
[--json [PATH]]``. One SIP site lab per run (``lab.sipsite``: Kamailio in the site, sipp
carrier SBCs in ``inet``, the PBX and the DR PBX on the LAN host), the real upsd with NUT's
dummy-ups driver (poll 1 s) on the site's own loopback, and the real daemon reading it
every ``--interval`` (grace 2 s, hold-down 4 s, margin 60 s). While a carrier places one
inbound call to a carrier-A DID every 150 ms (a sipp UAC at carrier-a-sbc1's address),
each trial raises LB at a random phase of the driver's poll, in two modes:

- ``after outage``: the UPS went on battery (runtime far above the margin) and the outage
  was paged after the grace; then LB is raised (``OB LB DISCHRG``);
- ``straight``: from mains straight to ``OB LB`` (a battery that is already spent).

The figure is the time from the driver's file being rewritten to the first INVITE the DR
PBX logs (sipp's wall-clock stamp), with the steps on the way: upsd serving LB (the
driver's own poll, which a real UPS's driver has too), the daemon's journaled decision to
go to DR, and the call. Goal: at most 2 s plus the configured grace. Each trial starts the
daemon afresh on mains: the lag from the driver's poll to the daemon's next read is fixed
for one daemon's life (both are periodic), so a fresh start draws it anew. The boundary: it
measures; the lab and every process are removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from controller.core.durations import parse_duration
from controller.runtime.journal import read_events
from tests.bench.bench_failover import Figure, add_json_arg, finish, log, med_max, secs
from tests.lab.nut import Upsd, nut_skip_reason
from tests.lab.sipsite import (
    DR_PORT,
    SCENARIO_DIR,
    SipSite,
    plan_ready,
    sip_site_skip_reason,
)
from tests.lab.topology import CARRIER_SBCS, Lab
from tests.lab.wait import until

__all__ = ["MODES", "PowerTrial", "Report", "figures", "main", "run"]

GRACE = 2.0
HOLD_DOWN = 4.0
MARGIN = 60.0
CALL_EVERY_MS = 150
NUMBER = "+390212345601"  # carrier A's range
CALLER_SBC = "carrier-a-sbc1"
UAC_PORT = 16000  # at the SBC's address in inet; its own UAS listens on 5060
MODES = ("after outage", "straight")
WAIT = 20.0  # seconds a step may take before the trial is called broken


@dataclass
class PowerTrial:
    mode: str
    trial: int
    upsd_lb: float | None = None  # LB written -> upsd serves it (the driver's poll)
    decided: float | None = None  # LB written -> the daemon journals DR
    dr_call: float | None = None  # LB written -> first INVITE at the DR PBX
    error: str | None = None


@dataclass
class Report:
    interval: float
    trials: list[PowerTrial] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def errors(self) -> list[str]:
        return self.problems + [f"{t.mode} trial {t.trial}: {t.error}" for t in self.trials
                                if t.error]

    def to_json(self) -> dict[str, Any]:
        return {"ups_interval_s": self.interval, "grace_s": GRACE,
                "call_every_ms": CALL_EVERY_MS, "goal_s": 2.0 + GRACE,
                "trials": [asdict(t) for t in self.trials], "errors": self.errors()}


def _uac(lab: Lab, sip: SipSite, workdir: Path) -> subprocess.Popen[str]:
    """A carrier placing one call to NUMBER every CALL_EVERY_MS, until stopped."""
    dst = f"{lab.link('fibre-a').site_addr}:{sip.carrier_port}"
    argv = ["sipp", dst, "-sf", str(SCENARIO_DIR / "kam_uac.xml"), "-s", NUMBER,
            "-key", "caller", "+441234567890", "-i", str(CARRIER_SBCS[CALLER_SBC]),
            "-p", str(UAC_PORT), "-r", "1", "-rp", str(CALL_EVERY_MS), "-m", "100000",
            "-nostdin", "-default_behaviors", "abortunexp", "-recv_timeout", "5s",
            "-trace_err", "-error_file", str(workdir / "uac_errors.log")]
    return lab.popen(lab.inet, argv, cwd=str(workdir), stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)


def _power(st: dict[str, Any]) -> dict[str, Any]:
    power: dict[str, Any] = st["power"] or {}
    return power


def _on_pbx(st: dict[str, Any]) -> bool:
    return (plan_ready(st) and _power(st).get("phase") == "normal"
            and _power(st).get("state") == "mains" and not st["dids"]["on_dr"])


def _measure(mode: str, n: int, lab: Lab, sip: SipSite, upsd: Upsd, workdir: Path,
             interval: float) -> PowerTrial:
    """One trial on a freshly started daemon: the phase between its reads and the driver's
    poll is fixed for a daemon's life (both periodic), so each trial draws it anew."""
    out = PowerTrial(mode, n)
    dr = sip.peers["dr"]
    upsd.set(status="OL CHRG", charge=100, runtime=1800, input_voltage=230)

    def with_power(config: dict[str, Any]) -> None:
        config["power"] = {
            "grace": f"{GRACE:g}s", "hold_down": f"{HOLD_DOWN:g}s",
            "runtime_margin": f"{MARGIN:g}s",
            "ups": [upsd.ups_config(interval=f"{interval * 1000:g}ms",
                                    timeout=f"{interval * 1000:g}ms")]}

    daemon = sip.start_daemon(workdir / "state", edit=with_power, ready_timeout=WAIT)
    try:
        daemon.wait_for(lambda st: _on_pbx(st) and any(
            d["name"] == "dr" and d["state"] == "up" for d in st["destinations"]),
            WAIT, "mains, every DID on the PBX, the DR PBX up")
        if mode == "after outage":
            upsd.set(status="OB DISCHRG", charge=80, runtime=1200, input_voltage=0)
            daemon.wait_for(lambda st: _power(st).get("phase") == "outage", WAIT,
                            "the outage paged after the grace")
        uac = _uac(lab, sip, workdir)
        try:
            time.sleep(0.5 + random.uniform(0.0, 1.0))  # calls flowing; the driver's phase
            before = len(dr.invite_times(NUMBER))
            written = time.time()
            upsd.set(status="OB LB DISCHRG", charge=9, runtime=40, input_voltage=0)
            until(lambda: upsd.status() == "OB LB DISCHRG", WAIT, 0.01, "upsd to serve LB")
            out.upsd_lb = time.time() - written

            def first_at_dr() -> float | None:
                times = dr.invite_times(NUMBER)[before:]
                return times[0] if times else None

            out.dr_call = until(first_at_dr, WAIT, 0.02, "a call at the DR PBX") - written
        finally:
            lab.stop(uac, grace=1.0)
        decisions = [e.ts for e in read_events(daemon.state_dir / "journal.sqlite3", 50,
                                               "decision", "power")
                     if e.ts >= written and e.data.get("phase") == "dr"]
        out.decided = decisions[0] - written if decisions else None
    finally:
        daemon.stop()
    return out


def run(trials: int = 3, interval: float = 0.5) -> Report:
    report = Report(interval)
    for why in (sip_site_skip_reason(), nut_skip_reason()):
        if why is not None:
            report.problems.append(why)
    if report.problems:
        return report
    with tempfile.TemporaryDirectory(prefix="bench-power-") as tmp, Lab() as lab:
        work = Path(tmp)
        upsd = Upsd(work / "nut", ns=lab.site)
        sip = SipSite(lab, work / "sip")
        try:
            upsd.start()
            sip.start()
            sip.start_uas("dr", lab.lan, str(lab.lan_host_addr), DR_PORT)
            for n in range(1, trials + 1):
                for mode in MODES:
                    try:
                        t = _measure(mode, n, lab, sip, upsd, work, interval)
                    except Exception as exc:
                        t = PowerTrial(mode, n, error=f"{type(exc).__name__}: "
                                                      f"{str(exc)[:300]}")
                    report.trials.append(t)
                    log(f"{mode}, trial {n}/{trials}: upsd serves LB after "
                        f"{secs(t.upsd_lb, 2)}, DR decided after {secs(t.decided, 2)}, "
                        f"first call at the DR PBX after {secs(t.dr_call, 2)}"
                        + (f"; ERROR {t.error}" if t.error else ""))
        finally:
            sip.stop()
            upsd.stop()
    return report


def figures(report: Report) -> list[Figure]:
    rows: list[Figure] = []
    goal = 2.0 + GRACE
    every = f"UPS read every {report.interval:g} s"
    for mode in MODES:
        done = [t for t in report.trials if t.mode == mode and t.error is None]
        if not any(t.mode == mode for t in report.trials):
            continue
        calls = [t.dr_call for t in done if t.dr_call is not None]
        rows.append(Figure(f"UPS raises LB -> first call at the DR PBX, {mode}, {every} "
                           f"(n={len(done)})", f"{med_max(calls)} s",
                           f"<= {goal:g} s (2 s + grace {GRACE:g} s)",
                           bool(calls) and len(done) == sum(t.mode == mode
                                                            for t in report.trials)
                           and max(calls) <= goal))
        rows.append(Figure(f"  of which: upsd serves LB / DR journaled, {mode}",
                           f"{med_max([t.upsd_lb for t in done if t.upsd_lb is not None])}"
                           f" s / {med_max([t.decided for t in done if t.decided is not None])}"
                           " s"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3, help="trials per mode (default 3)")
    parser.add_argument("--interval", default="500ms",
                        help="the UPS's read interval and timeout (default 500ms, the "
                             "lab's; lifeline's default is 2s)")
    add_json_arg(parser)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        log("bench_power: needs root (network namespaces, upsd)")
        return 2
    if not 1 <= args.trials <= 50:
        parser.error("--trials must be 1..50")
    try:
        interval = parse_duration(args.interval)
    except ValueError as exc:
        parser.error(f"--interval: {exc}")
    if not 0.1 <= interval <= 10:
        parser.error("--interval must be 100ms..10s")
    report = run(args.trials, interval)
    return finish(report, figures(report), "power benchmark", args.json)


if __name__ == "__main__":
    sys.exit(main())
