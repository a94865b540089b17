"""Read recordings back from a backup and compare them with the originals by SHA-256.

A backup that lists a recording with the right size may still hold bytes that are wrong (a
disk that rots, a copy cut short and padded, a pack restic cannot decrypt): only reading the
copy back proves it. Everything here only reads: files are opened ``O_RDONLY|O_NOFOLLOW``
(a symlink in a tree is never followed: no loops, no escapes out of the tree), with
``O_NOATIME`` where the kernel allows it (so a verify leaves even the access times as they
were; without ownership or CAP_FOWNER it is refused and the read goes on without it), and a
name that is not a regular file (a fifo, a device) is refused before a byte is read (opened
``O_NONBLOCK``, so a fifo cannot hang the worker). A restic copy is read with one
``restic dump`` per directory (``Restic.hashes``), never one call per file (~0.7 s each).

Blocking: the runtime calls these from its worker thread, the CLI directly. The ``verify_*``
functions never raise for what the files or restic do: each problem is a ``Verified`` with
``ok=False`` and a kind.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from probes.restic import Restic, ResticError

__all__ = ["KINDS", "Verified", "sha256_file", "verify_mirror", "verify_restic"]

KINDS: tuple[str, ...] = (
    "equal",  # the copy's SHA-256 equals the original's
    "different",  # both read, the bytes differ
    "missing_copy",  # the backup does not hold it (anymore)
    "missing_original",  # the store no longer holds it (nothing to compare with)
    "unreadable",  # a side could not be read: permission, I/O error, a symlink, not a file
    "error",  # the backup could not be read at all (restic failed: corrupt, timeout, ...)
)

_CHUNK = 1 << 20
_BASE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_NOATIME: int = getattr(os, "O_NOATIME", 0)
_MISSING = (errno.ENOENT, errno.ENOTDIR)


@dataclass(frozen=True, slots=True)
class Verified:
    """The verdict on one recording's copy in one backup."""

    path: bytes  # relative, as FileEntry.path
    ok: bool  # the copy's SHA-256 equals the original's
    kind: str  # one of KINDS
    detail: str  # e.g. "sha256 3f2a... != 9b1c...", "[Errno 5] Input/output error"


def _open(path: bytes | str) -> int:
    """Open read-only, never following a symlink; O_NOATIME when the kernel lets us."""
    if _NOATIME:
        try:
            return os.open(path, _BASE_FLAGS | _NOATIME)
        except PermissionError as exc:
            if exc.errno != errno.EPERM:  # EACCES: the file's mode says no, with or without
                raise
    return os.open(path, _BASE_FLAGS)


def sha256_file(path: bytes | str, *, chunk: int = _CHUNK) -> str:
    """SHA-256 (hex) of a regular file's bytes. Raises OSError: ELOOP for a symlink (not
    followed), EINVAL-like ``OSError`` for what is not a regular file, the OS's error else."""
    fd = _open(path)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fsdecode(path))
        digest = hashlib.sha256()
        while block := os.read(fd, chunk):
            digest.update(block)
        return digest.hexdigest()
    finally:
        os.close(fd)


def _why(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return f"a symlink, not followed ([Errno {errno.ELOOP}] {os.strerror(errno.ELOOP)})"
    return f"[Errno {exc.errno}] {exc.strerror}" if exc.errno else str(exc)


def _join(root: Path, rel: bytes) -> bytes:
    return os.fsencode(root).rstrip(b"/") + b"/" + rel.lstrip(b"/")


def _original(store_root: Path, rel: bytes) -> str | Verified:
    """The original's hash, or the verdict when it cannot be had."""
    try:
        return sha256_file(_join(store_root, rel))
    except OSError as exc:
        if exc.errno in _MISSING:
            return Verified(rel, False, "missing_original", f"original: {_why(exc)}")
        return Verified(rel, False, "unreadable", f"original: {_why(exc)}")


def _compare(rel: bytes, original: str, copy: str) -> Verified:
    if copy == original:
        return Verified(rel, True, "equal", f"sha256 {copy[:16]}")
    return Verified(
        rel, False, "different", f"sha256 copy {copy[:16]}... != original {original[:16]}..."
    )


def verify_mirror(store_root: Path, backup_root: Path, paths: Sequence[bytes]) -> list[Verified]:
    """Each path's copy under ``backup_root`` (a mirror of the tree) against the original under
    ``store_root``, in the order given. A symlink on either side is ``unreadable`` (not
    followed); a copy that is gone is ``missing_copy``."""
    out: list[Verified] = []
    for rel in paths:
        original = _original(store_root, rel)
        if isinstance(original, Verified):
            out.append(original)
            continue
        try:
            copy = sha256_file(_join(backup_root, rel))
        except OSError as exc:
            kind = "missing_copy" if exc.errno in _MISSING else "unreadable"
            out.append(Verified(rel, False, kind, f"copy: {_why(exc)}"))
            continue
        out.append(_compare(rel, original, copy))
    return out


def _directory(rel: bytes) -> bytes:
    head, _, _ = rel.strip(b"/").rpartition(b"/")
    return head


def _restic_error(exc: ResticError, rel: bytes) -> Verified:
    if exc.kind == "not_found":
        return Verified(rel, False, "missing_copy", f"restic: not_found: {exc.detail}")
    where = ""
    if exc.path is not None and exc.path != rel:
        where = f" (not read: the dump broke at {exc.path.decode('utf-8', 'backslashreplace')})"
    return Verified(rel, False, "error", f"restic: {exc.kind}: {exc.detail}{where}")


def verify_restic(restic: Restic, snapshot_id: str, root: str, store_root: Path,
                  paths: Sequence[bytes]) -> list[Verified]:
    """Each path's copy in a restic snapshot (``root``: the path as it was backed up) against
    the original under ``store_root``, in the order given: one ``restic.hashes()`` call (one
    ``restic dump``) per directory of ``paths``. A path the dump does not list is
    ``missing_copy`` (a directory the snapshot lacks: all of its paths). When restic fails
    (``corrupt``, ``timeout``...), the files hashed before it broke keep their verdict and every
    other path of that directory is ``error`` with restic's words, ``restic: corrupt: ...``
    for data that does not verify. Originals are hashed first; a directory none of whose
    originals could be read costs no restic call."""
    verdicts: dict[bytes, Verified] = {}
    originals: dict[bytes, str] = {}
    by_dir: dict[bytes, list[bytes]] = {}
    for rel in paths:
        original = _original(store_root, rel)
        if isinstance(original, Verified):
            verdicts[rel] = original
        else:
            originals[rel] = original
            by_dir.setdefault(_directory(rel), []).append(rel)
    for directory, wanted in by_dir.items():
        want = set(wanted)
        try:
            for rel, _size, digest in restic.hashes(snapshot_id, root, directory):
                if rel in want and _directory(rel) == directory:
                    verdicts[rel] = _compare(rel, originals[rel], digest)
        except ResticError as exc:
            for rel in wanted:
                if rel not in verdicts:
                    verdicts[rel] = _restic_error(exc, rel)
        for rel in wanted:
            verdicts.setdefault(
                rel, Verified(rel, False, "missing_copy", "copy: not in the snapshot")
            )
    return [verdicts[rel] for rel in paths]
