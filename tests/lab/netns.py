"""Low-level plumbing of the lab: running iproute2 and friends, namespace bookkeeping.

This module knows how to run a command (argv only, never a shell) on the machine or inside a
named network namespace, how to create and delete namespaces, and how to tell the namespaces
of a live lab run from the leftovers of a dead one (an owner record per run prefix under
``/run/lifeline-lab``). It never touches an address, route or rule of the machine's own
namespace, and it only ever deletes namespaces whose names carry a lab prefix. The topology
itself (what goes in which namespace) lives in ``lab.topology``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import secrets
import select
import signal
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from tests.lab.wait import until

__all__ = [
    "DEFAULT_PREFIX_PATTERN",
    "LAB_ROLES",
    "OWNER_DIR",
    "LabError",
    "add_namespaces",
    "cleanup_stale",
    "delete_namespaces",
    "inside",
    "ip_batch",
    "kill_pids",
    "list_namespaces",
    "namespace_pids",
    "new_prefix",
    "ns_argv",
    "owner_alive",
    "remove_owner",
    "run_cmd",
    "wait_ready",
    "write_owner",
]

# A run prefix is "ll-" plus 6 hex digits plus "-": short enough that the namespace names stay
# readable in `ip netns list`, random enough that parallel runs never collide.
DEFAULT_PREFIX_PATTERN = r"ll-[0-9a-f]{6}-"

# The roles a lab namespace can have (name = prefix + role). cleanup_stale matches whole
# names, so a namespace that merely starts like ours (another tool's "ll-...") is safe.
LAB_ROLES = ("site", "isp-a", "isp-b", "isp-c", "inet", "lan")

# /run is a tmpfs, like /run/netns: both vanish at reboot, so an owner record can never
# outlive the namespaces it speaks for.
OWNER_DIR = Path("/run/lifeline-lab")


class LabError(RuntimeError):
    """A lab command failed; the message carries the argv and what the command said."""


def new_prefix() -> str:
    """A fresh per-run prefix, e.g. ``ll-3fa94c-``."""
    return f"ll-{secrets.token_hex(3)}-"


def ns_argv(ns: str, argv: Sequence[str]) -> list[str]:
    """The argv that runs ``argv`` inside namespace ``ns`` (``ip netns exec`` execs it, so
    the PID of the resulting process is the PID of the command itself)."""
    return ["ip", "netns", "exec", ns, *argv]


def run_cmd(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 10.0,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv, capture its output; with ``check`` a non-zero exit raises LabError.

    LabError rather than CalledProcessError because the interesting part of a failed lab
    command is its stderr, which CalledProcessError leaves out of its message.
    """
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input_text,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout} s: {' '.join(argv)}") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise LabError(f"exit {proc.returncode}: {' '.join(argv)}: {detail}")
    return proc


def ip_batch(ns: str, commands: Sequence[str]) -> None:
    """Run many ``ip`` commands in ``ns`` with one fork (``ip -n NS -batch -``)."""
    if commands:
        run_cmd(["ip", "-n", ns, "-batch", "-"], input_text="\n".join(commands) + "\n")


_CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def inside(ns: str) -> Iterator[None]:
    """Run this thread in namespace ``ns`` for the block, then come back; sockets made in the
    block stay in ``ns``. Staying behind would poison whatever runs next in this thread, so
    failing to come back aborts the process."""
    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
        try:
            if libc.setns(target, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns {ns}: {os.strerror(err)}")
        finally:
            os.close(target)
        try:
            yield
        finally:
            if libc.setns(home, _CLONE_NEWNET) != 0:
                os.abort()
    finally:
        os.close(home)


def list_namespaces() -> list[str]:
    """Names of all named network namespaces on the machine."""
    out = run_cmd(["ip", "netns", "list"]).stdout
    # Lines look like "name (id: 3)" or just "name".
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def add_namespaces(names: Iterable[str]) -> None:
    """Create namespaces in one ``ip -batch`` call (one fork instead of one per namespace)."""
    lines = "".join(f"netns add {name}\n" for name in names)
    if lines:
        run_cmd(["ip", "-batch", "-"], input_text=lines)


def delete_namespaces(names: Iterable[str]) -> None:
    """Delete namespaces, ignoring ones already gone; kills nothing (see kill_pids)."""
    existing = set(list_namespaces())
    lines = "".join(f"netns delete {name}\n" for name in names if name in existing)
    if lines:
        # -force: keep going past a namespace that vanished between listing and deleting.
        run_cmd(["ip", "-force", "-batch", "-"], input_text=lines, check=False)


def namespace_pids(name: str) -> list[int]:
    """PIDs of processes living in namespace ``name``."""
    proc = run_cmd(["ip", "netns", "pids", name], check=False)
    return [int(tok) for tok in proc.stdout.split() if tok.isdigit()]


def end_process(proc: subprocess.Popen[bytes] | None, timeout: float = 5.0) -> None:
    """SIGTERM a process we started, by its PID; SIGKILL it if it lingers past ``timeout``.
    A no-op for None or a process that has already exited."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def kill_pids(pids: Iterable[int], grace: float = 2.0) -> None:
    """SIGTERM each PID, wait up to ``grace`` seconds, then SIGKILL what is left.

    Callers pass only PIDs they started themselves (or PIDs living inside a lab namespace
    of a dead run, which only the lab can have started).
    """
    pending = set(pids)
    for pid in list(pending):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pending.discard(pid)

    def all_gone() -> bool:
        for pid in list(pending):
            if not _alive(pid):
                pending.discard(pid)
        return not pending

    with contextlib.suppress(TimeoutError):
        until(all_gone, grace, 0.02, "the processes to exit")
    for pid in pending:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    # Reap our own children so they do not linger as zombies that look alive.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_ready(proc: subprocess.Popen[str], what: str, timeout: float = 10.0) -> None:
    """Wait for a lab helper's ``ready`` line on its stdout (its socket or queue is bound,
    so traffic may be pointed at it); raise LabError with its stderr if it never comes."""
    assert proc.stdout is not None, "helper must be started with stdout=PIPE"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([proc.stdout], [], [], 0.1)
        if readable:
            line = proc.stdout.readline()
            if line.strip() == "ready":
                return
            if line == "":
                break
        if proc.poll() is not None:
            break
    err = ""
    if proc.poll() is not None and proc.stderr is not None:
        with contextlib.suppress(OSError):
            err = proc.stderr.read()
    raise LabError(f"{what} did not start: {err.strip() or 'no ready line'}")


def _start_time(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot (field 22 of /proc/PID/stat),
    which together with the PID identifies a process even after PID reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; fields after it follow the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if len(fields) > 19 else None


def write_owner(prefix: str) -> None:
    """Record that this process owns the namespaces with ``prefix``."""
    OWNER_DIR.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    (OWNER_DIR / prefix.rstrip("-")).write_text(f"{pid} {_start_time(pid)}\n")


def remove_owner(prefix: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (OWNER_DIR / prefix.rstrip("-")).unlink()


def owner_alive(prefix: str) -> bool:
    """Whether the process that built the lab with ``prefix`` is still running."""
    try:
        pid_text, start = (OWNER_DIR / prefix.rstrip("-")).read_text().split()
    except (OSError, ValueError):
        return False
    pid = int(pid_text)
    return _start_time(pid) == start


def cleanup_stale(prefix_pattern: str = DEFAULT_PREFIX_PATTERN) -> list[str]:
    """Remove namespaces left by lab runs whose owner process is gone; return their names.

    Only names made of ``prefix_pattern`` and a lab role (``LAB_ROLES``) are considered,
    and a run whose owner is alive (a parallel test session) is never touched. Processes
    still living inside a stale namespace (a delayer, a stream receiver of the crashed run)
    are killed first, since a namespace with processes in it keeps its interfaces after
    `ip netns delete`.
    """
    roles = "|".join(re.escape(role) for role in LAB_ROLES)
    matcher = re.compile(f"^({prefix_pattern})(?:{roles})$")
    stale: dict[str, list[str]] = {}
    for name in list_namespaces():
        m = matcher.match(name)
        if m is None:
            continue
        prefix = m.group(1)
        if not owner_alive(prefix):
            stale.setdefault(prefix, []).append(name)
    removed: list[str] = []
    for prefix, names in stale.items():
        pids: list[int] = []
        for name in names:
            pids.extend(namespace_pids(name))
        kill_pids(pids)
        delete_namespaces(names)
        remove_owner(prefix)
        removed.extend(names)
    return removed
