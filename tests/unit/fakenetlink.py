"""A kernel in memory for the runtime's tests: routes, rules, links and carrier events.

``FakeKernel`` stands in for what ``controller.actuators.netlink.Netlink`` reads and
writes, so the whole daemon (probe samples -> health -> policy -> route actuator ->
snapshot) runs without root and under a fast clock. It keeps routes by the kernel's key,
refuses what a test tells it to refuse, and delivers carrier events to every subscriber.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from controller.actuators.netlink import LinkInfo, NetlinkCallError, RouteEntry, RuleEntry


@dataclass
class FakeKernel:
    addresses: dict[str, list[str]] = field(default_factory=dict)
    routes: dict[tuple[int, int, str, int], RouteEntry] = field(default_factory=dict)
    rules: list[RuleEntry] = field(default_factory=list)
    links: dict[str, LinkInfo] = field(default_factory=dict)
    refuse_routes: bool = False  # every route replace fails as the kernel would
    writes: list[str] = field(default_factory=list)
    _subscribers: list[asyncio.Queue[LinkInfo]] = field(default_factory=list)

    def adapter(self, netns: str | None = None) -> FakeNetlink:
        """What the daemon calls instead of ``Netlink(netns)``."""
        return FakeNetlink(self)

    def add_link(self, ifname: str, address: str) -> None:
        self.links[ifname] = LinkInfo(ifname, len(self.links) + 2, True, True, "UP")
        self.addresses[ifname] = [address]

    def carrier(self, ifname: str, up: bool) -> None:
        """The interface loses (or regains) carrier; every subscriber hears of it."""
        info = LinkInfo(ifname, self.links[ifname].index, True, up, "UP" if up else "DOWN")
        self.links[ifname] = info
        for queue in self._subscribers:
            queue.put_nowait(info)

    def default_via(self, table: int = 254) -> list[str]:
        """Gateways of the default route in ``table`` (the route the site's traffic takes)."""
        for (_, tbl, dst, _), route in self.routes.items():
            if tbl == table and dst == "default":
                return [h.gateway for h in route.nexthops]
        return []


class FakeEvents:
    def __init__(self, queue: asyncio.Queue[LinkInfo]) -> None:
        self._queue = queue

    def __aiter__(self) -> FakeEvents:
        return self

    async def __anext__(self) -> LinkInfo:
        return await self._queue.get()

    def close(self) -> None:
        pass


class FakeNetlink:
    def __init__(self, kernel: FakeKernel) -> None:
        self.k = kernel

    async def __aenter__(self) -> FakeNetlink:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    def close(self) -> None:
        pass

    async def addresses(self) -> dict[str, list[str]]:
        return {name: list(addrs) for name, addrs in self.k.addresses.items()}

    async def links(self) -> list[LinkInfo]:
        return list(self.k.links.values())

    async def subscribe_links(self) -> FakeEvents:
        queue: asyncio.Queue[LinkInfo] = asyncio.Queue()
        self.k._subscribers.append(queue)
        return FakeEvents(queue)

    async def routes(self) -> list[RouteEntry]:
        return list(self.k.routes.values())

    async def rules(self) -> list[RuleEntry]:
        return list(self.k.rules)

    async def replace_route(self, route: RouteEntry) -> None:
        if self.k.refuse_routes:
            raise NetlinkCallError(22, f"replace {route.dst}: Invalid argument")
        self.k.routes[route.key] = route
        self.k.writes.append(f"replace {route.table} {route.dst}")

    async def delete_route(self, route: RouteEntry) -> None:
        self.k.routes.pop(route.key, None)
        self.k.writes.append(f"delete {route.table} {route.dst}")

    async def add_rule(self, rule: RuleEntry) -> None:
        self.k.rules.append(rule)

    async def delete_rule(self, rule: RuleEntry) -> None:
        self.k.rules.remove(rule)
