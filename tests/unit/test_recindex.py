"""The recordings index on real (small, temporary) trees: every finding exact, none false,
and the trees never written."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from probes.recfiles import FileEntry
from probes.recindex import RecIndex
from probes.recschema import SCHEMA_VERSION
from tests.unit.rectrees import ALL, held, put, tombstones, tree_state

NS = 10**9
DAY = 86400 * NS
YEAR = 365 * DAY
GRACE = 2 * 3600 * NS
RETENTION = 5 * YEAR
WAV = ["*.wav"]


class Site:
    """A store and a mirror, made of real files with explicit mtimes relative to ``now``."""

    def __init__(self, base: Path) -> None:
        self.store = base / "store"
        self.nas = base / "nas"
        self.now = time.time_ns()
        self.store.mkdir()
        self.nas.mkdir()

    def both(self, rel: str, size: int, age_ns: int) -> None:
        put(self.store, rel, size, self.now - age_ns)
        put(self.nas, rel, size, self.now - age_ns)

    def scan(self, index: RecIndex) -> None:
        for name, root in (("store", self.store), ("nas", self.nas)):
            report = index.scan_tree(name, root, WAV, now_ns=self.now)
            assert report.root_state == "ok" and report.problems == [], report


def _day(age_days: int) -> str:
    t = time.gmtime(time.time() - age_days * 86400)
    return time.strftime("%Y/%m/%d", t)


def test_a_night_that_missed_files_is_found_exactly_and_nothing_else(tmp_path: Path) -> None:
    site = Site(tmp_path)
    for age in range(3, 40):
        for i in range(4):
            site.both(f"{_day(age)}/call-{age}-{i}.wav", 1000 + i, age * DAY + i * NS)
    # the mirror's copy stopped two days ago: yesterday's and today's calls are not there
    for age in (0, 1, 2):
        for i in range(3):
            put(site.store, f"{_day(age)}/call-{age}-{i}.wav", 500, site.now - age * DAY - i * NS)
    # one call a night missed, one copied with another size, one too young to be missing
    put(site.store, f"{_day(10)}/skipped.wav", 42, site.now - 10 * DAY)
    put(site.store, f"{_day(12)}/torn.wav", 4200, site.now - 12 * DAY)
    put(site.nas, f"{_day(12)}/torn.wav", 4096, site.now - 12 * DAY)
    put(site.store, f"{_day(0)}/recording-now.wav", 7, site.now - 60 * NS)
    # recordings a year and six years old in both; files that are not recordings in both
    site.both("2020-old/ancient.wav", 5, 6 * YEAR)
    site.both("archive/last-year.wav", 6, YEAR)
    site.both(f"{_day(5)}/notes.txt", 3, 5 * DAY)
    before = {"store": tree_state(site.store), "nas": tree_state(site.nas)}

    with RecIndex(tmp_path / "state" / "index.sqlite") as index:
        site.scan(index)
        assert tree_state(site.store) == before["store"]
        assert tree_state(site.nas) == before["nas"]
        # The mirror drops the year-old recording (retention breach) and the six-year-old
        # one (past retention: fine); the store purges the six-year-old one too.
        (site.nas / "archive" / "last-year.wav").unlink()
        (site.nas / "2020-old" / "ancient.wav").unlink()
        (site.store / "2020-old" / "ancient.wav").unlink()
        # A call is recorded and deleted from the store before any backup saw it.
        put(site.store, f"{_day(4)}/deleted-early.wav", 9, site.now - 4 * DAY)
        site.scan(index)
        (site.store / _day(4) / "deleted-early.wav").unlink()
        before = {"store": tree_state(site.store), "nas": tree_state(site.nas)}
        site.scan(index)

        cmp = index.compare("store", "nas", older_than_ns=site.now - GRACE)
        expected_missing = sorted(
            [f"{_day(a)}/call-{a}-{i}.wav".encode() for a in (1, 2) for i in range(3)]
            + [f"{_day(10)}/skipped.wav".encode(), b"archive/last-year.wav"])
        assert cmp.missing_paths == expected_missing
        assert cmp.missing == len(expected_missing)
        assert cmp.mismatched_paths == [(f"{_day(12)}/torn.wav".encode(), 4200, 4096)]
        assert cmp.mismatched == 1

        nas = index.stats("nas")
        assert nas.newest is not None and nas.newest.path == f"{_day(3)}/call-3-0.wav".encode()
        assert site.now - nas.newest.mtime_ns == 3 * DAY  # stale: the copy stopped
        store = index.stats("store")
        assert store.newest == FileEntry(f"{_day(0)}/call-0-0.wav".encode(), 500, site.now)

        count, gone = index.gone("nas", younger_than_ns=site.now - RETENTION)
        assert count == 1 and [t.path for t in gone] == [b"archive/last-year.wav"]
        assert tombstones(index, "nas") == {
            (b"archive/last-year.wav", 6, site.now - YEAR),
            (b"2020-old/ancient.wav", 5, site.now - 6 * YEAR)}

        count, lost = index.lost("store", ["nas"], younger_than_ns=site.now - RETENTION)
        assert count == 1 and [t.path for t in lost] == [f"{_day(4)}/deleted-early.wav".encode()]
    assert tree_state(site.store) == before["store"]
    assert tree_state(site.nas) == before["nas"]


def test_compare_follows_changes_on_either_side(tmp_path: Path) -> None:
    """The gaps the triggers keep after a pair was first compared match a fresh compare."""
    site = Site(tmp_path)
    for i in range(20):
        site.both(f"d{i % 3}/c{i}.wav", i, DAY + i)
    with RecIndex(":memory:") as index:
        site.scan(index)
        old = site.now - GRACE
        assert index.compare("store", "nas", older_than_ns=old).missing == 0
        (site.nas / "d0" / "c3.wav").unlink()
        put(site.nas, "d1/c4.wav", 99, site.now - DAY)
        put(site.store, "d2/new.wav", 1, site.now - DAY)
        (site.store / "d1" / "c7.wav").unlink()  # gone from the store: no longer to be held
        shutil.rmtree(site.nas / "d2")
        site.scan(index)
        cmp = index.compare("store", "nas", older_than_ns=old)
        d2 = [f"d2/c{i}.wav".encode() for i in range(2, 20, 3)] + [b"d2/new.wav"]
        assert cmp.missing_paths == sorted([b"d0/c3.wav", *d2])
        assert cmp.mismatched_paths == [(b"d1/c4.wav", 4, 99)]
        put(site.nas, "d2/new.wav", 1, site.now - DAY)
        site.scan(index)
        assert b"d2/new.wav" not in index.compare("store", "nas", older_than_ns=old).missing_paths

        with RecIndex(":memory:") as fresh:
            site.scan(fresh)
            assert fresh.compare("store", "nas", older_than_ns=old) == \
                index.compare("store", "nas", older_than_ns=old)


def test_compare_lists_are_bounded_and_counts_exact(tmp_path: Path) -> None:
    site = Site(tmp_path)
    for i in range(30):
        put(site.store, f"a/c{i:02}.wav", 1, site.now - DAY)
    with RecIndex(":memory:") as index:
        site.scan(index)
        cmp = index.compare("store", "nas", older_than_ns=site.now, limit=5)
        assert cmp.missing == 30
        assert cmp.missing_paths == [f"a/c{i:02}.wav".encode() for i in range(5)]
        assert index.compare("store", "never-scanned", older_than_ns=site.now).missing == 30
        with pytest.raises(ValueError, match="itself"):
            index.compare("store", "store", older_than_ns=site.now)


def test_compare_since_keeps_older_gaps_from_crowding_out_a_window(tmp_path: Path) -> None:
    site = Site(tmp_path)
    for i in range(30):  # old gaps that sort before the window's
        put(site.store, f"a/c{i:02}.wav", 1, site.now - 30 * DAY)
    put(site.store, "b/recent.wav", 1, site.now - DAY)
    with RecIndex(":memory:") as index:
        site.scan(index)
        cmp = index.compare("store", "nas", older_than_ns=site.now, limit=5,
                            since_ns=site.now - 7 * DAY)
        assert (cmp.missing, cmp.missing_paths) == (1, [b"b/recent.wav"])
        assert index.compare("store", "nas", older_than_ns=site.now, limit=5).missing == 31


def test_stats_written_bytes_and_the_rotating_sample(tmp_path: Path) -> None:
    site = Site(tmp_path)
    for i in range(25):
        put(site.store, f"{i % 4}/c{i:02}.wav", 10 * i, site.now - i * DAY)
    with RecIndex(":memory:") as index:
        site.scan(index)
        s = index.stats("store")
        assert (s.files, s.bytes) == (25, sum(10 * i for i in range(25)))
        assert s.oldest == FileEntry(b"0/c24.wav", 240, site.now - 24 * DAY)
        assert index.written_bytes("store", site.now - 3 * DAY) == 0 + 10 + 20 + 30
        seen: list[FileEntry] = []
        cursor = None
        for _ in range(6):  # 6 batches of 5 cover all 25, then wrap
            batch = index.verify_batch("store", cursor, 5)
            assert len(batch) == 5
            seen += batch
            cursor = batch[-1].path
        assert {e.path for e in seen[:25]} == {e.path for e in held(index, "store")}
        assert seen[25:] == seen[:5]
        assert len(index.verify_batch("store", cursor, 100)) == 25  # one round at most
        assert index.verify_batch("nothing", None, 5) == []
        assert index.stats("nothing").files == 0


def test_a_file_that_comes_back_is_held_again_and_its_tombstone_goes(tmp_path: Path) -> None:
    site = Site(tmp_path)
    put(site.store, "a/c.wav", 3, site.now - DAY)
    with RecIndex(":memory:") as index:
        site.scan(index)
        (site.store / "a" / "c.wav").unlink()
        r = index.scan_tree("store", site.store, WAV, now_ns=site.now)
        assert (r.removed, r.files) == (1, 0)
        put(site.store, "a/c.wav", 4, site.now - DAY)
        r = index.scan_tree("store", site.store, WAV, now_ns=site.now)
        assert (r.added, r.files) == (1, 1)
        assert tombstones(index, "store") == set()
        assert index.stats("store").bytes == 4


# --- snapshot sources ----------------------------------------------------------------------


def _entries(*specs: tuple[str, int]) -> list[FileEntry]:
    return [FileEntry(p.encode(), s, 1000) for p, s in specs]


def test_a_snapshot_source_holds_what_its_remaining_snapshots_cover() -> None:
    with RecIndex(":memory:") as index:
        r = index.add_snapshot("offsite", "s1", 10, _entries(("a/1.wav", 1), ("a/2.wav", 2)))
        assert (r.added, r.files) == (2, 2)
        index.add_snapshot("offsite", "s2", 20, _entries(("a/2.wav", 2), ("b/3.wav", 3)))
        assert index.add_snapshot("offsite", "s2", 20, []).added == 0  # already added
        assert index.snapshots_seen("offsite") == {"s1", "s2"}
        assert {e.path for e in held(index, "offsite")} == {b"a/1.wav", b"a/2.wav", b"b/3.wav"}
        # forget s1: a/1.wav was only in s1
        assert index.set_snapshots("offsite", {"s2": 20, "s9-not-listed-yet": 30}, now_ns=99) == 1
        assert index.snapshots_seen("offsite") == {"s2"}
        assert {e.path for e in held(index, "offsite")} == {b"a/2.wav", b"b/3.wav"}
        count, gone = index.gone("offsite", younger_than_ns=0)
        assert count == 1 and gone[0].path == b"a/1.wav" and gone[0].removed_ns == 99
        # a later snapshot with another size: the latest sighting is what the backup holds
        r = index.add_snapshot("offsite", "s3", 30, _entries(("b/3.wav", 33)))
        assert r.changed == 1
        assert index.stats("offsite").bytes == 2 + 33
        with pytest.raises(ValueError, match="snapshots source"):
            index.scan_tree("offsite", "/nonexistent", WAV, now_ns=0)


def test_lost_counts_a_store_file_any_backup_ever_held_as_not_lost(tmp_path: Path) -> None:
    site = Site(tmp_path)
    put(site.store, "a/kept-offsite.wav", 1, site.now - DAY)
    put(site.store, "a/nowhere.wav", 1, site.now - DAY)
    put(site.store, "b/still-there.wav", 1, site.now - DAY)  # else the root looks unmounted
    with RecIndex(":memory:") as index:
        site.scan(index)
        index.add_snapshot("offsite", "s1", site.now, _entries(("a/kept-offsite.wav", 1)))
        index.set_snapshots("offsite", {})  # forgotten since: it *was* held, so not lost
        shutil.rmtree(site.store / "a")
        site.scan(index)
        count, lost = index.lost("store", ["nas", "offsite"], younger_than_ns=0)
        assert count == 1 and lost[0].path == b"a/nowhere.wav"
        assert index.lost("store", [], younger_than_ns=0)[0] == 2


# --- the index file ------------------------------------------------------------------------


def _one_file_index(path: Path, tree: Path) -> None:
    put(tree, "a/c.wav", 1, 0)
    with RecIndex(path) as index:
        assert index.reset is None
        index.scan_tree("store", tree, WAV, now_ns=time.time_ns())


@pytest.mark.parametrize("damage", ["garbage", "foreign", "version", "damaged", "empty"])
def test_a_file_that_is_not_our_index_is_moved_aside_and_rebuilt(tmp_path: Path,
                                                                 damage: str) -> None:
    path = tmp_path / "index.sqlite"
    if damage == "garbage":
        path.write_bytes(b"this is not SQLite\n" * 300)
    elif damage == "foreign":
        with sqlite3.connect(path) as other:
            other.execute("CREATE TABLE t (x)")
        other.close()
    elif damage == "version":
        _one_file_index(path, tmp_path / "tree")
        with sqlite3.connect(path) as db:
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
        db.close()
    elif damage == "damaged":  # a valid header, then pages of garbage
        _one_file_index(path, tmp_path / "tree")
        data = bytearray(path.read_bytes())
        data[4096:] = b"\xa5" * (len(data) - 4096)
        path.write_bytes(bytes(data))
    else:
        path.write_bytes(b"")
    original = path.read_bytes()
    with RecIndex(path) as index:
        if damage == "empty":  # an empty file is a new database, not a damaged one
            assert index.reset is None
            return
        assert index.reset is not None and "moved aside" in index.reset
        r = index.scan_tree("store", tmp_path, WAV, now_ns=time.time_ns())
        assert r.index_reset == index.reset
        assert index.scan_tree("store", tmp_path, WAV, now_ns=time.time_ns()).index_reset is None
    asides = [p for p in tmp_path.iterdir() if p.name.startswith("index.sqlite.bad-")]
    assert [p.read_bytes() for p in asides if not p.name.endswith(("-wal", "-shm"))] == \
        [original]
    with RecIndex(path) as again:
        assert again.reset is None


def test_the_index_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "state" / "index.sqlite"
    os.makedirs(path.parent)
    _one_file_index(path, tmp_path / "tree")
    with RecIndex(path) as index:
        assert index.stats("store").files == 1
        r = index.scan_tree("store", tmp_path / "tree", WAV, now_ns=time.time_ns())
        assert (r.added, r.removed, r.files) == (0, 0, 1)
        assert len(index.verify_batch("store", None, ALL)) == 1


def test_new_patterns_drop_what_they_no_longer_match_without_tombstones(tmp_path: Path) -> None:
    site = Site(tmp_path)
    put(site.store, "a/c.wav", 1, site.now - DAY)
    put(site.store, "a/c.mp3", 2, site.now - DAY)
    with RecIndex(":memory:") as index:
        site.scan(index)
        r = index.scan_tree("store", site.store, ["*.mp3"], now_ns=site.now)
        assert (r.full, r.added, r.removed, r.files) == (True, 1, 0, 1)
        assert {e.path for e in held(index, "store")} == {b"a/c.mp3"}
        assert tombstones(index, "store") == set()
        r = index.scan_tree("store", site.store, ["*.mp3"], now_ns=site.now)
        assert (r.full, r.added) == (False, 0)


def test_prune_forgets_tombstones_past_the_retention_only(tmp_path: Path) -> None:
    site = Site(tmp_path)
    put(site.store, "a/ancient.wav", 1, site.now - 6 * YEAR)
    put(site.store, "a/young.wav", 1, site.now - YEAR)
    put(site.store, "b/kept.wav", 1, site.now)
    with RecIndex(":memory:") as index:
        site.scan(index)
        shutil.rmtree(site.store / "a")
        site.scan(index)
        assert index.prune("store", older_than_ns=site.now - RETENTION) == 1
        assert {p for p, _, _ in tombstones(index, "store")} == {b"a/young.wav"}
        assert index.stats("store").files == 1
        assert index.prune("nothing", older_than_ns=site.now) == 0


def test_compare_leaves_out_what_is_older_than_its_lower_bound(tmp_path: Path) -> None:
    """A recording past the retention may leave a backup: with ``since_ns`` it is never
    "missing" (nor "mismatched"), and a file exactly at the bound still counts."""
    site = Site(tmp_path)
    put(site.store, "old/past.wav", 1, site.now - RETENTION - DAY)
    put(site.store, "old/edge.wav", 1, site.now - RETENTION)
    put(site.store, "new/young.wav", 1, site.now - DAY)
    put(site.store, "new/short.wav", 5, site.now - DAY)
    put(site.nas, "new/short.wav", 4, site.now - DAY)
    put(site.store, "old/short.wav", 5, site.now - RETENTION - DAY)
    put(site.nas, "old/short.wav", 4, site.now - RETENTION - DAY)
    with RecIndex(":memory:") as index:
        site.scan(index)
        everything = index.compare("store", "nas", older_than_ns=site.now)
        assert (everything.missing, everything.mismatched) == (3, 2)
        bounded = index.compare("store", "nas", older_than_ns=site.now,
                                since_ns=site.now - RETENTION)
        assert bounded.missing_paths == [b"new/young.wav", b"old/edge.wav"]
        assert bounded.missing == 2
        assert bounded.mismatched_paths == [(b"new/short.wav", 5, 4)]


def test_pending_since_is_the_oldest_store_file_newer_than_the_backup_s_newest(
        tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.both("a/one.wav", 1, 3 * DAY)
    site.both("a/two.wav", 1, 2 * DAY)
    with RecIndex(":memory:") as index:
        site.scan(index)
        assert index.pending_since("store", "nas") is None  # the backup has it all
        assert index.pending_since("store", "never-scanned") == site.now - 3 * DAY
        put(site.store, "b/three.wav", 1, site.now - 30 * 3600 * NS)
        put(site.store, "b/four.wav", 1, site.now - 3600 * NS)
        put(site.store, "a/older.wav", 1, site.now - 4 * DAY)  # older: missing, not pending
        site.scan(index)
        assert index.pending_since("store", "nas") == site.now - 30 * 3600 * NS
        put(site.nas, "b/four.wav", 1, site.now - 3600 * NS)  # a newer copy covers it all
        site.scan(index)
        assert index.pending_since("store", "nas") is None
        assert index.pending_since("unknown", "nas") is None


def test_notes_outlive_the_connection(tmp_path: Path) -> None:
    path = tmp_path / "state" / "index.sqlite3"
    with RecIndex(path) as index:
        assert index.noted("verifier") is None
        index.note("verifier", '{"cursor": "00"}')
        index.note("verifier", '{"cursor": "01"}')
    with RecIndex(path) as index:
        assert index.reset is None
        assert index.noted("verifier") == '{"cursor": "01"}'
