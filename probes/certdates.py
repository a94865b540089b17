"""The validity dates of an X.509 certificate, read from its DER bytes.

An HTTPS probe wants the peer certificate's notAfter also when the chain did not verify
(an expired or untrusted certificate is exactly when the days left matter), and Python's
``ssl`` decodes a certificate into a dict only after verifying it. The binary form is
always there, so this module walks just enough DER (RFC 5280: Certificate ->
TBSCertificate -> Validity) to read the two dates, without a crypto library. It does no
I/O and checks no signature: the dates are for a metric, trust is the TLS handshake's job.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["CertificateError", "validity"]


class CertificateError(ValueError):
    """The bytes are not a DER certificate this reader understands."""


def _item(der: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER item at ``pos``."""
    if pos + 2 > len(der):
        raise CertificateError("truncated")
    tag, first = der[pos], der[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if not 1 <= count <= 4 or pos + count > len(der):
            raise CertificateError("bad length")
        length = int.from_bytes(der[pos:pos + count], "big")
        pos += count
    if pos + length > len(der):
        raise CertificateError("truncated")
    return tag, pos, pos + length


def _time(der: bytes, pos: int) -> tuple[float, int]:
    tag, start, end = _item(der, pos)
    text = der[start:end].decode("ascii", "replace")
    if tag == 0x17:  # UTCTime: YYMMDDHHMMSSZ, years 1950-2049 (RFC 5280 4.1.2.5.1)
        if len(text) != 13 or not text.endswith("Z") or not text[:12].isdigit():
            raise CertificateError(f"bad UTCTime {text!r}")
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18:  # GeneralizedTime: YYYYMMDDHHMMSSZ
        raise CertificateError(f"not a time (tag {tag:#x})")
    elif len(text) != 15 or not text.endswith("Z") or not text[:14].isdigit():
        raise CertificateError(f"bad GeneralizedTime {text!r}")
    try:
        when = datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise CertificateError(f"bad time {text!r}") from None
    return when.timestamp(), end


def validity(der: bytes) -> tuple[float, float]:
    """(notBefore, notAfter) of a DER certificate, as Unix seconds (UTC)."""
    tag, start, _ = _item(der, 0)  # Certificate
    if tag != 0x30:
        raise CertificateError("not a certificate")
    tag, pos, _ = _item(der, start)  # TBSCertificate
    if tag != 0x30:
        raise CertificateError("no TBSCertificate")
    tag, _, end = _item(der, pos)
    if tag == 0xA0:  # [0] version, absent in v1 certificates
        pos = end
    # serialNumber, signature, issuer: skipped.
    for expected in (0x02, 0x30, 0x30):
        tag, _, end = _item(der, pos)
        if tag != expected:
            raise CertificateError(f"unexpected tag {tag:#x} before the validity")
        pos = end
    tag, pos, _ = _item(der, pos)  # Validity
    if tag != 0x30:
        raise CertificateError("no validity")
    not_before, pos = _time(der, pos)
    not_after, _ = _time(der, pos)
    return not_before, not_after
