"""Probe engine against real peers: two network namespaces joined by veth pairs.

ns A (the prober) <-a0/b0-> ns B (targets), plus a second pair a1/b1 that does not lead
to the targets, for binding tests. The test process switches its own thread into ns A
(setns) while it runs probes, so the engine's sockets live there and its stats can be
read directly. Forged packets come from scapy run inside ns B. Everything is removed in
the fixture's finalizer. The tests at the bottom need no network (registry, scheduler
with fake probes) and always run.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from probes import arp, icmp, registry, tcp
from probes.icmp import IcmpEngine
from probes.sample import ErrorKind, ProbeSpec, Sample
from probes.scheduler import RoundScheduler
from tests.lab.builder import NetBuilder
from tests.lab.netns import inside

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root to create network namespaces and raw sockets"
)
lab = [pytest.mark.lab, needs_root]

A_IP, B_IP, SILENT_IP, REJECT_IP = "192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"
A_IP6, B_IP6, SILENT_IP6, REJECT_IP6 = "2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8::4"
A1_IP, B1_IP = "198.51.100.1", "198.51.100.2"
TCP_DROP_PORT = 9


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, timeout=30)


@dataclass
class Lab:
    a: str
    b: str
    tcp_port: int
    listener: socket.socket


@pytest.fixture(scope="module")
def netlab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    # A is the lab role "site" (the prober), B the role "inet" (the targets).
    net = NetBuilder(["site", "inet"])
    ns_a, ns_b = net.ns("site"), net.ns("inet")
    listener: socket.socket | None = None
    try:
        net.create()
        net.ip("site", net.veth_cmd("a0", "inet", "b0"), net.veth_cmd("a1", "inet", "b1"))
        net.iface("site", "a0", f"{A_IP}/24", f"{A_IP6}/64")
        net.iface("inet", "b0", f"{B_IP}/24", f"{SILENT_IP}/24", f"{REJECT_IP}/24",
                  f"{B_IP6}/64", f"{SILENT_IP6}/64", f"{REJECT_IP6}/64")
        net.iface("site", "a1", f"{A1_IP}/24")
        net.iface("inet", "b1", f"{B1_IP}/24")
        b = ["ip", "netns", "exec", ns_b]
        # ns B must not answer for the targets on b1 (Linux answers ARP for any local
        # address on any interface by default), so a1 really is a path that does not
        # lead to them.
        sh(*b, "sysctl", "-q", "-w", "net.ipv4.conf.b1.arp_ignore=1")
        sh(*b, "iptables", "-A", "INPUT", "-d", SILENT_IP, "-p", "icmp", "-j", "DROP")
        sh(*b, "iptables", "-A", "INPUT", "-d", REJECT_IP, "-p", "icmp", "-j", "REJECT",
           "--reject-with", "icmp-host-unreachable")
        sh(*b, "iptables", "-A", "INPUT", "-d", B_IP, "-p", "tcp", "--dport",
           str(TCP_DROP_PORT), "-j", "DROP")
        sh(*b, "ip6tables", "-A", "INPUT", "-d", SILENT_IP6, "-p", "ipv6-icmp",
           "--icmpv6-type", "echo-request", "-j", "DROP")
        sh(*b, "ip6tables", "-A", "INPUT", "-d", REJECT_IP6, "-p", "ipv6-icmp",
           "--icmpv6-type", "echo-request", "-j", "REJECT", "--reject-with",
           "icmp6-addr-unreachable")
        # Warm the neighbour caches: the first IPv6 neighbour solicitation after link-up
        # can be lost, which would add a 1 s retransmit to whichever test pings first.
        for target in (B_IP, B_IP6):
            sh("ip", "netns", "exec", ns_a, "ping", "-c", "1", "-W", "3", target, check=False)
        with inside(ns_b):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((B_IP, 0))
        listener.listen(16)
        yield Lab(ns_a, ns_b, listener.getsockname()[1], listener)
    finally:
        icmp.close_all()
        if listener is not None:
            listener.close()
        net.destroy()


# -- ICMP ----------------------------------------------------------------------


@pytest.mark.lab
@needs_root
async def test_icmp_echo_ipv4_and_ipv6(netlab: Lab) -> None:
    with inside(netlab.a):
        v4 = IcmpEngine(socket.AF_INET, "a0", A_IP)
        v6 = IcmpEngine(socket.AF_INET6, "a0", A_IP6)
        try:
            s4 = await v4.ping(B_IP, 2.0)
            s6 = await v6.ping(B_IP6, 2.0)
            via_registry = await icmp.probe(
                ProbeSpec("icmp", B_IP, device="a0", source=A_IP), timeout=2.0
            )
        finally:
            v4.close()
            v6.close()
    for sample in (s4, s6, via_registry):
        assert sample.ok, sample
        assert sample.rtt is not None and 0 < sample.rtt < 1.0
    assert v4.stats.sent == 1 and v4.stats.matched == 1
    assert v6.stats.matched == 1


@pytest.mark.lab
@needs_root
async def test_icmp_batch_keeps_order_and_times_out_silent_targets(netlab: Lab) -> None:
    with inside(netlab.a):
        engine = IcmpEngine(socket.AF_INET)
        engine6 = IcmpEngine(socket.AF_INET6)
        try:
            started = time.monotonic()
            samples = await engine.ping_many([B_IP, SILENT_IP, B_IP, "not-an-ip"], 0.5)
            elapsed = time.monotonic() - started
            samples6 = await engine6.ping_many([SILENT_IP6, B_IP6], 0.5)
        finally:
            engine.close()
            engine6.close()
    assert [s.ok for s in samples] == [True, False, True, False]
    assert samples[1].error is ErrorKind.TIMEOUT
    assert samples[3].error is ErrorKind.INTERNAL
    assert 0.4 < elapsed < 3.0  # one shared deadline, not one per target
    assert engine.stats.timeouts == 1
    assert samples6[0].error is ErrorKind.TIMEOUT and samples6[1].ok


@pytest.mark.lab
@needs_root
async def test_icmp_unreachable_from_quoted_error(netlab: Lab) -> None:
    with inside(netlab.a):
        v4 = IcmpEngine(socket.AF_INET)
        v6 = IcmpEngine(socket.AF_INET6)
        try:
            s4 = await v4.ping(REJECT_IP, 2.0)
            s6 = await v6.ping(REJECT_IP6, 2.0)
        finally:
            v4.close()
            v6.close()
    assert s4.error is ErrorKind.UNREACHABLE, s4
    assert "type 3 code 1" in s4.detail
    assert s6.error is ErrorKind.UNREACHABLE, s6
    assert "type 1 code 3" in s6.detail
    assert v4.stats.unreachable == 1 and v6.stats.unreachable == 1


@pytest.mark.lab
@needs_root
async def test_icmp_bound_to_wrong_device_fails(netlab: Lab) -> None:
    with inside(netlab.a):
        right = await icmp.probe(ProbeSpec("icmp", B_IP, device="a0", source=A_IP), timeout=1.0)
        # a1 has no route to 192.0.2.0/24 and its peer does not answer for it there.
        wrong = await icmp.probe(ProbeSpec("icmp", B_IP, device="a1"), timeout=1.0)
        missing = await icmp.probe(ProbeSpec("icmp", B_IP, device="nosuchdev0"), timeout=1.0)
        bad_source = await icmp.probe(
            ProbeSpec("icmp", B_IP, source="203.0.113.9"), timeout=1.0
        )
        icmp.close_all()
    assert right.ok, right
    assert not wrong.ok and wrong.error in (ErrorKind.TIMEOUT, ErrorKind.NETWORK), wrong
    assert missing.error is ErrorKind.NETWORK and "No such device" in missing.detail
    assert bad_source.error is ErrorKind.NETWORK, bad_source


SPOOFER = r"""
import json, os, sys
from scapy.all import (IP, ICMP, IPerror, ICMPerror, IPv6, ICMPv6EchoReply, Raw,
                       L3RawSocket, L3RawSocket6)
print("ready", flush=True)
p = json.loads(sys.stdin.readline())
ident, seq, cookie = p["ident"], p["seq"], bytes.fromhex(p["cookie"])
me, target, other = p["me"], p["target"], p["other"]
good = ICMP(bytes(ICMP(type=0, id=ident, seq=seq) / Raw(cookie))).chksum
v4 = [
    IP(src=target, dst=me) / ICMP(type=0, id=ident, seq=seq) / Raw(b"WRONGCOO"),
    IP(src=target, dst=me) / ICMP(type=0, id=ident ^ 0x5555, seq=seq) / Raw(cookie),
    IP(src=other, dst=me) / ICMP(type=0, id=ident, seq=seq) / Raw(cookie),
    IP(src=target, dst=me) / ICMP(type=0, id=ident, seq=seq, chksum=good ^ 0x0101) / Raw(cookie),
    IP(src=target, dst=me, proto=1) / Raw(b"\x00\x00\x00"),
    IP(src=target, dst=me) / ICMP(type=0, id=ident, seq=seq),
    IP(src=target, dst=me, proto=1) / Raw(b"\x00" + os.urandom(30)),
    IP(src=target, dst=me) / ICMP(type=0, id=ident, seq=(seq + 999) & 0xFFFF) / Raw(cookie),
    IP(src=other, dst=me) / ICMP(type=3, code=1)
        / IPerror(src=me, dst="192.0.2.77") / ICMPerror(type=8, id=ident, seq=seq),
    IP(src=other, dst=me) / ICMP(type=3, code=1) / Raw(os.urandom(10)),
]
s4 = L3RawSocket()
for pkt in v4:
    s4.send(pkt)
q = p["v6"]
c6 = bytes.fromhex(q["cookie"])
i6, q6 = q["ident"], q["seq"]
v6 = [
    IPv6(src=q["target"], dst=q["me"]) / ICMPv6EchoReply(id=i6, seq=q6, data=b"WRONGCOO"),
    IPv6(src=q["other"], dst=q["me"]) / ICMPv6EchoReply(id=i6, seq=q6, data=c6),
    IPv6(src=q["target"], dst=q["me"]) / ICMPv6EchoReply(id=i6 ^ 0x5555, seq=q6, data=c6),
]
s6 = L3RawSocket6()
for pkt in v6:
    s6.send(pkt)
print("sent", len(v4), len(v6), flush=True)
"""


@pytest.mark.lab
@needs_root
async def test_forged_and_foreign_replies_are_ignored(netlab: Lab) -> None:
    helper = subprocess.Popen(
        ["ip", "netns", "exec", netlab.b, sys.executable, "-c", SPOOFER],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert helper.stdout is not None and helper.stdin is not None
        ready = await asyncio.to_thread(helper.stdout.readline)
        assert ready.strip() == "ready", helper.stderr.read() if helper.stderr else ""
        with inside(netlab.a):
            v4 = IcmpEngine(socket.AF_INET, "a0")
            v6 = IcmpEngine(socket.AF_INET6, "a0")
            try:
                batch4 = asyncio.ensure_future(v4.ping_many([SILENT_IP], 4.0))
                batch6 = asyncio.ensure_future(v6.ping_many([SILENT_IP6], 4.0))
                await asyncio.sleep(0.05)
                ((seq, (_, cookie)),) = v4.outstanding().items()
                ((seq6, (_, cookie6)),) = v6.outstanding().items()
                params = {
                    "ident": v4.ident, "seq": seq, "cookie": cookie.hex(),
                    "me": A_IP, "target": SILENT_IP, "other": B_IP,
                    "v6": {"ident": v6.ident, "seq": seq6, "cookie": cookie6.hex(),
                           "me": A_IP6, "target": SILENT_IP6, "other": B_IP6},
                }
                helper.stdin.write(json.dumps(params) + "\n")
                helper.stdin.flush()
                sent = await asyncio.to_thread(helper.stdout.readline)
                assert sent.startswith("sent"), helper.stderr.read() if helper.stderr else ""
                samples4 = await batch4
                samples6 = await batch6
            finally:
                v4.close()
                v6.close()
    finally:
        if helper.poll() is None:
            helper.kill()
        _, helper_errors = helper.communicate(timeout=10)
    # scapy reports send failures on stderr and carries on: a silent helper proves nothing.
    assert "ERROR" not in helper_errors, helper_errors
    assert samples4[0].error is ErrorKind.TIMEOUT, samples4
    assert samples6[0].error is ErrorKind.TIMEOUT, samples6
    assert v4.stats.matched == 0 and v6.stats.matched == 0
    ignored4 = v4.stats.ignored
    # An ICMP message shorter than its 8-byte header never reaches us: the kernel's
    # ICMP_FILTER drops it. The reply that is cut right after the header (no cookie)
    # is the second "bad-cookie".
    for reason in ("foreign-id", "wrong-source", "unknown-seq", "wrong-quote", "short-quote"):
        assert ignored4[reason] >= 1, (reason, ignored4)
    assert ignored4["bad-cookie"] >= 2 and ignored4["bad-checksum"] >= 1, ignored4
    ignored6 = v6.stats.ignored
    for reason in ("bad-cookie", "wrong-source", "foreign-id"):
        assert ignored6[reason] >= 1, (reason, ignored6)


# -- TCP -----------------------------------------------------------------------


@pytest.mark.lab
@needs_root
async def test_tcp_ok_refused_timeout(netlab: Lab) -> None:
    with inside(netlab.a):
        ok = await tcp.probe(
            ProbeSpec("tcp", B_IP, port=netlab.tcp_port, device="a0", source=A_IP), timeout=2.0
        )
        refused = await tcp.probe(ProbeSpec("tcp", B_IP, port=1, device="a0"), timeout=2.0)
        silent = await tcp.probe(ProbeSpec("tcp", B_IP, port=TCP_DROP_PORT), timeout=0.5)
        wrong_dev = await tcp.probe(
            ProbeSpec("tcp", B_IP, port=netlab.tcp_port, device="nosuchdev0"), timeout=1.0
        )
    assert ok.ok and ok.rtt is not None and ok.rtt < 1.0, ok
    assert refused.error is ErrorKind.REFUSED and "path is up" in refused.detail, refused
    assert silent.error is ErrorKind.TIMEOUT, silent
    assert wrong_dev.error is ErrorKind.NETWORK, wrong_dev


# -- ARP -----------------------------------------------------------------------


@pytest.mark.lab
@needs_root
async def test_arp_ok_and_timeout(netlab: Lab) -> None:
    with inside(netlab.a):
        ok = await arp.probe(ProbeSpec("arp", B_IP, device="a0", source=A_IP), timeout=2.0)
        no_source = await arp.probe(ProbeSpec("arp", B_IP, device="a0"), timeout=2.0)
        silent = await arp.probe(
            ProbeSpec("arp", "192.0.2.99", device="a0", source=A_IP), timeout=0.5
        )
        no_dev = await arp.probe(ProbeSpec("arp", B_IP, device="nosuchdev0"), timeout=0.5)
    assert ok.ok and ok.rtt is not None and ok.rtt < 1.0, ok
    assert no_source.ok, no_source
    assert silent.error is ErrorKind.TIMEOUT, silent
    assert no_dev.error is ErrorKind.NETWORK, no_dev


# -- scheduler on the lab --------------------------------------------------------


@pytest.mark.lab
@needs_root
async def test_round_scheduler_mixes_kinds(netlab: Lab) -> None:
    specs = [
        ProbeSpec("icmp", B_IP, device="a0", source=A_IP),
        ProbeSpec("icmp", SILENT_IP, device="a0", source=A_IP),
        ProbeSpec("icmp", B_IP6, device="a0"),
        ProbeSpec("tcp", B_IP, port=netlab.tcp_port, device="a0"),
        ProbeSpec("arp", B_IP, device="a0", source=A_IP),
    ]
    rounds: list[tuple[float, list[Sample]]] = []
    with inside(netlab.a):
        scheduler = RoundScheduler(
            specs, interval=0.3, timeout=0.25, start_jitter=0.0,
            on_round=lambda at, samples: rounds.append((at, samples)),
        )
        scheduler.start()
        await asyncio.sleep(1.4)
        await scheduler.stop()
        icmp.close_all()
    assert len(rounds) >= 3, rounds
    for _, samples in rounds:
        assert [s.ok for s in samples] == [True, False, True, True, True], samples
        assert samples[1].error is ErrorKind.TIMEOUT
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(rounds)]
    assert all(0.2 < gap < 0.45 for gap in gaps), gaps


# -- no network needed ---------------------------------------------------------


async def test_run_probe_turns_crashes_into_internal(monkeypatch: pytest.MonkeyPatch) -> None:
    async def crash(spec: ProbeSpec, *, timeout: float) -> Sample:
        raise ZeroDivisionError("boom")

    monkeypatch.setitem(registry.PROBES, "crash", crash)
    crashed = await registry.run_probe(ProbeSpec("crash", "192.0.2.1"), 1.0)
    assert crashed.error is ErrorKind.INTERNAL and "ZeroDivisionError" in crashed.detail
    unknown = await registry.run_probe(ProbeSpec("nope", "192.0.2.1"), 1.0)
    assert unknown.error is ErrorKind.INTERNAL and "nope" in unknown.detail
    assert set(registry.PROBES) >= {"icmp", "tcp", "arp"}


async def test_scheduler_survives_callback_errors_and_slow_rounds(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def slow(spec: ProbeSpec, *, timeout: float) -> Sample:
        # Every probe takes the whole timeout: rounds overlap, the grid must hold.
        await asyncio.sleep(timeout)
        return Sample.success(timeout)

    monkeypatch.setitem(registry.PROBES, "slow", slow)
    calls: list[float] = []

    def on_round(sent_at: float, samples: list[Sample]) -> None:
        calls.append(sent_at)
        assert len(samples) == 2 and all(s.ok for s in samples)
        raise RuntimeError("callback bug")

    scheduler = RoundScheduler(
        [ProbeSpec("slow", "192.0.2.1"), ProbeSpec("slow", "192.0.2.2")],
        interval=0.1, timeout=0.1, start_jitter=0.0, on_round=on_round,
    )
    with caplog.at_level(logging.ERROR, logger="probes.scheduler"):
        scheduler.start()
        await asyncio.sleep(0.75)
        await scheduler.stop()
    assert len(calls) >= 4, calls
    # Rounds start on a fixed grid: the n-th round is n intervals after the first.
    for n, at in enumerate(calls):
        assert abs((at - calls[0]) - n * 0.1) < 0.08, calls
    assert "callback failed" in caplog.text
    assert not scheduler.running
