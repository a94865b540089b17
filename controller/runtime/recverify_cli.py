"""``lifeline recordings verify``: check now, standalone, that the recent recordings are in
every backup and that each copy's bytes equal the original's.

The daemon proves the same over days (a rotating sample); an operator after a restore, a
new NAS or a night that went wrong wants the answer now for a window (``--since 7d``). It
needs no daemon: it builds a throwaway index (probes/recindex.py) in a temporary directory
of its own (never inside the store or a backup; removed at the end), scans the store and
each backup in full (a mirror folder with ``scan_tree``; restic: the latest snapshot of
the store's path, listed once), then for each backup reports the window's recordings that
are missing, held with another size, or held with the same size but other bytes (every
copy read back and hashed: probes/recverify.py, one ``restic dump`` per directory), and
what could not be read. Everything it opens in a store or backup is opened read-only.

The same rules as the daemon's (docs/recordings.md), so both tell one story: a recording
newer than the newest copy a backup holds (less the grace) is *waiting* for the next copy,
not missing; a backup that cannot be read (not mounted, empty, a repository restic cannot
open) is one "could not check", not every recording missing; the window never reaches
past the legal retention (a backup may drop older recordings).

Exit codes: 0 every window recording is in every backup checked and equal by SHA-256;
1 findings; 2 could not check (config, store or a backup unavailable), the report still
printed for what could be checked.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from controller.config.recordings import Backup, RecordingsConfig
from controller.core.durations import format_period
from probes.recfiles import FileEntry, ProblemKind, ScanProblem
from probes.recindex import RecIndex
from probes.recverify import Verified, verify_mirror, verify_restic
from probes.restic import Restic, ResticError

__all__ = ["BackupCheck", "Progress", "VerifyRun", "render_text", "run_verify", "to_json"]

STORE = "store"
_CHUNK_FILES = 10_000  # store files read from the index per query
_MIRROR_BATCH = 32  # copies hashed between two progress updates
_TEXT_NAMES = 50  # names per category in the text report (--json lists them all)
_LIST_MAX = 100_000  # the index's longest list


def _name(path: bytes) -> str:
    return path.decode("utf-8", "backslashreplace")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class BackupCheck:
    """What one backup holds of the window, and what is wrong with it."""

    name: str
    kind: str  # "folder" or "restic"
    where: str
    available: bool = True
    why: str = ""  # why it could not be checked
    snapshot: str | None = None  # restic: the snapshot read (latest of the store's path)
    snapshot_time_ns: int | None = None
    held: int = 0  # recordings it holds in all
    newest_ns: int | None = None  # the mtime of the newest recording it holds
    checked: int = 0  # window recordings compared (all but the waiting ones)
    waiting: list[bytes] = field(default_factory=list)
    missing: list[bytes] = field(default_factory=list)
    size_different: list[tuple[bytes, int, int]] = field(default_factory=list)
    sha_different: list[Verified] = field(default_factory=list)
    unreadable: list[Verified] = field(default_factory=list)  # a copy we could not read
    vanished: list[Verified] = field(default_factory=list)  # originals gone meanwhile (a race)
    equal: int = 0
    problems: list[ScanProblem] = field(default_factory=list)
    problems_total: int = 0

    @property
    def findings(self) -> int:
        return (len(self.missing) + len(self.size_different) + len(self.sha_different)
                + len(self.unreadable) + self.problems_total)


@dataclass
class VerifyRun:
    """The whole run: the store's window and every backup's check."""

    store: str
    since_s: float
    now_ns: int
    window_start_ns: int
    window_files: int = 0
    window_bytes: int = 0
    store_problems: list[ScanProblem] = field(default_factory=list)
    store_problems_total: int = 0
    backups: list[BackupCheck] = field(default_factory=list)
    error: str = ""  # the run could not start or finish (store missing, ...)
    hashed_bytes: int = 0
    seconds: float = 0.0

    @property
    def findings(self) -> int:
        return self.store_problems_total + sum(b.findings for b in self.backups if b.available)

    @property
    def exit_code(self) -> int:
        if self.error or any(not b.available for b in self.backups):
            return 2
        return 1 if self.findings else 0


class Progress:
    """One line on stderr, rewritten in place (only when asked: a TTY or ``--progress``)."""

    def __init__(self, stream: IO[str] | None) -> None:
        self.stream = stream
        self._shown = False
        self._last = 0.0

    def say(self, text: str, *, force: bool = False) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        self.stream.write(f"\r\x1b[K{text}")
        self.stream.flush()
        self._shown = True

    def done(self) -> None:
        if self.stream is not None and self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False


def _relevant(problems: Sequence[ScanProblem]) -> list[ScanProblem]:
    return [p for p in problems if p.kind is not ProblemKind.VANISHED]


def _window(index: RecIndex, start_ns: int) -> list[FileEntry]:
    """The store's recordings with an mtime at or after ``start_ns``, read in chunks."""
    total = index.stats(STORE).files
    out: list[FileEntry] = []
    after: bytes | None = None
    seen = 0
    while seen < total:
        chunk = index.verify_batch(STORE, after, min(_CHUNK_FILES, total - seen))
        if not chunk:
            break
        seen += len(chunk)
        after = chunk[-1].path
        out.extend(e for e in chunk if e.mtime_ns >= start_ns)
    return out


def _scan_folder(index: RecIndex, backup: Backup, rec: RecordingsConfig, check: BackupCheck,
                 now_ns: int, store_files: int) -> None:
    assert backup.folder is not None
    report = index.scan_tree(backup.name, backup.folder, rec.store.patterns, now_ns=now_ns,
                             full=True)
    check.problems = _relevant(report.problems)
    check.problems_total = len(check.problems) + (report.problems_total - len(report.problems))
    if report.root_state != "ok":
        check.available, check.why = False, f"{backup.folder}: missing or not a folder"
    elif report.files == 0 and store_files:
        check.available = False
        check.why = (f"{backup.folder} holds no recording while the store holds {store_files} "
                     "(not mounted?)")


def _password_problem(path: Path) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)  # opened to prove it can be, not read
    except OSError as exc:
        return f"cannot read the restic password file {path}: {exc.strerror or exc}"
    os.close(fd)
    return ""


def _restic_of(backup: Backup) -> Restic:
    assert backup.restic is not None
    r = backup.restic
    return Restic(r.repository, Path(r.password_file), binary=str(r.binary),
                  cache_dir=None if r.cache_dir is None else Path(r.cache_dir), timeout=r.timeout)


def _restic_root(backup: Backup, rec: RecordingsConfig) -> str:
    assert backup.restic is not None
    return str(backup.restic.path or rec.store.path)


def _scan_restic(index: RecIndex, backup: Backup, rec: RecordingsConfig, check: BackupCheck,
                 progress: Progress) -> None:
    assert backup.restic is not None
    if why := _password_problem(Path(backup.restic.password_file)):
        check.available, check.why = False, why
        return
    restic = _restic_of(backup)
    root = _restic_root(backup, rec)
    try:
        progress.say(f"{backup.name}: reading the snapshots ...", force=True)
        infos = restic.snapshots(restic.snapshot_ids())
        mine = [i for i in infos if root.rstrip("/") in (p.rstrip("/") for p in i.paths)]
        if not mine:
            check.available = False
            check.why = f"no snapshot of {root} in the repository ({len(infos)} snapshots)"
            return
        latest = max(mine, key=lambda i: i.time_ns)
        check.snapshot, check.snapshot_time_ns = latest.id, latest.time_ns
        progress.say(f"{backup.name}: listing snapshot {latest.id[:8]} ...", force=True)
        index.add_snapshot(backup.name, latest.id, latest.time_ns,
                           restic.listing(latest.id, root))
    except ResticError as exc:
        check.available, check.why = False, f"restic: {exc.kind}: {exc.detail}"


def _sort_verdicts(check: BackupCheck, verdicts: Sequence[Verified]) -> None:
    """File each verdict under its heading."""
    for v in verdicts:
        if v.kind == "equal":
            check.equal += 1
        elif v.kind == "different":
            check.sha_different.append(v)
        elif v.kind == "missing_original":
            check.vanished.append(v)
        elif v.kind == "missing_copy":  # gone since the scan: missing all the same
            check.missing.append(v.path)
        else:
            check.unreadable.append(v)


def _hash(check: BackupCheck, backup: Backup, rec: RecordingsConfig, todo: list[FileEntry],
          run: VerifyRun, progress: Progress) -> None:
    """Read back every copy of ``todo`` and compare it with the original."""
    started = time.monotonic()
    done_files = done_bytes = 0
    total = len(todo)

    def tick(entries: Sequence[FileEntry]) -> None:
        nonlocal done_files, done_bytes
        done_files += len(entries)
        done_bytes += sum(e.size for e in entries)
        rate = done_bytes / max(time.monotonic() - started, 1e-6) / 1e6
        progress.say(f"{check.name}: {done_files}/{total} files hashed, {rate:.1f} MB/s",
                     force=done_files == total)

    store = Path(rec.store.path)
    if backup.folder is not None:
        for i in range(0, total, _MIRROR_BATCH):
            batch = todo[i : i + _MIRROR_BATCH]
            paths = [e.path for e in batch]
            _sort_verdicts(check, verify_mirror(store, Path(backup.folder), paths))
            tick(batch)
    else:
        restic, root = _restic_of(backup), _restic_root(backup, rec)
        assert check.snapshot is not None
        by_dir: dict[bytes, list[FileEntry]] = {}
        for e in todo:
            by_dir.setdefault(e.path.rpartition(b"/")[0], []).append(e)
        for entries in by_dir.values():
            _sort_verdicts(check, verify_restic(restic, check.snapshot, root, store,
                                                [e.path for e in entries]))
            tick(entries)
    run.hashed_bytes += done_bytes


def _compare(index: RecIndex, check: BackupCheck, rec: RecordingsConfig, run: VerifyRun,
             window: dict[bytes, FileEntry]) -> list[FileEntry]:
    """Missing, size-different and waiting from the index; the rest is to be hashed."""
    stats = index.stats(check.name)
    check.held = stats.files
    check.newest_ns = None if stats.newest is None else stats.newest.mtime_ns
    gaps = index.compare(STORE, check.name, older_than_ns=2**62, since_ns=run.window_start_ns,
                         limit=_LIST_MAX)
    # Not yet copied: newer than the newest copy this backup holds, less the grace.
    cutoff = (check.newest_ns or 0) - int(rec.grace * 1e9)
    skip: set[bytes] = set()
    for path in gaps.missing_paths:
        skip.add(path)
        entry = window.get(path)
        if entry is not None and entry.mtime_ns >= cutoff:
            check.waiting.append(path)
        else:
            check.missing.append(path)
    for path, store_size, backup_size in gaps.mismatched_paths:
        skip.add(path)
        entry = window.get(path)
        if entry is not None and entry.mtime_ns >= cutoff:
            check.waiting.append(path)
        else:
            check.size_different.append((path, store_size, backup_size))
    check.waiting.sort()
    todo = [e for p, e in window.items() if p not in skip]
    check.checked = len(window) - len(check.waiting)
    return todo


def run_verify(rec: RecordingsConfig, *, since_s: float, names: Sequence[str] = (),
               progress: Progress | None = None,
               now_ns: Callable[[], int] = time.time_ns) -> VerifyRun:
    """Check the window now (blocking); never raises for what the trees or restic do."""
    prog = progress or Progress(None)
    started = time.monotonic()
    now = now_ns()
    start = max(now - int(since_s * 1e9), now - int(rec.retention * 1e9))
    run = VerifyRun(str(rec.store.path), since_s, now, start)
    backups = [b for b in rec.backups if not names or b.name in names]
    try:
        scratch = Path(tempfile.mkdtemp(prefix="lifeline-verify-"))
    except OSError as exc:
        run.error = f"cannot make a temporary directory for the index: {exc}"
        prog.done()
        return run
    try:
        if why := _inside_a_tree(scratch, rec):
            run.error = why
            return run
        with RecIndex(scratch / "index.sqlite3") as index:
            _run(index, rec, backups, run, prog)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        prog.done()
        run.seconds = time.monotonic() - started
    return run


def _inside_a_tree(scratch: Path, rec: RecordingsConfig) -> str:
    here = os.path.realpath(scratch)
    trees = [str(rec.store.path)] + [str(b.folder) for b in rec.backups if b.folder is not None]
    for tree in trees:
        real = os.path.realpath(tree)
        if here == real or here.startswith(real.rstrip("/") + "/"):
            return (f"the temporary directory {scratch} is inside {tree}: lifeline never "
                    "writes there (set TMPDIR elsewhere)")
    return ""


def _run(index: RecIndex, rec: RecordingsConfig, backups: Sequence[Backup], run: VerifyRun,
         prog: Progress) -> None:
    prog.say(f"scanning the store {rec.store.path} ...", force=True)
    report = index.scan_tree(STORE, rec.store.path, rec.store.patterns, now_ns=run.now_ns,
                             full=True)
    if report.root_state != "ok":
        run.error = f"the store {rec.store.path} does not exist or is not a folder"
        return
    if report.files == 0:
        run.error = (f"the store {rec.store.path} holds no recording matching "
                     f"{', '.join(rec.store.patterns)} (not mounted?)")
        return
    run.store_problems = _relevant(report.problems)
    run.store_problems_total = (len(run.store_problems)
                                + report.problems_total - len(report.problems))
    window = {e.path: e for e in _window(index, run.window_start_ns)}
    run.window_files, run.window_bytes = len(window), sum(e.size for e in window.values())
    for backup in backups:
        check = BackupCheck(backup.name, backup.kind, backup.where())
        run.backups.append(check)
        prog.say(f"{backup.name}: scanning {backup.where()} ...", force=True)
        if backup.folder is not None:
            _scan_folder(index, backup, rec, check, run.now_ns, report.files)
        else:
            _scan_restic(index, backup, rec, check, prog)
        if not check.available:
            continue
        todo = _compare(index, check, rec, run, window)
        _hash(check, backup, rec, todo, run, prog)


# --- output -------------------------------------------------------------------------------------


def _problem_json(p: ScanProblem) -> dict[str, str]:
    return {"path": _name(p.path), "kind": str(p.kind), "detail": p.detail}


def _verdict_json(v: Verified) -> dict[str, str]:
    return {"path": _name(v.path), "kind": v.kind, "detail": v.detail}


def to_json(run: VerifyRun) -> dict[str, Any]:
    """The machine form (``--json``): every name, decoded with backslashreplace."""
    return {
        "store": run.store,
        "since_s": run.since_s,
        "checked_at": _iso(run.now_ns),
        "window_start": _iso(run.window_start_ns),
        "window": {"files": run.window_files, "bytes": run.window_bytes},
        "error": run.error or None,
        "store_problems": run.store_problems_total,
        "store_problem_paths": [_problem_json(p) for p in run.store_problems],
        "backups": [{
            "name": b.name, "kind": b.kind, "where": b.where, "available": b.available,
            "why": b.why or None, "snapshot": b.snapshot,
            "snapshot_time": None if b.snapshot_time_ns is None else _iso(b.snapshot_time_ns),
            "held": b.held, "checked": b.checked, "equal": b.equal,
            "waiting": len(b.waiting), "waiting_paths": [_name(p) for p in b.waiting],
            "missing": len(b.missing), "missing_paths": [_name(p) for p in b.missing],
            "size_different": len(b.size_different),
            "size_different_paths": [{"path": _name(p), "store_size": s, "backup_size": c}
                                     for p, s, c in b.size_different],
            "sha_different": len(b.sha_different),
            "sha_different_paths": [_verdict_json(v) for v in b.sha_different],
            "unreadable": len(b.unreadable),
            "unreadable_paths": [_verdict_json(v) for v in b.unreadable],
            "vanished": len(b.vanished),
            "problems": b.problems_total,
            "problem_paths": [_problem_json(p) for p in b.problems],
            "findings": b.findings if b.available else None,
        } for b in run.backups],
        "findings": run.findings,
        "hashed_bytes": run.hashed_bytes,
        "seconds": round(run.seconds, 3),
        "exit": run.exit_code,
    }


def _names(lines: list[str], title: str, items: Sequence[str], *, note: str = "") -> None:
    if not items:
        return
    lines.append(f"  {title} ({len(items)}){note}:")
    lines.extend(f"    {item}" for item in items[:_TEXT_NAMES])
    if len(items) > _TEXT_NAMES:
        lines.append(f"    ... and {len(items) - _TEXT_NAMES} more (--json lists them all)")


def render_text(run: VerifyRun) -> str:
    """The operator's report: per backup the counts and the names, then one final line."""
    lines: list[str] = []
    if run.error and not run.window_files:
        lines.append(f"lifeline recordings verify: {run.error}")
        lines.append("verify: could not check (exit 2)")
        return "\n".join(lines) + "\n"
    lines.append(f"store {run.store}: {run.window_files} recordings "
                 f"({run.window_bytes / 1e6:.1f} MB) with an mtime since "
                 f"{_iso(run.window_start_ns)} (--since {format_period(run.since_s)})")
    _names(lines, "cannot be read in the store", [
        f"{_name(p.path) or '.'}: {p.kind}: {p.detail}" for p in run.store_problems])
    for b in run.backups:
        head = f"backup {b.name} ({b.where}"
        if b.snapshot is not None and b.snapshot_time_ns is not None:
            head += f", snapshot {b.snapshot[:8]} of {_iso(b.snapshot_time_ns)}"
        head += ")"
        if not b.available:
            lines.append(f"{head}: COULD NOT CHECK: {b.why}")
            continue
        verdict = "ok" if not b.findings else _plural(b.findings, "finding")
        lines.append(f"{head}: {verdict}: {b.checked} checked, {len(b.missing)} missing, "
                     f"{len(b.size_different)} size different, {len(b.sha_different)} SHA-256 "
                     f"different, {len(b.unreadable)} unreadable, {b.equal} equal by SHA-256")
        _names(lines, "missing", [_name(p) for p in b.missing])
        _names(lines, "size different", [f"{_name(p)} (store {s} B, backup {c} B)"
                                         for p, s, c in b.size_different])
        _names(lines, "SHA-256 different (same size)",
               [f"{_name(v.path)} ({v.detail})" for v in b.sha_different])
        _names(lines, "unreadable copy", [f"{_name(v.path)} ({v.detail})" for v in b.unreadable])
        _names(lines, "cannot be read in the backup",
               [f"{_name(p.path) or '.'}: {p.kind}: {p.detail}" for p in b.problems])
        _names(lines, "waiting for the next copy", [_name(p) for p in b.waiting],
               note=" (newer than its newest copy less the grace: not a finding)")
        _names(lines, "gone from the store while verifying",
               [_name(v.path) for v in b.vanished], note=" (not a finding)")
    if run.error:
        lines.append(f"lifeline recordings verify: {run.error}")
    unavailable = [b.name for b in run.backups if not b.available]
    if run.exit_code == 0:
        lines.append(f"verify: all {run.window_files} recordings since "
                     f"{_iso(run.window_start_ns)} are in every backup checked "
                     f"({len(run.backups)}), equal by SHA-256 (exit 0)")
    elif run.exit_code == 1:
        lines.append(f"verify: {_plural(run.findings, 'finding')} (exit 1)")
    else:
        lines.append(f"verify: {_plural(run.findings, 'finding')}; could not check "
                     f"{', '.join(unavailable) or 'everything'} (exit 2)")
    return "\n".join(lines) + "\n"


def progress_stream(force: bool) -> IO[str] | None:
    """stderr when it is a terminal or ``--progress`` asks; else no progress at all."""
    return sys.stderr if force or sys.stderr.isatty() else None
