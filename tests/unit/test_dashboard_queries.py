"""The dashboards' trickiest queries compute what their panels say, on a made-up fleet,
evaluated by Prometheus' own engine offline (``promtool test rules``, with lifeline's
recording and alert rules loaded): a state set folded into one state per link, route
groups on a backup link, the fleet counters and table columns, the alerts table. The lab
test runs every query against a live lifeline; this one checks the numbers."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from grafana.dashgen.queries import concrete, queries

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "grafana" / "alerts" / "lifeline.rules.yaml"
PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None,
                                reason="needs promtool (Debian package prometheus)")

STATES = ("unknown", "up", "degraded", "down")


def _site(site: str) -> str:
    return f'job="lifeline", instance="{site}:9730", site="{site}"'


def _series(name: str, labels: str, values: str) -> dict[str, str]:
    return {"series": f"{name}{{{labels}}}", "values": values}


def _link(site: str, link: str, state: str, tier: int, active: bool) -> list[dict[str, str]]:
    at = f'{_site(site)}, link="{link}"'
    out = [_series("lifeline_link_state", f'{at}, state="{s}"', f"{int(s == state)}x10")
           for s in STATES]
    out += [_series("lifeline_link_up", at, f"{int(state in ('up', 'degraded'))}x10"),
            _series("lifeline_link_tier", at, f"{tier}x10"),
            _series("lifeline_group_active_link", f'{at}, group="voice"', f"{int(active)}x10")]
    return out


# rome: its fiber is down, the group runs on LTE (a backup); milano: fine, but 200 DIDs
# cannot be called; napoli: lifeline not answering, so nothing but up.
FLEET = [
    _series("up", _site("rome"), "1x10"),
    _series("up", _site("milano"), "1x10"),
    _series("up", _site("napoli"), "0x10"),
    *_link("rome", "fiber", "down", 1, active=False),
    *_link("rome", "lte", "up", 2, active=True),
    *_link("milano", "fiber", "up", 1, active=True),
    _series("lifeline_dids_unroutable", _site("rome"), "0x10"),
    _series("lifeline_dids_unroutable", _site("milano"), "200x10"),
]


def _expr(file: str, panel: str, ref_id: str = "A") -> str:
    (q,) = [q for q in queries() if (q.file, q.panel, q.ref_id) == (file, panel, ref_id)]
    return concrete(q.expr)


def _samples(*pairs: tuple[str, float]) -> list[dict[str, Any]]:
    return [{"labels": labels, "value": value} for labels, value in pairs]


CASES: list[tuple[str, str, str, list[dict[str, Any]]]] = [
    ("site-overview.json", "Links", "A", _samples(
        ('{site="rome", link="fiber"}', 1), ('{site="rome", link="lte"}', 3),
        ('{site="milano", link="fiber"}', 3))),
    ("site-overview.json", "Uplinks up", "A", _samples(
        ('{site="rome"}', 1), ('{site="milano"}', 1))),
    ("site-overview.json", "Groups on a backup link", "A", _samples(
        ('{site="rome"}', 1), ('{site="milano"}', 0))),
    ("site-overview.json", "Active link per route group", "A", _samples(
        ('{site="rome", group="voice", link="fiber"}', 0),
        ('{site="rome", group="voice", link="lte"}', 1),
        ('{site="milano", group="voice", link="fiber"}', 1))),
    ("site-overview.json", "lifeline scraped", "A", _samples(
        ('{site="rome"}', 1), ('{site="milano"}', 1), ('{site="napoli"}', 0))),
    ("fleet.json", "Sites with lifeline down", "A", _samples(("{}", 1))),
    ("fleet.json", "Sites cut off", "A", _samples(("{}", 0))),
    ("fleet.json", "Sites with DIDs unroutable", "A", _samples(("{}", 1))),
    ("fleet.json", "Sites on a backup link", "A", _samples(("{}", 1))),
    ("fleet.json", "Sites", "B", _samples(('{site="rome"}', 1), ('{site="milano"}', 1))),
    ("fleet.json", "Sites", "C", _samples(('{site="rome"}', 2), ('{site="milano"}', 1))),
    # One row per alert, with the labels that say where (the table's columns).
    ("site-overview.json", "Current alerts", "A", _samples(
        ('{alertname="LifelineLinkDown", alertstate="firing", scope="link", '
         'severity="ticket", site="rome", link="fiber"}', 1),
        ('{alertname="LifelineOnBackupLink", alertstate="pending", scope="site", '
         'severity="ticket", site="rome", group="voice"}', 1),
        ('{alertname="LifelineDidsUnroutable", alertstate="firing", scope="dids", '
         'severity="page", site="milano"}', 1),
        ('{alertname="LifelineDown", alertstate="firing", scope="lifeline", '
         'severity="page", site="napoli"}', 1))),
    ("fleet.json", "Sites", "H", _samples(('{site="rome"}', 1), ('{site="milano"}', 0))),
]


def test_the_queries_say_what_their_panels_claim(tmp_path: Path) -> None:
    tests = [{"expr": _expr(file, panel, ref), "eval_time": "5m", "exp_samples": samples}
             for file, panel, ref, samples in CASES]
    spec = {"rule_files": [str(RULES)], "evaluation_interval": "30s",
            "tests": [{"interval": "30s", "input_series": FLEET, "promql_expr_test": tests}]}
    path = tmp_path / "dashboards.test.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
