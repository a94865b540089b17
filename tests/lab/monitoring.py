"""The monitoring side of a lab site: a real Prometheus, Alertmanager and a webhook sink, run
inside the site namespace next to lifeline, for the tests and benchmarks that check what the
shipped rules, dashboards and Alertmanager config do with the real exporter.

Everything listens on the site's own loopback (fixed ports collide with nothing there) and
is started with ``lab.popen``, so ``lab.destroy()`` kills it by PID, also when a test fails.
Queries enter the namespace from this thread (``netns.inside``) rather than spawning a
process per query: the PromQL-fit test sends hundreds. This module starts and asks; it
decides nothing about what the answers mean.
"""

from __future__ import annotations

import json
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from tests.lab.netns import inside
from tests.lab.topology import Lab
from tests.lab.wait import until

__all__ = [
    "ALERTMANAGER",
    "AM_CONFIG",
    "AM_PORT",
    "LIFELINE",
    "PROMETHEUS",
    "PROM_PORT",
    "SINK_PORT",
    "SITE",
    "prometheus_config",
    "query",
    "query_doc",
    "quietly",
    "shipped_alertmanager",
    "site_get",
    "start_alertmanager",
    "start_prometheus",
    "start_sink",
]

AM_CONFIG = Path(__file__).resolve().parents[2] / "grafana" / "alertmanager" / "alertmanager.yml"
PROMETHEUS = shutil.which("prometheus")
ALERTMANAGER = shutil.which("prometheus-alertmanager")

# Inside the site namespace. SINK_PORT is the one the shipped Alertmanager config posts to.
PROM_PORT, AM_PORT, SINK_PORT, LIFELINE = 9090, 9093, 9099, "127.0.0.1:9730"
SITE = "lab"  # the `site` label the scrape job gives lifeline's series


def site_get(lab: Lab, url: str, timeout: float = 5.0) -> Any:
    """GET a JSON document from a server listening inside the site namespace. An HTTP error
    with a JSON body (Prometheus' 400 for a bad query) is returned as that body."""
    with inside(lab.site):
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            body = exc.read()
            try:
                return json.loads(body)
            except ValueError:
                raise exc from None


def query_doc(lab: Lab, expr: str) -> dict[str, Any]:
    """Prometheus' whole answer to an instant query (``status`` success or error)."""
    doc: dict[str, Any] = site_get(
        lab, f"http://127.0.0.1:{PROM_PORT}/api/v1/query?query={quote(expr)}")
    return doc


def query(lab: Lab, expr: str) -> list[dict[str, Any]]:
    """The result of an instant query; an error answer fails the caller."""
    doc = query_doc(lab, expr)
    assert doc["status"] == "success", doc
    return list(doc["data"]["result"])


def quietly(check: Callable[[], bool]) -> bool:
    """A check that may hit a server still starting (connection refused) is just not yet."""
    try:
        return check()
    except Exception:
        return False


def prometheus_config(rule_files: list[Path], *, interval: str = "1s",
                      alertmanager: bool = True) -> dict[str, Any]:
    """A config scraping lifeline (job ``lifeline``, ``site`` label as the shipped example
    gives it) every ``interval``, evaluating ``rule_files`` as often, and sending alerts
    to the site's Alertmanager when ``alertmanager``."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": "lifeline", "static_configs": [
            {"targets": [LIFELINE], "labels": {"site": SITE}}]}],
    }
    if alertmanager:
        config["alerting"] = {"alertmanagers": [
            {"static_configs": [{"targets": [f"127.0.0.1:{AM_PORT}"]}]}]}
    return config


def _start(lab: Lab, workdir: Path, name: str, argv: list[str]) -> None:
    with (workdir / f"{name}.log").open("w") as log:
        lab.popen(lab.site, argv, stdout=log, stderr=log)


def start_prometheus(lab: Lab, workdir: Path, config: dict[str, Any],
                     ready_timeout: float = 30.0) -> None:
    """Prometheus with ``config`` in the site (its data under ``workdir``); back once it
    answers queries."""
    assert PROMETHEUS is not None, "needs prometheus (Debian package prometheus)"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    _start(lab, workdir, "prom", [PROMETHEUS, f"--config.file={workdir / 'prometheus.yml'}",
                                  f"--storage.tsdb.path={workdir / 'prom-data'}",
                                  f"--web.listen-address=127.0.0.1:{PROM_PORT}"])
    until(lambda: quietly(lambda: query_doc(lab, "vector(1)")["status"] == "success"),
          ready_timeout, 0.2, "Prometheus to answer",
          detail=lambda: (workdir / "prom.log").read_text()[-2000:])


def start_alertmanager(lab: Lab, workdir: Path, config: dict[str, Any],
                       ready_timeout: float = 30.0) -> None:
    """A lone Alertmanager (no cluster port) with ``config`` in the site; back once ready."""
    assert ALERTMANAGER is not None, "needs prometheus-alertmanager (Debian)"
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "alertmanager.yml").write_text(yaml.safe_dump(config))
    _start(lab, workdir, "am", [ALERTMANAGER, f"--config.file={workdir / 'alertmanager.yml'}",
                                f"--storage.path={workdir / 'am-data'}",
                                f"--web.listen-address=127.0.0.1:{AM_PORT}",
                                "--cluster.listen-address="])
    until(lambda: quietly(lambda: isinstance(
        site_get(lab, f"http://127.0.0.1:{AM_PORT}/api/v2/status"), dict)),
        ready_timeout, 0.2, "Alertmanager to answer",
        detail=lambda: (workdir / "am.log").read_text()[-2000:])


def start_sink(lab: Lab, workdir: Path) -> Path:
    """The webhook sink (tests.lab.webhook_sink) on SINK_PORT; the file it appends to."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "delivered.jsonl"
    _start(lab, workdir, "sink", [sys.executable, "-m", "tests.lab.webhook_sink",
                                  "--port", str(SINK_PORT), "--out", str(out)])
    listening = ["ss", "-H", "-tln", f"sport = :{SINK_PORT}"]
    until(lambda: bool(lab.run(lab.site, listening, check=False).stdout.strip()),
          10, 0.1, "the webhook sink to listen")
    return out


def shipped_alertmanager(hook: str) -> dict[str, Any]:
    """The shipped Alertmanager config with each receiver posting to ``hook``/<receiver>
    and the group timings cut to 2 s (lab pace); routes, grouping and inhibitions as
    shipped, which is what the tests and the demo put to the proof."""
    cfg: dict[str, Any] = yaml.safe_load(AM_CONFIG.read_text())
    for route in [cfg["route"], *cfg["route"]["routes"]]:
        route.update(group_wait="2s", group_interval="2s")
    for receiver in cfg["receivers"]:
        for wh in receiver["webhook_configs"]:
            wh["url"] = f"{hook}/{receiver['name']}"
    return cfg
