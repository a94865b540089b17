"""Fleet view: every site on one screen, one row each, worst first to the eye (coloured
cells). Uses the recording rules where they exist, so a large fleet stays cheap."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from grafana.dashgen.panels import (
    GREEN,
    LIFELINE,
    ORANGE,
    RED,
    SITE,
    YELLOW,
    Column,
    dashboard,
    merge,
    organize,
    query,
    row,
    series,
    stat_panel,
    table_panel,
    thresholds,
    value_text,
)

UID = "lifeline-fleet"
BACKUP = ("group:lifeline_active_tier:max{" + SITE + "} > bool on (site, instance, group) "
          "group:lifeline_best_tier:min{" + SITE + "}")

# (column, expression by site, unit, thresholds, mappings) in the table's order.
COLUMNS: tuple[tuple[str, str, str, db.ThresholdsConfig, list[dm.ValueMapping]], ...] = (
    ("lifeline", f"max by (site) (up{{{LIFELINE}}})", "none", thresholds(RED, (1, GREEN)),
     value_text((0, "DOWN", RED), (1, "up", GREEN))),
    ("Links up", f"sum by (site) (site:lifeline_link_up:sum{{{SITE}}})", "none",
     thresholds(RED, (1, GREEN)), []),
    ("Links", f"count by (site) (lifeline_link_up{{{SITE}}})", "none", thresholds(GREEN),
     []),
    ("Trunks up", f"sum by (site) (lifeline_trunk_up{{{SITE}}})", "none",
     thresholds(RED, (1, GREEN)), []),
    ("Trunks", f"count by (site) (lifeline_trunk_up{{{SITE}}})", "none", thresholds(GREEN),
     []),
    ("DIDs unroutable", f"max by (site) (lifeline_dids_unroutable{{{SITE}}})", "none",
     thresholds(GREEN, (1, RED)), []),
    ("DIDs on DR", f"max by (site) (lifeline_dids_on_dr{{{SITE}}})", "none",
     thresholds(GREEN, (1, ORANGE)), []),
    ("Groups on backup", f"sum by (site) ({BACKUP})", "none",
     thresholds(GREEN, (1, ORANGE)), []),
    ("Failovers 24h", f"sum by (site) (increase(lifeline_failovers_total{{{SITE}}}[24h]))",
     "none", thresholds(GREEN, (1, YELLOW), (5, RED)), []),
    ("Link availability 1h",
     f"avg by (site) (link:lifeline_link_up:avg_over_time_1h{{{SITE}}})", "percentunit",
     thresholds(RED, (0.99, ORANGE), (0.999, GREEN)), []),
)


def build() -> db.Dashboard:
    values = {f"Value #{chr(ord('A') + i)}": name for i, (name, *_) in enumerate(COLUMNS)}
    return (
        dashboard(UID, "lifeline / Fleet",
                  "Every site at a glance: one row per site.", time="now-24h", refresh="1m")
        .with_panel(stat_panel(
            "Sites with lifeline down", "Sites whose lifeline Prometheus cannot scrape.",
            "none", thresholds(GREEN, (1, RED)),
            query(f"count(up{{{LIFELINE}}} == 0) or vector(0)", instant=True), span=6))
        .with_panel(stat_panel(
            "Sites cut off", "Sites with no working uplink.", "none",
            thresholds(GREEN, (1, RED)),
            query(f"count(site:lifeline_link_up:sum{{{SITE}}} == 0) or vector(0)",
                  instant=True), span=6))
        .with_panel(stat_panel(
            "Sites with DIDs unroutable", "Sites where some numbers cannot be called.",
            "none", thresholds(GREEN, (1, RED)),
            query(f"count(max by (site) (lifeline_dids_unroutable{{{SITE}}}) > 0) "
                  "or vector(0)", instant=True), span=6))
        .with_panel(stat_panel(
            "Sites on a backup link", "Sites with a route group on a worse tier than its "
            "best.", "none", thresholds(GREEN, (1, ORANGE)),
            query(f"count(max by (site) ({BACKUP}) > 0) or vector(0)", instant=True),
            span=6))
        .with_panel(table_panel(
            "Sites", "One row per site: red cells first.", "none", thresholds(GREEN),
            *(query(expr, instant=True, table_format=True) for _, expr, *_ in COLUMNS),
            transformations=[merge(), organize({"site": "Site", **values})],
            columns=[Column(name, unit, thr, maps)
                     for name, _, unit, thr, maps in COLUMNS],
            height=12))
        .with_row(row("Over time"))
        .with_panel(series(
            "Failovers per site", "Route group switches per interval.", "none",
            thresholds(GREEN, (1, YELLOW), (5, RED)),
            query("sum by (site) (increase(lifeline_failovers_total"
                  f"{{{SITE}}}[$__rate_interval]))", "{{site}}"),
            bars=True, stacked=True, min_val=0))
        .with_panel(series(
            "Link availability per site (last hour)", "Mean share of the last hour the "
            "site's links were up.", "percentunit",
            thresholds(RED, (0.99, ORANGE), (0.999, GREEN)),
            query(f"avg by (site) (link:lifeline_link_up:avg_over_time_1h{{{SITE}}})",
                  "{{site}}"),
            min_val=0, max_val=1))
    )
