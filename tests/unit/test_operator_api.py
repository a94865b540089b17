"""The operator API's writes under hostile input: every refusal is the right 4xx with a
sentence, changes nothing (the fake Control records every accepted change) and nothing
answers 500. The daemon's side is faked (tests/unit/fakecontrol.py)."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from exporters.api_tokens import TokenFileError
from exporters.http import HttpServer, make_app
from exporters.operator_api import MAX_BODY, ApiPolicy
from tests.unit.fakecontrol import OTHER_TOKEN, RANGE, TOKEN, FakeControl, token_file

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FORCE = "/api/v1/groups/voice/force"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def policy(tmp_path: Path, mono: Clock | None = None, **kw: Any) -> ApiPolicy:
    return ApiPolicy.open(token_file=token_file(tmp_path), clock=lambda: NOW,
                          monotonic=mono or Clock(), **kw)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[TestClient[Any, Any], FakeControl]]:
    control = FakeControl()
    app = make_app(lambda: None, control=control, api=policy(tmp_path, burst=1000,
                                                             writes_per_minute=6000,
                                                             shared_burst=1000))
    async with TestClient(TestServer(app)) as client:
        yield client, control


async def answer(resp: aiohttp.ClientResponse) -> tuple[int, dict[str, Any]]:
    assert resp.content_type == "application/json"
    doc = await resp.json()
    assert isinstance(doc, dict)
    return resp.status, doc


async def test_forcing_a_group_names_the_token_holder_and_the_expiry(api: Any) -> None:
    client, control = api
    code, doc = await answer(await client.put(FORCE, headers=AUTH, json={
        "link": "lte", "reason": "fibre-a works tonight", "for": "2h"}))
    assert code == 200 and doc["applied"] is True, doc
    assert control.calls == [("set", "route", "voice", "lte", "fibre-a works tonight", "noc",
                              NOW + 7200)]
    code, doc = await answer(await client.delete(FORCE, headers=AUTH))
    assert code == 200 and doc["cleared"] is True
    assert control.calls[-1] == ("clear", "route", "voice", "noc", "")


async def test_expiry_defaults_and_rfc3339(api: Any) -> None:
    client, control = api
    body = {"link": "lte", "reason": "drill"}
    assert (await client.put(FORCE, headers=AUTH, json=body)).status == 200
    assert control.calls[-1][-1] == NOW + 3600  # the default expiry
    resp = await client.put(FORCE, headers=AUTH,
                            json=body | {"until": "2027-01-15T09:30:00+01:00"})
    assert resp.status == 200 and control.calls[-1][-1] == NOW + 1800
    resp = await client.put(FORCE, headers=AUTH, json=body | {"until": "2027-01-15T10:00:00Z"})
    assert resp.status == 200 and control.calls[-1][-1] == NOW + 7200


@pytest.mark.parametrize(("body", "code", "words"), [
    ({"link": "lte", "reason": "x", "until": "2027-01-15T07:00:00Z"}, 422, "past"),
    ({"link": "lte", "reason": "x", "for": "200h"}, 422, "more than 168h"),
    ({"link": "lte", "reason": "x", "for": "0s"}, 422, "longer than zero"),
    ({"link": "lte", "reason": "x", "for": "soon"}, 400, "not a duration"),
    ({"link": "lte", "reason": "x", "for": "-1h"}, 400, "negative"),
    ({"link": "lte", "reason": "x", "for": 60}, 400, "string"),
    ({"link": "lte", "reason": "x", "for": "1m" * 40}, 400, "short string"),
    ({"link": "lte", "reason": "x", "until": "2027-01-15T09:00:00"}, 400, "time zone"),
    ({"link": "lte", "reason": "x", "until": "tomorrow"}, 400, "RFC 3339"),
    ({"link": "lte", "reason": "x", "until": 1e300}, 400, "string"),
    ({"link": "lte", "reason": "x", "for": "1h", "until": "2027-01-15T09:00:00Z"}, 400,
     "not both"),
    ({"link": "lte"}, 400, "'reason' is required"),
    ({"link": "lte", "reason": "   "}, 400, "must not be empty"),
    ({"link": "lte", "reason": "x" * 201}, 400, "longer than 200"),
    ({"link": "lte", "reason": "two\nlines"}, 400, "one line"),
    ({"link": "lte", "reason": ["x"]}, 400, "reason must be a string"),
    ({"link": None, "reason": "x"}, 400, "link must be a string"),
    ({"link": 7, "reason": "x"}, 400, "link must be a string"),
    ({"reason": "x"}, 400, "'link' is required"),
    ({"link": "lte", "reason": "x", "by": "root"}, 400, "unknown field 'by'"),
    ({"link": "fibre-b", "reason": "x"}, 422, "not a link of route group voice"),
])
async def test_bodies_that_are_refused_change_nothing(api: Any, body: dict[str, Any], code: int,
                                                      words: str) -> None:
    client, control = api
    got, doc = await answer(await client.put(FORCE, headers=AUTH, json=body))
    assert (got, words in doc["error"]) == (code, True), doc
    assert control.calls == []


@pytest.mark.parametrize(("raw", "words"), [
    (b"{oops", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'"reason"', "JSON object"),
    (b"\xff\xfe{}", "not valid JSON"),
    (b'{"reason": "a", "reason": "b", "link": "lte"}', "given twice"),
    (b'{"reason": "a", "link": "lte", "for": NaN}', "not valid JSON"),
    (b"[" * 2000 + b"]" * 2000, "not valid JSON"),  # deeper than Python's recursion
], ids=["broken", "array", "string", "not-utf8", "duplicate", "nan", "deep"])
async def test_bad_json_is_400(api: Any, raw: bytes, words: str) -> None:
    client, control = api
    code, doc = await answer(await client.put(FORCE, headers=AUTH, data=raw))
    assert code == 400 and words in doc["error"], doc
    assert control.calls == []


async def test_a_huge_body_is_413_with_or_without_a_length(api: Any) -> None:
    client, control = api
    big = json.dumps({"link": "lte", "reason": "x", "pad": "y" * MAX_BODY}).encode()
    code, doc = await answer(await client.put(FORCE, headers=AUTH, data=big))
    assert code == 413 and "larger than 4096 bytes" in doc["error"]

    async def chunked() -> AsyncIterator[bytes]:
        for _ in range(64):
            yield b" " * 1024  # leading spaces: valid JSON if it were ever read whole

    code, doc = await answer(await client.put(FORCE, headers=AUTH, data=chunked()))
    assert code == 413
    # Refused before authentication: a stranger's megabyte is not read either.
    assert (await client.put(FORCE, data=b"x" * (1 << 20))).status == 413
    assert control.calls == []


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-token-of-enough-length"},
    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": "Bearer"},
    {"Authorization": f"Bearer {TOKEN} extra"}, {"Authorization": f"Bearer {TOKEN[:-1]}"},
    {"Authorization": "Bearer " + "x" * 5000},
])
async def test_a_missing_or_wrong_token_is_401(api: Any, headers: dict[str, str]) -> None:
    client, control = api
    for method, path in [("PUT", FORCE), ("DELETE", FORCE),
                         ("PUT", "/api/v1/links/lte/maintenance"),
                         ("PUT", "/api/v1/trunks/a1/maintenance")]:
        resp = await client.request(method, path, headers=headers,
                                    json={"link": "lte", "reason": "x"})
        code, doc = await answer(resp)
        assert code == 401, (method, path, doc)
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert control.calls == []


async def test_writes_over_tcp_without_a_token_file_are_403(tmp_path: Path) -> None:
    control = FakeControl()
    async with TestClient(TestServer(make_app(lambda: None, control=control))) as client:
        for method, path in [("PUT", FORCE), ("DELETE", "/api/v1/dids/+390212345601/pin"),
                             ("PUT", "/api/v1/links/lte/maintenance")]:
            code, doc = await answer(await client.request(method, path, headers=AUTH,
                                                          json={"reason": "x"}))
            assert code == 403 and "api.token_file" in doc["error"], doc
        assert (await client.get("/healthz")).status == 200  # reads stay open
    assert control.calls == []


async def test_unknown_targets_are_404_with_the_daemons_words(api: Any) -> None:
    client, control = api
    cases = [
        ("PUT", "/api/v1/groups/data/force", {"link": "lte", "reason": "x"}, "data"),
        ("DELETE", "/api/v1/groups/data/force", None, "data"),
        ("PUT", "/api/v1/links/fibre-z/maintenance", {"reason": "x"}, "fibre-z"),
        ("PUT", "/api/v1/trunks/zz/maintenance", {"reason": "x", "for": "1h"}, "zz"),
        ("PUT", "/api/v1/trunks/zz/maintenance", {"reason": "x", "open": True},
         "no trunk named 'zz'"),
        ("DELETE", "/api/v1/trunks/zz/maintenance", None, "zz"),
        ("PUT", "/api/v1/dids/+441632960000/pin", {"trunk": "a1", "reason": "x"},
         "+441632960000 is not in the DID plan"),
        ("DELETE", "/api/v1/dids/441632960000/pin", None, "+441632960000"),
    ]
    for method, path, body, words in cases:
        code, doc = await answer(await client.request(method, path, headers=AUTH, json=body))
        assert code == 404 and words in doc["error"], (path, doc)
    assert control.calls == []


async def test_pinning_a_number_pins_its_range_to_a_trunk_or_dr(api: Any) -> None:
    client, control = api
    resp = await client.put("/api/v1/dids/390212345601/pin", headers=AUTH,
                            json={"trunk": "dr", "reason": "DR drill", "for": "30m"})
    assert resp.status == 200, await resp.text()
    assert control.calls == [("set", "did", RANGE, "dr", "DR drill", "noc", NOW + 1800)]
    code, doc = await answer(await client.put("/api/v1/dids/+390212345601/pin", headers=AUTH,
                                              json={"trunk": "b9", "reason": "x"}))
    assert code == 422 and "not a trunk" in doc["error"]
    code, doc = await answer(await client.put("/api/v1/dids/12ab/pin", headers=AUTH,
                                              json={"trunk": "a1", "reason": "x"}))
    assert code == 400 and "E.164" in doc["error"]
    assert (await client.delete("/api/v1/dids/+390212345601/pin", headers=AUTH)).status == 200
    assert control.calls[-1] == ("clear", "did", RANGE, "noc", "")


async def test_maintenance_of_links_and_trunks(api: Any) -> None:
    client, control = api
    body = {"reason": "ISP works", "for": "4h"}
    assert (await client.put("/api/v1/links/lte/maintenance", headers=AUTH,
                             json=body)).status == 200
    assert (await client.put("/api/v1/trunks/a2/maintenance", headers=AUTH,
                             json=body)).status == 200
    # The form of `lifeline maintenance TRUNK`: no expiry, the open-ended mark.
    assert (await client.put("/api/v1/trunks/a1/maintenance", headers=AUTH,
                             json={"reason": "swap", "open": True})).status == 200
    for bad, words in [({"reason": "x", "open": True, "for": "1h"}, "no expiry"),
                       ({"reason": "x", "open": "yes"}, "true or false"),
                       ({"open": False}, "'reason' is required"),
                       ({}, "'reason' is required")]:
        code, doc = await answer(await client.put("/api/v1/trunks/a1/maintenance",
                                                  headers=AUTH, json=bad))
        assert code == 400 and words in doc["error"], (bad, doc)
    code, doc = await answer(await client.delete("/api/v1/trunks/a2/maintenance",
                                                 headers=AUTH, json={"reason": "done"}))
    assert code == 200 and doc["maintenance"] is None and doc["override"]["cleared"]
    assert (await client.delete("/api/v1/links/lte/maintenance", headers=AUTH)).status == 200
    assert control.calls == [
        ("set", "maintenance", "link:lte", None, "ISP works", "noc", NOW + 14400),
        ("set", "maintenance", "trunk:a2", None, "ISP works", "noc", NOW + 14400),
        ("mark", "a1", True, "swap"),
        ("clear", "maintenance", "trunk:a2", "noc", "done"),
        ("mark", "a2", False, "done"),
        ("clear", "maintenance", "link:lte", "noc", ""),
    ]


TRAVERSALS = ["..", "%2e%2e", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "a%00b",
              "voice%2F..%2F..", "%252e%252e%252f", "-voice", "x" * 65, "%C0%AE%C0%AE",
              "voice%0d%0aX-Injected:%201", "..%5C..%5Cwindows", "%20voice"]


@pytest.mark.parametrize("name", TRAVERSALS)
async def test_path_traversal_in_every_route_reaches_nothing(api: Any, name: str) -> None:
    client, control = api
    paths = [f"/api/v1/groups/{name}/force", f"/api/v1/links/{name}/maintenance",
             f"/api/v1/trunks/{name}/maintenance", f"/api/v1/dids/{name}/pin",
             f"/api/v1/{name}/status", f"/api/v1/dids?number={name}"]
    for path in paths:
        for method in ("GET", "PUT", "DELETE"):
            resp = await client.request(method, path, headers=AUTH,
                                        json={"link": "lte", "trunk": "a1", "reason": "x"})
            assert resp.status in {400, 404, 405}, (method, path, resp.status)
            assert "root:" not in await resp.text()
    assert control.calls == []


async def test_raw_dot_segments_are_not_normalized_into_a_file(api: Any) -> None:
    """What a client library would clean up, sent as is: the server serves no file, so
    '..' can only ever fail to name a route or a target."""
    client, control = api
    for target in ["/api/v1/groups/../../../../etc/passwd", "/../../etc/passwd",
                   "/api/v1/trunks/..%2f..%2fetc%2fpasswd/maintenance",
                   "/api/v1/groups/voice/force/../../../../etc/shadow",
                   "//etc/passwd", "/api/v1/dids/..;/pin"]:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(f"PUT {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}"
                     f"\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}".encode())
        await writer.drain()
        raw = await reader.read()
        writer.close()
        await writer.wait_closed()
        status = int(raw.split(b" ", 2)[1])
        assert status in {400, 404, 405}, (target, raw[:200])
        assert b"root:" not in raw
    assert control.calls == []


async def test_a_flood_gets_429_and_changes_only_the_allowed_writes(tmp_path: Path) -> None:
    control, mono = FakeControl(), Clock()
    app = make_app(lambda: None, control=control, api=policy(tmp_path, mono))
    body = {"link": "lte", "reason": "flood"}
    async with TestClient(TestServer(app)) as client:
        codes = [(await client.put(FORCE, headers=AUTH, json=body)).status for _ in range(40)]
        assert codes == [200] * 5 + [429] * 35
        resp = await client.put(FORCE, headers=AUTH, json=body)
        code, doc = await answer(resp)
        assert code == 429 and "too many writes" in doc["error"]
        assert 1 <= int(resp.headers["Retry-After"]) <= 6  # 10 a minute: one every 6 s
        # Bad requests count too (a flood of them is a flood), and change nothing.
        assert (await client.put(FORCE, headers=AUTH, data=b"{")).status == 429
        # Another token has its own allowance, within the shared one (10 a burst).
        other = {"Authorization": f"Bearer {OTHER_TOKEN}"}
        codes = [(await client.put(FORCE, headers=other, json=body)).status for _ in range(8)]
        assert codes == [200] * 5 + [429] * 3
        mono.t += 6.0  # one write's worth of refill
        assert (await client.put(FORCE, headers=AUTH, json=body)).status == 200
        assert (await client.put(FORCE, headers=AUTH, json=body)).status == 429
    assert len(control.calls) == 11
    assert {c[5] for c in control.calls} == {"noc", "oncall"}


async def test_the_unix_socket_takes_writes_without_a_token_from_the_peers_user(
        tmp_path: Path) -> None:
    control, mono = FakeControl(), Clock()
    sock = tmp_path / "lifeline.sock"
    server = HttpServer(make_app(lambda: None, control=control, api=policy(tmp_path, mono)),
                        None, sock)
    await server.start()
    try:
        conn = aiohttp.UnixConnector(path=str(sock))
        async with aiohttp.ClientSession(connector=conn) as session:
            url = "http://lifeline" + FORCE
            async with session.put(url, json={"link": "lte", "reason": "console"}) as resp:
                assert resp.status == 200, await resp.text()
            async with session.put(url, json={"link": "lte", "reason": "x"},
                                   headers={"Authorization": "Bearer nope-nope-nope-nope"}
                                   ) as resp:
                assert resp.status == 401  # a token, if sent, must be good
            async with session.put(url, json={"link": "lte", "reason": "by token"},
                                   headers={"Authorization": f"Bearer {OTHER_TOKEN}"}) as resp:
                assert resp.status == 200
    finally:
        await server.stop()
    assert [c[5] for c in control.calls] == [f"unix:{getpass.getuser()}", "oncall"]
    assert os.getuid() >= 0


def test_a_token_file_others_can_read_refuses_the_start(tmp_path: Path) -> None:
    path = token_file(tmp_path, 0o644)
    with pytest.raises(TokenFileError, match="chmod 0600"):
        ApiPolicy.open(token_file=path)
    with pytest.raises(TokenFileError, match="cannot read"):
        ApiPolicy.open(token_file=tmp_path / "missing")
    bad = tmp_path / "bad"
    for text, words in [("noc\n", "two words"), ("noc short\n", "at least 16"),
                        (f"noc {TOKEN}\nnoc {OTHER_TOKEN}\n", "named twice"),
                        (f"noc {TOKEN}\npager {TOKEN}\n", "another name's"),
                        ("# nobody\n", "holds no token"), (f"n/c {TOKEN}\n", "must be")]:
        bad.write_text(text)
        os.chmod(bad, 0o600)
        with pytest.raises(TokenFileError, match=words):
            ApiPolicy.open(token_file=bad)


async def test_the_token_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    control = FakeControl()
    pol = policy(tmp_path, burst=100, shared_burst=100)
    path = tmp_path / "api-tokens"
    body = {"link": "lte", "reason": "x"}
    new = "a-brand-new-token-for-the-shift"
    async with TestClient(TestServer(make_app(lambda: None, control=control,
                                              api=pol))) as client:
        path.write_text(f"shift {new}\n")  # the old tokens are gone at once
        assert (await client.put(FORCE, headers=AUTH, json=body)).status == 401
        resp = await client.put(FORCE, headers={"Authorization": f"Bearer {new}"}, json=body)
        assert resp.status == 200
        os.chmod(path, 0o604)  # leaked to every user: no token works until it is fixed
        code, doc = await answer(await client.put(
            FORCE, headers={"Authorization": f"Bearer {new}"}, json=body))
        assert code == 503 and "chmod" in doc["error"]
        os.chmod(path, 0o640)
        assert (await client.put(FORCE, headers={"Authorization": f"Bearer {new}"},
                                 json=body)).status == 200
        path.unlink()
        code, doc = await answer(await client.put(
            FORCE, headers={"Authorization": f"Bearer {new}"}, json=body))
        assert code == 503 and "cannot read" in doc["error"]
    assert [c[5] for c in control.calls] == ["shift", "shift"]


async def test_the_overrides_are_read_from_the_status_document(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import exporters.operator_api as api_module

    listed = [{"kind": "route", "target": "voice", "value": "lte", "by": "noc"}]
    monkeypatch.setattr(api_module, "status_document", lambda snap: {"overrides": listed})
    snap: Any = object()
    latest: list[Any] = [None]
    async with TestClient(TestServer(make_app(lambda: latest[0]))) as client:
        assert (await client.get("/api/v1/overrides")).status == 503
        latest[0] = snap
        resp = await client.get("/api/v1/overrides")
        assert resp.status == 200 and await resp.json() == listed
        monkeypatch.setattr(api_module, "status_document", lambda snap: {})
        assert await (await client.get("/api/v1/overrides")).json() == []


async def test_a_daemon_without_control_says_so(tmp_path: Path) -> None:
    async with TestClient(TestServer(make_app(lambda: None, api=policy(tmp_path)))) as client:
        code, doc = await answer(await client.put(FORCE, headers=AUTH, json={}))
        assert code == 501 and "no requests" in doc["error"]


async def test_a_bug_in_the_daemon_is_a_500_with_a_sentence_not_a_dropped_connection(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Broken(FakeControl):
        def set_override(self, *args: Any, **kw: Any) -> dict[str, Any]:
            raise RuntimeError("boom")

    app = make_app(lambda: None, control=Broken(), api=policy(tmp_path))
    async with TestClient(TestServer(app)) as client:
        code, doc = await answer(await client.put(FORCE, headers=AUTH,
                                                  json={"link": "lte", "reason": "x"}))
    assert code == 500 and "boom" not in doc["error"]
    assert "boom" in caplog.text
