"""Link watch: turns netlink link events into immediate carrier up/down calls.

An asyncio task subscribed to RTMGRP_LINK calls `on_carrier(ifname, up, reason)` as soon as a
watched interface loses carrier (IFF_LOWER_UP cleared, NO-CARRIER), is set down or removed,
and again when it is usable once more; at start it reports every watched interface's current
state (so the caller never waits for a first change). It only reports transitions of "usable"
(admin up and carrier), not every link message. It decides nothing: the controller marks the
link down at once and lets probes confirm recovery. netlink is reached through
controller.actuators.netlink.

Kernel fact worth knowing: carrier changes go through the kernel's linkwatch, which reports
"urgent" changes at once (e.g. a veth whose peer has another ifindex) but rate-limits the
others to about one per second (most physical NICs): there a carrier loss can reach us up to
~1 s late and a flap shorter than that can be coalesced away. Probes still catch those.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable

from controller.actuators.netlink import LinkInfo, Netlink

__all__ = ["CarrierCallback", "LinkWatch"]

log = logging.getLogger(__name__)

CarrierCallback = Callable[[str, bool, str], Awaitable[None] | None]


class LinkWatch:
    """Watches `ifnames`; `start()` returns once subscribed and the initial state is reported."""

    def __init__(
        self,
        ifnames: Iterable[str],
        on_carrier: CarrierCallback,
        *,
        netns: str | None = None,
        netlink: Callable[[str | None], Netlink] = Netlink,
    ) -> None:
        self.ifnames = frozenset(ifnames)
        self._on_carrier = on_carrier
        self._netns = netns
        self._netlink = netlink  # the adapter's constructor; tests hand in a fake
        self._state: dict[str, bool] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def state(self) -> dict[str, bool]:
        """Last known usable state per watched interface (absent = never seen)."""
        return dict(self._state)

    async def start(self) -> None:
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(ready), name="lifeline-linkwatch")
        await ready

    def carrier(self, ifname: str) -> bool | None:
        """The last carrier state reported for ``ifname`` (None before the first report)."""
        return self._state.get(ifname)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def __aenter__(self) -> LinkWatch:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _emit(self, info: LinkInfo, initial: bool) -> None:
        up = info.usable
        if not initial and self._state.get(info.ifname) == up:
            return
        self._state[info.ifname] = up
        reason = f"{info.ifname}: {info.reason}" + (" (at start)" if initial else "")
        try:
            result = self._on_carrier(info.ifname, up, reason)
            if inspect.isawaitable(result):
                await result
        except Exception:
            # a faulty consumer must not stop the watch: the next event still has to arrive
            log.exception("on_carrier callback failed for %s", info.ifname)

    async def _run(self, ready: asyncio.Future[None]) -> None:
        while True:
            try:
                await self._watch(ready)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not ready.done():
                    ready.set_exception(exc)
                    return
                # e.g. ENOBUFS after an event storm: events were lost, so subscribe again
                # and re-read the state (level-triggered), after a short pause
                log.warning("link watch restarting after error: %s", exc)
                await asyncio.sleep(0.2)

    async def _watch(self, ready: asyncio.Future[None]) -> None:
        nl = self._netlink(self._netns)
        events = await nl.subscribe_links()
        try:
            async with nl:
                current = {li.ifname: li for li in await nl.links()}
            for name in sorted(self.ifnames):
                info = current.get(name) or LinkInfo(name, 0, False, False, "ABSENT", True)
                await self._emit(info, initial=not ready.done())
            if not ready.done():
                ready.set_result(None)
            async for info in events:
                if info.ifname in self.ifnames:
                    await self._emit(info, initial=False)
        finally:
            events.close()
