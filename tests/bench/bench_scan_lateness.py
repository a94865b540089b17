"""Benchmark: do the link probe rounds keep their timing while the recordings are scanned?

Run: ``python -m tests.bench.bench_scan_lateness [--files 1000000] [--where shm|tmp] [--json]``.
No root, no network beyond loopback. It builds a store of ``--files`` tiny recordings and a
mirror (``bench_recordings``' tree builder), then, in one asyncio process, runs the real
``probes.scheduler.RoundScheduler`` at lifeline's default link pace (a round every 100 ms,
start jitter 0) with one real TCP probe to a server of this loop on 127.0.0.1, and records
each round's lateness: its send time minus its planned slot on the scheduler's grid
(replayed from the send times with the scheduler's own rule, so a skipped slot counts).
Modes, each a first full scan of both trees into a new, empty index:

- ``idle``: no scan (the baseline, 10 s);
- ``thread``: ``RecIndex.scan_tree`` of both trees in ``asyncio.to_thread``;
- ``thread-1ms``: the same with ``sys.setswitchinterval(0.001)`` (default 5 ms);
- ``process``: the same scan in a child process (multiprocessing, ``spawn``), the index
  path passed in and the ScanReports returned.

It prints p50/p99/max lateness, rounds later than 50 ms (failover is judged on 3 lost
rounds of 100 ms, so a round late by half a slot matters), skipped slots, the longest gap
between two rounds, and the scan's wall and CPU time in each mode. Trees and indexes are
removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import multiprocessing
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probes.recindex import RecIndex, ScanReport
from probes.sample import ProbeSpec, Sample
from probes.scheduler import RoundScheduler
from tests.bench.bench_recordings import INODE_BYTES, WAV, WHERE, _build

if TYPE_CHECKING:
    from tests.bench.bench_failover import Figure

__all__ = ["MODES", "figures", "main", "run"]

INTERVAL = 0.1  # lifeline's default link probe round
LATE_S = 0.05  # half a slot: a round this late is a round the health machine may miss
IDLE_S = 10.0
LEAD_S = 1.0  # rounds measured before the scan starts are not counted, this settles the loop
MODES = ("idle", "thread", "thread-1ms", "process")
GOAL_P99_MS = 10.0
GOAL_LATE = 0  # no round later than LATE_S during a scan


def _scan_both(index_path: str, roots: dict[str, str], now_ns: int
               ) -> tuple[list[ScanReport], float]:
    """Scan every tree into the index at ``index_path``; returns the reports and CPU time.
    Runs in a worker thread or in a spawned child (so it is a module-level function)."""
    cpu = time.process_time()
    with RecIndex(index_path) as index:
        reports = [index.scan_tree(name, root, WAV, now_ns=now_ns)
                   for name, root in roots.items()]
    return reports, time.process_time() - cpu


def lateness(sent: list[float], interval: float) -> tuple[list[float], int]:
    """Each round's lateness against the scheduler's grid, and the slots it skipped.

    Replays RoundScheduler._run: the first round is on time (start jitter 0); after each
    round the next slot is ``interval`` later, and when that slot has already passed the
    scheduler skips to the first slot still ahead (each skipped slot is a round not sent)."""
    late: list[float] = []
    skipped = 0
    if not sent:
        return late, skipped
    planned = sent[0]
    for at in sent:
        late.append(at - planned)
        planned += interval
        behind = at - planned
        if behind >= 0:
            missed = math.floor(behind / interval) + 1
            skipped += missed
            planned += missed * interval
    return late, skipped


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()


async def _mode(mode: str, roots: dict[str, str], state: Path, idle_s: float
                ) -> dict[str, Any]:
    """Run the probe rounds through one mode; the figures of the rounds during the scan."""
    server = await asyncio.start_server(_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sent: list[float] = []
    samples: list[Sample] = []

    def on_round(sent_at: float, got: list[Sample]) -> None:
        sent.append(sent_at)
        samples.extend(got)

    scheduler = RoundScheduler([ProbeSpec("tcp", "127.0.0.1", port)], interval=INTERVAL,
                               on_round=on_round, start_jitter=0.0, name=f"bench-{mode}")
    loop = asyncio.get_running_loop()
    result: dict[str, Any] = {"mode": mode}
    index_path = str(state / f"index-{mode}.sqlite")
    now_ns = time.time_ns()
    switch = sys.getswitchinterval()
    scheduler.start()
    try:
        await asyncio.sleep(LEAD_S)
        began, cpu = loop.time(), time.process_time()
        reports: list[ScanReport] = []
        if mode == "idle":
            await asyncio.sleep(idle_s)
        elif mode in ("thread", "thread-1ms"):
            if mode == "thread-1ms":
                sys.setswitchinterval(0.001)
            reports, result["scan_cpu_s"] = await asyncio.to_thread(
                _scan_both, index_path, roots, now_ns)
        else:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                reports, result["scan_cpu_s"] = await loop.run_in_executor(
                    pool, _scan_both, index_path, roots, now_ns)
        ended = loop.time()
        result["wall_s"] = ended - began
        result["loop_cpu_s"] = time.process_time() - cpu  # this process: loop (+ thread scan)
        await asyncio.sleep(2 * INTERVAL)  # the last rounds in flight report
    finally:
        sys.setswitchinterval(switch)
        await scheduler.stop()
        server.close()
        await server.wait_closed()
    late, skipped = lateness(sent, INTERVAL)
    window = [lt for at, lt in zip(sent, late, strict=True) if began <= at <= ended]
    result.update({
        "rounds": len(window), "skipped": skipped,
        "p50_ms": _pct(window, 0.50) * 1e3, "p99_ms": _pct(window, 0.99) * 1e3,
        "max_ms": max(window, default=float("nan")) * 1e3,
        "late_50ms": sum(1 for lt in window if lt > LATE_S),
        "max_gap_ms": max((b - a for a, b in itertools.pairwise(sent)
                           if a >= began - INTERVAL and b <= ended + INTERVAL),
                          default=float("nan")) * 1e3,
        "probes_ok": sum(1 for s in samples if s.ok), "probes": len(samples),
        "files": [r.files for r in reports],
    })
    return result


def run(files: int = 1_000_000, where: str = "shm", modes: tuple[str, ...] = MODES,
        out: Callable[[str], None] = print, idle_s: float = IDLE_S) -> dict[str, Any]:
    result: dict[str, Any] = {"files": files, "where": where, "interval_s": INTERVAL,
                              "modes": {}}
    with tempfile.TemporaryDirectory(prefix="bench-late-", dir=WHERE[where]) as trees, \
            tempfile.TemporaryDirectory(prefix="bench-late-state-") as state:
        roots = {"store": str(Path(trees) / "store"), "nas": str(Path(trees) / "nas")}
        now = time.time_ns()
        began = time.perf_counter()
        for root in roots.values():
            _build(Path(root), files, now, lambda _: True)
        out(f"built 2 x {files} recordings in {time.perf_counter() - began:.0f} s")
        for mode in modes:
            got = asyncio.run(_mode(mode, roots, Path(state), idle_s))
            if mode != "idle" and got["files"] != [files, files]:
                raise RuntimeError(f"{mode}: scan indexed {got['files']}, expected {files}")
            result["modes"][mode] = got
            out(f"{mode}: {_line(got)}")
        began = time.perf_counter()
    out(f"removed the trees in {time.perf_counter() - began:.0f} s")
    return result


def _line(m: dict[str, Any]) -> str:
    scan = "" if m["mode"] == "idle" else (
        f"; scan wall {m['wall_s']:.1f} s, CPU {m.get('scan_cpu_s', 0.0):.1f} s")
    return (f"{m['rounds']} rounds: lateness p50 {m['p50_ms']:.2f} ms, p99 {m['p99_ms']:.2f} "
            f"ms, max {m['max_ms']:.1f} ms, >50 ms: {m['late_50ms']}, skipped "
            f"{m['skipped']}, longest gap {m['max_gap_ms']:.0f} ms{scan}")


def figures(result: dict[str, Any]) -> list[Figure]:
    """The summary rows of ``run``'s result, for ``run_all``."""
    from tests.bench.bench_failover import Figure

    rows = []
    for mode, m in result["modes"].items():
        what = ("idle, no scan" if mode == "idle" else
                f"during a full scan of {result['files']:,} files x 2 trees, {mode}")
        ok = m["late_50ms"] <= GOAL_LATE and m["skipped"] == 0
        rows.append(Figure(f"probe rounds (100 ms) {what}", _line(m),
                           "no round late > 50 ms", ok))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=1_000_000,
                        help="recordings in the store (and its mirror); default 1,000,000")
    parser.add_argument("--where", choices=sorted(WHERE), default="shm",
                        help="where the trees go: /dev/shm (default) or /tmp")
    parser.add_argument("--mode", choices=MODES, action="append",
                        help="run only this mode (repeatable); default all")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    if not 1000 <= args.files <= 2_000_000:
        parser.error("--files must be 1000..2000000")
    free = shutil.disk_usage(WHERE[args.where]).free
    if free < 2 * args.files * INODE_BYTES:
        print(f"bench_scan_lateness: {WHERE[args.where]} has {free / 2**20:.0f} MB free, "
              f"too little for 2 x {args.files} files", file=sys.stderr)
        return 2
    from tests.bench.bench_failover import print_table

    result = run(args.files, args.where, tuple(args.mode or MODES))
    print_table(figures(result), "probe rounds during a recordings scan")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
