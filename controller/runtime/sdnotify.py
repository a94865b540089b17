"""Tells systemd how the daemon is doing (sd_notify), without libsystemd.

The protocol is one AF_UNIX datagram of newline-separated ``KEY=value`` lines sent to the
socket systemd names in ``$NOTIFY_SOCKET`` (a path, or an abstract name written with a
leading ``@``): ``READY=1`` when the service works, ``STATUS=`` for ``systemctl status``,
``WATCHDOG=1`` at least every ``$WATCHDOG_USEC`` or systemd restarts the service, and
``STOPPING=1``. Without NOTIFY_SOCKET (not under systemd, or not Type=notify) every call
does nothing. Sending is best effort: a failure is logged once and never raised, since
systemd's view of the daemon must not decide whether the daemon protects the site. What
counts as alive is the caller's to say; this module only keeps the rhythm.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)

__all__ = ["Notifier"]


def _address(value: str) -> str | None:
    if value.startswith("@"):  # the abstract namespace: the name after a NUL byte
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    if value:
        log.warning("NOTIFY_SOCKET=%s is neither a path nor an @abstract name; systemd will "
                    "not hear from lifeline", value)
    return None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between pings: half the watchdog timeout, as sd_watchdog_enabled advises;
    None when there is no watchdog for this process."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):  # meant for another process (e.g. our parent)
        return None
    return int(usec) / 2 / 1_000_000


class Notifier:
    """The daemon's line to systemd; a no-op outside systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = (
            _watchdog_interval(env) if self.address is not None else None
        )
        self._sock: socket.socket | None = None
        self._warned = False
        self._ready = False
        self._status: str | None = None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields in one datagram; whether it left."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._sock.setblocking(False)  # a full queue drops a ping, never stalls
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as exc:
            if not self._warned:
                log.warning("cannot notify systemd at %s: %s", self.address.lstrip("\0"), exc)
                self._warned = True
            return False
        return True

    def running(self, status: str) -> None:
        """The service works: READY=1 the first time, then STATUS= when ``status`` changes."""
        if status == self._status and self._ready:
            return
        fields = [f"STATUS={status}"] if self._ready else ["READY=1", f"STATUS={status}"]
        self._ready = True
        self._status = status
        self.notify(*fields)

    def stopping(self, status: str) -> None:
        self.notify("STOPPING=1", f"STATUS={status}")

    async def watchdog(self, busy_since: Callable[[], float | None]) -> None:
        """Ping every half watchdog period while the control loop is alive: waiting for
        work, or in a cycle that started less than that period ago (``busy_since`` gives
        the loop time it started, None when idle). A cycle stuck that long, or an event
        loop blocked by a call, stops the pings, and systemd restarts the daemon."""
        interval = self.watchdog_interval
        if interval is None:
            return
        loop = asyncio.get_running_loop()
        while True:
            since = busy_since()
            if since is None or loop.time() - since < interval:
                self.notify("WATCHDOG=1")
            await asyncio.sleep(interval)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
