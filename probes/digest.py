"""HTTP/SIP Digest authentication for the REGISTER check (RFC 2617, RFC 7616, RFC 8760).

Parses a ``WWW-Authenticate``/``Proxy-Authenticate`` Digest challenge, picks the strongest
of several, and computes the ``Authorization`` answer with MD5, SHA-256 or SHA-512/256
(and their ``-sess`` variants), with ``qop=auth`` when the server offers it. Pure code: no
I/O, no logging; the password goes in and only the hashed response comes out, so nothing
here can leak it. ``auth-int`` is not offered (a REGISTER has no body worth protecting and
carriers do not ask for it); a challenge that insists on it is rejected with a reason.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "ALGORITHMS",
    "DigestChallenge",
    "DigestError",
    "authorization",
    "choose_challenge",
    "compute_response",
    "parse_challenge",
]


class DigestError(ValueError):
    """A challenge we cannot answer; the message is safe to log (no secrets)."""


def _hasher(name: str) -> Callable[[str], str]:
    def h(data: str) -> str:
        return hashlib.new(name, data.encode()).hexdigest()

    return h


def _sha512_256_available() -> bool:
    try:
        hashlib.new("sha512_256", b"")
    except ValueError:
        return False
    return True


# Strongest first: the order a client prefers when a server offers several (RFC 8760 2.4).
ALGORITHMS: dict[str, Callable[[str], str]] = {}
if _sha512_256_available():
    ALGORITHMS["SHA-512-256"] = _hasher("sha512_256")
ALGORITHMS["SHA-256"] = _hasher("sha256")
ALGORITHMS["MD5"] = _hasher("md5")


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"  # base name, upper case, without -sess
    sess: bool = False
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False


def _auth_params(text: str) -> dict[str, str]:
    """``name=token`` / ``name="quoted"`` pairs separated by commas (RFC 7235 auth-param)."""
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t,":
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        if eq == -1:
            raise DigestError("auth parameter without value")
        name = text[i:eq].strip().lower()
        if not name or any(c in name for c in ' \t,"'):
            raise DigestError("bad auth parameter name")
        i = eq + 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i += 1
            out: list[str] = []
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                out.append(text[i])
                i += 1
            if i >= n:
                raise DigestError("unterminated quoted string")
            i += 1
            value = "".join(out)
        else:
            end = text.find(",", i)
            end = n if end == -1 else end
            value = text[i:end].strip()
            i = end
        params.setdefault(name, value)
    return params


def parse_challenge(value: str) -> DigestChallenge:
    """Parse one ``Digest ...`` challenge header value."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"not a Digest challenge: {scheme[:20]!r}")
    params = _auth_params(rest)
    if "realm" not in params or "nonce" not in params:
        raise DigestError("challenge without realm or nonce")
    algorithm = params.get("algorithm", "MD5").upper()
    sess = algorithm.endswith("-SESS")
    if sess:
        algorithm = algorithm[: -len("-SESS")]
    if algorithm not in ALGORITHMS:
        raise DigestError(f"unsupported algorithm {algorithm[:20]!r}")
    qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
    if qop and "auth" not in qop:
        raise DigestError("challenge offers only qop values other than auth")
    return DigestChallenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=algorithm,
        sess=sess,
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
    )


def choose_challenge(values: Iterable[str]) -> DigestChallenge:
    """The strongest answerable challenge among several header values (RFC 8760 2.4:
    a server may offer SHA-256 and MD5 side by side; the client takes the best it knows)."""
    usable: list[DigestChallenge] = []
    errors: list[str] = []
    for value in values:
        try:
            usable.append(parse_challenge(value))
        except DigestError as exc:
            errors.append(str(exc))
    if not usable:
        raise DigestError("no usable Digest challenge" + (f": {errors[0]}" if errors else ""))
    rank = list(ALGORITHMS)
    return min(usable, key=lambda c: rank.index(c.algorithm))


def compute_response(
    *,
    algorithm: str,
    username: str,
    realm: str,
    password: str,
    method: str,
    uri: str,
    nonce: str,
    nc: str | None = None,
    cnonce: str | None = None,
    qop: str | None = None,
    sess: bool = False,
) -> str:
    """The ``response`` value (RFC 7616 3.4.1); without qop, the RFC 2069 form."""
    h = ALGORITHMS.get(algorithm.upper())
    if h is None:
        raise DigestError(f"unsupported algorithm {algorithm[:20]!r}")
    ha1 = h(f"{username}:{realm}:{password}")
    if sess:
        if cnonce is None:
            raise DigestError("-sess needs a cnonce")
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    if qop:
        if nc is None or cnonce is None:
            raise DigestError("qop needs nc and cnonce")
        return h(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return h(f"{ha1}:{nonce}:{ha2}")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def authorization(
    challenge: DigestChallenge,
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """The ``Authorization``/``Proxy-Authorization`` header value answering ``challenge``."""
    qop = "auth" if "auth" in challenge.qop else None
    if qop or challenge.sess:
        cnonce = cnonce or secrets.token_hex(12)
    nc_text = f"{nc:08x}"
    response = compute_response(
        algorithm=challenge.algorithm,
        username=username,
        realm=challenge.realm,
        password=password,
        method=method,
        uri=uri,
        nonce=challenge.nonce,
        nc=nc_text if qop else None,
        cnonce=cnonce,
        qop=qop,
        sess=challenge.sess,
    )
    algorithm = challenge.algorithm + ("-sess" if challenge.sess else "")
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(challenge.realm)}",
        f"nonce={_quote(challenge.nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
        f"algorithm={algorithm}",
    ]
    if cnonce is not None:
        parts.append(f"cnonce={_quote(cnonce)}")
    if qop:
        parts += [f"qop={qop}", f"nc={nc_text}"]
    if challenge.opaque is not None:
        parts.append(f"opaque={_quote(challenge.opaque)}")
    return "Digest " + ", ".join(parts)
