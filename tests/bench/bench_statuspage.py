"""Benchmark: how long after a failover the status page in Chromium shows it.

Run as root: ``python -m tests.bench.bench_statuspage [--trials 5] [--json [PATH]]``.
Every trial builds a fresh lab (``lab.topology.Lab``), starts the real daemon in its site
namespace with the failover benchmark's config (the daemon's own probe timing, reliability
2), opens the status page in headless Chromium inside the same namespace, waits until the
page is live with fibre-a active, then blackholes fibre-a at a random point of the probe
interval. Three moments are taken on the wall clock: the fault injected, the kernel's
default route leaving through fibre-b (a 2 ms netlink poll in the site,
``tests.lab.routewatch``), and the page *rendering* fibre-b as the internet group's link (a
MutationObserver in the page stamps it, ``tests.lab.pageview``); the moment the test's
WebDriver poll saw it is kept too. Figures: fault -> page and route -> page, min / median /
max, against the goal (<= 1 s). The boundary: it measures and reports; every lab, daemon
and browser is removed after its trial, also on failure, and every wait is bounded.
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.bench_failover import (
    BACKUP,
    DAEMON_OVERRIDES,
    PRIMARY,
    PROBE_INTERVAL,
    Figure,
    add_json_arg,
    finish,
    guarded,
    log,
    secs,
)
from tests.lab.browser import browser, browser_skip_reason
from tests.lab.lifelined import LifelineProcess
from tests.lab.pageview import open_page, wait_active, watch_active
from tests.lab.routewatch import RouteWatch
from tests.lab.topology import Lab

__all__ = ["GOAL", "PageTrial", "Report", "figures", "main", "page_trial", "run"]

GOAL = 1.0  # seconds, failover -> the page shows it (issue 11)
GROUP = "internet"


@dataclass
class PageTrial:
    trial: int
    fault_to_route: float | None = None
    fault_to_page: float | None = None  # rendered, stamped in the page
    route_to_page: float | None = None
    route_to_seen: float | None = None  # when the WebDriver poll (5 ms) saw it
    error: str | None = None


def page_trial(trial: int, workdir: Path, *, settle: float = 1.0,
               bound: float = 10.0) -> PageTrial:
    """One fresh lab, daemon and browser; one blackhole on the primary."""
    out = PageTrial(trial=trial)
    with Lab() as lab:
        daemon = LifelineProcess(lab, workdir / f"state-{trial}", **DAEMON_OVERRIDES)
        daemon.start()
        try:
            daemon.wait_active([PRIMARY], timeout=20.0)
            with browser(lab.site, workdir / f"browser-{trial}") as b:
                open_page(b, group=GROUP, active=PRIMARY)
                time.sleep(settle + random.uniform(0.0, PROBE_INTERVAL))
                watch_active(b, GROUP, BACKUP)
                route = RouteWatch(lab.site, lab.link(BACKUP).site_ifname,
                                   limit=bound).start()
                fault_at = time.time()
                lab.faults.blackhole(PRIMARY)
                try:
                    rendered, seen = wait_active(b, GROUP, BACKUP, timeout=bound)
                finally:
                    route.join()
                out.fault_to_page = rendered - fault_at
                if route.at is None:
                    out.error = f"the kernel route never moved ({route.error or 'timeout'})"
                else:
                    out.fault_to_route = route.at - fault_at
                    out.route_to_page = rendered - route.at
                    out.route_to_seen = seen - route.at
        finally:
            daemon.stop()
    return out


@dataclass
class Report:
    trials: list[PageTrial] = field(default_factory=list)

    def errors(self) -> list[str]:
        return [f"status page {t.trial}: {t.error}" for t in self.trials if t.error]

    def to_json(self) -> dict[str, Any]:
        return {"trials": [asdict(t) for t in self.trials],
                "summary": [asdict(f) for f in figures(self)]}


def run(trials: int = 5) -> Report:
    report = Report()
    with tempfile.TemporaryDirectory(prefix="lifeline-bench-page-") as tmp:
        for n in range(1, trials + 1):
            t = guarded(functools.partial(page_trial, n, Path(tmp)), PageTrial(trial=n))
            report.trials.append(t)
            log(f"status page {n}/{trials}: fault -> route {secs(t.fault_to_route)}, "
                f"route -> page {secs(t.route_to_page)} (seen by WebDriver "
                f"{secs(t.route_to_seen)}), fault -> page {secs(t.fault_to_page)}"
                + (f"  [{t.error}]" if t.error else ""))
    return report


def _spread(values: Sequence[float]) -> str:
    if not values:
        return "no data"
    return (f"min {min(values):.3f} s, median {statistics.median(values):.3f} s, "
            f"max {max(values):.3f} s (n={len(values)})")


def figures(report: Report) -> list[Figure]:
    good = [t for t in report.trials if t.error is None]
    note = f"; {len(report.trials) - len(good)} trial(s) failed" if len(good) < len(
        report.trials) else ""
    rows = []
    for what, values in (
        ("fault -> status page shows the failover",
         [t.fault_to_page for t in good if t.fault_to_page is not None]),
        ("kernel route moved -> status page shows it",
         [t.route_to_page for t in good if t.route_to_page is not None]),
    ):
        met = bool(values) and len(good) == len(report.trials) and max(values) <= GOAL
        rows.append(Figure(what, _spread(values) + note, f"<= {GOAL:g} s", met))
    seen = [t.route_to_seen for t in good if t.route_to_seen is not None]
    rows.append(Figure("kernel route moved -> WebDriver (5 ms poll) sees it", _spread(seen)))
    faults = [t.fault_to_route for t in good if t.fault_to_route is not None]
    rows.append(Figure("fault -> kernel route moved (blackhole)", _spread(faults)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5, help="trials (default 5)")
    add_json_arg(parser)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        log("bench_statuspage: needs root (network namespaces, routes, iptables)")
        return 2
    if not 1 <= args.trials <= 100:
        parser.error("--trials must be 1..100")
    reason = browser_skip_reason()
    if reason is not None:
        log(f"bench_statuspage: {reason}")
        return 2
    report = run(args.trials)
    return finish(report, figures(report), "status page after a failover", args.json)


if __name__ == "__main__":
    sys.exit(main())
