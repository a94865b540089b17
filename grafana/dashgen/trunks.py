"""Trunks and DIDs: whether the carriers answer, where each number's calls go, and
whether the SIP edge holds the plan lifeline computed."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common as cm

from controller.core.health import HealthParams
from grafana.dashgen.panels import (
    BLUE,
    GREEN,
    GREY,
    HEALTH_MAPPINGS,
    HEALTH_THRESHOLDS,
    ORANGE,
    RED,
    SITE,
    dashboard,
    health_code,
    quantile,
    query,
    row,
    series,
    stat_panel,
    thresholds,
    timeline,
    trunk_variable,
    value_text,
)

UID = "lifeline-trunks-dids"
TRUNK = f'{SITE}, trunk=~"$trunk"'


def build() -> db.Dashboard:
    p = HealthParams()
    return (
        dashboard(UID, "lifeline / Trunks and DIDs",
                  "SIP trunks (OPTIONS), the DID plan and its pushes to the SIP edge.",
                  trunk_variable())
        .with_row(row("DIDs now"))
        .with_panel(stat_panel(
            "DIDs in the plan", "Numbers in the DID plan.", "none", thresholds(BLUE),
            query(f"sum by (site) (lifeline_dids{{{SITE}}})", "{{site}}", instant=True)))
        .with_panel(stat_panel(
            "DIDs unroutable", "Numbers with no healthy capable trunk (a page).", "none",
            thresholds(GREEN, (1, RED)),
            query(f"sum by (site) (lifeline_dids_unroutable{{{SITE}}})", "{{site}}",
                  instant=True)))
        .with_panel(stat_panel(
            "DID ranges unroutable", "Ranges with no healthy capable trunk.", "none",
            thresholds(GREEN, (1, RED)),
            query(f"sum by (site) (lifeline_did_ranges_unroutable{{{SITE}}})", "{{site}}",
                  instant=True)))
        .with_panel(stat_panel(
            "DIDs on DR", "Numbers delivered to the disaster-recovery destination.",
            "none", thresholds(GREEN, (1, ORANGE)),
            query(f"sum by (site) (lifeline_dids_on_dr{{{SITE}}})", "{{site}}",
                  instant=True)))
        .with_panel(stat_panel(
            "Trunks in maintenance", "Trunks taken out of the plan by config or an "
            "operator: they get no calls.", "none", thresholds(GREEN, (1, BLUE)),
            query(f"sum by (site) (lifeline_trunk_maintenance{{{TRUNK}}})", "{{site}}",
                  instant=True)))
        .with_panel(stat_panel(
            "Trunks failing calls", "Trunks the SIP edge's failed calls hold degraded "
            "though they answer OPTIONS.", "none", thresholds(GREEN, (1, ORANGE)),
            query(f"sum by (site) (lifeline_trunk_edge_tripped{{{TRUNK}}})", "{{site}}",
                  instant=True)))
        .with_row(row("Trunks"))
        .with_panel(timeline(
            "Trunk state", "Health of each trunk.", thresholds(GREY, *HEALTH_THRESHOLDS),
            HEALTH_MAPPINGS,
            query(health_code("lifeline_trunk_state", "trunk", TRUNK),
                  "{{site}} {{trunk}}"), height=6))
        .with_panel(series(
            "OPTIONS RTT", "Round trip of each trunk's last answered SIP OPTIONS; the "
            f"line is lifeline's default degraded_latency ({p.degraded_latency * 1000:.0f} "
            "ms).", "s", thresholds(GREEN, (p.degraded_latency, ORANGE)),
            query(f"max by (site, trunk) (lifeline_trunk_options_rtt_seconds{{{TRUNK}}})",
                  "{{site}} {{trunk}}"),
            draw=cm.GraphThresholdsStyleMode.DASHED, min_val=0))
        .with_panel(series(
            "OPTIONS responses", "OPTIONS outcomes per interval by status code, or the "
            "error kind when nothing answered.", "none", thresholds(GREEN),
            query("sum by (site, trunk, code) (increase(lifeline_trunk_responses_total"
                  f"{{{TRUNK}}}[$__rate_interval]))", "{{site}} {{trunk}} {{code}}"),
            bars=True, stacked=True, min_val=0))
        .with_panel(series(
            "Trunk availability (last hour)", "Share of the last hour each trunk was up or "
            "degraded (recording rule trunk:lifeline_trunk_up:avg_over_time_1h).",
            "percentunit", thresholds(RED, (0.99, ORANGE), (0.999, GREEN)),
            query("max by (site, trunk) "
                  f"(trunk:lifeline_trunk_up:avg_over_time_1h{{{TRUNK}}})",
                  "{{site}} {{trunk}}"),
            min_val=0, max_val=1))
        .with_panel(series(
            "DIDs per trunk", "Numbers whose calls use each trunk now: a shift is the plan "
            "moving DIDs off a failed trunk.", "none", thresholds(GREEN),
            query(f"max by (site, trunk) (lifeline_dids_per_trunk{{{TRUNK}}})",
                  "{{site}} {{trunk}}"),
            stacked=True, min_val=0))
        .with_panel(timeline(
            "Trunk flags", "Maintenance (no calls by intent) and edge-tripped (calls "
            "failing though OPTIONS answers).", thresholds(GREEN, (1, ORANGE)),
            value_text((0, "no", GREEN), (1, "yes", ORANGE)),
            query(f"max by (site, trunk) (lifeline_trunk_maintenance{{{TRUNK}}})",
                  "{{site}} {{trunk}} maintenance"),
            query(f"max by (site, trunk) (lifeline_trunk_edge_tripped{{{TRUNK}}})",
                  "{{site}} {{trunk}} edge-tripped"),
            span=12))
        .with_row(row("SIP edge and destinations"))
        .with_panel(timeline(
            "Edge in sync", "Whether each SIP edge holds this cycle's DID plan (out of "
            "sync for 2 min pages).", thresholds(RED, (1, GREEN)),
            value_text((0, "out of sync", RED), (1, "in sync", GREEN)),
            query(f"max by (site, edge) (lifeline_sip_edge_in_sync{{{SITE}}})",
                  "{{site}} {{edge}}"),
            span=12, height=6))
        .with_panel(timeline(
            "Destinations", "PBX and DR destinations answering OPTIONS: a PBX down sends "
            "its DIDs to DR.", thresholds(RED, (1, GREEN)),
            value_text((0, "down", RED), (1, "up", GREEN)),
            query(f"max by (site, destination) (lifeline_destination_up{{{SITE}}})",
                  "{{site}} {{destination}}"),
            span=12, height=6))
        .with_panel(series(
            "Plan pushes", "DID plan pushes to the SIP edge per interval, by result.",
            "none", thresholds(GREEN),
            query("sum by (site, actuator, result) (increase(lifeline_plan_pushes_total"
                  f"{{{SITE}}}[$__rate_interval]))", "{{site}} {{actuator}} {{result}}"),
            bars=True, stacked=True, min_val=0))
        .with_panel(series(
            "Plan push time p95", "95th percentile of the time to push the plan to one "
            "edge.", "s", thresholds(GREEN, (1, ORANGE)),
            query(quantile(0.95, "lifeline_plan_push_duration_seconds", "site, actuator",
                           SITE), "{{site}} {{actuator}}"),
            draw=cm.GraphThresholdsStyleMode.DASHED, min_val=0))
    )
