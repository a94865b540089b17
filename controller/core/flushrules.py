"""Conntrack flush rules: how an operator narrows a failover's flush (``udp/5060``, ``esp``).

By default a switch drops every flow NAT'ed to the link it left (controller.core.staleflows);
a route group's ``conntrack_flush`` list narrows that to some protocols and ports. A rule is
one protocol, by name, and for the protocols that have ports an optional inclusive range
(matched on the original tuple's source or destination port). Parsing and rendering only:
the config reads rules with ``parse_flush_rule`` and the matcher uses the same frozen values,
so the rule a route group names is the rule that runs, with no conversion between.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PORTED_PROTOCOLS", "PROTOCOL_NUMBERS", "FlushRule", "parse_flush_rule"]

# IANA protocol numbers of what conntrack tracks on its own (and ESP/AH, which it tracks by
# addresses only); the names are iptables' and the conntrack tool's.
PROTOCOL_NUMBERS: dict[str, int] = {
    "icmp": 1, "tcp": 6, "udp": 17, "dccp": 33, "gre": 47, "esp": 50, "ah": 51,
    "icmpv6": 58, "sctp": 132, "udplite": 136,
}  # fmt: skip
# The ones whose conntrack tuple has ports (GRE's keys and ICMP's id are not ports).
PORTED_PROTOCOLS = frozenset({"tcp", "udp", "sctp", "dccp", "udplite"})


@dataclass(frozen=True, slots=True)
class FlushRule:
    """Flows of ``proto``; with a port range, only those whose original source or destination
    port is in [port_lo, port_hi]."""

    proto: str  # a key of PROTOCOL_NUMBERS
    port_lo: int | None = None
    port_hi: int | None = None

    @property
    def number(self) -> int:
        return PROTOCOL_NUMBERS[self.proto]

    def covers(self, port: int | None) -> bool:
        """A port in the range; any port (or none) when the rule names no range."""
        if self.port_lo is None or self.port_hi is None:
            return True
        return port is not None and self.port_lo <= port <= self.port_hi

    def covers_flow(self, proto: int, sport: int | None, dport: int | None) -> bool:
        if proto != self.number:
            return False
        if self.port_lo is None:
            return True
        return self.covers(sport) or self.covers(dport)

    def __str__(self) -> str:
        if self.port_lo is None:
            return self.proto
        if self.port_lo == self.port_hi:
            return f"{self.proto}/{self.port_lo}"
        return f"{self.proto}/{self.port_lo}-{self.port_hi}"


_FLUSH_RE = re.compile(r"([a-z0-9]+)(?:/(\d+)(?:-(\d+))?)?")
_NAMES = ", ".join(PROTOCOL_NUMBERS)


def parse_flush_rule(value: object) -> FlushRule:
    """``udp``, ``udp/5060``, ``tcp/5060-5061`` or ``esp``; raises ValueError with a sentence
    for an operator."""
    text = value.strip().lower() if isinstance(value, str) else None
    match = _FLUSH_RE.fullmatch(text) if text else None
    if match is None:
        raise ValueError(
            f"must be a protocol ({_NAMES}), with /port or /lo-hi for "
            f"{', '.join(sorted(PORTED_PROTOCOLS))}; e.g. udp/5060, tcp/5060-5061, esp"
        )
    proto = match.group(1)
    if proto not in PROTOCOL_NUMBERS:
        raise ValueError(f"unknown protocol {proto!r}; known: {_NAMES}")
    if match.group(2) is None:
        return FlushRule(proto)
    if proto not in PORTED_PROTOCOLS:
        raise ValueError(f"{proto} has no ports: write {proto} alone")
    lo = int(match.group(2))
    hi = int(match.group(3)) if match.group(3) is not None else lo
    if not (1 <= lo <= 65535 and 1 <= hi <= 65535):
        raise ValueError("ports must be in 1..65535")
    if lo > hi:
        raise ValueError(f"port range {lo}-{hi} runs backwards")
    return FlushRule(proto, lo, hi)
