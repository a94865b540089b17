"""Site overview: is the site reachable, on which link, can its numbers be called, and
what is alerting. The first dashboard on call opens."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common as cm

from grafana.dashgen import power, recordings
from grafana.dashgen.panels import (
    GREEN,
    GREY,
    HEALTH_MAPPINGS,
    HEALTH_THRESHOLDS,
    LIFELINE,
    ORANGE,
    RED,
    SITE,
    YELLOW,
    dashboard,
    health_code,
    organize,
    query,
    row,
    series,
    stat_panel,
    table_panel,
    thresholds,
    timeline,
    value_text,
)

UID = "lifeline-site-overview"


def build() -> db.Dashboard:
    return (
        dashboard(UID, "lifeline / Site overview",
                  "Links, trunks, route groups, DIDs and alerts of the selected sites.")
        .with_row(row("Now"))
        .with_panel(stat_panel(
            "lifeline scraped", "up of the lifeline scrape job: 0 means nothing below is "
            "current for that site.", "none", thresholds(RED, (1, GREEN)),
            query(f"max by (site) (up{{{LIFELINE}}})", "{{site}}", instant=True),
            mappings=value_text((0, "DOWN", RED), (1, "up", GREEN))))
        .with_panel(stat_panel(
            "Uplinks up", "Links up or degraded: 0 is a site cut off (a page).", "none",
            thresholds(RED, (1, GREEN)),
            query(f"sum by (site) (lifeline_link_up{{{SITE}}})", "{{site}}", instant=True)))
        .with_panel(stat_panel(
            "Groups on a backup link", "Route groups using a link of a worse tier than "
            "their best: the primary is down or degraded (a ticket after 30 min).", "none",
            thresholds(GREEN, (1, ORANGE)),
            query("sum by (site) (group:lifeline_active_tier:max{" + SITE + "} > bool on "
                  "(site, instance, group) group:lifeline_best_tier:min{" + SITE + "})",
                  "{{site}}", instant=True)))
        .with_panel(stat_panel(
            "DIDs unroutable", "Numbers with no healthy capable trunk: calls to them fail "
            "now (a page).", "none", thresholds(GREEN, (1, RED)),
            query(f"max by (site) (lifeline_dids_unroutable{{{SITE}}})", "{{site}}",
                  instant=True)))
        .with_panel(stat_panel(
            "DIDs on DR", "Numbers delivered to the disaster-recovery destination: the PBX "
            "does not answer, a service it needs is down, the power policy moved them, or "
            "an operator's drill (a page; by cause below).", "none",
            thresholds(GREEN, (1, ORANGE)),
            query(f"max by (site) (lifeline_dids_on_dr{{{SITE}}})", "{{site}}",
                  instant=True)))
        .with_panel(stat_panel(
            "Failovers in range", "Route group switches over the dashboard's time range "
            "(more than 4 in 30 min is flapping).", "none",
            thresholds(GREEN, (1, YELLOW), (5, RED)),
            query(f"sum by (site) (increase(lifeline_failovers_total{{{SITE}}}[$__range]))",
                  "{{site}}", instant=True)))
        .with_row(row("Power and services"))
        .with_panel(stat_panel(
            "Site power", "The worst known UPS: mains, on battery, battery low; unknown "
            "when no UPS can be read. Details: the Power and services dashboard.", "none",
            thresholds(GREY, *power.POWER_THRESHOLDS),
            query(power.site_power_code(), "{{site}}", instant=True),
            mappings=power.POWER_MAPPINGS, span=6))
        .with_panel(stat_panel(
            "Power outage", "On battery past the grace time, or DIDs moved to DR for power "
            "(a page).", "none", thresholds(GREEN, (1, RED)),
            query(f"max by (site) (lifeline_power_outage{{{SITE}}})", "{{site}}",
                  instant=True),
            mappings=value_text((0, "no", GREEN), (1, "OUTAGE", RED)), span=6))
        .with_panel(stat_panel(
            "DIDs on DR by cause", "Numbers on their DR destination by why: power, "
            "destination_down (the PBX), service (a service the PBX needs), pin (a drill).",
            "none", thresholds(GREEN, (1, ORANGE)),
            query(f"max by (site, cause) (lifeline_dids_on_dr_by_cause{{{SITE}}})",
                  "{{site}} {{cause}}", instant=True), span=6))
        .with_panel(stat_panel(
            "Services up", "Share of the site's services (PBX, CRM, SBC...) up or "
            "degraded; a service down that a destination needs sends its DIDs to DR.",
            "percentunit", thresholds(RED, (1, GREEN)),
            query(power.services_up_ratio(), "{{site}}", instant=True), span=6))
        .with_row(row("Recordings"))
        .with_panel(stat_panel(
            "Recordings: worst finding", "The worst recordings finding standing: a page "
            "when a recording can be lost. Details: the Recordings and backups dashboard.",
            "none", thresholds(GREEN, *recordings.SEVERITY_THRESHOLDS),
            query(recordings.worst_severity(), "{{site}}", instant=True),
            mappings=recordings.SEVERITY_MAPPINGS, span=6))
        .with_panel(stat_panel(
            "Newest backup age", "Age of the newest recording in the stalest backup; red "
            f"past the default schedule + grace ({recordings.stale_after() / 3600:g} h).",
            "s", thresholds(GREEN, (recordings.stale_after(), RED)),
            query(recordings.newest_backup_age(), "{{site}}", instant=True), span=6))
        .with_panel(stat_panel(
            "Recordings missing", "Recordings older than a backup's last copy by the grace "
            "and not in it, summed over the backups.", "none", thresholds(GREEN, (1, RED)),
            query(recordings.missing(), "{{site}}", instant=True), span=6))
        .with_panel(stat_panel(
            "Recordings disk days left", "Days until the store's volume is full at the "
            "recent write rate.", "d",
            thresholds(RED, (recordings.disk_days()[0], ORANGE),
                       (recordings.disk_days()[1], GREEN)),
            query(recordings.disk_days_left(), "{{site}}", instant=True), span=6))
        .with_row(row("State"))
        .with_panel(timeline(
            "Links", "Health of each link: up, degraded (bad for voice), down, unknown "
            "(starting, or probes stalled).", thresholds(GREY, *HEALTH_THRESHOLDS),
            HEALTH_MAPPINGS,
            query(health_code("lifeline_link_state", "link", SITE), "{{site}} {{link}}")))
        .with_panel(timeline(
            "Trunks", "Health of each SIP trunk (OPTIONS and the edge's failed calls).",
            thresholds(GREY, *HEALTH_THRESHOLDS), HEALTH_MAPPINGS,
            query(health_code("lifeline_trunk_state", "trunk", SITE),
                  "{{site}} {{trunk}}")))
        .with_panel(timeline(
            "Active link per route group", "The link(s) each route group's kernel route "
            "uses: a change of colour is a failover.", thresholds(GREY, (1, GREEN)),
            value_text((0, "standby", GREY), (1, "active", GREEN)),
            query(f"max by (site, group, link) (lifeline_group_active_link{{{SITE}}})",
                  "{{site}} {{group}} via {{link}}")))
        .with_row(row("Events"))
        .with_panel(series(
            "Failovers", "Route group switches per interval, by group and new link.",
            "none", thresholds(GREEN, (1, YELLOW), (5, RED)),
            query("sum by (site, group, to) "
                  f"(increase(lifeline_failovers_total{{{SITE}}}[$__rate_interval]))",
                  "{{site}} {{group}} to {{to}}"),
            bars=True))
        .with_panel(series(
            "DIDs unroutable and on DR", "Numbers that cannot be called (red line) and "
            "numbers served by the DR destination.", "none", thresholds(GREEN, (1, RED)),
            query(f"max by (site) (lifeline_dids_unroutable{{{SITE}}})",
                  "{{site}} unroutable"),
            query(f"max by (site) (lifeline_dids_on_dr{{{SITE}}})", "{{site}} on DR"),
            draw=cm.GraphThresholdsStyleMode.DASHED, min_val=0))
        .with_panel(table_panel(
            "Current alerts", "lifeline's alerts firing or pending in Prometheus "
            "(docs/alerts.md is the runbook).", "none", thresholds(GREEN),
            query('max by (alertname, alertstate, severity, scope, site, link, trunk, '
                  'group, edge) (ALERTS{alertname=~"Lifeline.+", ' + SITE + "})",
                  instant=True, table_format=True),
            transformations=[organize({"alertname": "Alert", "alertstate": "State"},
                                      ("Time", "Value"))]))
    )
