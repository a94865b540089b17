"""Links, their probes and route groups: the ``links:`` and ``route_groups:`` sections.

Also the numbers that place and tag lifeline's routes and rules (table, protocol, rule
priority), refusing by name the values the kernel and other routing daemons hold. Each
model checks its own fields; what needs two entries at once (a group naming an unknown
link, two links on one table) is checks.py's.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Annotated

from pydantic import AfterValidator, Field, PlainValidator, Strict, model_validator

from controller.config.fields import (
    ConfigModel,
    Count,
    GroupName,
    HostPort,
    IfName,
    IPAddr,
    LinkName,
    PositiveDuration,
    split_host_port,
)
from controller.config.thresholds import Thresholds, health_params
from controller.core.flushrules import FlushRule, parse_flush_rule
from controller.core.health import HealthParams
from probes.sample import ProbeSpec

_HP = HealthParams()

TABLE_MAIN = 254
TABLE_DEFAULT = 253
TABLE_LOCAL = 255
_TABLE_NAMES = {"main": TABLE_MAIN, "default": TABLE_DEFAULT}
_TABLE_MAX = 2**31
RULE_PRIORITY_MAX = 32765  # 32766 is the kernel's rule for table main

# Protocol numbers the kernel or a well-known routing daemon already uses. lifeline treats
# every route carrying its protocol number as its own and may replace or delete it, so
# sharing a number with dhcpcd or bird would let it tear down that daemon's routes.
_RESERVED_PROTOCOLS = {
    0: "unspec",
    1: "redirect",
    2: "kernel",
    3: "boot",
    4: "static",
    8: "gated",
    9: "ra",
    10: "mrt",
    11: "zebra",
    12: "bird",
    13: "dnrouted",
    14: "xorp",
    15: "ntk",
    16: "dhcp",
    17: "mrouted",
    18: "keepalived",
    42: "babel",
    99: "openr",
    186: "bgp",
    187: "isis",
    188: "ospf",
    189: "rip",
    192: "eigrp",
}


def _route_table(value: object) -> int:
    if isinstance(value, str):
        if value in _TABLE_NAMES:
            return _TABLE_NAMES[value]
        if not value.isdigit():
            raise ValueError("must be main, default or a table number 1..2^31")
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be main, default or a table number 1..2^31")
    if not 1 <= value <= _TABLE_MAX:
        raise ValueError("must be main, default or a table number 1..2^31")
    if value == TABLE_LOCAL:
        raise ValueError("table 255 is the kernel's local table")
    return value


RouteTable = Annotated[int, PlainValidator(_route_table)]


def _link_table(value: int) -> int:
    if value in (TABLE_DEFAULT, TABLE_MAIN, TABLE_LOCAL):
        raise ValueError(f"table {value} is reserved by the kernel (default/main/local)")
    return value


LinkTable = Annotated[int, Strict(), Field(ge=1, le=_TABLE_MAX), AfterValidator(_link_table)]


def _destination(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be 'default' or a CIDR, e.g. 203.0.113.0/24")
    text = value.strip()
    if text == "default":
        return text
    try:
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError("must be 'default' or a CIDR, e.g. 203.0.113.0/24") from None
        raise ValueError(f"{text} has host bits set (did you mean {loose}?)") from None


def _route_protocol(value: int) -> int:
    if value in _RESERVED_PROTOCOLS:
        raise ValueError(
            f"{value} is the '{_RESERVED_PROTOCOLS[value]}' protocol; lifeline owns every route "
            "tagged with its protocol, so pick an unused number (e.g. 201)"
        )
    return value


def _flush_rule(value: object) -> FlushRule:
    return value if isinstance(value, FlushRule) else parse_flush_rule(value)


FlushRuleField = Annotated[FlushRule, PlainValidator(_flush_rule)]
RouteProtocol = Annotated[int, Strict(), Field(ge=1, le=255), AfterValidator(_route_protocol)]
RulePriority = Annotated[int, Strict(), Field(ge=1, le=RULE_PRIORITY_MAX)]


class Target(ConfigModel):
    """One probe target: exactly one of ``icmp: ADDRESS`` or ``tcp: ADDRESS:PORT``."""

    icmp: IPAddr | None = None
    tcp: HostPort | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Target:
        if (self.icmp is None) == (self.tcp is None):
            raise ValueError("needs exactly one of icmp: ADDRESS or tcp: ADDRESS:PORT")
        return self

    @property
    def kind(self) -> str:
        return "icmp" if self.icmp is not None else "tcp"

    @property
    def host(self) -> str:
        if self.icmp is not None:
            return self.icmp
        assert self.tcp is not None
        host, _ = split_host_port(self.tcp)
        return host

    @property
    def port(self) -> int | None:
        if self.tcp is None:
            return None
        return split_host_port(self.tcp)[1]


class Probes(ConfigModel):
    interval: PositiveDuration = _HP.interval
    timeout: PositiveDuration = _HP.interval
    reliability: Count = 1
    arp_gateway: Annotated[bool, Strict()] = False
    targets: Annotated[list[Target], Field(min_length=1)]


class Link(ConfigModel):
    """One uplink. Loaded through parse_config, probes/thresholds hold effective values."""

    name: LinkName
    interface: IfName
    gateway: IPAddr
    source: IPAddr | None = None
    tier: Annotated[int, Strict(), Field(ge=0)] = 0
    weight: Annotated[int, Strict(), Field(ge=1, le=256)] = 1
    table: LinkTable
    probes: Probes
    thresholds: Thresholds = Thresholds()
    # Addresses the site SNATs this link's traffic to that are on no interface of the link
    # (a routed public block): the conntrack flush after a switch counts them as the link's.
    nat_addresses: list[IPAddr] = []

    @property
    def family(self) -> int:
        """4 or 6: the family of the gateway, which every address of the link must share."""
        return ipaddress.ip_address(self.gateway).version

    @property
    def table_id(self) -> int:
        """The link's own routing table (named like RouteGroup.table_id for symmetry)."""
        return self.table

    @property
    def effective_interval(self) -> float:
        return self.probes.interval

    @property
    def effective_timeout(self) -> float:
        return self.probes.timeout

    def health_params(self) -> HealthParams:
        """Effective thresholds of this link, in the form controller.core.health consumes."""
        return health_params(self.probes.interval, self.thresholds)

    def source_from(self, addresses: Sequence[str]) -> str | None:
        """The address to use as this link's source when none is configured, from its
        interface's addresses (``addr/prefixlen``, primary first): of the gateway's family,
        never IPv6 link-local (it cannot reach far targets; a link-local gateway is fine),
        the one in the gateway's subnet, else the primary. None: nothing usable yet."""
        gateway = ipaddress.ip_address(self.gateway)
        ifaces = [
            i
            for a in addresses
            if (i := ipaddress.ip_interface(a)).version == gateway.version
            and not (i.version == 6 and i.ip.is_link_local)
        ]
        on_link = [i for i in ifaces if gateway in i.network] or ifaces
        return str(on_link[0].ip) if on_link else None

    def probe_specs(self) -> list[ProbeSpec]:
        """The configured targets in config order, each pinned to this link's device/source.

        The gateway ARP probe (``arp_gateway``) is not in this list, because ``reliability``
        counts configured targets only; see ``arp_spec``.
        """
        return [
            ProbeSpec(t.kind, t.host, t.port, device=self.interface, source=self.source)
            for t in self.probes.targets
        ]

    def arp_spec(self) -> ProbeSpec | None:
        """The extra ARP probe of the gateway, when ``probes.arp_gateway`` is on."""
        if not self.probes.arp_gateway:
            return None
        return ProbeSpec("arp", self.gateway, None, device=self.interface, source=self.source)


class RouteGroup(ConfigModel):
    """A route lifeline keeps pointed at the best healthy link(s) of an ordered list."""

    name: GroupName
    table: RouteTable = TABLE_MAIN
    destination: Annotated[str, PlainValidator(_destination)] = "default"
    metric: Annotated[int, Strict(), Field(ge=0, le=2**32 - 1)] = 0
    links: Annotated[list[str], Field(min_length=1)]
    multipath: Annotated[bool, Strict()] = False
    # Replace a route lifeline did not create at this group's (table, destination, metric),
    # e.g. a DHCP or router-advertisement default; off: such a route is a reported conflict.
    takeover: Annotated[bool, Strict()] = False
    # After a switch, the conntrack entries NAT'ed to the links left are deleted. Absent:
    # all of them, any protocol (controller.core.staleflows); a list narrows to the flows
    # its rules cover (udp/5060, esp, ...); [] turns the flush off.
    conntrack_flush: list[FlushRuleField] | None = None

    @property
    def table_id(self) -> int:
        return self.table

    @property
    def table_name(self) -> str:
        names = {v: k for k, v in _TABLE_NAMES.items()}
        return names.get(self.table, str(self.table))

    @property
    def flush_rules(self) -> tuple[FlushRule, ...] | None:
        """None: every protocol and port; empty: no flush."""
        return None if self.conntrack_flush is None else tuple(self.conntrack_flush)
