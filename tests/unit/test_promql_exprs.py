"""The expression extraction and the Grafana variable substitution the PromQL-fit lab test
(tests/integration/test_promql_fit.py) relies on: a panel in a collapsed row or a ``${var}``
form missed there would pass that test unasked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.lab.promql_exprs import dashboard_exprs, rule_exprs, substitute
from tests.unit.test_alert_rules import RULES


def test_every_rule_expression_is_found() -> None:
    found = rule_exprs(RULES)
    names = [e.source for e in found]
    assert "rules: LifelineAllUplinksDown" in names
    assert "rules: site:lifeline_link_up:sum" in names
    assert all(e.expr for e in found)


def test_panels_nested_in_rows_are_walked(tmp_path: Path) -> None:
    doc = {"panels": [
        {"type": "stat", "title": "top", "targets": [{"refId": "A", "expr": "up"}]},
        {"type": "row", "title": "open row", "panels": []},
        {"type": "row", "title": "collapsed", "collapsed": True, "panels": [
            {"type": "timeseries", "title": "inner",
             "targets": [{"refId": "A", "expr": "lifeline_link_up"},
                         {"refId": "B", "expr": " "},  # empty: nothing to ask
                         {"refId": "C", "datasource": {"type": "alertmanager"}}]}]},
    ]}
    path = tmp_path / "d.json"
    path.write_text(json.dumps(doc))
    found = dashboard_exprs(path)
    assert [(e.source, e.expr) for e in found] == [
        ("d.json: top [A]", "up"), ("d.json: inner [A]", "lifeline_link_up")]


@pytest.mark.parametrize(("written", "asked"), [
    ('x{site=~"$site"}', 'x{site=~"lab"}'),
    ('x{site=~"${site}", link=~"${link:regex}"}', 'x{site=~"lab", link=~".*"}'),
    ('x{trunk=~"[[trunk]]"}', 'x{trunk=~".*"}'),
    ("rate(x[$__rate_interval])", "rate(x[1m])"),
    ("increase(x[$__range]) / $__range_s", "increase(x[1h]) / 3600"),
    ("avg_over_time(x[$__interval])", "avg_over_time(x[15s])"),
])
def test_grafana_variables_are_replaced(written: str, asked: str) -> None:
    assert substitute(written, {"site": "lab", "link": ".*", "trunk": ".*"}) == asked


def test_an_unknown_variable_is_not_sent_as_is() -> None:
    with pytest.raises(KeyError, match="power"):
        substitute('x{power=~"$power"}', {"site": "lab"})
