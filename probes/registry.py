"""The table of probe kinds and the one safe way to run a probe.

``PROBES`` maps a kind name ("icmp", "tcp", "arp", "sip", "http") to its ``probe(spec, *, timeout)``
function, like blackbox_exporter's prober table. ``run_probe`` is the guard the
schedulers rely on: it resolves a host name first (``probes.resolve``), and an unknown
kind or a bug inside a probe becomes an INTERNAL failed sample instead of an exception,
because a probe must never take the scheduler down. ``read_service`` is the same guard
for a site service's check (``http`` or ``tcp``), which returns a ServiceReading.
"""

from __future__ import annotations

import logging
from typing import Protocol

from probes import arp, http, icmp, sip, tcp
from probes.resolve import resolved
from probes.sample import ErrorKind, ProbeSpec, Sample
from probes.service import ServiceReading

__all__ = ["PROBES", "ProbeFn", "read_service", "run_probe"]

log = logging.getLogger(__name__)


class ProbeFn(Protocol):
    """The signature every probe kind shares."""

    async def __call__(self, spec: ProbeSpec, *, timeout: float) -> Sample: ...


PROBES: dict[str, ProbeFn] = {
    "icmp": icmp.probe,
    "tcp": tcp.probe,
    "arp": arp.probe,
    "sip": sip.probe,
    "http": http.probe,
}


async def run_probe(spec: ProbeSpec, timeout: float) -> Sample:
    """Run ``spec`` with its kind's probe, its host name resolved first; never raises
    (cancellation aside)."""
    fn = PROBES.get(spec.kind)
    if fn is None:
        return Sample.failure(ErrorKind.INTERNAL, f"unknown probe kind {spec.kind!r}")
    try:
        target = await resolved(spec, timeout)
        if isinstance(target, Sample):
            return target
        return await fn(target, timeout=timeout)
    except Exception as exc:
        log.exception("probe %s crashed", spec.label())
        return Sample.failure(ErrorKind.INTERNAL, repr(exc))


async def read_service(spec: ProbeSpec, timeout: float) -> ServiceReading:
    """Check a site service (kind ``http`` or ``tcp``), its host name resolved first;
    never raises (cancellation aside)."""
    try:
        target = await resolved(spec, timeout)
        if isinstance(target, Sample):
            return ServiceReading.from_sample(target)
        if target.kind == "http":
            return await http.check(target, timeout=timeout)
        if target.kind == "tcp":
            return ServiceReading.from_sample(await tcp.probe(target, timeout=timeout))
        return ServiceReading.failure(ErrorKind.INTERNAL,
                                      f"not a service probe kind: {spec.kind!r}")
    except Exception as exc:
        log.exception("service check %s crashed", spec.label())
        return ServiceReading.failure(ErrorKind.INTERNAL, repr(exc))
