"""verify_restic against the real restic: equal, a changed original, a corrupt pack.

One repository per module (`restic init` costs ~3 s of key derivation), one backup of a small
generated tree; each test reads its own copy of the repository and compares against its own
copy of the tree, so a test that changes either harms no other. Few restic calls: one dump per
directory verified.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from probes.recverify import verify_restic
from probes.restic import Restic
from tests.integration.test_restic import backup, manifest, run_restic, sha256_of, write_recording

pytestmark = pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed")

D1, D2 = b"2026/12/03", b"2026/12/04"
T0 = 1_796_292_000_000_000_000
NAMES = [D1 + b"/c0de00-call.wav", D1 + b"/c0de01-call.wav", D1 + b"/caf\xe9-latin1.wav",
         D2 + b"/d00d00-call.wav"]


@dataclass(frozen=True)
class Repo:
    src: Path  # the tree as backed up (the root restic stores)
    repo: Path
    password: Path
    snapshot: str


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Repo:
    base = tmp_path_factory.mktemp("recverify")
    src, repo, password = base / "recordings", base / "repo", base / "password"
    password.write_text("verify me\n")
    for i, name in enumerate(NAMES):
        write_recording(os.path.join(os.fsencode(src), name), 3000 + 700 * i, T0 + i * 10**9)
    run_restic(repo, password, "init", "-q")
    return Repo(src, repo, password, backup(repo, password, src))


@pytest.fixture
def own(template: Repo, tmp_path: Path) -> tuple[Repo, Path]:
    """This test's copy of the repository, and its copy of the store (mtimes kept)."""
    repo = tmp_path / "repo"
    shutil.copytree(template.repo, repo, symlinks=True)
    store = tmp_path / "store"
    shutil.copytree(template.src, store, symlinks=True)
    return Repo(template.src, repo, template.password, template.snapshot), store


def restic_of(repo: Repo) -> Restic:
    return Restic(str(repo.repo), repo.password, cache_dir=None, timeout=60.0)


def test_every_copy_equal_with_one_dump_per_directory(own: tuple[Repo, Path]) -> None:
    repo, store = own
    before = manifest(repo.repo)
    got = verify_restic(restic_of(repo), repo.snapshot, str(repo.src), store, NAMES)
    assert [(v.path, v.ok, v.kind) for v in got] == [(n, True, "equal") for n in NAMES]
    assert manifest(repo.repo) == before  # read, never written (--no-lock)


def test_a_changed_original_is_different_and_a_new_one_missing(own: tuple[Repo, Path]) -> None:
    repo, store = own
    changed = os.path.join(os.fsencode(store), NAMES[1])
    body = bytearray(Path(os.fsdecode(changed)).read_bytes())
    body[100] ^= 0x01  # same size: only the SHA-256 tells
    with open(changed, "r+b") as f:
        f.write(bytes(body))
    write_recording(os.path.join(os.fsencode(store), D1, b"new.wav"), 10, T0)
    paths = [NAMES[0], NAMES[1], D1 + b"/new.wav"]
    got = verify_restic(restic_of(repo), repo.snapshot, str(repo.src), store, paths)
    assert [(v.ok, v.kind) for v in got] == [(True, "equal"), (False, "different"),
                                             (False, "missing_copy")]
    assert got[1].detail.endswith(f"!= original {sha256_of(changed)[:16]}...")


def _pack_of(repo: Repo, blob: str) -> tuple[Path, int, int]:
    for index in run_restic(repo.repo, repo.password, "list", "index").split():
        doc = json.loads(run_restic(repo.repo, repo.password, "cat", "index", index))
        for pack in doc["packs"]:
            for entry in pack["blobs"]:
                if entry["id"] == blob:
                    return (repo.repo / "data" / pack["id"][:2] / pack["id"],
                            entry["offset"], entry["length"])
    raise AssertionError(f"blob {blob} is in no index")


def test_a_corrupted_pack_is_a_corrupt_error_naming_restics_words(own: tuple[Repo, Path]) -> None:
    repo, store = own
    victim = NAMES[1]  # a small file is one blob, named by the SHA-256 of its bytes
    pack, offset, length = _pack_of(repo, sha256_of(os.path.join(os.fsencode(store), victim)))
    os.chmod(pack, 0o644)
    body = bytearray(pack.read_bytes())
    body[offset + length // 2] ^= 0xFF
    pack.write_bytes(bytes(body))
    got = verify_restic(restic_of(repo), repo.snapshot, str(repo.src), store, NAMES[:3])
    by_path = {v.path: v for v in got}
    assert (by_path[NAMES[0]].ok, by_path[NAMES[0]].kind) == (True, "equal")  # read before it
    bad = by_path[victim]
    assert (bad.ok, bad.kind) == (False, "error")
    assert bad.detail.startswith("restic: corrupt: ") and "ciphertext verification" in bad.detail
    assert all(not v.ok for v in got if v.path != NAMES[0])
