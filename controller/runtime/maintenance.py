"""Trunks the operator takes out of service at runtime (API, `lifeline maintenance`).

The config's `maintenance:` is the planned kind, reviewed like any change; this is the
ad-hoc kind (an SBC swap announced by the carrier an hour ago). Marks are kept in
`<state_dir>/maintenance.json`, written whole to a temporary file and renamed, so a restart
or a reboot of the router never silently puts a trunk back in service (the file and its
directory are synced before the rename counts). A file that cannot be read is moved aside
and reported in the status and the journal; the trunks are then as the config says (a
trunk wrongly in service is reported by its probes, one wrongly out of service by
nobody). A write that fails keeps the mark in memory and says so; it never raises.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

__all__ = ["MAINTENANCE_FILE", "MaintenanceAnswer", "MaintenanceBook", "Mark"]

log = logging.getLogger("lifeline.maintenance")

MAINTENANCE_FILE = "maintenance.json"
MAX_REASON = 200  # one line in status, journal and alerts


class MaintenanceAnswer(TypedDict):
    """What the API and `lifeline maintenance` answer after a change."""

    trunk: str
    maintenance: str | None  # why it is out of service now; None: in service
    operator: bool  # an operator's mark is on it (the config may hold one too)
    kept_on_disk: bool  # False: the mark holds only until the daemon stops


@dataclass(frozen=True, slots=True)
class Mark:
    reason: str  # "" when none was given
    since: float  # wall clock, seconds since the epoch


class MaintenanceBook:
    """The operator's marks by trunk name; `path` None keeps them in memory only."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.marks: dict[str, Mark] = {}
        self.problem: str | None = None  # why the marks are not on disk, if they are not
        if path is not None:
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            raw = json.loads(path.read_text())
            self.marks = {
                str(name): Mark(str(m.get("reason", ""))[:MAX_REASON], float(m["since"]))
                for name, m in raw["trunks"].items()
            }
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Kept aside for the operator: the next mark would overwrite it otherwise.
            aside = path.with_name(path.name + ".unreadable")
            with contextlib.suppress(OSError):
                os.replace(path, aside)
            self.problem = (f"cannot read {path} ({exc}); the operator's maintenance marks "
                            f"were dropped (file kept as {aside.name}): check the trunks")
            log.error("%s", self.problem)

    def set(self, name: str, reason: str, now: float | None = None) -> None:
        self.marks[name] = Mark(" ".join(reason.split())[:MAX_REASON],
                                time.time() if now is None else now)
        self._save()

    def clear(self, name: str) -> bool:
        """Lift the mark; False when there was none."""
        if self.marks.pop(name, None) is None:
            return False
        self._save()
        return True

    def _save(self) -> None:
        if self.path is None:
            return
        doc = {"trunks": {n: {"reason": m.reason, "since": m.since}
                          for n, m in sorted(self.marks.items())}}
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
            self.problem = None
        except OSError as exc:
            self.problem = (f"cannot write {self.path}: {exc.strerror or exc}; the marks "
                            "hold until the daemon stops")
            log.error("%s", self.problem)
