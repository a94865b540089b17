"""``lifeline recordings verify`` run for real (``python -m controller``) against a generated
store, a mirror folder and a restic repository made by the test.

The store holds, within the window: an equal recording, one the mirror lacks, one the mirror
holds cut short (another size), one the mirror holds with one byte flipped (the same size:
only the SHA-256 finds it), a name that is not UTF-8, and the newest; one older than
``--since`` that the mirror lacks and holds wrong (ignored); and one added after the restic
backup (missing there only). Each finding is asserted exactly, in text and JSON, with the
exit codes; and that no tree changed (paths, sizes, mtimes, and the files' atimes: the read
is O_NOATIME).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_restic import backup, run_restic, write_recording
from tests.unit.test_config import BASE

pytestmark = pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed")

WORKTREE = Path(__file__).resolve().parents[2]
HOUR = 3600 * 10**9
DAY = 24 * HOUR
NOW = time.time_ns()
D_OLD = b"old"  # folder names do not matter to the checks: mtimes do
D_WEEK = b"week"
D_NEW = b"new"


@dataclass(frozen=True)
class Site:
    store: Path
    mirror: Path
    repo: Path
    password: Path
    config: Path

    def config_with(self, tmp: Path, change: Callable[[dict[str, Any]], None]) -> Path:
        data = yaml.safe_load(self.config.read_text())
        change(data["recordings"])
        path = tmp / "changed.yaml"
        path.write_text(yaml.safe_dump(data))
        return path


def put(root: Path, rel: bytes, size: int, mtime_ns: int) -> bytes:
    full = os.path.join(os.fsencode(root), rel)
    write_recording(full, size, mtime_ns)
    return full


def copy(src_root: Path, dst_root: Path, rel: bytes) -> bytes:
    src = os.path.join(os.fsencode(src_root), rel)
    dst = os.path.join(os.fsencode(dst_root), rel)
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy2(src, dst)  # keeps the mtime, as rsync -a does
    return dst


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    base = tmp_path_factory.mktemp("verify")
    store, mirror, repo, password = (base / "store", base / "mirror", base / "repo",
                                     base / "password")
    store.mkdir()
    mirror.mkdir()
    password.write_text("verify the recordings\n")
    week = [b"equal.wav", b"missing.wav", b"short.wav", b"flip.wav", b"caf\xe9-latin1.wav"]
    for i, name in enumerate(week):
        put(store, D_WEEK + b"/" + name, 4000 + 100 * i, NOW - 3 * DAY + i * 10**9)
    put(store, D_OLD + b"/old.wav", 5000, NOW - 10 * DAY)
    put(store, D_NEW + b"/newest.wav", 3000, NOW - DAY)
    for name in [b"equal.wav", b"short.wav", b"flip.wav", b"caf\xe9-latin1.wav"]:
        copy(store, mirror, D_WEEK + b"/" + name)
    copy(store, mirror, D_NEW + b"/newest.wav")
    copy(store, mirror, D_OLD + b"/old.wav")
    short = os.path.join(os.fsencode(mirror), D_WEEK, b"short.wav")
    st = os.stat(short)
    os.truncate(short, 1000)
    os.utime(short, ns=(st.st_atime_ns, st.st_mtime_ns))
    for rel in (D_WEEK + b"/flip.wav", D_OLD + b"/old.wav"):  # same size, one byte flipped
        path = os.path.join(os.fsencode(mirror), rel)
        st = os.stat(path)
        with open(path, "r+b") as f:
            first = f.read(1)
            f.seek(0)
            f.write(bytes([first[0] ^ 0xFF]))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    run_restic(repo, password, "init", "-q")
    backup(repo, password, store)
    late = D_WEEK + b"/late.wav"  # after the backup: restic lacks it, the mirror holds it
    put(store, late, 2500, NOW - 2 * DAY)
    copy(store, mirror, late)
    for root in (store, mirror):  # atimes before mtimes: a plain read would move them
        for folder, _dirs, names in os.walk(os.fsencode(root)):
            for name in names:
                full = os.path.join(folder, name)
                st = os.lstat(full)
                os.utime(full, ns=(st.st_mtime_ns - HOUR, st.st_mtime_ns), follow_symlinks=False)
    config = base / "lifeline.yaml"
    data = dict(BASE, state_dir=str(base / "state"), recordings={
        "store": {"path": str(store)},
        "backups": [{"name": "nas", "folder": str(mirror)},
                    {"name": "offsite", "restic": {
                        "repository": str(repo), "password_file": str(password),
                        "binary": shutil.which("restic"), "timeout": "120s"}}],
        "retention": "5y",
    })
    config.write_text(yaml.safe_dump(data))
    return Site(store, mirror, repo, password, config)


def verify(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(WORKTREE))
    return subprocess.run(
        [sys.executable, "-m", "controller", "recordings", "verify", "-c", str(config), *args],
        capture_output=True, text=True, env=env, cwd=WORKTREE, timeout=300, check=False,
        stdin=subprocess.DEVNULL)


def tree_state(root: Path, *, atimes: bool) -> dict[bytes, tuple[int, ...]]:
    """Every entry: mode, size, mtime (and a file's atime)."""
    out: dict[bytes, tuple[int, ...]] = {}
    base = os.fsencode(root)
    for folder, dirs, names in os.walk(base):
        for name in dirs + names:
            full = os.path.join(folder, name)
            st = os.lstat(full)
            key = os.path.relpath(full, base)
            if atimes and stat.S_ISREG(st.st_mode):
                out[key] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_atime_ns)
            else:
                out[key] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture
def unchanged(site: Site) -> Any:
    """The trees after the test are what they were before it (files' atimes included)."""
    before = [tree_state(site.store, atimes=True), tree_state(site.mirror, atimes=True),
              tree_state(site.repo, atimes=False)]
    yield
    after = [tree_state(site.store, atimes=True), tree_state(site.mirror, atimes=True),
             tree_state(site.repo, atimes=False)]
    assert after == before


def test_each_finding_exactly_in_json(site: Site, unchanged: None) -> None:
    done = verify(site.config, "--json")
    assert done.returncode == 1, done.stderr
    assert done.stderr == ""  # not a terminal, no --progress: no progress display
    doc = json.loads(done.stdout)
    assert doc["exit"] == 1 and doc["error"] is None
    assert doc["window"]["files"] == 7  # the week's five, late, newest: not old.wav
    assert doc["store_problems"] == 0
    nas, offsite = doc["backups"]
    assert (nas["name"], nas["available"], offsite["name"], offsite["available"]) == (
        "nas", True, "offsite", True)
    assert nas["missing_paths"] == ["week/missing.wav"]
    assert nas["size_different_paths"] == [
        {"path": "week/short.wav", "store_size": 4200, "backup_size": 1000}]
    assert [p["path"] for p in nas["sha_different_paths"]] == ["week/flip.wav"]
    assert nas["sha_different_paths"][0]["detail"].startswith("sha256 copy ")
    assert (nas["unreadable"], nas["problems"], nas["waiting"]) == (0, 0, 0)
    assert (nas["checked"], nas["equal"], nas["findings"]) == (7, 4, 3)
    assert offsite["missing_paths"] == ["week/late.wav"]
    assert offsite["snapshot"] is not None and len(offsite["snapshot"]) == 64
    assert (offsite["size_different"], offsite["sha_different"], offsite["unreadable"]) == (
        0, 0, 0)
    assert (offsite["checked"], offsite["equal"], offsite["findings"]) == (7, 6, 1)
    assert doc["findings"] == 4


def test_the_text_report_names_each_finding(site: Site, unchanged: None) -> None:
    done = verify(site.config, "--progress")
    assert done.returncode == 1, done.stderr
    out = done.stdout
    assert "store " + str(site.store) + ": 7 recordings" in out
    assert "(--since 1w)" in out
    assert ("backup nas (folder " + str(site.mirror) + "): 3 findings: 7 checked, 1 missing, "
            "1 size different, 1 SHA-256 different, 0 unreadable, 4 equal by SHA-256") in out
    assert "  missing (1):\n    week/missing.wav\n" in out
    assert "    week/short.wav (store 4200 B, backup 1000 B)\n" in out
    assert "    week/flip.wav (sha256 copy " in out
    assert "): 1 finding: 7 checked, 1 missing, 0 size different" in out
    assert "  missing (1):\n    week/late.wav\n" in out
    assert "old.wav" not in out and "caf" not in out  # ignored, and equal: not named
    assert out.rstrip().endswith("verify: 4 findings (exit 1)")
    assert "files hashed" in done.stderr and "MB/s" in done.stderr  # --progress


def test_a_window_with_nothing_wrong_is_exit_0(site: Site, unchanged: None) -> None:
    done = verify(site.config, "--since", "30h")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verify: all 1 recordings since" in done.stdout
    only = verify(site.config, "--since", "7d", "--backup", "nas", "--json")
    doc = json.loads(only.stdout)
    assert only.returncode == 1 and [b["name"] for b in doc["backups"]] == ["nas"]


def test_a_non_utf8_name_and_a_symlink_in_a_mirror_of_our_own(site: Site, tmp_path: Path) -> None:
    # The non-UTF-8 name's copy is changed, so that the name is reported; equal.wav's copy
    # is a symlink to the original (same bytes): never followed, so not "equal".
    mirror = tmp_path / "mirror2"
    shutil.copytree(site.mirror, mirror)
    name = os.path.join(os.fsencode(mirror), D_WEEK, b"caf\xe9-latin1.wav")
    with open(name, "r+b") as f:
        f.write(b"\x00")
    link = mirror / "week" / "equal.wav"
    link.unlink()
    link.symlink_to(site.store / "week" / "equal.wav")
    config = site.config_with(tmp_path, lambda rec: rec["backups"].__setitem__(
        0, {"name": "nas", "folder": str(mirror)}))
    done = verify(config, "--json", "--backup", "nas")
    doc = json.loads(done.stdout)
    nas = doc["backups"][0]
    assert [p["path"] for p in nas["sha_different_paths"]] == [
        "week/caf\\xe9-latin1.wav", "week/flip.wav"]
    assert [(p["path"], p["kind"]) for p in nas["problem_paths"]] == [
        ("week/equal.wav", "symlink")]
    assert nas["missing_paths"] == ["week/equal.wav", "week/missing.wav"]
    assert (done.returncode, nas["equal"], nas["findings"]) == (1, 2, 6)  # 2+1+2+1


def test_what_cannot_be_checked_is_exit_2_with_a_clear_error(site: Site, tmp_path: Path,
                                                             unchanged: None) -> None:
    done = verify(tmp_path / "nope.yaml")
    assert done.returncode == 2 and "nope.yaml" in done.stderr and done.stdout == ""

    unmounted = tmp_path / "unmounted"
    unmounted.mkdir()  # a mount point with nothing mounted: empty, not "all missing"
    config = site.config_with(tmp_path, lambda rec: rec["backups"][0].__setitem__(
        "folder", str(unmounted)))
    done = verify(config, "--json")
    doc = json.loads(done.stdout)
    assert done.returncode == 2
    assert doc["backups"][0]["available"] is False
    assert "holds no recording" in doc["backups"][0]["why"]
    assert doc["backups"][0]["missing"] == 0
    assert doc["backups"][1]["missing_paths"] == ["week/late.wav"]  # the other one is checked

    config = site.config_with(tmp_path, lambda rec: rec["backups"][1]["restic"].__setitem__(
        "password_file", str(tmp_path / "no-password")))
    done = verify(config, "--backup", "offsite")
    assert done.returncode == 2
    assert (f"backup offsite (restic {site.repo}): COULD NOT CHECK: cannot read the restic "
            f"password file {tmp_path / 'no-password'}: No such file or directory") in done.stdout

    config = site.config_with(tmp_path, lambda rec: rec["store"].__setitem__(
        "path", str(tmp_path / "no-store")))
    done = verify(config)
    assert done.returncode == 2
    assert f"the store {tmp_path / 'no-store'} does not exist" in done.stderr

    empty = tmp_path / "empty-store"
    empty.mkdir()
    config = site.config_with(tmp_path, lambda rec: rec["store"].__setitem__("path", str(empty)))
    done = verify(config)
    assert done.returncode == 2 and "holds no recording matching *.wav" in done.stderr

    done = verify(site.config, "--backup", "nsa")
    assert done.returncode == 2 and "no backup 'nsa' (did you mean 'nas'?)" in done.stderr
