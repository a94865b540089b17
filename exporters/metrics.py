"""Every Prometheus metric lifeline serves: one catalog, read off the snapshot.

``CATALOG`` is the single definition of each series (name, type, help, labels, when it is
served, and how it is read off a ``Snapshot``). ``SnapshotCollector`` turns the latest
snapshot into metric families at scrape time, and ``metrics_doc()`` writes
``docs/metrics.md`` from the same catalog, so a metric cannot be documented and never set,
or set and never documented (tests check both, and a lab test scrapes a real daemon for
every name). Names follow Prometheus conventions (prefix ``lifeline_``, base units,
``_total`` on counters); labels stay bounded (link, group, trunk, state, kind, result);
free-text reasons go to the status API and the journal, never into a label. Counters keep
the label sets the runtime declared at 0, so ``increase()`` sees the first event.
Run ``python -m exporters.metrics > docs/metrics.md`` after changing the catalog.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from controller.core.health import HealthState
from controller.core.snapshot import Labels, Snapshot
from exporters import power as pw
from exporters import recordings as rec

STATES = tuple(s.value for s in HealthState)
Series = Iterable[tuple[Labels, float]]


@dataclass(frozen=True, slots=True)
class MetricDef:
    name: str
    kind: str  # gauge, counter, histogram
    help: str
    labels: tuple[str, ...] = ()
    when: str = "always"  # when the series is served, for docs/metrics.md
    read: Callable[[Snapshot], Series] | None = None  # gauges (counters: see _family)


def _up(state: HealthState) -> float:
    return 1.0 if state in (HealthState.UP, HealthState.DEGRADED) else 0.0


def _link(attr: str) -> Callable[[Snapshot], Series]:
    """A per-link gauge from a LinkSnap field; a field that is None serves no series."""
    def read(s: Snapshot) -> Series:
        for link in s.links:
            value = getattr(link, attr)
            if value is not None:
                yield (link.name,), float(value)
    return read


def _state_set(items: Callable[[Snapshot], Iterable[tuple[str, HealthState]]]
               ) -> Callable[[Snapshot], Series]:
    def read(s: Snapshot) -> Series:
        for name, state in items(s):
            for value in STATES:
                yield (name, value), 1.0 if state.value == value else 0.0
    return read


def _links_state(s: Snapshot) -> Iterable[tuple[str, HealthState]]:
    return ((link.name, link.state) for link in s.links)


def _trunks_state(s: Snapshot) -> Iterable[tuple[str, HealthState]]:
    return ((t.name, t.state) for t in s.trunks)


def _group_active(s: Snapshot) -> Series:
    for g in s.groups:
        for link in g.links:
            yield (g.name, link), 1.0 if link in g.applied else 0.0


def _dids(s: Snapshot) -> Series:
    if s.plan is not None:
        yield (), float(s.plan.total_numbers)


def _unroutable(s: Snapshot) -> Series:
    if s.plan is not None:
        yield (), float(s.plan.unroutable_numbers)


def _on_dr(s: Snapshot) -> Series:
    if s.plan is not None:
        yield (), float(sum(d.numbers.size for d in s.plan.decisions if d.on_dr))


def _unroutable_ranges(s: Snapshot) -> Series:
    if s.plan is not None:
        yield (), float(len(s.plan.unroutable))


def _per_trunk(s: Snapshot) -> Series:
    if s.plan is not None:
        for trunk, count in s.plan.numbers_per_trunk.items():
            yield (trunk,), float(count)


TELEPHONY = "trunks or DIDs are configured"
OVERRIDE = "an operator override is held"
POWER = "a power section is configured"
UPS_KNOWN = "the UPS is known and reports it"
POWER_WHEN = (POWER, UPS_KNOWN)  # served only with a power section (docs/power.md)
SERVICES = "services are configured"
RECORDINGS = "a recordings section is configured"
REC_CHECKED = "after the first recordings check"
REC_SCANNED = "after the source's first scan"
REC_HOLDS = "the source holds a recording"
REC_READABLE = "the source can be read"
REC_DISK = "the store's volume was read"
REC_RAID = "a software RAID array is under the store"
# Served only with a recordings section (docs/recordings.md).
RECORDINGS_WHEN = (RECORDINGS, REC_CHECKED, REC_SCANNED, REC_HOLDS, REC_READABLE, REC_DISK,
                   REC_RAID)

CATALOG: tuple[MetricDef, ...] = (
    MetricDef("lifeline_build_info", "gauge", "Version of the running lifeline and its site "
              "(1). The site label is here only: add it to every series in the scrape config.",
              ("version", "site"), read=lambda s: [((s.version, s.site), 1.0)]),
    MetricDef("lifeline_uptime_seconds", "gauge", "Seconds since the daemon started.",
              read=lambda s: [((), s.uptime)]),
    # -- links and routes ---------------------------------------------------------------
    MetricDef("lifeline_link_state", "gauge",
              "1 for the link's current health state, 0 for the others.", ("link", "state"),
              read=_state_set(_links_state)),
    MetricDef("lifeline_link_up", "gauge",
              "1 when the link is up or degraded, 0 when down or unknown.", ("link",),
              read=lambda s: (((link.name,), _up(link.state)) for link in s.links)),
    MetricDef("lifeline_link_carrier", "gauge", "1 while the link's interface has carrier.",
              ("link",), read=lambda s: (((k.name,), float(k.carrier)) for k in s.links)),
    MetricDef("lifeline_link_tier", "gauge", "Configured tier (lower wins).", ("link",),
              read=_link("tier")),
    MetricDef("lifeline_link_loss_ratio", "gauge", "Probe loss over the health window "
              "(round trip: a probe is lost if its request or its reply is).",
              ("link",), read=_link("loss_ratio")),
    MetricDef("lifeline_link_loss_one_way_ratio", "gauge", "One direction's loss estimated "
              "from the round-trip loss of the targets that see the same path, assuming "
              "both directions lose alike: what a call suffers, what degraded_loss and the "
              "MOS judge.", ("link",), read=_link("loss_one_way")),
    MetricDef("lifeline_link_loss_evidence", "gauge", "Accumulated evidence (CUSUM "
              "log-odds) that the link loses more than degraded_loss one way; the link is "
              "degraded for loss at 5, and it decays towards 0 on a line under the "
              "threshold.", ("link",), read=_link("loss_evidence")),
    MetricDef("lifeline_link_latency_seconds", "gauge", "Mean probe RTT over the health "
              "window.", ("link",), "the link has answered probes in the window",
              _link("latency")),
    MetricDef("lifeline_link_jitter_seconds", "gauge", "RFC 3550-style jitter of the probe "
              "RTT.", ("link",), "the link has answered probes in the window", _link("jitter")),
    MetricDef("lifeline_link_mos", "gauge", "Estimated voice MOS (ITU-T G.107 E-model).",
              ("link",), "the link has answered probes in the window", _link("mos")),
    MetricDef("lifeline_link_hold_down_seconds", "gauge",
              "Seconds of stable probes still needed before a down link counts again "
              "(0 when none is running).", ("link",), read=_link("hold_down_remaining")),
    MetricDef("lifeline_link_flap_penalty", "gauge",
              "Decaying flap penalty (1 per failure, halving every flap_half_life); it "
              "stretches the hold-down.", ("link",), read=_link("flap_penalty")),
    MetricDef("lifeline_link_transitions_total", "counter", "Health state changes, by the "
              "new state.", ("link", "to")),
    MetricDef("lifeline_probes_total", "counter",
              "Probes sent, by kind and result (ok or the error kind).",
              ("link", "kind", "result")),
    MetricDef("lifeline_probe_rounds_skipped_total", "counter",
              "Probe rounds skipped because the event loop was late by a whole interval "
              "(the host is too busy: detection slows down).", ("link",), "always"),
    MetricDef("lifeline_probe_rtt_seconds", "histogram", "RTT of answered probes.",
              ("link", "kind")),
    MetricDef("lifeline_group_active_link", "gauge",
              "1 for the link(s) a route group's kernel route uses now.", ("group", "link"),
              read=_group_active),
    MetricDef("lifeline_failovers_total", "counter",
              "Changes of a route group's active link (the first route after start is none).",
              ("group", "from", "to")),
    MetricDef("lifeline_conntrack_flushed_total", "counter",
              "Conntrack entries deleted after a switch (flows NAT'ed through a left link).",
              ("group",)),
    MetricDef("lifeline_reconcile_total", "counter",
              "Route reconcile cycles by result (changed, noop, error, dry_run).",
              ("result",)),
    MetricDef("lifeline_reconcile_duration_seconds", "histogram",
              "Time to observe, plan and apply routes."),
    MetricDef("lifeline_standing_problems", "gauge",
              "Problems that stand now (a foreign route in lifeline's place, a step the "
              "kernel refused); the status API lists them.",
              read=lambda s: [((), float(len(s.problems)))]),
    # -- SIP trunks, destinations, DIDs, the SIP edge -----------------------------------
    MetricDef("lifeline_trunk_state", "gauge",
              "1 for the trunk's current health state, 0 for the others.", ("trunk", "state"),
              TELEPHONY, _state_set(_trunks_state)),
    MetricDef("lifeline_trunk_up", "gauge",
              "1 when the trunk is up or degraded, 0 when down or unknown.", ("trunk",),
              TELEPHONY, lambda s: (((t.name,), _up(t.state)) for t in s.trunks)),
    MetricDef("lifeline_trunk_options_rtt_seconds", "gauge",
              "RTT of the trunk's last answered SIP OPTIONS.", ("trunk",),
              "the trunk has answered an OPTIONS",
              lambda s: (((t.name,), t.last_rtt) for t in s.trunks
                         if t.last_rtt is not None and t.last_code is not None)),
    MetricDef("lifeline_trunk_responses_total", "counter",
              "SIP OPTIONS outcomes by status code, or the error kind when nothing answered "
              "(also failures health ignored at start: sent before the trunk's path existed).",
              ("trunk", "code"), TELEPHONY),
    MetricDef("lifeline_trunk_edge_tripped", "gauge",
              "1 while the SIP edge's failed calls hold the trunk degraded (OPTIONS answered).",
              ("trunk",), TELEPHONY,
              lambda s: (((t.name,), float(t.edge_tripped is not None)) for t in s.trunks)),
    MetricDef("lifeline_trunk_edge_trips_total", "counter",
              "Times the SIP edge's failed calls tripped the trunk to degraded.", ("trunk",),
              TELEPHONY),
    MetricDef("lifeline_trunk_maintenance", "gauge",
              "1 while the trunk is in maintenance (config or operator): it gets no calls.",
              ("trunk",), TELEPHONY,
              lambda s: (((t.name,), float(t.maintenance is not None)) for t in s.trunks)),
    MetricDef("lifeline_trunk_registered", "gauge",
              "1 when the trunk's last REGISTER check succeeded.", ("trunk",),
              "registration trunks, after their first check",
              lambda s: (((t.name,), float(t.registered)) for t in s.trunks
                         if t.registered is not None)),
    MetricDef("lifeline_destination_up", "gauge",
              "1 when the destination (PBX, DR) answers OPTIONS.", ("destination",),
              "destinations are configured",
              lambda s: (((d.name,), _up(d.state)) for d in s.destinations)),
    MetricDef("lifeline_dids", "gauge", "DIDs (numbers) in the plan.", (),
              "after the first DID plan", _dids),
    MetricDef("lifeline_dids_per_trunk", "gauge", "DIDs (numbers) whose calls use the "
              "trunk now.", ("trunk",), "after the first DID plan", _per_trunk),
    MetricDef("lifeline_dids_unroutable", "gauge",
              "DIDs (numbers) with no healthy capable trunk: a critical page.", (),
              "after the first DID plan", _unroutable),
    MetricDef("lifeline_dids_on_dr", "gauge",
              "DIDs (numbers) whose inbound calls go to the disaster-recovery destination "
              "(their primary destination is down).", (), "after the first DID plan",
              _on_dr),
    MetricDef("lifeline_did_ranges_unroutable", "gauge",
              "DID ranges with no healthy capable trunk.", (), "after the first DID plan",
              _unroutable_ranges),
    MetricDef("lifeline_sip_edge_in_sync", "gauge",
              "1 when the SIP edge holds this cycle's DID plan, 0 while it does not (a "
              "failed push, an edge not reached yet).", ("edge",), "a sip_edge is configured",
              lambda s: (((e.name,), float(e.in_sync)) for e in s.edges)),
    MetricDef("lifeline_plan_pushes_total", "counter",
              "DID plan pushes to the SIP edge, by edge and result.", ("actuator", "result"),
              "a sip_edge is configured"),
    MetricDef("lifeline_plan_push_duration_seconds", "histogram",
              "Time to push the plan to one SIP edge.", ("actuator",),
              "a sip_edge is configured"),
    MetricDef("lifeline_dids_on_dr_by_cause", "gauge",
              "DIDs (numbers) on their disaster-recovery destination, by why: "
              "destination_down, pin (the operator), power (the site's power policy), "
              "service (a service the destination needs is down).",
              ("cause",), "after the first DID plan", pw.dids_on_dr_by_cause),
    # -- the site's power (UPSes) ---------------------------------------------------------
    MetricDef("lifeline_ups_status", "gauge",
              "1 for each NUT status word (OL, OB, LB, ...) the UPS's last good reading "
              "has, 0 for the others.", ("ups", "flag"), POWER, pw.ups_status),
    MetricDef("lifeline_ups_state", "gauge",
              "1 for the UPS's current state (mains, on_battery, battery_low, unknown: not "
              "read, failing reads, or readings frozen past stale_after), 0 for the others.",
              ("ups", "state"), POWER, pw.ups_state),
    MetricDef("lifeline_ups_up", "gauge", "1 when the UPS's last read succeeded.", ("ups",),
              POWER, pw.ups_up),
    MetricDef("lifeline_ups_battery_charge_ratio", "gauge", "Battery charge (0..1).",
              ("ups",), UPS_KNOWN, pw.ups_field("charge")),
    MetricDef("lifeline_ups_battery_runtime_seconds", "gauge",
              "Estimated runtime left on battery.", ("ups",),
              UPS_KNOWN, pw.ups_field("runtime")),
    MetricDef("lifeline_ups_input_voltage_volts", "gauge", "Input (mains) voltage.",
              ("ups",), UPS_KNOWN, pw.ups_field("input_voltage")),
    MetricDef("lifeline_ups_load_ratio", "gauge", "Output load (0..1 of the rated power).",
              ("ups",), UPS_KNOWN, pw.ups_field("load")),
    MetricDef("lifeline_site_power_state", "gauge",
              "1 for the site's power state (the worst known UPS: mains, on_battery, "
              "battery_low; unknown when no UPS is known), 0 for the others.", ("state",),
              POWER, pw.site_power_state),
    MetricDef("lifeline_power_outage", "gauge",
              "1 while the site is on battery past the grace time, or in DR for power "
              "(docs/power.md).", (), POWER, pw.power_outage),
    # -- the site's services (docs/services.md) ----------------------------------------
    MetricDef("lifeline_service_up", "gauge",
              "1 when the service is up or degraded, 0 when down or not judged yet.",
              ("service",), SERVICES, lambda s: (((v.name,), _up(v.state)) for v in s.services)),
    MetricDef("lifeline_service_state", "gauge",
              "1 for the service's current health state, 0 for the others. Down, it takes "
              "the destinations that need it down (their DIDs go to DR).",
              ("service", "state"), SERVICES,
              _state_set(lambda s: ((v.name, v.state) for v in s.services))),
    MetricDef("lifeline_service_latency_seconds", "gauge",
              "Time to the answer of the service's last answered check (HTTP headers, TCP "
              "handshake).", ("service",), "the service's last check was answered",
              lambda s: (((v.name,), v.latency) for v in s.services if v.latency is not None)),
    MetricDef("lifeline_service_checks_total", "counter",
              "Checks of the service by result: ok, or the failure's kind (bad_status, "
              "body_mismatch, timeout, refused, tls, ...).", ("service", "result"), SERVICES),
    MetricDef("lifeline_service_cert_expiry_timestamp_seconds", "gauge",
              "When the service's TLS certificate expires (its notAfter, seconds since the "
              "epoch): alert on it well before.", ("service",),
              "an https service has shown its certificate",
              lambda s: (((v.name,), v.cert_not_after) for v in s.services
                         if v.cert_not_after is not None)),
    MetricDef("lifeline_service_cert_warn_seconds", "gauge",
              "How long before its certificate expires the service's alert fires (its "
              "cert_warn_days): the alert compares the expiry with this.", ("service",),
              "an https service has shown its certificate",
              lambda s: (((v.name,), v.cert_warn_days * 86400.0) for v in s.services
                         if v.cert_not_after is not None and v.cert_warn_days is not None)),
    # -- the call recordings and their backups (docs/recordings.md) ----------------------
    MetricDef("lifeline_recordings_source_up", "gauge",
              "1 when the source (the store, or a backup by its name) can be read; 0 when "
              "it cannot (an unmounted share, a missing root, a repository restic cannot "
              "open): one finding, and its other checks wait.", ("source",), RECORDINGS,
              rec.source_up),
    MetricDef("lifeline_recordings_files", "gauge",
              "Recordings the source holds (for restic: held by a snapshot still in the "
              "repository).", ("source",), REC_SCANNED, rec.source_scanned("files")),
    MetricDef("lifeline_recordings_bytes", "gauge", "Bytes of the recordings the source "
              "holds.", ("source",), REC_SCANNED, rec.source_scanned("bytes")),
    MetricDef("lifeline_recordings_last_scan_timestamp_seconds", "gauge",
              "When the source's last scan (a walk of the tree, or the listing of new restic "
              "snapshots) ended.", ("source",), REC_SCANNED,
              rec.source_scanned("scanned_at")),
    MetricDef("lifeline_recordings_scan_duration_seconds", "gauge",
              "How long the source's last scan took (incremental, or the periodic full "
              "walk).", ("source",), REC_SCANNED, rec.source_scanned("scan_seconds")),
    MetricDef("lifeline_recordings_unreadable_entries", "gauge",
              "Entries of the source's tree lifeline could not read (permission, I/O error, "
              "a symlink it does not follow, a fifo): a ticket; the status API names them.",
              ("source",), REC_READABLE, rec.unreadable),
    MetricDef("lifeline_recordings_oldest_timestamp_seconds", "gauge",
              "mtime of the oldest recording the source holds: how far back it keeps.",
              ("source",), REC_HOLDS, rec.oldest_timestamp),
    MetricDef("lifeline_recordings_backup_newest_age_seconds", "gauge",
              "Age of the newest recording the backup holds. Only a number: stale is when a "
              "newer recording has waited past schedule + grace "
              "(lifeline_recordings_check_severity{check=\"freshness\"}).", ("backup",),
              REC_HOLDS, rec.newest_age),
    MetricDef("lifeline_recordings_missing", "gauge",
              "Recordings older than the backup's last copy by the grace (and younger than "
              "the retention) that are not in it; the status API names them.", ("backup",),
              REC_READABLE, rec.finding_value("missing")),
    MetricDef("lifeline_recordings_mismatched", "gauge",
              "Recordings the backup holds with another size than the original.",
              ("backup",), REC_READABLE, rec.finding_value("mismatched")),
    MetricDef("lifeline_recordings_corrupt", "gauge",
              "Copies read back from the backup whose SHA-256 differs from the original's.",
              ("backup",), REC_READABLE, rec.finding_value("corrupt")),
    MetricDef("lifeline_recordings_dropped_early", "gauge",
              "Recordings younger than the legal retention that went from the backup (a "
              "retention breach).", ("backup",), REC_READABLE, rec.finding_value("gone")),
    MetricDef("lifeline_recordings_lost", "gauge",
              "Recordings younger than the retention that left the store before any backup "
              "held them (lost for good).", (), REC_READABLE,
              rec.finding_value("lost", store=True)),
    MetricDef("lifeline_recordings_verified_total", "counter",
              "Copies read back from the backup and found equal to the original (SHA-256): "
              "the integrity check's running count.", ("backup",), RECORDINGS, rec.verified),
    MetricDef("lifeline_recordings_verify_coverage_ratio", "gauge",
              "Share of the store's recordings read back in this verification period (every "
              "recording once in verify_days).", (), REC_CHECKED,
              rec.verifier_field("period_coverage")),
    MetricDef("lifeline_recordings_verify_files_per_cycle", "gauge",
              "Recordings read back per check cycle so that each is verified once in "
              "verify_days.", (), REC_CHECKED, rec.verifier_field("files_per_cycle")),
    MetricDef("lifeline_recordings_disk_avail_bytes", "gauge",
              "Bytes the recorder (an unprivileged writer) may still write on the store's "
              "volume (statvfs f_bavail).", (), REC_DISK, rec.disk_field("avail_bytes")),
    MetricDef("lifeline_recordings_disk_size_bytes", "gauge",
              "Size of the store's volume.", (), REC_DISK, rec.disk_field("total_bytes")),
    MetricDef("lifeline_recordings_disk_time_left_seconds", "gauge",
              "Time until the store's volume is full at the recent write rate (+Inf when "
              "nothing was written lately).", (), REC_DISK,
              rec.disk_field("days_left", 86400.0)),
    MetricDef("lifeline_recordings_raid_degraded", "gauge",
              "1 while the Linux software RAID array under the store is degraded or "
              "inactive (one more disk failure loses what is not yet copied).", ("array",),
              REC_RAID, rec.raid_degraded),
    MetricDef("lifeline_recordings_last_check_timestamp_seconds", "gauge",
              "When the last recordings check cycle ended (a stuck checker stops it).", (),
              REC_CHECKED, rec.last_check),
    MetricDef("lifeline_recordings_findings", "gauge",
              "Recordings findings that stand now, by severity: page (a recording can be "
              "lost) or ticket.", ("severity",), REC_CHECKED, rec.findings_by_severity),
    MetricDef("lifeline_recordings_check_severity", "gauge",
              "1 for the severity (ok, ticket, page) lifeline judged for the check on the "
              "subject (a backup, store, or an md array), 0 for the others: alert on it "
              "rather than redo the rules (docs/recordings.md).",
              ("check", "subject", "severity"), REC_CHECKED, rec.check_severity),
    # -- the operator's overrides ---------------------------------------------------------
    MetricDef("lifeline_override_active", "gauge",
              "An operator override held now (docs/overrides.md): 1 while it applies, 0 "
              "while it is held but not applied (e.g. its forced link is down).",
              ("kind", "target"), OVERRIDE,
              lambda s: (((o.kind, o.target), float(o.applied)) for o in s.overrides)),
    MetricDef("lifeline_override_expiry_timestamp_seconds", "gauge",
              "When the operator override lapses by itself (seconds since the epoch).",
              ("kind", "target"), OVERRIDE,
              lambda s: (((o.kind, o.target), o.until) for o in s.overrides)),
    # -- the daemon itself ----------------------------------------------------------------
    MetricDef("lifeline_alertmanager_posts_total", "counter",
              "Posts of lifeline's own critical alerts to Alertmanager, by result (ok: at "
              "least one Alertmanager took it).", ("result",), "alertmanager is configured"),
    MetricDef("lifeline_config_reloads_total", "counter",
              "Config reloads (SIGHUP) by result: ok, or refused (the running config stays).",
              ("result",)),
    MetricDef("lifeline_config_last_reload_successful", "gauge",
              "0 while the last reload was refused (the file on disk is not what runs), "
              "else 1.", read=lambda s: [((), float(s.reload_error is None))]),
    MetricDef("lifeline_journal_write_errors_total", "counter",
              "Journal writes that failed."),
    MetricDef("lifeline_journal_in_memory", "gauge",
              "1 when the journal is kept in memory because its file could not be used "
              "(decisions are not kept across a restart).",
              read=lambda s: [((), float(s.journal.mode == "memory"))]),
    MetricDef("lifeline_journal_damaged", "gauge",
              "1 when the journal file found at start was unusable and was moved aside "
              "(the status API names where); history before it is in that file.",
              read=lambda s: [((), float(s.journal.damaged_moved_to is not None))]),
)

# What each family of series is called in the catalog, for tests and the docs.
NAMES = tuple(m.name for m in CATALOG)


def _family(m: MetricDef, snap: Snapshot) -> Metric:
    labels = list(m.labels)
    if m.kind == "gauge":
        assert m.read is not None, m.name
        gauge = GaugeMetricFamily(m.name, m.help, labels=labels)
        for values, value in m.read(snap):
            gauge.add_metric(list(values), value)
        return gauge
    if m.kind == "counter":
        counter = CounterMetricFamily(m.name, m.help, labels=labels)
        # A counter with a reader serves a running count the snapshot carries itself (one
        # kept in a persistent index); the others come from the runtime's Tally.
        series = m.read(snap) if m.read is not None else snap.counters.get(m.name, {}).items()
        for values, value in series:
            counter.add_metric(list(values), value)
        return counter
    histo = HistogramMetricFamily(m.name, m.help, labels=labels)
    for values, h in snap.histograms.get(m.name, {}).items():
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip((*map(repr, h.bounds), "+Inf"), h.counts, strict=True):
            cumulative += count
            buckets.append((bound, float(cumulative)))
        histo.add_metric(list(values), buckets, h.total)
    return histo


class SnapshotCollector(Collector):
    """Collects the catalog from whatever snapshot ``latest()`` returns at scrape time."""

    def __init__(self, latest: Callable[[], Snapshot | None]) -> None:
        self._latest = latest

    def collect(self) -> Iterator[Metric]:
        snap = self._latest()
        if snap is None:  # before the first cycle: nothing is known yet
            return
        for m in CATALOG:
            yield _family(m, snap)


def registry_for(latest: Callable[[], Snapshot | None]) -> CollectorRegistry:
    """lifeline's own registry: the catalog, plus the process and platform collectors
    (``process_resident_memory_bytes``, open fds, CPU seconds, python_info)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(latest))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


def metrics_doc() -> str:
    """``docs/metrics.md``, written from the catalog (a test fails when the file is stale)."""
    lines = [
        "# Metrics",
        "",
        "Generated from `exporters/metrics.py` by `python -m exporters.metrics > "
        "docs/metrics.md`; do not edit by hand.",
        "",
        "Served on `/metrics` (default `127.0.0.1:9730`). Every series comes from the "
        "daemon's snapshot of its last control cycle (at most `reconcile_interval` old). "
        "Counters start at 0 for every label set the configuration names. The site is a "
        "label on `lifeline_build_info` only: give each scrape job a `site` label "
        "(`static_configs[].labels`) so every series carries it. The process collector's "
        "`process_*` series and `python_info` are served too.",
        "",
        "| name | type | labels | served when | meaning |",
        "|---|---|---|---|---|",
    ]
    for m in CATALOG:
        labels = ", ".join(f"`{label}`" for label in m.labels) or "-"
        lines.append(f"| `{m.name}` | {m.kind} | {labels} | {m.when} | {m.help} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(metrics_doc())
