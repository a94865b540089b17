"""systemd hears READY, STATUS, WATCHDOG and STOPPING over a real datagram socket, and
nothing breaks when systemd is not there."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.runtime.sdnotify import Notifier


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A socket bound where systemd's would be, and the NOTIFY_SOCKET that names it."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(2.0)
        yield sock, str(path)


def received(sock: socket.socket) -> list[str]:
    """Every datagram waiting, without waiting for more."""
    out = []
    sock.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        while True:
            out.append(sock.recv(4096).decode())
    sock.settimeout(2.0)
    return out


def test_outside_systemd_every_call_is_a_no_op() -> None:
    n = Notifier({})
    assert n.address is None and n.watchdog_interval is None
    assert n.notify("READY=1") is False
    n.running("internet via fibre-a")
    n.stopping("bye")
    n.close()


def test_ready_once_then_status_only_when_it_changes(
    systemd: tuple[socket.socket, str],
) -> None:
    sock, path = systemd
    n = Notifier({"NOTIFY_SOCKET": path})
    n.running("internet via fibre-a")
    n.running("internet via fibre-a")
    n.running("internet via fibre-b")
    n.stopping("stopping")
    n.close()
    assert received(sock) == [
        "READY=1\nSTATUS=internet via fibre-a",
        "STATUS=internet via fibre-b",
        "STOPPING=1\nSTATUS=stopping",
    ]


def test_an_abstract_socket_name_starts_with_at() -> None:
    name = f"lifeline-test-{os.getpid()}-{id(object())}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2.0)
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.notify("READY=1")
        n.close()
        assert sock.recv(4096) == b"READY=1"


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),  # another process's
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_the_watchdog_pings_at_half_its_timeout_and_only_for_this_process(
    systemd: tuple[socket.socket, str], env: dict[str, str], interval: float | None
) -> None:
    assert Notifier({"NOTIFY_SOCKET": systemd[1], **env}).watchdog_interval == interval


def test_no_watchdog_without_a_notify_socket() -> None:
    assert Notifier({"WATCHDOG_USEC": "30000000"}).watchdog_interval is None


async def test_the_watchdog_pings_while_the_loop_is_alive_and_stops_when_it_hangs(
    systemd: tuple[socket.socket, str],
) -> None:
    sock, path = systemd
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})  # a ping every 50 ms
    loop = asyncio.get_running_loop()
    busy_since: float | None = None
    task = asyncio.create_task(n.watchdog(lambda: busy_since))
    await asyncio.sleep(0.3)
    idle = received(sock)
    assert idle and set(idle) == {"WATCHDOG=1"} and len(idle) >= 3
    busy_since = loop.time()  # a cycle that started now, and does not end
    await asyncio.sleep(0.3)
    stuck = received(sock)
    assert len(stuck) <= 1, f"pinged while the cycle hung: {stuck}"
    busy_since = None
    await asyncio.sleep(0.15)
    assert received(sock), "pings resume once the loop is back"
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    n.close()


def test_a_notification_that_cannot_leave_is_logged_once_never_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with caplog.at_level(logging.WARNING):
        assert n.notify("READY=1") is False
        assert n.notify("WATCHDOG=1") is False
    assert caplog.text.count("cannot notify systemd") == 1
    n.close()


def test_a_socket_name_that_is_neither_path_nor_abstract_is_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        n = Notifier({"NOTIFY_SOCKET": "vsock:2:1234", "WATCHDOG_USEC": "1000000"})
    assert n.address is None and n.watchdog_interval is None
    assert "neither a path nor an @abstract name" in caplog.text
