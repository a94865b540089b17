"""PURE: which conntrack entries a route group's switch left stale, and the test each takes.

A flow NAT'ed (SNAT, MASQUERADE, NAT66) to an address of a link keeps that address after the
route moves: its packets leave by the new link with the old link's source, the replies go
back to the old link, and the flow's own packets keep its entry alive, so it never recovers
(a WireGuard tunnel on udp/51820, IPsec NAT-T, a TURN relay, RTP, a ping with a fixed id; a
TCP session hangs). Deleting the entry gets the next packet NAT'ed afresh through the new
link (a TCP server answers a mid-stream segment from the new address with a reset, so the
client reconnects at once). So after a group leaves links, every entry NAT'ed to one of
their addresses goes, whatever its protocol and ports, and nothing else:

- NAT'ed to the link: the reply tuple is addressed to the link (``reply_dst``) and the
  original source is not that address. Entries that are not NAT'ed (the router's own flows,
  routed IPv6, NPTv6, which translates statelessly outside conntrack) are never touched.
- An address of the link (``link_addresses``): its source (configured or found) and the
  other addresses of its family on its interface (MASQUERADE takes the interface's address,
  an SNAT rule may name a secondary one); not IPv6 link-local ones, not another link's
  source, and none of an interface that two links of one family share (only the sources).
- A left link that another group still uses carries that group's traffic: then only flows
  to the switching group's own destination go, less what the other group's route takes.
  In one table the kernel's choice is known (the longer prefix, then the lower metric);
  across tables it is not (policy rules pick the table, and conntrack does not say which),
  so there any overlap stays: a group in another table whose destination holds the whole
  of this one's keeps every flow of the link. A link no group uses any more loses all its
  NAT'ed flows, pinned ones too: a site's CONNMARK/fwmark pin to it is re-made on the new
  link by the site's own rules.
- A route group's ``conntrack_flush`` narrows: rules keep only the flows they cover; an
  empty list flushes nothing; absent (None) means every protocol.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from controller.core.flushrules import FlushRule

__all__ = [
    "FlowTuple",
    "GroupUse",
    "LinkAddressing",
    "Scope",
    "StaleFlows",
    "canonical",
    "link_addresses",
    "stale_flows",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class FlowTuple(Protocol):
    """The fields of a conntrack entry the test reads (the netlink adapter's ConntrackFlow)."""

    @property
    def proto(self) -> int: ...
    @property
    def orig_src(self) -> str: ...
    @property
    def orig_dst(self) -> str: ...
    @property
    def orig_sport(self) -> int | None: ...
    @property
    def orig_dport(self) -> int | None: ...
    @property
    def reply_dst(self) -> str: ...


def canonical(address: str) -> str:
    """The form conntrack flows are read in, so "2001:db8:0::2" matches "2001:db8::2"."""
    return str(ipaddress.ip_address(address))


def _sorted(addresses: Iterable[str]) -> tuple[str, ...]:
    ips = {ipaddress.ip_address(a) for a in addresses}
    return tuple(str(a) for a in sorted(ips, key=lambda a: (a.version, a)))


@dataclass(frozen=True, slots=True)
class Scope:
    """Entries NAT'ed to one left link's ``addresses``: to any destination, or (while other
    groups still route through the link) to ``only_to`` (None: any) minus ``except_to``."""

    link: str
    addresses: tuple[str, ...]  # canonical
    only_to: Network | None = None
    except_to: tuple[Network, ...] = ()
    held_by: tuple[str, ...] = ()  # the groups still on the link: why the scope is narrow

    def covers_destination(self, dst: str) -> bool:
        if self.only_to is None and not self.except_to:
            return True  # the common case reads no address
        try:
            ip = ipaddress.ip_address(dst)
        except ValueError:
            return False  # no address to place: leave it alone
        if self.only_to is not None and (ip.version != self.only_to.version
                                         or ip not in self.only_to):
            return False
        return not any(ip.version == net.version and ip in net for net in self.except_to)

    def describe(self) -> str:
        where = ", ".join(self.addresses)
        if self.link:
            where += f" ({self.link}"
            if self.held_by:
                to = str(self.only_to) if self.only_to is not None else "any destination"
                but = (f" except {', '.join(str(n) for n in self.except_to)}"
                       if self.except_to else "")
                where += f", still used by {', '.join(self.held_by)}: only to {to}{but}"
            where += ")"
        return where


@dataclass(frozen=True, slots=True)
class StaleFlows:
    """What one switch leaves stale: the scopes of the links left and the narrowing rules
    (None: every protocol and port; empty: nothing). ``kept`` says which left links keep
    their flows because another group still routes the same destinations through them."""

    group: str
    scopes: tuple[Scope, ...]
    rules: tuple[FlushRule, ...] | None = None
    kept: tuple[str, ...] = ()
    _by_address: dict[str, tuple[Scope, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by: dict[str, tuple[Scope, ...]] = {}
        for scope in self.scopes:
            for addr in scope.addresses:
                by[addr] = (*by.get(addr, ()), scope)
        object.__setattr__(self, "_by_address", by)

    @classmethod
    def nat_to(cls, addresses: Iterable[str], rules: Iterable[FlushRule] | None = None,
               group: str = "") -> StaleFlows:
        """Every entry NAT'ed to ``addresses`` (narrowed by ``rules`` if given)."""
        addrs = _sorted(addresses)
        return cls(group, (Scope("", addrs),) if addrs else (),
                   None if rules is None else tuple(rules))

    @property
    def addresses(self) -> tuple[str, ...]:
        return _sorted(self._by_address)

    @property
    def families(self) -> tuple[int, ...]:
        return tuple(sorted({ipaddress.ip_address(a).version for a in self._by_address}))

    @property
    def empty(self) -> bool:
        return not self._by_address or self.rules == ()

    def matches(self, flow: FlowTuple) -> bool:
        """True for an entry this switch left stale. Called once per conntrack entry: the
        address test comes first and is a set lookup."""
        scopes = self._by_address.get(flow.reply_dst)
        if not scopes or flow.reply_dst == flow.orig_src or self.rules == ():
            return False
        if self.rules is not None and not any(
            r.covers_flow(flow.proto, flow.orig_sport, flow.orig_dport) for r in self.rules
        ):
            return False
        return any(scope.covers_destination(flow.orig_dst) for scope in scopes)

    def describe(self) -> str:
        """"NAT'ed to 198.51.100.2 (fibre-a)", with the narrowing, for the journal."""
        text = "NAT'ed to " + ("; ".join(s.describe() for s in self.scopes) or "nothing")
        if self.rules is not None:
            text += f", only {', '.join(str(r) for r in self.rules) or 'nothing (flush off)'}"
        if self.kept:
            text += f"; kept {'; '.join(self.kept)}"
        return text


@dataclass(frozen=True, slots=True)
class GroupUse:
    """What a route group routes (``default`` or a CIDR, in ``table`` at ``metric``) and the
    links it uses now."""

    destination: str
    links: tuple[str, ...]
    table: int = 254
    metric: int = 0


@dataclass(frozen=True, slots=True)
class LinkAddressing:
    """Where a link's addresses live: its interface, family and source (None: not found)."""

    name: str
    interface: str
    family: int
    source: str | None
    nat: tuple[str, ...] = ()  # configured SNAT addresses kept on no interface


def link_addresses(
    links: Iterable[LinkAddressing], found: Mapping[str, Iterable[str]]
) -> dict[str, tuple[str, ...]]:
    """Each link's addresses (see the module docstring), from its source and ``found``, the
    interfaces' addresses as ``addr/prefixlen`` (what the netlink adapter reads)."""
    links = list(links)
    sources = {canonical(lk.source) for lk in links if lk.source}
    seats: dict[tuple[str, int], int] = {}
    for lk in links:
        seats[(lk.interface, lk.family)] = seats.get((lk.interface, lk.family), 0) + 1
    out: dict[str, tuple[str, ...]] = {}
    for lk in links:
        own = {canonical(lk.source)} if lk.source else set()
        own.update(canonical(a) for a in lk.nat)
        if seats[(lk.interface, lk.family)] == 1:
            for cidr in found.get(lk.interface, ()):
                try:
                    ip = ipaddress.ip_interface(cidr).ip
                except ValueError:
                    continue
                if ip.version != lk.family or (ip.version == 6 and ip.is_link_local):
                    continue
                if str(ip) not in sources:
                    own.add(str(ip))
        out[lk.name] = _sorted(own)
    return out


def _network(destination: str) -> Network | None:
    """None for ``default`` (any destination of the family)."""
    net = None if destination == "default" else ipaddress.ip_network(destination)
    return None if net is None or net.prefixlen == 0 else net


def _prefixlen(net: Network | None) -> int:
    return 0 if net is None else net.prefixlen


def _overlaps(a: Network | None, b: Network | None) -> bool:
    if a is None or b is None:
        return True
    return a.version == b.version and a.overlaps(b)


def _takes(mine: GroupUse, theirs: GroupUse) -> str:
    """What ``theirs`` (still on the link) takes of the flows to ``mine``'s destination:
    "none", "some" (its destination, inside mine) or "all"."""
    me, them = _network(mine.destination), _network(theirs.destination)
    if not _overlaps(me, them):
        return "none"
    longer = _prefixlen(them) > _prefixlen(me)
    if mine.table == theirs.table:
        if _prefixlen(them) < _prefixlen(me):
            return "none"  # my longer prefix wins the lookup
        if not longer:  # the same prefix: the lower metric wins
            return "none" if theirs.metric > mine.metric else "all"
        return "some"
    # Another table: which one routed a flow is not known, so the overlap stays.
    return "some" if longer else "all"


def stale_flows(
    group: str,
    left: Iterable[str],
    uses: Mapping[str, GroupUse],
    addresses: Mapping[str, Iterable[str]],
    rules: tuple[FlushRule, ...] | None = None,
) -> StaleFlows:
    """The flows ``group`` left stale by leaving the links ``left``; ``uses`` holds every
    group (this one too) with the links it uses now, ``addresses`` each link's addresses."""
    mine = uses[group]
    scopes: list[Scope] = []
    kept: list[str] = []
    for link in sorted(set(left) - set(mine.links)):
        addrs = _sorted(addresses.get(link, ()))
        if not addrs:
            continue
        holders = sorted(name for name, use in uses.items()
                         if name != group and link in use.links)
        takes = {name: _takes(mine, uses[name]) for name in holders}
        if whole := [name for name, what in takes.items() if what == "all"]:
            kept.append(f"{link} (still used by {', '.join(whole)} for {mine.destination})")
            continue
        except_to = tuple(net for name, what in takes.items() if what == "some"
                          and (net := _network(uses[name].destination)) is not None)
        scopes.append(Scope(link, addrs, _network(mine.destination) if holders else None,
                            except_to, tuple(holders)))
    return StaleFlows(group, tuple(scopes), rules, tuple(kept))
