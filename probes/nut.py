"""Read a UPS from NUT's upsd (TCP 3493) into a ``UpsReading``; never raises.

An own small client on asyncio streams rather than aionut: aionut (the asyncio client Home
Assistant uses) has no STARTTLS, no LOGIN and does not undo upsd's ``\\"`` escapes, and
those are the parts a site's upsd needs (TLS to a UPS on another host, credentials proven
before they are needed, a model name with a quote in it). What we need of the protocol is
five commands, so owning them costs less than patching around a dependency, and the tests
run them against the real upsd. One read is one connection: optional ``STARTTLS`` (then the
stream is upgraded, certificate verified by default), optional ``USERNAME``/``PASSWORD``
followed by ``LOGIN <ups>`` (upsd only checks a password at LOGIN, and a wrong one must
show before the day it matters), one ``LIST VAR <ups>`` (every variable in one round trip),
then ``LOGOUT``. Each line is bounded (``MAX_LINE``), the whole reply too (``MAX_VARS``),
and the whole read by ``timeout``. ``ERR DATA-STALE`` and ``ERR DRIVER-NOT-CONNECTED`` are
failed readings (BAD_REPLY, upsd's words in the detail): upsd itself judges a driver stale
after its MAXAGE, so a UPS whose driver stopped updating is unknown, never on mains. The
boundary: the wire and the mapping to ``UpsReading``; what the state means is the power
core's.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import ssl
from dataclasses import dataclass

from probes.nutproto import (
    MAX_VARS,
    NutReplyError,
    NutServerError,
    VarList,
    check_ok,
    shown,
)
from probes.sample import ErrorKind
from probes.ups import FLAGS, UpsReading

__all__ = ["DEFAULT_PORT", "MAX_LINE", "NutTls", "read_ups", "reading_of"]

DEFAULT_PORT = 3493
# upsd's longest value is 256 bytes (ST_MAX_VALUE_LEN); a line of 1 KiB has room to spare.
MAX_LINE = 1024
_CLOSE_GRACE = 0.5  # seconds LOGOUT and the close get after the reading is made


@dataclass(frozen=True, slots=True)
class NutTls:
    """STARTTLS towards upsd: the certificate is verified unless ``verify`` is False."""

    verify: bool = True
    ca_file: str | None = None  # PEM of the CA that signed upsd's certificate
    server_name: str | None = None  # SNI and the name checked; default the host

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


class _Failed(Exception):
    def __init__(self, error: ErrorKind, detail: str) -> None:
        super().__init__(detail)
        self.error = error
        self.detail = detail


def _os_failure(exc: OSError, what: str) -> _Failed:
    text = f"{what}: {exc.strerror or exc}"
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return _Failed(ErrorKind.REFUSED, f"{text} (is upsd listening there?)")
    if exc.errno in (errno.EHOSTUNREACH, errno.EHOSTDOWN):
        return _Failed(ErrorKind.UNREACHABLE, text)
    if exc.errno == errno.ETIMEDOUT:
        return _Failed(ErrorKind.TIMEOUT, text)
    return _Failed(ErrorKind.NETWORK, text)


class _Session:
    """One connection's line exchange; every protocol fault becomes ``_Failed``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.step = "connect"

    async def send(self, command: str, shown_as: str | None = None) -> None:
        self.step = shown_as or command
        self.writer.write(command.encode() + b"\n")
        await self.writer.drain()

    def send_all(self, commands: list[str]) -> None:
        self.writer.write("".join(c + "\n" for c in commands).encode())

    async def line(self) -> str:
        try:
            raw = await self.reader.readuntil(b"\n")
        except asyncio.LimitOverrunError as exc:
            raise _Failed(ErrorKind.BAD_REPLY,
                          f"{self.step}: a reply line longer than {MAX_LINE} bytes") from exc
        except asyncio.IncompleteReadError as exc:
            what = "mid-line" if exc.partial else "before answering"
            raise _Failed(ErrorKind.BAD_REPLY,
                          f"{self.step}: upsd closed the connection {what}") from exc
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    async def expect(self, expected: str = "OK") -> None:
        check_ok(await self.line(), expected)


def _number(vars_: dict[str, str], name: str, scale: float, notes: list[str]) -> float | None:
    text = vars_.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        notes.append(f"{name} {shown(text, 20)} is not a number")
        return None
    return value / scale


def reading_of(ups: str, vars_: dict[str, str]) -> UpsReading:
    """The reading a LIST VAR reply makes: no known status word is a failed reading.

    Words of ``ups.status`` outside ``FLAGS`` (a vendor's own, upsd's ``WAIT`` before the
    driver's first update) stay out of ``flags`` and are named in the detail; a status with
    no known word at all says nothing about power, so it is a failure, not a guess.
    """
    status = vars_.get("ups.status")
    if status is None:
        return UpsReading.failure(ErrorKind.BAD_REPLY, f"UPS {ups} reports no ups.status")
    words = status.split()
    flags = frozenset(w for w in words if w in FLAGS)
    unknown = [w for w in words if w not in FLAGS]
    if not flags:
        return UpsReading.failure(
            ErrorKind.BAD_REPLY,
            f"UPS {ups}: ups.status {shown(status)} has no status word this client knows",
        )
    notes: list[str] = []
    if unknown:
        notes.append("ups.status also says " + shown(" ".join(unknown)))
    return UpsReading(
        ok=True,
        flags=flags,
        charge=_number(vars_, "battery.charge", 100.0, notes),
        runtime=_number(vars_, "battery.runtime", 1.0, notes),
        input_voltage=_number(vars_, "input.voltage", 1.0, notes),
        load=_number(vars_, "ups.load", 100.0, notes),
        detail="; ".join(notes),
    )


async def _exchange(session: _Session, host: str, ups: str, tls: NutTls | None,
                    username: str | None, password: str | None) -> dict[str, str]:
    if tls is not None:
        await session.send("STARTTLS")
        await session.expect("OK STARTTLS")
        session.step = "TLS handshake"
        await session.writer.start_tls(tls.context(), server_hostname=tls.server_name or host)
    # The rest is pipelined: one write, then the answers in order (upsd reads line by
    # line); one round trip instead of four, and the first ERR ends the read.
    commands: list[tuple[str, str, str]] = []  # (line, step shown, expected answer)
    if username is not None:
        commands += [(f"USERNAME {_quoted(username)}", "USERNAME", "OK"),
                     (f"PASSWORD {_quoted(password or '')}", "PASSWORD", "OK"),
                     (f"LOGIN {_quoted(ups)}", f"LOGIN {ups}", "OK")]
    session.send_all([line for line, _, _ in commands] + [f"LIST VAR {_quoted(ups)}"])
    await session.writer.drain()
    for _, step, expected in commands:
        session.step = step
        await session.expect(expected)
    session.step = f"LIST VAR {ups}"
    listing = VarList(ups, MAX_VARS)
    while True:
        result = listing.feed(await session.line())
        if result is not None:
            return result


def _quoted(word: str) -> str:
    """A command argument upsd reads back as ``word`` (quotes and backslashes escaped)."""
    if word and all(c.isalnum() or c in "-_.@:" for c in word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _bad_argument(host: str, ups: str, username: str | None, password: str | None,
                  timeout: float) -> str | None:
    if timeout <= 0 or not math.isfinite(timeout):
        return "timeout must be a positive number of seconds"
    for what, value in (("host", host), ("ups", ups), ("username", username),
                        ("password", password)):
        if value is not None and any(c in value for c in "\r\n\0"):
            return f"{what} holds a line break or NUL"
    if not ups:
        return "no UPS name"
    if password is not None and username is None:
        return "a password without a username"
    return None


async def _close(writer: asyncio.StreamWriter, logout: bool) -> None:
    """LOGOUT after a good read (upsd logs a dropped client otherwise); a failed one is
    just closed, so a read never takes much longer than its timeout."""
    try:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_CLOSE_GRACE):
                if logout:
                    writer.write(b"LOGOUT\n")
                    await writer.drain()
                writer.close()
                await writer.wait_closed()
    finally:
        writer.close()  # idempotent: closed even if the grace ran out or we were cancelled


async def read_ups(host: str, port: int, ups: str, *, timeout: float,
                   username: str | None = None, password: str | None = None,
                   tls: NutTls | None = None) -> UpsReading:
    """One read of ``ups`` on upsd at ``host``:``port``, all within ``timeout`` seconds.

    The password comes from the caller (the config layer reads it from a file or the
    environment) and goes nowhere but upsd: never into a detail.
    """
    bad = _bad_argument(host, ups, username, password, timeout)
    if bad is not None:
        return UpsReading.failure(ErrorKind.INTERNAL, bad)
    writer: asyncio.StreamWriter | None = None
    session: _Session | None = None
    read = False
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_connection(host, port, limit=MAX_LINE)
            except OSError as exc:
                raise _os_failure(exc, f"connect to {host}:{port}") from exc
            session = _Session(reader, writer)
            vars_ = await _exchange(session, host, ups, tls, username, password)
            read = True
        return reading_of(ups, vars_)
    except _Failed as exc:
        return UpsReading.failure(exc.error, exc.detail)
    except TimeoutError:
        step = session.step if session is not None else "connect"
        return UpsReading.failure(ErrorKind.TIMEOUT,
                                  f"no answer from upsd within {timeout:g} s (at {step})")
    except NutServerError as exc:
        step = session.step if session is not None else "?"
        return UpsReading.failure(ErrorKind.BAD_REPLY,
                                  f"upsd: ERR {exc.word} at {step}: {exc.meaning}")
    except NutReplyError as exc:
        step = session.step if session is not None else "?"
        return UpsReading.failure(ErrorKind.BAD_REPLY, f"{step}: {exc.reason}")
    except ssl.SSLCertVerificationError as exc:
        return UpsReading.failure(ErrorKind.BAD_REPLY,
                                  f"TLS certificate not trusted: {exc.verify_message}")
    except ssl.SSLError as exc:
        return UpsReading.failure(ErrorKind.BAD_REPLY, f"TLS: {exc.reason or exc}")
    except OSError as exc:
        failed = _os_failure(exc, session.step if session is not None else "connect")
        return UpsReading.failure(failed.error, failed.detail)
    except Exception as exc:  # a probe never raises into the scheduler: a bug is data too
        return UpsReading.failure(ErrorKind.INTERNAL, f"{type(exc).__name__}: {exc}")
    finally:
        if writer is not None:
            await _close(writer, logout=read)
