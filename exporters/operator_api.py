"""The operator's writes over HTTP: force a route group to a link, pin a DID range to a
trunk or to the DR destination, put a link or a trunk in maintenance, and lift each again;
plus ``GET /api/v1/overrides``. docs/api.md is the operator's guide, docs/api/openapi.yaml
the contract.

This module checks who asks (a bearer token over TCP; the peer's unix user on the socket),
how often (exporters.ratelimit), and what (the JSON body: known fields of the
right types, a reason, an expiry the server turns into one ``until``); the daemon's
``Control`` decides whether the change is allowed and keeps it. Every refusal is a 4xx
with ``{"error": "<sentence>"}`` and changes nothing. The order of the checks is the
order of their cost, and a caller learns nothing about a body before it is authenticated.

The unix socket (mode 0660, owned by lifeline's user and group) stays what it was: its
file mode is the access control, like the Docker or libvirt sockets. A write there needs
no token, and ``by`` is the peer's unix user read with SO_PEERCRED (the kernel's word, not
the client's); a token, if sent, must be valid and then names the caller. Requiring a
token there would add no barrier (the socket and the token file are both guarded by file
mode, for the same operators) and would break ``lifeline maintenance`` at 3 a.m. for want
of a file; the kernel-reported user is better evidence in the journal than a shared token.
"""

from __future__ import annotations

import json
import logging
import math
import pwd
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from controller.core.durations import parse_duration
from controller.core.snapshot import Snapshot
from exporters.api_tokens import TokenBook
from exporters.ratelimit import WriteLimiter
from exporters.status import status_document

if TYPE_CHECKING:
    from exporters.http import Control

__all__ = ["MAX_BODY", "MAX_REASON", "ApiPolicy", "Refused", "add_operator_routes",
           "on_unix_socket"]

log = logging.getLogger("lifeline.api")

MAX_BODY = 4096  # bytes: the largest body of any write is a few hundred
MAX_REASON = 200  # characters: one line in status, journal and alerts
MAX_NAME = 64
# A name in a path: what a link, group or trunk name can be. Anything else (a '/', '..',
# a NUL, an over-long string) cannot name one, so it is a 404 before the daemon is asked.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_NUMBER = re.compile(r"\+?[0-9]{1,15}")
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_BEARER = re.compile(r"Bearer ([\x21-\x7e]{1,512})", re.IGNORECASE)

LatestFn = Callable[[], Snapshot | None]


@dataclass(frozen=True)
class ApiPolicy:
    """The API's settings (the config's ``api:`` section, as plain values)."""

    tokens: TokenBook | None = None
    default_expiry: float = 3600.0
    max_expiry: float = 7 * 86400.0
    writes_per_minute: float = 10.0
    burst: int = 5
    shared_writes_per_minute: float = 30.0
    shared_burst: int = 10
    clock: Callable[[], float] = field(default=time.time)  # wall clock: `until` outlives us
    monotonic: Callable[[], float] = field(default=time.monotonic)

    @classmethod
    def open(cls, token_file: Path | None = None, **settings: Any) -> ApiPolicy:
        """Read the token file now: TokenFileError (a ValueError) refuses the start."""
        return cls(tokens=None if token_file is None else TokenBook(Path(token_file)),
                   **settings)


class Refused(Exception):
    """A request refused before the daemon is asked: (status, sentence)."""

    def __init__(self, status: int, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers or {})


@dataclass(frozen=True)
class Caller:
    by: str  # for the journal: the token's name or the unix user
    key: str  # the rate limiter's bucket
    remote: bool  # over TCP: also draws on the shared bucket


def _json(doc: Any, status: int, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(doc, indent=2, default=str), status=status,
                        content_type="application/json", headers=headers)


def on_unix_socket(request: web.Request) -> bool:
    """A unix socket's local name is a path (str or bytes); a TCP one is a tuple."""
    transport = request.transport
    return transport is not None and isinstance(transport.get_extra_info("sockname"),
                                                str | bytes)


def _peer_user(request: web.Request) -> tuple[str, str]:
    """(by, key) of the process at the other end of the unix socket (SO_PEERCRED)."""
    transport = request.transport
    sock = None if transport is None else transport.get_extra_info("socket")
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,  # type: ignore[union-attr]
                              struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", raw)
    except (AttributeError, OSError, struct.error):
        return "unix:unknown", "unix:?"
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = f"uid {uid}"
    return f"unix:{user}", f"unix:{uid}"


def _bearer(request: web.Request) -> str | None:
    raw = request.headers.get("Authorization")
    if raw is None:
        return None
    found = _BEARER.fullmatch(raw.strip())
    if found is None:
        raise Refused(401, "the Authorization header must be `Bearer <token>`",
                      {"WWW-Authenticate": 'Bearer realm="lifeline", error="invalid_request"'})
    return found.group(1)


def authenticate(request: web.Request, policy: ApiPolicy) -> Caller:
    token = _bearer(request)
    local = on_unix_socket(request)
    if local and token is None:
        by, key = _peer_user(request)
        return Caller(by, key, remote=False)
    if policy.tokens is None:
        raise Refused(403, "no API token file is configured (api.token_file), so writes "
                           "are taken on the daemon's unix socket only (`lifeline` on the "
                           "router), not over TCP")
    if token is None:
        raise Refused(401, "a write needs `Authorization: Bearer <token>` (a token from "
                           "the daemon's api.token_file)",
                      {"WWW-Authenticate": 'Bearer realm="lifeline"'})
    name = policy.tokens.who(token)
    if policy.tokens.problem is not None:
        raise Refused(503, f"writes are refused until the token file is fixed: "
                           f"{policy.tokens.problem}")
    if name is None:
        raise Refused(401, "the token is not in the daemon's token file",
                      {"WWW-Authenticate": 'Bearer realm="lifeline", error="invalid_token"'})
    return Caller(name, f"token:{name}", remote=not local)


async def read_body(request: web.Request) -> dict[str, Any]:
    """The JSON object of the body ({} when there is none); Refused otherwise."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise Refused(413, f"the body is larger than {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(MAX_BODY + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            raise Refused(413, f"the body is larger than {MAX_BODY} bytes")
    raw = b"".join(chunks)
    if not raw.strip():
        return {}
    try:
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates,
                         parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise Refused(400, f"the body is not valid JSON ({_short(str(exc))}); send an "
                           "object like {\"reason\": \"...\", \"for\": \"1h\"}") from None
    if not isinstance(doc, dict):
        raise Refused(400, "the body must be a JSON object like {\"reason\": \"...\"}")
    return doc


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise ValueError(f"the field {key!r} is given twice")
        doc[key] = value
    return doc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _short(text: str, limit: int = MAX_NAME) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# -- the body's fields -----------------------------------------------------------------------
def check_fields(body: Mapping[str, Any], allowed: set[str], required: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Refused(400, f"unknown field {_short(unknown[0])!r}; this route takes "
                           f"{', '.join(sorted(allowed))}")
    missing = sorted(required - set(body))
    if missing:
        raise Refused(400, f"the field {missing[0]!r} is required")


def text_field(body: Mapping[str, Any], name: str, *, limit: int, required: bool) -> str:
    if required and name not in body:
        raise Refused(400, f"the field {name!r} is required")
    value = body.get(name, "")
    if not isinstance(value, str):
        raise Refused(400, f"{name} must be a string")
    value = value.strip()
    if required and not value:
        raise Refused(400, f"{name} must not be empty: say why, for the journal and the "
                           "on-call engineer")
    if len(value) > limit:
        raise Refused(400, f"{name} is longer than {limit} characters")
    if _CONTROL_CHARS.search(value):
        raise Refused(400, f"{name} must be one line of text (no control characters)")
    return value


def expiry(body: Mapping[str, Any], policy: ApiPolicy, now: float) -> float:
    """When the change lapses (seconds since the epoch): from ``for`` or ``until``, else
    the default; refused when past or beyond the maximum."""
    if "for" in body and "until" in body:
        raise Refused(400, "give `for` or `until`, not both")
    if "for" in body:
        raw = body["for"]
        if not isinstance(raw, str) or len(raw) > 32:
            raise Refused(400, "for must be a short string like \"30m\" or \"2h\"")
        try:
            seconds = parse_duration(raw)
        except ValueError as exc:
            raise Refused(400, f"for: {exc}") from None
        if seconds <= 0:
            raise Refused(422, "for must be longer than zero")
        until = now + seconds
    elif "until" in body:
        until = _rfc3339(body["until"])
        if until <= now:
            raise Refused(422, "until is in the past")
    else:
        until = now + policy.default_expiry
    if until - now > policy.max_expiry + 1e-6:
        raise Refused(422, f"the expiry is more than {_hours(policy.max_expiry)} away "
                           "(api.max_expiry); ask again when it is due")
    return until


def _rfc3339(raw: object) -> float:
    if not isinstance(raw, str):
        raise Refused(400, "until must be a string, an RFC 3339 time like "
                           "\"2026-12-04T06:00:00Z\"")
    text = raw.strip()
    try:
        if len(text) > MAX_NAME or "T" not in text.upper():
            raise ValueError(text)
        when = datetime.fromisoformat(text)
    except ValueError:
        raise Refused(400, f"until {_short(text)!r} is not an RFC 3339 time like "
                           "\"2026-12-04T06:00:00Z\"") from None
    if when.tzinfo is None:
        raise Refused(400, "until needs a time zone (a Z or an offset like +01:00)")
    stamp = when.timestamp()
    if not math.isfinite(stamp):
        raise Refused(400, "until is out of range")
    return stamp


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:g}h"


def path_name(request: web.Request, key: str, what: str) -> str:
    value = request.match_info[key]
    if not _NAME.fullmatch(value):
        raise Refused(404, f"no {what} named {_short(value)!r}")
    return value


# -- the routes ------------------------------------------------------------------------------
Body = dict[str, Any]
Answer = Mapping[str, object]
Handler = Callable[[web.Request, Caller, Body], Answer]


def add_operator_routes(app: web.Application, latest: LatestFn, control: Control | None,
                        policy: ApiPolicy) -> None:
    """Register the write routes and ``GET /api/v1/overrides`` on ``app``."""
    limiter = WriteLimiter(policy.writes_per_minute, policy.burst,
                           policy.shared_writes_per_minute, policy.shared_burst)

    def write(act: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            try:
                if control is None:
                    raise Refused(501, "this daemon takes no requests")
                if request.content_length is not None and request.content_length > MAX_BODY:
                    raise Refused(413, f"the body is larger than {MAX_BODY} bytes")
                caller = authenticate(request, policy)
                wait = limiter.take(caller.key, policy.monotonic(), shared=caller.remote)
                if wait > 0:
                    retry = max(1, math.ceil(min(wait, 86400.0)))
                    raise Refused(429, f"too many writes: at most {policy.writes_per_minute:g} "
                                       f"a minute (burst {policy.burst}); retry in {retry} s",
                                  {"Retry-After": str(retry)})
                body = await read_body(request)
                answer = act(request, caller, body)
                log.info("API %s %s by %s", request.method, request.path, caller.by)
            except Refused as exc:
                return _json({"error": exc.message}, exc.status, exc.headers)
            except KeyError as exc:
                return _json({"error": _said(exc)}, 404)
            except ValueError as exc:
                return _json({"error": _said(exc)}, 422)
            except Exception:  # a bug: say so, keep serving
                log.exception("the API request %s %s failed", request.method, request.path)
                return _json({"error": "internal error; the daemon's log has the details"},
                             500)
            return _json(dict(answer), 200)

        return handle

    def ctl() -> Control:
        assert control is not None  # write() refused the request otherwise
        return control

    setting = {"reason", "for", "until"}

    def held(kind: str, target: str, caller: Caller, body: Body,
             value_field: str | None = None) -> Answer:
        """Set an override from a checked body: its reason, its value (a force's link, a
        pin's trunk) and its expiry, read in that order."""
        reason = text_field(body, "reason", limit=MAX_REASON, required=True)
        value = (None if value_field is None
                 else text_field(body, value_field, limit=MAX_NAME, required=True))
        until = expiry(body, policy, policy.clock())
        return ctl().set_override(kind, target, value, reason, caller.by, until)

    def lifted(kind: str, target: str, caller: Caller, body: Body) -> Answer:
        check_fields(body, {"reason"}, set())
        return ctl().clear_override(kind, target, caller.by,
                                    text_field(body, "reason", limit=MAX_REASON, required=False))

    def force_on(request: web.Request, caller: Caller, body: Body) -> Answer:
        group = path_name(request, "group", "route group")
        check_fields(body, setting | {"link"}, {"reason", "link"})
        return held("route", group, caller, body, "link")

    def force_off(request: web.Request, caller: Caller, body: Body) -> Answer:
        return lifted("route", path_name(request, "group", "route group"), caller, body)

    def did_range(request: web.Request) -> str:
        number = request.match_info["number"].strip()
        if not _NUMBER.fullmatch(number):
            raise Refused(400, f"{_short(number)!r} is not an E.164 number like +390212345601")
        number = number if number.startswith("+") else "+" + number
        found = ctl().resolve_did(number)
        if found is None:
            raise Refused(404, f"{number} is not in the DID plan")
        return found

    def pin_on(request: web.Request, caller: Caller, body: Body) -> Answer:
        numbers = did_range(request)
        check_fields(body, setting | {"trunk"}, {"reason", "trunk"})
        return held("did", numbers, caller, body, "trunk")

    def pin_off(request: web.Request, caller: Caller, body: Body) -> Answer:
        return lifted("did", did_range(request), caller, body)

    def link_on(request: web.Request, caller: Caller, body: Body) -> Answer:
        link = path_name(request, "link", "link")
        check_fields(body, setting, {"reason"})
        return held("maintenance", f"link:{link}", caller, body)

    def link_off(request: web.Request, caller: Caller, body: Body) -> Answer:
        return lifted("maintenance", f"link:{path_name(request, 'link', 'link')}", caller, body)

    def trunk_on(request: web.Request, caller: Caller, body: Body) -> Answer:
        trunk = path_name(request, "trunk", "trunk")
        check_fields(body, setting | {"open"}, set())
        open_ended = body.get("open", False)
        if not isinstance(open_ended, bool):
            raise Refused(400, "open must be true or false")
        if open_ended:
            # The mark of `lifeline maintenance TRUNK` (from before expiries): no expiry
            # of its own (it lapses after the longest an override lasts, 7 days, unless
            # lifted), kept across restarts; the reason is optional.
            if "for" in body or "until" in body:
                raise Refused(400, "an open mark has no expiry: give open, or for/until")
            return _trunk_mark(trunk, True, text_field(body, "reason", limit=MAX_REASON,
                                                       required=False))
        return held("maintenance", f"trunk:{trunk}", caller, body)

    def trunk_off(request: web.Request, caller: Caller, body: Body) -> Answer:
        trunk = path_name(request, "trunk", "trunk")
        check_fields(body, {"reason"}, set())
        reason = text_field(body, "reason", limit=MAX_REASON, required=False)
        # Lifts the mark whichever way it was set (with an expiry, or the old form), and
        # the answer tells what holds now.
        cleared = ctl().clear_override("maintenance", f"trunk:{trunk}", caller.by, reason)
        return {**_trunk_mark(trunk, False, reason), "override": dict(cleared)}

    def _trunk_mark(trunk: str, on: bool, reason: str) -> Mapping[str, object]:
        try:
            return ctl().set_maintenance(trunk, on, reason)
        except KeyError:
            raise Refused(404, f"no trunk named {trunk!r}") from None

    async def handle_overrides(_: web.Request) -> web.Response:
        snap = latest()
        if snap is None:
            return _json({"error": "starting: no control cycle has run yet"}, 503)
        return _json(status_document(snap).get("overrides", []), 200)

    app.router.add_put("/api/v1/groups/{group}/force", write(force_on))
    app.router.add_delete("/api/v1/groups/{group}/force", write(force_off))
    app.router.add_put("/api/v1/dids/{number}/pin", write(pin_on))
    app.router.add_delete("/api/v1/dids/{number}/pin", write(pin_off))
    app.router.add_put("/api/v1/links/{link}/maintenance", write(link_on))
    app.router.add_delete("/api/v1/links/{link}/maintenance", write(link_off))
    app.router.add_put("/api/v1/trunks/{trunk}/maintenance", write(trunk_on))
    app.router.add_delete("/api/v1/trunks/{trunk}/maintenance", write(trunk_off))
    app.router.add_get("/api/v1/overrides", handle_overrides)


def _said(exc: Exception) -> str:
    """The sentence a KeyError/ValueError carries (a KeyError's str() adds quotes)."""
    return _short(str(exc.args[0]) if exc.args else type(exc).__name__, 300)

