"""Benchmark: what reading a UPS over SNMP costs (probes/snmpups.py against snmpsim).

Run from the repository: ``python -m tests.bench.bench_snmp_ups [--reads 200]``; no root.
It measures, against the lab's snmpsim on 127.0.0.1 (tests/lab/snmpups.py): the latency and
CPU of a read on a warm ``SnmpUps`` (v2c and v3 with SHA + AES), the first read of a fresh
process (pysnmp imported, engine built), the time from the agent's record set changing to a
read seeing it, and, in child processes so that the figures are pysnmp's alone, the import
time and RSS pysnmp adds to a process that already holds the daemon's libraries, with
pysmi installed (the tests) and without it (a router: pysmi is no runtime dependency).
snmpsim is stopped at the end, also on failure. No goals: the issue sets none for SNMP;
the figures go in the report and the docs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tests.bench.bench_failover import Figure, add_json_arg, log, print_table, write_json

__all__ = ["figures", "main", "run"]

REPO = Path(__file__).resolve().parents[2]

# A child process: the daemon's own libraries first, then pysnmp and one engine, timed.
_CHILD = r"""
import json, sys, time
if sys.argv[1] == "no-pysmi":
    sys.modules["pysmi"] = None  # as on a router, where only pysnmp is installed
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS"))
import asyncio, aiohttp, prometheus_client, pydantic, yaml  # the daemon's, loaded already
base = rss(); t0 = time.perf_counter()
from probes.snmpups import _new_engine
import pysnmp.hlapi.v3arch.asyncio
t1 = time.perf_counter(); imported = rss()
_new_engine()
t2 = time.perf_counter()
print(json.dumps({"import_ms": (t1 - t0) * 1e3, "import_kib": imported - base,
                  "engine_ms": (t2 - t1) * 1e3, "total_kib": rss() - base}))
"""


def _child(mode: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", _CHILD, mode], cwd=REPO,
                         capture_output=True, text=True, check=True, timeout=120).stdout
    result: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return result


def _quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": statistics.median(ordered) * 1e3,
            "p95_ms": ordered[int(0.95 * (len(ordered) - 1))] * 1e3,
            "max_ms": ordered[-1] * 1e3}


async def _reads(ups: Any, n: int) -> dict[str, float]:
    """n reads on a warm SnmpUps: wall quantiles and CPU per read (this process)."""
    assert (await ups.read(timeout=1.0)).ok  # warm: engine built, agent discovered
    walls = []
    cpu0 = time.process_time()
    for _ in range(n):
        t0 = time.perf_counter()
        reading = await ups.read(timeout=1.0)
        walls.append(time.perf_counter() - t0)
        if not reading.ok:
            raise RuntimeError(f"read failed: {reading.detail}")
    return {**_quantiles(walls), "cpu_ms": (time.process_time() - cpu0) / n * 1e3}


async def _measure(port: int, agent: Any, n: int) -> dict[str, Any]:
    from probes.snmpups import SnmpUps, SnmpV3User
    from tests.lab import snmpups as lab

    first_t0 = time.perf_counter()
    v2c = SnmpUps("127.0.0.1", port, community=lab.COMMUNITY)
    first = await v2c.read(timeout=2.0)
    first_ms = (time.perf_counter() - first_t0) * 1e3
    if not first.ok:
        raise RuntimeError(f"first read failed: {first.detail}")
    try:
        warm_v2c = await _reads(v2c, n)
        changes = []
        for i in range(20):
            state = lab.ON_BATTERY if i % 2 == 0 else lab.MAINS
            want = {"OB", "DISCHRG"} if i % 2 == 0 else {"OL"}
            t0 = time.perf_counter()
            agent.set(state)
            while (await v2c.read(timeout=1.0)).flags != want:
                if time.perf_counter() - t0 > 5:
                    raise RuntimeError("a change of the record set was not seen in 5 s")
            changes.append(time.perf_counter() - t0)
    finally:
        await v2c.aclose()
    v3 = SnmpUps("127.0.0.1", port, v3=SnmpV3User(lab.V3_USER, "sha", lab.V3_AUTH_KEY,
                                                  "aes", lab.V3_PRIV_KEY))
    try:
        warm_v3 = await _reads(v3, n)
    finally:
        await v3.aclose()
    return {"first_read_ms": first_ms, "v2c": warm_v2c, "v3": warm_v3,
            "change_seen": _quantiles(changes)}


def run(reads: int = 200) -> dict[str, Any]:
    from tests.lab.snmpups import snmp_ups

    with tempfile.TemporaryDirectory(prefix="lifeline-bench-snmp-") as tmp:
        t0 = time.perf_counter()
        with snmp_ups(Path(tmp)) as agent:
            started_ms = (time.perf_counter() - t0) * 1e3
            result = asyncio.run(_measure(agent.port, agent, reads))
    result["agent_start_ms"] = started_ms
    result["reads"] = reads
    result["cost_with_pysmi"] = _child("with-pysmi")
    result["cost_router"] = _child("no-pysmi")
    return result


def figures(r: dict[str, Any]) -> list[Figure]:
    def lat(x: dict[str, float]) -> str:
        return (f"p50 {x['p50_ms']:.1f} ms, p95 {x['p95_ms']:.1f} ms, max {x['max_ms']:.1f} ms, "
                f"CPU {x['cpu_ms']:.2f} ms/read")

    router, tests = r["cost_router"], r["cost_with_pysmi"]
    return [
        Figure(f"SNMP UPS read v2c, warm, {r['reads']} reads (snmpsim, loopback)", lat(r["v2c"])),
        Figure(f"SNMP UPS read v3 SHA+AES, warm, {r['reads']} reads", lat(r["v3"])),
        Figure("SNMP UPS first read in a fresh process (import, engine, read; pysmi in)",
               f"{r['first_read_ms']:.0f} ms"),
        Figure("snmpsim record set rewritten -> read sees it",
               f"p50 {r['change_seen']['p50_ms']:.1f} ms, max {r['change_seen']['max_ms']:.1f} ms"),
        Figure("pysnmp import + engine, without pysmi (router)",
               f"import {router['import_ms']:.0f} ms +{router['import_kib'] / 1024:.1f} MiB RSS; "
               f"engine {router['engine_ms']:.0f} ms; total +{router['total_kib'] / 1024:.1f} MiB"),
        Figure("pysnmp import + engine, with pysmi (tests)",
               f"import {tests['import_ms']:.0f} ms +{tests['import_kib'] / 1024:.1f} MiB RSS; "
               f"engine {tests['engine_ms']:.0f} ms; total +{tests['total_kib'] / 1024:.1f} MiB"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=200, help="warm reads per version")
    add_json_arg(parser)
    args = parser.parse_args(argv)
    if not 10 <= args.reads <= 100000:
        parser.error("--reads must be 10..100000")
    log("snmp-ups: reading snmpsim")
    result = run(args.reads)
    rows = figures(result)
    print_table(rows, "SNMP UPS benchmark")
    write_json(args.json, {**result, "summary": [asdict(f) for f in rows]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
