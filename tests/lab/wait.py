"""Waiting for a condition: the one bounded poll of the tests, the lab, the demo and the benches.

``until(predicate, timeout, interval, what)`` asks ``predicate`` every ``interval`` seconds
until it returns something truthy, and returns that; after ``timeout`` seconds it raises
TimeoutError naming ``what`` (plus ``detail()``, e.g. the last status or a log tail, if
given). The predicate is asked once more at the deadline, so a condition that comes true just
in time counts, and may raise to end the wait early (a process that died will not come up).
``until_async`` is the same inside an event loop (the predicate may be a coroutine function).
TimeoutError, not AssertionError, because lab code such as the demo catches it as an OSError;
pytest reports it as a failure all the same. This module knows nothing of what is awaited.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

__all__ = ["until", "until_async"]

T = TypeVar("T")


def _timed_out(timeout: float, what: str, detail: Callable[[], str] | None) -> TimeoutError:
    extra = detail() if detail is not None else ""
    return TimeoutError(f"waited {timeout:g} s for {what}" + (f"; {extra}" if extra else ""))


def until(predicate: Callable[[], T | None], timeout: float, interval: float = 0.05,
          what: str = "a condition", *, detail: Callable[[], str] | None = None) -> T:
    """Poll ``predicate`` until it returns a truthy value (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise _timed_out(timeout, what, detail)
        time.sleep(min(interval, left))


@overload
async def until_async(predicate: Callable[[], Awaitable[T | None]], timeout: float,
                      interval: float = ..., what: str = ..., *,
                      detail: Callable[[], str] | None = ...) -> T: ...


@overload
async def until_async(predicate: Callable[[], T | None], timeout: float,
                      interval: float = ..., what: str = ..., *,
                      detail: Callable[[], str] | None = ...) -> T: ...


async def until_async(predicate: Callable[[], object], timeout: float, interval: float = 0.05,
                      what: str = "a condition", *,
                      detail: Callable[[], str] | None = None) -> object:
    """``until`` for async code: sleeps without blocking the loop, and awaits what an
    ``async def`` predicate returns."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            raise _timed_out(timeout, what, detail)
        await asyncio.sleep(min(interval, left))
