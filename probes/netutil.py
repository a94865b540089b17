"""Small socket helpers shared by the probe modules: pinning a socket to a link and the
Internet checksum.

Every probe must leave through the link it watches (DESIGN: "Probes are bound to the
link"), so binding to a device and a source address lives here once. This module knows
nothing of probe kinds or samples; it only touches sockets and bytes.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

# Linux values; the socket module does not export SO_BINDTODEVICE on every build.
SO_BINDTODEVICE = 25
SO_RCVBUFFORCE = 33


def family_of(host: str) -> socket.AddressFamily:
    """Address family of an IP literal; raises ValueError for anything else."""
    return (
        socket.AF_INET6
        if ipaddress.ip_address(host.split("%", 1)[0]).version == 6
        else socket.AF_INET
    )


def bind_to_link(sock: socket.socket, device: str | None, source: str | None) -> None:
    """Pin ``sock`` to ``device`` (SO_BINDTODEVICE) and ``source`` (bind).

    Raises OSError as the kernel reports it (ENODEV, EADDRNOTAVAIL, EPERM): callers turn
    it into a failed sample, because a missing link is a finding, not a crash.
    """
    if device:
        encoded = device.encode()
        if len(encoded) >= 16:  # IFNAMSIZ; the kernel would silently truncate
            raise OSError(errno.ENODEV, f"device name too long: {device!r}")
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, encoded)
    if source:
        if sock.family == socket.AF_INET6:
            sock.bind(socket.getaddrinfo(source, 0, socket.AF_INET6, 0, 0,
                                         socket.AI_NUMERICHOST)[0][4])
        else:
            sock.bind((source, 0))


def grow_receive_buffer(sock: socket.socket, size: int) -> None:
    """Ask for a receive buffer of ``size`` bytes, beyond rmem_max when we are root.

    A batch of replies arrives while we are still sending the rest of the batch, so the
    buffer must hold a whole batch or the kernel drops replies and we report false loss.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def internet_checksum(data: bytes) -> int:
    """RFC 1071 checksum of ``data`` (odd length padded with a zero byte).

    Uses the identity that the ones'-complement sum of 16-bit words is the big-endian
    integer value modulo 0xffff, which runs in C instead of a Python loop over words.
    """
    if len(data) & 1:
        data += b"\x00"
    value = int.from_bytes(data, "big")
    folded = value % 0xFFFF
    if folded == 0 and value != 0:
        folded = 0xFFFF  # ones'-complement sum of non-zero words is never +0
    return 0xFFFF - folded
