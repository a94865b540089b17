"""The naive ping loop: what many sites run before they run anything else.

Once a second it pings one far target through fibre-a (``ping -c1 -W1 -I wan-a``); the first
lost ping moves the default route to fibre-b, the first answered one moves it back. No
count, no hold-down, one target. ``NaivePing`` starts it in a lab (``python -m
tests.bench.peers.naive`` in the site namespace, a tracked lab process); ``main`` is the
loop itself.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from tests.bench.peers.base import PRIMARY, PeerKind, ProcessPeer, add_probe_paths, route_arg
from tests.bench.peers.helper import Helper, add_common_args
from tests.lab.netns import wait_ready
from tests.lab.topology import Lab

__all__ = ["KIND", "NaivePing", "main"]

INTERVAL = 1.0  # a ping starts every second
TIMEOUT = 1  # ping -W1


class NaivePing(ProcessPeer):
    """The loop as a ``Peer``: probe paths on the site, the route on fibre-a, the loop."""

    def start(self, lab: Lab, workdir: Path) -> None:
        self._lab = lab
        workdir.mkdir(parents=True, exist_ok=True)
        self._log = workdir / "naive.log"
        add_probe_paths(lab)
        target = str(lab.targets[0])
        with self._log.open("w") as log:
            self._proc = lab.popen(lab.site, lab.python_argv(
                "tests.bench.peers.naive", "--primary", route_arg(lab, PRIMARY),
                "--backup", route_arg(lab, "fibre-b"), "--target", target,
                "--device", lab.link(PRIMARY).site_ifname),
                stdout=subprocess.PIPE, stderr=log)
        wait_ready(self._proc, "naive ping loop")


KIND = PeerKind(
    name="naive",
    label="naive ping loop (1 s, switch on first loss)",
    settings="ping -c1 -W1 -I wan-a 192.0.2.1 every 1 s; first loss -> fibre-b, "
             "first answer -> fibre-a; no conntrack flush",
    make=NaivePing,
    period=INTERVAL,
    move_bound=10.0,
    tools=("ping",),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.peers.naive",
                                     description="naive ping loop (runs in the site)")
    add_common_args(parser)
    parser.add_argument("--target", required=True)
    parser.add_argument("--device", required=True, help="the primary's interface")
    args = parser.parse_args(argv)
    h = Helper("naive", args.primary, args.backup, args.max_seconds)
    h.use(h.primary, "start")
    h.ready()
    next_at = time.monotonic()
    while h.running():
        answered = h.ping(args.target, args.device, timeout=TIMEOUT)
        if answered is None:
            break
        if answered:
            h.use(h.primary, f"{args.target} answered")
        else:
            h.use(h.backup, f"{args.target} did not answer within {TIMEOUT} s")
        next_at += INTERVAL
        if not h.sleep(next_at - time.monotonic()):
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
