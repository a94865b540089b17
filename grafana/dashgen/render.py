"""From the dashboard builders to the committed JSON, and the check that they agree.

The JSON is deterministic (sorted keys, panel ids numbered in order), so regenerating an
unchanged dashboard changes no byte and a stale file is a plain inequality.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Final

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from grafana.dashgen import daemon, fleet, overview, power, quality, recordings, trunks

DASHBOARDS_DIR: Final = Path(__file__).resolve().parents[1] / "dashboards"

# File name -> builder, in the order an operator reads them.
DASHBOARDS: Final[dict[str, Callable[[], db.Dashboard]]] = {
    "site-overview.json": overview.build,
    "link-quality.json": quality.build,
    "trunks-dids.json": trunks.build,
    "power.json": power.build,
    "recordings.json": recordings.build,
    "daemon.json": daemon.build,
    "fleet.json": fleet.build,
}


def render(build: Callable[[], db.Dashboard]) -> str:
    """The dashboard's JSON text, as committed."""
    model = build().build()
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
    return json.dumps(model, cls=JSONEncoder, indent=2, sort_keys=True,
                      ensure_ascii=False) + "\n"


def render_all() -> dict[str, str]:
    return {name: render(build) for name, build in DASHBOARDS.items()}


def write(directory: Path = DASHBOARDS_DIR) -> list[Path]:
    """Write every dashboard; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale(directory: Path = DASHBOARDS_DIR) -> list[str]:
    """What differs from the code: files missing or changed, and JSON files no builder
    makes (a dashboard renamed or removed in the code and left behind)."""
    wanted = render_all()
    problems = []
    for name, text in wanted.items():
        path = directory / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path}: differs from the code")
    for path in sorted(directory.glob("*.json")):
        if path.name not in wanted:
            problems.append(f"{path}: no dashboard in the code makes it")
    return problems
