"""Webhook actuator: POST the edge plan, signed, to a URL (another SIP edge, a carrier API glue).

It sends the document of controller.actuators.sipedge.document with an HMAC-SHA256 signature and
retries what a retry can fix (5xx, 408, 429, timeouts, refused or reset connections) with a
doubling backoff; a 4xx is the receiver saying no, so it is reported at once, never
retried. Every outcome is a `PushResult`; nothing raises into the daemon. What to send
(full or diff) is the `PlanSequencer`'s choice: after any failure the next push is the full
plan, so a receiver that missed something converges. The secret is bytes read from a file
or the environment and appears in no log, repr or error. Only this module talks HTTP for
the webhook; the document format, signing and the receiver's side are in planjson.py and
docs/edge-actuators.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from controller.actuators.sipedge.document import (
    DocumentPusher,
    PlanSequencer,
    PushResult,
    canonical_json,
    sign,
)

__all__ = [
    "RETRYABLE_STATUSES",
    "PushResult",
    "WebhookActuator",
    "load_secret",
    "redact_url",
]

log = logging.getLogger(__name__)

# 408 and 429 are 4xx but mean "not now", not "no".
RETRYABLE_STATUSES = frozenset({408, 429})
_ERROR_SNIPPET = 200


def load_secret(*, file: str | os.PathLike[str] | None = None, env: str | None = None) -> bytes:
    """The HMAC secret from a file (one trailing newline stripped) or an environment variable.

    Exactly one source; an empty secret is refused because it signs nothing. The error
    names the source, never the value.
    """
    if (file is None) == (env is None):
        raise ValueError("give exactly one of file= or env= for the webhook secret")
    if file is not None:
        secret = Path(file).read_bytes()
        if secret.endswith(b"\r\n"):
            secret = secret[:-2]
        elif secret.endswith(b"\n"):
            secret = secret[:-1]
        where = f"file {os.fspath(file)}"
    else:
        assert env is not None
        value = os.environ.get(env)
        if value is None:
            raise ValueError(f"environment variable {env} for the webhook secret is not set")
        secret = value.encode("utf-8")
        where = f"environment variable {env}"
    if not secret:
        raise ValueError(f"the webhook secret from {where} is empty")
    return secret


def redact_url(url: str) -> str:
    """The URL without user:password, for logs and errors."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None  # HTTP-date form: not worth a clock dependency; the backoff applies.
    return seconds if seconds >= 0 else None


class WebhookActuator(DocumentPusher):
    """POSTs the edge plan to one URL; one instance per receiver (it tracks what it holds).

    `push(plan)` is the daemon's call each cycle; `send(doc)` posts a ready document.
    Time spent is bounded: at most `1 + retries` attempts of `timeout` seconds each, with
    `backoff`, `2 * backoff`, ... (capped at `max_backoff`, and at most that even when the
    receiver's Retry-After asks for more) between them.
    """

    def __init__(
        self,
        url: str,
        secret: bytes,
        *,
        site: str,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        max_body_bytes: int = 4 * 1024 * 1024,
        start_generation: int | None = None,
        name: str = "webhook",
    ) -> None:
        if urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"webhook URL must be http(s): {redact_url(url)}")
        if not secret:
            raise ValueError("the webhook secret is empty")
        if timeout <= 0 or retries < 0 or backoff < 0 or max_body_bytes <= 0:
            raise ValueError("timeout and max_body_bytes must be > 0, retries and backoff >= 0")
        self.url = url
        self.name = name
        self._secret = secret
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_body_bytes = max_body_bytes
        # Wall-clock microseconds: grows across daemon restarts, so receivers that keep the
        # last generation they applied never take a fresh daemon's pushes for stale ones.
        start = start_generation if start_generation is not None else time.time_ns() // 1000
        self.sequencer = PlanSequencer(site=site, start_generation=start)
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"WebhookActuator(name={self.name!r}, url={redact_url(self.url)!r})"

    async def __aenter__(self) -> WebhookActuator:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                # Environment proxies would send the plan off the box to someone else.
                trust_env=False,
            )
        return self._session

    async def send(self, doc: Mapping[str, Any]) -> PushResult:
        """POST one document with retries; never raises (except cancellation)."""
        started = time.monotonic()
        generation = int(doc["generation"])
        full = bool(doc["full"])

        def result(
            ok: bool, attempts: int, status: int | None, error: str | None, permanent: bool
        ) -> PushResult:
            return PushResult(
                ok=ok, attempts=attempts, status=status, error=error,
                seconds=time.monotonic() - started, generation=generation, full=full,
                permanent=permanent,
            )

        status: int | None = None
        error: str | None = None
        body = canonical_json(doc)
        if len(body) > self.max_body_bytes:
            error = f"document is {len(body)} bytes, over the {self.max_body_bytes} byte limit"
            log.error("%s: generation %d not sent: %s", self.name, generation, error)
            return result(False, 0, None, error, True)
        headers = {
            "Content-Type": "application/json",
            "X-Lifeline-Signature": sign(body, self._secret),
            "X-Lifeline-Generation": str(generation),
            # One id for all attempts: a receiver that got an attempt we think failed can
            # recognise the retry as the same delivery.
            "X-Lifeline-Delivery": str(uuid.uuid4()),
        }
        delay = self.backoff
        attempt = 0
        for attempt in range(1, self.retries + 2):
            retry_after: float | None = None
            try:
                async with self._client().post(
                    self.url, data=body, headers=headers, allow_redirects=False
                ) as resp:
                    status = resp.status
                    if 200 <= status < 300:
                        return result(True, attempt, status, None, False)
                    snippet = (await resp.content.read(_ERROR_SNIPPET)).decode("utf-8", "replace")
                    error = f"HTTP {status} {resp.reason or ''}".rstrip()
                    if snippet.strip():
                        error += f": {snippet.strip()}"
                    if status < 500 and status not in RETRYABLE_STATUSES:
                        # 3xx is included: following a redirect would re-send the signed plan
                        # to a host nobody configured.
                        log.error("%s: generation %d refused: %s", self.name, generation, error)
                        return result(False, attempt, status, error, True)
                    retry_after = _retry_after(resp.headers)
            except TimeoutError:
                status = None
                error = f"no answer within {self.timeout:g} s"
            except aiohttp.ClientError as exc:
                status = None
                error = f"{type(exc).__name__}: {exc}".replace(self.url, redact_url(self.url))
            if attempt > self.retries:
                break
            wait = min(max(delay, retry_after or 0.0), self.max_backoff)
            log.warning(
                "%s: generation %d attempt %d failed (%s); retrying in %.2f s",
                self.name, generation, attempt, error, wait,
            )
            await asyncio.sleep(wait)
            delay *= 2
        log.error(
            "%s: generation %d failed after %d attempts: %s", self.name, generation, attempt, error
        )
        return result(False, attempt, status, error, False)
