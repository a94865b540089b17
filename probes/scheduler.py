"""The schedulers: every probe lifeline sends goes out from here.

Two rhythms. A ``RoundScheduler`` probes all targets of one link every interval, on a fixed
grid; a ``RecheckScheduler`` probes one peer (a SIP trunk or destination) every interval and
rechecks sooner while it looks dead. Both run probes through ``run_probe`` (the probe table,
with host-name resolution) and hand samples to a synchronous callback; deciding health is
the controller's job.

A ``RoundScheduler`` owns the rhythm of one link. Every ``interval`` seconds (after a
small random start phase, so links do not probe in lockstep) it sends one round: the
link's ICMP targets as one batch on the link's shared engine, the other kinds through
``run_probe``, all concurrently, and hands the samples of the round to a synchronous
callback. Rounds are scheduled on absolute times, so a slow round neither delays the
next one nor makes the grid drift; rounds may overlap when timeout equals interval.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from probes import icmp
from probes.netutil import family_of
from probes.registry import run_probe
from probes.sample import ErrorKind, ProbeSpec, Sample

__all__ = ["ProbeCall", "RecheckScheduler", "RoundCallback", "RoundScheduler", "SampleCallback",
           "next_probe_at"]

log = logging.getLogger(__name__)

RoundCallback = Callable[[float, list[Sample]], None]
SampleCallback = Callable[[float, Sample], None]
# What RecheckScheduler runs per probe (default run_probe; a service check hands its own).
ProbeCall = Callable[[ProbeSpec, float], Coroutine[Any, Any, Sample]]
_IcmpKey = tuple[socket.AddressFamily, str | None, str | None]


class RoundScheduler:
    """Probes one link's ``specs`` every ``interval`` s and reports each round.

    ``on_round(sent_at, samples)`` gets ``loop.time()`` at send and one Sample per spec,
    in the order of ``specs``. Exceptions raised by the callback are logged and the
    schedule goes on.
    """

    def __init__(
        self,
        specs: Sequence[ProbeSpec],
        *,
        interval: float,
        on_round: RoundCallback,
        timeout: float | None = None,
        start_jitter: float | None = None,
        name: str = "",
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.specs = tuple(specs)
        self.interval = interval
        self.timeout = min(interval, timeout) if timeout is not None else interval
        if self.timeout <= 0:
            raise ValueError("timeout must be positive")
        self.on_round = on_round
        self.name = name or (self.specs[0].device or "link" if self.specs else "link")
        jitter = 0.25 * interval if start_jitter is None else start_jitter
        self.phase = random.uniform(0.0, max(0.0, jitter))
        self.rounds_sent = 0
        self.rounds_skipped = 0
        self._task: asyncio.Task[None] | None = None
        self._rounds: set[asyncio.Task[None]] = set()
        # Grouped once: ICMP specs of one (family, device, source) share one batch.
        self._icmp_groups: dict[_IcmpKey, tuple[list[int], list[str]]] = {}
        self._others: list[tuple[int, ProbeSpec]] = []
        for index, spec in enumerate(self.specs):
            if spec.kind == "icmp":
                try:
                    family = family_of(spec.host)
                except ValueError:
                    self._others.append((index, spec))
                    continue
                indices, hosts = self._icmp_groups.setdefault(
                    (family, spec.device, spec.source), ([], [])
                )
                indices.append(index)
                hosts.append(spec.host)
            else:
                self._others.append((index, spec))

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Begin probing; must be called from inside the running loop."""
        if self.running:
            return
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"rounds-{self.name}"
        )

    async def stop(self) -> None:
        """Stop the schedule and cancel rounds in flight (their samples are dropped)."""
        tasks = [t for t in (self._task, *self._rounds) if t is not None]
        self._task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._rounds.clear()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + self.phase
        while True:
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            sent_at = loop.time()
            task = loop.create_task(self._round(sent_at))
            self._rounds.add(task)
            task.add_done_callback(self._rounds.discard)
            self.rounds_sent += 1
            next_at += self.interval
            late = loop.time() - next_at
            if late >= 0:
                # The loop was stalled past a whole slot: skip the missed slots rather
                # than firing them back to back, and stay on the original grid.
                missed = math.floor(late / self.interval) + 1
                self.rounds_skipped += missed
                next_at += missed * self.interval
                log.warning("%s: event loop late by %.3f s, skipped %d round(s)",
                            self.name, late, missed)

    async def _round(self, sent_at: float) -> None:
        samples = await self.probe_once()
        try:
            self.on_round(sent_at, samples)
        except Exception:
            log.exception("%s: round callback failed", self.name)

    async def probe_once(self) -> list[Sample]:
        """Run one round now and return its samples in spec order."""
        timeout = self.timeout
        jobs: list[tuple[list[int], Awaitable[list[Sample]] | Awaitable[Sample]]] = []
        for (family, device, source), (indices, hosts) in self._icmp_groups.items():
            engine = icmp.get_engine(family, device, source)
            jobs.append((indices, engine.ping_many(hosts, timeout)))
        for index, spec in self._others:
            jobs.append(([index], run_probe(spec, timeout)))
        samples: list[Sample] = [_NOT_RUN] * len(self.specs)
        if len(jobs) == 1:
            # The common case (one ICMP batch) needs no extra task.
            outcomes: list[object] = [await _settle(jobs[0][1])]
        else:
            outcomes = list(await asyncio.gather(*(_settle(job) for _, job in jobs)))
        for (indices, _), outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, Sample):
                samples[indices[0]] = outcome
            elif isinstance(outcome, list):
                for index, sample in zip(indices, outcome, strict=True):
                    samples[index] = sample
            else:
                failure = Sample.failure(ErrorKind.INTERNAL, repr(outcome))
                for index in indices:
                    samples[index] = failure
        return samples


_NOT_RUN = Sample.failure(ErrorKind.INTERNAL, "probe did not run")


async def _settle(job: Awaitable[list[Sample]] | Awaitable[Sample]) -> object:
    """Await ``job``; an unexpected exception is returned, not raised, as a last guard."""
    try:
        return await job
    except Exception as exc:
        log.exception("probe batch crashed")
        return exc


def next_probe_at(planned: float, last_sent: float, *, suspect: bool, down: bool,
                  interval: float, recheck: float) -> float:
    """PURE: when the next probe to a peer goes. While the peer is suspect (its last answer
    was lost, or the newest probe is still unanswered) and not down yet, another goes
    ``recheck`` after the last one, overlapping it: a dead SBC is then confirmed about one
    timeout plus (down_after - 1) rechecks after the first lost OPTIONS, not after
    down_after intervals. Otherwise (answered, or already down: a dead SBC is polled at the
    normal pace, carriers rate-limit) the fixed cadence from ``planned``, the time the last
    one was due, re-anchored when the loop fell more than an interval behind."""
    if suspect and not down:
        return last_sent + recheck
    due = planned + interval
    return due if due > last_sent else last_sent + interval


class RecheckScheduler:
    """Probes one ``spec`` on ``next_probe_at``'s schedule and reports each sample.

    At most ``limit`` probes are in flight (a verdict needs no more: the health machine's
    down_after); ``on_sample(sent_at, sample)`` gets them in the order they were sent, so
    the health machine sees rounds in order even when a later probe answers first.
    ``is_down()`` tells whether the peer's health is already down (then no rechecks).
    ``probe(spec, timeout)`` runs one probe (default ``run_probe``; a site service's check
    hands a Sample that carries its whole reading, controller.runtime.services).
    """

    def __init__(self, spec: ProbeSpec, *, interval: float, timeout: float, recheck: float,
                 limit: int, on_sample: SampleCallback, is_down: Callable[[], bool],
                 name: str = "", probe: ProbeCall | None = None) -> None:
        if interval <= 0 or timeout <= 0 or recheck <= 0:
            raise ValueError("interval, timeout and recheck must be positive")
        self.spec = spec
        self.interval, self.timeout, self.recheck = interval, timeout, recheck
        self.limit = max(1, limit)
        self.on_sample = on_sample
        self.is_down = is_down
        self.name = name or spec.label()
        self.probe: ProbeCall = run_probe if probe is None else probe
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin probing (the first probe goes at once); call inside the running loop."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"probe-{self.name}")

    async def stop(self) -> None:
        """Stop, cancelling probes in flight (their samples are dropped)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        inflight: deque[tuple[float, asyncio.Task[Sample]]] = deque()
        planned = last_sent = loop.time() - self.interval  # the first one goes at once
        lost = False
        try:
            while True:
                while inflight and inflight[0][1].done():
                    sent_at, task = inflight.popleft()
                    sample = task.result()
                    try:
                        self.on_sample(sent_at, sample)
                    except Exception:
                        log.exception("%s: sample callback failed", self.name)
                    lost = not sample.ok
                pending = bool(inflight) and not inflight[-1][1].done()
                due = next_probe_at(planned, last_sent, suspect=lost or pending,
                                    down=self.is_down(), interval=self.interval,
                                    recheck=self.recheck)
                now = loop.time()
                if now >= due and len(inflight) < self.limit:
                    planned, last_sent = due, now
                    inflight.append((now, loop.create_task(
                        self.probe(self.spec, self.timeout), name=f"probe-{self.name}-once")))
                    continue
                if inflight:
                    wait = None if len(inflight) >= self.limit else max(0.0, due - now)
                    await asyncio.wait((inflight[0][1],), timeout=wait)
                else:
                    await asyncio.sleep(max(0.0, due - now))
        finally:
            for _, task in inflight:
                task.cancel()
            await asyncio.gather(*(task for _, task in inflight), return_exceptions=True)
