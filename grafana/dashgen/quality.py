"""Link quality: what each link would do to a call, against the limits lifeline judges
it by. The limits drawn are lifeline's defaults (controller/core/health.py HealthParams,
the ``thresholds:`` a config does not override), taken from the code, not copied."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common as cm

from controller.core.health import HealthParams
from grafana.dashgen.panels import (
    GREEN,
    GREY,
    HEALTH_MAPPINGS,
    HEALTH_THRESHOLDS,
    ORANGE,
    RED,
    SITE,
    YELLOW,
    dashboard,
    health_code,
    link_variable,
    quantile,
    query,
    row,
    series,
    thresholds,
    timeline,
)

UID = "lifeline-link-quality"
LINK = f'{SITE}, link=~"$link"'
DEFAULTS = HealthParams()
LINE = cm.GraphThresholdsStyleMode.DASHED


def _per_link(metric: str) -> str:
    return f"max by (site, link) ({metric}{{{LINK}}})"


def build() -> db.Dashboard:
    p = DEFAULTS
    return (
        dashboard(UID, "lifeline / Link quality",
                  "Loss, latency, jitter and MOS per link, with lifeline's default limits "
                  "for voice drawn (a site's config may set others).", link_variable(),
                  time="now-3h")
        .with_panel(timeline(
            "Link state", "Health of each link as lifeline judges it.",
            thresholds(GREY, *HEALTH_THRESHOLDS), HEALTH_MAPPINGS,
            query(health_code("lifeline_link_state", "link", LINK), "{{site}} {{link}}"),
            height=6))
        .with_row(row("Voice quality"))
        .with_panel(series(
            "Loss, one way", "One direction's loss estimated from the probes: what a call "
            f"suffers. Degraded above {p.degraded_loss:.0%} (degraded_loss).",
            "percentunit", thresholds(GREEN, (p.degraded_loss, ORANGE)),
            query(_per_link("lifeline_link_loss_one_way_ratio"), "{{site}} {{link}}"),
            draw=LINE, min_val=0))
        .with_panel(series(
            "Loss, round trip", "Probes lost over the health window. Down at "
            f"{p.down_loss:.0%} (down_loss).", "percentunit",
            thresholds(GREEN, (p.down_loss, RED)),
            query(_per_link("lifeline_link_loss_ratio"), "{{site}} {{link}}"),
            draw=LINE, min_val=0, max_val=1))
        .with_panel(series(
            "Latency (mean RTT)", "Mean probe round trip over the health window. Degraded "
            f"above {p.degraded_latency * 1000:.0f} ms (degraded_latency).", "s",
            thresholds(GREEN, (p.degraded_latency, ORANGE)),
            query(_per_link("lifeline_link_latency_seconds"), "{{site}} {{link}}"),
            draw=LINE, min_val=0))
        .with_panel(series(
            "Jitter", "RFC 3550-style jitter of the probe RTT. Degraded above "
            f"{p.degraded_jitter * 1000:.0f} ms (degraded_jitter).", "s",
            thresholds(GREEN, (p.degraded_jitter, ORANGE)),
            query(_per_link("lifeline_link_jitter_seconds"), "{{site}} {{link}}"),
            draw=LINE, min_val=0))
        .with_panel(series(
            "MOS (E-model)", "Estimated voice MOS of a call over the link (ITU-T G.107, "
            f"{p.codec}). Degraded under {p.degraded_mos} (degraded_mos).", "none",
            thresholds(RED, (p.degraded_mos, GREEN)),
            query(_per_link("lifeline_link_mos"), "{{site}} {{link}}"),
            draw=cm.GraphThresholdsStyleMode.DASHED_AND_AREA, min_val=1, max_val=4.5))
        .with_panel(series(
            "Loss evidence", "CUSUM log-odds that the link loses more than degraded_loss: "
            f"degraded for loss at {p.loss_evidence_level:g}.", "none",
            thresholds(GREEN, (p.loss_evidence_level, ORANGE)),
            query(_per_link("lifeline_link_loss_evidence"), "{{site}} {{link}}"),
            draw=LINE, min_val=0))
        .with_row(row("Probes"))
        .with_panel(series(
            "Probe RTT p95", "95th percentile of answered probes' RTT, per link.", "s",
            thresholds(GREEN, (p.degraded_latency, ORANGE)),
            query(quantile(0.95, "lifeline_probe_rtt_seconds", "site, link", LINK),
                  "{{site}} {{link}}"),
            draw=LINE, min_val=0))
        .with_panel(series(
            "Probe failures", "Probes per second that failed, by error kind.", "ops",
            thresholds(GREEN, (0.001, ORANGE)),
            query("sum by (site, link, result) (rate(lifeline_probes_total"
                  f'{{{LINK}, result!="ok"}}[$__rate_interval]))',
                  "{{site}} {{link}} {{result}}"),
            min_val=0))
        .with_panel(series(
            "Hold-down remaining", "Seconds of stable probes a down link still needs "
            "before it counts again (stretched by flapping).", "s",
            thresholds(GREEN, (p.hold_down, YELLOW), (p.flap_max_hold_down, RED)),
            query(_per_link("lifeline_link_hold_down_seconds"), "{{site}} {{link}}"),
            min_val=0))
        .with_panel(series(
            "Availability (last hour)", "Share of the last hour the link was up or "
            "degraded (recording rule link:lifeline_link_up:avg_over_time_1h).",
            "percentunit", thresholds(RED, (0.99, ORANGE), (0.999, GREEN)),
            query(f"max by (site, link) (link:lifeline_link_up:avg_over_time_1h{{{LINK}}})",
                  "{{site}} {{link}}"),
            min_val=0, max_val=1))
    )
