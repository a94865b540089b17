"""Telephony peers of the lab: sipp as the carriers' SBCs, as the site's PBX, and as callers.

The carriers' SBCs answer OPTIONS and calls in the ``inet`` namespace, at the addresses of
``lab.topology.CARRIER_SBCS``, so they are reached only through the ISPs; the PBX answers
in the ``lan`` namespace at the LAN host's address. Every sipp runs in the foreground as a
tracked lab process (killed by PID in ``Lab.destroy()``), without a terminal (``-nostdin``).
A call is one bounded sipp UAC run whose exit code says how it went (0: the call succeeded,
1: it failed, 255: sipp could not run).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.lab.topology import CARRIER_SBCS, Lab
from tests.lab.wait import until

SIP_PORT = 5060


def sipp_path() -> str | None:
    return shutil.which("sipp")


@dataclass
class SippPeer:
    """One sipp UAS (an SBC or the PBX) running in a lab namespace."""

    name: str
    ns: str
    addr: str
    port: int
    proc: subprocess.Popen[str]

    @property
    def uri(self) -> str:
        return f"sip:{self.addr}:{self.port}"


def start_uas(lab: Lab, name: str, ns: str, addr: str, port: int = SIP_PORT,
              scenario: Path | None = None, transport: str = "u1") -> SippPeer:
    """A sipp UAS answering OPTIONS (``-aa``) and calls; never given ``-m`` (each OPTIONS
    would use up the call budget, LAB-NOTES says)."""
    argv = ["sipp", "-i", addr, "-p", str(port), "-t", transport, "-aa", "-nostdin",
            "-nd", "-timeout_error"]
    argv += ["-sf", str(scenario)] if scenario else ["-sn", "uas"]
    proc = lab.popen(ns, argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_listening(lab, ns, port, proc, name)
    return SippPeer(name, ns, addr, port, proc)


def start_sbcs(lab: Lab, names: list[str] | None = None) -> dict[str, SippPeer]:
    """The carriers' SBCs in ``inet``: one sipp UAS per name of CARRIER_SBCS."""
    return {name: start_uas(lab, name, lab.inet, str(CARRIER_SBCS[name]))
            for name in (names or list(CARRIER_SBCS))}


def start_pbx(lab: Lab, port: int = SIP_PORT) -> SippPeer:
    """The site's PBX: a sipp UAS on the LAN host."""
    return start_uas(lab, "pbx", lab.lan, str(lab.lan_host_addr), port)


def call(lab: Lab, ns: str, src: str, dst: str, did: str, *, src_port: int = 5070,
         dst_port: int = SIP_PORT, timeout: float = 10.0) -> int:
    """Place one call from ``src`` (in ``ns``) to ``did`` at ``dst``; sipp's exit code."""
    argv = ["sipp", dst if dst_port == SIP_PORT else f"{dst}:{dst_port}", "-sn", "uac",
            "-s", did, "-i", src, "-p", str(src_port), "-m", "1", "-nostdin", "-nd",
            "-timeout", f"{timeout:g}s", "-timeout_error", "-recv_timeout", f"{timeout:g}s"]
    proc = lab.run(ns, argv, check=False, timeout=timeout + 10)
    return proc.returncode


def _wait_listening(lab: Lab, ns: str, port: int, proc: subprocess.Popen[str], name: str,
                    timeout: float = 5.0) -> None:
    def listening() -> bool:
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"sipp {name} exited with {proc.returncode}: {err[-500:]}")
        out = lab.run(ns, ["ss", "-H", "-uln", f"sport = :{port}"], check=False).stdout
        return bool(out.strip())

    until(listening, timeout, 0.05, f"sipp {name} to listen on port {port}")
