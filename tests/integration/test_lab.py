"""Tests of the lab itself: topology, NAT, every fault, the stream, teardown, the config.

If the lab lies (a fault that does not bite, a leftover namespace), every test built on it
lies too, so each fault is checked from the site's side, as lifeline would see it. Bounds
on timings and loss are generous on purpose: these tests check that a thing happens, not
how precisely.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.conftest import require_tools
from tests.lab import netns
from tests.lab.config import lifeline_config, lifeline_config_dict
from tests.lab.stream import Gap, Stream, StreamResult, gaps_in, tcp_listener
from tests.lab.topology import LAN_NET, SINK_ADDR, Lab
from tests.lab.wait import until

pytestmark = pytest.mark.lab


def ping(
    lab: Lab,
    ns: str,
    addr: object,
    *,
    count: int = 1,
    interval: float = 0.2,
    wait: float = 1.0,
    iface: str | None = None,
) -> subprocess.CompletedProcess[str]:
    argv = ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", str(wait)]
    if iface is not None:
        argv += ["-I", iface]
    return lab.run(ns, [*argv, str(addr)], check=False, timeout=count * interval + wait + 10)


def loss_percent(out: str) -> float:
    m = re.search(r"([\d.]+)% packet loss", out)
    assert m is not None, out
    return float(m.group(1))


def rtts(lab: Lab, ns: str, addr: object, count: int) -> list[float]:
    proc = lab.run(ns, ["ping", "-n", "-c", str(count), "-i", "0.1", "-W", "2", str(addr)],
                   check=False, timeout=count * 0.1 + 15)
    return [float(x) for x in re.findall(r"time=([\d.]+) ms", proc.stdout)]


def default_via(lab: Lab, link: str) -> None:
    lk = lab.links[link]
    lab.run(lab.site, ["ip", "route", "replace", "default", "via", str(lk.gateway),
                       "dev", lk.site_ifname])


def ping_ok(lab: Lab, ns: str, addr: object, iface: str | None = None) -> bool:
    return ping(lab, ns, addr, iface=iface).returncode == 0


# --- topology --------------------------------------------------------------------------------


def test_site_reaches_every_gateway(lab: Lab) -> None:
    assert set(lab.links) == {"fibre-a", "fibre-b", "lte"}
    for lk in lab.links.values():
        proc = ping(lab, lab.site, lk.gateway, iface=lk.site_ifname)
        assert proc.returncode == 0, (lk.name, proc.stdout, proc.stderr)


def test_build_leaves_routing_to_lifeline_and_root_untouched(lab: Lab) -> None:
    assert lab.run(lab.site, ["ip", "route", "show", "default"]).stdout.strip() == ""
    names = netns.list_namespaces()
    assert all(ns in names for ns in lab.namespaces)
    assert all(ns.startswith(lab.prefix) for ns in lab.namespaces)
    root_addrs = subprocess.run(["ip", "-br", "addr"], capture_output=True, text=True,
                                check=True).stdout
    for lk in lab.links.values():
        assert str(lk.site_addr) not in root_addrs
        assert str(lk.gateway) not in root_addrs
    assert str(SINK_ADDR) not in root_addrs


@pytest.mark.parametrize("nat", ["snat", "masquerade"])
def test_lan_reaches_sink_only_through_nat(lab_factory: Callable[..., Lab], nat: str) -> None:
    lab = lab_factory(nat=nat)
    assert not ping_ok(lab, lab.lan, SINK_ADDR), "reached the sink with no default route"
    default_via(lab, "fibre-b")
    assert ping_ok(lab, lab.lan, SINK_ADDR)
    # inet has no route back to the LAN, so the answer above proves the NAT did its job.
    route = lab.run(lab.inet, ["ip", "route", "get", str(LAN_NET[2])], check=False)
    assert route.returncode != 0
    rules = lab.iptables(lab.site, "-t", "nat", "-S", "POSTROUTING").stdout
    assert ("SNAT" if nat == "snat" else "MASQUERADE") in rules


def test_scale_targets_answer(lab_factory: Callable[..., Lab]) -> None:
    started = time.monotonic()
    lab = lab_factory(scale_targets=2000)
    build = time.monotonic() - started
    addrs = lab.run(lab.inet, ["ip", "-4", "-o", "addr", "show", "dev", "lo"]).stdout
    assert addrs.count("198.18.") + addrs.count("198.19.") == 2000
    default_via(lab, "fibre-a")
    assert ping_ok(lab, lab.site, lab.scale_addresses[-1])
    assert build < 30, f"building 2000 targets took {build:.1f} s"


def test_dual_stack_lab_reaches_the_far_ipv6_target_through_each_isp(
    lab_factory: Callable[..., Lab],
) -> None:
    lab = lab_factory(ipv6=True)
    far = lab.targets6[0]
    for lk in lab.links.values():
        assert ping_ok(lab, lab.site, lk.gateway6, iface=lk.site_ifname), lk.name
        lab.run(lab.site, ["ip", "-6", "route", "replace", "default", "via", str(lk.gateway6),
                           "dev", lk.site_ifname])
        # back through the same ISP: inet routes each uplink's prefix to its own ISP
        assert ping_ok(lab, lab.site, far), lk.name
        route = lab.run(lab.site, ["ip", "-6", "route", "get", str(far)]).stdout
        assert f"dev {lk.site_ifname}" in route
    # IPv4 is as in the IPv4 lab
    default_via(lab, "fibre-a")
    assert ping_ok(lab, lab.site, lab.targets[0])


def test_tcp_listener_accepts_through_the_link(lab: Lab) -> None:
    default_via(lab, "fibre-a")
    tcp_listener(lab, 8443)
    script = (
        "import socket,sys\n"
        "s = socket.create_connection(('192.0.2.2', 8443), timeout=2)\n"
        "s.close()\n"
    )
    assert lab.run(lab.site, [sys.executable, "-c", script], check=False).returncode == 0
    lab.faults.blackhole("fibre-a")
    assert lab.run(lab.site, [sys.executable, "-c", script], check=False).returncode != 0


# --- faults ----------------------------------------------------------------------------------


def test_blackhole_keeps_gateway_and_drops_the_rest(lab: Lab) -> None:
    lk = lab.links["fibre-a"]
    default_via(lab, "fibre-a")
    assert ping_ok(lab, lab.site, lab.targets[0])
    lab.faults.blackhole("fibre-a")
    assert lab.faults.active("fibre-a") == ["blackhole"]
    assert ping_ok(lab, lab.site, lk.gateway)
    assert not ping_ok(lab, lab.site, lab.targets[0])
    assert not ping_ok(lab, lab.lan, SINK_ADDR)
    # The other links are not affected.
    other = lab.links["fibre-b"]
    assert ping_ok(lab, lab.site, other.gateway)
    lab.faults.clear("fibre-a")
    assert lab.faults.active("fibre-a") == []
    assert ping_ok(lab, lab.site, lab.targets[0])


def test_dead_gateway_answers_nothing(lab: Lab) -> None:
    lk = lab.links["lte"]
    default_via(lab, "lte")
    lab.faults.dead_gateway("lte")
    assert not ping_ok(lab, lab.site, lk.gateway)
    assert not ping_ok(lab, lab.site, lab.targets[1])
    lab.faults.clear("lte")
    assert ping_ok(lab, lab.site, lk.gateway)
    assert ping_ok(lab, lab.site, lab.targets[1])


def test_carrier_loss_is_seen_in_the_site(lab: Lab) -> None:
    lk = lab.links["fibre-b"]

    def state() -> tuple[list[str], str]:
        info = json.loads(lab.run(lab.site, ["ip", "-j", "link", "show", lk.site_ifname]).stdout)
        return info[0]["flags"], info[0]["operstate"]

    assert state()[1] == "UP"
    lab.faults.carrier("fibre-b", up=False)
    flags, operstate = state()
    assert "NO-CARRIER" in flags
    assert operstate != "UP"
    assert not ping_ok(lab, lab.site, lk.gateway, iface=lk.site_ifname)
    lab.faults.carrier("fibre-b", up=True)
    until(lambda: state()[1] == "UP", 3.0, what="the site's end UP again")
    until(lambda: ping_ok(lab, lab.site, lk.gateway, iface=lk.site_ifname), 3.0,
          what="the gateway answering again")


def test_carrier_down_is_undone_by_clear(lab: Lab) -> None:
    lab.faults.carrier("lte", up=False)
    lab.faults.clear("lte")
    lk = lab.links["lte"]
    until(lambda: ping_ok(lab, lab.site, lk.gateway, iface=lk.site_ifname), 3.0,
          what="the gateway answering again")


def test_loss_half_loses_about_half(lab: Lab) -> None:
    default_via(lab, "fibre-a")
    lab.faults.loss("fibre-a", 0.5)
    proc = ping(lab, lab.site, lab.targets[0], count=100, interval=0.01, wait=1)
    lost = loss_percent(proc.stdout)
    assert 20 <= lost <= 80, proc.stdout
    lab.faults.clear("fibre-a")
    proc = ping(lab, lab.site, lab.targets[0], count=20, interval=0.01, wait=1)
    assert loss_percent(proc.stdout) == 0


def test_loss_also_hits_the_gateway_and_can_be_replaced(lab: Lab) -> None:
    lk = lab.links["fibre-b"]
    lab.faults.loss("fibre-b", 0.2)
    lab.faults.loss("fibre-b", 1.0)  # replaces, does not stack
    proc = ping(lab, lab.site, lk.gateway, count=10, interval=0.01, wait=1)
    assert loss_percent(proc.stdout) == 100
    rules = lab.iptables(lk.isp_ns, "-S").stdout
    assert rules.count("statistic") == 4, rules
    lab.faults.clear("fibre-b")
    assert "statistic" not in lab.iptables(lk.isp_ns, "-S").stdout


def test_delay_and_jitter_through_the_delayer(lab: Lab) -> None:
    pytest.importorskip("netfilterqueue", reason="delay needs the PyPI package netfilterqueue")
    lk = lab.links["fibre-a"]
    default_via(lab, "fibre-a")
    base = rtts(lab, lab.site, lab.targets[0], 5)
    assert base and max(base) < 20
    lab.faults.delay("fibre-a", 50, 20)
    # Each direction 50 ms + U(0, 20 ms): a round trip is 100..140 ms plus overhead.
    far = rtts(lab, lab.site, lab.targets[0], 10)
    gw = rtts(lab, lab.site, lk.gateway, 5)
    assert len(far) == 10 and len(gw) == 5
    assert all(90 <= r <= 250 for r in far + gw), (far, gw)
    assert max(far) - min(far) > 1, f"no jitter at all: {far}"
    lab.faults.clear("fibre-a")
    assert "NFQUEUE" not in lab.iptables(lk.isp_ns, "-S").stdout
    assert netns.namespace_pids(lk.isp_ns) == []
    after = rtts(lab, lab.site, lab.targets[0], 5)
    assert after and max(after) < 20


def test_delay_survives_a_dead_delayer(lab: Lab) -> None:
    pytest.importorskip("netfilterqueue", reason="delay needs the PyPI package netfilterqueue")
    lk = lab.links["lte"]
    lab.faults.delay("lte", 30)
    (pid,) = netns.namespace_pids(lk.isp_ns)
    netns.kill_pids([pid], grace=0)  # the delayer is ours (started by the lab)
    # --queue-bypass: with nobody on the queue, packets pass undelayed instead of dying.
    until(lambda: ping_ok(lab, lab.site, lk.gateway), 3.0,
          what="pings passing the queue undelayed")


# --- the data-plane stream -------------------------------------------------------------------


def test_stream_sees_the_gap_of_a_missing_route(lab: Lab) -> None:
    default_via(lab, "fibre-a")
    with Stream(lab, two_way=True, max_seconds=10) as stream:
        time.sleep(0.5)
        removed = time.monotonic()
        lab.run(lab.site, ["ip", "route", "del", "default"])
        time.sleep(0.5)
        default_via(lab, "fibre-a")
        restored = time.monotonic()
        time.sleep(0.5)
        result = stream.stop()
    assert result.sent >= 200
    gaps = result.gaps(min_gap=0.1)
    assert len(gaps) == 1, gaps
    (gap,) = gaps
    assert 0.3 <= gap.seconds <= 2.0
    # The gap sits where the route was missing (same monotonic clock in every namespace).
    assert removed - 0.2 <= gap.start <= removed + 0.1
    assert restored - 0.1 <= gap.end <= restored + 0.5
    assert 50 <= gap.lost_packets <= 400
    assert result.lost == gap.lost_packets
    largest = result.largest_gap()
    assert largest is not None and largest.seconds == gap.seconds
    reply_gap = result.largest_reply_gap()
    assert reply_gap is not None and reply_gap.seconds >= 0.3
    assert result.replied == result.received


def test_snat_flow_stays_on_the_dead_link_until_conntrack_flush(lab: Lab) -> None:
    """The trap lifeline's conntrack flush exists for: after the route moves, an SNAT'ed
    flow keeps its old source, so its replies go back to the dead link."""
    require_tools(conntrack="conntrack")
    old = lab.links["fibre-a"]
    default_via(lab, "fibre-a")
    with Stream(lab, two_way=True, max_seconds=10) as stream:
        time.sleep(0.3)
        lab.faults.blackhole("fibre-a")
        default_via(lab, "fibre-b")
        moved = time.monotonic()
        time.sleep(0.6)
        # The flow may recover while the conntrack process is still exiting: "during" ends
        # when the flush starts, "after" counts from when it is surely done.
        flushing = time.monotonic()
        lab.run(lab.site, ["conntrack", "-D", "-p", "udp", "--reply-dst", str(old.site_addr)],
                check=False)
        flushed = time.monotonic()
        time.sleep(0.5)
        result = stream.stop()
    during = [t for t, _ in result.replies if moved + 0.05 < t < flushing]
    after = [t for t, _ in result.replies if t > flushed + 0.1]
    assert during == [], "replies came back through the blackholed link"
    assert len(after) >= 20, "the flow did not recover after the conntrack flush"


def test_a_fixed_port_flow_keeps_its_port_through_snat(lab: Lab) -> None:
    """The VPN-like flow of the peers benchmark: 51820 <-> 51820, port kept by SNAT."""
    require_tools(conntrack="conntrack")
    default_via(lab, "fibre-a")
    with Stream(lab, two_way=True, max_seconds=5, interval=0.02, port=51820,
                source_port=51820) as stream:
        time.sleep(0.5)
        entries = lab.run(lab.site, ["conntrack", "-L", "-p", "udp", "--dport", "51820"],
                          check=False).stdout
        result = stream.stop()
    assert "sport=51820 dport=51820" in entries
    assert f"dst={lab.links['fibre-a'].site_addr} sport=51820 dport=51820" in entries
    assert result.replied >= 10


def test_gaps_in_counts_leading_inner_and_trailing_gaps() -> None:
    arrivals = [(1.0, 0), (1.01, 1), (1.5, 50), (1.51, 51)]
    gaps = gaps_in(arrivals, start=0.8, end=2.0, sent=100, min_gap=0.1)
    assert [(g.start, g.end, round(g.seconds, 6), g.lost_packets) for g in gaps] == [
        (0.8, 1.0, 0.2, 0),
        (1.01, 1.5, 0.49, 48),
        (1.51, 2.0, 0.49, 48),
    ]
    assert gaps_in([], start=0.0, end=1.0, sent=10, min_gap=0.1) == [Gap(0.0, 1.0, 1.0, 10)]
    result = StreamResult(sent=100, start=0.8, end=2.0, interval=0.01, arrivals=arrivals)
    assert result.received == 4 and result.lost == 96
    largest = result.largest_gap()
    assert largest is not None and largest.lost_packets == 48


# --- teardown --------------------------------------------------------------------------------


def test_destroy_removes_everything_even_when_the_body_raises() -> None:
    from tests.integration.conftest import lab_skip_reason

    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    lab = Lab()
    with pytest.raises(RuntimeError, match="test body failed"), lab:
        proc = lab.popen(lab.inet, ["sleep", "60"])
        lab.faults.blackhole("fibre-a")
        raise RuntimeError("test body failed")
    assert proc.poll() is not None, "a lab process survived destroy()"
    left = [ns for ns in netns.list_namespaces() if ns.startswith(lab.prefix)]
    assert left == []
    assert not (netns.OWNER_DIR / lab.prefix.rstrip("-")).exists()
    assert lab.destroy_seconds is not None and lab.destroy_seconds < 10
    lab.destroy()  # twice is fine


def test_failed_build_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.integration.conftest import lab_skip_reason

    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)

    def broken(self: Lab) -> None:
        raise netns.LabError("injected failure")

    monkeypatch.setattr(Lab, "_build_inet", broken)
    lab = Lab()
    with pytest.raises(netns.LabError, match="injected"):
        lab.build()
    assert [ns for ns in netns.list_namespaces() if ns.startswith(lab.prefix)] == []


def test_cleanup_stale_removes_dead_runs_only(lab: Lab) -> None:
    dead = Lab()
    dead.build()
    # Same prefix but not a lab role: somebody else's, never ours to delete.
    foreign = f"{dead.prefix}other"
    netns.add_namespaces([foreign])
    try:
        # Pretend the run that built `dead` has died: its owner record points nowhere.
        owner = netns.OWNER_DIR / dead.prefix.rstrip("-")
        owner.write_text("999999999 0\n")
        removed = netns.cleanup_stale()
        assert sorted(removed) == sorted(dead.namespaces)
        names = netns.list_namespaces()
        assert not any(ns in names for ns in dead.namespaces)
        assert foreign in names
        assert all(ns in names for ns in lab.namespaces), "a live lab was removed"
    finally:
        dead.destroy()
        netns.delete_namespaces([foreign])


def test_sigterm_tears_the_lab_down(tmp_path: Path) -> None:
    """A process killed with SIGTERM while its lab is up leaves no namespace behind."""
    from tests.integration.conftest import lab_skip_reason

    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    script = (
        "import sys, time\n"
        "from tests.lab.topology import Lab\n"
        "lab = Lab()\n"
        "lab.build()\n"
        "print(lab.prefix, flush=True)\n"
        "time.sleep(30)\n"
    )
    root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=root)
    try:
        assert proc.stdout is not None
        prefix = proc.stdout.readline().strip()
        assert prefix.startswith("ll-")
        assert any(ns.startswith(prefix) for ns in netns.list_namespaces())
        proc.terminate()
        assert proc.wait(timeout=10) == -signal.SIGTERM
        assert not any(ns.startswith(prefix) for ns in netns.list_namespaces())
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        netns.cleanup_stale()  # whatever the dead child left (its owner is gone now)


def test_build_and_destroy_are_quick() -> None:
    from tests.integration.conftest import lab_skip_reason

    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)
    lab = Lab()
    try:
        lab.build()
    finally:
        lab.destroy()
    assert lab.build_seconds is not None and lab.destroy_seconds is not None
    print(f"lab build {lab.build_seconds:.3f} s, destroy {lab.destroy_seconds:.3f} s")
    assert lab.build_seconds < 10 and lab.destroy_seconds < 10


# --- config ----------------------------------------------------------------------------------


def test_config_is_valid_lifeline_config(tmp_path: Path) -> None:
    from controller.config import parse_config

    lab = Lab()  # not built: the config needs names and addresses only
    cfg = parse_config(lifeline_config(lab, tmp_path / "state"))
    assert [(lk.name, lk.interface, lk.tier) for lk in cfg.links] == [
        ("fibre-a", "wan-a", 1), ("fibre-b", "wan-b", 2), ("lte", "lte0", 3),
    ]
    fa = cfg.link("fibre-a")
    assert fa.gateway == str(lab.links["fibre-a"].gateway)
    assert fa.source == str(lab.links["fibre-a"].site_addr)
    assert [t.host for t in fa.probes.targets] == ["198.51.100.1", "192.0.2.1", "192.0.2.2"]
    (group,) = cfg.route_groups
    assert (group.name, group.table_name, group.destination) == ("internet", "main", "default")
    assert group.links == ["fibre-a", "fibre-b", "lte"] and not group.multipath
    assert cfg.state_dir == tmp_path / "state"


def test_config_overrides(tmp_path: Path) -> None:
    from controller.config import parse_config

    lab = Lab()
    cfg = parse_config(lifeline_config(lab, tmp_path, multipath=True, hold_down="3s",
                                       interval="100ms", links=["fibre-a", "fibre-b"]))
    assert [lk.tier for lk in cfg.links] == [1, 1]
    assert cfg.route_groups[0].multipath
    assert cfg.link("fibre-b").thresholds.hold_down == 3.0
    assert cfg.link("fibre-a").probes.interval == pytest.approx(0.1)
    with pytest.raises(TypeError, match="unknown override"):
        lifeline_config_dict(lab, tmp_path, hold_donw="3s")


def test_no_lab_of_this_session_is_left_up() -> None:
    """Guard for the suite: every lab an earlier test built in this process is gone."""
    if not netns.OWNER_DIR.exists():
        return
    for record in netns.OWNER_DIR.iterdir():
        pid = record.read_text().split()[0]
        assert pid != str(os.getpid()), f"lab {record.name} of this session is still up"
