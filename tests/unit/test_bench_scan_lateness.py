"""The scan-lateness benchmark's machinery at a tiny size, so it cannot rot between runs."""

from __future__ import annotations

import pytest

from tests.bench import bench_scan_lateness
from tests.bench.bench_scan_lateness import lateness


def test_lateness_replays_the_schedulers_grid_and_counts_skipped_slots() -> None:
    late, skipped = lateness([10.0, 10.101, 10.2, 10.43, 10.5], 0.1)
    # 10.43 was due at 10.3 (late 0.13): slot 10.4 skipped, the next slot is 10.5.
    assert late == pytest.approx([0.0, 0.001, 0.0, 0.13, 0.0])
    assert skipped == 1
    assert lateness([], 0.1) == ([], 0)


def test_the_benchmark_runs_small_in_every_mode_and_cleans_up() -> None:
    lines: list[str] = []
    result = bench_scan_lateness.run(files=1000, where="tmp", out=lines.append, idle_s=0.5)
    assert list(result["modes"]) == list(bench_scan_lateness.MODES)
    for mode, m in result["modes"].items():
        assert m["probes_ok"] == m["probes"] > 0, mode  # the loopback probe answered
        if mode == "idle":
            assert m["rounds"] >= 3 and m["skipped"] == 0
        else:
            assert m["files"] == [1000, 1000], mode
    assert len(bench_scan_lateness.figures(result)) == len(bench_scan_lateness.MODES)
    assert any("removed the trees" in line for line in lines)
