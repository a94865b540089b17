"""Helpers for the recordings tests: make test trees, and prove a scan wrote nothing.

``tree_state`` is the "never a write" oracle: every path under a root (directories,
files, symlinks, fifos; symlinks not followed) with its size, mtime_ns and mode. A scan
that created, removed, renamed, chmod-ed, touched or wrote anything changes it.
Only trees the tests make are ever written, and only here and in the test bodies.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from probes.recfiles import FileEntry
from probes.recindex import RecIndex

__all__ = ["ALL", "held", "put", "tombstones", "tree_state"]

ALL = 10**9  # a limit larger than any test tree
_lstat = os.lstat  # the real one, also while a test injects errors into os.lstat


def tree_state(root: str | Path | bytes) -> dict[bytes, tuple[int, int, int]]:
    """path (relative, bytes) -> (size, mtime_ns, mode) of the root and all below it."""
    base = os.fsencode(root)
    out: dict[bytes, tuple[int, int, int]] = {}
    stack = [base]
    while stack:
        path = stack.pop()
        st = _lstat(path)
        out[os.path.relpath(path, base)] = (st.st_size, st.st_mtime_ns, st.st_mode)
        if stat.S_ISDIR(st.st_mode):
            stack.extend(os.path.join(path, name) for name in os.listdir(path))
    return out


def put(root: str | Path | bytes, rel: bytes | str, size: int, mtime_ns: int) -> None:
    """Write a file of ``size`` bytes at ``root/rel`` with that mtime (parents made)."""
    path = os.path.join(os.fsencode(root), os.fsencode(rel))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"r" * size)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def held(index: RecIndex, source: str) -> set[FileEntry]:
    """Every file the index says ``source`` holds."""
    return set(index.verify_batch(source, None, ALL))


def tombstones(index: RecIndex, source: str) -> set[tuple[bytes, int, int]]:
    """(path, size, mtime_ns) of every file ``source`` held and no longer holds."""
    _, gone = index.gone(source, younger_than_ns=-(2**62), limit=ALL)
    return {(t.path, t.size, t.mtime_ns) for t in gone}
