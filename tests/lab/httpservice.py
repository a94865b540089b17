"""The lab's site service: an aiohttp server a test can break, and the certificates it shows.

``HttpService`` is a stand-in for the CRM or the PBX's web side, run in the test's own event
loop on 127.0.0.1 (or on a listening socket the caller made inside a lab namespace): a
test sets ``status`` (500), ``delay`` (slow answers), ``body`` (what a body match sees),
or stops it (refused). ``make_pki`` makes, with the openssl CLI, a CA and leaf
certificates for ``crm.lifeline.test`` and 127.0.0.1 with chosen lifetimes (valid, about to
expire, already expired through ``openssl ca -startdate/-enddate``), plus a self-signed
one no CA vouches for. Everything it makes lives in the caller's temporary directory.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

SERVICE_NAME = "crm.lifeline.test"

_CA_CNF = """\
[ ca ]
default_ca = lab
[ lab ]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}
serial = {dir}/serial
default_md = sha256
policy = any
copy_extensions = copy
unique_subject = no
[ any ]
commonName = supplied
"""


@dataclass(frozen=True)
class Leaf:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA certificate a probe trusts with ca_file
    valid: Leaf  # 30 days
    expiring: Leaf  # 3 days
    expired: Leaf  # January 2020
    self_signed: Leaf  # no CA: untrusted


def openssl_missing() -> str | None:
    if shutil.which("openssl") is None:
        return "needs `openssl` (Debian package openssl) to make the test certificates"
    return None


def _run(*argv: str) -> None:
    subprocess.run(["openssl", *argv], check=True, capture_output=True, timeout=60)


def make_pki(directory: Path, name: str = SERVICE_NAME) -> Pki:
    """A CA and leaves for ``name`` and 127.0.0.1, made with the openssl CLI."""
    d = directory
    d.mkdir(parents=True, exist_ok=True)
    (d / "ca.cnf").write_text(_CA_CNF.format(dir=d))
    (d / "index.txt").write_text("")
    (d / "serial").write_text("01\n")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    _run("req", "-x509", *ec, "-days", "60", "-keyout", str(d / "ca.key"),
         "-out", str(d / "ca.pem"), "-subj", "/CN=lifeline lab CA")
    san = f"subjectAltName=DNS:{name},IP:127.0.0.1"

    def leaf(label: str, *dates: str) -> Leaf:
        key, csr, cert = d / f"{label}.key", d / f"{label}.csr", d / f"{label}.pem"
        _run("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}",
             "-addext", san)
        _run("ca", "-batch", "-config", str(d / "ca.cnf"), "-cert", str(d / "ca.pem"),
             "-keyfile", str(d / "ca.key"), "-in", str(csr), "-out", str(cert), *dates)
        return Leaf(cert, key)

    own = Leaf(d / "self.pem", d / "self.key")
    _run("req", "-x509", *ec, "-days", "30", "-keyout", str(own.key), "-out", str(own.cert),
         "-subj", f"/CN={name}", "-addext", san)
    return Pki(
        ca=d / "ca.pem",
        valid=leaf("valid", "-days", "30"),
        expiring=leaf("expiring", "-days", "3"),
        expired=leaf("expired", "-startdate", "20200101000000Z",
                     "-enddate", "20200201000000Z"),
        self_signed=own,
    )


class HttpService:
    """A web service on ``host``:``port`` (0: a free one) that answers ``GET/HEAD /health``
    (and any path) with ``status`` and ``body`` after ``delay`` seconds."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 tls: Leaf | None = None, sock: socket.socket | None = None) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        # A listening socket made by the caller, e.g. inside a lab namespace
        # (tests.lab.netns.inside): the service then lives in that namespace.
        self.sock = sock
        self.status = 200
        self.body = "ok: crm ready"
        self.delay = 0.0
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self._slow: set[asyncio.Task[object]] = set()

    @property
    def running(self) -> bool:
        return self._runner is not None

    def url(self, path: str = "/health", host: str | None = None) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.delay:
            task = asyncio.current_task()
            assert task is not None
            self._slow.add(task)
            try:
                await asyncio.sleep(self.delay)
            finally:
                self._slow.discard(task)
        return web.Response(status=self.status, text=self.body)

    async def start(self) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None,
                               shutdown_timeout=0.1)
        await runner.setup()
        ctx = None
        if self.tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(str(self.tls.cert), str(self.tls.key))
        site: web.BaseSite
        if self.sock is not None:
            site = web.SockSite(runner, self.sock, ssl_context=ctx)
        else:
            site = web.TCPSite(runner, self.host, self.port, ssl_context=ctx)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        """Stop listening (the port then refuses) and end open requests; idempotent."""
        runner, self._runner = self._runner, None
        # A slow answer still sleeping would outlive the test: end it first.
        slow = list(self._slow)
        for task in slow:
            task.cancel()
        await asyncio.gather(*slow, return_exceptions=True)
        if runner is not None:
            await runner.cleanup()
        await asyncio.sleep(0)  # let the connections' handlers see the close
