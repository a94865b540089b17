"""Benchmark: from every uplink of a site dying to the page reaching on-call's webhook.

Run as root: ``python -m tests.bench.bench_paging [--trials 3] [--path direct|prometheus]
[--json [PATH]]``. Every trial builds a fresh lab and runs, inside its site namespace, the
webhook sink (``tests.lab.webhook_sink``, stamping each delivery's arrival), a real
Alertmanager with ``grafana/alertmanager/alertmanager.yml`` as shipped (only its webhook
addresses pointed at the sink) and the real lifeline with the daemon's own probe timing
(``reliability: 2``, as bench_failover); then blackholes every uplink at once and times the
first firing ``LifelineAllUplinksDown`` notification at the sink. Two paths, each alone so
that neither hides the other (Alertmanager would merge their copies):

- ``direct``: lifeline posts the alert itself (config ``alertmanager:``, its defaults); no
  Prometheus runs.
- ``prometheus``: lifeline posts nothing; a real Prometheus with ``grafana/prometheus.yml``'s
  global settings as shipped (scrape and evaluation interval) and the shipped rules scrapes
  it and sends to the Alertmanager. The fault lands at a random point of the scrape
  interval, so the figures cover its phase rather than one lucky or unlucky spot.

It also reports when lifeline itself saw every link down (its status API), which splits the
figure into detection and delivery. The settings used are printed with the figures. The
boundary: it measures; each lab, with every process in it, is removed after its trial, also
on failure, and every wait is bounded.
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
from urllib.parse import urlsplit, urlunsplit

import yaml

from controller.core.durations import parse_duration
from tests.bench.bench_failover import (
    Figure,
    add_json_arg,
    finish,
    guarded,
    log,
    secs,
)
from tests.lab.config import lifeline_config_dict
from tests.lab.lifelined import LifelineProcess
from tests.lab.monitoring import (
    ALERTMANAGER,
    AM_PORT,
    LIFELINE,
    PROMETHEUS,
    SINK_PORT,
    SITE,
    query,
    quietly,
    start_alertmanager,
    start_prometheus,
    start_sink,
)
from tests.lab.topology import Lab
from tests.lab.wait import until
from tests.lab.webhook_sink import read

__all__ = ["PATHS", "Report", "Settings", "Trial", "figures", "main", "run", "shipped"]

REPO = Path(__file__).resolve().parents[2]
PROM_EXAMPLE = REPO / "grafana" / "prometheus.yml"
RULES = REPO / "grafana" / "alerts" / "lifeline.rules.yaml"
AM_EXAMPLE = REPO / "grafana" / "alertmanager" / "alertmanager.yml"
ALERT = "LifelineAllUplinksDown"
PATHS = ("direct", "prometheus")
# Used only where the shipped example leaves the interval out (Prometheus' own default would
# be 1 min): the brief of the benchmark allows shortening what is not shipped.
FALLBACK_INTERVAL = "1s"
PAGE_TIMEOUT = 240.0  # seconds: far beyond any sum of the shipped intervals


@dataclass(frozen=True)
class Settings:
    """What the shipped examples say, as this benchmark runs them."""

    scrape_interval: str
    evaluation_interval: str
    rule_for: str  # the alert's `for:`, "0s" when it has none
    page_group_wait: str  # the route `severity="page"` takes
    interval_shipped: bool  # False: FALLBACK_INTERVAL stood in for a missing setting

    def describe(self) -> str:
        src = "grafana/prometheus.yml" if self.interval_shipped else "not shipped: shortened"
        return (f"Prometheus scrape {self.scrape_interval}, evaluation "
                f"{self.evaluation_interval} ({src}); {ALERT} for: {self.rule_for} "
                f"(lifeline.rules.yaml); page route group_wait {self.page_group_wait} "
                f"(alertmanager.yml); lifeline: default probe timing, reliability 2, "
                f"alertmanager push defaults")


def shipped() -> Settings:
    prom = yaml.safe_load(PROM_EXAMPLE.read_text()).get("global") or {}
    rule = next(r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
                if r.get("alert") == ALERT)
    am = yaml.safe_load(AM_EXAMPLE.read_text())["route"]
    page = next((r for r in am.get("routes", []) if 'severity="page"' in r.get("matchers", [])),
                am)
    return Settings(
        scrape_interval=str(prom.get("scrape_interval", FALLBACK_INTERVAL)),
        evaluation_interval=str(prom.get("evaluation_interval", FALLBACK_INTERVAL)),
        rule_for=str(rule.get("for", "0s")),
        page_group_wait=str(page.get("group_wait", am.get("group_wait", "30s"))),
        interval_shipped="scrape_interval" in prom and "evaluation_interval" in prom,
    )


def prometheus_config(settings: Settings) -> dict[str, Any]:
    """The shipped example with its targets replaced by the lab's lifeline (job and `site`
    label as shipped), the rules by the shipped file's path, and the site's Alertmanager."""
    config: dict[str, Any] = yaml.safe_load(PROM_EXAMPLE.read_text())
    config.setdefault("global", {}).update(scrape_interval=settings.scrape_interval,
                                           evaluation_interval=settings.evaluation_interval)
    config["rule_files"] = [str(RULES)]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "lifeline")
    job["static_configs"] = [{"targets": [LIFELINE], "labels": {"site": SITE}}]
    config["alerting"] = {"alertmanagers": [
        {"static_configs": [{"targets": [f"127.0.0.1:{AM_PORT}"]}]}]}
    return config


def alertmanager_config() -> dict[str, Any]:
    """The shipped config, each webhook's host and port pointed at the sink (paths kept)."""
    config: dict[str, Any] = yaml.safe_load(AM_EXAMPLE.read_text())
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            url = urlsplit(hook["url"])
            hook["url"] = urlunsplit(url._replace(netloc=f"127.0.0.1:{SINK_PORT}"))
    return config


def _page_path() -> str:
    config = yaml.safe_load(AM_EXAMPLE.read_text())
    page = next(r for r in config["route"]["routes"] if 'severity="page"' in r["matchers"])
    receiver = next(r for r in config["receivers"] if r["name"] == page["receiver"])
    return str(urlsplit(receiver["webhook_configs"][0]["url"]).path)


@dataclass
class Trial:
    path: str
    trial: int
    paged: float | None = None  # seconds from the cut to the page at the sink
    detected: float | None = None  # seconds from the cut to lifeline's status: all down
    error: str | None = None


def _page_at(sink: Path, page_path: str) -> float | None:
    """Arrival time of the first firing notification of ALERT at the on-call webhook."""
    for d in read(sink):
        body: Any = d["body"]
        if (d["path"] == page_path and body["status"] == "firing"
                and any(a["labels"]["alertname"] == ALERT for a in body["alerts"])):
            return float(d["at"])  # type: ignore[arg-type]
    return None


def trial(path: str, n: int, workdir: Path, settings: Settings) -> Trial:
    """One lab, one cut; see the module doc."""
    out = Trial(path, n)
    page_path = _page_path()
    with Lab() as lab:
        sink = start_sink(lab, workdir / "sink")
        start_alertmanager(lab, workdir / "am", alertmanager_config())
        config = lifeline_config_dict(lab, workdir / "state", probe_defaults=True,
                                      reliability=2)
        if path == "direct":
            config["alertmanager"] = {"urls": [f"http://127.0.0.1:{AM_PORT}"]}
        daemon = LifelineProcess.with_config(lab, workdir / "state", config)
        daemon.start()
        daemon.wait_active(["fibre-a"], timeout=60.0)
        phase = 1.0
        if path == "prometheus":
            start_prometheus(lab, workdir / "prom", prometheus_config(settings))
            scrape = parse_duration(settings.scrape_interval)
            until(lambda: quietly(lambda: bool(query(lab, "sum(lifeline_link_up) > 0"))),
                  3 * scrape + 30, 0.5, "Prometheus scraping lifeline")
            phase = scrape
        time.sleep(random.uniform(0.0, phase))
        cut = time.time()
        for link in lab.links:
            lab.faults.blackhole(link)

        def paged() -> bool:
            if out.detected is None:
                st = daemon.status()
                if st is not None and all(daemon.link_state(st, lk) == "down"
                                          for lk in lab.links):
                    out.detected = time.time() - cut
            at = _page_at(sink, page_path)
            if at is not None:
                out.paged = at - cut
            return at is not None

        until(paged, PAGE_TIMEOUT, 0.1, f"the page via {path}")
        daemon.stop()
    return out


@dataclass
class Report:
    settings: Settings
    trials: list[Trial] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def errors(self) -> list[str]:
        return self.problems + [f"{t.path} trial {t.trial}: {t.error}" for t in self.trials
                                if t.error]

    def to_json(self) -> dict[str, Any]:
        return {"settings": asdict(self.settings),
                "trials": [asdict(t) for t in self.trials], "errors": self.errors()}


def run(trials: int = 3, paths: Sequence[str] = PATHS) -> Report:
    report = Report(shipped())
    if PROMETHEUS is None or ALERTMANAGER is None:
        report.problems.append("needs prometheus and prometheus-alertmanager (Debian)")
        return report
    log(f"paging: {report.settings.describe()}")
    for path in paths:
        for i in range(1, trials + 1):
            log(f"paging via {path}, trial {i}/{trials}")
            with tempfile.TemporaryDirectory(prefix="bench-paging-") as tmp:
                t = guarded(functools.partial(trial, path, i, Path(tmp), report.settings),
                            Trial(path, i))
            report.trials.append(t)
            log(f"  lifeline saw every link down after {secs(t.detected, 1)}, page at the webhook "
                f"after {secs(t.paged, 1)}" + (f"; ERROR {t.error}" if t.error else ""))
    return report


def _spread(values: list[float]) -> str:
    if not values:
        return "no data"
    return (f"min {min(values):.1f}, median {statistics.median(values):.1f}, "
            f"max {max(values):.1f} s")


def figures(report: Report) -> list[Figure]:
    rows: list[Figure] = []
    for path in PATHS:
        done = [t for t in report.trials if t.path == path and t.error is None]
        if not any(t.path == path for t in report.trials):
            continue
        what = {"direct": "lifeline's own post", "prometheus": "via Prometheus rules"}[path]
        rows.append(Figure(f"all uplinks down -> page at webhook, {what} (n={len(done)})",
                           _spread([t.paged for t in done if t.paged is not None])))
        rows.append(Figure(f"  of which lifeline seeing every link down, {path}",
                           _spread([t.detected for t in done if t.detected is not None])))
    st = report.settings
    rows.append(Figure("  paging settings" + ("" if st.interval_shipped else " (shortened)"),
                       f"scrape {st.scrape_interval}, evaluation {st.evaluation_interval}, "
                       f"for: {st.rule_for}, page group_wait {st.page_group_wait}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3, help="trials per path (default 3)")
    parser.add_argument("--path", choices=PATHS, action="append",
                        help="run only this path (repeatable)")
    add_json_arg(parser)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        log("bench_paging: needs root (network namespaces)")
        return 2
    if not 1 <= args.trials <= 50:
        parser.error("--trials must be 1..50")
    report = run(args.trials, args.path or PATHS)
    return finish(report, figures(report), "paging benchmark", args.json)


if __name__ == "__main__":
    sys.exit(main())
