"""Tests of the typed config: the example loads, every mistake is named by path, all at once."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from controller.config import (
    Config,
    ConfigError,
    FlushRule,
    Thresholds,
    load_config,
    parse_config,
    parse_duration,
    summary,
)
from controller.core.durations import format_duration
from controller.core.health import HealthParams
from probes.sample import ProbeSpec

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "lifeline.yaml"
SAMPLES = Path(__file__).resolve().parent / "data" / "configs"

BASE: dict[str, Any] = {
    "site": "test-site",
    "links": [
        {
            "name": "fibre-a",
            "interface": "wan-a",
            "gateway": "198.51.100.1",
            "source": "198.51.100.2",
            "tier": 1,
            "probes": {"targets": [{"icmp": "198.51.100.1"}, {"icmp": "192.0.2.1"}]},
        },
        {
            "name": "lte",
            "interface": "wwan0",
            "gateway": "198.51.100.129",
            "tier": 3,
            "probes": {"targets": [{"icmp": "192.0.2.1"}]},
        },
    ],
    "route_groups": [{"name": "internet", "links": ["fibre-a", "lte"]}],
}


def build(mutate: Callable[[dict[str, Any]], Any] | None = None) -> str:
    data = copy.deepcopy(BASE)
    if mutate is not None:
        mutate(data)
    return yaml.safe_dump(data, sort_keys=False)


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value.errors


# --------------------------------------------------------------------------- the example


def test_example_parses_to_the_documented_site() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.site == "rome-cc1"
    assert [link.name for link in cfg.links] == ["fibre-a", "fibre-b", "lte"]
    assert [link.tier for link in cfg.links] == [1, 2, 3]
    assert [link.table_id for link in cfg.links] == [101, 102, 103]
    assert cfg.warnings == []
    group = cfg.route_groups[0]
    assert group.name == "internet"
    assert group.table_id == 254
    assert group.destination == "default"
    assert group.links == ["fibre-a", "fibre-b", "lte"]
    for link in cfg.links:
        assert link.probe_specs(), link.name
        assert all(spec.device == link.interface for spec in link.probe_specs())


def test_example_uses_only_documentation_addresses() -> None:
    import ipaddress

    docs = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
    cfg = load_config(EXAMPLE)
    hosts = [link.gateway for link in cfg.links] + [
        spec.host for link in cfg.links for spec in link.probe_specs()
    ]
    hosts += [link.source for link in cfg.links if link.source]
    for host in hosts:
        assert any(ipaddress.ip_address(host) in net for net in docs), host


@pytest.mark.parametrize("name", ["good-minimal.yaml", "good-ipv6.yaml", "good-telephony.yaml"])
def test_good_samples_parse(name: str) -> None:
    cfg = load_config(SAMPLES / name)
    assert cfg.links and cfg.route_groups
    assert summary(cfg).startswith(f"site {cfg.site}:")


def test_ipv6_sample_normalizes_addresses_and_tables() -> None:
    cfg = load_config(SAMPLES / "good-ipv6.yaml")
    assert cfg.listen_host == "::1" and cfg.listen_port == 9731
    assert cfg.api_socket_path == Path("/run/lifeline/cli.sock")
    first = cfg.links[0]
    assert first.family == 6
    assert first.probe_specs()[1] == ProbeSpec(
        "tcp", "2001:db8:ffff::1", 443, device="wan-a", source="2001:db8:a::2"
    )
    assert cfg.links[1].table == 102  # positional default, unaffected by link 0's explicit table
    group = cfg.route_groups[0]
    assert group.table_id == 300 and group.multipath and group.flush_rules == ()


# ------------------------------------------------------------------- samples with expectations


def expectations(path: Path) -> list[str]:
    prefix = "# expect: "
    return [
        line[len(prefix) :].rstrip()
        for line in path.read_text().splitlines()
        if line.startswith(prefix)
    ]


@pytest.mark.parametrize(
    "name",
    [
        "bad-fields.yaml",
        "bad-semantic.yaml",
        "bad-telephony-fields.yaml",
        "bad-telephony-semantic.yaml",
    ],
)
def test_bad_samples_report_every_error_at_once(name: str) -> None:
    path = SAMPLES / name
    wanted = expectations(path)
    assert len(wanted) > 10  # the sample really holds many mistakes
    with pytest.raises(ConfigError) as info:
        load_config(path)
    got = info.value.errors
    for expected in wanted:
        matches = [e for e in got if e.startswith(expected)]
        assert len(matches) == 1, f"{expected!r} not reported once in:\n" + "\n".join(got)
    assert len(got) == len(wanted), "\n".join(got)


def test_error_rendering_names_file_and_line() -> None:
    path = SAMPLES / "bad-fields.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    lines = path.read_text().splitlines()
    gatway_line = next(i for i, line in enumerate(lines, 1) if line.strip().startswith("gatway:"))
    assert f"{path}:{gatway_line}: links[0].gatway: unknown field" in text
    assert text.splitlines()[0] == f"{path}: {len(info.value.errors)} errors"


# --------------------------------------------------------------------------- one error kind each


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Mutation that sets a dotted/indexed path, e.g. ``links[1].gateway``."""

    def mutate(data: dict[str, Any]) -> None:
        node: Any = data
        parts = path.replace("[", ".[").split(".")
        for part in parts[:-1]:
            node = node[int(part[1:-1])] if part.startswith("[") else node.setdefault(part, {})
        last = parts[-1]
        if last.startswith("["):
            node[int(last[1:-1])] = value
        else:
            node[last] = value

    return mutate


def _delete(path: str, key: str) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        node: Any = data
        for part in path.replace("[", ".[").split("."):
            node = node[int(part[1:-1])] if part.startswith("[") else node[part]
        del node[key]

    return mutate


CASES: list[tuple[str, Callable[[dict[str, Any]], Any], str | list[str]]] = [
    (
        "bad gateway",
        _set("links[1].gateway", "198.51.100.300"),
        "links[1].gateway: not an IPv4/IPv6 address",
    ),
    (
        "gateway not a string",
        _set("links[1].gateway", 17),
        "links[1].gateway: not an IPv4/IPv6 address",
    ),
    (
        "unknown key",
        _set("links[0].gatway", "x"),
        "links[0].gatway: unknown field (did you mean gateway?)",
    ),
    ("unknown top key", _set("zzz", 1), "zzz: unknown field"),
    ("missing site", lambda d: d.pop("site"), "site: required"),
    ("missing gateway", _delete("links[0]", "gateway"), "links[0].gateway: required"),
    (
        "no targets",
        _set("links[0].probes.targets", []),
        "links[0].probes.targets: must not be empty",
    ),
    ("no links", _set("links", []), "links: must not be empty"),
    (
        "long link name",
        _set("links[0].name", "a" * 33),
        [
            "links[0].name: longer than 32 characters",
            "route_groups[0].links[0]: unknown link 'fibre-a'",
        ],
    ),
    (
        "upper link name",
        _set("links[0].name", "Fibre"),
        [
            "links[0].name: must be lowercase letters, digits and '-' (not at the start or end)",
            "route_groups[0].links[0]: unknown link 'fibre-a' (did you mean Fibre?)",
        ],
    ),
    (
        "long ifname",
        _set("links[0].interface", "a" * 16),
        "links[0].interface: longer than 15 characters (the kernel's interface name limit)",
    ),
    (
        "space in ifname",
        _set("links[0].interface", "wan a"),
        "links[0].interface: not a valid interface name (no '/', ':' or whitespace)",
    ),
    ("negative tier", _set("links[0].tier", -1), "links[0].tier: must be >= 0"),
    ("weight zero", _set("links[0].weight", 0), "links[0].weight: must be >= 1"),
    ("weight bool", _set("links[0].weight", True), "links[0].weight: must be a whole number"),
    ("table zero", _set("links[0].table", 0), "links[0].table: must be >= 1"),
    ("table too big", _set("links[0].table", 2**31 + 1), "links[0].table: must be <= 2147483648"),
    (
        "table main",
        _set("links[0].table", 254),
        "links[0].table: table 254 is reserved by the kernel (default/main/local)",
    ),
    (
        "table 253",
        _set("links[0].table", 253),
        "links[0].table: table 253 is reserved by the kernel (default/main/local)",
    ),
    (
        "multicast gateway",
        _set("links[0].gateway", "224.0.0.1"),
        "links[0].gateway: 224.0.0.1 is not a usable host address",
    ),
    (
        "tcp port 0",
        _set("links[0].probes.targets[0]", {"tcp": "192.0.2.2:0"}),
        "links[0].probes.targets[0].tcp: port '0' is not a number in 1..65535",
    ),
    (
        "tcp no port",
        _set("links[0].probes.targets[0]", {"tcp": "192.0.2.2"}),
        "links[0].probes.targets[0].tcp: missing port (address:port, e.g. 192.0.2.2:443 or "
        "[::1]:9730)",
    ),
    (
        "target both kinds",
        _set("links[0].probes.targets[0]", {"icmp": "192.0.2.1", "tcp": "192.0.2.1:1"}),
        "links[0].probes.targets[0]: needs exactly one of icmp: ADDRESS or tcp: ADDRESS:PORT",
    ),
    (
        "reliability > targets",
        _set("links[1].probes.reliability", 2),
        "links[1].probes.reliability: 2 but the link has only 1 target",
    ),
    (
        "reliability zero",
        _set("links[1].probes.reliability", 0),
        "links[1].probes.reliability: must be >= 1",
    ),
    (
        "NAT address of the other family",
        _set("links[0].nat_addresses", ["2001:db8::7"]),
        "links[0].nat_addresses[0]: 2001:db8::7 is IPv6 but the gateway 198.51.100.1 is IPv4",
    ),
    (
        "timeout > interval",
        _set("links[0].probes.timeout", "300ms"),
        "links[0].probes.timeout: 300ms is longer than the interval 100ms (a round must end "
        "before the next one starts)",
    ),
    (
        "zero interval",
        _set("links[0].probes.interval", "0s"),
        "links[0].probes.interval: must be longer than 0",
    ),
    (
        "garbage interval",
        _set("defaults.interval", "fast"),
        "defaults.interval: not a duration: 'fast' (expected a number with ms, s, m, h, d, w "
        "or y, e.g. 200ms)",
    ),
    (
        "negative hold_down",
        _set("defaults.thresholds.hold_down", "-1s"),
        "defaults.thresholds.hold_down: must not be negative",
    ),
    (
        "ratio > 1",
        _set("defaults.thresholds.degraded_loss", 2),
        "defaults.thresholds.degraded_loss: must be <= 1",
    ),
    (
        "mos < 1",
        _set("links[0].thresholds", {"degraded_mos": 0.5}),
        "links[0].thresholds.degraded_mos: must be >= 1",
    ),
    (
        "count zero",
        _set("links[0].thresholds", {"down_after": 0}),
        "links[0].thresholds.down_after: must be >= 1",
    ),
    (
        "unknown threshold",
        _set("defaults.thresholds.down_afer", 3),
        "defaults.thresholds.down_afer: unknown field (did you mean down_after?)",
    ),
    (
        "source family",
        _set("links[0].source", "2001:db8::2"),
        "links[0].source: 2001:db8::2 is IPv6 but the gateway 198.51.100.1 is IPv4",
    ),
    (
        "target family",
        _set("links[1].probes.targets[0]", {"icmp": "2001:db8::1"}),
        "links[1].probes.targets[0].icmp: 2001:db8::1 is IPv6 but the link's gateway "
        "198.51.100.129 is IPv4",
    ),
    (
        "arp on ipv6",
        lambda d: (
            d["links"][1].update(gateway="2001:db8::1"),
            d["links"][1]["probes"].update(arp_gateway=True, targets=[{"icmp": "2001:db8::9"}]),
            d["route_groups"][0].update(links=["lte"]),
        ),
        "links[1].probes.arp_gateway: ARP is IPv4 only and the gateway 2001:db8::1 is IPv6",
    ),
    (
        "duplicate link",
        lambda d: (
            d["links"][1].update(name="fibre-a"),
            d["route_groups"][0].update(links=["fibre-a"]),
        ),
        "links[1].name: duplicate link name fibre-a (also links[0])",
    ),
    (
        "same table",
        _set("links[1].table", 101),
        "links[1].table: table 101 is also used by fibre-a (links[0]); each link needs its own "
        "table",
    ),
    (
        "same table same interface",
        lambda d: d["links"][1].update(table=101, interface="wan-a"),
        "links[1].table: table 101 is also used by fibre-a (links[0]) on the same interface; each "
        "link needs its own table",
    ),
    (
        "same source",
        _set("links[1].source", "198.51.100.2"),
        "links[1].source: 198.51.100.2 is also the source of links[0] (each link needs its own "
        "source rule)",
    ),
    (
        "unknown link in group",
        _set("route_groups[0].links", ["fibre-a", "lte", "fibre-b"]),
        "route_groups[0].links[2]: unknown link 'fibre-b' (did you mean fibre-a?)",
    ),
    (
        "link twice in group",
        _set("route_groups[0].links", ["lte", "lte"]),
        "route_groups[0].links[1]: lte is listed twice",
    ),
    ("empty group", _set("route_groups[0].links", []), "route_groups[0].links: must not be empty"),
    (
        "duplicate group",
        lambda d: d["route_groups"].append({"name": "internet", "links": ["lte"], "metric": 5}),
        "route_groups[1].name: duplicate route group name internet (also route_groups[0])",
    ),
    (
        "same route twice",
        lambda d: d["route_groups"].append({"name": "other", "links": ["lte"]}),
        "route_groups[1].destination: route_groups[0] already owns default with metric 0 in table "
        "main",
    ),
    (
        "group on link table",
        _set("route_groups[0].table", 102),
        "route_groups[0].table: table 102 is link lte's own table",
    ),
    (
        "group table local",
        _set("route_groups[0].table", 255),
        "route_groups[0].table: table 255 is the kernel's local table",
    ),
    (
        "group table name",
        _set("route_groups[0].table", "mian"),
        "route_groups[0].table: must be main, default or a table number 1..2^31",
    ),
    (
        "destination family",
        _set("route_groups[0].destination", "2001:db8::/32"),
        "route_groups[0].destination: 2001:db8::/32 is IPv6 but these links have an IPv4 gateway: "
        "fibre-a (198.51.100.1), lte (198.51.100.129)",
    ),
    (
        "destination garbage",
        _set("route_groups[0].destination", "anywhere"),
        "route_groups[0].destination: must be 'default' or a CIDR, e.g. 203.0.113.0/24",
    ),
    (
        "metric too big",
        _set("route_groups[0].metric", 2**32),
        "route_groups[0].metric: must be <= 4294967295",
    ),
    (
        "flush proto",
        _set("route_groups[0].conntrack_flush", ["icmp/1"]),
        "route_groups[0].conntrack_flush[0]: icmp has no ports: write icmp alone",
    ),
    (
        "flush unknown proto",
        _set("route_groups[0].conntrack_flush", ["xtp/1"]),
        "route_groups[0].conntrack_flush[0]: unknown protocol 'xtp'; known: icmp, tcp, udp, "
        "dccp, gre, esp, ah, icmpv6, sctp, udplite",
    ),
    (
        "flush shape",
        _set("route_groups[0].conntrack_flush", ["udp:5060"]),
        "route_groups[0].conntrack_flush[0]: must be a protocol (icmp, tcp, udp, dccp, gre, "
        "esp, ah, icmpv6, sctp, udplite), with /port or /lo-hi for dccp, sctp, tcp, udp, "
        "udplite; e.g. udp/5060, tcp/5060-5061, esp",
    ),
    (
        "flush port",
        _set("route_groups[0].conntrack_flush", ["udp/70000"]),
        "route_groups[0].conntrack_flush[0]: ports must be in 1..65535",
    ),
    ("log format", _set("log_format", "xml"), "log_format: must be 'text' or 'json'"),
    ("relative state dir", _set("state_dir", "var/lib"), "state_dir: must be an absolute path"),
    (
        "listen no port",
        _set("listen", "[::1]"),
        "listen: must be [IPv6]:port, e.g. [2001:db8::1]:443",
    ),
    (
        "route protocol reserved",
        _set("route_protocol", 4),
        "route_protocol: 4 is the 'static' protocol; lifeline owns every route tagged with its "
        "protocol, so pick an unused number (e.g. 201)",
    ),
    ("route protocol range", _set("route_protocol", 256), "route_protocol: must be <= 255"),
    ("rule priority range", _set("rule_priority", 40000), "rule_priority: must be <= 32765"),
    ("links not a list", _set("links", {"fibre-a": {}}), "links: must be a list"),
    (
        "defaults not a mapping",
        _set("defaults", [1]),
        "defaults: must be a mapping of keys to values",
    ),
]


@pytest.mark.parametrize(("mutate", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_error_kind_is_named_by_path(
    mutate: Callable[[dict[str, Any]], Any], expected: str | list[str]
) -> None:
    errors = errors_of(build(mutate))
    assert errors == ([expected] if isinstance(expected, str) else expected)


def test_base_config_is_valid() -> None:
    """Every CASES entry starts from BASE, so BASE itself must load clean."""
    cfg = parse_config(build())
    assert cfg.warnings == []
    assert [link.table for link in cfg.links] == [101, 102]


def test_all_errors_collected_across_passes() -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["links"][0]["gatway"] = data["links"][0].pop("gateway")  # field error
        data["links"][1]["weight"] = 0  # field error
        data["links"].append(copy.deepcopy(BASE["links"][0]))  # duplicate name, valid alone
        data["links"][2]["source"] = "198.51.100.3"
        data["route_groups"][0]["links"].append("fibre-c")  # unknown link

    errors = errors_of(build(mutate))
    assert errors == [
        "links[0].gateway: required",
        "links[0].gatway: unknown field (did you mean gateway?)",
        "links[1].weight: must be >= 1",
        "links[2].name: duplicate link name fibre-a (also links[0])",
        "route_groups[0].links[2]: unknown link 'fibre-c' (did you mean fibre-a?)",
    ]


def test_invalid_link_is_not_reported_as_unknown_in_groups() -> None:
    errors = errors_of(build(_set("links[1].gateway", "nope")))
    assert errors == ["links[1].gateway: not an IPv4/IPv6 address"]


def test_bad_defaults_are_reported_once_not_per_link() -> None:
    errors = errors_of(build(_set("defaults.timeout", "1s")))
    assert errors == [
        "defaults.timeout: 1s is longer than the interval 100ms "
        "(a round must end before the next one starts)"
    ]
    errors = errors_of(build(_set("defaults.thresholds.rise", 0)))
    assert errors == ["defaults.thresholds.rise: must be >= 1"]


# --------------------------------------------------------------------------- dual stack


def _dual_stack(d: dict[str, Any]) -> None:
    """BASE plus an IPv6 link on each interface and an IPv6 group for the default route."""
    d["links"] += [
        {
            "name": "fibre-a6",
            "interface": "wan-a",
            "gateway": "2001:db8:a::1",
            "source": "2001:db8:a::2",
            "tier": 1,
            "probes": {"targets": [{"icmp": "2001:db8:a::1"}, {"icmp": "2001:db8:f::1"}]},
        },
        {
            "name": "lte6",
            "interface": "wwan0",
            "gateway": "fe80::1",
            "tier": 3,
            "probes": {"targets": [{"icmp": "2001:db8:f::1"}]},
        },
    ]
    d["route_groups"].append({"name": "internet6", "links": ["fibre-a6", "lte6"]})


def test_dual_stack_two_links_per_interface_and_two_defaults_in_main() -> None:
    cfg = parse_config(build(_dual_stack))
    assert cfg.warnings == []
    assert [(link.name, link.family, link.table) for link in cfg.links] == [
        ("fibre-a", 4, 101),
        ("lte", 4, 102),
        ("fibre-a6", 6, 103),
        ("lte6", 6, 104),
    ]
    assert [(g.name, g.destination, g.table_id) for g in cfg.route_groups] == [
        ("internet", "default", 254),
        ("internet6", "default", 254),
    ]


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["route_groups"].append({"name": "again6", "links": ["lte6"]}),
            "route_groups[2].destination: route_groups[1] already owns IPv6 default with "
            "metric 0 in table main",
        ),
        (
            # "::/0" is the IPv6 default by another name
            lambda d: d["route_groups"].append(
                {"name": "again6", "destination": "::/0", "links": ["lte6"]}
            ),
            "route_groups[2].destination: route_groups[1] already owns IPv6 ::/0 (as default) "
            "with metric 0 in table main",
        ),
        (
            # the kernel stores an IPv6 route given metric 0 at 1024
            lambda d: d["route_groups"].append(
                {"name": "again6", "metric": 1024, "links": ["lte6"]}
            ),
            "route_groups[2].destination: route_groups[1] already owns IPv6 default with "
            "metric 1024 in table main",
        ),
        (
            lambda d: d["route_groups"].append(
                {"name": "again4", "destination": "0.0.0.0/0", "links": ["lte"]}
            ),
            "route_groups[2].destination: route_groups[0] already owns 0.0.0.0/0 (as default) "
            "with metric 0 in table main",
        ),
    ],
)
def test_dual_stack_still_refuses_one_route_twice(
    mutate: Callable[[dict[str, Any]], Any], expected: str
) -> None:
    def both(d: dict[str, Any]) -> None:
        _dual_stack(d)
        mutate(d)

    assert errors_of(build(both)) == [expected]


def test_dual_stack_link_still_needs_its_own_table() -> None:
    def clash(d: dict[str, Any]) -> None:
        _dual_stack(d)
        d["links"][2]["table"] = 101

    assert errors_of(build(clash)) == [
        "links[2].table: table 101 is also used by fibre-a (links[0]) on the same interface; "
        "each link needs its own table"
    ]


# --------------------------------------------------------------------------- warnings


def test_unused_link_is_a_warning_not_an_error() -> None:
    cfg = parse_config(build(_set("route_groups[0].links", ["fibre-a"])))
    assert cfg.warnings == [
        "links[1]: lte is in no route group (probed and reported, never routed over)"
    ]
    assert "warnings:" in summary(cfg)


def test_no_route_groups_warns_every_link() -> None:
    cfg = parse_config(build(lambda d: d.pop("route_groups")))
    assert len(cfg.warnings) == 3
    assert cfg.warnings[-1].startswith("route_groups: none configured")


def test_warnings_cannot_come_from_yaml() -> None:
    assert errors_of(build(_set("warnings", ["x"]))) == ["warnings: unknown field"]


# --------------------------------------------------------------------------- YAML level


def test_bad_yaml_gives_line_and_column() -> None:
    text = "site: a\nlinks:\n  - name: [x\n"
    errors = errors_of(text)
    assert len(errors) == 1
    assert errors[0].startswith("line 4, column 1: bad YAML:")


def test_tab_indent_gives_line() -> None:
    errors = errors_of("site: a\n\tlinks: 1\n")
    assert errors[0].startswith("line 2, column 1: bad YAML:")


def test_duplicate_keys_are_errors() -> None:
    text = build() + "site: again\n"
    last = len(text.splitlines())
    with pytest.raises(ConfigError) as info:
        parse_config(text, "x.yaml")
    assert info.value.errors == ["site: duplicate key (first at line 1)"]
    assert info.value.lines == [last]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty config: at least site and links are required"),
        ("# only a comment\n", "empty config: at least site and links are required"),
        ("- a\n- b\n", "the config must be a mapping of keys to values"),
        ("just words\n", "the config must be a mapping of keys to values"),
    ],
)
def test_document_must_be_a_mapping(text: str, message: str) -> None:
    assert errors_of(text) == [message]


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("[" * 5000, "bad YAML: nested too deeply"),
        ("site: a\x00\n", "bad YAML: unacceptable character #x0000"),
        ("site: !!python/object:os.system x\n", "line 1, column 7: bad YAML: could not"),
        ("? [a, b]\n: 1\n", "line 1, column 3: bad YAML: found unhashable key"),
    ],
)
def test_hostile_yaml_is_a_config_error(text: str, start: str) -> None:
    errors = errors_of(text)
    assert len(errors) == 1 and errors[0].startswith(start), errors


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.yaml")
    assert info.value.errors == ["cannot read: No such file or directory"]
    assert str(tmp_path / "missing.yaml") in str(info.value)


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"site: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.errors == ["not UTF-8 text (byte 9)"]


def test_yaml_anchors_and_merge_keys_work() -> None:
    text = """
site: anchors
x-probes: &probes
  targets: [{icmp: 192.0.2.1}]
links:
  - {name: a, interface: wan-a, gateway: 198.51.100.1, probes: *probes}
route_groups: [{name: g, links: [a]}]
"""
    # x-probes is not a config key: anchors must live inside known keys.
    assert errors_of(text) == ["x-probes: unknown field"]
    text = """
site: anchors
links:
  - &a {name: a, interface: wan-a, gateway: 198.51.100.1, probes: {targets: [{icmp: 192.0.2.1}]}}
  - <<: *a
    name: b
    interface: wan-b
route_groups: [{name: g, links: [a, b]}]
"""
    cfg = parse_config(text)
    assert [link.interface for link in cfg.links] == ["wan-a", "wan-b"]


# --------------------------------------------------------------------------- effective values


def test_defaults_merge_under_link_overrides() -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["defaults"] = {
            "interval": "250ms",
            "timeout": "150ms",
            "thresholds": {"down_after": 4, "hold_down": "20s", "degraded_loss": "1%"},
        }
        data["links"][1]["probes"]["interval"] = "1s"
        data["links"][1]["thresholds"] = {"down_after": 2, "degraded_latency": "300ms"}

    cfg = parse_config(build(mutate))
    fibre, lte = cfg.links
    assert fibre.health_params() == HealthParams(
        interval=0.25, down_after=4, hold_down=20.0, degraded_loss=0.01
    )
    assert (fibre.effective_interval, fibre.effective_timeout) == (0.25, 0.15)
    assert lte.health_params() == HealthParams(
        interval=1.0, down_after=2, hold_down=20.0, degraded_loss=0.01, degraded_latency=0.3
    )
    assert (lte.effective_interval, lte.effective_timeout) == (1.0, 0.15)


def test_without_defaults_health_params_are_healths_own() -> None:
    cfg = parse_config(build())
    assert cfg.links[0].health_params() == HealthParams()


def test_thresholds_mirror_health_params() -> None:
    """Every threshold maps onto a HealthParams field with the same default."""
    hp = HealthParams()
    names = {f.name for f in dataclasses.fields(HealthParams)}
    for name, field in Thresholds.model_fields.items():
        assert name in names, name
        assert field.default == getattr(hp, name), name
    expected = {
        "window", "down_after", "down_loss", "rise", "hold_down", "degraded_loss",
        "degraded_latency", "degraded_jitter", "degraded_mos", "flap_half_life",
        "flap_max_hold_down",
    }  # fmt: skip
    assert set(Thresholds.model_fields) == expected


def test_probe_specs_pin_each_target_to_the_link() -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["links"][0]["probes"]["targets"].append({"tcp": " 192.0.2.2:443 "})
        data["links"][0]["probes"]["arp_gateway"] = True

    cfg = parse_config(build(mutate))
    pin = {"device": "wan-a", "source": "198.51.100.2"}
    assert cfg.links[0].probe_specs() == [
        ProbeSpec("icmp", "198.51.100.1", None, device=pin["device"], source=pin["source"]),
        ProbeSpec("icmp", "192.0.2.1", None, device=pin["device"], source=pin["source"]),
        ProbeSpec("tcp", "192.0.2.2", 443, device=pin["device"], source=pin["source"]),
    ]
    assert cfg.links[0].arp_spec() == ProbeSpec("arp", "198.51.100.1", None,
                                                device=pin["device"], source=pin["source"])
    assert cfg.links[1].arp_spec() is None
    assert cfg.links[1].probe_specs()[0].source is None


def test_addresses_are_normalized() -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["links"][0]["gateway"] = "2001:DB8:0:0::1"
        data["links"][0]["source"] = "2001:db8::0002"
        data["links"][0]["probes"]["targets"] = [{"tcp": "[2001:DB8::00AA]:443"}]
        data["route_groups"][0]["links"] = ["fibre-a"]
        data["route_groups"][0]["destination"] = "2001:DB8:1::/48"
        data["route_groups"].append({"name": "v4", "links": ["lte"]})

    cfg = parse_config(build(mutate))
    assert cfg.links[0].gateway == "2001:db8::1"
    assert cfg.links[0].source == "2001:db8::2"
    assert cfg.links[0].probes.targets[0].tcp == "[2001:db8::aa]:443"
    assert cfg.route_groups[0].destination == "2001:db8:1::/48"


def test_route_group_defaults_and_flush_rules() -> None:
    cfg = parse_config(build())
    group = cfg.route_groups[0]
    assert (group.table_id, group.table_name, group.metric, group.multipath) == (
        254,
        "main",
        0,
        False,
    )
    assert group.flush_rules is None  # every flow NAT'ed to the link left, any protocol


def test_flush_rules_narrow_by_protocol_and_ports() -> None:
    cfg = parse_config(build(_set("route_groups[0].conntrack_flush",
                                  ["udp/5060", "TCP/5060-5061", "esp", "udp", "icmpv6"])))
    rules = cfg.route_groups[0].flush_rules
    assert rules == (
        FlushRule("udp", 5060, 5060),
        FlushRule("tcp", 5060, 5061),
        FlushRule("esp"),
        FlushRule("udp"),
        FlushRule("icmpv6"),
    )
    assert [str(rule) for rule in rules] == ["udp/5060", "tcp/5060-5061", "esp", "udp", "icmpv6"]
    assert parse_config(build(_set("route_groups[0].conntrack_flush", None))).route_groups[
        0].flush_rules is None


@pytest.mark.parametrize(("table", "table_id"), [("main", 254), ("default", 253), (300, 300)])
def test_route_group_tables_resolve(table: str | int, table_id: int) -> None:
    cfg = parse_config(build(_set("route_groups[0].table", table)))
    assert cfg.route_groups[0].table_id == table_id


def test_empty_flush_list_is_allowed() -> None:
    cfg = parse_config(build(_set("route_groups[0].conntrack_flush", [])))
    assert cfg.route_groups[0].flush_rules == ()  # the flush is off


def test_top_level_defaults() -> None:
    cfg = parse_config(build())
    assert cfg.state_dir == Path("/var/lib/lifeline")
    assert cfg.api_socket_path == Path("/var/lib/lifeline/lifeline.sock")
    assert (cfg.listen_host, cfg.listen_port) == ("127.0.0.1", 9730)
    assert (cfg.log_format, cfg.reconcile_interval) == ("text", 1.0)
    assert (cfg.route_protocol, cfg.rule_priority) == (201, 1000)
    cfg = parse_config(build(_set("state_dir", "/srv/ll")))
    assert cfg.api_socket_path == Path("/srv/ll/lifeline.sock")


def test_config_is_frozen() -> None:
    cfg = parse_config(build())
    with pytest.raises(pydantic.ValidationError):
        cfg.site = "other"
    with pytest.raises(pydantic.ValidationError):
        cfg.links[0].tier = 9


def test_summary_mentions_what_an_operator_checks() -> None:
    cfg = load_config(EXAMPLE)
    text = summary(cfg)
    for needle in [
        "site rome-cc1: 3 links, 1 route group",
        "fibre-a: tier 1, weight 1, wan-a via 198.51.100.1 src 198.51.100.2, table 101",
        "probes every 500ms (timeout 400ms), 1 of 2 must answer",
        "down after 4 lost rounds (2s)",
        "internet: default in table main metric 0",
        "prefers fibre-a (tier 1) > fibre-b (tier 2) > lte (tier 3)",
        "on a switch flushes conntrack: every flow NAT'ed to the link it leaves",
    ]:
        assert needle in text, needle
    assert "warnings" not in text


def test_config_model_is_importable_type() -> None:
    assert isinstance(parse_config(build()), Config)


# --------------------------------------------------------------------------- robustness

_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=3)
    ),
    max_leaves=8,
)
_SPOTS = [
    "site", "listen", "state_dir", "route_protocol", "rule_priority", "defaults",
    "defaults.thresholds", "defaults.interval", "links", "links[0]", "links[0].probes",
    "links[0].probes.targets", "links[0].probes.targets[0]", "links[1].thresholds",
    "links[1].table", "route_groups", "route_groups[0]", "route_groups[0].links",
    "route_groups[0].conntrack_flush", "route_groups[0].table",
]  # fmt: skip


@given(st.sampled_from(_SPOTS), _JUNK)
def test_junk_anywhere_gives_config_error_never_a_crash(spot: str, junk: Any) -> None:
    try:
        text = build(_set(spot, junk))
    except (ValueError, TypeError):  # junk YAML itself cannot represent (e.g. NaN keys)
        return
    try:
        cfg = parse_config(text)
    except ConfigError as exc:
        assert exc.errors and all(isinstance(e, str) and e for e in exc.errors)
        return
    assert summary(cfg)  # whatever loads must also summarize and give health params
    for link in cfg.links:
        link.health_params()


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("200ms", 0.2),
        ("5s", 5.0),
        ("1.5s", 1.5),
        ("1m", 60.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("1h0m5s", 3605.0),
        (" 250ms ", 0.25),
        ("0.2", 0.2),
        ("3", 3.0),
        (2, 2.0),
        (0.5, 0.5),
        ("0s", 0.0),
    ],
)
def test_parse_duration_accepts(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds, abs=1e-12)


@pytest.mark.parametrize(
    "bad",
    ["5 parsecs", "-1s", "", "   ", "s", "1x", "1.s", "1m 30s", "nan", "inf", "-5", "1e3s", "5S"],
)
def test_parse_duration_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [True, float("nan"), float("inf"), -1, -0.5])
def test_parse_duration_rejects_bad_numbers(bad: float) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.2, "200ms"), (1.5, "1.5s"), (60, "1m"), (90, "1m30s"), (3600, "1h"), (0, "0s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@given(st.integers(min_value=0, max_value=10 * 24 * 3600 * 1000))
def test_whole_milliseconds_round_trip(millis: int) -> None:
    seconds = millis / 1000
    assert parse_duration(format_duration(seconds)) == seconds
    assert parse_duration(f"{millis}ms") == seconds


@given(
    st.integers(min_value=0, max_value=99),
    st.integers(min_value=0, max_value=59),
    st.integers(min_value=0, max_value=59),
)
def test_compound_durations_add_up(hours: int, minutes: int, secs: int) -> None:
    assert parse_duration(f"{hours}h{minutes}m{secs}s") == hours * 3600 + minutes * 60 + secs


@given(st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False))
def test_rendered_durations_always_parse_close(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds, abs=1e-6)


# --------------------------------------------------------------------------- telephony

TEL: dict[str, Any] = {
    "trunks": [
        {"name": "a1", "carrier": "carrier-a", "uri": "sip:203.0.113.10", "links": ["fibre-a"]},
        {"name": "a2", "carrier": "carrier-a", "uri": "sip:203.0.113.11"},
        {"name": "b1", "carrier": "carrier-b", "uri": "sip:203.0.113.20"},
    ],
    "destinations": [
        {"name": "pbx", "uri": "sip:192.0.2.130"},
        {"name": "dr", "uri": "sip:192.0.2.150"},
    ],
    "dids": [
        {
            "numbers": "+390212345600-+390212345699",
            "trunks": ["a1", "a2"],
            "destination": "pbx",
            "dr_destination": "dr",
        },
        {"numbers": "+390287654321", "trunks": ["b1"], "destination": "pbx"},
    ],
}


def build_tel(mutate: Callable[[dict[str, Any]], Any] | None = None) -> str:
    def both(data: dict[str, Any]) -> None:
        data.update(copy.deepcopy(TEL))
        if mutate is not None:
            mutate(data)

    return build(both)


def test_example_has_trunks_destinations_and_a_did_plan() -> None:
    from probes.sample import ProbeSpec, SipOptions

    cfg = load_config(EXAMPLE)
    assert [t.name for t in cfg.trunks] == ["carrier-a-sbc1", "carrier-a-sbc2", "carrier-b"]
    sbc1 = cfg.trunk("carrier-a-sbc1")
    assert sbc1.probe_spec() == ProbeSpec(
        "sip", "203.0.113.10", 5060,
        sip=SipOptions("udp", "sip:203.0.113.10:5060;transport=udp", sbc1.alive))
    tls = cfg.trunk("carrier-b").probe_spec()
    assert tls.port == 5061 and tls.sip is not None and tls.sip.transport == "tls"
    reg = cfg.trunk("carrier-b").registration
    assert reg is not None and reg.user == "0212345600"
    assert reg.password_file == Path("/etc/lifeline/secrets/carrier-b")
    assert cfg.trunk("carrier-a-sbc1").health_params().down_after == 2
    assert cfg.trunk("carrier-a-sbc1").health_params().interval == 1.0
    assert [d.name for d in cfg.destinations] == ["pbx-rome", "dr-milan"]
    entries = cfg.did_entries()
    assert str(entries[0].numbers) == "+390212345600-+390212345699"
    assert entries[0].trunks == ("carrier-a-sbc1", "carrier-a-sbc2", "carrier-b")
    assert entries[1].numbers.size == 1
    text = summary(cfg)
    assert "DID plan: 2 ranges, 101 numbers" in text
    assert "carrier-b (carrier-b): sips:203.0.113.20:5061, follows the active route" in text


def test_example_telephony_uses_documentation_addresses() -> None:
    import ipaddress

    docs = [ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
    cfg = load_config(EXAMPLE)
    hosts = [t.sip_uri.host for t in cfg.trunks] + [d.sip_uri.host for d in cfg.destinations]
    for host in hosts:
        assert any(ipaddress.ip_address(host) in net for net in docs), host


def test_telephony_sample_fills_defaults_and_normalizes() -> None:
    cfg = load_config(SAMPLES / "good-telephony.yaml")
    a1, a2, b = cfg.trunks
    assert a1.uri == "sip:sbc1.carrier-a.example:5060;transport=udp"
    assert a1.allowed_links == ("lte",)  # pinned: the first link only
    assert a1.alive == frozenset({200, 404})
    assert a1.health_params().down_after == 2
    assert a1.health_params().hold_down == 20.0  # merged from defaults.thresholds
    spec = a2.probe_spec()
    assert spec.host == "2001:db8::10" and spec.sip is not None and spec.sip.transport == "tcp"
    assert a2.allowed_links == ()
    assert b.uri == "sip:203.0.113.20:5061;transport=tls"
    assert b.registration is not None and b.registration.password_env == "CARRIER_B_PASSWORD"
    assert 404 in b.alive and 403 in b.alive and 200 in b.alive
    assert 408 not in b.alive and 503 not in b.alive and 100 not in b.alive
    assert cfg.destination("pbx").uri == "sips:pbx.site.example:5061"


def test_trunks_of_two_carriers_warn_unless_cli_is_verified() -> None:
    def mix(data: dict[str, Any]) -> None:
        data["dids"][0]["trunks"] = ["a1", "b1"]

    cfg = parse_config(build_tel(mix))
    assert [w for w in cfg.warnings if w.startswith("dids[0].trunks: trunks of carriers")]

    def verified(data: dict[str, Any]) -> None:
        mix(data)
        data["dids"][0]["verified_cli"] = True

    assert not [w for w in parse_config(build_tel(verified)).warnings if "dids[0]" in w]


def test_a_trunk_in_no_did_entry_is_a_warning() -> None:
    def drop(data: dict[str, Any]) -> None:
        data["dids"][0]["trunks"] = ["a1"]

    cfg = parse_config(build_tel(drop))
    assert "trunks[1]: a2 is in no DID entry (probed and reported, carries no number)" in (
        cfg.warnings
    )
    assert not [w for w in parse_config(build_tel()).warnings if w.startswith("trunks")]


def test_config_without_telephony_still_loads_with_empty_sections() -> None:
    cfg = parse_config(build())
    assert cfg.trunks == [] and cfg.destinations == [] and cfg.dids == []
    assert cfg.did_entries() == ()
    assert "trunks" not in summary(cfg)


def test_overlap_error_carries_the_line_of_the_later_entry() -> None:
    def overlap(data: dict[str, Any]) -> None:
        data["dids"].append(
            {"numbers": "+390212345650-+390212345660", "trunks": ["a1"], "destination": "pbx"}
        )

    text = build_tel(overlap)
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert info.value.errors == [
        "dids[2].numbers: +390212345650-+390212345660 overlaps dids[0] "
        "(+390212345600-+390212345699)"
    ]
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "+390212345650" in ln)
    assert info.value.lines == [line]


def test_many_ranges_with_one_overlap_report_only_it() -> None:
    def many(data: dict[str, Any]) -> None:
        data["dids"] = [
            {
                "numbers": f"+390212{k:04d}00-+390212{k:04d}99",
                "trunks": ["a1"],
                "destination": "pbx",
            }
            for k in range(3000, 5000)
        ]
        data["dids"].append({"numbers": "+390212345650", "trunks": ["a1"], "destination": "pbx"})

    errors = errors_of(build_tel(many))
    assert errors == [
        "dids[2000].numbers: +390212345650 overlaps dids[456] (+390212345600-+390212345699)"
    ]


def test_errors_from_invalid_and_valid_parts_come_together() -> None:
    # A field error elsewhere must not hide the semantic errors of the telephony sections.
    def both(data: dict[str, Any]) -> None:
        data["links"][0]["gateway"] = "nope"
        data["dids"][1]["trunks"] = ["b11"]

    errors = errors_of(build_tel(both))
    assert "links[0].gateway: not an IPv4/IPv6 address" in errors
    assert "dids[1].trunks[0]: unknown trunk 'b11' (did you mean b1?)" in errors


def test_unknown_field_in_register_suggests_the_right_one() -> None:
    def typo(data: dict[str, Any]) -> None:
        data["trunks"][0]["register"] = {
            "user": "100",
            "domain": "carrier-a.example",
            "pasword_file": "/etc/x",
        }

    errors = errors_of(build_tel(typo))
    assert "trunks[0].register.pasword_file: unknown field (did you mean password_file?)" in (
        errors
    )
    assert "trunks[0].register: needs exactly one of password_file or password_env" not in errors

    def typo_top(data: dict[str, Any]) -> None:
        data["trunks"][0]["registr"] = {}

    assert "trunks[0].registr: unknown field (did you mean register?)" in errors_of(
        build_tel(typo_top)
    )


@pytest.mark.parametrize(
    ("uri", "normal"),
    [
        ("sip:203.0.113.10", "sip:203.0.113.10:5060;transport=udp"),
        ("sip:203.0.113.10:5080;transport=tcp", "sip:203.0.113.10:5080;transport=tcp"),
        ("sip:203.0.113.10;transport=tls", "sip:203.0.113.10:5061;transport=tls"),
        ("sips:sbc.example", "sips:sbc.example:5061"),
        ("sips:sbc.example:5071;transport=tcp", "sips:sbc.example:5071"),
        ("sip:[2001:db8::1]", "sip:[2001:db8::1]:5060;transport=udp"),
        ("sip:[2001:DB8::1]:5062", "sip:[2001:db8::1]:5062;transport=udp"),
        (" SIP:Sbc.Example.:5060 ", "sip:sbc.example:5060;transport=udp"),
    ],
)
def test_sip_uris_normalize(uri: str, normal: str) -> None:
    from controller.config import parse_sip_uri

    assert str(parse_sip_uri(uri)) == normal
    assert str(parse_sip_uri(normal)) == normal  # normal form is a fixed point


@pytest.mark.parametrize(
    ("uri", "fragment"),
    [
        ("tel:+390212345600", "must start with sip: or sips:"),
        ("sip:", "has no host"),
        ("sip:user@203.0.113.10", "names a user"),
        ("sip:2001:db8::1", "must be bracketed"),
        ("sip:[203.0.113.10]", "must be an IPv6 address"),
        ("sip:[2001:db8::1]x", "must be :port"),
        ("sip:203.0.113.10:0", "not a number in 1..65535"),
        ("sip:203.0.113.10:x", "not a number in 1..65535"),
        ("sip:203.0.113.10;transport=sctp", "must be udp, tcp or tls"),
        ("sip:203.0.113.10;lr", "unsupported URI parameter"),
        ("sips:203.0.113.10;transport=udp", "cannot carry it"),
        ("sip:bad_host.example", "neither an IP address nor a host name"),
        ("sip:203.0.113.999", "not a valid IPv4 address"),
        ("sip:224.0.0.1", "not a usable host address"),
    ],
)
def test_bad_sip_uris_are_refused(uri: str, fragment: str) -> None:
    from controller.config import parse_sip_uri

    with pytest.raises(ValueError, match=fragment):
        parse_sip_uri(uri)


def test_config_plan_feeds_the_did_policy() -> None:
    from controller.core.didplan import TrunkView, compute_plan
    from controller.core.health import HealthState

    cfg = parse_config(build_tel())
    trunks = {
        t.name: TrunkView(t.name, HealthState.UP, links=tuple(t.links), pinned=t.pinned)
        for t in cfg.trunks
    }
    plan = compute_plan(
        cfg.did_entries(), trunks, {"fibre-a": HealthState.DOWN, "lte": HealthState.UP}, {}
    )
    hit = plan.lookup("+390212345642")
    assert hit is not None and hit.trunk == "a2"  # a1 may only use fibre-a, which is down
    assert hit.reason == "a1 down (its link down (fibre-a)); using a2"


_TEL_SPOTS = [
    "trunks", "trunks[0]", "trunks[0].uri", "trunks[0].links", "trunks[0].register",
    "trunks[0].alive_codes", "trunks[0].thresholds", "trunks[1].interval", "destinations",
    "destinations[0]", "destinations[0].uri", "dids", "dids[0]", "dids[0].numbers",
    "dids[0].trunks", "dids[1].destination", "dids[1].dr_destination", "dids[1].verified_cli",
]  # fmt: skip


@given(st.sampled_from(_TEL_SPOTS), _JUNK)
def test_junk_in_telephony_gives_config_error_never_a_crash(spot: str, junk: Any) -> None:
    try:
        text = build_tel(_set(spot, junk))
    except (ValueError, TypeError):
        return
    try:
        cfg = parse_config(text)
    except ConfigError as exc:
        assert exc.errors and all(isinstance(e, str) and e for e in exc.errors)
        return
    assert summary(cfg)
    for trunk in cfg.trunks:
        trunk.health_params()
        trunk.probe_spec()
    cfg.did_entries()


def test_trunk_recheck_interval_defaults_and_must_not_exceed_the_interval() -> None:
    assert parse_config(build_tel()).trunk("a1").recheck_interval == 0.2

    def slow(data: dict[str, Any]) -> None:
        data["trunks"][1].update(interval="1s", recheck_interval="2s")

    with pytest.raises(ConfigError) as info:
        parse_config(build_tel(slow))
    assert info.value.errors == [
        "trunks[1].recheck_interval: 2s is longer than the interval 1s (it is the faster "
        "pace that confirms a lost OPTIONS)"
    ]


def test_trunk_edge_signal_defaults_and_its_ceiling() -> None:
    edge = parse_config(build_tel()).trunk("a1").edge_signal.params()
    assert (edge.failures, edge.window, edge.hold_down, edge.max_hold_down) == (3, 30, 60, 900)

    def tuned(data: dict[str, Any]) -> None:
        data["trunks"][0]["edge_signal"] = {"failures": 5, "window": "10s", "hold_down": "2m"}
        data["trunks"][2]["edge_signal"] = {"hold_down": "10m", "max_hold_down": "5m"}

    with pytest.raises(ConfigError) as info:
        parse_config(build_tel(tuned))
    assert info.value.errors == [
        "trunks[2].edge_signal: max_hold_down 5m is below hold_down 10m"
    ]


# --------------------------------------------------------------------------- the Kamailio edge


def test_kamailio_edge_defaults_fit_the_reference_edge() -> None:
    cfg = parse_config(build_tel(lambda d: d.update(sip_edge={"kamailio": {}})))
    edge = cfg.sip_edge.kamailio
    assert edge is not None
    assert (edge.rpc_url, edge.rpc_port) == ("http://127.0.0.1:5071/RPC", 5071)
    assert (edge.carrier_port, edge.carrier_tls_port) == (5060, 5061)
    assert (edge.pbx_address, edge.pbx_port, edge.trunk_failover) == ("127.0.0.1", 5070, True)
    assert "PBX side 127.0.0.1:5070, in-call trunk failover on" in summary(cfg)


def test_example_points_at_the_reference_edge() -> None:
    cfg = load_config(EXAMPLE)
    edge = cfg.sip_edge.kamailio
    assert edge is not None and edge.rpc_port == 5071
    assert edge.pbx_address == "192.0.2.129"  # on the LAN of the example's PBX (192.0.2.130)


@pytest.mark.parametrize(
    ("kamailio", "message"),
    [
        ({"carrier_tls_port": 5060},
         "sip_edge.kamailio: carrier_port and carrier_tls_port are both 5060: TLS needs"),
        ({"pbx_port": 5071},
         "sip_edge.kamailio: pbx_port 5071 is the port of rpc_url, and both are on 127.0.0.1"),
        ({"rpc_url": "http://127.0.0.1/RPC", "pbx_port": 80},
         "sip_edge.kamailio: pbx_port 80 is the port of rpc_url"),
        ({"pbx_address": "0.0.0.0"}, "sip_edge.kamailio.pbx_address: 0.0.0.0 is not a usable"),
    ],
)
def test_kamailio_edge_sockets_that_would_collide_are_refused(
    kamailio: dict[str, Any], message: str,
) -> None:
    errors = errors_of(build_tel(lambda d: d.update(sip_edge={"kamailio": kamailio})))
    assert [e for e in errors if e.startswith(message)], errors


def test_a_pbx_side_on_another_address_may_share_the_rpc_port() -> None:
    cfg = parse_config(build_tel(lambda d: d.update(
        sip_edge={"kamailio": {"pbx_address": "192.0.2.129", "pbx_port": 5071}})))
    assert cfg.sip_edge.kamailio is not None
