"""ARP probe: is the gateway alive at layer 2, even when it drops ICMP?

Sends one broadcast ARP who-has for ``spec.host`` out of ``spec.device`` from
``spec.source`` on an AF_PACKET socket (frames built with struct: scapy would cost
seconds of import in the daemon) and waits for the matching is-at: sender IP equal to
the target and target IP equal to our source. IPv4 only. The boundary: one request, one
answer, a Sample; it never touches the kernel's neighbour table and never raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import socket
import struct
import time

from probes.sample import ErrorKind, ProbeSpec, Sample

__all__ = ["build_request", "parse_reply", "probe"]

ETH_P_ARP = 0x0806
_BROADCAST = b"\xff" * 6
_ARP_HEADER = struct.Struct("!HHBBH")  # htype, ptype, hlen, plen, op
_SIOCGIFADDR = 0x8915
_PACKET_OUTGOING = 4


def build_request(source_mac: bytes, source_ip: bytes, target_ip: bytes) -> bytes:
    """An Ethernet broadcast frame carrying an ARP who-has ``target_ip`` tell ``source_ip``."""
    return (
        _BROADCAST + source_mac + struct.pack("!H", ETH_P_ARP)
        + _ARP_HEADER.pack(1, 0x0800, 6, 4, 1)
        + source_mac + source_ip + b"\x00" * 6 + target_ip
    )


def parse_reply(frame: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(sender MAC, sender IP, target IP) of an ARP is-at frame, or None for anything else."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    htype, ptype, hlen, plen, op = _ARP_HEADER.unpack_from(frame, 14)
    if (htype, ptype, hlen, plen, op) != (1, 0x0800, 6, 4, 2):
        return None
    return frame[22:28], frame[28:32], frame[38:42]


def _device_ipv4(device: str) -> bytes:
    """The primary IPv4 address of ``device``, for probes configured without a source."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16s16x", device.encode()[:15])
        answer = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, request)
    return answer[20:24]


async def probe(spec: ProbeSpec, *, timeout: float) -> Sample:
    """One ARP who-has for ``spec.host`` on ``spec.device``; ok with the RTT of the is-at."""
    if not spec.device:
        return Sample.failure(ErrorKind.INTERNAL, f"arp probe needs a device: {spec.label()}")
    try:
        target_ip = ipaddress.IPv4Address(spec.host).packed
    except ValueError:
        return Sample.failure(ErrorKind.INTERNAL, f"arp needs an IPv4 target: {spec.host!r}")
    try:
        source_ip = (
            ipaddress.IPv4Address(spec.source).packed if spec.source
            else _device_ipv4(spec.device)
        )
    except ValueError:
        return Sample.failure(ErrorKind.INTERNAL, f"arp needs an IPv4 source: {spec.source!r}")
    except OSError as exc:
        return Sample.failure(
            ErrorKind.NETWORK, f"no IPv4 address on {spec.device}: {exc.strerror or exc}"
        )

    loop = asyncio.get_running_loop()
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    except OSError as exc:
        return Sample.failure(ErrorKind.NETWORK, f"packet socket: {exc.strerror or exc}")
    try:
        sock.setblocking(False)
        try:
            sock.bind((spec.device, ETH_P_ARP))
            source_mac = sock.getsockname()[4]
        except OSError as exc:
            return Sample.failure(ErrorKind.NETWORK, f"{spec.device}: {exc.strerror or exc}")
        if len(source_mac) != 6:
            return Sample.failure(ErrorKind.NETWORK, f"{spec.device} has no Ethernet address")
        frame = build_request(source_mac, source_ip, target_ip)
        start = time.perf_counter()
        try:
            await loop.sock_sendall(sock, frame)
        except OSError as exc:
            return Sample.failure(ErrorKind.NETWORK, f"send: {exc.strerror or exc}")
        try:
            async with asyncio.timeout(timeout):
                while True:
                    data, address = await loop.sock_recvfrom(sock, 256)
                    if address[2] == _PACKET_OUTGOING:
                        continue
                    reply = parse_reply(data)
                    if reply is not None and reply[1] == target_ip and reply[2] == source_ip:
                        return Sample.success(time.perf_counter() - start)
        except TimeoutError:
            return Sample.failure(ErrorKind.TIMEOUT, f"no ARP reply within {timeout:g} s")
        except OSError as exc:
            return Sample.failure(ErrorKind.NETWORK, f"receive: {exc.strerror or exc}")
    finally:
        with contextlib.suppress(OSError):
            sock.close()
