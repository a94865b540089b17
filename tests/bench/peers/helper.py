"""The shared parts of the peers' helper processes, which run inside the lab's site namespace.

The naive ping loop, the mwan3 re-creation and the BFD follower are small programs started
with ``python -m tests.bench.peers.<name>`` as tracked lab processes. Each switches the main
default route between two links (``GATEWAY@DEVICE`` on its command line) with
``ip route replace``, as an operator's script would, pings with iputils ``ping`` bound to a
device, prints ``ready`` once it runs, logs each decision with its monotonic time on
stderr, and stops when the lab sends SIGTERM, taking the ping it is waiting for with it.
Every helper is also bounded by ``--max-seconds``.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

__all__ = ["Helper", "Route", "add_common_args"]


@dataclass(frozen=True, slots=True)
class Route:
    """A default route: ``198.51.100.1@wan-a``."""

    gateway: str
    device: str

    @classmethod
    def parse(cls, text: str) -> Route:
        gateway, sep, device = text.partition("@")
        if not sep or not gateway or not device:
            raise argparse.ArgumentTypeError(f"expected GATEWAY@DEVICE, got {text!r}")
        return cls(gateway, device)


def add_common_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--primary", type=Route.parse, required=True, metavar="GW@DEV")
    parser.add_argument("--backup", type=Route.parse, required=True, metavar="GW@DEV")
    parser.add_argument("--max-seconds", type=float, default=7200.0,
                        help="stop after this long whatever happens (default 2 h)")


class Helper:
    """Route switching, bound pings and the stop flag of one helper process."""

    def __init__(self, name: str, primary: Route, backup: Route, max_seconds: float) -> None:
        self.name = name
        self.primary = primary
        self.backup = backup
        self.deadline = time.monotonic() + max_seconds
        self.on: Route | None = None
        self._stopping = False
        self._child: subprocess.Popen[bytes] | None = None
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True
        child = self._child
        if child is not None and child.poll() is None:
            with contextlib.suppress(OSError):
                child.terminate()

    def running(self) -> bool:
        """Not asked to stop and within --max-seconds."""
        return not self._stopping and time.monotonic() < self.deadline

    def ready(self) -> None:
        print("ready", flush=True)

    def log(self, message: str) -> None:
        print(f"{time.monotonic():.3f} {self.name}: {message}", file=sys.stderr, flush=True)

    def use(self, route: Route, why: str) -> None:
        """Point the default route at ``route`` (``ip route replace``, idempotent)."""
        if route == self.on:
            return
        done = subprocess.run(["ip", "route", "replace", "default", "via", route.gateway,
                               "dev", route.device], capture_output=True, text=True,
                              check=False)
        if done.returncode == 0:
            self.on = route
            self.log(f"default via {route.gateway} dev {route.device} ({why})")
        else:
            self.log(f"ip route replace failed: {done.stderr.strip()}")

    def sleep(self, seconds: float, interrupt: Callable[[], bool] | None = None) -> bool:
        """Sleep up to ``seconds``; False when stopping, or early (also False) when
        ``interrupt`` says so. Checks every 50 ms."""
        end = time.monotonic() + seconds
        while self.running():
            if interrupt is not None and interrupt():
                return False
            left = end - time.monotonic()
            if left <= 0:
                return True
            time.sleep(min(left, 0.05))
        return False

    def ping(self, target: str, device: str, *, timeout: int, count: int = 1,
             size: int = 56, ttl: int | None = None,
             interrupt: Callable[[], bool] | None = None) -> bool | None:
        """One iputils ping run bound to ``device``: True if answered, False if not, None
        if it was cut short (stopping, or ``interrupt`` said so)."""
        argv = ["ping", "-n", "-q", "-c", str(count), "-W", str(timeout), "-s", str(size),
                "-I", device]
        if ttl is not None:
            argv += ["-t", str(ttl)]
        self._child = subprocess.Popen([*argv, target], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
        try:
            while True:
                try:
                    code = self._child.wait(timeout=0.05)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if not self.running() or (interrupt is not None and interrupt()):
                    self._child.terminate()
                    self._child.wait()
                    return None
        finally:
            self._child = None
        if not self.running():
            return None
        return code == 0
