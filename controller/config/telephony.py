"""Trunks, destinations, the DID plan and the SIP edge: the telephony sections of the config.

A trunk is probed with OPTIONS like a link is with pings (same Thresholds), may REGISTER
(its password only from a file or the environment, never inline), and carries the DID
ranges that name it. ``sip_edge:`` says where the computed plan is pushed. References
between these sections (a DID naming an unknown trunk, overlapping ranges) are checked in
checks.py; URIs are parsed by sipuri.py.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, PlainValidator, Strict, model_validator

from controller.config.fields import (
    AbsPath,
    ConfigModel,
    Count,
    GroupName,
    LinkName,
    PositiveDuration,
    usable_ip,
)
from controller.config.sipuri import HostName, SipUri, SipUriText, parse_sip_uri
from controller.config.thresholds import Thresholds, health_params
from controller.core.didplan import DidEntry
from controller.core.durations import format_duration
from controller.core.e164 import NumberRange, parse_range
from controller.core.edgesignal import EdgeSignalParams
from controller.core.health import HealthParams
from probes.sample import ProbeSpec


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


def _maintenance(value: object) -> str | None:
    """`maintenance: true`, or the reason as text: None (in service) or the reason ("")."""
    if value is None or value is False:
        return None
    if value is True:
        return ""
    if not isinstance(value, str) or "\n" in value.strip() or len(value) > 200:
        raise ValueError("must be true, false or a one-line reason (at most 200 characters)")
    return value.strip()


MaintenanceReason = Annotated[str | None, PlainValidator(_maintenance)]


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


EnvName = Annotated[str, PlainValidator(_env_name)]


_EP = EdgeSignalParams()


class EdgeSignalSettings(ConfigModel):
    """When the SIP edge's failed calls make an OPTIONS-healthy trunk count as degraded
    (controller.core.edgesignal): ``failures`` within ``window`` trip it for ``hold_down``,
    doubled on each new trip up to ``max_hold_down``."""

    failures: Count = _EP.failures
    window: PositiveDuration = _EP.window
    hold_down: PositiveDuration = _EP.hold_down
    max_hold_down: PositiveDuration = _EP.max_hold_down

    @model_validator(mode="after")
    def _ceiling(self) -> EdgeSignalSettings:
        if self.max_hold_down < self.hold_down:
            raise ValueError(f"max_hold_down {format_duration(self.max_hold_down)} is below "
                             f"hold_down {format_duration(self.hold_down)}")
        return self

    def params(self) -> EdgeSignalParams:
        return EdgeSignalParams(failures=self.failures, window=self.window,
                          hold_down=self.hold_down, max_hold_down=self.max_hold_down)


class Register(ConfigModel):
    """REGISTER of a registration-based trunk; the password comes from a file or the env."""

    user: QuotedText
    domain: HostName
    password_file: AbsPath | None = None
    password_env: EnvName | None = None
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


class Trunk(ConfigModel):
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
    edge_signal: EdgeSignalSettings = EdgeSignalSettings()
    # "register" is ABCMeta's method on every model class, so the field is named apart.
    registration: Register | None = Field(default=None, alias="register")
    # Out of service: no call goes to it, whatever its health (it is still probed).
    maintenance: MaintenanceReason = None

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
        return health_params(self.interval, self.thresholds)

    def probe_spec(self, device: str | None = None, source: str | None = None) -> ProbeSpec:
        """The trunk's OPTIONS probe, with its alive codes; through one link when given."""
        return self.sip_uri.probe_spec(alive_codes=self.alive, device=device, source=source)

    @property
    def allowed_links(self) -> tuple[str, ...]:
        """Links this trunk may use; empty means whichever carries the active route."""
        return tuple(self.links[:1]) if self.pinned else tuple(self.links)


Port = Annotated[int, Strict(), Field(ge=1, le=65535)]


def _pbx_address(value: object) -> str:
    addr = usable_ip(value)
    if ":" in addr:
        raise ValueError(
            "must be an IPv4 address: the reference kamailio.cfg compares it with the address "
            "a request came in on, which Kamailio writes without the brackets an IPv6 socket "
            "needs"
        )
    return addr


def url_port(url: str) -> int | None:
    """The port of an http(s) URL (80/443 when it names none); None if it is not a port."""
    try:
        port = urlsplit(url).port
    except ValueError:
        return None
    if port is None:
        return 443 if url.lower().startswith("https:") else 80
    return port if port > 0 else None


def _rpc_url(value: str) -> str:
    if url_port(value) is None:
        raise ValueError(f"{value!r} has no usable port (1..65535)")
    return value


# The port the reference edge serves JSON-RPC on when the site sets nothing: the defaults
# of lifeline and of the site file `lifeline edge-config` writes agree by being this one.
DEFAULT_RPC_URL = "http://127.0.0.1:5071/RPC"


class KamailioEdge(ConfigModel):
    """Kamailio's JSON-RPC (jsonrpcs over xhttp), restricted to localhost in its config, and
    the sockets of the reference edge (examples/kamailio/kamailio.cfg) that ``lifeline
    edge-config`` writes into its site file; the daemon itself reads only ``rpc_url`` and
    ``timeout``. The defaults make a working edge on a site that sets none of them."""

    rpc_url: Annotated[
        str, Field(pattern=r"^https?://[^\s]+$"), AfterValidator(_rpc_url)
    ] = DEFAULT_RPC_URL
    timeout: PositiveDuration = 2.0
    # Where the carriers' SBCs send calls (UDP and TCP), on every link's source address.
    carrier_port: Port = 5060
    # The same for TLS; used only when a trunk is reached over TLS.
    carrier_tls_port: Port = 5061
    # The socket the PBX sends outbound calls to and inbound calls come from (UDP and TCP).
    pbx_address: Annotated[str, PlainValidator(_pbx_address)] = "127.0.0.1"
    pbx_port: Port = 5070
    # A call that fails on its trunk (408, 5xx, no answer) tries the DID's next trunk at once;
    # false: it fails back to the PBX and only lifeline's OPTIONS move the DIDs.
    trunk_failover: Annotated[bool, Strict()] = True

    @property
    def rpc_port(self) -> int:
        port = url_port(self.rpc_url)
        assert port is not None  # _rpc_url refused the rest
        return port

    @model_validator(mode="after")
    def _sockets_apart(self) -> KamailioEdge:
        if self.carrier_tls_port == self.carrier_port:
            raise ValueError(f"carrier_port and carrier_tls_port are both {self.carrier_port}: "
                             "TLS needs a TCP port of its own on the uplink addresses")
        if self.pbx_address == "127.0.0.1" and self.pbx_port == self.rpc_port:
            raise ValueError(f"pbx_port {self.pbx_port} is the port of rpc_url, and both are "
                             "on 127.0.0.1: give the PBX side another port")
        return self


class WebhookEdge(ConfigModel):
    """POST the changed part of the plan as JSON, signed with an HMAC (docs/edge-actuators.md)."""

    url: Annotated[str, Field(pattern=r"^https?://[^\s]+$")]
    secret_file: AbsPath | None = None
    secret_env: EnvName | None = None
    timeout: PositiveDuration = 5.0
    retries: Annotated[int, Strict(), Field(ge=0, le=10)] = 3

    @model_validator(mode="after")
    def _one_secret(self) -> WebhookEdge:
        if (self.secret_file is None) == (self.secret_env is None):
            raise ValueError("needs exactly one of secret_file or secret_env")
        return self


class CommandEdge(ConfigModel):
    """Run a program (argv, never a shell) with the plan as JSON on stdin."""

    argv: Annotated[list[str], Field(min_length=1)]
    timeout: PositiveDuration = 10.0


class SipEdge(ConfigModel):
    """Where the DID plan is pushed; any combination, none = plan computed and exported only."""

    kamailio: KamailioEdge | None = None
    webhook: WebhookEdge | None = None
    command: CommandEdge | None = None


class Destination(ConfigModel):
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


class DidRange(ConfigModel):
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
