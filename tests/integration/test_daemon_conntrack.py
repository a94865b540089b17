"""End to end: after a failover every flow NAT'ed to the dead link recovers, and nothing that
still goes through a working link loses its conntrack entry.

The real daemon runs in the lab's site namespace; fibre-a is blackholed and lifeline moves
the default route to fibre-b. Meanwhile the LAN keeps the flows that died for good before
this change (issue 9): a WireGuard-like tunnel (udp 51820 <-> 51820, both ends sending every
20 ms, the far end answering where it last heard from), an RTP-like flow (udp 16000 <->
16002), a TCP client that reconnects when its connection breaks, and a flow of a host whose
connections the site pins with CONNMARK + fwmark rules to the link they started on (the pin
keeps it on fibre-a even after the route moved). Flows that must keep their entries: a host
pinned to lte by a source rule (lte is no part of the switch), and a flow to the carrier's
prefix, which a second route group (``carrier``, its only link fibre-a) still routes through
fibre-a (flushing it would only NAT it to fibre-a again). Once per NAT mode (SNAT, where the
flush is what saves the flows; MASQUERADE, where the kernel re-maps flows whose output
interface changed by itself, but not the pinned one); and once over IPv6 with NAT66 (SNAT in
ip6tables) on a dual-stack lab, where the IPv4 group, on the same interface, does not move
and its flow keeps its entry.

Each scenario runs once per module (a lab, a daemon, one failover, ~10 s) and its tests read
what it recorded; lab and daemon go at the end, also when a step fails. Bounds are generous:
these tests prove behaviour (a flow comes back within seconds instead of never), not speed.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.config import parse_config
from controller.runtime.journal import Event, read_events
from tests.integration.conftest import lab_skip_reason
from tests.integration.test_daemon_ipv6 import config as dual_stack_config
from tests.lab.config import lifeline_config_dict
from tests.lab.flows import EndResult, Flows, FlowsResult, TcpFlow, UdpFlow
from tests.lab.lifelined import LifelineProcess
from tests.lab.topology import CARRIER_SBCS, LAN_HOST_ADDR, SINK_ADDR, Lab
from tests.lab.wait import until

pytestmark = pytest.mark.lab

LAN = str(LAN_HOST_ADDR)  # 192.0.2.130
STICKY = "192.0.2.131"  # its connections are pinned (CONNMARK) to the link they started on
LTE_HOST = "192.0.2.132"  # pinned to lte by a source rule
FAR = str(SINK_ADDR)  # 192.0.2.10 in inet
CARRIER_NET = "192.0.2.20/30"  # the carrier group's destination
CARRIER_SBC = str(CARRIER_SBCS["carrier-a-sbc1"])  # 192.0.2.21
MARKS = {"fibre-a": 1, "fibre-b": 2, "lte": 3}

UDP_FLOWS = (
    UdpFlow("vpn", f"{LAN}:51820", f"{FAR}:51820"),
    UdpFlow("rtp", f"{LAN}:16000", f"{FAR}:16002"),
    UdpFlow("sticky", f"{STICKY}:40000", f"{FAR}:40000"),
    UdpFlow("lte", f"{LTE_HOST}:5060", f"{FAR}:5060"),
    UdpFlow("carrier", f"{LAN}:5062", f"{CARRIER_SBC}:5060"),
)
TCP_FLOWS = (TcpFlow("tcp", LAN, f"{FAR}:8443"),)
RECOVERED = ("vpn", "rtp", "sticky")  # the UDP flows that must come back through fibre-b
RECOVERY_BOUND = 5.0  # seconds from the switch to the first packet back: generous


# -- conntrack, as `conntrack -L -o id` prints it -------------------------------------------------


@dataclass(frozen=True)
class Entry:
    proto: str
    src: str
    dst: str
    sport: int | None
    dport: int | None
    reply_dst: str
    mark: int
    id: str
    state: str  # TCP's state, "" for others


def parse_entries(text: str) -> list[Entry]:
    """Entries as ``conntrack -L`` (and ``-E``, after its ``[DESTROY]``) prints them."""
    found = []
    for line in text.splitlines():
        words = [w for w in line.split() if not w.startswith("[")]
        if len(words) < 3:
            continue
        tuples: list[dict[str, str]] = [{}, {}]
        extra: dict[str, str] = {}
        for word in words:
            key, eq, value = word.partition("=")
            if not eq:
                continue
            if key in ("src", "dst", "sport", "dport"):
                tuples[0 if key not in tuples[0] else 1][key] = value
            else:
                extra[key] = value
        orig, reply = tuples
        if "src" not in orig or "dst" not in reply:
            continue
        state = next((w for w in words[1:] if w.isalpha() and w.isupper()), "")
        found.append(Entry(
            words[0], orig["src"], orig["dst"],
            int(orig["sport"]) if "sport" in orig else None,
            int(orig["dport"]) if "dport" in orig else None,
            reply["dst"], int(extra.get("mark", "0")), extra.get("id", ""), state,
        ))
    return found


def entries(lab: Lab, family: str = "ipv4") -> list[Entry]:
    return parse_entries(
        lab.run(lab.site, ["conntrack", "-L", "-f", family, "-o", "id"]).stdout)


@contextlib.contextmanager
def destroyed(lab: Lab, tmp: Path) -> Iterator[list[Entry]]:
    """The entries the kernel destroys while in the block (``conntrack -E``, a tracked lab
    process), filled in at its end: proof that an entry was kept, which an id cannot give
    (a deleted entry re-made with the same tuple may get the same id). Enter it before the
    flows start: with ``nf_conntrack_events=2`` (the default) only entries made while a
    listener exists report events."""
    out = tmp / "destroyed.txt"
    found: list[Entry] = []
    with out.open("w") as sink:
        proc = lab.popen(lab.site, ["conntrack", "-E", "-e", "DESTROY"], stdout=sink,
                         stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)  # subscribed
        yield found
    finally:
        lab.stop(proc)
        found += parse_entries(out.read_text())


def entry_of(found: list[Entry], proto: str, src: str, sport: int | None, dst: str,
             dport: int) -> list[Entry]:
    return [e for e in found if e.proto == proto and e.src == src and e.dst == dst
            and (sport is None or e.sport == sport) and e.dport == dport]


def flow_entry(found: list[Entry], flow: UdpFlow) -> list[Entry]:
    src, sport = flow.lan.rsplit(":", 1)
    dst, dport = flow.far.rsplit(":", 1)
    return entry_of(found, "udp", src.strip("[]"), int(sport), dst.strip("[]"), int(dport))


# -- the scenario -------------------------------------------------------------------------------


@dataclass
class Phase:
    """One switch of the internet group, from ``left`` to ``to``: when the fault (or its
    end) came, when the route moved, the window the flows are judged in, conntrack before
    and after, and the flush lifeline journaled."""

    left: str
    to: str
    cause_at: float
    switched_at: float
    window_end: float
    before: list[Entry]
    after: list[Entry]
    flush: Event | None


@dataclass
class Failover:
    """A failover (fibre-a blackholed) and the failback after it, for the tests to read."""

    lab: Lab
    nat: str
    result: FlowsResult
    phases: dict[str, Phase]
    destroyed: list[Entry]  # every entry destroyed from just before the fault to the end
    log: str

    def addr(self, link: str) -> str:
        return str(self.lab.link(link).site_addr)

    def story(self) -> str:
        """What to read first when an assertion fails."""
        lines = [f"nat={self.nat}"]
        for name, p in self.phases.items():
            lines += [f"{name}: cause {p.cause_at:.3f} switched {p.switched_at:.3f} "
                      f"until {p.window_end:.3f}; flush: {p.flush.message if p.flush else None}",
                      f"  after: {p.after}"]
        return "\n".join(lines) + f"\nlifeline log tail:\n{self.log[-3000:]}"


def _config(lab: Lab, state: Path) -> dict[str, Any]:
    cfg = lifeline_config_dict(lab, state, reliability=2, hold_down="2s")
    cfg["route_groups"].append({"name": "carrier", "destination": CARRIER_NET,
                                "links": ["fibre-a"]})
    return cfg


def _pin(lab: Lab, cfg: dict[str, Any]) -> None:
    """The site's own pins: STICKY's connections stay on the link they started on (marked by
    their output interface when new, the mark restored on every LAN packet, one fwmark rule
    per link's table); everything of LTE_HOST goes by lte. lifeline owns the tables' routes,
    the site owns these rules (lifeline never touches what it did not create)."""
    tables = {lk.name: lk.table_id for lk in parse_config(yaml.safe_dump(cfg)).links}
    lab.run(lab.lan, ["ip", "address", "add", f"{STICKY}/26", "dev", "eth0"])
    lab.run(lab.lan, ["ip", "address", "add", f"{LTE_HOST}/26", "dev", "eth0"])
    lab.iptables(lab.site, "-t", "mangle", "-A", "PREROUTING", "-i", "lan0", "-s", STICKY,
                 "-j", "CONNMARK", "--restore-mark")
    for name, mark in MARKS.items():
        lab.iptables(lab.site, "-t", "mangle", "-A", "POSTROUTING", "-s", STICKY,
                     "-o", lab.link(name).site_ifname, "-m", "connmark", "--mark", "0",
                     "-j", "CONNMARK", "--set-mark", str(mark))
        lab.run(lab.site, ["ip", "rule", "add", "fwmark", str(mark), "lookup",
                           str(tables[name]), "priority", str(900 + mark)])
    lab.run(lab.site, ["ip", "rule", "add", "from", LTE_HOST, "lookup", str(tables["lte"]),
                       "priority", "900"])


def _recovered(lab: Lab, link: str) -> bool:
    """Every flow that must come back is NAT'ed to ``link`` and TCP is connected anew."""
    addr = str(lab.link(link).site_addr)
    found = entries(lab)
    udp_back = all(any(e.reply_dst == addr for e in flow_entry(found, f))
                   for f in UDP_FLOWS if f.name in RECOVERED)
    tcp_back = any(e.reply_dst == addr and e.state == "ESTABLISHED"
                   for e in entry_of(found, "tcp", LAN, None, FAR, 8443))
    return udp_back and tcp_back


def _switch(lab: Lab, d: LifelineProcess, cause: Callable[[], None], left: str, to: str,
            journal: Path) -> Phase:
    """Cause a switch, wait for it and for the flows to come back through ``to`` (bounded;
    the tests then say which one did not), and a second of traffic after."""
    before = entries(lab)
    flushed = len(_flushes(journal))
    cause_at = time.monotonic()
    cause()
    switched_at = d.wait_active_at([to], 20.0)
    with contextlib.suppress(TimeoutError):
        until(lambda: _recovered(lab, to), 12.0, 0.2, f"the flows to come back through {to}")
    time.sleep(1.0)
    after = entries(lab)
    new = _flushes(journal)[flushed:]
    return Phase(left, to, cause_at, switched_at, time.monotonic(), before, after,
                 new[-1] if new else None)


def _flushes(journal: Path) -> list[Event]:
    return [e for e in read_events(journal, 500, "action") if e.subject == "internet"]


@pytest.fixture(scope="module", params=["snat", "masquerade"])
def failover(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             _stale_labs_removed: None) -> Iterator[Failover]:
    reason = lab_skip_reason({"conntrack": "conntrack"})
    if reason is not None:
        pytest.skip(reason)
    nat = str(request.param)
    state = tmp_path_factory.mktemp(f"ct-{nat}") / "state"
    journal = state / "journal.sqlite3"
    lab = Lab(nat=nat)  # type: ignore[arg-type]
    daemon: LifelineProcess | None = None
    try:
        lab.build()
        cfg = _config(lab, state)
        _pin(lab, cfg)
        daemon = LifelineProcess.with_config(lab, state, cfg)
        daemon.start()
        d = daemon
        d.wait_for(lambda st: d.active(st) == ["fibre-a"] and d.active(st, "carrier")
                   == ["fibre-a"] and all(d.link_state(st, n) == "up"
                                          for n in ("fibre-b", "lte")),
                   30.0, "both groups on fibre-a, fibre-b and lte up")
        with destroyed(lab, state.parent) as gone, \
                Flows(lab, udp=UDP_FLOWS, tcp=TCP_FLOWS, interval=0.02, max_seconds=90) as flows:
            time.sleep(1.2)
            over = _switch(lab, d, lambda: lab.faults.blackhole("fibre-a"), "fibre-a",
                           "fibre-b", journal)
            back = _switch(lab, d, lambda: lab.faults.clear("fibre-a"), "fibre-b", "fibre-a",
                           journal)
            result = flows.stop()
        over.window_end = back.cause_at
        yield Failover(lab, nat, result, {"failover": over, "failback": back}, gone, d.log())
    finally:
        if daemon is not None:
            daemon.stop()
        lab.destroy()


def _udp(name: str) -> UdpFlow:
    return next(u for u in UDP_FLOWS if u.name == name)


def _back_in_time(f: Failover, p: Phase, end: EndResult, what: str) -> float:
    """The first packet after the switch, asserted within the bound; when it came."""
    back = end.first_after(p.switched_at)
    assert back is not None and back < p.window_end, f"{what} never came back\n{f.story()}"
    assert back - p.switched_at < RECOVERY_BOUND, f"{what} back after {back - p.switched_at:.1f} s"
    return back


def _steady(end: EndResult, since: float, until_t: float, interval: float = 0.02) -> None:
    """Packets keep coming after recovery: at least half of what was sent."""
    got = len([t for t, _ in end.arrivals if since < t <= until_t])
    expected = (until_t - since) / interval
    assert got >= 0.5 * expected, f"{got} packets in {until_t - since:.1f} s after recovery"


PHASES = ["failover", "failback"]


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("name", ["vpn", "rtp"])
def test_a_fixed_port_udp_flow_recovers_through_the_new_link(
        failover: Failover, name: str, phase: str) -> None:
    """A tunnel (udp/51820) or RTP flow whose own packets kept its entry alive: both ends
    hear each other again within seconds, and the far end now sees the new link's address
    (on failback the flow through fibre-b still worked in the lab, but its fibre-b source
    would leave by fibre-a, where an ISP filtering sources drops it)."""
    f, p = failover, failover.phases[phase]
    lan, far = f.result.lan[name], f.result.far[name]
    assert len([t for t, _ in lan.arrivals if p.cause_at - 1.0 < t < p.cause_at]) >= 10, \
        f"{name} was not flowing before the {phase}"
    back = _back_in_time(f, p, lan, f"{name}'s replies")
    _steady(lan, back + 0.2, p.window_end - 0.3)
    port = int(_udp(name).lan.rsplit(":", 1)[1])
    assert far.senders_between(back + 0.2, p.window_end) == {f"{f.addr(p.to)}:{port}"}, \
        f.story()
    assert all(e.reply_dst == f.addr(p.to) for e in flow_entry(p.after, _udp(name)))


@pytest.mark.parametrize("phase", PHASES)
def test_a_tcp_flow_is_reset_and_its_client_reconnects_through_the_new_link(
        failover: Failover, phase: str) -> None:
    """The old connection does not hang for minutes: a mid-stream segment through the new
    link (no entry, so NAT'ed afresh) meets a server that knows no such connection and
    resets it; the client connects again and the new connection carries data."""
    f, p = failover, failover.phases[phase]
    lan, far = f.result.lan["tcp"], f.result.far["tcp"]
    events = lan.events
    up = [e for e in events if e[1] == "connected" and e[0] < p.cause_at]
    assert up, events
    ended = [e for e in events if p.cause_at < e[0] < p.window_end and e[1] != "connected"]
    assert ended and ended[0][1] == "reset", f"{events}\n{f.story()}"
    assert ended[0][2] == up[-1][2], "another connection than the one up before broke"
    assert ended[0][0] - p.switched_at < 10.0, ended
    again = [e for e in events if ended[0][0] <= e[0] < p.window_end and e[1] == "connected"]
    assert again, events
    assert len([t for t, port in lan.arrivals if port == again[0][2]]) >= 10, "new one silent"
    accepted = [who for t, kind, who in far.events
                if kind == "accepted" and p.cause_at < t < p.window_end]
    assert any(who.startswith(f"{f.addr(p.to)}:") for who in accepted), far.events


@pytest.mark.parametrize("phase", PHASES)
def test_a_connmark_pinned_flow_is_flushed_and_pinned_anew_to_the_new_link(
        failover: Failover, phase: str) -> None:
    """Pinned by the site's CONNMARK rules to the link it started on, the flow would stay on
    the old link even with MASQUERADE (no output interface changes); its entry, NAT'ed to
    that link, goes, and the site's rules pin the next packet's new connection to the new
    link."""
    f, p = failover, failover.phases[phase]
    old = flow_entry(p.before, _udp("sticky"))
    assert old and old[0].reply_dst == f.addr(p.left) and old[0].mark == MARKS[p.left], old
    end = f.result.lan["sticky"]
    back = _back_in_time(f, p, end, "the pinned flow's replies")
    _steady(end, back + 0.2, p.window_end - 0.3)
    new = flow_entry(p.after, _udp("sticky"))
    # a NAT mapping never changes in place: another address is another entry
    assert new and new[0].reply_dst == f.addr(p.to), f.story()
    assert new[0].mark == MARKS[p.to]


def test_a_flow_pinned_to_a_link_outside_the_switch_keeps_its_entry(failover: Failover) -> None:
    """lte carries LTE_HOST's flows all along: the same entry through failover and
    failback, and never a gap."""
    f = failover
    start = flow_entry(f.phases["failover"].before, _udp("lte"))
    assert len(start) == 1 and start[0].reply_dst == f.addr("lte"), start
    for p in f.phases.values():
        now = flow_entry(p.after, _udp("lte"))
        assert len(now) == 1 and now[0].id == start[0].id, (start, now)
    assert not flow_entry(f.destroyed, _udp("lte")), f.destroyed
    assert flow_entry(f.destroyed, _udp("sticky")), "the watch saw nothing destroyed"
    lan = f.result.lan["lte"]
    gaps = [b - a for (a, _), (b, _) in zip(lan.arrivals, lan.arrivals[1:], strict=False)
            if a > f.phases["failover"].cause_at - 1]
    assert gaps and max(gaps) < 1.0, max(gaps)


def test_a_flow_another_group_still_routes_through_the_left_link_keeps_its_entry(
        failover: Failover) -> None:
    """The carrier group still routes its prefix through fibre-a (its only link) when the
    internet group leaves it: that flow is not internet's to flush, and a fresh NAT would
    map it to fibre-a again."""
    f = failover
    p = f.phases["failover"]
    old, new = flow_entry(p.before, _udp("carrier")), flow_entry(p.after, _udp("carrier"))
    assert len(old) == 1 and old[0].reply_dst == f.addr("fibre-a"), p.before
    assert len(new) == 1 and new[0].id == old[0].id, (old, new, f.story())
    assert not flow_entry(f.destroyed, _udp("carrier")), f.destroyed
    assert flow_entry(f.destroyed, _udp("vpn")), "the watch saw nothing destroyed"


@pytest.mark.parametrize("phase", PHASES)
def test_the_flush_is_journaled_with_what_it_kept(failover: Failover, phase: str) -> None:
    f, p = failover, failover.phases[phase]
    assert p.flush is not None, f.story()
    # SNAT: vpn, rtp, tcp and the pinned flow; MASQUERADE re-mapped all but the pinned one
    assert int(p.flush.data["deleted"]) >= (4 if f.nat == "snat" else 1), p.flush.message
    assert int(p.flush.data["errors"]) == 0, p.flush.message
    if phase == "failover":  # the carrier group still uses fibre-a
        assert (f"NAT'ed to {f.addr('fibre-a')} (fibre-a, still used by carrier: only to any "
                f"destination except {CARRIER_NET})") in p.flush.message, p.flush.message
    else:  # nobody else uses fibre-b: all of it
        assert f"NAT'ed to {f.addr('fibre-b')} (fibre-b) in" in p.flush.message, p.flush.message


# -- IPv6: NAT66 ---------------------------------------------------------------------------------


LAN6, SITE_LAN6, FAR6 = "2001:db8:100::10", "2001:db8:100::1", "2001:db8:f::1"


@dataclass
class Failover6:
    lab: Lab
    result: FlowsResult
    switched_at: float
    fault_at: float
    before4: list[Entry]
    after4: list[Entry]
    after6: list[Entry]
    destroyed: list[Entry]
    flushes: list[Event]
    log: str


def _nat66(lab: Lab) -> None:
    """An IPv6 LAN behind the site, SNAT'ed (ip6tables) to each uplink's address."""
    lab.run(lab.lan, ["ip", "address", "add", f"{LAN6}/64", "dev", "eth0", "nodad"])
    lab.run(lab.lan, ["ip", "route", "add", "::/0", "via", SITE_LAN6])
    lab.run(lab.site, ["ip", "address", "add", f"{SITE_LAN6}/64", "dev", "lan0", "nodad"])
    lab.sysctl(lab.site, "net.ipv6.conf.all.forwarding=1")
    for lk in lab.links.values():
        lab.run(lab.site, ["ip6tables", "-w", "5", "-t", "nat", "-A", "POSTROUTING", "-s",
                           "2001:db8:100::/64", "-o", lk.site_ifname, "-j", "SNAT",
                           "--to-source", str(lk.site_addr6)])


@pytest.fixture(scope="module")
def failover6(tmp_path_factory: pytest.TempPathFactory,
              _stale_labs_removed: None) -> Iterator[Failover6]:
    reason = lab_skip_reason({"conntrack": "conntrack", "ip6tables": "iptables"})
    if reason is not None:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("ct-v6") / "state"
    lab = Lab(ipv6=True)
    daemon: LifelineProcess | None = None
    udp = (UdpFlow("vpn6", f"[{LAN6}]:51820", f"[{FAR6}]:51820"),
           UdpFlow("vpn4", f"{LAN}:51820", f"{FAR}:51820"))
    tcp = (TcpFlow("tcp6", f"[{LAN6}]", f"[{FAR6}]:8443"),)
    b6 = str(lab.link("fibre-b").site_addr6)
    try:
        lab.build()
        _nat66(lab)
        daemon = LifelineProcess.with_config(lab, state, dual_stack_config(lab, state))
        daemon.start()
        d = daemon
        d.wait_for(lambda st: d.active(st, "internet6") == ["fibre-a6"]
                   and d.active(st, "internet") == ["fibre-a"]
                   and d.link_state(st, "fibre-b6") == "up", 30.0, "both groups on fibre A")

        def back() -> bool:
            found = entries(lab, "ipv6")
            return (any(e.reply_dst == b6 for e in flow_entry(found, udp[0]))
                    and any(e.reply_dst == b6 and e.state == "ESTABLISHED"
                            for e in entry_of(found, "tcp", LAN6, None, FAR6, 8443)))

        with destroyed(lab, state.parent) as gone, \
                Flows(lab, udp=udp, tcp=tcp, interval=0.02, max_seconds=60) as flows:
            time.sleep(1.2)
            before4 = entries(lab)
            fault_at = time.monotonic()
            # ISP A drops IPv6 only: fibre-a6 goes down, fibre-a (IPv4) stays up
            lab.run(lab.link("fibre-a").isp_ns, ["ip6tables", "-w", "5", "-A", "FORWARD",
                                                 "-j", "DROP"])
            switched_at = d.wait_active_at(["fibre-b6"], 20.0, group="internet6")
            with contextlib.suppress(TimeoutError):
                until(back, 12.0, 0.2, "the IPv6 flows to come back")
            time.sleep(1.0)
            after4, after6 = entries(lab), entries(lab, "ipv6")
            result = flows.stop()
        flushes = [e for e in read_events(state / "journal.sqlite3", 500, "action")
                   if e.subject in ("internet", "internet6")]
        yield Failover6(lab, result, switched_at, fault_at, before4, after4, after6, gone,
                        flushes, d.log())
    finally:
        if daemon is not None:
            daemon.stop()
        lab.destroy()


def test_nat66_flows_recover_and_the_ipv4_flow_on_the_same_interface_keeps_its_entry(
        failover6: Failover6) -> None:
    f = failover6
    story = f"flushes: {[e.message for e in f.flushes]}\n{f.after6}\n{f.log[-3000:]}"
    a6, b6 = str(f.lab.link("fibre-a").site_addr6), str(f.lab.link("fibre-b").site_addr6)
    vpn6 = f.result.lan["vpn6"]
    assert len([t for t, _ in vpn6.arrivals if t < f.fault_at]) >= 20, "dead before the fault"
    back = vpn6.first_after(f.switched_at)
    assert back is not None and back - f.switched_at < RECOVERY_BOUND, story
    assert f.result.far["vpn6"].senders_between(back + 0.2) == {f"[{b6}]:51820"}, story
    tcp6 = f.result.lan["tcp6"].events
    ended = [e for e in tcp6 if e[0] > f.fault_at and e[1] != "connected"]
    assert ended and ended[0][1] == "reset", f"{tcp6}\n{story}"
    assert any(e[1] == "connected" and e[0] >= ended[0][0] for e in tcp6), tcp6
    # only the IPv6 group switched, only IPv6 entries NAT'ed to fibre-a6's address went
    assert [e.subject for e in f.flushes] == ["internet6"], story
    assert f"NAT'ed to {a6} (fibre-a6)" in f.flushes[0].message
    assert int(f.flushes[0].data["deleted"]) >= 2, f.flushes[0].message
    vpn4 = UdpFlow("vpn4", f"{LAN}:51820", f"{FAR}:51820")
    old, new = flow_entry(f.before4, vpn4), flow_entry(f.after4, vpn4)
    assert len(old) == 1 and len(new) == 1 and new[0].id == old[0].id, (old, new)
    assert not flow_entry(f.destroyed, vpn4), f.destroyed
    assert flow_entry(f.destroyed, UdpFlow("vpn6", f"[{LAN6}]:51820", f"[{FAR6}]:51820"))
    assert new[0].reply_dst == str(f.lab.link("fibre-a").site_addr)
    gaps = [b - a for (a, _), (b, _) in zip(f.result.lan["vpn4"].arrivals,
                                            f.result.lan["vpn4"].arrivals[1:], strict=False)]
    assert gaps and max(gaps) < 1.0, "the IPv4 flow was disturbed"

