"""probes.certdates: a certificate's validity read from DER built here byte by byte (the
integration tests read real openssl certificates through a TLS connection)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes.certdates import CertificateError, validity


def tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + content


def cert(not_before: bytes, not_after: bytes, version: bool = True,
         issuer_size: int = 10) -> bytes:
    tbs = b"".join([
        tlv(0xA0, tlv(0x02, b"\x02")) if version else b"",
        tlv(0x02, b"\x01\x02\x03"),  # serial
        tlv(0x30, tlv(0x06, b"\x2a\x86\x48")),  # signature algorithm
        tlv(0x30, b"\x00" * issuer_size),  # issuer (content not read)
        tlv(0x30, not_before + not_after),  # validity
        tlv(0x30, b""),  # subject ...
    ])
    return tlv(0x30, tlv(0x30, tbs) + tlv(0x30, b"sig"))


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0,
       second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def test_utctime_and_generalizedtime_are_read() -> None:
    der = cert(tlv(0x17, b"200101000000Z"), tlv(0x18, b"20500201123000Z"))
    assert validity(der) == (ts(2020, 1, 1), ts(2050, 2, 1, 12, 30))


def test_utctime_years_from_50_are_the_1900s() -> None:
    der = cert(tlv(0x17, b"991231235959Z"), tlv(0x17, b"490101000000Z"), version=False)
    assert validity(der) == (ts(1999, 12, 31, 23, 59, 59), ts(2049, 1, 1))


def test_long_lengths_are_followed() -> None:
    der = cert(tlv(0x17, b"260101000000Z"), tlv(0x17, b"270101000000Z"), issuer_size=300)
    assert validity(der)[1] == ts(2027, 1, 1)


@pytest.mark.parametrize("der", [
    b"",
    b"\x02\x01\x00",
    cert(tlv(0x17, b"2601010000Z"), tlv(0x17, b"270101000000Z")),
    cert(tlv(0x04, b"260101000000Z"), tlv(0x17, b"270101000000Z")),
    cert(tlv(0x17, b"261301000000Z"), tlv(0x17, b"270101000000Z")),
    cert(tlv(0x17, b"ab0101000000Z"), tlv(0x17, b"270101000000Z")),
    cert(tlv(0x17, b"260101000000Z"), tlv(0x18, b"2027010100000Z")),
    cert(tlv(0x17, b"260101000000Z"), tlv(0x17, b"270101000000Z"))[:-20],
])
def test_what_is_not_a_certificate_is_a_clear_error(der: bytes) -> None:
    with pytest.raises(CertificateError):
        validity(der)


GOOD = cert(tlv(0x17, b"260101000000Z"), tlv(0x18, b"20270101000000Z"))


@given(st.one_of(
    st.binary(max_size=200),
    st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)).map(
        lambda pv: GOOD[:pv[0]] + bytes([pv[1]]) + GOOD[pv[0] + 1:]),
    st.integers(0, len(GOOD)).map(lambda n: GOOD[:n]),
))
def test_damaged_or_random_bytes_raise_nothing_but_a_certificate_error(der: bytes) -> None:
    with contextlib.suppress(CertificateError):
        not_before, not_after = validity(der)
        assert not_before <= not_after or der != GOOD
