"""The recordings benchmark's machinery at a tiny size, so it cannot rot between bench runs."""

from __future__ import annotations

from tests.bench import bench_recordings


def test_the_benchmark_runs_small_finds_the_ten_and_cleans_up() -> None:
    lines: list[str] = []
    result = bench_recordings.run(files=1200, where="tmp", out=lines.append)
    assert result["steady_found"]["missing"] == bench_recordings.NOT_COPIED
    assert result["steady_found"]["files"] == {"store": 2200, "nas": 2190}
    rows = bench_recordings.figures(result)
    assert [r.met for r in rows if r.met is not None] == [True, True, True]
    assert any("removed the trees" in line for line in lines)
