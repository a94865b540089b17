"""SIP trunk probe: OPTIONS ping (and an optional REGISTER check) over UDP, TCP or TLS.

One client transaction per probe, sent from the trunk's link (source address and
SO_BINDTODEVICE). Over UDP the request is retransmitted on RFC 3261 Timer E (first at
min(T1, timeout/4), doubling up to T2) until the timeout; over TCP/TLS it is sent once.
Only a response whose Call-ID, CSeq (number and method) and top Via branch are ours ends
the transaction; anything else arriving on the socket is counted and ignored, and 1xx
never ends it. Whether a final code means "alive" is the caller's choice, by default any
2xx-4xx except 408 (a 408 may be a proxy's own timeout, never proof of the peer). The
boundary: messages are read and built by ``probes.sipmsg``, digests by ``probes.digest``;
this module returns ``SipResult``/``Sample`` values and never raises; passwords are
never logged nor put in a result.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from probes import digest
from probes.netutil import bind_to_link, family_of
from probes.sample import ErrorKind, ProbeSpec, Sample, SipOptions
from probes.sipmsg import (
    OutgoingRequest,
    SipMessage,
    SipParseError,
    StreamFramer,
    build_options,
    build_register,
    new_call_id,
    new_tag,
    parse,
)

__all__ = ["SipResult", "SipTarget", "is_alive_default", "options", "probe", "register_check"]

T1 = 0.5
T2 = 4.0
Transport = Literal["udp", "tcp", "tls"]


def is_alive_default(code: int) -> bool:
    """Any final answer 2xx-4xx proves a live peer (carriers answer OPTIONS with 403, 404,
    405), except 408: Kamailio and other proxies generate 408 locally on timeout."""
    return 200 <= code < 500 and code != 408


@dataclass(frozen=True, slots=True)
class SipTarget:
    """A SIP peer (a carrier's SBC) and how to reach it from one link."""

    host: str  # IP literal
    port: int = 5060
    transport: Transport = "udp"
    uri: str | None = None  # Request-URI; default sip:host:port[;transport=...]
    alive_codes: frozenset[int] | None = None  # None: is_alive_default
    device: str | None = None
    source: str | None = None
    tls_verify: bool = True
    tls_ca_file: str | None = None
    server_name: str | None = None  # SNI and the name the certificate must carry

    @classmethod
    def from_spec(cls, spec: ProbeSpec) -> SipTarget:
        """The target a ``sip`` probe spec describes (defaults where it has no SipOptions)."""
        o = spec.sip or SipOptions()
        transport: Transport = "tls" if o.transport == "tls" else (
            "tcp" if o.transport == "tcp" else "udp")
        return cls(spec.host, spec.port or 5060, transport, o.uri, o.alive_codes,
                   spec.device, spec.source, o.tls_verify, o.tls_ca_file,
                   o.server_name or spec.name)

    def request_uri(self) -> str:
        if self.uri:
            return self.uri
        host = f"[{self.host}]" if ":" in self.host else self.host
        suffix = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"sip:{host}:{self.port}{suffix}"

    def is_alive(self, code: int) -> bool:
        if code == 408:
            return False
        if self.alive_codes is not None:
            return code in self.alive_codes
        return is_alive_default(code)


@dataclass(frozen=True, slots=True)
class SipResult:
    """Outcome of one transaction; ``reachable`` is the verdict, the rest explains it."""

    reachable: bool
    code: int | None = None
    reason: str = ""
    rtt: float | None = None  # from the first transmission to the final response
    error: ErrorKind | None = None
    detail: str = ""
    ignored: int = 0  # messages on our socket that were not ours or could not be read
    retransmits: int = 0

    def to_sample(self) -> Sample:
        if self.reachable:
            return Sample(ok=True, rtt=self.rtt, detail=self.detail, code=self.code)
        return Sample(ok=False, rtt=self.rtt, error=self.error, detail=self.detail,
                      code=self.code)


@dataclass(slots=True)
class _Outcome:
    response: SipMessage | None = None
    failure: SipResult | None = None
    ignored: int = 0
    retransmits: int = 0
    rtt: float | None = None
    extra: dict[str, str] = field(default_factory=dict)


_UNREACHABLE = {errno.EHOSTUNREACH, errno.EHOSTDOWN}
_NETWORK = {errno.ENETUNREACH, errno.ENETDOWN, errno.ENODEV, errno.EADDRNOTAVAIL, errno.EPERM}


def _os_failure(exc: OSError, what: str) -> SipResult:
    text = f"{what}: {exc.strerror or exc}"
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return SipResult(False, error=ErrorKind.REFUSED, detail=f"{text} (path is up)")
    if exc.errno in _UNREACHABLE:
        return SipResult(False, error=ErrorKind.UNREACHABLE, detail=text)
    if exc.errno == errno.ETIMEDOUT:
        return SipResult(False, error=ErrorKind.TIMEOUT, detail=text)
    return SipResult(False, error=ErrorKind.NETWORK, detail=text)


def _address(
    target: SipTarget, kind: socket.SocketKind
) -> tuple[socket.AddressFamily, tuple[Any, ...]]:
    family = family_of(target.host)
    addr = socket.getaddrinfo(target.host, target.port, family, kind, 0,
                              socket.AI_NUMERICHOST)[0][4]
    return family, addr


# A request builder gets our local (host, port), known only once the socket is bound.
Builder = Callable[[str, int], OutgoingRequest]
# Given a final response, the next request of the exchange, or None when it is over.
Follow = Callable[[SipMessage], Builder | None]


class _Transaction:
    """One client transaction over a fresh socket: send, retransmit (UDP), match."""

    def __init__(self, target: SipTarget, timeout: float) -> None:
        self.target = target
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    async def run(self, build: Builder, follow: Follow | None = None) -> _Outcome:
        """Send ``build``'s request; on a final response, ``follow`` may return the next
        request (a challenged REGISTER's retry), sent over the same socket/connection as
        real user agents do: registrars and NATs answer the flow the request came on."""
        if self.target.transport == "udp":
            return await self._udp(build, follow)
        return await self._stream(build, follow)

    async def _udp(self, build: Builder, follow: Follow | None) -> _Outcome:
        loop = asyncio.get_running_loop()
        family, addr = _address(self.target, socket.SOCK_DGRAM)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        out = _Outcome()
        try:
            sock.setblocking(False)
            try:
                bind_to_link(sock, self.target.device, self.target.source)
                if not self.target.source:
                    sock.bind(("::", 0) if family == socket.AF_INET6 else ("0.0.0.0", 0))
                local_host = self.target.source or _route_source(self.target, family, addr)
            except OSError as exc:
                out.failure = _os_failure(exc, "bind")
                return out
            request = build(local_host, sock.getsockname()[1])
            # Unconnected on purpose: a multi-homed SBC may answer from another address,
            # and the transaction match (not the source address) decides what is ours.
            start = time.monotonic()
            interval = min(T1, self.timeout / 4)
            try:
                await loop.sock_sendto(sock, request.data, addr)
            except OSError as exc:
                out.failure = _os_failure(exc, "send")
                return out
            next_send = start + interval
            while True:
                now = time.monotonic()
                if now >= self.deadline:
                    break
                if now >= next_send:
                    with contextlib.suppress(OSError):
                        await loop.sock_sendto(sock, request.data, addr)
                        out.retransmits += 1
                    interval = min(interval * 2, T2)
                    next_send = now + interval
                    continue
                wait = min(self.deadline, next_send) - now
                try:
                    data, _ = await asyncio.wait_for(loop.sock_recvfrom(sock, 65535), wait)
                except TimeoutError:
                    continue
                except OSError:
                    out.ignored += 1  # an ICMP error reported late; keep listening
                    continue
                msg = _read(data)
                if msg is None or not request.matches(msg):
                    out.ignored += 1
                    continue
                assert msg.status is not None
                if msg.status < 200:
                    # Timer E after a provisional response: keep asking, every T2.
                    interval = T2
                    next_send = time.monotonic() + T2
                    continue
                nxt = follow(msg) if follow is not None else None
                if nxt is None:
                    out.response = msg
                    out.rtt = time.monotonic() - start
                    return out
                request = nxt(local_host, sock.getsockname()[1])
                interval = min(T1, self.remaining() / 4)
                with contextlib.suppress(OSError):
                    await loop.sock_sendto(sock, request.data, addr)
                next_send = time.monotonic() + interval
        finally:
            sock.close()
        out.failure = SipResult(
            False,
            error=ErrorKind.TIMEOUT,
            detail=f"no final response within {self.timeout:g} s "
            f"({out.retransmits} retransmits, {out.ignored} ignored)",
        )
        return out

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.target.tls_ca_file)
        if not self.target.tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    async def _stream(self, build: Builder, follow: Follow | None) -> _Outcome:
        loop = asyncio.get_running_loop()
        out = _Outcome()
        family, addr = _address(self.target, socket.SOCK_STREAM)
        sock = socket.socket(family, socket.SOCK_STREAM)
        writer: asyncio.StreamWriter | None = None
        try:
            sock.setblocking(False)
            try:
                bind_to_link(sock, self.target.device, self.target.source)
            except OSError as exc:
                out.failure = _os_failure(exc, "bind")
                return out
            start = time.monotonic()
            try:
                async with asyncio.timeout(max(self.remaining(), 0.0)):
                    await loop.sock_connect(sock, addr)
                    tls = self.target.transport == "tls"
                    reader, writer = await asyncio.open_connection(
                        sock=sock,
                        ssl=self._ssl_context() if tls else None,
                        server_hostname=(self.target.server_name or self.target.host)
                        if tls
                        else None,
                    )
                    local = sock.getsockname()
                    request = build(local[0], local[1])
                    writer.write(request.data)
                    await writer.drain()
                    framer = StreamFramer()
                    while out.response is None:
                        data = await reader.read(65536)
                        if not data:
                            out.failure = SipResult(
                                False,
                                error=ErrorKind.BAD_REPLY,
                                detail="connection closed before a final response",
                            )
                            return out
                        try:
                            messages = framer.feed(data)
                        except SipParseError as exc:
                            out.failure = SipResult(
                                False, error=ErrorKind.BAD_REPLY,
                                detail=f"unreadable stream: {exc.reason}",
                            )
                            return out
                        for msg in messages:
                            if not request.matches(msg):
                                out.ignored += 1
                            elif msg.status is not None and msg.status >= 200:
                                nxt = follow(msg) if follow is not None else None
                                if nxt is None:
                                    out.response = msg
                                    break
                                request = nxt(local[0], local[1])
                                writer.write(request.data)
                                await writer.drain()
                    out.rtt = time.monotonic() - start
                    return out
            except TimeoutError:
                out.failure = SipResult(
                    False, error=ErrorKind.TIMEOUT,
                    detail=f"no final response within {self.timeout:g} s "
                    f"({out.ignored} ignored)",
                )
                return out
            except ssl.SSLCertVerificationError as exc:
                out.failure = SipResult(
                    False, error=ErrorKind.BAD_REPLY,
                    detail=f"TLS certificate not trusted: {exc.verify_message}",
                )
                return out
            except ssl.SSLError as exc:
                out.failure = SipResult(
                    False, error=ErrorKind.BAD_REPLY, detail=f"TLS: {exc.reason or exc}"
                )
                return out
            except OSError as exc:
                out.failure = _os_failure(exc, "connect")
                return out
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer.wait_closed(), 0.5)
            else:
                sock.close()


def _route_source(
    target: SipTarget, family: socket.AddressFamily, addr: tuple[Any, ...]
) -> str:
    """Our address on the path to the target, for Via and Contact: a connected UDP socket
    learns it from the routing table without sending anything."""
    probe_sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        bind_to_link(probe_sock, target.device, None)
        probe_sock.connect(addr)
        host: str = probe_sock.getsockname()[0]
        return host.split("%", 1)[0]
    finally:
        probe_sock.close()


def _read(data: bytes) -> SipMessage | None:
    try:
        return parse(data)
    except SipParseError:
        return None


def _result_of(target: SipTarget, out: _Outcome) -> SipResult:
    if out.failure is not None:
        return replace(out.failure, ignored=out.ignored, retransmits=out.retransmits)
    msg = out.response
    assert msg is not None and msg.status is not None
    code = msg.status
    text = f"{code} {msg.reason}".strip()
    if target.is_alive(code):
        return SipResult(True, code=code, reason=msg.reason, rtt=out.rtt, detail=text,
                         ignored=out.ignored, retransmits=out.retransmits)
    return SipResult(False, code=code, reason=msg.reason, rtt=out.rtt,
                     error=ErrorKind.BAD_REPLY, detail=f"failing answer: {text}",
                     ignored=out.ignored, retransmits=out.retransmits)


def _check(target: SipTarget, timeout: float) -> SipResult | None:
    if target.transport not in ("udp", "tcp", "tls"):
        return SipResult(False, error=ErrorKind.INTERNAL,
                         detail=f"unknown SIP transport {target.transport!r}")
    if not 0 < target.port < 65536:
        return SipResult(False, error=ErrorKind.INTERNAL, detail=f"bad port {target.port}")
    if timeout <= 0:
        return SipResult(False, error=ErrorKind.INTERNAL, detail="timeout must be positive")
    try:
        family_of(target.host)
    except ValueError:
        return SipResult(False, error=ErrorKind.INTERNAL,
                         detail=f"not an IP address: {target.host!r}")
    return None


async def options(target: SipTarget, *, timeout: float) -> SipResult:
    """Send one OPTIONS to ``target`` and judge the final answer; never raises."""
    bad = _check(target, timeout)
    if bad is not None:
        return bad
    uri = target.request_uri()

    def build(host: str, port: int) -> OutgoingRequest:
        return build_options(uri, transport=target.transport, local_host=host, local_port=port)

    try:
        out = await _Transaction(target, timeout).run(build)
    except OSError as exc:
        return _os_failure(exc, "socket")
    return _result_of(target, out)


async def register_check(
    target: SipTarget,
    user: str,
    domain: str,
    password: str,
    *,
    timeout: float,
) -> SipResult:
    """REGISTER ``sip:user@domain`` at ``target``, answering one 401/407 Digest challenge.

    Reachable means registered (a 2xx). A second challenge (wrong password) or any other
    final code is a failure with the code in the detail. The whole exchange shares
    ``timeout``. The password is used for the digest only.
    """
    bad = _check(target, timeout)
    if bad is not None:
        return bad
    uri = target.request_uri()
    call_id = new_call_id()
    from_tag = new_tag()

    def register(cseq: int, auth: tuple[str, str] | None) -> Builder:
        def build(host: str, port: int) -> OutgoingRequest:
            return build_register(uri, user=user, domain=domain, transport=target.transport,
                                  local_host=host, local_port=port, call_id=call_id,
                                  cseq=cseq, from_tag=from_tag, authorization=auth)

        return build

    def follow(msg: SipMessage) -> Builder | None:
        # Answer one challenge only: a second one means the credentials were refused.
        if msg.status not in (401, 407) or msg.cseq.number != 1:
            return None
        name = "www-authenticate" if msg.status == 401 else "proxy-authenticate"
        try:
            challenge = digest.choose_challenge(msg.get_all(name))
        except digest.DigestError:
            return None
        value = digest.authorization(challenge, username=user, password=password,
                                     method="REGISTER", uri=uri)
        header = "Authorization" if msg.status == 401 else "Proxy-Authorization"
        return register(2, (header, value))

    try:
        out = await _Transaction(target, timeout).run(register(1, None), follow)
    except OSError as exc:
        return _os_failure(exc, "socket")
    except ValueError as exc:  # a challenge value that would inject a header
        return SipResult(False, error=ErrorKind.BAD_REPLY, detail=f"bad challenge: {exc}")
    if out.failure is not None:
        return replace(out.failure, ignored=out.ignored, retransmits=out.retransmits)
    msg = out.response
    assert msg is not None and msg.status is not None
    code = msg.status
    common = {"code": code, "reason": msg.reason, "rtt": out.rtt, "ignored": out.ignored,
              "retransmits": out.retransmits}
    if 200 <= code < 300:
        return SipResult(True, detail=f"registered: {code} {msg.reason}".strip(),
                         **common)  # type: ignore[arg-type]
    if code in (401, 407) and msg.cseq.number == 1:
        name = "www-authenticate" if code == 401 else "proxy-authenticate"
        try:
            digest.choose_challenge(msg.get_all(name))
            why = "challenge not answered"
        except digest.DigestError as exc:
            why = f"cannot answer challenge: {exc}"
        return SipResult(False, error=ErrorKind.BAD_REPLY, detail=why,
                         **common)  # type: ignore[arg-type]
    what = "credentials refused" if code in (401, 407) else "registration refused"
    return SipResult(False, error=ErrorKind.BAD_REPLY,
                     detail=f"{what}: {code} {msg.reason}".strip(),
                     **common)  # type: ignore[arg-type]


async def probe(spec: ProbeSpec, *, timeout: float) -> Sample:
    """The house probe signature: OPTIONS to ``spec.host:spec.port`` (5060) over the
    transport its SipOptions name (UDP by default); the Sample carries the status code."""
    return (await options(SipTarget.from_spec(spec), timeout=timeout)).to_sample()
