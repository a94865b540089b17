"""Benchmark: what a service check costs, and the time from the CRM failing to its DIDs
going to DR, at the default service settings.

Run: ``python -m tests.bench.bench_services [--trials 3] [--repeat 200] [--json]``.
Loopback only, no root. A real aiohttp service (tests.lab.httpservice) stands in for the
CRM, with certificates from the openssl CLI. Part 1 times ``--repeat`` checks each of
plain HTTP, HTTPS (verified against the lab CA) and TCP, and reports the median and p95
of the check's wall time. Part 2 runs the chain the daemon runs: the config's
defaults (a ``services:`` entry with only a URL and ``needed_by``), the services runtime
(controller.runtime.services: a RecheckScheduler through read_service, the ServiceWatch
health machine, whose transitions wake the plan), effective_destinations and the DID
plan, as Telephony.decide chains them; the CRM is broken at a random moment (answers
500, is stopped, or stops answering) and the figure is the time until the plan sends the
range to DR. The goal is what the defaults promise: at most one interval plus
``down_after - 1`` rechecks (and, for a service that hangs, their timeouts), plus a
second of slack.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from controller.config import parse_config
from controller.core.didplan import DidEntry, compute_plan
from controller.core.e164 import parse_range
from controller.core.health import HealthState
from controller.core.services import effective_destinations
from controller.core.snapshot import Tally
from controller.runtime.journal import Journal
from controller.runtime.services import ServiceChecks
from probes.registry import read_service
from probes.sample import HttpOptions, ProbeSpec
from tests.bench.bench_failover import Figure, log, percentile, print_table
from tests.lab.httpservice import SERVICE_NAME, HttpService, make_pki

__all__ = ["figures", "main", "run"]

CONFIG = """
site: bench
links: [{name: lan, interface: lan0, gateway: 192.0.2.1, probes: {targets: [{icmp: 192.0.2.1}]}}]
destinations: [{name: pbx, uri: "sip:192.0.2.130"}, {name: dr, uri: "sip:192.0.2.140"}]
services:
  - {name: crm, http: {url: "URL"}, needed_by: [pbx]}
"""
MODES = ("500", "stopped", "hangs")


async def _time_checks(spec: ProbeSpec, repeat: int) -> dict[str, float]:
    runs = []
    for _ in range(repeat):
        began = time.perf_counter()
        reading = await read_service(spec, 2.0)
        runs.append(time.perf_counter() - began)
        if not reading.ok:
            raise RuntimeError(f"{spec.label()}: {reading.detail}")
    return {"median": statistics.median(runs), "p95": percentile(runs, 95)}


async def _check_cost(repeat: int, pki_dir: Path) -> dict[str, dict[str, float]]:
    pki = make_pki(pki_dir)
    plain, secure = HttpService(), HttpService(tls=pki.valid)
    await plain.start()
    await secure.start()
    try:
        return {
            "http": await _time_checks(ProbeSpec(
                "http", "127.0.0.1", plain.port, http=HttpOptions(url=plain.url())), repeat),
            "https": await _time_checks(ProbeSpec(
                "http", "127.0.0.1", secure.port, http=HttpOptions(
                    url=secure.url(host=SERVICE_NAME), ca_file=str(pki.ca))), repeat),
            "tcp": await _time_checks(ProbeSpec("tcp", "127.0.0.1", plain.port), repeat),
        }
    finally:
        await plain.stop()
        await secure.stop()


async def _to_dr(mode: str) -> tuple[float, float]:
    """One trial: seconds from breaking the CRM to the plan's DR; and the goal."""
    svc = HttpService()
    await svc.start()
    cfg = parse_config(CONFIG.replace("URL", svc.url()))
    service = cfg.services[0]
    entries = [DidEntry(parse_range("+390212345600-+390212345699"), ("a1",), "pbx", "dr")]
    loop = asyncio.get_running_loop()
    in_dr = asyncio.Event()
    tmp = tempfile.TemporaryDirectory(prefix="lifeline-bench-svc-")
    journal = Journal(Path(tmp.name) / "journal.sqlite3")

    def decide() -> None:  # what the daemon's cycle does once a transition woke it
        dests = effective_destinations({"pbx": (HealthState.UP, ""),
                                        "dr": (HealthState.UP, "")}, checks.views())
        plan = compute_plan(entries, {}, {}, {n: v.state for n, v in dests.items()},
                            service_down={n: v.reason for n, v in dests.items()
                                          if v.cause == "service"})
        if plan.decisions[0].on_dr:
            in_dr.set()

    checks = ServiceChecks(cfg.services, journal, Tally(), on_change=decide)
    watch = checks.services[service.name].watch
    checks.start()
    try:
        while watch.state is not HealthState.UP:
            await asyncio.sleep(0.1)
        await asyncio.sleep(random.uniform(0, service.interval))  # a random phase
        broke = loop.time()
        if mode == "500":
            svc.status = 500
        elif mode == "stopped":
            await svc.stop()
        else:
            svc.delay = 3600.0
        await asyncio.wait_for(in_dr.wait(), 60)
        took = loop.time() - broke
    finally:
        await checks.stop()
        await svc.stop()
        journal.close()
        tmp.cleanup()
    rechecks = service.thresholds.down_after - 1
    extra = service.timeout if mode == "hangs" else 0.0
    goal = service.interval + extra + rechecks * (service.recheck_interval + extra) + 1.0
    return took, goal


async def _run(trials: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="lifeline-bench-svc-") as d:
        cost = await _check_cost(repeat, Path(d))
    to_dr: dict[str, dict[str, Any]] = {}
    for mode in MODES:
        runs = [await _to_dr(mode) for _ in range(trials)]
        times = [t for t, _ in runs]
        log(f"crm {mode}: to DR in {', '.join(f'{t:.2f}' for t in times)} s")
        to_dr[mode] = {"runs": times, "max": max(times), "median": statistics.median(times),
                       "goal": runs[0][1]}
    return {"check_cost": cost, "to_dr": to_dr, "trials": trials, "repeat": repeat}


def run(trials: int = 3, repeat: int = 200) -> dict[str, Any]:
    return asyncio.run(_run(trials, repeat))


def figures(result: dict[str, Any]) -> list[Figure]:
    rows = [Figure(f"service check, {kind} on loopback (median / p95)",
                   f"{s['median'] * 1000:.2f} / {s['p95'] * 1000:.2f} ms")
            for kind, s in result["check_cost"].items()]
    for mode, r in result["to_dr"].items():
        rows.append(Figure(
            f"CRM {mode} -> DIDs to DR at defaults (median / max of {result['trials']})",
            f"{r['median']:.2f} / {r['max']:.2f} s", f"<= {r['goal']:.1f} s",
            r["max"] <= r["goal"]))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print the result as JSON too")
    args = parser.parse_args(argv)
    result = run(args.trials, args.repeat)
    rows = figures(result)
    print_table(rows)
    if args.json:
        print(json.dumps(result))
    return 0 if all(r.met is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
