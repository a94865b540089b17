"""The journal keeps every event with its reason, across restarts, and never crashes: a
damaged file is moved aside, a state dir that cannot hold it leaves it in memory, and old
events are pruned to the configured limits."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

import pytest

from controller.config import ConfigError, JournalLimits, parse_config
from controller.runtime.daemon import Daemon
from controller.runtime.journal import Journal, read_events

MINIMAL = Path(__file__).parent / "data" / "configs" / "good-minimal.yaml"


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


# -- a damaged file never stops the daemon -------------------------------------------------


def _real_journal(path: Path, events: int) -> None:
    j = Journal(path)
    for i in range(events):
        j.record("transition", "fibre-a", f"event {i} " + "x" * 200)
    j.close()


def _not_a_database(path: Path) -> None:
    path.write_text("these are not the pages you are looking for\n" * 200)


def _truncated(path: Path) -> None:
    _real_journal(path, 2000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage_in_the_middle(path: Path) -> None:
    # Opens fine and accepts writes: only reading every page finds it.
    _real_journal(path, 2000)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2 // 4096 * 4096
    data[middle : middle + 8192] = os.urandom(8192)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_not_a_database, _truncated, _garbage_in_the_middle])
def test_a_damaged_journal_is_moved_aside_and_a_new_one_started(
    tmp_path: Path, damage: object, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "journal.sqlite3"
    assert callable(damage)
    damage(path)
    before = path.read_bytes()
    with caplog.at_level(logging.ERROR):
        j = Journal(path)
    j.record("start", "daemon", "lifeline started")
    cond = j.condition
    assert cond.mode == "disk" and cond.problem is None
    assert cond.damaged_moved_to is not None
    moved = Path(cond.damaged_moved_to)
    assert moved.parent == tmp_path and moved.name.startswith("journal.sqlite3.damaged-")
    assert moved.read_bytes() == before, "the damaged file is kept for the operator, as it was"
    assert "not a usable database" in caplog.text and str(moved) in caplog.text
    j.close()
    events = read_events(path)
    assert [e.kind for e in events] == ["error", "start"]
    assert str(moved) in events[0].message


def test_two_damaged_journals_in_one_second_both_stay(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    moved = []
    for _ in range(2):
        _not_a_database(path)
        j = Journal(path)
        moved.append(j.condition.damaged_moved_to)
        j.close()
    assert len(set(moved)) == 2 and all(Path(str(m)).exists() for m in moved)


@pytest.mark.parametrize("where", ["parent is a file", "path is a directory"])
def test_a_state_dir_that_cannot_hold_it_keeps_the_journal_in_memory(
    tmp_path: Path, where: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Tests run as root, which writes through any mode bits: a path under a regular file
    # (OSError) or a directory where the file should be (sqlite3 cannot open it) is as
    # unusable to root as a read-only state dir is to the daemon's user.
    if where == "parent is a file":
        (tmp_path / "state").write_text("not a directory")
        path = tmp_path / "state" / "journal.sqlite3"
    else:
        path = tmp_path / "journal.sqlite3"
        path.mkdir()
    with caplog.at_level(logging.ERROR):
        j = Journal(path)
    j.record("transition", "fibre-a", "fibre-a: 3 rounds lost in a row", old="up", new="down")
    cond = j.condition
    assert cond.mode == "memory" and cond.damaged_moved_to is None
    assert cond.problem is not None and str(path) in cond.problem
    assert "in memory" in caplog.text
    kinds = [e.kind for e in j.events()]
    assert kinds == ["error", "transition"]
    assert j.events(kind="transition", subject="fibre-a")[0].data["new"] == "down"
    j.close()


def test_a_disk_that_fills_up_mid_run_moves_the_journal_to_memory(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    j.record("start", "daemon", "up")
    pages = j._db.execute("PRAGMA page_count").fetchone()[0]
    j._db.execute(f"PRAGMA max_page_count = {pages}")  # as full as a full disk, for SQLite
    for i in range(40):
        j.record("action", "routes", f"step {i} " + "x" * 2000)  # must never raise
    cond = j.condition
    assert cond.mode == "memory"
    assert cond.write_errors == 3, "three failures in a row, then memory, which takes them"
    assert cond.problem is not None and "full" in cond.problem
    assert j.events(limit=1)[0].message.startswith("step 39")
    j.close()


def test_one_failed_write_does_not_give_up_the_disk(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    j = Journal(path)
    j.record("start", "daemon", "up")
    j._db.execute("PRAGMA query_only = ON")  # writes fail, as on a disk hiccup
    j.record("action", "routes", "lost")
    j.record("action", "routes", "lost too")
    j._db.execute("PRAGMA query_only = OFF")
    j.record("action", "routes", "kept")  # a success resets the count
    j._db.execute("PRAGMA query_only = ON")
    j.record("action", "routes", "lost again")
    assert j.condition.mode == "disk" and j.condition.write_errors == 3
    j.close()
    assert [e.message for e in read_events(path)] == ["up", "kept"]


def test_resume_survives_an_unreadable_journal(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    j._db.close()  # every read now fails
    daemon = Daemon(parse_config(MINIMAL.read_text()), journal=j)
    daemon.routing.resume_from_journal()  # must not raise: the links start as if new
    assert daemon.routing.links["fibre-a"].health.state.value == "unknown"
    j.record("stop", "daemon", "x")  # and writing goes on being counted, not raised
    assert j.condition.write_errors == 1


def test_lifeline_events_names_an_unreadable_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from controller.cli import main

    _not_a_database(tmp_path / "journal.sqlite3")
    assert main(["events", "--state-dir", str(tmp_path)]) == 1
    assert "cannot read the journal" in capsys.readouterr().err


# -- retention -----------------------------------------------------------------------------


def _count(path: Path) -> int:
    with sqlite3.connect(path) as db:
        n: int = db.execute("SELECT count(*) FROM events").fetchone()[0]
    return n


def test_the_journal_keeps_at_most_keep_events(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    j = Journal(path, JournalLimits(keep_events=1000))
    for i in range(2500):
        j.record("transition", "fibre-a", f"event {i}")
    # Pruned every 1000 writes, not on each: bounded by the limit plus one batch.
    assert _count(path) <= 2000
    j.close()
    Journal(path, JournalLimits(keep_events=1000)).close()  # and at every start
    assert _count(path) == 1000
    assert read_events(path, limit=1)[0].message == "event 2499"


def test_events_older_than_keep_days_go_but_never_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    j = Journal(path, JournalLimits(keep_days=90))
    old = time.time() - 100 * 86400
    j._db.executemany(
        "INSERT INTO events (ts, kind, subject, message) VALUES (?, 'transition', 'lte', ?)",
        [(old, f"old {i}") for i in range(1500)],
    )
    j.record("decision", "internet", "new")
    j.close()
    Journal(path, JournalLimits(keep_days=90)).close()
    events = read_events(path, limit=5000)
    # The newest 1000 stay whatever their age: a quiet site still shows its last failover.
    assert len(events) == 1000
    assert events[-1].message == "new" and events[0].message == "old 501"


def test_pruning_also_runs_hourly_on_a_quiet_journal(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    j = Journal(path, JournalLimits(keep_events=1000))
    j._db.executemany(
        "INSERT INTO events (ts, kind, subject, message) VALUES (?, 'transition', 'lte', ?)",
        [(time.time(), f"e {i}") for i in range(1200)],
    )
    j.record("start", "daemon", "no prune yet")
    assert _count(path) == 1201
    j._pruned_at -= 3600
    j.record("start", "daemon", "an hour later")
    assert _count(path) == 1000
    j.close()


def test_journal_limits_come_from_the_config() -> None:
    text = MINIMAL.read_text() + "journal:\n  keep_days: 30\n  keep_events: 5000\n"
    assert parse_config(text).journal == JournalLimits(keep_days=30, keep_events=5000)
    assert parse_config(MINIMAL.read_text()).journal == JournalLimits()
    with pytest.raises(ConfigError, match=r"journal\.keep_events"):
        parse_config(MINIMAL.read_text() + "journal: {keep_events: 10}\n")


def test_recent_gives_the_status_page_plain_values_newest_last(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    for i in range(5):
        j.record("decision", "internet", f"step {i}", secret_detail="not for the page")
    recent = j.recent(3)
    assert [e["message"] for e in recent] == ["step 2", "step 3", "step 4"]
    assert set(recent[0]) == {"id", "ts", "kind", "subject", "message"}  # no data blob
    assert recent[-1]["kind"] == "decision" and recent[-1]["subject"] == "internet"
    j.close()
