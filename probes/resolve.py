"""Host names in probe specs, resolved just before each probe.

A trunk's SBC is often configured by name (``sbc1.carrier.example``); its address can
change under a running daemon, so the name is looked up before every probe (A/AAAA through
the system resolver; SRV and NAPTR are not followed), not once at start. A failed lookup
is a failed sample (``network``), never an exception, like every other probe failure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket

from probes.sample import ErrorKind, ProbeSpec, Sample

__all__ = ["resolved"]


async def resolved(spec: ProbeSpec, timeout: float = 2.0) -> ProbeSpec | Sample:
    """``spec`` with an address in ``host`` (the name kept in ``name``), or a failed Sample.

    The lookup gets at most ``timeout`` (a hung resolver must not hold a verdict, nor tie
    up the thread pool), and asks for the family of the source the probe is bound to."""
    try:
        ipaddress.ip_address(spec.host)
        return spec
    except ValueError:
        pass
    family = socket.AF_UNSPEC
    if spec.source is not None:
        family = socket.AF_INET6 if ":" in spec.source else socket.AF_INET
    try:
        infos = await asyncio.wait_for(asyncio.get_running_loop().getaddrinfo(
            spec.host, spec.port, family=family, type=socket.SOCK_DGRAM), timeout)
    except TimeoutError:
        return Sample.failure(ErrorKind.TIMEOUT,
                              f"cannot resolve {spec.host}: no answer within {timeout:g} s")
    except OSError as exc:
        return Sample.failure(ErrorKind.NETWORK, f"cannot resolve {spec.host}: {exc}")
    return dataclasses.replace(spec, host=str(infos[0][4][0]), name=spec.name or spec.host)
