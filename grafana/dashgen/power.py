"""Power and the site's software: is the site on mains, how long its batteries last, whether
its numbers went to the disaster-recovery destination and why, and whether the PBX, CRM
and the other services it checks answer (docs/power.md, docs/services.md)."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import common as cm

from controller.config.services import Service
from controller.core.power import PolicyParams
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
    query,
    row,
    series,
    stat_panel,
    state_code,
    thresholds,
    timeline,
    value_text,
)

UID = "lifeline-power"

# The site's power state set (exporters/power.py SITE_STATES), worst first after unknown,
# as one number per site: 0 unknown, 1 battery_low, 2 on_battery, 3 mains.
POWER_STATES = ("unknown", "battery_low", "on_battery", "mains")
POWER_MAPPINGS = value_text((0, "unknown", GREY), (1, "battery low", RED),
                            (2, "on battery", ORANGE), (3, "mains", GREEN))
POWER_THRESHOLDS = ((1.0, RED), (2.0, ORANGE), (3.0, GREEN))

# NUT's status words (probes/ups.py FLAGS) by what they mean for the calls: normal on
# mains, worth a look, and the battery or the load in danger.
NORMAL_FLAGS = ("OL", "CHRG")
NOTICE_FLAGS = ("DISCHRG", "BYPASS", "RB", "HB", "CAL", "TRIM", "BOOST")
DANGER_FLAGS = ("OB", "LB", "FSD", "OVER", "OFF", "ALARM")

# EN 50160: mains within 230 V +-10 %; outside it a UPS trims, boosts or goes on battery.
LOW_VOLTS, HIGH_VOLTS = 207.0, 253.0


def site_power_code(matchers: str = SITE) -> str:
    """One series per site: its power state as a number (POWER_STATES)."""
    return state_code("lifeline_site_power_state", "", matchers, POWER_STATES)


def services_up_ratio(matchers: str = SITE) -> str:
    """The share of the site's services up (or degraded): 1 when every one answers."""
    return (f"sum by (site) (lifeline_service_up{{{matchers}}}) / "
            f"count by (site) (lifeline_service_up{{{matchers}}})")


def _flags(flags: tuple[str, ...], weight: int) -> str:
    words = "|".join(flags)
    return (f'max by (site, ups, flag) (lifeline_ups_status{{{SITE}, flag=~"{words}"}})'
            + (f" * {weight}" if weight != 1 else ""))


def build() -> db.Dashboard:
    policy = PolicyParams()
    margin = policy.runtime_margin
    timeout = float(Service.model_fields["timeout"].default)
    warn_days = float(Service.model_fields["cert_warn_days"].default)
    return (
        dashboard(UID, "lifeline / Power and services",
                  "The site's UPSes and power state, DIDs moved to DR and why, and the "
                  "site's services (PBX, CRM, SBC...): up, latency, checks, certificates.")
        .with_row(row("Power now"))
        .with_panel(stat_panel(
            "Site power", "The worst known UPS: mains, on battery, battery low; unknown "
            "when no UPS can be read (never counted as mains).", "none",
            thresholds(GREY, *POWER_THRESHOLDS), query(site_power_code(), "{{site}}",
                                                       instant=True),
            mappings=POWER_MAPPINGS))
        .with_panel(stat_panel(
            "Power outage", "On battery past the grace time (the generator did not take "
            f"over; default {policy.grace:g} s), or DIDs moved to DR for power: a page.",
            "none", thresholds(GREEN, (1, RED)),
            query(f"max by (site) (lifeline_power_outage{{{SITE}}})", "{{site}}",
                  instant=True),
            mappings=value_text((0, "no", GREEN), (1, "OUTAGE", RED))))
        .with_panel(stat_panel(
            "DIDs on DR for power", "Numbers moved to their DR destination because the "
            "desks are about to go dark (runtime below the margin, LB, or dr_after).",
            "none", thresholds(GREEN, (1, RED)),
            query(f'sum by (site) (lifeline_dids_on_dr_by_cause{{{SITE}, cause="power"}})',
                  "{{site}}", instant=True)))
        .with_panel(stat_panel(
            "UPSes on battery", "UPSes whose status has OB.", "none",
            thresholds(GREEN, (1, ORANGE)),
            query(f'sum by (site) (lifeline_ups_status{{{SITE}, flag="OB"}})', "{{site}}",
                  instant=True)))
        .with_panel(stat_panel(
            "UPSes not read", "UPSes whose last read failed (timeout, refused, ERR "
            "DATA-STALE...): after fail_after reads they are unknown.", "none",
            thresholds(GREEN, (1, ORANGE)),
            query(f"sum by (site) (lifeline_ups_up{{{SITE}}} == bool 0)", "{{site}}",
                  instant=True)))
        .with_panel(stat_panel(
            "Least runtime", "The shortest estimated runtime of the site's UPSes; red "
            f"below lifeline's default runtime_margin ({margin:g} s), when DIDs go to DR.",
            "s", thresholds(RED, (margin, ORANGE), (2 * margin, GREEN)),
            query(f"min by (site) (lifeline_ups_battery_runtime_seconds{{{SITE}}})",
                  "{{site}}", instant=True)))
        .with_row(row("Power over time"))
        .with_panel(timeline(
            "Site power state", "Mains, on battery, battery low, unknown, over time.",
            thresholds(GREY, *POWER_THRESHOLDS), POWER_MAPPINGS,
            query(site_power_code(), "{{site}}"), span=12, height=6))
        .with_panel(timeline(
            "Power outage and UPS reads", "The outage (a page) and each UPS's last read "
            "(failing: timeout, refused, stale data).", thresholds(GREEN, (1, RED)),
            value_text((0, "ok", GREEN), (1, "outage / failing", RED)),
            query(f"max by (site) (lifeline_power_outage{{{SITE}}})", "{{site}} outage"),
            query(f"max by (site, ups) (1 - lifeline_ups_up{{{SITE}}})",
                  "{{site}} {{ups}} read"),
            span=12, height=6))
        .with_panel(timeline(
            "UPS status flags", "The NUT status words each UPS reports (SNMP UPSes are "
            "mapped onto them): green normal (OL, CHRG), orange worth a look (DISCHRG, "
            "BYPASS, RB, ...), red the battery or the load in danger (OB, LB, FSD, OVER).",
            thresholds(GREY, (1, GREEN), (2, ORANGE), (3, RED)),
            value_text((0, "off", GREY), (1, "set", GREEN), (2, "set", ORANGE),
                       (3, "set", RED)),
            query(_flags(NORMAL_FLAGS, 1), "{{site}} {{ups}} {{flag}}"),
            query(_flags(NOTICE_FLAGS, 2), "{{site}} {{ups}} {{flag}}"),
            query(_flags(DANGER_FLAGS, 3), "{{site}} {{ups}} {{flag}}"),
            height=8))
        .with_panel(series(
            "Battery charge", "Each UPS's battery charge.", "percentunit",
            thresholds(RED, (0.2, ORANGE), (0.5, GREEN)),
            query(f"max by (site, ups) (lifeline_ups_battery_charge_ratio{{{SITE}}})",
                  "{{site}} {{ups}}"),
            min_val=0, max_val=1, span=8))
        .with_panel(series(
            "Runtime left", "Each UPS's estimated runtime; the line is lifeline's default "
            f"runtime_margin ({margin:g} s): below it the DIDs go to DR.", "s",
            thresholds(RED, (margin, GREEN)),
            query(f"max by (site, ups) (lifeline_ups_battery_runtime_seconds{{{SITE}}})",
                  "{{site}} {{ups}}"),
            draw=cm.GraphThresholdsStyleMode.DASHED, min_val=0, span=8))
        .with_panel(series(
            "DIDs on DR by cause", "Numbers on their DR destination: power (the site's "
            "power policy), destination_down (the PBX stopped answering), service (a "
            "service the PBX needs is down), pin (an operator's DR drill).", "none",
            thresholds(GREEN, (1, ORANGE)),
            query(f"max by (site, cause) (lifeline_dids_on_dr_by_cause{{{SITE}}})",
                  "{{site}} {{cause}}"),
            stacked=True, min_val=0, span=8))
        .with_panel(series(
            "Input voltage", "Mains voltage at each UPS (0 while mains is lost); the lines "
            f"are 230 V +-10 % (EN 50160: {LOW_VOLTS:g}-{HIGH_VOLTS:g} V).", "volt",
            thresholds(RED, (LOW_VOLTS, GREEN), (HIGH_VOLTS, ORANGE)),
            query(f"max by (site, ups) (lifeline_ups_input_voltage_volts{{{SITE}}})",
                  "{{site}} {{ups}}"),
            draw=cm.GraphThresholdsStyleMode.DASHED, min_val=0))
        .with_panel(series(
            "Load", "Output load of each UPS (of its rated power): the runtime shrinks as "
            "it grows; over 100 % the UPS raises OVER.", "percentunit",
            thresholds(GREEN, (0.8, ORANGE), (1.0, RED)),
            query(f"max by (site, ups) (lifeline_ups_load_ratio{{{SITE}}})",
                  "{{site}} {{ups}}"),
            draw=cm.GraphThresholdsStyleMode.DASHED, min_val=0))
        .with_row(row("Services"))
        .with_panel(stat_panel(
            "Services up", "Share of the site's services up or degraded; a service down "
            "that a destination needs sends that destination's DIDs to DR.", "percentunit",
            thresholds(RED, (1, GREEN)),
            query(services_up_ratio(), "{{site}}", instant=True), span=6))
        .with_panel(stat_panel(
            "Certificate days left", "Days until each HTTPS service's certificate expires; "
            f"orange under lifeline's default cert_warn_days ({warn_days:g}), red under 7: "
            "an alert, never an outage (unless it expires and the check verifies it).",
            "d", thresholds(RED, (7, ORANGE), (warn_days, GREEN)),
            query("min by (site, service) ((lifeline_service_cert_expiry_timestamp_seconds"
                  f"{{{SITE}}} - time()) / 86400)", "{{site}} {{service}}", instant=True),
            span=18))
        .with_panel(timeline(
            "Service state", "Health of each service: up, degraded (slow, or failing now "
            "and then), down, unknown (not judged yet, or checks stalled).",
            thresholds(GREY, *HEALTH_THRESHOLDS), HEALTH_MAPPINGS,
            query(health_code("lifeline_service_state", "service", SITE),
                  "{{site}} {{service}}"), height=6))
        .with_panel(series(
            "Service latency", "Time to the answer of each service's last answered check "
            f"(HTTP headers, TCP handshake); the line is the default timeout ({timeout:g} "
            "s).", "s", thresholds(GREEN, (timeout, RED)),
            query(f"max by (site, service) (lifeline_service_latency_seconds{{{SITE}}})",
                  "{{site}} {{service}}"),
            draw=cm.GraphThresholdsStyleMode.DASHED, min_val=0, span=8))
        .with_panel(series(
            "Service checks by result", "Checks per interval: ok, or the failure's kind "
            "(bad_status, body_mismatch, timeout, refused, tls, ...).", "none",
            thresholds(BLUE),
            query("sum by (site, service, result) (increase("
                  f"lifeline_service_checks_total{{{SITE}}}[$__rate_interval]))",
                  "{{site}} {{service}} {{result}}"),
            bars=True, stacked=True, min_val=0, span=8))
        .with_panel(series(
            "Services up over time", "Services up or degraded against those checked.",
            "none", thresholds(GREEN),
            query(f"sum by (site) (lifeline_service_up{{{SITE}}})", "{{site}} up"),
            query(f"count by (site) (lifeline_service_up{{{SITE}}})", "{{site}} checked"),
            min_val=0, span=8))
    )
