"""A real upsd with NUT's dummy-ups driver on 127.0.0.1 (of the machine, or of a lab
namespace with ``ns=``), for tests, benches and the demo.

``Upsd(root)`` writes ``ups.conf``, ``upsd.conf``, ``upsd.users`` and the driver's
``dummy.dev`` into ``root`` and ``start()`` runs ``/lib/nut/dummy-ups -a <ups> -u root -F``
then ``/lib/nut/upsd -u root -F`` (Debian's nut-server; both in the foreground, so the PIDs
are ours) with NUT_CONFPATH/NUT_STATEPATH/NUT_ALTPIDPATH pointing at ``root``, and waits
until upsd serves the driver's data. ``set(status="OB DISCHRG", charge=40)`` replaces the
.dev file atomically (the driver re-reads it when its mtime changes, on its next poll),
``wait_status`` waits until upsd says so, ``kill_driver`` leaves upsd without a driver
(``ERR DRIVER-NOT-CONNECTED``), ``freeze_driver`` stops it so upsd calls the data stale
after ``maxage`` (``ERR DATA-STALE``), and ``stop()`` ends both by PID. The boundary: the
peer only; this module speaks just enough of the protocol to know upsd is up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.lab.kamailio import free_port
from tests.lab.netns import end_process, inside, ns_argv
from tests.lab.wait import until

__all__ = ["DRIVER", "UPSD", "Upsd", "nut_skip_reason"]

NUT_DIR = Path("/lib/nut")
DRIVER = NUT_DIR / "dummy-ups"
UPSD = NUT_DIR / "upsd"


def nut_skip_reason() -> str | None:
    """Why this machine cannot run the lab's upsd, or None if it can."""
    if os.geteuid() != 0:
        return "the lab's upsd runs as root (-u root): run as root"
    for binary in (DRIVER, UPSD):
        if not os.access(binary, os.X_OK):
            return f"needs {binary} (Debian package nut-server)"
    return None


@dataclass
class Upsd:
    """upsd and one dummy UPS, every file under ``root``; see the module docstring."""

    root: Path
    ups: str = "dummy"
    port: int = field(default_factory=free_port)
    # username -> (password, upsd.users lines after the password)
    users: dict[str, tuple[str, str]] = field(
        default_factory=lambda: {"monitor": ("lab-secret", "upsmon primary")})
    pollinterval: int = 1  # the driver's poll, seconds (NUT's default is 2)
    maxage: int = 15  # upsd's MAXAGE: data older than this is stale
    state: dict[str, str] = field(default_factory=lambda: {
        "ups.status": "OL CHRG",
        "battery.charge": "100",
        "battery.runtime": "1800",
        "input.voltage": "230.0",
        "ups.load": "35",
    })
    host: str = "127.0.0.1"
    ns: str | None = None  # a lab namespace to run both in (its own loopback), or the machine
    driver: subprocess.Popen[bytes] | None = None
    upsd: subprocess.Popen[bytes] | None = None
    _mtime: float = 0.0

    @property
    def dev(self) -> Path:
        return self.root / "dummy.dev"

    def env(self) -> dict[str, str]:
        where = str(self.root)
        return {**os.environ, "NUT_CONFPATH": where, "NUT_STATEPATH": where,
                "NUT_ALTPIDPATH": where}

    def write_config(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        (self.root / "ups.conf").write_text(
            f"[{self.ups}]\n  driver = dummy-ups\n  port = {self.dev.name}\n"
            f"  pollinterval = {self.pollinterval}\n  desc = \"lifeline lab UPS\"\n")
        (self.root / "upsd.conf").write_text(
            f"LISTEN {self.host} {self.port}\nMAXAGE {self.maxage}\n")
        users = "".join(f"[{name}]\n  password = {password}\n  {rights}\n"
                        for name, (password, rights) in self.users.items())
        path = self.root / "upsd.users"
        path.write_text(users)
        os.chmod(path, 0o640)
        self._write_dev()

    def _write_dev(self) -> None:
        tmp = self.dev.with_suffix(".new")
        tmp.write_text("".join(f"{k}: {v}\n" for k, v in self.state.items()))
        # The driver compares whole-second mtimes: two changes within a second must still
        # differ, so each file is stamped at least a second after the one it replaces.
        stamp = max(time.time(), self._mtime + 1.0)
        os.utime(tmp, (stamp, stamp))
        self._mtime = stamp
        os.replace(tmp, self.dev)

    def start(self, timeout: float = 10.0) -> None:
        self.write_config()
        self.start_driver()
        # upsd retries a driver it cannot reach only after seconds: let the driver's
        # socket exist first.
        until(lambda: (self.root / f"dummy-ups-{self.ups}").exists(), timeout, 0.02,
              "the dummy-ups driver's socket", detail=self.log_tail)
        with (self.root / "upsd.log").open("ab") as log:  # the child keeps its own copy
            self.upsd = subprocess.Popen(self._argv(str(UPSD), "-u", "root", "-F"),
                                         env=self.env(),
                                         cwd=self.root, stdout=log, stderr=subprocess.STDOUT)
        until(lambda: self.status() == self.state["ups.status"], timeout, 0.05,
              f"upsd on {self.host}:{self.port} to serve {self.ups}", detail=self.log_tail)

    def start_driver(self) -> None:
        with (self.root / "driver.log").open("ab") as log:
            self.driver = subprocess.Popen(
                self._argv(str(DRIVER), "-a", self.ups, "-u", "root", "-F"), env=self.env(),
                cwd=self.root, stdout=log, stderr=subprocess.STDOUT)

    def _argv(self, *argv: str) -> list[str]:
        # `ip netns exec` execs the program itself: the PID we hold is still the daemon's.
        return list(argv) if self.ns is None else ns_argv(self.ns, argv)

    def set(self, *, status: str | None = None, charge: float | None = None,
            runtime: float | None = None, input_voltage: float | None = None,
            load: float | None = None) -> float:
        """Give the dummy UPS a new state (charge and load in percent, as NUT writes them);
        returns the monotonic time the new file took its place."""
        for name, value in (("ups.status", status), ("battery.charge", charge),
                            ("battery.runtime", runtime), ("input.voltage", input_voltage),
                            ("ups.load", load)):
            if value is not None:
                self.state[name] = value if isinstance(value, str) else f"{value:g}"
        self._write_dev()
        return time.monotonic()

    def ups_config(self, name: str = "rack-ups", interval: str = "500ms",
                   timeout: str = "500ms") -> dict[str, Any]:
        """lifeline's ``power.ups`` entry that reads this UPS (no login), from where upsd
        listens (the machine, or ``ns``: the site's daemon there); never stale by sameness,
        since the dummy UPS repeats itself exactly between changes."""
        return {"name": name, "nut": {"host": self.host, "port": self.port, "ups": self.ups},
                "interval": interval, "timeout": timeout, "stale_after": None}

    def get(self, name: str) -> str:
        """upsd's one-line answer to ``GET VAR <ups> <name>`` (``VAR ...`` or ``ERR ...``)."""
        if self.ns is not None:
            with inside(self.ns):
                sock = socket.create_connection((self.host, self.port), timeout=2.0)
        else:
            sock = socket.create_connection((self.host, self.port), timeout=2.0)
        with sock:
            sock.sendall(f"GET VAR {self.ups} {name}\n".encode())
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        return data.decode(errors="replace").strip()

    def status(self) -> str | None:
        """ups.status as upsd serves it now, or None (not up yet, an ERR, WAIT)."""
        try:
            line = self.get("ups.status")
        except OSError:
            return None
        prefix = f"VAR {self.ups} ups.status "
        if not line.startswith(prefix):
            return None
        value = line[len(prefix):].strip('"')
        return None if value == "WAIT" else value

    def wait_status(self, status: str, timeout: float = 10.0) -> None:
        until(lambda: self.status() == status, timeout, 0.02,
              f"upsd to say {status!r}", detail=lambda: f"it says {self.status()!r}")

    def kill_driver(self) -> None:
        """The driver dies; upsd stays and answers ``ERR DRIVER-NOT-CONNECTED``."""
        end_process(self.driver)
        self.driver = None

    def freeze_driver(self) -> None:
        """SIGSTOP the driver: it stays connected but sends nothing (stale after maxage)."""
        if self.driver is not None:
            self.driver.send_signal(signal.SIGSTOP)

    def thaw_driver(self) -> None:
        if self.driver is not None:
            self.driver.send_signal(signal.SIGCONT)

    @contextlib.contextmanager
    def running(self) -> Iterator[Upsd]:
        """Started for the block, stopped by PID after it, also when the block fails (the
        body of every test fixture of a lab UPS)."""
        try:
            self.start()
            yield self
        finally:
            self.stop()

    def stop(self) -> None:
        """End upsd and the driver, by their PIDs; safe to call twice."""
        self.thaw_driver()
        end_process(self.upsd)
        end_process(self.driver)
        self.upsd = self.driver = None

    def log_tail(self, lines: int = 20) -> str:
        out = []
        for name in ("driver.log", "upsd.log"):
            path = self.root / name
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"{name}:\n" + "\n".join(text))
        return "\n".join(out)


