"""Benchmark: ``/metrics`` scrape time and size for a big site (100 links, 200 trunks,
1,000 DID ranges).

Run: ``python -m tests.bench.bench_metrics_scrape [--links 100] [--trunks 200]
[--ranges 1000] [--repeat 200] [--json]``. Pure CPU and loopback, no root. It builds one
``Snapshot`` the way the runtime fills it (every link probed by ICMP and TCP with RTT
histograms and per-result counters, links in route groups of four with their failover
pairs, trunks with OPTIONS response codes, a DID plan of 1,000 ranges over the trunks,
edges with push histograms), then times, as min / median / p95 of ``--repeat`` runs:
``generate_latest`` on the registry ``exporters.metrics.registry_for`` builds (what the
collector costs), and one ``GET /metrics`` through the aiohttp app of ``exporters.http``
over loopback (what Prometheus waits for). The goal from issue 11 is a scrape of at most
50 ms; the exit status is 1 if the median HTTP scrape misses it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web
from prometheus_client import generate_latest

from controller.core.didplan import DidEntry, TrunkView, compute_plan
from controller.core.e164 import Number, NumberRange
from controller.core.health import HealthState
from controller.core.snapshot import (
    PUSH_BUCKETS,
    RECONCILE_BUCKETS,
    RTT_BUCKETS,
    EdgeSnap,
    GroupSnap,
    JournalSnap,
    LinkSnap,
    PeerSnap,
    Snapshot,
    Tally,
    pairs,
)
from exporters.http import make_app
from exporters.metrics import registry_for

if TYPE_CHECKING:
    from tests.bench.bench_failover import Figure

GOAL_SECONDS = 0.050
FIRST = 390200000000  # +39 02 0000 0000, 12 digits
GROUP_SIZE = 4  # links per route group: two fibres, a radio link and LTE
PROBE_KINDS = ("icmp", "tcp")
RESULTS = ("ok", "timeout", "unreachable", "refused")
CODES = ("200", "403", "503", "timeout")
STATES = tuple(HealthState)


def build_snapshot(n_links: int, n_trunks: int, n_ranges: int) -> Snapshot:
    """A snapshot as a long-running daemon at a big site publishes it: every label set the
    runtime declares, histograms with observations in most buckets, a few links down."""
    tally = Tally()
    links = [f"link-{i:03d}" for i in range(n_links)]
    trunks = [f"carrier-{i // 2:03d}-sbc{i % 2 + 1}" for i in range(n_trunks)]
    tally.histogram("lifeline_probe_rtt_seconds", RTT_BUCKETS)
    tally.histogram("lifeline_reconcile_duration_seconds", RECONCILE_BUCKETS, ())
    tally.histogram("lifeline_plan_push_duration_seconds", PUSH_BUCKETS)
    for i, link in enumerate(links):
        for kind in PROBE_KINDS:
            tally.init("lifeline_probes_total", *((link, kind, r) for r in RESULTS))
            tally.add("lifeline_probes_total", (link, kind, "ok"), 86400.0 * 10 + i)
            for k in range(200):  # RTTs spread over the buckets, like a day of probes
                tally.observe("lifeline_probe_rtt_seconds", 0.0004 * (1.07 ** (k % 90)),
                              (link, kind))
        tally.init("lifeline_link_transitions_total", *((link, s.value) for s in STATES))
        tally.init("lifeline_probe_rounds_skipped_total", (link,))
    groups = []
    for g in range(0, n_links, GROUP_SIZE):
        members = tuple(links[g:g + GROUP_SIZE])
        name = f"group-{g // GROUP_SIZE:03d}"
        tally.init("lifeline_failovers_total", *((name, a, b) for a, b in pairs(members)))
        tally.init("lifeline_conntrack_flushed_total", (name,))
        groups.append(GroupSnap(name, 100 + g, "default", members, members[:1], members[:1],
                                f"{members[0]} is the best up link", 3600.0))
    for trunk in trunks:
        tally.init("lifeline_trunk_responses_total", *((trunk, c) for c in CODES))
        tally.add("lifeline_trunk_responses_total", (trunk, "200"), 8640.0)
        tally.init("lifeline_trunk_edge_trips_total", (trunk,))
    for result in ("changed", "noop", "error", "dry_run"):
        tally.init("lifeline_reconcile_total", (result,))
        tally.observe("lifeline_reconcile_duration_seconds", 0.003)
    edges = ("kamailio-a", "kamailio-b")
    for edge in edges:
        tally.init("lifeline_plan_pushes_total", (edge, "ok"), (edge, "error"))
        tally.observe("lifeline_plan_push_duration_seconds", 0.02, (edge,))
    for result in ("ok", "error"):
        tally.init("lifeline_alertmanager_posts_total", (result,))
        tally.init("lifeline_config_reloads_total", (result,))
    tally.init("lifeline_journal_write_errors_total", ())
    counters, histograms = tally.freeze()

    link_snaps = tuple(
        LinkSnap(link, f"wan{i}", f"198.18.{i // 250}.{i % 250 + 1}",
                 f"198.19.{i // 250}.{i % 250 + 1}",
                 1 + i % GROUP_SIZE, HealthState.DOWN if i % 17 == 0 else HealthState.UP,
                 120.0, f"{link}: answering", i % 17 != 0, 0.002 * (i % 5), 0.012 + i * 1e-5,
                 0.0015, 4.3, 100, 0.0, 0.25, loss_one_way=0.001, loss_evidence=0.4)
        for i, link in enumerate(links))
    trunk_states = {t: HealthState.DOWN if i % 23 == 0 else HealthState.UP
                    for i, t in enumerate(trunks)}
    views = {t: TrunkView(t, s) for t, s in trunk_states.items()}
    entries = [
        DidEntry(NumberRange(Number(FIRST + i * 200, 12), Number(FIRST + i * 200 + 99, 12)),
                 (trunks[(3 * i) % n_trunks], trunks[(3 * i + 1) % n_trunks],
                  trunks[(3 * i + 2) % n_trunks]), "pbx-rome", "dr-milan")
        for i in range(n_ranges)]
    plan = compute_plan(entries, views, dict.fromkeys(links, HealthState.UP),
                        {"pbx-rome": HealthState.UP, "dr-milan": HealthState.UP})
    trunk_snaps = tuple(
        PeerSnap(t, f"sip:{t}.example.net:5060", s, f"{t}: 200 OK", 200, 0.018, 0.0,
                 registered=True if i % 4 == 0 else None, dids=plan.numbers_per_trunk.get(t, 0))
        for i, (t, s) in enumerate(trunk_states.items()))
    destinations = tuple(
        PeerSnap(d, f"sip:{d}.example.net", HealthState.UP, "200 OK", 200, 0.004, 0.0)
        for d in ("pbx-rome", "dr-milan"))
    return Snapshot(site="rome", version="1.0.0", dry_run=False, taken_at=0.0, uptime=86400.0,
                    links=link_snaps, groups=tuple(groups), trunks=trunk_snaps,
                    destinations=destinations,
                    edges=tuple(EdgeSnap(e, True, None) for e in edges), plan=plan,
                    journal=JournalSnap("/var/lib/lifeline/journal.sqlite3"),
                    counters=counters, histograms=histograms, telephony=True)


def _stats(runs: list[float]) -> dict[str, float]:
    ordered = sorted(runs)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"min_s": ordered[0], "median_s": statistics.median(ordered), "p95_s": p95}


def time_generate(snap: Snapshot, repeat: int) -> tuple[dict[str, float], int]:
    registry = registry_for(lambda: snap)
    size = len(generate_latest(registry))  # warm-up, and the body size
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        generate_latest(registry)
        runs.append(time.perf_counter() - start)
    return _stats(runs), size


async def time_http(snap: Snapshot, repeat: int) -> tuple[dict[str, float], int]:
    runner = web.AppRunner(make_app(lambda: snap), access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))  # the kernel picks a free port; loopback only
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        runs: list[float] = []
        size = 0
        # One connection per scrape, as Prometheus' scraper may open; no compression asked.
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            for i in range(repeat + 1):
                start = time.perf_counter()
                async with session.get(url, headers={"Accept-Encoding": "identity"}) as resp:
                    body = await resp.read()
                elapsed = time.perf_counter() - start
                if resp.status != 200:
                    raise RuntimeError(f"/metrics answered {resp.status}")
                size = len(body)
                if i:  # the first is the warm-up
                    runs.append(elapsed)
        return _stats(runs), size
    finally:
        await runner.cleanup()


def _ms(stats: dict[str, float]) -> str:
    return (f"min {stats['min_s'] * 1e3:.1f} ms, median {stats['median_s'] * 1e3:.1f} ms, "
            f"p95 {stats['p95_s'] * 1e3:.1f} ms")


def run(n_links: int = 100, n_trunks: int = 200, n_ranges: int = 1000,
        repeat: int = 200, out: Callable[[str], None] = print) -> dict[str, Any]:
    started = time.perf_counter()
    snap = build_snapshot(n_links, n_trunks, n_ranges)
    out(f"snapshot: {n_links} links, {n_trunks} trunks, {n_ranges} DID ranges "
        f"(built in {time.perf_counter() - started:.2f} s)")
    gen, gen_size = time_generate(snap, repeat)
    out(f"generate_latest: {_ms(gen)}, body {gen_size / 1024:.1f} KiB")
    http, http_size = asyncio.run(time_http(snap, repeat))
    out(f"GET /metrics over loopback: {_ms(http)}, body {http_size / 1024:.1f} KiB")
    series = sum(1 for line in generate_latest(registry_for(lambda: snap)).splitlines()
                 if line and not line.startswith(b"#"))
    met = http["median_s"] <= GOAL_SECONDS
    out(f"series: {series}; goal: median scrape <= {GOAL_SECONDS * 1e3:.0f} ms: "
        f"{'met' if met else 'MISSED'}")
    return {"links": n_links, "trunks": n_trunks, "ranges": n_ranges, "repeat": repeat,
            "series": series, "generate": gen, "http": http, "body_bytes": http_size,
            "goal_s": GOAL_SECONDS, "met": met}


def figures(result: dict[str, Any]) -> list[Figure]:
    """The summary rows of ``run``'s result, for ``run_all``."""
    from tests.bench.bench_failover import Figure

    what = (f"/metrics, {result['links']} links, {result['trunks']} trunks, "
            f"{result['ranges']} DID ranges ({result['series']} series)")
    return [
        Figure(f"{what}: generate_latest", _ms(result["generate"])),
        Figure(f"{what}: GET over loopback",
               f"{_ms(result['http'])}, {result['body_bytes'] / 1024:.0f} KiB",
               f"median <= {GOAL_SECONDS * 1e3:.0f} ms", bool(result["met"])),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--links", type=int, default=100)
    parser.add_argument("--trunks", type=int, default=200)
    parser.add_argument("--ranges", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    if args.links < GROUP_SIZE or args.trunks < 3 or args.ranges < 1 or args.repeat < 1:
        parser.error(f"need --links >= {GROUP_SIZE}, --trunks >= 3, --ranges and --repeat >= 1")
    result = run(args.links, args.trunks, args.ranges, args.repeat)
    if args.json:
        print(json.dumps(result))
    return 0 if result["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
