"""The recordings index: what every source (the store, each backup) holds, and the queries
the checks ask of it, in one SQLite file in lifeline's ``state_dir``.

Sources are named as in the config. A *tree* source (the store, a mirrored folder) is fed by
``scan_tree``, the incremental walk of probes/rectree.py; a *snapshot* source (a restic
repository) by ``add_snapshot`` for each new snapshot and ``set_snapshots`` with the ones
still in the repository. A file that went away is kept as a tombstone (when it went), which
the retention checks need: a recording gone from a backup before its legal time, or gone
from the store before any backup held it; ``prune`` forgets those past the retention.

A snapshot source keeps two numbers per path, the times of the first and the last snapshot
that held it, not a row per (snapshot, path): a recording is in the store continuously from
its creation until it is purged, so every snapshot taken between those two held it, and the
path is *held* while some snapshot still in the repository lies in [first, last].

Blocking; one connection used by one thread at a time (the runtime's worker thread). It never
touches a source: it stores what the walk and the restic reader report.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from probes.recfiles import FileEntry, ScanProblem
from probes.recschema import open_index
from probes.rectree import DIRTY, Failed, Gone, KnownDir, Listed, TreeWalk, name_matcher

__all__ = [
    "Comparison",
    "RecIndex",
    "ScanReport",
    "SourceStats",
    "Tombstone",
]

HOT_NS = 2 * 86400 * 10**9  # a directory written in the last 2 days is re-listed each scan
_COMMIT_EVERY = 20_000  # rows written per transaction: a crash loses little, the WAL stays small
_LIMIT_MAX = 100_000

# A row's relative path, built in SQL so that lists can be sorted (and cut) by path there.
_PATH = "CAST(CASE WHEN d.path = x'' THEN f.name ELSE d.path || x'2f' || f.name END AS BLOB)"


@dataclass(frozen=True, slots=True)
class ScanReport:
    """What one ingestion (a tree scan or a snapshot) did."""

    source: str
    full: bool
    files: int  # files the source holds afterwards
    added: int
    changed: int
    removed: int
    dirs_listed: int
    dirs_skipped: int
    problems: list[ScanProblem]
    problems_total: int
    root_state: Literal["ok", "missing", "empty"]
    seconds: float
    index_reset: str | None = None  # the index file was moved aside and rebuilt: why


@dataclass(frozen=True, slots=True)
class SourceStats:
    """What a source holds (for a snapshot source: the files some snapshot still holds)."""

    files: int
    bytes: int
    newest: FileEntry | None  # by mtime
    oldest: FileEntry | None


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A file that a source held and no longer holds."""

    path: bytes
    size: int
    mtime_ns: int
    removed_ns: int  # when the index saw it go


@dataclass(frozen=True, slots=True)
class Comparison:
    """Store files past the grace that a backup lacks, or holds with another size."""

    missing: int
    missing_paths: list[bytes]
    mismatched: int
    mismatched_paths: list[tuple[bytes, int, int]]  # (path, store size, backup size)


@dataclass(slots=True)
class _Counts:
    added: int = 0
    changed: int = 0
    removed: int = 0
    written: int = 0
    since_commit: int = field(default=0)


def _split(path: bytes) -> tuple[bytes, bytes]:
    head, _, tail = path.rpartition(b"/")
    return head, tail


class RecIndex:
    """The index file; see the module's docstring. ``reset`` says why an old file was moved
    aside when it was opened (None when it was fine or new)."""

    def __init__(self, path: str | Path) -> None:
        opened = open_index(path)
        self._db = opened.conn
        self.reset = opened.reset
        self._reported_reset = False
        self._lock = threading.Lock()  # one thread at a time, as SQLite's connection wants
        # The caller's small values; made here, not in the versioned schema, so that an
        # index of version 1 made before it is kept and gains it.
        self._db.execute("CREATE TABLE IF NOT EXISTS notes (key TEXT PRIMARY KEY, value TEXT)")
        self._dir_ids: dict[bytes, int] = dict(
            (bytes(p), i) for i, p in self._db.execute("SELECT id, path FROM dirnames"))

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RecIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- sources, directories, transactions ------------------------------------------------

    def _source(self, name: str, kind: Literal["tree", "snapshots"]) -> int:
        row = self._db.execute("SELECT id, kind FROM sources WHERE name = ?", (name,)).fetchone()
        if row is None:
            cur = self._db.execute("INSERT INTO sources (name, kind) VALUES (?, ?)", (name, kind))
            assert cur.lastrowid is not None
            return cur.lastrowid
        if row[1] == "new":  # queried before it was first read
            self._db.execute("UPDATE sources SET kind = ? WHERE id = ?", (kind, row[0]))
        elif row[1] != kind:
            raise ValueError(f"source {name!r} is a {row[1]} source, not a {kind} source")
        return int(row[0])

    def _known_source(self, name: str) -> int | None:
        row = self._db.execute("SELECT id FROM sources WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def _dir_id(self, path: bytes) -> int:
        found = self._dir_ids.get(path)
        if found is None:
            cur = self._db.execute("INSERT INTO dirnames (path) VALUES (?)", (path,))
            assert cur.lastrowid is not None
            found = self._dir_ids[path] = cur.lastrowid
        return found

    def _tick(self, counts: _Counts, rows: int) -> None:
        """Commit every so many written rows: each directory is applied whole, so a crash
        mid-scan leaves an index that is right for every directory it has."""
        counts.since_commit += rows
        if counts.since_commit >= _COMMIT_EVERY:
            self._db.execute("COMMIT")
            self._db.execute("BEGIN")
            counts.since_commit = 0

    def _held(self, src: int) -> int:
        return int(self._db.execute("SELECT files FROM sources WHERE id = ?", (src,)).fetchone()[0])

    def _take_reset(self) -> str | None:
        if self._reported_reset:
            return None
        self._reported_reset = True
        return self.reset

    # --- tree sources ----------------------------------------------------------------------

    def _known_dirs(self, src: int) -> dict[bytes, KnownDir]:
        rows = self._db.execute(
            "SELECT n.path, d.mtime_ns, p.path FROM dirs d JOIN dirnames n ON n.id = d.dir "
            "LEFT JOIN dirnames p ON p.id = d.parent WHERE d.src = ?", (src,)).fetchall()
        children: dict[bytes, list[bytes]] = {}
        for path, _, parent in rows:
            if parent is not None:
                children.setdefault(bytes(parent), []).append(bytes(path))
        return {bytes(path): KnownDir(mtime, tuple(children.get(bytes(path), ())))
                for path, mtime, _ in rows}

    def _set_dir(self, src: int, path: bytes, mtime_ns: int) -> None:
        parent = None if path == b"" else self._dir_id(_split(path)[0])
        self._db.execute("INSERT OR REPLACE INTO dirs (src, dir, parent, mtime_ns) "
                         "VALUES (?, ?, ?, ?)", (src, self._dir_id(path), parent, mtime_ns))

    def _apply_listed(self, src: int, ev: Listed, now_ns: int, counts: _Counts) -> None:
        dir_id = self._dir_id(ev.path)
        cut = len(ev.path) + 1 if ev.path else 0
        had = {bytes(n): (s, m, g) for n, s, m, g in self._db.execute(
            "SELECT name, size, mtime_ns, gone_ns FROM files WHERE src = ? AND dir = ?",
            (src, dir_id))}
        inserts, updates = [], []
        for f in ev.files:
            name = f.path[cut:]
            old = had.pop(name, None)
            if old is None:
                inserts.append((src, dir_id, name, f.size, f.mtime_ns, now_ns))
                counts.added += 1
            elif old[2] is not None or old[0] != f.size or old[1] != f.mtime_ns:
                updates.append((f.size, f.mtime_ns, src, dir_id, name))
                if old[2] is not None:
                    counts.added += 1  # back after it went away
                else:
                    counts.changed += 1
        unread = {p[cut:] for p in ev.unread}
        gone = [(now_ns, src, dir_id, name) for name, (_, _, g) in had.items()
                if g is None and name not in unread]
        counts.removed += len(gone)
        self._db.executemany("INSERT INTO files (src, dir, name, size, mtime_ns, seen_ns) "
                             "VALUES (?, ?, ?, ?, ?, ?)", inserts)
        self._db.executemany("UPDATE files SET size = ?, mtime_ns = ?, gone_ns = NULL "
                             "WHERE src = ? AND dir = ? AND name = ?", updates)
        self._db.executemany("UPDATE files SET gone_ns = ? WHERE src = ? AND dir = ? "
                             "AND name = ?", gone)
        self._set_dir(src, ev.path, ev.mtime_ns)
        self._tick(counts, len(inserts) + len(updates) + len(gone) + 1)

    def _apply_gone(self, src: int, path: bytes, now_ns: int, counts: _Counts) -> None:
        dir_id = self._dir_id(path)
        cur = self._db.execute("UPDATE files SET gone_ns = ? WHERE src = ? AND dir = ? "
                               "AND gone_ns IS NULL", (now_ns, src, dir_id))
        counts.removed += max(cur.rowcount, 0)
        self._db.execute("DELETE FROM dirs WHERE src = ? AND dir = ?", (src, dir_id))
        self._tick(counts, max(cur.rowcount, 0) + 1)

    def _apply_failed(self, src: int, path: bytes, known: KnownDir | None) -> None:
        """Keep its files; remember it (also a new one) as DIRTY so it is tried every scan."""
        if known is None or known.mtime_ns != DIRTY:
            self._set_dir(src, path, DIRTY)

    def _repattern(self, src: int, patterns: Sequence[str]) -> bool:
        """New file patterns: the rows of names they no longer match are dropped, not made
        tombstones (a config change is not a recording gone before its time), and the scan
        becomes a full pass to pick up what they match now. True when they changed."""
        wanted = "\n".join(sorted(set(patterns)))
        stored = self._db.execute("SELECT patterns FROM sources WHERE id = ?",
                                  (src,)).fetchone()[0]
        if stored == wanted:
            return False
        self._db.execute("UPDATE sources SET patterns = ? WHERE id = ?", (wanted, src))
        if stored is None:
            return False
        match = name_matcher(patterns).match
        drop = [(src, d, n) for d, n in self._db.execute(
            "SELECT dir, name FROM files WHERE src = ?", (src,)) if not match(os.fsdecode(n))]
        self._db.executemany("DELETE FROM files WHERE src = ? AND dir = ? AND name = ?", drop)
        return True

    def scan_tree(self, source: str, root: str | bytes | Path, patterns: Sequence[str], *,
                  now_ns: int, full: bool = False, hot_ns: int = HOT_NS,
                  progress: Callable[[], None] | None = None) -> ScanReport:
        """Walk the tree at ``root`` incrementally (probes/rectree.py says what is re-listed)
        and apply it. ``full=True`` lists every directory: the runtime asks for it every
        ``full_scan_every``, since a file changed in place in an old directory shows in no
        directory's mtime; a change of ``patterns`` makes a scan full by itself.

        A root that is missing, or holds none of what the index knew (an unmounted share),
        changes nothing and is reported (``root_state``); a directory or file that cannot
        be read keeps its rows (it is not a removal) and is a problem in the report.
        ``progress`` is called after each directory the walk reports (the runtime tells a
        long walk from one stuck on a hung mount by it).
        """
        started = time.monotonic()
        with self._lock:
            src = self._source(source, "tree")
            counts = _Counts()
            self._db.execute("BEGIN")
            try:
                full = self._repattern(src, patterns) or full
                known = self._known_dirs(src)
                walk = TreeWalk(root if isinstance(root, str | bytes) else str(root), known,
                                patterns, now_ns=now_ns, hot_ns=hot_ns, full=full,
                                held_files=self._held(src))
                for ev in walk:
                    if isinstance(ev, Listed):
                        self._apply_listed(src, ev, now_ns, counts)
                    elif isinstance(ev, Gone):
                        self._apply_gone(src, ev.path, now_ns, counts)
                    elif isinstance(ev, Failed):
                        self._apply_failed(src, ev.path, known.get(ev.path))
                    if progress is not None:
                        progress()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return ScanReport(
                source=source, full=full, files=self._held(src), added=counts.added,
                changed=counts.changed, removed=counts.removed, dirs_listed=walk.dirs_listed,
                dirs_skipped=walk.dirs_skipped, problems=walk.problems,
                problems_total=walk.problems_total, root_state=walk.root_state,
                seconds=time.monotonic() - started, index_reset=self._take_reset())

    # --- snapshot sources ------------------------------------------------------------------

    def _apply_snapshot_dir(self, src: int, dirpath: bytes, entries: list[FileEntry],
                            time_ns: int, counts: _Counts) -> None:
        dir_id = self._dir_id(dirpath)
        cut = len(dirpath) + 1 if dirpath else 0
        had = {bytes(n): (s, m, g, fi, la) for n, s, m, g, fi, la in self._db.execute(
            "SELECT name, size, mtime_ns, gone_ns, first_ns, last_ns FROM files "
            "WHERE src = ? AND dir = ?", (src, dir_id))}
        inserts, updates = [], []
        for e in entries:
            name = e.path[cut:]
            old = had.get(name)
            if old is None:
                inserts.append((src, dir_id, name, e.size, e.mtime_ns, time_ns, time_ns, time_ns))
                had[name] = (e.size, e.mtime_ns, None, time_ns, time_ns)
                counts.added += 1
                continue
            size, mtime, gone, first, last = old
            if time_ns >= last:  # the latest sighting says what the backup holds now
                if gone is None and (size != e.size or mtime != e.mtime_ns):
                    counts.changed += 1
                size, mtime = e.size, e.mtime_ns
            if gone is not None:
                counts.added += 1
            first, last = min(first, time_ns), max(last, time_ns)
            updates.append((size, mtime, first, last, src, dir_id, name))
            had[name] = (size, mtime, None, first, last)
        self._db.executemany(
            "INSERT INTO files (src, dir, name, size, mtime_ns, seen_ns, first_ns, last_ns) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", inserts)
        self._db.executemany(
            "UPDATE files SET size = ?, mtime_ns = ?, first_ns = ?, last_ns = ?, gone_ns = NULL "
            "WHERE src = ? AND dir = ? AND name = ?", updates)
        self._tick(counts, len(inserts) + len(updates))

    def add_snapshot(self, source: str, snapshot_id: str, time_ns: int,
                     entries: Iterable[FileEntry]) -> ScanReport:
        """Ingest one snapshot's listing (streamed: entries of one directory are usually
        consecutive, as ``restic ls`` gives them, and are applied together). A snapshot
        already added is ignored."""
        started = time.monotonic()
        with self._lock:
            src = self._source(source, "snapshots")
            counts = _Counts()
            self._db.execute("BEGIN")
            try:
                known = self._db.execute("SELECT 1 FROM snapshots WHERE src = ? AND id = ?",
                                         (src, snapshot_id)).fetchone()
                if known is None:
                    self._db.execute("INSERT INTO snapshots (src, id, time_ns) VALUES (?, ?, ?)",
                                     (src, snapshot_id, time_ns))
                    for dirpath, group in _by_directory(entries):
                        self._apply_snapshot_dir(src, dirpath, group, time_ns, counts)
                    # By the rule, a path this snapshot lies within is held, listed or not.
                    cur = self._db.execute(
                        "UPDATE files SET gone_ns = NULL WHERE src = ? AND gone_ns IS NOT NULL "
                        "AND first_ns <= ? AND last_ns >= ?", (src, time_ns, time_ns))
                    counts.added += max(cur.rowcount, 0)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return ScanReport(
                source=source, full=True, files=self._held(src), added=counts.added,
                changed=counts.changed, removed=0, dirs_listed=0, dirs_skipped=0, problems=[],
                problems_total=0, root_state="ok", seconds=time.monotonic() - started,
                index_reset=self._take_reset())

    def set_snapshots(self, source: str, present: Mapping[str, int], *,
                      now_ns: int | None = None) -> int:
        """The snapshots still in the repository (id -> time_ns); the ones the index had and
        that are gone (forgotten) stop counting. Returns how many files stopped being held.
        Ids not yet added are ignored: the index holds only what it has listed."""
        now = time.time_ns() if now_ns is None else now_ns
        with self._lock:
            src = self._source(source, "snapshots")
            had = dict(self._db.execute("SELECT id, time_ns FROM snapshots WHERE src = ?",
                                        (src,)).fetchall())
            forgotten = [t for i, t in had.items() if i not in present]
            if not forgotten:
                return 0
            self._db.execute("BEGIN")
            try:
                self._db.executemany("DELETE FROM snapshots WHERE src = ? AND id = ?",
                                     [(src, i) for i in had if i not in present])
                cur = self._db.execute(
                    "UPDATE files SET gone_ns = ? WHERE src = ? AND gone_ns IS NULL "
                    "AND first_ns <= ? AND last_ns >= ? AND NOT EXISTS (SELECT 1 FROM snapshots"
                    " s WHERE s.src = files.src AND s.time_ns BETWEEN files.first_ns "
                    "AND files.last_ns)", (now, src, max(forgotten), min(forgotten)))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return max(cur.rowcount, 0)

    def snapshots_seen(self, source: str) -> set[str]:
        """Ids of the snapshots added and not forgotten: list only the others."""
        with self._lock:
            src = self._known_source(source)
            if src is None:
                return set()
            return {r[0] for r in self._db.execute("SELECT id FROM snapshots WHERE src = ?",
                                                   (src,))}

    # --- queries ---------------------------------------------------------------------------

    def _entry(self, row: tuple[bytes, int, int]) -> FileEntry:
        return FileEntry(bytes(row[0]), int(row[1]), int(row[2]))

    def stats(self, source: str) -> SourceStats:
        """Count and bytes (kept by the schema's triggers) and the newest and oldest file."""
        with self._lock:
            src = self._known_source(source)
            if src is None:
                return SourceStats(0, 0, None, None)
            files, size = self._db.execute("SELECT files, bytes FROM sources WHERE id = ?",
                                           (src,)).fetchone()
            ends = []
            for order in ("DESC", "ASC"):
                row = self._db.execute(
                    f"SELECT {_PATH}, f.size, f.mtime_ns FROM files f "  # noqa: S608
                    f"JOIN dirnames d ON d.id = f.dir WHERE f.src = ? AND f.gone_ns IS NULL "
                    f"ORDER BY f.mtime_ns {order} LIMIT 1", (src,)).fetchone()
                ends.append(None if row is None else self._entry(row))
            return SourceStats(int(files), int(size), ends[0], ends[1])

    def _pair(self, store: int, backup: int) -> int:
        """The pair's id; a new pair's gaps are computed once here, then kept by triggers."""
        row = self._db.execute("SELECT id FROM pairs WHERE store = ? AND backup = ?",
                               (store, backup)).fetchone()
        if row is not None:
            return int(row[0])
        self._db.execute("BEGIN")
        try:
            cur = self._db.execute("INSERT INTO pairs (store, backup) VALUES (?, ?)",
                                   (store, backup))
            pair = cur.lastrowid
            self._db.execute(
                "INSERT INTO gaps SELECT ?, a.dir, a.name, a.mtime_ns, a.size, b.size "
                "FROM files a LEFT JOIN files b ON b.src = ? AND b.dir = a.dir "
                "AND b.name = a.name AND b.gone_ns IS NULL "
                "WHERE a.src = ? AND a.gone_ns IS NULL AND (b.size IS NULL OR b.size != a.size)",
                (pair, backup, store))
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        assert pair is not None
        return pair

    def compare(self, store: str, backup: str, *, older_than_ns: int,
                limit: int = 100, since_ns: int | None = None) -> Comparison:
        """Store files with an mtime before ``older_than_ns`` (past the grace) that the
        backup does not hold, or holds with another size; lists sorted by path. With
        ``since_ns``, only files with an mtime at or after it (``lifeline recordings verify
        --since``: a window, so that gaps older than it cannot crowd the list out)."""
        if store == backup:
            raise ValueError("a source compared with itself")
        limit = max(0, min(limit, _LIMIT_MAX))
        floor = -(2**63) if since_ns is None else since_ns
        with self._lock:
            s = self._source_any(store)
            b = self._source_any(backup)
            pair = self._pair(s, b)
            missing, mismatched = self._db.execute(
                "SELECT total(backup_size IS NULL), total(backup_size IS NOT NULL) FROM gaps "
                "WHERE pair = ? AND mtime_ns < ? AND mtime_ns >= ?",
                (pair, older_than_ns, floor)).fetchone()
            lists = []
            for which in ("IS NULL", "IS NOT NULL"):
                lists.append(self._db.execute(
                    f"SELECT {_PATH} AS p, f.store_size, f.backup_size FROM gaps f "  # noqa: S608
                    f"JOIN dirnames d ON d.id = f.dir WHERE f.pair = ? AND f.mtime_ns < ? "
                    f"AND f.mtime_ns >= ? AND f.backup_size {which} ORDER BY p LIMIT ?",
                    (pair, older_than_ns, floor, limit)).fetchall())
            return Comparison(int(missing), [bytes(r[0]) for r in lists[0]], int(mismatched),
                              [(bytes(r[0]), int(r[1]), int(r[2])) for r in lists[1]])

    def _source_any(self, name: str) -> int:
        src = self._known_source(name)
        if src is None:  # not scanned yet: an empty source, so that a query is never an error
            cur = self._db.execute("INSERT INTO sources (name, kind) VALUES (?, 'new')",
                                   (name,))
            assert cur.lastrowid is not None
            src = cur.lastrowid
        return src

    def _tombstones(self, where: str, args: tuple[object, ...],
                    limit: int) -> tuple[int, list[Tombstone]]:
        count = self._db.execute(f"SELECT count(*) FROM files f WHERE {where}",  # noqa: S608
                                 args).fetchone()[0]
        rows = self._db.execute(
            f"SELECT {_PATH} AS p, f.size, f.mtime_ns, f.gone_ns FROM files f "  # noqa: S608
            f"JOIN dirnames d ON d.id = f.dir WHERE {where} ORDER BY p LIMIT ?",
            (*args, max(0, min(limit, _LIMIT_MAX)))).fetchall()
        return int(count), [Tombstone(bytes(p), int(s), int(m), int(g)) for p, s, m, g in rows]

    def gone(self, source: str, *, younger_than_ns: int,
             limit: int = 100) -> tuple[int, list[Tombstone]]:
        """Files the source held and no longer holds whose mtime is at or after
        ``younger_than_ns`` (younger than the retention): for a backup, a breach."""
        with self._lock:
            src = self._known_source(source)
            if src is None:
                return 0, []
            return self._tombstones("f.src = ? AND f.gone_ns IS NOT NULL AND f.mtime_ns >= ?",
                                    (src, younger_than_ns), limit)

    def lost(self, store: str, backups: Sequence[str], *, younger_than_ns: int,
             limit: int = 100) -> tuple[int, list[Tombstone]]:
        """Files gone from the store (mtime at or after ``younger_than_ns``) that no backup
        holds or ever held: lost before they reached any backup."""
        with self._lock:
            src = self._known_source(store)
            if src is None:
                return 0, []
            ids = [i for i in (self._known_source(b) for b in backups) if i is not None]
            marks = ",".join("?" * len(ids)) or "NULL"
            return self._tombstones(
                f"f.src = ? AND f.gone_ns IS NOT NULL AND f.mtime_ns >= ? AND NOT EXISTS "  # noqa: S608
                f"(SELECT 1 FROM files b WHERE b.src IN ({marks}) AND b.dir = f.dir "
                f"AND b.name = f.name)", (src, younger_than_ns, *ids), limit)

    def prune(self, source: str, *, older_than_ns: int) -> int:
        """Forget the tombstones of files with an mtime before ``older_than_ns`` (past the
        retention: no check asks about them again), so a store that purges old recordings
        every day does not grow its index for ever. Returns how many went."""
        with self._lock:
            src = self._known_source(source)
            if src is None:
                return 0
            self._db.execute("BEGIN")
            cur = self._db.execute("DELETE FROM files WHERE src = ? AND gone_ns IS NOT NULL "
                                   "AND mtime_ns < ?", (src, older_than_ns))
            self._db.execute("COMMIT")
            return max(cur.rowcount, 0)

    def written_bytes(self, source: str, since_ns: int) -> int:
        """Bytes of the held files with an mtime at or after ``since_ns`` (the write rate)."""
        with self._lock:
            src = self._known_source(source)
            if src is None:
                return 0
            return int(self._db.execute(
                "SELECT total(size) FROM files WHERE src = ? AND gone_ns IS NULL "
                "AND mtime_ns >= ?", (src, since_ns)).fetchone()[0])

    def pending_since(self, store: str, backup: str) -> int | None:
        """The mtime of the oldest store file newer than the newest file the backup holds
        (the backup holds nothing: the store's oldest); None when nothing waits. How long
        the oldest recording not yet copied has waited: the freshness check's number."""
        with self._lock:
            s = self._known_source(store)
            if s is None:
                return None
            b = self._known_source(backup)
            newest = None if b is None else self._db.execute(
                "SELECT max(mtime_ns) FROM files WHERE src = ? AND gone_ns IS NULL",
                (b,)).fetchone()[0]
            row = self._db.execute(
                "SELECT min(mtime_ns) FROM files WHERE src = ? AND gone_ns IS NULL "
                "AND mtime_ns > ?", (s, -(2**63) if newest is None else newest)).fetchone()
            return None if row[0] is None else int(row[0])

    def snapshot_times(self, source: str) -> dict[str, int]:
        """id -> time_ns of the snapshots added and not forgotten (the last run's time
        without asking restic again)."""
        with self._lock:
            src = self._known_source(source)
            if src is None:
                return {}
            return {r[0]: int(r[1]) for r in self._db.execute(
                "SELECT id, time_ns FROM snapshots WHERE src = ?", (src,))}

    def note(self, key: str, value: str) -> None:
        """Keep a small value of the caller's (the verifier's cursor and counts) in the
        index file, so that a restart keeps it; a rebuilt index starts it over."""
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO notes (key, value) VALUES (?, ?)",
                             (key, value))

    def noted(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM notes WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

    def verify_batch(self, store: str, after: bytes | None, n: int) -> list[FileEntry]:
        """The next ``n`` held files after the cursor path ``after`` (None: from the start),
        wrapping around: a rotating sample that reaches every recording once per round.
        The order is by directory, then by name (so the cursor survives any change)."""
        with self._lock:
            src = self._known_source(store)
            if src is None or n <= 0:
                return []
            start_dir, start_name = _split(after) if after is not None else (b"", None)
            out = list(self._walk_from(src, start_dir, start_name, n))
            if len(out) < n and after is not None:  # wrap around, up to the cursor
                for entry in self._walk_from(src, b"", None, n - len(out)):
                    if (_split(entry.path)[0], _split(entry.path)[1]) > (start_dir,
                                                                         start_name or b""):
                        break
                    out.append(entry)
            return out

    def _walk_from(self, src: int, dirpath: bytes, after_name: bytes | None,
                   n: int) -> Iterator[FileEntry]:
        dirs = self._db.execute(
            "SELECT d.id, d.path FROM dirnames d WHERE d.path >= ? AND EXISTS (SELECT 1 FROM "
            "files f WHERE f.src = ? AND f.dir = d.id AND f.gone_ns IS NULL) ORDER BY d.path",
            (dirpath, src)).fetchall()
        left = n
        for dir_id, path in dirs:
            path = bytes(path)
            floor = after_name if (after_name is not None and path == dirpath) else None
            rows = self._db.execute(
                "SELECT name, size, mtime_ns FROM files WHERE src = ? AND dir = ? AND "
                "gone_ns IS NULL AND name > ? ORDER BY name LIMIT ?",
                (src, dir_id, floor if floor is not None else b"", left)).fetchall()
            for name, size, mtime in rows:
                rel = path + b"/" + bytes(name) if path else bytes(name)
                yield FileEntry(rel, int(size), int(mtime))
            left -= len(rows)
            if left <= 0:
                return


def _by_directory(entries: Iterable[FileEntry]) -> Iterator[tuple[bytes, list[FileEntry]]]:
    """Consecutive entries of one directory, grouped (bounded: a huge flat directory is
    cut into chunks, each applied on its own)."""
    group: list[FileEntry] = []
    current: bytes | None = None
    for e in entries:
        d = _split(e.path)[0]
        if d != current or len(group) >= 10_000:
            if group:
                assert current is not None
                yield current, group
            group, current = [], d
        group.append(e)
    if group:
        assert current is not None
        yield current, group
