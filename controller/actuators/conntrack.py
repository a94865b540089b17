"""Conntrack actuator: after a group switches links, delete the entries of the flows NAT'ed to
the links it left, so phones, trunks and tunnels re-establish through the new one.

Which entries is decided in controller.core.staleflows (pure: every protocol by default,
only entries NAT'ed to a left link's addresses, never one that is not NAT'ed, never a flow
that still leaves through a link carrying traffic); this module only sweeps the table with
that test. Never a global flush: entries are deleted one by one by their own tuple. IPv4
and IPv6 alike (NAT66), and only the families of the addresses concerned are read. The
kernel is reached only through controller.actuators.netlink, in a thread (pyroute2's
conntrack dump is blocking and can be long) bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from controller.actuators.base import ApplyResult, StepError
from controller.actuators.netlink import ConntrackSweep, conntrack_delete_matching
from controller.core.staleflows import StaleFlows

__all__ = ["FlushFlows", "FlushResult", "flush_after_switch"]


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
    scope: str = ""  # StaleFlows.describe(): what was swept for, in the operator's words

    def describe(self) -> str:
        extra = " (TIMED OUT, partial)" if self.timed_out else ""
        errs = f", {self.errors} errors" if self.errors else ""
        what = self.scope or f"NAT'ed to {', '.join(self.old_sources) or 'nothing'}"
        return (
            f"conntrack: deleted {self.deleted} of {self.scanned} entries {what}{errs} "
            f"in {self.duration_s * 1000:.1f} ms{extra}"
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


async def flush_after_switch(
    stale: StaleFlows,
    *,
    netns: str | None = None,
    timeout: float = 2.0,
) -> FlushResult:
    """Delete the entries ``stale`` matches; never raises for a kernel error, returns counts.

    The timeout bounds both the sweep itself (it stops at its deadline) and the wait for the
    thread, so a huge table cannot hold up the caller.
    """
    olds = stale.addresses
    t0 = time.monotonic()
    if stale.empty:
        return FlushResult(0, 0, 0, 0, False, 0.0, olds, stale.describe())

    try:
        sweep = await asyncio.wait_for(
            asyncio.to_thread(
                conntrack_delete_matching,
                stale.matches,
                netns=netns,
                deadline=t0 + timeout,
                families=stale.families,
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
        scope=stale.describe(),
    )
