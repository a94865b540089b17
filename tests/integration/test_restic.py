"""probes.restic against the real restic (Debian `restic`): each test reads its own repository.

One repository per module is made with `restic init` and two `restic backup`s of a generated
tree of small fake recordings (YYYY/MM/DD/<call-id>.wav, a few KB each, names in any
encoding); every test reads its own copy of it (a copy is a few files; `init` alone costs
3 s of key derivation), so a test that corrupts, deletes or backs up more harms no other.
restic costs about 0.7 s a call, so each test makes only the calls it is about.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from probes.recfiles import FileEntry
from probes.restic import Restic, ResticError

pytestmark = pytest.mark.skipif(
    shutil.which("restic") is None,
    reason="restic is not installed (Debian package restic; scripts/install-deps installs it)",
)

HOST = "lab-recorder"
TAG = "recordings"
DAY1 = b"2026/12/03"
DAY2 = b"2026/12/04"
# Names a recorder may write: Latin-1 and broken bytes (not UTF-8), UTF-8, a newline.
ODD_NAMES = [b"caf\xe9-latin1.wav", b"\xff\xfe-broken.wav", "ü-日本.wav".encode(),
             b"line\nbreak\xff.wav"]


@dataclass(frozen=True)
class Backed:
    """A generated tree of recordings and a restic repository holding two snapshots of it."""

    src: Path  # the tree as it was backed up (absolute: the root restic stores)
    repo: Path
    password: Path
    first: str  # snapshot of day 1 only
    second: str  # snapshot of both days

    def restic(self, *, cache_dir: Path | None = None, timeout: float = 60.0) -> Restic:
        return Restic(str(self.repo), self.password, cache_dir=cache_dir, timeout=timeout)


def _env(repo: Path, password: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "RESTIC_REPOSITORY": str(repo),
            "RESTIC_PASSWORD_FILE": str(password), "TZ": "UTC"}


def run_restic(repo: Path, password: Path, *args: str) -> str:
    """The test's own restic calls (init, backup, cat): never through probes.restic."""
    done = subprocess.run(["restic", "--no-cache", *args], env=_env(repo, password),
                          capture_output=True, check=False, timeout=120, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout.decode()


def backup(repo: Path, password: Path, src: Path) -> str:
    """Back up `src`; the new snapshot's full id."""
    before = set(os.listdir(repo / "snapshots"))
    run_restic(repo, password, "backup", "-q", "--host", HOST, "--tag", TAG, str(src))
    (new,) = set(os.listdir(repo / "snapshots")) - before
    return new


def write_recording(path: Path | bytes, size: int, mtime_ns: int) -> None:
    raw = os.fsencode(path)
    os.makedirs(os.path.dirname(raw), exist_ok=True)
    with open(raw, "wb") as f:
        f.write(hashlib.sha256(raw).digest() * (size // 32) + b"\x07" * (size % 32))
    os.utime(raw, ns=(mtime_ns, mtime_ns))


def tree_files(src: Path, under: bytes = b"") -> dict[bytes, os.stat_result]:
    """Every regular file under `src` (raw names, relative), as a walk sees it."""
    root = os.fsencode(src)
    found: dict[bytes, os.stat_result] = {}
    for folder, _dirs, names in os.walk(os.path.join(root, under) if under else root):
        for name in names:
            full = os.path.join(folder, name)
            st = os.lstat(full)
            if stat.S_ISREG(st.st_mode):
                found[os.path.relpath(full, root)] = st
    return found


def sha256_of(path: bytes) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Backed:
    base = tmp_path_factory.mktemp("restic")
    src, repo, password = base / "recordings", base / "repo", base / "password"
    password.write_text("correct horse battery staple\n")
    t0 = 1_796_292_000_123_456_789  # 2026-12-03 10:00:00.123456789 UTC
    for i in range(3):
        write_recording(os.path.join(os.fsencode(src), DAY1, b"%08x-call.wav" % (0xC0DE00 + i)),
                        2000 + 1500 * i, t0 + i * 61_000_000_007)
    run_restic(repo, password, "init", "-q")
    first = backup(repo, password, src)
    t1 = t0 + 86_400_000_000_000
    day2 = os.path.join(os.fsencode(src), DAY2)
    for i in range(2):
        write_recording(os.path.join(day2, b"%08x-call.wav" % (0xD00D00 + i)), 4096 + i,
                        t1 + i * 999_999_999)
    for i, name in enumerate(ODD_NAMES):
        write_recording(os.path.join(day2, name), 1000 + 100 * i, t1 + 5_000_000_001 * (i + 1))
    write_recording(os.path.join(day2, b"silence.wav"), 0, t1 + 1)
    os.symlink(b"silence.wav", os.path.join(day2, b"link.wav"))  # not a file: never listed
    second = backup(repo, password, src)
    return Backed(src, repo, password, first, second)


@pytest.fixture
def backed(template: Backed, tmp_path: Path) -> Backed:
    """This test's own copy of the repository (the recordings tree is shared, read only)."""
    repo = tmp_path / "repo"
    shutil.copytree(template.repo, repo, symlinks=True)
    return Backed(template.src, repo, template.password, template.first, template.second)


@pytest.fixture
def pid_wrapper(tmp_path: Path) -> tuple[str, Path]:
    """A `restic` that writes its PID first and then is restic (exec: the same process)."""
    pids = tmp_path / "pids"
    script = tmp_path / "restic-pid"
    script.write_text(f'#!/bin/sh\necho $$ >> {pids}\nexec restic "$@"\n')
    script.chmod(0o755)
    return str(script), pids


def gone(pid: int) -> bool:
    """Ended and reaped (a zombie, never reaped, still answers signal 0)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def manifest(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file and folder of a tree: mode, mtime (ns) and a content hash (folders: '')."""
    seen: dict[str, tuple[int, int, str]] = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            full = os.path.join(folder, name)
            st = os.lstat(full)
            body = sha256_of(os.fsencode(full)) if stat.S_ISREG(st.st_mode) else ""
            seen[os.path.relpath(full, root)] = (st.st_mode, st.st_mtime_ns, body)
    st = os.lstat(root)
    seen["."] = (st.st_mode, st.st_mtime_ns, "")
    return seen


# --- snapshots ----------------------------------------------------------------------------------


def test_snapshot_ids_are_read_without_a_password_and_only_new_ones_are_asked_for(
    backed: Backed, tmp_path: Path
) -> None:
    no_password = Restic(str(backed.repo), tmp_path / "no-such-file")
    ids = no_password.snapshot_ids()
    assert ids == sorted([backed.first, backed.second])
    r = backed.restic()
    assert r.listed_snapshot_ids() == ids  # what restic itself lists

    seen = set(ids)
    started = time.time_ns()
    third = backup(backed.repo, backed.password, backed.src)
    ended = time.time_ns()
    new = [sid for sid in r.snapshot_ids() if sid not in seen]
    assert new == [third]
    (info,) = r.snapshots(new)
    assert info.id == third
    assert info.paths == (str(backed.src),)
    assert (info.hostname, info.tags) == (HOST, (TAG,))
    assert started - 1_000_000_000 <= info.time_ns <= ended
    assert r.snapshots([]) == []  # nothing new: no call at all


# --- listings -----------------------------------------------------------------------------------


def test_a_listing_is_the_tree_relative_with_sizes_and_mtimes_to_the_nanosecond(
    backed: Backed,
) -> None:
    r = backed.restic(cache_dir=backed.repo.parent / "cache")
    files = tree_files(backed.src)
    want = {FileEntry(p, st.st_size, st.st_mtime_ns) for p, st in files.items()}
    listed = list(r.listing(backed.second, str(backed.src)))
    assert len(listed) == len(set(listed)) == len(files)
    assert set(listed) == want
    assert all(e.mtime_ns % 1_000_000_000 for e in listed if e.size)  # the ns survived

    day1 = list(r.listing(backed.first, str(backed.src) + "/"))  # a trailing '/' is the same root
    assert {e.path for e in day1} == {p for p in files if p.startswith(DAY1 + b"/")}


def test_names_that_are_not_utf8_keep_their_bytes_in_listings_and_read_backs(
    backed: Backed,
) -> None:
    r = backed.restic()
    listed = {e.path: e for e in r.listing(backed.second, str(backed.src))}
    for name in ODD_NAMES:
        path = DAY2 + b"/" + name
        st = os.lstat(os.path.join(os.fsencode(backed.src), path))
        assert listed[path] == FileEntry(path, st.st_size, st.st_mtime_ns)
    assert not [p for p in listed if "\ufffd".encode() in p]  # no lossy name left over
    name = DAY2 + b"/" + ODD_NAMES[1]
    assert r.file_hash(backed.second, str(backed.src), name) == sha256_of(
        os.path.join(os.fsencode(backed.src), name)
    )


# --- read-back ----------------------------------------------------------------------------------


def test_hashes_of_a_directory_equal_hashlib_of_the_originals(backed: Backed) -> None:
    r = backed.restic()
    root = os.fsencode(backed.src)
    want = {p: (st.st_size, sha256_of(os.path.join(root, p)))
            for p, st in tree_files(backed.src, DAY2).items()}
    got = {p: (size, digest) for p, size, digest in r.hashes(backed.second, str(backed.src), DAY2)}
    assert got == want
    everything = {p for p, _s, _d in r.hashes(backed.second, str(backed.src), b"")}
    assert everything == set(tree_files(backed.src))


# --- errors -------------------------------------------------------------------------------------


def _kind(call: Callable[[], object]) -> ResticError:
    """The ResticError a call raises (a generator is read to its end)."""
    with pytest.raises(ResticError) as caught:
        result = call()
        if isinstance(result, Iterator):
            list(result)
    return caught.value


def test_a_path_or_snapshot_the_repository_does_not_hold_is_not_found(backed: Backed) -> None:
    r = backed.restic()
    src = str(backed.src)
    missing = _kind(lambda: r.hashes(backed.second, src, b"2026/12/31"))
    assert missing.kind == "not_found" and "not found" in missing.detail
    assert _kind(lambda: r.file_hash(backed.first, src, DAY2 + b"/silence.wav")).kind == "not_found"
    assert _kind(lambda: r.listing(backed.second, src + "-elsewhere")).kind == "not_found"
    assert _kind(lambda: r.listing("0" * 64, src)).kind == "not_found"


def test_a_wrong_password_is_wrong_password(backed: Backed, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password\n")
    error = _kind(lambda: Restic(str(backed.repo), wrong).snapshots([backed.first]))
    assert error.kind == "wrong_password" and "wrong password" in error.detail
    empty = tmp_path / "empty"
    empty.write_text("")
    assert _kind(lambda: Restic(str(backed.repo), empty).listing(backed.first, "/")).kind == (
        "wrong_password"
    )


def test_no_repository_is_no_repository(backed: Backed, tmp_path: Path) -> None:
    (tmp_path / "unmounted").mkdir()  # what an unmounted USB disk's mount point looks like
    for where in (tmp_path / "unmounted", tmp_path / "never-there"):
        r = Restic(str(where), backed.password)
        assert _kind(r.snapshot_ids).kind == "no_repository"
    error = _kind(lambda: Restic(str(tmp_path / "unmounted"), backed.password).snapshots(
        [backed.first]))
    assert error.kind == "no_repository" and "config" in error.detail


def _pack_of(backed: Backed, blob: str) -> tuple[Path, int, int]:
    """The pack file, offset and length of a blob, from the repository's index."""
    for index in run_restic(backed.repo, backed.password, "list", "index").split():
        doc = json.loads(run_restic(backed.repo, backed.password, "cat", "index", index))
        for pack in doc["packs"]:
            for entry in pack["blobs"]:
                if entry["id"] == blob:
                    return (backed.repo / "data" / pack["id"][:2] / pack["id"],
                            entry["offset"], entry["length"])
    raise AssertionError(f"blob {blob} is in no index")


def test_a_corrupted_data_pack_is_found_by_dump_though_plain_check_misses_it(
    backed: Backed,
) -> None:
    root = os.fsencode(backed.src)
    files = sorted(tree_files(backed.src, DAY1))
    victim = files[1]  # a small file is one blob, named by the SHA-256 of its bytes
    pack, offset, length = _pack_of(backed, sha256_of(os.path.join(root, victim)))
    os.chmod(pack, 0o644)
    body = bytearray(pack.read_bytes())
    body[offset + length // 2] ^= 0xFF
    pack.write_bytes(bytes(body))
    run_restic(backed.repo, backed.password, "check")  # exit 0: plain check misses it

    read: list[bytes] = []
    with pytest.raises(ResticError) as caught:
        for path, _size, _digest in backed.restic().hashes(backed.second, str(backed.src), DAY1):
            read.append(path)
    error = caught.value
    assert error.kind == "corrupt" and "ciphertext verification failed" in error.detail
    assert error.path == victim
    assert read == files[:1]  # what came before it was read back fine


def test_a_pack_that_is_gone_is_corrupt_at_once_not_after_restics_retries(backed: Backed) -> None:
    root = os.fsencode(backed.src)
    victim = sorted(tree_files(backed.src, DAY1))[0]
    pack, _offset, _length = _pack_of(backed, sha256_of(os.path.join(root, victim)))
    pack.unlink()
    started = time.monotonic()
    error = _kind(lambda: backed.restic(timeout=120).file_hash(backed.second, str(backed.src),
                                                               victim))
    assert error.kind == "corrupt" and "no such file" in error.detail
    assert time.monotonic() - started < 20  # restic alone retries for about 45 s


def test_a_call_past_its_deadline_is_killed_and_is_a_timeout(
    backed: Backed, tmp_path: Path, pid_wrapper: tuple[str, Path]
) -> None:
    binary, pids = pid_wrapper
    fifo = tmp_path / "password-fifo"  # restic waits for a writer that never comes
    os.mkfifo(fifo)
    r = Restic(str(backed.repo), fifo, binary=binary, timeout=1.5)
    started = time.monotonic()
    error = _kind(lambda: r.snapshots([backed.first]))
    elapsed = time.monotonic() - started
    assert error.kind == "timeout"
    assert 1.4 <= elapsed < 10
    (pid,) = (int(line) for line in pids.read_text().split())
    assert gone(pid)


def test_a_read_given_up_half_way_stops_restic(
    backed: Backed, pid_wrapper: tuple[str, Path]
) -> None:
    binary, pids = pid_wrapper
    reading = Restic(str(backed.repo), backed.password, binary=binary).hashes(
        backed.second, str(backed.src), b"")
    next(reading)
    reading.close()
    (pid,) = (int(line) for line in pids.read_text().split())
    assert gone(pid)


# --- read only, offline -------------------------------------------------------------------------


def test_reads_never_write_to_the_repository(backed: Backed, tmp_path: Path) -> None:
    before = manifest(backed.repo)
    src = str(backed.src)
    for r in (backed.restic(), backed.restic(cache_dir=tmp_path / "cache")):
        ids = r.snapshot_ids()
        r.listed_snapshot_ids()
        r.snapshots(ids)
        list(r.listing(backed.second, src))
        list(r.hashes(backed.second, src, b""))
        r.file_hash(backed.first, src, sorted(tree_files(backed.src, DAY1))[0])
        with pytest.raises(ResticError):
            list(r.hashes(backed.second, src, b"2026/01/01"))
    assert manifest(backed.repo) == before
    # The check can fail: restic without --no-lock writes (and removes) a lock even to read.
    run_restic(backed.repo, backed.password, "snapshots")
    assert manifest(backed.repo)["locks"] != before["locks"]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="a network namespace of its own needs root and unshare (util-linux)")
def test_reads_need_no_network(backed: Backed, tmp_path: Path) -> None:
    offline = tmp_path / "restic-offline"  # restic in a network namespace with only lo, down
    offline.write_text('#!/bin/sh\nexec unshare --net restic "$@"\n')
    offline.chmod(0o755)
    links = subprocess.run(["unshare", "--net", "ip", "-o", "link"], capture_output=True,
                           text=True, check=True).stdout.splitlines()
    assert [line.split(":")[1].strip() for line in links] == ["lo"]
    r = Restic(str(backed.repo), backed.password, binary=str(offline))
    assert [i.id for i in r.snapshots([backed.second])] == [backed.second]
    assert len(list(r.listing(backed.second, str(backed.src)))) == len(tree_files(backed.src))
    assert len(list(r.hashes(backed.second, str(backed.src), DAY1))) == 3

