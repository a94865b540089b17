"""A re-creation of mwan3's default link tracking (OpenWrt), labelled as such everywhere.

mwan3 itself needs OpenWrt (netifd, ubus, uci, procd, its hotplug scripts), so this is its
tracker's loop, ``mwan3track``, rewritten in Python with mwan3's shipped numbers: the
defaults ``mwan3track`` falls back to (count 1, timeout 4 s, interval 10 s, down 5, up 5,
size 56, max_ttl 60; failure and recovery interval = interval; check_quality off) and the
shipped ``/etc/config/mwan3`` ``wan`` interface (reliability 2 of its track IPs; here the
lab's three far targets; initial state online). Source: openwrt/packages ``net/mwan3``
2.12.2 at commit 0521bb5679 (``files/usr/sbin/mwan3track``, ``files/etc/config/mwan3``).

The loop, as mwan3track runs it: each round pings the targets one after another until
``reliability`` have answered; a round with fewer answers takes one from the score (which
starts at down + up), a good one adds one; the interface goes offline when the score falls
to ``up`` (after ``down`` bad rounds; the score then drops to 0) and online again when it
climbs back to ``up`` (``up`` good rounds); between rounds it sleeps ``interval``. Offline
moves the default route to fibre-b, online back to fibre-a (mwan3 moves its policy; the
effect on new traffic is the same). On OpenWrt a DHCP WAN whose carrier goes is taken down
by netifd (ifdown), and mwan3's hotplug drops it at once; the re-creation does that too
(a static WAN, with netifd's ``force_link 1``, would wait for the tracker). No conntrack
flush: the shipped config sets no ``flush_conntrack``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.bench.peers.base import (
    BACKUP,
    PRIMARY,
    PeerKind,
    ProcessPeer,
    add_probe_paths,
    route_arg,
)
from tests.bench.peers.helper import Helper, add_common_args
from tests.lab.netns import wait_ready
from tests.lab.topology import Lab

__all__ = ["KIND", "MWAN3", "Mwan3Peer", "Mwan3Settings", "main"]


@dataclass(frozen=True, slots=True)
class Mwan3Settings:
    """mwan3track's knobs at their shipped values (see the module docstring)."""

    reliability: int = 2
    count: int = 1
    timeout: int = 4
    interval: float = 10.0
    down: int = 5
    up: int = 5
    size: int = 56
    max_ttl: int = 60

    @property
    def failure_interval(self) -> float:
        return self.interval

    @property
    def recovery_interval(self) -> float:
        return self.interval


MWAN3 = Mwan3Settings()


class Mwan3Peer(ProcessPeer):
    """The re-created tracker as a helper process in the site namespace."""

    stop_grace = 5.0

    def start(self, lab: Lab, workdir: Path) -> None:
        self._lab = lab
        workdir.mkdir(parents=True, exist_ok=True)
        self._log = workdir / "mwan3.log"
        add_probe_paths(lab)
        argv = ["--primary", route_arg(lab, PRIMARY), "--backup", route_arg(lab, BACKUP),
                "--device", lab.link(PRIMARY).site_ifname]
        for target in lab.targets:
            argv += ["--target", str(target)]
        with self._log.open("w") as log:
            self._proc = lab.popen(lab.site, lab.python_argv("tests.bench.peers.mwan3", *argv),
                                   stdout=subprocess.PIPE, stderr=log)
        wait_ready(self._proc, "mwan3 re-creation")


KIND = PeerKind(
    name="mwan3",
    label="mwan3 tracking (re-creation)",
    settings="re-creation of mwan3track at mwan3's shipped settings: ping count 1, timeout "
             "4 s, interval 10 s, down 5, up 5, reliability 2 of 192.0.2.1-3; carrier loss "
             "acts at once (netifd ifdown of a DHCP WAN); no conntrack flush",
    make=Mwan3Peer,
    # A bad round lasts up to 3 x 4 s of pings plus the 10 s sleep; five of them make the
    # move, so the wait is generous and its trials run in the parallel phase.
    period=MWAN3.interval,
    move_bound=240.0,
    slow=True,
    tools=("ping",),
)


# --- the tracker ---------------------------------------------------------------------------


def _carrier_down(device: str) -> bool:
    """What netifd would act on: the kernel says the device has no carrier (or is down)."""
    try:
        return Path(f"/sys/class/net/{device}/carrier").read_text().strip() != "1"
    except OSError:  # reading carrier of an admin-down device fails: that is down too
        return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.peers.mwan3",
                                     description="mwan3track re-creation (runs in the site)")
    add_common_args(parser)
    parser.add_argument("--device", required=True, help="the tracked interface")
    parser.add_argument("--target", action="append", required=True)
    args = parser.parse_args(argv)
    s = MWAN3
    h = Helper("mwan3track", args.primary, args.backup, args.max_seconds)
    device: str = args.device

    def ifdown() -> bool:
        return _carrier_down(device)

    score = s.down + s.up
    h.use(h.primary, "initial_state online")
    h.ready()
    while h.running():
        if ifdown():
            h.use(h.backup, f"ifdown: {device} lost its carrier")
            while h.running() and ifdown():
                h.sleep(0.05)
            if not h.running():
                break
            # ifup: firstconnect with initial_state online
            score = s.down + s.up
            h.use(h.primary, f"ifup: {device} has its carrier back")
            continue
        answered = 0
        cut = False
        for target in args.target:
            if answered >= s.reliability:
                break  # mwan3track marks the rest "skipped"
            ok = h.ping(target, device, timeout=s.timeout, count=s.count, size=s.size,
                        ttl=s.max_ttl, interrupt=ifdown)
            if ok is None:
                cut = True
                break
            if ok:
                answered += 1
        if cut:
            continue
        sleep = s.interval
        if answered < s.reliability:
            score -= 1
            if score < s.up:
                score = 0
            elif score == s.up:
                sleep = s.failure_interval
                h.use(h.backup, f"disconnected: {s.down} rounds with fewer than "
                                f"{s.reliability} answers")
                score = 0
            else:
                sleep = s.failure_interval
                h.log(f"disconnecting: score {score}")
        else:
            score += 1
            if score < s.up:
                sleep = s.recovery_interval
                h.log(f"connecting: score {score}")
            elif score == s.up:
                sleep = s.recovery_interval
                h.use(h.primary, f"connected: {s.up} good rounds")
                score = s.down + s.up
            else:
                score = s.down + s.up
        h.sleep(sleep, interrupt=ifdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
