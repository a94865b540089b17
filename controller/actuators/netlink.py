"""Thin typed adapter over pyroute2: the only module in lifeline that imports it.

It turns pyroute2's untyped netlink messages into small frozen values (routes, rules, link
states, conntrack flows) and offers the handful of operations the actuators and the link
watcher need: dump, replace and delete IPv4 and IPv6 routes, add and delete policy rules of
both families, read and follow link state, and dump/delete conntrack entries. Each value
carries its address family (4 or 6), because the kernel keeps the two families apart: an
IPv4 and an IPv6 default route in the same table are two different routes. It holds no
policy: what to change is decided elsewhere (controller/actuators/routes.py, conntrack.py,
controller/runtime/linkwatch.py).
Every call runs in the current network namespace unless `netns` names another one, which is
how the tests drive a lab namespace from the machine's own namespace.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pyroute2 import AsyncIPRoute, Conntrack
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple
from pyroute2.netlink.rtnl import RTMGRP_LINK

__all__ = [
    "DEFAULT_DST",
    "IPV6_DEFAULT_METRIC",
    "ConntrackFlow",
    "ConntrackSweep",
    "LinkEvents",
    "LinkInfo",
    "Netlink",
    "NetlinkCallError",
    "Nexthop",
    "RouteEntry",
    "RouteKey",
    "RuleEntry",
    "conntrack_delete_matching",
    "effective_metric",
    "family_of",
    "normalize_dst",
]

DEFAULT_DST = "default"
# IPv6 has no metric 0: the kernel stores a route given metric 0 at IP6_RT_PRIO_USER.
IPV6_DEFAULT_METRIC = 1024
_FAMILIES = ((socket.AF_INET, 4), (socket.AF_INET6, 6))
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}
_FAMILY_OF: dict[int, int] = {int(socket.AF_INET): 4, int(socket.AF_INET6): 6}
_RTN_UNICAST = 1
_IFA_F_DADFAILED = 0x08
_IFA_F_TENTATIVE = 0x40
_IFF_UP = 0x1
_IFF_LOWER_UP = 0x10000
_RTN_TYPES = {
    1: "unicast",
    2: "local",
    3: "broadcast",
    4: "anycast",
    5: "multicast",
    6: "blackhole",
    7: "unreachable",
    8: "prohibit",
    9: "throw",
    10: "nat",
}


def family_of(addr: str) -> int:
    """4 or 6: the family of an address or a CIDR."""
    return ipaddress.ip_network(addr, strict=False).version


def normalize_dst(dst: str, family: int | None = None) -> str:
    """Canonical form of a route destination, so that plan comparisons are exact.

    "default", "0/0", "0.0.0.0/0" and "::/0" all mean the default route and read "default":
    which family's default is said by the family that travels with it (RouteEntry.family),
    as `ip -4 route` and `ip -6 route` both print "default". A CIDR is written with its
    network address ("192.0.2.7/24" -> "192.0.2.0/24"). With `family` given, a CIDR of the
    other family is a ValueError, so an IPv6 group can never claim an IPv4 prefix.
    """
    if dst in ("default", "0/0"):
        return DEFAULT_DST
    net = ipaddress.ip_network(dst, strict=False)
    if family is not None and net.version != family:
        raise ValueError(f"{dst} is IPv{net.version}, not IPv{family}")
    if net.prefixlen == 0:
        return DEFAULT_DST
    return str(net)


def effective_metric(family: int, metric: int) -> int:
    """The metric the kernel will report for a route written with `metric`.

    Planning with the kernel's value keeps an IPv6 route at metric 0 from looking different
    (1024) on every read, which would replace it every cycle.
    """
    return IPV6_DEFAULT_METRIC if family == 6 and metric == 0 else metric


@dataclass(frozen=True, slots=True, order=True)
class Nexthop:
    """One way out: a gateway reached through an interface, with a multipath weight."""

    gateway: str
    ifname: str
    weight: int = 1


RouteKey = tuple[int, int, str, int]  # (family, table, dst, metric)


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """A route as lifeline sees it. The kernel's key is (family, table, dst, metric).

    A dst or gateway of the other family is refused at construction: such a value would
    name a route the kernel cannot hold, and a plan built on it would never converge.
    """

    table: int
    dst: str  # "default" or a canonical CIDR
    metric: int
    proto: int
    nexthops: tuple[Nexthop, ...]  # sorted; empty for routes without a gateway
    kind: str = "unicast"
    family: int = 4

    def __post_init__(self) -> None:
        if self.family not in (4, 6):
            raise ValueError(f"family must be 4 or 6, not {self.family}")
        if self.dst != DEFAULT_DST and family_of(self.dst) != self.family:
            raise ValueError(f"route to {self.dst} in the IPv{self.family} table")
        for nh in self.nexthops:
            if family_of(nh.gateway) != self.family:
                raise ValueError(f"IPv{self.family} route via {nh.gateway}")

    @property
    def key(self) -> RouteKey:
        return (self.family, self.table, self.dst, self.metric)


@dataclass(frozen=True, slots=True, order=True)
class RuleEntry:
    """A policy rule `from <src> lookup <table>` at a priority, tagged with a protocol.

    IPv4 and IPv6 rules are separate lists in the kernel; `family` says which one.
    """

    priority: int
    src: str | None  # canonical CIDR, None for "from all"
    table: int
    proto: int
    family: int = 4

    def __post_init__(self) -> None:
        if self.family not in (4, 6):
            raise ValueError(f"family must be 4 or 6, not {self.family}")
        if self.src is not None and family_of(self.src) != self.family:
            raise ValueError(f"IPv{self.family} rule from {self.src}")


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """What the kernel says about one interface; `usable` is what failover cares about."""

    ifname: str
    index: int
    admin_up: bool  # IFF_UP: the operator (or lifeline) has not set it down
    lower_up: bool  # IFF_LOWER_UP: carrier present
    operstate: str
    deleted: bool = False

    @property
    def usable(self) -> bool:
        return self.admin_up and self.lower_up and not self.deleted

    @property
    def reason(self) -> str:
        """Words an operator recognizes from `ip link`."""
        if self.deleted:
            return "interface removed"
        if not self.admin_up:
            return "admin down"
        if not self.lower_up:
            return f"NO-CARRIER (operstate {self.operstate})"
        return f"carrier up (operstate {self.operstate})"


@dataclass(frozen=True, slots=True)
class ConntrackFlow:
    """The fields of a conntrack entry that flush decisions look at."""

    proto: int  # IPPROTO_UDP, IPPROTO_TCP, ...
    orig_src: str
    orig_dst: str
    orig_sport: int | None  # None for a protocol without ports (ICMP, GRE, ESP, ...)
    orig_dport: int | None
    reply_src: str
    reply_dst: str  # after SNAT: the address of the link the flow left through
    family: int = 4


@dataclass(frozen=True, slots=True)
class ConntrackSweep:
    scanned: int
    matched: int
    deleted: int
    errors: int
    timed_out: bool


class NetlinkCallError(OSError):
    """A kernel refusal (errno and text), as an OSError so callers need not know pyroute2."""


@contextlib.contextmanager
def _kernel_errors(what: str) -> Iterator[None]:
    try:
        yield
    except NetlinkError as exc:
        code = int(exc.code or 0)
        text = os.strerror(code) if code else str(exc)
        raise NetlinkCallError(code, f"{what}: {text}") from exc


def _attrs(msg: Any) -> dict[str, Any]:
    return {name: value for name, value, *_ in msg["attrs"]}


class Netlink:
    """An rtnetlink session (one socket) in the current namespace or in `netns`.

    Use as `async with Netlink() as nl:`; the daemon keeps one open for its lifetime.
    """

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._ipr: Any = None
        self._by_index: dict[int, str] = {}
        self._by_name: dict[str, int] = {}

    async def __aenter__(self) -> Netlink:
        self._ipr = AsyncIPRoute(netns=self.netns) if self.netns else AsyncIPRoute()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None

    @property
    def _api(self) -> Any:
        if self._ipr is None:
            raise RuntimeError("Netlink used outside 'async with'")
        return self._ipr

    # -- links ---------------------------------------------------------------------------

    async def links(self) -> list[LinkInfo]:
        with _kernel_errors("dump links"):
            out = [_link_info(msg) async for msg in await self._api.link("dump")]
        self._by_index = {li.index: li.ifname for li in out}
        self._by_name = {li.ifname: li.index for li in out}
        return out

    async def _index(self, ifname: str) -> int:
        idx = self._by_name.get(ifname)
        if idx is None:
            await self.links()
            idx = self._by_name.get(ifname)
        if idx is None:
            raise NetlinkCallError(19, f"no such interface: {ifname}")  # ENODEV
        return idx

    async def _name(self, index: int) -> str:
        name = self._by_index.get(index)
        if name is None:
            await self.links()
            name = self._by_index.get(index, f"if{index}")
        return name

    async def set_link_up(self, ifname: str, up: bool) -> None:
        """Set an interface administratively up or down (the lab's way to pull a cable)."""
        index = await self._index(ifname)
        with _kernel_errors(f"set {ifname} {'up' if up else 'down'}"):
            await self._api.link("set", index=index, state="up" if up else "down")

    async def addresses(self) -> dict[str, list[str]]:
        """Usable addresses per interface as ``addr/prefixlen``, IPv4 then IPv6, primary first
        (for links configured without a source: lifeline finds the address to bind probes
        and rules to). IPv6 addresses still in duplicate address detection, or that failed
        it, are left out: a socket cannot bind to them yet, so a probe from one would fail."""
        out: dict[str, list[str]] = {}
        for af, fam in _FAMILIES:
            with _kernel_errors("dump addresses"):
                msgs = [m async for m in await self._api.addr("dump", family=af)]
            for msg in msgs:
                addr = msg.get_attr("IFA_ADDRESS")
                if not addr:
                    continue
                flags = int(msg.get_attr("IFA_FLAGS") or msg["flags"])
                if fam == 6 and flags & (_IFA_F_TENTATIVE | _IFA_F_DADFAILED):
                    continue
                name = await self._name(int(msg["index"]))
                # IFA_F_SECONDARY; for IPv6 the same bit is IFA_F_TEMPORARY (privacy
                # addresses), which make a poor fixed source too
                later = bool(flags & 0x01)
                bucket = out.setdefault(name, [])
                first_of_family = sum(1 for x in bucket if family_of(x) < fam)
                where = len(bucket) if later else first_of_family
                bucket.insert(where, f"{addr}/{int(msg['prefixlen'])}")
        return out

    # -- routes --------------------------------------------------------------------------

    async def routes(self) -> list[RouteEntry]:
        """All IPv4 and IPv6 routes of all tables except `local` (255), which the kernel owns."""
        await self.links()
        out: list[RouteEntry] = []
        # One AF_UNSPEC dump answers for every family (one round trip instead of two, which
        # keeps a reconcile short); multicast and MPLS tables are dropped here.
        with _kernel_errors("dump routes"):
            msgs = [m async for m in await self._api.route("dump", family=socket.AF_UNSPEC)]
        for msg in msgs:
            fam = _FAMILY_OF.get(int(msg["family"]))
            if fam is None:
                continue
            entry = await self._route_entry(msg, fam)
            if entry is not None:
                out.append(entry)
        return out

    async def _route_entry(self, msg: Any, fam: int) -> RouteEntry | None:
        a = _attrs(msg)
        table = int(a.get("RTA_TABLE", msg["table"]))
        if table == 255:
            return None
        dst = a.get("RTA_DST")
        dst_s = DEFAULT_DST if dst is None else normalize_dst(f"{dst}/{msg['dst_len']}")
        hops: list[Nexthop] = []
        # IPv6 multipath routes are dumped like IPv4 ones: one message with RTA_MULTIPATH
        # (checked on this kernel), so one parser serves both families.
        if "RTA_MULTIPATH" in a:
            for nh in a["RTA_MULTIPATH"]:
                gw = _attrs(nh).get("RTA_GATEWAY")
                if gw is not None:
                    ifname = await self._name(nh["oif"])
                    hops.append(Nexthop(_addr(gw), ifname, int(nh["hops"]) + 1))
        elif a.get("RTA_GATEWAY") is not None:
            hops.append(Nexthop(_addr(a["RTA_GATEWAY"]), await self._name(a.get("RTA_OIF", 0))))
        return RouteEntry(
            table=table,
            dst=dst_s,
            metric=int(a.get("RTA_PRIORITY", 0)),
            proto=int(msg["proto"]),
            nexthops=tuple(sorted(hops)),
            kind=_RTN_TYPES.get(int(msg["type"]), str(msg["type"])),
            family=fam,
        )

    async def replace_route(self, route: RouteEntry) -> None:
        """Create or atomically replace the route at route.key (NLM_F_REPLACE)."""
        if route.kind != "unicast" or not route.nexthops:
            raise ValueError("lifeline only writes unicast routes with a gateway")
        kw: dict[str, Any] = {
            "family": _AF[route.family],
            "table": route.table,
            "dst": _dst_arg(route),
            "priority": route.metric,
            "proto": route.proto,
            "type": _RTN_UNICAST,
        }
        if len(route.nexthops) == 1:
            nh = route.nexthops[0]
            kw["gateway"] = nh.gateway
            kw["oif"] = await self._index(nh.ifname)
        else:
            # rtnh_hops holds weight - 1, as iproute2 writes it (IPv6 weights too)
            kw["multipath"] = [
                {"gateway": nh.gateway, "oif": await self._index(nh.ifname), "hops": nh.weight - 1}
                for nh in route.nexthops
            ]
        with _kernel_errors(f"replace route {_dst_arg(route)} table {route.table}"):
            await self._api.route("replace", **kw)

    async def delete_route(self, route: RouteEntry) -> None:
        """Delete the route at route.key, only if it still carries route.proto.

        Without a gateway in the request the kernel removes all nexthops of the route,
        for IPv6 too (its siblings go with it)."""
        with _kernel_errors(f"delete route {_dst_arg(route)} table {route.table}"):
            await self._api.route(
                "del",
                family=_AF[route.family],
                table=route.table,
                dst=_dst_arg(route),
                priority=route.metric,
                proto=route.proto,
            )

    # -- rules ---------------------------------------------------------------------------

    async def rules(self) -> list[RuleEntry]:
        """The policy rules of both families."""
        out: list[RuleEntry] = []
        with _kernel_errors("dump rules"):
            msgs = [m async for m in await self._api.rule("dump", family=socket.AF_UNSPEC)]
        for msg in msgs:
            fam = _FAMILY_OF.get(int(msg["family"]))
            if fam is None:  # multicast routing rules (RTNL_FAMILY_IPMR/IP6MR)
                continue
            a = _attrs(msg)
            src = a.get("FRA_SRC")
            out.append(
                RuleEntry(
                    priority=int(a.get("FRA_PRIORITY", 0)),
                    src=None if src is None else normalize_dst(f"{src}/{msg['src_len']}"),
                    table=int(a.get("FRA_TABLE", msg["table"])),
                    proto=int(a.get("FRA_PROTOCOL", 0)),
                    family=fam,
                )
            )
        return out

    async def add_rule(self, rule: RuleEntry) -> None:
        with _kernel_errors(f"add rule {rule.priority}"):
            await self._api.rule("add", **_rule_kw(rule))

    async def delete_rule(self, rule: RuleEntry) -> None:
        # FRA_PROTOCOL in the request makes the kernel match it: a foreign rule with the
        # same priority and table is never the one removed.
        with _kernel_errors(f"delete rule {rule.priority}"):
            await self._api.rule("del", **_rule_kw(rule))

    # -- link events ---------------------------------------------------------------------

    async def subscribe_links(self) -> LinkEvents:
        """A stream of link messages (RTMGRP_LINK), subscribed when this returns.

        Subscribe before reading the initial state, so that no change can fall between.
        """
        stream = LinkEvents(self.netns)
        await stream.bind()
        return stream


class LinkEvents:
    """RTMGRP_LINK broadcasts on a socket of their own, so that they never interleave with
    the dump replies of a request socket. `async for info in stream`; `close()` when done."""

    def __init__(self, netns: str | None) -> None:
        self._ev: Any = AsyncIPRoute(netns=netns) if netns else AsyncIPRoute()
        self._it: AsyncIterator[LinkInfo] = self._messages()

    async def bind(self) -> None:
        await self._ev.bind(groups=RTMGRP_LINK)

    async def _messages(self) -> AsyncIterator[LinkInfo]:
        while True:
            # pyroute2's get() ends after one datagram's worth of broadcasts
            async for msg in self._ev.get():
                if msg.get("event") in ("RTM_NEWLINK", "RTM_DELLINK"):
                    yield _link_info(msg)

    def __aiter__(self) -> LinkEvents:
        return self

    async def __anext__(self) -> LinkInfo:
        return await self._it.__anext__()

    def close(self) -> None:
        self._ev.close()


def _addr(text: object) -> str:
    """An address in the form the config normalizes to, so hops and flows compare equal;
    anything else (a conntrack tuple without an address) is passed through as text."""
    try:
        return str(ipaddress.ip_address(str(text)))
    except ValueError:
        return str(text)


def _dst_arg(route: RouteEntry) -> str:
    if route.dst != DEFAULT_DST:
        return route.dst
    return "0.0.0.0/0" if route.family == 4 else "::/0"


def _rule_kw(rule: RuleEntry) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "family": _AF[rule.family],
        "priority": rule.priority,
        "table": rule.table,
        "protocol": rule.proto,
    }
    if rule.src is not None:
        net = ipaddress.ip_network(rule.src)
        kw["src"] = str(net.network_address)
        kw["src_len"] = net.prefixlen
    return kw


def _link_info(msg: Any) -> LinkInfo:
    a = _attrs(msg)
    flags = int(msg["flags"])
    return LinkInfo(
        ifname=str(a.get("IFLA_IFNAME", f"if{msg['index']}")),
        index=int(msg["index"]),
        admin_up=bool(flags & _IFF_UP),
        lower_up=bool(flags & _IFF_LOWER_UP),
        operstate=str(a.get("IFLA_OPERSTATE", "UNKNOWN")),
        deleted=msg.get("event") == "RTM_DELLINK",
    )


def _dump_until(ct: Any, deadline: float | None) -> list[tuple[Any, bool]]:
    """The raw dump as (message, False) pairs; a final (None, True) if the deadline cut it
    short."""
    out: list[tuple[Any, bool]] = []
    for msg in ct.dump():
        out.append((msg, False))
        if deadline is not None and time.monotonic() > deadline:
            out.append((None, True))
            break
    return out


# Protocols whose tuple has ports: TCP, UDP, DCCP (33), SCTP (132), UDP-Lite (136). GRE
# carries its keys in the same attributes, but they are no ports to match a rule on.
_PORTED = frozenset({socket.IPPROTO_TCP, socket.IPPROTO_UDP, 33, 132, 136})


def _entry(msg: Any, af: int, fam: int) -> tuple[ConntrackFlow, Any, int | None]:
    """One dumped entry: the flow it shows, its original tuple as a delete must name it, and
    its zone.

    pyroute2 reads ports for TCP and UDP only, and the kernel refuses (EINVAL) a delete
    of an SCTP, DCCP, UDP-Lite or GRE entry whose tuple lacks its ports or keys; and an entry
    outside zone 0 is found only when the delete names its zone. So both come from the raw
    message."""
    raw_o, raw_r = msg.get_attr("CTA_TUPLE_ORIG"), msg.get_attr("CTA_TUPLE_REPLY")
    o = NFCTAttrTuple.from_netlink(af, raw_o)
    r = NFCTAttrTuple.from_netlink(af, raw_r)
    proto_attrs = raw_o.get_attr("CTA_TUPLE_PROTO")
    sport = proto_attrs.get_attr("CTA_PROTO_SRC_PORT")
    dport = proto_attrs.get_attr("CTA_PROTO_DST_PORT")
    if sport is not None and dport is not None:
        o.sport, o.dport = sport, dport
    proto = int(o.proto or 0)
    ported = proto in _PORTED
    flow = ConntrackFlow(
        proto=proto,
        orig_src=_addr(o.saddr),
        orig_dst=_addr(o.daddr),
        orig_sport=sport if ported else None,
        orig_dport=dport if ported else None,
        reply_src=_addr(r.saddr),
        reply_dst=_addr(r.daddr),
        family=fam,
    )
    zone = msg.get_attr("CTA_ZONE")
    return flow, o, None if zone is None else int(zone)


def conntrack_delete_matching(
    want: Callable[[ConntrackFlow], bool],
    *,
    netns: str | None = None,
    deadline: float | None = None,
    families: tuple[int, ...] = (4, 6),
) -> ConntrackSweep:
    """Delete the conntrack entries of `families` for which `want` is true. BLOCKING: run
    in a thread.

    ctnetlink dumps one family per request, so each family is its own dump. Dumps first,
    then deletes one by one (a netlink socket cannot take requests in the middle of a
    dump), each by its full original tuple: a delete without a tuple would flush the whole
    table, so there is none. `deadline` (time.monotonic()) bounds the whole sweep, all
    families together: past it, the sweep stops where it is and says so, rather than
    holding up a failover.
    """
    total = ConntrackSweep(0, 0, 0, 0, False)
    for fam in families:
        part = _sweep_family(want, _AF[fam], fam, netns, deadline)
        total = ConntrackSweep(
            total.scanned + part.scanned,
            total.matched + part.matched,
            total.deleted + part.deleted,
            total.errors + part.errors,
            part.timed_out,
        )
        if part.timed_out:
            break
    return total


def _sweep_family(
    want: Callable[[ConntrackFlow], bool],
    af: int,
    fam: int,
    netns: str | None,
    deadline: float | None,
) -> ConntrackSweep:
    ct: Any = Conntrack(nfgen_family=af, netns=netns) if netns else Conntrack(nfgen_family=af)
    scanned = errors = deleted = 0
    timed_out = False
    victims: list[tuple[Any, int | None]] = []
    try:
        with _kernel_errors("conntrack dump"):
            entries = _dump_until(ct, deadline)
        for msg, late in entries:
            if late:
                timed_out = True
                break
            scanned += 1
            try:
                flow, tuple_orig, zone = _entry(msg, af, fam)
            except (AttributeError, KeyError, TypeError, ValueError):
                errors += 1  # an entry we cannot read is one we must not delete
                continue
            if want(flow):
                victims.append((tuple_orig, zone))
        for tuple_orig, zone in victims:
            if deadline is not None and time.monotonic() > deadline:
                timed_out = True
                break
            try:
                if zone is None:
                    ct.entry("del", tuple_orig=tuple_orig)
                else:
                    ct.entry("del", tuple_orig=tuple_orig, zone=zone)
                deleted += 1
            except NetlinkError as exc:
                if exc.code != 2:  # ENOENT: it expired meanwhile, which is what we wanted
                    errors += 1
    finally:
        ct.close()
    return ConntrackSweep(scanned, len(victims), deleted, errors, timed_out)
