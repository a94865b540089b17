"""A lifeline YAML config that fits a lab: the same schema an operator writes, filled in.

``lifeline_config(lab, state_dir)`` describes the lab's site as an operator would: three
links (fibre-a tier 1, fibre-b tier 2, lte tier 3), each probed at its gateway and at two far
targets in the lab's ``inet``, and one route group ``internet`` (the default route of table
main). Keyword overrides change the few things tests, the demo and benchmarks vary (timings,
tiers, multipath, hold-down, which links). It only writes text; parsing and validation stay
in ``controller.config``, and lifeline is expected to run inside the lab's site namespace
(so ``listen`` on 127.0.0.1 is the site's loopback, not the machine's).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from tests.lab.topology import Lab

__all__ = ["DEFAULT_TIERS", "OVERRIDES", "lifeline_config", "lifeline_config_dict"]

DEFAULT_TIERS = {"fibre-a": 1, "fibre-b": 2, "lte": 3}

# Each override and what it does; unknown names are refused so a typo does not silently
# produce the default config.
OVERRIDES = {
    "site": "site name (default 'lab')",
    "listen": "metrics/API address inside the site namespace (default 127.0.0.1:9730)",
    "links": "names of the links to include, in order (default all three)",
    "tiers": "dict link -> tier, merged over DEFAULT_TIERS",
    "multipath": "route group multipath (True also puts fibre-b on tier 1 unless tiers say)",
    "interval": "probe interval, e.g. '100ms' (default '200ms')",
    "timeout": "probe timeout (default: the interval)",
    "reliability": "targets that must answer per round (default 1)",
    "probe_defaults": "True: write no interval, timeout or reliability, so the daemon's own "
                      "defaults decide them (refused together with any of the three)",
    "gateway_target": "probe each link's gateway too (default True)",
    "far_targets": "far ICMP targets per link (default 192.0.2.1, 192.0.2.2)",
    "tcp_targets": "extra 'host:port' TCP targets per link (default none)",
    "hold_down": "failback hold-down, e.g. '2s'",
    "thresholds": "dict merged into defaults.thresholds",
    "conntrack_flush": "route group conntrack_flush list",
    "table": "route group table (default 'main')",
    "extra": "dict merged into the top level (e.g. route_protocol, reconcile_interval)",
}


def lifeline_config_dict(lab: Lab, state_dir: Path, **overrides: Any) -> dict[str, Any]:
    """The config as a dict (see ``lifeline_config`` for the YAML and ``OVERRIDES``)."""
    unknown = sorted(set(overrides) - set(OVERRIDES))
    if unknown:
        raise TypeError(f"unknown override(s) {unknown}; known: {sorted(OVERRIDES)}")
    multipath = bool(overrides.get("multipath", False))
    tiers = dict(DEFAULT_TIERS)
    if multipath:
        tiers["fibre-b"] = tiers["fibre-a"]
    tiers.update(overrides.get("tiers", {}))
    names: list[str] = list(overrides.get("links", lab.links))
    probe_defaults = bool(overrides.get("probe_defaults", False))
    forced = sorted({"interval", "timeout", "reliability"} & set(overrides))
    if probe_defaults and forced:
        raise TypeError(f"probe_defaults leaves timing to the daemon; drop {forced}")
    interval = str(overrides.get("interval", "200ms"))
    far = [str(t) for t in overrides.get("far_targets", lab.targets[:2])]
    tcp = [str(t) for t in overrides.get("tcp_targets", [])]

    links: list[dict[str, Any]] = []
    for name in names:
        lk = lab.link(name)
        targets: list[dict[str, str]] = []
        if overrides.get("gateway_target", True):
            targets.append({"icmp": str(lk.gateway)})
        targets += [{"icmp": addr} for addr in far]
        targets += [{"tcp": hp} for hp in tcp]
        # The lab has always written its own timing; probe_defaults is for a run that must
        # show the daemon as shipped (the peers benchmark), whatever its defaults are today.
        probes: dict[str, Any] = {} if probe_defaults else {
            "interval": interval,
            "timeout": str(overrides.get("timeout", interval)),
            "reliability": int(overrides.get("reliability", 1)),
        }
        probes["targets"] = targets
        links.append({
            "name": lk.name,
            "interface": lk.site_ifname,
            "gateway": str(lk.gateway),
            "source": str(lk.site_addr),
            "tier": int(tiers[name]),
            "probes": probes,
        })

    thresholds: dict[str, Any] = dict(overrides.get("thresholds", {}))
    if "hold_down" in overrides:
        thresholds["hold_down"] = str(overrides["hold_down"])
    group: dict[str, Any] = {
        "name": "internet",
        "table": overrides.get("table", "main"),
        "destination": "default",
        "links": names,
        "multipath": multipath,
    }
    if "conntrack_flush" in overrides:
        group["conntrack_flush"] = list(overrides["conntrack_flush"])

    config: dict[str, Any] = {
        "site": str(overrides.get("site", "lab")),
        "state_dir": str(state_dir),
        "listen": str(overrides.get("listen", "127.0.0.1:9730")),
    }
    if thresholds:
        config["defaults"] = {"thresholds": thresholds}
    config["links"] = links
    config["route_groups"] = [group]
    config.update(overrides.get("extra", {}))
    return config


def lifeline_config(lab: Lab, state_dir: Path, **overrides: Any) -> str:
    """YAML for a lifeline watching ``lab``'s three links; overrides are listed in
    ``OVERRIDES``. Works on an unbuilt Lab too: only names and addresses are used."""
    data = lifeline_config_dict(lab, state_dir, **overrides)
    header = f"# lifeline config for lab {lab.prefix.rstrip('-')} (generated by lab.config)\n"
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
