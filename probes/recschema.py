"""The recordings index's SQLite file: its schema, and opening it safely.

The index is lifeline's own cache of what every source holds (probes/recindex.py), in
``state_dir``. Two things make its queries cheap at a million recordings, and both live in
the schema, so that no code path can forget them:

- paths are split into a directory (one row in ``dirnames``, shared by all sources) and a
  name; a source's files are keyed by (source, directory, name), so a directory's files are
  one key range and two sources' copies of a path meet on one key;
- triggers keep, per source, the count and bytes of the files it holds, and, per compared
  (store, backup) pair, the ``gaps``: the store files the backup does not hold or holds with
  another size. A compare then reads a table that is empty when all is well, instead of
  joining a million rows every cycle.

A file that is not our index (another application's, a newer or older schema, or not a
database at all) is moved aside, never deleted, and a new one is made: the index is rebuilt
by the next scans, but the history of removed files (tombstones) starts over, so the
caller is told why (``Opened.reset``).
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "Opened", "open_index"]

APPLICATION_ID = 0x4C4C5249  # "LLRI": lifeline recordings index
SCHEMA_VERSION = 1

_TABLES = """
CREATE TABLE sources (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('tree', 'snapshots', 'new')),  -- new: only queried
    files INTEGER NOT NULL DEFAULT 0,   -- held files (trigger-maintained)
    bytes INTEGER NOT NULL DEFAULT 0,
    patterns TEXT                       -- a tree's file patterns at its last scan
);
CREATE TABLE dirnames (id INTEGER PRIMARY KEY, path BLOB NOT NULL UNIQUE);
CREATE TABLE dirs (                     -- a tree source's directories as last listed
    src INTEGER NOT NULL,
    dir INTEGER NOT NULL,
    parent INTEGER,                     -- NULL for the root
    mtime_ns INTEGER NOT NULL,          -- -1: re-list next time (it had a problem)
    PRIMARY KEY (src, dir)
) WITHOUT ROWID;
CREATE TABLE files (
    src INTEGER NOT NULL,
    dir INTEGER NOT NULL,
    name BLOB NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    seen_ns INTEGER NOT NULL,           -- first seen (for snapshots: the snapshot's time)
    gone_ns INTEGER,                    -- NULL while held; else when it went (a tombstone)
    first_ns INTEGER,                   -- snapshot sources: first and last snapshot time
    last_ns INTEGER,                    -- that held it
    PRIMARY KEY (src, dir, name)
) WITHOUT ROWID;
CREATE INDEX files_held ON files (src, mtime_ns, size) WHERE gone_ns IS NULL;
CREATE INDEX files_gone ON files (src, mtime_ns) WHERE gone_ns IS NOT NULL;
CREATE TABLE snapshots (
    src INTEGER NOT NULL, id TEXT NOT NULL, time_ns INTEGER NOT NULL,
    PRIMARY KEY (src, id)
) WITHOUT ROWID;
CREATE INDEX snapshots_time ON snapshots (src, time_ns);
CREATE TABLE pairs (
    id INTEGER PRIMARY KEY, store INTEGER NOT NULL, backup INTEGER NOT NULL,
    UNIQUE (store, backup)
);
CREATE INDEX pairs_backup ON pairs (backup);
CREATE TABLE gaps (                     -- store files a backup lacks or holds with another size
    pair INTEGER NOT NULL, dir INTEGER NOT NULL, name BLOB NOT NULL,
    mtime_ns INTEGER NOT NULL, store_size INTEGER NOT NULL,
    backup_size INTEGER,                -- NULL: missing
    PRIMARY KEY (pair, dir, name)
) WITHOUT ROWID;
"""

# The gaps of every pair that involves the changed row's source, for the row's key.
_GAPS = """
    DELETE FROM gaps WHERE dir = {r}.dir AND name = {r}.name AND pair IN
        (SELECT id FROM pairs WHERE store = {r}.src
         UNION SELECT id FROM pairs WHERE backup = {r}.src);
    INSERT INTO gaps
        SELECT p.id, a.dir, a.name, a.mtime_ns, a.size, b.size
        FROM pairs p
        JOIN files a ON a.src = p.store AND a.dir = {r}.dir AND a.name = {r}.name
                        AND a.gone_ns IS NULL
        LEFT JOIN files b ON b.src = p.backup AND b.dir = {r}.dir AND b.name = {r}.name
                             AND b.gone_ns IS NULL
        WHERE p.id IN (SELECT id FROM pairs WHERE store = {r}.src
                       UNION SELECT id FROM pairs WHERE backup = {r}.src)
          AND (b.size IS NULL OR b.size != a.size);
"""

_TRIGGERS = f"""
CREATE TRIGGER files_insert AFTER INSERT ON files BEGIN
    UPDATE sources SET files = files + (NEW.gone_ns IS NULL),
                       bytes = bytes + iif(NEW.gone_ns IS NULL, NEW.size, 0)
        WHERE id = NEW.src;
    {_GAPS.format(r="NEW")}
END;
CREATE TRIGGER files_update AFTER UPDATE OF size, mtime_ns, gone_ns ON files
WHEN OLD.size != NEW.size OR OLD.mtime_ns != NEW.mtime_ns
     OR (OLD.gone_ns IS NULL) != (NEW.gone_ns IS NULL) BEGIN
    UPDATE sources SET files = files + (NEW.gone_ns IS NULL) - (OLD.gone_ns IS NULL),
                       bytes = bytes + iif(NEW.gone_ns IS NULL, NEW.size, 0)
                                     - iif(OLD.gone_ns IS NULL, OLD.size, 0)
        WHERE id = NEW.src;
    {_GAPS.format(r="NEW")}
END;
CREATE TRIGGER files_delete AFTER DELETE ON files BEGIN
    UPDATE sources SET files = files - (OLD.gone_ns IS NULL),
                       bytes = bytes - iif(OLD.gone_ns IS NULL, OLD.size, 0)
        WHERE id = OLD.src;
    {_GAPS.format(r="OLD")}
END;
"""  # noqa: S608 - constant text, no input


@dataclass(frozen=True, slots=True)
class Opened:
    """A connection to a usable index, and why an old file was moved aside (or None)."""

    conn: sqlite3.Connection
    reset: str | None


def _connect(path: str) -> sqlite3.Connection:
    # One connection, used by one thread at a time (the runtime's worker thread, which may be
    # a different pool thread each call); autocommit: the index manages its transactions.
    return sqlite3.connect(path, check_same_thread=False, isolation_level=None)


def _configure(conn: sqlite3.Connection) -> None:
    """Only once the file is known to be ours: WAL mode rewrites the file's header."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA cache_size=-32768")  # 32 MiB: the hot key ranges stay in memory
    conn.execute("PRAGMA journal_size_limit=67108864")


def _refused(conn: sqlite3.Connection) -> str | None:
    """Why this file is not our index (None: it is, or it is new and now initialised)."""
    app = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    objects = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if objects == 0 and app == 0:
        _configure(conn)
        conn.executescript(f"BEGIN; {_TABLES} {_TRIGGERS} "
                           f"PRAGMA application_id={APPLICATION_ID}; "
                           f"PRAGMA user_version={SCHEMA_VERSION}; COMMIT;")
        return None
    if app != APPLICATION_ID:
        return f"not a lifeline recordings index (application_id {app:#x})"
    if version != SCHEMA_VERSION:
        return f"schema version {version}, this lifeline uses {SCHEMA_VERSION}"
    _configure(conn)
    check = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
    if check != "ok":
        return f"damaged: {check}"
    return None


def _move_aside(path: Path) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.bad-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.bad-{stamp}-{n}")
    path.rename(aside)
    for suffix in ("-wal", "-shm"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            extra.rename(aside.with_name(aside.name + suffix))
    return aside


def open_index(path: str | Path) -> Opened:
    """Open (or make) the index at ``path`` (``":memory:"`` for tests); a file that is not
    a usable index of this version is moved aside and a new one made."""
    if str(path) == ":memory:":
        conn = _connect(":memory:")
        _refused(conn)
        return Opened(conn, None)
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)  # in state_dir: lifeline's own
    conn = _connect(str(file))
    try:
        why = _refused(conn)
    except sqlite3.DatabaseError as exc:  # "file is not a database", a damaged page
        why = f"unreadable: {exc}"
    if why is None:
        return Opened(conn, None)
    conn.close()
    aside = _move_aside(file)
    conn = _connect(str(file))
    if _refused(conn) is not None:  # pragma: no cover - a new file is always ours
        raise RuntimeError(f"{file}: a new index could not be made")
    return Opened(conn, f"{file}: {why}; moved aside to {aside.name} and rebuilt "
                        "(the history of removed recordings starts over)")
