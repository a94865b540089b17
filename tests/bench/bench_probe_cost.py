"""Benchmark: what the default probing costs, packets on each link and the daemon's CPU.

Run as root: ``python -m tests.bench.bench_probe_cost [--seconds 30]``.
Faster detection is bought with more probes, so this measures the price next to the
previous default: for each setting (the daemon's own defaults, and 200 ms rounds, the
default before issue 9) it builds a fresh lab, starts the real daemon with three links of
three targets each (gateway and two far targets, reliability 2, as the failover benchmark
runs), waits until every link is up and then counts, over ``--seconds`` with no other
traffic, the packets each uplink sends and receives (the site's interface counters: the
data plane, not our own metrics) and the daemon's CPU seconds (utime + stime from /proc).
The lab and the daemon are removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tests.bench.bench_failover import Figure, add_json_arg, log, print_table, write_json
from tests.lab.lifelined import LifelineProcess
from tests.lab.topology import Lab

__all__ = ["CostResult", "figures", "main", "run"]

SETTINGS: dict[str, dict[str, Any]] = {
    "defaults": {"probe_defaults": True, "reliability": 2},
    "200 ms rounds (before)": {"interval": "200ms", "reliability": 2},
}


@dataclass
class CostResult:
    setting: str
    seconds: float
    packets_per_link: dict[str, float]  # sent + received per second, by link
    cpu_seconds: float

    @property
    def cpu_share(self) -> float:
        return self.cpu_seconds / self.seconds if self.seconds else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "cpu_share": self.cpu_share}


def _counters(lab: Lab, ifname: str) -> int:
    out = lab.run(lab.site, ["ip", "-s", "-j", "link", "show", "dev", ifname]).stdout
    stats = json.loads(out)[0]["stats64"]
    return int(stats["tx"]["packets"]) + int(stats["rx"]["packets"])


def run(setting: str, seconds: float = 30.0) -> CostResult:
    overrides = SETTINGS[setting]
    with tempfile.TemporaryDirectory(prefix="lifeline-bench-cost-") as tmp, Lab() as lab:
        daemon = LifelineProcess(lab, Path(tmp) / "state", **overrides)
        try:
            daemon.start()
            for name in lab.links:
                daemon.wait_link(name, "up", timeout=30.0)
            ifnames = {name: lab.link(name).site_ifname for name in lab.links}
            before = {name: _counters(lab, ifn) for name, ifn in ifnames.items()}
            usage0 = daemon.usage()
            t0 = time.monotonic()
            time.sleep(seconds)
            wall = time.monotonic() - t0
            usage1 = daemon.usage()
            after = {name: _counters(lab, ifn) for name, ifn in ifnames.items()}
        finally:
            daemon.stop()
    rates = {name: (after[name] - before[name]) / wall for name in ifnames}
    return CostResult(setting, wall, rates, usage1.cpu_seconds - usage0.cpu_seconds)


def figures(results: list[CostResult]) -> list[Figure]:
    rows = []
    for r in results:
        per_link = ", ".join(f"{name} {rate:.0f}" for name, rate in r.packets_per_link.items())
        rows.append(Figure(f"probe cost, {r.setting}, 3 links x 3 targets",
                           f"packets/s per link (sent + received): {per_link}; daemon CPU "
                           f"{r.cpu_share * 100:.2f} % of a core"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="measuring time per setting (default 30)")
    add_json_arg(parser)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        log("bench_probe_cost: needs root (network namespaces, raw sockets)")
        return 2
    if not 1 <= args.seconds <= 600:
        parser.error("--seconds must be 1..600")
    results = []
    for setting in SETTINGS:
        log(f"probe-cost: {setting}")
        results.append(run(setting, args.seconds))
    rows = figures(results)
    print_table(rows, "probe cost benchmark")
    write_json(args.json, {"runs": [r.to_json() for r in results],
                           "summary": [asdict(f) for f in rows]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
