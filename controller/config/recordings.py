"""``recordings:``: the call recordings' store, its backups, and the law's retention.

lifeline only reads here: the store (the recorder's folder tree) and each backup (a mirror
folder on a NAS, share or USB disk, or a restic repository) are opened read-only, and its
own index lives in ``state_dir``. So the checks refuse a layout where that could be false
or meaningless: a backup inside the store's tree (or the store inside a backup) is on the
same disk and so no backup, and lifeline's ``state_dir``, its socket or restic's cache
inside a store or backup tree would be lifeline writing there. At least one backup is
required: a RAID alone is not a backup. ``must_hold`` names the backups every recording
must reach (default: all; the others only open tickets). Secrets come from files: an
inline restic ``password`` is refused. Cross-field checks with paths are in
``recordings_checks`` (called from checks.py); the numbers reach the pure core as
``RecordingsParams`` (controller.core.recordings; docs/recordings.md).
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, PlainValidator, Strict, model_validator

from controller.config.fields import (
    AbsPath,
    ConfigModel,
    Duration,
    LinkName,
    PositiveDuration,
    Ratio,
)
from controller.core.durations import format_duration, format_period, parse_duration
from controller.core.recordings import DAY, STORE, RecordingsParams, verify_quota

__all__ = ["Backup", "DiskLimits", "RecordingsConfig", "ResticRepo", "Store",
           "recordings_checks", "recordings_summary"]

# A retention is years; beyond a century it is a typo.
MAX_RETENTION = 100 * 365 * DAY


def _long_duration(value: object) -> float:
    if not isinstance(value, str | int | float):
        raise ValueError("not a duration (expected e.g. 30d, 10y)")
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError("must be longer than 0")
    if seconds > MAX_RETENTION:
        raise ValueError(f"{value!r} is longer than a century: a typo?")
    return seconds


Retention = Annotated[float, BeforeValidator(_long_duration)]


def _pattern(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a file name pattern, e.g. '*.wav'")
    if "/" in value or "\0" in value:
        raise ValueError(f"{value!r}: a pattern matches file names, not paths (no '/'); "
                         "every folder of the tree is searched")
    return value


Pattern = Annotated[str, PlainValidator(_pattern)]


def _refuse_password(value: object) -> None:
    raise ValueError("an inline password is not accepted: use password_file, so the "
                     "secret stays out of config files, backups and logs")


# restic's backends (restic 0.14+: "local:", "sftp:", "rest:", "s3:", ...).
_BACKEND_RE = re.compile(r"(local|sftp|rest|s3|gs|azure|b2|swift|rclone):\S+")


def _repository(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a restic repository: an absolute path or backend:location "
                         "(sftp:host:/path, rest:https://host/, s3:...)")
    repo = value.strip()
    if repo.startswith("/"):
        return repo
    if not _BACKEND_RE.fullmatch(repo):
        raise ValueError(f"{repo!r} is neither an absolute path nor backend:location "
                         "(sftp:, rest:, s3:, ...): a relative path would depend on the "
                         "daemon's working directory")
    if repo.startswith("local:") and not repo[6:].startswith("/"):
        raise ValueError(f"{repo!r}: a local repository needs an absolute path")
    if re.search(r"://[^/@\s]*:[^/@\s]*@", repo):
        raise ValueError("a repository URL with user:password@ puts a secret in the config "
                         "and the logs; use the backend's credentials file or environment")
    return repo


class ResticRepo(ConfigModel):
    """A restic repository, read with ``restic`` (snapshots, ls, dump): never written to."""

    repository: Annotated[str, PlainValidator(_repository)]
    password_file: AbsPath
    password: Annotated[None, PlainValidator(_refuse_password)] = Field(
        default=None, repr=False, exclude=True)
    # The store's path as it was backed up (restic keeps absolute paths); default: store.path.
    path: AbsPath | None = None
    binary: AbsPath = Path("/usr/bin/restic")  # Debian's; no PATH search as root
    cache_dir: AbsPath | None = None  # None: restic runs with --no-cache
    timeout: PositiveDuration = 1800.0  # one restic call (a full listing of a big snapshot)

    @property
    def local_path(self) -> PurePosixPath | None:
        """The repository's folder when it is on this machine (a path or ``local:``)."""
        repo = self.repository.removeprefix("local:")
        return PurePosixPath(repo) if repo.startswith("/") else None


class Store(ConfigModel):
    """The recorder's tree, e.g. ``/srv/recordings/2026/12/03/<call-id>.wav``."""

    path: AbsPath
    patterns: Annotated[list[Pattern], Field(min_length=1)] = Field(
        default_factory=lambda: ["*.wav"])


class Backup(ConfigModel):
    """One backup of the store: a mirror ``folder`` of its tree, or a ``restic`` repository."""

    name: LinkName
    folder: AbsPath | None = None
    restic: ResticRepo | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Backup:
        if (self.folder is None) == (self.restic is None):
            raise ValueError("needs exactly one of folder: /mnt/nas/recordings (a mirror of "
                             "the tree) or restic: {repository, password_file}")
        return self

    @property
    def kind(self) -> Literal["folder", "restic"]:
        return "folder" if self.folder is not None else "restic"

    def where(self) -> str:
        if self.folder is not None:
            return f"folder {self.folder}"
        assert self.restic is not None
        return f"restic {self.restic.repository}"


def _days(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("must be a number of days")
    return value


DayCount = Annotated[float, BeforeValidator(_days), Field(gt=0, le=3650)]


class DiskLimits(ConfigModel):
    """The recordings volume: days left at the recent write rate, and free space."""

    warn_days_left: DayCount = 14.0  # a ticket
    page_days_left: DayCount = 3.0  # a page: the recorder stops when the disk is full
    min_free: Ratio = 0.05  # below this share of the volume free: a ticket

    @model_validator(mode="after")
    def _order(self) -> DiskLimits:
        if self.page_days_left > self.warn_days_left:
            raise ValueError(f"page_days_left {self.page_days_left:g} is above "
                             f"warn_days_left {self.warn_days_left:g} (the ticket comes "
                             "first, the page when it is urgent)")
        return self


def _backups(value: list[Backup]) -> list[Backup]:
    if not value:
        raise ValueError("needs at least one backup (a folder or a restic repository): the "
                         "store alone, RAID or not, is not a backup")
    return value


class RecordingsConfig(ConfigModel):
    """The store, its backups, and what lifeline expects of them."""

    store: Store
    backups: Annotated[list[Backup], AfterValidator(_backups)]
    schedule: PositiveDuration = DAY  # a copy expected this often
    grace: Duration = 2 * 3600.0  # how late it may be; a younger recording is not yet missing
    retention: Retention  # the legal minimum: no default, lifeline cannot know the law
    must_hold: list[str] | None = None  # backup names; None: every backup
    interval: PositiveDuration = 300.0  # a check cycle
    full_scan_every: PositiveDuration = DAY
    verify_days: Annotated[int, Strict(), Field(ge=1, le=3650)] = 30
    disk: DiskLimits = DiskLimits()

    @property
    def must_hold_names(self) -> list[str]:
        return (list(self.must_hold) if self.must_hold is not None
                else [b.name for b in self.backups])

    def backup(self, name: str) -> Backup:
        for backup in self.backups:
            if backup.name == name:
                return backup
        raise KeyError(name)

    def restic_path(self, backup: Backup) -> PurePosixPath:
        """The store's path inside the restic snapshots of ``backup``."""
        assert backup.restic is not None
        path = backup.restic.path if backup.restic.path is not None else self.store.path
        return PurePosixPath(path)

    def params(self) -> RecordingsParams:
        """The numbers, in the form controller.core.recordings consumes."""
        return RecordingsParams(
            retention=self.retention, schedule=self.schedule, grace=self.grace,
            must_hold=frozenset(self.must_hold) if self.must_hold is not None else None,
            warn_days_left=self.disk.warn_days_left, page_days_left=self.disk.page_days_left,
            min_free=self.disk.min_free)


def _norm(path: os.PathLike[str] | str) -> PurePosixPath:
    """A path as written, with ``..``/``.``/``//`` folded (no symlinks resolved: the config
    is checked where it is written, maybe not where it runs)."""
    return PurePosixPath(os.path.normpath(os.fspath(path)))


def _inside(inner: PurePosixPath, outer: PurePosixPath) -> bool:
    return inner == outer or outer in inner.parents


def _unknown(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown backup {name!r}{hint}"


def recordings_checks(rec: RecordingsConfig | None, state_dir: os.PathLike[str] | str,
                      api_socket: os.PathLike[str] | str | None = None,
                      ) -> tuple[list[str], list[str]]:
    """Errors and warnings of the ``recordings:`` section against itself and the places
    lifeline writes (``state_dir``, ``api_socket``): names, ``must_hold``, nesting, timings."""
    if rec is None:
        return [], []
    errors: list[str] = []
    warnings: list[str] = []
    p = "recordings"
    fmt, period = format_duration, format_period

    first: dict[str, int] = {}
    for i, backup in enumerate(rec.backups):
        if backup.name == STORE:
            errors.append(f"{p}.backups[{i}].name: {STORE!r} is the name of the store itself "
                          "(in metrics and the API); call the backup after where it is")
        elif backup.name in first:
            errors.append(f"{p}.backups[{i}].name: duplicate backup name {backup.name} "
                          f"(also {p}.backups[{first[backup.name]}])")
        else:
            first[backup.name] = i

    if rec.must_hold is not None:
        if not rec.must_hold:
            errors.append(f"{p}.must_hold: empty; name the backups every recording must reach, "
                          "or leave must_hold out for all of them")
        seen: set[str] = set()
        for k, name in enumerate(rec.must_hold):
            if name in seen:
                errors.append(f"{p}.must_hold[{k}]: {name} is listed twice")
            elif name not in first:
                errors.append(f"{p}.must_hold[{k}]: {_unknown(name, list(first))}")
            seen.add(name)

    # Trees lifeline reads, each with the path of its setting.
    trees: list[tuple[str, PurePosixPath, str]] = [
        (f"{p}.store.path", _norm(rec.store.path), "the store")]
    for i, backup in enumerate(rec.backups):
        if backup.folder is not None:
            trees.append((f"{p}.backups[{i}].folder", _norm(backup.folder),
                          f"backup {backup.name}"))
        elif backup.restic is not None and (local := backup.restic.local_path) is not None:
            trees.append((f"{p}.backups[{i}].restic.repository", _norm(local),
                          f"backup {backup.name}'s repository"))
    for a, (path_a, tree_a, _) in enumerate(trees):
        for _, tree_b, what_b in trees[:a]:
            if not (_inside(tree_a, tree_b) or _inside(tree_b, tree_a)):
                continue
            rel = ("is" if tree_a == tree_b
                   else "is inside" if _inside(tree_a, tree_b) else "holds")
            why = ("a backup in the store's tree is on the store's own disk: no backup"
                   if what_b == "the store" else "two backups in one tree are one copy")
            errors.append(f"{path_a}: {tree_a} {rel} {what_b} ({tree_b}): {why}")

    # Where lifeline (or restic for it) writes.
    writes: list[tuple[str, PurePosixPath, str]] = [
        ("state_dir", _norm(state_dir), "lifeline's state (its index)")]
    if api_socket is not None:
        writes.append(("api_socket", _norm(api_socket), "lifeline's socket"))
    for i, backup in enumerate(rec.backups):
        if backup.restic is not None and backup.restic.cache_dir is not None:
            writes.append((f"{p}.backups[{i}].restic.cache_dir",
                           _norm(backup.restic.cache_dir), "restic's cache"))
    for path_w, where, what in writes:
        for _, tree, tree_what in trees:
            if _inside(where, tree):
                errors.append(f"{path_w}: {where} is inside {tree_what} ({tree}): {what} "
                              "would be written there, and lifeline never writes in the "
                              "recordings or their backups")

    if rec.full_scan_every < rec.interval:
        errors.append(f"{p}.full_scan_every: {fmt(rec.full_scan_every)} is shorter than the "
                      f"interval {fmt(rec.interval)} (a full scan is one of the cycles)")
    stale = rec.schedule + rec.grace
    if rec.retention < stale:
        warnings.append(f"{p}.retention: {period(rec.retention)} is shorter than a copy's "
                        f"schedule plus grace ({period(stale)}): a recording may leave "
                        "before it is due in a backup")
    elif rec.retention < 7 * DAY:
        warnings.append(f"{p}.retention: {period(rec.retention)} is short for a legal "
                        "retention; did you mean years (e.g. 5y)?")
    if rec.verify_days * DAY > rec.retention:
        warnings.append(f"{p}.verify_days: {rec.verify_days} days is longer than the "
                        f"retention ({period(rec.retention)}): some recordings leave before "
                        "their turn to be verified")
    if rec.interval > stale:
        warnings.append(f"{p}.interval: {fmt(rec.interval)} is longer than schedule plus "
                        f"grace ({fmt(stale)}): a missed copy is found a cycle late")
    return errors, warnings


def recordings_summary(rec: RecordingsConfig | None) -> list[str]:
    """The ``recordings:`` lines of ``lifeline check-config``."""
    if rec is None:
        return []
    fmt, period = format_duration, format_period
    stale = rec.schedule + rec.grace
    out = [
        f"recordings: store {rec.store.path} ({', '.join(rec.store.patterns)}), checked every "
        f"{fmt(rec.interval)}, full scan every {fmt(rec.full_scan_every)}; read only "
        "(nothing in the store or a backup is ever written, moved or deleted)",
    ]
    must = set(rec.must_hold_names)
    for backup in rec.backups:
        line = f"  {backup.name}: {backup.where()}"
        if backup.restic is not None:
            r = backup.restic
            line += (f" (as {rec.restic_path(backup)}), password from {r.password_file}, "
                     f"{r.binary}, " + (f"cache {r.cache_dir}" if r.cache_dir else "no cache"))
        line += ("; must hold every recording" if backup.name in must
                 else "; not in must_hold: tickets only")
        out.append(line)
    quota = verify_quota(1_000_000, rec.verify_days, rec.interval)
    out += [
        f"  each recording due in {', '.join(rec.must_hold_names)} within {period(stale)} "
        f"(a copy every {fmt(rec.schedule)} + {fmt(rec.grace)} grace) and kept "
        f"{period(rec.retention)} ({rec.retention / DAY:g} days)",
        f"  integrity: every recording read back from each backup and compared by SHA-256 "
        f"once in {rec.verify_days} days (for a million recordings: {quota} per "
        f"{fmt(rec.interval)} cycle)",
        f"  disk: page below {rec.disk.page_days_left:g} days left at the recent write rate, "
        f"ticket below {rec.disk.warn_days_left:g} days or {rec.disk.min_free:.0%} free; "
        "degraded software RAID under the store pages",
    ]
    return out
