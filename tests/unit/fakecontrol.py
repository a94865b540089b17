"""A stand-in for the daemon's Control in the API's tests: a small site (one route group,
two links, two trunks, one DID range) that keeps overrides in a dict and refuses what the
real daemon refuses (KeyError for an unknown target, ValueError for a value not allowed).
Every accepted change is in ``calls``, so a test can prove a refused request changed
nothing."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

GROUPS = {"voice": ("fibre-a", "lte")}
LINKS = ("fibre-a", "lte")
TRUNKS = ("a1", "a2")
RANGE = "+3902123456[00-99]"
TOKEN = "s3cret-token-of-the-noc-0123456789"
OTHER_TOKEN = "another-token-for-the-oncall-42"


def token_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "api-tokens"
    path.write_text(f"# who   token\nnoc {TOKEN}\noncall {OTHER_TOKEN}  # the pager\n")
    os.chmod(path, mode)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    return path


class FakeControl:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.overrides: dict[tuple[str, str], dict[str, Any]] = {}

    def _target(self, kind: str, target: str) -> None:
        known = {
            "route": set(GROUPS),
            "did": {RANGE},
            "maintenance": {f"link:{n}" for n in LINKS} | {f"trunk:{n}" for n in TRUNKS},
        }.get(kind)
        if known is None:
            raise ValueError(f"unknown kind {kind!r}")
        if target not in known:
            raise KeyError(f"no {kind} target named {target!r}")

    def set_override(self, kind: str, target: str, value: str | None, reason: str, by: str,
                     until: float) -> dict[str, Any]:
        self._target(kind, target)
        if kind == "route" and value not in GROUPS[target]:
            raise ValueError(f"{value!r} is not a link of route group {target}")
        if kind == "did" and value not in (*TRUNKS, "dr"):
            raise ValueError(f"{value!r} is not a trunk that can carry {target}")
        self.calls.append(("set", kind, target, value, reason, by, until))
        doc = {"kind": kind, "target": target, "value": value, "reason": reason, "by": by,
               "until": until}
        self.overrides[kind, target] = doc
        return doc | {"applied": True, "kept_on_disk": True}

    def clear_override(self, kind: str, target: str, by: str, reason: str) -> dict[str, Any]:
        self._target(kind, target)
        self.calls.append(("clear", kind, target, by, reason))
        return {"kind": kind, "target": target,
                "cleared": self.overrides.pop((kind, target), None) is not None}

    def resolve_did(self, number: str) -> str | None:
        return RANGE if number.startswith("+3902123456") and len(number) == 13 else None

    def set_maintenance(self, trunk: str, on: bool, reason: str = "") -> dict[str, Any]:
        if trunk not in TRUNKS:
            raise KeyError(trunk)
        self.calls.append(("mark", trunk, on, reason))
        return {"trunk": trunk, "maintenance": reason if on else None, "operator": on,
                "kept_on_disk": True}
