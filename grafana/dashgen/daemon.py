"""lifeline itself: is the daemon scraped, keeping up with its cycle and probe rounds,
applying its routes, keeping its journal and reaching Alertmanager; its memory and CPU.
A failover is only as quick as this dashboard is green."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common as cm

from controller.config.model import Config
from grafana.dashgen.panels import (
    GREEN,
    LIFELINE,
    ORANGE,
    RED,
    SITE,
    YELLOW,
    dashboard,
    merge,
    organize,
    quantile,
    query,
    row,
    series,
    stat_panel,
    table_panel,
    thresholds,
    timeline,
    value_text,
)

UID = "lifeline-daemon"
# The default cycle: a reconcile that takes longer delays the next one.
CYCLE = float(Config.model_fields["reconcile_interval"].default)
MIB = 1024 * 1024


def build() -> db.Dashboard:
    return (
        dashboard(UID, "lifeline / The daemon",
                  "lifeline's own health: scrape, control cycle, probe loop, reconciles, "
                  "journal, Alertmanager posts, memory.", time="now-24h", refresh="1m")
        .with_panel(timeline(
            "Scrape up", "Prometheus reaching lifeline (up of job lifeline): down pages "
            "after 1 min.", thresholds(RED, (1, GREEN)),
            value_text((0, "down", RED), (1, "up", GREEN)),
            query(f"max by (site, instance) (up{{{LIFELINE}}})", "{{site}} {{instance}}"),
            height=5))
        .with_panel(table_panel(
            "Version and uptime", "The running version per site and how long it has run.",
            "s", thresholds(YELLOW, (3600, GREEN)),
            query(f"max by (site, version) (lifeline_build_info{{{SITE}}})", instant=True,
                  table_format=True),
            query(f"max by (site) (lifeline_uptime_seconds{{{SITE}}})", instant=True,
                  table_format=True),
            transformations=[merge(), organize({"Value #B": "Uptime"}, ("Time", "Value #A"))],
            height=5, span=24))
        .with_row(row("Control cycle"))
        .with_panel(series(
            "Cycle time", "Time to observe, plan and apply routes: median and p99. Over "
            f"the reconcile interval ({CYCLE:g} s by default) the next cycle is late.", "s",
            thresholds(GREEN, (CYCLE / 2, YELLOW), (CYCLE, RED)),
            query(quantile(0.5, "lifeline_reconcile_duration_seconds", "site", SITE),
                  "{{site}} p50"),
            query(quantile(0.99, "lifeline_reconcile_duration_seconds", "site", SITE),
                  "{{site}} p99"),
            draw=cm.GraphThresholdsStyleMode.DASHED, min_val=0))
        .with_panel(series(
            "Reconciles", "Route reconcile cycles per second by result (error: a step "
            "failed; changed: routes were changed).", "ops", thresholds(GREEN),
            query("sum by (site, result) (rate(lifeline_reconcile_total"
                  f"{{{SITE}}}[$__rate_interval]))", "{{site}} {{result}}"),
            stacked=True, min_val=0))
        .with_panel(series(
            "Reconcile errors and standing problems", "Failed reconciles per interval, and "
            "problems that stand (a foreign route, a refused step): either for 2 min "
            "opens a ticket.", "none", thresholds(GREEN, (1, RED)),
            query("sum by (site) (increase(lifeline_reconcile_total"
                  f'{{{SITE}, result="error"}}[$__rate_interval]))', "{{site}} errors"),
            query(f"max by (site) (lifeline_standing_problems{{{SITE}}})",
                  "{{site}} standing problems"),
            draw=cm.GraphThresholdsStyleMode.DASHED, min_val=0))
        .with_panel(series(
            "Probe rounds skipped", "Probe rounds skipped because the event loop was late "
            "by a whole interval: the probe loop lags and detection slows down.", "none",
            thresholds(GREEN, (1, ORANGE)),
            query("sum by (site, link) (increase(lifeline_probe_rounds_skipped_total"
                  f"{{{SITE}}}[$__rate_interval]))", "{{site}} {{link}}"),
            bars=True, min_val=0))
        .with_row(row("Journal, config, Alertmanager"))
        .with_panel(stat_panel(
            "Journal write errors in range", "Journal writes that failed over the time range.",
            "none", thresholds(GREEN, (1, RED)),
            query("sum by (site) (increase(lifeline_journal_write_errors_total"
                  f"{{{SITE}}}[$__range]))", "{{site}}", instant=True)))
        .with_panel(stat_panel(
            "Journal kept", "Where the journal is: on disk, or in memory only (lost at "
            "restart).", "none", thresholds(GREEN, (1, RED)),
            query(f"max by (site) (lifeline_journal_in_memory{{{SITE}}})", "{{site}}",
                  instant=True),
            mappings=value_text((0, "on disk", GREEN), (1, "in memory", RED))))
        .with_panel(stat_panel(
            "Last config reload", "A refused reload leaves the old config running.",
            "none", thresholds(RED, (1, GREEN)),
            query(f"min by (site) (lifeline_config_last_reload_successful{{{SITE}}})",
                  "{{site}}", instant=True),
            mappings=value_text((0, "refused", RED), (1, "ok", GREEN))))
        .with_panel(series(
            "Alertmanager posts", "lifeline's own critical alerts posted to Alertmanager "
            "per interval, by result (ok: an Alertmanager took it).", "none",
            thresholds(GREEN),
            query("sum by (site, result) (increase(lifeline_alertmanager_posts_total"
                  f"{{{SITE}}}[$__rate_interval]))", "{{site}} {{result}}"),
            bars=True, stacked=True, min_val=0))
        .with_panel(series(
            "Journal write errors", "Failed journal writes per interval.", "none",
            thresholds(GREEN, (1, RED)),
            query("sum by (site) (increase(lifeline_journal_write_errors_total"
                  f"{{{SITE}}}[$__rate_interval]))", "{{site}}"),
            bars=True, min_val=0))
        .with_row(row("Process"))
        .with_panel(series(
            "Resident memory", "Resident set size of the daemon.", "bytes",
            thresholds(GREEN, (256 * MIB, ORANGE), (512 * MIB, RED)),
            query(f"max by (site, instance) (process_resident_memory_bytes{{{LIFELINE}}})",
                  "{{site}} {{instance}}"),
            min_val=0, span=8))
        .with_panel(series(
            "CPU", "CPU time per second (1 = one core).", "percentunit",
            thresholds(GREEN, (0.5, ORANGE), (0.9, RED)),
            query("sum by (site, instance) (rate(process_cpu_seconds_total"
                  f"{{{LIFELINE}}}[$__rate_interval]))", "{{site}} {{instance}}"),
            min_val=0, span=8))
        .with_panel(series(
            "Open file descriptors", "Open fds against the process limit.", "percentunit",
            thresholds(GREEN, (0.8, ORANGE), (0.95, RED)),
            query(f"max by (site, instance) (process_open_fds{{{LIFELINE}}} / "
                  f"process_max_fds{{{LIFELINE}}})", "{{site}} {{instance}}"),
            min_val=0, max_val=1, span=8))
        .with_panel(stat_panel(
            "Scrape duration", "How long Prometheus takes to scrape lifeline (the goal is "
            "under 50 ms with a large site).", "s", thresholds(GREEN, (0.05, ORANGE),
                                                                (1, RED)),
            query(f"max by (site) (scrape_duration_seconds{{{LIFELINE}}})", "{{site}}"),
            span=24, height=4))
    )
