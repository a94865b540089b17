"""Thin typed adapter over pyroute2: the only module in lifeline that imports it.

It turns pyroute2's untyped netlink messages into small frozen values (routes, rules, link
states, conntrack flows) and offers the handful of operations the actuators and the link
watcher need: dump, replace and delete IPv4 routes, add and delete policy rules, read and
follow link state, and dump/delete conntrack entries. It holds no policy: what to change is
decided elsewhere (controller/actuators/routes.py, conntrack.py, controller/linkwatch.py).
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
from pyroute2.netlink.rtnl import RTMGRP_LINK

__all__ = [
    "DEFAULT_DST",
    "ConntrackFlow",
    "ConntrackSweep",
    "LinkEvents",
    "LinkInfo",
    "Netlink",
    "NetlinkCallError",
    "Nexthop",
    "RouteEntry",
    "RuleEntry",
    "conntrack_delete_matching",
    "normalize_dst",
]

DEFAULT_DST = "default"
_RTN_UNICAST = 1
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


def normalize_dst(dst: str) -> str:
    """Canonical form of a route destination, so that plan comparisons are exact.

    "default", "0.0.0.0/0" and "0/0" all mean the default route; a CIDR is written with
    its network address ("192.0.2.7/24" -> "192.0.2.0/24").
    """
    if dst in ("default", "0/0"):
        return DEFAULT_DST
    net = ipaddress.ip_network(dst, strict=False)
    if net.prefixlen == 0:
        return DEFAULT_DST
    return str(net)


@dataclass(frozen=True, slots=True, order=True)
class Nexthop:
    """One way out: a gateway reached through an interface, with a multipath weight."""

    gateway: str
    ifname: str
    weight: int = 1


@dataclass(frozen=True, slots=True)
class RouteEntry:
    """An IPv4 route as lifeline sees it. The kernel's key is (table, dst, metric)."""

    table: int
    dst: str  # "default" or a canonical CIDR
    metric: int
    proto: int
    nexthops: tuple[Nexthop, ...]  # sorted; empty for routes without a gateway
    kind: str = "unicast"

    @property
    def key(self) -> tuple[int, str, int]:
        return (self.table, self.dst, self.metric)


@dataclass(frozen=True, slots=True, order=True)
class RuleEntry:
    """An IPv4 policy rule `from <src> lookup <table>` at a priority, tagged with a protocol."""

    priority: int
    src: str | None  # canonical CIDR, None for "from all"
    table: int
    proto: int


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
    orig_sport: int | None
    orig_dport: int | None
    reply_src: str
    reply_dst: str  # after SNAT: the address of the link the flow left through


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
        """IPv4 addresses per interface as ``addr/prefixlen``, primary first (for links
        configured without a source: lifeline finds the address to bind probes and rules to)."""
        with _kernel_errors("dump addresses"):
            msgs = [m async for m in await self._api.addr("dump", family=socket.AF_INET)]
        out: dict[str, list[str]] = {}
        for msg in msgs:
            addr = msg.get_attr("IFA_ADDRESS")
            if not addr:
                continue
            name = await self._name(int(msg["index"]))
            secondary = bool(int(msg["flags"]) & 0x01)  # IFA_F_SECONDARY
            bucket = out.setdefault(name, [])
            bucket.insert(len(bucket) if secondary else 0, f"{addr}/{int(msg['prefixlen'])}")
        return out

    # -- routes --------------------------------------------------------------------------

    async def routes(self) -> list[RouteEntry]:
        """All IPv4 routes of all tables except `local` (255), which the kernel owns."""
        await self.links()
        out: list[RouteEntry] = []
        with _kernel_errors("dump routes"):
            msgs = [m async for m in await self._api.route("dump", family=socket.AF_INET)]
        for msg in msgs:
            a = _attrs(msg)
            table = int(a.get("RTA_TABLE", msg["table"]))
            if table == 255:
                continue
            dst = a.get("RTA_DST")
            dst_s = DEFAULT_DST if dst is None else normalize_dst(f"{dst}/{msg['dst_len']}")
            hops: list[Nexthop] = []
            if "RTA_MULTIPATH" in a:
                for nh in a["RTA_MULTIPATH"]:
                    gw = _attrs(nh).get("RTA_GATEWAY")
                    if gw is not None:
                        hops.append(
                            Nexthop(str(gw), await self._name(nh["oif"]), int(nh["hops"]) + 1)
                        )
            elif a.get("RTA_GATEWAY") is not None:
                hops.append(Nexthop(str(a["RTA_GATEWAY"]), await self._name(a.get("RTA_OIF", 0))))
            out.append(
                RouteEntry(
                    table=table,
                    dst=dst_s,
                    metric=int(a.get("RTA_PRIORITY", 0)),
                    proto=int(msg["proto"]),
                    nexthops=tuple(sorted(hops)),
                    kind=_RTN_TYPES.get(int(msg["type"]), str(msg["type"])),
                )
            )
        return out

    async def replace_route(self, route: RouteEntry) -> None:
        """Create or atomically replace the route at route.key (NLM_F_REPLACE)."""
        if route.kind != "unicast" or not route.nexthops:
            raise ValueError("lifeline only writes unicast routes with a gateway")
        kw: dict[str, Any] = {
            "table": route.table,
            "dst": "0.0.0.0/0" if route.dst == DEFAULT_DST else route.dst,
            "priority": route.metric,
            "proto": route.proto,
            "type": _RTN_UNICAST,
        }
        if len(route.nexthops) == 1:
            nh = route.nexthops[0]
            kw["gateway"] = nh.gateway
            kw["oif"] = await self._index(nh.ifname)
        else:
            # rtnh_hops holds weight - 1, as iproute2 writes it
            kw["multipath"] = [
                {"gateway": nh.gateway, "oif": await self._index(nh.ifname), "hops": nh.weight - 1}
                for nh in route.nexthops
            ]
        with _kernel_errors(f"replace route {route.dst} table {route.table}"):
            await self._api.route("replace", **kw)

    async def delete_route(self, route: RouteEntry) -> None:
        """Delete the route at route.key, only if it still carries route.proto."""
        with _kernel_errors(f"delete route {route.dst} table {route.table}"):
            await self._api.route(
                "del",
                table=route.table,
                dst="0.0.0.0/0" if route.dst == DEFAULT_DST else route.dst,
                priority=route.metric,
                proto=route.proto,
            )

    # -- rules ---------------------------------------------------------------------------

    async def rules(self) -> list[RuleEntry]:
        out: list[RuleEntry] = []
        with _kernel_errors("dump rules"):
            msgs = [m async for m in await self._api.rule("dump", family=socket.AF_INET)]
        for msg in msgs:
            if msg["family"] != socket.AF_INET:
                continue
            a = _attrs(msg)
            src = a.get("FRA_SRC")
            out.append(
                RuleEntry(
                    priority=int(a.get("FRA_PRIORITY", 0)),
                    src=None if src is None else normalize_dst(f"{src}/{msg['src_len']}"),
                    table=int(a.get("FRA_TABLE", msg["table"])),
                    proto=int(a.get("FRA_PROTOCOL", 0)),
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


def _rule_kw(rule: RuleEntry) -> dict[str, Any]:
    kw: dict[str, Any] = {
        "family": socket.AF_INET,
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
    """The dump as (entry, False) pairs; a final (None, True) if the deadline cut it short."""
    out: list[tuple[Any, bool]] = []
    for e in ct.dump_entries():
        out.append((e, False))
        if deadline is not None and time.monotonic() > deadline:
            out.append((None, True))
            break
    return out


def conntrack_delete_matching(
    want: Callable[[ConntrackFlow], bool],
    *,
    netns: str | None = None,
    deadline: float | None = None,
) -> ConntrackSweep:
    """Delete the IPv4 conntrack entries for which `want` is true. BLOCKING: run in a thread.

    Dumps first, then deletes one by one (a netlink socket cannot take requests in the
    middle of a dump). `deadline` (time.monotonic()) bounds the whole sweep: past it, the
    sweep stops where it is and says so, rather than holding up a failover.
    """
    ct: Any = Conntrack(netns=netns) if netns else Conntrack()
    scanned = errors = deleted = 0
    timed_out = False
    victims: list[Any] = []
    try:
        with _kernel_errors("conntrack dump"):
            entries = _dump_until(ct, deadline)
        for e, late in entries:
            if late:
                timed_out = True
                break
            scanned += 1
            o, r = e.tuple_orig, e.tuple_reply
            flow = ConntrackFlow(
                proto=int(o.proto or 0),
                orig_src=str(o.saddr),
                orig_dst=str(o.daddr),
                orig_sport=o.sport,
                orig_dport=o.dport,
                reply_src=str(r.saddr),
                reply_dst=str(r.daddr),
            )
            if want(flow):
                victims.append(o)
        for tuple_orig in victims:
            if deadline is not None and time.monotonic() > deadline:
                timed_out = True
                break
            try:
                ct.entry("del", tuple_orig=tuple_orig)
                deleted += 1
            except NetlinkError as exc:
                if exc.code != 2:  # ENOENT: it expired meanwhile, which is what we wanted
                    errors += 1
    finally:
        ct.close()
    return ConntrackSweep(scanned, len(victims), deleted, errors, timed_out)
