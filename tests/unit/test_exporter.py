"""The HTTP face: /metrics in Prometheus text format, /api/v1/status, /healthz, unix socket."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from controller.core.health import HealthState
from controller.core.snapshot import (
    RTT_BUCKETS,
    GroupSnap,
    JournalSnap,
    LinkSnap,
    Snapshot,
    Tally,
)
from exporters.http import HttpServer, make_app, parse_listen
from exporters.metrics import CATALOG, NAMES, metrics_doc
from exporters.status import status_document
from exporters.statusview import fetch_status, render_status

REPO = Path(__file__).resolve().parents[2]


def _snapshot() -> Snapshot:
    """A site with fibre-a down and fibre-b carrying the internet group, after a failover."""
    tally = Tally()
    tally.init("lifeline_failovers_total", ("internet", "fibre-b", "fibre-a"))
    tally.add("lifeline_failovers_total", ("internet", "fibre-a", "fibre-b"))
    tally.add("lifeline_probes_total", ("fibre-a", "icmp", "timeout"), 3)
    tally.histogram("lifeline_probe_rtt_seconds", RTT_BUCKETS, ("fibre-a", "icmp"))
    tally.observe("lifeline_probe_rtt_seconds", 0.004, ("fibre-b", "icmp"))
    counters, histograms = tally.freeze()
    links = (
        LinkSnap("fibre-a", "wan-a", "198.51.100.1", "198.51.100.2", 1, HealthState.DOWN, 3.0,
                 "fibre-a: 3 rounds lost in a row", False, 1.0, None, None, None, 50, 10.0,
                 1.0),
        LinkSnap("fibre-b", "wan-b", "203.0.113.1", "203.0.113.2", 1, HealthState.UP, 60.0,
                 "answering", True, 0.0, 0.004, 0.0005, 4.4, 50, 0.0, 0.0),
    )
    groups = (GroupSnap("internet", 254, "default", ("fibre-a", "fibre-b"), ("fibre-b",),
                        ("fibre-b",), "fibre-a down; fibre-b is the best up link", 3.0),)
    return Snapshot(site="rome", version="1.2.3", dry_run=False, taken_at=0.0, uptime=61.0,
                    links=links, groups=groups, counters=counters, histograms=histograms,
                    journal=JournalSnap("/var/lib/lifeline/journal.sqlite3"))


async def _scrape(snap: Snapshot) -> dict[str, Any]:
    async with TestClient(TestServer(make_app(lambda: snap))) as client:
        resp = await client.get("/metrics")
        assert resp.status == 200
        text = await resp.text()
    assert "_created" not in text
    return {f.name: f for f in text_string_to_metric_families(text)}


async def test_metrics_endpoint_serves_parseable_text() -> None:
    families = await _scrape(_snapshot())
    state = {(s.labels["link"], s.labels["state"]): s.value
             for s in families["lifeline_link_state"].samples}
    assert state[("fibre-a", "down")] == 1.0
    assert state[("fibre-a", "up")] == 0.0
    # prometheus-client names a counter family without its _total suffix
    failovers = {(s.labels["from"], s.labels["to"]): s.value
                 for s in families["lifeline_failovers"].samples if s.name.endswith("_total")}
    assert failovers == {("fibre-a", "fibre-b"): 1.0, ("fibre-b", "fibre-a"): 0.0}
    active = {s.labels["link"]: s.value for s in families["lifeline_group_active_link"].samples}
    assert active == {"fibre-a": 0.0, "fibre-b": 1.0}
    info = families["lifeline_build_info"].samples[0]
    assert info.labels == {"version": "1.2.3", "site": "rome"} and info.value == 1.0
    # a link with no answered probe serves no latency rather than a made-up 0
    latency = {s.labels["link"] for s in families["lifeline_link_latency_seconds"].samples}
    assert latency == {"fibre-b"}
    hold = {s.labels["link"]: s.value for s in families["lifeline_link_hold_down_seconds"].samples}
    assert hold == {"fibre-a": 10.0, "fibre-b": 0.0}


async def test_probe_rtt_is_a_histogram_by_link_and_kind() -> None:
    families = await _scrape(_snapshot())
    samples = families["lifeline_probe_rtt_seconds"].samples
    count = {s.labels["link"]: s.value for s in samples if s.name.endswith("_count")}
    assert count == {"fibre-a": 0.0, "fibre-b": 1.0}
    buckets = {s.labels["le"]: s.value for s in samples
               if s.name.endswith("_bucket") and s.labels["link"] == "fibre-b"}
    assert buckets["0.0025"] == 0.0 and buckets["0.005"] == 1.0 and buckets["+Inf"] == 1.0
    assert all(s.labels["kind"] == "icmp" for s in samples)


async def test_process_and_platform_collectors_are_served() -> None:
    families = await _scrape(_snapshot())
    assert "process_resident_memory_bytes" in families
    assert "python_info" in families


def test_a_gauge_for_every_catalog_entry_reads_a_full_snapshot() -> None:
    """Every gauge in the catalog serves a series off a snapshot that has every part."""
    snap = _snapshot()
    for m in CATALOG:
        if m.kind == "gauge" and m.when == "always":
            assert m.read is not None
            assert list(m.read(snap)), m.name


def test_catalog_names_follow_the_conventions() -> None:
    for m in CATALOG:
        assert m.name.startswith("lifeline_"), m.name
        assert m.name.endswith("_total") == (m.kind == "counter"), m.name
        assert m.help.endswith(")") or m.help.endswith("."), m.name
    assert len(set(NAMES)) == len(NAMES)


def test_docs_metrics_md_is_generated_from_the_catalog() -> None:
    committed = (REPO / "docs" / "metrics.md").read_text()
    assert committed == metrics_doc(), (
        "docs/metrics.md is stale: run `python -m exporters.metrics > docs/metrics.md`")


def test_readme_names_only_metrics_that_exist() -> None:
    readme = (REPO / "README.md").read_text()
    named = set(re.findall(r"\blifeline_[a-z_]+", readme))
    assert named <= set(NAMES), sorted(named - set(NAMES))


async def test_status_and_healthz() -> None:
    snap = _snapshot()
    async with TestClient(TestServer(make_app(lambda: snap))) as client:
        resp = await client.get("/api/v1/status")
        assert resp.status == 200
        doc = json.loads(await resp.text())
        assert doc == status_document(snap)
        assert doc["links"][0]["state"] == "down" and doc["groups"][0]["active"] == ["fibre-b"]
        assert doc["failovers"] == 1 and doc["problems"] == []
        assert await (await client.get("/healthz")).text() == "ok\n"
        assert (await client.get("/nope")).status == 404


async def test_status_before_the_first_cycle_says_starting() -> None:
    async with TestClient(TestServer(make_app(lambda: None))) as client:
        resp = await client.get("/api/v1/status")
        assert resp.status == 503 and "starting" in (await resp.json())["error"]
        metrics = await client.get("/metrics")
        assert metrics.status == 200 and "lifeline_link_state" not in await metrics.text()


async def test_unix_socket_serves_the_cli(tmp_path: Path) -> None:
    sock = tmp_path / "lifeline.sock"
    snap = _snapshot()
    server = HttpServer(make_app(lambda: snap), None, sock)
    await server.start()
    try:
        doc = await fetch_status(sock)
    finally:
        await server.stop()
    assert doc == status_document(snap)
    assert not sock.exists()
    table = render_status(doc)
    assert "fibre-a" in table and "down" in table and "fibre-b" in table
    telephony = render_status(doc | {
        "trunks": [{"name": "carrier-a-sbc1", "state": "down", "last_code": None,
                    "last_rtt": None, "dids": 0, "reason": "carrier-a-sbc1: 3 rounds lost"},
                   {"name": "carrier-a-sbc2", "state": "up", "last_code": 200,
                    "last_rtt": 0.01, "dids": 0, "reason": "answering",
                    "edge_tripped": "3 calls failed at the SIP edge within 30 s"}],
        "destinations": [{"name": "pbx", "state": "up", "uri": "sip:192.0.2.130"}],
        "dids": {"numbers": 150, "ranges": 2, "unroutable_numbers": 50,
                 "unroutable": ["+390298765400-+390298765449"]},
        "edges": [{"name": "kamailio", "in_sync": True, "error": None}]})
    assert "carrier-a-sbc1" in telephony and "unroutable: 50" in telephony
    assert "edge kamailio: in sync" in telephony
    assert "fails calls at the edge: 3 calls failed" in telephony
    trouble = render_status(doc | {
        "problems": ["found foreign default via 198.51.100.9 where lifeline would put ..."],
        "journal": {"path": "/var/lib/lifeline/journal.sqlite3", "mode": "memory",
                    "damaged_moved_to": "/var/lib/lifeline/journal.sqlite3.damaged-x",
                    "problem": "No space left on device"}})
    assert "problem: found foreign default via 198.51.100.9" in trouble
    assert "journal: in memory (No space left on device)" in trouble
    assert "moved aside to /var/lib/lifeline/journal.sqlite3.damaged-x" in trouble


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
