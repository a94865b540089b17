"""Benchmark: how long the LAN's traffic stops when an uplink fails, and how failback goes.

Run as root: ``python -m tests.bench.bench_failover [--trials 10] [--json [PATH]]``.
Every trial builds a fresh lab (``lab.topology.Lab``), starts the real daemon in its site
namespace with the lab's generated config (the daemon's default probe timing, gateway + 2 far
targets with ``reliability: 2``), waits until fibre-a carries the default route, runs a
two-way UDP stream from the LAN host to the sink in ``inet`` every 5 ms, injects the fault
on fibre-a (a blackhole in its ISP, or its carrier down) and measures the largest gap in
what reached the sink (forward) and in the echoes back at the LAN host (reply: this one also
needs the SNAT/conntrack path to follow the new link). Failback trials clear a blackhole
and measure the gap when the route moves back and the time the hold-down took. The
boundary: it measures and reports; it changes neither the daemon nor its config beyond
what the lab generator offers. Every lab is removed after its trial, also on failure, and
every wait is bounded.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pyroute2 import IPRoute

from controller.core.health import HealthParams
from tests.lab.lifelined import LifelineProcess, route_devices
from tests.lab.netlinkpoll import NetlinkPoll
from tests.lab.stream import Gap, Stream, StreamResult, gaps_in
from tests.lab.topology import Lab

__all__ = [
    "FailbackTrial",
    "FailoverTrial",
    "Figure",
    "add_failover_args",
    "add_json_arg",
    "blackhole_fault",
    "carrier_fault",
    "check_failover_args",
    "failback_trial",
    "failover_trial",
    "figures",
    "main",
    "outage_gap",
    "percentile",
    "run",
]

STREAM_INTERVAL = 0.005
# The config the brief of the benchmark fixes: the daemon's own probe timing (as shipped)
# with reliability 2, so the gateway (which still answers in a blackhole) cannot keep the
# link up alone.
DAEMON_OVERRIDES: dict[str, Any] = {"probe_defaults": True, "reliability": 2}
# The daemon's default probe interval. A fault lands at a random point of it: injected at a
# fixed time after the daemon started, it would meet the same phase of the probe grid every
# trial and the figures would tell that phase, not the detection.
PROBE_INTERVAL = HealthParams().interval
PRIMARY, BACKUP = "fibre-a", "fibre-b"

GOAL_BLACKHOLE = 0.5  # median data-plane gap, seconds
GOAL_CARRIER = 0.1
GOALS = {"blackhole": GOAL_BLACKHOLE, "carrier": GOAL_CARRIER}
GOAL_FAILBACK_GAP = 0.05  # "about zero": a few stream intervals
FAILBACK_SLACK = 1.0  # route back within hold-down + this


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- figures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    """One row of the summary: what was measured, the figure, the goal and whether met."""

    what: str
    figure: str
    goal: str = "-"
    met: bool | None = None  # None: no goal

    @property
    def verdict(self) -> str:
        return "-" if self.met is None else ("yes" if self.met else "NO")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): a value that was really measured, which is
    what one wants to quote for 10 trials."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _spread(values: Sequence[float]) -> str:
    if not values:
        return "no data"
    return (f"median {statistics.median(values):.3f} s, p90 {percentile(values, 90):.3f} s, "
            f"max {max(values):.3f} s (n={len(values)})")


# --- measuring one stream ------------------------------------------------------------------


def outage_gap(arrivals: list[tuple[float, int]], result: StreamResult,
               fault_at: float) -> tuple[Gap | None, bool]:
    """The largest gap of ``arrivals`` that ends after ``fault_at``, and whether the flow
    recovered (something arrived after that gap).

    "Ends after" rather than "contains": packets already in flight when the fault was
    injected may land a moment later, so the outage can begin just after ``fault_at``.
    """
    gaps = [g for g in gaps_in(arrivals, start=result.start, end=result.end,
                               sent=result.sent, min_gap=0.0)
            if g.end >= fault_at]
    if not gaps:
        return None, bool(arrivals)
    gap = max(gaps, key=lambda g: g.seconds)
    last_arrival = max(t for t, _ in arrivals) if arrivals else -math.inf
    return gap, gap.end <= last_arrival


# --- trials --------------------------------------------------------------------------------


class OperstateWatch(NetlinkPoll):
    """When the kernel reports an interface of the site as not UP (``at`` on the
    monotonic clock, like the fault's time).

    This is the moment the kernel's linkwatch has processed the carrier loss and sent its
    netlink notification (operstate and the notification are updated together), so it
    tells a late kernel event apart from a late daemon in a slow carrier trial.
    """

    def __init__(self, lab: Lab, ifname: str, limit: float = 3.0) -> None:
        super().__init__(lab.site, ifname, limit, "operstate-watch")

    def seen(self, ipr: IPRoute, index: int) -> bool:
        return bool(ipr.get_links(index)[0].get_attr("IFLA_OPERSTATE") != "UP")


def blackhole_fault(lab: Lab) -> None:
    lab.faults.blackhole(PRIMARY)


def carrier_fault(lab: Lab) -> None:
    lab.faults.carrier(PRIMARY, False)


FAULTS: dict[str, Callable[[Lab], None]] = {
    "blackhole": blackhole_fault,
    "carrier": carrier_fault,
}


@dataclass
class FailoverTrial:
    kind: str
    trial: int
    gap: float | None = None  # forward: LAN host -> sink, seconds
    reply_gap: float | None = None  # echoes back at the LAN host
    lost: int | None = None  # forward packets lost in the gap
    switch: float | None = None  # fault -> the daemon moved the route
    inject: float | None = None  # how long the fault command itself took
    # carrier: fault -> the bench's 2 ms poll saw the kernel's operstate leave UP. An upper
    # bound (the poll is slower than the daemon's netlink socket): it is there to tell a
    # late kernel report from a late daemon when a carrier trial is slow, not as a figure.
    kernel_event: float | None = None
    recovered: bool = False
    sent: int = 0
    received: int = 0
    replied: int = 0
    daemon_rss_kib: int | None = None
    error: str | None = None
    daemon_log: str | None = None  # the end of the daemon's log, kept for slow trials


@dataclass
class FailbackTrial:
    trial: int
    hold_down: float
    gap: float | None = None
    reply_gap: float | None = None
    route_back: float | None = None  # fault cleared -> route back on the primary
    recovered: bool = False
    error: str | None = None


def _start_daemon(lab: Lab, state_dir: Path, **overrides: Any) -> LifelineProcess:
    daemon = LifelineProcess(lab, state_dir, **{**DAEMON_OVERRIDES, **overrides})
    daemon.start()
    daemon.wait_active([PRIMARY], timeout=20.0)
    devices = route_devices(lab)
    if devices != [lab.link(PRIMARY).site_ifname]:
        raise RuntimeError(f"status says {PRIMARY} is active but the route leaves by {devices}")
    return daemon


def failover_trial(kind: str, trial: int, workdir: Path, *, settle: float = 1.0,
                   bound: float = 10.0, after: float = 1.0) -> FailoverTrial:
    """One fresh lab and daemon, one fault on the primary; see the module docstring."""
    out = FailoverTrial(kind=kind, trial=trial)
    inject = FAULTS[kind]
    with Lab() as lab:
        daemon = _start_daemon(lab, workdir / f"{kind}-{trial}")
        try:
            out.daemon_rss_kib = daemon.usage().rss_kib
            stream = Stream(lab, interval=STREAM_INTERVAL, max_seconds=settle + bound + after + 2,
                            two_way=True)
            with stream:
                time.sleep(settle + random.uniform(0.0, PROBE_INTERVAL))
                watch = None
                if kind == "carrier":
                    watch = OperstateWatch(lab, lab.link(PRIMARY).site_ifname)
                    watch.start()
                fault_at = time.monotonic()
                inject(lab)
                out.inject = time.monotonic() - fault_at
                try:
                    switched_at = daemon.wait_active_at([BACKUP], timeout=bound)
                    out.switch = switched_at - fault_at
                except TimeoutError as exc:
                    out.error = f"route not moved to {BACKUP} within {bound:g} s"
                    log(str(exc)[:2000])
                time.sleep(after)
                result = stream.stop()
                if watch is not None:
                    watch.join()
                    out.kernel_event = None if watch.at is None else watch.at - fault_at
        finally:
            daemon.stop()
            # A slow trial is worth a look: keep what the daemon said about it.
            if out.switch is None or out.switch > GOALS[kind]:
                out.daemon_log = daemon.log()[-4000:]
                log(f"{kind} {trial}: slow; the daemon's log ends:\n{out.daemon_log}")
    _fill_gaps(out, result, fault_at)
    if out.error is None and not out.recovered:
        out.error = "stream did not recover"
    return out


def _fill_gaps(out: FailoverTrial, result: StreamResult, fault_at: float) -> None:
    out.sent, out.received, out.replied = result.sent, result.received, result.replied
    gap, forward_ok = outage_gap(result.arrivals, result, fault_at)
    reply, reply_ok = outage_gap(result.replies, result, fault_at)
    out.gap = gap.seconds if gap else 0.0
    out.lost = gap.lost_packets if gap else 0
    out.reply_gap = reply.seconds if reply else 0.0
    out.recovered = forward_ok and reply_ok


def failback_trial(trial: int, workdir: Path, *, hold_down: float, settle: float = 1.0,
                   bound: float = 15.0, after: float = 1.0) -> FailbackTrial:
    """Blackhole the primary, let the daemon fail over, then clear the fault with a stream
    running and measure the gap of the move back and how long the hold-down kept it away."""
    out = FailbackTrial(trial=trial, hold_down=hold_down)
    with Lab() as lab:
        daemon = _start_daemon(lab, workdir / f"failback-{trial}", hold_down=f"{hold_down:g}s")
        try:
            blackhole_fault(lab)
            daemon.wait_active([BACKUP], timeout=bound)
            stream = Stream(lab, interval=STREAM_INTERVAL,
                            max_seconds=settle + hold_down + bound + after + 2, two_way=True)
            with stream:
                time.sleep(settle)
                cleared_at = time.monotonic()
                lab.faults.clear(PRIMARY)
                try:
                    back_at = daemon.wait_active_at([PRIMARY], timeout=hold_down + bound)
                    out.route_back = back_at - cleared_at
                except TimeoutError as exc:
                    out.error = f"route not back on {PRIMARY} within {hold_down + bound:g} s"
                    log(str(exc)[:2000])
                time.sleep(after)
                result = stream.stop()
        finally:
            daemon.stop()
    if out.route_back is not None:
        # Only the move back matters here, not the quiet time before it.
        gap, fwd_ok = outage_gap(result.arrivals, result, back_at - 0.5)
        reply, rep_ok = outage_gap(result.replies, result, back_at - 0.5)
        out.gap = gap.seconds if gap else 0.0
        out.reply_gap = reply.seconds if reply else 0.0
        out.recovered = fwd_ok and rep_ok
        if not out.recovered:
            out.error = "stream did not recover after failback"
    return out


# --- the whole benchmark -------------------------------------------------------------------


@dataclass
class Report:
    trials: int
    hold_down: float
    failover: dict[str, list[FailoverTrial]] = field(default_factory=dict)
    failback: list[FailbackTrial] = field(default_factory=list)

    def errors(self) -> list[str]:
        found = [f"{t.kind} {t.trial}: {t.error}" for v in self.failover.values() for t in v
                 if t.error]
        return found + [f"failback {b.trial}: {b.error}" for b in self.failback if b.error]

    def to_json(self) -> dict[str, Any]:
        return {
            "trials": self.trials,
            "hold_down": self.hold_down,
            "failover": {k: [asdict(t) for t in v] for k, v in self.failover.items()},
            "failback": [asdict(t) for t in self.failback],
            "summary": [asdict(f) for f in figures(self)],
        }


def run(kinds: Sequence[str] = ("blackhole", "carrier", "failback"), trials: int = 10,
        failback_trials: int = 2, hold_down: float = 5.0) -> Report:
    """Run the chosen benchmarks; progress on stderr, results returned."""
    report = Report(trials=trials, hold_down=hold_down)
    with tempfile.TemporaryDirectory(prefix="lifeline-bench-") as tmp:
        workdir = Path(tmp)
        for kind in kinds:
            if kind == "failback":
                continue
            results = report.failover.setdefault(kind, [])
            for n in range(1, trials + 1):
                t = guarded(functools.partial(failover_trial, kind, n, workdir),
                             FailoverTrial(kind=kind, trial=n))
                results.append(t)
                log(f"{kind} {n}/{trials}: " + (
                    f"gap {t.gap:.3f} s (reply {t.reply_gap:.3f} s), {t.lost} packets lost, "
                    f"route moved {secs(t.switch)} after the fault"
                    + (f" (kernel operstate down seen by poll after {secs(t.kernel_event)})"
                       if kind == "carrier" else "")
                    if t.gap is not None else "no measurement")
                    + (f"  [{t.error}]" if t.error else ""))
        if "failback" in kinds:
            for n in range(1, failback_trials + 1):
                b = guarded(functools.partial(failback_trial, n, workdir, hold_down=hold_down),
                             FailbackTrial(trial=n, hold_down=hold_down))
                report.failback.append(b)
                log(f"failback {n}/{failback_trials}: route back {secs(b.route_back)} after the "
                    f"fault cleared (hold-down {hold_down:g} s), gap {secs(b.gap)} "
                    f"(reply {secs(b.reply_gap)})" + (f"  [{b.error}]" if b.error else ""))
    return report


def secs(value: float | None, digits: int = 3) -> str:
    """A measured time for the progress log; "-" where the trial did not get that far."""
    return "-" if value is None else f"{value:.{digits}f} s"


def med_max(values: list[float]) -> str:
    """Median and max of a few trials' seconds, for a figure's cell."""
    if not values:
        return "no data"
    return f"median {statistics.median(values):.2f}, max {max(values):.2f}"


class _HasError(Protocol):
    error: str | None


_Trial = TypeVar("_Trial", bound=_HasError)


def guarded(body: Callable[[], _Trial], failed: _Trial) -> _Trial:
    """A trial that breaks (daemon never became active, a lab command failed) is recorded
    as an error and the benchmark goes on; Ctrl-C still stops everything."""
    try:
        return body()
    except Exception as exc:
        failed.error = f"{type(exc).__name__}: {str(exc)[:300]}"
        log(f"trial failed: {str(exc)[:3000]}")
        return failed


def figures(report: Report) -> list[Figure]:
    out: list[Figure] = []
    goals = GOALS
    for kind, trials in report.failover.items():
        good = [t for t in trials if t.error is None and t.gap is not None]
        broken = len(trials) - len(good)
        gaps = [t.gap for t in good if t.gap is not None]
        replies = [t.reply_gap for t in good if t.reply_gap is not None]
        switches = [t.switch for t in good if t.switch is not None]
        note = f"; {broken} trial(s) failed" if broken else ""
        goal = goals[kind]
        met = bool(gaps) and broken == 0 and statistics.median(gaps) <= goal
        out.append(Figure(f"failover gap, {kind}, forward", _spread(gaps) + note,
                          f"median <= {goal:g} s", met))
        out.append(Figure(f"failover gap, {kind}, reply (SNAT path)", _spread(replies),
                          f"median <= {goal:g} s",
                          bool(replies) and broken == 0 and statistics.median(replies) <= goal))
        out.append(Figure(f"fault -> route moved, {kind}", _spread(switches)))
        if kind == "blackhole":
            rss = [t.daemon_rss_kib / 1024 for t in good if t.daemon_rss_kib is not None]
            if rss:
                out.append(Figure("daemon RSS, 3 links x 3 targets",
                                  f"{statistics.median(rss):.1f} MiB"))
    if report.failback:
        ok = [b for b in report.failback if b.error is None]
        broken = len(report.failback) - len(ok)
        note = f"; {broken} trial(s) failed" if broken else ""
        gaps = [max(b.gap or 0.0, b.reply_gap or 0.0) for b in ok]
        backs = [b.route_back for b in ok if b.route_back is not None]
        h = report.hold_down
        out.append(Figure("failback gap (forward or reply, worst)",
                          (f"max {max(gaps):.3f} s (n={len(gaps)})" if gaps else "no data") + note,
                          f"<= {GOAL_FAILBACK_GAP:g} s",
                          bool(gaps) and broken == 0 and max(gaps) <= GOAL_FAILBACK_GAP))
        out.append(Figure("fault cleared -> route back",
                          (", ".join(f"{b:.2f} s" for b in backs) or "no data") + note,
                          f"{h:g} s hold-down .. +{FAILBACK_SLACK:g} s",
                          bool(backs) and broken == 0
                          and all(h <= b <= h + FAILBACK_SLACK for b in backs)))
    return out


def print_table(rows: Sequence[Figure], title: str = "summary") -> None:
    """A plain table for the terminal, then the same rows as Markdown for the README."""
    widths = [max(len(r) for r in col) for col in zip(
        ("what", "figure", "goal", "met"),
        *((f.what, f.figure, f.goal, f.verdict) for f in rows), strict=False)]
    print(f"\n{title}")
    line = "  ".join(h.ljust(w) for h, w in zip(("what", "figure", "goal", "met"), widths,
                                                   strict=True))
    print(line)
    print("-" * len(line))
    for f in rows:
        print("  ".join(v.ljust(w) for v, w in zip((f.what, f.figure, f.goal, f.verdict),
                                                     widths, strict=True)))
    print()
    print("| what | figure | goal | met |")
    print("|---|---|---|---|")
    for f in rows:
        print(f"| {f.what} | {f.figure} | {f.goal} | {f.verdict} |")


def write_json(dest: str | None, data: dict[str, Any]) -> None:
    """``--json`` alone: one JSON line on stdout; ``--json PATH``: write the file."""
    if dest is None:
        return
    text = json.dumps(data, indent=None if dest == "-" else 2, default=str)
    if dest == "-":
        print(text)
    else:
        Path(dest).write_text(text + "\n")
        log(f"results written to {dest}")


class TrialReport(Protocol):
    def errors(self) -> list[str]: ...

    def to_json(self) -> dict[str, Any]: ...


def finish(report: TrialReport, rows: Sequence[Figure], title: str, dest: str | None) -> int:
    """The end of a trial benchmark's run: the table, the JSON, the trials that broke.
    A missed goal is a figure to read, not a failure; a trial that broke is (exit 1)."""
    print_table(rows, title)
    write_json(dest, report.to_json())
    if report.errors():
        log("errors:\n  " + "\n  ".join(report.errors()))
    return 1 if report.errors() else 0


def add_json_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                        help="also write machine-readable results (to PATH, or stdout)")


def add_failover_args(parser: argparse.ArgumentParser) -> None:
    """--trials, --failback-trials, --hold-down: shared with run_all."""
    parser.add_argument("--trials", type=int, default=10,
                        help="trials per failover kind (default 10)")
    parser.add_argument("--failback-trials", type=int, default=2)
    parser.add_argument("--hold-down", type=float, default=5.0,
                        help="failback hold-down in seconds (default 5)")


def check_failover_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 1 <= args.trials <= 200 or not 0 <= args.failback_trials <= 20:
        parser.error("--trials must be 1..200 and --failback-trials 0..20")
    if not 0 <= args.hold_down <= 120:
        parser.error("--hold-down must be 0..120 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_failover_args(parser)
    parser.add_argument("--only", choices=("blackhole", "carrier", "failback"), action="append",
                        help="run only this part (repeatable)")
    add_json_arg(parser)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        log("bench_failover: needs root (network namespaces, routes, iptables)")
        return 2
    check_failover_args(parser, args)
    kinds = args.only or ["blackhole", "carrier", "failback"]
    report = run(kinds, args.trials, args.failback_trials, args.hold_down)
    rows = figures(report)
    return finish(report, rows, "failover benchmark", args.json)


if __name__ == "__main__":
    sys.exit(main())
