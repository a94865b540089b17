"""The daemon serves the recordings RAID: the store's volume lies on md0 (a sample /sys whose
``dev/block/MAJ:MIN`` of the store's real device leads to md0, and a sample /proc/mdstat),
read by the real ``probes.recdisk.read_disk`` in the daemon's RecordingsWatch worker,
judged, published and scraped. Healthy: ``raid_degraded`` 0 and the raid check ok; then the
mdstat says [2/1] [U_] with sdb1 failed: ``raid_degraded`` 1, the raid check pages, the
status document names the failed disk; then the array is rebuilt: healthy again, and each
move is journaled once. No md array is touched (there is none in the lab): only the sample
files change. The daemon runs in-process on the unit tests' kernel in memory.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from prometheus_client import generate_latest

from controller.actuators.netlink import Netlink
from controller.config import parse_config
from controller.core.recsnap import RecordingsSnap
from controller.runtime.daemon import Daemon
from controller.runtime.journal import read_events
from exporters.metrics import CATALOG, REC_RAID, registry_for
from probes.recdisk import DiskReport, read_disk
from tests.unit.daemonloop import looping
from tests.unit.rectrees import put, tree_state
from tests.unit.test_runtime import _config, _kernel

NS = 10**9
HOUR = 3600

HEALTHY = """Personalities : [raid1]
md0 : active raid1 sdb1[1] sda1[0]
      976630336 blocks super 1.2 [2/2] [UU]
      bitmap: 0/8 pages [0KB], 65536KB chunk

unused devices: <none>
"""
DEGRADED = """Personalities : [raid1]
md0 : active raid1 sdb1[1](F) sda1[0]
      976630336 blocks super 1.2 [2/1] [U_]
      bitmap: 3/8 pages [12KB], 65536KB chunk

unused devices: <none>
"""
REBUILT = """Personalities : [raid1]
md0 : active raid1 sdc1[2] sda1[0]
      976630336 blocks super 1.2 [2/2] [UU]
      bitmap: 0/8 pages [0KB], 65536KB chunk

unused devices: <none>
"""


def md_sysfs(base: Path, on: Path) -> Path:
    """A /sys (the kernel's layout, links as in /sys/dev/block) where the filesystem holding
    ``on`` is md0, a raid1 of sda1 and sdb1 (and sdc1, a spare disk)."""
    sys = base / "sys"
    blk = sys / "devices" / "virtual" / "block"
    disks = sys / "devices" / "pci0000:00" / "0000:00:1f.2" / "ata1" / "host0" / "block"
    for disk in ("sda", "sdb", "sdc"):
        (disks / disk / f"{disk}1").mkdir(parents=True)
        (disks / disk / f"{disk}1" / "partition").write_text("1\n")
    (blk / "md0" / "md").mkdir(parents=True)
    (blk / "md0" / "slaves").mkdir()
    for part in ("sda1", "sdb1"):
        (blk / "md0" / "slaves" / part).symlink_to(
            f"../../../../pci0000:00/0000:00:1f.2/ata1/host0/block/{part[:3]}/{part}")
    dev = os.stat(on).st_dev
    (sys / "dev" / "block").mkdir(parents=True)
    (sys / "dev" / "block" / f"{os.major(dev)}:{os.minor(dev)}").symlink_to(
        "../../devices/virtual/block/md0")
    return sys


def md_disk(base: Path, on: Path, mdstat: str = HEALTHY) -> tuple[Callable[[str], DiskReport],
                                                                   Path]:
    """The daemon's disk reader on a sample /sys and /proc/mdstat (returned: change it)."""
    sys = md_sysfs(base, on)
    proc = base / "mdstat"
    proc.write_text(mdstat)
    return functools.partial(read_disk, mdstat_path=str(proc), sys_root=str(sys)), proc


def _daemon(tmp_path: Path, store: Path, nas: Path,
            disk: Callable[[str], DiskReport]) -> Daemon:
    recordings = f"""
recordings:
  store: {{path: {store}}}
  backups:
    - {{name: nas, folder: {nas}}}
  retention: 5y
  interval: 1s
  full_scan_every: 1h
"""
    path = tmp_path / "lifeline.yaml"
    path.write_text(_config(tmp_path / "state") + recordings)
    adapter = cast(Callable[[str | None], Netlink], _kernel().adapter)
    return Daemon(parse_config(path.read_text()), netlink=adapter, start_probes=False,
                  config_path=path, recordings_disk=disk)


async def _until(daemon: Daemon, what: str, ok: Callable[[RecordingsSnap], bool],
                 within: float = 30.0) -> RecordingsSnap:
    start = time.monotonic()
    while True:
        snap = daemon.latest
        if snap is not None and snap.recordings is not None and ok(snap.recordings):
            return snap.recordings
        assert time.monotonic() - start < within, f"not within {within} s: {what}"
        await asyncio.sleep(0.1)


def _raid(severity: str) -> Callable[[RecordingsSnap], bool]:
    def ok(r: RecordingsSnap) -> bool:
        f = r.finding("raid", "md0")
        return f is not None and f.severity == severity
    return ok


def _scrape(daemon: Daemon) -> str:
    return generate_latest(registry_for(lambda: daemon.latest)).decode()


def _raid_series(scraped: str) -> dict[str, str]:
    return {line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1] for line in scraped.splitlines()
            if line.startswith(("lifeline_recordings_raid_degraded{",
                                 'lifeline_recordings_check_severity{check="raid"'))}


async def test_a_degraded_array_under_the_store_pages_and_is_served_then_recovers(
        tmp_path: Path) -> None:
    now = time.time()
    store, nas = tmp_path / "site" / "store", tmp_path / "site" / "nas"
    for i, rel in enumerate(("2026/12/02/a.wav", "2026/12/03/b.wav")):
        mtime = int((now - (30 - i) * HOUR) * NS)
        put(store, rel, 1000 + i, mtime)
        put(nas, rel, 1000 + i, mtime)
    trees = {p: tree_state(p) for p in (store, nas)}
    disk, mdstat = md_disk(tmp_path / "host", store)
    assert disk(str(store)).arrays[0].name == "md0"  # the sample /sys leads there
    daemon = _daemon(tmp_path, store, nas, disk)
    async with looping(daemon):
        assert daemon.recordings is not None
        daemon.recordings.start()
        healthy = await _until(daemon, "md0 healthy", _raid("ok"))
        assert healthy.problems == (), [f.reason for f in healthy.problems]
        scraped = _scrape(daemon)
        assert 'lifeline_recordings_raid_degraded{array="md0"} 0.0' in scraped
        assert _raid_series(scraped)[
            'lifeline_recordings_check_severity{check="raid",severity="ok",subject="md0"}'
        ] == "1.0"
        raid_metrics = [m.name for m in CATALOG if m.when == REC_RAID]
        assert raid_metrics and all(f"\n{m}{{" in scraped for m in raid_metrics)

        mdstat.write_text(DEGRADED)  # sdb1 failed: one disk left under the recordings
        degraded = await _until(daemon, "md0 degraded", _raid("page"))
        found = degraded.finding("raid", "md0")
        assert found is not None and found.value == 1.0
        assert "degraded (raid1 [2/1] [U_]); failed: sdb1" in found.reason
        assert [(f.check, f.subject) for f in degraded.problems] == [("raid", "md0")]
        series = _raid_series(_scrape(daemon))
        assert series['lifeline_recordings_raid_degraded{array="md0"}'] == "1.0"
        assert series['lifeline_recordings_check_severity{check="raid",severity="page",'
                      'subject="md0"}'] == "1.0"
        assert series['lifeline_recordings_check_severity{check="raid",severity="ok",'
                      'subject="md0"}'] == "0.0"
        doc = daemon.status()["recordings"]
        assert doc["worst"] == "page"
        assert doc["disk"]["raid"] == [{"name": "md0", "active": True, "degraded": True,
                                        "failed_devices": ["sdb1"],
                                        "detail": "raid1 [2/1] [U_]"}]
        raid_doc = next(f for f in doc["findings"] if f["check"] == "raid")
        assert raid_doc["severity"] == "page" and "sdb1" in raid_doc["reason"]

        mdstat.write_text(REBUILT)  # sdc1 took sdb1's place, the mirror is whole again
        await _until(daemon, "md0 rebuilt", _raid("ok"))
        series = _raid_series(_scrape(daemon))
        assert series['lifeline_recordings_raid_degraded{array="md0"}'] == "0.0"
        assert series['lifeline_recordings_check_severity{check="raid",severity="page",'
                      'subject="md0"}'] == "0.0"
        await asyncio.sleep(1.5)  # more cycles over the same state: nothing new to say
    moves = [e.message for e in read_events(tmp_path / "state" / "journal.sqlite3",
                                            limit=200, subject="md0")]
    assert len(moves) == 2, moves  # degraded once, healthy again once
    assert "ok -> page" in moves[0] and "sdb1" in moves[0] and "page -> ok" in moves[1]
    for p, before in trees.items():
        assert tree_state(p) == before, f"{p} was changed"
