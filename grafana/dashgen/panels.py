"""The pieces every dashboard shares: the data source and template variables, queries,
thresholds, and one factory per panel type that insists on a unit and thresholds.

Panels are made through these factories only, so "every panel has a unit and thresholds"
holds by construction (and a test checks the JSON too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, statetimeline, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

DATASOURCE: Final = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
SITE: Final = 'site=~"$site"'  # the matcher every lifeline query carries
LIFELINE: Final = f'job="lifeline", {SITE}'  # for up and process_* (other jobs have them too)
TAGS: Final = ["lifeline"]

# Grafana's named colours.
GREEN, YELLOW, ORANGE, RED, BLUE, GREY = "green", "yellow", "orange", "red", "blue", "#8e8e8e"

Step = tuple[float, str]


def thresholds(base: str, *steps: Step) -> db.ThresholdsConfig:
    """Absolute thresholds: ``base`` below the first step, then each (value, colour)."""
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(None, base), *(dm.Threshold(v, c) for v, c in steps)])


# -- template variables -----------------------------------------------------------------

def datasource_variable() -> db.DatasourceVariable:
    return db.DatasourceVariable("datasource").label("Prometheus").type("prometheus")


def _label_variable(name: str, label: str, query: str) -> db.QueryVariable:
    return (db.QueryVariable(name).label(label).datasource(DATASOURCE)
            .query(query).multi(True).include_all(True).all_value(".*")
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dm.VariableSort.ALPHABETICAL_ASC)
            .current(dm.VariableOption(text="All", value="$__all")))


def site_variable() -> db.QueryVariable:
    # From up{job="lifeline"}: the scrape job's site label, present even while lifeline
    # is down (lifeline_build_info would then vanish, and the site with it).
    return _label_variable("site", "Site", 'label_values(up{job="lifeline"}, site)')


def link_variable() -> db.QueryVariable:
    return _label_variable("link", "Link", f"label_values(lifeline_link_up{{{SITE}}}, link)")


def trunk_variable() -> db.QueryVariable:
    return _label_variable("trunk", "Trunk",
                           f"label_values(lifeline_trunk_up{{{SITE}}}, trunk)")


def dashboard(uid: str, title: str, description: str, *variables: db.QueryVariable,
              time: str = "now-6h", refresh: str = "30s") -> db.Dashboard:
    """A lifeline dashboard: stable uid, the lifeline tag, the data source and site
    variables first, then ``variables``, and a menu of the other lifeline dashboards."""
    dash = (db.Dashboard(title).uid(uid).description(description).tags(TAGS)
            .time(time, "now").refresh(refresh).tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .timepicker(db.TimePicker().refresh_intervals(["10s", "30s", "1m", "5m", "15m"]))
            .with_variable(datasource_variable()).with_variable(site_variable())
            # The other lifeline dashboards, keeping the sites and time range chosen.
            .link(db.DashboardLink("lifeline").type(dm.DashboardLinkType.DASHBOARDS)
                  .tags(TAGS).as_dropdown(True).include_vars(True).keep_time(True)))
    for variable in variables:
        dash = dash.with_variable(variable)
    return dash


# -- queries ---------------------------------------------------------------------------

def query(expr: str, legend: str = "", *, instant: bool = False,
          table_format: bool = False) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(" ".join(expr.split())).datasource(DATASOURCE)
    if legend:
        q = q.legend_format(legend)
    q = q.instant() if instant else q.range()
    if table_format:
        q = q.format(pm.PromQueryFormat.TABLE)
    return q


def _refs(queries: Sequence[prometheus.Dataquery]) -> list[prometheus.Dataquery]:
    """The queries with their refIds A, B, C...: a panel needs at least one."""
    if not queries:
        raise ValueError("a panel needs a query")
    return [q.ref_id(chr(ord("A") + i)) for i, q in enumerate(queries)]


# -- value mappings for state sets -----------------------------------------------------

def value_text(*pairs: tuple[int, str, str]) -> list[dm.ValueMapping]:
    """Map numbers to a word and a colour (the state timelines' legend)."""
    return [dm.ValueMap(options={
        str(value): dm.ValueMappingResult(text=text, color=color, index=i)
        for i, (value, text, color) in enumerate(pairs)})]


# A health state set folded into one number per link/trunk: see health_code().
HEALTH_MAPPINGS: Final = value_text((0, "unknown", GREY), (1, "down", RED),
                                    (2, "degraded", ORANGE), (3, "up", GREEN))
HEALTH_THRESHOLDS: Final = ((1.0, RED), (2.0, ORANGE), (3.0, GREEN))


def state_code(metric: str, by: str, matchers: str, states: Sequence[str]) -> str:
    """One series per ``by`` whose value is the index of its state in ``states``, from a
    state-set gauge (label ``state``) that has exactly one state at 1. ``by`` may be empty
    (a site-wide state set)."""
    parts = " or ".join(f'{metric}{{{matchers}, state="{state}"}} * {code}'
                        for code, state in enumerate(states))
    return f"sum by (site{', ' + by if by else ''}) ({parts})"


def health_code(metric: str, by: str, matchers: str) -> str:
    """One series per link/trunk whose value is its state (0 unknown, 1 down, 2 degraded,
    3 up) from the state-set gauge, which has exactly one state at 1."""
    return state_code(metric, by, matchers, ("unknown", "down", "degraded", "up"))


def quantile(q: float, metric: str, by: str, matchers: str) -> str:
    """The q-quantile of a histogram over the panel's rate interval, one series per
    ``by`` (label names, comma-separated); ``metric`` is the histogram's name without
    ``_bucket``."""
    return (f"histogram_quantile({q:g}, sum by ({by}, le) "
            f"(rate({metric}_bucket{{{matchers}}}[$__rate_interval])))")


# -- panels ----------------------------------------------------------------------------

def series(title: str, description: str, unit: str, thr: db.ThresholdsConfig,
           *queries: prometheus.Dataquery, draw: cm.GraphThresholdsStyleMode | None = None,
           min_val: float | None = None, max_val: float | None = None, bars: bool = False,
           stacked: bool = False, span: int = 12, height: int = 8) -> timeseries.Panel:
    """A time series; ``draw`` draws the thresholds on the graph (lifeline's own limits)."""
    panel = (timeseries.Panel().title(title).description(description).datasource(DATASOURCE)
             .unit(unit).thresholds(thr).span(span).height(height).fill_opacity(10)
             .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.LIST)
                     .placement(cm.LegendPlacement.BOTTOM).show_legend(True))
             .thresholds_style(cb.GraphThresholdsStyleConfig().mode(
                 draw or cm.GraphThresholdsStyleMode.OFF)))
    if min_val is not None:
        panel = panel.min(min_val)
    if max_val is not None:
        panel = panel.max(max_val)
    if bars:
        panel = panel.draw_style(cm.GraphDrawStyle.BARS).fill_opacity(60)
    if stacked:
        panel = panel.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
    for q in _refs(queries):
        panel = panel.with_target(q)
    return panel


def stat_panel(title: str, description: str, unit: str, thr: db.ThresholdsConfig,
               *queries: prometheus.Dataquery, mappings: list[dm.ValueMapping] | None = None,
               span: int = 4, height: int = 4) -> stat.Panel:
    """A big number coloured by its thresholds (the last value, or an instant query's)."""
    panel = (stat.Panel().title(title).description(description).datasource(DATASOURCE)
             .unit(unit).thresholds(thr).span(span).height(height)
             .color_mode(cm.BigValueColorMode.BACKGROUND)
             .graph_mode(cm.BigValueGraphMode.NONE)
             .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False)))
    if mappings:
        panel = panel.mappings(mappings)
    for q in _refs(queries):
        panel = panel.with_target(q)
    return panel


def timeline(title: str, description: str, thr: db.ThresholdsConfig,
             mappings: list[dm.ValueMapping], *queries: prometheus.Dataquery,
             span: int = 24, height: int = 8) -> statetimeline.Panel:
    """A state timeline: one row per series, coloured by state (numbers mapped to words)."""
    panel = (statetimeline.Panel().title(title).description(description)
             .datasource(DATASOURCE).unit("none").thresholds(thr).mappings(mappings)
             .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
             .show_value(cm.VisibilityMode.NEVER).merge_values(True).row_height(0.8)
             .fill_opacity(80).span(span).height(height))
    for q in _refs(queries):
        panel = panel.with_target(q)
    return panel


@dataclass(frozen=True)
class Column:
    """A table column with its own unit and thresholds (and words for its numbers)."""

    name: str
    unit: str
    thresholds: db.ThresholdsConfig
    mappings: list[dm.ValueMapping] = field(default_factory=list)


def table_panel(title: str, description: str, unit: str, thr: db.ThresholdsConfig,
                *queries: prometheus.Dataquery,
                transformations: Sequence[dm.DataTransformerConfig] = (),
                columns: Sequence[Column] = (), span: int = 24, height: int = 8,
                ) -> table.Panel:
    """A table of instant queries; ``columns`` are those with their own unit, thresholds
    (as the cell's background) and value mappings."""
    panel = (table.Panel().title(title).description(description).datasource(DATASOURCE)
             .unit(unit).thresholds(thr).span(span).height(height))
    for transformation in transformations:
        panel = panel.with_transformation(transformation)
    for col in columns:
        steps = col.thresholds.build()
        props = [dm.DynamicConfigValue("unit", col.unit),
                 dm.DynamicConfigValue("thresholds", steps)]
        if len(steps.steps) > 1:  # a column with a limit is coloured by it
            props.append(dm.DynamicConfigValue("custom.cellOptions",
                                               {"type": "color-background"}))
        if col.mappings:
            props.append(dm.DynamicConfigValue("mappings", col.mappings))
        panel = panel.override_by_name(col.name, props)
    for q in _refs(queries):
        panel = panel.with_target(q)
    return panel


def organize(renames: dict[str, str], hide: Sequence[str] = ("Time",)
             ) -> dm.DataTransformerConfig:
    """Grafana's "organize fields": rename columns and hide the ones nobody reads."""
    return dm.DataTransformerConfig(id_val="organize", options={
        "renameByName": renames, "excludeByName": dict.fromkeys(hide, True)})


def merge() -> dm.DataTransformerConfig:
    """Join several instant table queries into one row per shared label set."""
    return dm.DataTransformerConfig(id_val="merge", options={})


def row(title: str) -> db.Row:
    return db.Row(title)
