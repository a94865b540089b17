"""The incremental walk of a recordings tree: what it re-lists, what it skips, and a clear
problem (never a crash, never a removal, never a write) for each thing that can go wrong.

Permission errors: the tests run as root, which bypasses file permissions, so here the OS
errors are injected by wrapping ``os.scandir`` and ``os.lstat`` for the one path under test
(monkeypatch); tests/integration/test_rectree_permissions.py makes the real ones with real
modes in a child process that dropped to an unprivileged user.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from probes.recfiles import FileEntry, ProblemKind
from probes.recindex import RecIndex, ScanReport
from probes.rectree import DIRTY, KnownDir, Listed, TreeWalk, name_matcher
from tests.unit.rectrees import held, put, tombstones, tree_state

NS = 10**9
DAY = 86400 * NS
WAV = ["*.wav"]
OLD = 1_700_000_000 * NS  # a fixed past: directories set to it are not hot


def _age_dirs(root: Path, mtime_ns: int = OLD) -> None:
    """Give every directory of a test tree an old mtime, as an untouched archive has."""
    for dirpath, _, _ in os.walk(root):
        os.utime(dirpath, ns=(mtime_ns, mtime_ns))


def _scan(index: RecIndex, root: Path, **kw: Any) -> ScanReport:
    before = tree_state(root) if root.exists() else None
    report = index.scan_tree("store", root, WAV, now_ns=kw.pop("now_ns", time.time_ns()), **kw)
    after = tree_state(root) if root.exists() else None
    assert after == before, "the scan changed the tree"
    return report


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "rec"
    for d in ("2025/01/01", "2025/01/02", "2025/02/01"):
        for i in range(3):
            put(root, f"{d}/c{i}.wav", i + 1, OLD)
    _age_dirs(root)
    return root


def test_unchanged_old_directories_are_skipped_and_the_root_is_always_listed(tree: Path) -> None:
    with RecIndex(":memory:") as index:
        first = _scan(index, tree)
        assert (first.added, first.dirs_listed, first.dirs_skipped) == (9, 7, 0)
        again = _scan(index, tree)
        assert (again.added, again.dirs_listed, again.dirs_skipped) == (0, 1, 6)
        full = _scan(index, tree, full=True)
        assert (full.added, full.changed, full.dirs_listed, full.dirs_skipped) == (0, 0, 7, 0)


def test_a_directory_written_to_is_listed_again_and_a_hot_one_every_time(tree: Path) -> None:
    with RecIndex(":memory:") as index:
        _scan(index, tree)
        put(tree, "2025/02/01/new.wav", 5, OLD)  # touches 2025/02/01's mtime (now)
        r = _scan(index, tree)
        assert (r.added, r.dirs_listed) == (1, 2)  # root + the changed day
        r = _scan(index, tree)  # still within hot_ns of now: listed again (in-place growth)
        assert r.dirs_listed == 2
        r = _scan(index, tree, now_ns=time.time_ns() + 3 * DAY)  # cooled down
        assert r.dirs_listed == 1


def test_an_in_place_change_in_an_old_directory_waits_for_the_full_pass(tree: Path) -> None:
    """The documented limit of the mtime rule, and why the runtime runs a full pass."""
    with RecIndex(":memory:") as index:
        _scan(index, tree)
        path = tree / "2025" / "01" / "01" / "c0.wav"
        with open(path, "ab") as f:
            f.write(b"more")
        os.utime(path, ns=(OLD + 1, OLD + 1))
        assert _scan(index, tree).changed == 0
        assert _scan(index, tree, full=True).changed == 1
        entry = FileEntry(b"2025/01/01/c0.wav", 5, OLD + 1)
        assert entry in held(index, "store")


def test_removed_files_and_directories_become_tombstones(tree: Path) -> None:
    with RecIndex(":memory:") as index:
        _scan(index, tree)
        (tree / "2025" / "01" / "01" / "c1.wav").unlink()
        shutil.rmtree(tree / "2025" / "01" / "02")
        r = _scan(index, tree)
        assert (r.removed, r.files) == (4, 5)
        assert {p for p, _, _ in tombstones(index, "store")} == {
            b"2025/01/01/c1.wav", b"2025/01/02/c0.wav", b"2025/01/02/c1.wav",
            b"2025/01/02/c2.wav"}
        # a directory replaced by a file (or a symlink): its files went away
        shutil.rmtree(tree / "2025" / "02")
        (tree / "2025" / "02").write_bytes(b"")
        r = _scan(index, tree)
        assert (r.removed, r.files) == (3, 2)


def test_a_missing_root_changes_nothing_and_is_one_problem(tree: Path, tmp_path: Path) -> None:
    with RecIndex(":memory:") as index:
        _scan(index, tree)
        before = held(index, "store")
        moved = tmp_path / "elsewhere"
        tree.rename(moved)
        r = _scan(index, tree)
        assert (r.root_state, r.removed, r.files) == ("missing", 0, 9)
        assert [(p.path, p.kind) for p in r.problems] == [(b"", ProblemKind.ROOT_MISSING)]
        tree.write_bytes(b"not a directory")
        r = _scan(index, tree)
        assert (r.root_state, r.problems[0].kind) == ("missing", ProblemKind.ROOT_MISSING)
        assert held(index, "store") == before and tombstones(index, "store") == set()
        tree.unlink()
        moved.rename(tree)
        assert _scan(index, tree).root_state == "ok"


@pytest.mark.parametrize("mount_point", ["empty", "another disk"])
def test_an_unmounted_share_is_one_problem_not_every_recording_missing(
        tree: Path, tmp_path: Path, mount_point: str) -> None:
    with RecIndex(":memory:") as index:
        _scan(index, tree)
        before = held(index, "store")
        tree.rename(tmp_path / "mounted")
        tree.mkdir()  # what is left when the share is not mounted
        if mount_point == "another disk":
            (tree / "lost+found").mkdir()
            put(tree, "other/readme.txt", 3, OLD)
        for full in (False, True):
            r = _scan(index, tree, full=full)
            assert (r.root_state, r.removed, r.files) == ("empty", 0, 9)
            assert [(p.path, p.kind) for p in r.problems] == [(b"", ProblemKind.ROOT_EMPTY)]
            assert "9 files" in r.problems[0].detail
        assert held(index, "store") == before and tombstones(index, "store") == set()


def test_an_empty_root_of_a_new_source_is_just_empty(tmp_path: Path) -> None:
    with RecIndex(":memory:") as index:
        r = _scan(index, tmp_path)
        assert (r.root_state, r.files, r.problems) == ("ok", 0, [])


def test_symlinks_are_reported_and_never_followed(tree: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    put(outside, "secret.wav", 1, OLD)
    os.symlink("..", tree / "2025" / "loop")
    os.symlink(".", tree / "self")
    os.symlink(outside, tree / "escape")
    os.symlink("c0.wav", tree / "2025" / "01" / "01" / "alias.wav")
    os.symlink("nowhere", tree / "dangling.wav")
    with RecIndex(":memory:") as index:
        r = _scan(index, tree)
        assert r.files == 9
        assert sorted((p.path, p.kind) for p in r.problems) == [
            (b"2025/01/01/alias.wav", ProblemKind.SYMLINK), (b"2025/loop", ProblemKind.SYMLINK),
            (b"dangling.wav", ProblemKind.SYMLINK), (b"escape", ProblemKind.SYMLINK),
            (b"self", ProblemKind.SYMLINK)]
        # a directory with a problem is listed every scan, so the problem stays reported
        r = _scan(index, tree)
        assert {p.path for p in r.problems} == {b"2025/01/01/alias.wav", b"2025/loop",
                                                b"dangling.wav", b"escape", b"self"}


def test_a_fifo_named_like_a_recording_is_not_a_regular_file(tree: Path) -> None:
    os.mkfifo(tree / "2025" / "01" / "01" / "pipe.wav")
    with RecIndex(":memory:") as index:
        r = _scan(index, tree)
        assert [(p.path, p.kind) for p in r.problems] == [
            (b"2025/01/01/pipe.wav", ProblemKind.NOT_REGULAR)]
        assert r.files == 9


def test_names_in_any_encoding_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    names = [b"caf\xe9/appel-\xff.wav", "日本/通話.wav".encode(), b"plain/\x80\x81.wav"]
    for n in names:
        put(root, n, 3, OLD)
    with RecIndex(":memory:") as index:
        r = _scan(index, root)
        assert (r.added, r.problems) == (3, [])
        assert {e.path for e in held(index, "store")} == set(names)
        cmp = index.compare("store", "nas", older_than_ns=time.time_ns())
        assert cmp.missing_paths == sorted(names)
        for n in names:
            os.unlink(os.path.join(os.fsencode(root), n))
        put(root, "keep/one.wav", 1, OLD)
        _scan(index, root)
        assert {p for p, _, _ in tombstones(index, "store")} == set(names)


def test_a_file_pattern_list_matches_any_and_is_case_sensitive() -> None:
    match = name_matcher(["*.wav", "*.mp3"]).match
    assert match("a.wav") and match("b.mp3") and not match("a.WAV") and not match("a.wav.tmp")
    with pytest.raises(ValueError, match="pattern"):
        name_matcher([])


# --- injected OS errors --------------------------------------------------------------------


class _Entry:
    """A DirEntry whose stat fails as a broken file system's would."""

    def __init__(self, real: os.DirEntry[bytes], error: OSError, *, kind_too: bool) -> None:
        self._real, self._error, self._kind_too = real, error, kind_too
        self.name, self.path = real.name, real.path

    def is_symlink(self) -> bool:
        if self._kind_too:  # no d_type: telling its kind needs the lstat that fails
            raise self._error
        return self._real.is_symlink()

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        return self._real.is_dir(follow_symlinks=follow_symlinks)

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        raise self._error


class _Listing:
    def __init__(self, entries: list[Any]) -> None:
        self.entries = entries

    def __enter__(self) -> Iterator[Any]:
        return iter(self.entries)

    def __exit__(self, *exc: object) -> None:
        return None


def _inject(monkeypatch: pytest.MonkeyPatch, *, listing: bytes | None = None,
            entry: bytes | None = None, lstat: bytes | None = None,
            error: OSError, kind_too: bool = False) -> None:
    """Make one directory's listing, one entry's stat or one path's lstat fail."""
    real_scandir, real_lstat = os.scandir, os.lstat

    def scandir(path: Any) -> Any:
        if path == listing:
            raise error
        entries = list(real_scandir(path))
        return _Listing([_Entry(e, error, kind_too=kind_too) if e.path == entry else e
                         for e in entries])

    def fake_lstat(path: Any, *a: Any, **kw: Any) -> os.stat_result:
        if path == lstat:
            raise error
        return real_lstat(path, *a, **kw)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "lstat", fake_lstat)


def _eacces(path: bytes) -> OSError:
    return PermissionError(errno.EACCES, "Permission denied", path)


def test_a_directory_we_may_not_list_keeps_its_files_and_is_retried(
        tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    day = os.fsencode(tree / "2025" / "01" / "02")
    with RecIndex(":memory:") as index:
        _scan(index, tree)
        before = held(index, "store")
        os.utime(day, ns=(OLD + 1, OLD + 1))  # it changed: it must be listed
        with monkeypatch.context() as m:
            _inject(m, listing=day, error=_eacces(day))
            for _ in range(2):  # reported every scan while it lasts
                r = _scan(index, tree)
                assert [(p.path, p.kind) for p in r.problems] == [
                    (b"2025/01/02", ProblemKind.PERMISSION)]
                assert "Permission denied" in r.problems[0].detail
                assert (r.removed, r.files) == (0, 9)
        assert held(index, "store") == before
        r = _scan(index, tree)
        assert (r.problems, r.removed, r.files) == ([], 0, 9)
        assert _scan(index, tree).dirs_listed == 1  # clean again: skipped as before


def test_a_directory_we_may_not_stat_keeps_its_files(tree: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    month = os.fsencode(tree / "2025" / "02")
    with RecIndex(":memory:") as index:
        _scan(index, tree)
        _inject(monkeypatch, lstat=month, error=_eacces(month))
        r = _scan(index, tree)
        assert [(p.path, p.kind) for p in r.problems] == [(b"2025/02", ProblemKind.PERMISSION)]
        assert (r.removed, r.files) == (0, 9)


@pytest.mark.parametrize(("error", "kind", "removed"), [
    (PermissionError(errno.EACCES, "Permission denied"), ProblemKind.PERMISSION, 0),
    (OSError(errno.EIO, "Input/output error"), ProblemKind.UNREADABLE, 0),
    (FileNotFoundError(errno.ENOENT, "No such file or directory"), ProblemKind.VANISHED, 1),
])
def test_an_entry_we_cannot_stat_is_a_problem_and_not_a_removal_unless_it_vanished(
        tree: Path, monkeypatch: pytest.MonkeyPatch, error: OSError, kind: ProblemKind,
        removed: int) -> None:
    day = tree / "2025" / "01" / "01"
    with RecIndex(":memory:") as index:
        _scan(index, tree)
        os.utime(day, ns=(OLD + 1, OLD + 1))
        _inject(monkeypatch, entry=os.fsencode(day / "c2.wav"), error=error)
        r = _scan(index, tree)
        assert [(p.path, p.kind) for p in r.problems] == [(b"2025/01/01/c2.wav", kind)]
        assert (r.removed, r.files) == (removed, 9 - removed)


def test_a_subdirectory_whose_kind_cannot_be_read_is_not_taken_for_gone(
        tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    month = tree / "2025" / "01"
    with RecIndex(":memory:") as index:
        _scan(index, tree)
        os.utime(month, ns=(OLD + 1, OLD + 1))
        _inject(monkeypatch, entry=os.fsencode(month / "02"),
                error=OSError(errno.EIO, "Input/output error"), kind_too=True)
        r = _scan(index, tree)
        assert [(p.path, p.kind) for p in r.problems] == [(b"2025/01/02",
                                                           ProblemKind.UNREADABLE)]
        assert (r.removed, r.files) == (0, 9)


def test_problems_are_capped_and_all_counted(tmp_path: Path) -> None:
    root = tmp_path / "rec"
    root.mkdir()
    for i in range(150):
        os.symlink("nowhere", root / f"l{i:03}.wav")
    with RecIndex(":memory:") as index:
        r = _scan(index, root)
        assert (len(r.problems), r.problems_total) == (100, 150)


def test_the_walk_alone_yields_listed_directories_with_their_files(tree: Path) -> None:
    walk = TreeWalk(str(tree), {b"": KnownDir(DIRTY, ())}, WAV, now_ns=OLD, hot_ns=0,
                    full=False, held_files=0)
    listed = [e for e in walk if isinstance(e, Listed)]
    assert [e.path for e in listed] == [b"", b"2025", b"2025/01", b"2025/01/01", b"2025/01/02",
                                        b"2025/02", b"2025/02/01"]
    assert sorted(listed[3].files, key=lambda f: f.path) == [
        FileEntry(f"2025/01/01/c{i}.wav".encode(), i + 1, OLD) for i in range(3)]
