"""Digest authentication (probes/digest.py) against the published vectors of RFC 2617
section 3.5 and RFC 7616 section 3.9.1, plus challenge parsing and choice."""

from __future__ import annotations

import hashlib

import pytest

from probes.digest import (
    DigestChallenge,
    DigestError,
    authorization,
    choose_challenge,
    compute_response,
    parse_challenge,
)

RFC7616 = {
    "username": "Mufasa",
    "password": "Circle of Life",
    "realm": "http-auth@example.org",
    "nonce": "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
    "uri": "/dir/index.html",
    "method": "GET",
    "nc": "00000001",
    "cnonce": "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    "qop": "auth",
}


def _rfc7616(algorithm: str) -> str:
    v = RFC7616
    return compute_response(
        algorithm=algorithm, username=v["username"], password=v["password"],
        realm=v["realm"], nonce=v["nonce"], uri=v["uri"], method=v["method"], nc=v["nc"],
        cnonce=v["cnonce"], qop=v["qop"],
    )


def test_rfc7616_md5_vector() -> None:
    assert _rfc7616("MD5") == "8ca523f5e9506fed4657c9700eebdbec"


def test_rfc7616_sha256_vector() -> None:
    assert _rfc7616("SHA-256") == (
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    )


def test_rfc2617_vector() -> None:
    assert compute_response(
        algorithm="MD5", username="Mufasa", password="Circle Of Life",
        realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        uri="/dir/index.html", method="GET", nc="00000001", cnonce="0a4f113b", qop="auth",
    ) == "6629fae49393a05397450978507c4ef1"


def test_no_qop_is_rfc2069_form() -> None:
    def md5(s: str) -> str:
        return hashlib.md5(s.encode()).hexdigest()

    ha1, ha2 = md5("u:r:p"), md5("REGISTER:sip:x")
    assert compute_response(algorithm="MD5", username="u", realm="r", password="p",
                            method="REGISTER", uri="sip:x", nonce="n") == md5(f"{ha1}:n:{ha2}")


def test_authorization_header_from_rfc7616_challenge() -> None:
    ch = parse_challenge(
        'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
        'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
        'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    assert ch.algorithm == "SHA-256" and ch.qop == ("auth", "auth-int")
    value = authorization(ch, username="Mufasa", password="Circle of Life", method="GET",
                          uri="/dir/index.html", cnonce=RFC7616["cnonce"])
    assert 'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"' in value
    assert "qop=auth, nc=00000001" in value
    assert 'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"' in value
    assert "Circle of Life" not in value


def test_sess_variant() -> None:
    ch = parse_challenge('Digest realm="r", nonce="n", algorithm=MD5-sess, qop=auth')
    assert ch.sess and ch.algorithm == "MD5"
    value = authorization(ch, username="u", password="p", method="REGISTER", uri="sip:x",
                          cnonce="c")

    def md5(s: str) -> str:
        return hashlib.md5(s.encode()).hexdigest()

    ha1 = md5(md5("u:r:p") + ":n:c")
    expected = md5(f"{ha1}:n:00000001:c:auth:{md5('REGISTER:sip:x')}")
    assert f'response="{expected}"' in value and "algorithm=MD5-sess" in value


def test_choose_strongest() -> None:
    ch = choose_challenge([
        'Digest realm="r", nonce="n", algorithm=MD5',
        'Digest realm="r", nonce="n", algorithm=SHA-256',
        'Basic realm="r"',
    ])
    assert ch.algorithm == "SHA-256"


@pytest.mark.parametrize(("value", "match"), [
    ('Basic realm="r"', "not a Digest"),
    ('Digest realm="r"', "realm or nonce"),
    ('Digest realm="r", nonce="n", algorithm=SHA-1', "unsupported"),
    ('Digest realm="r", nonce="n", qop="auth-int"', "other than auth"),
    ('Digest nonce=n, realm="r', "unterminated"),
    ("Digest realm", "without value"),
])
def test_bad_challenges(value: str, match: str) -> None:
    with pytest.raises(DigestError, match=match):
        parse_challenge(value)


def test_choose_with_nothing_usable() -> None:
    with pytest.raises(DigestError, match="no usable"):
        choose_challenge(['Basic realm="x"'])


def test_quoted_escapes() -> None:
    ch = parse_challenge(r'Digest realm="a \"b\"", nonce=abc , stale=TRUE')
    assert ch == DigestChallenge(realm='a "b"', nonce="abc", stale=True)
