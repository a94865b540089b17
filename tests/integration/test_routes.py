"""Route actuator against a real kernel: a router namespace with three veth uplinks to peer
namespaces (gateways in 198.51.100.0/24, a target 203.0.113.10 behind each), built with the
lab's builder (``lab.builder``) and removed at the end, also on failure. Also home of the
small router lab that the conntrack and linkwatch tests import."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from controller.actuators.netlink import Netlink
from controller.actuators.routes import (
    Desired,
    GroupRoute,
    LinkRoute,
    RouteReconciler,
    observe,
    plan,
)
from tests.lab.builder import NetBuilder

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
]

PROTO = 201


def run(*argv: str, check: bool = True) -> str:
    res = subprocess.run(list(argv), capture_output=True, text=True, timeout=20)
    if check and res.returncode != 0:
        raise AssertionError(f"{argv} failed: {res.stderr.strip()}")
    return res.stdout


@dataclass
class Lab:
    router: str
    peers: tuple[str, ...]
    links: tuple[LinkRoute, ...]
    net: NetBuilder  # the router is role "site", peer i role PEER_ROLES[i]

    def ip(self, *args: str, check: bool = True) -> str:
        return run("ip", "-n", self.router, *args, check=check)

    def in_router(self, *argv: str, check: bool = True) -> str:
        return run("ip", "netns", "exec", self.router, *argv, check=check)


# Lab roles (so a crashed run's namespaces are found by netns.cleanup_stale); at most three.
PEER_ROLES = ("isp-a", "isp-b", "isp-c")

# (builder, peer role, i, router dev, peer dev) -> addresses link i, returns its LinkRoute
LinkSetup = Callable[[NetBuilder, str, int, str, str], LinkRoute]


def _build(n_links: int, setup: LinkSetup) -> Lab:
    """Router ns with veth uplinks wan<i> to peer ns i (its end isp<i>); ``setup`` addresses
    each link and brings it up. The router's and each peer's ends get distinct ifindexes
    (10+i, 20+i) so carrier changes are reported at once (see controller.runtime.linkwatch).
    """
    roles = PEER_ROLES[:n_links]
    net = NetBuilder(["site", *roles])
    net.create()
    try:
        links = []
        for i, role in enumerate(roles):
            dev, pdev = f"wan{i}", f"isp{i}"
            net.veth("site", dev, role, pdev, a_index=10 + i, b_index=20 + i)
            links.append(setup(net, role, i, dev, pdev))
    except BaseException:
        net.destroy()
        raise
    return Lab(net.ns("site"), tuple(net.ns(r) for r in roles), tuple(links), net)


def _v4_link(net: NetBuilder, peer: str, i: int, dev: str, pdev: str) -> LinkRoute:
    gw, addr = f"198.51.100.{4 * i + 1}", f"198.51.100.{4 * i + 2}"
    net.iface("site", dev, f"{addr}/30")
    net.iface(peer, pdev, f"{gw}/30")
    net.ip(peer, "address add 203.0.113.10/32 dev lo")
    return LinkRoute(f"link-{i}", dev, gw, addr, 101 + i, weight=3 if i == 0 else 1)


def build_lab(n_links: int = 3) -> Lab:
    """Router ns with uplinks wan0..wan2; peer i has gateway 198.51.100.(4i+1)/30."""
    return _build(n_links, _v4_link)


@contextlib.contextmanager
def small_lab(builder: Callable[[int], Lab] = build_lab, n_links: int = 3) -> Iterator[Lab]:
    """A built router lab, removed at the end (with any namespace added to it), also when
    the test fails."""
    the_lab = builder(n_links)
    try:
        yield the_lab
    finally:
        the_lab.net.destroy()


@pytest.fixture
def lab() -> Iterator[Lab]:
    with small_lab() as the_lab:
        yield the_lab


def desired(lab: Lab, active: tuple[str, ...] = ("link-0",), takeover: bool = False) -> Desired:
    group = GroupRoute("internet", 254, "default", 10, active, takeover=takeover)
    return Desired(links=lab.links, groups=(group,), protocol=PROTO, rule_priority=1000)


def main_default(lab: Lab, metric: int = 10) -> str:
    out = lab.ip("-4", "route", "show", "table", "main", "exact", "0.0.0.0/0")
    return "\n".join(line for line in out.splitlines() if f"metric {metric}" in line)


async def test_creates_link_tables_rules_and_group_route(lab: Lab) -> None:
    async with Netlink(lab.router) as nl:
        result = await RouteReconciler(nl).reconcile(desired(lab))
    assert result.ok, [e.describe() for e in result.errors]
    rules = lab.ip("-4", "rule", "show")
    for i in range(3):
        assert f"{1000 + i}:\tfrom 198.51.100.{4 * i + 2} lookup {101 + i} proto {PROTO}" in rules
        table = lab.ip("-4", "route", "show", "table", str(101 + i))
        assert f"default via 198.51.100.{4 * i + 1} dev wan{i} proto {PROTO}" in table
    assert "default via 198.51.100.1 dev wan0 proto 201 metric 10" in main_default(lab)
    # every link is usable by its source address, the inactive ones too
    got = lab.ip("-4", "route", "get", "203.0.113.10", "from", "198.51.100.6")
    assert "dev wan1" in got
    got = lab.ip("-4", "route", "get", "203.0.113.10")
    assert "dev wan0" in got


async def test_second_reconcile_and_restart_change_nothing(lab: Lab) -> None:
    async with Netlink(lab.router) as nl:
        first = await RouteReconciler(nl).reconcile(desired(lab))
        assert first.ok and not first.plan.empty
        second = await RouteReconciler(nl).reconcile(desired(lab))  # a restarted daemon
    assert second.plan.empty, second.plan.describe()
    assert second.done == ()


async def test_switch_replaces_atomically_never_absent(lab: Lab) -> None:
    switches = 40
    seen_missing: list[str] = []
    reads = 0
    stop = threading.Event()

    def watcher() -> None:
        """Dumps the routes from another thread (its own loop and netlink socket), as fast as
        it can, bounded in count and time."""

        async def loop() -> None:
            nonlocal reads
            deadline = time.monotonic() + 30
            async with Netlink(lab.router) as reader:
                while not stop.is_set() and time.monotonic() < deadline and reads < 50000:
                    keys = {r.key for r in await reader.routes()}
                    reads += 1
                    if (4, 254, "default", 10) not in keys:
                        seen_missing.append(f"read {reads}")

        asyncio.run(loop())

    async with Netlink(lab.router) as nl:
        rec = RouteReconciler(nl)
        assert (await rec.reconcile(desired(lab))).ok
        thread = threading.Thread(target=watcher)
        thread.start()
        durations: list[float] = []
        try:
            for k in range(switches):
                active = ("link-1",) if k % 2 == 0 else ("link-0",)
                res = await rec.reconcile(desired(lab, active))
                assert res.ok and len(res.done) == 1, res.plan.describe()
                durations.extend(res.durations_s)
                await asyncio.sleep(0.002)  # let the reader look between switches too
        finally:
            stop.set()
            thread.join(timeout=40)
    assert reads > 10
    assert seen_missing == []
    assert "via 198.51.100.1 dev wan0" in main_default(lab)  # even count: back on link-0
    durations.sort()
    print(
        f"\nroute switch (replace call) over {switches}: median "
        f"{durations[len(durations) // 2] * 1e3:.3f} ms, max {durations[-1] * 1e3:.3f} ms; "
        f"{reads} reads of the route, none missing"
    )
    assert durations[-1] < 0.5  # generous: a replace is a single netlink message


async def test_multipath_with_weights(lab: Lab) -> None:
    async with Netlink(lab.router) as nl:
        res = await RouteReconciler(nl).reconcile(desired(lab, ("link-0", "link-1")))
        assert res.ok
        again = plan(desired(lab, ("link-0", "link-1")), await observe(nl, desired(lab)))
    assert again.empty, again.describe()
    out = main_default(lab) + lab.ip("-4", "route", "show", "table", "main")
    assert "nexthop via 198.51.100.1 dev wan0 weight 3" in out
    assert "nexthop via 198.51.100.5 dev wan1 weight 1" in out


async def test_manual_changes_are_put_back(lab: Lab) -> None:
    async with Netlink(lab.router) as nl:
        rec = RouteReconciler(nl)
        assert (await rec.reconcile(desired(lab))).ok
        lab.ip("route", "replace", "default", "via", "198.51.100.9", "dev", "wan2", "metric", "10")
        lab.ip("rule", "del", "pref", "1001")
        assert "198.51.100.9" in main_default(lab)
        res = await rec.reconcile(desired(lab))
        assert res.ok and not res.plan.conflicts, res.plan.describe()
    assert "default via 198.51.100.1 dev wan0 proto 201 metric 10" in main_default(lab)
    assert "1001:\tfrom 198.51.100.6 lookup 102 proto 201" in lab.ip("-4", "rule", "show")


async def test_foreign_routes_untouched_and_same_key_is_a_conflict(lab: Lab) -> None:
    lab.ip("route", "add", "default", "via", "198.51.100.9", "dev", "wan2", "metric", "50",
           "proto", "static")  # fmt: skip
    lab.ip("route", "add", "default", "via", "198.51.100.9", "dev", "wan2", "metric", "10",
           "proto", "static")  # fmt: skip
    lab.ip("route", "add", "192.0.2.0/24", "via", "198.51.100.5", "table", "101")
    async with Netlink(lab.router) as nl:
        res = await RouteReconciler(nl).reconcile(desired(lab))
        assert res.ok
        assert len(res.plan.conflicts) == 1
        assert "foreign" in res.plan.conflicts[0].describe()
        assert "metric 10" in res.plan.conflicts[0].describe()
        # reported again next cycle, still not applied
        assert (await RouteReconciler(nl).reconcile(desired(lab))).plan.conflicts
        main = lab.ip("-4", "route", "show", "table", "main")
        assert "default via 198.51.100.9 dev wan2 proto static metric 50" in main
        assert "default via 198.51.100.9 dev wan2 proto static metric 10" in main
        assert "192.0.2.0/24 via 198.51.100.5" in lab.ip("route", "show", "table", "101")
        # with takeover the operator hands the key over
        res = await RouteReconciler(nl).reconcile(desired(lab, takeover=True))
        assert res.ok and not res.plan.conflicts
    assert "default via 198.51.100.1 dev wan0 proto 201 metric 10" in main_default(lab)
    assert "proto static metric 50" in lab.ip("-4", "route", "show", "table", "main")


async def test_stale_lifeline_rule_and_table_removed_foreign_kept(lab: Lab) -> None:
    lab.ip("rule", "add", "from", "198.51.100.14", "lookup", "105", "pref", "1005",
           "protocol", "201")  # fmt: skip
    lab.ip("rule", "add", "from", "198.51.100.14", "lookup", "106", "pref", "1005",
           "protocol", "static")  # fmt: skip
    lab.ip("route", "add", "default", "via", "198.51.100.9", "dev", "wan2", "table", "105",
           "proto", "201")  # fmt: skip
    async with Netlink(lab.router) as nl:
        res = await RouteReconciler(nl).reconcile(desired(lab))
    assert res.ok, [e.describe() for e in res.errors]
    rules = lab.ip("-4", "rule", "show")
    assert "lookup 105" not in rules
    assert "1005:\tfrom 198.51.100.14 lookup 106 proto static" in rules
    assert lab.ip("-4", "route", "show", "table", "105").strip() == ""


async def test_unreachable_gateway_is_reported_not_raised(lab: Lab) -> None:
    async with Netlink(lab.router) as nl:
        rec = RouteReconciler(nl)
        assert (await rec.reconcile(desired(lab))).ok
        lab.ip("link", "set", "wan1", "down")  # the kernel then refuses nexthops on it
        res = await rec.reconcile(desired(lab, ("link-1",)))
        assert not res.ok
        assert any("unreachable" in e.error.lower() for e in res.errors), res.errors
        # what could be done was done; the old route stays in place meanwhile
        assert "via 198.51.100.1 dev wan0" in main_default(lab)
        lab.ip("link", "set", "wan1", "up")
        res = await rec.reconcile(desired(lab, ("link-1",)))
        assert res.ok, [e.describe() for e in res.errors]
    assert "via 198.51.100.5 dev wan1" in main_default(lab)
    assert "default via 198.51.100.5 dev wan1" in lab.ip("route", "show", "table", "102")


# -- IPv6 and dual stack ---------------------------------------------------------------------


def _v6_link(net: NetBuilder, peer: str, i: int, dev: str, pdev: str) -> LinkRoute:
    net.iface("site", dev, f"198.51.100.{4 * i + 2}/30", f"2001:db8:{i}::2/64")
    net.iface(peer, pdev, f"198.51.100.{4 * i + 1}/30", f"2001:db8:{i}::1/64", "fe80::1/64")
    gw = f"2001:db8:{i}::1" if i == 0 else "fe80::1"
    return LinkRoute(f"v6-{i}", dev, gw, f"2001:db8:{i}::2", 201 + i, 3 - 2 * i)


def build_lab6(n_links: int = 2) -> Lab:
    """Router ns with uplinks wan0..wan1 carrying IPv4 (as build_lab) and IPv6: peer i has
    2001:db8:i::1/64, the router 2001:db8:i::2/64. Link 1's IPv6 gateway is the peer's
    link-local fe80::1, as many ISPs hand out. `links` holds the IPv6 links only (v6-0,
    v6-1); the IPv4 ones are `v4_links(lab)`. Addresses are `nodad`, so usable at once."""
    return _build(n_links, _v6_link)


def v4_links(lab: Lab) -> tuple[LinkRoute, ...]:
    return tuple(
        LinkRoute(
            f"v4-{i}", f"wan{i}", f"198.51.100.{4 * i + 1}", f"198.51.100.{4 * i + 2}", 101 + i
        )
        for i in range(len(lab.peers))
    )


@pytest.fixture
def lab6() -> Iterator[Lab]:
    with small_lab(build_lab6, 2) as the_lab:
        yield the_lab


def desired6(
    lab: Lab, active: tuple[str, ...] = ("v6-0",), metric: int = 0, takeover: bool = False
) -> Desired:
    group = GroupRoute("internet6", 254, "default", metric, active, takeover=takeover, family=6)
    return Desired(links=lab.links, groups=(group,), protocol=PROTO, rule_priority=1000)


def dual(lab: Lab, active4: tuple[str, ...], active6: tuple[str, ...]) -> Desired:
    groups = (
        GroupRoute("internet", 254, "default", 0, active4, family=4),
        GroupRoute("internet6", 254, "default", 0, active6, family=6),
    )
    return Desired(v4_links(lab) + lab.links, groups, protocol=PROTO, rule_priority=1000)


def main_default6(lab: Lab) -> str:
    return lab.ip("-6", "route", "show", "table", "main", "exact", "::/0")


async def test_ipv6_link_tables_rules_and_group_route(lab6: Lab) -> None:
    async with Netlink(lab6.router) as nl:
        result = await RouteReconciler(nl).reconcile(desired6(lab6))
        assert result.ok, [e.describe() for e in result.errors]
        # a second pass and a restarted daemon find nothing to do: the kernel's metric 1024
        # and its link-local gateway read back as planned
        again = await RouteReconciler(nl).reconcile(desired6(lab6))
    assert again.plan.empty, again.plan.describe()
    rules = lab6.ip("-6", "rule", "show")
    assert "1000:\tfrom 2001:db8::2 lookup 201 proto 201" in rules
    assert "1001:\tfrom 2001:db8:1::2 lookup 202 proto 201" in rules
    assert "default via 2001:db8::1 dev wan0 proto 201 metric 1024" in lab6.ip(
        "-6", "route", "show", "table", "201"
    )
    assert "default via fe80::1 dev wan1 proto 201 metric 1024" in lab6.ip(
        "-6", "route", "show", "table", "202"
    )
    assert "default via 2001:db8::1 dev wan0 proto 201 metric 1024" in main_default6(lab6)
    # IPv4 untouched: no IPv4 rule or default was written for IPv6 links
    assert "proto 201" not in lab6.ip("-4", "rule", "show")
    assert lab6.ip("-4", "route", "show", "table", "main", "exact", "0.0.0.0/0").strip() == ""
    # every link is usable by its source address, the inactive one too
    got = lab6.ip("-6", "route", "get", "2001:db8:f::10", "from", "2001:db8:1::2")
    assert "via fe80::1 dev wan1" in got
    assert "dev wan0" in lab6.ip("-6", "route", "get", "2001:db8:f::10")


async def test_ipv6_switch_and_weighted_multipath(lab6: Lab) -> None:
    async with Netlink(lab6.router) as nl:
        rec = RouteReconciler(nl)
        assert (await rec.reconcile(desired6(lab6))).ok
        res = await rec.reconcile(desired6(lab6, ("v6-1",)))
        assert res.ok and len(res.done) == 1, res.plan.describe()
        assert "default via fe80::1 dev wan1 proto 201 metric 1024" in main_default6(lab6)
        both = desired6(lab6, ("v6-0", "v6-1"))
        res = await rec.reconcile(both)
        assert res.ok and len(res.done) == 1, res.plan.describe()
        again = plan(both, await observe(nl, both), frozenset(rec.owned))
    assert again.empty, again.describe()
    out = main_default6(lab6)
    assert "nexthop via 2001:db8::1 dev wan0 weight 3" in out
    assert "nexthop via fe80::1 dev wan1 weight 1" in out


async def test_ipv6_foreign_route_is_a_conflict_until_takeover(lab6: Lab) -> None:
    lab6.ip("-6", "route", "add", "default", "via", "fe80::1", "dev", "wan1", "proto", "static")
    async with Netlink(lab6.router) as nl:
        res = await RouteReconciler(nl).reconcile(desired6(lab6))
        assert res.ok
        assert [c.owner for c in res.plan.conflicts] == ["internet6"]
        assert "foreign ::/0 via fe80::1 dev wan1" in res.plan.conflicts[0].message
        assert "proto static metric 1024" in main_default6(lab6)
        res = await RouteReconciler(nl).reconcile(desired6(lab6, takeover=True))
        assert res.ok and not res.plan.conflicts
    assert "default via 2001:db8::1 dev wan0 proto 201 metric 1024" in main_default6(lab6)


async def test_dual_stack_groups_share_main_and_fail_over_apart(lab6: Lab) -> None:
    async with Netlink(lab6.router) as nl:
        rec = RouteReconciler(nl)
        res = await rec.reconcile(dual(lab6, ("v4-0",), ("v6-0",)))
        assert res.ok and not res.plan.conflicts, res.plan.describe()
        assert "default via 198.51.100.1 dev wan0 proto 201" in lab6.ip("-4", "route")
        assert "default via 2001:db8::1 dev wan0 proto 201 metric 1024" in main_default6(lab6)
        # the IPv6 group fails over; the IPv4 route is not touched
        res = await rec.reconcile(dual(lab6, ("v4-0",), ("v6-1",)))
        assert res.ok and [s.describe() for s in res.done] == [
            "replace ::/0 via fe80::1 dev wan1 table 254 metric 1024 proto 201  "
            "(group internet6 -> v6-1)"
        ]
        again = await RouteReconciler(nl).reconcile(dual(lab6, ("v4-0",), ("v6-1",)))
        assert again.plan.empty, again.plan.describe()
        # dropping the IPv6 links removes their rules and tables, not the IPv4 ones
        only4 = Desired(
            v4_links(lab6),
            (GroupRoute("internet", 254, "default", 0, ("v4-0",), family=4),),
            protocol=PROTO,
        )
        res = await rec.reconcile(only4)
        assert res.ok, [e.describe() for e in res.errors]
    assert "proto 201" not in lab6.ip("-6", "rule", "show")
    assert "proto 201" not in lab6.ip("-6", "route", "show", "table", "all")
    assert "from 198.51.100.2 lookup 101 proto 201" in lab6.ip("-4", "rule", "show")
    assert "default via 198.51.100.1 dev wan0 proto 201" in lab6.ip("-4", "route")


async def test_addresses_of_both_families_without_tentative_ones(lab6: Lab) -> None:
    lab6.ip("-6", "addr", "add", "2001:db8:99::2/64", "dev", "wan0")  # DAD: tentative ~1 s
    async with Netlink(lab6.router) as nl:
        found = await nl.addresses()
    still_tentative = "tentative" in lab6.ip("-6", "addr", "show", "dev", "wan0")
    assert found["wan0"][0] == "198.51.100.2/30"
    assert "2001:db8::2/64" in found["wan0"]
    if still_tentative:  # it was tentative throughout the dump
        assert "2001:db8:99::2/64" not in found["wan0"]
