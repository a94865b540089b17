"""End to end over IPv6, dual stack: the real daemon fails the IPv6 default route over while
the IPv4 one, on the same interfaces, stays where it is.

The test builds its own small network (it needs IPv6 everywhere, which the shared lab does not
have): a router namespace where lifeline runs, with uplinks wan-a and wan-b to two ISP
namespaces, and a far namespace behind both ISPs holding the far targets 2001:db8:f::1 and
203.0.113.1. Each uplink carries two configured links, an IPv4 one and an IPv6 one (a link
has one gateway): fibre-a/fibre-a6 on wan-a, fibre-b/fibre-b6 on wan-b, in two route groups
that both own "default" in table main. fibre-b6 has no configured source, so the daemon must
find its global address itself. No NAT: the far namespace routes the uplink subnets back
through the ISP they came from. A blackhole of ISP A for IPv6 only (ip6tables DROP of
FORWARD; the gateway itself still answers) must move the IPv6 default to wan-b and leave
IPv4 on wan-a. Namespaces and the daemon are removed at the end, also on failure.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporters.statusview import fetch_status

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
    pytest.mark.skipif(shutil.which("ip6tables") is None, reason="needs ip6tables (iptables)"),
]

REPO = Path(__file__).resolve().parents[2]


def run(*argv: str) -> str:
    res = subprocess.run(list(argv), capture_output=True, text=True, timeout=20)
    if res.returncode != 0:
        raise AssertionError(f"{argv} failed: {res.stderr.strip()}")
    return res.stdout


@dataclass
class Net:
    router: str
    isp_a: str
    isp_b: str
    far: str

    @property
    def all(self) -> tuple[str, ...]:
        return (self.router, self.isp_a, self.isp_b, self.far)


def build(net: Net) -> None:
    """Addresses: uplink X (a, b) is 198.51.100.0/30 resp. .4/30 and 2001:db8:X::/64, the
    ISP holding ::1 and .1/.5; ISP X reaches the far namespace over 192.0.2.0/30 resp. .4/30
    and 2001:db8:fX::/64 (ISP ::1, far ::2)."""
    for ns in net.all:
        run("ip", "netns", "add", ns)
        run("ip", "-n", ns, "link", "set", "lo", "up")
        # no duplicate address detection on the link-local addresses either: while those
        # are tentative, the first probes of a just-started daemon would be lost
        run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0")  # fmt: skip
    plan = (
        ("a", net.isp_a, 0, 10),
        ("b", net.isp_b, 4, 11),
    )
    run("ip", "-n", net.far, "addr", "add", "203.0.113.1/32", "dev", "lo")
    run("ip", "-n", net.far, "addr", "add", "2001:db8:f::1/128", "dev", "lo")
    for x, isp, v4, index in plan:
        # uplink; distinct ifindexes on both ends (see controller.runtime.linkwatch)
        run(
            "ip", "-n", net.router, "link", "add", f"wan-{x}", "index", str(index),
            "type", "veth", "peer", "name", "up0", "index", str(index + 10), "netns", isp,
        )  # fmt: skip
        run("ip", "-n", net.router, "addr", "add", f"198.51.100.{v4 + 2}/30", "dev", f"wan-{x}")
        run("ip", "-n", net.router, "addr", "add", f"2001:db8:{x}::2/64", "dev", f"wan-{x}",
            "nodad")  # fmt: skip
        run("ip", "-n", net.router, "link", "set", f"wan-{x}", "up")
        run("ip", "-n", isp, "addr", "add", f"198.51.100.{v4 + 1}/30", "dev", "up0")
        run("ip", "-n", isp, "addr", "add", f"2001:db8:{x}::1/64", "dev", "up0", "nodad")
        run("ip", "-n", isp, "link", "set", "up0", "up")
        # ISP to far
        run(
            "ip", "-n", isp, "link", "add", "far0", "index", str(index + 20),
            "type", "veth", "peer", "name", f"isp-{x}", "index", str(index + 30), "netns", net.far,
        )  # fmt: skip
        run("ip", "-n", isp, "addr", "add", f"192.0.2.{v4 + 1}/30", "dev", "far0")
        run("ip", "-n", isp, "addr", "add", f"2001:db8:f{x}::1/64", "dev", "far0", "nodad")
        run("ip", "-n", isp, "link", "set", "far0", "up")
        run("ip", "-n", net.far, "addr", "add", f"192.0.2.{v4 + 2}/30", "dev", f"isp-{x}")
        run("ip", "-n", net.far, "addr", "add", f"2001:db8:f{x}::2/64", "dev", f"isp-{x}",
            "nodad")  # fmt: skip
        run("ip", "-n", net.far, "link", "set", f"isp-{x}", "up")
        run("ip", "-n", isp, "route", "add", "203.0.113.1/32", "via", f"192.0.2.{v4 + 2}")
        run("ip", "-n", isp, "-6", "route", "add", "2001:db8:f::1/128", "via",
            f"2001:db8:f{x}::2")  # fmt: skip
        run("ip", "netns", "exec", isp, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1")  # fmt: skip
        # the far end answers each uplink through the ISP it came from
        run("ip", "-n", net.far, "route", "add", f"198.51.100.{v4}/30", "via",
            f"192.0.2.{v4 + 1}")  # fmt: skip
        run("ip", "-n", net.far, "-6", "route", "add", f"2001:db8:{x}::/64", "via",
            f"2001:db8:f{x}::1")  # fmt: skip


def destroy(net: Net) -> None:
    for ns in net.all:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20, check=False)


@pytest.fixture
def net() -> Iterator[Net]:
    tag = secrets.token_hex(3)
    the_net = Net(f"ll6d-{tag}-r", f"ll6d-{tag}-a", f"ll6d-{tag}-b", f"ll6d-{tag}-f")
    try:
        build(the_net)
        yield the_net
    finally:
        destroy(the_net)


def config(state_dir: Path) -> dict[str, Any]:
    def link(name: str, x: str, fam: int, tier: int, source: bool = True) -> dict[str, Any]:
        v4 = 0 if x == "a" else 4
        gw = f"198.51.100.{v4 + 1}" if fam == 4 else f"2001:db8:{x}::1"
        far = "203.0.113.1" if fam == 4 else "2001:db8:f::1"
        out: dict[str, Any] = {
            "name": name,
            "interface": f"wan-{x}",
            "gateway": gw,
            "tier": tier,
            # the gateway and the far target must both answer: a blackhole behind the
            # gateway leaves the gateway answering
            "probes": {"reliability": 2, "targets": [{"icmp": gw}, {"icmp": far}]},
            "thresholds": {"hold_down": "2s"},
        }
        if source:
            out["source"] = f"198.51.100.{v4 + 2}" if fam == 4 else f"2001:db8:{x}::2"
        return out

    return {
        "site": "v6-lab",
        "state_dir": str(state_dir),
        "listen": "[::1]:9731",  # the router namespace's own loopback
        "links": [
            link("fibre-a", "a", 4, 0),
            link("fibre-a6", "a", 6, 0),
            link("fibre-b", "b", 4, 1),
            link("fibre-b6", "b", 6, 1, source=False),
        ],
        "route_groups": [
            {"name": "internet", "links": ["fibre-a", "fibre-b"]},
            {"name": "internet6", "links": ["fibre-a6", "fibre-b6"]},
        ],
    }


@pytest.fixture
def daemon(net: Net, tmp_path: Path) -> Iterator[Callable[[], dict[str, Any] | None]]:
    """The daemon running in the router namespace; yields a status getter. Stopped by PID
    at the end (SIGTERM, then SIGKILL), and its log printed for a failed test."""
    state = tmp_path / "state"
    state.mkdir()
    path = tmp_path / "lifeline.yaml"
    path.write_text(yaml.safe_dump(config(state), sort_keys=False))
    log_path = tmp_path / "lifeline.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", net.router, sys.executable, "-m", "controller", "run",
             "-c", str(path)],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO,
        )  # fmt: skip
    sock = state / "lifeline.sock"

    def status() -> dict[str, Any] | None:
        if proc.poll() is not None:
            raise AssertionError(f"lifeline exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            return asyncio.run(fetch_status(sock, timeout=2.0))
        except OSError:
            return None

    try:
        yield status
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)  # `ip netns exec` execs: this is the daemon
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        print(f"--- lifeline log ---\n{log_path.read_text()[-6000:]}")


def wait_for(
    status: Callable[[], dict[str, Any] | None],
    pred: Callable[[dict[str, Any]], bool],
    timeout: float,
    what: str,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = status()
        if last is not None and pred(last):
            return last
        time.sleep(0.1)
    raise AssertionError(f"waited {timeout:.0f} s for {what}; last status: {last}")


def active(st: dict[str, Any], group: str) -> list[str]:
    found: list[str] = next(g["active"] for g in st["groups"] if g["name"] == group)
    return found


def state_of(st: dict[str, Any], link: str) -> str:
    found: str = next(lk["state"] for lk in st["links"] if lk["name"] == link)
    return found


def default6(net: Net) -> str:
    return run("ip", "-n", net.router, "-6", "route", "show", "table", "main", "exact", "::/0")


def default4(net: Net) -> str:
    return run("ip", "-n", net.router, "-4", "route", "show", "table", "main", "exact",
               "0.0.0.0/0")  # fmt: skip


def test_ipv6_default_fails_over_and_ipv4_stays(
    net: Net, daemon: Callable[[], dict[str, Any] | None]
) -> None:
    links = ("fibre-a", "fibre-a6", "fibre-b", "fibre-b6")
    wait_for(daemon, lambda s: all(state_of(s, n) == "up" for n in links), 30, "all links up")
    wait_for(
        daemon,
        lambda s: active(s, "internet6") == ["fibre-a6"] and active(s, "internet") == ["fibre-a"],
        30,
        "both groups on fibre A",
    )
    assert "default via 2001:db8:a::1 dev wan-a proto 201 metric 1024" in default6(net)
    assert "default via 198.51.100.1 dev wan-a proto 201" in default4(net)
    # per-link tables and source rules of both families; fibre-b6's source was found on
    # wan-b (its global address, not the link-local one)
    rules6 = run("ip", "-n", net.router, "-6", "rule", "show")
    assert "from 2001:db8:a::2 lookup 102 proto 201" in rules6
    assert "from 2001:db8:b::2 lookup 104 proto 201" in rules6
    assert "from 198.51.100.2 lookup 101 proto 201" in run("ip", "-n", net.router, "rule")

    # blackhole ISP A for IPv6 only: its gateway still answers, the far target does not
    run("ip", "netns", "exec", net.isp_a, "ip6tables", "-w", "5", "-A", "FORWARD", "-j", "DROP")
    st = wait_for(
        daemon,
        lambda s: active(s, "internet6") == ["fibre-b6"],
        30,
        "the IPv6 group to move to fibre-b6",
    )
    assert state_of(st, "fibre-a6") == "down"
    assert active(st, "internet") == ["fibre-a"]
    assert state_of(st, "fibre-a") == "up"
    assert "default via 2001:db8:b::1 dev wan-b proto 201 metric 1024" in default6(net)
    assert "default via 198.51.100.1 dev wan-a proto 201" in default4(net)
    # the kernel's own answer, not only lifeline's: IPv6 leaves through wan-b now
    assert "dev wan-b" in run("ip", "-n", net.router, "-6", "route", "get", "2001:db8:f::1")
    assert "dev wan-a" in run("ip", "-n", net.router, "-4", "route", "get", "203.0.113.1")
