"""``make bench``: every benchmark in turn, then one summary table (plain and Markdown).

Run as root from the repository: ``python -m tests.bench.run_all [--trials 10] [--json PATH]``.
It runs the failover benchmarks (blackhole and carrier-loss gaps, failback with hold-down:
``bench_failover``), what the default probing costs in packets and CPU next to the previous
default (``bench_probe_cost``), the daemon's RSS and CPU at 2,000 targets
(``bench_daemon_rss``) and
the probe engine next to fping (``bench_probes``, in its own process so that its RSS figure
is the engine's and not this runner's), calls lost during a SIP trunk failover at 20 calls/s
with the DID plan's compute and Kamailio push cost (``bench_trunks``), the ``/metrics``
scrape of a 100-link, 200-trunk, 1,000-range site (``bench_metrics_scrape``), the time from
a failover to the status page in Chromium showing it (``bench_statuspage``), the time from
every uplink dying to the page at on-call's webhook, lifeline's own post and via Prometheus,
with the shipped Prometheus and Alertmanager settings (``bench_paging``), one read of a UPS
from the real upsd and the dummy UPS's change pick-up time (``bench_nut``), what reading a
UPS over SNMP costs (``bench_snmp_ups``: latency, import time and RSS), a service check's
cost and the time from the CRM failing to its DIDs going to DR (``bench_services``), the
time from the UPS raising LB to the first call at the DR PBX in the SIP lab with the real
upsd (``bench_power``), the recordings index's first scan and steady-state cycle at a
million recordings and a mirror (``bench_recordings``), the lateness of 100 ms probe rounds
while such a tree is scanned in a thread and in a process (``bench_scan_lateness``), what
reading a restic repository of 100,000 recordings costs (``bench_restic``: listing and
read-back, about 15 s; skipped when restic is not installed), and prints what each
measured against its goal.
Each part builds and removes its own namespaces; a part that breaks is reported as such and
the others still run. The boundary: it orchestrates and summarises; the measuring is in the
three modules.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from tests.bench import (
    bench_daemon_rss,
    bench_failover,
    bench_metrics_scrape,
    bench_nut,
    bench_paging,
    bench_power,
    bench_probe_cost,
    bench_recordings,
    bench_restic,
    bench_scan_lateness,
    bench_services,
    bench_snmp_ups,
    bench_statuspage,
    bench_trunks,
)
from tests.bench.bench_failover import (
    Figure,
    TrialReport,
    add_failover_args,
    add_json_arg,
    check_failover_args,
    log,
    print_table,
    write_json,
)
from tests.lab.browser import browser_skip_reason

__all__ = ["main", "probes_figures", "run_probes"]

REPO = Path(__file__).resolve().parents[2]
PROBES_GOAL_RATIO = 3.0  # CPU per probe, ours / fping: the goal bench_probes states


def run_probes(seconds: int, targets: int) -> dict[str, Any]:
    """``bench_probes`` in a child process; its output is passed on, its JSON line parsed."""
    argv = [sys.executable, "-m", "tests.bench.bench_probes", "--json",
            "--seconds", str(seconds), "--targets", str(targets)]
    # Two runs of `seconds` (ours, then fping) plus lab set-up: bounded generously.
    proc = subprocess.run(argv, cwd=REPO, stdout=subprocess.PIPE, text=True, check=False,
                          timeout=4 * seconds + 300)
    lines = proc.stdout.strip().splitlines()
    for line in lines[:-1]:
        print(line, flush=True)
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"bench_probes exited with {proc.returncode}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def probes_figures(result: dict[str, Any]) -> list[Figure]:
    ours = result["ours"]
    n = f"{result['targets']} targets x 1/s"

    def per_k(r: dict[str, Any]) -> float:
        return float(r["cpu_s"]) / float(r["probes"]) * 1e6 if r["probes"] else float("nan")

    def loss(r: dict[str, Any]) -> float:
        return 1 - float(r["ok"]) / float(r["probes"]) if r["probes"] else float("nan")

    rows = [Figure(f"probe engine alone, {n}",
                   f"{per_k(ours):.1f} ms CPU per 1000 probes, loss {loss(ours):.2%}, "
                   f"RSS {ours['rss_kib'] / 1024:.1f} MiB")]
    if "fping" in result:
        theirs = result["fping"]
        rows.append(Figure(f"fping, {n}",
                           f"{per_k(theirs):.1f} ms CPU per 1000 probes, loss {loss(theirs):.2%}, "
                           f"peak RSS {theirs['hwm_kib'] / 1024:.1f} MiB"))
        ratio = float(result["ratio"])
        rows.append(Figure("CPU per probe, engine / fping", f"{ratio:.2f}x",
                           f"<= {PROBES_GOAL_RATIO:g}x", ratio <= PROBES_GOAL_RATIO))
    return rows


def _part(name: str, body: Callable[[], list[Figure]], errors: list[str]) -> list[Figure]:
    """Run one benchmark; if it breaks, say so in the table and go on with the next."""
    log(f"== {name}")
    started = time.monotonic()
    try:
        rows = body()
    except Exception as exc:
        errors.append(f"{name}: {exc}")
        log(f"{name} failed: {str(exc)[:3000]}")
        return [Figure(name, f"FAILED: {type(exc).__name__}: {str(exc)[:120]}", "runs", False)]
    log(f"== {name} done in {time.monotonic() - started:.0f} s")
    return rows


_Report = TypeVar("_Report", bound=TrialReport)


def _kept(report: _Report, key: str, data: dict[str, Any], errors: list[str]) -> _Report:
    """A part whose trials can fail one by one: its report goes into the JSON under
    ``key`` and its failed trials into the run's errors (the exit code)."""
    data[key] = report.to_json()
    errors.extend(report.errors())
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_failover_args(parser)
    parser.add_argument("--seconds", type=int, default=30,
                        help="measuring time of the 2,000-target benchmarks (default 30)")
    parser.add_argument("--targets", type=int, default=2000)
    parser.add_argument("--trunk-trials", type=int, default=3,
                        help="trials per trunk-failover mode (default 3)")
    parser.add_argument("--page-trials", type=int, default=5,
                        help="trials of the status page benchmark (default 5)")
    parser.add_argument("--paging-trials", type=int, default=3,
                        help="trials per paging path (default 3)")
    parser.add_argument("--power-trials", type=int, default=3,
                        help="trials per power mode (default 3)")
    parser.add_argument("--skip", choices=("failover", "cost", "daemon", "probes", "trunks",
                                           "metrics", "page", "paging", "nut",
                                           "services", "snmp", "power", "recordings",
                                           "scanlate", "restic"),
                        action="append", default=[], help="leave a part out (repeatable)")
    parser.add_argument("--scanlate-files", type=int, default=200_000,
                        help="recordings (and a mirror) scanned while probe rounds run "
                             "(default 200,000; 1000000 for the issue's figure)")
    add_json_arg(parser)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        log("bench: needs root (network namespaces, raw sockets, routes)")
        return 2
    check_failover_args(parser, args)
    if not 1 <= args.trunk_trials <= 50:
        parser.error("--trunk-trials must be 1..50")
    if not 1 <= args.page_trials <= 100:
        parser.error("--page-trials must be 1..100")
    if not 1 <= args.paging_trials <= 50:
        parser.error("--paging-trials must be 1..50")
    if not 1 <= args.power_trials <= 50:
        parser.error("--power-trials must be 1..50")
    if not 1 <= args.seconds <= 600 or not 3 <= args.targets <= 60000:
        parser.error("--seconds must be 1..600 and --targets 3..60000")
    if not 1000 <= args.scanlate_files <= 2_000_000:
        parser.error("--scanlate-files must be 1000..2000000")

    errors: list[str] = []
    rows: list[Figure] = []
    data: dict[str, Any] = {}

    if "failover" not in args.skip:
        def failover() -> list[Figure]:
            return bench_failover.figures(_kept(
                bench_failover.run(trials=args.trials, failback_trials=args.failback_trials,
                                   hold_down=args.hold_down), "failover", data, errors))
        rows += _part("failover", failover, errors)

    if "cost" not in args.skip:
        def cost() -> list[Figure]:
            results = [bench_probe_cost.run(setting, float(args.seconds))
                       for setting in bench_probe_cost.SETTINGS]
            data["probe_cost"] = [r.to_json() for r in results]
            return bench_probe_cost.figures(results)
        rows += _part("probe cost at the defaults", cost, errors)

    if "daemon" not in args.skip:
        def daemon() -> list[Figure]:
            result = bench_daemon_rss.run(args.targets, float(args.seconds))
            data["daemon_rss"] = result.to_json()
            return bench_daemon_rss.figures(result)
        rows += _part("daemon RSS/CPU", daemon, errors)

    if "probes" not in args.skip:
        def probes() -> list[Figure]:
            result = run_probes(args.seconds, args.targets)
            data["probes"] = result
            return probes_figures(result)
        rows += _part("probe engine vs fping", probes, errors)

    if "trunks" not in args.skip:
        def trunks() -> list[Figure]:
            return bench_trunks.figures(_kept(
                bench_trunks.run(trials=args.trunk_trials), "trunks", data, errors))
        rows += _part("trunk failover (SIP)", trunks, errors)

    if "metrics" not in args.skip:
        def metrics() -> list[Figure]:
            result = bench_metrics_scrape.run(out=log)
            data["metrics_scrape"] = result
            return bench_metrics_scrape.figures(result)
        rows += _part("/metrics scrape", metrics, errors)

    if "page" not in args.skip:
        def page() -> list[Figure]:
            reason = browser_skip_reason()
            if reason is not None:
                raise RuntimeError(reason)
            return bench_statuspage.figures(_kept(
                bench_statuspage.run(trials=args.page_trials), "statuspage", data, errors))
        rows += _part("status page after a failover (Chromium)", page, errors)

    if "paging" not in args.skip:
        def paging() -> list[Figure]:
            return bench_paging.figures(_kept(
                bench_paging.run(trials=args.paging_trials), "paging", data, errors))
        rows += _part("paging (all uplinks down -> webhook)", paging, errors)

    if "nut" not in args.skip:
        def nut() -> list[Figure]:
            result = bench_nut.run(out=log)
            data["nut"] = result
            return bench_nut.figures(result)
        rows += _part("UPS over NUT (real upsd)", nut, errors)

    if "services" not in args.skip:
        def services() -> list[Figure]:
            result = bench_services.run()
            data["services"] = result
            return bench_services.figures(result)
        rows += _part("services (CRM failing -> DIDs to DR)", services, errors)

    if "snmp" not in args.skip:
        def snmp() -> list[Figure]:
            result = bench_snmp_ups.run()
            data["snmp_ups"] = result
            return bench_snmp_ups.figures(result)
        rows += _part("UPS over SNMP (snmpsim)", snmp, errors)

    if "power" not in args.skip:
        def power() -> list[Figure]:
            return bench_power.figures(_kept(
                bench_power.run(trials=args.power_trials), "power", data, errors))
        rows += _part("power (UPS raises LB -> calls at the DR PBX)", power, errors)

    if "recordings" not in args.skip:
        def recordings() -> list[Figure]:
            result = bench_recordings.run(out=log)
            data["recordings"] = result
            return bench_recordings.figures(result)
        rows += _part("recordings index (1,000,000 files and a mirror)", recordings, errors)

    if "scanlate" not in args.skip:
        def scanlate() -> list[Figure]:
            result = bench_scan_lateness.run(files=args.scanlate_files, out=log)
            data["scan_lateness"] = result
            return bench_scan_lateness.figures(result)
        rows += _part("probe rounds during a recordings scan", scanlate, errors)

    if "restic" not in args.skip:  # ~15 s at 100,000 files; skipped without restic
        if shutil.which("restic") is None:
            rows.append(Figure("restic repository reads", "skipped: restic is not installed"))
        else:
            def restic() -> list[Figure]:
                result = bench_restic.run()
                data["restic"] = result
                return bench_restic.figures(result)
            rows += _part("restic repository reads (100,000 files)", restic, errors)

    print_table(rows, "lifeline benchmarks")
    data["summary"] = [asdict(f) for f in rows]
    data["errors"] = errors
    write_json(args.json, data)
    if errors:
        log("errors:\n  " + "\n  ".join(errors))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
