"""The operator's overrides on disk: ``<state_dir>/overrides.json``, kept across restarts.

Written whole to a temporary file, synced, renamed and the directory synced, so a power cut
leaves the old file or the new one, never half of one: a restart never silently undoes a
DR drill or puts a trunk back in service. A file that cannot be read is moved aside
(``overrides.json.unreadable``) and reported (status, journal); the site then runs as the
config says. A write that fails keeps the overrides in memory and says so; it never raises.

Migration: the trunk maintenance marks of older versions (``maintenance.json``, no expiry)
are read at start into maintenance overrides on ``trunk:NAME`` that lapse MAX_DURATION
after the migration, and the old file is renamed ``maintenance.json.migrated``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from controller.core.overrides import KINDS, MAX_DURATION, Override
from controller.runtime.maintenance import load_marks

__all__ = ["OVERRIDES_FILE", "OverrideBook"]

log = logging.getLogger("lifeline.overrides")

OVERRIDES_FILE = "overrides.json"
MIGRATED_BY = "maintenance.json (migrated)"


def _override(raw: Any) -> Override:
    """One entry of the file; KeyError, TypeError or ValueError when it is not one."""
    kind = str(raw["kind"])
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    value = raw.get("value")
    return Override(kind, str(raw["target"]), None if value is None else str(value),
                    str(raw.get("reason", "")), str(raw.get("by", "")),
                    float(raw["since"]), float(raw["until"]))


class OverrideBook:
    """The overrides held, by (kind, target); ``path`` None keeps them in memory only."""

    def __init__(self, path: Path | None, legacy: Path | None = None,
                 now: float = 0.0) -> None:
        """``legacy``: an old ``maintenance.json`` to migrate, at wall clock ``now``."""
        self.path = path
        self.items: dict[tuple[str, str], Override] = {}
        self.problem: str | None = None  # why the overrides are not (all) on disk
        self.notes: list[str] = []  # what loading did, for the journal
        if path is not None:
            self._load(path)
        if legacy is not None and legacy.exists():
            self._migrate(legacy, now)

    # -- read ------------------------------------------------------------------------------
    def _load(self, path: Path) -> None:
        try:
            doc = json.loads(path.read_text())
            items = [_override(raw) for raw in doc["overrides"]]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            aside = path.with_name(path.name + ".unreadable")
            with contextlib.suppress(OSError):
                os.replace(path, aside)  # kept for the operator; the next write would lose it
            self.problem = (f"cannot read {path} ({exc}); the operator's overrides were "
                            f"dropped (file kept as {aside.name}): check routes and trunks")
            log.error("%s", self.problem)
            return
        self.items = {ov.key: ov for ov in items}

    def _migrate(self, legacy: Path, now: float) -> None:
        marks, problem = load_marks(legacy)
        if problem is not None:
            self.problem = problem
            log.error("%s", problem)
            return
        taken = []
        for name, mark in sorted(marks.items()):
            key = ("maintenance", f"trunk:{name}")
            if key not in self.items:
                self.items[key] = Override("maintenance", key[1], None, mark.reason,
                                           MIGRATED_BY, mark.since, now + MAX_DURATION)
                taken.append(name)
        if taken:
            self.notes.append(f"trunk maintenance of {', '.join(taken)} migrated from "
                              f"{legacy.name}; it now lapses {MAX_DURATION / 86400:.0f} "
                              "days from now unless set again")
        if self._save():
            with contextlib.suppress(OSError):
                os.replace(legacy, legacy.with_name(legacy.name + ".migrated"))

    def get(self, kind: str, target: str) -> Override | None:
        return self.items.get((kind, target))

    def all(self) -> tuple[Override, ...]:
        """Every override held, in a stable order (kind, target)."""
        return tuple(self.items[k] for k in sorted(self.items))

    # -- write -----------------------------------------------------------------------------
    def put(self, ov: Override) -> bool:
        """Hold ``ov`` (replacing one on the same target); True when it is on disk."""
        self.items[ov.key] = ov
        return self._save()

    def remove(self, kind: str, target: str) -> Override | None:
        ov = self.items.pop((kind, target), None)
        if ov is not None:
            self._save()
        return ov

    def lapse(self, now: float) -> tuple[Override, ...]:
        """Drop the overrides whose ``until`` has come; those dropped."""
        gone = tuple(ov for ov in self.items.values() if ov.lapsed(now))
        for ov in gone:
            del self.items[ov.key]
        if gone:
            self._save()
        return gone

    @property
    def kept_on_disk(self) -> bool:
        return self.path is not None and self.problem is None

    def _save(self) -> bool:
        if self.path is None:
            return False
        doc = {"version": 1, "overrides": [
            {"kind": ov.kind, "target": ov.target, "value": ov.value, "reason": ov.reason,
             "by": ov.by, "since": ov.since, "until": ov.until} for ov in self.all()]}
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("w") as out:
                out.write(json.dumps(doc, indent=2) + "\n")
                out.flush()
                os.fsync(out.fileno())  # on disk before the rename: a power cut keeps one
            os.replace(tmp, self.path)
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)  # the rename itself survives a power cut too
            finally:
                os.close(dir_fd)
        except OSError as exc:
            self.problem = (f"cannot write {self.path}: {exc.strerror or exc}; the "
                            "overrides hold until the daemon stops")
            log.error("%s", self.problem)
            return False
        self.problem = None
        return True
