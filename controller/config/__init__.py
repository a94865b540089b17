"""Typed lifeline config: YAML in, frozen pydantic models out, every mistake named by path.

This module reads and checks the operator's YAML and nothing else: it opens no socket, reads
no clock and touches no route. It works in three passes. The YAML is composed with the line
of every key kept, then pydantic checks each field (types, ranges, unknown keys), then a
semantic pass checks what no single field can see (duplicate names, table clashes, address
families, references between sections). Every error of every pass is collected and raised
together as one ConfigError whose messages read ``links[1].gateway: not an IPv4/IPv6
address``, so an operator fixes a file in one round instead of one error per run. Defaults
(``defaults:`` and a link's table from its position) are filled in before pydantic sees the
data, so a loaded Config holds the effective values and consumers need no merging logic.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    PrivateAttr,
    Strict,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from controller.core.didplan import DidEntry
from controller.core.durations import format_duration, parse_duration
from controller.core.e164 import NumberRange, find_overlaps, parse_range
from controller.core.edgesignal import EdgeParams
from controller.core.health import HealthParams
from probes.sample import ProbeSpec

__all__ = [
    "Config",
    "ConfigError",
    "Defaults",
    "Destination",
    "DidRange",
    "FlushRule",
    "JournalLimits",
    "Link",
    "Probes",
    "Register",
    "RouteGroup",
    "SipTarget",
    "SipUri",
    "Target",
    "Thresholds",
    "Trunk",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_sip_uri",
    "summary",
]

_HP = HealthParams()

TABLE_MAIN = 254
TABLE_DEFAULT = 253
TABLE_LOCAL = 255
_TABLE_NAMES = {"main": TABLE_MAIN, "default": TABLE_DEFAULT}
_TABLE_MAX = 2**31
_RULE_PRIORITY_MAX = 32765  # 32766 is the kernel's rule for table main

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

DEFAULT_CONNTRACK_FLUSH = (
    "udp/5060",
    "tcp/5060-5061",
    "udp/5061",
    "tcp/5061",
    "udp/10000-20000",
)


class ConfigError(Exception):
    """Every problem found in one config, each as ``path: message``.

    ``errors`` is the plain list (stable, for tests and the API); ``str()`` adds the source
    file and, where known, the YAML line of each path, for the operator's terminal.
    """

    def __init__(
        self,
        errors: Sequence[str],
        source: str = "<string>",
        lines: Sequence[int | None] | None = None,
    ) -> None:
        self.errors: list[str] = list(errors)
        self.source = source
        self.lines: list[int | None] = list(lines) if lines is not None else [None] * len(errors)
        super().__init__(self._render())

    def _render(self) -> str:
        count = len(self.errors)
        head = f"{self.source}: {count} error{'s' if count != 1 else ''}"
        body = [
            f"  {self.source}:{line}: {err}" if line is not None else f"  {self.source}: {err}"
            for err, line in zip(self.errors, self.lines, strict=True)
        ]
        return "\n".join([head, *body])


# --------------------------------------------------------------------------- field types
# Each validator raises ValueError with the short sentence the operator will read; the
# pydantic-to-path translation below strips pydantic's "Value error, " prefix.

_NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")


def _name_checker(max_len: int) -> typing.Callable[[str], str]:
    def check(value: str) -> str:
        if len(value) > max_len:
            raise ValueError(f"longer than {max_len} characters")
        if not _NAME_RE.fullmatch(value):
            raise ValueError("must be lowercase letters, digits and '-' (not at the start or end)")
        return value

    return check


LinkName = Annotated[str, AfterValidator(_name_checker(32))]
GroupName = Annotated[str, AfterValidator(_name_checker(63))]
SiteName = Annotated[str, AfterValidator(_name_checker(63))]


def _check_ifname(value: str) -> str:
    # The kernel's dev_valid_name(): IFNAMSIZ is 16 with the NUL, and '/', ':' and
    # whitespace are refused because sysfs paths and alias syntax would break.
    if not value:
        raise ValueError("must not be empty")
    if len(value) > 15:
        raise ValueError("longer than 15 characters (the kernel's interface name limit)")
    if value in {".", ".."} or any(ch in value for ch in "/:") or any(ch.isspace() for ch in value):
        raise ValueError("not a valid interface name (no '/', ':' or whitespace)")
    return value


IfName = Annotated[str, AfterValidator(_check_ifname)]


def _ip(value: object) -> str:
    """Normalized text of an IP literal: the form the kernel prints back, so compares work."""
    if not isinstance(value, str):
        raise ValueError("not an IPv4/IPv6 address")
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError("not an IPv4/IPv6 address") from None
    if addr.is_unspecified or addr.is_multicast:
        raise ValueError(f"{addr} is not a usable host address")
    return str(addr)


IPAddr = Annotated[str, BeforeValidator(_ip)]


def _host_port(value: object) -> str:
    """``192.0.2.2:443`` or ``[2001:db8::1]:443``, normalized; IPv6 must be bracketed."""
    if not isinstance(value, str):
        raise ValueError("must be address:port, e.g. 192.0.2.2:443 or [2001:db8::1]:443")
    host, port = _split_host_port(value.strip())
    addr = _ip(host)
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _split_host_port(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError("must be [IPv6]:port, e.g. [2001:db8::1]:443")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError("missing port (address:port, e.g. 192.0.2.2:443 or [::1]:9730)")
        if ":" in host:
            raise ValueError("an IPv6 address with a port must be written [address]:port")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} is not a number in 1..65535")
    return host, int(port_text)


HostPort = Annotated[str, BeforeValidator(_host_port)]

_HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def _listen(value: object) -> str:
    """Like HostPort, but the host may be a name (``localhost``) or empty-free ``0.0.0.0``."""
    if not isinstance(value, str):
        raise ValueError("must be host:port, e.g. 127.0.0.1:9730 or [::1]:9730")
    host, port = _split_host_port(value.strip())
    try:
        addr = str(ipaddress.ip_address(host))
    except ValueError:
        if not _HOSTNAME_RE.fullmatch(host):
            raise ValueError(f"{host!r} is neither an IP address nor a host name") from None
        return f"{host}:{port}"
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


Listen = Annotated[str, BeforeValidator(_listen)]


def _duration(value: object) -> float:
    if not isinstance(value, str | int | float):
        raise ValueError("not a duration (expected e.g. 200ms, 5s, 1m)")
    return parse_duration(value)


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be longer than 0")
    return value


Duration = Annotated[float, BeforeValidator(_duration)]
PositiveDuration = Annotated[float, BeforeValidator(_duration), AfterValidator(_positive)]


def _ratio(value: object) -> object:
    """Accept ``0.02`` or ``"2%"``: operators think of loss in percent."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"not a percentage: {value!r}") from None
    return value


Ratio = Annotated[float, Strict(), BeforeValidator(_ratio), Field(ge=0.0, le=1.0)]
Count = Annotated[int, Strict(), Field(ge=1)]


def _abs_path(value: object) -> Path:
    if not isinstance(value, str | Path):
        raise ValueError("must be a path")
    path = Path(value)
    if not path.is_absolute():
        raise ValueError("must be an absolute path")
    return path


AbsPath = Annotated[Path, PlainValidator(_abs_path)]


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


@dataclass(frozen=True, slots=True)
class FlushRule:
    """Conntrack entries to drop on failover: one protocol and an inclusive port range."""

    proto: Literal["udp", "tcp"]
    lo: int
    hi: int

    def __str__(self) -> str:
        if self.lo == self.hi:
            return f"{self.proto}/{self.lo}"
        return f"{self.proto}/{self.lo}-{self.hi}"


_FLUSH_RE = re.compile(r"(udp|tcp)/(\d+)(?:-(\d+))?")


def _flush_rule(value: object) -> FlushRule:
    if isinstance(value, FlushRule):
        return value
    if not isinstance(value, str) or not (match := _FLUSH_RE.fullmatch(value.strip())):
        raise ValueError("must be proto/port or proto/lo-hi with proto udp or tcp, e.g. udp/5060")
    lo = int(match.group(2))
    hi = int(match.group(3)) if match.group(3) is not None else lo
    if not (1 <= lo <= 65535 and 1 <= hi <= 65535):
        raise ValueError("ports must be in 1..65535")
    if lo > hi:
        raise ValueError(f"port range {lo}-{hi} runs backwards")
    proto: Literal["udp", "tcp"] = "udp" if match.group(1) == "udp" else "tcp"
    return FlushRule(proto, lo, hi)


FlushRuleField = Annotated[FlushRule, PlainValidator(_flush_rule)]


# --------------------------------------------------------------------------- models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Thresholds(_Model):
    """Health thresholds; every field maps 1:1 onto HealthParams, which holds the defaults."""

    window: PositiveDuration = _HP.window
    down_after: Count = _HP.down_after
    down_loss: Annotated[Ratio, Field(gt=0.0)] = _HP.down_loss
    rise: Count = _HP.rise
    hold_down: Duration = _HP.hold_down
    degraded_loss: Ratio = _HP.degraded_loss
    degraded_latency: PositiveDuration = _HP.degraded_latency
    degraded_jitter: PositiveDuration = _HP.degraded_jitter
    degraded_mos: Annotated[float, Strict(), Field(ge=1.0, le=4.5)] = _HP.degraded_mos
    flap_half_life: PositiveDuration = _HP.flap_half_life
    flap_max_hold_down: Duration = _HP.flap_max_hold_down


def _health_params(interval: float, thresholds: Thresholds) -> HealthParams:
    # Only the knobs the config exposes are passed; HealthParams keeps its own defaults
    # for the rest, so health.py can grow a parameter without a config change.
    known = {f.name for f in fields(HealthParams)}
    overrides = {
        name: getattr(thresholds, name) for name in Thresholds.model_fields if name in known
    }
    return HealthParams(interval=interval, **overrides)


class Defaults(_Model):
    interval: PositiveDuration = _HP.interval
    timeout: PositiveDuration = _HP.interval
    thresholds: Thresholds = Thresholds()


class Target(_Model):
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
        host, _ = _split_host_port(self.tcp)
        return host

    @property
    def port(self) -> int | None:
        if self.tcp is None:
            return None
        return _split_host_port(self.tcp)[1]


class Probes(_Model):
    interval: PositiveDuration = _HP.interval
    timeout: PositiveDuration = _HP.interval
    reliability: Count = 1
    arp_gateway: Annotated[bool, Strict()] = False
    targets: Annotated[list[Target], Field(min_length=1)]


class Link(_Model):
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
        return _health_params(self.probes.interval, self.thresholds)

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


class RouteGroup(_Model):
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
    conntrack_flush: list[FlushRuleField] = Field(
        default_factory=lambda: [_flush_rule(r) for r in DEFAULT_CONNTRACK_FLUSH]
    )

    @property
    def table_id(self) -> int:
        return self.table

    @property
    def table_name(self) -> str:
        names = {v: k for k, v in _TABLE_NAMES.items()}
        return names.get(self.table, str(self.table))

    @property
    def flush_rules(self) -> list[FlushRule]:
        return list(self.conntrack_flush)


# --------------------------------------------------------------------------- telephony

_SIP_TRANSPORTS = ("udp", "tcp", "tls")
_LABEL_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True, slots=True)
class SipUri:
    """A carrier SBC or destination address: ``sip:host:port;transport=udp`` made explicit.

    ``transport`` is what goes on the wire: ``sips:`` always means TLS (RFC 3261 26.2.2),
    so a ``sips:`` URI written with ``transport=tcp`` probes over TLS.
    """

    scheme: Literal["sip", "sips"]
    host: str  # IP literal without brackets, or a lowercase host name
    port: int
    transport: Literal["udp", "tcp", "tls"]

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.scheme == "sips":
            return f"sips:{host}:{self.port}"
        return f"sip:{host}:{self.port};transport={self.transport}"


def _sip_host(text: str) -> str:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        return _ip(text)  # an address, but maybe not a usable one: _ip says why
    name = text.lower().rstrip(".")
    if len(name) > 253 or not all(_LABEL_RE.fullmatch(label) for label in name.split(".")):
        raise ValueError(f"{text!r} is neither an IP address nor a host name")
    if name.replace(".", "").isdigit():
        raise ValueError(f"{text!r} is not a valid IPv4 address")
    return name


def parse_sip_uri(value: object) -> SipUri:
    """``sip:`` or ``sips:`` URI of a host (no user part), with optional port and transport."""
    example = "e.g. sip:sbc1.carrier.example:5060;transport=udp"
    if not isinstance(value, str):
        raise ValueError(f"must be a SIP URI, {example}")
    text = value.strip()
    scheme_text, sep, rest = text.partition(":")
    scheme = scheme_text.lower()
    if not sep or scheme not in ("sip", "sips"):
        raise ValueError(f"must start with sip: or sips:, {example}")
    hostport, *params = rest.split(";")
    if "@" in hostport:
        raise ValueError(f"names a user; a trunk or destination URI names a host, {example}")
    if hostport.startswith("["):
        inner, closed, tail = hostport[1:].partition("]")
        if not closed or ":" not in inner:
            raise ValueError("a bracketed host must be an IPv6 address, e.g. sip:[2001:db8::1]")
        host_text, port_text = inner, tail.removeprefix(":") if tail else None
        if tail and not tail.startswith(":"):
            raise ValueError("text after ']' must be :port")
    elif hostport.count(":") > 1:
        raise ValueError("an IPv6 address must be bracketed, e.g. sip:[2001:db8::1]:5060")
    else:
        host_text, colon, port_part = hostport.partition(":")
        port_text = port_part if colon else None
    if not host_text:
        raise ValueError(f"has no host, {example}")
    host = _sip_host(host_text)
    transport: str | None = None
    for param in params:
        key, _, val = param.partition("=")
        if key.lower() != "transport":
            raise ValueError(f"unsupported URI parameter {key!r} (only transport=udp|tcp|tls)")
        if val.lower() not in _SIP_TRANSPORTS:
            raise ValueError(f"transport {val!r} must be udp, tcp or tls")
        transport = val.lower()
    if scheme == "sips":
        if transport == "udp":
            raise ValueError("sips: needs TLS, so transport=udp cannot carry it")
        transport = "tls"
    wire: Literal["udp", "tcp", "tls"] = (
        "tls" if transport == "tls" else "tcp" if transport == "tcp" else "udp"
    )
    if port_text is None:
        port = 5061 if wire == "tls" else 5060
    elif not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} is not a number in 1..65535")
    else:
        port = int(port_text)
    return SipUri("sips" if scheme == "sips" else "sip", host, port, wire)


def _sip_uri_text(value: object) -> str:
    return str(parse_sip_uri(value))


SipUriText = Annotated[str, BeforeValidator(_sip_uri_text)]


@dataclass(frozen=True, slots=True)
class SipTarget:
    """Where a trunk's OPTIONS probe goes: the SBC's host, port, transport and Request-URI."""

    host: str
    port: int
    transport: Literal["udp", "tcp", "tls"]
    uri: str


def _quoted_text(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str):
        hint = ""
        if isinstance(value, int):
            # YAML 1.1 reads 0212345600 as an octal number: the digits are already lost.
            hint = " (quote it: YAML reads unquoted digits as a number and drops leading zeros)"
        raise ValueError(f"must be a string{hint}")
    if not value.strip():
        raise ValueError("must not be empty")
    return value


QuotedText = Annotated[str, PlainValidator(_quoted_text)]


def _no_inline_password(value: object) -> None:
    raise ValueError(
        "inline passwords are not accepted: use password_file (a root-only file) or "
        "password_env, so the secret stays out of config files, backups and logs"
    )


_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_name(value: object) -> str:
    if not isinstance(value, str) or not _ENV_RE.fullmatch(value):
        raise ValueError("must be an environment variable name (letters, digits, '_')")
    return value


def _host_name(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a host name or IP address")
    return _sip_host(value.strip())


_EP = EdgeParams()


class EdgeSignal(_Model):
    """When the SIP edge's failed calls make an OPTIONS-healthy trunk count as degraded
    (controller.core.edgesignal): ``failures`` within ``window`` trip it for ``hold_down``,
    doubled on each new trip up to ``max_hold_down``."""

    failures: Count = _EP.failures
    window: PositiveDuration = _EP.window
    hold_down: PositiveDuration = _EP.hold_down
    max_hold_down: PositiveDuration = _EP.max_hold_down

    @model_validator(mode="after")
    def _ceiling(self) -> EdgeSignal:
        if self.max_hold_down < self.hold_down:
            raise ValueError(f"max_hold_down {format_duration(self.max_hold_down)} is below "
                             f"hold_down {format_duration(self.hold_down)}")
        return self

    def params(self) -> EdgeParams:
        return EdgeParams(failures=self.failures, window=self.window,
                          hold_down=self.hold_down, max_hold_down=self.max_hold_down)


class Register(_Model):
    """REGISTER of a registration-based trunk; the password comes from a file or the env."""

    user: QuotedText
    domain: Annotated[str, PlainValidator(_host_name)]
    password_file: AbsPath | None = None
    password_env: Annotated[str, PlainValidator(_env_name)] | None = None
    # Present only to refuse it with a useful message instead of "unknown field".
    password: Annotated[None, PlainValidator(_no_inline_password)] = Field(
        default=None, repr=False, exclude=True
    )
    expires: PositiveDuration = 600.0

    @model_validator(mode="after")
    def _one_secret(self) -> Register:
        if (self.password_file is None) == (self.password_env is None):
            raise ValueError("needs exactly one of password_file or password_env")
        return self


def _alive_code(value: int) -> int:
    if value == 408:
        raise ValueError(
            "408 is what a SIP stack makes up locally on a timeout (Kamailio's dispatcher "
            "does): counting it as alive would keep a dead trunk up"
        )
    return value


AliveCode = Annotated[int, Strict(), Field(ge=200, le=699), AfterValidator(_alive_code)]

# The default verdict on an OPTIONS answer: any final 2xx-4xx from the peer proves it is
# there (carriers answer 403/404/405 to OPTIONS), except 408, which is a local timeout.
DEFAULT_ALIVE_CODES = frozenset(range(200, 500)) - {408}


class Trunk(_Model):
    """A SIP trunk to a carrier's SBC, probed with OPTIONS over the links it may use."""

    name: LinkName
    carrier: GroupName
    uri: SipUriText
    links: list[str] = Field(default_factory=list)  # empty: follows the active route
    pinned: Annotated[bool, Strict()] = False  # only links[0] carries it
    interval: PositiveDuration = 1.0
    timeout: PositiveDuration = 0.5
    # After a lost OPTIONS, or one unanswered this long, while the trunk is not down yet,
    # the next goes this soon (mwan3's failure_interval), overlapping it: confirming a
    # failure must not take down_after intervals.
    recheck_interval: PositiveDuration = 0.2
    alive_codes: Annotated[list[AliveCode], Field(min_length=1)] | None = None
    thresholds: Thresholds = Thresholds()
    edge_signal: EdgeSignal = EdgeSignal()
    # "register" is ABCMeta's method on every model class, so the field is named apart.
    registration: Register | None = Field(default=None, alias="register")

    @property
    def sip_uri(self) -> SipUri:
        return parse_sip_uri(self.uri)

    @property
    def alive(self) -> frozenset[int]:
        """Response codes that count as alive."""
        if self.alive_codes is None:
            return DEFAULT_ALIVE_CODES
        return frozenset(self.alive_codes)

    def health_params(self) -> HealthParams:
        """Effective thresholds of this trunk, in the form controller.core.health consumes."""
        return _health_params(self.interval, self.thresholds)

    def probe_target(self) -> SipTarget:
        uri = self.sip_uri
        return SipTarget(uri.host, uri.port, uri.transport, str(uri))

    @property
    def allowed_links(self) -> tuple[str, ...]:
        """Links this trunk may use; empty means whichever carries the active route."""
        return tuple(self.links[:1]) if self.pinned else tuple(self.links)


class KamailioEdge(_Model):
    """Kamailio's JSON-RPC (jsonrpcs over xhttp), restricted to localhost in its config."""

    rpc_url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")] = "http://127.0.0.1:5071/RPC"
    timeout: PositiveDuration = 2.0


class WebhookEdge(_Model):
    """POST the changed part of the plan as JSON, signed with an HMAC (docs/edge-actuators.md)."""

    url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")]
    secret_file: AbsPath | None = None
    secret_env: Annotated[str, PlainValidator(_env_name)] | None = None
    timeout: PositiveDuration = 5.0
    retries: Annotated[int, Strict(), Field(ge=0, le=10)] = 3

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookEdge:
        if (self.secret_file is None) == (self.secret_env is None):
            raise ValueError("needs exactly one of secret_file or secret_env")
        return self


class CommandEdge(_Model):
    """Run a program (argv, never a shell) with the plan as JSON on stdin."""

    argv: Annotated[list[str], Field(min_length=1)]
    timeout: PositiveDuration = 10.0


class SipEdge(_Model):
    """Where the DID plan is pushed; any combination, none = plan computed and exported only."""

    kamailio: KamailioEdge | None = None
    webhook: WebhookEdge | None = None
    command: CommandEdge | None = None


class Destination(_Model):
    """Where inbound calls are delivered: the site's PBX or a disaster-recovery platform."""

    name: LinkName
    uri: SipUriText

    @property
    def sip_uri(self) -> SipUri:
        return parse_sip_uri(self.uri)


def _numbers(value: object) -> NumberRange:
    if isinstance(value, NumberRange):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            f"quote the number, e.g. '+{value}': YAML reads an unquoted +number as an "
            "integer and drops the +"
        )
    return parse_range(value)  # type: ignore[arg-type]  # parse_range refuses non-strings


class DidRange(_Model):
    """One DID range of the plan: its numbers, capable trunks in order, destinations."""

    numbers: Annotated[NumberRange, PlainValidator(_numbers)]
    trunks: Annotated[list[str], Field(min_length=1)]
    destination: str
    dr_destination: str | None = None
    # The backup carriers of this range may present it as caller ID (a verified-CLI
    # agreement); without it, trunks of several carriers earn a warning.
    verified_cli: Annotated[bool, Strict()] = False

    def entry(self) -> DidEntry:
        """The range in the form controller.core.didplan consumes."""
        return DidEntry(self.numbers, tuple(self.trunks), self.destination, self.dr_destination)


class JournalLimits(_Model):
    """How much history the journal keeps: events older than ``keep_days`` and all but the
    newest ``keep_events`` are pruned (at start, then every so often), so it cannot fill
    the state dir."""

    keep_days: Count = 90
    keep_events: Annotated[int, Strict(), Field(ge=1000)] = 200_000


class Config(_Model):
    site: SiteName
    state_dir: AbsPath = Path("/var/lib/lifeline")
    journal: JournalLimits = JournalLimits()
    listen: Listen = "127.0.0.1:9730"
    api_socket: AbsPath | None = None
    log_format: Literal["text", "json"] = "text"
    reconcile_interval: PositiveDuration = 1.0
    route_protocol: Annotated[
        int, Strict(), Field(ge=1, le=255), AfterValidator(_route_protocol)
    ] = 201
    rule_priority: Annotated[int, Strict(), Field(ge=1, le=_RULE_PRIORITY_MAX)] = 1000
    defaults: Defaults = Defaults()
    links: Annotated[list[Link], Field(min_length=1)]
    route_groups: list[RouteGroup] = Field(default_factory=list)
    trunks: list[Trunk] = Field(default_factory=list)
    destinations: list[Destination] = Field(default_factory=list)
    dids: list[DidRange] = Field(default_factory=list)
    sip_edge: SipEdge = SipEdge()

    # Warnings are found by the semantic pass, not read from YAML, so not a field.
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        return list(self._warnings)

    @property
    def api_socket_path(self) -> Path:
        """The CLI socket: ``api_socket`` or, when unset, ``<state_dir>/lifeline.sock``."""
        return self.api_socket if self.api_socket is not None else self.state_dir / "lifeline.sock"

    @property
    def listen_host(self) -> str:
        return _split_host_port(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return _split_host_port(self.listen)[1]

    def link(self, name: str) -> Link:
        for link in self.links:
            if link.name == name:
                return link
        raise KeyError(name)

    def trunk(self, name: str) -> Trunk:
        for trunk in self.trunks:
            if trunk.name == name:
                return trunk
        raise KeyError(name)

    def destination(self, name: str) -> Destination:
        for dest in self.destinations:
            if dest.name == name:
                return dest
        raise KeyError(name)

    def did_entries(self) -> tuple[DidEntry, ...]:
        """The DID plan's entries in the operator's order, for controller.core.didplan."""
        return tuple(d.entry() for d in self.dids)


# --------------------------------------------------------------------------- YAML with lines


class _Loader(yaml.SafeLoader):
    """SafeLoader; kept as a subclass so nothing we do leaks into yaml's global loader."""


def _compose(text: str, source: str) -> tuple[Any, dict[str, int]]:
    """Parse YAML, returning the data and the 1-based line of every path in it.

    Duplicate keys are an error here: PyYAML would silently keep the last one, and a second
    ``links:`` block replacing the first is exactly the mistake an operator cannot see.
    """
    try:
        loader = _Loader(text)
    except yaml.YAMLError as exc:  # the reader refuses control characters up front
        raise ConfigError([f"bad YAML: {_one_line(exc)}"], source) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        lines: dict[str, int] = {}
        dup_errors: list[tuple[str, int]] = []
        _walk(node, "", lines, dup_errors, set())
        if dup_errors:
            raise ConfigError(
                [err for err, _ in dup_errors],
                source,
                [line for _, line in dup_errors],
            )
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        # The line and column go in the message itself: no path exists to hang them on.
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise ConfigError([f"{where}bad YAML: {problem}"], source) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"bad YAML: {_one_line(exc)}"], source) from None
    except RecursionError:
        raise ConfigError(["bad YAML: nested too deeply"], source) from None
    finally:
        loader.dispose()
    return data, lines


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def _walk(
    node: yaml.Node,
    path: str,
    lines: dict[str, int],
    dups: list[tuple[str, int]],
    seen: set[int],
) -> None:
    if id(node) in seen:  # aliases may point back up the tree
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            if key == "<<":  # merge key: its content lands in this mapping
                _walk(value_node, path, lines, dups, seen)
                continue
            line = key_node.start_mark.line + 1
            if key in keys:
                dups.append((f"{child}: duplicate key (first at line {keys[key]})", line))
            keys.setdefault(key, line)
            lines.setdefault(child, key_node.start_mark.line + 1)
            _walk(value_node, child, lines, dups, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = f"{path}[{i}]"
            lines.setdefault(child, item.start_mark.line + 1)
            _walk(item, child, lines, dups, seen)


def _line_of(path: str, lines: Mapping[str, int]) -> int | None:
    """Line of ``path`` or of its nearest ancestor that exists in the file."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        if cut <= 0:
            return None
        path = path[:cut]
    return None


# --------------------------------------------------------------------------- pydantic errors


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _model_at(loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model class that holds the last element of ``loc``, to suggest field names."""
    model: type[BaseModel] | None = Config
    for part in loc[:-1]:
        if model is None:
            return None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) or next(
            (f for f in model.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return None
        model = _find_model(field.annotation)
    return model


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is Annotated or origin is list or origin is typing.Union or origin is types.UnionType:
        for arg in typing.get_args(annotation):
            found = _find_model(arg)
            if found is not None:
                return found
    return None


_BOUND_KINDS = {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}


def _num(value: object) -> str:
    """``1.0`` as ``1``: bounds read as the operator wrote them."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _message(err: ErrorDetails) -> str:
    kind = err["type"]
    ctx: Mapping[str, Any] = err.get("ctx") or {}
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        model = _model_at(err["loc"])
        name = str(err["loc"][-1])
        if model is not None:
            keys = [f.alias or key for key, f in model.model_fields.items()]
            close = difflib.get_close_matches(name, keys, n=1)
            if close:
                return f"unknown field (did you mean {close[0]}?)"
        return "unknown field"
    if kind in {"value_error", "assertion_error"}:
        msg = str(err["msg"])
        for prefix in ("Value error, ", "Assertion failed, "):
            msg = msg.removeprefix(prefix)
        return msg
    for key, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
        if kind in _BOUND_KINDS and key in ctx:
            return f"must be {op} {_num(ctx[key])}"
    if kind == "too_short":
        return "must not be empty" if ctx.get("min_length") == 1 else str(err["msg"])
    if kind in {"int_type", "int_parsing", "int_from_float"}:
        return "must be a whole number"
    if kind in {"float_type", "float_parsing"}:
        return "must be a number"
    if kind in {"string_type"}:
        return "must be a string"
    if kind in {"bool_type", "bool_parsing"}:
        return "must be true or false"
    if kind in {"list_type"}:
        return "must be a list"
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        return "must be a mapping of keys to values"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}"
    return str(err["msg"])


def _pydantic_errors(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        path = _path(err["loc"])
        msg = _message(err)
        out.append(f"{path}: {msg}" if path else msg)
    return out


# --------------------------------------------------------------------------- defaults filling


def _prefill(data: dict[str, Any]) -> dict[str, Any]:
    """Copy of the raw data with defaults and positional tables filled into each link.

    Done on raw data (not on models) so a bad value inherited from ``defaults:`` is
    reported once, under ``defaults``, and links fall back to the built-in defaults.
    """
    out = dict(data)
    raw_defaults = data.get("defaults", {})
    try:
        Defaults.model_validate(raw_defaults if raw_defaults is not None else {})
        defaults_ok = isinstance(raw_defaults, dict)
    except ValidationError:
        defaults_ok = False
    raw_trunks = data.get("trunks")
    if defaults_ok and isinstance(raw_trunks, list):
        assert isinstance(raw_defaults, dict)
        base_th = raw_defaults.get("thresholds") or {}
        trunks: list[Any] = []
        for raw in raw_trunks:
            if isinstance(raw, dict) and isinstance(raw.get("thresholds", {}), dict):
                trunk = dict(raw)
                trunk["thresholds"] = {**base_th, **(raw.get("thresholds") or {})}
                trunks.append(trunk)
            else:
                trunks.append(raw)
        out["trunks"] = trunks
    raw_links = data.get("links")
    if not isinstance(raw_links, list):
        return out
    links = []
    for position, raw in enumerate(raw_links, start=1):
        if not isinstance(raw, dict):
            links.append(raw)
            continue
        link = dict(raw)
        link.setdefault("table", 100 + position)
        if defaults_ok:
            assert isinstance(raw_defaults, dict)
            probes = link.get("probes")
            if isinstance(probes, dict):
                probes = dict(probes)
                for key in ("interval", "timeout"):
                    if key in raw_defaults:
                        probes.setdefault(key, raw_defaults[key])
                link["probes"] = probes
            base = raw_defaults.get("thresholds") or {}
            own = link.get("thresholds")
            if own is None:
                link["thresholds"] = dict(base)
            elif isinstance(own, dict):
                link["thresholds"] = {**base, **own}
        links.append(link)
    out["links"] = links
    return out


# --------------------------------------------------------------------------- semantic checks


_DEFAULT_DSTS = ("default", "0.0.0.0/0", "::/0")


def _fam(addr: str) -> int:
    return ipaddress.ip_address(addr).version


def _check_timing(
    path: str, interval: float, timeout: float | None, th: Thresholds | None
) -> Iterator[str]:
    """Checks on one interval/timeout/thresholds set; ``path`` is where they live."""
    fmt = format_duration
    if timeout is not None and timeout > interval:
        tpath = f"{path}.timeout"
        yield (
            f"{tpath}: {fmt(timeout)} is longer than the interval {fmt(interval)} "
            "(a round must end before the next one starts)"
        )
    if th is None:
        return
    tp = f"{path.removesuffix('.probes')}.thresholds"
    if th.window < interval:
        yield f"{tp}.window: {fmt(th.window)} is shorter than the probe interval {fmt(interval)}"
    if th.flap_max_hold_down < th.hold_down:
        yield (
            f"{tp}.flap_max_hold_down: {fmt(th.flap_max_hold_down)} is below "
            f"hold_down {fmt(th.hold_down)}"
        )
    if th.degraded_loss >= th.down_loss:
        yield (f"{tp}.degraded_loss: {th.degraded_loss:g} must be below down_loss {th.down_loss:g}")


def _semantic_checks(
    rule_priority: int | None,
    defaults: Defaults | None,
    links: Sequence[tuple[int, Link]],
    link_count: int,
    raw_link_names: Sequence[tuple[int, str]],
    groups: Sequence[tuple[int, RouteGroup]],
) -> tuple[list[str], list[str]]:
    """Errors and warnings no single field can see. Works on whichever parts are valid."""
    errors: list[str] = []
    warnings: list[str] = []

    if defaults is not None:
        errors += _check_timing("defaults", defaults.interval, defaults.timeout, None)

    if rule_priority is not None and rule_priority + link_count - 1 > _RULE_PRIORITY_MAX:
        errors.append(
            f"rule_priority: {rule_priority} leaves no room for {link_count} link rules "
            f"below the main table's rule at 32766"
        )

    by_name: dict[str, int] = {}
    for i, name in raw_link_names:
        if name in by_name:
            errors.append(
                f"links[{i}].name: duplicate link name {name} (also links[{by_name[name]}])"
            )
        else:
            by_name[name] = i
    known_names = set(by_name)
    by_table: dict[int, tuple[int, Link]] = {}
    by_source: dict[str, int] = {}
    for i, link in links:
        p = f"links[{i}]"
        fam = link.family
        if link.source is not None:
            if _fam(link.source) != fam:
                errors.append(
                    f"{p}.source: {link.source} is IPv{_fam(link.source)} but the gateway "
                    f"{link.gateway} is IPv{fam}"
                )
            if link.source in by_source:
                errors.append(
                    f"{p}.source: {link.source} is also the source of "
                    f"links[{by_source[link.source]}] (each link needs its own source rule)"
                )
            else:
                by_source[link.source] = i
        for j, target in enumerate(link.probes.targets):
            if _fam(target.host) != fam:
                errors.append(
                    f"{p}.probes.targets[{j}].{target.kind}: {target.host} is "
                    f"IPv{_fam(target.host)} but the link's gateway {link.gateway} is IPv{fam}"
                )
        if link.probes.arp_gateway and fam != 4:
            errors.append(
                f"{p}.probes.arp_gateway: ARP is IPv4 only and the gateway {link.gateway} is IPv6"
            )
        if link.probes.reliability > len(link.probes.targets):
            n = len(link.probes.targets)
            errors.append(
                f"{p}.probes.reliability: {link.probes.reliability} but the link has only "
                f"{n} target{'s' if n != 1 else ''}"
            )
        inherited = defaults is not None and (link.probes.interval, link.probes.timeout) == (
            defaults.interval,
            defaults.timeout,
        )
        # A timeout inherited from a bad `defaults:` is reported there once, not per link.
        timeout = None if inherited else link.probes.timeout
        errors += _check_timing(f"{p}.probes", link.probes.interval, timeout, link.thresholds)
        if link.table in by_table:
            other_i, other = by_table[link.table]
            same_if = " on the same interface" if other.interface == link.interface else ""
            # A clash with a positional default is puzzling unless the message says so.
            why = " (100 + its position, the default)" if link.table == 101 + i else ""
            errors.append(
                f"{p}.table: table {link.table}{why} is also used by {other.name} "
                f"(links[{other_i}]){same_if}; each link needs its own table"
            )
        else:
            by_table[link.table] = (i, link)

    links_by_name = {link.name: link for _, link in links}
    group_names: dict[str, int] = {}
    routes: dict[tuple[int | None, int, str, int], tuple[int, str]] = {}
    used: set[str] = set()
    for g, group in groups:
        p = f"route_groups[{g}]"
        if group.name in group_names:
            errors.append(
                f"{p}.name: duplicate route group name {group.name} "
                f"(also route_groups[{group_names[group.name]}])"
            )
        else:
            group_names[group.name] = g
        if group.table in by_table:
            _, owner = by_table[group.table]
            errors.append(f"{p}.table: table {group.table} is link {owner.name}'s own table")
        seen: set[str] = set()
        wrong_family: list[Link] = []
        first_family: tuple[str, int] | None = None
        for k, name in enumerate(group.links):
            lp = f"{p}.links[{k}]"
            if name in seen:
                errors.append(f"{lp}: {name} is listed twice")
                continue
            seen.add(name)
            used.add(name)
            if name not in known_names and known_names:
                close = difflib.get_close_matches(name, sorted(known_names), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                errors.append(f"{lp}: unknown link {name!r}{hint}")
                continue
            member = links_by_name.get(name)
            if member is None:  # the link itself is invalid; its own errors say why
                continue
            if group.destination != "default":
                if ipaddress.ip_network(group.destination).version != member.family:
                    wrong_family.append(member)
            elif first_family is None:
                first_family = (name, member.family)
            elif first_family[1] != member.family:
                errors.append(
                    f"{lp}: {name}'s gateway is IPv{member.family} but {first_family[0]}'s is "
                    f"IPv{first_family[1]}; one route group holds one address family"
                )

        # The kernel keys a route by family too: an IPv4 and an IPv6 "default" in one table
        # are two routes (dual stack), and an IPv6 metric 0 is stored as 1024.
        if group.destination != "default":
            gfam: int | None = ipaddress.ip_network(group.destination).version
        else:
            gfam = first_family[1] if first_family is not None else None
        key = (
            gfam,
            group.table,
            "default" if group.destination in _DEFAULT_DSTS else group.destination,
            1024 if gfam == 6 and group.metric == 0 else group.metric,
        )
        if key in routes:
            other_g, other_dst = routes[key]
            same = group.destination
            if other_dst != group.destination:
                same = f"{group.destination} (as {other_dst})"
            # as in ip(8), a bare "default" reads IPv4; IPv6 is said
            family = "IPv6 " if gfam == 6 else ""
            errors.append(
                f"{p}.destination: route_groups[{other_g}] already owns {family}{same} "
                f"with metric {group.metric} in table {group.table_name}"
            )
        else:
            routes[key] = (g, group.destination)

        if wrong_family:
            dfam = ipaddress.ip_network(group.destination).version
            which = ", ".join(f"{m.name} ({m.gateway})" for m in wrong_family)
            errors.append(
                f"{p}.destination: {group.destination} is IPv{dfam} but "
                f"{'these links have' if len(wrong_family) > 1 else 'this link has'} "
                f"an IPv{wrong_family[0].family} gateway: {which}"
            )

    for i, link in links:
        if link.name not in used:
            warnings.append(
                f"links[{i}]: {link.name} is in no route group (probed and reported, "
                "never routed over)"
            )
    if not groups and links:
        warnings.append(
            "route_groups: none configured; lifeline will watch links but move no route"
        )
    return errors, warnings


def _unknown(kind: str, name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown {kind} {name!r}{hint}"


def _duplicates(section: str, kind: str, names: Sequence[tuple[int, str]]) -> Iterator[str]:
    first: dict[str, int] = {}
    for i, name in names:
        if name in first:
            also = f"{section}[{first[name]}]"
            yield f"{section}[{i}].name: duplicate {kind} name {name} (also {also})"
        else:
            first[name] = i


def _raw_names(raw: object) -> list[tuple[int, str]]:
    if not isinstance(raw, list):
        return []
    return [
        (i, item["name"])
        for i, item in enumerate(raw)
        if isinstance(item, dict) and isinstance(item.get("name"), str)
    ]


def _telephony_checks(
    link_names: set[str],
    trunks: Sequence[tuple[int, Trunk]],
    raw_trunk_names: Sequence[tuple[int, str]],
    destinations: Sequence[tuple[int, Destination]],
    raw_destination_names: Sequence[tuple[int, str]],
    dids: Sequence[tuple[int, DidRange]],
) -> tuple[list[str], list[str]]:
    """Errors and warnings across trunks, destinations and the DID plan."""
    errors: list[str] = []
    warnings: list[str] = []
    errors += _duplicates("trunks", "trunk", raw_trunk_names)
    errors += _duplicates("destinations", "destination", raw_destination_names)
    trunk_names = {name for _, name in raw_trunk_names}
    dest_names = {name for _, name in raw_destination_names}

    for i, trunk in trunks:
        p = f"trunks[{i}]"
        seen: set[str] = set()
        for k, name in enumerate(trunk.links):
            if name in seen:
                errors.append(f"{p}.links[{k}]: {name} is listed twice")
            elif name not in link_names and link_names:
                errors.append(f"{p}.links[{k}]: " + _unknown("link", name, link_names))
            seen.add(name)
        if trunk.pinned and not trunk.links:
            errors.append(f"{p}.pinned: a pinned trunk needs links (it uses the first one)")
        errors += _check_timing(p, trunk.interval, trunk.timeout, trunk.thresholds)
        if trunk.recheck_interval > trunk.interval:
            errors.append(
                f"{p}.recheck_interval: {format_duration(trunk.recheck_interval)} is longer "
                f"than the interval {format_duration(trunk.interval)} (it is the faster pace "
                "that confirms a lost OPTIONS)")

    carrier_of = {trunk.name: trunk.carrier for _, trunk in trunks}
    used: set[str] = set()
    for i, did in dids:
        p = f"dids[{i}]"
        seen = set()
        for k, name in enumerate(did.trunks):
            used.add(name)
            if name in seen:
                errors.append(f"{p}.trunks[{k}]: {name} is listed twice")
            elif name not in trunk_names:
                errors.append(f"{p}.trunks[{k}]: " + _unknown("trunk", name, trunk_names))
            seen.add(name)
        if did.destination not in dest_names:
            errors.append(
                f"{p}.destination: " + _unknown("destination", did.destination, dest_names)
            )
        if did.dr_destination is not None:
            if did.dr_destination not in dest_names:
                errors.append(
                    f"{p}.dr_destination: "
                    + _unknown("destination", did.dr_destination, dest_names)
                )
            elif did.dr_destination == did.destination:
                warnings.append(
                    f"{p}.dr_destination: same as destination {did.destination}; "
                    "this range has no disaster-recovery fallback"
                )
        carriers = list(dict.fromkeys(carrier_of[t] for t in did.trunks if t in carrier_of))
        if len(carriers) > 1 and not did.verified_cli:
            warnings.append(
                f"{p}.trunks: trunks of carriers {', '.join(carriers)} without "
                "verified_cli: true; a carrier that does not hold these numbers rejects "
                "them as caller ID (or attests them low) unless it has verified them"
            )

    ranges = [did.numbers for _, did in dids]
    for later, earlier in sorted(find_overlaps(ranges)):
        li, ei = dids[later][0], dids[earlier][0]
        errors.append(
            f"dids[{li}].numbers: {ranges[later]} overlaps dids[{ei}] ({ranges[earlier]})"
        )

    for i, trunk in trunks:
        if dids and trunk.name not in used:
            warnings.append(
                f"trunks[{i}]: {trunk.name} is in no DID entry (probed and reported, "
                "carries no number)"
            )
    return errors, warnings


# --------------------------------------------------------------------------- entry points


def parse_config(text: str, source: str = "<string>") -> Config:
    """Config from YAML text; raises ConfigError listing every problem found."""
    data, lines = _compose(text, source)
    if data is None:
        raise ConfigError(["empty config: at least site and links are required"], source)
    if not isinstance(data, dict):
        raise ConfigError(["the config must be a mapping of keys to values"], source, [1])
    data = _prefill(data)

    errors: list[str] = []
    try:
        cfg: Config | None = Config.model_validate(data)
    except ValidationError as exc:
        cfg = None
        errors += _pydantic_errors(exc)

    if cfg is not None:
        sem_errors, warnings = _semantic_checks(
            cfg.rule_priority,
            cfg.defaults,
            list(enumerate(cfg.links)),
            len(cfg.links),
            [(i, link.name) for i, link in enumerate(cfg.links)],
            list(enumerate(cfg.route_groups)),
        )
        tel_errors, tel_warnings = _telephony_checks(
            {link.name for link in cfg.links},
            list(enumerate(cfg.trunks)),
            [(i, t.name) for i, t in enumerate(cfg.trunks)],
            list(enumerate(cfg.destinations)),
            [(i, d.name) for i, d in enumerate(cfg.destinations)],
            list(enumerate(cfg.dids)),
        )
        sem_errors += tel_errors
        warnings += tel_warnings
    else:
        sem_errors, warnings = _partial_semantic_checks(data)
    errors += sem_errors

    if errors:
        unique = list(dict.fromkeys(errors))
        located = [(_line_of(e.split(": ", 1)[0], lines), e) for e in unique]
        # File order reads best; the sort is stable, so errors of one line keep their order.
        located.sort(key=lambda le: le[0] if le[0] is not None else 0)
        raise ConfigError([e for _, e in located], source, [line for line, _ in located])
    assert cfg is not None
    cfg._warnings = warnings
    return cfg


def _partial_semantic_checks(data: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Semantic checks over the parts of a config that validate on their own.

    Without this, fixing one typo could reveal a duplicate name that was there all along;
    the operator gets both in the first run instead.
    """

    def valid(model: type[_Model], raw: object) -> Any:
        try:
            return model.model_validate(raw)
        except ValidationError:
            return None

    raw_links = data.get("links") if isinstance(data.get("links"), list) else []
    raw_groups = data.get("route_groups") if isinstance(data.get("route_groups"), list) else []
    assert isinstance(raw_links, list) and isinstance(raw_groups, list)
    links = [(i, m) for i, raw in enumerate(raw_links) if (m := valid(Link, raw)) is not None]
    groups = [
        (g, m) for g, raw in enumerate(raw_groups) if (m := valid(RouteGroup, raw)) is not None
    ]
    names = [
        (i, raw["name"])
        for i, raw in enumerate(raw_links)
        if isinstance(raw, dict) and isinstance(raw.get("name"), str)
    ]
    raw_defaults = data.get("defaults", {})
    defaults = valid(Defaults, raw_defaults if raw_defaults is not None else {})
    priority = data.get("rule_priority", 1000)
    in_range = isinstance(priority, int) and 1 <= priority <= _RULE_PRIORITY_MAX
    rule_priority = priority if in_range and not isinstance(priority, bool) else None
    errors, warnings = _semantic_checks(
        rule_priority, defaults, links, len(raw_links), names, groups
    )

    def valid_items(key: str, model: type[_Model]) -> list[tuple[int, Any]]:
        raw = data.get(key)
        if not isinstance(raw, list):
            return []
        return [(i, m) for i, item in enumerate(raw) if (m := valid(model, item)) is not None]

    tel_errors, tel_warnings = _telephony_checks(
        {name for _, name in names},
        valid_items("trunks", Trunk),
        _raw_names(data.get("trunks")),
        valid_items("destinations", Destination),
        _raw_names(data.get("destinations")),
        valid_items("dids", DidRange),
    )
    return errors + tel_errors, warnings + tel_warnings


def load_config(path: str | Path) -> Config:
    """Config from a YAML file; unreadable files raise ConfigError like bad content does."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"cannot read: {exc.strerror or exc}"], source) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"not UTF-8 text (byte {exc.start})"], source) from None
    return parse_config(text, source)


# --------------------------------------------------------------------------- summary


def summary(cfg: Config) -> str:
    """Multi-line human summary of the effective config, for ``lifeline check-config``."""
    fmt = format_duration
    out = [
        f"site {cfg.site}: {len(cfg.links)} link{'s' if len(cfg.links) != 1 else ''}, "
        f"{len(cfg.route_groups)} route group{'s' if len(cfg.route_groups) != 1 else ''}",
        f"  state in {cfg.state_dir}, CLI socket {cfg.api_socket_path}, "
        f"metrics/API on {cfg.listen}",
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
        flush = ", ".join(str(r) for r in group.flush_rules) or "nothing"
        out += [
            f"  {group.name}: {group.destination} in table {group.table_name} metric "
            f"{group.metric}{', multipath' if group.multipath else ''}",
            f"    prefers {order}",
            f"    on failover flushes conntrack for {flush}",
        ]
    out += _telephony_summary(cfg)
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
    return out
