"""Fixtures for tests that need the network-namespace lab.

``lab`` gives each test a freshly built Lab (about 0.1 s to build) and destroys it
afterwards, also when the test fails; ``lab_factory`` builds labs with other options (NAT
mode, scale targets) under the same guarantee. Both skip with the reason when the machine
cannot host a lab (not root, a tool missing). Once per session, namespaces left by lab runs
whose owner process is gone are removed first; labs of live parallel runs are left alone.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.actuators.kamailio import KamailioActuator, KamailioClient
from lab.kamailio import KamailioEdge
from lab.netns import cleanup_stale
from lab.topology import Lab

_TOOLS = {
    "ip": "iproute2",
    "iptables": "iptables",
    "iptables-restore": "iptables",
    "sysctl": "procps",
}


def lab_skip_reason(extra_tools: dict[str, str] | None = None) -> str | None:
    """Why this machine cannot run the lab, or None if it can."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, veth, iptables): run as root"
    for tool, package in {**_TOOLS, **(extra_tools or {})}.items():
        if shutil.which(tool) is None:
            return f"the lab needs `{tool}` (Debian package {package}) on PATH"
    return None


def require_tools(**tools: str) -> None:
    """Skip the calling test unless each tool (name=package) is on PATH."""
    for tool, package in tools.items():
        if shutil.which(tool.replace("_", "-")) is None:
            pytest.skip(f"needs `{tool}` (Debian package {package}) on PATH")


@pytest.fixture(scope="session")
def _stale_labs_removed() -> None:
    if lab_skip_reason() is None:
        cleanup_stale()


@pytest.fixture
def lab_factory(_stale_labs_removed: None) -> Iterator[Callable[..., Lab]]:
    """``make(**Lab kwargs) -> Lab`` built; every lab made is destroyed at teardown."""
    reason = lab_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    made: list[Lab] = []

    def make(**kwargs: Any) -> Lab:
        lab = Lab(**kwargs)
        made.append(lab)
        lab.build()
        return lab

    try:
        yield make
    finally:
        for lab in made:
            lab.destroy()


@pytest.fixture
def lab(lab_factory: Callable[..., Lab]) -> Lab:
    """A built lab with default options (SNAT, no scale targets)."""
    return lab_factory()


# -- a real Kamailio on loopback (from the reference cfg), for the edge actuator's tests --


# A second "uplink" address: all of 127/8 is local, so nothing is added to the machine.
SECOND_UPLINK = "127.0.0.2"


@pytest.fixture
def edge(tmp_path: Path) -> Iterator[KamailioEdge]:
    """Kamailio with carrier-side sockets on two uplink addresses (calls leave from
    127.0.0.1 until lifeline names another) and the PBX side on 127.0.0.1."""
    k = KamailioEdge(tmp_path / "kamailio", uplink_addrs=("127.0.0.1", SECOND_UPLINK))
    try:
        k.start()
        yield k
    finally:
        k.stop()


@pytest.fixture
async def actuator(edge: KamailioEdge) -> AsyncIterator[KamailioActuator]:
    client = KamailioClient(edge.rpc_url, timeout=5.0)
    try:
        yield KamailioActuator(client)
    finally:
        await client.close()
