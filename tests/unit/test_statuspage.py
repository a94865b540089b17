"""The status page's routes, with aiohttp's test server (no browser): the fixed set of
files with a strict CSP, no path traversal, the history and page JSON, and the status
stream (pushed on publish, keepalive, bounded, ended on shutdown)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from controller.core.didplan import DidEntry, TrunkView, compute_plan
from controller.core.e164 import parse_range
from controller.core.health import HealthState
from controller.core.snapshot import GroupSnap, LinkSnap, PeerSnap, Snapshot
from exporters.http import HttpServer, make_app
from exporters.statuspage import CSP, STATIC_FILES, StatusPage, page_document

UP, DOWN = HealthState.UP, HealthState.DOWN


def snap(t: float, active: str = "fibre-a", loss: float = 0.0) -> Snapshot:
    links = tuple(
        LinkSnap(name, f"wan-{name[-1]}", "198.51.100.1", None, 1, UP, 5.0, "answering", True,
                 loss, 0.012, 0.001, 4.3, 50, 0.0, 0.0)
        for name in ("fibre-a", "fibre-b"))
    groups = (GroupSnap("internet", 254, "default", ("fibre-a", "fibre-b"), (active,),
                        (active,), f"{active} is the best up link", 1.0),)
    return Snapshot(site="rome", version="9.9", dry_run=False, taken_at=t, uptime=10.0,
                    links=links, groups=groups)


def telephony_snap() -> Snapshot:
    """Rome's PBX down (two ranges on DR), the only trunk of a third range down."""
    entries = (
        DidEntry(parse_range("+390212345600-+390212345699"), ("a-sbc1",), "pbx", "dr"),
        DidEntry(parse_range("+390287654300-+390287654349"), ("a-sbc1",), "pbx", "dr"),
        DidEntry(parse_range("+390612340000"), ("b-sbc1",), "pbx", None),
    )
    trunks = {"a-sbc1": TrunkView("a-sbc1", UP), "b-sbc1": TrunkView("b-sbc1", DOWN)}
    plan = compute_plan(entries, trunks, {}, {"pbx": DOWN, "dr": UP})
    peers = (PeerSnap("a-sbc1", "sip:192.0.2.21", UP, "200 OK", 200, 0.02, 0.0, dids=150),
             PeerSnap("b-sbc1", "sip:192.0.2.23", DOWN, "timeout", None, None, 0.0))
    base = snap(1000.0)
    return Snapshot(site=base.site, version=base.version, dry_run=False, taken_at=1000.0,
                    uptime=1.0, links=base.links, groups=base.groups, trunks=peers,
                    plan=plan, telephony=True)


class Feed:
    """What the daemon does: holds the latest snapshot and tells the page of each one."""

    def __init__(self, page: StatusPage) -> None:
        self.page = page
        self.latest: Snapshot | None = None

    def publish(self, s: Snapshot) -> None:
        self.latest = s
        self.page.published(s)


@pytest.fixture
async def served() -> AsyncIterator[tuple[TestClient[Any, Any], Feed]]:
    events = [{"id": 1, "ts": 1.0, "kind": "decision", "subject": "internet",
               "message": "fibre-a -> fibre-b"}]
    page = StatusPage(recent_events=lambda: list(events), keepalive=0.2, max_streams=2)
    feed = Feed(page)
    async with TestClient(TestServer(make_app(lambda: feed.latest, page=page))) as client:
        yield client, feed


async def raw_get(client: TestClient[Any, Any], target: str) -> tuple[int, bytes]:
    """GET ``target`` exactly as written (no client-side dot removal or re-encoding)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: lifeline\r\nConnection: close\r\n\r\n"
                 .encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def test_the_page_and_its_files_are_served_with_a_strict_csp(
        served: tuple[TestClient[Any, Any], Feed]) -> None:
    client, _ = served
    resp = await client.get("/")
    assert resp.status == 200 and resp.content_type == "text/html"
    assert resp.headers["Content-Security-Policy"] == CSP
    assert "'unsafe-inline'" not in CSP and "http" not in CSP and "*" not in CSP
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    html = await resp.text()
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs, "the page references its script and styles"
    for ref in refs:  # everything it loads is ours, served here
        assert ref.startswith("/static/"), ref
        got = await client.get(ref)
        assert got.status == 200, ref
        assert got.headers["Content-Security-Policy"] == CSP
    assert "<script>" not in html and "style=" not in html  # nothing inline for CSP to block


async def test_every_static_file_is_served_with_its_type(
        served: tuple[TestClient[Any, Any], Feed]) -> None:
    client, _ = served
    for name, ctype in STATIC_FILES.items():
        resp = await client.get(f"/static/{name}")
        assert resp.status == 200, name
        assert resp.headers["Content-Type"] == ctype
        assert await resp.read()


def test_the_script_loads_nothing_from_elsewhere() -> None:
    from importlib import resources

    folder = resources.files("exporters").joinpath("static")
    for name in STATIC_FILES:
        text = folder.joinpath(name).read_text()
        urls = re.findall(r"https?://[^\s\"')]+", text)
        # The SVG namespace is a name, not a fetch.
        assert set(urls) <= {"http://www.w3.org/2000/svg"}, (name, urls)


@pytest.mark.parametrize("target", [
    "/static/../http.py",
    "/static/../../pyproject.toml",
    "/static/..%2fhttp.py",
    "/static/..%2Fstatus.py",
    "/static/%2e%2e/http.py",
    "/static/%2e%2e%2fhttp.py",
    "/static/%2E%2E%2F%2E%2E%2Fpyproject.toml",
    "/static/..%5chttp.py",
    "/static/....//http.py",
    "/static/%252e%252e%252fhttp.py",
    "/static//etc/passwd",
    "/static/%2fetc%2fpasswd",
    "/static/page.js%00.py",
    "/static/page.js/..",
    "/static/./page.css/../../http.py",
    "/static/nope.js",
    "/static/",
    "/static/__init__.py",
    "/static/../__init__.py",
])
async def test_path_traversal_and_unknown_names_get_404(
        served: tuple[TestClient[Any, Any], Feed], target: str) -> None:
    client, _ = served
    status, body = await raw_get(client, target)
    assert status == 404, (target, body[:200])
    assert b"import" not in body and b"root:" not in body and b"[project]" not in body


async def test_page_json_says_starting_then_serves_status_and_events(
        served: tuple[TestClient[Any, Any], Feed]) -> None:
    client, feed = served
    assert (await client.get("/api/v1/page")).status == 503
    feed.publish(snap(100.0))
    resp = await client.get("/api/v1/page")
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    doc = await resp.json()
    assert doc["status"]["site"] == "rome" and doc["status"]["taken_at"] == 100.0
    assert doc["status"]["groups"][0]["active"] == ["fibre-a"]
    assert doc["events"][0]["message"] == "fibre-a -> fibre-b"


async def test_a_journal_that_cannot_be_read_leaves_the_events_empty() -> None:
    def broken() -> list[dict[str, Any]]:
        raise RuntimeError("disk gone")

    page = StatusPage(recent_events=broken)
    page.published(snap(1.0))
    async with TestClient(TestServer(make_app(lambda: snap(1.0), page=page))) as client:
        resp = await client.get("/api/v1/page")
        assert resp.status == 200
        assert (await resp.json())["events"] == []


async def test_history_is_served_from_published_snapshots(
        served: tuple[TestClient[Any, Any], Feed]) -> None:
    client, feed = served
    now = time.time()
    start = now - now % 10 - 60
    for i in range(7):  # 6 closed steps of 10 s, the newest with 40 % loss
        feed.publish(snap(start + 10 * i, loss=0.4 if i == 5 else 0.0))
    doc = await (await client.get("/api/v1/history")).json()
    assert doc["step"] == 10 and doc["window"] == 3600
    assert doc["t"] == [start + 10 * i for i in range(6)]
    assert doc["links"]["fibre-a"]["loss"] == [0.0] * 5 + [0.4]
    assert doc["links"]["fibre-b"]["mos"] == [4.3] * 6


def test_the_page_document_lists_dr_and_unroutable_ranges() -> None:
    doc = page_document(telephony_snap())
    dids = doc["dids"]
    assert dids["dr_ranges"] == 2 and dids["dr_numbers"] == 150
    assert dids["dr_by_cause"] == {"destination_down": 150}  # the PBX is down
    assert dids["unroutable_numbers"] == 1
    notable = {r["range"]: r for r in dids["notable"]}
    assert len(notable) == 3 and dids["notable_left_off"] == 0
    unroutable = [r for r in notable.values() if r["unroutable"]]
    assert len(unroutable) == 1 and unroutable[0]["trunk"] is None
    assert all(r["on_dr"] and r["destination"] == "dr"
               for r in notable.values() if not r["unroutable"])
    assert doc["trunks"][0]["dids"] == 150  # the status document, unchanged underneath


async def read_event(resp: ClientResponse, timeout: float = 3.0) -> tuple[str, str]:
    """The next event or comment block of a stream: (kind, payload)."""
    lines: list[str] = []
    while True:
        raw = await asyncio.wait_for(resp.content.readline(), timeout)
        assert raw, "the stream ended"
        line = raw.decode().rstrip("\n")
        if line == "":
            if lines:
                break
            continue
        lines.append(line)
    if lines[0].startswith(":"):
        return "comment", lines[0]
    fields = dict(line.split(": ", 1) for line in lines)
    return fields.get("event", "retry" if "retry" in fields else "?"), fields.get("data", "")


async def test_the_stream_pushes_each_published_snapshot_at_once(
        served: tuple[TestClient[Any, Any], Feed]) -> None:
    client, feed = served
    feed.publish(snap(100.0))
    resp = await client.get("/api/v1/events/stream")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert resp.headers["Cache-Control"] == "no-store"
    assert await read_event(resp) == ("retry", "")
    kind, data = await read_event(resp)
    assert kind == "status"
    assert json.loads(data)["status"]["groups"][0]["active"] == ["fibre-a"]
    published = time.monotonic()
    feed.publish(snap(101.0, active="fibre-b"))
    kind, data = await read_event(resp)
    took = time.monotonic() - published
    assert kind == "status"
    assert json.loads(data)["status"]["groups"][0]["active"] == ["fibre-b"]
    assert took < 0.2, f"pushed {took:.3f} s after the publish"  # no poll interval in between
    resp.close()


async def test_the_stream_sends_keepalives_while_nothing_changes(
        served: tuple[TestClient[Any, Any], Feed]) -> None:
    client, feed = served
    feed.publish(snap(100.0))
    resp = await client.get("/api/v1/events/stream")
    await read_event(resp)  # retry
    await read_event(resp)  # the status
    assert (await read_event(resp, 2.0))[0] == "comment"
    assert (await read_event(resp, 2.0))[0] == "comment"
    resp.close()


async def test_streams_are_bounded_and_a_closed_one_frees_its_place(
        served: tuple[TestClient[Any, Any], Feed]) -> None:
    client, feed = served
    page = feed.page
    feed.publish(snap(100.0))
    first = await client.get("/api/v1/events/stream")
    second = await client.get("/api/v1/events/stream")
    for r in (first, second):
        await read_event(r)
    assert page.streams == 2
    refused = await client.get("/api/v1/events/stream")
    assert refused.status == 503 and refused.headers["Retry-After"] == "30"
    assert "poll /api/v1/page" in (await refused.json())["error"]
    first.close()
    feed.publish(snap(101.0))  # the write to the gone client fails and ends its handler

    async def freed() -> None:
        while page.streams != 1:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(freed(), 3.0)
    third = await client.get("/api/v1/events/stream")
    assert third.status == 200
    second.close()
    third.close()


async def test_shutting_down_ends_open_streams_at_once() -> None:
    page = StatusPage(keepalive=30.0)
    page.published(snap(1.0))
    server = TestServer(make_app(lambda: snap(1.0), page=page))
    client = TestClient(server)
    await client.start_server()
    resp = await client.get("/api/v1/events/stream")
    await read_event(resp)
    started = time.monotonic()
    await asyncio.wait_for(client.close(), 10.0)
    assert time.monotonic() - started < 5.0  # not aiohttp's 60 s shutdown timeout
    assert page.streams == 0


async def test_the_status_api_is_unchanged_without_a_page() -> None:
    async with TestClient(TestServer(make_app(lambda: snap(1.0)))) as client:
        assert (await client.get("/api/v1/status")).status == 200
        assert (await client.get("/")).status == 404
        assert (await client.get("/api/v1/events/stream")).status == 404


async def test_the_raw_request_above_does_reach_a_file(
        served: tuple[TestClient[Any, Any], Feed]) -> None:
    """The control for the traversal cases: the same raw request for a real name is 200."""
    client, _ = served
    status, body = await raw_get(client, "/static/page.css")
    assert status == 200 and b"--bg" in body


async def test_the_page_is_served_on_the_unix_socket_too(tmp_path: Path) -> None:
    """The same app serves the TCP address and the socket (``lifeline`` across netns)."""
    sock = tmp_path / "lifeline.sock"
    page = StatusPage()
    page.published(snap(1.0))
    server = HttpServer(make_app(lambda: snap(1.0), page=page), None, sock)
    await server.start()
    try:
        conn = aiohttp.UnixConnector(path=str(sock))
        async with aiohttp.ClientSession(connector=conn) as session:
            async with session.get("http://lifeline/") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Security-Policy"] == CSP
            async with session.get("http://lifeline/api/v1/page") as resp:
                assert (await resp.json())["status"]["site"] == "rome"
    finally:
        await server.stop()


async def test_polls_and_streams_share_one_build_per_snapshot() -> None:
    reads: list[int] = []

    def recent() -> list[dict[str, Any]]:
        reads.append(1)
        return []

    page = StatusPage(recent_events=recent)
    feed = Feed(page)
    feed.publish(snap(1.0))
    async with TestClient(TestServer(make_app(lambda: feed.latest, page=page))) as client:
        for _ in range(5):
            assert (await client.get("/api/v1/page")).status == 200
        stream = await client.get("/api/v1/events/stream")
        await read_event(stream)
        assert (await read_event(stream))[0] == "status"
        assert len(reads) == 1  # one journal read for six readers of one snapshot
        feed.publish(snap(2.0))
        assert json.loads((await read_event(stream))[1])["status"]["taken_at"] == 2.0
        doc = await (await client.get("/api/v1/page")).json()
        assert doc["status"]["taken_at"] == 2.0
        assert len(reads) == 2
        stream.close()


async def test_a_broken_install_without_the_page_files_still_serves_the_api(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("exporters.statuspage.resources.files", lambda _: tmp_path)
    page = StatusPage()  # no exception: the daemon starts
    async with TestClient(TestServer(make_app(lambda: snap(1.0), page=page))) as client:
        assert (await client.get("/")).status == 503
        assert (await client.get("/static/page.js")).status == 404
        assert (await client.get("/api/v1/page")).status == 200
        assert (await client.get("/api/v1/status")).status == 200
