"""Properties of the recordings index (hypothesis), on real temporary trees.

Incremental = full = fresh: after any sequence of added, changed (written to a temporary
name, then renamed over: what recorders and rsync do), removed files and removed
directories, in a store and a mirror, scans that skip unchanged directories leave the index
as scans that list everything do, and as one full scan into a new index; and that is what is
on disk. The kernel stamps a directory's mtime with a coarse clock (a few ms), so two
changes within one tick would look like none; the test gives every directory a change
touched a distinct mtime of its own fake clock, as a fine clock would (``hot_ns`` covers
the coarse clock in production: a directory changed within two days is always re-listed).

Snapshot sources: whichever snapshots are added and forgotten, in any order, a path is held
exactly when a snapshot still present contains it (a brute-force model of per-snapshot
membership), given that a recording exists in the store over one interval of time.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from probes.recfiles import FileEntry
from probes.recindex import RecIndex
from tests.unit.rectrees import ALL, held, put, tombstones, tree_state

WAV = ["*.wav"]
NS = 10**9
T0 = 1_600_000_000 * NS  # the fake clock's start; the kernel's stamps are years later
REAL = T0 + 10**17  # an mtime above this was set by the kernel: a directory a change touched

DIRS = ["a", "a/b", "a/b/c", "d", "d/e"]
NAMES = ["x.wav", "y.wav", "z.wav", "notes.txt"]
SIDES = ["store", "nas"]

op = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(SIDES), st.sampled_from(DIRS),
              st.sampled_from(NAMES), st.integers(0, 3)),
    st.tuples(st.just("replace"), st.sampled_from(SIDES), st.sampled_from(DIRS),
              st.sampled_from(NAMES), st.integers(0, 3)),
    st.tuples(st.just("rm"), st.sampled_from(SIDES), st.sampled_from(DIRS),
              st.sampled_from(NAMES), st.just(0)),
    st.tuples(st.just("rmdir"), st.sampled_from(SIDES), st.sampled_from(DIRS),
              st.just(""), st.just(0)),
    st.tuples(st.just("scan"), st.just(""), st.just(""), st.just(""), st.just(0)),
)


class World:
    def __init__(self, base: Path) -> None:
        self.roots = {side: base / side for side in SIDES}
        for root in self.roots.values():
            # never touched: a tree whose every recording went looks like an unmounted
            # share, which changes nothing on purpose (tests/unit/test_rectree.py)
            put(root, "keep/anchor.wav", 1, T0)
        self.clock = T0
        self.incremental = RecIndex(":memory:")
        self.full = RecIndex(":memory:")
        self.compared = False

    def close(self) -> None:
        self.incremental.close()
        self.full.close()

    def tick(self) -> int:
        self.clock += NS
        return self.clock

    def restamp(self, root: Path) -> None:
        """Every directory the kernel just stamped gets the next fake time."""
        for dirpath, _, _ in os.walk(root):
            if os.lstat(dirpath).st_mtime_ns > REAL:
                t = self.tick()
                os.utime(dirpath, ns=(t, t))

    def apply(self, kind: str, side: str, d: str, name: str, size: int) -> None:
        if kind == "scan":
            self.scan()
            return
        root = self.roots[side]
        path = root / d / name
        if kind == "put" and not path.exists():
            put(root, f"{d}/{name}", size, self.tick())
        elif kind == "replace" and path.exists():
            tmp = root / d / f".{name}.part"
            put(root, f"{d}/.{name}.part", size + 10, self.tick())
            os.rename(tmp, path)
        elif kind == "rm" and path.exists():
            path.unlink()
        elif kind == "rmdir" and (root / d).exists():
            shutil.rmtree(root / d)
        self.restamp(root)

    def scan(self) -> None:
        now = self.tick()
        for side, root in self.roots.items():
            before = tree_state(root)
            a = self.incremental.scan_tree(side, root, WAV, now_ns=now, hot_ns=1)
            b = self.full.scan_tree(side, root, WAV, now_ns=now, hot_ns=1, full=True)
            assert tree_state(root) == before
            assert a.problems == [] and b.problems == []
        if not self.compared:  # from now on the triggers keep the pair's gaps
            self.incremental.compare("store", "nas", older_than_ns=2**62)
            self.compared = True

    def on_disk(self, side: str) -> set[FileEntry]:
        root = os.fsencode(self.roots[side])
        out = set()
        for dirpath, _, files in os.walk(root):
            for f in files:
                if f.endswith(b".wav") and not f.startswith(b"."):
                    p = os.path.join(dirpath, f)
                    st_ = os.lstat(p)
                    out.add(FileEntry(os.path.relpath(p, root), st_.st_size, st_.st_mtime_ns))
        return out


@settings(max_examples=100, deadline=None)
@given(st.lists(op, max_size=30))
def test_incremental_scans_equal_full_scans_and_the_disk(ops: list[tuple[str, str, str, str,
                                                                         int]]) -> None:
    with tempfile.TemporaryDirectory(prefix="recprop-") as tmp:
        world = World(Path(tmp))
        try:
            for o in ops:
                world.apply(*o)
            world.scan()
            with RecIndex(":memory:") as fresh:
                for side in SIDES:
                    fresh.scan_tree(side, world.roots[side], WAV, now_ns=world.tick(), full=True)
                    truth = world.on_disk(side)
                    assert held(world.incremental, side) == truth
                    assert held(world.full, side) == truth
                    assert held(fresh, side) == truth
                    assert tombstones(world.incremental, side) == tombstones(world.full, side)
                    stats = world.incremental.stats(side)
                    assert (stats.files, stats.bytes) == (len(truth),
                                                          sum(e.size for e in truth))
                store = {e.path: e.size for e in world.on_disk("store")}
                nas = {e.path: e.size for e in world.on_disk("nas")}
                cmp = world.incremental.compare("store", "nas", older_than_ns=2**62, limit=ALL)
                assert cmp.missing_paths == sorted(p for p in store if p not in nas)
                assert cmp.mismatched_paths == sorted((p, s, nas[p]) for p, s in store.items()
                                                      if p in nas and nas[p] != s)
                assert cmp == fresh.compare("store", "nas", older_than_ns=2**62, limit=ALL)
        finally:
            world.close()


# --- snapshot sources ----------------------------------------------------------------------

PATHS = [b"a/1.wav", b"a/2.wav", b"b/3.wav", b"4.wav", b"b/c/5.wav"]
TIMES = range(8)

lifetimes = st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7)).map(sorted),
                     min_size=len(PATHS), max_size=len(PATHS))
snap_ops = st.lists(st.tuples(st.sampled_from(["add", "forget"]), st.sampled_from(TIMES)),
                    max_size=25)


@settings(max_examples=200, deadline=None)
@given(lifetimes, snap_ops)
def test_held_equals_membership_in_a_present_snapshot(life: list[list[int]],
                                                      ops: list[tuple[str, int]]) -> None:
    exists = {p: (c, d) for p, (c, d) in zip(PATHS, life, strict=True)}

    def contents(t: int) -> list[FileEntry]:
        return [FileEntry(p, len(p), 7) for p, (c, d) in exists.items() if c <= t <= d]

    added: set[int] = set()
    forgotten: set[int] = set()
    with RecIndex(":memory:") as index:
        index.add_snapshot("store", "all", 0, [FileEntry(p, len(p), 7) for p in PATHS])
        index.compare("store", "offsite", older_than_ns=2**62)  # the triggers keep it now
        for kind, t in ops:
            if kind == "add" and t not in forgotten:
                index.add_snapshot("offsite", f"s{t}", t, contents(t))
                added.add(t)
            elif kind == "forget" and t in added:
                forgotten.add(t)
                added.discard(t)
                index.set_snapshots("offsite", {f"s{u}": u for u in added})
            model = {e.path for t in added for e in contents(t)}
            ever = {e.path for t in added | forgotten for e in contents(t)}
            assert {e.path for e in held(index, "offsite")} == model
            assert {p for p, _, _ in tombstones(index, "offsite")} == ever - model
            assert index.snapshots_seen("offsite") == {f"s{u}" for u in added}
            assert index.stats("offsite").files == len(model)
            cmp = index.compare("store", "offsite", older_than_ns=2**62, limit=100)
            assert cmp.missing_paths == sorted(set(PATHS) - model)
            assert cmp.mismatched == 0
