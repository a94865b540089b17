"""The daemon's real loop as a task in a unit test: entered once it has published its
first snapshot (what every test reads first), stopped and awaited whatever happens, so no
test leaves a loop running into the next one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from controller.runtime.daemon import Daemon


@contextlib.asynccontextmanager
async def looping(daemon: Daemon) -> AsyncIterator[Daemon]:
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        while daemon.latest is None:
            if task.done():  # it died before its first cycle: say why, do not spin
                task.result()
                raise AssertionError("the daemon stopped before its first snapshot")
            await asyncio.sleep(0.01)
        yield daemon
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
