"""Wires sense -> decide -> tell for the site's software (``services:``).

Each service is checked by its own ``probes.scheduler.RecheckScheduler`` (every
``interval``, rechecked sooner after a failure) through ``probes.registry.read_service``,
the guard that never raises; each reading becomes a ``ServiceCheck`` for the service's
``ServiceWatch`` (controller.core.services: the shared health machine, the last failure's
words, the certificate's days left). A transition is journaled with its reason and wakes
the daemon, whose next cycle hands ``views()`` to the telephony runtime: a service a
destination needs takes that destination down with it (its DIDs go to DR). A reload keeps
the health of a service checked as before and starts anew one whose check changed, as
links and trunks do.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from controller.config import Service
from controller.core.health import HealthState, Transition
from controller.core.services import ServiceCheck, ServiceSnap, ServiceView, ServiceWatch
from controller.core.snapshot import Tally
from controller.runtime.journal import Journal
from probes.registry import read_service
from probes.sample import ErrorKind, ProbeSpec, Sample
from probes.scheduler import RecheckScheduler
from probes.service import ServiceReading

__all__ = ["CheckedSample", "ServiceChecks", "ServiceReader"]

log = logging.getLogger("lifeline.services")

ServiceReader = Callable[[ProbeSpec, float], Awaitable[ServiceReading]]
RESULTS = ("ok", *(kind.value for kind in ErrorKind))


@dataclass(frozen=True, slots=True)
class CheckedSample(Sample):
    """A service check as the scheduler passes it on: the Sample it paces by, carrying the
    whole reading (status code, certificate) for the watch."""

    reading: ServiceReading | None = None


@dataclass
class Checked:
    """One configured service: its settings, its watch, its last reading, its scheduler."""

    cfg: Service
    watch: ServiceWatch
    last: ServiceReading | None = None
    scheduler: RecheckScheduler | None = None


def _check_of(svc: Service) -> tuple[object, ...]:
    """What a service's health is a verdict on: the check itself and its pacing."""
    return (svc.probe_spec(), svc.interval, svc.timeout, svc.recheck_interval)


def _result(reading: ServiceReading) -> str:
    if reading.ok:
        return "ok"
    return reading.error.value if reading.error is not None else ErrorKind.INTERNAL.value


class ServiceChecks:
    """Every configured service's checks and health."""

    def __init__(self, services: Sequence[Service], journal: Journal, tally: Tally, *,
                 read: ServiceReader = read_service,
                 on_change: Callable[[], None] | None = None) -> None:
        self.journal = journal
        self.tally = tally
        self.read = read
        self.on_change = on_change
        self.services = {s.name: self._checked(s) for s in services}
        self._probing = False
        self._declare()

    @staticmethod
    def _checked(svc: Service) -> Checked:
        return Checked(svc, ServiceWatch(svc.name, svc.health_params(), svc.needed_by,
                                         svc.cert_warn_days))

    def _declare(self) -> None:
        """Every result a service's check can have starts at 0 (``increase()`` sees the
        first failure)."""
        self.tally.init("lifeline_service_checks_total",
                        *((name, r) for name in self.services for r in RESULTS))

    # -- start, stop, reload ---------------------------------------------------------------
    def start(self, *, probes: bool = True) -> None:
        """Check every service (unless ``probes`` is off: tests call ``on_reading``)."""
        self._probing = probes
        for c in self.services.values():
            self._start(c)

    def _start(self, c: Checked) -> None:
        if not self._probing:
            return
        c.scheduler = RecheckScheduler(
            c.cfg.probe_spec(), interval=c.cfg.interval, timeout=c.cfg.timeout,
            recheck=c.cfg.recheck_interval, limit=c.cfg.thresholds.down_after,
            on_sample=functools.partial(self._on_sample, c),
            is_down=lambda: c.watch.state is HealthState.DOWN,
            name=f"service-{c.cfg.name}", probe=self._check)
        c.scheduler.start()

    async def _check(self, spec: ProbeSpec, timeout: float) -> Sample:
        reading = await self.read(spec, timeout)
        return CheckedSample(reading.ok, reading.latency, reading.error, reading.detail,
                             reading.code, reading=reading)

    @staticmethod
    async def _stop(c: Checked) -> None:
        if c.scheduler is not None:
            await c.scheduler.stop()
        c.scheduler = None

    async def stop(self) -> None:
        for c in self.services.values():
            await self._stop(c)

    async def reconfigure(self, services: Sequence[Service]) -> list[str]:
        """Take a reloaded ``services:``: one checked as before (same check and pacing)
        keeps its health and last reading, retuned to new thresholds, ``needed_by`` and
        ``cert_warn_days``; one whose check or pacing changed starts anew (its health too:
        the old verdict was about another check). One line per change, for the journal."""
        changes: list[str] = []
        out: dict[str, Checked] = {}
        for svc in services:
            was = self.services.get(svc.name)
            if was is not None and _check_of(was.cfg) == _check_of(svc):
                restart = was.cfg.thresholds.down_after != svc.thresholds.down_after
                was.cfg = svc
                was.watch.health.retune(svc.health_params())
                was.watch.needed_by = tuple(svc.needed_by)
                was.watch.cert_warn_days = svc.cert_warn_days
                if restart:  # the scheduler's in-flight limit
                    await self._stop(was)
                    self._start(was)
                out[svc.name] = was
                continue
            changes.append(f"service {svc.name}: " + ("added" if was is None
                                                      else "check changed, health anew"))
            if was is not None:
                await self._stop(was)
            out[svc.name] = fresh = self._checked(svc)
            self._start(fresh)
        for name, was in self.services.items():
            if name not in out:
                changes.append(f"service {name}: removed")
                await self._stop(was)
        self.services = out
        self._declare()
        return changes

    # -- sense -----------------------------------------------------------------------------
    def _on_sample(self, c: Checked, sent_at: float, sample: Sample) -> None:
        reading = (sample.reading if isinstance(sample, CheckedSample)
                   and sample.reading is not None else ServiceReading.from_sample(sample))
        self.on_reading(c.cfg.name, sent_at, reading)

    def on_reading(self, name: str, sent_at: float, reading: ServiceReading) -> None:
        """One check of service ``name`` came back (in send order); a reading of a service
        a reload removed or replaced is dropped by the scheduler's stop, or here."""
        c = self.services.get(name)
        if c is None:
            return
        c.last = reading
        self.tally.add("lifeline_service_checks_total", (name, _result(reading)))
        self._handle(c.watch.observe(ServiceCheck(
            sent_at, reading.ok, reading.latency, reading.detail, reading.cert_days_left,
            reading.cert_not_after)), c)

    def _handle(self, tr: Transition | None, c: Checked) -> None:
        if tr is None:
            return
        reason = tr.reason
        if tr.new is HealthState.DOWN and c.watch.failure and c.watch.failure not in reason:
            reason = f"{reason} ({c.watch.failure})"
        level = logging.WARNING if tr.new is HealthState.DOWN else logging.INFO
        log.log(level, "service %s: %s -> %s: %s", tr.subject, tr.old.value, tr.new.value,
                reason)
        self.journal.record("transition", tr.subject, reason, old=tr.old.value,
                            new=tr.new.value, peer="service",
                            needed_by=",".join(c.watch.needed_by))
        if self.on_change is not None:
            self.on_change()

    # -- decide ----------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        """Checks that stopped coming make an up service unknown (never down)."""
        for c in self.services.values():
            self._handle(c.watch.tick(now), c)

    def views(self) -> list[ServiceView]:
        """What the destination rule weighs (controller.core.services)."""
        return [c.watch.view() for c in self.services.values()]

    # -- tell ------------------------------------------------------------------------------
    def snapshot(self, now: float) -> tuple[ServiceSnap, ...]:
        out = []
        for c in self.services.values():
            w, last = c.watch, c.last
            reason = w.health.reason
            if w.state is HealthState.DOWN and w.failure:
                reason = f"{c.cfg.name}: {w.failure}"
            out.append(ServiceSnap(
                c.cfg.name, c.cfg.kind, c.cfg.target(), w.state, reason,
                None if last is None else last.latency,
                None if last is None else last.code, w.cert_days_left, w.cert_not_after,
                w.needed_by, w.cert(), w.health.hold_down_remaining(now),
                w.failure or None, w.cert_warn_days))
        return tuple(out)
