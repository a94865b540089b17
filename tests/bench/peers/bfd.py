"""FRR's bfdd (Debian ``frr`` 8.4) as a peer, with a follower that moves the route.

``bfdd`` runs in the site namespace and in isp-a's (the ISP gateway is the BFD peer: single
hop, 198.51.100.2 <-> 198.51.100.1), at FRR's defaults (300 ms x 3: nothing written). FRR
8.4 cannot tie a static route to a BFD session, so the follower (``main``, a helper process
in the site) does what an operator's script would: it subscribes to bfdd's control socket
for peer-state notifications and points the default route at fibre-a while the session is
up and at fibre-b otherwise. The control protocol is internal to FRR (bfdd/bfdctl.h: an
8-byte header ``!IHBB`` length, id, type, version 1; type 4 = notify with a 64-bit flag
word, 1 = peer state; JSON payloads), hence the pinned Debian version.

Per instance (LAB-NOTES-PEERS.md, "Way A"): its own config, pid file, vty directory, zserv
path and control socket in a temporary directory of its own (readable by ``frr``, the user
bfdd drops to, which the caller's private directories are not; removed at stop, the logs
copied to the trial's directory first), no zebra (a peer without ``interface`` needs
none), no TCP vty (``-P 0``), run in the foreground as a tracked lab process so the lab
stops it by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.peers.base import BACKUP, PRIMARY, PeerKind, route_arg
from tests.bench.peers.helper import Helper, add_common_args
from tests.lab.netns import wait_ready
from tests.lab.topology import Lab

__all__ = ["KIND", "BfdPeer", "main", "read_messages"]

BFDD = "/usr/lib/frr/bfdd"
FRR_USER = "frr"
_HEADER = struct.Struct("!IHBB")  # payload length, request id, type, version
_NOTIFY = 4
_PEER_STATE = 1


class BfdPeer:
    """Two bfdd instances and the follower; every process is a tracked lab process."""

    def __init__(self) -> None:
        self._lab: Lab | None = None
        self._procs: list[subprocess.Popen[str]] = []
        self._dir: Path | None = None  # the trial's: follower log, copies of bfdd's logs
        self._frr: Path | None = None  # bfdd's own files

    def _bfdd(self, lab: Lab, ns: str, side: Path, me: str, peer: str) -> None:
        run = side / "run"
        run.mkdir(parents=True)
        conf = side / "frr.conf"
        # No timers written: 300 ms x 3 are bfdd's defaults. `debug bfd peer` puts every
        # state change in the log with its reason.
        conf.write_text(f"frr defaults traditional\ndebug bfd peer\nbfd\n"
                        f" peer {peer} local-address {me}\n !\n!\n")
        for path in (side, run, conf):
            shutil.chown(path, FRR_USER, FRR_USER)
        log = (side / "bfdd.out").open("w")
        self._procs.append(lab.popen(ns, [
            BFDD, "-f", str(conf), "-i", str(run / "bfdd.pid"), "--vty_socket", str(run),
            "-z", str(run / "zserv.api"), "-A", "127.0.0.1", "-P", "0",
            "--bfdctl", str(run / "bfdd.sock"), "--log", f"file:{side / 'bfdd.log'}",
        ], stdout=log, stderr=subprocess.STDOUT))
        log.close()

    def start(self, lab: Lab, workdir: Path) -> None:
        self._lab = lab
        self._dir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self._frr = Path(tempfile.mkdtemp(prefix="lifeline-bfdd-"))
        os.chmod(self._frr, 0o755)
        a = lab.link(PRIMARY)
        self._bfdd(lab, a.isp_ns, self._frr / "isp", str(a.gateway), str(a.site_addr))
        self._bfdd(lab, lab.site, self._frr / "site", str(a.site_addr), str(a.gateway))
        with (workdir / "follower.log").open("w") as log:
            follower = lab.popen(lab.site, lab.python_argv(
                "tests.bench.peers.bfd", "--primary", route_arg(lab, PRIMARY),
                "--backup", route_arg(lab, BACKUP), "--peer", str(a.gateway),
                "--socket", str(self._frr / "site" / "run" / "bfdd.sock")),
                stdout=subprocess.PIPE, stderr=log)
        self._procs.append(follower)
        wait_ready(follower, "bfd follower", timeout=15.0)

    def stop(self) -> None:
        if self._lab is not None:
            for proc in reversed(self._procs):
                self._lab.stop(proc, grace=5.0)
        self._procs = []
        if self._frr is not None:
            if self._dir is not None:
                for side in ("site", "isp"):
                    log = self._frr / side / "bfdd.log"
                    if log.exists():
                        shutil.copyfile(log, self._dir / f"bfdd-{side}.log")
            shutil.rmtree(self._frr, ignore_errors=True)
            self._frr = None

    def log_tail(self) -> str:
        if self._dir is None:
            return ""
        paths = [self._dir / "follower.log"]
        for side in ("site", "isp"):
            live = self._frr / side / "bfdd.log" if self._frr is not None else None
            paths.append(live if live is not None and live.exists()
                         else self._dir / f"bfdd-{side}.log")
        return "\n".join(f"--- {p.name}\n{p.read_text()[-1500:]}" for p in paths if p.exists())


KIND = PeerKind(
    name="bfd",
    label="FRR bfdd 300 ms x 3 + follower",
    settings="bfdd (site) <-> bfdd (isp-a gateway), single hop, FRR defaults 300 ms x 3; "
             "a follower on bfdd's control socket moves the default route (up: fibre-a, "
             "otherwise fibre-b); no conntrack flush",
    make=BfdPeer,
    period=0.3,
    move_bound=10.0,
    tools=(BFDD,),
)


# --- the follower --------------------------------------------------------------------------


def read_messages(buf: bytearray) -> list[dict[str, object]]:
    """Take every complete control message off the front of ``buf``; their JSON bodies."""
    out: list[dict[str, object]] = []
    while len(buf) >= _HEADER.size:
        length, _, _, _ = _HEADER.unpack_from(buf)
        if len(buf) < _HEADER.size + length:
            break
        body = bytes(buf[_HEADER.size:_HEADER.size + length])
        del buf[:_HEADER.size + length]
        try:
            data = json.loads(body)
        except ValueError:
            continue
        if isinstance(data, dict):
            out.append(data)
    return out


def _connect(h: Helper, path: str) -> socket.socket | None:
    """bfdd makes its socket a moment after it starts: try for up to 10 s."""
    end = time.monotonic() + 10.0
    while h.running() and time.monotonic() < end:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return sock
        except OSError:
            sock.close()
            h.sleep(0.1)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.peers.bfd",
                                     description="follow bfdd's session state with the "
                                                 "default route (runs in the site)")
    add_common_args(parser)
    parser.add_argument("--peer", required=True, help="the BFD peer whose state to follow")
    parser.add_argument("--socket", required=True, help="bfdd's --bfdctl socket")
    args = parser.parse_args(argv)
    h = Helper("bfd-follower", args.primary, args.backup, args.max_seconds)
    # Until the session is up, the backup carries the traffic (as a static route tied to
    # BFD would be absent).
    h.use(h.backup, "session not up yet")
    sock = _connect(h, args.socket)
    if sock is None:
        h.log(f"could not connect to {args.socket}")
        return 1
    payload = struct.pack("=Q", _PEER_STATE)
    sock.sendall(_HEADER.pack(len(payload), 1, _NOTIFY, 1) + payload)
    sock.settimeout(0.2)
    h.ready()
    buf = bytearray()
    while h.running():
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except InterruptedError:
            continue
        if not chunk:
            h.log("bfdd closed its control socket")
            break
        buf += chunk
        for msg in read_messages(buf):
            if msg.get("op") != "status" or msg.get("peer-address") != args.peer:
                continue
            state = str(msg.get("state"))
            if state == "up":
                h.use(h.primary, "BFD session up")
            else:
                h.use(h.backup, f"BFD session {state}")
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
