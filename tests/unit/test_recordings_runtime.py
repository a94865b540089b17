"""The recordings runtime (controller/runtime/recordings.py) on real small trees in tmp: a
store and one mirror, a fake wall clock. A night's copy that skipped files pages once with
their names and is journaled once; the copy catching up is ok, journaled; the status
document, ``lifeline status`` and /metrics show both; the trees are never written."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import cast

from prometheus_client import generate_latest

from controller.actuators.netlink import Netlink
from controller.config import parse_config
from controller.config.recordings import RecordingsConfig
from controller.core.snapshot import Snapshot
from controller.runtime.daemon import Daemon
from controller.runtime.journal import Journal, read_events
from controller.runtime.recordings import INDEX_FILE, RecordingsWatch
from exporters.metrics import registry_for
from exporters.recordings import recordings_lines
from exporters.status import status_document
from probes.recdisk import DiskReport, Volume
from tests.unit.daemonloop import looping
from tests.unit.rectrees import put, tree_state
from tests.unit.test_runtime import _config as _runtime_config
from tests.unit.test_runtime import _kernel

NOW = 1_796_000_000.0  # a fixed wall clock (Unix seconds), late 2026
NS = 10**9
HOUR = 3600.0
DAY = 86400.0


class Clock:
    def __init__(self) -> None:
        self.t = NOW

    def __call__(self) -> float:
        return self.t


def _ns(t: float) -> int:
    return int(t * NS)


def _disk(path: str) -> DiskReport:
    """A roomy volume (the real one under tmp is whatever the CI machine has)."""
    return DiskReport(Volume(path, None, 1000 * 2**30, 600 * 2**30, 500 * 2**30), None, ())


def _site(tmp_path: Path) -> tuple[Path, Path, list[str]]:
    """Three nights of recordings; the mirror lacks two of last night's."""
    store, nas = tmp_path / "store", tmp_path / "nas"
    names = []
    for night in (3, 2, 1):
        for hour in (19, 20, 23):
            rel = f"2026/11/{30 - night:02}/call-{night}-{hour}.wav"
            mtime = NOW - night * DAY + (hour - 24) * HOUR
            put(store, rel, 100 + hour, _ns(mtime))
            names.append(rel)
    for rel in names:
        if rel.endswith(("call-1-19.wav", "call-1-20.wav")):
            continue  # last night's copy skipped these two (and copied call-1-23)
        src = store / rel
        put(nas, rel, src.stat().st_size, src.stat().st_mtime_ns)
    return store, nas, names


def _cfg(store: Path, nas: Path) -> RecordingsConfig:
    return RecordingsConfig.model_validate({
        "store": {"path": str(store)}, "backups": [{"name": "nas", "folder": str(nas)}],
        "retention": "5y", "interval": "5m", "verify_days": 1})


def _snap(watch: RecordingsWatch, clock: Clock) -> Snapshot:
    return Snapshot(site="rome", version="1", dry_run=False, taken_at=clock.t, uptime=9.0,
                    recordings=watch.snapshot(clock.t))


def _moves(journal: Journal, check: str) -> list[str]:
    return [e.message for e in read_events(journal.path, limit=100, subject="nas")
            if e.message.startswith(f"recordings {check}:")]


async def test_a_night_that_skipped_files_pages_once_with_names_and_ok_when_caught_up(
        tmp_path: Path) -> None:
    store, nas, _ = _site(tmp_path)
    before = {"store": tree_state(store), "nas": tree_state(nas)}
    journal = Journal(tmp_path / "state" / "journal.sqlite3")
    clock = Clock()
    woken: list[int] = []
    watch = RecordingsWatch(_cfg(store, nas), journal, tmp_path / "state", clock,
                            lambda: woken.append(1), disk=_disk)
    try:
        snap = watch.snapshot(clock.t)
        assert snap.judged_at is None and not snap.findings  # nothing read yet
        await watch.check()
        missing = watch.snapshot(clock.t).finding("missing", "nas")
        assert missing is not None and missing.severity == "page"
        assert missing.value == 2
        assert missing.names == ("2026/11/29/call-1-19.wav", "2026/11/29/call-1-20.wav")
        assert "call-1-19.wav" in missing.reason
        # Nothing else is wrong: no false finding.
        assert [(f.check, f.subject) for f in watch.snapshot(clock.t).problems] == [
            ("missing", "nas")]
        assert woken, "the daemon is woken to publish the cycle"

        clock.t += 300
        await watch.check()  # the same page again: not journaled twice
        assert len(_moves(journal, "missing")) == 1
        assert "unknown -> page" in _moves(journal, "missing")[0]

        doc = status_document(_snap(watch, clock))["recordings"]
        nas_doc = next(s for s in doc["sources"] if s["name"] == "nas")
        assert nas_doc["files"] == 7 and nas_doc["available"] is True
        found = next(f for f in doc["findings"] if f["check"] == "missing")
        assert found["names"] == list(missing.names) and found["severity"] == "page"
        text = "\n".join(recordings_lines(doc))
        assert "call-1-19.wav" in text
        scraped = generate_latest(registry_for(lambda: _snap(watch, clock))).decode()
        assert 'lifeline_recordings_missing{backup="nas"} 2.0' in scraped
        assert ('lifeline_recordings_check_severity{check="missing",severity="page",'
                'subject="nas"} 1.0') in scraped
        assert 'lifeline_recordings_files{source="store"} 9.0' in scraped
        assert "call-1-20" not in scraped  # names never in labels

        # The copy catches up (this is the test writing the backup, not lifeline).
        for rel in ("2026/11/29/call-1-19.wav", "2026/11/29/call-1-20.wav"):
            shutil.copy2(store / rel, nas / rel)
        before["nas"] = tree_state(nas)
        clock.t += 300
        await watch.check()
        ok = watch.snapshot(clock.t).finding("missing", "nas")
        assert ok is not None and ok.severity == "ok" and ok.value == 0
        assert watch.snapshot(clock.t).problems == ()
        moves = _moves(journal, "missing")
        assert len(moves) == 2 and "page -> ok" in moves[1]
        scraped = generate_latest(registry_for(lambda: _snap(watch, clock))).decode()
        assert 'lifeline_recordings_missing{backup="nas"} 0.0' in scraped
        # verify_days 1 at a 5 min interval: a few files a cycle, all equal so far.
        assert watch.snapshot(clock.t).verifier is not None
        assert 'lifeline_recordings_verified_total{backup="nas"}' in scraped
    finally:
        await watch.stop()
        journal.close()
    assert tree_state(store) == before["store"] and tree_state(nas) == before["nas"]
    assert (tmp_path / "state" / INDEX_FILE).exists()


async def test_a_corrupt_copy_is_found_by_the_verifier_and_the_place_survives_a_restart(
        tmp_path: Path) -> None:
    """Same size, other bytes: only reading back finds it. The verifier's cursor, counts
    and corrupt copies are in the index file, so a new watch goes on from there."""
    store, nas, names = _site(tmp_path)
    for rel in ("2026/11/29/call-1-19.wav", "2026/11/29/call-1-20.wav"):
        shutil.copy2(store / rel, nas / rel)
    rot = nas / names[0]
    st = rot.stat()
    rot.write_bytes(b"x" * st.st_size)  # same size and mtime, other bytes
    os.utime(rot, ns=(st.st_mtime_ns, st.st_mtime_ns))
    cfg = _cfg(store, nas).model_copy(update={"verify_days": 1, "interval": DAY})
    journal = Journal(tmp_path / "state" / "journal.sqlite3")
    clock = Clock()
    watch = RecordingsWatch(cfg, journal, tmp_path / "state", clock, disk=_disk)
    try:
        await watch.check()  # interval = verify_days: every recording read this cycle
        snap = watch.snapshot(clock.t)
        corrupt = snap.finding("corrupt", "nas")
        assert corrupt is not None and corrupt.severity == "page"
        assert corrupt.names == (names[0],)
        assert snap.finding("mismatched", "nas").value == 0  # type: ignore[union-attr]
        nas_src = next(s for s in snap.sources if s.name == "nas")
        assert nas_src.verified == len(names) - 1
        assert snap.verifier is not None and snap.verifier.period_coverage == 1.0
    finally:
        await watch.stop()
    again = RecordingsWatch(cfg, journal, tmp_path / "state", clock, disk=_disk)
    try:
        clock.t += 60
        await again.check()
        snap = again.snapshot(clock.t)
        assert snap.finding("corrupt", "nas").names == (names[0],)  # type: ignore[union-attr]
        nas_src = next(s for s in snap.sources if s.name == "nas")
        assert nas_src.verified == 2 * (len(names) - 1)  # kept, and one more round
    finally:
        await again.stop()
        journal.close()


async def test_an_unmounted_mirror_is_one_finding_not_every_recording_missing(
        tmp_path: Path) -> None:
    store, nas, _ = _site(tmp_path)
    journal = Journal(tmp_path / "state" / "journal.sqlite3")
    clock = Clock()
    watch = RecordingsWatch(_cfg(store, nas), journal, tmp_path / "state", clock, disk=_disk)
    try:
        await watch.check()
        shutil.rmtree(nas)
        nas.mkdir()  # the mount point, empty
        clock.t += 300
        await watch.check()
        snap = watch.snapshot(clock.t)
        assert [(f.check, f.subject, f.severity) for f in snap.problems] == [
            ("available", "nas", "page")]
        assert "root empty" in snap.problems[0].reason
    finally:
        await watch.stop()
        journal.close()


async def _until(what: str, ok: Callable[[], bool], within: float = 10.0) -> None:
    for _ in range(int(within / 0.02)):
        if ok():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {within} s: {what}")


def _watch(daemon: Daemon) -> RecordingsWatch | None:
    return daemon.recordings  # read anew each time (a reload replaces it)


async def test_sighup_turns_the_recordings_check_on_changes_it_and_off(
        tmp_path: Path) -> None:
    """A reload adds the watch (its snapshot part appears), a changed section keeps it
    (and its index), a section removed stops it and its part of the status is gone."""
    store, nas, _ = _site(tmp_path)
    base = _runtime_config(tmp_path / "state")
    section = (f"recordings:\n  store: {{path: {store}}}\n"
               f"  backups: [{{name: nas, folder: {nas}}}]\n  retention: 5y\n")
    path = tmp_path / "lifeline.yaml"
    path.write_text(base)
    adapter = cast(Callable[[str | None], Netlink], _kernel().adapter)
    daemon = Daemon(parse_config(path.read_text()), netlink=adapter, start_probes=False,
                    config_path=path)
    assert _watch(daemon) is None
    async with looping(daemon):
        assert daemon.status()["recordings"] is None
        path.write_text(base + section)
        daemon.request_reload()
        await _until("recordings on", lambda: daemon.recordings is not None)
        watch = _watch(daemon)
        assert watch is not None
        await watch.check()
        await _until("the first check published", lambda: daemon.latest is not None
                     and daemon.latest.recordings is not None
                     and daemon.latest.recordings.judged_at is not None)
        path.write_text(base + section + "  interval: 10m\n")
        daemon.request_reload()
        await _until("the new interval", lambda: watch.cfg.interval == 600.0)
        assert daemon.recordings is watch  # the same watch, its verdict kept
        path.write_text(base)
        daemon.request_reload()
        await _until("recordings off", lambda: daemon.recordings is None)
        await _until("gone from the status", lambda: daemon.status()["recordings"] is None)
    reloads = [e.message for e in read_events(daemon.journal.path, 100, "action", "config")]
    assert any("recordings: on" in m for m in reloads)
    assert any("recordings: changed" in m for m in reloads)
    assert any("recordings: off" in m for m in reloads)


async def test_a_copy_that_did_not_run_is_stale_and_a_repository_that_is_not_there_is_down(
        tmp_path: Path) -> None:
    """The mirror's newest copy is two nights old and last night's recordings have waited
    past schedule + grace: one freshness page (not "missing" as well). A restic repository
    that is not there is one ``available`` page, read without a restic call."""
    store, nas, _ = _site(tmp_path)
    for f in (nas / "2026/11/29").iterdir():
        f.unlink()  # last night's copy did not run at all
    password = tmp_path / "pw"
    password.write_text("x\n")
    cfg = RecordingsConfig.model_validate({
        "store": {"path": str(store)},
        "backups": [{"name": "nas", "folder": str(nas)},
                    {"name": "offsite", "restic": {"repository": str(tmp_path / "no-repo"),
                                                   "password_file": str(password)}}],
        "retention": "5y"})
    journal = Journal(tmp_path / "state" / "journal.sqlite3")
    clock = Clock()
    clock.t += 8 * HOUR  # last night's first call (19:00) has waited 37 h, past 24 h + 2 h
    watch = RecordingsWatch(cfg, journal, tmp_path / "state", clock, disk=_disk)
    try:
        await watch.check()
        snap = watch.snapshot(clock.t)
        assert [(f.check, f.subject, f.severity) for f in snap.problems] == [
            ("freshness", "nas", "page"), ("available", "offsite", "page")]
        assert "stale" in snap.problems[0].reason
        assert "no_repository" in snap.problems[1].reason
        assert snap.finding("missing", "nas").value == 0  # type: ignore[union-attr]
    finally:
        await watch.stop()
        journal.close()


async def test_a_cycle_that_fails_is_journaled_once_and_keeps_no_false_verdict(
        tmp_path: Path) -> None:
    """The index cannot be made (state_dir's place is a file): the error is journaled once,
    however many cycles fail, and no verdict is made up; once it works that is said too."""
    store, nas, _ = _site(tmp_path)
    blocker = tmp_path / "state-file"
    blocker.write_text("not a folder\n")
    journal = Journal(tmp_path / "journal.sqlite3")
    clock = Clock()
    watch = RecordingsWatch(_cfg(store, nas), journal, blocker, clock, disk=_disk)
    try:
        assert await watch.check() is None
        assert await watch.check() is None
        failed = watch.error
        assert failed is not None and watch.snapshot(clock.t).judged_at is None
        errors = read_events(journal.path, 100, "error", "recordings")
        assert len(errors) == 1 and "check failed" in errors[0].message
        blocker.unlink()
        blocker.mkdir()
        snap = await watch.check()
        assert snap is not None and snap.judged_at == clock.t and watch.error is None
        assert [e.message for e in read_events(journal.path, 100, "action", "recordings")] == [
            "check works again"]
    finally:
        await watch.stop()
        journal.close()
