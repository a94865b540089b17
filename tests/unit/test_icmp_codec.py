"""Pure tests of the ICMP codec: checksum, echo request building, reply/error parsing."""

from __future__ import annotations

import socket
import struct

from hypothesis import given
from hypothesis import strategies as st

from probes.icmp import (
    EchoReply,
    QuotedError,
    build_echo_request,
    parse_v4,
    parse_v6,
)
from probes.netutil import internet_checksum


def naive_checksum(data: bytes) -> int:
    """RFC 1071 word by word, as the reference the fast version is checked against."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv4_header(src: str, dst: str, payload_len: int, proto: int = 1) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + payload_len, 1, 0, 64, proto, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    )
    return header[:10] + struct.pack("!H", naive_checksum(header)) + header[12:]


def icmp_v4(icmp_type: int, code: int, rest: bytes, body: bytes) -> bytes:
    raw = bytes([icmp_type, code]) + b"\x00\x00" + rest + body
    return raw[:2] + struct.pack("!H", naive_checksum(raw)) + raw[4:]


def echo_reply_v4(ident: int, seq: int, payload: bytes, src: str = "192.0.2.2") -> bytes:
    icmp = icmp_v4(0, 0, struct.pack("!HH", ident, seq), payload)
    return ipv4_header(src, "192.0.2.1", len(icmp)) + icmp


@given(st.binary(max_size=200))
def test_checksum_matches_rfc1071_reference(data: bytes) -> None:
    assert internet_checksum(data) == naive_checksum(data)


def test_checksum_known_vector() -> None:
    # RFC 1071 section 3 example words: 0001 f203 f4f5 f6f7 -> sum ddf2, checksum 220d.
    assert internet_checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=64))
def test_v4_request_checksum_verifies(ident: int, seq: int, payload: bytes) -> None:
    packet = build_echo_request(socket.AF_INET, ident, seq, payload)
    assert packet[0] == 8 and packet[1] == 0
    assert struct.unpack("!HH", packet[4:8]) == (ident, seq)
    assert packet[8:] == payload
    # Summing a correct message including its checksum gives zero.
    assert naive_checksum(packet) == 0
    assert packet[2:4] == struct.pack("!H", naive_checksum(packet[:2] + b"\0\0" + packet[4:]))


def test_v6_request_leaves_checksum_to_kernel() -> None:
    packet = build_echo_request(socket.AF_INET6, 0x1234, 7, b"cookie!!")
    assert packet == bytes([128, 0, 0, 0, 0x12, 0x34, 0, 7]) + b"cookie!!"


def test_parse_v4_echo_reply() -> None:
    parsed = parse_v4(echo_reply_v4(0xBEEF, 42, b"12345678"))
    assert parsed == EchoReply(0xBEEF, 42, b"12345678")


def test_parse_v4_rejects_bad_checksum() -> None:
    packet = bytearray(echo_reply_v4(1, 2, b"abcdefgh"))
    packet[-1] ^= 0xFF
    assert parse_v4(bytes(packet)) == "bad-checksum"


def test_parse_v4_all_zero_icmp_is_not_a_valid_checksum() -> None:
    assert parse_v4(ipv4_header("192.0.2.2", "192.0.2.1", 8) + bytes(8)) == "bad-checksum"


def test_parse_v4_short_and_foreign() -> None:
    assert parse_v4(b"") == "short"
    assert parse_v4(b"\x45" + bytes(18)) == "short"
    reply = echo_reply_v4(1, 2, b"")
    assert parse_v4(reply[:24]) == "short"  # IP header + 4 bytes of ICMP
    assert parse_v4(b"\x65" + reply[1:]) == "not-ipv4"
    assert parse_v4(b"\x44" + reply[1:]) == "bad-ip-header"
    udp = ipv4_header("192.0.2.2", "192.0.2.1", 8, proto=17) + bytes(8)
    assert parse_v4(udp) == "not-icmp"


def test_parse_v4_ignores_echo_request_and_redirect() -> None:
    request = icmp_v4(8, 0, struct.pack("!HH", 1, 1), b"x")
    assert parse_v4(ipv4_header("192.0.2.2", "192.0.2.1", len(request)) + request) == "other-type"
    redirect = icmp_v4(5, 1, bytes(4), bytes(28))
    assert parse_v4(ipv4_header("192.0.2.2", "192.0.2.1", len(redirect)) + redirect) == (
        "other-type"
    )


def quoted_request_v4(ident: int, seq: int, dst: str) -> bytes:
    request = build_echo_request(socket.AF_INET, ident, seq, b"cookie!!")
    return ipv4_header("192.0.2.1", dst, len(request)) + request


def test_parse_v4_unreachable_quotes_original_request() -> None:
    quote = quoted_request_v4(0xABCD, 9, "198.51.100.7")
    err = icmp_v4(3, 1, bytes(4), quote)
    parsed = parse_v4(ipv4_header("192.0.2.254", "192.0.2.1", len(err)) + err)
    assert parsed == QuotedError(0xABCD, 9, "198.51.100.7", 3, 1)


def test_parse_v4_error_with_only_eight_quoted_bytes() -> None:
    quote = quoted_request_v4(5, 6, "198.51.100.7")[:28]  # RFC 792 minimum quote
    err = icmp_v4(11, 0, bytes(4), quote)
    parsed = parse_v4(ipv4_header("192.0.2.254", "192.0.2.1", len(err)) + err)
    assert parsed == QuotedError(5, 6, "198.51.100.7", 11, 0)


def test_parse_v4_error_quoting_something_else() -> None:
    udp_quote = ipv4_header("192.0.2.1", "198.51.100.7", 8, proto=17) + bytes(8)
    err = icmp_v4(3, 3, bytes(4), udp_quote)
    assert parse_v4(ipv4_header("192.0.2.254", "192.0.2.1", len(err)) + err) == "quote-not-icmp"
    short = icmp_v4(3, 1, bytes(4), quoted_request_v4(1, 1, "198.51.100.7")[:24])
    assert parse_v4(ipv4_header("192.0.2.254", "192.0.2.1", len(short)) + short) == (
        "short-quote"
    )
    reply_quote = echo_reply_v4(1, 1, b"")
    err = icmp_v4(3, 1, bytes(4), reply_quote)
    assert parse_v4(ipv4_header("192.0.2.254", "192.0.2.1", len(err)) + err) == "quote-not-echo"


def test_parse_v6_echo_reply_and_errors() -> None:
    assert parse_v6(bytes([129, 0, 0, 0, 0, 5, 0, 6]) + b"abcdefgh") == EchoReply(
        5, 6, b"abcdefgh"
    )
    assert parse_v6(bytes([129, 1, 0, 0, 0, 5, 0, 6])) == "bad-code"
    assert parse_v6(bytes([128, 0, 0, 0, 0, 5, 0, 6])) == "other-type"
    assert parse_v6(b"\x81\x00") == "short"
    inner_ip = struct.pack(
        "!IHBB16s16s", 6 << 28, 16, 58, 64,
        socket.inet_pton(socket.AF_INET6, "2001:db8::1"),
        socket.inet_pton(socket.AF_INET6, "2001:db8::99"),
    )
    inner = inner_ip + build_echo_request(socket.AF_INET6, 0x0102, 3, b"cookie!!")
    err = bytes([1, 3, 0, 0, 0, 0, 0, 0]) + inner
    assert parse_v6(err) == QuotedError(0x0102, 3, "2001:db8::99", 1, 3)
    assert parse_v6(err[:50]) == "short-quote"
    assert parse_v6(err[:8] + b"\x40" + inner[1:]) == "bad-quote"
    not_icmp = inner_ip[:6] + b"\x11" + inner_ip[7:] + bytes(8)
    assert parse_v6(err[:8] + not_icmp) == "quote-not-icmp"


@given(st.binary(max_size=300))
def test_parse_any_bytes_never_raises(data: bytes) -> None:
    for parse in (parse_v4, parse_v6):
        result = parse(data)
        assert isinstance(result, EchoReply | QuotedError | str)


@given(
    st.integers(0, 15),
    st.sampled_from([0, 3, 11, 12, 8, 5]),
    st.binary(max_size=80),
    st.integers(0, 200),
)
def test_parse_v4_structured_garbage_never_raises(
    ihl: int, icmp_type: int, tail: bytes, cut: int
) -> None:
    # Packets that get past the first checks (IPv4, protocol ICMP, valid checksum) but
    # carry nonsense header lengths and truncated quotes.
    icmp = icmp_v4(icmp_type, 0, bytes(4), tail)
    header = bytearray(ipv4_header("192.0.2.2", "192.0.2.1", len(icmp)))
    header[0] = 0x40 | ihl
    packet = (bytes(header) + icmp)[:cut]
    result = parse_v4(packet)
    assert isinstance(result, EchoReply | QuotedError | str)


@given(st.sampled_from([129, 1, 3, 4, 2]), st.binary(max_size=120))
def test_parse_v6_structured_garbage_never_raises(icmp_type: int, tail: bytes) -> None:
    result = parse_v6(bytes([icmp_type, 0, 0, 0, 0, 0, 0, 0]) + tail)
    assert isinstance(result, EchoReply | QuotedError | str)


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(min_size=8, max_size=8))
def test_roundtrip_request_as_reply(ident: int, seq: int, cookie: bytes) -> None:
    # A host answers by flipping the type to 0 and fixing the checksum; parse must give
    # back exactly what we put in.
    request = build_echo_request(socket.AF_INET, ident, seq, cookie)
    reply = icmp_v4(0, 0, request[4:8], request[8:])
    assert parse_v4(ipv4_header("192.0.2.2", "192.0.2.1", len(reply)) + reply) == EchoReply(
        ident, seq, cookie
    )
