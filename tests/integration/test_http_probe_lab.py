"""The HTTP service probe across a real path: the service in one namespace, the prober in
another, joined by veth pairs (root needed).

ns "site" (the prober) <-a0/b0-> ns "lan" (the service, as on the site's LAN), plus
a1/b1, a path that does not lead to the service's address, so binding to a device is
proven to matter. What
loopback cannot show is shown here: the check pinned to a device (the socket factory), a
check pinned to the wrong one failing, and a blackhole (packets dropped on the way, not
a slow server) ending in a timeout. Namespaces and the service are removed in the
fixture's finalizer, also on failure.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from probes import http
from probes.sample import ErrorKind, HttpOptions, ProbeSpec
from tests.lab.builder import NetBuilder
from tests.lab.httpservice import HttpService
from tests.lab.netns import inside

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
]

SITE_IP, SVC_IP, SITE1_IP, SVC1_IP = "192.0.2.1", "192.0.2.80", "198.51.100.1", "198.51.100.2"


@dataclass
class SvcLab:
    site: str
    svc_ns: str
    service: HttpService


def sh(*argv: str) -> None:
    subprocess.run(list(argv), check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture
async def svclab() -> AsyncIterator[SvcLab]:
    net = NetBuilder(["site", "lan"])
    service: HttpService | None = None
    try:
        net.create()
        net.ip("site", net.veth_cmd("a0", "lan", "b0"), net.veth_cmd("a1", "lan", "b1"))
        net.iface("site", "a0", f"{SITE_IP}/24")
        net.iface("lan", "b0", f"{SVC_IP}/24")
        net.iface("site", "a1", f"{SITE1_IP}/24")
        net.iface("lan", "b1", f"{SVC1_IP}/24")
        # The service's address is reachable only through a0: a1 leads elsewhere.
        sh("ip", "netns", "exec", net.ns("lan"), "sysctl", "-q", "-w",
           "net.ipv4.conf.b1.arp_ignore=1")
        with inside(net.ns("lan")):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((SVC_IP, 0))
        sock.listen(16)
        service = HttpService(host=SVC_IP, sock=sock)
        await service.start()
        yield SvcLab(net.ns("site"), net.ns("lan"), service)
    finally:
        if service is not None:
            await service.stop()
        net.destroy()


def spec(lab: SvcLab, device: str | None = None) -> ProbeSpec:
    url = lab.service.url()
    return ProbeSpec("http", SVC_IP, lab.service.port, device=device,
                     http=HttpOptions(url=url))


async def test_a_check_pinned_to_the_right_device_reaches_the_service(svclab: SvcLab) -> None:
    with inside(svclab.site):
        reading = await http.check(spec(svclab, device="a0"), timeout=2.0)
    assert reading.ok, reading
    assert reading.code == 200 and svclab.service.requests == 1


async def test_a_check_pinned_to_a_path_that_does_not_lead_there_fails(
        svclab: SvcLab) -> None:
    with inside(svclab.site):
        reading = await http.check(spec(svclab, device="a1"), timeout=1.0)
    assert not reading.ok
    assert reading.error in (ErrorKind.TIMEOUT, ErrorKind.UNREACHABLE, ErrorKind.NETWORK)
    assert svclab.service.requests == 0


async def test_a_blackholed_service_times_out_and_a_500_is_told_apart(svclab: SvcLab) -> None:
    svclab.service.status = 500
    with inside(svclab.site):
        answered = await http.check(spec(svclab, device="a0"), timeout=2.0)
    assert answered.error is ErrorKind.BAD_STATUS and answered.code == 500
    sh("ip", "netns", "exec", svclab.svc_ns, "iptables", "-A", "INPUT", "-p", "tcp",
       "--dport", str(svclab.service.port), "-j", "DROP")
    with inside(svclab.site):
        dropped = await http.check(spec(svclab, device="a0"), timeout=1.0)
    assert not dropped.ok and dropped.error is ErrorKind.TIMEOUT
