"""The journal keeps every event with its reason, across restarts, and never crashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.runtime.journal import Journal, read_events


def test_events_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    j = Journal(path)
    j.record("start", "daemon", "lifeline started")
    j.record("transition", "fibre-a", "fibre-a: 3 rounds lost in a row", old="up", new="down")
    j.close()
    j = Journal(path)
    j.record("decision", "internet", "fibre-b is the best up link", new=["fibre-b"])
    j.close()
    events = read_events(path)
    assert [e.kind for e in events] == ["start", "transition", "decision"]
    assert events[1].data == {"old": "up", "new": "down"}
    assert events[2].data == {"new": ["fibre-b"]}
    assert "fibre-b is the best up link" in events[2].line()


def test_filters_and_limit(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    j = Journal(path)
    for i in range(10):
        j.record("transition", "fibre-a" if i % 2 else "lte", f"event {i}")
    j.close()
    assert [e.message for e in read_events(path, limit=3)] == ["event 7", "event 8", "event 9"]
    assert {e.subject for e in read_events(path, subject="lte")} == {"lte"}
    assert read_events(path, kind="decision") == []


def test_unknown_kind_is_a_bug(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    with pytest.raises(ValueError, match="unknown journal kind"):
        j.record("oops", "daemon", "x")
    j.close()


def test_a_failed_write_is_counted_not_raised(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    j._db.execute("DROP TABLE events")  # simulate a broken database under the daemon
    j.record("transition", "fibre-a", "still running")
    assert j.write_errors == 1
    j.close()


def test_reading_while_writing(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    j = Journal(path)
    j.record("start", "daemon", "up")
    assert [e.kind for e in read_events(path)] == ["start"]  # the writer is still open
    j.close()


def test_missing_journal_reads_empty(tmp_path: Path) -> None:
    assert read_events(tmp_path / "absent.sqlite3") == []
    assert not (tmp_path / "absent.sqlite3").exists()
