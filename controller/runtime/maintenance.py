"""Trunks the operator takes out of service at runtime (API, `lifeline maintenance`).

The config's `maintenance:` is the planned kind, reviewed like any change; this is the
ad-hoc kind (an SBC swap announced by the carrier an hour ago). Marks are kept in
`<state_dir>/maintenance.json`, written whole to a temporary file and renamed, so a restart
or a reboot of the router never silently puts a trunk back in service. A file that cannot
be read is logged and ignored (the trunks are then as the config says: the safe reading,
since a trunk wrongly in service is reported by its probes, a trunk wrongly out of service
by nobody). A write that fails keeps the mark in memory and says so; it never raises.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MAINTENANCE_FILE", "MaintenanceBook", "Mark"]

log = logging.getLogger("lifeline.maintenance")

MAINTENANCE_FILE = "maintenance.json"
MAX_REASON = 200  # one line in status, journal and alerts


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
            self.problem = f"cannot read {path}: {exc}; operator maintenance marks dropped"
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
            tmp.write_text(json.dumps(doc, indent=2) + "\n")
            os.replace(tmp, self.path)
            self.problem = None
        except OSError as exc:
            self.problem = (f"cannot write {self.path}: {exc.strerror or exc}; the marks "
                            "hold until the daemon stops")
            log.error("%s", self.problem)
