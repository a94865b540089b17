"""The plan every SIP-edge actuator receives, and the DID-range arithmetic they share.

PURE: frozen values and arithmetic, no I/O. The DID policy (controller/core/didplan.py) produces
an `EdgePlan`: the trunks with their dispatcher set and whether they may carry calls, and
for every DID range the trunk its outbound calls use and the destination its inbound calls
reach. Edges that store ranges by prefix (Kamailio's htable) turn a range into
prefix-aligned blocks with `split_range`, and `block_lookup` is the same longest-prefix
walk the reference kamailio.cfg does at call time, so tests can check one against the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "WILD",
    "DidRoute",
    "EdgePlan",
    "TrunkState",
    "block_lookup",
    "named_trunks",
    "split_range",
]

# A wildcard digit in a block key: "+3902123456xx" is every number from ...00 to ...99.
WILD = "x"


@dataclass(frozen=True, slots=True)
class TrunkState:
    """One trunk (one carrier SBC URI) as the edge must hold it.

    Trunks sharing a `group` belong to one carrier; their order in `EdgePlan.trunks` is the
    configured preference. Which trunk a call takes is the routes' business, never the
    group's: `enabled` is True only for a trunk some route names (as its trunk or in its
    fallback), so a trunk that is down, tripped by the edge's failure signal, in
    maintenance or simply not chosen gets no new calls. A registration-based trunk
    also names the account the edge registers with the carrier's SBC (`register_user` at
    `register_domain`); the password is kept out of repr so a logged plan never shows it.
    """

    name: str
    uri: str  # sip:host:port;transport=udp|tcp|tls
    group: int  # dispatcher set id
    enabled: bool
    register_user: str | None = None
    register_domain: str | None = None
    register_password: str | None = field(default=None, repr=False)
    register_expires: int = 600  # seconds asked for in each REGISTER
    # The site address the trunk's calls and registrations leave from and advertise (Via,
    # Record-Route, Contact): its pinned link's source, else the active link's. None: the
    # edge's own default. Edges listening on a wildcard address would otherwise advertise
    # 0.0.0.0, and one fixed address would be wrong after a link failover.
    source: str | None = None

    @property
    def registers(self) -> bool:
        """Whether the edge must keep a registration for this trunk."""
        return self.register_user is not None and self.register_domain is not None


@dataclass(frozen=True, slots=True)
class DidRoute:
    """An E.164 range (both ends included, same length) and where its calls go now.

    `trunk` None: no healthy capable trunk (outbound calls are refused); `destination_uri`
    None: no live destination (inbound calls are refused). The range stays in the plan
    either way, so the edge still knows the number is ours. Every new outbound call of the
    range goes to `trunk` first; only a call that fails there (408, 5xx, no answer) may try
    `fallback`, in order. No other trunk carries the range's calls, whatever its group.
    """

    first: str
    last: str
    trunk: str | None
    destination_uri: str | None
    fallback: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EdgePlan:
    trunks: tuple[TrunkState, ...] = ()
    routes: tuple[DidRoute, ...] = ()
    # Trunks whose registrations must be sent again (over a link that just became active).
    refresh_registrations: tuple[str, ...] = field(default=())


def named_trunks(routes: Iterable[DidRoute]) -> frozenset[str]:
    """Trunks some route names, as its trunk or in its fallback: the only ones that may
    carry calls (`TrunkState.enabled`; the Kamailio edge's active sets)."""
    return frozenset(n for r in routes if r.trunk is not None for n in (r.trunk, *r.fallback))


def _digits(number: str) -> str:
    if not number.startswith("+") or not number[1:].isdigit() or len(number) < 2:
        raise ValueError(f"not an E.164 number: {number!r}")
    return number[1:]


def split_range(first: str, last: str, max_wild: int) -> tuple[str, ...]:
    """Cover first..last exactly with prefix-aligned blocks, largest first.

    A block is a prefix followed by k `WILD` digits (0 <= k <= max_wild). The greedy walk
    takes at each step the largest aligned block that fits, so the result is the minimal
    cover: at most 9 blocks per digit position on each side of the range, plus one per
    10**max_wild numbers in its middle. Why blocks at all: one key per number would cost one
    edge write per number (100,000 for a large plan) where blocks cost one per range in the
    usual case of ranges of 10, 100 or 1,000 numbers.
    """
    if max_wild < 0:
        raise ValueError("max_wild must be >= 0")
    lo_s, hi_s = _digits(first), _digits(last)
    if len(lo_s) != len(hi_s):
        raise ValueError(f"range ends differ in length: {first}-{last}")
    width = len(lo_s)
    lo, hi = int(lo_s), int(hi_s)
    if lo > hi:
        raise ValueError(f"range is reversed: {first}-{last}")
    blocks: list[str] = []
    # k < width keeps at least one digit of prefix, as the cfg's walk does.
    top = min(max_wild, width - 1)
    while lo <= hi:
        k = top
        while k > 0 and (lo % 10**k != 0 or lo + 10**k - 1 > hi):
            k -= 1
        prefix = str(lo // 10**k).zfill(width - k)
        blocks.append("+" + prefix + WILD * k)
        lo += 10**k
    return tuple(blocks)


def block_lookup(number: str, table: Mapping[str, str], max_wild: int) -> str | None:
    """The value of the block that holds `number`, walking as kamailio.cfg does.

    Exact number first, then one more wildcard digit per step, up to max_wild, never
    wildcarding the whole number: at most max_wild + 1 hash lookups per call.
    """
    for k in range(0, min(max_wild, len(number) - 1) + 1):
        key = number[: len(number) - k] + WILD * k
        if key in table:
            return table[key]
    return None
