"""SQLite event log: every transition, decision and action, with its time and reason.

The journal is the operator's memory of what lifeline did and why; it lives in
``state_dir``, survives restarts and is pruned to the config's ``journal`` limits. It must
never stop the daemon from protecting the site: a file that is not a usable database is
moved aside (``journal.sqlite3.damaged-<UTC time>``) and a new journal started; a state dir
that cannot hold it (unwritable, full) leaves the journal in memory for this run; a failed
write is logged and counted, and repeated failures move it to memory too. ``condition``
says which of these happened, for the status. Readers (``lifeline events``) open the file
read-only while the daemon writes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from controller.config import JournalLimits

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,           -- unix time, seconds
    kind TEXT NOT NULL,         -- start, stop, transition, decision, action, error
    subject TEXT NOT NULL,      -- link, group or 'daemon'
    message TEXT NOT NULL,      -- the human reason
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
"""

KINDS = ("start", "stop", "transition", "decision", "action", "error")

# SQLite's primary result codes for "this file is not (or no longer) a database".
_DAMAGED_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
# A full disk or an I/O error fails one write after another: after this many in a row the
# disk is given up for this run, so the daemon does not log an error per event for hours.
_FAILURES_BEFORE_MEMORY = 3
# Pruning is an indexed DELETE, cheap but not worth doing on every write.
_PRUNE_AFTER_WRITES = 1000
_PRUNE_AFTER_SECONDS = 3600.0
# Age never prunes the newest events: a quiet site still shows its last failover, and a
# clock that jumps ahead cannot wipe the journal.
_KEEP_NEWEST = 1000


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    ts: float
    kind: str
    subject: str
    message: str
    data: dict[str, Any]

    def line(self) -> str:
        """One human line, as `lifeline events` prints it."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.ts))
        millis = int((self.ts % 1) * 1000)
        return f"{stamp}.{millis:03d} {self.kind:<10} {self.subject:<12} {self.message}"


@dataclass(frozen=True, slots=True)
class JournalCondition:
    """Where the journal is kept and what went wrong with it, for the status and metrics."""

    mode: Literal["disk", "memory"]  # memory: this run's events end with the process
    damaged_moved_to: str | None  # the unusable file found at start, moved aside
    write_errors: int  # failed writes since start
    problem: str | None  # why the journal is in memory


class _Damaged(sqlite3.DatabaseError):
    """The file opened, but its pages fail SQLite's own check."""


def _is_damaged(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, _Damaged) or (code is not None and (code & 0xFF) in _DAMAGED_CODES)


class Journal:
    """Append-only event log; readers may open the same file while the daemon writes."""

    def __init__(self, path: Path, limits: JournalLimits | None = None) -> None:
        if limits is None:
            # Imported here: `lifeline events` and the CLI's help need KINDS, not pydantic.
            from controller.config import JournalLimits

            limits = JournalLimits()
        self.path = path
        self.limits = limits
        self.write_errors = 0
        self._failures_in_a_row = 0
        self._damaged_moved_to: str | None = None
        self._problem: str | None = None
        self._writes_since_prune = 0
        self._pruned_at = time.monotonic()
        self._db = self._open()
        self._prune()
        opened = self.condition  # what _open found, told in the journal itself
        if opened.damaged_moved_to is not None:
            self.record("error", "journal", f"the journal was not a usable database: moved it "
                        f"to {opened.damaged_moved_to}, this one starts empty")
        if opened.problem is not None:
            self.record("error", "journal", f"{opened.problem}; kept in memory until restart")

    @property
    def condition(self) -> JournalCondition:
        return JournalCondition(
            mode="disk" if self._problem is None else "memory",
            damaged_moved_to=self._damaged_moved_to,
            write_errors=self.write_errors,
            problem=self._problem,
        )

    def _open(self) -> sqlite3.Connection:
        try:
            try:
                return _connect(self.path)
            except sqlite3.DatabaseError as exc:
                if not _is_damaged(exc):
                    raise
                moved = _move_aside(self.path)
                self._damaged_moved_to = str(moved)
                log.error("journal %s is not a usable database (%s): moved it to %s and "
                          "started a new one", self.path, exc, moved)
                return _connect(self.path)
        except (OSError, sqlite3.Error) as exc:
            return self._memory(f"cannot keep the journal in {self.path}: {exc}")

    def _memory(self, problem: str) -> sqlite3.Connection:
        """A journal that lasts as long as the process: the daemon goes on protecting the
        site, the status says the history of this run will not be kept."""
        self._problem = problem
        log.error("%s; keeping the journal in memory until restart", problem)
        db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        db.executescript(SCHEMA)
        return db

    def record(self, kind: str, subject: str, message: str, **data: Any) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown journal kind {kind!r}")
        row = (time.time(), kind, subject, message, json.dumps(data, default=str))
        try:
            self._insert(row)
        except sqlite3.Error as exc:
            self._write_failed(exc, f"{kind} {subject} {message}")
            if self._problem is not None or self._failures_in_a_row < _FAILURES_BEFORE_MEMORY:
                return
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = self._memory(f"{self._failures_in_a_row} journal writes in a row "
                                    f"failed (last: {exc})")
            with contextlib.suppress(sqlite3.Error):
                self._insert(row)
            return
        self._failures_in_a_row = 0
        self._writes_since_prune += 1
        if (self._writes_since_prune >= _PRUNE_AFTER_WRITES
                or time.monotonic() - self._pruned_at >= _PRUNE_AFTER_SECONDS):
            self._prune()

    def _insert(self, row: tuple[float, str, str, str, str]) -> None:
        self._db.execute(
            "INSERT INTO events (ts, kind, subject, message, data) VALUES (?, ?, ?, ?, ?)", row
        )

    def _write_failed(self, exc: sqlite3.Error, what: str) -> None:
        self.write_errors += 1
        self._failures_in_a_row += 1
        log.error("journal write failed (%s): %s", exc, what)

    def _prune(self) -> None:
        """Drop events past the age limit (never the newest few) and all but the newest
        ``keep_events``: ids only grow, so both are range deletes on an index."""
        self._writes_since_prune = 0
        self._pruned_at = time.monotonic()
        cutoff = time.time() - self.limits.keep_days * 86400.0
        try:
            self._db.execute(
                "DELETE FROM events WHERE ts < ? AND id <= (SELECT max(id) FROM events) - ?",
                (cutoff, _KEEP_NEWEST),
            )
            self._db.execute(
                "DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?",
                (self.limits.keep_events,),
            )
        except sqlite3.Error as exc:
            self._write_failed(exc, "pruning old events")

    def events(
        self, limit: int = 50, kind: str | None = None, subject: str | None = None
    ) -> list[Event]:
        """The most recent events of this journal, oldest first; none when it cannot be
        read (the caller goes on without the history)."""
        try:
            return _select(self._db, limit, kind, subject)
        except sqlite3.Error as exc:
            log.error("cannot read the journal: %s", exc)
            return []

    def recent(self, limit: int = 30) -> list[dict[str, Any]]:
        """The newest events as plain values, oldest first: the status page's list."""
        return [{"id": e.id, "ts": e.ts, "kind": e.kind, "subject": e.subject,
                 "message": e.message} for e in self.events(limit)]

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()


def _connect(path: Path) -> sqlite3.Connection:
    """Open (or create) the journal at ``path`` and check it can be read and written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    try:
        # WAL lets `lifeline events` read while the daemon writes; NORMAL sync is durable
        # across a daemon crash, and a power cut loses at most the last few events.
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(SCHEMA)
        # A file cut short or overwritten in the middle opens fine and fails later, at the
        # first read or write of a bad page; the quick check reads every page once, now.
        found = db.execute("PRAGMA quick_check").fetchone()
        if found != ("ok",):
            raise _Damaged(f"quick_check: {found[0] if found else 'no answer'}")
    except BaseException:
        db.close()
        raise
    return db


def _move_aside(path: Path) -> Path:
    """Rename a damaged journal (and its WAL and shared-memory files, which must not meet
    the new database) to ``<name>.damaged-<UTC time>``; the operator may want it."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.damaged-{stamp}.{n}")
        n += 1
    for suffix in ("-wal", "-shm", ""):  # the database last: a WAL left alone would replay
        src = path.with_name(path.name + suffix)
        if src.exists():
            src.rename(target.with_name(target.name + suffix))
    return target


def read_events(
    path: Path, limit: int = 50, kind: str | None = None, subject: str | None = None
) -> list[Event]:
    """The most recent events, oldest first; opens the file read-only."""
    if not path.exists():
        return []
    with readonly(path) as db:
        return _select(db, limit, kind, subject)


def _select(
    db: sqlite3.Connection, limit: int, kind: str | None, subject: str | None
) -> list[Event]:
    query = SELECT_EVENTS
    where: list[str] = []
    args: list[Any] = []
    if kind:
        where.append("kind = ?")
        args.append(kind)
    if subject:
        where.append("subject = ?")
        args.append(subject)
    if where:
        query += " WHERE " + " AND ".join(where)
    query += " ORDER BY id DESC LIMIT ?"
    args.append(limit)
    rows = db.execute(query, args).fetchall()
    return [row_event(r) for r in reversed(rows)]


# Every event, as row_event reads it; a reader adds its WHERE, ORDER BY and LIMIT.
SELECT_EVENTS = "SELECT id, ts, kind, subject, message, data FROM events"


def row_event(row: Sequence[Any]) -> Event:
    """An event from a row of SELECT_EVENTS. Data that is not a JSON object reads as none:
    one damaged row must not make ``lifeline events`` or the SLA report unreadable."""
    try:
        data = json.loads(row[5])
    except ValueError:
        data = {}
    return Event(id=row[0], ts=row[1], kind=row[2], subject=row[3], message=row[4],
                 data=data if isinstance(data, dict) else {})


@contextmanager
def readonly(path: Path) -> Iterator[sqlite3.Connection]:
    """The journal opened read-only, so a reader runs while the daemon writes."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        yield db
