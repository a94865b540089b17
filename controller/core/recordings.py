"""PURE: facts about the call recordings and their backups -> findings, each a number and a reason.

A lost recording cannot be made again, so this module asks one question of every fact:
*can a recording be lost because of it?* If yes the finding **pages**; if it is wrong but
every recording still has a good copy somewhere, it opens a **ticket**. In the operator's
words, per backup (a mirror folder or a restic repository) and for the store (the
recorder's own tree and disk):

1. **available**: a backup (or the store) that cannot be read at all (unmounted share,
   missing root, an empty root where files were, a repository restic cannot open) is
   **one** finding and the backup's other checks are not judged: an unmounted NAS is
   "nas unavailable", never "every recording missing from nas" as well. A must-hold backup
   unavailable pages (nothing proves the recordings reach it); the store unavailable pages.
2. **freshness**: the metric is the age of the newest recording the backup holds. It is
   **stale** when a recording newer than that (``pending_since``: the oldest store
   recording the backup's newest does not cover) has waited longer than ``schedule +
   grace`` (26 h for a daily copy): last night's copy did not run, and that recording
   exists only on the store: page. A quiet weekend with nothing new is not stale, however
   old the newest copy is. A restic repository also shows each run (a snapshot): no
   snapshot for ``schedule + grace`` while nothing was pending is a ticket (the job is
   broken, no recording is at risk yet).
3. **completeness**: ``missing`` recordings (older than the backup's last copy by the grace,
   yet not in it) and ``mismatched`` ones (there, with another size): each exists only on
   the store, so in a must-hold backup they page; a copy that skipped files is exactly the
   night the site must hear about. Names go to ``names`` (API, status), counts to ``value``.
4. **integrity**: ``corrupt`` copies (read back, SHA-256 differs from the original) page:
   the backup holds a copy that would restore garbage.
5. **retention**: ``gone`` (a backup dropped a recording younger than the legal
   retention) and ``lost`` (a recording left the store before any backup ever held it)
   page: the first is a legal breach, the second a recording lost for good.
6. **disk**: days left on the recordings volume at the recent write rate
   (``days_left``): at most ``page_days_left`` pages (the recorder stops recording when it
   is full), at most ``warn_days_left`` is a ticket; free space below ``min_free`` of the
   volume is a ticket.
7. **raid**: the Linux software RAID under the store: degraded or inactive pages (one more
   disk failure loses everything not yet copied); a failed member with redundancy
   restored (a spare took over) is a ticket (replace the disk).
8. **unreadable**: what the walk could not read in a tree (a folder or file lifeline may
   not read, an I/O error, a symlink it does not follow, a fifo where a recording should
   be) is a ticket naming each: a human must look, and whatever it hides from lifeline
   shows up as missing (and pages) if it is not in a backup. A file that vanished
   between listing and reading is a race, not a finding: the runtime leaves it out.

Findings on a backup that is not in ``must_hold`` never page: the site does not rely on
it, so its troubles are tickets. Every check of every subject yields a Finding, the good
ones with severity ``ok``, so the runtime has each number to export; ``problems`` are the
rest. No I/O and no clock: ``now`` (Unix seconds, like the files' mtimes) is an argument.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from controller.core.durations import format_duration

__all__ = [
    "BackupFacts",
    "Check",
    "Finding",
    "RaidFacts",
    "RecordingsParams",
    "RecordingsVerdict",
    "Severity",
    "StoreFacts",
    "VerifyPlan",
    "completeness_window",
    "days_left",
    "judge",
    "unavailable",
    "verify_plan",
    "verify_quota",
]

DAY = 86400.0
STORE = "store"  # the subject of the store's findings (a backup may not take this name)
_SHOWN_NAMES = 3  # names quoted in a reason; ``Finding.names`` carries all the facts had


class Severity(StrEnum):
    OK = "ok"
    TICKET = "ticket"  # wrong, but every recording still has a good copy
    PAGE = "page"  # a recording can be lost


class Check(StrEnum):
    """What a finding is about; the issue's five checks, split where one number is not
    enough (completeness is ``missing`` + ``mismatched``, retention ``gone`` + ``lost``,
    the disk ``disk_days`` + ``disk_free``)."""

    AVAILABLE = "available"
    FRESHNESS = "freshness"
    MISSING = "missing"
    MISMATCHED = "mismatched"
    CORRUPT = "corrupt"
    GONE = "gone"
    LOST = "lost"
    DISK_DAYS = "disk_days"
    DISK_FREE = "disk_free"
    RAID = "raid"
    UNREADABLE = "unreadable"


@dataclass(frozen=True, slots=True)
class RecordingsParams:
    """The config's numbers (controller.config.recordings fills them in); seconds."""

    retention: float  # the legal minimum a recording must be kept
    schedule: float = DAY  # one copy expected this often
    grace: float = 2 * 3600.0  # how late a copy may be, and how young a file not yet judged
    must_hold: frozenset[str] | None = None  # backups that must hold every recording; None: all
    warn_days_left: float = 14.0
    page_days_left: float = 3.0
    min_free: float = 0.05  # ratio of the volume

    @property
    def stale_after(self) -> float:
        return self.schedule + self.grace

    def must(self, backup: str) -> bool:
        return self.must_hold is None or backup in self.must_hold


@dataclass(frozen=True, slots=True)
class BackupFacts:
    """One backup as the runtime read it this cycle (from the index, restic and the verifier).

    Times are Unix seconds. Names are display strings (bounded lists: the counts are exact).
    """

    name: str
    available: bool = True
    why_unavailable: str = ""  # "root missing: /mnt/nas/recordings", "wrong password"
    newest_mtime: float | None = None  # the newest recording the backup holds
    newest_arrival: float | None = None  # when that copy arrived (status only)
    # The mtime of the oldest store recording newer than newest_mtime (None: nothing
    # newer): how long the oldest not-yet-copied recording has waited.
    pending_since: float | None = None
    last_run: float | None = None  # restic: the newest snapshot's time; a folder: None
    missing: int = 0
    missing_names: tuple[str, ...] = ()
    mismatched: int = 0
    mismatched_names: tuple[str, ...] = ()
    gone_young: int = 0
    gone_names: tuple[str, ...] = ()
    verified: int = 0  # copies read back and found equal (the verifier's running count)
    corrupt: int = 0
    corrupt_names: tuple[str, ...] = ()
    oldest_mtime: float | None = None  # the oldest recording held (a metric)
    problems: int = 0  # what the walk could not read (probes.recfiles.ScanProblem), counted
    problem_names: tuple[str, ...] = ()  # "2026/12/03: permission ([Errno 13] ...)"


@dataclass(frozen=True, slots=True)
class RaidFacts:
    """One Linux software RAID array under the store (probes.recdisk.MdArray, converted)."""

    name: str  # md0
    active: bool = True
    degraded: bool = False
    failed_devices: tuple[str, ...] = ()  # members marked (F)
    detail: str = ""  # "raid1 [2/1] [U_], recovery = 12.6%"


@dataclass(frozen=True, slots=True)
class StoreFacts:
    """The recorder's tree and the volume it lives on."""

    available: bool = True
    why_unavailable: str = ""
    files: int = 0
    newest_mtime: float | None = None
    oldest_mtime: float | None = None
    lost_young: int = 0  # gone from the store, younger than the retention, in no backup ever
    lost_names: tuple[str, ...] = ()
    free_bytes: int | None = None  # what the recorder may still write (statvfs f_bavail)
    total_bytes: int | None = None
    written_recent_bytes: int = 0  # bytes of recordings written in the recent window
    recent_window_s: float = 0.0  # 0: no write rate known yet
    raid: tuple[RaidFacts, ...] = ()
    problems: int = 0  # as BackupFacts.problems
    problem_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's outcome for one subject (a backup, ``store``, or an md array)."""

    check: Check
    subject: str
    severity: Severity
    value: float  # the check's number: an age in seconds, a count, days, a ratio, 0/1
    reason: str  # an engineer's note: "nas: 3 recordings older than ... are missing: ..."
    names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordingsVerdict:
    """Every finding of one cycle, in a stable order (store first, then backups as given)."""

    findings: tuple[Finding, ...] = field(default_factory=tuple)

    @property
    def problems(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is not Severity.OK)

    @property
    def pages(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.PAGE)

    @property
    def tickets(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.TICKET)

    @property
    def worst(self) -> Severity:
        if self.pages:
            return Severity.PAGE
        return Severity.TICKET if self.tickets else Severity.OK

    def of(self, check: Check, subject: str) -> Finding | None:
        return next((f for f in self.findings if f.check is check and f.subject == subject),
                    None)


def _age(seconds: float) -> str:
    """An age as an on-call engineer reads it: ``2d3h``, ``26h5m``, ``40m``, ``12s``."""
    if math.isinf(seconds):
        return "ever"
    whole = max(0, int(seconds))
    if whole >= 2 * 86400:
        days, rest = divmod(whole, 86400)
        return f"{days}d{rest // 3600}h" if rest >= 3600 else f"{days}d"
    return format_duration(float(whole - whole % 60 if whole >= 60 else whole))


def _names(names: Sequence[str], count: int) -> str:
    shown = ", ".join(names[:_SHOWN_NAMES])
    more = count - min(len(names), _SHOWN_NAMES)
    if not shown:
        return ""
    return f": {shown}" + (f" and {more} more" if more > 0 else "")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def days_left(free_bytes: int, written_bytes: int, window_s: float) -> float:
    """Days until ``free_bytes`` are written at the rate of ``written_bytes`` per
    ``window_s``; ``inf`` when nothing was written (or no window), 0 when nothing is free.
    Non-decreasing in ``free_bytes``, non-increasing in ``written_bytes``."""
    if free_bytes <= 0:
        return 0.0
    if written_bytes <= 0 or window_s <= 0:
        return math.inf
    return free_bytes / (written_bytes / window_s * DAY)


def completeness_window(params: RecordingsParams, newest_in_backup: float | None,
                        now: float) -> tuple[float, float] | None:
    """(oldest, newest) mtimes a store recording must lie in to count as *missing* from a
    backup that lacks it: older than the backup's newest recording by the grace (the copy
    went past it and skipped it; anything newer is freshness's business, so one broken
    night is one finding, not two) and younger than the retention (a backup may drop what
    the law no longer asks it to keep). None when the backup holds nothing (freshness
    says so)."""
    if newest_in_backup is None:
        return None
    newest = min(newest_in_backup, now) - params.grace
    oldest = now - params.retention
    return (oldest, newest) if newest > oldest else None


def unavailable(params: RecordingsParams, subject: str, why: str) -> Finding:
    """The ``available`` finding of a subject that cannot be read (``why``: the runtime's
    words, e.g. a scan that has not answered for minutes): the store pages, a backup pages
    when it must hold every recording, else it is a ticket."""
    if subject == STORE:
        return Finding(Check.AVAILABLE, STORE, Severity.PAGE, 0.0,
                       f"store: cannot be read ({why or 'unknown'}); nothing proves "
                       "recordings are being kept")
    return Finding(Check.AVAILABLE, subject,
                   Severity.PAGE if params.must(subject) else Severity.TICKET, 0.0,
                   f"{subject}: unavailable ({why or 'unknown'}); its other checks wait "
                   "until it can be read")


def _store_findings(p: RecordingsParams, store: StoreFacts) -> list[Finding]:
    out: list[Finding] = []
    if not store.available:
        out.append(unavailable(p, STORE, store.why_unavailable))
    else:
        out.append(Finding(Check.AVAILABLE, STORE, Severity.OK, 1.0,
                           f"store: {_plural(store.files, 'recording')} readable"))
        if store.lost_young:
            out.append(Finding(
                Check.LOST, STORE, Severity.PAGE, float(store.lost_young),
                f"store: {_plural(store.lost_young, 'recording')} younger than the retention "
                "left the store before any backup held it"
                f"{_names(store.lost_names, store.lost_young)}",
                store.lost_names))
        else:
            out.append(Finding(Check.LOST, STORE, Severity.OK, 0.0,
                               "store: no recording left it before reaching a backup"))
        out.append(_unreadable(STORE, store.problems, store.problem_names))
        out += _disk_findings(p, store)
    out += [_raid_finding(array) for array in store.raid]
    return out


def _unreadable(subject: str, count: int, names: tuple[str, ...]) -> Finding:
    if not count:
        return Finding(Check.UNREADABLE, subject, Severity.OK, 0.0,
                       f"{subject}: everything in the tree could be read")
    return Finding(Check.UNREADABLE, subject, Severity.TICKET, float(count),
                   f"{subject}: {count} {'entry' if count == 1 else 'entries'} could not be "
                   f"read{_names(names, count)}", names)


def _disk_findings(p: RecordingsParams, store: StoreFacts) -> list[Finding]:
    if store.free_bytes is None:
        return []
    out: list[Finding] = []
    left = days_left(store.free_bytes, store.written_recent_bytes, store.recent_window_s)
    if store.free_bytes <= 0:
        words, sev, why = "store: the volume is full", Severity.PAGE, ": the recorder cannot record"
    else:
        words = f"store: {store.free_bytes / 2**30:.3g} GiB free"
        if math.isinf(left):
            words += ", no recent writes"
        else:
            per_day = store.written_recent_bytes / store.recent_window_s * DAY / 2**30
            words += f", {left:.1f} days left at {per_day:.3g} GiB/day"
        if left <= p.page_days_left:
            sev, why = (Severity.PAGE, f"; full within {p.page_days_left:g} days: the "
                        "recorder stops recording")
        elif left <= p.warn_days_left:
            sev, why = Severity.TICKET, f"; full within {p.warn_days_left:g} days"
        else:
            sev, why = Severity.OK, ""
    out.append(Finding(Check.DISK_DAYS, STORE, sev, left, words + why))
    if store.total_bytes:
        ratio = store.free_bytes / store.total_bytes
        low = ratio < p.min_free
        out.append(Finding(
            Check.DISK_FREE, STORE, Severity.TICKET if low else Severity.OK, ratio,
            f"store: {ratio:.1%} of the volume free"
            + (f", below the {p.min_free:.0%} minimum" if low else "")))
    return out


def _raid_finding(array: RaidFacts) -> Finding:
    detail = f" ({array.detail})" if array.detail else ""
    failed = (f"; failed: {', '.join(array.failed_devices)}" if array.failed_devices else "")
    if not array.active:
        return Finding(Check.RAID, array.name, Severity.PAGE, 1.0,
                       f"{array.name}: inactive{detail}{failed}: the recordings' array is "
                       "not running")
    if array.degraded:
        return Finding(Check.RAID, array.name, Severity.PAGE, 1.0,
                       f"{array.name}: degraded{detail}{failed}: one more disk failure loses "
                       "every recording not yet copied")
    if array.failed_devices:
        return Finding(Check.RAID, array.name, Severity.TICKET, 0.0,
                       f"{array.name}: redundant{detail}{failed}: replace the failed disk")
    return Finding(Check.RAID, array.name, Severity.OK, 0.0, f"{array.name}: healthy{detail}")


def _backup_findings(p: RecordingsParams, b: BackupFacts, now: float) -> list[Finding]:
    must = p.must(b.name)
    # A backup the site does not rely on (not in must_hold) never pages.
    bad = Severity.PAGE if must else Severity.TICKET
    n = b.name
    if not b.available:
        return [unavailable(p, n, b.why_unavailable)]
    out = [Finding(Check.AVAILABLE, n, Severity.OK, 1.0, f"{n}: readable")]

    limit = p.stale_after
    age = now - b.newest_mtime if b.newest_mtime is not None else math.inf
    newest = (f"newest copy {_age(age)} old" if b.newest_mtime is not None
              else "holds nothing yet")
    waited = now - b.pending_since if b.pending_since is not None else None
    if waited is not None and waited > limit:
        out.append(Finding(Check.FRESHNESS, n, bad, age,
                           f"{n}: stale: {newest}; a recording made {_age(waited)} ago is not "
                           f"there, expected within {_age(limit)}"))
    elif b.last_run is not None and now - b.last_run > limit:
        out.append(Finding(Check.FRESHNESS, n, Severity.TICKET, age,
                           f"{n}: no backup run for {_age(now - b.last_run)} (expected every "
                           f"{_age(p.schedule)}); nothing was waiting to be copied yet"))
    else:
        out.append(Finding(Check.FRESHNESS, n, Severity.OK, age, f"{n}: {newest}"))

    for check, count, names, (one, many) in (
        (Check.MISSING, b.missing, b.missing_names,
         ("older than its last copy by the grace is not in it",
          "older than its last copy by the grace are not in it")),
        (Check.MISMATCHED, b.mismatched, b.mismatched_names,
         ("is there with another size than the original",
          "are there with another size than the original")),
        (Check.CORRUPT, b.corrupt, b.corrupt_names,
         ("read back differs from the original (SHA-256)",
          "read back differ from the original (SHA-256)")),
        (Check.GONE, b.gone_young, b.gone_names,
         ("younger than the retention was dropped from it",
          "younger than the retention were dropped from it")),
    ):
        if count:
            out.append(Finding(check, n, bad, float(count),
                               f"{n}: {_plural(count, 'recording')} "
                               f"{one if count == 1 else many}{_names(names, count)}", names))
        else:
            out.append(Finding(check, n, Severity.OK, 0.0, f"{n}: no {check.value} recording"
                               + (f" ({b.verified} verified)" if check is Check.CORRUPT else "")))
    out.append(_unreadable(n, b.problems, b.problem_names))
    return out


def judge(params: RecordingsParams, store: StoreFacts, backups: Iterable[BackupFacts],
          now: float) -> RecordingsVerdict:
    """Every finding for this cycle's facts (the module's docstring has the rules)."""
    findings = _store_findings(params, store)
    for backup in backups:
        findings += _backup_findings(params, backup, now)
    return RecordingsVerdict(tuple(findings))


# ----------------------------------------------------------------------------- integrity


def verify_quota(total_files: int, verify_days: float, interval_s: float) -> int:
    """Recordings to read back per cycle so each of ``total_files`` is verified once in
    ``verify_days``: the files spread over the whole cycles that fit in the period (at
    least one cycle), rounded up. ``quota * cycles >= total_files`` always holds."""
    if total_files <= 0:
        return 0
    cycles = max(1, math.floor(verify_days * DAY / interval_s)) if interval_s > 0 else 1
    return -(-total_files // cycles)


@dataclass(frozen=True, slots=True)
class VerifyPlan:
    """What verifying every recording once in ``verify_days`` costs, per cycle."""

    files_per_cycle: int
    cycles_per_period: int
    bytes_per_cycle: int  # read from the store and from each backup
    read_bytes_per_s: float  # averaged over the cycle

    def describe(self, verify_days: float) -> str:
        mib = self.bytes_per_cycle / 2**20
        return (f"every recording verified once in {verify_days:g} days: "
                f"{self.files_per_cycle} per cycle, {mib:.3g} MiB read per cycle "
                f"({self.read_bytes_per_s / 2**20:.3g} MiB/s on average)")


def verify_plan(total_files: int, total_bytes: int, verify_days: float, interval_s: float,
                backups: int) -> VerifyPlan:
    """The quota and its read cost: each verified recording is read once from the store
    and once from each of ``backups`` (a restic read also costs restic's decryption)."""
    quota = verify_quota(total_files, verify_days, interval_s)
    cycles = max(1, math.floor(verify_days * DAY / interval_s)) if interval_s > 0 else 1
    average = total_bytes / total_files if total_files > 0 else 0.0
    per_cycle = round(quota * average * (1 + max(0, backups)))
    return VerifyPlan(quota, cycles, per_cycle,
                      per_cycle / interval_s if interval_s > 0 else float(per_cycle))
