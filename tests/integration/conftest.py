"""Fixtures for tests that need the network-namespace lab.

``lab`` gives each test a freshly built Lab (about 0.1 s to build) and destroys it
afterwards, also when the test fails; ``lab_factory`` builds the lab's other variants
(``Lab`` options: NAT mode, scale targets, ``ipv6=True`` for dual stack) under the same
guarantee. Both skip with the reason when the machine
cannot host a lab (not root, a tool missing). Once per session, namespaces left by lab runs
whose owner process is gone are removed first; labs of live parallel runs are left alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.actuators.sipedge.kamailio import KamailioActuator, KamailioClient
from tests.lab.kamailio import LabKamailio, free_port
from tests.lab.netns import cleanup_stale
from tests.lab.sipsite import sip_site_skip_reason
from tests.lab.topology import Lab

SIPP_DIR = Path(__file__).resolve().parent / "sipp"

# The marks of every test that runs the SIP site lab (Kamailio, sipp, the real daemon).
SIP_LAB = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (network namespaces)"),
    pytest.mark.skipif(sip_site_skip_reason() is not None,
                       reason=str(sip_site_skip_reason())),
]

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
def edge(tmp_path: Path) -> Iterator[LabKamailio]:
    """Kamailio with carrier-side sockets on two uplink addresses (calls leave from
    127.0.0.1 until lifeline names another) and the PBX side on 127.0.0.1."""
    k = LabKamailio(tmp_path / "kamailio", uplink_addrs=("127.0.0.1", SECOND_UPLINK))
    try:
        k.start()
        yield k
    finally:
        k.stop()


@pytest.fixture
async def actuator(edge: LabKamailio) -> AsyncIterator[KamailioActuator]:
    client = KamailioClient(edge.rpc_url, timeout=5.0)
    try:
        yield KamailioActuator(client)
    finally:
        await client.close()


# -- sipp UAS peers on loopback (PBX, SBCs) for the edge tests -------------------------------

Uas = Callable[..., tuple[int, Path]]


@pytest.fixture
def uas(tmp_path: Path) -> Iterator[Uas]:
    """``uas(name, tcp=False, scenario=None)`` starts a sipp UAS on 127.0.0.1 answering calls
    and OPTIONS (sipp's built-in uas, or a scenario of tests/integration/sipp) -> (its free
    port, its message log). Killed by PID at the end."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, tcp: bool = False, scenario: str | None = None) -> tuple[int, Path]:
        port = free_port(socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
        log = tmp_path / f"{name}_messages.log"
        argv = ["sipp", *(["-sf", str(SIPP_DIR / scenario)] if scenario else ["-sn", "uas"]),
                "-t", "t1" if tcp else "u1", "-aa", "-i", "127.0.0.1", "-p", str(port),
                "-nostdin", "-trace_msg", "-message_file", str(log), "-trace_err",
                "-error_file", str(tmp_path / f"{name}_errors.log")]  # fmt: skip
        procs.append(subprocess.Popen(argv, cwd=tmp_path, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return port, log

    try:
        yield start
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait(5)


# -- TLS: a test certificate, and a TLS-terminating relay (Debian's sipp has no TLS) --------


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cert, key) of a self-signed certificate for sbc.lifeline.test, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("needs `openssl` (Debian package openssl) to make a test certificate")
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=sbc.lifeline.test",
         "-addext", "subjectAltName=DNS:sbc.lifeline.test"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


TlsRelay = Callable[[int], Awaitable[int]]


@pytest.fixture
async def tls_relay(certificate: tuple[Path, Path]) -> AsyncIterator[TlsRelay]:
    """``await start(backend_port)`` -> a TLS port on 127.0.0.1 (the test certificate) whose
    connections are relayed, bytes both ways, to 127.0.0.1:backend_port over TCP: a TLS SBC
    made of a sipp speaking TCP. Servers and relay tasks end with the test."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(certificate[0]), str(certificate[1]))
    tasks: set[asyncio.Task[None]] = set()
    servers: list[asyncio.Server] = []

    async def start(backend: int) -> int:
        async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            writers = [w]
            try:
                br, bw = await asyncio.open_connection("127.0.0.1", backend)
                writers.append(bw)
                await asyncio.gather(_pipe(r, bw), _pipe(br, w))
            finally:
                # Closed here also when cancelled at teardown, before the loop goes.
                for writer in writers:
                    writer.close()
                    with contextlib.suppress(OSError, ConnectionError, asyncio.CancelledError):
                        await writer.wait_closed()

        def on_client(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            task = asyncio.create_task(handle(r, w))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        server = await asyncio.start_server(on_client, "127.0.0.1", 0, ssl=ctx)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    try:
        yield start
    finally:
        for server in servers:
            server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in servers:
            await server.wait_closed()
