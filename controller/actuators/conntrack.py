"""Conntrack actuator: after a group switches links, drop the flows NAT'ed through a link that
is no longer active, so phones and trunks re-establish through the new one.

A UDP flow (SIP, RTP) that was SNAT'ed to the old link's address keeps that address after
the route moves: its replies go to the dead link and the flow stays dead until its conntrack
entry expires. So only entries whose reply tuple is addressed to an old link's source address
(`tuple_reply.daddr`), and only for the group's flush rules (protocol and port range on the
original tuple's source or destination port), are deleted. Never a global flush: other
protocols, other ports and flows through links still active are left alone, and the same rule
cleans up after a failback. IPv4 and IPv6 alike: an IPv6 link's flows are the ones NAT66'ed
(SNAT/MASQUERADE in ip6tables or nft) to its source; without NAT66 no reply tuple carries a
link's address, so nothing is flushed, which is right (those flows do not depend on the
link's address). Only the families of the old sources are swept. The kernel is reached
only through controller.actuators.netlink, in a thread (pyroute2's conntrack dump is
blocking and can be long) bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass

from controller.actuators.base import ApplyResult, StepError
from controller.actuators.netlink import ConntrackFlow, ConntrackSweep, conntrack_delete_matching
from controller.core.flushrules import DEFAULT_FLUSH_RULES, FlushRule

__all__ = [
    "FlushFlows",
    "FlushResult",
    "flow_matches",
    "flush_after_switch",
    "stale_sources",
]

_PROTO_NUMBERS = {"udp": socket.IPPROTO_UDP, "tcp": socket.IPPROTO_TCP}


@dataclass(frozen=True, slots=True)
class FlushFlows:
    """A flush as a plan of one step: drop the flows NAT'ed to `old_sources`.

    Not level-triggered: what to drop follows from a switch that just happened, not from a
    state that could be observed later, so the sweep matches and deletes in one pass.
    """

    old_sources: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.old_sources

    def describe(self) -> str:
        return f"flush conntrack entries NAT'ed to {', '.join(self.old_sources) or 'nothing'}"


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What a flush did, for the journal and the metrics (they count `deleted`)."""

    deleted: int
    matched: int
    scanned: int
    errors: int
    timed_out: bool
    duration_s: float
    old_sources: tuple[str, ...]

    def describe(self) -> str:
        extra = " (TIMED OUT, partial)" if self.timed_out else ""
        errs = f", {self.errors} errors" if self.errors else ""
        return (
            f"conntrack: deleted {self.deleted} of {self.scanned} entries NAT'ed to "
            f"{', '.join(self.old_sources) or 'nothing'}{errs} in {self.duration_s * 1000:.1f} ms"
            f"{extra}"
        )

    def as_apply_result(self) -> ApplyResult[FlushFlows, FlushFlows]:
        """The flush in the shape every actuator reports: its one step done, or failed when
        an entry could not be deleted or the sweep ran out of time (then it was partial)."""
        step = FlushFlows(self.old_sources)
        if self.errors or self.timed_out:
            why = f"{self.errors} errors" + (", timed out (partial)" if self.timed_out else "")
            return ApplyResult(step, errors=(StepError(step, why),), calls=self.matched,
                               seconds=self.duration_s)
        return ApplyResult(step, done=() if step.empty else (step,),
                           durations_s=() if step.empty else (self.duration_s,),
                           calls=self.matched, seconds=self.duration_s)


def stale_sources(
    old_active: Iterable[str], new_active: Iterable[str], sources: dict[str, str | None]
) -> tuple[str, ...]:
    """PURE: source addresses of the links that were active and are not any more."""
    gone = set(old_active) - set(new_active)
    return tuple(sorted({s for name in gone if (s := sources.get(name)) is not None}))


def flow_matches(
    flow: ConntrackFlow, old_sources: Iterable[str], rules: Iterable[FlushRule]
) -> bool:
    """PURE: True for a flow that left through one of old_sources and a flush rule covers."""
    return flow.reply_dst in set(old_sources) and any(_covers(r, flow) for r in rules)


def _covers(rule: FlushRule, flow: ConntrackFlow) -> bool:
    return flow.proto == _PROTO_NUMBERS[rule.proto] and (
        rule.covers(flow.orig_dport) or rule.covers(flow.orig_sport)
    )


async def flush_after_switch(
    old_sources: Iterable[str],
    rules: Iterable[FlushRule] = DEFAULT_FLUSH_RULES,
    *,
    netns: str | None = None,
    timeout: float = 2.0,
) -> FlushResult:
    """Delete the matching entries; never raises for a kernel error, returns the count.

    The timeout bounds both the sweep itself (it stops at its deadline) and the wait for the
    thread, so a huge table cannot hold up the caller.
    """
    # the form conntrack flows are read in, so "2001:db8:0::2" matches "2001:db8::2"
    addrs = {ipaddress.ip_address(s) for s in old_sources}
    olds = tuple(str(a) for a in sorted(addrs, key=lambda a: (a.version, a)))
    families = tuple(sorted({a.version for a in addrs}))
    rule_t = tuple(rules)
    t0 = time.monotonic()
    if not olds or not rule_t:
        return FlushResult(0, 0, 0, 0, False, 0.0, olds)
    deadline = t0 + timeout
    old_set = frozenset(olds)

    def want(flow: ConntrackFlow) -> bool:
        return flow_matches(flow, old_set, rule_t)

    try:
        sweep = await asyncio.wait_for(
            asyncio.to_thread(
                conntrack_delete_matching,
                want,
                netns=netns,
                deadline=deadline,
                families=families,
            ),
            timeout + 1.0,
        )
    except TimeoutError:
        sweep = ConntrackSweep(0, 0, 0, 0, True)
    except OSError:
        # no conntrack netlink (module absent, no permission): a failover must still go on
        sweep = ConntrackSweep(0, 0, 0, 1, False)
    return FlushResult(
        deleted=sweep.deleted,
        matched=sweep.matched,
        scanned=sweep.scanned,
        errors=sweep.errors,
        timed_out=sweep.timed_out,
        duration_s=time.monotonic() - t0,
        old_sources=olds,
    )
