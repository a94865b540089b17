"""The house rule of tests/conftest.py can fail: a test run in a pytest subprocess that leaves a
task behind errors at teardown, naming the task, while clean async tests and sync tests pass."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

INNER_TESTS = '''
import asyncio

import pytest


@pytest.fixture
async def cleaned_up_task():
    """A fixture that starts a task and cancels and awaits it: no leak."""
    task = asyncio.create_task(asyncio.sleep(60), name="fixture-owned")
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def forgotten() -> None:
    await asyncio.sleep(60)


async def test_leaves_a_task_behind(cleaned_up_task):
    asyncio.create_task(forgotten(), name="forgotten-probe")


async def test_cleans_up(cleaned_up_task):
    await asyncio.sleep(0)


def test_sync_is_left_alone():
    assert asyncio.run(asyncio.sleep(0, "done")) == "done"
'''


def test_a_test_that_leaves_a_task_pending_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The subprocess imports the guard from this repository's tests package.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makeconftest(
        "from tests.conftest import no_pending_tasks, pending_task_guard  # noqa: F401\n"
    )
    pytester.makepyfile(test_inner=INNER_TESTS)

    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rE")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines([
        "*ERROR at teardown of test_leaves_a_task_behind*",
        "*1 asyncio task(s) still pending when the test ended*",
        "*forgotten-probe (forgotten at *test_inner.py:*)*",
    ])
    assert "fixture-owned" not in result.stdout.str()
