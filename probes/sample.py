"""The value every probe returns, and the spec every probe takes.

A probe never raises into the scheduler: whatever goes wrong becomes a Sample with
``ok=False`` and an ErrorKind, so the controller sees failures as data. This module is
the only contract between ``probes/`` and ``controller/`` and imports nothing of either.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorKind(StrEnum):
    """Why a probe failed; bounded, so it can be a metric label."""

    TIMEOUT = "timeout"  # no answer within the timeout
    UNREACHABLE = "unreachable"  # ICMP destination/host/net unreachable, EHOSTUNREACH
    REFUSED = "refused"  # TCP RST: the host is alive, the port is closed
    NETWORK = "network"  # local send error: no route, device down, ENETUNREACH
    BAD_REPLY = "bad_reply"  # an answer that does not make sense for the probe
    INTERNAL = "internal"  # a bug or a resource problem on our side
    TLS = "tls"  # TLS handshake failed: expired, untrusted or wrong-name certificate, ...
    BAD_STATUS = "bad_status"  # an HTTP answer whose status is not an expected one
    BODY_MISMATCH = "body_mismatch"  # an HTTP answer whose body lacks the expected text


@dataclass(frozen=True, slots=True)
class SipOptions:
    """What a SIP OPTIONS probe needs beyond host and port (the ``sip`` kind only)."""

    transport: str = "udp"  # udp, tcp, tls
    uri: str | None = None  # Request-URI; default sip:host:port[;transport=...]
    alive_codes: frozenset[int] | None = None  # None: any 2xx-4xx but 408
    tls_verify: bool = True
    tls_ca_file: str | None = None
    server_name: str | None = None  # SNI and certificate name; default the host name


@dataclass(frozen=True, slots=True)
class HttpOptions:
    """What an HTTP(S) service probe needs beyond host and port (the ``http`` kind only)."""

    url: str  # http:// or https://; host and port also in the spec (resolved there)
    method: str = "GET"  # GET or HEAD
    expect_status: frozenset[int] | None = None  # None: any 200-399
    body_match: str | None = None  # a substring the body must hold (first 64 KiB)
    body_regex: str | None = None  # or a regular expression it must match
    verify: bool = True  # check the certificate chain and name
    ca_file: str | None = None  # trust these CAs instead of the system's
    server_name: str | None = None  # SNI and certificate name; default the URL's host


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """One target of one probe kind, pinned to a link (device and source address).

    ``host`` may be a name: the scheduler resolves it before each probe (A/AAAA through the
    system resolver) and hands the probe an address, keeping the name in ``name`` (a TLS
    probe's server name). A probe function always gets an IP literal.
    """

    kind: str  # "icmp", "tcp", "arp", "sip", "http"
    host: str  # IPv4/IPv6 literal, or a name the scheduler resolves
    port: int | None = None  # tcp, sip
    device: str | None = None  # SO_BINDTODEVICE
    source: str | None = None  # source address to bind
    name: str | None = None  # the host name ``host`` was resolved from
    sip: SipOptions | None = None
    http: HttpOptions | None = None

    def label(self) -> str:
        """Short human name of the target, e.g. ``icmp 192.0.2.1`` or ``tcp 192.0.2.2:443``."""
        if self.port is not None:
            host = f"[{self.host}]" if ":" in self.host else self.host
            return f"{self.kind} {host}:{self.port}"
        return f"{self.kind} {self.host}"


@dataclass(frozen=True, slots=True)
class Sample:
    """Outcome of one probe: ok with an RTT in seconds, or failed with a kind and detail."""

    ok: bool
    rtt: float | None = None
    error: ErrorKind | None = None
    detail: str = ""
    code: int | None = None  # the peer's status code, where the protocol has one (SIP)

    @staticmethod
    def success(rtt: float) -> Sample:
        return Sample(ok=True, rtt=rtt)

    @staticmethod
    def failure(error: ErrorKind, detail: str = "") -> Sample:
        return Sample(ok=False, error=error, detail=detail)
