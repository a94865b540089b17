"""Data-plane stream: measures what a failover costs a call, not what the probes see.

A sender in the lab's ``lan`` namespace sends sequence-numbered UDP packets (RTP-sized, to
port 16384, an RTP port, so lifeline's RTP conntrack flush covers the flow) to the sink in
``inet`` at a fixed interval; a receiver there records the monotonic arrival time of each
one. CLOCK_MONOTONIC is one clock for the whole machine, in every namespace, so a test can
set the time it injected a fault against the gaps the receiver saw. With ``two_way`` the sink
echoes each packet to its source and the sender records the replies: a NAT'ed flow whose
replies return by a dead link (the SNAT/conntrack trap) shows up there. ``source_port``
pins the sender's port (a VPN-like flow, e.g. 51820 <-> 51820: one 5-tuple for its whole
life, which a stale conntrack entry keeps on the dead link); by default it is ephemeral.

The module is both the library (``Stream``, ``StreamResult``, ``Gap``) and the helper
processes (``python -m tests.lab.stream send|recv``), which the library runs as tracked lab
processes; ``tcp_listener`` (``tcp-listen``) gives TCP probes a far target to connect to.
Every sender is bounded in packet count and time, every receiver and listener in time.
Sender and receiver write their results as JSON when they finish or get SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from tests.lab.netns import wait_ready

if TYPE_CHECKING:
    from tests.lab.topology import Lab

__all__ = ["Gap", "Stream", "StreamResult", "gaps_in", "main", "tcp_listener"]

# seq, send time (monotonic), flags; bit 0 of flags marks an echo from the sink.
_HEADER = struct.Struct("!QdI")
_ECHO = 1
DEFAULT_PORT = 16384
DEFAULT_SIZE = 172  # RTP header + 20 ms of G.711


# --- results ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Gap:
    """A stretch of time with no packet arriving: from the last one before to the next one."""

    start: float  # monotonic time of the last arrival before the gap (or stream start)
    end: float  # monotonic time of the first arrival after it (or stream end)
    seconds: float
    lost_packets: int


def gaps_in(
    arrivals: list[tuple[float, int]],
    *,
    start: float,
    end: float,
    sent: int,
    min_gap: float,
) -> list[Gap]:
    """Gaps of at least ``min_gap`` seconds in ``arrivals`` ((time, seq), any order).

    The time before the first arrival and after the last one count as gaps too (measured
    from the first send and to the last send), so a flow that never recovers shows one.
    """
    ordered = sorted(arrivals)
    out: list[Gap] = []
    if not ordered:
        if end - start >= min_gap:
            out.append(Gap(start, end, end - start, sent))
        return out
    first_t, first_seq = ordered[0]
    if first_t - start >= min_gap:
        out.append(Gap(start, first_t, first_t - start, first_seq))
    for (t0, s0), (t1, s1) in itertools.pairwise(ordered):
        if t1 - t0 >= min_gap:
            out.append(Gap(t0, t1, t1 - t0, max(s1 - s0 - 1, 0)))
    last_t, last_seq = ordered[-1]
    if end - last_t >= min_gap:
        out.append(Gap(last_t, end, end - last_t, max(sent - 1 - last_seq, 0)))
    return out


@dataclass(frozen=True)
class StreamResult:
    """What one run of the stream saw. Times are ``time.monotonic()`` values."""

    sent: int
    start: float  # first send
    end: float  # last send
    interval: float
    arrivals: list[tuple[float, int]]  # at the sink: (time, seq)
    send_errors: int = 0
    two_way: bool = False
    replies: list[tuple[float, int]] = field(default_factory=list)  # back at the sender

    @property
    def received(self) -> int:
        return len({seq for _, seq in self.arrivals})

    @property
    def lost(self) -> int:
        return self.sent - self.received

    @property
    def replied(self) -> int:
        return len({seq for _, seq in self.replies})

    def gaps(self, min_gap: float = 0.05) -> list[Gap]:
        """Gaps in what reached the sink, at least ``min_gap`` seconds long."""
        return gaps_in(self.arrivals, start=self.start, end=self.end, sent=self.sent,
                       min_gap=min_gap)

    def reply_gaps(self, min_gap: float = 0.05) -> list[Gap]:
        """Gaps in the echoes that came back (two-way only): the round-trip view."""
        return gaps_in(self.replies, start=self.start, end=self.end, sent=self.sent,
                       min_gap=min_gap)

    def largest_gap(self) -> Gap | None:
        """The longest time without an arrival at the sink (None if nothing was sent)."""
        if self.sent == 0:
            return None
        gaps = self.gaps(min_gap=0.0)
        return max(gaps, key=lambda g: g.seconds) if gaps else None

    def largest_reply_gap(self) -> Gap | None:
        if self.sent == 0:
            return None
        gaps = self.reply_gaps(min_gap=0.0)
        return max(gaps, key=lambda g: g.seconds) if gaps else None


# --- the library side ----------------------------------------------------------------------------


class Stream:
    """A sender in ``lab.lan`` and a receiver in ``lab.inet``, run as tracked lab processes."""

    def __init__(
        self,
        lab: Lab,
        *,
        interval: float = 0.005,
        max_seconds: float = 30.0,
        count: int | None = None,
        two_way: bool = False,
        port: int = DEFAULT_PORT,
        size: int = DEFAULT_SIZE,
        source_port: int | None = None,
    ) -> None:
        if interval <= 0 or max_seconds <= 0:
            raise ValueError("interval and max_seconds must be > 0")
        if source_port is not None and not 1 <= source_port <= 65535:
            raise ValueError(f"source_port must be in 1..65535, got {source_port}")
        self._lab = lab
        self.interval = interval
        self.max_seconds = max_seconds
        self.count = count if count is not None else int(max_seconds / interval) + 1
        self.two_way = two_way
        self.port = port
        self.source_port = source_port
        self.size = max(size, _HEADER.size)
        self._dir: Path | None = None
        self._sender: subprocess.Popen[str] | None = None
        self._receiver: subprocess.Popen[str] | None = None
        self._result: StreamResult | None = None

    def __enter__(self) -> Stream:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._result is None and self._dir is not None:
            with contextlib.suppress(Exception):
                self.stop()

    @property
    def running(self) -> bool:
        return self._sender is not None and self._sender.poll() is None

    def start(self) -> None:
        """Start the receiver, wait until it listens, then start the sender."""
        if self._dir is not None:
            raise RuntimeError("stream already started")
        self._dir = Path(tempfile.mkdtemp(prefix="lifeline-stream-"))
        sink = str(self._lab.sink)
        # The receiver outlives the sender by a margin so the last packets are counted.
        recv_args = ["recv", "--bind", sink, "--port", str(self.port),
                     "--out", str(self._dir / "recv.json"),
                     "--max-seconds", str(self.max_seconds + 10.0)]
        if self.two_way:
            recv_args.append("--echo")
        self._receiver = self._lab.popen(
            self._lab.inet, self._lab.python_argv("tests.lab.stream", *recv_args),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        wait_ready(self._receiver, "stream receiver")
        send_args = ["send", "--to", sink, "--port", str(self.port),
                     "--interval", str(self.interval), "--count", str(self.count),
                     "--max-seconds", str(self.max_seconds), "--size", str(self.size),
                     "--out", str(self._dir / "send.json")]
        if self.two_way:
            send_args.append("--two-way")
        if self.source_port is not None:
            send_args += ["--source-port", str(self.source_port)]
        self._sender = self._lab.popen(
            self._lab.lan, self._lab.python_argv("tests.lab.stream", *send_args),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        wait_ready(self._sender, "stream sender")

    def wait(self, timeout: float | None = None) -> StreamResult:
        """Let the sender run to its count/time limit, then collect the result."""
        assert self._sender is not None, "stream not started"
        limit = timeout if timeout is not None else self.max_seconds + 10.0
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._sender.wait(timeout=limit)
        return self.stop()

    def stop(self) -> StreamResult:
        """Stop sender then receiver (SIGTERM, by PID) and read what they wrote."""
        if self._result is not None:
            return self._result
        if self._dir is None or self._sender is None or self._receiver is None:
            raise RuntimeError("stream not started")
        try:
            self._lab.stop(self._sender)
            # Packets still in flight (a delayed link holds them up to a few 100 ms).
            time.sleep(0.3)
            self._lab.stop(self._receiver)
            for proc, name in ((self._sender, "sender"), (self._receiver, "receiver")):
                if proc.returncode not in (0, -signal.SIGTERM):
                    raise RuntimeError(f"stream {name} exited with {proc.returncode}")
            send = json.loads((self._dir / "send.json").read_text())
            recv = json.loads((self._dir / "recv.json").read_text())
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._result = StreamResult(
            sent=int(send["sent"]),
            start=float(send["start"]),
            end=float(send["end"]),
            interval=self.interval,
            arrivals=[(float(t), int(s)) for t, s in recv["arrivals"]],
            send_errors=int(send["send_errors"]),
            two_way=self.two_way,
            replies=[(float(t), int(s)) for t, s in send["replies"]],
        )
        return self._result


def tcp_listener(
    lab: Lab, port: int, addrs: list[str] | None = None, max_seconds: float = 3600.0
) -> subprocess.Popen[str]:
    """Start a TCP listener in ``lab.inet`` on ``port`` of each far target (default all),
    for ``tcp: 192.0.2.1:PORT`` probe targets. A tracked lab process: stop it with
    ``lab.stop(proc)`` or let ``lab.destroy()`` do it."""
    targets = addrs if addrs is not None else [str(a) for a in lab.targets]
    argv = ["tcp-listen", "--port", str(port), "--max-seconds", str(max_seconds)]
    for addr in targets:
        argv += ["--bind", addr]
    proc = lab.popen(lab.inet, lab.python_argv("tests.lab.stream", *argv),
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_ready(proc, "tcp listener")
    except BaseException:
        lab.stop(proc)
        raise
    return proc


# --- the helper processes ------------------------------------------------------------------------

_stop = False


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _stop
    _stop = True


def _stopping() -> bool:
    # A call, not a bare read: the flag changes under the loops' feet (signal handler).
    return _stop


def _write_json(path: Path, data: dict[str, Any]) -> None:
    # Write then rename, so the library never reads half a file.
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _run_recv(args: argparse.Namespace) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.bind, args.port))
    sock.settimeout(0.05)
    arrivals: list[tuple[float, int]] = []
    echoed = 0
    bad = 0
    end = time.monotonic() + args.max_seconds
    print("ready", flush=True)
    try:
        while not _stopping() and time.monotonic() < end:
            try:
                data, peer = sock.recvfrom(65535)
            except TimeoutError:
                continue
            now = time.monotonic()
            if len(data) < _HEADER.size:
                bad += 1
                continue
            seq, _, flags = _HEADER.unpack_from(data)
            if flags & _ECHO:
                bad += 1
                continue
            arrivals.append((now, seq))
            if args.echo:
                reply = _HEADER.pack(seq, now, _ECHO) + data[_HEADER.size:]
                with contextlib.suppress(OSError):
                    sock.sendto(reply, peer)
                    echoed += 1
    finally:
        _write_json(Path(args.out), {"arrivals": arrivals, "echoed": echoed, "bad": bad})
    return 0


def _run_send(args: argparse.Namespace) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if args.source_port:
        sock.bind(("", args.source_port))
    # Unconnected on purpose: ICMP errors (no route during a failover) are then not
    # reported on later sends, so the sender keeps its pace whatever the network does.
    sock.setblocking(False)
    padding = b"\0" * (args.size - _HEADER.size)
    replies: list[tuple[float, int]] = []
    sent = 0
    errors = 0
    start = time.monotonic()
    last_send = start
    deadline = start + args.max_seconds
    print("ready", flush=True)

    def drain(until: float, *, stoppable: bool = True) -> None:
        """Collect echoes (two-way) or just sleep until ``until`` (or a stop, if
        ``stoppable``)."""
        while not (stoppable and _stopping()):
            wait = until - time.monotonic()
            if wait <= 0:
                return
            if not args.two_way:
                time.sleep(min(wait, 0.05))
                continue
            readable, _, _ = select.select([sock], [], [], min(wait, 0.05))
            if not readable:
                continue
            while True:
                try:
                    data = sock.recv(65535)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # a queued ICMP error: nothing to read now
                if len(data) >= _HEADER.size:
                    seq, _, flags = _HEADER.unpack_from(data)
                    if flags & _ECHO:
                        replies.append((time.monotonic(), seq))

    try:
        for seq in range(args.count):
            due = start + seq * args.interval
            if due > deadline or _stopping():
                break
            drain(due)
            if _stopping():
                break
            last_send = time.monotonic()
            try:
                sock.sendto(_HEADER.pack(seq, last_send, 0) + padding, (args.to, args.port))
            except OSError:
                errors += 1
            sent += 1
        if args.two_way and not _stopping():
            drain(time.monotonic() + args.linger)
        elif args.two_way:
            # Stopped: the echoes of the last packets may still be on their way (the sink
            # answers within a millisecond); a short drain the stop does not cut keeps them,
            # so a reply is never counted lost only because SIGTERM came first.
            drain(time.monotonic() + 0.05, stoppable=False)
    finally:
        _write_json(Path(args.out), {
            "start": start, "end": last_send, "sent": sent, "send_errors": errors,
            "replies": replies,
        })
    return 0


def _run_tcp_listen(args: argparse.Namespace) -> int:
    """Accept and close TCP connections on each address: a far target for TCP probes."""
    socks = []
    for addr in args.bind:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((addr, args.port))
        sock.listen(128)
        socks.append(sock)
    end = time.monotonic() + args.max_seconds
    print("ready", flush=True)
    while not _stopping() and time.monotonic() < end:
        readable, _, _ = select.select(socks, [], [], 0.1)
        for sock in readable:
            with contextlib.suppress(OSError):
                conn, _ = sock.accept()
                conn.close()
    for sock in socks:
        sock.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.stream",
                                     description="lab data-plane stream helper")
    sub = parser.add_subparsers(dest="role", required=True)
    recv = sub.add_parser("recv", help="sink: record arrivals (and echo with --echo)")
    recv.add_argument("--bind", required=True)
    recv.add_argument("--port", type=int, default=DEFAULT_PORT)
    recv.add_argument("--out", required=True)
    recv.add_argument("--max-seconds", type=float, default=60.0)
    recv.add_argument("--echo", action="store_true")
    send = sub.add_parser("send", help="source: send numbered packets at a fixed interval")
    send.add_argument("--to", required=True)
    send.add_argument("--port", type=int, default=DEFAULT_PORT)
    send.add_argument("--out", required=True)
    send.add_argument("--interval", type=float, default=0.005)
    send.add_argument("--count", type=int, default=2000)
    send.add_argument("--max-seconds", type=float, default=60.0)
    send.add_argument("--size", type=int, default=DEFAULT_SIZE)
    send.add_argument("--two-way", action="store_true")
    send.add_argument("--source-port", type=int, default=0,
                      help="send from this fixed port (default: an ephemeral one)")
    send.add_argument("--linger", type=float, default=0.3,
                      help="two-way: wait this long for the last echoes")
    tcp = sub.add_parser("tcp-listen", help="accept and close TCP connections")
    tcp.add_argument("--bind", action="append", required=True)
    tcp.add_argument("--port", type=int, required=True)
    tcp.add_argument("--max-seconds", type=float, default=3600.0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    if args.role == "recv":
        return _run_recv(args)
    if args.role == "tcp-listen":
        return _run_tcp_listen(args)
    args.size = max(args.size, _HEADER.size)
    return _run_send(args)


if __name__ == "__main__":
    sys.exit(main())
