"""A recordings cycle stuck on a hung source (a dead NFS mount: a stat that blocks for
minutes): the watch says which source and step after ``stuck_after`` without progress, as
that source's ``available`` finding over the last cycle's figures, the loop keeps running,
and when the cycle ends the normal findings come back (journaled once, not twice).

The hang is a fake reader that blocks on an Event in the worker (the store's disk reader,
or the mirror's read-back); the bound is a fraction of a second."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from prometheus_client import generate_latest

import controller.runtime.recordings as runtime
from controller.core.recordings import STORE, Check, RecordingsParams, Severity, unavailable
from controller.core.recsnap import FindingSnap
from controller.runtime.journal import Journal, read_events
from controller.runtime.recordings import STUCK_AFTER_MIN, RecordingsWatch
from exporters.metrics import registry_for
from probes.recdisk import DiskReport
from probes.recindex import RecIndex
from probes.recverify import Verified, verify_mirror
from tests.unit.test_recordings_runtime import DAY, Clock, _cfg, _disk, _site, _snap

BOUND = 0.3  # seconds without progress: stuck (the default is minutes)


class Gate:
    """A blocking point in the worker: ``entered`` when the worker reaches it (and when),
    held until ``release``; never longer than ``limit`` (a failing test must end)."""

    def __init__(self, limit: float = 20.0) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()
        self.entered_at = 0.0
        self.limit = limit

    def wait(self) -> None:
        self.entered_at = time.monotonic()
        self.entered.set()
        self.open.wait(self.limit)

    def release(self) -> None:
        self.open.set()


@pytest.fixture
def gate() -> Iterator[Gate]:
    g = Gate()
    yield g
    g.release()  # the worker thread always ends


async def _until(what: str, ok: Callable[[], bool], within: float = 10.0) -> float:
    """Polls on the loop (it would stall if the loop were blocked); returns when."""
    start = time.monotonic()
    while not ok():
        assert time.monotonic() - start < within, f"not within {within} s: {what}"
        await asyncio.sleep(0.02)
    return time.monotonic()


def _finding(watch: RecordingsWatch, clock: Clock, check: str,
             subject: str) -> FindingSnap | None:
    return watch.snapshot(clock.t).finding(check, subject)


def _stuck(watch: RecordingsWatch) -> str | None:
    return watch.stuck


def _severity(watch: RecordingsWatch, clock: Clock, check: str, subject: str) -> str | None:
    f = _finding(watch, clock, check, subject)
    return None if f is None else f.severity


async def test_a_store_that_hangs_in_the_first_cycle_pages_naming_the_step(
        tmp_path: Path, gate: Gate) -> None:
    store, nas, _ = _site(tmp_path)
    journal = Journal(tmp_path / "state" / "journal.sqlite3")
    clock = Clock()

    def hung_disk(path: str) -> DiskReport:
        gate.wait()
        return _disk(path)

    watch = RecordingsWatch(_cfg(store, nas), journal, tmp_path / "state", clock,
                            disk=hung_disk, stuck_after=BOUND)
    try:
        task = asyncio.create_task(watch.check())
        await _until("the worker reaches the disk", gate.entered.is_set)
        assert _finding(watch, clock, "available", STORE) is None  # not yet: within the bound
        said = await _until("the stuck store is said",
                            lambda: _severity(watch, clock, "available", STORE) == "page")
        assert said - gate.entered_at >= BOUND
        assert not task.done()  # the cycle is still hung; the loop was not
        found = _finding(watch, clock, "available", STORE)
        assert found is not None
        assert f"while reading the volume of {store}" in found.reason
        assert re.search(r"no answer for \d+ s while", found.reason), found.reason
        assert found.reason.endswith("(a hung mount?)); nothing proves recordings are being "
                                     "kept")
        snap = watch.snapshot(clock.t)
        assert snap.judged_at is None  # no cycle ended: the stuck-checker alert is not fed
        assert [(f.check, f.subject) for f in snap.findings] == [("available", STORE)]
        assert next(s for s in snap.sources if s.is_store).why_unavailable.startswith(
            "no answer for")
        scraped = generate_latest(registry_for(lambda: _snap(watch, clock))).decode()
        assert ('lifeline_recordings_check_severity{check="available",severity="page",'
                'subject="store"} 1.0') in scraped
        assert (_stuck(watch) or "").startswith("store: no answer")

        gate.release()
        await asyncio.wait_for(task, 10)
        assert _severity(watch, clock, "available", STORE) == "ok"
        assert watch.snapshot(clock.t).judged_at == clock.t and _stuck(watch) is None
        moves = [e.message for e in read_events(journal.path, 100, subject=STORE)
                 if e.message.startswith("recordings available:")]
        assert len(moves) == 2 and "unknown -> page" in moves[0] and "page -> ok" in moves[1]
        assert any(e.message.startswith("check answers again (was stuck: store: no answer")
                   for e in read_events(journal.path, 100, "action", "recordings"))
    finally:
        gate.release()
        await watch.stop()
        journal.close()


async def test_a_mirror_that_hangs_later_pages_over_the_last_figures_then_resumes(
        tmp_path: Path, gate: Gate, monkeypatch: pytest.MonkeyPatch) -> None:
    store, nas, _ = _site(tmp_path)
    journal = Journal(tmp_path / "state" / "journal.sqlite3")
    clock = Clock()
    watch = RecordingsWatch(_cfg(store, nas), journal, tmp_path / "state", clock,
                            disk=_disk, stuck_after=BOUND)
    try:
        await watch.check()  # a good cycle: the mirror lacks two recordings (a page)
        first_at = clock.t
        assert _severity(watch, clock, "missing", "nas") == "page"

        def hung_verify(store_root: Path, backup_root: Path,
                        paths: Sequence[bytes]) -> list[Verified]:
            gate.wait()
            return verify_mirror(store_root, backup_root, paths)

        monkeypatch.setattr(runtime, "verify_mirror", hung_verify)
        clock.t += 300
        task = asyncio.create_task(watch.check())
        await _until("the stuck mirror is said",
                     lambda: _severity(watch, clock, "available", "nas") == "page")
        snap = watch.snapshot(clock.t)
        assert snap.judged_at == first_at  # the last cycle's figures; its time does not move
        found = snap.finding("available", "nas")
        assert found is not None
        assert f"while reading back copies from {nas} (and the store)" in found.reason
        nas_src = next(s for s in snap.sources if s.name == "nas")
        assert nas_src.files == 7 and not nas_src.available  # old figures kept
        assert snap.finding("missing", "nas") is None  # not judged while it hangs
        assert [(f.check, f.subject) for f in snap.problems] == [("available", "nas")]
        # The loop stays on time while the worker hangs.
        late = 0.0
        for _ in range(10):
            t = time.monotonic()
            await asyncio.sleep(0.01)
            late = max(late, time.monotonic() - t - 0.01)
        assert late < 0.5 and not task.done()

        gate.release()
        await asyncio.wait_for(task, 10)
        assert _severity(watch, clock, "available", "nas") == "ok"
        assert _severity(watch, clock, "missing", "nas") == "page"  # normal findings again
        assert watch.snapshot(clock.t).judged_at == clock.t
        missing = [e.message for e in read_events(journal.path, 100, subject="nas")
                   if e.message.startswith("recordings missing:")]
        assert len(missing) == 1  # not journaled again on coming back
    finally:
        gate.release()
        await watch.stop()
        journal.close()


def test_the_default_bound_is_twice_the_interval_and_at_least_ten_minutes(
        tmp_path: Path) -> None:
    store, nas, _ = _site(tmp_path)
    cfg = _cfg(store, nas)
    journal = Journal(tmp_path / "journal.sqlite3")
    watch = RecordingsWatch(cfg, journal, tmp_path / "state", Clock())
    try:
        assert watch.stuck_bound(cfg) == STUCK_AFTER_MIN == 600.0  # 5 min interval
        hourly = cfg.model_copy(update={"interval": 3600.0, "full_scan_every": DAY})
        assert watch.stuck_bound(hourly) == 7200.0
    finally:
        journal.close()


@pytest.mark.parametrize(("must_hold", "subject", "severity"), [
    (None, STORE, Severity.PAGE), (None, "nas", Severity.PAGE),
    (frozenset({"nas"}), "usb", Severity.TICKET)])
def test_unavailable_pages_for_the_store_and_a_must_hold_backup_only(
        must_hold: frozenset[str] | None, subject: str, severity: Severity) -> None:
    f = unavailable(RecordingsParams(retention=5 * 365 * DAY, must_hold=must_hold), subject,
                    "no answer for 12 min while scanning /mnt/nas (a hung mount?)")
    assert (f.check, f.subject, f.severity, f.value) == (Check.AVAILABLE, subject, severity,
                                                         0.0)
    assert "no answer for 12 min" in f.reason


def test_a_walk_reports_progress_for_every_directory(tmp_path: Path) -> None:
    """What tells a long walk (a first NFS scan of a million files) from a hung one."""
    store, _, _ = _site(tmp_path)
    ticks: list[float] = []
    with RecIndex(tmp_path / "index.sqlite3") as index:
        rep = index.scan_tree(STORE, str(store), ["*.wav"], now_ns=10**18, full=True,
                              progress=lambda: ticks.append(time.monotonic()))
    assert rep.files == 9 and rep.dirs_listed >= 3
    assert len(ticks) >= rep.dirs_listed


_HUNG_AT_EXIT = """
import asyncio, sys, threading
from controller.runtime.recordings import thread_offload
hung = threading.Event()
async def main():
    run, release = thread_offload()
    job = asyncio.ensure_future(run(lambda: hung.wait(60)))
    await asyncio.sleep(0.2)
    job.cancel()
    release()
asyncio.run(main())
print("left", flush=True)
"""


def test_a_worker_hung_in_the_kernel_does_not_keep_the_daemon_from_exiting() -> None:
    """A ThreadPoolExecutor's thread is joined at exit: a stat hung on a dead mount would
    keep a stopped daemon alive until systemd kills it. The watch's worker is a daemon
    thread (here a job blocked for 60 s; the process ends at once)."""
    repo = Path(__file__).resolve().parents[2]
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _HUNG_AT_EXIT], cwd=repo, timeout=30,
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(repo)})
    assert proc.returncode == 0 and proc.stdout == "left\n", proc.stderr
    assert time.monotonic() - started < 20


async def test_the_worker_runs_jobs_in_order_passes_errors_and_refuses_after_release(
        ) -> None:
    run, release = runtime.thread_offload()
    names: list[str] = []

    def job(name: str) -> int:
        names.append(name)
        return len(names)

    assert list(await asyncio.gather(run(lambda: job("a")), run(lambda: job("b")))) == [1, 2]
    assert names == ["a", "b"]

    def broken() -> object:
        raise ValueError("bug")

    with pytest.raises(ValueError, match="bug"):
        await run(broken)
    assert threading.current_thread().name != await run(
        lambda: threading.current_thread().name) == "recordings"
    release()
    with pytest.raises(RuntimeError, match="let go"):
        await run(lambda: None)
