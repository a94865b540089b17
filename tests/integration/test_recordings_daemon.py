"""The daemon's recordings check against a generated store, a mirror folder and a real restic
repository made by the test (`restic init` + `restic backup`, password from a file).

The mirror has every kind of trouble a night's copy can leave: two recordings it skipped,
one with another size, one with the same size and other bytes (only the verifier's read
back finds it), and one that a later cleanup deleted before its legal time. Each is found,
named, and nothing else is (restic, holding all of it, is fresh and ok); every recordings
metric of the catalogue is served; the store, the mirror and the repository are exactly as
they were (paths, sizes, mtimes). The daemon runs in-process on the unit tests' kernel in
memory (no route is touched); restic is the peer. restic costs ~0.7 s a call: the first
cycle makes three (snapshots, ls, one dump), later ones one dump each.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from prometheus_client import generate_latest

from controller.actuators.netlink import Netlink
from controller.config import parse_config
from controller.config.recordings import RecordingsConfig
from controller.core.recsnap import RecordingsSnap
from controller.runtime.daemon import Daemon
from controller.runtime.journal import Journal, read_events
from controller.runtime.recordings import NEW_SNAPSHOTS_PER_CYCLE, RecordingsWatch
from exporters.metrics import CATALOG, RECORDINGS_WHEN, registry_for
from tests.integration.test_recordings_raid import _until, md_disk
from tests.integration.test_restic import run_restic, write_recording
from tests.unit.daemonloop import looping
from tests.unit.rectrees import tree_state
from tests.unit.test_runtime import _config, _kernel

pytestmark = pytest.mark.skipif(shutil.which("restic") is None,
                                reason="restic is not installed (Debian package restic)")

HOUR = 3600
DAY = 86400
NS = 10**9

ROT = "2026/11/01/a-rot.wav"  # first in the verifier's order: read back in the first cycle
EARLY = "2026/11/01/b-early.wav"  # the cleanup deletes it from the mirror: a retention breach
CHANGED = "2026/11/02/c-changed.wav"
SKIPPED = ("2026/12/03/d-skipped.wav", "2026/12/03/e-skipped.wav")


def _recordings(now: float) -> dict[str, tuple[int, float]]:
    """rel -> (size, mtime): a month back, then last night's copy (the newest one, 23:00,
    reached the mirror, the two before it did not)."""
    out = {ROT: (3000, now - 30 * DAY), EARLY: (2500, now - 30 * DAY + 60),
           "2026/11/01/c-fine.wav": (2000, now - 30 * DAY + 120),
           CHANGED: (4000, now - 29 * DAY), "2026/11/02/d-fine.wav": (1000, now - 29 * DAY)}
    out[SKIPPED[0]] = (1500, now - 9 * HOUR)
    out[SKIPPED[1]] = (1600, now - 8 * HOUR)
    out["2026/12/03/z-copied.wav"] = (1700, now - 4 * HOUR)
    return out


def _build(base: Path, now: float) -> tuple[Path, Path, Path, Path]:
    store, nas, repo, password = (base / "store", base / "nas", base / "repo",
                                  base / "restic.pw")
    for rel, (size, mtime) in _recordings(now).items():
        write_recording(store / rel, size, int(mtime * NS))
        if rel in SKIPPED:
            continue
        mirror = nas / rel
        mirror.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(store / rel, mirror)
    changed = nas / CHANGED
    st = changed.stat()
    changed.write_bytes(changed.read_bytes()[:-100])  # another size
    os.utime(changed, ns=(st.st_mtime_ns, st.st_mtime_ns))
    rot = nas / ROT
    st = rot.stat()
    rot.write_bytes(b"\0" * st.st_size)  # same size and mtime, other bytes
    os.utime(rot, ns=(st.st_mtime_ns, st.st_mtime_ns))
    password.write_text("lab recordings secret\n")
    password.chmod(0o600)
    run_restic(repo, password, "init", "-q")
    run_restic(repo, password, "backup", "-q", "--host", "recorder", str(store))
    return store, nas, repo, password


def _daemon(tmp_path: Path, store: Path, nas: Path, repo: Path, password: Path) -> Daemon:
    recordings = f"""
recordings:
  store: {{path: {store}}}
  backups:
    - {{name: nas, folder: {nas}}}
    - {{name: offsite, restic: {{repository: {repo}, password_file: {password},
       binary: {shutil.which("restic")}}}}}
  retention: 5y
  interval: 1s
  full_scan_every: 1h
  verify_days: 1
"""
    path = tmp_path / "lifeline.yaml"
    path.write_text(_config(tmp_path / "state") + recordings)
    adapter = cast(Callable[[str | None], Netlink], _kernel().adapter)
    # The store's volume on a healthy md0 (sample /sys and /proc/mdstat: the lab has no
    # array), so that the RAID series are served too; test_recordings_raid degrades it.
    disk, _ = md_disk(tmp_path / "host", store)
    return Daemon(parse_config(path.read_text()), netlink=adapter, start_probes=False,
                  config_path=path, recordings_disk=disk)


def _names(r: RecordingsSnap, check: str, subject: str) -> tuple[str, ...]:
    f = r.finding(check, subject)
    assert f is not None, (check, subject)
    return f.names


async def test_every_trouble_of_a_night_s_copy_is_found_named_and_served(
        tmp_path: Path) -> None:
    now = time.time()
    store, nas, repo, password = _build(tmp_path / "site", now)
    trees = {p: tree_state(p) for p in (store, nas, repo)}
    daemon = _daemon(tmp_path, store, nas, repo, password)
    async with looping(daemon):
        assert daemon.recordings is not None
        daemon.recordings.start()
        first = await _until(daemon, "the first cycle", lambda r: r.judged_at is not None,
                             60.0)
        assert _names(first, "missing", "nas") == SKIPPED
        assert _names(first, "mismatched", "nas") == (f"{CHANGED} (4000 bytes, 3900 in nas)",)
        assert _names(first, "corrupt", "nas") == (ROT,)
        pages = {(f.check, f.subject) for f in first.problems}
        assert pages == {("missing", "nas"), ("mismatched", "nas"), ("corrupt", "nas")}
        assert all(f.severity == "page" for f in first.problems)
        # restic holds all of it, fresh; its read-back of the same recording is equal.
        offsite = next(s for s in first.sources if s.name == "offsite")
        assert offsite.available and offsite.files == len(_recordings(now))
        fresh = first.finding("freshness", "offsite")
        assert fresh is not None and fresh.severity == "ok"
        assert offsite.last_run is not None and abs(offsite.last_run - now) < 120
        assert offsite.verified >= 1

        # A cleanup on the mirror deletes a recording five years too early.
        (nas / EARLY).unlink()
        trees[nas] = tree_state(nas)
        later = await _until(daemon, "the retention breach",
                             lambda r: bool(r.finding("gone", "nas")
                                            and r.finding("gone", "nas").value), 30.0)  # type: ignore[union-attr]
        assert _names(later, "gone", "nas") == (EARLY,)
        assert _names(later, "missing", "nas") == tuple(sorted((EARLY, *SKIPPED)))
        assert {(f.check, f.subject) for f in later.problems} == pages | {("gone", "nas")}

        scraped = generate_latest(registry_for(lambda: daemon.latest)).decode()
        for m in CATALOG:  # every documented recordings series is served
            if m.when in RECORDINGS_WHEN:
                assert f"\n{m.name}{{" in scraped or f"\n{m.name} " in scraped, m.name
        assert 'lifeline_recordings_missing{backup="nas"} 3.0' in scraped
        assert 'lifeline_recordings_corrupt{backup="nas"} 1.0' in scraped
        assert 'lifeline_recordings_dropped_early{backup="nas"} 1.0' in scraped
        assert 'lifeline_recordings_missing{backup="offsite"} 0.0' in scraped
        assert 'lifeline_recordings_raid_degraded{array="md0"} 0.0' in scraped
        assert "d-skipped" not in scraped and "a-rot" not in scraped  # names are no labels
        doc = daemon.status()["recordings"]
        assert {f["check"] for f in doc["findings"] if f["severity"] == "page"} == {
            "missing", "mismatched", "corrupt", "gone"}
        await asyncio.sleep(1.5)  # a few more cycles over the same trees
    events = read_events(tmp_path / "state" / "journal.sqlite3", limit=500, subject="nas")
    missing_moves = [e for e in events if e.message.startswith("recordings missing:")]
    assert len(missing_moves) == 1, [e.message for e in missing_moves]  # journaled once
    for p, before in trees.items():
        assert tree_state(p) == before, f"{p} was changed"


async def test_restic_snapshots_are_listed_newest_first_a_few_a_cycle_and_never_again(
        tmp_path: Path) -> None:
    """Four snapshots: the first cycle lists the newest three (freshness and the verifier
    know the newest at once), the second the last one, the third none (``restic ls`` is
    counted through a wrapper that logs each call's subcommand)."""
    now = time.time()
    store, repo, password = tmp_path / "store", tmp_path / "repo", tmp_path / "pw"
    password.write_text("lab recordings secret\n")
    run_restic(repo, password, "init", "-q")
    for i in range(NEW_SNAPSHOTS_PER_CYCLE + 1):
        write_recording(store / f"2026/12/0{i + 1}/call-{i}.wav", 1000 + i,
                        int((now - (5 - i) * DAY) * NS))
        run_restic(repo, password, "backup", "-q", "--host", "recorder", str(store))
    calls = tmp_path / "calls"
    wrapper = tmp_path / "restic-logged"
    wrapper.write_text(f'#!/bin/sh\nfor a in "$@"; do case "$a" in -*) ;; *) '
                       f'echo "$a" >> {calls}; break;; esac; done\n'
                       f'exec {shutil.which("restic")} "$@"\n')
    wrapper.chmod(0o755)
    cfg = RecordingsConfig.model_validate({
        "store": {"path": str(store)},
        "backups": [{"name": "offsite", "restic": {"repository": str(repo),
                                                   "password_file": str(password),
                                                   "binary": str(wrapper)}}],
        "retention": "5y", "verify_days": 30})
    before = {p: tree_state(p) for p in (store, repo)}
    journal = Journal(tmp_path / "state" / "journal.sqlite3")
    watch = RecordingsWatch(cfg, journal, tmp_path / "state", time.time)

    def ls_calls() -> int:
        return calls.read_text().split().count("ls") if calls.exists() else 0

    try:
        first = await watch.check()
        assert first is not None and ls_calls() == NEW_SNAPSHOTS_PER_CYCLE
        offsite = next(s for s in first.sources if s.name == "offsite")
        assert offsite.files == NEW_SNAPSHOTS_PER_CYCLE + 1  # the newest holds them all
        assert first.problems == (), [f.reason for f in first.problems]
        await watch.check()
        assert ls_calls() == NEW_SNAPSHOTS_PER_CYCLE + 1
        third = await watch.check()
        assert ls_calls() == NEW_SNAPSHOTS_PER_CYCLE + 1  # nothing new: no listing
        assert third is not None and third.problems == ()
    finally:
        await watch.stop()
        journal.close()
    assert {p: tree_state(p) for p in (store, repo)} == before
