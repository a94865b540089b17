"""read_ups against fake upsds on 127.0.0.1: every hostile answer is a failed reading.

The fakes speak just enough of NUT's protocol for each case (garbage, a disconnect
mid-reply, ERR words, a reply that never ends, silence, STARTTLS refused or done with a
certificate made here by openssl); the real upsd is tests/integration/test_nut_upsd.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from probes.nut import MAX_LINE, NutTls, read_ups
from probes.nutproto import split_words
from probes.sample import ErrorKind
from tests.lab.kamailio import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

GOOD_VARS = {"ups.status": "OB DISCHRG", "battery.charge": "64", "battery.runtime": "900",
             "input.voltage": "0.0", "ups.load": "40", "device.model": 'Rack "A" \\ 2'}


def _var_list(ups: str, vars_: dict[str, str]) -> bytes:
    body = "".join(
        f'VAR {ups} {k} "' + v.replace("\\", "\\\\").replace('"', '\\"') + '"\n'
        for k, v in vars_.items())
    return f"BEGIN LIST VAR {ups}\n{body}END LIST VAR {ups}\n".encode()


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[int]:
    """A fake upsd on 127.0.0.1; its connection tasks end with the block."""
    tasks: set[asyncio.Task[None]] = set()

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            pass  # the block ended: a fake ends quietly (asyncio logs a cancelled handler)
        finally:
            writer.close()

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()
        if tasks:  # the client has closed: let each fake read its last lines (LOGOUT)
            await asyncio.wait(tasks, timeout=0.5)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


class FakeUpsd:
    """Answers like upsd: OK to USERNAME/PASSWORD/LOGIN, ``vars`` to LIST VAR, unless
    ``answers`` holds another reply for a command's first word (or for ``LIST``)."""

    def __init__(self, vars_: dict[str, str] | None = None, ups: str = "dummy",
                 answers: dict[str, bytes] | None = None, password: str | None = None) -> None:
        self.vars = GOOD_VARS if vars_ is None else vars_
        self.ups = ups
        self.answers = answers or {}
        self.password = password
        self.received: list[list[str]] = []
        self.tls: ssl.SSLContext | None = None

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        given_password = None
        while line := await reader.readline():
            words = split_words(line.decode().rstrip("\n"))
            self.received.append(words)
            cmd = words[0] if words else ""
            if cmd in self.answers:
                writer.write(self.answers[cmd])
            elif cmd == "STARTTLS" and self.tls is not None:
                writer.write(b"OK STARTTLS\n")
                await writer.drain()
                await writer.start_tls(self.tls)
                continue
            elif cmd in ("USERNAME", "LOGOUT"):
                writer.write(b"OK\n" if cmd == "USERNAME" else b"OK Goodbye\n")
            elif cmd == "PASSWORD":
                given_password = words[1]
                writer.write(b"OK\n")
            elif cmd == "LOGIN":
                ok = self.password is None or given_password == self.password
                writer.write(b"OK\n" if ok else b"ERR ACCESS-DENIED\n")
            elif words[:2] == ["LIST", "VAR"]:
                if words[2] != self.ups:
                    writer.write(b"ERR UNKNOWN-UPS\n")
                else:
                    writer.write(_var_list(self.ups, self.vars))
            else:
                writer.write(b"ERR UNKNOWN-COMMAND\n")
            await writer.drain()


async def test_a_good_upsd_gives_flags_ratios_and_seconds() -> None:
    fake = FakeUpsd()
    async with serving(fake) as port:
        r = await read_ups("127.0.0.1", port, "dummy", timeout=2.0)
    assert r.ok and r.flags == {"OB", "DISCHRG"}
    assert (r.charge, r.runtime, r.input_voltage, r.load) == (0.64, 900.0, 0.0, 0.40)
    assert [w[:2] for w in fake.received] == [["LIST", "VAR"], ["LOGOUT"]]


async def test_credentials_are_sent_quoted_then_login_then_logout() -> None:
    password = 'p a"s\\s'
    fake = FakeUpsd(password=password)
    async with serving(fake) as port:
        r = await read_ups("127.0.0.1", port, "dummy", timeout=2.0,
                           username="monitor", password=password)
    assert r.ok, r.detail
    assert fake.received == [["USERNAME", "monitor"], ["PASSWORD", password],
                             ["LOGIN", "dummy"], ["LIST", "VAR", "dummy"], ["LOGOUT"]]


async def test_a_wrong_password_is_access_denied_and_not_repeated() -> None:
    async with serving(FakeUpsd(password="right")) as port:
        r = await read_ups("127.0.0.1", port, "dummy", timeout=2.0,
                           username="monitor", password="wrong-secret")
    assert not r.ok and r.error is ErrorKind.BAD_REPLY
    assert "ACCESS-DENIED" in r.detail and "LOGIN" in r.detail
    assert "wrong-secret" not in r.detail


@pytest.mark.parametrize(("word", "meaning"), [
    ("DATA-STALE", "MAXAGE"),
    ("DRIVER-NOT-CONNECTED", "driver"),
    ("VAR-NOT-SUPPORTED", "does not report"),
    ("ACCESS-DENIED", "access denied"),
    ("BRAND-NEW", "does not know"),
])
async def test_every_err_word_is_a_failed_reading_in_upsds_words(word: str, meaning: str) -> None:
    async with serving(FakeUpsd(answers={"LIST": f"ERR {word}\n".encode()})) as port:
        r = await read_ups("127.0.0.1", port, "dummy", timeout=2.0)
    assert not r.ok and r.error is ErrorKind.BAD_REPLY and not r.flags
    assert f"ERR {word}" in r.detail and meaning in r.detail


async def test_an_unknown_ups_is_named() -> None:
    async with serving(FakeUpsd()) as port:
        r = await read_ups("127.0.0.1", port, "rack9", timeout=2.0)
    assert not r.ok and "UNKNOWN-UPS" in r.detail and "rack9" in r.detail


async def test_a_ups_that_lacks_a_variable_reads_without_it() -> None:
    async with serving(FakeUpsd({"ups.status": "OL", "battery.charge": "100"})) as port:
        r = await read_ups("127.0.0.1", port, "dummy", timeout=2.0)
    assert r.ok and r.charge == 1.0 and r.runtime is None and r.load is None


@pytest.mark.parametrize("reply", [
    b"HTTP/1.1 400 Bad Request\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n",
    b'BEGIN LIST VAR dummy\nVAR dummy ups.status "OL\n',
    b"BEGIN LIST VAR other\n",
])
async def test_garbage_is_a_bad_reply(reply: bytes) -> None:
    async with serving(FakeUpsd(answers={"LIST": reply})) as port:
        r = await read_ups("127.0.0.1", port, "dummy", timeout=1.0)
    assert not r.ok and r.error is ErrorKind.BAD_REPLY, r


async def test_a_disconnect_mid_reply_is_a_bad_reply() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b'BEGIN LIST VAR dummy\nVAR dummy ups.status "O')
        await writer.drain()
        writer.transport.abort()

    async with serving(cut) as port:
        r = await read_ups("127.0.0.1", port, "dummy", timeout=2.0)
    assert not r.ok and r.error is ErrorKind.BAD_REPLY and "closed" in r.detail


async def test_a_list_that_never_ends_is_cut_before_the_timeout() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.write(b"BEGIN LIST VAR dummy\n")
        for i in range(100_000):
            writer.write(f'VAR dummy v{i} "1"\n'.encode())
            await writer.drain()

    async with serving(endless) as port:
        start = time.monotonic()
        r = await read_ups("127.0.0.1", port, "dummy", timeout=10.0)
    assert not r.ok and r.error is ErrorKind.BAD_REPLY and "did not end" in r.detail
    assert time.monotonic() - start < 5.0


async def test_a_line_that_never_ends_is_cut_at_the_line_bound() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        for _ in range(1000):
            writer.write(b"x" * 1024)
            await writer.drain()

    async with serving(endless) as port:
        r = await read_ups("127.0.0.1", port, "dummy", timeout=5.0)
    assert not r.ok and r.error is ErrorKind.BAD_REPLY and str(MAX_LINE) in r.detail


async def test_a_silent_upsd_is_a_timeout_within_the_bound() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        await asyncio.sleep(30)

    async with serving(silent) as port:
        start = time.monotonic()
        r = await read_ups("127.0.0.1", port, "dummy", timeout=0.3)
        took = time.monotonic() - start
    assert not r.ok and r.error is ErrorKind.TIMEOUT and "LIST VAR dummy" in r.detail
    assert took < 2.0


async def test_nobody_listening_is_refused() -> None:
    r = await read_ups("127.0.0.1", free_port(), "dummy", timeout=2.0)
    assert not r.ok and r.error is ErrorKind.REFUSED


@pytest.mark.parametrize(("kwargs", "what"), [
    ({"timeout": 0.0}, "timeout"),
    ({"timeout": 1.0, "password": "x"}, "without a username"),
    ({"timeout": 1.0, "username": "a\nLOGOUT"}, "line break"),
])
async def test_bad_arguments_fail_without_a_connection(kwargs: dict[str, object],
                                                      what: str) -> None:
    r = await read_ups("127.0.0.1", 1, "dummy", **kwargs)  # type: ignore[arg-type]
    assert not r.ok and r.error is ErrorKind.INTERNAL and what in r.detail


async def test_starttls_refused_is_named() -> None:
    async with serving(FakeUpsd(answers={"STARTTLS": b"ERR FEATURE-NOT-CONFIGURED\n"})) as port:
        r = await read_ups("127.0.0.1", port, "dummy", timeout=2.0, tls=NutTls())
    assert not r.ok and r.error is ErrorKind.BAD_REPLY
    assert "FEATURE-NOT-CONFIGURED" in r.detail and "STARTTLS" in r.detail


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(cert, key) of a self-signed certificate for ups.lifeline.test and 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("needs `openssl` (Debian package openssl) to make a test certificate")
    d = tmp_path_factory.mktemp("nut-tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "1", "-keyout", str(key), "-out", str(cert),
         "-subj", "/CN=ups.lifeline.test",
         "-addext", "subjectAltName=DNS:ups.lifeline.test,IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60)
    return cert, key


def _tls_fake(certificate: tuple[Path, Path]) -> FakeUpsd:
    fake = FakeUpsd()
    fake.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    fake.tls.load_cert_chain(*certificate)
    return fake


async def test_starttls_upgrades_and_verifies_the_certificate(
        certificate: tuple[Path, Path]) -> None:
    fake = _tls_fake(certificate)
    tls = NutTls(ca_file=str(certificate[0]), server_name="ups.lifeline.test")
    async with serving(fake) as port:
        r = await read_ups("127.0.0.1", port, "dummy", timeout=3.0, username="monitor",
                           password="s", tls=tls)
    assert r.ok, r.detail
    assert [w[0] for w in fake.received] == ["STARTTLS", "USERNAME", "PASSWORD", "LOGIN",
                                              "LIST", "LOGOUT"]


async def test_starttls_checks_the_address_when_no_name_is_given(
        certificate: tuple[Path, Path]) -> None:
    async with serving(_tls_fake(certificate)) as port:
        r = await read_ups("127.0.0.1", port, "dummy", timeout=3.0,
                           tls=NutTls(ca_file=str(certificate[0])))
    assert r.ok, r.detail


@pytest.mark.parametrize(("tls", "ok"), [
    (NutTls(), False),  # the system CAs do not know the test certificate
    (NutTls(server_name="other.lifeline.test"), False),
    (NutTls(verify=False), True),
])
async def test_an_untrusted_certificate_fails_unless_verification_is_off(
        certificate: tuple[Path, Path], tls: NutTls, ok: bool) -> None:
    if tls.server_name is not None:
        tls = NutTls(ca_file=str(certificate[0]), server_name=tls.server_name)
    async with serving(_tls_fake(certificate)) as port:
        r = await read_ups("127.0.0.1", port, "dummy", timeout=3.0, tls=tls)
    assert r.ok is ok, r.detail
    if not ok:
        assert r.error is ErrorKind.BAD_REPLY and "TLS" in r.detail


async def test_a_cancelled_read_raises_cancelled_and_closes_the_connection() -> None:
    closed = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        await reader.read()  # until the client closes
        closed.set()

    async with serving(silent) as port:
        task = asyncio.create_task(read_ups("127.0.0.1", port, "dummy", timeout=30.0))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(closed.wait(), 2.0)
