"""Start a real Kamailio from the reference examples/kamailio/kamailio.cfg, for tests and the lab.

The reference config is used as shipped, with only its `#!substdef` site values rewritten
(addresses, ports, dispatcher list file), so the tests exercise the file a user starts from.
Kamailio runs in the foreground (`-DD -E`, logs to a file) with its own runtime dir (`-Y`),
so its PID is ours and several instances can run side by side; `stop()` kills that PID only.
Optionally inside a network namespace (`netns`), through `ip netns exec`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.lab.wait import until

__all__ = ["REFERENCE_CFG", "REFERENCE_DB", "LabKamailio", "free_port", "render_cfg"]

REFERENCE_CFG = Path(__file__).resolve().parents[2] / "examples" / "kamailio" / "kamailio.cfg"
# The empty db_text uacreg table the cfg's uac registrations need (copied per instance:
# db_text may write its files back).
REFERENCE_DB = REFERENCE_CFG.parent / "db"


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out for both TCP and UDP on host (best effort)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
        try:
            with socket.socket(socket.AF_INET, other) as s2:
                s2.bind((host, port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port found")


def render_cfg(values: dict[str, str], source: Path = REFERENCE_CFG) -> str:
    """The reference config with `#!substdef "!NAME!value!g"` lines set to `values`."""
    text = source.read_text()
    for name, value in values.items():
        pattern = re.compile(rf'^#!substdef "!{re.escape(name)}!.*!g"$', re.MULTILINE)
        line = f'#!substdef "!{name}!{value}!g"'
        # re.subn reads backslash escapes in the replacement: double them.
        text, n = pattern.subn(line.replace("\\", "\\\\"), text)
        if n != 1:
            raise ValueError(f"{source}: no #!substdef line for {name}")
    return text


def _addr_list(addrs: tuple[str, ...]) -> str:
    """Kamailio's listen host part: one address, or "(a, b, ...)" for one socket each."""
    return addrs[0] if len(addrs) == 1 else "(" + ", ".join(addrs) + ")"


@dataclass
class LabKamailio:
    """One Kamailio process the lab runs (what sip_edge.kamailio points at); `start()` waits
    until its JSON-RPC answers."""

    workdir: Path
    carrier_addr: str = "127.0.0.1"
    carrier_port: int = 0
    # Every carrier-side (uplink) address, one socket each; () is carrier_addr alone.
    uplink_addrs: tuple[str, ...] = ()
    pbx_addr: str = "127.0.0.1"
    pbx_port: int = 0
    rpc_port: int = 0
    netns: str | None = None
    # A tls module config file (see examples/kamailio/tls.cfg): starts with WITH_TLS, a TLS
    # socket on every uplink address at tls_port.
    tls_cfg: Path | None = None
    tls_port: int = 0
    # EDGE_TRUNK_FAILOVER: False makes a call that fails on its trunk fail back to the PBX.
    trunk_failover: bool = True
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.carrier_port = self.carrier_port or free_port()
        self.pbx_port = self.pbx_port or free_port()
        self.rpc_port = self.rpc_port or free_port()
        if self.tls_cfg is not None:
            self.tls_port = self.tls_port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cfg_path = self.workdir / "kamailio.cfg"
        self.log_path = self.workdir / "kamailio.log"
        ds_list = self.workdir / "dispatcher.list"
        ds_list.touch()
        reg_db = self.workdir / "db"
        shutil.copytree(REFERENCE_DB, reg_db, dirs_exist_ok=True)
        self.cfg_path.write_text(
            render_cfg(
                {
                    "EDGE_UPLINK_ADDRS": _addr_list(self.uplink_addrs or (self.carrier_addr,)),
                    "EDGE_CARRIER_ADDR": self.carrier_addr,
                    "EDGE_CARRIER_PORT": str(self.carrier_port),
                    "EDGE_PBX_ADDR": self.pbx_addr,
                    "EDGE_PBX_PORT": str(self.pbx_port),
                    "EDGE_RPC_PORT": str(self.rpc_port),
                    "EDGE_DS_LIST": str(ds_list),
                    "EDGE_REG_DB_URL": f"text://{reg_db}",
                    "EDGE_CARRIER_TLS_PORT": str(self.tls_port or 5061),
                    "EDGE_TLS_CFG": str(self.tls_cfg or "/etc/kamailio/tls.cfg"),
                    "EDGE_TRUNK_FAILOVER": "1" if self.trunk_failover else "0",
                }
            )
        )

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}/RPC"

    def argv(self) -> list[str]:
        kamailio = shutil.which("kamailio") or "/usr/sbin/kamailio"
        argv = [
            kamailio,
            "-f", str(self.cfg_path),
            "-DD", "-E",
            "-Y", str(self.workdir),
            "-P", str(self.workdir / "kamailio.pid"),
        ]  # fmt: skip
        if self.tls_cfg is not None:
            argv += ["-A", "WITH_TLS"]
        if self.netns is not None:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        return argv

    def start(self, timeout: float = 10.0) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        proc = self.proc

        def rpc_up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"kamailio exited with {proc.returncode}: {self.log_tail()}")
            return self._rpc_port_open()

        try:
            until(rpc_up, timeout, 0.05, "kamailio's RPC port")
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"kamailio RPC not up within {timeout} s: {self.log_tail()}"
                               ) from None

    def _rpc_port_open(self) -> bool:
        if self.netns is not None:
            return True  # not reachable from here; the caller's client retries
        try:
            with socket.create_connection(("127.0.0.1", self.rpc_port), timeout=0.2):
                return True
        except OSError:
            return False

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM our PID (Kamailio's main process takes its children down), then SIGKILL."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
