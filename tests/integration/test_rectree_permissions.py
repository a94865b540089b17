"""Real permission errors in a recordings tree, seen by a scan that runs unprivileged.

Root bypasses file permissions, so each scan runs in a forked child that dropped to
``nobody`` (setgroups/setgid/setuid) before scanning; the parent (root) sets the modes and
checks that nothing in the tree changed. What a scan may not read is a problem of its own,
never a removal: the index keeps those files. A file whose content nobody may read is no
problem for the walk at all (it only ``lstat``s; reading is the verification's job).
"""

from __future__ import annotations

import os
import pickle
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from probes.recfiles import ProblemKind
from probes.recindex import RecIndex
from tests.unit.rectrees import held, put, tombstones, tree_state

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="dropping to an unprivileged user needs root")

NOBODY = 65534
OLD = 1_700_000_000 * 10**9


def _as_nobody(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a forked child as nobody; its result (or its error) comes back."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            data = pickle.dumps(("ok", fn()))
        except BaseException as exc:
            data = pickle.dumps(("error", f"{type(exc).__name__}: {exc}"))
        with os.fdopen(w, "wb") as f:
            f.write(data)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    kind, value = pickle.loads(data)
    assert kind == "ok", value
    return value


@pytest.fixture
def site() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="rectree-perm-") as base:
        os.chmod(base, 0o755)
        root = Path(base) / "store"
        for d in ("2025/01/01", "2025/01/02", "2025/02/01"):
            for i in range(3):
                put(root, f"{d}/c{i}.wav", i + 1, OLD)
        state = Path(base) / "state"
        state.mkdir(mode=0o777)
        os.chmod(state, 0o777)
        try:
            yield Path(base)
        finally:  # give root's rmtree its way back in
            for dirpath, _, _ in os.walk(base):
                os.chmod(dirpath, 0o755)
            os.chmod(root, 0o755)


def _scan(base: Path, *, full: bool) -> Callable[[], dict[str, Any]]:
    def scan() -> dict[str, Any]:
        with RecIndex(base / "state" / "index.sqlite") as index:
            r = index.scan_tree("store", base / "store", ["*.wav"], now_ns=OLD + 10**15,
                                full=full)
            return {"problems": [(p.path, p.kind, p.detail) for p in r.problems],
                    "removed": r.removed, "files": r.files, "root": r.root_state,
                    "held": held(index, "store"), "tombstones": tombstones(index, "store")}
    return scan


def test_what_nobody_may_read_is_a_problem_never_a_removal(site: Path) -> None:
    root = site / "store"
    first = _as_nobody(_scan(site, full=False))
    assert (first["files"], first["problems"]) == (9, [])

    os.chmod(root / "2025" / "01" / "02", 0o000)  # may not list it
    os.chmod(root / "2025" / "02", 0o644)  # may list it, not enter it
    os.chmod(root / "2025" / "01" / "01" / "c0.wav", 0o000)  # content unreadable: no matter
    before = tree_state(root)
    second = _as_nobody(_scan(site, full=True))
    assert tree_state(root) == before
    assert sorted((p, k) for p, k, _ in second["problems"]) == [
        (b"2025/01/02", ProblemKind.PERMISSION), (b"2025/02/01", ProblemKind.PERMISSION)]
    assert all("Permission denied" in d for _, _, d in second["problems"])
    assert (second["removed"], second["files"], second["root"]) == (0, 9, "ok")
    assert second["held"] == first["held"] and second["tombstones"] == set()

    os.chmod(root / "2025" / "01" / "02", 0o755)
    os.chmod(root / "2025" / "02", 0o755)
    third = _as_nobody(_scan(site, full=False))  # the dirty ones are retried by themselves
    assert (third["problems"], third["removed"], third["files"]) == ([], 0, 9)


def test_a_root_nobody_may_list_is_unavailable_and_changes_nothing(site: Path) -> None:
    root = site / "store"
    first = _as_nobody(_scan(site, full=False))
    os.chmod(root, 0o311)  # enter, not list
    before = tree_state(root)
    second = _as_nobody(_scan(site, full=True))
    assert tree_state(root) == before
    assert second["root"] == "missing"
    assert [(p, k) for p, k, _ in second["problems"]] == [(b"", ProblemKind.PERMISSION)]
    assert (second["removed"], second["held"]) == (0, first["held"])
