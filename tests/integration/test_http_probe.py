"""The HTTP(S) service probe against a real aiohttp server on loopback (no root needed).

The server (tests.lab.httpservice) runs in the test's loop and is told to answer 500, to be
slow, or to stop; its certificates come from the openssl CLI (a CA with a 30-day, a 3-day
and an expired leaf, and a self-signed one). Every server is stopped in the fixture's
finalizer, also when a test fails.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from probes import http
from probes.registry import read_service, run_probe
from probes.sample import ErrorKind, HttpOptions, ProbeSpec
from tests.lab.httpservice import SERVICE_NAME, HttpService, Leaf, Pki, make_pki, openssl_missing

Start = Callable[..., Awaitable[HttpService]]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    reason = openssl_missing()
    if reason is not None:
        pytest.skip(reason)
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
async def service() -> AsyncIterator[Start]:
    """``await start(tls=None)`` -> a running HttpService; all are stopped at teardown."""
    made: list[HttpService] = []

    async def start(tls: Leaf | None = None) -> HttpService:
        svc = HttpService(tls=tls)
        made.append(svc)
        await svc.start()
        return svc

    try:
        yield start
    finally:
        for svc in made:
            await svc.stop()


def spec(url: str, host: str = "127.0.0.1", port: int | None = None,
         **options: object) -> ProbeSpec:
    return ProbeSpec("http", host, port or urlsplit(url).port,
                     http=HttpOptions(url=url, **options))  # type: ignore[arg-type]


def not_after(cert: Path) -> float:
    out = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-enddate"],
                         check=True, capture_output=True, text=True).stdout
    text = out.strip().split("=", 1)[1]
    return datetime.strptime(text, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC).timestamp()


async def test_a_healthy_service_is_ok_with_its_status_and_latency(service: Start) -> None:
    svc = await service()
    reading = await http.check(spec(svc.url()), timeout=2.0)
    assert reading.ok, reading
    assert reading.code == 200
    assert reading.latency is not None and 0 < reading.latency < 2.0
    assert reading.cert_days_left is None  # plain HTTP has no certificate
    assert svc.requests == 1


async def test_a_500_fails_with_bad_status_and_the_code(service: Start) -> None:
    svc = await service()
    svc.status = 500
    reading = await http.check(spec(svc.url()), timeout=2.0)
    assert not reading.ok
    assert reading.error is ErrorKind.BAD_STATUS
    assert reading.code == 500
    assert "HTTP 500" in reading.detail


async def test_expected_statuses_are_the_operators_choice(service: Start) -> None:
    svc = await service()
    svc.status = 204
    assert (await http.check(spec(svc.url()), timeout=2.0)).ok  # default 200-399
    only_200 = await http.check(spec(svc.url(), expect_status=frozenset({200})), timeout=2.0)
    assert not only_200.ok and only_200.code == 204
    svc.status = 401
    accepted = await http.check(spec(svc.url(), expect_status=frozenset({401})), timeout=2.0)
    assert accepted.ok


async def test_a_slow_service_times_out(service: Start) -> None:
    svc = await service()
    svc.delay = 3.0
    began = time.monotonic()
    reading = await http.check(spec(svc.url()), timeout=0.5)
    took = time.monotonic() - began
    assert not reading.ok and reading.error is ErrorKind.TIMEOUT
    assert "0.5 s" in reading.detail
    assert took < 2.0  # the timeout holds, it does not wait for the server


async def test_a_stopped_service_is_refused(service: Start) -> None:
    svc = await service()
    url = svc.url()
    await svc.stop()
    reading = await http.check(spec(url), timeout=2.0)
    assert not reading.ok and reading.error is ErrorKind.REFUSED


async def test_the_body_must_match_a_substring_or_a_regex(service: Start) -> None:
    svc = await service()
    svc.body = "status: degraded\ndb: down"
    miss = await http.check(spec(svc.url(), body_match="crm ready"), timeout=2.0)
    assert not miss.ok and miss.error is ErrorKind.BODY_MISMATCH
    assert miss.code == 200 and "crm ready" in miss.detail
    hit = await http.check(spec(svc.url(), body_match="db: down"), timeout=2.0)
    assert hit.ok
    assert (await http.check(spec(svc.url(), body_regex=r"^db: (up|down)$"),
                             timeout=2.0)).ok
    assert not (await http.check(spec(svc.url(), body_regex=r"^db: up$"), timeout=2.0)).ok


async def test_the_body_match_reads_only_the_first_64_kib(service: Start) -> None:
    svc = await service()
    svc.body = "x" * (http.BODY_LIMIT + 10) + "needle"
    reading = await http.check(spec(svc.url(), body_match="needle"), timeout=2.0)
    assert not reading.ok and reading.error is ErrorKind.BODY_MISMATCH
    assert f"first {http.BODY_LIMIT} bytes" in reading.detail


async def test_head_checks_the_status_only(service: Start) -> None:
    svc = await service()
    reading = await http.check(spec(svc.url(), method="HEAD"), timeout=2.0)
    assert reading.ok and reading.code == 200


async def test_https_reports_the_certificates_days_left(service: Start, pki: Pki) -> None:
    for leaf, days in ((pki.valid, 30), (pki.expiring, 3)):
        svc = await service(tls=leaf)
        url = svc.url(host=SERVICE_NAME)
        reading = await http.check(spec(url, ca_file=str(pki.ca)), timeout=2.0)
        assert reading.ok, reading
        assert reading.cert_days_left is not None
        assert abs(reading.cert_days_left - days) < 1.0
        assert reading.cert_not_after is not None
        assert abs(reading.cert_not_after - not_after(leaf.cert)) < 1.0
        # HEAD: the connection is released with the headers; the certificate is kept.
        head = await http.check(spec(url, ca_file=str(pki.ca), method="HEAD"), timeout=2.0)
        assert head.cert_days_left is not None and abs(head.cert_days_left - days) < 1.0


async def test_an_untrusted_certificate_fails_when_verifying(service: Start, pki: Pki) -> None:
    svc = await service(tls=pki.self_signed)
    url = svc.url(host=SERVICE_NAME)
    reading = await http.check(spec(url), timeout=2.0)  # system CAs: not the lab's
    assert not reading.ok and reading.error is ErrorKind.TLS
    assert "certificate" in reading.detail
    # The days left are still read (a second handshake that verifies nothing).
    assert reading.cert_days_left is not None and abs(reading.cert_days_left - 30) < 1.0
    unverified = await http.check(spec(url, verify=False), timeout=2.0)
    assert unverified.ok and unverified.cert_days_left is not None


async def test_an_expired_certificate_fails_and_shows_negative_days(service: Start,
                                                                    pki: Pki) -> None:
    svc = await service(tls=pki.expired)
    url = svc.url(host=SERVICE_NAME)
    reading = await http.check(spec(url, ca_file=str(pki.ca)), timeout=2.0)
    assert not reading.ok and reading.error is ErrorKind.TLS
    assert "expired" in reading.detail
    assert reading.cert_days_left is not None
    expected = (not_after(pki.expired.cert) - time.time()) / 86400
    assert reading.cert_days_left < -300 and abs(reading.cert_days_left - expected) < 1.0


async def test_a_wrong_server_name_fails_and_server_name_fixes_it(service: Start,
                                                                  pki: Pki) -> None:
    svc = await service(tls=pki.valid)
    wrong = svc.url(host="pbx.lifeline.test")
    reading = await http.check(spec(wrong, ca_file=str(pki.ca)), timeout=2.0)
    assert not reading.ok and reading.error is ErrorKind.TLS
    named = await http.check(spec(wrong, ca_file=str(pki.ca), server_name=SERVICE_NAME),
                             timeout=2.0)
    assert named.ok, named


async def test_the_probe_table_and_the_service_guard_run_http_and_tcp(
        service: Start) -> None:
    svc = await service()
    sample = await run_probe(spec(svc.url()), 2.0)
    assert sample.ok and sample.code == 200
    tcp = await read_service(ProbeSpec("tcp", "127.0.0.1", svc.port), 2.0)
    assert tcp.ok and tcp.latency is not None
    svc.status = 503
    reading = await read_service(spec(svc.url()), 2.0)
    assert not reading.ok and reading.code == 503
    await svc.stop()
    gone = await read_service(ProbeSpec("tcp", "127.0.0.1", svc.port), 2.0)
    assert not gone.ok and gone.error is ErrorKind.REFUSED


async def test_a_service_name_is_resolved_by_the_guard_and_the_source_bound(
        service: Start) -> None:
    svc = await service()
    # The source pins the lookup to IPv4 and the socket to 127.0.0.1 (the socket factory).
    reading = await read_service(
        ProbeSpec("http", "localhost", svc.port, source="127.0.0.1",
                  http=HttpOptions(url=svc.url(host="localhost"))), 2.0)
    assert reading.ok, reading
    elsewhere = await read_service(
        ProbeSpec("http", "127.0.0.1", svc.port, source="192.0.2.77",
                  http=HttpOptions(url=svc.url())), 2.0)
    assert not elsewhere.ok and elsewhere.error is ErrorKind.NETWORK


@pytest.mark.parametrize("answer", [
    b"SIP/2.0 200 OK\r\n\r\n",  # not HTTP
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",  # cut mid-body
    b"",  # closed without a word
])
async def test_what_is_not_usable_http_is_a_bad_reply(answer: bytes) -> None:
    async def reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(reply, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}/health"
        reading = await http.check(spec(url, body_match="x"), timeout=2.0)
    finally:
        server.close()
        await server.wait_closed()
    assert not reading.ok and reading.error is ErrorKind.BAD_REPLY, reading
