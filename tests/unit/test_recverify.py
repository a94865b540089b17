"""probes.recverify: the SHA-256 read-back of a mirror and (with a fake restic) of a snapshot."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from probes.recverify import Verified, sha256_file, verify_mirror, verify_restic
from probes.restic import Restic, ResticError

DAY = b"2026/12/03"


def put(root: Path, rel: bytes, body: bytes) -> bytes:
    full = os.path.join(os.fsencode(root), rel)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as f:
        f.write(body)
    return full


def digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@pytest.fixture
def trees(tmp_path: Path) -> tuple[Path, Path]:
    store, mirror = tmp_path / "store", tmp_path / "mirror"
    store.mkdir()
    mirror.mkdir()
    return store, mirror


def test_sha256_file_is_hashlib_and_reads_in_chunks(tmp_path: Path) -> None:
    body = os.urandom(100_000)
    path = put(tmp_path, b"a.wav", body)
    assert sha256_file(path, chunk=4096) == digest(body)
    assert sha256_file(os.fsdecode(path)) == digest(body)


def test_sha256_file_leaves_mtime_and_atime_as_they_were(tmp_path: Path) -> None:
    path = put(tmp_path, b"a.wav", b"x" * 10_000)
    os.utime(path, ns=(1_000_000_000, 2_000_000_000))  # atime < mtime: relatime would update
    sha256_file(path)
    st = os.stat(path)
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_000, 2_000_000_000)


def test_sha256_file_refuses_a_symlink_and_a_fifo(tmp_path: Path) -> None:
    target = put(tmp_path, b"real.wav", b"data")
    os.symlink(target, tmp_path / "link.wav")
    with pytest.raises(OSError) as caught:
        sha256_file(str(tmp_path / "link.wav"))
    assert caught.value.errno == errno.ELOOP
    os.mkfifo(tmp_path / "pipe.wav")  # opening it for reading must not block
    with pytest.raises(OSError, match="not a regular file"):
        sha256_file(str(tmp_path / "pipe.wav"))


def test_mirror_equal_different_and_missing_each_found(trees: tuple[Path, Path]) -> None:
    store, mirror = trees
    for name, orig, copy in [(b"same.wav", b"A" * 100, b"A" * 100),
                             (b"flip.wav", b"A" * 100, b"A" * 99 + b"B"),
                             (b"short.wav", b"A" * 100, b"A" * 50)]:
        put(store, DAY + b"/" + name, orig)
        put(mirror, DAY + b"/" + name, copy)
    put(store, DAY + b"/nocopy.wav", b"C")
    put(mirror, DAY + b"/noorig.wav", b"D")
    paths = [DAY + b"/" + n for n in
             (b"same.wav", b"flip.wav", b"short.wav", b"nocopy.wav", b"noorig.wav")]
    got = verify_mirror(store, mirror, paths)
    assert [v.path for v in got] == paths
    assert [(v.ok, v.kind) for v in got] == [
        (True, "equal"), (False, "different"), (False, "different"),
        (False, "missing_copy"), (False, "missing_original")]
    assert got[1].detail == (f"sha256 copy {digest(b'A' * 99 + b'B')[:16]}... != "
                             f"original {digest(b'A' * 100)[:16]}...")
    assert "No such file" in got[3].detail and got[3].detail.startswith("copy: ")
    assert got[4].detail.startswith("original: ")


def test_a_copy_in_a_folder_the_backup_lacks_is_missing(trees: tuple[Path, Path]) -> None:
    store, mirror = trees
    put(store, b"2026/12/04/x.wav", b"x")
    (v,) = verify_mirror(store, mirror, [b"2026/12/04/x.wav"])
    assert (v.ok, v.kind) == (False, "missing_copy")


def test_a_symlink_in_place_of_the_copy_is_unreadable_not_followed(
    trees: tuple[Path, Path], tmp_path: Path
) -> None:
    store, mirror = trees
    body = b"the recording"
    put(store, DAY + b"/a.wav", body)
    # The link points at a file with the very same bytes: following it would say "equal".
    outside = put(tmp_path, b"elsewhere.wav", body)
    os.makedirs(os.path.join(os.fsencode(mirror), DAY))
    os.symlink(outside, os.path.join(os.fsencode(mirror), DAY, b"a.wav"))
    (v,) = verify_mirror(store, mirror, [DAY + b"/a.wav"])
    assert (v.ok, v.kind) == (False, "unreadable")
    assert v.detail.startswith("copy: a symlink, not followed")


def test_an_unreadable_copy_or_original_is_unreadable_with_the_os_words(
    trees: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, mirror = trees
    for name in (b"a.wav", b"b.wav"):
        put(store, DAY + b"/" + name, b"x")
        put(mirror, DAY + b"/" + name, b"x")
    real_open = os.open
    broken = {os.path.join(os.fsencode(mirror), DAY, b"a.wav"),
              os.path.join(os.fsencode(store), DAY, b"b.wav")}

    def failing_open(path: bytes, flags: int, *args: int) -> int:
        if path in broken:
            raise OSError(errno.EIO, os.strerror(errno.EIO), path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", failing_open)
    got = verify_mirror(store, mirror, [DAY + b"/a.wav", DAY + b"/b.wav"])
    assert [(v.ok, v.kind, v.detail) for v in got] == [
        (False, "unreadable", "copy: [Errno 5] Input/output error"),
        (False, "unreadable", "original: [Errno 5] Input/output error")]


def test_o_noatime_refused_falls_back_to_a_plain_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = put(tmp_path, b"a.wav", b"abc")
    real_open = os.open
    seen: list[int] = []

    def no_noatime(p: bytes, flags: int, *args: int) -> int:
        seen.append(flags)
        if flags & getattr(os, "O_NOATIME", 0):
            raise PermissionError(errno.EPERM, "Operation not permitted", p)
        return real_open(p, flags, *args)

    monkeypatch.setattr(os, "open", no_noatime)
    assert sha256_file(path) == digest(b"abc")
    assert all(flags & os.O_NOFOLLOW and not flags & (os.O_WRONLY | os.O_RDWR)
               for flags in seen)


def test_names_that_are_not_utf8_are_read_back_by_their_bytes(trees: tuple[Path, Path]) -> None:
    store, mirror = trees
    names = [DAY + b"/caf\xe9.wav", DAY + b"/\xff\xfe.wav", DAY + "/ü-日本.wav".encode()]
    for name in names:
        put(store, name, name)
        put(mirror, name, name)
    assert [v.kind for v in verify_mirror(store, mirror, names)] == ["equal"] * 3


def test_verify_never_writes_or_changes_the_trees(trees: tuple[Path, Path]) -> None:
    store, mirror = trees
    put(store, DAY + b"/a.wav", b"a")
    put(mirror, DAY + b"/a.wav", b"b")

    def state() -> list[tuple[str, int, int, int]]:
        out = []
        for root in trees:
            for folder, _dirs, files in os.walk(root):
                for name in files:
                    st = os.stat(os.path.join(folder, name))
                    out.append((os.path.join(folder, name), st.st_size, st.st_mtime_ns,
                                st.st_atime_ns))
        return sorted(out)

    before = state()
    verify_mirror(store, mirror, [DAY + b"/a.wav"])
    assert state() == before


# --- restic, with a fake (the real one is in tests/integration/test_recverify_restic.py) -------


class FakeRestic:
    """hashes() from a dict of directory -> members (or an error after some members)."""

    def __init__(self, dirs: dict[bytes, list[tuple[bytes, bytes]]],
                 fail: dict[bytes, ResticError] | None = None) -> None:
        self.dirs, self.fail = dirs, fail or {}
        self.calls: list[tuple[str, str, bytes]] = []

    def hashes(self, snapshot_id: str, root: str, directory: bytes
               ) -> Iterator[tuple[bytes, int, str]]:
        self.calls.append((snapshot_id, root, directory))
        if directory not in self.dirs and directory not in self.fail:
            raise ResticError("not_found", f"path {directory!r} not found in snapshot")
        for rel, body in self.dirs.get(directory, []):
            yield rel, len(body), digest(body)
        if directory in self.fail:
            raise self.fail[directory]


def test_restic_one_call_per_directory_and_each_verdict(tmp_path: Path) -> None:
    store = tmp_path / "store"
    d1, d2, d3 = b"2026/12/03", b"2026/12/04", b"2026/12/05"
    for rel in (d1 + b"/a.wav", d1 + b"/b.wav", d1 + b"/c.wav", d2 + b"/x.wav", d3 + b"/y.wav",
                d1 + b"/caf\xe9.wav"):
        put(store, rel, rel)
    fake = FakeRestic({
        d1: [(d1 + b"/a.wav", d1 + b"/a.wav"), (d1 + b"/b.wav", b"rotten"),
             (d1 + b"/caf\xe9.wav", d1 + b"/caf\xe9.wav"),
             (d1 + b"/sub/deeper.wav", b"not asked for")],
        d2: [(d2 + b"/x.wav", d2 + b"/x.wav")],
    })
    paths = [d1 + b"/a.wav", d2 + b"/x.wav", d1 + b"/b.wav", d1 + b"/c.wav", d3 + b"/y.wav",
             d1 + b"/caf\xe9.wav", d1 + b"/gone.wav"]
    got = verify_restic(cast(Restic, fake), "snap", "/srv/rec", store, paths)
    assert [v.path for v in got] == paths
    assert [v.kind for v in got] == ["equal", "equal", "different", "missing_copy",
                                     "missing_copy", "equal", "missing_original"]
    assert sorted(c[2] for c in fake.calls) == [d1, d2, d3]
    assert {c[:2] for c in fake.calls} == {("snap", "/srv/rec")}


def test_restic_corrupt_keeps_what_was_read_and_errors_the_rest(tmp_path: Path) -> None:
    store = tmp_path / "store"
    names = [DAY + b"/a.wav", DAY + b"/b.wav", DAY + b"/c.wav"]
    for rel in names:
        put(store, rel, rel)
    error = ResticError("corrupt", "ciphertext verification failed", path=DAY + b"/b.wav")
    fake = FakeRestic({DAY: [(names[0], names[0])]}, fail={DAY: error})
    got = verify_restic(cast(Restic, fake), "snap", "/srv/rec", store, names)
    assert [(v.ok, v.kind) for v in got] == [(True, "equal"), (False, "error"), (False, "error")]
    assert got[1].detail == "restic: corrupt: ciphertext verification failed"
    assert got[2].detail == ("restic: corrupt: ciphertext verification failed "
                             "(not read: the dump broke at 2026/12/03/b.wav)")


def test_restic_not_called_when_no_original_of_a_directory_is_readable(tmp_path: Path) -> None:
    fake = FakeRestic({})
    got = verify_restic(cast(Restic, fake), "snap", "/srv/rec", tmp_path, [DAY + b"/a.wav"])
    assert got == [Verified(DAY + b"/a.wav", False, "missing_original",
                            "original: [Errno 2] No such file or directory")]
    assert fake.calls == []


def test_restic_timeout_is_an_error_for_the_directory(tmp_path: Path) -> None:
    put(tmp_path, DAY + b"/a.wav", b"a")
    fake = FakeRestic({}, fail={DAY: ResticError("timeout", "no answer in 60 s")})
    (v,) = verify_restic(cast(Restic, fake), "snap", "/srv/rec", tmp_path, [DAY + b"/a.wav"])
    assert (v.ok, v.kind, v.detail) == (False, "error", "restic: timeout: no answer in 60 s")
