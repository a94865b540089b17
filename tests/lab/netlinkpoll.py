"""The moment the kernel of a lab namespace shows something, to a few ms, from a thread.

A benchmark that times "fault -> kernel -> daemon -> page" needs the kernel's own moment,
not the daemon's word for it. pyroute2 sockets belong to the thread that opens them, so
the thread enters the namespace itself, opens its socket there and polls every 2 ms until
``seen`` says yes (or ``limit`` seconds pass). It only reads. A subclass says what to look
for (``seen``) and on which clock the moment is told (``clock``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Self

from pyroute2 import IPRoute

from tests.lab.netns import inside


class NetlinkPoll:
    """``at``: the ``clock()`` time ``seen`` first said yes, None if not within ``limit``;
    ``error``: why the poll broke (a broken watch must not break the trial)."""

    clock: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(self, ns: str, ifname: str, limit: float, name: str) -> None:
        self._ns, self._ifname, self._limit = ns, ifname, limit
        self._ready = threading.Event()
        self._stop = threading.Event()
        self.at: float | None = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._poll, name=name, daemon=True)

    def seen(self, ipr: IPRoute, index: int) -> bool:
        """Whether the kernel shows it now; ``index`` is ``ifname``'s interface index."""
        raise NotImplementedError

    def start(self) -> Self:
        """Start polling; returns once the thread has its netlink socket in the namespace."""
        self._thread.start()
        self._ready.wait(5.0)
        return self

    def stop(self) -> None:
        """Stop polling at the next round (``at`` stays None if not seen by then)."""
        self._stop.set()

    def join(self) -> None:
        self._thread.join(self._limit + 1.0)

    def _poll(self) -> None:
        try:
            with inside(self._ns):
                ipr = IPRoute()
            try:
                index = int(ipr.link_lookup(ifname=self._ifname)[0])
                self._ready.set()
                end = time.monotonic() + self._limit
                while time.monotonic() < end and not self._stop.is_set():
                    if self.seen(ipr, index):
                        self.at = self.clock()
                        return
                    time.sleep(0.002)
            finally:
                ipr.close()
        except Exception as exc:  # a broken watch must not break the trial
            self.error = repr(exc)
        finally:
            self._ready.set()
