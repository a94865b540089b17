"""The Prometheus metrics lifeline serves, defined in one place.

Names follow Prometheus conventions (prefix ``lifeline_``, base units, ``_total`` for
counters) and labels stay bounded: link, group, state, probe kind and result. Reasons are
free text and never become labels; they go to the journal and the status API instead.
The daemon updates these; nothing here reads the network.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

LINK_STATES = ("unknown", "up", "degraded", "down")

# RTT buckets from LAN-fast to satellite-slow; probes time out well before 2 s.
RTT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0)


class Metrics:
    """Every series lifeline exports, on a registry of its own (no global state)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.build_info = Info("lifeline_build", "Version of the running lifeline.", registry=r)
        self.link_state = Gauge(
            "lifeline_link_state",
            "1 for the link's current health state, 0 for the others.",
            ["link", "state"],
            registry=r,
        )
        self.link_up = Gauge(
            "lifeline_link_up", "1 when the link is up or degraded, 0 when down or unknown.",
            ["link"], registry=r,
        )
        self.link_tier = Gauge("lifeline_link_tier", "Configured tier (lower wins).", ["link"],
                               registry=r)
        self.link_loss = Gauge("lifeline_link_loss_ratio", "Probe loss over the health window.",
                               ["link"], registry=r)
        self.link_latency = Gauge("lifeline_link_latency_seconds",
                                  "Mean probe RTT over the health window.", ["link"], registry=r)
        self.link_jitter = Gauge("lifeline_link_jitter_seconds",
                                 "RFC 3550-style jitter of the probe RTT.", ["link"], registry=r)
        self.link_mos = Gauge("lifeline_link_mos",
                              "Estimated voice MOS (ITU-T G.107 E-model, G.711).", ["link"],
                              registry=r)
        self.link_hold_down = Gauge(
            "lifeline_link_hold_down_seconds",
            "Seconds of stable probes still needed before a down link counts again.",
            ["link"], registry=r,
        )
        self.link_flap_penalty = Gauge("lifeline_link_flap_penalty",
                                       "Decaying flap penalty (1 per failure).", ["link"],
                                       registry=r)
        self.link_transitions = Counter(
            "lifeline_link_transitions_total", "Health state changes by new state.",
            ["link", "to"], registry=r,
        )
        self.probes = Counter(
            "lifeline_probes_total", "Probes sent, by kind and result (ok or the error kind).",
            ["link", "kind", "result"], registry=r,
        )
        self.probe_rtt = Histogram("lifeline_probe_rtt_seconds", "RTT of answered probes.",
                                   ["link"], buckets=RTT_BUCKETS, registry=r)
        self.group_active = Gauge(
            "lifeline_group_active_link", "1 for the link(s) a route group currently uses.",
            ["group", "link"], registry=r,
        )
        self.failovers = Counter(
            "lifeline_failovers_total", "Changes of a route group's active link.",
            ["group", "from", "to"], registry=r,
        )
        self.conntrack_flushed = Counter(
            "lifeline_conntrack_flushed_total",
            "Conntrack entries deleted after a switch (flows NAT'ed through a left link).",
            ["group"], registry=r,
        )
        self.reconciles = Counter(
            "lifeline_reconcile_total", "Reconcile cycles by result.",
            ["result"], registry=r,
        )
        self.reconcile_duration = Histogram(
            "lifeline_reconcile_duration_seconds", "Time to observe, plan and apply routes.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0), registry=r,
        )
        # -- SIP trunks, destinations, DIDs, plan pushes ---------------------------------
        self.trunk_state = Gauge(
            "lifeline_trunk_state", "1 for the trunk's current health state, 0 for the others.",
            ["trunk", "state"], registry=r,
        )
        self.trunk_up = Gauge("lifeline_trunk_up",
                              "1 when the trunk is up or degraded, 0 when down or unknown.",
                              ["trunk"], registry=r)
        self.trunk_rtt = Gauge("lifeline_trunk_options_rtt_seconds",
                               "RTT of the trunk's last answered SIP OPTIONS.", ["trunk"],
                               registry=r)
        self.trunk_responses = Counter(
            "lifeline_trunk_responses_total",
            "SIP OPTIONS outcomes by status code, or the error kind when nothing answered.",
            ["trunk", "code"], registry=r,
        )
        self.trunk_edge_failing = Gauge(
            "lifeline_trunk_edge_failing",
            "1 while the SIP edge's failed calls hold the trunk degraded (OPTIONS answered).",
            ["trunk"], registry=r,
        )
        self.trunk_edge_trips = Counter(
            "lifeline_trunk_edge_trips_total",
            "Times the SIP edge's failed calls tripped the trunk to degraded.",
            ["trunk"], registry=r,
        )
        self.trunk_registered = Gauge(
            "lifeline_trunk_registered",
            "1 when the trunk's last REGISTER check succeeded (registration trunks only).",
            ["trunk"], registry=r,
        )
        self.destination_up = Gauge("lifeline_destination_up",
                                    "1 when the destination (PBX, DR) answers OPTIONS.",
                                    ["destination"], registry=r)
        self.dids_per_trunk = Gauge("lifeline_dids_per_trunk",
                                    "DIDs (numbers) whose calls use the trunk now.", ["trunk"],
                                    registry=r)
        self.dids_total = Gauge("lifeline_dids", "DIDs (numbers) in the plan.", registry=r)
        self.dids_unroutable = Gauge(
            "lifeline_dids_unroutable",
            "DIDs (numbers) with no healthy capable trunk: a critical page.", registry=r,
        )
        self.did_ranges_unroutable = Gauge("lifeline_did_ranges_unroutable",
                                           "DID ranges with no healthy capable trunk.",
                                           registry=r)
        self.plan_pushes = Counter("lifeline_plan_pushes_total",
                                   "DID plan pushes to the SIP edge by actuator and result.",
                                   ["actuator", "result"], registry=r)
        self.plan_push_duration = Histogram(
            "lifeline_plan_push_duration_seconds", "Time to push the plan to one SIP edge.",
            ["actuator"], buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0),
            registry=r,
        )
        self.journal_errors = Gauge("lifeline_journal_write_errors",
                                    "Journal writes that failed since start.", registry=r)

    def set_link_state(self, link: str, state: str) -> None:
        _set_state(self.link_state, self.link_up, {"link": link}, state)

    def set_trunk_state(self, trunk: str, state: str) -> None:
        _set_state(self.trunk_state, self.trunk_up, {"trunk": trunk}, state)

    def set_group_active(self, group: str, links: list[str], active: tuple[str, ...]) -> None:
        for link in links:
            self.group_active.labels(group=group, link=link).set(1.0 if link in active else 0.0)


def _set_state(states: Gauge, up: Gauge, labels: dict[str, str], state: str) -> None:
    """A state set (1 for the current state, 0 for the others) and its up/down summary:
    the same health states for links and trunks."""
    for s in LINK_STATES:
        states.labels(**labels, state=s).set(1.0 if s == state else 0.0)
    up.labels(**labels).set(1.0 if state in ("up", "degraded") else 0.0)
