"""SIP URIs of trunks and destinations: ``sip:host:port;transport=udp``, made explicit.

A URI is read once, here, into a SipUri whose transport is what goes on the wire and whose
port is filled in, so the probe, the DID plan and the summary all see the same address.
``probe_spec`` gives the scheduler its OPTIONS probe (a ``sip`` ProbeSpec). Only host URIs
are accepted: a user part, an unknown parameter or an unbracketed IPv6 address is refused
with the form to write instead.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BeforeValidator, PlainValidator

from controller.config.fields import usable_ip
from probes.sample import ProbeSpec, SipOptions

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

    def probe_spec(self, *, alive_codes: frozenset[int] | None = None,
                   device: str | None = None, source: str | None = None) -> ProbeSpec:
        """The OPTIONS probe of this URI (its Request-URI is the URI itself), pinned to a
        link's device and source address when given."""
        return ProbeSpec("sip", self.host, self.port, device=device, source=source,
                         sip=SipOptions(self.transport, str(self), alive_codes))


def _sip_host(text: str) -> str:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        return usable_ip(text)  # an address, but maybe not a usable one: usable_ip says why
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


def _host_name(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a host name or IP address")
    return _sip_host(value.strip())


HostName = Annotated[str, PlainValidator(_host_name)]
