"""Posts lifeline's own critical alerts to Alertmanager (the decisions are in
controller.core.pages): once a cycle it asks the PageBook what is due and sends it in the
background, so a slow or dead Alertmanager never delays a failover. A failed post is retried
with a doubling backoff (up to a minute); the PageBook keeps what was not delivered, so
nothing is lost and a resolved alert is still sent as resolved."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp

from controller.config.model import AlertmanagerPush
from controller.core.pages import PageBook, Post, pages_for
from controller.core.snapshot import Snapshot, Tally

__all__ = ["AlertPoster"]

log = logging.getLogger("lifeline.paging")

MAX_BACKOFF = 60.0


class AlertPoster:
    """One per daemon; ``cycle(snapshot)`` after each published snapshot."""

    def __init__(self, cfg: AlertmanagerPush, tally: Tally,
                 wall: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.tally = tally
        self.wall = wall
        self.book = PageBook(resend=cfg.resend)
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._retry_at = 0.0
        self._backoff = 0.0
        self._last_error: str | None = None
        tally.init("lifeline_alertmanager_posts_total", ("ok",), ("error",))

    def cycle(self, snap: Snapshot) -> None:
        now = self.wall()
        self.book.note_groups(snap, now)
        if self._task is not None and not self._task.done():
            return  # one post at a time: the next cycle asks again
        if now < self._retry_at:
            return
        posts = self.book.due(pages_for(snap, self.book.failovers), now)
        if posts:
            self._task = asyncio.create_task(self._send(posts), name="lifeline-alerts")

    async def _send(self, posts: list[Post]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout), trust_env=False)
        body = [p.document() for p in posts]
        errors: list[str] = []
        for url in self.cfg.urls:
            try:
                async with self._session.post(url.rstrip("/") + "/api/v2/alerts",
                                              json=body) as resp:
                    if resp.status // 100 != 2:
                        errors.append(f"{url}: HTTP {resp.status} {(await resp.text())[:200]}")
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                errors.append(f"{url}: {exc!r}")
        now = self.wall()
        if len(errors) < len(self.cfg.urls):  # one Alertmanager has it: it shares it
            self.book.delivered(posts, now)
            self.tally.add("lifeline_alertmanager_posts_total", ("ok",))
            self._backoff, self._retry_at = 0.0, 0.0
        else:
            self.tally.add("lifeline_alertmanager_posts_total", ("error",))
            self._backoff = min(MAX_BACKOFF, max(1.0, self._backoff * 2))
            self._retry_at = now + self._backoff
        error = "; ".join(errors) or None
        if error != self._last_error:
            if error:
                log.warning("posting alerts to Alertmanager failed: %s (retry in %.0f s)",
                            error, self._backoff)
            else:
                log.info("posting alerts to Alertmanager works again")
            self._last_error = error

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
