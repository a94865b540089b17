"""Which conntrack entries a switch leaves stale (controller.core.staleflows), and the flush
rules that narrow it (controller.core.flushrules): pure, no kernel."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.actuators.netlink import ConntrackFlow
from controller.core.flushrules import FlushRule, parse_flush_rule
from controller.core.staleflows import (
    GroupUse,
    LinkAddressing,
    StaleFlows,
    link_addresses,
    stale_flows,
)

ICMP, TCP, UDP, GRE, ESP, ICMP6, SCTP = 1, 6, 17, 47, 50, 58, 132
A, A2, B, C = "198.51.100.2", "198.51.100.9", "198.51.100.6", "198.51.100.10"
LAN, PEER, CARRIER = "192.0.2.130", "203.0.113.10", "192.0.2.21"
A6, B6, LAN6, PEER6 = "2001:db8:a::2", "2001:db8:b::2", "2001:db8:100::10", "2001:db8:f::10"


def flow(proto: int, sport: int | None, dport: int | None, reply_dst: str, *,
         src: str = LAN, dst: str = PEER) -> ConntrackFlow:
    """An entry from ``src`` to ``dst`` whose replies go to ``reply_dst`` (the NAT address)."""
    return ConntrackFlow(proto, src, dst, sport, dport, dst, reply_dst,
                         family=ipaddress.ip_address(dst).version)


def test_by_default_every_protocol_nat_ed_to_the_old_link_goes() -> None:
    stale = StaleFlows.nat_to([A])
    assert stale.matches(flow(UDP, 51820, 51820, A))  # a WireGuard tunnel
    assert stale.matches(flow(UDP, 4500, 4500, A))  # IPsec NAT-T
    assert stale.matches(flow(UDP, 16000, 16002, A))  # RTP
    assert stale.matches(flow(TCP, 40000, 443, A))
    assert stale.matches(flow(ICMP, None, None, A))  # a ping with a fixed id: no ports
    assert stale.matches(flow(GRE, None, None, A))
    assert stale.matches(flow(ESP, None, None, A))
    assert stale.matches(flow(SCTP, 5060, 5060, A))


def test_flows_through_other_links_and_flows_not_nat_ed_stay() -> None:
    stale = StaleFlows.nat_to([A])
    assert not stale.matches(flow(UDP, 51820, 51820, B))  # NAT'ed to another link
    assert not stale.matches(flow(UDP, 51820, 51820, LAN))  # routed, not NAT'ed
    # the router's own flow from the old link's address: reply_dst == orig_src, not NAT'ed
    assert not stale.matches(flow(UDP, 5060, 5060, A, src=A))
    assert not stale.matches(flow(ICMP, None, None, A, src=A))
    # an inbound port forward (DNAT to the LAN): its replies go to the far end
    assert not stale.matches(ConntrackFlow(UDP, PEER, A, 5060, 5060, LAN, PEER))


def test_narrowing_keeps_only_what_the_rules_cover() -> None:
    voice = tuple(parse_flush_rule(r) for r in ("udp/5060", "tcp/5060-5061", "udp/10000-20000"))
    stale = StaleFlows.nat_to([A], voice)
    assert stale.matches(flow(UDP, 40000, 5060, A))  # by destination port
    assert stale.matches(flow(UDP, 5060, 40000, A))  # by source port
    assert stale.matches(flow(UDP, 16000, 30000, A))
    assert stale.matches(flow(TCP, 40000, 5061, A))
    assert not stale.matches(flow(UDP, 51820, 51820, A))
    assert not stale.matches(flow(TCP, 40000, 16000, A))  # the RTP range is UDP only
    assert not stale.matches(flow(ICMP, None, None, A))  # no ports: no port rule covers it
    assert not stale.matches(flow(UDP, 40000, 5060, B))  # narrowing never widens
    ipsec = StaleFlows.nat_to([A], [parse_flush_rule("esp"), parse_flush_rule("udp/4500")])
    assert ipsec.matches(flow(ESP, None, None, A)) and ipsec.matches(flow(UDP, 4500, 4500, A))
    assert not ipsec.matches(flow(GRE, None, None, A))
    every_udp = StaleFlows.nat_to([A], [FlushRule("udp")])
    assert every_udp.matches(flow(UDP, 1, 2, A)) and not every_udp.matches(flow(TCP, 1, 2, A))


def test_an_empty_rule_list_turns_the_flush_off() -> None:
    off = StaleFlows.nat_to([A], [])
    assert off.empty and not off.matches(flow(UDP, 5060, 5060, A))
    assert StaleFlows.nat_to([]).empty
    assert not StaleFlows.nat_to([A]).empty


def test_ipv6_addresses_compare_in_canonical_form() -> None:
    stale = StaleFlows.nat_to(["2001:DB8:A:0:0::2"])  # A6 written long-hand
    assert stale.addresses == (A6,) and stale.families == (6,)
    assert stale.matches(flow(UDP, 51820, 51820, A6, src=LAN6, dst=PEER6))
    assert stale.matches(flow(ICMP6, None, None, A6, src=LAN6, dst=PEER6))
    assert not stale.matches(flow(UDP, 51820, 51820, B6, src=LAN6, dst=PEER6))
    both = StaleFlows.nat_to([A6, A])
    assert both.addresses == (A, A6) and both.families == (4, 6)


@given(
    proto=st.sampled_from([ICMP, TCP, UDP, GRE, ESP, SCTP]),
    sport=st.none() | st.integers(1, 65535),
    dport=st.none() | st.integers(1, 65535),
    reply_dst=st.sampled_from([A, A2, B, C, LAN]),
    src=st.sampled_from([LAN, A, "192.0.2.131"]),
)
def test_only_entries_nat_ed_to_a_left_address_ever_match(
    proto: int, sport: int | None, dport: int | None, reply_dst: str, src: str
) -> None:
    stale = StaleFlows.nat_to([A, A2])
    got = stale.matches(flow(proto, sport, dport, reply_dst, src=src))
    assert got == (reply_dst in (A, A2) and src != reply_dst)


# -- a link's addresses --------------------------------------------------------------------------


def test_a_link_s_addresses_are_its_source_and_its_interface_s_others() -> None:
    links = [
        LinkAddressing("fibre-a", "wan-a", 4, A),
        LinkAddressing("fibre-b", "wan-b", 4, None),  # source found at start: none yet
        LinkAddressing("fibre-a6", "wan-a", 6, A6),  # dual stack: one interface, two links
    ]
    found = {
        "wan-a": [f"{A}/30", f"{A2}/32", "2001:db8:a::2/64", "2001:db8:a::99/64",
                  "fe80::1/64"],
        "wan-b": [f"{B}/30"],
    }  # fmt: skip
    got = link_addresses(links, found)
    assert got["fibre-a"] == (A, A2)  # a secondary address an SNAT rule may name
    assert got["fibre-b"] == (B,)  # MASQUERADE's: the interface's address
    assert got["fibre-a6"] == (A6, "2001:db8:a::99")  # never link-local
    assert link_addresses(links, {})["fibre-a"] == (A,)  # addresses unreadable: the source


def test_an_interface_two_links_share_lends_neither_its_other_addresses() -> None:
    """Two links of one family on one interface (two modems on one segment): which of the
    interface's other addresses belongs to which is unknown, so each keeps its source, and
    one link's source is never the other's."""
    links = [LinkAddressing("isp-1", "wan", 4, A), LinkAddressing("isp-2", "wan", 4, B),
             LinkAddressing("lte", "lte0", 4, C)]
    found = {"wan": [f"{A}/30", f"{B}/30", f"{A2}/32"], "lte0": [f"{C}/30", f"{A}/32"]}
    got = link_addresses(links, found)
    assert got == {"isp-1": (A,), "isp-2": (B,), "lte": (C,)}


def test_configured_nat_addresses_count_as_the_link_s_wherever_they_live() -> None:
    """A routed public block the site SNATs to is on no interface: nat_addresses names it
    (written long-hand or not), also when the interface cannot be read."""
    nat = ("203.0.113.200", "2001:db8:0:0::7")
    links = [LinkAddressing("fibre-a", "wan-a", 4, A, nat[:1]),
             LinkAddressing("fibre-a6", "wan-a", 6, A6, nat[1:])]
    assert link_addresses(links, {})["fibre-a"] == (A, "203.0.113.200")
    assert link_addresses(links, {})["fibre-a6"] == ("2001:db8::7", A6)


# -- what a switch leaves stale ------------------------------------------------------------------


ADDRS = {"fibre-a": (A, A2), "fibre-b": (B,), "lte": (C,)}


def test_a_failover_flushes_the_left_link_only() -> None:
    uses = {"internet": GroupUse("default", ("fibre-b",))}
    stale = stale_flows("internet", ("fibre-a",), uses, ADDRS)
    assert stale.addresses == (A, A2) and not stale.kept
    assert stale.matches(flow(UDP, 51820, 51820, A2))
    assert not stale.matches(flow(UDP, 51820, 51820, B))
    assert stale.describe() == f"NAT'ed to {A}, {A2} (fibre-a)"
    # failback: the same rule, the other way
    back = stale_flows("internet", ("fibre-b",), {"internet": GroupUse("default", ("fibre-a",))},
                       ADDRS)
    assert back.addresses == (B,)
    # a multipath group that drops one of its links: only that one
    shrink = stale_flows("internet", ("fibre-a", "fibre-b"), uses, ADDRS)
    assert shrink.addresses == (A, A2)
    # a link with no known address: nothing to sweep
    assert stale_flows("internet", ("fibre-a",), uses, {}).empty


def test_a_left_link_another_group_still_uses_keeps_that_group_s_flows() -> None:
    """internet (default) leaves fibre-a; carrier (192.0.2.20/30) still routes through it:
    flows to the carrier stay (its route still takes them through fibre-a, where a fresh
    NAT would put them again), all the others go."""
    uses = {
        "internet": GroupUse("default", ("fibre-b",)),
        "carrier": GroupUse("192.0.2.20/30", ("fibre-a",)),
    }
    stale = stale_flows("internet", ("fibre-a",), uses, ADDRS)
    assert stale.matches(flow(UDP, 51820, 51820, A))
    assert not stale.matches(flow(UDP, 5060, 5060, A, dst=CARRIER))
    assert stale.matches(flow(UDP, 5060, 5060, A, dst="192.0.2.25"))  # just outside it
    assert stale.describe() == (f"NAT'ed to {A}, {A2} (fibre-a, still used by carrier: only "
                                "to any destination except 192.0.2.20/30)")


def test_a_specific_group_leaving_a_link_a_default_group_keeps() -> None:
    """carrier (a /30) leaves fibre-a while internet's default stays on it: only flows to
    the carrier's prefix were carrier's (its longer prefix won the lookup)."""
    uses = {
        "internet": GroupUse("default", ("fibre-a",)),
        "carrier": GroupUse("192.0.2.20/30", ("lte",)),
    }
    stale = stale_flows("carrier", ("fibre-a",), uses, ADDRS)
    assert stale.matches(flow(UDP, 5060, 5060, A, dst=CARRIER))
    assert not stale.matches(flow(UDP, 51820, 51820, A))  # internet's, still on fibre-a
    assert not stale.matches(flow(UDP, 5060, 5060, C, dst=CARRIER))


def test_a_group_in_another_table_keeps_what_its_destination_holds() -> None:
    """A second default route in table 300 (a voice VLAN's, picked by a policy rule):
    conntrack does not say which table routed a flow, so while that group still uses the
    link none of its flows go, and the journal says why; a more specific group in another
    table keeps its prefix only."""
    uses = {
        "internet": GroupUse("default", ("fibre-b",)),
        "voice": GroupUse("default", ("fibre-a",), table=300),
    }
    stale = stale_flows("internet", ("fibre-a",), uses, ADDRS)
    assert stale.empty and stale.kept == ("fibre-a (still used by voice for default)",)
    assert not stale.matches(flow(UDP, 51820, 51820, A))
    carrier = {
        "carrier": GroupUse("192.0.2.20/30", ("lte",)),
        "voice": GroupUse("default", ("fibre-a",), table=300),
    }
    assert stale_flows("carrier", ("fibre-a",), carrier, ADDRS).empty
    sbcs = {
        "internet": GroupUse("default", ("fibre-b",)),
        "sbcs": GroupUse("192.0.2.20/30", ("fibre-a",), table=300),
    }
    stale = stale_flows("internet", ("fibre-a",), sbcs, ADDRS)
    assert stale.matches(flow(UDP, 51820, 51820, A))
    assert not stale.matches(flow(UDP, 5060, 5060, A, dst=CARRIER))


def test_in_one_table_the_lower_metric_routes_a_shared_destination() -> None:
    """A backup default at metric 100 in main that still points at fibre-a routes nothing
    while internet's metric-0 default exists: every flow of fibre-a was internet's."""
    uses = {
        "internet": GroupUse("default", ("fibre-b",)),
        "backup": GroupUse("default", ("fibre-a",), metric=100),
    }
    stale = stale_flows("internet", ("fibre-a",), uses, ADDRS)
    assert stale.matches(flow(UDP, 51820, 51820, A)) and not stale.kept
    # the other way round: the backup leaving fibre-a takes nothing from internet's flows
    uses = {
        "internet": GroupUse("default", ("fibre-a",)),
        "backup": GroupUse("default", ("lte",), metric=100),
    }
    assert stale_flows("backup", ("fibre-a",), uses, ADDRS).empty


def test_groups_of_another_destination_or_link_do_not_narrow() -> None:
    uses = {
        "internet": GroupUse("default", ("fibre-b",)),
        "backup": GroupUse("default", ("lte",)),  # another link
        "carrier": GroupUse("192.0.2.20/30", ("fibre-b",)),
    }
    stale = stale_flows("internet", ("fibre-a",), uses, ADDRS)
    assert stale.matches(flow(UDP, 5060, 5060, A, dst=CARRIER))
    assert not stale.matches(flow(UDP, 5060, 5060, C))


def test_narrowing_rules_carry_through_and_ipv6_groups_work_alike() -> None:
    uses = {"internet6": GroupUse("default", ("fibre-b6",)),
            "carrier6": GroupUse("2001:db8:f::/64", ("fibre-a6",))}
    addrs = {"fibre-a6": (A6,), "fibre-b6": (B6,)}
    rules = (parse_flush_rule("udp"),)
    stale = stale_flows("internet6", ("fibre-a6",), uses, addrs, rules)
    assert stale.rules == rules
    assert stale.matches(flow(UDP, 51820, 51820, A6, src=LAN6, dst="2001:db8:e::1"))
    assert not stale.matches(flow(UDP, 51820, 51820, A6, src=LAN6, dst=PEER6))  # carrier6's
    assert not stale.matches(flow(TCP, 1, 2, A6, src=LAN6, dst="2001:db8:e::1"))
    assert "only udp" in stale.describe()


# -- flush rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "rule"), [
    ("udp/5060", FlushRule("udp", 5060, 5060)),
    (" TCP/5060-5061 ", FlushRule("tcp", 5060, 5061)),
    ("udp", FlushRule("udp")),
    ("esp", FlushRule("esp")),
    ("icmpv6", FlushRule("icmpv6")),
    ("sctp/5060", FlushRule("sctp", 5060, 5060)),
])  # fmt: skip
def test_flush_rules_parse_and_print_back(text: str, rule: FlushRule) -> None:
    assert parse_flush_rule(text) == rule
    assert parse_flush_rule(str(rule)) == rule


@pytest.mark.parametrize(("text", "why"), [
    ("icmp/8", "icmp has no ports: write icmp alone"),
    ("gre/1", "gre has no ports"),
    ("udp/0", "ports must be in 1..65535"),
    ("udp/20-10", "port range 20-10 runs backwards"),
    ("ipx", "unknown protocol 'ipx'"),
    ("udp:5060", "must be a protocol"),
    ("", "must be a protocol"),
])  # fmt: skip
def test_bad_flush_rules_say_why(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_flush_rule(text)
