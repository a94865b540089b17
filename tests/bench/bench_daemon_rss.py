"""Benchmark: memory and CPU of the whole daemon probing 2,000 targets once a second.

Run as root: ``python -m tests.bench.bench_daemon_rss [--seconds 30] [--targets 2000]``.
It builds a lab with ``--targets`` scale addresses (198.18.0.0/15 on the lab's ``inet``
loopback), writes a lifeline config whose three links share them (each link's gateway plus
a third of the scale addresses, 1 s rounds, reliability 1), starts the real daemon in the
site namespace, waits until every link is up, and then measures over ``--seconds``: the
daemon's RSS (VmRSS and peak VmHWM of the daemon's own process), its CPU seconds per 1,000
probes (utime + stime from /proc), the probe loss counted by its own metrics, and how often
its event loop fell behind the probe grid. The lab and the daemon are removed at the end,
also on failure; probing is bounded by the measuring time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.bench.bench_failover import Figure, add_json_arg, log, print_table, write_json
from tests.lab.config import lifeline_config_dict
from tests.lab.lifelined import LifelineProcess
from tests.lab.topology import Lab

__all__ = ["RssResult", "figures", "main", "probe_counts", "run", "scale_config"]

LOSS_GOAL = 0.001  # the lab's links lose nothing: loss means the daemon fell behind


def scale_config(lab: Lab, state_dir: Path, targets: int, interval: str = "1s",
                 reliability: int = 1) -> dict[str, Any]:
    """The lab's config with ``targets`` ICMP targets in all, shared between the links:
    each link keeps its gateway and gets a contiguous slice of the scale addresses."""
    names = list(lab.links)
    if targets < len(names):
        raise ValueError(f"need at least {len(names)} targets (one gateway per link)")
    config = lifeline_config_dict(lab, state_dir, interval=interval,
                                  reliability=reliability, far_targets=[])
    scale = [str(a) for a in lab.scale_addresses]
    far_total = targets - len(names)
    if len(scale) < far_total:
        raise ValueError(f"the lab has {len(scale)} scale addresses, {far_total} needed")
    start = 0
    for i, link in enumerate(config["links"]):
        share = far_total // len(names) + (1 if i < far_total % len(names) else 0)
        link["probes"]["targets"] += [{"icmp": a} for a in scale[start:start + share]]
        start += share
    return config


def probe_counts(metrics_text: str) -> tuple[float, float]:
    """(all probes, answered probes) from ``lifeline_probes_total`` of a /metrics page."""
    total = ok = 0.0
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "lifeline_probes":
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            total += sample.value
            if sample.labels.get("result") == "ok":
                ok += sample.value
    return total, ok


@dataclass
class RssResult:
    targets: int
    seconds: float  # measured wall time
    probes: float
    answered: float
    cpu_seconds: float
    rss_kib: int  # at the end
    hwm_kib: int  # peak over the run
    rss_start_kib: int  # when every link had come up
    loop_late: int  # "event loop late" warnings in the daemon's log
    link_states: dict[str, str]
    link_loss: dict[str, float]

    @property
    def loss(self) -> float:
        return 1 - self.answered / self.probes if self.probes else float("nan")

    @property
    def cpu_per_1000(self) -> float:
        return self.cpu_seconds / self.probes * 1000 if self.probes else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "loss": self.loss, "cpu_s_per_1000_probes": self.cpu_per_1000}


def run(targets: int = 2000, seconds: float = 30.0) -> RssResult:
    """Build, start, measure, tear down; progress on stderr."""
    with tempfile.TemporaryDirectory(prefix="lifeline-bench-rss-") as tmp, \
            Lab(scale_targets=targets) as lab:
        log(f"daemon-rss: lab with {targets} scale targets built in {lab.build_seconds:.2f} s")
        state = Path(tmp) / "state"
        daemon = LifelineProcess.with_config(lab, state, scale_config(lab, state, targets))
        try:
            daemon.start()
            # rise = 5 rounds of 1 s before a link counts as up; generous bound.
            for name in lab.links:
                daemon.wait_link(name, "up", timeout=30.0)
            log("daemon-rss: every link up; measuring")
            usage0 = daemon.usage()
            probes0, ok0 = probe_counts(daemon.metrics_text())
            t0 = time.monotonic()
            end = t0 + seconds
            while (left := end - time.monotonic()) > 0:
                time.sleep(min(left, 5.0))
                u = daemon.usage()
                log(f"daemon-rss: {time.monotonic() - t0:5.1f} s, RSS {u.rss_kib / 1024:.1f} MiB,"
                    f" CPU {u.cpu_seconds - usage0.cpu_seconds:.2f} s")
            usage1 = daemon.usage()
            probes1, ok1 = probe_counts(daemon.metrics_text())
            wall = time.monotonic() - t0
            status = daemon.status() or {}
        finally:
            daemon.stop()
        late = daemon.log().count("event loop late")
    return RssResult(
        targets=targets,
        seconds=wall,
        probes=probes1 - probes0,
        answered=ok1 - ok0,
        cpu_seconds=usage1.cpu_seconds - usage0.cpu_seconds,
        rss_kib=usage1.rss_kib,
        hwm_kib=usage1.hwm_kib,
        rss_start_kib=usage0.rss_kib,
        loop_late=late,
        link_states={lk["name"]: lk["state"] for lk in status.get("links", [])},
        link_loss={lk["name"]: lk["loss_ratio"] for lk in status.get("links", [])},
    )


def figures(r: RssResult) -> list[Figure]:
    rate = r.probes / r.seconds if r.seconds else 0.0
    return [
        Figure(f"daemon RSS, {r.targets} targets", f"{r.rss_kib / 1024:.1f} MiB "
               f"(peak {r.hwm_kib / 1024:.1f} MiB; {r.rss_start_kib / 1024:.1f} MiB at start)"),
        Figure(f"daemon CPU, {r.targets} targets", f"{r.cpu_per_1000 * 1000:.1f} ms per 1000 "
               f"probes ({r.cpu_seconds / r.seconds * 100:.1f} % of a core at "
               f"{rate:.0f} probes/s)"),
        Figure(f"daemon probe loss, {r.targets} targets",
               f"{r.loss:.3%} of {r.probes:.0f} probes; loop late {r.loop_late}x",
               f"< {LOSS_GOAL:.1%}", r.loss < LOSS_GOAL and r.loop_late == 0),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="measuring time (default 30)")
    parser.add_argument("--targets", type=int, default=2000, help="targets in all (default 2000)")
    parser.add_argument("--trials", type=int, default=1,
                        help="runs, each with a fresh lab (default 1)")
    add_json_arg(parser)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        log("bench_daemon_rss: needs root (network namespaces, raw sockets)")
        return 2
    if not 3 <= args.targets <= 60000 or not 1 <= args.seconds <= 600 \
            or not 1 <= args.trials <= 10:
        parser.error("--targets must be 3..60000, --seconds 1..600, --trials 1..10")
    results = []
    for n in range(1, args.trials + 1):
        r = run(args.targets, args.seconds)
        results.append(r)
        log(f"daemon-rss {n}/{args.trials}: RSS {r.rss_kib / 1024:.1f} MiB, "
            f"{r.cpu_per_1000 * 1000:.1f} ms CPU per 1000 probes, loss {r.loss:.3%}")
    rows = [f for r in results for f in figures(r)]
    print_table(rows, "daemon RSS/CPU benchmark")
    write_json(args.json, {"runs": [r.to_json() for r in results],
                           "summary": [asdict(f) for f in rows]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
