"""Selective conntrack flush after a switch: only flows NAT'ed through the old link and covered
by a flush rule go; other ports, other links and un-NAT'ed flows stay. Entries are made both by
`conntrack -I` and by real UDP packets from a LAN namespace SNAT'ed by the router, for IPv4
and for IPv6 (NAT66)."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from typing import TypeVar, cast

import pytest

from controller.actuators.conntrack import flow_matches, flush_after_switch, stale_sources
from controller.actuators.netlink import ConntrackFlow, Netlink
from controller.actuators.routes import RouteReconciler
from controller.core.flushrules import DEFAULT_FLUSH_RULES, FlushRule
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


def flow(proto: int, sport: int, dport: int, reply_dst: str) -> ConntrackFlow:
    return ConntrackFlow(proto, LAN_HOST, PEER, sport, dport, PEER, reply_dst)


def test_flow_matching_rules() -> None:
    udp, tcp = socket.IPPROTO_UDP, socket.IPPROTO_TCP
    rules = DEFAULT_FLUSH_RULES
    assert flow_matches(flow(udp, 40000, 5060, A), [A], rules)  # SIP by destination port
    assert flow_matches(flow(udp, 5060, 40000, A), [A], rules)  # SIP by source port
    assert flow_matches(flow(udp, 12000, 30000, A), [A], rules)  # RTP
    assert flow_matches(flow(tcp, 40000, 5061, A), [A], rules)  # SIP over TLS
    assert not flow_matches(flow(udp, 40000, 5060, B), [A], rules)  # through another link
    assert not flow_matches(flow(udp, 40000, 7000, A), [A], rules)  # unrelated port
    assert not flow_matches(flow(tcp, 40000, 12000, A), [A], rules)  # RTP rule is UDP only
    assert not flow_matches(flow(udp, 40000, 5060, LAN_HOST), [A], rules)  # not NAT'ed
    assert not flow_matches(flow(udp, 40000, 5060, A), [A], [FlushRule("udp", 5061, 5061)])


def test_stale_sources() -> None:
    sources = {"fibre-a": A, "fibre-b": B, "lte": None}
    assert stale_sources(["fibre-a"], ["fibre-b"], sources) == (A,)
    assert stale_sources(["fibre-a", "fibre-b"], ["fibre-b"], sources) == (A,)
    assert stale_sources(["fibre-b"], ["fibre-a"], sources) == (B,)  # failback
    assert stale_sources(["fibre-a"], ["fibre-a", "fibre-b"], sources) == ()
    assert stale_sources(["lte"], ["fibre-a"], sources) == ()


@pytest.fixture
def lab() -> Iterator[Lab]:
    with small_lab(n_links=2) as the_lab:
        yield the_lab


def ct_list(lab: Lab) -> str:
    return lab.in_router("conntrack", "-L", "-f", "ipv4")


def inject(lab: Lab, proto: str, sport: int, dport: int, reply_dst: str) -> None:
    argv = [
        "conntrack", "-I", "-p", proto, "-s", LAN_HOST, "-d", PEER,
        "--sport", str(sport), "--dport", str(dport),
        "-r", PEER, "-q", reply_dst, "--reply-port-src", str(dport),
        "--reply-port-dst", str(sport), "-t", "120",
    ]  # fmt: skip
    argv += ["--state", "ESTABLISHED"] if proto == "tcp" else ["-u", "SEEN_REPLY"]
    lab.in_router(*argv)


def has(listing: str, proto: str, sport: int, dport: int, reply_dst: str) -> bool:
    return any(
        line.startswith(proto)
        and f"sport={sport} dport={dport}" in line
        and f"dst={reply_dst}" in line
        for line in listing.splitlines()
    )


@lab_test
async def test_flush_injected_entries_only_old_link_and_voice_ports(lab: Lab) -> None:
    inject(lab, "udp", 5060, 5060, A)  # SIP through A: goes
    inject(lab, "udp", 12000, 30000, A)  # RTP through A: goes
    inject(lab, "tcp", 40000, 5061, A)  # SIP-TLS through A: goes
    inject(lab, "udp", 7000, 7000, A)  # unrelated port through A: stays
    inject(lab, "udp", 5062, 5060, B)  # SIP through B: stays
    inject(lab, "udp", 5064, 5060, LAN_HOST)  # not NAT'ed: stays
    before = ct_list(lab)
    assert has(before, "udp", 5060, 5060, A) and has(before, "tcp", 40000, 5061, A)

    # a sweep past its deadline stops and says so (bounded time), deleting nothing here
    partial = await flush_after_switch([A], netns=lab.router, timeout=0.0)
    assert partial.timed_out and partial.deleted == 0
    assert "TIMED OUT" in partial.describe()

    result = await flush_after_switch(stale_sources(["a"], ["b"], {"a": A, "b": B}),
                                      netns=lab.router)  # fmt: skip
    after = ct_list(lab)
    assert result.deleted == 3 and result.errors == 0 and not result.timed_out, result
    assert result.scanned >= 6
    assert not has(after, "udp", 5060, 5060, A)
    assert not has(after, "udp", 12000, 30000, A)
    assert not has(after, "tcp", 40000, 5061, A)
    assert has(after, "udp", 7000, 7000, A)
    assert has(after, "udp", 5062, 5060, B)
    assert has(after, "udp", 5064, 5060, LAN_HOST)
    assert "deleted 3" in result.describe()

    # failback: the same rule now removes what went out through B
    back = await flush_after_switch([B], netns=lab.router)
    assert back.deleted == 1
    assert not has(ct_list(lab), "udp", 5062, 5060, B)
    assert has(ct_list(lab), "udp", 7000, 7000, A)


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


@lab_test
async def test_flush_real_snat_flows_after_switch(lab: Lab) -> None:
    lan = add_lan(lab, 4)
    async with Netlink(lab.router) as nl:
        rec = RouteReconciler(nl)
        assert (await rec.reconcile(desired(lab, ("link-0",)))).ok
        send_udp_from_lan(lab, lan, 5060, 5060)  # SIP via A
        send_udp_from_lan(lab, lan, 7000, 7000)  # unrelated via A
        assert (await rec.reconcile(desired(lab, ("link-1",)))).ok
        send_udp_from_lan(lab, lan, 5070, 5060)  # SIP via B, after the switch
        send_udp_from_lan(lab, lan, 5060, 5060)  # the old flow: still NAT'ed to A
        before = ct_list(lab)
        assert has(before, "udp", 5060, 5060, A), before
        assert has(before, "udp", 5070, 5060, B), before

        result = await flush_after_switch([A], netns=lab.router)
    after = ct_list(lab)
    assert result.deleted == 1, (result, before)
    assert not has(after, "udp", 5060, 5060, A)
    assert has(after, "udp", 7000, 7000, A)
    assert has(after, "udp", 5070, 5060, B)
    # the next packet of the SIP flow is NAT'ed afresh, to B's address
    send_udp_from_lan(lab, lan, 5060, 5060)
    assert has(ct_list(lab), "udp", 5060, 5060, B)


async def test_nothing_to_flush_is_a_no_op() -> None:
    result = await flush_after_switch([], netns="never-used")
    assert result.deleted == 0 and result.scanned == 0 and not result.timed_out


# -- IPv6 (NAT66) ----------------------------------------------------------------------------

A6, B6 = "2001:db8::2", "2001:db8:1::2"  # sources of v6-0 and v6-1 (build_lab6)
PEER6 = "2001:db8:f::10"
LAN6 = "2001:db8:100::10"


def test_flow_matching_ipv6_in_canonical_form() -> None:
    udp = socket.IPPROTO_UDP
    f6 = ConntrackFlow(udp, LAN6, PEER6, 40000, 5060, PEER6, A6, family=6)
    assert flow_matches(f6, [A6], DEFAULT_FLUSH_RULES)
    assert not flow_matches(f6, [B6], DEFAULT_FLUSH_RULES)


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
    inject6(lab6, 7000, 7000, A6)  # unrelated port: stays
    inject6(lab6, 5062, 5060, B6)  # through the other link: stays
    inject(lab6, "udp", 5060, 5060, A)  # IPv4 SIP through A: only the dual sweep takes it
    assert has(ct_list6(lab6), "udp", 5060, 5060, A6)

    # "2001:db8:0::2" is A6 written long-hand: sources are compared as addresses
    result = await flush_after_switch(["2001:db8:0::2"], netns=lab6.router)
    assert result.deleted == 1 and result.errors == 0 and not result.timed_out, result
    assert result.old_sources == (A6,)
    after = ct_list6(lab6)
    assert not has(after, "udp", 5060, 5060, A6)
    assert has(after, "udp", 7000, 7000, A6) and has(after, "udp", 5062, 5060, B6)
    assert has(ct_list(lab6), "udp", 5060, 5060, A)  # an IPv6 sweep never reads IPv4

    inject6(lab6, 5060, 5060, A6)
    both = await flush_after_switch([A, A6], netns=lab6.router)
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
        send_udp6_from_lan(lan, 7000, 7000)  # unrelated via A6
        assert (await rec.reconcile(desired6(lab6, ("v6-1",)))).ok
        send_udp6_from_lan(lan, 5070, 5060)  # SIP via B6, after the switch
        send_udp6_from_lan(lan, 5060, 5060)  # the old flow: still NAT'ed to A6
        before = ct_list6(lab6)
        assert has(before, "udp", 5060, 5060, A6), before
        assert has(before, "udp", 5070, 5060, B6), before

        result = await flush_after_switch([A6], netns=lab6.router)
    after = ct_list6(lab6)
    assert result.deleted == 1, (result, before)
    assert not has(after, "udp", 5060, 5060, A6)
    assert has(after, "udp", 7000, 7000, A6)
    assert has(after, "udp", 5070, 5060, B6)
    # the next packet of the SIP flow is NAT'ed afresh, to B6
    send_udp6_from_lan(lan, 5060, 5060)
    assert has(ct_list6(lab6), "udp", 5060, 5060, B6)
