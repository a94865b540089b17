"""The call recordings and their backups: whether last night's copy ran and is complete,
whether the copies read back equal, whether anything left a backup or the store before its
legal time, and whether the recorder's disk will fill or its RAID is degraded
(docs/recordings.md). The file is recordings.json, not backups.json: half of what it shows
(the store's retention, its disk, its RAID, lost recordings) is about the store itself."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat
from grafana_foundation_sdk.models import common as cm

from controller.config.recordings import DiskLimits, RecordingsConfig
from grafana.dashgen.panels import (
    BLUE,
    GREEN,
    GREY,
    ORANGE,
    RED,
    SITE,
    Column,
    dashboard,
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

UID = "lifeline-recordings"

# lifeline's verdict on each check (exporters/recordings.py), as one number: worst wins.
SEVERITY_MAPPINGS = value_text((0, "ok", GREEN), (1, "ticket", ORANGE), (2, "page", RED))
SEVERITY_THRESHOLDS = ((1.0, ORANGE), (2.0, RED))


def worst_severity(matchers: str = SITE) -> str:
    """One series per site: 0 no finding stands, 1 a ticket, 2 a page."""
    return (f"max by (site) ((lifeline_recordings_findings{{{matchers}, severity=\"page\"}} "
            f"> bool 0) * 2 or (lifeline_recordings_findings{{{matchers}, "
            f"severity=\"ticket\"}} > bool 0))")


def newest_backup_age(matchers: str = SITE) -> str:
    """The stalest backup per site: the age of the newest recording it holds."""
    return f"max by (site) (lifeline_recordings_backup_newest_age_seconds{{{matchers}}})"


def missing(matchers: str = SITE) -> str:
    return f"sum by (site) (lifeline_recordings_missing{{{matchers}}})"


def disk_days_left(matchers: str = SITE) -> str:
    return f"min by (site) (lifeline_recordings_disk_time_left_seconds{{{matchers}}}) / 86400"


def stale_after() -> float:
    """The default stale limit of a backup: schedule + grace (26 h for a daily copy)."""
    fields = RecordingsConfig.model_fields
    return float(fields["schedule"].default) + float(fields["grace"].default)


def disk_days() -> tuple[float, float]:
    """The default (page, warn) days left of the store's volume."""
    fields = DiskLimits.model_fields
    return float(fields["page_days_left"].default), float(fields["warn_days_left"].default)


def _count(title: str, description: str, metric: str, colour: str) -> stat.Panel:
    return stat_panel(
        title, description, "none", thresholds(GREEN, (1, colour)),
        query(f"sum by (site, backup) ({metric}{{{SITE}}})", "{{site}} {{backup}}",
              instant=True), span=6)


def build() -> db.Dashboard:
    stale = stale_after()
    page_days, warn_days = disk_days()
    verify_days = int(RecordingsConfig.model_fields["verify_days"].default)
    return (
        dashboard(UID, "lifeline / Recordings and backups",
                  "Call recordings: each backup's last copy, recordings missing, different, "
                  "corrupt or dropped before their legal time, the store's retention, disk "
                  "and RAID, and the findings standing now (docs/recordings.md).",
                  time="now-7d")
        .with_row(row("Findings now"))
        .with_panel(stat_panel(
            "Worst finding", "The worst recordings finding standing: a page when a "
            "recording can be lost (a copy stale, missing or corrupt, a retention breach, "
            "the disk nearly full, a degraded RAID), a ticket otherwise.", "none",
            thresholds(GREEN, *SEVERITY_THRESHOLDS),
            query(worst_severity(), "{{site}}", instant=True), mappings=SEVERITY_MAPPINGS))
        .with_panel(stat_panel(
            "Sources unreadable", "The store or a backup that cannot be read (an unmounted "
            "share, a missing root, a repository restic cannot open): one finding, and its "
            "other checks wait.", "none", thresholds(GREEN, (1, RED)),
            query(f"sum by (site) (lifeline_recordings_source_up{{{SITE}}} == bool 0)",
                  "{{site}}", instant=True)))
        .with_panel(stat_panel(
            "Lost from the store", "Recordings younger than the retention that left the "
            "store before any backup held them: lost for good (a page).", "none",
            thresholds(GREEN, (1, RED)),
            query(f"max by (site) (lifeline_recordings_lost{{{SITE}}})", "{{site}}",
                  instant=True)))
        .with_panel(stat_panel(
            "Last check", "Time since the last recordings check cycle ended: it grows "
            "when the checker is stuck.", "s", thresholds(GREEN, (900, ORANGE), (3600, RED)),
            query("time() - max by (site) (lifeline_recordings_last_check_timestamp_seconds"
                  f"{{{SITE}}})", "{{site}}", instant=True)))
        .with_panel(stat_panel(
            "Verify coverage", "Share of the store's recordings read back and compared "
            f"(SHA-256) in this period: every recording once in verify_days (default "
            f"{verify_days}).", "percentunit", thresholds(ORANGE, (0.01, GREEN)),
            query(f"max by (site) (lifeline_recordings_verify_coverage_ratio{{{SITE}}})",
                  "{{site}}", instant=True)))
        .with_panel(stat_panel(
            "Disk days left", "Days until the store's volume is full at the recent write "
            f"rate: red at lifeline's default page_days_left ({page_days:g}), orange at "
            f"warn_days_left ({warn_days:g}); infinite when nothing was written lately.",
            "d", thresholds(RED, (page_days, ORANGE), (warn_days, GREEN)),
            query(disk_days_left(), "{{site}}", instant=True)))
        .with_panel(table_panel(
            "Findings standing", "Each check lifeline judged a ticket or a page now, on its "
            "subject (a backup, store, or an md array); the status page and `lifeline "
            "status` name the recordings.", "none", thresholds(GREEN),
            query("max by (site, check, subject, severity) (lifeline_recordings_check_severity"
                  f'{{{SITE}, severity=~"ticket|page"}} == 1)', instant=True,
                  table_format=True),
            transformations=[organize({"check": "Check", "subject": "Subject",
                                       "severity": "Severity"}, ("Time", "Value"))],
            columns=[Column("Severity", "none", thresholds(GREY))], height=6))
        .with_row(row("Backups"))
        .with_panel(series(
            "Newest copy age", "Age of the newest recording each backup holds; the line is "
            f"the default stale limit, schedule + grace ({stale / 3600:g} h). Stale is when "
            "a newer recording waited past it (a page), not the age alone.", "s",
            thresholds(GREEN, (stale, RED)),
            query("max by (site, backup) (lifeline_recordings_backup_newest_age_seconds"
                  f"{{{SITE}}})", "{{site}} {{backup}}"),
            draw=cm.GraphThresholdsStyleMode.DASHED, min_val=0))
        .with_panel(timeline(
            "Backups readable", "1 readable, 0 not (unmounted, emptied, restic failing).",
            thresholds(RED, (1, GREEN)), value_text((0, "unreadable", RED), (1, "ok", GREEN)),
            query(f"max by (site, source) (lifeline_recordings_source_up{{{SITE}}})",
                  "{{site}} {{source}}"), span=12))
        .with_panel(_count("Missing", "Recordings older than the backup's last copy by "
                           "the grace and not in it (a page for a must-hold backup).",
                           "lifeline_recordings_missing", RED))
        .with_panel(_count("Mismatched", "Recordings the backup holds with another size "
                           "than the original.", "lifeline_recordings_mismatched", RED))
        .with_panel(_count("Corrupt", "Copies read back whose SHA-256 differs from the "
                           "original's.", "lifeline_recordings_corrupt", RED))
        .with_panel(_count("Dropped early", "Recordings younger than the retention gone "
                           "from the backup: a legal breach.",
                           "lifeline_recordings_dropped_early", RED))
        .with_panel(series(
            "Missing, mismatched, corrupt, dropped early", "The completeness and integrity "
            "counts over time, per backup.", "none", thresholds(GREEN, (1, RED)),
            query(f"max by (site, backup) (lifeline_recordings_missing{{{SITE}}})",
                  "{{site}} {{backup}} missing"),
            query(f"max by (site, backup) (lifeline_recordings_mismatched{{{SITE}}})",
                  "{{site}} {{backup}} mismatched"),
            query(f"max by (site, backup) (lifeline_recordings_corrupt{{{SITE}}})",
                  "{{site}} {{backup}} corrupt"),
            query(f"max by (site, backup) (lifeline_recordings_dropped_early{{{SITE}}})",
                  "{{site}} {{backup}} dropped early"),
            min_val=0))
        .with_panel(series(
            "Verified", "Copies read back per second and found equal to the original.",
            "ops", thresholds(BLUE),
            query("sum by (site, backup) (rate(lifeline_recordings_verified_total"
                  f"{{{SITE}}}[$__rate_interval]))", "{{site}} {{backup}}"),
            min_val=0))
        .with_row(row("Store and sources"))
        .with_panel(series(
            "Oldest recording held", "How far back each source keeps (retention): a backup "
            "must reach back the legal retention once the site is that old.", "s",
            thresholds(BLUE),
            query("time() - min by (site, source) (lifeline_recordings_oldest_timestamp_seconds"
                  f"{{{SITE}}})", "{{site}} {{source}}"),
            min_val=0, span=8))
        .with_panel(series(
            "Files per source", "Recordings each source holds.", "none", thresholds(BLUE),
            query(f"max by (site, source) (lifeline_recordings_files{{{SITE}}})",
                  "{{site}} {{source}}"),
            min_val=0, span=8))
        .with_panel(series(
            "Bytes per source", "Bytes of the recordings each source holds.", "bytes",
            thresholds(BLUE),
            query(f"max by (site, source) (lifeline_recordings_bytes{{{SITE}}})",
                  "{{site}} {{source}}"),
            min_val=0, span=8))
        .with_panel(series(
            "Store disk available", "Bytes the recorder may still write on the store's "
            "volume, and the volume's size.", "bytes", thresholds(BLUE),
            query(f"min by (site) (lifeline_recordings_disk_avail_bytes{{{SITE}}})",
                  "{{site}} available"),
            query(f"max by (site) (lifeline_recordings_disk_size_bytes{{{SITE}}})",
                  "{{site}} size"),
            min_val=0, span=8))
        .with_panel(series(
            "Store disk days left", "Days until the volume is full at the recent write "
            f"rate; the lines are the defaults page_days_left ({page_days:g}) and "
            f"warn_days_left ({warn_days:g}).", "d",
            thresholds(RED, (page_days, ORANGE), (warn_days, GREEN)),
            query(disk_days_left(), "{{site}}"),
            draw=cm.GraphThresholdsStyleMode.DASHED, min_val=0, span=8))
        .with_panel(timeline(
            "RAID degraded", "Each Linux software RAID array under the store: degraded or "
            "inactive is one disk failure from losing what is not yet copied (a page).",
            thresholds(GREEN, (1, RED)), value_text((0, "ok", GREEN), (1, "degraded", RED)),
            query(f"max by (site, array) (lifeline_recordings_raid_degraded{{{SITE}}})",
                  "{{site}} {{array}}"), span=8))
        .with_panel(series(
            "Scan duration", "How long each source's last scan took (incremental, or the "
            "periodic full walk).", "s", thresholds(BLUE),
            query(f"max by (site, source) (lifeline_recordings_scan_duration_seconds{{{SITE}}})",
                  "{{site}} {{source}}"),
            min_val=0))
        .with_panel(series(
            "Time since the last check", "Since the last check cycle ended, and since each "
            "source's last scan.", "s", thresholds(GREEN, (900, ORANGE), (3600, RED)),
            query("time() - max by (site) (lifeline_recordings_last_check_timestamp_seconds"
                  f"{{{SITE}}})", "{{site}} check"),
            query("time() - max by (site, source) ("
                  f"lifeline_recordings_last_scan_timestamp_seconds{{{SITE}}})",
                  "{{site}} {{source}} scan"),
            min_val=0))
    )
