"""When the kernel's default route of the site moves to a given interface, to a few ms.

The moment the kernel holds the new route, not when the daemon says so: the poll
(tests.lab.netlinkpoll) reads the main table until the default route leaves through the
interface it waits for (or through it among the nexthops of a multipath route).
"""

from __future__ import annotations

import time
from typing import Any

from pyroute2 import IPRoute

from tests.lab.netlinkpoll import NetlinkPoll


def _devices(route: Any) -> set[int]:
    oif = route.get_attr("RTA_OIF")
    found = {int(oif)} if oif is not None else set()
    for hop in route.get_attr("RTA_MULTIPATH") or []:
        found.add(int(hop["oif"]))
    return found


class RouteWatch(NetlinkPoll):
    """``at`` is the wall-clock time (``time.time()``, what the browser's timestamps are
    compared with) the default route was first seen leaving through ``ifname``."""

    clock = staticmethod(time.time)

    def __init__(self, ns: str, ifname: str, limit: float = 15.0, table: int = 254) -> None:
        super().__init__(ns, ifname, limit, "route-watch")
        self._table = table

    def join(self) -> None:
        """Stop polling and wait for the thread: the caller has what it waited for."""
        self.stop()
        super().join()

    def seen(self, ipr: IPRoute, index: int) -> bool:
        # The per-link tables hold default routes too: only the group's counts.
        routes = [r for r in ipr.get_default_routes(table=self._table)
                  if (r.get_attr("RTA_TABLE") or r["table"]) == self._table]
        return any(index in _devices(r) for r in routes)
