"""When the kernel's default route of the site moves to a given interface, to a few ms.

A benchmark that times "route changed -> something else noticed" needs the moment the
kernel holds the new route, not when the daemon says so: a thread enters the site's
namespace, opens its own netlink socket there and polls the main table every 2 ms until
the default route leaves through the interface it waits for (or through it among the
nexthops of a multipath route). It only reads; it is bounded by ``limit`` seconds.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from pyroute2 import IPRoute

from tests.lab.netns import inside


def _devices(route: Any) -> set[int]:
    oif = route.get_attr("RTA_OIF")
    found = {int(oif)} if oif is not None else set()
    for hop in route.get_attr("RTA_MULTIPATH") or []:
        found.add(int(hop["oif"]))
    return found


class RouteWatch:
    """Polls from a thread; ``at`` is the wall-clock time (``time.time()``) the default
    route was first seen leaving through ``ifname``, None if not within ``limit``."""

    def __init__(self, ns: str, ifname: str, limit: float = 15.0, table: int = 254) -> None:
        self._ns, self._ifname, self._limit, self._table = ns, ifname, limit, table
        self._ready = threading.Event()
        self._stop = threading.Event()
        self.at: float | None = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._poll, name="route-watch", daemon=True)

    def start(self) -> RouteWatch:
        """Start polling; returns once the thread has its netlink socket in the site."""
        self._thread.start()
        self._ready.wait(5.0)
        return self

    def join(self) -> None:
        self._stop.set()
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
                    # The per-link tables hold default routes too: only the group's counts.
                    routes = [r for r in ipr.get_default_routes(table=self._table)
                              if (r.get_attr("RTA_TABLE") or r["table"]) == self._table]
                    if any(index in _devices(r) for r in routes):
                        self.at = time.time()
                        return
                    time.sleep(0.002)
            finally:
                ipr.close()
        except Exception as exc:  # a broken watch must not break the trial
            self.error = repr(exc)
        finally:
            self._ready.set()
