"""The site's telephony in a built lab: Kamailio as the SIP edge, carrier SBCs, PBX, callers.

``SipSite(lab, workdir).start()`` runs Kamailio inside the site namespace from the reference
``examples/kamailio/kamailio.cfg`` (one carrier-facing socket per link address, so it
answers on every link and lifeline picks the one each trunk's calls leave from; PBX-facing
socket on the site's LAN address; JSON-RPC on the site's 127.0.0.1, where the daemon, also
in the site namespace, reaches it), one sipp UAS per carrier SBC in ``inet`` and the PBX on
the LAN host. ``config_dict()`` gives the lifeline config that describes all of it (trunks,
destinations, DID plan, the Kamailio RPC URL); with ``registration=True`` it adds a
registration-based trunk to a digest registrar (``start_registrar()``, a sipp in ``inet`` at
``CARRIER_REGISTRAR`` whose arrivals from each link's site address are counted by iptables
there, so a test can tell which link the edge's REGISTERs took). ``start_daemon()`` runs
lifeline with that config and waits until ``site_ready``: the SIP site lab that the e2e
tests, the demo and the trunk benchmark share. Calls are bounded sipp UAC runs. Every
process is started with ``lab.popen`` and so is killed by PID at ``lab.destroy()``, also
when a test fails; this module only starts, stops and observes peers, it decides nothing.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.lab.config import lifeline_config_dict
from tests.lab.kamailio import LabKamailio
from tests.lab.lifelined import LifelineProcess
from tests.lab.topology import CARRIER_REGISTRAR, CARRIER_SBCS, Lab
from tests.lab.wait import until

__all__ = [
    "DID_RANGES",
    "REGISTRAR_TRUNK",
    "REGISTRAR_USER",
    "SBC_CARRIERS",
    "SCENARIO_DIR",
    "SipPeer",
    "SipSite",
    "header_values",
    "plan_ready",
    "sip_site_skip_reason",
    "site_ready",
]

SCENARIO_DIR = Path(__file__).resolve().parents[1] / "integration" / "sipp"

# Which carrier runs which SBC: carrier A has two (redundant), carrier B one.
SBC_CARRIERS: dict[str, str] = {
    "carrier-a-sbc1": "carrier-a",
    "carrier-a-sbc2": "carrier-a",
    "carrier-b-sbc1": "carrier-b",
}
# The DID plan of the lab site: (range, capable trunks in order of preference).
DID_RANGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("+390212345600-+390212345699", ("carrier-a-sbc1", "carrier-a-sbc2")),
    ("+390298765400-+390298765449", ("carrier-b-sbc1",)),
)
SBC_PORT = 5060
PBX_PORT = 5060
DR_PORT = 5062  # nobody answers there: the DR destination only matters when the PBX fails
# The registration-based trunk (config_dict(registration=True)) and what it registers as;
# register-digest.xml accepts user site1 only.
REGISTRAR_TRUNK = "carrier-r-reg"
REGISTRAR_USER = "site1"
REGISTRAR_DOMAIN = "lifeline.test"
REGISTRAR_PORT = 5060


def sip_site_skip_reason() -> str | None:
    """Why this machine cannot run the SIP site, or None if it can."""
    for tool, package in (("kamailio", "kamailio"), ("sipp", "sip-tester")):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            return f"needs `{tool}` (Debian package {package})"
    return None


def plan_ready(st: dict[str, Any]) -> bool:
    """A daemon status whose DID plan is whole: every trunk up, no DID unroutable, the plan
    in every edge (in sync, no error)."""
    return (st.get("dids") is not None and st["dids"]["unroutable_numbers"] == 0
            and all(t["state"] == "up" for t in st["trunks"])
            and all(e["in_sync"] and e["error"] is None for e in st["edges"]))


def site_ready(st: dict[str, Any]) -> bool:
    """A daemon status of a site at work: ``plan_ready`` and the PBX up."""
    return plan_ready(st) and all(d["state"] == "up" for d in st["destinations"]
                                  if d["name"] == "pbx")


def header_values(message: str, name: str) -> list[str]:
    """Values of every ``name`` header line of one logged SIP message, in order (long form
    only: what Kamailio and sipp write here)."""
    prefix = name.lower() + ":"
    return [line.split(":", 1)[1].strip() for line in message.splitlines()
            if line.lower().startswith(prefix)]


@dataclass
class SipPeer:
    """A sipp UAS in a lab namespace; its message log tells which calls reached it."""

    name: str
    ns: str
    addr: str
    port: int
    message_log: Path
    proc: subprocess.Popen[str] | None = None

    @property
    def uri(self) -> str:
        return f"sip:{self.addr}:{self.port}"

    def _invites(self) -> list[str]:
        if not self.message_log.exists():
            return []
        text = self.message_log.read_text(errors="replace")
        return [chunk for chunk in text.split("-----------------------------------------------")
                if "received" in chunk and "INVITE sip:" in chunk]

    def last_invite(self) -> str:
        """The text of the last INVITE received ("" if none)."""
        invites = self._invites()
        return invites[-1] if invites else ""

    def invite_times(self, called: str | None = None) -> list[float]:
        """When each INVITE (for ``called``, if given) was received, in epoch seconds: sipp
        stamps every logged message with the local wall-clock time."""
        out = []
        for chunk in self._invites():
            if called is not None and f"INVITE sip:{called}@" not in chunk:
                continue
            stamp = chunk.strip().splitlines()[0].strip()
            out.append(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp())
        return out

    def invites_to(self, called: str) -> int:
        """INVITEs received for ``called`` (the Request-URI user)."""
        return sum(f"INVITE sip:{called}@" in chunk for chunk in self._invites())

    def invites_from(self, caller: str) -> int:
        """INVITEs received whose From user is ``caller`` (sipp's -trace_msg log)."""
        count = 0
        for chunk in self._invites():
            for line in chunk.splitlines():
                low = line.lower()
                if (low.startswith("from:") or low.startswith("f:")) and f"{caller}@" in line:
                    count += 1
                    break
        return count

    def registers(self, contact_user: str | None = None) -> list[str]:
        """REGISTERs received with an Authorization header (the answer to the challenge);
        with ``contact_user``, only those whose Contact names that user (the edge's uac
        record, not lifeline's own REGISTER check, which uses another Contact)."""
        if not self.message_log.exists():
            return []
        text = self.message_log.read_text(errors="replace")
        out = []
        for chunk in text.split("-----------------------------------------------"):
            if "received" not in chunk or "REGISTER sip:" not in chunk:
                continue
            if "Authorization: Digest" not in chunk:
                continue
            if contact_user is not None and f"<sip:{contact_user}@" not in chunk:
                continue
            out.append(chunk)
        return out


@dataclass
class SipSite:
    """Kamailio in the site, SBCs in inet, the PBX on the LAN host; see the module doc."""

    lab: Lab
    workdir: Path
    carrier_port: int = 5060
    pbx_port: int = 5070
    rpc_port: int = 5071
    trunk_failover: bool = True
    # Kamailio's config dir, prepared as the README says (test_edge_setup); None: the lab
    # prepares its own the same way (tests.lab.kamailio).
    edge_dir: Path | None = None
    kamailio: subprocess.Popen[str] | None = None
    peers: dict[str, SipPeer] = field(default_factory=dict)
    _uac_seq: int = 0

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Config and argv only: the edge's own start/stop are not used, the lab owns the
        # process.
        self.edge = LabKamailio(
            self.workdir / "kamailio",
            uplink_addrs=self.uplinks,
            carrier_port=self.carrier_port,
            pbx_addr=str(self.lab.lan_site_addr),
            pbx_port=self.pbx_port,
            rpc_port=self.rpc_port,
            netns=self.lab.site,
            trunk_failover=self.trunk_failover,
            confdir=self.edge_dir,
        )

    @property
    def uplinks(self) -> tuple[str, ...]:
        """The site's address on every link: the edge's carrier-side sockets."""
        return tuple(str(lk.site_addr) for lk in self.lab.links.values())

    @property
    def rpc_url(self) -> str:
        return self.edge.rpc_url

    # -- processes -------------------------------------------------------------------------
    def start(self) -> SipSite:
        """Start everything; on failure what was started is stopped again."""
        try:
            self.start_kamailio()
            for name in SBC_CARRIERS:
                self.start_sbc(name)
            self.start_uas("pbx", self.lab.lan, str(self.lab.lan_host_addr), PBX_PORT)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        self.stop_kamailio()
        for name in list(self.peers):
            self.stop_peer(name)

    def start_kamailio(self, timeout: float = 10.0) -> None:
        if self.kamailio is not None and self.kamailio.poll() is None:
            raise RuntimeError("kamailio is already running")
        argv = self.edge.argv()[4:]  # without "ip netns exec NS": lab.popen adds it
        with self.edge.log_path.open("a") as log:
            proc = self.kamailio = self.lab.popen(self.lab.site, argv, stdout=log,
                                                  stderr=subprocess.STDOUT)

        def rpc_listening() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"kamailio exited with {proc.returncode}: "
                                   f"{self.edge.log_tail()}")
            return self._listening(self.lab.site, self.rpc_port, "-tln")

        until(rpc_listening, timeout, 0.05, "kamailio's RPC to listen",
              detail=self.edge.log_tail)

    def stop_kamailio(self) -> None:
        proc, self.kamailio = self.kamailio, None
        if proc is not None:
            self.lab.stop(proc, grace=5.0)

    def start_sbc(self, name: str, scenario: str = "kam_uas.xml") -> SipPeer:
        """Carrier SBC ``name``; ``scenario`` "uas_503.xml" makes it answer OPTIONS but refuse
        every call with 503."""
        return self.start_uas(name, self.lab.inet, str(CARRIER_SBCS[name]), SBC_PORT,
                              scenario)

    def start_uas(self, name: str, ns: str, addr: str, port: int,
                  scenario: str = "kam_uas.xml") -> SipPeer:
        """A sipp UAS answering OPTIONS (``-aa``) and calls, logging every message."""
        # kam_uas.xml, not sipp's built-in uas: that one drops the Record-Route from its
        # answers, so the edge would drop every ACK and BYE of the call.
        return self._start_sipp(name, ns, addr, port,
                                ["-sf", str(SCENARIO_DIR / scenario), "-aa"])

    def _start_sipp(self, name: str, ns: str, addr: str, port: int,
                    scenario_args: list[str]) -> SipPeer:
        """sipp as peer ``name`` on ``addr:port`` in ``ns``, logging every message (and
        appending to the log of an earlier run of that peer); back once it listens."""
        if name in self.peers and self.peers[name].proc is not None:
            raise RuntimeError(f"{name} is already running")
        peer = self.peers.get(name) or SipPeer(name, ns, addr, port,
                                               self.workdir / f"{name}_messages.log")
        argv = ["sipp", *scenario_args, "-i", addr, "-p", str(port), "-nostdin", "-nd",
                "-trace_msg", "-message_file", str(peer.message_log),
                "-trace_err", "-error_file", str(self.workdir / f"{name}_errors.log")]
        proc = peer.proc = self.lab.popen(ns, argv, cwd=str(self.workdir),
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.peers[name] = peer

        def listening() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"exited with {proc.returncode}")
            return self._listening(ns, port, "-uln", addr)

        try:
            until(listening, 5.0, 0.05, f"sipp {name} to listen")
        except (RuntimeError, TimeoutError) as exc:
            self.stop_peer(name)
            raise RuntimeError(f"sipp {name} is not listening on {addr}:{port}: {exc}") from None
        return peer

    def stop_peer(self, name: str) -> None:
        """Kill one SBC or the PBX by its PID: from then on it answers nothing."""
        peer = self.peers[name]
        proc, peer.proc = peer.proc, None
        if proc is not None:
            self.lab.stop(proc, grace=1.0)

    def _listening(self, ns: str, port: int, flags: str, addr: str | None = None) -> bool:
        filt = f"sport = :{port}" if addr is None else f"src {addr} and sport = :{port}"
        out = self.lab.run(ns, ["ss", "-H", flags, filt], check=False).stdout
        return bool(out.strip())

    def start_registrar(self) -> SipPeer:
        """The digest registrar of ``REGISTRAR_TRUNK`` in inet (401, then 200 to a REGISTER
        with Authorization; ``-aa`` answers the trunk's OPTIONS), plus one iptables counter
        per link of UDP from that link's site address, port 5060 (the edge's carrier socket:
        lifeline's own probes use other ports), to the registrar."""
        name, addr = REGISTRAR_TRUNK, str(CARRIER_REGISTRAR)
        if name not in self.peers:
            for lk in self.lab.links.values():
                self.lab.iptables(self.lab.inet, "-A", "INPUT", "-p", "udp",
                                  "-s", str(lk.site_addr), "--sport", str(self.carrier_port),
                                  "-d", addr, "--dport", str(REGISTRAR_PORT),
                                  "-m", "comment", "--comment", f"reg-{lk.name}")
        return self._start_sipp(name, self.lab.inet, addr, REGISTRAR_PORT,
                                ["-sf", str(SCENARIO_DIR / "register-digest.xml"),
                                 "-key", "algorithm", "MD5", "-aa"])

    def registrar_packets_from(self, link: str) -> int:
        """UDP packets the registrar got from the edge's carrier socket via ``link``'s
        site address (the counters start_registrar installed)."""
        out = self.lab.iptables(self.lab.inet, "-L", "INPUT", "-v", "-n", "-x").stdout
        for line in out.splitlines():
            if f"/* reg-{link} */" in line:
                return int(line.split()[0])
        raise LookupError(f"no registrar counter for {link}: start_registrar() first")

    # -- calls -----------------------------------------------------------------------------
    def _uac(self, ns: str, src: str, dst: str, called: str, caller: str,
             timeout: float) -> int:
        self._uac_seq += 1
        # A fresh port per call (no late stray replies), clear of sipp's media ports (6000+).
        port = 15000 + self._uac_seq % 5000
        errors = self.workdir / f"uac_{self._uac_seq}_errors.log"
        argv = ["sipp", dst, "-sf", str(SCENARIO_DIR / "kam_uac.xml"), "-s", called,
                "-key", "caller", caller, "-i", src, "-p", str(port), "-m", "1", "-nostdin",
                "-nd", "-timeout", f"{timeout:g}s", "-timeout_error",
                "-recv_timeout", f"{timeout:g}s", "-trace_err", "-error_file", str(errors)]
        proc = self.lab.popen(ns, argv, cwd=str(self.workdir),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout + 5)
        code = self.lab.stop(proc, grace=1.0)
        with contextlib.suppress(OSError):
            if code == 0:
                errors.unlink()
        return -1 if code is None else code

    def inbound(self, did: str, link: str = "fibre-a", sbc: str = "carrier-a-sbc1",
                timeout: float = 5.0) -> int:
        """A carrier calls ``did``: sipp UAC at ``sbc``'s address (in inet) sends the INVITE
        to the site's address on ``link`` (through that link's ISP); sipp's exit code."""
        dst = f"{self.lab.link(link).site_addr}:{self.carrier_port}"
        return self._uac(self.lab.inet, str(CARRIER_SBCS[sbc]), dst, did, "+441234567890",
                         timeout)

    def outbound(self, caller_did: str, called: str = "+441234567890",
                 timeout: float = 5.0, source: str | None = None) -> int:
        """The PBX (LAN host) calls out with ``caller_did`` as the caller; sipp's exit code.
        ``source`` names another started peer (e.g. "dr") whose host places the call
        instead: the edge takes any request on its PBX-side socket as outbound, so a DR
        PBX on the LAN calls out the same way (from a port of its own: sipp cannot share
        the peer's listening port)."""
        ns, src = self.lab.lan, str(self.lab.lan_host_addr)
        if source is not None:
            peer = self.peers[source]
            ns, src = peer.ns, peer.addr
        dst = f"{self.lab.lan_site_addr}:{self.pbx_port}"
        return self._uac(ns, src, dst, called, caller_did, timeout)

    # -- lifeline -------------------------------------------------------------------------
    def start_daemon(self, state_dir: Path, *, registration: bool = False,
                     edit: Callable[[dict[str, Any]], None] | None = None,
                     ready_timeout: float | None = 20.0,
                     what: str = "trunks up, plan routable and pushed") -> LifelineProcess:
        """lifeline in the site with ``config_dict(state_dir, registration)`` (changed in
        place by ``edit`` first, if given), waited for until ``site_ready`` (unless
        ``ready_timeout`` is None: the caller has its own idea of ready)."""
        config = self.config_dict(state_dir, registration=registration)
        if edit is not None:
            edit(config)
        daemon = LifelineProcess.with_config(self.lab, state_dir, config)
        daemon.start()
        if ready_timeout is not None:
            daemon.wait_for(site_ready, ready_timeout, what)
        return daemon

    def config_dict(self, state_dir: Path, registration: bool = False,
                    **overrides: Any) -> dict[str, Any]:
        """The lab's lifeline config plus this site's trunks, destinations, DIDs and edge;
        ``registration`` adds REGISTRAR_TRUNK (no DIDs: it only registers), its password in
        a file in ``state_dir``."""
        overrides.setdefault("reliability", 2)
        overrides.setdefault("hold_down", "2s")
        config = lifeline_config_dict(self.lab, state_dir, **overrides)
        config["trunks"] = [
            {"name": name, "carrier": carrier, "uri": f"sip:{CARRIER_SBCS[name]}:{SBC_PORT}",
             "interval": "200ms", "timeout": "200ms",
             "thresholds": {"down_after": 3, "hold_down": "2s"},
             # Lab pace for the edge signal (defaults: 30 s window, 60 s hold).
             "edge_signal": {"window": "10s", "hold_down": "6s", "max_hold_down": "60s"}}
            for name, carrier in SBC_CARRIERS.items()
        ]
        config["destinations"] = [
            {"name": "pbx", "uri": f"sip:{self.lab.lan_host_addr}:{PBX_PORT}"},
            {"name": "dr", "uri": f"sip:{self.lab.lan_host_addr}:{DR_PORT}"},
        ]
        config["dids"] = [
            {"numbers": numbers, "trunks": list(trunks), "destination": "pbx",
             "dr_destination": "dr"}
            for numbers, trunks in DID_RANGES
        ]
        config["sip_edge"] = {"kamailio": {"rpc_url": self.rpc_url}}
        if registration:
            state_dir.mkdir(parents=True, exist_ok=True)
            secret = state_dir / "registrar.password"
            secret.write_text("lab-registrar-secret\n")
            secret.chmod(0o600)
            config["trunks"].append({
                "name": REGISTRAR_TRUNK, "carrier": "carrier-r",
                "uri": f"sip:{CARRIER_REGISTRAR}:{REGISTRAR_PORT}",
                "interval": "200ms", "timeout": "200ms",
                "thresholds": {"down_after": 3, "hold_down": "2s"},
                "register": {"user": REGISTRAR_USER, "domain": REGISTRAR_DOMAIN,
                             "password_file": str(secret)},
            })
        return config
