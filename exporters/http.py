"""HTTP face of the daemon: /metrics, /api/v1/status, /healthz (aiohttp), and the
read-only status page at / when the daemon hands one in (``exporters.statuspage``).

Served on a TCP address for Prometheus and on a unix socket in ``state_dir`` for the
``lifeline`` CLI: the socket works across network namespaces, so ``lifeline status`` finds
a daemon that runs inside a router namespace. Read handlers only read the snapshot
the daemon publishes each cycle (``controller.core.snapshot``). The operator's writes
(overrides, maintenance) go to the daemon's ``Control`` through exporters.operator_api:
on the unix socket its file mode (0660) is the access control; over TCP, which may be
reachable from the LAN, each write needs a bearer token (docs/api.md).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from controller.core.snapshot import Snapshot
from exporters.metrics import registry_for
from exporters.operator_api import ApiPolicy, add_operator_routes
from exporters.status import did_document, status_document
from exporters.statuspage import StatusPage

log = logging.getLogger(__name__)

LatestFn = Callable[[], Snapshot | None]


class Control(Protocol):
    """What the API may ask of the daemon."""

    def set_maintenance(self, trunk: str, on: bool, reason: str = "") -> Mapping[str, object]:
        """The answer (controller.runtime.maintenance.MaintenanceAnswer); KeyError for an
        unknown trunk."""
        ...

    def set_override(self, kind: str, target: str, value: str | None, reason: str, by: str,
                     until: float) -> Mapping[str, object]:
        """Hold an operator override (docs/overrides.md). ``kind``: route (target a group,
        value one of its links), did (target a range as the plan names it, value a trunk
        of the range or "dr"), maintenance (target "link:NAME" or "trunk:NAME", value
        None); ``until``: epoch seconds, in the future and at most 7 days ahead. The
        answer: the override's fields plus "applied", "why_not" and "kept_on_disk".
        KeyError(message): unknown target (404); ValueError(message): value or until
        refused (422)."""
        ...

    def clear_override(self, kind: str, target: str, by: str,
                       reason: str) -> Mapping[str, object]:
        """Lift an override: {"kind", "target", "cleared": bool, "kept_on_disk"}; KeyError
        for a target the config does not hold."""
        ...

    def resolve_did(self, number: str) -> str | None:
        """The DID range (its plan name, an override's target) holding ``number``; None
        when no range of the plan holds it."""
        ...


def make_app(latest: LatestFn, registry: CollectorRegistry | None = None,
             control: Control | None = None, api: ApiPolicy | None = None,
             page: StatusPage | None = None) -> web.Application:
    """The app; every read handler reads ``latest()``, the snapshot of the last cycle.
    ``page``: the status page (``/``), fed by the daemon with each snapshot it publishes."""
    registry = registry if registry is not None else registry_for(latest)

    async def handle_metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def handle_status(_: web.Request) -> web.Response:
        snap = latest()
        if snap is None:
            return _json({"error": "starting: no control cycle has run yet"}, 503)
        return _json(status_document(snap), 200)

    async def handle_healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def handle_dids(request: web.Request) -> web.Response:
        number = request.query.get("number", "").strip().replace(" ", "")
        if not number:
            return _json({"error": "give ?number=+<E.164 number>"}, 400)
        if number[0] != "+":
            number = "+" + number  # a '+' in a query string often arrives as a space
        snap = latest()
        found = did_document(snap, number) if snap is not None else None
        if found is None:
            return _json({"error": f"{number} is not in the DID plan", "number": number}, 404)
        return _json(found, 200)

    app = web.Application()
    add_operator_routes(app, latest, control, api if api is not None else ApiPolicy())
    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/api/v1/status", handle_status)
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/api/v1/dids", handle_dids)
    if page is not None:
        page.add_routes(app, latest)
    return app


def _json(doc: dict[str, Any], status: int) -> web.Response:
    return web.Response(text=json.dumps(doc, indent=2, default=str), status=status,
                        content_type="application/json")


def parse_listen(listen: str) -> tuple[str, int]:
    """``127.0.0.1:9730`` or ``[::1]:9730`` -> (host, port)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


class HttpServer:
    """Runs the app on a TCP listen address and on a unix socket."""

    def __init__(self, app: web.Application, listen: str | None, socket_path: Path | None) -> None:
        self._runner = web.AppRunner(app, access_log=None)
        self._listen = listen
        self._socket_path = socket_path

    async def start(self) -> None:
        await self._runner.setup()
        if self._listen:
            host, port = parse_listen(self._listen)
            await web.TCPSite(self._runner, host, port).start()
            log.info("serving /metrics and /api/v1/status on http://%s", self._listen)
        if self._socket_path:
            self._socket_path.parent.mkdir(parents=True, exist_ok=True)
            if self._socket_path.is_socket():
                self._socket_path.unlink()
            await web.UnixSite(self._runner, str(self._socket_path)).start()
            os.chmod(self._socket_path, 0o660)

    async def stop(self) -> None:
        await self._runner.cleanup()
        if self._socket_path and self._socket_path.is_socket():
            self._socket_path.unlink()
