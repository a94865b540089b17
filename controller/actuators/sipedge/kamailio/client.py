"""Kamailio's JSON-RPC over HTTP (the jsonrpcs and xhttp modules), as one small client.

It sends a method with positional parameters and hands back the `result` as JSON gave it,
or raises KamailioError naming the RPC: a transport error or timeout (after one retry), an
answer that is not JSON, or Kamailio's error object. It counts the requests it sends, the
cost a push reports. What the answers mean is answers.py's business, what to send is the
planner's; this module is the only one here that imports aiohttp.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import aiohttp

__all__ = ["KamailioClient", "KamailioError"]


class KamailioError(Exception):
    """An RPC that failed: transport error, timeout, or an error answer from Kamailio."""

    def __init__(self, method: str, message: str, code: int | None = None) -> None:
        super().__init__(f"{method}: {message}" + (f" (code {code})" if code is not None else ""))
        self.method = method
        self.message = message
        self.code = code


class KamailioClient:
    """JSON-RPC over HTTP (jsonrpcs + xhttp), positional parameters.

    One retry on a transport error or timeout, because a Kamailio TCP worker may close an
    idle keep-alive connection under us; an error answer is not retried (it would answer
    the same). Every failure comes out as KamailioError naming the RPC.
    """

    def __init__(self, url: str, *, timeout: float = 2.0, concurrency: int = 4) -> None:
        self.url = url
        self.timeout = timeout
        self.concurrency = concurrency
        self.calls = 0  # RPCs sent, retries included: the push cost
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> KamailioClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        return self._session

    async def call(self, method: str, *params: str | int) -> Any:
        body = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": next(self._ids)}
        last: Exception | None = None
        for _attempt in range(2):
            self.calls += 1
            try:
                async with self._get_session().post(self.url, json=body) as resp:
                    # jsonrpcs answers RPC errors with HTTP 500 and the JSON error object.
                    text = await resp.text()
                    try:
                        answer = json.loads(text)
                    except ValueError:
                        raise KamailioError(method, f"HTTP {resp.status}: {text[:200]!r}") from None
            except (TimeoutError, aiohttp.ClientError) as exc:
                last = exc
                continue
            if not isinstance(answer, dict):
                raise KamailioError(method, "answer is not a JSON object")
            error = answer.get("error")
            if isinstance(error, dict):
                code = error.get("code")
                raise KamailioError(
                    method,
                    str(error.get("message", "error")),
                    code if isinstance(code, int) else None,
                )
            return answer.get("result")
        raise KamailioError(method, f"no answer: {type(last).__name__}: {last}") from last
