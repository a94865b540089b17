"""PURE: what the snapshot says of the call recordings, their backups and the recorder's disk.

Kept apart from controller.core.snapshot like the power pieces; ``Snapshot.recordings`` is
None when no ``recordings:`` section is configured. It holds what the tell side needs and
nothing it must compute: per source (the store, then each backup) its figures and last
scan, the verifier's progress, the volume and its RAID, and the verdict's findings (names
bounded: they are for the API and the status page, never for metric labels).
``recordings_snap`` builds it from the core's facts (controller.core.recordings) and the
verdict, so the runtime only converts probe results into facts and hands them over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from controller.core.recordings import (
    STORE,
    BackupFacts,
    RecordingsParams,
    RecordingsVerdict,
    StoreFacts,
    days_left,
    verify_plan,
)

__all__ = ["NAMES_KEPT", "DiskSnap", "FindingSnap", "RaidSnap", "RecSourceSnap",
           "RecordingsSnap", "ScanStats", "SourceInfo", "VerifierSnap", "recordings_snap"]

# Names a finding keeps in the snapshot (the counts stay exact): the index's own list limit,
# so the API shows all it was given, and a million missing files cannot bloat a snapshot.
NAMES_KEPT = 100


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """A source as configured: ``store`` or a backup's name, its kind and where it is."""

    name: str
    kind: str  # store, folder, restic
    where: str  # "/srv/recordings", "/mnt/nas/recordings", "/mnt/usb/restic"


@dataclass(frozen=True, slots=True)
class ScanStats:
    """A source's figures from the index and its last scan (probes.recindex, converted)."""

    files: int = 0
    bytes: int = 0
    at: float | None = None  # when the last scan (or restic listing) ended; wall clock
    seconds: float | None = None  # how long it took
    full: bool | None = None  # a full walk (else incremental: changed folders only)


@dataclass(frozen=True, slots=True)
class RecSourceSnap:
    """The store or one backup: what it holds and how it was last read."""

    name: str
    kind: str  # store, folder, restic
    where: str
    must_hold: bool  # a backup every recording must reach (False for the store)
    available: bool
    why_unavailable: str = ""
    files: int = 0
    bytes: int = 0
    newest_mtime: float | None = None  # the newest recording held (its mtime)
    oldest_mtime: float | None = None  # the oldest recording held
    last_run: float | None = None  # restic: the newest snapshot's time
    scanned_at: float | None = None
    scan_seconds: float | None = None
    scan_full: bool | None = None
    problems: int = 0  # entries the walk could not read
    verified: int = 0  # backups: copies read back and found equal (the running count)

    @property
    def is_store(self) -> bool:
        return self.name == STORE


@dataclass(frozen=True, slots=True)
class RaidSnap:
    name: str  # md0
    active: bool
    degraded: bool
    failed_devices: tuple[str, ...] = ()
    detail: str = ""  # "raid1 [2/1] [U_], recovery = 12.6%"


@dataclass(frozen=True, slots=True)
class DiskSnap:
    """The store's volume: what the recorder may still write and how long that lasts."""

    avail_bytes: int | None  # statvfs f_bavail: what the recorder (unprivileged) may write
    total_bytes: int | None
    free_bytes: int | None = None  # f_bfree (root's reserve included), when known
    days_left: float | None = None  # at the recent write rate; inf: nothing written lately
    write_bytes_per_day: float | None = None  # the recent write rate
    raid: tuple[RaidSnap, ...] = ()


@dataclass(frozen=True, slots=True)
class VerifierSnap:
    """The integrity check's progress: every recording read back once in ``verify_days``."""

    verify_days: float
    files_per_cycle: int
    read_bytes_per_s: float  # what that quota costs, averaged over a cycle
    verified_total: int  # copies read back and found equal, over every backup
    period_coverage: float  # 0..1: the store's recordings verified in this period


@dataclass(frozen=True, slots=True)
class FindingSnap:
    """One finding (controller.core.recordings.Finding) with its enums as their values."""

    check: str
    subject: str  # a backup, "store", or an md array
    severity: str  # ok, ticket, page
    value: float
    reason: str
    names: tuple[str, ...] = ()  # bounded (NAMES_KEPT); ``value`` keeps the exact count


@dataclass(frozen=True, slots=True)
class RecordingsSnap:
    judged_at: float | None  # when the verdict was made (None: no check cycle finished yet)
    sources: tuple[RecSourceSnap, ...] = ()  # the store first, then the backups as configured
    disk: DiskSnap | None = None
    verifier: VerifierSnap | None = None
    findings: tuple[FindingSnap, ...] = ()
    cycle_seconds: float | None = None  # how long the last check cycle took

    @property
    def backups(self) -> tuple[RecSourceSnap, ...]:
        return tuple(s for s in self.sources if not s.is_store)

    @property
    def store(self) -> RecSourceSnap | None:
        return next((s for s in self.sources if s.is_store), None)

    @property
    def problems(self) -> tuple[FindingSnap, ...]:
        return tuple(f for f in self.findings if f.severity != "ok")

    def finding(self, check: str, subject: str) -> FindingSnap | None:
        return next((f for f in self.findings if f.check == check and f.subject == subject),
                    None)


def recordings_snap(params: RecordingsParams, store: StoreFacts,
                    backups: Sequence[BackupFacts], verdict: RecordingsVerdict, *,
                    now: float, sources: Sequence[SourceInfo],
                    scans: Mapping[str, ScanStats], verify_days: float, interval: float,
                    verified_this_period: int = 0, disk_free_bytes: int | None = None,
                    cycle_seconds: float | None = None) -> RecordingsSnap:
    """The snapshot's part from one cycle's facts and verdict. ``sources`` lists the store
    and every configured backup (a backup with no facts yet shows as unavailable, "not
    read yet"); ``scans`` has each source's figures by name (absent: nothing known yet);
    ``verified_this_period`` is how many store recordings the verifier has read back since
    its rotation last started over (the coverage)."""
    facts = {b.name: b for b in backups}
    out: list[RecSourceSnap] = []
    for info in sources:
        scan = scans.get(info.name, ScanStats())
        snap = RecSourceSnap(info.name, info.kind, info.where,
                             must_hold=info.name != STORE and params.must(info.name),
                             available=False, why_unavailable="not read yet",
                             files=scan.files, bytes=scan.bytes, scanned_at=scan.at,
                             scan_seconds=scan.seconds, scan_full=scan.full)
        b = facts.get(info.name)
        if info.name == STORE:
            snap = replace(snap, available=store.available,
                           why_unavailable=store.why_unavailable,
                           newest_mtime=store.newest_mtime, oldest_mtime=store.oldest_mtime,
                           problems=store.problems)
        elif b is not None:
            snap = replace(snap, available=b.available, why_unavailable=b.why_unavailable,
                           newest_mtime=b.newest_mtime, oldest_mtime=b.oldest_mtime,
                           last_run=b.last_run, problems=b.problems, verified=b.verified)
        out.append(snap)

    disk: DiskSnap | None = None
    raid = tuple(RaidSnap(r.name, r.active, r.degraded, r.failed_devices, r.detail)
                 for r in store.raid)
    if store.free_bytes is not None or raid:
        rate = (store.written_recent_bytes / store.recent_window_s * 86400.0
                if store.recent_window_s > 0 else None)
        disk = DiskSnap(
            avail_bytes=store.free_bytes, total_bytes=store.total_bytes,
            free_bytes=disk_free_bytes,
            days_left=None if store.free_bytes is None else days_left(
                store.free_bytes, store.written_recent_bytes, store.recent_window_s),
            write_bytes_per_day=rate, raid=raid)

    total_bytes = scans.get(STORE, ScanStats()).bytes
    # Each verified recording is read from the store and from every configured backup.
    copies = sum(1 for info in sources if info.name != STORE)
    plan = verify_plan(store.files, total_bytes, verify_days, interval, copies)
    verifier = VerifierSnap(
        verify_days=verify_days, files_per_cycle=plan.files_per_cycle,
        read_bytes_per_s=plan.read_bytes_per_s,
        verified_total=sum(b.verified for b in backups),
        period_coverage=(min(1.0, verified_this_period / store.files) if store.files
                         else 1.0))

    findings = tuple(FindingSnap(f.check.value, f.subject, f.severity.value, f.value,
                                 f.reason, tuple(f.names[:NAMES_KEPT]))
                     for f in verdict.findings)
    return RecordingsSnap(judged_at=now, sources=tuple(out), disk=disk, verifier=verifier,
                          findings=findings, cycle_seconds=cycle_seconds)
