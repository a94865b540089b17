"""The lab topology: a contact-center site with three uplinks to a fake internet.

``Lab`` builds, in network namespaces named with a per-run prefix, a ``site`` router (where
lifeline runs) with uplinks ``wan-a``/``wan-b``/``lte0`` to three ISP namespaces and a LAN
port to a ``lan`` host; the ISPs route to an ``inet`` namespace that holds the far probe
targets and a packet sink. Its options are the lab's variants: the site's NAT (SNAT or
masquerade), extra far targets for scale runs, and ``ipv6=True`` for a dual-stack lab (each
uplink and ISP also carries IPv6, routed back by inet without NAT; the LAN stays IPv4).
Every address is from a documentation range and lives inside a lab namespace: nothing is
ever created, addressed or routed in the machine's own namespace (namespaces and veth pairs
come from ``lab.builder``). ``Lab`` also runs commands in its namespaces and tracks the
processes it starts, so ``destroy()`` removes every namespace and process it made. Faults
live in ``lab.faults``, the data-plane stream in ``lab.stream``.

Layout (addresses: ISP gateway .1 and site .2 of each /30; with IPv6, ::1 and ::2 of
2001:db8:a::/64, b, c)::

    lan(eth0 .130) -- lan0 [site] wan-a -- site-side [isp-a] uplink -- isp-a [inet]
                              wan-b -- site-side [isp-b] uplink -- isp-b [inet]
                              lte0  -- site-side [isp-c] uplink -- isp-c [inet]
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Literal

from tests.lab import netns
from tests.lab.builder import NetBuilder
from tests.lab.faults import Faults

__all__ = [
    "CARRIER_REGISTRAR",
    "CARRIER_SBCS",
    "INET_TARGETS",
    "INET_TARGETS6",
    "ISP_SITE_IFNAME",
    "ISP_UPLINK_IFNAME",
    "LAN_HOST_ADDR",
    "LAN_HOST_IFNAME",
    "LAN_NET",
    "LAN_SITE_ADDR",
    "LAN_SITE_IFNAME",
    "LINK_PLANS",
    "SCALE_NET",
    "SINK_ADDR",
    "STREAM_PORT",
    "Lab",
    "LabLink",
    "LinkPlan",
    "scale_target_addresses",
]

# --- the address plan, in one place -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkPlan:
    """Static plan of one uplink: names and subnets, before any namespace exists."""

    name: str  # operator's name of the link: "fibre-a"
    role: str  # namespace role of its ISP: "isp-a"
    site_ifname: str  # interface in the site: "wan-a"
    subnet: IPv4Network  # site <-> ISP /30: .1 gateway (ISP), .2 site
    uplink: IPv4Network  # ISP <-> inet /30: .1 inet, .2 ISP
    queue_num: int  # NFQUEUE number of this link's delayer
    subnet6: IPv6Network  # dual-stack lab only: site <-> ISP, ::1 gateway (ISP), ::2 site
    uplink6: IPv6Network  # dual-stack lab only: ISP <-> inet, ::1 inet, ::2 ISP


LINK_PLANS: tuple[LinkPlan, ...] = (
    LinkPlan("fibre-a", "isp-a", "wan-a", IPv4Network("198.51.100.0/30"),
             IPv4Network("203.0.113.0/30"), 11,
             IPv6Network("2001:db8:a::/64"), IPv6Network("2001:db8:fa::/64")),
    LinkPlan("fibre-b", "isp-b", "wan-b", IPv4Network("198.51.100.4/30"),
             IPv4Network("203.0.113.4/30"), 12,
             IPv6Network("2001:db8:b::/64"), IPv6Network("2001:db8:fb::/64")),
    LinkPlan("lte", "isp-c", "lte0", IPv4Network("198.51.100.8/30"),
             IPv4Network("203.0.113.8/30"), 13,
             IPv6Network("2001:db8:c::/64"), IPv6Network("2001:db8:fc::/64")),
)

ISP_SITE_IFNAME = "site-side"  # the ISP end of the site link, where faults are injected
ISP_UPLINK_IFNAME = "uplink"  # the ISP end of its link to inet

LAN_NET = IPv4Network("192.0.2.128/26")
LAN_SITE_ADDR = IPv4Address("192.0.2.129")
LAN_HOST_ADDR = IPv4Address("192.0.2.130")
LAN_SITE_IFNAME = "lan0"
LAN_HOST_IFNAME = "eth0"

INET_TARGETS: tuple[IPv4Address, ...] = (
    IPv4Address("192.0.2.1"),
    IPv4Address("192.0.2.2"),
    IPv4Address("192.0.2.3"),
)
# The far targets of a dual-stack lab, on inet's loopback like the IPv4 ones.
INET_TARGETS6: tuple[IPv6Address, ...] = (
    IPv6Address("2001:db8:f::1"),
    IPv6Address("2001:db8:f::2"),
)
SINK_ADDR = IPv4Address("192.0.2.10")
# The carriers' SIP border controllers, on the internet side (lab.sip runs sipp there).
CARRIER_SBCS: dict[str, IPv4Address] = {
    "carrier-a-sbc1": IPv4Address("192.0.2.21"),
    "carrier-a-sbc2": IPv4Address("192.0.2.22"),
    "carrier-b-sbc1": IPv4Address("192.0.2.23"),
}
# A carrier that wants the site registered (digest REGISTER): its registrar, also in inet,
# kept apart from CARRIER_SBCS so the plain SBC helpers do not start a UAS on it.
CARRIER_REGISTRAR = IPv4Address("192.0.2.24")
# An RTP port, so even a conntrack flush narrowed to voice ports covers the stream.
STREAM_PORT = 16384

SCALE_NET = IPv4Network("198.18.0.0/15")


def scale_target_addresses(count: int) -> list[IPv4Address]:
    """The first ``count`` host addresses of 198.18.0.0/15 (skipping .0 and .255 octets so
    no target looks like a network or broadcast address to a reader)."""
    if count < 0 or count > 100_000:
        raise ValueError(f"scale_targets must be in 0..100000, got {count}")
    out: list[IPv4Address] = []
    base = int(SCALE_NET.network_address)
    i = 0
    while len(out) < count:
        i += 1
        addr = IPv4Address(base + i)
        if addr.packed[3] in (0, 255):
            continue
        out.append(addr)
    return out


@dataclass(frozen=True, slots=True)
class LabLink:
    """One uplink of a built lab, as tests and the config generator need it."""

    name: str
    site_ifname: str  # "wan-a"
    site_addr: IPv4Address  # 198.51.100.2
    gateway: IPv4Address  # 198.51.100.1, on the ISP's site-side interface
    prefixlen: int  # 30
    isp_ns: str  # namespace of the ISP
    isp_ifname: str  # "site-side": where faults bite
    isp_uplink_addr: IPv4Address  # ISP end of the ISP <-> inet link
    inet_addr: IPv4Address  # inet end of the ISP <-> inet link
    inet_ifname: str  # name of this link's interface in inet ("isp-a")
    queue_num: int
    # IPv6 of the same link, configured in a dual-stack lab only (Lab(ipv6=True)).
    site_addr6: IPv6Address  # 2001:db8:a::2
    gateway6: IPv6Address  # 2001:db8:a::1
    isp_uplink_addr6: IPv6Address
    inet_addr6: IPv6Address

    @property
    def site_cidr(self) -> str:
        return f"{self.site_addr}/{self.prefixlen}"

    @property
    def site_cidr6(self) -> str:
        return f"{self.site_addr6}/64"


# --- teardown on exit -----------------------------------------------------------------------

_live_labs: weakref.WeakSet[Lab] = weakref.WeakSet()
_exit_hooks_installed = False
_hooks_lock = threading.Lock()


def _destroy_live_labs() -> None:
    for lab in list(_live_labs):
        with contextlib.suppress(Exception):
            lab.destroy()


def _sigterm_teardown(signum: int, frame: FrameType | None) -> None:
    """Tear down live labs, then die of SIGTERM as if we had not been here.

    Raising SystemExit instead would not do: a test runner may catch it as one failed test
    and go on running, and the process asked to stop would not stop.
    """
    _destroy_live_labs()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_exit_hooks() -> None:
    """Tear down live labs at interpreter exit and on SIGTERM.

    SIGTERM is only taken over when nobody else handles it (default action) and we are in
    the main thread; otherwise the owner of the handler decides, and ``cleanup_stale``
    catches what a hard kill leaves.
    """
    global _exit_hooks_installed
    with _hooks_lock:
        if _exit_hooks_installed:
            return
        _exit_hooks_installed = True
        atexit.register(_destroy_live_labs)
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        ):
            signal.signal(signal.SIGTERM, _sigterm_teardown)


def _close_pipes(proc: subprocess.Popen[str]) -> None:
    for pipe in (proc.stdout, proc.stderr, proc.stdin):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def _helper_env() -> dict[str, str]:
    """Environment for helper processes (``python -m tests.lab.*``): the lab package must be
    importable whether it is installed or used from a source tree."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env


# --- the lab ------------------------------------------------------------------------------


class Lab:
    """A private copy of the site and its internet, in namespaces; see the module docstring.

    Use as a context manager, or call ``build()`` and ``destroy()``. Namespace names are
    ``<prefix><role>``, e.g. ``ll-3fa94c-site``.
    """

    def __init__(
        self,
        prefix: str | None = None,
        nat: Literal["snat", "masquerade"] = "snat",
        scale_targets: int = 0,
        ipv6: bool = False,
    ) -> None:
        if nat not in ("snat", "masquerade"):
            raise ValueError(f"nat must be 'snat' or 'masquerade', got {nat!r}")
        roles = ["site", *(plan.role for plan in LINK_PLANS), "inet", "lan"]
        self.net = NetBuilder(roles, prefix, ipv6=ipv6)
        self.prefix = self.net.prefix
        self.ipv6 = ipv6
        self.nat: Literal["snat", "masquerade"] = nat
        self.scale_targets = scale_targets
        self.scale_addresses = scale_target_addresses(scale_targets)
        self.site = self.net.ns("site")
        self.lan = self.net.ns("lan")
        self.inet = self.net.ns("inet")
        self.links: dict[str, LabLink] = {
            plan.name: LabLink(
                name=plan.name,
                site_ifname=plan.site_ifname,
                site_addr=plan.subnet.network_address + 2,
                gateway=plan.subnet.network_address + 1,
                prefixlen=plan.subnet.prefixlen,
                isp_ns=self.net.ns(plan.role),
                isp_ifname=ISP_SITE_IFNAME,
                isp_uplink_addr=plan.uplink.network_address + 2,
                inet_addr=plan.uplink.network_address + 1,
                inet_ifname=plan.role,
                queue_num=plan.queue_num,
                site_addr6=plan.subnet6.network_address + 2,
                gateway6=plan.subnet6.network_address + 1,
                isp_uplink_addr6=plan.uplink6.network_address + 2,
                inet_addr6=plan.uplink6.network_address + 1,
            )
            for plan in LINK_PLANS
        }
        self.lan_host_addr = LAN_HOST_ADDR
        self.lan_site_addr = LAN_SITE_ADDR
        self.targets = INET_TARGETS
        self.targets6 = INET_TARGETS6
        self.sink = SINK_ADDR
        self.faults = Faults(self)
        self.built = False
        self.build_seconds: float | None = None
        self.destroy_seconds: float | None = None
        self._procs: list[subprocess.Popen[str]] = []

    # -- names ------------------------------------------------------------------------------

    @property
    def namespaces(self) -> list[str]:
        """All namespace names of this lab, in build order."""
        return self.net.namespaces

    def link(self, name: str) -> LabLink:
        try:
            return self.links[name]
        except KeyError:
            raise KeyError(f"no link {name!r}; links are {sorted(self.links)}") from None

    # -- lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> Lab:
        self.build()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.destroy()

    def build(self) -> None:
        """Create all namespaces, links, addresses, routes and NAT.

        A second call on a built lab does nothing. On any failure everything made so far is
        torn down and the error re-raised, so a failed build leaves no namespace behind.
        """
        if self.built:
            return
        _install_exit_hooks()
        _live_labs.add(self)
        started = time.monotonic()
        try:
            self.net.create()
            self._build_links()
            self._build_site()
            self._build_isps()
            self._build_inet()
            self._build_lan()
        except BaseException:
            self.destroy()
            raise
        self.built = True
        self.build_seconds = time.monotonic() - started

    def destroy(self) -> None:
        """Kill every process the lab started and delete every namespace it created.

        Safe to call twice and after a failed build. Faults need no undoing: their rules
        and interfaces disappear with the namespaces.
        """
        started = time.monotonic()
        self.faults.forget()
        procs, self._procs = self._procs, []
        netns.kill_pids([p.pid for p in procs if p.poll() is None])
        for p in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=1)
            _close_pipes(p)
        created = self.net.created
        self.net.destroy()
        _live_labs.discard(self)
        if self.built or created:
            self.destroy_seconds = time.monotonic() - started
        self.built = False

    # -- running things in namespaces --------------------------------------------------------

    def run(
        self,
        ns: str,
        argv: Sequence[str],
        check: bool = True,
        timeout: float = 10,
    ) -> subprocess.CompletedProcess[str]:
        """Run argv inside namespace ``ns`` and wait; ``check`` raises LabError on failure."""
        return netns.run_cmd(netns.ns_argv(ns, argv), check=check, timeout=timeout)

    def popen(self, ns: str, argv: Sequence[str], *, extra_env: Mapping[str, str] | None = None,
              **kw: Any) -> subprocess.Popen[str]:
        """Start argv inside ``ns`` in the background; ``destroy()`` kills it by PID.

        Keyword arguments go to ``subprocess.Popen`` (text mode is always on). Helper
        modules (``python -m tests.lab...``) find the lab package through PYTHONPATH;
        ``extra_env`` adds to (or overrides) that environment.
        """
        kw.setdefault("env", {**_helper_env(), **(extra_env or {})})
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw["text"] = True
        proc: subprocess.Popen[str] = subprocess.Popen(netns.ns_argv(ns, argv), **kw)
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[str], grace: float = 2.0) -> int | None:
        """Stop one tracked process (SIGTERM, then SIGKILL after ``grace``); its exit code."""
        if proc.poll() is None:
            netns.kill_pids([proc.pid], grace=grace)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
        if proc in self._procs:
            self._procs.remove(proc)
        _close_pipes(proc)
        return proc.returncode

    def python_argv(self, module: str, *args: str) -> list[str]:
        """argv that runs a lab helper module with this interpreter."""
        return [sys.executable, "-m", module, *args]

    def ip_batch(self, ns: str, commands: Sequence[str]) -> None:
        """Run many ``ip`` commands in ``ns`` with one fork (``ip -n NS -batch -``)."""
        netns.ip_batch(ns, commands)

    def sysctl(self, ns: str, *settings: str) -> None:
        self.run(ns, ["sysctl", "-q", "-w", *settings])

    def iptables(self, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """iptables inside ``ns``; ``-w`` waits for the xtables lock instead of failing."""
        return self.run(ns, ["iptables", "-w", "5", *args], check=check)

    # -- building steps ------------------------------------------------------------------------

    def _build_links(self) -> None:
        # Distinct ifindexes on the two ends of each uplink, so carrier changes are reported
        # at once (see NetBuilder.veth; README says physical NICs may be up to 1 s late).
        net = self.net
        site_cmds = [
            net.veth_cmd(lk.site_ifname, plan.role, lk.isp_ifname, a_index=11 + i,
                         b_index=21 + i)
            for i, (plan, lk) in enumerate(zip(LINK_PLANS, self.links.values(), strict=True))
        ]
        site_cmds.append(net.veth_cmd(LAN_SITE_IFNAME, "lan", LAN_HOST_IFNAME))
        net.ip("site", *site_cmds)
        for plan, lk in zip(LINK_PLANS, self.links.values(), strict=True):
            net.veth(plan.role, ISP_UPLINK_IFNAME, "inet", lk.inet_ifname)

    def _build_site(self) -> None:
        cmds = []
        for lk in self.links.values():
            cmds.append(f"address add {lk.site_cidr} dev {lk.site_ifname}")
            if self.ipv6:
                cmds.append(f"address add {lk.site_cidr6} dev {lk.site_ifname} nodad")
            cmds.append(f"link set {lk.site_ifname} up")
        cmds += [
            f"address add {LAN_SITE_ADDR}/{LAN_NET.prefixlen} dev {LAN_SITE_IFNAME}",
            f"link set {LAN_SITE_IFNAME} up",
        ]
        self.ip_batch(self.site, cmds)
        # Loose reverse-path filtering, as on a multi-WAN router: a reply may come back on
        # a link other than the one the main table would pick for its source.
        self.sysctl(
            self.site,
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=2",
            "net.ipv4.conf.default.rp_filter=2",
        )
        rules = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]",
                 ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]"]
        for lk in self.links.values():
            if self.nat == "snat":
                rules.append(f"-A POSTROUTING -s {LAN_NET} -o {lk.site_ifname} "
                             f"-j SNAT --to-source {lk.site_addr}")
            else:
                rules.append(f"-A POSTROUTING -s {LAN_NET} -o {lk.site_ifname} -j MASQUERADE")
        rules.append("COMMIT")
        netns.run_cmd(netns.ns_argv(self.site, ["iptables-restore", "-w", "5"]),
                      input_text="\n".join(rules) + "\n")

    def _build_isps(self) -> None:
        for lk in self.links.values():
            cmds = [
                f"address add {lk.gateway}/{lk.prefixlen} dev {lk.isp_ifname}",
                f"link set {lk.isp_ifname} up",
                f"address add {lk.isp_uplink_addr}/30 dev {ISP_UPLINK_IFNAME}",
                f"link set {ISP_UPLINK_IFNAME} up",
                f"route add default via {lk.inet_addr} dev {ISP_UPLINK_IFNAME}",
            ]
            forwarding = ["net.ipv4.ip_forward=1"]
            if self.ipv6:
                cmds += [
                    f"address add {lk.gateway6}/64 dev {lk.isp_ifname} nodad",
                    f"address add {lk.isp_uplink_addr6}/64 dev {ISP_UPLINK_IFNAME} nodad",
                    f"route add ::/0 via {lk.inet_addr6} dev {ISP_UPLINK_IFNAME}",
                ]
                forwarding.append("net.ipv6.conf.all.forwarding=1")
            self.ip_batch(lk.isp_ns, cmds)
            self.sysctl(lk.isp_ns, *forwarding)

    def _build_inet(self) -> None:
        cmds = [f"address add {addr}/32 dev lo"
                for addr in (*INET_TARGETS, SINK_ADDR, *CARRIER_SBCS.values(),
                             CARRIER_REGISTRAR)]
        if self.ipv6:
            cmds += [f"address add {addr}/128 dev lo" for addr in INET_TARGETS6]
        for plan, lk in zip(LINK_PLANS, self.links.values(), strict=True):
            cmds += [
                f"address add {lk.inet_addr}/30 dev {lk.inet_ifname}",
                f"link set {lk.inet_ifname} up",
                # Back to the site's address of this link through the matching ISP, so a
                # flow leaving by one link returns by the same one, as on the internet.
                f"route add {lk.site_addr}/32 via {lk.isp_uplink_addr} dev {lk.inet_ifname}",
            ]
            if self.ipv6:  # no NAT66: the site's prefix of this link, back the same way
                cmds += [
                    f"address add {lk.inet_addr6}/64 dev {lk.inet_ifname} nodad",
                    f"route add {plan.subnet6} via {lk.isp_uplink_addr6} dev {lk.inet_ifname}",
                ]
        cmds += [f"address add {addr}/32 dev lo" for addr in self.scale_addresses]
        self.ip_batch(self.inet, cmds)

    def _build_lan(self) -> None:
        self.ip_batch(self.lan, [
            f"address add {LAN_HOST_ADDR}/{LAN_NET.prefixlen} dev {LAN_HOST_IFNAME}",
            f"link set {LAN_HOST_IFNAME} up",
            f"route add default via {LAN_SITE_ADDR} dev {LAN_HOST_IFNAME}",
        ])


def _check_plan() -> None:
    """Guard the address plan against edits that would leave the documentation ranges,
    and the namespace roles against drifting from what cleanup_stale recognises."""
    roles = {"site", "inet", "lan", *(p.role for p in LINK_PLANS)}
    assert roles == set(netns.LAB_ROLES), roles
    doc = [IPv4Network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")]
    nets = [LAN_NET, *(p.subnet for p in LINK_PLANS), *(p.uplink for p in LINK_PLANS)]
    for net in nets:
        assert any(net.subnet_of(d) for d in doc), net
    for addr in (*INET_TARGETS, SINK_ADDR):
        assert any(addr in d for d in doc), addr
    doc6 = IPv6Network("2001:db8::/32")
    for plan in LINK_PLANS:
        assert plan.subnet6.subnet_of(doc6) and plan.uplink6.subnet_of(doc6), plan
    assert all(addr in doc6 for addr in INET_TARGETS6)


_check_plan()
