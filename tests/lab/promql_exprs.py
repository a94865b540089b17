"""Every PromQL expression the shipped monitoring asks of the exporter: the alert and
recording rules of ``grafana/alerts/lifeline.rules.yaml`` and the panel targets of
``grafana/dashboards/*.json``, the dashboards' Grafana variables replaced by values a lab
Prometheus can evaluate. Pure (reads files, no I/O beyond that), so the unit tests check the
extraction and the substitution and the lab test only asks Prometheus. The panel walk and
the variable syntax are grafana.dashgen.queries' (one reading of a dashboard); this module
adds the rules and the lab's values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from grafana.dashgen.queries import VARIABLES, concrete, panels

__all__ = ["GRAFANA_BUILTINS", "Expr", "dashboard_exprs", "rule_exprs", "substitute"]

# Grafana's built-in variables, as a dashboard over the lab's short history would see them
# (those the dashboards use as grafana.dashgen.queries gives them, plus the unit forms).
GRAFANA_BUILTINS: dict[str, str] = {
    **{name: value for name, value in VARIABLES.items() if name.startswith("__")},
    "__interval_ms": "15000",
    "__range_s": "3600",
    "__range_ms": "3600000",
}


@dataclass(frozen=True)
class Expr:
    """One expression and where it was found (for the failure message and the table)."""

    source: str  # "rules: LifelineLinkDown", "site-overview.json: Links up [A]"
    expr: str  # as written, variables unreplaced


def rule_exprs(path: Path) -> list[Expr]:
    """The ``expr`` of every alert and recording rule of a Prometheus rule file."""
    doc = yaml.safe_load(path.read_text())
    return [Expr(f"rules: {r.get('alert') or r.get('record')}", str(r["expr"]).strip())
            for group in doc["groups"] for r in group["rules"]]


def dashboard_exprs(path: Path) -> list[Expr]:
    """The ``expr`` of every target of every panel of one dashboard JSON (targets of other
    kinds of data source carry none and are skipped)."""
    doc = json.loads(path.read_text())
    out: list[Expr] = []
    for panel in panels(doc):
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            if isinstance(expr, str) and expr.strip():
                where = f"{path.name}: {panel.get('title', '?')} [{target.get('refId', '?')}]"
                out.append(Expr(where, expr.strip()))
    return out


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """``expr`` with every Grafana variable replaced from ``values`` (then GRAFANA_BUILTINS).
    A variable with no value raises KeyError: a dashboard's new variable must be given one
    here rather than reach Prometheus as a literal ``$name``."""
    try:
        return concrete(expr, {**GRAFANA_BUILTINS, **values})
    except KeyError as exc:
        raise KeyError(f"no value for Grafana variable ${exc.args[0]} in {expr!r}") from None
