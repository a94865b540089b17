"""The HTTP face: /metrics in Prometheus text format, /api/v1/status, /healthz, unix socket."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from exporters.http import HttpServer, make_app, parse_listen
from exporters.metrics import Metrics
from exporters.statusview import fetch_status, render_status

STATUS: dict[str, Any] = {
    "site": "rome",
    "links": [{"name": "fibre-a", "tier": 1, "state": "down", "loss_ratio": 1.0,
               "latency": None, "jitter": None, "mos": None, "hold_down_remaining": 10.0,
               "reason": "fibre-a: 3 rounds lost in a row"}],
    "groups": [{"name": "internet", "table": 254, "destination": "default",
                "active": ["fibre-b"], "reason": "fibre-a down; fibre-b is the best up link"}],
}


def _metrics() -> Metrics:
    m = Metrics()
    m.set_link_state("fibre-a", "down")
    m.set_group_active("internet", ["fibre-a", "fibre-b"], ("fibre-b",))
    m.failovers.labels(group="internet", **{"from": "fibre-a", "to": "fibre-b"}).inc()
    m.probes.labels(link="fibre-a", kind="icmp", result="timeout").inc(3)
    return m


async def test_metrics_endpoint_serves_parseable_text() -> None:
    async with TestClient(TestServer(make_app(_metrics(), lambda: STATUS))) as client:
        resp = await client.get("/metrics")
        assert resp.status == 200
        text = await resp.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    state = {(s.labels["link"], s.labels["state"]): s.value
             for s in families["lifeline_link_state"].samples}
    assert state[("fibre-a", "down")] == 1.0
    assert state[("fibre-a", "up")] == 0.0
    # prometheus-client names a counter family without its _total suffix
    failovers = families["lifeline_failovers"].samples
    assert any(s.labels == {"group": "internet", "from": "fibre-a", "to": "fibre-b"}
               and s.value == 1.0 for s in failovers if s.name.endswith("_total"))
    active = {s.labels["link"]: s.value for s in families["lifeline_group_active_link"].samples}
    assert active == {"fibre-a": 0.0, "fibre-b": 1.0}


async def test_status_and_healthz() -> None:
    async with TestClient(TestServer(make_app(_metrics(), lambda: STATUS))) as client:
        resp = await client.get("/api/v1/status")
        assert resp.status == 200
        assert json.loads(await resp.text()) == STATUS
        assert await (await client.get("/healthz")).text() == "ok\n"
        assert (await client.get("/nope")).status == 404


async def test_unix_socket_serves_the_cli(tmp_path: Path) -> None:
    sock = tmp_path / "lifeline.sock"
    server = HttpServer(make_app(_metrics(), lambda: STATUS), None, sock)
    await server.start()
    try:
        doc = await fetch_status(sock)
    finally:
        await server.stop()
    assert doc == STATUS
    assert not sock.exists()
    table = render_status(doc)
    assert "fibre-a" in table and "down" in table and "fibre-b" in table
    telephony = render_status(doc | {
        "trunks": [{"name": "carrier-a-sbc1", "state": "down", "last_code": None,
                    "last_rtt": None, "dids": 0, "reason": "carrier-a-sbc1: 3 rounds lost"},
                   {"name": "carrier-a-sbc2", "state": "up", "last_code": 200,
                    "last_rtt": 0.01, "dids": 0, "reason": "answering",
                    "edge_failing": "3 calls failed at the SIP edge within 30 s"}],
        "destinations": [{"name": "pbx", "state": "up", "uri": "sip:192.0.2.130"}],
        "dids": {"numbers": 150, "ranges": 2, "unroutable_numbers": 50,
                 "unroutable": ["+390298765400-+390298765449"]},
        "edges": [{"name": "kamailio", "in_sync": True, "error": None}]})
    assert "carrier-a-sbc1" in telephony and "unroutable: 50" in telephony
    assert "edge kamailio: in sync" in telephony
    assert "fails calls at the edge: 3 calls failed" in telephony


async def test_fetch_status_from_nothing_is_an_oserror(tmp_path: Path) -> None:
    try:
        await fetch_status(tmp_path / "absent.sock")
    except OSError:
        pass
    else:  # pragma: no cover - the assertion is the point
        raise AssertionError("expected OSError")


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:9730") == ("127.0.0.1", 9730)
    assert parse_listen("[::1]:9730") == ("::1", 9730)


async def test_client_error_is_not_swallowed_as_success(tmp_path: Path) -> None:
    # A socket that is not an HTTP server: fetch_status must fail, not return garbage.
    sock = tmp_path / "x.sock"
    server = HttpServer(aiohttp.web.Application(), None, sock)
    await server.start()
    try:
        raised = False
        try:
            await fetch_status(sock)
        except OSError:
            raised = True
        assert raised
    finally:
        await server.stop()
