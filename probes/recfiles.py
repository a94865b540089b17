"""The plain types every recordings source speaks: a file as a source holds it, and a problem.

A folder tree (probes/rectree.py), a restic repository (probes/restic.py) and the index
(probes/recindex.py) exchange recordings as ``FileEntry`` and what went wrong as
``ScanProblem``, so the index needs no knowledge of where a listing came from. Paths are
bytes (``os.fsencode`` form) because a recorder may write names in any encoding and one
that is not UTF-8 must survive the round trip to the index and back. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["FileEntry", "ProblemKind", "ScanProblem"]


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One recording as a source holds it."""

    path: bytes  # relative to the source's root, '/'-separated, no leading '/', os.fsencode
    # form (names in any encoding survive); display with path.decode("utf-8", "backslashreplace")
    size: int  # bytes
    mtime_ns: int  # the file's mtime (for restic: the node's mtime as stored)


class ProblemKind(StrEnum):
    """Why a part of a source could not be read (a finding's kind, never an exception)."""

    PERMISSION = "permission"  # a directory or file we may not read
    SYMLINK = "symlink"  # a symlink (never followed: no loops, no escapes)
    UNREADABLE = "unreadable"  # an I/O error reading it
    VANISHED = "vanished"  # gone between listing and stat (a race: not a finding)
    ROOT_MISSING = "root_missing"  # the source's root does not exist / is not a directory
    ROOT_EMPTY = "root_empty"  # the root is empty while the index held files (an unmounted share)
    NOT_REGULAR = "not_regular"  # a matching name that is not a regular file (fifo, device)


@dataclass(frozen=True, slots=True)
class ScanProblem:
    """One part of a source that was not read, with the OS's words for why."""

    path: bytes  # relative ('' = the root)
    kind: ProblemKind
    detail: str  # the OS's words, e.g. "[Errno 13] Permission denied"
