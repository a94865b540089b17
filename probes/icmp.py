"""ICMP echo probes over one shared raw socket per link, with a pure codec beside them.

The job: tell whether targets answer ICMP echo through one link and how fast, cheaply
enough that thousands of targets a second fit on one core. One ``IcmpEngine`` owns one
raw socket per (address family, device, source) and serves every target of that link;
replies are matched by a per-engine identifier, a per-request sequence number, the
target's address and a random per-request payload cookie, so stray, foreign or forged
packets are counted and dropped instead of being taken for an answer. The codec
functions (build a request, parse a reply or an ICMP error) are pure and do no I/O.
The boundary: this module sends and matches pings and returns Samples; it never decides
health and never raises into its caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import secrets
import socket
import struct
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from probes.netutil import bind_to_link, family_of, grow_receive_buffer, internet_checksum
from probes.sample import ErrorKind, ProbeSpec, Sample

__all__ = [
    "COOKIE_SIZE",
    "EchoReply",
    "IcmpEngine",
    "IcmpStats",
    "QuotedError",
    "build_echo_request",
    "close_all",
    "get_engine",
    "parse_v4",
    "parse_v6",
    "probe",
]

ECHO_REQUEST_V4 = 8
ECHO_REPLY_V4 = 0
ECHO_REQUEST_V6 = 128
ECHO_REPLY_V6 = 129
# ICMP errors that mean "your probe did not get through"; redirects and source quench
# say nothing about reachability, so they are ignored like any other type.
ERRORS_V4 = {3: "destination unreachable", 11: "time exceeded", 12: "parameter problem"}
ERRORS_V6 = {1: "destination unreachable", 3: "time exceeded", 4: "parameter problem"}

COOKIE_SIZE = 8
_HEADER = struct.Struct("!BBHHH")
_RECV_SIZE = 2048
# Bound the work done per readiness callback so a flood cannot starve the event loop.
_DRAIN_LIMIT = 512
_RECEIVE_BUFFER = 4 * 1024 * 1024
_SOL_RAW = 255
_ICMP_FILTER = 1
_ICMP6_FILTER = 1


class EchoReply(NamedTuple):
    """A well-formed echo reply; whether it is ours is the engine's question."""

    ident: int
    seq: int
    payload: bytes


class QuotedError(NamedTuple):
    """An ICMP error that quotes an echo request (ident, seq, original destination)."""

    ident: int
    seq: int
    target: str
    icmp_type: int
    code: int


# A parse result: a reply, a quoted error, or the reason the packet is ignored.
Parsed = EchoReply | QuotedError | str


def build_echo_request(family: int, ident: int, seq: int, payload: bytes) -> bytes:
    """Echo request bytes; for IPv6 the checksum is left 0 because the kernel fills it.

    The IPv4 checksum is summed from the header words and the payload's integer value
    (the ones'-complement sum of 16-bit words equals the value modulo 0xffff), which
    avoids packing the header twice on the hot path.
    """
    if family == socket.AF_INET6:
        return _HEADER.pack(ECHO_REQUEST_V6, 0, 0, ident, seq) + payload
    if len(payload) & 1:
        return _HEADER.pack(
            ECHO_REQUEST_V4, 0,
            internet_checksum(_HEADER.pack(ECHO_REQUEST_V4, 0, 0, ident, seq) + payload),
            ident, seq,
        ) + payload
    folded = ((ECHO_REQUEST_V4 << 8) + ident + seq + int.from_bytes(payload, "big")) % 0xFFFF
    # The sum is never +0 (the type word is non-zero), so folded == 0 means 0xffff.
    checksum = 0xFFFF - folded if folded else 0
    return _HEADER.pack(ECHO_REQUEST_V4, 0, checksum, ident, seq) + payload


def parse_v4(packet: bytes) -> Parsed:
    """Parse what an IPv4 raw ICMP socket delivers (IP header first).

    Never raises: anything malformed comes back as a short reason string.
    """
    size = len(packet)
    if size < 20:
        return "short"
    first = packet[0]
    if first >> 4 != 4:
        return "not-ipv4"
    ihl = (first & 0x0F) * 4
    if ihl < 20:
        return "bad-ip-header"
    if packet[9] != socket.IPPROTO_ICMP:
        return "not-icmp"
    if size < ihl + 8:
        return "short"
    icmp = packet[ihl:]
    if internet_checksum(icmp) != 0:
        return "bad-checksum"
    icmp_type = icmp[0]
    if icmp_type == ECHO_REPLY_V4:
        if icmp[1] != 0:
            return "bad-code"
        _, _, _, ident, seq = _HEADER.unpack_from(icmp)
        return EchoReply(ident, seq, icmp[8:])
    if icmp_type in ERRORS_V4:
        return _parse_quote_v4(icmp)
    return "other-type"


def _parse_quote_v4(icmp: bytes) -> Parsed:
    """The original IP header + first 8 bytes of ICMP quoted in an IPv4 ICMP error."""
    inner = icmp[8:]
    if len(inner) < 20 or inner[0] >> 4 != 4:
        return "short-quote" if len(inner) < 20 else "bad-quote"
    ihl = (inner[0] & 0x0F) * 4
    if ihl < 20:
        return "bad-quote"
    if inner[9] != socket.IPPROTO_ICMP:
        return "quote-not-icmp"
    if len(inner) < ihl + 8:
        return "short-quote"
    inner_type, inner_code, _, ident, seq = _HEADER.unpack_from(inner, ihl)
    if inner_type != ECHO_REQUEST_V4 or inner_code != 0:
        return "quote-not-echo"
    target = socket.inet_ntop(socket.AF_INET, inner[16:20])
    return QuotedError(ident, seq, target, icmp[0], icmp[1])


def parse_v6(packet: bytes) -> Parsed:
    """Parse what an IPv6 raw ICMPv6 socket delivers (ICMPv6 header first).

    The kernel has verified the checksum already (it is mandatory for ICMPv6 sockets).
    Never raises: anything malformed comes back as a short reason string.
    """
    if len(packet) < 8:
        return "short"
    icmp_type = packet[0]
    if icmp_type == ECHO_REPLY_V6:
        if packet[1] != 0:
            return "bad-code"
        _, _, _, ident, seq = _HEADER.unpack_from(packet)
        return EchoReply(ident, seq, packet[8:])
    if icmp_type in ERRORS_V6:
        inner = packet[8:]
        if len(inner) < 48:
            return "short-quote"
        if inner[0] >> 4 != 6:
            return "bad-quote"
        # Extension headers in a quoted echo request are not something we send.
        if inner[6] != socket.IPPROTO_ICMPV6:
            return "quote-not-icmp"
        inner_type, inner_code, _, ident, seq = _HEADER.unpack_from(inner, 40)
        if inner_type != ECHO_REQUEST_V6 or inner_code != 0:
            return "quote-not-echo"
        target = socket.inet_ntop(socket.AF_INET6, inner[24:40])
        return QuotedError(ident, seq, target, icmp_type, packet[1])
    return "other-type"


@dataclass(slots=True)
class IcmpStats:
    """Counters of one engine; ``ignored`` says why packets were not taken as answers."""

    sent: int = 0
    received: int = 0
    matched: int = 0
    unreachable: int = 0
    timeouts: int = 0
    send_errors: int = 0
    ignored: Counter[str] = field(default_factory=Counter)


class _Batch:
    """One ping_many call: its results, what is still open, and its single deadline."""

    __slots__ = ("future", "remaining", "results", "seqs", "timer")

    def __init__(self, future: asyncio.Future[None], size: int) -> None:
        self.future = future
        self.results: list[Sample | None] = [None] * size
        self.remaining = size
        self.seqs: list[int] = []
        self.timer: asyncio.TimerHandle | None = None


class _Pending:
    """One request in flight; looked up by sequence number when a packet arrives."""

    __slots__ = ("batch", "cookie", "index", "key", "sent")

    def __init__(self, batch: _Batch, index: int, key: str, cookie: bytes) -> None:
        self.batch = batch
        self.index = index
        self.key = key
        self.cookie = cookie
        self.sent = 0.0


def _os_detail(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


class IcmpEngine:
    """Pings many targets through one raw socket bound to one link.

    The socket opens lazily inside the running loop on first use, so creating an engine
    never fails; if it cannot open (no root, unknown device) every probe returns a
    NETWORK failure saying why.
    """

    def __init__(
        self,
        family: int = socket.AF_INET,
        device: str | None = None,
        source: str | None = None,
        *,
        receive_buffer: int = _RECEIVE_BUFFER,
    ) -> None:
        if family not in (socket.AF_INET, socket.AF_INET6):
            raise ValueError(f"unsupported address family {family}")
        self.family = family
        self.device = device or None
        self.source = source or None
        self.ident = secrets.randbelow(0x10000)
        self.stats = IcmpStats()
        self.closed = False
        self._receive_buffer = receive_buffer
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seq = secrets.randbelow(0x10000)
        self._outstanding: dict[int, _Pending] = {}
        self._targets: dict[str, tuple[str, tuple[Any, ...]] | None] = {}
        self._parse = parse_v6 if family == socket.AF_INET6 else parse_v4

    def __repr__(self) -> str:
        fam = "ipv6" if self.family == socket.AF_INET6 else "ipv4"
        return f"IcmpEngine({fam}, device={self.device!r}, source={self.source!r})"

    # -- socket ----------------------------------------------------------------

    def _ensure_open(self, loop: asyncio.AbstractEventLoop) -> socket.socket:
        if self._sock is not None and self._loop is loop:
            return self._sock
        if self._sock is not None:
            # Opened under another (probably finished) loop: start over on this one.
            self._drop_socket()
        proto = socket.IPPROTO_ICMPV6 if self.family == socket.AF_INET6 else socket.IPPROTO_ICMP
        sock = socket.socket(self.family, socket.SOCK_RAW, proto)
        try:
            sock.setblocking(False)
            self._install_filter(sock)
            grow_receive_buffer(sock, self._receive_buffer)
            bind_to_link(sock, self.device, self.source)
            loop.add_reader(sock.fileno(), self._on_readable)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._loop = loop
        return sock

    def _install_filter(self, sock: socket.socket) -> None:
        """Let the kernel drop ICMP types we never match (echo requests, redirects...)."""
        if self.family == socket.AF_INET6:
            # struct icmp6_filter: 256 bits, a set bit blocks that type.
            words = [0xFFFFFFFF] * 8
            for icmp_type in (ECHO_REPLY_V6, *ERRORS_V6):
                words[icmp_type >> 5] &= ~(1 << (icmp_type & 31)) & 0xFFFFFFFF
            sock.setsockopt(socket.IPPROTO_ICMPV6, _ICMP6_FILTER, struct.pack("=8I", *words))
        else:
            mask = 0xFFFFFFFF
            for icmp_type in (ECHO_REPLY_V4, *ERRORS_V4):
                mask &= ~(1 << icmp_type)
            sock.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("=I", mask))

    def _drop_socket(self) -> None:
        sock, loop = self._sock, self._loop
        self._sock = None
        self._loop = None
        if sock is not None:
            if loop is not None and not loop.is_closed():
                loop.remove_reader(sock.fileno())
            sock.close()
        closing = Sample.failure(ErrorKind.NETWORK, "icmp engine closed")
        for pending in list(self._outstanding.values()):
            # RuntimeError: its loop is already closed, so nobody is waiting any more.
            with contextlib.suppress(RuntimeError):
                self._complete(pending, closing)
        self._outstanding.clear()

    def close(self) -> None:
        """Close the socket; requests still in flight complete as NETWORK failures."""
        self.closed = True
        self._drop_socket()

    # -- sending ---------------------------------------------------------------

    def _target(self, dst: str) -> tuple[str, tuple[Any, ...]] | None:
        """(canonical address, sockaddr) of ``dst``, cached; None if not our family."""
        try:
            return self._targets[dst]
        except KeyError:
            pass
        entry: tuple[str, tuple[Any, ...]] | None = None
        try:
            address = ipaddress.ip_address(dst.partition("%")[0])
            if self.family == socket.AF_INET6 and address.version == 6:
                sockaddr = socket.getaddrinfo(
                    dst, 0, socket.AF_INET6, socket.SOCK_DGRAM, 0, socket.AI_NUMERICHOST
                )[0][4]
                entry = (address.compressed, tuple(sockaddr))
            elif self.family == socket.AF_INET and address.version == 4:
                entry = (address.compressed, (address.compressed, 0))
        except (ValueError, OSError):
            entry = None
        if len(self._targets) > 65536:
            self._targets.clear()
        self._targets[dst] = entry
        return entry

    def _next_seq(self) -> int | None:
        seq = self._seq
        outstanding = self._outstanding
        for _ in range(0x10000):
            seq = (seq + 1) & 0xFFFF
            if seq not in outstanding:
                self._seq = seq
                return seq
        return None

    async def ping(self, dst: str, timeout: float) -> Sample:
        """One echo to ``dst``; ok with the RTT in seconds, or a failure."""
        return (await self.ping_many((dst,), timeout))[0]

    async def ping_many(self, dsts: Sequence[str], timeout: float) -> list[Sample]:
        """Send one echo to each of ``dsts`` at once and wait one shared deadline.

        Results come back in the order of ``dsts``. One timer serves the whole batch, so
        the cost per target is a build, a sendto and a dict entry.
        """
        count = len(dsts)
        if count == 0:
            return []
        loop = asyncio.get_running_loop()
        if self.closed:
            return [Sample.failure(ErrorKind.NETWORK, "icmp engine closed")] * count
        try:
            sock = self._ensure_open(loop)
        except OSError as exc:
            failure = Sample.failure(ErrorKind.NETWORK, f"icmp socket: {_os_detail(exc)}")
            return [failure] * count

        batch = _Batch(loop.create_future(), count)
        results = batch.results
        seqs = batch.seqs
        outstanding = self._outstanding
        stats = self.stats
        family = self.family
        ident = self.ident
        sendto = sock.sendto
        clock = time.perf_counter
        cookies = os.urandom(COOKIE_SIZE * count)
        for index, dst in enumerate(dsts):
            target = self._targets.get(dst) or self._target(dst)
            if target is None:
                results[index] = Sample.failure(
                    ErrorKind.INTERNAL, f"not an IPv{6 if family == socket.AF_INET6 else 4} "
                    f"address: {dst!r}"
                )
                batch.remaining -= 1
                continue
            seq = self._next_seq()
            if seq is None:
                results[index] = Sample.failure(ErrorKind.INTERNAL, "no free icmp sequence")
                batch.remaining -= 1
                continue
            start = index * COOKIE_SIZE
            cookie = cookies[start:start + COOKIE_SIZE]
            packet = build_echo_request(family, ident, seq, cookie)
            pending = _Pending(batch, index, target[0], cookie)
            pending.sent = clock()
            try:
                sendto(packet, target[1])
            except OSError as exc:
                stats.send_errors += 1
                results[index] = Sample.failure(ErrorKind.NETWORK, f"sendto: {_os_detail(exc)}")
                batch.remaining -= 1
                continue
            outstanding[seq] = pending
            seqs.append(seq)
        stats.sent += len(seqs)

        if batch.remaining:
            batch.timer = loop.call_later(timeout, self._expire, batch, timeout)
            try:
                await batch.future
            finally:
                if batch.remaining:
                    # Cancelled by the caller: forget the requests, nothing waits for them.
                    if batch.timer is not None:
                        batch.timer.cancel()
                    for seq in seqs:
                        pending_left = outstanding.get(seq)
                        if pending_left is not None and pending_left.batch is batch:
                            del outstanding[seq]
        return results  # type: ignore[return-value]  # every slot is filled by now

    def _expire(self, batch: _Batch, timeout: float) -> None:
        """The batch deadline: whatever is still open timed out."""
        outstanding = self._outstanding
        timed_out = Sample.failure(ErrorKind.TIMEOUT, f"no echo reply within {timeout:g} s")
        results = batch.results
        expired = 0
        for seq in batch.seqs:
            pending = outstanding.get(seq)
            if pending is not None and pending.batch is batch:
                del outstanding[seq]
                results[pending.index] = timed_out
                expired += 1
        self.stats.timeouts += expired
        batch.remaining = 0
        if not batch.future.done():
            batch.future.set_result(None)

    @staticmethod
    def _complete(pending: _Pending, sample: Sample) -> None:
        batch = pending.batch
        if batch.results[pending.index] is not None:
            return
        batch.results[pending.index] = sample
        batch.remaining -= 1
        if batch.remaining <= 0:
            if batch.timer is not None:
                batch.timer.cancel()
            if not batch.future.done():
                batch.future.set_result(None)

    # -- receiving -------------------------------------------------------------

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        recvfrom = sock.recvfrom
        parse = self._parse
        outstanding = self._outstanding
        stats = self.stats
        ignored = stats.ignored
        ident = self.ident
        clock = time.perf_counter
        complete = self._complete
        for _ in range(_DRAIN_LIMIT):
            try:
                data, address = recvfrom(_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                ignored["receive-error"] += 1
                return
            now = clock()
            stats.received += 1
            parsed = parse(data)
            if isinstance(parsed, str):
                ignored[parsed] += 1
                continue
            if parsed.ident != ident:
                ignored["foreign-id"] += 1
                continue
            pending = outstanding.get(parsed.seq)
            if pending is None:
                ignored["unknown-seq"] += 1
                continue
            if isinstance(parsed, EchoReply):
                source = address[0]
                if source != pending.key and source.partition("%")[0] != pending.key:
                    ignored["wrong-source"] += 1
                    continue
                if parsed.payload != pending.cookie:
                    ignored["bad-cookie"] += 1
                    continue
                del outstanding[parsed.seq]
                stats.matched += 1
                complete(pending, Sample.success(now - pending.sent))
            else:
                if parsed.target != pending.key:
                    ignored["wrong-quote"] += 1
                    continue
                del outstanding[parsed.seq]
                stats.unreachable += 1
                names = ERRORS_V6 if self.family == socket.AF_INET6 else ERRORS_V4
                detail = (
                    f"{names.get(parsed.icmp_type, 'icmp error')} "
                    f"(type {parsed.icmp_type} code {parsed.code}) from {address[0]}"
                )
                complete(pending, Sample.failure(ErrorKind.UNREACHABLE, detail))

    def outstanding(self) -> dict[int, tuple[str, bytes]]:
        """Requests in flight as seq -> (target, cookie); for tests and debugging."""
        return {seq: (p.key, p.cookie) for seq, p in self._outstanding.items()}


# -- shared engines ------------------------------------------------------------

_ENGINES: dict[tuple[int, str | None, str | None], IcmpEngine] = {}


def get_engine(family: int, device: str | None = None, source: str | None = None) -> IcmpEngine:
    """The shared engine of one link (family, device, source), created on first use."""
    key = (int(family), device or None, source or None)
    engine = _ENGINES.get(key)
    if engine is None or engine.closed:
        engine = IcmpEngine(family, device, source)
        _ENGINES[key] = engine
    return engine


def close_all() -> None:
    """Close every shared engine (daemon shutdown, test teardown)."""
    engines = list(_ENGINES.values())
    _ENGINES.clear()
    for engine in engines:
        engine.close()


async def probe(spec: ProbeSpec, *, timeout: float) -> Sample:
    """One ICMP echo to ``spec.host`` through the shared engine of the spec's link."""
    try:
        family = family_of(spec.host)
    except ValueError:
        return Sample.failure(ErrorKind.INTERNAL, f"not an IP address: {spec.host!r}")
    return await get_engine(family, spec.device, spec.source).ping(spec.host, timeout)
