"""The effective config in words, as ``lifeline check-config`` prints it.

One paragraph per link, route group and trunk, with every default filled in and durations
as operators write them, so an operator can check what lifeline will do before it runs.
Reads a loaded Config only; a long DID plan is cut to its first ranges and a count.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from controller.config.model import Config
from controller.config.power import power_summary
from controller.config.recordings import recordings_summary
from controller.config.services import services_summary
from controller.core.durations import format_duration


def summary(cfg: Config) -> str:
    """Multi-line human summary of the effective config, for ``lifeline check-config``."""
    fmt = format_duration
    out = [
        f"site {cfg.site}: {len(cfg.links)} link{'s' if len(cfg.links) != 1 else ''}, "
        f"{len(cfg.route_groups)} route group{'s' if len(cfg.route_groups) != 1 else ''}",
        f"  state in {cfg.state_dir}, CLI socket {cfg.api_socket_path}, "
        f"metrics/API on {cfg.listen}",
        "  operator writes: on the CLI socket; over TCP "
        + (f"with a token from {cfg.api.token_file}" if cfg.api.token_file is not None
           else "refused (no api.token_file)")
        + f"; overrides last {fmt(cfg.api.default_expiry)} unless told, at most "
        f"{fmt(cfg.api.max_expiry)}",
        f"  routes tagged proto {cfg.route_protocol}, source rules from priority "
        f"{cfg.rule_priority}, reconcile every {fmt(cfg.reconcile_interval)}, "
        f"{cfg.log_format} logs",
        "links:",
    ]
    for link in cfg.links:
        hp = link.health_params()
        src = f" src {link.source}" if link.source else ""
        targets = ", ".join(spec.label() for spec in link.probe_specs())
        arp = " + ARP of the gateway" if link.probes.arp_gateway else ""
        out += [
            f"  {link.name}: tier {link.tier}, weight {link.weight}, {link.interface} via "
            f"{link.gateway}{src}, table {link.table}",
            f"    probes every {fmt(hp.interval)} (timeout {fmt(link.probes.timeout)}), "
            f"{link.probes.reliability} of {len(link.probes.targets)} must answer: {targets}{arp}",
            f"    down after {hp.down_after} lost rounds "
            f"({fmt(round(hp.down_after * hp.interval, 6))}) or {hp.down_loss:.0%} loss over "
            f"{fmt(hp.window)}; back up after {fmt(hp.hold_down)} stable "
            f"(damped up to {fmt(hp.flap_max_hold_down)})",
            f"    degraded at {hp.degraded_loss:.0%} loss, {fmt(hp.degraded_latency)} latency, "
            f"{fmt(hp.degraded_jitter)} jitter or MOS below {hp.degraded_mos:g}",
        ]
    out.append("route groups:" if cfg.route_groups else "route groups: none")
    for group in cfg.route_groups:
        order = " > ".join(f"{name} (tier {cfg.link(name).tier})" for name in group.links)
        rules = group.flush_rules
        if rules is None:
            flush = "every flow NAT'ed to the link it leaves"
        elif rules:
            flush = f"flows NAT'ed to the link it leaves, only {', '.join(map(str, rules))}"
        else:
            flush = "nothing (conntrack_flush: [])"
        out += [
            f"  {group.name}: {group.destination} in table {group.table_name} metric "
            f"{group.metric}{', multipath' if group.multipath else ''}",
            f"    prefers {order}",
            f"    on a switch flushes conntrack: {flush}",
        ]
    out += _telephony_summary(cfg)
    out += power_summary(cfg.power)
    out += services_summary(cfg.services)
    out += recordings_summary(cfg.recordings)
    if cfg.warnings:
        out.append("warnings:")
        out += [f"  {w}" for w in cfg.warnings]
    return "\n".join(out)


# A plan may hold thousands of ranges; the summary shows the first ones and a count.
_SUMMARY_RANGES = 20


def _telephony_summary(cfg: Config) -> list[str]:
    fmt = format_duration
    if not (cfg.trunks or cfg.destinations or cfg.dids):
        return []
    out = ["trunks:" if cfg.trunks else "trunks: none"]
    for trunk in cfg.trunks:
        if trunk.pinned:
            via = f"pinned to {trunk.links[0]}"
        elif trunk.links:
            via = f"via {', '.join(trunk.links)}"
        else:
            via = "follows the active route"
        reg = trunk.registration
        registers = f", registers as {reg.user}@{reg.domain}" if reg is not None else ""
        out += [
            f"  {trunk.name} ({trunk.carrier}): {trunk.uri}, {via}{registers}",
            f"    OPTIONS every {fmt(trunk.interval)} (timeout {fmt(trunk.timeout)}), "
            f"down after {trunk.thresholds.down_after} lost (rechecked every "
            f"{fmt(trunk.recheck_interval)}), back up after "
            f"{fmt(trunk.thresholds.hold_down)} stable",
        ]
        if trunk.maintenance is not None:
            out.append("    IN MAINTENANCE: gets no calls"
                       + (f" ({trunk.maintenance})" if trunk.maintenance else ""))
    out.append("destinations:" if cfg.destinations else "destinations: none")
    out += [f"  {d.name}: {d.uri}" for d in cfg.destinations]
    total = sum(d.numbers.size for d in cfg.dids)
    out.append(
        f"DID plan: {len(cfg.dids)} range{'s' if len(cfg.dids) != 1 else ''}, "
        f"{total} number{'s' if total != 1 else ''}"
    )
    for did in cfg.dids[:_SUMMARY_RANGES]:
        dr = f" (DR {did.dr_destination})" if did.dr_destination else ""
        cli = ", verified CLI" if did.verified_cli else ""
        out.append(f"  {did.numbers}: {' > '.join(did.trunks)} -> {did.destination}{dr}{cli}")
    if len(cfg.dids) > _SUMMARY_RANGES:
        out.append(f"  ... and {len(cfg.dids) - _SUMMARY_RANGES} more ranges")
    return out + _edge_summary(cfg)


def _without_userinfo(url: str) -> str:
    """A URL as it may be printed: a ``user:password@`` in it is a secret."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _edge_summary(cfg: Config) -> list[str]:
    edge = cfg.sip_edge
    if edge.kamailio is None and edge.webhook is None and edge.command is None:
        return ["sip edge: none (the DID plan is computed and exported, pushed nowhere)"]
    out = ["sip edge:"]
    if (k := edge.kamailio) is not None:
        failover = "on" if k.trunk_failover else "off"
        out += [
            f"  kamailio: JSON-RPC {k.rpc_url}",
            f"    reference edge (lifeline edge-config): carriers on port {k.carrier_port} "
            f"(TLS {k.carrier_tls_port}) of every link's source, PBX side "
            f"{k.pbx_address}:{k.pbx_port}, in-call trunk failover {failover}",
        ]
    if edge.webhook is not None:
        out.append(f"  webhook: {_without_userinfo(edge.webhook.url)}")
    if edge.command is not None:
        out.append(f"  command: {' '.join(edge.command.argv)}")
    return out
