"""House rules for every test: an async test must not leave asyncio tasks behind.

pytest-asyncio (auto mode, one loop per test) closes the test's loop after teardown and
cancels whatever is still pending there without a word, so a task a test (or the code under
test) forgot to cancel and await hides until it bites another test or production. The
autouse ``no_pending_tasks`` fails every async test whose loop still holds a task once the
test and its own fixtures are done, names each task, and cancels them so nothing leaks
further. Sync tests are not touched (they have no loop of their own). Fixtures of the lab
and of the integration peers live in ``tests/integration/conftest.py``.
"""

from __future__ import annotations

import asyncio
import reprlib
from collections.abc import AsyncIterator

import pytest
from pytest_asyncio import is_async_test

pytest_plugins = ["pytester"]

# How long the cancelled leftovers get to finish before the test is failed regardless: a task
# that swallows its cancellation must not hang the run.
_CANCEL_GRACE = 5.0


def describe_task(task: asyncio.Task[object]) -> str:
    """One line a reader can act on: the task's name, its coroutine and where it waits."""
    coro = task.get_coro()
    what = getattr(coro, "__qualname__", None) or reprlib.repr(coro)
    frames = task.get_stack(limit=1)
    where = f" at {frames[0].f_code.co_filename}:{frames[0].f_lineno}" if frames else ""
    return f"{task.get_name()} ({what}{where})"


@pytest.fixture
async def pending_task_guard() -> AsyncIterator[None]:
    """Runs in the test's own loop (it is an async fixture of the default function loop
    scope); at teardown every other task still pending in that loop is a leak."""
    yield
    me = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() if t is not me]
    if not leaked:
        return
    names = sorted(describe_task(t) for t in leaked)
    for task in leaked:
        task.cancel()
    await asyncio.wait(leaked, timeout=_CANCEL_GRACE)
    pytest.fail(
        f"{len(leaked)} asyncio task(s) still pending when the test ended (cancel and "
        "await what a test or fixture starts):\n  " + "\n  ".join(names),
        pytrace=False,
    )


@pytest.fixture(autouse=True)
def no_pending_tasks(request: pytest.FixtureRequest) -> None:
    """Puts ``pending_task_guard`` under every async test.

    Autouse fixtures are set up first and torn down last, so the guard, requested here,
    looks after every other fixture of the test has cleaned up, and before pytest-asyncio
    closes the loop (the guard depends on that loop, so the loop outlives it).
    """
    if is_async_test(request.node):
        request.getfixturevalue("pending_task_guard")
