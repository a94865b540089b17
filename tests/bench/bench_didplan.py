"""Benchmark: compute cost of the DID plan at 100,000 numbers in 1,000 ranges over 10 trunks.

Run: ``python -m tests.bench.bench_didplan [--ranges 1000] [--per-range 100] [--trunks 10]
[--repeat 50] [--json]``. Pure CPU, no network, no root. It builds the entries (5 carriers
of 2 SBCs each; every range lists 3 capable trunks), then times, each as the median and the
worst of ``--repeat`` runs: computing the plan with every trunk up; computing it with the
two busiest trunks down (reasons get longer, ranges move); the diff between those two plans
(what an actuator pushes on a failover); and ``lookup`` of one number, timed over 100,000
random numbers. The goal from the issue is a compute time of at most 100 ms; the figures
are printed, and the exit status is 1 if the median compute misses that goal.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable

from controller.core.didplan import DidEntry, DidPlan, TrunkView, compute_plan, diff
from controller.core.e164 import Number, NumberRange
from controller.core.health import HealthState

GOAL_SECONDS = 0.100
FIRST = 390200000000  # +39 02 0000 0000, 12 digits


def build_entries(ranges: int, per_range: int, trunks: int) -> tuple[list[DidEntry], list[str]]:
    names = [f"carrier-{k // 2}-sbc{k % 2 + 1}" for k in range(trunks)]
    entries = []
    for i in range(ranges):
        first = FIRST + i * per_range * 2  # gaps between ranges, like real allocations
        own = (2 * i) % trunks
        capable = (names[own], names[(own + 1) % trunks], names[(own + 2) % trunks])
        entries.append(
            DidEntry(
                NumberRange(Number(first, 12), Number(first + per_range - 1, 12)),
                capable,
                "pbx-rome",
                "dr-milan",
            )
        )
    return entries, names


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs), max(runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranges", type=int, default=1000)
    parser.add_argument("--per-range", type=int, default=100)
    parser.add_argument("--trunks", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--lookups", type=int, default=100_000)
    parser.add_argument("--json", action="store_true", help="one JSON line instead of text")
    args = parser.parse_args(argv)

    entries, names = build_entries(args.ranges, args.per_range, args.trunks)
    links = {"fibre-a": HealthState.UP, "fibre-b": HealthState.UP, "lte": HealthState.UP}
    dests = {"pbx-rome": HealthState.UP, "dr-milan": HealthState.UP}
    all_up = {n: TrunkView(n, HealthState.UP, links=("fibre-a", "fibre-b")) for n in names}
    failed = dict(all_up)
    for n in names[:2]:
        failed[n] = TrunkView(n, HealthState.DOWN, reason=f"{n}: OPTIONS timeout (3 in a row)")

    def plan_up() -> DidPlan:
        return compute_plan(entries, all_up, links, dests)

    def plan_failed() -> DidPlan:
        return compute_plan(entries, failed, links, dests)

    up_med, up_max = timed(plan_up, args.repeat)
    fail_med, fail_max = timed(plan_failed, args.repeat)
    before, after = plan_up(), plan_failed()
    changes = diff(before, after)
    was = before.by_range()
    moved = [d for d in changes.changed if was[d.numbers].trunk != d.trunk]
    diff_med, diff_max = timed(lambda: diff(before, after), args.repeat)

    rng = random.Random(4)
    span = args.ranges * args.per_range * 2
    numbers = [Number(FIRST + rng.randrange(span), 12) for _ in range(args.lookups)]
    start = time.perf_counter()
    hits = sum(1 for n in numbers if after.lookup(n) is not None)
    lookup_each = (time.perf_counter() - start) / len(numbers)

    figures = {
        "ranges": args.ranges,
        "numbers": before.total_numbers,
        "trunks": args.trunks,
        "compute_all_up_ms": round(up_med * 1000, 3),
        "compute_all_up_worst_ms": round(up_max * 1000, 3),
        "compute_two_down_ms": round(fail_med * 1000, 3),
        "compute_two_down_worst_ms": round(fail_max * 1000, 3),
        "diff_ms": round(diff_med * 1000, 3),
        "diff_worst_ms": round(diff_max * 1000, 3),
        "ranges_changed": len(changes.changed),  # new trunk or new in-call fallback
        "ranges_moved": len(moved),
        "numbers_moved": sum(d.numbers.size for d in moved),
        "unroutable_numbers": after.unroutable_numbers,
        "lookup_us": round(lookup_each * 1e6, 3),
        "lookup_hit_ratio": round(hits / len(numbers), 3),
        "goal_ms": GOAL_SECONDS * 1000,
    }
    worst_median = max(up_med, fail_med)
    if args.json:
        print(json.dumps(figures))
    else:
        print(
            f"DID plan: {figures['numbers']:,} numbers in {args.ranges:,} ranges, "
            f"{args.trunks} trunks ({args.repeat} runs, median / worst)"
        )
        print(f"  compute, all trunks up:   {up_med * 1000:7.2f} ms / {up_max * 1000:.2f} ms")
        print(f"  compute, 2 trunks down:   {fail_med * 1000:7.2f} ms / {fail_max * 1000:.2f} ms")
        print(
            f"  diff (failover):          {diff_med * 1000:7.2f} ms / {diff_max * 1000:.2f} ms"
            f"  -> {figures['ranges_changed']} ranges changed, {figures['ranges_moved']} of them"
            f" moved ({figures['numbers_moved']:,} numbers)"
        )
        print(
            f"  lookup one number:        {lookup_each * 1e6:7.2f} us  "
            f"({hits:,} of {len(numbers):,} random numbers in a range)"
        )
        verdict = "met" if worst_median <= GOAL_SECONDS else "MISSED"
        print(f"  goal <= {GOAL_SECONDS * 1000:.0f} ms compute: {verdict}")
    return 0 if worst_median <= GOAL_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
