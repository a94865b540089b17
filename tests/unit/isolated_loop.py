"""Run a coroutine to completion on an event loop of its own, for synchronous tests
(hypothesis drives many examples through one test function).

Not asyncio.run: that makes its loop the current one and then unsets it, dropping the
loop pytest-asyncio's plugins may have made current for a synchronous test, which is then
garbage-collected unclosed and fails the run (warnings are errors). This loop is never
made current and is always closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
