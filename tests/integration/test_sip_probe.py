"""The SIP probe (probes/sip.py) against real SIPp peers on loopback.

SIPp plays the carrier SBC: the built-in UAS with ``-aa`` answers OPTIONS 200; the
scenarios in ``tests/integration/sipp/`` answer with a chosen code, with responses that
are not ours, or challenge a REGISTER. Debian's SIPp is built without TLS, so the TLS
tests put a small TLS-terminating relay (self-signed certificate made with ``openssl
req``) in front of SIPp over TCP: the SIP still comes from SIPp. Loopback needs no root.
Every SIPp is started in the foreground with a known PID on a free port and killed by
PID in the fixture's finalizer.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from probes import registry
from probes.sample import ErrorKind, ProbeSpec
from probes.sip import SipTarget, options, register_check
from tests.integration.conftest import TlsRelay
from tests.lab.wait import until, until_async

SCENARIOS = Path(__file__).parent / "sipp"
LOOPBACK = "127.0.0.1"

pytestmark = pytest.mark.skipif(
    shutil.which("sipp") is None, reason="needs `sipp` (Debian package sip-tester) on PATH"
)


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _listening(port: int, tcp: bool) -> bool:
    table = "/proc/net/tcp" if tcp else "/proc/net/udp"
    want = f":{port:04X}"
    with open(table) as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1].endswith(want) and (not tcp or fields[3] == "0A"):
                return True
    return False


SippFactory = Callable[..., int]


@pytest.fixture
def sipp(tmp_path: Path) -> Iterator[SippFactory]:
    """``start(*args, tcp=False) -> port``: a SIPp on a free loopback port."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str, tcp: bool = False) -> int:
        port = free_port(socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
        argv = ["sipp", *args, "-i", LOOPBACK, "-p", str(port), "-nostdin",
                "-t", "t1" if tcp else "u1"]
        proc = subprocess.Popen(argv, cwd=tmp_path, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(proc)

        def bound() -> bool:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                pytest.fail(f"sipp exited with {proc.returncode}: {err[-500:]}")
            return _listening(port, tcp)

        until(bound, 10, 0.02, "sipp to bind its port")
        return port

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()


def scenario(name: str) -> str:
    return str(SCENARIOS / name)


@pytest.fixture
def reply_scenario(tmp_path: Path) -> Callable[[str, str], str]:
    """``make(code, reason) -> path`` of options-reply.xml filled in."""

    def make(code: str, reason: str) -> str:
        text = (SCENARIOS / "options-reply.xml").read_text()
        path = tmp_path / f"options-{code}.xml"
        path.write_text(text.replace("@CODE@", code).replace("@REASON@", reason))
        return str(path)

    return make


# --- UDP ---------------------------------------------------------------------------


async def test_udp_options_200(sipp: SippFactory) -> None:
    port = sipp("-sn", "uas", "-aa")
    res = await options(SipTarget(LOOPBACK, port), timeout=2.0)
    assert res.reachable and res.code == 200 and res.reason == "OK"
    assert res.rtt is not None and 0 < res.rtt < 2.0
    assert res.error is None and res.ignored == 0


async def test_registry_probe_kind_sip(sipp: SippFactory) -> None:
    port = sipp("-sn", "uas", "-aa")
    sample = await registry.run_probe(ProbeSpec("sip", LOOPBACK, port, source=LOOPBACK), 2.0)
    assert sample.ok and sample.detail == "200 OK"


@pytest.mark.parametrize(("code", "reason", "alive"), [
    ("404", "Not Found", True),
    ("405", "Method Not Allowed", True),
    ("403", "Forbidden", True),
    ("503", "Service Unavailable", False),
    ("408", "Request Timeout", False),
    ("603", "Decline", False),
])
async def test_udp_options_code(sipp: SippFactory, reply_scenario: Callable[[str, str], str],
                                code: str, reason: str, alive: bool) -> None:
    port = sipp("-sf", reply_scenario(code, reason))
    res = await options(SipTarget(LOOPBACK, port), timeout=2.0)
    assert res.code == int(code) and res.reason == reason
    assert res.reachable is alive
    if not alive:
        assert res.error is ErrorKind.BAD_REPLY and code in res.detail
        assert not res.to_sample().ok


async def test_alive_codes_configurable_but_never_408(
    sipp: SippFactory, reply_scenario: Callable[[str, str], str]
) -> None:
    port = sipp("-sf", reply_scenario("404", "Not Found"))
    strict = SipTarget(LOOPBACK, port, alive_codes=frozenset({200}))
    res = await options(strict, timeout=2.0)
    assert res.code == 404 and not res.reachable
    assert not SipTarget(LOOPBACK, port, alive_codes=frozenset({408})).is_alive(408)


async def test_udp_stray_responses_ignored_then_timeout(sipp: SippFactory) -> None:
    port = sipp("-sf", scenario("options-stray.xml"))
    res = await options(SipTarget(LOOPBACK, port), timeout=1.5)
    assert not res.reachable and res.code is None
    assert res.error is ErrorKind.TIMEOUT
    # At least the wrong-Call-ID and wrong-branch 200s of the first attempt were seen.
    assert res.ignored >= 2, res
    # The matching 100 Trying slowed retransmissions to T2 (4 s): none within 1.5 s.
    assert res.retransmits == 0


async def test_udp_no_listener_times_out_with_retransmits() -> None:
    port = free_port(socket.SOCK_DGRAM)
    began = time.monotonic()
    res = await options(SipTarget(LOOPBACK, port), timeout=1.0)
    elapsed = time.monotonic() - began
    assert not res.reachable and res.error is ErrorKind.TIMEOUT
    # Timer E scaled to the timeout: sends at 0, 0.25, 0.75 s.
    assert res.retransmits == 2
    assert 0.9 < elapsed < 5.0


async def test_bind_to_missing_device_is_a_network_failure() -> None:
    if os.geteuid() != 0:
        pytest.skip("SO_BINDTODEVICE needs root (CAP_NET_RAW)")
    res = await options(SipTarget(LOOPBACK, 5060, device="nosuchdev0"), timeout=0.5)
    assert not res.reachable and res.error is ErrorKind.NETWORK


# --- TCP ---------------------------------------------------------------------------


async def test_tcp_options_200(sipp: SippFactory) -> None:
    port = sipp("-sn", "uas", "-aa", tcp=True)
    res = await options(SipTarget(LOOPBACK, port, transport="tcp"), timeout=2.0)
    assert res.reachable and res.code == 200, res


async def test_tcp_options_503(
    sipp: SippFactory, reply_scenario: Callable[[str, str], str]
) -> None:
    port = sipp("-sf", reply_scenario("503", "Service Unavailable"), tcp=True)
    res = await options(SipTarget(LOOPBACK, port, transport="tcp"), timeout=2.0)
    assert not res.reachable and res.code == 503 and res.error is ErrorKind.BAD_REPLY


async def test_tcp_stray_responses_ignored(sipp: SippFactory) -> None:
    port = sipp("-sf", scenario("options-stray.xml"), tcp=True)
    res = await options(SipTarget(LOOPBACK, port, transport="tcp"), timeout=1.0)
    assert res.error is ErrorKind.TIMEOUT and res.ignored >= 2, res


async def test_tcp_no_listener_refused() -> None:
    port = free_port(socket.SOCK_STREAM)
    res = await options(SipTarget(LOOPBACK, port, transport="tcp"), timeout=1.0)
    assert not res.reachable and res.error is ErrorKind.REFUSED


# --- TLS (relay in front of SIPp over TCP) -----------------------------------------


@pytest.fixture
async def tls_front(sipp: SippFactory, tls_relay: TlsRelay) -> int:
    """A TLS port whose connections are relayed to a SIPp UAS over TCP."""
    return await tls_relay(sipp("-sn", "uas", "-aa", tcp=True))


async def test_tls_without_verification(tls_front: int) -> None:
    target = SipTarget(LOOPBACK, tls_front, transport="tls", tls_verify=False)
    res = await options(target, timeout=3.0)
    assert res.reachable and res.code == 200, res


async def test_tls_untrusted_certificate_fails(tls_front: int) -> None:
    res = await options(SipTarget(LOOPBACK, tls_front, transport="tls"), timeout=3.0)
    assert not res.reachable and res.code is None
    assert res.error is ErrorKind.BAD_REPLY and "not trusted" in res.detail


async def test_tls_verified_with_ca_file_and_name(
    tls_front: int, certificate: tuple[Path, Path]
) -> None:
    target = SipTarget(LOOPBACK, tls_front, transport="tls", tls_ca_file=str(certificate[0]),
                       server_name="sbc.lifeline.test")
    res = await options(target, timeout=3.0)
    assert res.reachable and res.code == 200, res
    wrong_name = SipTarget(LOOPBACK, tls_front, transport="tls",
                           tls_ca_file=str(certificate[0]), server_name="other.test")
    res = await options(wrong_name, timeout=3.0)
    assert not res.reachable and res.error is ErrorKind.BAD_REPLY


# --- REGISTER with digest ----------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
@pytest.mark.parametrize("tcp", [False, True])
async def test_register_answers_challenge(sipp: SippFactory, algorithm: str, tcp: bool) -> None:
    port = sipp("-sf", scenario("register-digest.xml"), "-key", "algorithm", algorithm, tcp=tcp)
    target = SipTarget(LOOPBACK, port, transport="tcp" if tcp else "udp")
    res = await register_check(target, "site1", "lifeline.test", "s3cret-pw", timeout=3.0)
    assert res.reachable and res.code == 200, res
    assert "s3cret-pw" not in repr(res)


async def test_telephony_register_loop_reports_registration(
    sipp: SippFactory, tmp_path: Path
) -> None:
    """A registration trunk in the daemon's telephony runtime: the password comes from its
    file, the REGISTER check answers the digest challenge, and the result is reported."""

    from controller.config import parse_config
    from controller.core.snapshot import Tally
    from controller.runtime.journal import Journal
    from controller.runtime.trunks import Telephony

    port = sipp("-sf", scenario("register-digest.xml"), "-key", "algorithm", "MD5")
    secret = tmp_path / "carrier-b"
    secret.write_text("s3cret-pw\n")
    cfg = parse_config(f"""
site: tel
links:
  - {{name: fibre-a, interface: lo, gateway: 127.0.0.1, probes: {{targets: [{{icmp: 127.0.0.1}}]}}}}
route_groups: [{{name: internet, links: [fibre-a]}}]
trunks:
  - name: b1
    carrier: carrier-b
    uri: "sip:{LOOPBACK}:{port}"
    register: {{user: site1, domain: lifeline.test, password_file: {secret}}}
""")
    tel = Telephony(cfg, Journal(tmp_path / "j.sqlite3"), Tally(), [])
    peer = tel.trunks["b1"]
    task = asyncio.create_task(tel._register_loop(peer))
    try:
        await until_async(lambda: peer.registered is not None, 5.0, 0.05,
                          "the trunk's REGISTER to be answered")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert peer.registered is not None and peer.registered.reachable, peer.registered
    trunks, _, _ = tel.snapshot(0.0)
    assert trunks[0].registered is True
