"""The recordings index worker: one thread owns the index, the loop is never blocked, and
it opens and closes cleanly, also on failure."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from probes.recindex import RecIndex
from probes.recworker import RecWorker
from tests.unit.rectrees import put, tree_state

NS = 10**9
DAY = 86400 * NS


def _nth(job: Callable[[int], int], n: int, _: RecIndex) -> int:
    return job(n)


def _missing_key(_: RecIndex) -> int:
    return {"a": 1}["nope"]


def _tree(root: Path, now: int) -> None:
    put(root, "2026/12/01/a.wav", 10, now - 3 * DAY)
    put(root, "2026/12/01/b.wav", 20, now - 3 * DAY)
    put(root, "2026/12/02/c.wav", 30, now - 2 * DAY)
    put(root, "2026/12/02/notes.txt", 5, now - 2 * DAY)


async def test_scan_and_queries_run_on_one_dedicated_thread(tmp_path: Path) -> None:
    now = time.time_ns()
    store, nas = tmp_path / "store", tmp_path / "nas"
    _tree(store, now)
    _tree(nas, now)
    (nas / "2026/12/02/c.wav").unlink()
    before = tree_state(store), tree_state(nas)
    (tmp_path / "state").mkdir()
    async with RecWorker(tmp_path / "state" / "index.sqlite") as worker:
        report = await worker.scan_tree("store", store, ["*.wav"], now_ns=now)
        assert (report.files, report.added, report.root_state) == (3, 3, "ok")
        await worker.scan_tree("nas", nas, ["*.wav"], now_ns=now)
        cmp = await worker.call("compare", "store", "nas", older_than_ns=now)
        assert (cmp.missing, cmp.missing_paths) == (1, [b"2026/12/02/c.wav"])
        stats = await worker.call("stats", "store")
        assert (stats.files, stats.bytes) == (3, 60)
        threads = {await worker.run(lambda _: threading.get_ident()) for _ in range(5)}
        assert len(threads) == 1 and threading.get_ident() not in threads
    assert (tree_state(store), tree_state(nas)) == before  # read only
    with RecIndex(tmp_path / "state" / "index.sqlite") as again:  # closed cleanly, kept
        assert again.stats("store").files == 3


async def test_the_loop_keeps_ticking_while_a_job_runs(tmp_path: Path) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async with RecWorker(":memory:") as worker:
        ticker = asyncio.create_task(tick())
        await worker.run(lambda _: time.sleep(0.5))
        ticker.cancel()
    # A blocked loop would tick once at most; generous for a loaded CI machine.
    assert ticks >= 10


async def test_jobs_run_in_order_one_at_a_time(tmp_path: Path) -> None:
    order: list[int] = []
    running = 0
    overlap = False

    def job(n: int) -> int:
        nonlocal running, overlap
        running += 1
        overlap = overlap or running > 1
        time.sleep(0.01)
        order.append(n)
        running -= 1
        return n

    async with RecWorker(":memory:") as worker:
        got = await asyncio.gather(*(worker.run(functools.partial(_nth, job, n))
                                     for n in range(8)))
    assert got == list(range(8)) and order == list(range(8)) and not overlap


async def test_errors_come_back_and_the_worker_goes_on(tmp_path: Path) -> None:
    async with RecWorker(":memory:") as worker:
        with pytest.raises(KeyError):
            await worker.run(_missing_key)
        with pytest.raises(AttributeError, match="not public"):
            await worker.call("_held", 1)
        with pytest.raises(AttributeError):
            await worker.call("no_such_method")
        with pytest.raises(AttributeError, match="not a method"):
            await worker.call("reset")
        report = await worker.scan_tree("store", tmp_path / "absent", ["*.wav"],
                                        now_ns=time.time_ns())
        assert report.root_state == "missing"


async def test_close_waits_for_the_job_and_ends_the_thread() -> None:
    worker = RecWorker(":memory:")
    await worker.open()
    done = threading.Event()

    def slow(_: RecIndex) -> None:
        time.sleep(0.2)
        done.set()

    job = asyncio.create_task(worker.run(slow))
    await asyncio.sleep(0.05)
    await worker.close()
    assert done.is_set()
    await job
    assert not any(t.name.startswith("recindex") for t in threading.enumerate())
    with pytest.raises(RuntimeError, match="not open"):
        await worker.call("stats", "store")
    await worker.close()  # twice is fine


async def test_an_index_that_cannot_be_opened_leaves_no_thread(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    worker = RecWorker(tmp_path / "a-file" / "index.sqlite")  # its "directory" is a file
    with pytest.raises(OSError):
        await worker.open()
    assert not any(t.name.startswith("recindex") for t in threading.enumerate())
    with pytest.raises(RuntimeError, match="not open"):
        await worker.run(lambda index: index)
