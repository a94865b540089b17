"""Long-lived two-way flows between the LAN and inet: what a failover's conntrack flush is for.

Where ``lab.stream`` measures one RTP-like stream, this runs several flows at once, each the
kind a site depends on after a failover: a fixed-port UDP flow both of whose ends send on
their own every ``interval`` (a WireGuard tunnel on udp/51820, IPsec NAT-T, RTP with symmetric
ports), where the far end answers to the address it last heard from, as WireGuard roams and
an SBC latches; and a TCP client that sends a few bytes every ``interval`` to an echo server
and, when its connection breaks, records why (``reset`` for ECONNRESET/EPIPE) and connects
anew. One helper process in the LAN holds the LAN ends, one in inet the far ends; times are
``time.monotonic()`` (one clock for every namespace). Each end records what reached it and
from where, so a test sees a flow come back and through which NAT address.

The module is both the library (``Flows``, ``UdpFlow``, ``TcpFlow``, ``FlowsResult``) and the
helper (``python -m tests.lab.flows``), run as tracked lab processes: ``Lab.destroy()`` kills
them if a test does not stop them. Every helper is bounded in time and writes its JSON when it
ends or gets SIGTERM. IPv6 endpoints are written ``[2001:db8::1]:51820``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
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
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from tests.lab.netns import wait_ready

if TYPE_CHECKING:
    from tests.lab.topology import Lab

__all__ = ["EndResult", "Flows", "FlowsResult", "TcpFlow", "UdpFlow", "main", "split_endpoint"]

_SEQ = struct.Struct("!Q")
_TCP_CHUNK = b"lifeline\n"


def split_endpoint(text: str) -> tuple[str, int]:
    """``192.0.2.10:51820`` or ``[2001:db8::1]:51820`` -> (address, port)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"{text!r}: want ADDRESS:PORT")
    return host.strip("[]"), int(port)


def _family(addr: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def _endpoint(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


# --- the library side --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UdpFlow:
    """A fixed-port UDP flow: ``lan`` (address:port in the LAN) <-> ``far`` (in inet)."""

    name: str
    lan: str
    far: str


@dataclass(frozen=True, slots=True)
class TcpFlow:
    """A reconnecting TCP client from ``lan`` (an address, IPv6 in brackets; the port is the
    kernel's) to an echo server at ``far``."""

    name: str
    lan: str
    far: str


@dataclass(frozen=True)
class EndResult:
    """What one end of one flow saw: arrivals (time, sender as address:port); for TCP, the
    client's connection events (time, "connected"|"reset"|..., local port) or the server's
    accepted peers (time, "accepted", peer)."""

    arrivals: list[tuple[float, str]] = field(default_factory=list)
    events: list[tuple[float, str, str]] = field(default_factory=list)
    sent: int = 0
    send_errors: int = 0

    def after(self, t: float) -> list[tuple[float, str]]:
        return [a for a in self.arrivals if a[0] > t]

    def first_after(self, t: float) -> float | None:
        return next((when for when, _ in sorted(self.arrivals) if when > t), None)

    def senders_between(self, t0: float, t1: float = float("inf")) -> set[str]:
        """Where the arrivals in (t0, t1] came from (the far end sees the NAT address)."""
        return {who for when, who in self.arrivals if t0 < when <= t1}


@dataclass(frozen=True)
class FlowsResult:
    lan: dict[str, EndResult]
    far: dict[str, EndResult]


def _read(path: Path) -> dict[str, EndResult]:
    doc = json.loads(path.read_text())
    return {
        name: EndResult(
            arrivals=[(float(t), str(w)) for t, w in data["arrivals"]],
            events=[(float(t), str(k), str(d)) for t, k, d in data["events"]],
            sent=int(data["sent"]),
            send_errors=int(data["send_errors"]),
        )
        for name, data in doc.items()
    }


class Flows:
    """The LAN ends in ``lab.lan`` and the far ends in ``lab.inet``, as tracked lab processes;
    a context manager (``stop()`` gives the result; leaving stops them anyway)."""

    def __init__(self, lab: Lab, *, udp: Sequence[UdpFlow] = (), tcp: Sequence[TcpFlow] = (),
                 interval: float = 0.02, max_seconds: float = 60.0) -> None:
        self._lab = lab
        self.udp, self.tcp = list(udp), list(tcp)
        self.interval, self.max_seconds = interval, max_seconds
        self._dir: Path | None = None
        self._procs: list[subprocess.Popen[str]] = []
        self._result: FlowsResult | None = None

    def __enter__(self) -> Flows:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._result is None:
            with contextlib.suppress(Exception):
                self.stop()

    def start(self) -> None:
        """Far ends first (they must listen before the LAN sends), then the LAN ends."""
        self._dir = Path(tempfile.mkdtemp(prefix="lifeline-flows-"))
        common = ["--interval", str(self.interval), "--max-seconds", str(self.max_seconds)]
        far = [*common, "--out", str(self._dir / "far.json")]
        far += [a for f in self.udp for a in ("--udp-learn", f"{f.name}={f.far}")]
        far += [a for f in self.tcp for a in ("--tcp-echo", f"{f.name}={f.far}")]
        lan = [*common, "--out", str(self._dir / "lan.json")]
        lan += [a for f in self.udp for a in ("--udp", f"{f.name}={f.lan}>{f.far}")]
        lan += [a for f in self.tcp for a in ("--tcp", f"{f.name}={f.lan}>{f.far}")]
        for ns, args, what in ((self._lab.inet, far, "far ends"), (self._lab.lan, lan, "LAN ends")):
            proc = self._lab.popen(ns, self._lab.python_argv("tests.lab.flows", *args),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self._procs.append(proc)
            wait_ready(proc, f"flows {what}")

    def stop(self) -> FlowsResult:
        """Stop the LAN ends, then the far ones (SIGTERM, by PID), and read what they saw."""
        if self._result is not None:
            return self._result
        if self._dir is None or len(self._procs) != 2:
            raise RuntimeError("flows not started")
        try:
            for proc in reversed(self._procs):
                self._lab.stop(proc, grace=3.0)
                if proc.returncode not in (0, -signal.SIGTERM):
                    err = proc.stderr.read() if proc.stderr else ""
                    raise RuntimeError(f"flows helper exited with {proc.returncode}: {err}")
            self._result = FlowsResult(lan=_read(self._dir / "lan.json"),
                                       far=_read(self._dir / "far.json"))
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)
        return self._result


# --- the helper process --------------------------------------------------------------------------


class _End:
    """One end's record, filled by its thread and written at the end."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, str]] = []
        self.events: list[tuple[float, str, str]] = []
        self.sent = 0
        self.send_errors = 0

    def doc(self) -> dict[str, Any]:
        return {"arrivals": self.arrivals, "events": self.events, "sent": self.sent,
                "send_errors": self.send_errors}


def _bound(local: str, kind: socket.SocketKind) -> socket.socket:
    """A socket bound to ``local`` (in the main thread, so a bind error stops the helper
    before it says ready)."""
    addr, port = split_endpoint(local)
    sock = socket.socket(_family(addr), kind)
    if kind == socket.SOCK_STREAM:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((addr, port))
    sock.setblocking(False)
    return sock


def _udp(end: _End, sock: socket.socket, remote: str | None, interval: float,
         stop: threading.Event, deadline: float) -> None:
    """Send every ``interval`` to ``remote`` or, without one, to whoever spoke last."""
    peer = split_endpoint(remote) if remote else None
    next_send = time.monotonic()
    seq = 0
    try:
        while not stop.is_set() and (now := time.monotonic()) < deadline:
            if now >= next_send:
                if peer is not None:
                    try:
                        sock.sendto(_SEQ.pack(seq) + b"\0" * 64, peer)
                    except OSError:
                        end.send_errors += 1
                    seq += 1
                    end.sent += 1
                next_send += interval
            readable, _, _ = select.select([sock], [], [], max(0.0, min(next_send - now, 0.05)))
            while readable:
                try:
                    _, frm = sock.recvfrom(2048)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # a queued ICMP error: nothing to read
                end.arrivals.append((time.monotonic(), _endpoint(frm[0], frm[1])))
                if remote is None:
                    peer = (frm[0], frm[1])  # latch: answer where the flow comes from now
    finally:
        sock.close()


def _why(exc: OSError) -> str:
    if exc.errno in (errno.ECONNRESET, errno.EPIPE):
        return "reset"
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)


def _tcp_client(end: _End, local: str, remote: str, interval: float, stop: threading.Event,
                deadline: float, patience: float) -> None:
    """Send a few bytes every ``interval``; on a broken connection record why and reconnect."""
    addr, _ = split_endpoint(local)
    far = split_endpoint(remote)
    while not stop.is_set() and time.monotonic() < deadline:
        sock = socket.socket(_family(addr), socket.SOCK_STREAM)
        sock.bind((addr, 0))
        sock.settimeout(1.0)
        try:
            sock.connect(far)
        except OSError as exc:
            end.events.append((time.monotonic(), "connect failed", _why(exc)))
            sock.close()
            stop.wait(0.2)
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        port = str(sock.getsockname()[1])
        end.events.append((time.monotonic(), "connected", port))
        last_reply = next_send = time.monotonic()
        reason = "stopped"
        while not stop.is_set() and (now := time.monotonic()) < deadline:
            if now - last_reply > patience:
                reason = f"no reply for {patience:g} s"
                break
            try:
                if now >= next_send:
                    next_send += interval
                    with contextlib.suppress(BlockingIOError):
                        sock.send(_TCP_CHUNK)
                        end.sent += 1
                readable, _, _ = select.select([sock], [], [], 0.02)
                if readable:
                    data = sock.recv(65536)
                    if not data:
                        reason = "closed"
                        break
                    last_reply = time.monotonic()
                    end.arrivals.append((last_reply, port))
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                reason = _why(exc)
                break
        end.events.append((time.monotonic(), reason, port))
        sock.close()


def _tcp_echo(end: _End, server: socket.socket, stop: threading.Event, deadline: float) -> None:
    """Echo every connection's bytes back; record whom it accepted."""
    server.listen(16)
    conns: list[socket.socket] = []
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            readable, _, _ = select.select([server, *conns], [], [], 0.05)
            for sock in readable:
                if sock is server:
                    conn, frm = server.accept()
                    conn.setblocking(False)
                    conns.append(conn)
                    end.events.append((time.monotonic(), "accepted", _endpoint(frm[0], frm[1])))
                    continue
                try:
                    data = sock.recv(65536)
                    if data:
                        end.arrivals.append((time.monotonic(),
                                             _endpoint(*sock.getpeername()[:2])))
                        sock.send(data)
                        continue
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    pass
                conns.remove(sock)
                sock.close()
    finally:
        for sock in (server, *conns):
            sock.close()


def _named(spec: str) -> tuple[str, str, str | None]:
    """``name=local>remote`` or ``name=local`` -> (name, local, remote)."""
    name, _, rest = spec.partition("=")
    local, _, remote = rest.partition(">")
    return name, local, remote or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.flows",
                                     description="lab two-way flows helper")
    parser.add_argument("--out", required=True)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    parser.add_argument("--patience", type=float, default=20.0,
                        help="TCP: reconnect after this long without an echo")
    parser.add_argument("--udp", action="append", default=[], help="NAME=LOCAL>REMOTE")
    parser.add_argument("--udp-learn", action="append", default=[], help="NAME=LOCAL")
    parser.add_argument("--tcp", action="append", default=[], help="NAME=LOCALADDR>REMOTE")
    parser.add_argument("--tcp-echo", action="append", default=[], help="NAME=LOCAL")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    deadline = time.monotonic() + args.max_seconds
    ends: dict[str, _End] = {}
    threads: list[threading.Thread] = []

    def spawn(name: str, target: Any, *targs: Any) -> None:
        ends[name] = _End()
        threads.append(threading.Thread(target=target, args=(ends[name], *targs),
                                        name=name, daemon=True))

    for spec in args.udp + args.udp_learn:
        name, local, remote = _named(spec)
        spawn(name, _udp, _bound(local, socket.SOCK_DGRAM), remote, args.interval, stop,
              deadline)
    for spec in args.tcp:
        name, local, remote = _named(spec)
        if remote is None:
            parser.error(f"--tcp {spec}: want NAME=LOCALADDR>REMOTE")
        spawn(name, _tcp_client, f"{local}:0", remote, args.interval, stop, deadline,
              args.patience)
    for spec in args.tcp_echo:
        name, local, _ = _named(spec)
        spawn(name, _tcp_echo, _bound(local, socket.SOCK_STREAM), stop, deadline)
    for thread in threads:
        thread.start()
    print("ready", flush=True)
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            stop.wait(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=2.0)
        tmp = Path(args.out).with_suffix(".tmp")
        tmp.write_text(json.dumps({name: end.doc() for name, end in ends.items()}))
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
