"""TCP connect probe: does a port answer a handshake through this link?

One non-blocking socket per probe, pinned to the link (SO_BINDTODEVICE, source address),
connected under a timeout and closed at once; no data is sent. A refusal (RST) proves
the path works but the service does not, so it is a failure of its own kind whose detail
says the path is up. The boundary: this module returns a Sample and never raises.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time

from probes.netutil import bind_to_link, family_of
from probes.sample import ErrorKind, ProbeSpec, Sample

__all__ = ["connect_failure", "probe"]

_UNREACHABLE = {errno.EHOSTUNREACH, errno.EHOSTDOWN}
_NETWORK = {errno.ENETUNREACH, errno.ENETDOWN, errno.ENODEV, errno.EADDRNOTAVAIL}


def connect_failure(exc: OSError) -> Sample:
    """The failed sample a connect error means (shared with the HTTP probe)."""
    detail = exc.strerror or str(exc) or type(exc).__name__
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return Sample.failure(ErrorKind.REFUSED, f"connection refused (path is up): {detail}")
    if exc.errno in _UNREACHABLE:
        return Sample.failure(ErrorKind.UNREACHABLE, detail)
    if exc.errno == errno.ETIMEDOUT:
        return Sample.failure(ErrorKind.TIMEOUT, detail)
    if exc.errno in _NETWORK:
        return Sample.failure(ErrorKind.NETWORK, detail)
    return Sample.failure(ErrorKind.NETWORK, f"connect: {detail}")


async def probe(spec: ProbeSpec, *, timeout: float) -> Sample:
    """Connect to ``spec.host:spec.port`` from the spec's link; ok with the handshake RTT."""
    if spec.port is None or not 0 < spec.port < 65536:
        return Sample.failure(ErrorKind.INTERNAL, f"tcp probe needs a port: {spec.label()}")
    try:
        family = family_of(spec.host)
        address = socket.getaddrinfo(
            spec.host, spec.port, family, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
        )[0][4]
    except (ValueError, OSError):
        return Sample.failure(ErrorKind.INTERNAL, f"not an IP address: {spec.host!r}")
    loop = asyncio.get_running_loop()
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        return Sample.failure(ErrorKind.INTERNAL, f"socket: {exc.strerror or exc}")
    try:
        sock.setblocking(False)
        try:
            bind_to_link(sock, spec.device, spec.source)
        except OSError as exc:
            return Sample.failure(ErrorKind.NETWORK, f"bind: {exc.strerror or exc}")
        start = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, address)
        except TimeoutError:
            return Sample.failure(ErrorKind.TIMEOUT, f"no handshake within {timeout:g} s")
        except OSError as exc:
            return connect_failure(exc)
        return Sample.success(time.perf_counter() - start)
    finally:
        sock.close()
