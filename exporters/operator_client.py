"""Client side of ``lifeline force``, ``pin``, ``maintenance`` and ``overrides``: send one
operator request to the daemon, over its unix socket (no token: the socket's file mode is
the access control) or over TCP with a bearer token, and hand back the status and the
JSON answer. A daemon that does not answer, or answers something that is not lifeline's
JSON, is an OSError: the CLI says "no daemon answers"."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp


@dataclass(frozen=True)
class Daemon:
    """Where the daemon is: its unix socket, or a URL and a token."""

    socket: Path | None = None
    url: str | None = None
    token: str | None = None


@asynccontextmanager
async def unix_session(socket_path: Path, timeout: float) -> AsyncIterator[aiohttp.ClientSession]:
    """A session to the daemon's unix socket; a missing socket or a client error is an
    OSError (what the CLI reports as "no daemon answers")."""
    if not socket_path.exists():
        raise FileNotFoundError(2, "socket does not exist", str(socket_path))
    conn = aiohttp.UnixConnector(path=str(socket_path))
    async with aiohttp.ClientSession(connector=conn,
                                     timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        try:
            yield session
        except aiohttp.ClientError as exc:
            raise OSError(str(exc)) from exc


def read_token(path: Path) -> str:
    """The token in ``path``: the first line that is not a comment, either the token alone
    or a `name token` line copied from the daemon's token file. ValueError otherwise."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read the token file {path}: {exc.strerror or exc}") from exc
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if words:
            if len(words) > 2:
                raise ValueError(f"{path}: expected the token alone or `name token`")
            return words[-1]
    raise ValueError(f"{path} holds no token")


def path_of(*parts: str) -> str:
    """An API path with each name quoted whole (a '/' or '..' in a name stays inside it)."""
    return "/api/v1/" + "/".join(quote(p, safe="+") for p in parts)


async def call(daemon: Daemon, method: str, path: str, body: dict[str, Any] | None = None,
               timeout: float = 5.0) -> tuple[int, Any]:
    """(HTTP status, parsed JSON answer) of one request."""
    if daemon.url is None:
        assert daemon.socket is not None
        async with unix_session(daemon.socket, timeout) as session, session.request(
                method, "http://lifeline" + path, json=body) as resp:
            return resp.status, await _answer(resp)
    headers = {} if daemon.token is None else {"Authorization": f"Bearer {daemon.token}"}
    try:
        async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=timeout)) as session, session.request(
                method, daemon.url.rstrip("/") + path, json=body, headers=headers) as resp:
            return resp.status, await _answer(resp)
    except aiohttp.ClientError as exc:
        raise OSError(str(exc) or type(exc).__name__) from exc


async def _answer(resp: aiohttp.ClientResponse) -> Any:
    try:
        return await resp.json(content_type=None)
    except ValueError as exc:  # not JSON: not lifeline answering
        raise OSError(f"HTTP {resp.status} with an answer that is not lifeline's JSON") from exc
