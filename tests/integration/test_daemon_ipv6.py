"""End to end over IPv6, dual stack: the real daemon fails the IPv6 default route over while
the IPv4 one, on the same interfaces, stays where it is.

The dual-stack lab (``Lab(ipv6=True)``): the site, where lifeline runs, with uplinks wan-a and
wan-b to two ISPs and, behind them, inet holding the far targets 2001:db8:f::1 and 192.0.2.1.
Each uplink carries two configured links, an IPv4 one and an IPv6 one (a link has one
gateway): fibre-a/fibre-a6 on wan-a, fibre-b/fibre-b6 on wan-b, in two route groups that both
own "default" in table main. fibre-b6 has no configured source, so the daemon must find its
global address itself. No NAT66: inet routes each uplink's prefix back through the ISP it came
from. A blackhole of ISP A for IPv6 only (ip6tables DROP of FORWARD; the gateway itself still
answers) must move the IPv6 default to wan-b and leave IPv4 on wan-a. The lab removes its
namespaces and the daemon at the end, also on failure.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.lifelined import LifelineProcess
from tests.lab.topology import Lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(shutil.which("ip6tables") is None, reason="needs ip6tables (iptables)"),
]


def config(lab: Lab, state_dir: Path) -> dict[str, Any]:
    def link(name: str, lab_link: str, fam: int, tier: int, source: bool = True
             ) -> dict[str, Any]:
        lk = lab.link(lab_link)
        gw = str(lk.gateway) if fam == 4 else str(lk.gateway6)
        far = str(lab.targets[0]) if fam == 4 else str(lab.targets6[0])
        out: dict[str, Any] = {
            "name": name,
            "interface": lk.site_ifname,
            "gateway": gw,
            "tier": tier,
            # the gateway and the far target must both answer: a blackhole behind the
            # gateway leaves the gateway answering
            "probes": {"reliability": 2, "targets": [{"icmp": gw}, {"icmp": far}]},
            "thresholds": {"hold_down": "2s"},
        }
        if source:
            out["source"] = str(lk.site_addr) if fam == 4 else str(lk.site_addr6)
        return out

    return {
        "site": "v6-lab",
        "state_dir": str(state_dir),
        "listen": "[::1]:9731",  # the site namespace's own loopback
        "links": [
            link("fibre-a", "fibre-a", 4, 0),
            link("fibre-a6", "fibre-a", 6, 0),
            link("fibre-b", "fibre-b", 4, 1),
            link("fibre-b6", "fibre-b", 6, 1, source=False),
        ],
        "route_groups": [
            {"name": "internet", "links": ["fibre-a", "fibre-b"]},
            {"name": "internet6", "links": ["fibre-a6", "fibre-b6"]},
        ],
    }


@pytest.fixture
def lab(lab_factory: Callable[..., Lab]) -> Lab:
    """The dual-stack lab, instead of the shared IPv4 one."""
    return lab_factory(ipv6=True)


@pytest.fixture
def daemon(lab: Lab, tmp_path: Path) -> Iterator[LifelineProcess]:
    """The daemon running in the site namespace; stopped at the end (the lab would kill it
    anyway), and its log printed for a failed test."""
    proc = LifelineProcess.with_config(lab, tmp_path / "state", config(lab, tmp_path / "state"))
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
        print(f"--- lifeline log ---\n{proc.log()[-6000:]}")


def run(lab: Lab, *argv: str) -> str:
    return lab.run(lab.site, list(argv)).stdout


def default6(lab: Lab) -> str:
    return run(lab, "ip", "-6", "route", "show", "table", "main", "exact", "::/0")


def default4(lab: Lab) -> str:
    return run(lab, "ip", "-4", "route", "show", "table", "main", "exact", "0.0.0.0/0")


def test_ipv6_default_fails_over_and_ipv4_stays(lab: Lab, daemon: LifelineProcess) -> None:
    links = ("fibre-a", "fibre-a6", "fibre-b", "fibre-b6")
    state_of, active = daemon.link_state, daemon.active
    daemon.wait_for(lambda s: all(state_of(s, n) == "up" for n in links), 30, "all links up")
    daemon.wait_for(
        lambda s: active(s, "internet6") == ["fibre-a6"] and active(s, "internet") == ["fibre-a"],
        30,
        "both groups on fibre A",
    )
    assert "default via 2001:db8:a::1 dev wan-a proto 201 metric 1024" in default6(lab)
    assert "default via 198.51.100.1 dev wan-a proto 201" in default4(lab)
    # per-link tables and source rules of both families; fibre-b6's source was found on
    # wan-b (its global address, not the link-local one)
    rules6 = run(lab, "ip", "-6", "rule", "show")
    assert "from 2001:db8:a::2 lookup 102 proto 201" in rules6
    assert "from 2001:db8:b::2 lookup 104 proto 201" in rules6
    assert "from 198.51.100.2 lookup 101 proto 201" in run(lab, "ip", "rule")

    # blackhole ISP A for IPv6 only: its gateway still answers, the far target does not
    lab.run(lab.link("fibre-a").isp_ns, ["ip6tables", "-w", "5", "-A", "FORWARD", "-j", "DROP"])
    st = daemon.wait_for(
        lambda s: active(s, "internet6") == ["fibre-b6"],
        30,
        "the IPv6 group to move to fibre-b6",
    )
    assert state_of(st, "fibre-a6") == "down"
    assert active(st, "internet") == ["fibre-a"]
    assert state_of(st, "fibre-a") == "up"
    assert "default via 2001:db8:b::1 dev wan-b proto 201 metric 1024" in default6(lab)
    assert "default via 198.51.100.1 dev wan-a proto 201" in default4(lab)
    # the kernel's own answer, not only lifeline's: IPv6 leaves through wan-b now
    assert "dev wan-b" in run(lab, "ip", "-6", "route", "get", "2001:db8:f::1")
    assert "dev wan-a" in run(lab, "ip", "-4", "route", "get", "203.0.113.1")
