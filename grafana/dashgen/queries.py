"""Every PromQL expression in the committed dashboards, for tests that check them: the
unit tests (metric names exist, variables are defined) and the lab test that runs each
one in a real Prometheus.

Standard library only: it reads grafana/dashboards/*.json, not the generator, so it
needs no Grafana SDK. ``concrete()`` turns an expression into one Prometheus accepts by
giving the Grafana variables values (``VARIABLES`` are all a dashboard query may use).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

DASHBOARDS_DIR: Final = Path(__file__).resolve().parents[1] / "dashboards"

# The only variables a query may use, with values that make it plain PromQL: the
# template variables match everything (what "All" sends), the interval ones are what
# Grafana would send for a short range at a 15 s scrape.
VARIABLES: Final[Mapping[str, str]] = {
    "site": ".*",
    "link": ".*",
    "trunk": ".*",
    "__rate_interval": "1m",
    "__range": "1h",
    "__interval": "15s",
}
# ${var}, ${var:format}, [[var]], [[var:format]], $var (every form Grafana expands, so a
# hand edit in another form is still seen and given a value).
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")


@dataclass(frozen=True, slots=True)
class Query:
    """One target of one panel."""

    file: str  # the dashboard's file name
    dashboard: str  # its title
    panel: str  # the panel's title
    ref_id: str
    expr: str
    instant: bool

    def __str__(self) -> str:
        return f"{self.file} / {self.panel} / {self.ref_id}"


def load(directory: Path = DASHBOARDS_DIR) -> dict[str, dict[str, Any]]:
    """Every dashboard JSON in ``directory`` by file name."""
    return {path.name: json.loads(path.read_text(encoding="utf-8"))
            for path in sorted(directory.glob("*.json"))}


def panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that shows data (rows are layout, their panels are walked too)."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panels(panel)
        else:
            yield panel


def queries(directory: Path = DASHBOARDS_DIR) -> list[Query]:
    """Every (dashboard, panel, expression) in the committed dashboards, in order."""
    out = []
    for name, dash in load(directory).items():
        for panel in panels(dash):
            for target in panel.get("targets", []):
                out.append(Query(name, dash["title"], panel["title"], target["refId"],
                                 target["expr"], bool(target.get("instant", False))))
    return out


def variables_used(expr: str) -> set[str]:
    return {a or b or c for a, b, c in _VARIABLE.findall(expr)}


def concrete(expr: str, values: Mapping[str, str] = VARIABLES) -> str:
    """``expr`` with each Grafana variable replaced by its value in ``values``; a variable
    without one raises KeyError (a dashboard query using an undefined variable)."""
    return _VARIABLE.sub(lambda m: values[m.group(1) or m.group(2) or m.group(3)], expr)


# -- metric names in PromQL ------------------------------------------------------------

# PromQL's functions and aggregation operators (Prometheus 2.42 and later): an identifier
# followed by "(" must be one of these, anything else is a typo the test should catch.
FUNCTIONS: Final = frozenset({
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
    "count_over_time", "day_of_month", "day_of_week", "day_of_year", "days_in_month", "deg",
    "delta", "deriv", "exp", "floor", "histogram_count", "histogram_fraction",
    "histogram_quantile", "histogram_stddev", "histogram_stdvar", "histogram_sum",
    "holt_winters", "hour", "idelta", "increase", "irate", "label_join", "label_replace",
    "last_over_time", "ln", "log10", "log2", "mad_over_time", "max_over_time",
    "min_over_time", "minute", "month", "pi", "predict_linear", "present_over_time",
    "quantile_over_time", "rad", "rate", "resets", "round", "scalar", "sgn", "sin", "sinh",
    "sort", "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time", "sum_over_time",
    "tan", "tanh", "time", "timestamp", "vector", "year", "sum", "min", "max", "avg",
    "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk", "quantile",
})
KEYWORDS: Final = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "atan2", "inf", "nan",
})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric (and recording rule) names ``expr`` reads.

    Strings, label matchers, ranges and the label lists of by/on/... are removed first, so
    what is left is functions, keywords, numbers and metric names. An unknown identifier
    followed by "(" raises ValueError: it is neither a function nor a metric.
    """
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _LABEL_LIST.sub(" ", text)
    names = set()
    for ident, call in _IDENT.findall(text):
        if call:  # a binary operator's keyword may open a parenthesis: "a or (b)"
            if ident not in FUNCTIONS and ident not in KEYWORDS:
                raise ValueError(f"{ident}( is not a PromQL function, in: {expr}")
        elif ident not in KEYWORDS:
            names.add(ident)
    return names
