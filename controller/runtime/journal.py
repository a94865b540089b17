"""SQLite event log: every transition, decision and action, with its time and reason.

The journal is the operator's memory of what lifeline did and why; it lives in
``state_dir`` and survives restarts. Writing it must never take the daemon down: a failed
write is logged and counted, and the daemon goes on (the kernel state is what matters).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


class Journal:
    """Append-only event log; readers may open the same file while the daemon writes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.write_errors = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        # WAL lets `lifeline events` read while the daemon writes; NORMAL sync is durable
        # across a daemon crash, and a power cut loses at most the last few events.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def record(self, kind: str, subject: str, message: str, **data: Any) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown journal kind {kind!r}")
        try:
            self._db.execute(
                "INSERT INTO events (ts, kind, subject, message, data) VALUES (?, ?, ?, ?, ?)",
                (time.time(), kind, subject, message, json.dumps(data, default=str)),
            )
        except sqlite3.Error as exc:
            self.write_errors += 1
            log.error("journal write failed (%s): %s %s %s", exc, kind, subject, message)

    def close(self) -> None:
        self._db.close()


def read_events(
    path: Path, limit: int = 50, kind: str | None = None, subject: str | None = None
) -> list[Event]:
    """The most recent events, oldest first; opens the file read-only."""
    if not path.exists():
        return []
    query = "SELECT id, ts, kind, subject, message, data FROM events"
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
    with _readonly(path) as db:
        rows = db.execute(query, args).fetchall()
    return [
        Event(id=r[0], ts=r[1], kind=r[2], subject=r[3], message=r[4], data=json.loads(r[5]))
        for r in reversed(rows)
    ]


@contextmanager
def _readonly(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        yield db
