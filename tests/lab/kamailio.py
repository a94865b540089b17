"""Start a real Kamailio from the reference examples/kamailio/kamailio.cfg, for tests and the lab.

The reference config is used as shipped, copied byte for byte, and its site values come
the way an operator's do: ``lifeline-site.cfg`` and the files beside it are made by the
generator and writer of ``lifeline edge-config`` (controller.actuators.sipedge.kamailio
sitecfg and sitefiles), from the lab's addresses and free ports. Or, with ``confdir``, from
a directory a test prepared itself by following the README (test_edge_setup). Kamailio runs
in the foreground (`-DD -E`, logs to a file) with its own runtime dir (`-Y`), so its PID is
ours and several instances can run side by side; `stop()` kills that PID only. Optionally
inside a network namespace (`netns`), through `ip netns exec`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from controller.actuators.sipedge.kamailio.sitecfg import CFG_FILE, EdgeSite, site_files
from controller.actuators.sipedge.kamailio.sitefiles import install
from tests.lab.netns import end_process
from tests.lab.wait import until

__all__ = ["REFERENCE_CFG", "REFERENCE_DIR", "LabKamailio", "free_port"]

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "examples" / "kamailio"
REFERENCE_CFG = REFERENCE_DIR / CFG_FILE


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


@dataclass
class LabKamailio:
    """One Kamailio process the lab runs (what sip_edge.kamailio points at); `start()` waits
    until its JSON-RPC answers."""

    workdir: Path
    # Every carrier-side (uplink) address, one socket each; calls leave from the first
    # until lifeline names another.
    uplink_addrs: tuple[str, ...] = ("127.0.0.1",)
    carrier_port: int = 0
    pbx_addr: str = "127.0.0.1"
    pbx_port: int = 0
    rpc_port: int = 0
    netns: str | None = None
    # A tls module config file (see examples/kamailio/tls.cfg): the site file turns TLS on,
    # a TLS socket on every uplink address at tls_port.
    tls_cfg: Path | None = None
    tls_port: int = 0
    trunk_failover: bool = True
    # A directory prepared as the README says (kamailio.cfg copied, `lifeline edge-config`
    # run), used as it is; None: the lab prepares `workdir` the same way (write_config).
    confdir: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.carrier_port = self.carrier_port or free_port()
        self.pbx_port = self.pbx_port or free_port()
        self.rpc_port = self.rpc_port or free_port()
        if self.tls_cfg is not None:
            self.tls_port = self.tls_port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cfg_dir = self.confdir or self.workdir
        self.cfg_path = self.cfg_dir / CFG_FILE
        self.log_path = self.workdir / "kamailio.log"
        if self.confdir is None:
            self.write_config()

    def site(self) -> EdgeSite:
        """This edge's site values, as ``lifeline edge-config`` would derive them."""
        site = EdgeSite(confdir=PurePosixPath(self.cfg_dir), uplinks=self.uplink_addrs,
                        carrier_port=self.carrier_port, pbx_address=self.pbx_addr,
                        pbx_port=self.pbx_port, rpc_port=self.rpc_port,
                        trunk_failover=self.trunk_failover)
        if self.tls_cfg is None:
            return site
        return replace(site, tls=True, tls_config=PurePosixPath(self.tls_cfg),
                       carrier_tls_port=self.tls_port)

    def write_config(self) -> None:
        """The reference cfg as shipped and the site files ``lifeline edge-config`` writes
        (again after a change of this edge's fields, e.g. trunk_failover)."""
        shutil.copyfile(REFERENCE_CFG, self.cfg_path)
        install(self.cfg_dir, site_files(self.site()))

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
        end_process(proc, timeout)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
