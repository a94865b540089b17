"""Benchmark: one NUT read against the real upsd, and how long the lab's UPS takes to change.

Run as root: ``python -m tests.bench.bench_nut [--reads 200] [--changes 10] [--json]``.
It starts upsd with the dummy-ups driver on 127.0.0.1 (tests/lab/nut.py) and times, as
min / median / p95: ``read_ups`` without credentials (connect, LIST VAR, LOGOUT) and with
USERNAME/PASSWORD/LOGIN; then, ``--changes`` times, from rewriting the driver's file to
the first read that shows the new status, at the driver's poll of 1 s (the lab's) and 2 s
(NUT's default). That pick-up time is part of any "UPS raises LB -> calls at DR" figure
measured with the dummy driver: a real UPS's driver polls the same way.
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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probes.nut import read_ups
from tests.lab.nut import Upsd, nut_skip_reason

if TYPE_CHECKING:
    from tests.bench.bench_failover import Figure

__all__ = ["figures", "main", "run"]

PASSWORD = "bench-secret"


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * len(ordered)) - 1)]
    return {"min_s": ordered[0], "median_s": statistics.median(ordered), "p95_s": p95,
            "max_s": ordered[-1]}


def _ms(s: dict[str, float]) -> str:
    return (f"min {s['min_s'] * 1e3:.2f} / median {s['median_s'] * 1e3:.2f} / "
            f"p95 {s['p95_s'] * 1e3:.2f} ms")


async def _reads(upsd: Upsd, n: int, login: bool) -> list[float]:
    took = []
    user, password = ("monitor", PASSWORD) if login else (None, None)
    for _ in range(n):
        start = time.perf_counter()
        r = await read_ups(upsd.host, upsd.port, upsd.ups, timeout=2.0, username=user,
                           password=password)
        took.append(time.perf_counter() - start)
        if not r.ok:
            raise RuntimeError(f"read failed: {r.detail}")
    return took


async def _pickup(upsd: Upsd, changes: int) -> list[float]:
    took = []
    rng = random.Random(12)
    for i in range(changes):
        status = "OB DISCHRG" if i % 2 == 0 else "OL CHRG"
        start = upsd.set(status=status)
        while True:
            r = await read_ups(upsd.host, upsd.port, upsd.ups, timeout=2.0)
            if r.ok and r.flags == frozenset(status.split()):
                break
            if time.monotonic() - start > 15.0:
                raise RuntimeError(f"upsd did not show {status!r} within 15 s")
            await asyncio.sleep(0.01)
        took.append(time.monotonic() - start)
        # the next change lands at a random phase of the driver's poll, as a real one does
        await asyncio.sleep(rng.uniform(0.0, upsd.pollinterval))
    return took


def run(reads: int = 200, changes: int = 10,
        out: Callable[[str], None] = print) -> dict[str, Any]:
    result: dict[str, Any] = {"reads": reads, "changes": changes}
    with tempfile.TemporaryDirectory(prefix="bench-nut-") as tmp:
        for poll in (1, 2):
            upsd = Upsd(Path(tmp) / f"poll{poll}", pollinterval=poll,
                        users={"monitor": (PASSWORD, "upsmon secondary")})
            try:
                upsd.start()
                if poll == 1:
                    result["read"] = _stats(asyncio.run(_reads(upsd, reads, False)))
                    out(f"read_ups, no login: {_ms(result['read'])}")
                    result["read_login"] = _stats(asyncio.run(_reads(upsd, reads, True)))
                    out(f"read_ups, with LOGIN: {_ms(result['read_login'])}")
                key = f"pickup_poll{poll}"
                result[key] = _stats(asyncio.run(_pickup(upsd, changes)))
                out(f"dummy.dev rewritten -> read shows it (driver poll {poll} s): "
                    f"{_ms(result[key])}")
            finally:
                upsd.stop()
    return result


def figures(result: dict[str, Any]) -> list[Figure]:
    """The summary rows of ``run``'s result, for ``run_all``."""
    from tests.bench.bench_failover import Figure

    rows = [Figure("NUT read (real upsd, loopback), no login", _ms(result["read"])),
            Figure("NUT read with USERNAME/PASSWORD/LOGIN", _ms(result["read_login"]))]
    for poll in (1, 2):
        rows.append(Figure(f"dummy UPS change -> upsd serves it (driver poll {poll} s)",
                           _ms(result[f"pickup_poll{poll}"])))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.reads <= 100_000 or not 1 <= args.changes <= 100:
        parser.error("--reads must be 1..100000 and --changes 1..100")
    reason = nut_skip_reason()
    if reason is not None:
        print(f"bench_nut: {reason}", file=sys.stderr)
        return 2
    result = run(args.reads, args.changes)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
