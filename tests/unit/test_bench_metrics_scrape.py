"""The /metrics scrape benchmark runs, and the snapshot it times is the big site it says."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporters.metrics import registry_for
from tests.bench import bench_metrics_scrape


def test_the_benchmark_snapshot_has_every_link_trunk_and_range() -> None:
    snap = bench_metrics_scrape.build_snapshot(8, 6, 30)
    text = generate_latest(registry_for(lambda: snap)).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {s.labels["link"] for s in families["lifeline_link_up"].samples} == {
        link.name for link in snap.links} and len(snap.links) == 8
    assert len(families["lifeline_trunk_up"].samples) == 6
    assert families["lifeline_dids"].samples[0].value == 30 * 100
    rtt = [s for s in families["lifeline_probe_rtt_seconds"].samples
           if s.name.endswith("_bucket")]
    assert len({s.labels["le"] for s in rtt}) > 5  # observations spread over the buckets


def test_a_small_run_reports_figures_and_a_verdict() -> None:
    lines: list[str] = []
    result = bench_metrics_scrape.run(4, 3, 5, repeat=3, out=lines.append)
    assert result["body_bytes"] > 1000 and result["series"] > 50
    assert 0 < result["http"]["min_s"] <= result["http"]["median_s"] <= result["http"]["p95_s"]
    rows = bench_metrics_scrape.figures(result)
    assert rows[-1].met is result["met"] and "median <= 50 ms" in rows[-1].goal
    assert any("GET /metrics over loopback" in line for line in lines)
