"""The lab's site service (tests.lab.httpservice) for the synchronous lab tests: an
``HttpService`` in a thread with its own event loop, listening inside a lab namespace (the
site's own loopback, say, where the daemon checks it), that the test breaks and mends from
its own thread. Stopped (thread joined, socket closed) by ``close``, which the caller's
finalizer runs also on failure."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine
from typing import Any

from tests.lab.httpservice import HttpService, Leaf
from tests.lab.netns import inside

__all__ = ["ServiceThread"]


class ServiceThread:
    """An HttpService on ``host``:<free port> inside namespace ``ns``, in a thread."""

    def __init__(self, ns: str, host: str = "127.0.0.1", tls: Leaf | None = None) -> None:
        with inside(ns):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        sock.listen(16)
        self.service = HttpService(host=host, tls=tls, sock=sock)
        self._sock = sock
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lab-service",
                                        daemon=True)
        self._thread.start()
        self._call(self.service.start())

    def _call(self, coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def url(self, path: str = "/health") -> str:
        return self.service.url(path)

    def set(self, **attrs: Any) -> None:
        """Change how it answers (``status=500``, ``delay=3.0``), in its own loop."""
        async def apply() -> None:
            for key, value in attrs.items():
                setattr(self.service, key, value)
        self._call(apply())

    @property
    def requests(self) -> int:
        return self.service.requests

    def close(self) -> None:
        """Stop the service, the loop and the thread; idempotent."""
        if self._thread.is_alive():
            try:
                self._call(self.service.stop())
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(10)
        if not self._loop.is_closed() and not self._thread.is_alive():
            self._loop.close()
        self._sock.close()
