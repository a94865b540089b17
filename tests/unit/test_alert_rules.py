"""The alert rules (grafana/alerts/) as Prometheus itself reads them: `promtool check rules`
and the rule unit tests (`promtool test rules`), and that they fit the exporter: every
metric they use is one lifeline serves, every alert carries a severity, a scope and the
annotations a page needs, its runbook section exists, and a test makes it fire."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporters.metrics import CATALOG

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "grafana" / "alerts" / "lifeline.rules.yaml"
RULE_TESTS = REPO / "grafana" / "alerts" / "lifeline.rules.test.yaml"
RUNBOOK = REPO / "docs" / "alerts.md"
PROMTOOL = shutil.which("promtool")

needs_promtool = pytest.mark.skipif(PROMTOOL is None,
                                    reason="needs promtool (Debian package prometheus)")


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def _alerts() -> list[dict[str, Any]]:
    return [r for r in _rules() if "alert" in r]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120,
                          check=False, cwd=RULES.parent)


@needs_promtool
def test_promtool_checks_the_rules() -> None:
    done = _promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout


@needs_promtool
def test_promtool_rule_tests_pass() -> None:
    done = _promtool("test", "rules", RULE_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def _metric_names(expr: str) -> set[str]:
    """lifeline_* metric names in a PromQL expression (recording rule names have a ':'), a
    histogram's _bucket/_count/_sum series named by the histogram."""
    out: set[str] = set()
    for name in re.findall(r"(?<![:\w])(lifeline_[a-z0-9_]+)", expr):
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        out.add(base if base != name and base in _served() else name)
    return out


def _served() -> set[str]:
    return {m.name for m in CATALOG}


def test_every_metric_the_rules_use_is_served() -> None:
    served = _served()
    used = {n for r in _rules() for n in _metric_names(str(r["expr"]))}
    assert used, "the rules use no lifeline metric?"
    assert used <= served, f"not served by lifeline: {sorted(used - served)}"
    recorded = {r["record"] for r in _rules() if "record" in r}
    for r in _rules():
        for name in re.findall(r"\b([a-z_]+:[a-z0-9_]+:[a-z0-9_]+)\b", str(r["expr"])):
            assert name in recorded, f"{name} is not a recording rule here"


def test_every_alert_can_page_someone_usefully() -> None:
    runbook = RUNBOOK.read_text()
    anchors = {"#" + re.sub(r"[^a-z0-9-]", "", h.strip().lower().replace(" ", "-"))
               for h in re.findall(r"^## (.+)$", runbook, re.MULTILINE)}
    tested = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing = {c["alertname"] for t in tested for c in t["alert_rule_test"] if c["exp_alerts"]}
    quiet = {c["alertname"] for t in tested for c in t["alert_rule_test"] if not c["exp_alerts"]}
    for rule in _alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("page", "ticket"), name
        assert rule["labels"]["scope"] in ("lifeline", "site", "link", "trunk", "dids",
                                           "power", "service", "recordings"), name
        ann = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(ann), name
        if name != "LifelineNotScraped":  # absent() has no labels to name a site with
            assert "$labels.site" in ann["summary"], name
        assert ann["runbook"].startswith("docs/alerts.md#"), name
        assert ann["runbook"][len("docs/alerts.md"):] in anchors, f"{name}: no runbook section"
        assert name in firing, f"{name}: no test makes it fire"
        assert name in quiet, f"{name}: no test shows it quiet"


def test_pages_are_few() -> None:
    """One incident, one page: only what needs someone now pages."""
    pages = sorted(r["alert"] for r in _alerts() if r["labels"]["severity"] == "page")
    assert pages == ["LifelineAllUplinksDown", "LifelineDidsOnDr", "LifelineDidsUnroutable",
                     "LifelineDown", "LifelinePowerOutage", "LifelineRecordingsBackupStale",
                     "LifelineRecordingsCorrupt", "LifelineRecordingsDiskFull",
                     "LifelineRecordingsMissing", "LifelineRecordingsRaidDegraded",
                     "LifelineRecordingsRetentionBreached", "LifelineRecordingsUnavailable",
                     "LifelineSipEdgeOutOfSync"]


@needs_promtool
def test_the_example_prometheus_config_loads_the_rules() -> None:
    done = _promtool("check", "config", "../prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in done.stdout
