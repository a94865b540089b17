"""The incremental, read-only walk of one recordings folder tree (the store or a mirror).

A tree of a million recordings cannot be re-read every cycle, so the walk lists only the
directories that may have changed and takes the rest from what the index knew:

- every known directory is ``lstat``-ed (cheap: a date tree has a few thousand of them);
- a directory is re-listed when its ``st_mtime_ns`` differs from the index's (a file was
  added, removed or renamed in it), when it is *hot* (its mtime within ``hot_ns`` of now:
  recorders grow today's files in place, which does not touch the directory's mtime), when
  it had a problem last time (so a problem is reported every cycle until it is fixed), or
  when ``full`` is set. The runtime asks for a full pass every ``full_scan_every`` (a day by
  default): that is what catches a file changed in place in an old directory, which no
  directory mtime shows;
- the root is listed every time: that is how an unmounted share (an empty mount point, or a
  different disk) is told from a tree whose recordings were deleted. A root that is missing,
  cannot be listed, or holds none of what the index knew, yields nothing (the index changes
  nothing) and one problem;
- symlinks are never followed (no loops, no escapes out of the tree): each is a problem.

It only reads: ``lstat`` and ``scandir``, no file is opened. It works on bytes paths, so a
name in any encoding survives. It is blocking and meant for a worker thread; it knows no
SQLite: the index (probes/recindex.py) feeds it what it knew and applies what it yields.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from probes.recfiles import FileEntry, ProblemKind, ScanProblem

__all__ = [
    "DIRTY",
    "MAX_PROBLEMS",
    "Failed",
    "Gone",
    "KnownDir",
    "Listed",
    "TreeWalk",
    "name_matcher",
]

DIRTY = -1  # the mtime kept for a directory with a problem: it is re-listed next cycle
MAX_PROBLEMS = 100  # problems kept per scan (all are counted): a broken share can have 1M


@dataclass(frozen=True, slots=True)
class KnownDir:
    """A directory as the index last listed it."""

    mtime_ns: int  # DIRTY: re-list it next time
    subdirs: tuple[bytes, ...]  # relative paths of its child directories


@dataclass(frozen=True, slots=True)
class Listed:
    """A directory listed afresh: its matching files are exactly ``files``, except the
    ``unread`` ones, whose state is unknown (the index keeps what it had for those)."""

    path: bytes
    mtime_ns: int  # DIRTY when it had a problem
    files: tuple[FileEntry, ...]
    subdirs: tuple[bytes, ...]
    unread: frozenset[bytes]  # relative paths of entries that could not be read


@dataclass(frozen=True, slots=True)
class Gone:
    """A directory the index knew that is no longer one: its files went away."""

    path: bytes


@dataclass(frozen=True, slots=True)
class Failed:
    """A directory that could not be listed: the index keeps its files, marks it DIRTY."""

    path: bytes


Event = Listed | Gone | Failed


def name_matcher(patterns: Sequence[str]) -> re.Pattern[str]:
    """One regex for all fnmatch patterns (case-sensitive, as fnmatch is on POSIX), matched
    against the file name decoded with ``os.fsdecode`` (so any byte survives)."""
    if not patterns:
        raise ValueError("no file pattern")
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


def _kind(exc: OSError) -> ProblemKind:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ProblemKind.PERMISSION
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return ProblemKind.VANISHED
    if exc.errno == errno.ELOOP:
        return ProblemKind.SYMLINK
    return ProblemKind.UNREADABLE


def _join(root: bytes, rel: bytes) -> bytes:
    return root + b"/" + rel if rel else root


class TreeWalk:
    """One walk of the tree at ``root``; iterate it for the events, then read its counters.

    ``known`` is the index's directories by relative path (``b""`` the root); ``held_files``
    is how many files the index holds for this tree (for the empty-root guard).
    """

    def __init__(self, root: str | bytes, known: Mapping[bytes, KnownDir],
                 patterns: Sequence[str], *, now_ns: int, hot_ns: int, full: bool,
                 held_files: int) -> None:
        self.root = os.fsencode(root).rstrip(b"/") or b"/"
        self.known = known
        self.match = name_matcher(patterns).match
        self.now_ns = now_ns
        self.hot_ns = hot_ns
        self.full = full
        self.held_files = held_files
        self.root_state: Literal["ok", "missing", "empty"] = "ok"
        self.problems: list[ScanProblem] = []
        self.problems_total = 0
        self.dirs_listed = 0
        self.dirs_skipped = 0

    def _problem(self, path: bytes, kind: ProblemKind, detail: str) -> None:
        self.problems_total += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(ScanProblem(path, kind, detail))

    def _gone(self, path: bytes) -> Iterator[Gone]:
        """``path`` and every directory the index knew below it (deepest first)."""
        stack, order = [path], []
        while stack:
            p = stack.pop()
            order.append(p)
            known = self.known.get(p)
            if known is not None:
                stack.extend(known.subdirs)
        for p in reversed(order):
            yield Gone(p)

    def __iter__(self) -> Iterator[Event]:
        try:
            st = os.stat(self.root)  # the root the operator named may be a symlink
        except OSError as exc:
            self.root_state = "missing"
            kind = _kind(exc)
            self._problem(b"", ProblemKind.ROOT_MISSING if kind is ProblemKind.VANISHED
                          else kind, str(exc))
            return
        if not stat.S_ISDIR(st.st_mode):
            self.root_state = "missing"
            self._problem(b"", ProblemKind.ROOT_MISSING, "not a directory")
            return
        stack: list[bytes] = [b""]
        while stack:
            rel = stack.pop()
            yield from self._visit(rel, st if rel == b"" else None, stack)
            if self.root_state != "ok":
                return

    def _visit(self, rel: bytes, st: os.stat_result | None,
               stack: list[bytes]) -> Iterator[Event]:
        known = self.known.get(rel)
        if st is None:
            try:
                st = os.lstat(_join(self.root, rel))
            except FileNotFoundError:
                yield from self._gone(rel)
                return
            except OSError as exc:
                self._problem(rel, _kind(exc), str(exc))
                yield Failed(rel)
                return
            if not stat.S_ISDIR(st.st_mode):  # replaced by a file or a symlink
                yield from self._gone(rel)
                return
        if (rel and not self.full and known is not None and known.mtime_ns == st.st_mtime_ns
                and self.now_ns - st.st_mtime_ns >= self.hot_ns):
            self.dirs_skipped += 1
            stack.extend(sorted(known.subdirs, reverse=True))
            return
        listed = self._list(rel, st.st_mtime_ns)
        if listed is None and rel == b"":  # a root we may not list: the source is unavailable
            self.root_state = "missing"
            return
        if listed is None:
            yield Failed(rel)
            if known is not None:
                stack.extend(sorted(known.subdirs, reverse=True))
            return
        if rel == b"" and self._looks_unmounted(listed, known):
            return
        self.dirs_listed += 1
        yield listed
        if known is not None:
            now = set(listed.subdirs)
            for sub in known.subdirs:
                if sub not in now and sub not in listed.unread:  # unread: state unknown
                    yield from self._gone(sub)
        stack.extend(sorted(listed.subdirs, reverse=True))

    def _looks_unmounted(self, listed: Listed, known: KnownDir | None) -> bool:
        """The root holds none of the directories and no file of what the index knew: an
        unmounted share (an empty mount point) or another disk. Nothing is removed."""
        if self.held_files == 0 or listed.files or listed.unread:
            return False
        knew = set(known.subdirs) if known is not None else set()
        if knew & set(listed.subdirs):
            return False
        self.root_state = "empty"
        self._problem(b"", ProblemKind.ROOT_EMPTY,
                      f"the root holds none of the {self.held_files} files the index knew "
                      "(an unmounted share or another disk?): nothing was counted as removed")
        return True

    def _list(self, rel: bytes, mtime_ns: int) -> Listed | None:
        """The directory's matching files and its subdirectories, or None (a problem)."""
        path = _join(self.root, rel)
        prefix = rel + b"/" if rel else b""
        files: list[FileEntry] = []
        subdirs: list[bytes] = []
        unread: set[bytes] = set()
        dirty = False
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError as exc:
            self._problem(rel, _kind(exc), str(exc))
            return None
        for entry in entries:
            name = entry.name
            relp = prefix + name
            try:
                if entry.is_symlink():
                    self._problem(relp, ProblemKind.SYMLINK,
                                  f"a symlink to {os.readlink(entry.path)!r}: not followed")
                    dirty = True
                    continue
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(relp)
                    continue
                if not self.match(os.fsdecode(name)):
                    continue
                est = entry.stat(follow_symlinks=False)
            except FileNotFoundError as exc:
                self._problem(relp, ProblemKind.VANISHED, str(exc))  # a race: it is gone
                continue
            except OSError as exc:
                self._problem(relp, _kind(exc), str(exc))
                unread.add(relp)
                dirty = True
                continue
            if not stat.S_ISREG(est.st_mode):
                self._problem(relp, ProblemKind.NOT_REGULAR,
                              f"not a regular file (mode {stat.filemode(est.st_mode)})")
                dirty = True
                continue
            files.append(FileEntry(relp, est.st_size, est.st_mtime_ns))
        return Listed(rel, DIRTY if dirty else mtime_ns, tuple(files), tuple(subdirs),
                      frozenset(unread))
