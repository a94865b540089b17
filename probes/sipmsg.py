"""SIP message parsing, stream framing and request building (RFC 3261), pure code.

This module turns bytes from a socket into a ``SipMessage`` and back: the start line,
headers (case-insensitive, compact forms, folded continuation lines, comma lists split
where the grammar allows it) and the body framed by Content-Length, strictly over streams
and by the datagram's end over UDP. It is strict where a mistake would let one message be
read as another (framing, CSeq, duplicate framing headers) and tolerant of the quirks real
phones and SBCs show (LF-only lines, stray whitespace, lowercase names, unknown headers).
Everything it rejects raises ``SipParseError`` with a short reason, and nothing else: the
probe counts and drops what it cannot read. Sizes are bounded so no input can make it slow.
It does no I/O and reads no clock; the only randomness is in fresh tags and branches.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "MAX_HEADERS",
    "MAX_MESSAGE",
    "CSeq",
    "OutgoingRequest",
    "SipMessage",
    "SipParseError",
    "StreamFramer",
    "build_options",
    "build_register",
    "build_request",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse",
    "split_list",
]

MAX_MESSAGE = 64 * 1024
MAX_HEADERS = 256
BRANCH_MAGIC = "z9hG4bK"  # RFC 3261 8.1.1.7: marks a branch unique across space and time

# RFC 3261 7.3.3 and later RFCs' compact forms.
COMPACT: dict[str, str] = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

# Headers whose grammar is a comma-separated list, so one line may carry several values.
# Authorization-style headers are not here: their parameters are comma-separated too.
LIST_HEADERS = frozenset(
    {
        "via", "contact", "route", "record-route", "path", "service-route", "allow",
        "supported", "require", "proxy-require", "unsupported", "accept",
        "accept-encoding", "accept-language", "allow-events", "content-encoding",
    }
)

# Framing and matching headers: two different values would make the message ambiguous.
SINGLE_HEADERS = frozenset({"call-id", "cseq", "content-length"})

_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+\Z")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_DIGITS = re.compile(r"[0-9]+\Z")
_CSEQ_MAX = 2**31 - 1  # RFC 3261 8.1.1.5: a 32-bit number below 2**31


class SipParseError(ValueError):
    """A message we refuse to read; ``reason`` is short and safe to count or log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CSeq:
    number: int
    method: str


@dataclass(frozen=True, slots=True)
class SipMessage:
    """One parsed request or response.

    ``headers`` keeps wire order with canonical lowercase long names; list headers are
    already split into one entry per value, so ``get_all("via")[0]`` is the top Via
    whatever way the sender folded or combined them.
    """

    method: str | None  # requests only
    uri: str | None  # requests only
    status: int | None  # responses only
    reason: str  # responses only ("" for requests)
    headers: tuple[tuple[str, str], ...]
    body: bytes
    cseq: CSeq
    call_id: str
    content_length: int | None

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def get(self, name: str) -> str | None:
        """First value of header ``name`` (any case, compact form accepted), or None."""
        key = _canonical(name)
        for hname, value in self.headers:
            if hname == key:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        key = _canonical(name)
        return [value for hname, value in self.headers if hname == key]

    @property
    def top_via(self) -> str:
        via = self.get("via")
        assert via is not None  # parse() rejects messages without Via
        return via

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter of the top Via, which names the transaction."""
        return header_params(self.top_via).get("branch")


def _canonical(name: str) -> str:
    low = name.strip().lower()
    return COMPACT.get(low, low)


def split_list(value: str) -> list[str]:
    """Split a header value on commas outside quoted strings and <...> URIs.

    A display name may hold a comma (``"Doe, John" <sip:j@x>``) and a URI may too
    (in its headers part), so a naive split would cut one value in two.
    """
    parts: list[str] = []
    start = 0
    quoted = False
    escaped = False
    angle = 0
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif quoted:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            angle += 1
        elif ch == ">" and angle:
            angle -= 1
        elif ch == "," and not angle:
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


def header_params(value: str) -> dict[str, str]:
    """``;name=value`` parameters of a header value (names lowercased, quotes removed).

    Only parameters after the URI part count: for ``<sip:a;lr>;tag=x`` that is ``tag``.
    """
    rest = value
    close = value.rfind(">")
    if close != -1:
        rest = value[close + 1 :]
    params: dict[str, str] = {}
    for piece in rest.split(";")[1:]:
        name, _, val = piece.partition("=")
        name = name.strip().lower()
        if name:
            params.setdefault(name, val.strip().strip('"'))
    return params


def _split_head(data: bytes) -> tuple[bytes, int] | None:
    """Head bytes (start line and headers) and the offset of the body, or None if the
    blank line has not arrived."""
    m = _HEAD_END.search(data)
    if m is None:
        return None
    return data[: m.start()], m.end()


@dataclass(slots=True)
class _Head:
    method: str | None
    uri: str | None
    status: int | None
    reason: str
    headers: list[tuple[str, str]]
    cseq: CSeq
    call_id: str
    content_length: int | None


def _parse_start(line: str) -> tuple[str | None, str | None, int | None, str]:
    if line[:4].upper() == "SIP/":
        parts = line.split(None, 2)
        if parts[0].upper() != "SIP/2.0":
            raise SipParseError("bad SIP version")
        if len(parts) < 2 or len(parts[1]) != 3 or not parts[1].isdigit():
            raise SipParseError("bad status code")
        code = int(parts[1])
        if not 100 <= code <= 699:
            raise SipParseError("bad status code")
        return None, None, code, parts[2].strip() if len(parts) == 3 else ""
    parts = line.split()
    if len(parts) != 3:
        raise SipParseError("bad start line")
    method, uri, version = parts
    if version.upper() != "SIP/2.0":
        raise SipParseError("bad start line")
    if not _TOKEN.match(method):
        raise SipParseError("bad method")
    if ":" not in uri:
        raise SipParseError("bad request URI")
    return method.upper(), uri, None, ""


def _parse_cseq(value: str) -> CSeq:
    parts = value.split()
    if len(parts) != 2 or not _DIGITS.match(parts[0]) or not _TOKEN.match(parts[1]):
        raise SipParseError("bad CSeq")
    number = int(parts[0]) if len(parts[0]) <= 10 else _CSEQ_MAX + 1
    if number > _CSEQ_MAX:
        raise SipParseError("bad CSeq")
    return CSeq(number, parts[1].upper())


def _parse_head(raw: bytes) -> _Head:
    if len(raw) > MAX_MESSAGE:
        raise SipParseError("message too large")
    if b"\x00" in raw:
        raise SipParseError("NUL byte")
    # Header text is UTF-8 by the grammar; a stray byte in a value is not worth dropping
    # the message for, so it becomes U+FFFD instead of an error.
    text = raw.decode("utf-8", errors="replace")
    lines = text.split("\n")
    start = lines[0].rstrip("\r").strip()
    if not start:
        raise SipParseError("empty message")
    method, uri, status, reason = _parse_start(start)

    # Unfold continuation lines (RFC 3261 7.3.1: LWS = leading SP/HT) first.
    # Pieces are joined once per header: appending to a growing string would be
    # quadratic in the number of continuation lines.
    pieces: list[list[str]] = []
    for line in lines[1:]:
        line = line.rstrip("\r")
        if line[:1] in (" ", "\t"):
            if not pieces:
                raise SipParseError("continuation line before any header")
            pieces[-1].append(line.strip())
        else:
            pieces.append([line])
            if len(pieces) > MAX_HEADERS:
                raise SipParseError("too many headers")
    logical = [" ".join(p) for p in pieces]

    headers: list[tuple[str, str]] = []
    seen_single: dict[str, str] = {}
    for line in logical:
        name, colon, value = line.partition(":")
        if not colon:
            raise SipParseError("header line without colon")
        name = name.strip()
        if not _TOKEN.match(name):
            raise SipParseError("bad header name")
        key = COMPACT.get(name.lower(), name.lower())
        value = value.strip()
        if key in SINGLE_HEADERS:
            if key in seen_single and seen_single[key] != value:
                raise SipParseError(f"conflicting {key} headers")
            if key in seen_single:
                continue
            seen_single[key] = value
        if key in LIST_HEADERS:
            values = split_list(value)
            headers.extend((key, v) for v in values)
        else:
            headers.append((key, value))
        if len(headers) > MAX_HEADERS:
            raise SipParseError("too many headers")

    if not any(k == "via" for k, _ in headers):
        raise SipParseError("missing Via")
    call_id = seen_single.get("call-id")
    if not call_id:
        raise SipParseError("missing Call-ID")
    if "cseq" not in seen_single:
        raise SipParseError("missing CSeq")
    cseq = _parse_cseq(seen_single["cseq"])
    if method is not None and cseq.method != method:
        raise SipParseError("CSeq method does not match request method")
    content_length: int | None = None
    if "content-length" in seen_single:
        cl = seen_single["content-length"]
        if not _DIGITS.match(cl) or len(cl) > 6:
            raise SipParseError("bad Content-Length")
        content_length = int(cl)
    return _Head(method, uri, status, reason, headers, cseq, call_id, content_length)


def _message(head: _Head, body: bytes) -> SipMessage:
    return SipMessage(
        method=head.method,
        uri=head.uri,
        status=head.status,
        reason=head.reason,
        headers=tuple(head.headers),
        body=body,
        cseq=head.cseq,
        call_id=head.call_id,
        content_length=head.content_length,
    )


def parse(data: bytes) -> SipMessage:
    """Parse one datagram-framed message (UDP): the body is what follows the blank line.

    RFC 3261 18.3: bytes beyond Content-Length are discarded; a Content-Length larger than
    what arrived means the datagram was truncated, which is rejected. Leading CRLFs
    (keep-alives) are skipped.
    """
    if len(data) > MAX_MESSAGE:
        raise SipParseError("message too large")
    data = data.lstrip(b"\r\n")
    if not data:
        raise SipParseError("empty message")
    split = _split_head(data)
    if split is None:
        raise SipParseError("no blank line after headers")
    raw_head, body_at = split
    head = _parse_head(raw_head)
    body = data[body_at:]
    if head.content_length is not None:
        if head.content_length > len(body):
            raise SipParseError("body shorter than Content-Length")
        body = body[: head.content_length]
    return _message(head, body)


class StreamFramer:
    """Cuts a TCP/TLS byte stream into messages by Content-Length (RFC 3261 18.3).

    Feed whatever ``recv`` returned; complete messages come out in order. CRLF
    keep-alives between messages (RFC 5626 ``\\r\\n\\r\\n`` pings) are skipped. A stream
    message without Content-Length cannot be framed, and a message over ``MAX_MESSAGE``
    would make us buffer without bound: both raise ``SipParseError``, after which the
    connection is unusable and the framer refuses further input.
    """

    def __init__(self, max_message: int = MAX_MESSAGE) -> None:
        self._buf = bytearray()
        self._max = max_message
        self._broken: str | None = None

    def feed(self, data: bytes) -> list[SipMessage]:
        if self._broken is not None:
            raise SipParseError(self._broken)
        self._buf += data
        out: list[SipMessage] = []
        try:
            while True:
                msg = self._next()
                if msg is None:
                    return out
                out.append(msg)
        except SipParseError as exc:
            self._broken = exc.reason
            raise

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def _next(self) -> SipMessage | None:
        skip = 0
        while skip < len(self._buf) and self._buf[skip] in (0x0D, 0x0A):
            skip += 1
        if skip:
            del self._buf[:skip]
        if not self._buf:
            return None
        # Only the first max bytes can hold a head we would accept.
        split = _split_head(bytes(self._buf[: self._max + 4]))
        if split is None:
            if len(self._buf) > self._max:
                raise SipParseError("message too large")
            return None
        raw_head, body_at = split
        head = _parse_head(raw_head)
        if head.content_length is None:
            raise SipParseError("stream message without Content-Length")
        total = body_at + head.content_length
        if total > self._max:
            raise SipParseError("message too large")
        if len(self._buf) < total:
            return None
        body = bytes(self._buf[body_at:total])
        del self._buf[:total]
        return _message(head, body)


# --- building requests -------------------------------------------------------------


def new_branch() -> str:
    return BRANCH_MAGIC + secrets.token_hex(10)


def new_tag() -> str:
    return secrets.token_hex(6)


def new_call_id() -> str:
    return secrets.token_hex(16) + "@lifeline"


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class OutgoingRequest:
    """A request ready to send, with what identifies its transaction's responses."""

    data: bytes
    method: str
    call_id: str
    cseq: int
    branch: str
    from_tag: str = field(default="")

    def matches(self, msg: SipMessage) -> bool:
        """RFC 3261 17.1.3: a response belongs to this client transaction when its top
        Via branch and CSeq method match; Call-ID and CSeq number are checked too so a
        stray response from another dialog of ours can never be taken for this one."""
        return (
            not msg.is_request
            and msg.call_id == self.call_id
            and msg.cseq.number == self.cseq
            and msg.cseq.method == self.method
            and msg.branch == self.branch
        )


def build_request(
    method: str,
    uri: str,
    *,
    transport: str,
    local_host: str,
    local_port: int,
    from_uri: str,
    to_uri: str,
    call_id: str | None = None,
    cseq: int = 1,
    branch: str | None = None,
    from_tag: str | None = None,
    contact: str | None = None,
    extra_headers: Sequence[tuple[str, str]] = (),
    max_forwards: int = 70,
    user_agent: str = "lifeline",
    body: bytes = b"",
) -> OutgoingRequest:
    """A request with a fresh branch, Call-ID and From tag unless given.

    ``rport`` is asked for (RFC 3581) so a NAT between us and the trunk does not send the
    answer to the private port written in Via.
    """
    method = method.upper()
    branch = branch or new_branch()
    call_id = call_id or new_call_id()
    from_tag = from_tag or new_tag()
    for name, value in extra_headers:
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
            raise ValueError("header injection: CR/LF in a header")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport.upper()} {_hostport(local_host, local_port)}"
        f";branch={branch};rport",
        f"Max-Forwards: {max_forwards}",
        f"From: <{from_uri}>;tag={from_tag}",
        f"To: <{to_uri}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
    ]
    if contact:
        lines.append(f"Contact: <{contact}>")
    lines.extend(f"{name}: {value}" for name, value in extra_headers)
    lines.append(f"User-Agent: {user_agent}")
    lines.append(f"Content-Length: {len(body)}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    return OutgoingRequest(data, method, call_id, cseq, branch, from_tag)


def _transport_param(transport: str) -> str:
    return "" if transport.lower() == "udp" else f";transport={transport.lower()}"


def build_options(
    uri: str,
    *,
    transport: str,
    local_host: str,
    local_port: int,
    call_id: str | None = None,
    cseq: int = 1,
    branch: str | None = None,
) -> OutgoingRequest:
    """An out-of-dialog OPTIONS ping to ``uri`` (RFC 3261 11)."""
    local = f"sip:lifeline@{_hostport(local_host, local_port)}"
    return build_request(
        "OPTIONS",
        uri,
        transport=transport,
        local_host=local_host,
        local_port=local_port,
        from_uri=local,
        to_uri=uri,
        call_id=call_id,
        cseq=cseq,
        branch=branch,
        contact=local + _transport_param(transport),
        extra_headers=[("Accept", "application/sdp")],
    )


def build_register(
    registrar_uri: str,
    *,
    user: str,
    domain: str,
    transport: str,
    local_host: str,
    local_port: int,
    call_id: str | None = None,
    cseq: int = 1,
    from_tag: str | None = None,
    expires: int = 3600,
    authorization: tuple[str, str] | None = None,
) -> OutgoingRequest:
    """A REGISTER binding ``sip:user@domain`` to our address; ``authorization`` is the
    (header name, value) answering a challenge. Retries keep Call-ID and From tag and
    raise CSeq (RFC 3261 10.2)."""
    aor = f"sip:{user}@{domain}"
    extra: list[tuple[str, str]] = [("Expires", str(expires))]
    if authorization is not None:
        extra.append(authorization)
    return build_request(
        "REGISTER",
        registrar_uri,
        transport=transport,
        local_host=local_host,
        local_port=local_port,
        from_uri=aor,
        to_uri=aor,
        call_id=call_id,
        cseq=cseq,
        from_tag=from_tag,
        contact=f"sip:{user}@{_hostport(local_host, local_port)}" + _transport_param(transport),
        extra_headers=extra,
    )


def iter_values(msg: SipMessage, names: Iterable[str]) -> list[str]:
    """All values of any of ``names``, in wire order."""
    keys = {_canonical(n) for n in names}
    return [v for k, v in msg.headers if k in keys]
