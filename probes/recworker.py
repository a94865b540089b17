"""The recordings index off the event loop: one dedicated thread owns the RecIndex.

Every RecIndex method blocks (a first scan of a million recordings and a mirror takes tens
of seconds), and the event loop also runs the link probe rounds that failover is judged
on. ``tests/bench/bench_scan_lateness.py`` measured both ways of moving the work off the
loop (docs/recordings.md, "How the scan stays off the event loop"): in a worker thread the
rounds stay on time (p99 3 ms during a 1M-file scan), because the walk's system calls and
SQLite's steps release the GIL and the loop gets it back within the switch interval; a
child process kept them on time too but scanned 3x slower (glibc trims a main thread's
heap) and needs starting, feeding and restarting. So this is a thread, and a single one: the
index's SQLite connection is used from one thread only, jobs run one after another in the
order they were asked, and a cycle can hand the whole of its work over in one ``run``.

A job that is running cannot be interrupted (cancelling the awaiting task only stops the
waiting); ``close`` waits for it, then closes the index on its own thread.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from probes.recindex import HOT_NS, RecIndex, ScanReport

__all__ = ["RecWorker"]

T = TypeVar("T")


class RecWorker:
    """A RecIndex at ``path`` owned by one thread, with async methods.

    Use ``async with RecWorker(path) as worker`` (or ``await worker.open()`` and
    ``await worker.close()``); ``reset`` is the index's (why an old file was moved aside).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self.reset: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._index: RecIndex | None = None

    async def open(self) -> None:
        """Start the thread and open the index on it (schema check, quick_check)."""
        if self._pool is not None:
            return
        pool = self._pool = ThreadPoolExecutor(1, thread_name_prefix="recindex")
        try:
            self._index = await self._submit(RecIndex, self.path)
        except BaseException as exc:
            self._pool = None
            _end(pool, idle=not isinstance(exc, asyncio.CancelledError))
            raise
        self.reset = self._index.reset

    async def close(self) -> None:
        """Wait for the job in progress, close the index on its thread, end the thread."""
        pool, index = self._pool, self._index
        self._pool = self._index = None
        if pool is None:
            return
        try:
            if index is not None:
                await asyncio.get_running_loop().run_in_executor(pool, index.close)
        except BaseException as exc:
            _end(pool, idle=not isinstance(exc, asyncio.CancelledError))
            raise
        _end(pool, idle=True)

    async def __aenter__(self) -> RecWorker:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._pool is None:
            raise RuntimeError("the recordings index worker is not open")
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, functools.partial(fn, *args, **kwargs))

    def _opened(self) -> RecIndex:
        if self._index is None:
            raise RuntimeError("the recordings index worker is not open")
        return self._index

    async def run(self, job: Callable[[RecIndex], T]) -> T:
        """Run ``job(index)`` on the worker thread: a whole cycle's queries in one hop."""
        return await self._submit(job, self._opened())

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``index.<method>(*args, **kwargs)`` on the worker thread (public methods only)."""
        if method.startswith("_"):
            raise AttributeError(f"RecIndex.{method} is not public")
        fn = getattr(self._opened(), method)
        if not callable(fn):
            raise AttributeError(f"RecIndex.{method} is not a method")
        return await self._submit(fn, *args, **kwargs)

    async def scan_tree(self, source: str, root: str | bytes | Path, patterns: Sequence[str],
                        *, now_ns: int, full: bool = False, hot_ns: int = HOT_NS
                        ) -> ScanReport:
        """``RecIndex.scan_tree`` on the worker thread."""
        return await self._submit(self._opened().scan_tree, source, root, patterns,
                                  now_ns=now_ns, full=full, hot_ns=hot_ns)


def _end(pool: ThreadPoolExecutor, *, idle: bool) -> None:
    """End the worker thread. When its last job has finished (``idle``) the join is at once;
    otherwise (cancelled while a job runs) the loop does not wait: queued jobs are dropped
    and the thread ends after the running one."""
    pool.shutdown(wait=idle, cancel_futures=True)
