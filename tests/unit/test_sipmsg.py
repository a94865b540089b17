"""The SIP parser, framer and builder (probes/sipmsg.py): real-world samples, each kind of
malformed message, and properties (no exception but SipParseError on any bytes, bounded
time, build -> parse round trip, stream framing independent of how reads are split)."""

from __future__ import annotations

import contextlib
import pathlib
import random
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probes.sipmsg import (
    MAX_HEADERS,
    MAX_MESSAGE,
    CSeq,
    SipParseError,
    StreamFramer,
    build_options,
    build_register,
    parse,
    split_list,
)

DATA = pathlib.Path(__file__).parent / "data" / "sip"


def sample(name: str) -> bytes:
    """Samples are stored with LF; on the wire SIP uses CRLF, except the lf-* quirk ones."""
    raw = (DATA / name).read_bytes()
    return raw if name.startswith("lf-") else raw.replace(b"\n", b"\r\n")


def test_every_sample_file_is_covered() -> None:
    names = {p.name for p in DATA.glob("*.txt")}
    assert names == {
        "options-200-compact.txt",
        "folded-headers.txt",
        "register-401.txt",
        "combined-via-contact.txt",
        "trying-100.txt",
        "lf-invite-sdp.txt",
    }


def test_options_200_compact_forms() -> None:
    m = parse(sample("options-200-compact.txt"))
    assert (m.status, m.reason, m.is_request) == (200, "OK", False)
    assert m.call_id == "a84b4c76e66710@lifeline"
    assert m.cseq == CSeq(1, "OPTIONS")
    assert m.branch == "z9hG4bK776asdhds"
    assert m.get("From") == "<sip:lifeline@192.0.2.10:5060>;tag=1928301774"
    assert m.get("t") == m.get("to") == "<sip:203.0.113.5:5060>;tag=as6151a2c1"
    assert m.get_all("supported") == ["replaces", "timer"]
    assert m.get_all("allow")[:2] == ["INVITE", "ACK"]
    assert m.get("contact") == "<sip:203.0.113.5:5060>"
    assert m.content_length == 0 and m.body == b""
    assert m.get("server") == "Carrier-SBC 4.2"


def test_folded_headers_are_unfolded() -> None:
    m = parse(sample("folded-headers.txt"))
    assert m.status == 404 and m.reason == "Not Found"
    assert m.branch == "z9hG4bKfold1"
    assert m.cseq == CSeq(7, "OPTIONS")
    assert m.get("subject") == "I know you're there, pick up the phone"
    assert m.get("from") == '"Site A" <sip:lifeline@198.51.100.7>;tag=77aa'


def test_register_401_keeps_both_challenges_whole() -> None:
    m = parse(sample("register-401.txt"))
    assert m.status == 401 and m.cseq == CSeq(1, "REGISTER")
    challenges = m.get_all("WWW-Authenticate")
    assert len(challenges) == 2  # not split on the commas between auth-params
    assert "algorithm=SHA-256" in challenges[0] and "algorithm=MD5" in challenges[1]


def test_combined_via_and_contact_lists() -> None:
    m = parse(sample("combined-via-contact.txt"))
    vias = m.get_all("via")
    assert len(vias) == 3 and m.branch == "z9hG4bKtop"
    contacts = m.get_all("contact")
    assert contacts == [
        '"Doe, John" <sip:john@192.0.2.20;transport=tcp>;expires=60',
        "<sip:alt@192.0.2.21>",
    ]


def test_provisional_response() -> None:
    m = parse(sample("trying-100.txt"))
    assert m.status == 100 and m.reason == "Trying" and m.branch == "z9hG4bKtry"


def test_lf_only_lowercase_request_with_body() -> None:
    m = parse(sample("lf-invite-sdp.txt"))
    assert m.is_request and m.method == "INVITE"
    assert m.uri == "sip:+390212345600@192.0.2.20"
    assert m.cseq == CSeq(101, "INVITE")
    assert m.get("X-Carrier-Trace") == "abc123"
    # Content-Length 30 cuts the body; bytes after it in the datagram are discarded.
    assert m.body == b"v=0\no=- 1 1 IN IP4 203.0.113.5"
    assert m.get("content-type") == "application/sdp"


def test_leading_crlf_keepalive_is_skipped() -> None:
    m = parse(b"\r\n\r\n" + sample("trying-100.txt"))
    assert m.status == 100


GOOD = (
    "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nCall-ID: c\r\n"
    "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)


def _swap(old: str, new: str) -> bytes:
    assert old in GOOD
    return GOOD.replace(old, new, 1).encode()


MALFORMED: list[tuple[str, bytes, str]] = [
    ("empty", b"", "empty message"),
    ("only keepalive", b"\r\n\r\n", "empty message"),
    ("no blank line", GOOD.encode()[:-2], "no blank line after headers"),
    ("version", _swap("SIP/2.0 200", "SIP/3.0 200"), "bad SIP version"),
    ("code letters", _swap("200 OK", "2x0 OK"), "bad status code"),
    ("code range", _swap("200 OK", "700 OK"), "bad status code"),
    ("code short", _swap("200 OK", "20 OK"), "bad status code"),
    ("request line", b"OPTIONS sip:x\r\n" + GOOD.encode().split(b"\r\n", 1)[1],
     "bad start line"),
    ("garbage line", b"hello world\r\n\r\n", "bad start line"),
    ("no Via", _swap("Via: SIP/2.0/UDP h;branch=z9hG4bKx\r\n", ""), "missing Via"),
    ("no Call-ID", _swap("Call-ID: c\r\n", ""), "missing Call-ID"),
    ("no CSeq", _swap("CSeq: 1 OPTIONS\r\n", ""), "missing CSeq"),
    ("CSeq no method", _swap("CSeq: 1 OPTIONS", "CSeq: 1"), "bad CSeq"),
    ("CSeq not a number", _swap("CSeq: 1 OPTIONS", "CSeq: one OPTIONS"), "bad CSeq"),
    ("CSeq too big", _swap("CSeq: 1 OPTIONS", "CSeq: 4294967296 OPTIONS"), "bad CSeq"),
    ("CSeq negative", _swap("CSeq: 1 OPTIONS", "CSeq: -1 OPTIONS"), "bad CSeq"),
    ("two Call-IDs", _swap("Call-ID: c\r\n", "Call-ID: c\r\ni: d\r\n"),
     "conflicting call-id headers"),
    ("CL negative", _swap("Content-Length: 0", "Content-Length: -1"), "bad Content-Length"),
    ("CL garbage", _swap("Content-Length: 0", "Content-Length: 1x"), "bad Content-Length"),
    ("CL huge", _swap("Content-Length: 0", "Content-Length: 99999999999"),
     "bad Content-Length"),
    ("CL beyond datagram", _swap("Content-Length: 0", "Content-Length: 5"),
     "body shorter than Content-Length"),
    ("two CLs", _swap("Content-Length: 0", "Content-Length: 0\r\nl: 3"),
     "conflicting content-length headers"),
    ("NUL", _swap("Call-ID: c", "Call-ID: c\x00d"), "NUL byte"),
    ("no colon", _swap("Call-ID: c\r\n", "Call-ID: c\r\nBroken header\r\n"),
     "header line without colon"),
    ("bad name", _swap("Call-ID: c\r\n", "Call-ID: c\r\nBad Name: x\r\n"), "bad header name"),
    ("fold first", b"SIP/2.0 200 OK\r\n continued\r\n\r\n",
     "continuation line before any header"),
    ("too many headers",
     _swap("Content-Length: 0", "Content-Length: 0\r\n" + "X-A: 1\r\n" * MAX_HEADERS),
     "too many headers"),
    ("too large", _swap("Call-ID: c", "Call-ID: " + "c" * MAX_MESSAGE), "message too large"),
    ("CSeq method mismatch",
     b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nCall-ID: c\r\n"
     b"CSeq: 1 INVITE\r\n\r\n", "CSeq method does not match request method"),
    ("bad method", b"OPT@ONS sip:a@b SIP/2.0\r\n\r\n", "bad method"),
]


@pytest.mark.parametrize(("data", "reason"), [(d, r) for _, d, r in MALFORMED],
                         ids=[n for n, _, _ in MALFORMED])
def test_malformed_is_rejected_with_reason(data: bytes, reason: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse(data)
    assert info.value.reason == reason


def test_good_baseline_parses() -> None:
    # The malformed cases above are one-edit variants of this message.
    assert parse(GOOD.encode()).status == 200


def test_repeated_identical_framing_header_is_tolerated() -> None:
    m = parse(_swap("Content-Length: 0", "Content-Length: 0\r\nl: 0"))
    assert m.content_length == 0


def test_split_list_respects_quotes_and_brackets() -> None:
    assert split_list('"a, \\"b" <sip:x?h=1,2>;p=1, <sip:y>,') == [
        '"a, \\"b" <sip:x?h=1,2>;p=1',
        "<sip:y>",
    ]


def test_build_options_round_trip() -> None:
    req = build_options("sip:203.0.113.5:5061;transport=tls", transport="tls",
                        local_host="2001:db8::1", local_port=40000)
    m = parse(req.data)
    assert m.is_request and m.method == "OPTIONS"
    assert m.uri == "sip:203.0.113.5:5061;transport=tls"
    assert m.call_id == req.call_id and m.cseq == CSeq(1, "OPTIONS")
    assert m.branch == req.branch and req.branch.startswith("z9hG4bK")
    assert m.top_via.startswith("SIP/2.0/TLS [2001:db8::1]:40000;")
    assert m.get("max-forwards") == "70" and m.get("user-agent") == "lifeline"
    assert m.content_length == 0
    assert "tag=" + req.from_tag in (m.get("from") or "")
    # Two builds never share a transaction identity.
    other = build_options("sip:x", transport="udp", local_host="h", local_port=1)
    assert other.branch != req.branch and other.call_id != req.call_id


def test_build_register_and_match() -> None:
    req = build_register("sip:carrier.example", user="site1", domain="carrier.example",
                         transport="udp", local_host="192.0.2.10", local_port=5070,
                         cseq=2, call_id="cid", from_tag="ft",
                         authorization=("Authorization", 'Digest username="site1"'))
    m = parse(req.data)
    assert m.cseq == CSeq(2, "REGISTER") and m.call_id == "cid"
    assert m.get("authorization") == 'Digest username="site1"'
    assert m.get("expires") == "3600"
    response = (
        f"SIP/2.0 200 OK\r\nVia: {m.top_via}\r\nCall-ID: cid\r\nCSeq: 2 REGISTER\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    assert req.matches(parse(response))
    for old, new in [("cid", "other"), ("2 REGISTER", "3 REGISTER"),
                     ("2 REGISTER", "2 OPTIONS"), (req.branch, req.branch + "x")]:
        assert not req.matches(parse(response.replace(old.encode(), new.encode(), 1)))
    assert not req.matches(m)  # the request itself (a loop) is not its own answer


def test_builder_refuses_header_injection() -> None:
    with pytest.raises(ValueError, match="injection"):
        build_register("sip:c", user="u", domain="d", transport="udp", local_host="h",
                       local_port=1, authorization=("Authorization", "x\r\nEvil: 1"))


# --- stream framing ----------------------------------------------------------------


def _stream() -> bytes:
    body_msg = sample("lf-invite-sdp.txt").split(b"EXTRA")[0]
    return (b"\r\n\r\n" + sample("options-200-compact.txt") + b"\r\n\r\n"
            + sample("folded-headers.txt") + body_msg + sample("trying-100.txt"))


def _summary(msgs: list[object]) -> list[tuple[object, ...]]:
    from probes.sipmsg import SipMessage

    out: list[tuple[object, ...]] = []
    for m in msgs:
        assert isinstance(m, SipMessage)
        out.append((m.status, m.method, m.call_id, m.cseq, m.body))
    return out


def test_framer_whole_stream() -> None:
    msgs = StreamFramer().feed(_stream())
    assert [m.call_id for m in msgs] == [
        "a84b4c76e66710@lifeline", "fold-1@lifeline", "lf-only-1@carrier", "trying@lifeline"
    ]
    assert msgs[2].body == b"v=0\no=- 1 1 IN IP4 203.0.113.5"


def test_framer_split_at_every_byte_boundary() -> None:
    data = _stream()
    whole = _summary(list(StreamFramer().feed(data)))
    for cut in range(len(data) + 1):
        f = StreamFramer()
        got = f.feed(data[:cut]) + f.feed(data[cut:])
        assert _summary(list(got)) == whole, cut
        assert f.buffered == 0


def test_framer_byte_by_byte() -> None:
    data = _stream()
    f = StreamFramer()
    got = []
    for i in range(len(data)):
        got += f.feed(data[i : i + 1])
    assert _summary(list(got)) == _summary(list(StreamFramer().feed(data)))


def test_framer_requires_content_length() -> None:
    with pytest.raises(SipParseError, match="without Content-Length"):
        StreamFramer().feed(GOOD.replace("Content-Length: 0\r\n", "").encode())


def test_framer_oversized_without_blank_line_then_refuses_more() -> None:
    f = StreamFramer(max_message=1024)
    f.feed(b"SIP/2.0 200 OK\r\nX: " + b"a" * 1000)
    with pytest.raises(SipParseError, match="too large"):
        f.feed(b"a" * 100)
    with pytest.raises(SipParseError, match="too large"):
        f.feed(GOOD.encode())


def test_framer_oversized_body_announced() -> None:
    with pytest.raises(SipParseError, match="too large"):
        StreamFramer().feed(_swap("Content-Length: 0", "Content-Length: 999999"))


def test_framer_waits_for_body() -> None:
    f = StreamFramer()
    msg = _swap("Content-Length: 0", "Content-Length: 4") + b"ab"
    assert f.feed(msg) == []
    assert [m.body for m in f.feed(b"cdSIP")] == [b"abcd"]
    assert f.buffered == 3


# --- properties --------------------------------------------------------------------

_HEADER_NAMES = st.sampled_from(
    ["Via", "v", "Call-ID", "i", "CSeq", "Content-Length", "l", "From", "To", "Contact",
     "m", "X-Junk", "via", "cseq", "WWW-Authenticate", "Subject", ""]
)
_VALUES = st.one_of(
    st.sampled_from(["SIP/2.0/UDP h;branch=z9hG4bKa", "1 OPTIONS", "0", "5", "-1", "c@h",
                     '"a, b" <sip:x>, <sip:y>', "Digest realm=\"r\", nonce=\"n\"", "",
                     "99999999999 X", " ;branch=z9hG4bKb"]),
    st.text(max_size=40),
)
_LINE_ENDS = st.sampled_from(["\r\n", "\n", "\r", " \r\n", "\r\n "])


@st.composite
def structured_messages(draw: st.DrawFn) -> bytes:
    start = draw(st.sampled_from(["SIP/2.0 200 OK", "OPTIONS sip:a@b SIP/2.0", "SIP/2.0 1 x",
                                  "sip/2.0 404 Not Found", "REGISTER sip:x SIP/2.0", "",
                                  "SIP/2.0 999", "INVITE  sip:x  SIP/2.0 extra"]))
    parts = [start]
    for _ in range(draw(st.integers(0, 12))):
        parts.append(f"{draw(_HEADER_NAMES)}:{draw(_VALUES)}")
    text = "".join(p + draw(_LINE_ENDS) for p in parts) + draw(_LINE_ENDS)
    return text.encode("utf-8", errors="surrogatepass") + draw(st.binary(max_size=64))


def _parse_bounded(data: bytes) -> None:
    began = time.perf_counter()
    try:
        parse(data)
    except SipParseError as exc:
        assert exc.reason
    # Generous: a 64 KiB message parses in a few ms; a quadratic path would take seconds.
    assert time.perf_counter() - began < 1.0


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=4096))
def test_parse_any_bytes_raises_only_its_own_error(data: bytes) -> None:
    _parse_bounded(data)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(structured_messages())
def test_parse_structured_random_raises_only_its_own_error(data: bytes) -> None:
    _parse_bounded(data)


_BIG_SHAPES = ["random", "many headers", "folds", "long value", "commas and quotes"]


def _big_message(shape: str, seed: int) -> bytes:
    rnd = random.Random(seed)
    head = GOOD.encode()[:-4]
    if shape == "random":
        return rnd.randbytes(rnd.randint(60000, 70000))
    if shape == "many headers":
        return head + b"".join(b"\r\nX-%d: %s" % (i, rnd.randbytes(8).hex().encode())
                               for i in range(rnd.randint(200, 3000))) + b"\r\n\r\n"
    if shape == "folds":
        return head + b"\r\nSubject: a" + b"\r\n x" * rnd.randint(10000, 21000) + b"\r\n\r\n"
    if shape == "long value":
        return head + b"\r\nVia: " + b"a" * rnd.randint(60000, 66000) + b"\r\n\r\n"
    return head + b"\r\nContact: " + b'"<,' * rnd.randint(15000, 21000) + b"\r\n\r\n"


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(_BIG_SHAPES), st.integers(0, 2**32))
def test_parse_large_inputs_are_bounded(shape: str, seed: int) -> None:
    _parse_bounded(_big_message(shape, seed))
    f = StreamFramer()
    with contextlib.suppress(SipParseError):
        f.feed(_big_message(shape, seed))
    assert f.buffered <= MAX_MESSAGE + 70000


@settings(max_examples=200, deadline=None)
@given(structured_messages(), st.integers(0, 300))
def test_framer_split_anywhere_same_outcome(data: bytes, cut: int) -> None:
    def run(chunks: list[bytes]) -> tuple[list[tuple[object, ...]], str | None]:
        f = StreamFramer()
        got = []
        try:
            for c in chunks:
                got += f.feed(c)
        except SipParseError as exc:
            return _summary(list(got)), exc.reason
        return _summary(list(got)), None

    stream = data + b"\r\n\r\n" + data
    whole = run([stream])
    split = run([stream[:cut], stream[cut:]])
    if whole[1] is None and split[1] is None:
        assert whole == split
    else:
        # An error may surface later when bytes arrive later, never different messages.
        assert whole[0][: len(split[0])] == split[0] or split[0][: len(whole[0])] == whole[0]


_TOKENS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-.", min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(_TOKENS, _TOKENS, st.integers(1, 65535), st.integers(0, 2**31 - 1),
       st.sampled_from(["udp", "tcp", "tls"]))
def test_build_parse_round_trip(user: str, host: str, port: int, cseq: int,
                                transport: str) -> None:
    req = build_register(f"sip:{host}", user=user, domain=host, transport=transport,
                         local_host=host, local_port=port, cseq=cseq)
    m = parse(req.data)
    assert (m.method, m.uri, m.call_id, m.cseq.number, m.branch) == (
        "REGISTER", f"sip:{host}", req.call_id, cseq, req.branch)
    assert StreamFramer().feed(req.data)[0].call_id == req.call_id
