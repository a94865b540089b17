"""Faults a lab link can suffer, injected in the ISP namespace of that link.

Each fault is a small method on ``Faults`` (reached as ``lab.faults``) that changes the ISP's
end of the link: iptables rules on its ``site-side`` interface, that interface's admin state,
or an NFQUEUE delayer process. Every change records how to undo itself, so ``clear(link)``
restores the link and ``Lab.destroy()`` forgets what the namespaces take with them. Faults
never touch the site namespace: what lifeline sees there is only the consequence, as with a
real ISP. Loss is iptables (statistic); delay and jitter use ``tc netem`` where the kernel
has it and otherwise (as on the machine this was built on) an NFQUEUE userspace delayer.

Rule order matters: NFQUEUE's accept verdict skips the rest of the chain, so dropping rules
are inserted at the top (``-I``) and delay rules appended (``-A``); a loss fault therefore
still bites while a delay is on.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tests.lab.netns import wait_ready

if TYPE_CHECKING:
    from tests.lab.topology import Lab, LabLink

__all__ = ["Faults"]

_DELAY = "delay"
_LOSS = "loss"


@dataclass
class _LinkFaults:
    # (fault name, how to undo one of its changes), in order of injection.
    undo: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    delayer: subprocess.Popen[str] | None = None

    @property
    def active(self) -> list[str]:
        return list(dict.fromkeys(name for name, _ in self.undo))


class Faults:
    """The fault switches of one lab; every method takes a link name ("fibre-a", ...)."""

    def __init__(self, lab: Lab) -> None:
        self._lab = lab
        self._state: dict[str, _LinkFaults] = {}
        self._netem: bool | None = None  # unknown until the first delay asks

    def active(self, link: str) -> list[str]:
        """Names of the faults currently on ``link``, e.g. ``["loss 0.5"]``."""
        st = self._state.get(link)
        return st.active if st else []

    # -- the faults ----------------------------------------------------------------------------

    def blackhole(self, link: str) -> None:
        """Drop all traffic forwarded through the ISP, both ways; the gateway still answers
        ping, as when an ISP loses its upstream."""
        lk = self._lab.link(link)
        self._rule(lk, "blackhole", "FORWARD", "-i", lk.isp_ifname, "-j", "DROP")
        self._rule(lk, "blackhole", "FORWARD", "-o", lk.isp_ifname, "-j", "DROP")

    def dead_gateway(self, link: str) -> None:
        """The gateway stops answering anything and forwards nothing (carrier stays up)."""
        lk = self._lab.link(link)
        self._rule(lk, "dead_gateway", "INPUT", "-i", lk.isp_ifname, "-j", "DROP")
        self._rule(lk, "dead_gateway", "FORWARD", "-i", lk.isp_ifname, "-j", "DROP")
        self._rule(lk, "dead_gateway", "FORWARD", "-o", lk.isp_ifname, "-j", "DROP")

    def carrier(self, link: str, up: bool) -> None:
        """Set the ISP end of the veth down (the site sees NO-CARRIER) or back up."""
        lk = self._lab.link(link)
        self._undo_named(link, "carrier down")
        if up:
            return
        self._lab.ip_batch(lk.isp_ns, [f"link set {lk.isp_ifname} down"])

        def undo() -> None:
            self._lab.ip_batch(lk.isp_ns, [f"link set {lk.isp_ifname} up"])

        self._st(link).undo.append(("carrier down", undo))

    def loss(self, link: str, ratio: float) -> None:
        """Random loss on the link such that a round trip (a ping, a probe) is lost with
        probability ``ratio``.

        Each direction drops with p = 1 - sqrt(1 - ratio), so request and reply together
        fail with ``ratio``: that is the figure a probe measures and health thresholds use.
        A one-way flow (the data-plane stream) sees p, e.g. 29 % for ratio 0.5.
        """
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"loss ratio must be in [0, 1], got {ratio}")
        lk = self._lab.link(link)
        p = 1.0 - math.sqrt(1.0 - ratio)
        stat = ["-m", "statistic", "--mode", "random", "--probability", f"{p:.6f}", "-j", "DROP"]
        # A second loss() replaces the first rather than compounding with it.
        self._undo_named(link, _LOSS)
        if ratio == 0.0:
            return
        name = _LOSS
        self._rule(lk, name, "FORWARD", "-i", lk.isp_ifname, *stat)
        self._rule(lk, name, "FORWARD", "-o", lk.isp_ifname, *stat)
        self._rule(lk, name, "INPUT", "-i", lk.isp_ifname, *stat)
        self._rule(lk, name, "OUTPUT", "-o", lk.isp_ifname, *stat)

    def loss_each_way(self, link: str, ratio: float) -> None:
        """Random loss of ``ratio`` in each direction (what a one-way RTP stream suffers):
        a round trip is then lost with 1 - (1 - ratio)^2, e.g. 1.99 % for 1 % each way."""
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"loss ratio must be in [0, 1], got {ratio}")
        self.loss(link, 1.0 - (1.0 - ratio) ** 2)

    def silent_target(self, addr: str) -> None:
        """A far target stops answering ICMP echo (on every link: it is dropped where it
        lives, in inet), as a host that starts filtering ping does; undone by
        ``clear("inet")``."""
        spec = ("INPUT", "-d", addr, "-p", "icmp", "--icmp-type", "echo-request", "-j", "DROP")
        self._lab.iptables(self._lab.inet, "-I", *spec)

        def undo() -> None:
            self._lab.iptables(self._lab.inet, "-D", *spec)

        self._st("inet").undo.append((f"silent {addr}", undo))

    def delay(self, link: str, delay_ms: float, jitter_ms: float = 0.0) -> None:
        """Delay every packet on the link, each direction, by ``delay_ms`` + U(0, jitter_ms).

        A round trip thus takes about 2 x delay + up to 2 x jitter. Packets go through
        NFQUEUE to ``lab.delayer`` running in the ISP namespace; ``--queue-bypass`` lets
        traffic through undelayed (not dropped) should the delayer die. One delay per link:
        a second call replaces the first.
        """
        if delay_ms < 0 or jitter_ms < 0:
            raise ValueError("delay and jitter must be >= 0")
        lk = self._lab.link(link)
        st = self._st(link)
        self._undo_named(link, _DELAY)
        if self._netem_available(lk):
            self._netem_delay(lk, delay_ms, jitter_ms)
            return
        proc = self._lab.popen(
            lk.isp_ns,
            self._lab.python_argv(
                "tests.lab.delayer",
                "--queue", str(lk.queue_num),
                "--delay-ms", str(delay_ms),
                "--jitter-ms", str(jitter_ms),
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            wait_ready(proc, "delayer")
        except BaseException:
            self._lab.stop(proc)
            raise
        st.delayer = proc

        def stop_delayer() -> None:
            st.delayer = None
            self._lab.stop(proc)

        # Registered before the rules so that undoing (in reverse) removes the rules first:
        # no packet is queued to a process that is gone (it would pass, thanks to bypass).
        st.undo.append((_DELAY, stop_delayer))
        queue = ["-j", "NFQUEUE", "--queue-num", str(lk.queue_num), "--queue-bypass"]
        self._rule(lk, _DELAY, "FORWARD", "-i", lk.isp_ifname, *queue, append=True)
        self._rule(lk, _DELAY, "FORWARD", "-o", lk.isp_ifname, *queue, append=True)
        self._rule(lk, _DELAY, "INPUT", "-i", lk.isp_ifname, *queue, append=True)
        self._rule(lk, _DELAY, "OUTPUT", "-o", lk.isp_ifname, *queue, append=True)

    def _netem_available(self, lk: LabLink) -> bool:
        """Whether this kernel has sch_netem: tried once per lab on the ISP's loopback."""
        if self._netem is None:
            tried = self._lab.run(lk.isp_ns, ["tc", "qdisc", "add", "dev", "lo", "root",
                                              "netem", "delay", "0ms"], check=False)
            self._netem = tried.returncode == 0
            if self._netem:
                self._lab.run(lk.isp_ns, ["tc", "qdisc", "del", "dev", "lo", "root"],
                              check=False)
        return self._netem

    def _netem_delay(self, lk: LabLink, delay_ms: float, jitter_ms: float) -> None:
        # netem's jitter is +-j around the delay (uniform without a distribution table), so
        # delay + j/2 +- j/2 gives the same delay + U(0, j) as the NFQUEUE delayer. Both
        # egress sides of the ISP: towards the site, and towards inet for what the site sends.
        for ifname in (lk.isp_ifname, "uplink"):
            self._lab.run(lk.isp_ns, ["tc", "qdisc", "replace", "dev", ifname, "root", "netem",
                                      "delay", f"{delay_ms + jitter_ms / 2:g}ms",
                                      f"{jitter_ms / 2:g}ms"])

            def undo(ifname: str = ifname) -> None:
                self._lab.run(lk.isp_ns, ["tc", "qdisc", "del", "dev", ifname, "root"],
                              check=False)

            self._st(lk.name).undo.append((_DELAY, undo))

    # -- undoing -------------------------------------------------------------------------------

    def clear(self, link: str) -> None:
        """Remove every fault from ``link`` (in reverse order of injection)."""
        st = self._state.pop(link, None)
        if st is None:
            return
        errors: list[BaseException] = []
        for _, undo in reversed(st.undo):
            try:
                undo()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def clear_all(self) -> None:
        for link in list(self._state):
            self.clear(link)

    def forget(self) -> None:
        """Drop the records without undoing (the namespaces are about to go)."""
        self._state.clear()

    # -- helpers -------------------------------------------------------------------------------

    def _st(self, link: str) -> _LinkFaults:
        return self._state.setdefault(link, _LinkFaults())

    def _undo_named(self, link: str, name: str) -> None:
        """Undo one kind of fault on ``link``, leaving the others in place."""
        st = self._state.get(link)
        if st is None:
            return
        mine = [u for n, u in st.undo if n == name]
        st.undo = [(n, u) for n, u in st.undo if n != name]
        for undo in reversed(mine):
            undo()

    def _rule(self, lk: LabLink, name: str, chain: str, *spec: str, append: bool = False) -> None:
        self._lab.iptables(lk.isp_ns, "-A" if append else "-I", chain, *spec)

        def undo() -> None:
            self._lab.iptables(lk.isp_ns, "-D", chain, *spec)

        self._st(lk.name).undo.append((name, undo))
