"""The paging benchmark's own parts that need no lab: it must run the examples as shipped
(a figure measured with other timings would mislead whoever reads it) and time the right
delivery at the sink."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.bench.bench_paging import (
    AM_EXAMPLE,
    PROM_EXAMPLE,
    _page_at,
    _page_path,
    alertmanager_config,
    prometheus_config,
    shipped,
)
from tests.lab.monitoring import LIFELINE, SINK_PORT


def test_settings_are_the_shipped_ones() -> None:
    st = shipped()
    prom = yaml.safe_load(PROM_EXAMPLE.read_text())["global"]
    assert (st.scrape_interval, st.evaluation_interval) == (prom["scrape_interval"],
                                                            prom["evaluation_interval"])
    assert st.interval_shipped
    am = yaml.safe_load(AM_EXAMPLE.read_text())
    page = next(r for r in am["route"]["routes"] if 'severity="page"' in r["matchers"])
    assert st.page_group_wait == page["group_wait"]
    config = prometheus_config(st)
    assert config["global"]["scrape_interval"] == prom["scrape_interval"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "lifeline"
    assert job["static_configs"] == [{"targets": [LIFELINE], "labels": {"site": "lab"}}]


def test_alertmanager_changes_only_where_webhooks_go() -> None:
    shipped_doc = yaml.safe_load(AM_EXAMPLE.read_text())
    ours = alertmanager_config()
    assert ours["route"] == shipped_doc["route"]
    assert ours["inhibit_rules"] == shipped_doc["inhibit_rules"]
    for mine, theirs in zip(ours["receivers"], shipped_doc["receivers"], strict=True):
        for a, b in zip(mine["webhook_configs"], theirs["webhook_configs"], strict=True):
            assert a["url"].startswith(f"http://127.0.0.1:{SINK_PORT}/")
            assert a["url"].rsplit("/", 1)[1] == b["url"].rsplit("/", 1)[1]


def test_the_first_firing_page_is_timed(tmp_path: Path) -> None:
    sink = tmp_path / "delivered.jsonl"
    page = _page_path()

    def line(path: str, at: float, status: str, name: str) -> str:
        return json.dumps({"path": path, "at": at, "body": {
            "status": status, "alerts": [{"labels": {"alertname": name}}]}}) + "\n"

    sink.write_text(line("/ticket", 1.0, "firing", "LifelineAllUplinksDown")
                    + line(page, 2.0, "resolved", "LifelineAllUplinksDown")
                    + line(page, 3.0, "firing", "LifelineDidsUnroutable"))
    assert _page_at(sink, page) is None
    with sink.open("a") as f:
        f.write(line(page, 4.0, "firing", "LifelineAllUplinksDown"))
        f.write(line(page, 5.0, "firing", "LifelineAllUplinksDown"))
    assert _page_at(sink, page) == 4.0
