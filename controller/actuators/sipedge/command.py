"""Command actuator: run an operator's program with the edge plan as JSON on its stdin.

For edges and carrier APIs that no built-in driver speaks: the program gets the document of
controller.actuators.sipedge.document (canonical JSON and a newline) on stdin and says by its exit
status whether it applied it: 0 applied, anything else failed (the tail of its stderr goes
into the error). It runs from an argv list, never through a shell, in its own process group
so that on timeout the whole group (the program and anything it started) is killed by that
group's id and reaped. Its environment is a minimal one (PATH, locale, time zone) plus the
names the operator passes on and LIFELINE_* facts about the push: lifeline's own secrets
reach it only when asked. Full or diff is the `PlanSequencer`'s choice, as for the webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Mapping, Sequence
from typing import Any

from controller.actuators.sipedge.document import (
    DocumentPusher,
    PlanSequencer,
    PushResult,
    canonical_json,
)

__all__ = ["BASE_ENV", "CommandActuator", "PushResult"]

log = logging.getLogger(__name__)

# What a program needs to find its tools and print sensibly, and nothing that could hold a
# secret.
BASE_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_TAIL_BYTES = 2048
_ERROR_TAIL_CHARS = 500


async def _read_tail(stream: asyncio.StreamReader | None, keep: int) -> bytes:
    """Drain a pipe and keep only its last `keep` bytes, so a chatty program costs no memory."""
    if stream is None:
        return b""
    tail = b""
    while chunk := await stream.read(65536):
        tail = (tail + chunk)[-keep:]
    return tail


async def _feed(stdin: asyncio.StreamWriter | None, body: bytes) -> None:
    if stdin is None:
        return
    # A program that exits without reading its input is its business, not an error here:
    # its exit status says what happened.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(body)
        await stdin.drain()
    stdin.close()
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        await stdin.wait_closed()


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    # The group may be gone already (normal exit raced the timeout).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


class CommandActuator(DocumentPusher):
    """Runs `argv` once per push; one instance per program (it tracks what it holds)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        site: str,
        timeout: float = 10.0,
        env: Mapping[str, str] | None = None,
        pass_env: Sequence[str] = (),
        kill_grace: float = 1.0,
        start_generation: int | None = None,
        name: str = "command",
    ) -> None:
        """`env` adds variables; `pass_env` names variables of lifeline's own environment to
        pass on (the way to hand a program a secret on purpose)."""
        if not argv or not all(isinstance(a, str) and a for a in argv):
            raise ValueError("command argv must be a non-empty list of non-empty strings")
        if timeout <= 0 or kill_grace < 0:
            raise ValueError("timeout must be > 0 and kill_grace >= 0")
        self.argv = list(argv)
        self.timeout = timeout
        self.kill_grace = kill_grace
        self.name = name
        self._extra_env = dict(env or {})
        self._pass_env = tuple(pass_env)
        start = start_generation if start_generation is not None else time.time_ns() // 1000
        self.sequencer = PlanSequencer(site=site, start_generation=start)

    def __repr__(self) -> str:
        # argv only: env values may be secrets the operator passes on.
        return f"CommandActuator(name={self.name!r}, argv={self.argv!r})"

    def environment(self, doc: Mapping[str, Any]) -> dict[str, str]:
        """The child's whole environment for `doc`."""
        env = {k: os.environ[k] for k in BASE_ENV if k in os.environ}
        env.setdefault("PATH", _DEFAULT_PATH)
        env.update({k: os.environ[k] for k in self._pass_env if k in os.environ})
        env.update(self._extra_env)
        env["LIFELINE_SITE"] = str(doc["site"])
        env["LIFELINE_GENERATION"] = str(doc["generation"])
        env["LIFELINE_FULL"] = "1" if doc["full"] else "0"
        return env

    async def send(self, doc: Mapping[str, Any]) -> PushResult:
        """Run the program once with `doc` on stdin; never raises (except cancellation)."""
        started = time.monotonic()
        generation = int(doc["generation"])
        full = bool(doc["full"])

        def result(ok: bool, status: int | None, error: str | None, permanent: bool) -> PushResult:
            return PushResult(
                ok=ok, attempts=1, status=status, error=error,
                seconds=time.monotonic() - started, generation=generation, full=full,
                permanent=permanent,
            )

        body = canonical_json(doc) + b"\n"
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self.environment(doc),
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            error = f"cannot run {self.argv[0]}: {exc.strerror or exc}"
            log.error("%s: generation %d: %s", self.name, generation, error)
            return result(False, None, error, True)

        # start_new_session makes the child a group leader: its pid is the group id.
        pgid = proc.pid
        feeder = asyncio.create_task(_feed(proc.stdin, body))
        out_reader = asyncio.create_task(_read_tail(proc.stdout, _TAIL_BYTES))
        err_reader = asyncio.create_task(_read_tail(proc.stderr, _TAIL_BYTES))
        timed_out = False
        try:
            try:
                await asyncio.wait_for(proc.wait(), self.timeout)
            except TimeoutError:
                timed_out = True
                _kill_group(pgid, signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), self.kill_grace)
                except TimeoutError:
                    _kill_group(pgid, signal.SIGKILL)
                    await proc.wait()
            readers = {feeder, out_reader, err_reader}
            done, _ = await asyncio.wait(readers, timeout=self.kill_grace or 0.1)
            if len(done) < len(readers):
                # The leader is gone but something it started still holds our pipes: the
                # push is over, and a straggler would otherwise outlive every timeout.
                _kill_group(pgid, signal.SIGKILL)
                done, _ = await asyncio.wait(readers, timeout=1.0)
        finally:
            if proc.returncode is None:
                # Cancelled while waiting: leave no orphan behind.
                _kill_group(pgid, signal.SIGKILL)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            for task in (feeder, out_reader, err_reader):
                task.cancel()
            await asyncio.gather(feeder, out_reader, err_reader, return_exceptions=True)

        def tail(task: asyncio.Future[bytes]) -> str:
            if task not in done or task.cancelled() or task.exception() is not None:
                return ""
            data: bytes = task.result()
            return data.decode("utf-8", "replace").strip()[-_ERROR_TAIL_CHARS:]

        stdout_tail, stderr_tail = tail(out_reader), tail(err_reader)
        if stdout_tail:
            log.debug("%s: generation %d stdout: %s", self.name, generation, stdout_tail)
        code = proc.returncode
        if timed_out:
            error = f"no exit within {self.timeout:g} s: process group {pgid} killed"
        elif code == 0:
            return result(True, 0, None, False)
        elif code is not None and code < 0:
            error = f"killed by signal {-code}"
        else:
            error = f"exit status {code}"
        if stderr_tail:
            error += f": {stderr_tail}"
        log.error("%s: generation %d failed: %s", self.name, generation, error)
        return result(False, code, error, False)
