"""Conntrack flush after a switch against a real kernel: every flow NAT'ed to the old link goes,
whatever its protocol (ports or none, zones too); flows through other links and flows not
NAT'ed stay; a group's rules narrow it. Entries are made both by `conntrack -I` and by real
packets from a LAN namespace SNAT'ed by the router, for IPv4 and for IPv6 (NAT66). What is
stale is decided in controller.core.staleflows (tests/unit/test_staleflows.py)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import TypeVar, cast

import pytest

from controller.actuators.conntrack import flush_after_switch
from controller.actuators.netlink import Netlink
from controller.actuators.routes import RouteReconciler
from controller.core.flushrules import parse_flush_rule
from controller.core.staleflows import StaleFlows
from tests.integration.test_routes import (
    Lab,
    build_lab6,
    desired,
    desired6,
    run,
    small_lab,
)

T = TypeVar("T")


def lab_test(f: T) -> T:
    """Marks for the tests that need the lab (the pure ones above them run anywhere)."""
    for mark in (
        pytest.mark.lab,
        pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
        pytest.mark.skipif(shutil.which("conntrack") is None, reason="conntrack not installed"),
        pytest.mark.skipif(shutil.which("iptables") is None, reason="iptables not installed"),
    ):
        f = cast(T, mark(f))
    return f


A, B = "198.51.100.2", "198.51.100.6"  # sources of link-0 and link-1
PEER = "203.0.113.10"
LAN_HOST = "192.0.2.10"


VOICE = tuple(parse_flush_rule(r) for r in ("udp/5060", "tcp/5060-5061", "udp/10000-20000"))


def nat_to(*addresses: str, rules: tuple[str, ...] | None = None) -> StaleFlows:
    return StaleFlows.nat_to(addresses, None if rules is None else map(parse_flush_rule, rules))


@pytest.fixture
def lab() -> Iterator[Lab]:
    with small_lab(n_links=2) as the_lab:
        yield the_lab


def ct_list(lab: Lab) -> str:
    return lab.in_router("conntrack", "-L", "-f", "ipv4")


def inject(lab: Lab, proto: str, sport: int, dport: int, reply_dst: str, *,
           src: str = LAN_HOST, zone: int | None = None) -> None:
    argv = [
        "conntrack", "-I", "-p", proto, "-s", src, "-d", PEER,
        "--sport", str(sport), "--dport", str(dport),
        "-r", PEER, "-q", reply_dst, "--reply-port-src", str(dport),
        "--reply-port-dst", str(sport), "-t", "120",
    ]  # fmt: skip
    if proto == "tcp":
        argv += ["--state", "ESTABLISHED"]
    elif proto == "sctp":
        argv += ["--state", "ESTABLISHED", "--orig-vtag", "1", "--reply-vtag", "2"]
    else:
        argv += ["-u", "SEEN_REPLY"]
    argv += ["-w", str(zone)] if zone is not None else []
    lab.in_router(*argv)


def inject_portless(lab: Lab, proto: str, reply_dst: str) -> None:
    """A GRE (keys 5/6) or generic (ESP, by number) entry from the LAN host to the peer."""
    keys = (["--srckey", "5", "--dstkey", "6", "--reply-key-src", "6", "--reply-key-dst", "5"]
            if proto == "gre" else [])
    lab.in_router("conntrack", "-I", "-p", proto, "-s", LAN_HOST, "-d", PEER, "-r", PEER,
                  "-q", reply_dst, "-t", "120", *keys)  # fmt: skip


def has(listing: str, proto: str, sport: int, dport: int, reply_dst: str) -> bool:
    return any(
        line.startswith(proto)
        and f"sport={sport} dport={dport}" in line
        and f"dst={reply_dst}" in line
        for line in listing.splitlines()
    )


def has_proto(listing: str, proto: str, reply_dst: str) -> bool:
    """An entry of ``proto`` (as conntrack -L prints it: gre, unknown for ESP) NAT'ed to
    ``reply_dst``: the reply tuple's dst is the last dst= on the line."""
    return any(line.startswith(proto) and line.rsplit("dst=", 1)[-1].split()[0] == reply_dst
               for line in listing.splitlines())


@lab_test
async def test_flush_injected_entries_of_every_protocol_nat_ed_to_the_old_link(lab: Lab) -> None:
    inject(lab, "udp", 51820, 51820, A)  # a WireGuard tunnel through A: goes
    inject(lab, "udp", 5060, 5060, A)  # SIP through A: goes
    inject(lab, "tcp", 40000, 443, A)  # TCP through A: goes
    inject(lab, "sctp", 100, 200, A)  # SCTP (a delete must name its ports): goes
    inject_portless(lab, "gre", A)  # GRE (a delete must name its keys): goes
    inject_portless(lab, "50", A)  # ESP, tracked by addresses only: goes
    inject(lab, "udp", 7000, 7000, A, zone=7)  # in conntrack zone 7: goes
    inject(lab, "udp", 5062, 5060, B)  # through B: stays
    inject(lab, "udp", 5064, 5060, LAN_HOST)  # not NAT'ed: stays
    inject(lab, "udp", 5066, 5060, A, src=A)  # the router's own flow from A: stays
    before = ct_list(lab)
    assert has(before, "udp", 51820, 51820, A) and has_proto(before, "gre", A), before
    assert has_proto(before, "unknown", A) and "zone=7" in before, before

    # a sweep past its deadline stops and says so (bounded time), deleting nothing here
    partial = await flush_after_switch(nat_to(A), netns=lab.router, timeout=0.0)
    assert partial.timed_out and partial.deleted == 0
    assert "TIMED OUT" in partial.describe()

    # narrowed to the voice ports: only SIP goes
    voice = await flush_after_switch(nat_to(A, rules=("udp/5060", "udp/10000-20000")),
                                     netns=lab.router)
    assert voice.deleted == 1 and voice.errors == 0, voice
    assert not has(ct_list(lab), "udp", 5060, 5060, A)
    assert has(ct_list(lab), "udp", 51820, 51820, A)

    result = await flush_after_switch(nat_to(A), netns=lab.router)
    after = ct_list(lab)
    assert result.deleted == 6 and result.errors == 0 and not result.timed_out, (result, after)
    assert result.scanned >= 9
    assert not has(after, "udp", 51820, 51820, A)
    assert not has(after, "tcp", 40000, 443, A)
    assert not has(after, "sctp", 100, 200, A)
    assert not has_proto(after, "gre", A) and not has_proto(after, "unknown", A)
    assert not has(after, "udp", 7000, 7000, A)
    assert has(after, "udp", 5062, 5060, B)
    assert has(after, "udp", 5064, 5060, LAN_HOST)
    assert has(after, "udp", 5066, 5060, A)
    assert f"deleted 6 of {result.scanned} entries NAT'ed to {A}" in result.describe()

    # failback: the same rule now removes what went out through B
    back = await flush_after_switch(nat_to(B), netns=lab.router)
    assert back.deleted == 1
    assert not has(ct_list(lab), "udp", 5062, 5060, B)
    assert has(ct_list(lab), "udp", 5066, 5060, A)


def send_udp_from_lan(lab: Lab, lan: str, sport: int, dport: int) -> None:
    """Three datagrams, from the LAN namespace, through the router to the peer."""
    code = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"s.bind(('{LAN_HOST}', {sport}))\n"
        f"for _ in range(3): s.sendto(b'lifeline-test', ('{PEER}', {dport}))\n"
    )
    run("ip", "netns", "exec", lan, "python3", "-c", code)


def add_lan(lab: Lab, family: int) -> str:
    """A LAN namespace behind the router (lan0 -- eth0), its host LAN_HOST (family 4) or LAN6
    (6), SNAT'ed (NAT66) by the router out of wan0/wan1 to the sources of links 0 and 1; its
    name. It goes with the lab."""
    net = lab.net
    net.create(["lan"])
    net.veth("site", "lan0", "lan", "eth0", a_index=30, b_index=40)
    if family == 4:
        router_cidr, host_cidr, gateway = "192.0.2.1/24", f"{LAN_HOST}/24", "192.0.2.1"
        forwarding, nat, sources = "net.ipv4.ip_forward=1", "iptables", (A, B)
    else:
        router_cidr, host_cidr, gateway = "2001:db8:100::1/64", f"{LAN6}/64", "2001:db8:100::1"
        forwarding, nat, sources = "net.ipv6.conf.all.forwarding=1", "ip6tables", (A6, B6)
    net.iface("site", "lan0", router_cidr)
    net.iface("lan", "eth0", host_cidr)
    net.ip("lan", f"route add {'default' if family == 4 else '::/0'} via {gateway}")
    net.sysctl("site", forwarding)
    for dev, src in (("wan0", sources[0]), ("wan1", sources[1])):
        lab.in_router(nat, "-t", "nat", "-A", "POSTROUTING", "-o", dev, "-j", "SNAT",
                      "--to-source", src)  # fmt: skip
    return net.ns("lan")


def ping_from_lan(lan: str, peer: str) -> None:
    """One echo request through the router: an ICMP entry (no ports) NAT'ed to its link."""
    run("ip", "netns", "exec", lan, "ping", "-c", "1", "-W", "1", peer, check=False)


@lab_test
async def test_flush_real_snat_flows_after_switch(lab: Lab) -> None:
    lan = add_lan(lab, 4)
    async with Netlink(lab.router) as nl:
        rec = RouteReconciler(nl)
        assert (await rec.reconcile(desired(lab, ("link-0",)))).ok
        send_udp_from_lan(lab, lan, 5060, 5060)  # SIP via A
        send_udp_from_lan(lab, lan, 51820, 51820)  # a WireGuard-like tunnel via A
        ping_from_lan(lan, PEER)  # ICMP via A
        assert (await rec.reconcile(desired(lab, ("link-1",)))).ok
        send_udp_from_lan(lab, lan, 5070, 5060)  # SIP via B, after the switch
        send_udp_from_lan(lab, lan, 5060, 5060)  # the old flows: still NAT'ed to A
        send_udp_from_lan(lab, lan, 51820, 51820)
        before = ct_list(lab)
        assert has(before, "udp", 5060, 5060, A), before
        assert has(before, "udp", 51820, 51820, A), before
        assert has_proto(before, "icmp", A), before
        assert has(before, "udp", 5070, 5060, B), before

        result = await flush_after_switch(nat_to(A), netns=lab.router)
    after = ct_list(lab)
    assert result.deleted == 3, (result, before)
    assert not has(after, "udp", 5060, 5060, A)
    assert not has(after, "udp", 51820, 51820, A)
    assert not has_proto(after, "icmp", A)
    assert has(after, "udp", 5070, 5060, B)
    # the next packets of the old flows are NAT'ed afresh, to B's address
    send_udp_from_lan(lab, lan, 5060, 5060)
    send_udp_from_lan(lab, lan, 51820, 51820)
    assert has(ct_list(lab), "udp", 5060, 5060, B)
    assert has(ct_list(lab), "udp", 51820, 51820, B)


async def test_nothing_to_flush_is_a_no_op() -> None:
    result = await flush_after_switch(nat_to(), netns="never-used")
    assert result.deleted == 0 and result.scanned == 0 and not result.timed_out
    off = await flush_after_switch(nat_to(A, rules=()), netns="never-used")
    assert off.deleted == 0 and off.scanned == 0 and "flush off" in off.describe()


# -- IPv6 (NAT66) ----------------------------------------------------------------------------

A6, B6 = "2001:db8::2", "2001:db8:1::2"  # sources of v6-0 and v6-1 (build_lab6)
PEER6 = "2001:db8:f::10"
LAN6 = "2001:db8:100::10"


@pytest.fixture
def lab6() -> Iterator[Lab]:
    with small_lab(build_lab6, 2) as the_lab:
        yield the_lab


def ct_list6(lab: Lab) -> str:
    return lab.in_router("conntrack", "-L", "-f", "ipv6")


def inject6(lab: Lab, sport: int, dport: int, reply_dst: str) -> None:
    lab.in_router(
        "conntrack", "-I", "-p", "udp", "-s", LAN6, "-d", PEER6,
        "--sport", str(sport), "--dport", str(dport),
        "-r", PEER6, "-q", reply_dst, "--reply-port-src", str(dport),
        "--reply-port-dst", str(sport), "-t", "120", "-u", "SEEN_REPLY",
    )  # fmt: skip


@lab_test
async def test_flush_ipv6_entries_and_both_families_in_one_sweep(lab6: Lab) -> None:
    inject6(lab6, 5060, 5060, A6)  # SIP NAT66'ed to A6: goes
    inject6(lab6, 51820, 51820, A6)  # a tunnel NAT66'ed to A6: goes
    inject6(lab6, 5062, 5060, B6)  # through the other link: stays
    inject(lab6, "udp", 5060, 5060, A)  # IPv4 SIP through A: only the dual sweep takes it
    assert has(ct_list6(lab6), "udp", 5060, 5060, A6)

    # "2001:db8:0::2" is A6 written long-hand: sources are compared as addresses
    result = await flush_after_switch(nat_to("2001:db8:0::2"), netns=lab6.router)
    assert result.deleted == 2 and result.errors == 0 and not result.timed_out, result
    assert result.old_sources == (A6,)
    after = ct_list6(lab6)
    assert not has(after, "udp", 5060, 5060, A6) and not has(after, "udp", 51820, 51820, A6)
    assert has(after, "udp", 5062, 5060, B6)
    assert has(ct_list(lab6), "udp", 5060, 5060, A)  # an IPv6 sweep never reads IPv4

    inject6(lab6, 5060, 5060, A6)
    both = await flush_after_switch(nat_to(A, A6), netns=lab6.router)
    assert both.deleted == 2, both
    assert not has(ct_list(lab6), "udp", 5060, 5060, A)
    assert not has(ct_list6(lab6), "udp", 5060, 5060, A6)


def send_udp6_from_lan(lan: str, sport: int, dport: int) -> None:
    code = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
        f"s.bind(('{LAN6}', {sport}))\n"
        f"for _ in range(3): s.sendto(b'lifeline-test', ('{PEER6}', {dport}))\n"
    )
    run("ip", "netns", "exec", lan, "python3", "-c", code)


@lab_test
async def test_flush_real_nat66_flows_after_switch(lab6: Lab) -> None:
    if shutil.which("ip6tables") is None:
        pytest.skip("ip6tables not installed (Debian package iptables)")
    lan = add_lan(lab6, 6)
    async with Netlink(lab6.router) as nl:
        rec = RouteReconciler(nl)
        assert (await rec.reconcile(desired6(lab6, ("v6-0",)))).ok
        send_udp6_from_lan(lan, 5060, 5060)  # SIP via A6
        send_udp6_from_lan(lan, 51820, 51820)  # a tunnel via A6
        ping_from_lan(lan, PEER6)  # ICMPv6 via A6
        assert (await rec.reconcile(desired6(lab6, ("v6-1",)))).ok
        send_udp6_from_lan(lan, 5070, 5060)  # SIP via B6, after the switch
        send_udp6_from_lan(lan, 5060, 5060)  # the old flow: still NAT'ed to A6
        before = ct_list6(lab6)
        assert has(before, "udp", 5060, 5060, A6), before
        assert has(before, "udp", 5070, 5060, B6), before
        assert has_proto(before, "icmpv6", A6), before

        result = await flush_after_switch(nat_to(A6), netns=lab6.router)
    after = ct_list6(lab6)
    assert result.deleted == 3, (result, before)
    assert not has(after, "udp", 5060, 5060, A6)
    assert not has(after, "udp", 51820, 51820, A6)
    assert not has_proto(after, "icmpv6", A6)
    assert has(after, "udp", 5070, 5060, B6)
    # the next packet of the SIP flow is NAT'ed afresh, to B6
    send_udp6_from_lan(lan, 5060, 5060)
    assert has(ct_list6(lab6), "udp", 5060, 5060, B6)
