"""HTTP(S) service probe: does the CRM (the PBX's web side, the SBC's GUI) answer as it
should, how fast, and how long until its certificate expires?

One request per check (GET or HEAD, no redirect followed: the status of the URL itself is
judged, 3xx counts as an answer by default), on a fresh connection closed afterwards, all
of it (connect, TLS, headers and the bounded body read) under the one timeout. Verdict:
the status is an expected one (default 200-399) and, when asked, the first 64 KiB of the
body hold a substring or match a regular expression. ``latency`` is the time to the
response headers, connect and TLS included. Over HTTPS the peer certificate's notAfter is
read from the TLS connection (``probes.certdates`` reads the DER, so it works unverified
too): when the chain fails to verify (expired, untrusted, wrong name), a second handshake
without verification fetches the certificate so the days left are still reported, and
the check fails with kind ``tls`` (clients refuse that certificate too: an outage). The
host was resolved by the caller (``probes.resolve``): aiohttp connects to that address
while the URL keeps the name for the Host header, SNI and the certificate check. Sockets
are pinned to a device/source when the spec names them (aiohttp's socket factory, cheap);
services usually live on the LAN and leave both unset. Never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
import time
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from probes.certdates import CertificateError, validity
from probes.netutil import bind_to_link, family_of
from probes.sample import ErrorKind, HttpOptions, ProbeSpec, Sample
from probes.service import ServiceReading
from probes.tcp import connect_failure

__all__ = ["BODY_LIMIT", "check", "probe"]

BODY_LIMIT = 64 * 1024  # bytes of the body a match looks at
_DAY = 86400.0


def _expected(o: HttpOptions, status: int) -> bool:
    return status in o.expect_status if o.expect_status is not None else 200 <= status < 400


class _PinnedResolver(AbstractResolver):
    """Every name resolves to the address the caller resolved (once, per check)."""

    def __init__(self, address: str) -> None:
        self.address = address

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        return [ResolveResult(hostname=host, host=self.address, port=port,
                              family=family_of(self.address), proto=0,
                              flags=socket.AI_NUMERICHOST)]

    async def close(self) -> None:
        return None


class _CertResponse(aiohttp.ClientResponse):
    """A response that keeps the peer certificate (DER) of its connection: after the
    headers the connection may already be released (HEAD, an empty body)."""

    peer_cert: bytes | None = None

    async def start(self, connection: aiohttp.connector.Connection) -> aiohttp.ClientResponse:
        transport = connection.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
        if isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
            self.peer_cert = ssl_object.getpeercert(binary_form=True)
        return await super().start(connection)


def _context(o: HttpOptions) -> ssl.SSLContext:
    if o.verify:
        return ssl.create_default_context(cafile=o.ca_file)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _with_cert(reading: ServiceReading, der: bytes | None) -> ServiceReading:
    if not der:
        return reading
    try:
        _, not_after = validity(der)
    except CertificateError:
        return reading
    return replace(reading, cert_not_after=not_after,
                   cert_days_left=(not_after - time.time()) / _DAY)


async def _unverified_cert(spec: ProbeSpec, server_name: str | None) -> bytes | None:
    """The peer certificate from a handshake that verifies nothing; None if none comes."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    family = family_of(spec.host)
    address = socket.getaddrinfo(spec.host, spec.port, family, socket.SOCK_STREAM, 0,
                                 socket.AI_NUMERICHOST)[0][4]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        bind_to_link(sock, spec.device, spec.source)
        await asyncio.get_running_loop().sock_connect(sock, address)
    except OSError:
        sock.close()
        return None
    try:
        _, writer = await asyncio.open_connection(sock=sock, ssl=ctx,
                                                  server_hostname=server_name or "")
    except (OSError, ssl.SSLError):
        sock.close()
        return None
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        return ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


def _socket_factory(spec: ProbeSpec) -> Any:
    if not (spec.device or spec.source):
        return None

    def make(info: tuple[Any, ...]) -> socket.socket:
        family, kind, proto = info[0], info[1], info[2]
        sock = socket.socket(family, kind, proto)
        try:
            bind_to_link(sock, spec.device, spec.source)
        except OSError:
            sock.close()
            raise
        return sock

    return make


def _server_name(spec: ProbeSpec, o: HttpOptions) -> str | None:
    return o.server_name or spec.name


async def _read_body(response: aiohttp.ClientResponse) -> bytes:
    body = b""
    while len(body) < BODY_LIMIT:
        chunk = await response.content.read(BODY_LIMIT - len(body))
        if not chunk:
            break
        body += chunk
    return body


def _body_verdict(o: HttpOptions, body: bytes, charset: str | None) -> str | None:
    """Why the body fails the match, or None when it holds."""
    try:
        text = body.decode(charset or "utf-8", "replace")
    except LookupError:
        text = body.decode("utf-8", "replace")
    seen = f"(first {len(body)} bytes read)"
    if o.body_match is not None and o.body_match not in text:
        return f"body lacks {o.body_match!r} {seen}"
    if o.body_regex is not None and re.search(o.body_regex, text, re.MULTILINE) is None:
        return f"body does not match /{o.body_regex}/ {seen}"
    return None


async def _request(spec: ProbeSpec, o: HttpOptions, timeout: float) -> ServiceReading:
    secure = o.url.lower().startswith("https:")
    ctx = _context(o) if secure else None
    connector = aiohttp.TCPConnector(
        resolver=_PinnedResolver(spec.host), use_dns_cache=False, force_close=True,
        socket_factory=_socket_factory(spec),
    )
    start = time.perf_counter()
    async with aiohttp.ClientSession(
        connector=connector, response_class=_CertResponse, auto_decompress=True,
        timeout=aiohttp.ClientTimeout(total=2 * timeout + 1),
    ) as session:
        try:
            async with session.request(
                o.method, o.url, allow_redirects=False, ssl=ctx if ctx is not None else True,
                server_hostname=o.server_name if secure else None,
                headers={"User-Agent": "lifeline-service-probe"},
            ) as response:
                latency = time.perf_counter() - start
                assert isinstance(response, _CertResponse)
                cert = response.peer_cert
                status = response.status
                what = f"HTTP {status}" + (f" {response.reason}" if response.reason else "")
                if not _expected(o, status):
                    return _with_cert(ServiceReading(False, latency, ErrorKind.BAD_STATUS,
                                                     what, status), cert)
                wants_body = o.method != "HEAD" and (o.body_match or o.body_regex)
                if wants_body:
                    why = _body_verdict(o, await _read_body(response), response.charset)
                    if why is not None:
                        return _with_cert(ServiceReading(False, latency,
                                                         ErrorKind.BODY_MISMATCH,
                                                         f"{what}, {why}", status), cert)
                return _with_cert(ServiceReading(True, latency, detail=what, code=status),
                                  cert)
        except aiohttp.ClientConnectorCertificateError as exc:
            err = exc.certificate_error
            why = getattr(err, "verify_message", None) or str(err)
            reading = ServiceReading.failure(ErrorKind.TLS, f"certificate refused: {why}")
            # What is left of the timeout, short of it: the verdict must not be lost to it.
            left = 0.9 * (timeout - (time.perf_counter() - start))
            der = None
            with contextlib.suppress(TimeoutError):
                der = await asyncio.wait_for(_unverified_cert(spec, _server_name(spec, o)),
                                             max(left, 0.01))
            return _with_cert(reading, der)
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            return ServiceReading.failure(ErrorKind.TLS, f"TLS handshake failed: {exc}")
        except aiohttp.ClientConnectorError as exc:
            return ServiceReading.from_sample(connect_failure(exc.os_error))
        except aiohttp.ClientOSError as exc:  # connected, then broken (a reset mid-answer)
            return ServiceReading.failure(ErrorKind.BAD_REPLY, f"connection broken: {exc}")
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError,
                aiohttp.ClientResponseError) as exc:
            return ServiceReading.failure(ErrorKind.BAD_REPLY,
                                          f"not a usable HTTP answer: {exc}")
        except aiohttp.InvalidURL as exc:
            return ServiceReading.failure(ErrorKind.INTERNAL, f"bad URL: {exc}")
        except OSError as exc:
            return ServiceReading.from_sample(connect_failure(exc))


async def check(spec: ProbeSpec, *, timeout: float) -> ServiceReading:
    """Check the URL of ``spec.http`` at ``spec.host`` (an address); never raises."""
    o = spec.http
    if o is None:
        return ServiceReading.failure(ErrorKind.INTERNAL,
                                      f"http probe needs a URL: {spec.label()}")
    try:
        async with asyncio.timeout(timeout):
            return await _request(spec, o, timeout)
    except TimeoutError:
        return ServiceReading.failure(ErrorKind.TIMEOUT, f"no answer within {timeout:g} s")
    except (OSError, ssl.SSLError, ValueError) as exc:  # e.g. an unreadable ca_file
        return ServiceReading.failure(ErrorKind.INTERNAL, f"cannot check: {exc}")


async def probe(spec: ProbeSpec, *, timeout: float) -> Sample:
    """The probe table's signature: the check as a plain Sample."""
    return (await check(spec, timeout=timeout)).to_sample()
