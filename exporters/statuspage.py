"""The status page for the NOC wall and a phone: one HTML page, its own CSS and JS, and the
JSON it reads, served by the daemon's aiohttp app (``make_app(..., page=StatusPage(...))``).

Boundary: it reads published snapshots (``published`` is called by the daemon with each
one) and the recent journal events through a callable the daemon hands in; it never sees
the runtime. It is read-only. Updates reach the browser as server-sent events, pushed the
moment a snapshot is published (a failover shows within one cycle), with a keepalive and a
bound on the number of streams; the page falls back to polling ``/api/v1/page`` when the
stream is refused. Security: every file served is one of a fixed set, loaded from the
package at start and looked up by name (a request path is never joined onto a directory),
and the page forbids everything not from its own origin (Content-Security-Policy), so it
works offline and nothing on it can load or run a third party's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

from aiohttp import web

from controller.core.didplan import DR_DESTINATION_DOWN, DidDecision
from controller.core.snapshot import Snapshot
from exporters.history import History
from exporters.status import status_document

log = logging.getLogger(__name__)

RecentEventsFn = Callable[[], list[dict[str, Any]]]
LatestFn = Callable[[], Snapshot | None]

# Self only: no CDN, no inline script or style, no frames, no forms, no plugins.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
# name under exporters/static -> content type; nothing else is ever served from there.
STATIC_FILES: Mapping[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "page.css": "text/css; charset=utf-8",
    "page.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
# Ranges listed by name on the page (on DR or unroutable); the rest are counted only.
MAX_LISTED_RANGES = 50
RECENT_EVENTS = 30


def _load_static() -> dict[str, bytes]:
    """The page's files, read once. One missing (a broken install) is logged and left out:
    the page is not worth failing the daemon over, and the API still works."""
    folder = resources.files("exporters").joinpath("static")
    files: dict[str, bytes] = {}
    for name in STATIC_FILES:
        try:
            files[name] = folder.joinpath(name).read_bytes()
        except OSError as exc:
            log.error("status page file %s is not installed (%s): the page will not work",
                      name, exc)
    return files


def page_document(snap: Snapshot) -> dict[str, Any]:
    """``/api/v1/status`` plus what only the page shows: when the snapshot was taken,
    which DID ranges are on the disaster-recovery destination or unroutable, and how many
    numbers are on DR for each cause."""
    doc = status_document(snap)
    doc["taken_at"] = snap.taken_at
    plan = snap.plan
    if plan is not None and isinstance(doc.get("dids"), dict):
        on_dr = [d for d in plan.decisions if d.on_dr]
        notable = [d for d in plan.decisions if d.on_dr or d.unroutable]
        doc["dids"] = dict(doc["dids"]) | {
            "dr_ranges": len(on_dr),
            "dr_numbers": sum(d.numbers.size for d in on_dr),
            "notable": [{"range": str(d.numbers), "trunk": d.trunk,
                         "destination": d.destination, "on_dr": d.on_dr,
                         "unroutable": d.unroutable, "reason": d.reason}
                        for d in notable[:MAX_LISTED_RANGES]],
            "notable_left_off": max(0, len(notable) - MAX_LISTED_RANGES),
            # Numbers on DR by why (power, destination_down, service, pin): the services
            # section says how many a down service sent there.
            "dr_by_cause": _dr_by_cause(on_dr),
        }
    return doc


def _dr_by_cause(on_dr: list[DidDecision]) -> dict[str, int]:
    by: dict[str, int] = {}
    for d in on_dr:
        cause = d.dr_cause or DR_DESTINATION_DOWN
        by[cause] = by.get(cause, 0) + d.numbers.size
    return by


class StatusPage:
    """The page's state: the history, the current message and the open streams."""

    def __init__(self, recent_events: RecentEventsFn | None = None, *,
                 history: History | None = None, max_streams: int = 32,
                 keepalive: float = 15.0) -> None:
        self.history = history if history is not None else History()
        self._recent_events = recent_events
        self.max_streams = max_streams
        self.keepalive = keepalive
        self._files = _load_static()
        self._snap: Snapshot | None = None
        self._point: dict[str, Any] | None = None  # the history point the last snap closed
        self._version = 0
        self._changed = asyncio.Event()
        self._cached: tuple[int, bytes] | None = None  # (version, the page JSON)
        self._streams = 0
        self._closing = False

    # -- fed by the daemon ----------------------------------------------------------------
    def published(self, snap: Snapshot) -> None:
        """The daemon published ``snap``: keep history, wake every stream. Cheap when no
        page is open: the message is built only when a stream or a poll asks for it."""
        closed = self.history.record(snap)
        self._point = None if closed is None else closed.as_json()
        self._snap = snap
        self._version += 1
        woken, self._changed = self._changed, asyncio.Event()
        woken.set()

    # -- what is sent ---------------------------------------------------------------------
    def _events(self) -> list[dict[str, Any]]:
        if self._recent_events is None:
            return []
        try:
            return self._recent_events()[-RECENT_EVENTS:]
        except Exception:  # the page goes on without the journal
            log.exception("cannot read recent events for the status page")
            return []

    def document(self, latest: LatestFn) -> dict[str, Any] | None:
        snap = self._snap if self._snap is not None else latest()
        if snap is None:
            return None
        return {"status": page_document(snap), "events": self._events(),
                "point": self._point}

    def _body(self, latest: LatestFn) -> bytes | None:
        """This version's document as JSON, built once and shared by every stream and poll
        (a wall of phones polling costs one build per snapshot, not one per request)."""
        if self._snap is not None and self._cached is not None \
                and self._cached[0] == self._version:
            return self._cached[1]
        doc = self.document(latest)
        if doc is None:
            return None
        body = json.dumps(doc, separators=(",", ":"), default=str).encode()
        if self._snap is not None:  # fed by the daemon: the version names the snapshot
            self._cached = (self._version, body)
        return body

    def _sse_message(self, latest: LatestFn) -> bytes | None:
        """This version's ``status`` event."""
        body = self._body(latest)
        if body is None:
            return None
        return b"event: status\nid: %d\ndata: %s\n\n" % (self._version, body)

    # -- routes ---------------------------------------------------------------------------
    def add_routes(self, app: web.Application, latest: LatestFn) -> None:
        files = self._files

        def static(name: str, cache: str) -> web.Response:
            return web.Response(body=files[name], headers={
                **SECURITY_HEADERS, "Content-Type": STATIC_FILES[name], "Cache-Control": cache})

        async def handle_index(_: web.Request) -> web.Response:
            if "index.html" not in files:
                return web.Response(status=503, text="the status page is not installed; "
                                    "/api/v1/status and /metrics work\n")
            return static("index.html", "no-cache")

        async def handle_static(request: web.Request) -> web.Response:
            # Looked up in a fixed table, never joined onto a path: "../x", "%2e%2e/x"
            # and the like are just names that are not in it.
            name = request.match_info["name"]
            if name not in files:
                raise web.HTTPNotFound(text="not found\n", headers=SECURITY_HEADERS)
            return static(name, "no-cache")

        async def handle_history(_: web.Request) -> web.Response:
            return _json(self.history.as_json(time.time()))

        async def handle_page(_: web.Request) -> web.Response:
            body = self._body(latest)
            if body is None:
                return _json({"error": "starting: no control cycle has run yet"}, 503)
            return web.Response(body=body, content_type="application/json",
                                headers={"Cache-Control": "no-store"})

        app.router.add_get("/", handle_index)
        app.router.add_get("/static/{name}", handle_static)
        app.router.add_get("/api/v1/history", handle_history)
        app.router.add_get("/api/v1/page", handle_page)
        async def handle_stream(request: web.Request) -> web.StreamResponse:
            return await self._handle_stream(request, latest)

        app.router.add_get("/api/v1/events/stream", handle_stream)
        app.on_shutdown.append(self._close_streams)

    async def _close_streams(self, _: web.Application) -> None:
        """Open streams never end by themselves: end them, or a stop waits for them."""
        self._closing = True
        self._changed.set()

    async def _handle_stream(self, request: web.Request, latest: LatestFn) -> web.StreamResponse:
        if self._streams >= self.max_streams:
            return _json({"error": f"too many status streams open ({self.max_streams}); "
                                   "poll /api/v1/page instead"}, 503,
                         {"Retry-After": "30"})
        self._streams += 1
        try:
            resp = web.StreamResponse(headers={
                "Content-Type": "text/event-stream", "Cache-Control": "no-store",
                "X-Accel-Buffering": "no", **SECURITY_HEADERS})
            await resp.prepare(request)
            # The browser reconnects after a second (a daemon restart), not its default 3 s.
            await resp.write(b"retry: 1000\n\n")
            sent = -1
            with contextlib.suppress(ConnectionError):
                while not self._closing:
                    changed = self._changed  # taken before the check: no wake-up is missed
                    if self._version != sent:
                        sent = self._version
                        message = self._sse_message(latest)
                        if message is not None:
                            await resp.write(message)
                        continue
                    try:
                        await asyncio.wait_for(changed.wait(), self.keepalive)
                    except TimeoutError:
                        await resp.write(b": keepalive\n\n")
            return resp
        finally:
            self._streams -= 1

    @property
    def streams(self) -> int:
        """Streams open now."""
        return self._streams


def _json(doc: dict[str, Any], status: int = 200,
          headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(doc, separators=(",", ":"), default=str),
                        status=status, content_type="application/json",
                        headers={"Cache-Control": "no-store", **(headers or {})})
