"""Reads the journal for the SLA report: every event up to a time, read-only.

The report replays the whole journal up to the end of its period (controller.core.sla):
the state at the period's start is what the events before it left. The journal is bounded
by its limits (``keep_events``), so reading it whole is cheap. The file is opened
read-only, as ``lifeline events`` does, so the report runs while the daemon writes.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from controller.runtime.journal import SELECT_EVENTS, Event, readonly, row_event

# Rows fetched per round trip; the caller hears of progress between them.
_BATCH = 50_000


class NoJournal(Exception):
    """There is no journal where the report looked, or it cannot be read."""


@dataclass(frozen=True, slots=True)
class History:
    events: tuple[Event, ...]  # oldest first, in the order the daemon wrote them
    pruned: bool  # older events were deleted by the journal's limits
    path: Path


def read_history(path: Path, until: float,
                 progress: Callable[[int], None] | None = None) -> History:
    """Every event of the journal at ``path`` with a time up to ``until``.

    Raises NoJournal with a sentence for the operator when the file is missing or is not
    a readable journal."""
    if not path.exists():
        raise NoJournal(f"no journal at {path}: has lifeline run with this state_dir? "
                        "Give the config with -c or the file with --journal")
    try:
        with readonly(path) as db:
            first_id = db.execute("SELECT min(id) FROM events").fetchone()[0]
            cursor = db.execute(
                SELECT_EVENTS + " WHERE ts <= ? ORDER BY id", (until,))
            events: list[Event] = []
            while rows := cursor.fetchmany(_BATCH):
                events.extend(row_event(r) for r in rows)
                if progress is not None:
                    progress(len(events))
    except sqlite3.Error as exc:
        raise NoJournal(f"cannot read the journal {path}: {exc}") from exc
    # AUTOINCREMENT ids start at 1 and are never reused: a first id above 1 means pruned.
    return History(tuple(events), first_id is not None and first_id > 1, path)

