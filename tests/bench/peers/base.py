"""What every peer of the side-by-side benchmark shares, and how the benchmark watches them.

A peer is anything that moves the lab site's default route between fibre-a and fibre-b:
lifeline, keepalived, bfdd with a follower script, the mwan3 re-creation, a naive ping loop.
``Peer`` is the little each must offer (start in a built lab, stop, a log to show when a
trial goes wrong) and ``PeerKind`` what the runner must know about one (its name, its
settings in a line, its probing period and how long to wait for it). The benchmark judges
every peer the same way, from outside: ``RouteWatch`` follows which link carries the site's
effective default route (the lowest metric in table main), driven by ``ip monitor route``
so that a change is timed to a millisecond without polling. ``add_probe_paths`` gives the
site what a hand-made failover needs and lifeline makes for itself: a table and rules per
link, so a ping bound to wan-a leaves by wan-a whatever the main default route says.
Nothing here touches the machine's own namespace; all of it dies with the lab.
"""

from __future__ import annotations

import contextlib
import json
import select
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tests.bench.bench_failover import BACKUP, PRIMARY
from tests.lab.topology import Lab

__all__ = [
    "ABORT",
    "BACKUP",
    "PRIMARY",
    "PROBE_TABLES",
    "Aborted",
    "Peer",
    "PeerKind",
    "ProcessPeer",
    "RouteWatch",
    "add_probe_paths",
    "effective_link",
    "pause",
    "route_arg",
]

# Per-link tables and the priority of their rules; below lifeline's own (1000 in its
# example) is irrelevant, as lifeline never runs in the same lab as another peer.
PROBE_TABLES = {PRIMARY: 101, BACKUP: 102}
RULE_PRIORITY = 1000

# Set by the runner on SIGTERM/Ctrl-C: every long wait of a scenario ends early, so its
# ``with Lab()`` block runs out and the lab is destroyed.
ABORT = threading.Event()


class Aborted(RuntimeError):
    """The run was asked to stop; the scenario that sees it gives up at once."""


def pause(seconds: float) -> None:
    """Sleep, but raise ``Aborted`` within 0.2 s once ``ABORT`` is set."""
    if ABORT.wait(max(seconds, 0.0)):
        raise Aborted("benchmark aborted")


class Peer(Protocol):
    """One failover mechanism, started in a lab by the runner and stopped by it."""

    def start(self, lab: Lab, workdir: Path) -> None:
        """Start in ``lab`` (built) with scratch files under ``workdir``; return once
        started. The runner itself waits until the route is on fibre-a."""

    def stop(self) -> None:
        """Stop every process the peer started (by PID); safe to call twice."""

    def log_tail(self) -> str:
        """The end of what the peer logged, for a trial that went wrong."""


@dataclass(frozen=True)
class PeerKind:
    """What the runner knows about a peer before starting it."""

    name: str  # command-line name: "keepalived-fast"
    label: str  # table row: "keepalived, interval 1 s, fall 1"
    settings: str  # one line on what it runs with and where that comes from
    make: Callable[[], Peer]
    period: float  # its probing period: a fault lands at a random phase of it
    move_bound: float  # a gap trial waits this long for the route to move
    start_bound: float = 20.0  # ... and this long for the route on fibre-a at start
    slow: bool = False  # takes many seconds to move: its gap trials run in the parallel phase
    tools: tuple[str, ...] = ()  # programs it needs on PATH (or absolute paths)


def route_arg(lab: Lab, link: str) -> str:
    """``GATEWAY@DEVICE`` of a link's default route: how helper processes get told."""
    lk = lab.link(link)
    return f"{lk.gateway}@{lk.site_ifname}"


def add_probe_paths(lab: Lab, links: tuple[str, ...] = (PRIMARY, BACKUP)) -> None:
    """A routing table per link (default via its gateway) and rules sending what is bound
    to the link's address or device there, as mwan3 and lifeline do, so a probe of fibre-a
    tests fibre-a even while the main default route points elsewhere (without it, a ping
    bound to wan-a finds no route once the peer has moved away, and never sees recovery).
    The LAN's forwarded traffic matches neither rule and follows table main."""
    cmds: list[str] = []
    for i, name in enumerate(links):
        lk = lab.link(name)
        table = PROBE_TABLES[name]
        cmds += [
            f"route replace default via {lk.gateway} dev {lk.site_ifname} table {table}",
            f"rule add from {lk.site_addr} lookup {table} pref {RULE_PRIORITY + 2 * i}",
            f"rule add oif {lk.site_ifname} lookup {table} pref {RULE_PRIORITY + 2 * i + 1}",
        ]
    lab.ip_batch(lab.site, cmds)


def effective_link(routes: list[dict[str, Any]], by_device: dict[str, str]) -> str | None:
    """The link name of the default route the kernel uses (lowest metric; several names
    joined by '+' for multipath), or None without a default route."""
    if not routes:
        return None
    best = min(routes, key=lambda r: int(r.get("metric", 0)))
    devices = [best["dev"]] if "dev" in best else [h["dev"] for h in best.get("nexthops", [])]
    return "+".join(sorted(by_device.get(d, d) for d in devices)) or None


class RouteWatch:
    """Which link carries the site's default route, and when that changed.

    ``ip monitor route`` runs in the site namespace as a tracked lab process; each burst of
    lines it prints makes the watch read the default routes again (``ip -j``), and a change
    of the effective link is recorded with the time the first line of the burst arrived.
    Reading again instead of parsing the monitor's text keeps one definition of "the
    route" for the start, the changes and the end.
    """

    def __init__(self, lab: Lab) -> None:
        self._lab = lab
        self._by_device = {lk.site_ifname: lk.name for lk in lab.links.values()}
        self._cond = threading.Condition()
        self._changes: list[tuple[float, str | None]] = []
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def start(self) -> None:
        self._proc = self._lab.popen(self._lab.site, ["ip", "-4", "monitor", "route"],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        # Give the monitor a moment to subscribe before the first read, so that no change
        # can fall between that read and the first event.
        time.sleep(0.05)
        self._record(time.monotonic())
        self._thread = threading.Thread(target=self._follow, name="route-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._proc is not None:
            self._lab.stop(self._proc, grace=1.0)
        if self._thread is not None:
            self._thread.join(2.0)

    def __enter__(self) -> RouteWatch:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reading ----------------------------------------------------------------------------

    @property
    def current(self) -> str | None:
        with self._cond:
            return self._changes[-1][1] if self._changes else None

    def history(self) -> list[tuple[float, str | None]]:
        """Every (time, link) the route took, the first being its state at start."""
        with self._cond:
            return list(self._changes)

    def wait_for(self, link: str, timeout: float, after: float | None = None) -> float | None:
        """When the route went to ``link`` (at or after ``after``; by default: it is there
        now or gets there), waiting up to ``timeout`` s; None if it did not."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = self._found(link, after)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or ABORT.is_set():
                    return None
                self._cond.wait(min(left, 0.2))

    def _found(self, link: str, after: float | None) -> float | None:
        if after is None:
            if self._changes and self._changes[-1][1] == link:
                return self._changes[-1][0]
            return None
        # The state in force at `after` counts as reached at `after`.
        before = [(t, v) for t, v in self._changes if t <= after]
        if before and before[-1][1] == link:
            return after
        return next((t for t, v in self._changes if t > after and v == link), None)

    # -- the thread ---------------------------------------------------------------------

    def _read(self) -> str | None:
        out = self._lab.run(self._lab.site, ["ip", "-j", "-4", "route", "show", "table", "main",
                                             "default"], check=False).stdout
        try:
            routes = json.loads(out or "[]")
        except json.JSONDecodeError:
            return self.current
        return effective_link(routes, self._by_device)

    def _record(self, at: float) -> None:
        link = self._read()
        with self._cond:
            if not self._changes or self._changes[-1][1] != link:
                self._changes.append((at, link))
                self._cond.notify_all()

    def _follow(self) -> None:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        try:
            while True:
                line = proc.stdout.readline()
                if not line:
                    return
                at = time.monotonic()
                # Drain the rest of a burst (a peer replacing a route prints two lines).
                while select.select([proc.stdout], [], [], 0.005)[0]:
                    if not proc.stdout.readline():
                        break
                self._record(at)
        except (OSError, ValueError) as exc:  # the pipe closed under us at stop
            with contextlib.suppress(Exception):
                if proc.poll() is None:
                    self.error = repr(exc)


class ProcessPeer:
    """What the peers that run as one process in the site have in common: the process, its
    log, and stopping it (SIGTERM, then ``stop_grace`` s before SIGKILL)."""

    stop_grace = 2.0

    def __init__(self) -> None:
        self._lab: Lab | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._log: Path | None = None

    def stop(self) -> None:
        if self._lab is not None and self._proc is not None:
            self._lab.stop(self._proc, grace=self.stop_grace)
            self._proc = None

    def log_tail(self) -> str:
        return self._log.read_text()[-3000:] if self._log and self._log.exists() else ""
