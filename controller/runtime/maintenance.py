"""Trunks the operator takes out of service at runtime (API, `lifeline maintenance`).

The config's `maintenance:` is the planned kind, reviewed like any change; this is the
ad-hoc kind (an SBC swap announced by the carrier an hour ago). Since the operator's
overrides (controller.core.overrides), such a mark is a maintenance override on
`trunk:NAME` with an expiry, kept in `overrides.json` (controller.runtime.overridebook).
What stays here: the answer the API gives, and the reader of the older
`<state_dir>/maintenance.json` (marks without expiry) that the override book migrates.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

__all__ = ["MAINTENANCE_FILE", "MaintenanceAnswer", "Mark", "load_marks"]

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


def load_marks(path: Path) -> tuple[dict[str, Mark], str | None]:
    """The marks of an old ``maintenance.json`` and a problem (None: read, or no file).
    A file that cannot be read is moved aside (``.unreadable``) for the operator."""
    try:
        raw = json.loads(path.read_text())
        return {
            str(name): Mark(" ".join(str(m.get("reason", "")).split())[:MAX_REASON],
                            float(m["since"]))
            for name, m in raw["trunks"].items()
        }, None
    except FileNotFoundError:
        return {}, None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        aside = path.with_name(path.name + ".unreadable")
        with contextlib.suppress(OSError):
            os.replace(path, aside)
        return {}, (f"cannot read {path} ({exc}); the operator's maintenance marks "
                    f"were dropped (file kept as {aside.name}): check the trunks")
