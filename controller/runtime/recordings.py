"""The call recordings' check cycle: sense (index, restic, disk, verifier) -> judge -> tell.

Every ``interval`` one blocking cycle runs off the event loop (``Offload``: a single worker
thread of the watch's own, so the SQLite connection is made and used in that one thread
and failover's probes never wait for a walk of a million files; another offload, e.g. a
worker process, can be handed in). The cycle, in the worker:

1. scans the store and each folder backup into the index (``RecIndex.scan_tree``:
   incremental, a full pass every ``full_scan_every``: it is what sees a file changed in
   place in an old folder), and lists each restic repository's *new* snapshots only
   (``snapshot_ids`` minus the index's, then ``snapshots`` and ``listing`` for a few new
   ones per cycle, newest first, then ``set_snapshots`` so forgotten ones stop counting);
   tombstones past the retention are pruned on full passes;
2. asks the index its questions (stats, compare within the completeness window, pending,
   gone, lost, the recent write rate) and reads the store's volume and RAID;
3. reads back the verifier's quota of recordings (``verify_plan``: every recording once in
   ``verify_days``) from each readable backup and compares them by SHA-256 with the
   originals (probes/recverify.py). Its cursor, running counts and corrupt copies are kept
   in the index file (``RecIndex.note``), so a restart goes on where it stopped.

While a cycle runs, the worker notes which source and step it is in, and when it last made
progress (a directory walked); the loop looks every few seconds. A step with no progress
for ``stuck_after`` (default: twice the interval, at least ten minutes) is what a dead NFS
mount looks like (a stat that blocks for minutes): the watch publishes that source's
``available`` finding from the core (``unavailable``: the store, or a must-hold backup,
pages), "no answer for 12 min while scanning /mnt/nas (a hung mount?)", over the last
cycle's figures (its check time does not move), until the cycle ends and normal findings
resume. The loop never waits for the worker.

Back on the loop the facts are judged (controller.core.recordings), each finding whose
severity moved is journaled with its reason, the snapshot part is built (recsnap) and the
daemon is woken to publish it. Nothing here writes in the store or a backup: the index is
``state_dir/recordings.sqlite3`` and the config refuses a state_dir inside them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

from controller.config.recordings import Backup, RecordingsConfig
from controller.core.recordings import (
    STORE,
    BackupFacts,
    RaidFacts,
    RecordingsParams,
    RecordingsVerdict,
    StoreFacts,
    completeness_window,
    judge,
    unavailable,
    verify_plan,
)
from controller.core.recsnap import (
    NAMES_KEPT,
    FindingSnap,
    RecordingsSnap,
    RecSourceSnap,
    ScanStats,
    SourceInfo,
    recordings_snap,
)
from controller.runtime.journal import Journal
from probes.recdisk import DiskReport, MdArray, read_disk
from probes.recfiles import ProblemKind, ScanProblem
from probes.recindex import RecIndex, ScanReport
from probes.recverify import Verified, verify_mirror, verify_restic
from probes.restic import Restic, ResticError

__all__ = ["INDEX_FILE", "NEW_SNAPSHOTS_PER_CYCLE", "STUCK_AFTER_MIN", "Offload", "RecordingsWatch",
           "thread_offload"]

log = logging.getLogger("lifeline.recordings")

INDEX_FILE = "recordings.sqlite3"
RECENT_WINDOW_S = 7 * 86400.0  # the write rate behind "days left": the last week's bytes
_NS = 1_000_000_000
_CORRUPT_KEPT = NAMES_KEPT  # corrupt copies remembered per backup (the count stays exact)
NEW_SNAPSHOTS_PER_CYCLE = 3  # restic snapshots listed per cycle (the rest in the next ones)
_STOP_WAIT = 5.0  # seconds stop() waits for a cycle in progress before leaving it be
# A step of a cycle with no progress this long (and twice the interval) is stuck: a hung
# mount, not a big tree (a walk progresses every directory; a first NFS walk of a million
# recordings can take many minutes and is not stuck).
STUCK_AFTER_MIN = 600.0

T = TypeVar("T")
# Runs one blocking callable off the event loop; always the same worker for one watch.
Offload = Callable[[Callable[[], T]], Awaitable[T]]


def thread_offload() -> tuple[Offload[object], Callable[[], None]]:
    """An offload on one worker thread of its own (sqlite3 connections are per thread),
    and the function that lets that thread go once the work queued on it is done.

    A daemon thread, not a ThreadPoolExecutor's: at exit Python joins an executor's
    threads, so a job hung in the kernel (a stat on a dead NFS mount) would keep the
    daemon from ever stopping. A job cancelled before it starts is not run."""
    jobs: queue.SimpleQueue[tuple[Callable[[], object], asyncio.Future[object],
                                  asyncio.AbstractEventLoop] | None] = queue.SimpleQueue()

    def settle(fut: asyncio.Future[object], result: object, exc: BaseException | None) -> None:
        if fut.cancelled():
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    def work() -> None:
        while (job := jobs.get()) is not None:
            fn, fut, loop = job
            if fut.cancelled():
                continue
            result: object = None
            error: BaseException | None = None
            try:
                result = fn()
            except BaseException as exc:  # handed to the awaiting task, as an executor does
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(settle, fut, result, error)
            del fn, fut, result, error  # hold nothing of a finished job while idle

    thread = threading.Thread(target=work, name="recordings", daemon=True)
    released: list[bool] = []

    async def run(fn: Callable[[], object]) -> object:
        if released:
            raise RuntimeError("the recordings worker was let go")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[object] = loop.create_future()
        if thread.ident is None:
            thread.start()
        jobs.put((fn, fut, loop))
        return await fut

    def release() -> None:
        if not released:
            released.append(True)
            jobs.put(None)

    return run, release


def _name(path: bytes) -> str:
    return path.decode("utf-8", "backslashreplace")


def _secs(ns: int | None) -> float | None:
    return None if ns is None else ns / _NS


def _quiet(seconds: float) -> str:
    return f"{int(seconds // 60)} min" if seconds >= 60 else f"{int(seconds)} s"


@dataclass
class _Source:
    """One source's figures from this cycle (in the worker), for facts and the snapshot."""

    available: bool = True
    why: str = ""
    scan: ScanStats = field(default_factory=ScanStats)
    problems: int = 0
    problem_names: tuple[str, ...] = ()
    last_run: float | None = None
    latest_snapshot: str | None = None  # restic: the newest snapshot (the verifier reads it)
    mismatched: set[bytes] = field(default_factory=set)  # held with another size (listed)


@dataclass(frozen=True, slots=True)
class _Cycle:
    """What one blocking cycle found: the core's facts and the snapshot's extras."""

    at: float
    store: StoreFacts
    backups: tuple[BackupFacts, ...]
    scans: dict[str, ScanStats]
    verified_this_period: int
    disk_free_bytes: int | None
    seconds: float
    index_reset: str | None


def _problems(report: ScanReport) -> tuple[int, tuple[str, ...]]:
    """What the walk could not read, without the races (a file that vanished between
    listing and stat is not a finding)."""
    kept = [p for p in report.problems if p.kind is not ProblemKind.VANISHED]
    vanished = len(report.problems) - len(kept)
    count = max(0, report.problems_total - vanished)
    return count, tuple(_problem_name(p) for p in kept[:NAMES_KEPT])


def _problem_name(p: ScanProblem) -> str:
    return f"{_name(p.path) or '.'}: {p.kind.value} ({p.detail})"


def _order(path: bytes) -> tuple[bytes, bytes]:
    """verify_batch's order: by directory, then by name."""
    head, _, tail = path.rpartition(b"/")
    return head, tail


def _raid(array: MdArray) -> RaidFacts:
    failed = tuple(d.name for d in array.devices if d.failed)
    detail = " ".join(x for x in (
        array.level or "",
        f"[{array.raid_disks}/{array.working_disks}]"
        if array.raid_disks is not None and array.working_disks is not None else "",
        f"[{array.member_map}]" if array.member_map else "") if x)
    if array.recovery:
        detail += f", {array.recovery}"
    return RaidFacts(array.name, array.active, array.degraded, failed, detail)


class _Verifier:
    """The rotating read-back: its cursor and counts live in the index file (notes)."""

    KEY = "verifier"

    def __init__(self, index: RecIndex) -> None:
        raw = index.noted(self.KEY)
        state = json.loads(raw) if raw else {}
        cursor = state.get("cursor")
        self.cursor: bytes | None = None if cursor is None else bytes.fromhex(cursor)
        self.period: int = int(state.get("period", 0))
        self.verified: dict[str, int] = {k: int(v) for k, v in state.get("verified", {}).items()}
        self.corrupt: dict[str, dict[str, str]] = state.get("corrupt", {})

    def save(self, index: RecIndex) -> None:
        index.note(self.KEY, json.dumps({
            "cursor": None if self.cursor is None else self.cursor.hex(),
            "period": self.period, "verified": self.verified, "corrupt": self.corrupt}))

    def advance(self, batch: Sequence[bytes]) -> None:
        """Move the cursor past ``batch``; a batch that wrapped around starts a new period."""
        if not batch:
            return
        wrapped_at = next((i for i, p in enumerate(batch) if self.cursor is not None
                           and _order(p) <= _order(self.cursor)), None)
        if wrapped_at is None:
            self.period += len(batch)
        else:
            self.period = len(batch) - wrapped_at
        self.cursor = batch[-1]

    def record(self, backup: str, results: Sequence[Verified]) -> None:
        corrupt = self.corrupt.setdefault(backup, {})
        for v in results:
            name = _name(v.path)
            if v.kind == "equal":
                self.verified[backup] = self.verified.get(backup, 0) + 1
                corrupt.pop(name, None)  # a copy made again is good now
            elif v.kind == "different" or (v.kind == "error"
                                           and v.detail.startswith("restic: corrupt")):
                corrupt[name] = v.detail
            elif v.kind in ("missing_copy", "missing_original"):
                corrupt.pop(name, None)  # completeness (or the purge) speaks of it now
            else:
                log.info("recordings verify %s %s: %s", backup, name, v.detail)
        if len(corrupt) > _CORRUPT_KEPT * 10:  # bounded: the oldest remembered go first
            for name in list(corrupt)[: len(corrupt) - _CORRUPT_KEPT * 10]:
                del corrupt[name]


class RecordingsWatch:
    """The recordings check: its task, its worker, its index, the last verdict."""

    def __init__(self, cfg: RecordingsConfig, journal: Journal, state_dir: Path | str,
                 now: Callable[[], float], wake: Callable[[], None] = lambda: None, *,
                 offload: tuple[Offload[object], Callable[[], None]] | None = None,
                 disk: Callable[[str], DiskReport] = read_disk,
                 stuck_after: float | None = None) -> None:
        """``now``: the wall clock (Unix seconds, as the recordings' mtimes); ``wake``: the
        daemon should publish (a cycle ended); ``offload``: where the blocking cycle runs
        and how to let it go (default: a worker thread of its own); ``disk``: reads the
        store's volume and RAID (tests hand in sample /proc and /sys); ``stuck_after``:
        seconds without progress after which a step is stuck (None: max(2 x interval,
        STUCK_AFTER_MIN); tests hand in a short one)."""
        self.cfg = cfg
        self.journal = journal
        self.index_path = Path(state_dir) / INDEX_FILE
        self.now = now
        self.wake = wake
        self._offload, self._release = offload if offload is not None else thread_offload()
        self._disk = disk
        self._index: RecIndex | None = None  # opened, used and closed in the worker only
        self._verifier: _Verifier | None = None
        self._ignored: dict[str, set[str]] = {}  # restic snapshots of other paths
        self._last_full: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._severities: dict[tuple[str, str], str] = {}
        self.verdict: RecordingsVerdict | None = None
        self.cycles = 0
        self.error: str | None = None  # why the last cycle failed (None: it did not)
        self._snap: RecordingsSnap | None = None
        self._stuck_after = stuck_after
        self._last: _Cycle | None = None  # the last cycle's facts (a stuck one is judged on)
        # Written by the worker, read by the loop (whole values: no lock needed): the
        # subject (None: lifeline's own index) and words of the step in progress, and when
        # the worker last made progress (time.monotonic).
        self._step: tuple[str | None, str] | None = None
        self._alive = 0.0
        self.stuck: str | None = None  # what the cycle in progress is stuck on, in words

    # -- the task ------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="recordings")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self.check()
            except Exception:  # a bug in judging or telling: the next cycle tries again
                log.exception("recordings check cycle failed")
            await asyncio.sleep(max(0.0, self.cfg.interval - (loop.time() - started)))

    async def check(self) -> RecordingsSnap | None:
        """One cycle now (the task's, or a test's). A cycle that fails keeps the last
        snapshot (its check time stops moving: the stuck-checker alert) and says why."""
        cfg, now = self.cfg, self.now()
        bound = self.stuck_bound(cfg)
        running = asyncio.ensure_future(self._offload(lambda: self._blocking(cfg, now)))
        try:
            while not (await asyncio.wait({running}, timeout=min(30.0, max(0.02, bound / 10))))[0]:
                self._look_stuck(cfg, bound)
            cycle = running.result()
        except asyncio.CancelledError:
            running.cancel()  # only the waiting: the worker's job runs to its end
            raise
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
            if why != self.error:
                log.exception("recordings check failed")
                self.journal.record("error", "recordings", f"check failed: {why}")
            self.error = why
            return self._snap
        assert isinstance(cycle, _Cycle)
        if self.error is not None:
            self.journal.record("action", "recordings", "check works again")
        if self.stuck is not None:
            self.journal.record("action", "recordings",
                                f"check answers again (was stuck: {self.stuck})")
        self.error = self.stuck = None
        self._last = cycle
        if cycle.index_reset is not None:
            self.journal.record("error", "recordings", cycle.index_reset)
        self._judged(cfg, cycle)
        self.cycles += 1
        self.wake()
        return self._snap

    def stuck_bound(self, cfg: RecordingsConfig) -> float:
        """Seconds a step may go without progress before it is called stuck."""
        if self._stuck_after is not None:
            return self._stuck_after
        return max(2 * cfg.interval, STUCK_AFTER_MIN)

    def _look_stuck(self, cfg: RecordingsConfig, bound: float) -> None:
        """On the loop, while the cycle runs: a step quiet for ``bound`` is published as its
        subject's ``available`` finding over the last cycle's figures."""
        step, quiet = self._step, time.monotonic() - self._alive
        if step is None or quiet < bound:
            return
        subject, doing = step
        why = f"no answer for {_quiet(quiet)} while {doing} (a hung mount?)"
        first = self.stuck is None
        self.stuck = f"{subject or 'the index'}: {why}"
        if first:
            log.warning("recordings check stuck: %s", self.stuck)
            if subject is None:  # no source to blame: the stuck-checker alert says it
                self.journal.record("error", "recordings", f"check stuck: {self.stuck}")
        if subject is None:
            return
        params = cfg.params()
        c = self._last
        if c is None:  # the first cycle: no figures yet, only this finding
            f = unavailable(params, subject, why)
            self._journal_changes(RecordingsVerdict((f,)), keep=True)
            pre = self._not_read_yet()
            self._snap = replace(pre, sources=tuple(
                replace(s, why_unavailable=why) if s.name == subject else s
                for s in pre.sources), findings=(FindingSnap(
                    f.check.value, f.subject, f.severity.value, f.value, f.reason),))
        else:
            store, backups = c.store, c.backups
            if subject == STORE:
                store = replace(store, available=False, why_unavailable=why)
            elif any(b.name == subject for b in backups):
                backups = tuple(replace(b, available=False, why_unavailable=why)
                                if b.name == subject else b for b in backups)
            else:  # a backup added by a reload since
                backups = (*backups, BackupFacts(subject, available=False,
                                                 why_unavailable=why))
            self._judged(cfg, replace(c, store=store, backups=backups), keep=True)
        self.wake()

    def _judged(self, cfg: RecordingsConfig, c: _Cycle, *, keep: bool = False) -> None:
        params = cfg.params()
        verdict = judge(params, c.store, c.backups, c.at)
        self._journal_changes(verdict, keep=keep)
        self.verdict = verdict
        self._snap = recordings_snap(
            params, c.store, c.backups, verdict, now=c.at, sources=self._sources(cfg),
            scans=c.scans, verify_days=cfg.verify_days, interval=cfg.interval,
            verified_this_period=c.verified_this_period,
            disk_free_bytes=c.disk_free_bytes, cycle_seconds=c.seconds)

    def _journal_changes(self, verdict: RecordingsVerdict, *, keep: bool = False) -> None:
        """A finding whose severity moved (a first finding: when it is not ok) is one
        journal line with its reason; one that stays as it was is not repeated. ``keep``:
        the findings the verdict lacks keep their severity (a stuck source's other checks
        are not judged, and are not new when they come back)."""
        seen: dict[tuple[str, str], str] = {}
        for f in verdict.findings:
            key = (f.check.value, f.subject)
            seen[key] = f.severity.value
            old = self._severities.get(key)
            if old == f.severity.value or (old is None and f.severity.value == "ok"):
                continue
            was = old or "unknown"
            (log.warning if f.severity.value != "ok" else log.info)(
                "recordings %s %s: %s -> %s: %s", f.check.value, f.subject, was,
                f.severity.value, f.reason)
            self.journal.record(
                "transition", f.subject, f"recordings {f.check.value}: {was} -> "
                f"{f.severity.value}: {f.reason}", check=f.check.value, old=was,
                new=f.severity.value, value=f.value, names=list(f.names[:20]))
        self._severities = {**self._severities, **seen} if keep else seen

    # -- the blocking cycle (in the worker) ----------------------------------------------
    def _open(self) -> RecIndex:
        if self._index is None:
            self._index = RecIndex(self.index_path)
            self._verifier = _Verifier(self._index)
            noted = self._index.noted("last_full")
            self._last_full = None if noted is None else float(noted)
        return self._index

    def _doing(self, subject: str | None, doing: str) -> None:
        """In the worker: the step it starts now (the loop reads it to say what hangs)."""
        self._alive = time.monotonic()
        self._step = (subject, doing)

    def _progress(self) -> None:
        self._alive = time.monotonic()

    def _blocking(self, cfg: RecordingsConfig, now: float) -> _Cycle:
        try:
            return self._cycle(cfg, now)
        finally:
            self._step = None

    def _cycle(self, cfg: RecordingsConfig, now: float) -> _Cycle:
        started = time.monotonic()
        self._doing(None, "opening the index")
        index = self._open()
        verifier = self._verifier
        assert verifier is not None
        now_ns = int(now * _NS)
        full = self._last_full is None or now - self._last_full >= cfg.full_scan_every
        patterns = cfg.store.patterns
        srcs: dict[str, _Source] = {}
        reset: str | None = None

        def tree(name: str, root: Path) -> None:
            nonlocal reset
            self._doing(name, f"scanning {root}")
            rep = index.scan_tree(name, str(root), patterns, now_ns=now_ns, full=full,
                                  progress=self._progress)
            reset = reset or rep.index_reset
            s = srcs[name] = _Source(scan=ScanStats(at=time.time(), seconds=rep.seconds,
                                                    full=rep.full))
            s.problems, s.problem_names = _problems(rep)
            if rep.root_state == "missing":
                s.available, s.why = False, f"root missing: {root}"
            elif rep.root_state == "empty":
                s.available, s.why = False, (f"root empty: {root} (an unmounted share?); the "
                                             "index keeps what it held")
            elif rep.files == 0 and rep.problems_total and any(
                    p.path == b"" for p in rep.problems):
                s.available, s.why = False, f"root unreadable: {_problem_name(rep.problems[0])}"

        tree(STORE, cfg.store.path)
        for b in cfg.backups:
            if b.folder is not None:
                tree(b.name, b.folder)
            else:
                assert b.restic is not None
                self._doing(b.name, f"listing the snapshots of {b.restic.repository}")
                srcs[b.name] = self._restic_scan(index, cfg, b, now_ns)
        self._doing(None, "querying the index")
        if full:
            for name in (STORE, *(b.name for b in cfg.backups)):
                index.prune(name, older_than_ns=now_ns - int(cfg.retention * _NS))
            self._last_full = now
            index.note("last_full", repr(now))
        for name, s in srcs.items():
            st = index.stats(name)
            s.scan = ScanStats(st.files, st.bytes, s.scan.at, s.scan.seconds, s.scan.full)

        params = cfg.params()
        backups = [self._backup_facts(index, cfg, params, b, srcs[b.name], now)
                   for b in cfg.backups]
        verified_period, backups = self._verify(index, verifier, cfg, srcs, backups)
        store, free = self._store_facts(index, cfg, srcs[STORE], now)
        return _Cycle(now, store, tuple(backups), {n: s.scan for n, s in srcs.items()},
                      verified_period, free, time.monotonic() - started, reset)

    def _restic(self, b: Backup) -> Restic:
        r = b.restic
        assert r is not None
        return Restic(r.repository, r.password_file, binary=str(r.binary),
                      cache_dir=r.cache_dir, timeout=r.timeout)

    def _restic_scan(self, index: RecIndex, cfg: RecordingsConfig, b: Backup,
                     now_ns: int) -> _Source:
        """New snapshots only: one cheap id listing, then ``snapshots`` and ``ls`` for the
        ones the index has not seen (snapshots of other paths are remembered and skipped)."""
        started = time.monotonic()
        root = str(cfg.restic_path(b))
        restic = self._restic(b)
        ignored = self._ignored.setdefault(b.name, set())
        try:
            ids = restic.snapshot_ids()
            seen = index.snapshots_seen(b.name)
            new = sorted(set(ids) - seen - ignored)
            if new:
                ours = []
                for info in restic.snapshots(new):
                    if any(root == p or root.startswith(p.rstrip("/") + "/")
                           for p in info.paths):
                        ours.append(info)
                    else:
                        ignored.add(info.id)
                # Newest first, a few per cycle: a first run over a year of snapshots
                # (~20 s of `restic ls` each at a million files) spreads over cycles, and
                # the newest copy (freshness, the verifier's snapshot) is known at once.
                ours.sort(key=lambda i: i.time_ns, reverse=True)
                for info in ours[:NEW_SNAPSHOTS_PER_CYCLE]:
                    index.add_snapshot(b.name, info.id, info.time_ns,
                                       restic.listing(info.id, root))
            times = index.snapshot_times(b.name)
            index.set_snapshots(b.name, {i: times.get(i, 0) for i in ids}, now_ns=now_ns)
        except ResticError as exc:
            return _Source(available=False, why=f"restic {exc.kind}: {exc.detail}",
                           scan=ScanStats(at=time.time(), seconds=time.monotonic() - started,
                                          full=False))
        times = {i: t for i, t in index.snapshot_times(b.name).items() if i in set(ids)}
        latest = max(times, key=lambda i: times[i]) if times else None
        return _Source(scan=ScanStats(at=time.time(), seconds=time.monotonic() - started,
                                      full=bool(new)),
                       last_run=None if latest is None else times[latest] / _NS,
                       latest_snapshot=latest)

    def _backup_facts(self, index: RecIndex, cfg: RecordingsConfig, params: RecordingsParams,
                      b: Backup, s: _Source, now: float) -> BackupFacts:
        if not s.available:
            return BackupFacts(b.name, available=False, why_unavailable=s.why,
                               problems=s.problems, problem_names=s.problem_names)
        st = index.stats(b.name)
        newest = None if st.newest is None else st.newest.mtime_ns / _NS
        window = completeness_window(params, newest, now)
        missing = mismatched = 0
        missing_names: tuple[str, ...] = ()
        mismatched_names: tuple[str, ...] = ()
        if window is not None:
            comp = index.compare(STORE, b.name, older_than_ns=int(window[1] * _NS),
                                 since_ns=int(window[0] * _NS), limit=NAMES_KEPT)
            missing, mismatched = comp.missing, comp.mismatched
            s.mismatched = {p for p, _, _ in comp.mismatched_paths}
            missing_names = tuple(_name(p) for p in comp.missing_paths)
            mismatched_names = tuple(f"{_name(p)} ({a} bytes, {c} in {b.name})"
                                     for p, a, c in comp.mismatched_paths)
        young_ns = int((now - cfg.retention) * _NS)
        gone, tombs = index.gone(b.name, younger_than_ns=young_ns, limit=NAMES_KEPT)
        return BackupFacts(
            b.name, newest_mtime=newest,
            pending_since=_secs(index.pending_since(STORE, b.name)), last_run=s.last_run,
            missing=missing, missing_names=missing_names, mismatched=mismatched,
            mismatched_names=mismatched_names, gone_young=gone,
            gone_names=tuple(_name(t.path) for t in tombs),
            oldest_mtime=None if st.oldest is None else st.oldest.mtime_ns / _NS,
            problems=s.problems, problem_names=s.problem_names)

    def _verify(self, index: RecIndex, verifier: _Verifier, cfg: RecordingsConfig,
                srcs: dict[str, _Source], backups: list[BackupFacts],
                ) -> tuple[int, list[BackupFacts]]:
        """This cycle's quota read back from every readable backup; the facts gain the
        running counts. A copy held with another size is the mismatch check's, not read."""
        st = index.stats(STORE)
        plan = verify_plan(st.files, st.bytes, cfg.verify_days, cfg.interval,
                           len(cfg.backups))
        store_ok = srcs[STORE].available
        batch = ([e.path for e in index.verify_batch(STORE, verifier.cursor,
                                                     plan.files_per_cycle)]
                 if store_ok else [])
        out = []
        for facts in backups:
            b = cfg.backup(facts.name)
            s = srcs[b.name]
            paths = [p for p in batch if p not in s.mismatched]
            if paths and facts.available:
                where = b.folder if b.folder is not None else "its latest snapshot"
                self._doing(b.name, f"reading back copies from {where} (and the store)")
                if b.folder is not None:
                    results = verify_mirror(cfg.store.path, b.folder, paths)
                    verifier.record(b.name, results)
                elif s.latest_snapshot is not None:
                    results = verify_restic(self._restic(b), s.latest_snapshot,
                                            str(cfg.restic_path(b)), cfg.store.path, paths)
                    verifier.record(b.name, results)
            corrupt = verifier.corrupt.get(b.name, {})
            names = tuple(sorted(corrupt))
            out.append(replace(facts, verified=verifier.verified.get(b.name, 0),
                                corrupt=len(corrupt), corrupt_names=names[:NAMES_KEPT]))
        self._doing(None, "querying the index")
        verifier.advance(batch)
        verifier.save(index)
        return verifier.period, out

    def _store_facts(self, index: RecIndex, cfg: RecordingsConfig, s: _Source,
                     now: float) -> tuple[StoreFacts, int | None]:
        st = index.stats(STORE)
        young_ns = int((now - cfg.retention) * _NS)
        lost, tombs = index.lost(STORE, [b.name for b in cfg.backups],
                                 younger_than_ns=young_ns, limit=NAMES_KEPT)
        written = index.written_bytes(STORE, int((now - RECENT_WINDOW_S) * _NS))
        self._doing(STORE, f"reading the volume of {cfg.store.path}")
        disk = self._disk(str(cfg.store.path))
        vol = disk.volume
        if disk.error is not None:
            log.info("recordings disk: %s", disk.error)
        facts = StoreFacts(
            available=s.available, why_unavailable=s.why, files=st.files,
            newest_mtime=None if st.newest is None else st.newest.mtime_ns / _NS,
            oldest_mtime=None if st.oldest is None else st.oldest.mtime_ns / _NS,
            lost_young=lost, lost_names=tuple(_name(t.path) for t in tombs),
            free_bytes=None if vol is None else vol.avail_bytes,
            total_bytes=None if vol is None else vol.total_bytes,
            written_recent_bytes=written, recent_window_s=RECENT_WINDOW_S,
            raid=tuple(_raid(a) for a in disk.arrays),
            problems=s.problems, problem_names=s.problem_names)
        return facts, None if vol is None else vol.free_bytes

    def _close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None

    # -- reload and stop -----------------------------------------------------------------
    async def reconfigure(self, cfg: RecordingsConfig) -> list[str]:
        """Take a new ``recordings:`` section: the next cycle reads with it (the index and
        the verifier's place are kept); a new interval restarts the task's timing."""
        if cfg == self.cfg:
            return []
        old, self.cfg = self.cfg, cfg
        if cfg.interval != old.interval and self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
            self.start()
        return ["recordings: changed"]

    async def stop(self) -> None:
        """Stop the task; the index is closed in its worker once a cycle in progress ends
        (waited for up to a few seconds: a full walk is not cut half way)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self._offload(self._close)), _STOP_WAIT)
        self._release()

    # -- tell ----------------------------------------------------------------------------
    def _sources(self, cfg: RecordingsConfig) -> list[SourceInfo]:
        out = [SourceInfo(STORE, "store", str(cfg.store.path))]
        for b in cfg.backups:
            where = str(b.folder) if b.folder is not None else (
                b.restic.repository if b.restic is not None else "")
            out.append(SourceInfo(b.name, b.kind, where))
        return out

    def snapshot(self, now: float) -> RecordingsSnap:
        """The last cycle's part of the snapshot (before the first: every source "not read
        yet", no verdict)."""
        if self._snap is not None:
            return self._snap
        return self._not_read_yet()

    def _not_read_yet(self) -> RecordingsSnap:
        return RecordingsSnap(judged_at=None, sources=tuple(
            RecSourceSnap(i.name, i.kind, i.where,
                          must_hold=i.name != STORE and self.cfg.params().must(i.name),
                          available=False, why_unavailable="not read yet")
            for i in self._sources(self.cfg)))

