"""The lab's SNMP UPS: snmpsim answering the RFC 1628 UPS-MIB on 127.0.0.1, changed mid-test.

``LabSnmpUps`` runs ``snmpsim-command-responder`` (PyPI snmpsim 1.2) by its own PID on a free
UDP port, serving a ``.snmprec`` written from a ``UpsState``; ``set(state)`` rewrites it and
the next request already answers the new values. v2c answers the community ``ups`` (snmpsim
names the community after the data file); one SNMPv3 user (SHA + AES-128) answers the empty
context, as a UPS card's agent does. ``stop`` ends the PID; ``snmp_ups`` (a context manager)
makes sure it ends also when a test fails.

What was found running it (snmpsim 1.2.2):
- As root it refuses to start unless it can drop privileges (``--process-user/--process-
  group``), and the unprivileged user must then read the Python it runs on: not so under
  /root/.pyenv, here and in CI. snmpsim's own switch ``SNMPSIM_ALLOW_ROOT=true`` lets it run
  as root; nothing privileged is needed (an unprivileged port on loopback), so the lab sets
  it and runs snmpsim with the tests' interpreter, which works on a clean CI machine too.
- A change of the data file is noticed by comparing its mtime in whole seconds, and its
  index is rebuilt only when the file is not older than the index: a rewrite within the same
  second as the last one is missed, one with an older mtime is served from a stale index
  (wrong offsets). ``set`` therefore replaces the file atomically with an mtime one second
  past the last one and not before now; the next request then reopens it (a few ms).
- The ``writecache`` variation (``OID|2:writecache|value=3``) also works: an SNMP SET with
  the same community changes the value (2 ms here). But the lab would then need an SNMP
  client of its own to set it, every object must be declared writable, and an object
  cannot be made to disappear; rewriting the file does all of that.
- v3 requests with the empty context are served from ``self.snmprec`` (a copy of the data
  file here: snmpsim ignores a link to a file it already serves); the context ``ups``
  reaches the data file by its name.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from tests.lab.kamailio import free_port
from tests.lab.netns import end_process
from tests.lab.wait import until

__all__ = ["BATTERY_LOW", "BYPASS", "MAINS", "ON_BATTERY", "LabSnmpUps", "UpsState",
           "snmp_ups", "snmprec"]

COMMUNITY = "ups"
V3_USER = "lifeline"
V3_AUTH_KEY = "lab-auth-key"  # SHA
V3_PRIV_KEY = "lab-priv-key"  # AES-128

_UPS = "1.3.6.1.2.1.33.1"


def _tlv(tag: int, body: bytes) -> bytes:
    assert len(body) < 128  # BER short lengths suffice for one small request
    return bytes([tag, len(body)]) + body


# GET upsOutputSource.0 with the community, SNMP v2c, BER by hand.
_GET_REQUEST = _tlv(0x30, _tlv(0x02, b"\x01") + _tlv(0x04, COMMUNITY.encode()) + _tlv(
    0xA0, _tlv(0x02, b"\x01") + _tlv(0x02, b"\x00") + _tlv(0x02, b"\x00") + _tlv(
        0x30, _tlv(0x30, _tlv(0x06, bytes([43, 6, 1, 2, 1, 33, 1, 4, 1, 0])) + b"\x05\x00"))))


@dataclass(frozen=True)
class UpsState:
    """What the simulated UPS says; None leaves the object out (the agent lacks it)."""

    output_source: int | None = 3  # 3 normal, 4 bypass, 5 battery
    battery_status: int | None = 2  # 2 normal, 3 low, 4 depleted
    minutes: int | None = 45
    charge: int | None = 100
    input_voltage: int | None = 230
    load: int | None = 35
    extra: tuple[str, ...] = ()  # raw .snmprec lines, e.g. a value of the wrong type


MAINS = UpsState()
ON_BATTERY = UpsState(output_source=5, minutes=30, charge=80, input_voltage=0)
BATTERY_LOW = UpsState(output_source=5, battery_status=3, minutes=3, charge=9, input_voltage=0)
BYPASS = UpsState(output_source=4)


def snmprec(state: UpsState) -> str:
    """The .snmprec text (``OID|type|value``, type 2 = INTEGER) of a state, OID-ordered."""
    objects = {
        f"{_UPS}.2.1.0": state.battery_status,
        f"{_UPS}.2.3.0": state.minutes,
        f"{_UPS}.2.4.0": state.charge,
        f"{_UPS}.3.3.1.3.1": state.input_voltage,
        f"{_UPS}.4.1.0": state.output_source,
        f"{_UPS}.4.4.1.5.1": state.load,
    }
    lines = [f"{oid}|2|{value}" for oid, value in objects.items() if value is not None]
    lines += state.extra
    lines.sort(key=lambda line: tuple(int(p) for p in line.split("|", 1)[0].split(".")))
    return "".join(line + "\n" for line in lines)


@dataclass
class LabSnmpUps:
    """One snmpsim process serving one UPS; ``start``, ``set``, ``stop``."""

    workdir: Path
    state: UpsState = MAINS
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _mtime: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.port = self.port or free_port(socket.SOCK_DGRAM)
        self.data_dir = self.workdir / "data"
        self.cache_dir = self.workdir / "cache"
        self.log_path = self.workdir / "snmpsim.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.data_file = self.data_dir / f"{COMMUNITY}.snmprec"
        # snmpsim skips a second name for one file (a link): the empty context gets a copy.
        self.data_files = (self.data_file, self.data_dir / "self.snmprec")
        self.set(self.state)

    def set(self, state: UpsState) -> None:
        """Serve ``state`` from the next request on (see the module's note on mtimes)."""
        self._mtime = max(self._mtime + 1, int(time.time()))
        text = snmprec(state)
        for path in self.data_files:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            os.utime(tmp, (self._mtime, self._mtime))
            os.replace(tmp, path)
        self.state = state

    def update(self, **changes: int | None) -> None:
        """``set`` with some fields of the current state changed."""
        self.set(replace(self.state, **changes))  # type: ignore[arg-type]

    def argv(self) -> list[str]:
        return [
            sys.executable, "-c",
            "import sys; from snmpsim.commands.responder import main; sys.exit(main())",
            f"--data-dir={self.data_dir}",
            f"--cache-dir={self.cache_dir}",
            f"--agent-udpv4-endpoint=127.0.0.1:{self.port}",
            f"--v3-user={V3_USER}",
            f"--v3-auth-key={V3_AUTH_KEY}", "--v3-auth-proto=SHA",
            f"--v3-priv-key={V3_PRIV_KEY}", "--v3-priv-proto=AES",
            "--variation-modules-dir=" + str(self.workdir / "no-variations"),
        ]  # fmt: skip

    def start(self, timeout: float = 15.0) -> None:
        env = {**os.environ, "SNMPSIM_ALLOW_ROOT": "true", "PYTHONWARNINGS": "ignore"}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env)
        proc = self.proc

        def answers() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"snmpsim exited with {proc.returncode}: {self.log_tail()}")
            return self.answers()

        try:
            until(answers, timeout, 0.0, "snmpsim answering", detail=self.log_tail)
        except BaseException:
            self.stop()
            raise

    def answers(self, wait: float = 0.1) -> bool:
        """Does the agent answer a v2c GET now? A hand-made request, so that the lab does
        not lean on the SNMP client it tests. (snmpsim logs "Listening" before it listens:
        a request sent on that word alone may be lost.)"""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(wait)
            s.sendto(_GET_REQUEST, ("127.0.0.1", self.port))
            try:
                return bool(s.recv(2048))
            except OSError:  # no answer yet, or ICMP port unreachable
                return False

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM our PID, SIGKILL if it lingers; a no-op when not running."""
        proc, self.proc = self.proc, None
        end_process(proc, timeout)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextlib.contextmanager
def snmp_ups(workdir: Path, state: UpsState = MAINS) -> Iterator[LabSnmpUps]:
    """A started LabSnmpUps, stopped on the way out whatever happens."""
    ups = LabSnmpUps(workdir, state)
    try:
        ups.start()
        yield ups
    finally:
        ups.stop()
