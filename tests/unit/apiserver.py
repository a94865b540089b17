"""Serve an aiohttp app from a thread with its own event loop, for tests whose client
runs its own loop (the CLI's asyncio.run, schemathesis' requests): on loopback TCP or on a
unix socket, stopped and joined at the end."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web


@contextmanager
def serving(app: web.Application, unix: Path | None = None) -> Iterator[str]:
    """Yields the base URL (TCP) or the socket's path (unix)."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    ready = threading.Event()
    where: list[str] = []
    failed: list[BaseException] = []

    async def start() -> None:
        await runner.setup()
        site: web.BaseSite
        if unix is not None:
            site = web.UnixSite(runner, str(unix))
            await site.start()
            where.append(str(unix))
        else:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            server = site._server
            assert isinstance(server, asyncio.base_events.Server)
            where.append(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(start())
        except BaseException as exc:
            failed.append(exc)
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, name="test-api-server", daemon=True)
    thread.start()
    assert ready.wait(10), "the test server did not start"
    if failed:
        raise failed[0]
    try:
        yield where[0]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
