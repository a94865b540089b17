"""Conntrack flush rules: which flows a failover drops, as operators write them (``udp/5060``).

One protocol and an inclusive port range, its text form, and the default list (SIP on
5060/5061 and the usual RTP range). Parsing and rendering only: the config reads rules
with ``parse_flush_rule`` and the conntrack actuator matches flows against the same frozen
values, so the rule a route group names is the rule that runs, with no conversion between.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["DEFAULT_FLUSH_RULES", "FlushRule", "parse_flush_rule"]


@dataclass(frozen=True, slots=True)
class FlushRule:
    """Flows of ``proto`` whose original source or destination port is in [port_lo, port_hi]."""

    proto: Literal["udp", "tcp"]
    port_lo: int
    port_hi: int

    def covers(self, port: int | None) -> bool:
        return port is not None and self.port_lo <= port <= self.port_hi

    def __str__(self) -> str:
        if self.port_lo == self.port_hi:
            return f"{self.proto}/{self.port_lo}"
        return f"{self.proto}/{self.port_lo}-{self.port_hi}"


_FLUSH_RE = re.compile(r"(udp|tcp)/(\d+)(?:-(\d+))?")


def parse_flush_rule(value: object) -> FlushRule:
    """``udp/5060`` or ``tcp/5060-5061``; raises ValueError with a sentence for an operator."""
    if not isinstance(value, str) or not (match := _FLUSH_RE.fullmatch(value.strip())):
        raise ValueError("must be proto/port or proto/lo-hi with proto udp or tcp, e.g. udp/5060")
    lo = int(match.group(2))
    hi = int(match.group(3)) if match.group(3) is not None else lo
    if not (1 <= lo <= 65535 and 1 <= hi <= 65535):
        raise ValueError("ports must be in 1..65535")
    if lo > hi:
        raise ValueError(f"port range {lo}-{hi} runs backwards")
    proto: Literal["udp", "tcp"] = "udp" if match.group(1) == "udp" else "tcp"
    return FlushRule(proto, lo, hi)


# A route group's conntrack_flush when it names none (examples/lifeline.yaml spells it out).
DEFAULT_FLUSH_RULES: tuple[FlushRule, ...] = tuple(
    parse_flush_rule(text)
    for text in ("udp/5060", "tcp/5060-5061", "udp/5061", "tcp/5061", "udp/10000-20000")
)
