"""Trunk maintenance: the operator's marks (kept across restarts), the config's, what the
plan and the edge plan do with a trunk in maintenance, and the API that sets the marks
(unix socket only)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from controller.config import ConfigError, parse_config
from controller.core.snapshot import Tally
from controller.runtime.journal import Journal, read_events
from controller.runtime.overridebook import OverrideBook
from controller.runtime.trunks import Telephony
from exporters.http import HttpServer, make_app
from exporters.metrics import registry_for
from exporters.statusview import request_maintenance
from tests.unit.test_telephony import CONFIG, LINKS, Recorder, all_up, snap


def telephony(tmp_path: Path, config: str = CONFIG) -> Telephony:
    book = OverrideBook(tmp_path / "state" / "overrides.json")
    return Telephony(parse_config(config), Journal(tmp_path / "j.sqlite3"), Tally(),
                     [Recorder()], book)


def test_a_mark_that_cannot_be_written_holds_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    tel = Telephony(parse_config(CONFIG), Journal(tmp_path / "j.sqlite3"), Tally(),
                    [Recorder()], OverrideBook(blocker / "overrides.json"))  # dir is a file
    out = tel.set_maintenance("a1", True, "swap")
    assert out["operator"] and not out["kept_on_disk"]
    assert "cannot write" in (tel.book.problem or "")


def test_config_maintenance_values() -> None:
    with_reason = CONFIG.replace('uri: "sip:192.0.2.21",',
                                 'uri: "sip:192.0.2.21", maintenance: "carrier works",')
    assert parse_config(with_reason).trunk("a1").maintenance == "carrier works"
    assert parse_config(CONFIG.replace('uri: "sip:192.0.2.21",',
                                       'uri: "sip:192.0.2.21", maintenance: true,')
                        ).trunk("a1").maintenance == ""
    assert parse_config(CONFIG).trunk("a1").maintenance is None
    with pytest.raises(ConfigError, match="maintenance"):
        parse_config(CONFIG.replace('uri: "sip:192.0.2.21",',
                                    'uri: "sip:192.0.2.21", maintenance: 3,'))


def test_a_trunk_in_maintenance_gets_no_call_and_comes_back(tmp_path: Path) -> None:
    tel = telephony(tmp_path)
    now = all_up(tel)
    plan = tel.decide(now, LINKS)
    assert plan.lookup("+390212345601").trunk == "a1"  # type: ignore[union-attr]
    out = tel.set_maintenance("a1", True, "SBC swap")
    assert out == {"trunk": "a1", "maintenance": "SBC swap (set by the operator)",
                   "operator": True, "kept_on_disk": True}
    plan = tel.decide(now, LINKS)
    rome = plan.lookup("+390212345601")
    assert rome is not None and rome.trunk == "a2" and rome.fallback == ()
    assert "a1 in maintenance: SBC swap (set by the operator)" in rome.reason
    edge = tel.to_edge_plan(plan)
    assert {t.name: t.enabled for t in edge.trunks} == {"a1": False, "a2": True, "b1": True}
    (a1,) = [t for t in snap(tel, now).trunks if t.name == "a1"]
    assert a1.maintenance == "SBC swap (set by the operator)" and a1.dids == 0
    metrics = registry_for(lambda: snap(tel, now))
    assert metrics.get_sample_value("lifeline_trunk_maintenance", {"trunk": "a1"}) == 1.0
    assert metrics.get_sample_value("lifeline_trunk_maintenance", {"trunk": "a2"}) == 0.0
    # A restarted daemon reads the mark back.
    assert telephony(tmp_path).maintenance("a1") == "SBC swap (set by the operator)"
    tel.set_maintenance("a1", False)
    assert tel.decide(now, LINKS).lookup("+390212345601").trunk == "a1"  # type: ignore[union-attr]
    events = [e.message for e in read_events(tmp_path / "j.sqlite3", 50, "action")]
    assert "trunk a1 put in maintenance: SBC swap (set by the operator)" in events
    assert "trunk a1 back in service" in events
    with pytest.raises(KeyError):
        tel.set_maintenance("nope", True)


def test_the_configs_mark_outlasts_the_operators(tmp_path: Path) -> None:
    config = CONFIG.replace('uri: "sip:192.0.2.22",', 'uri: "sip:192.0.2.22", maintenance: true,')
    tel = telephony(tmp_path, config)
    now = all_up(tel)
    assert tel.maintenance("a2") == "set in the config"
    rome = tel.decide(now, LINKS).lookup("+390212345601")
    assert rome is not None and rome.trunk == "a1" and rome.fallback == ()
    tel.set_maintenance("a2", True, "and the operator")
    out = tel.set_maintenance("a2", False)
    assert out["maintenance"] == "set in the config" and not out["operator"]


class FakeControl:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bool, str]] = []

    def set_maintenance(self, trunk: str, on: bool, reason: str = "") -> dict[str, Any]:
        if trunk != "a1":
            raise KeyError(trunk)
        self.calls.append((trunk, on, reason))
        return {"trunk": trunk, "maintenance": reason if on else None, "operator": on,
                "kept_on_disk": True}

    def set_override(self, kind: str, target: str, value: str | None, reason: str, by: str,
                     until: float) -> dict[str, Any]:
        raise ValueError("not in this test")

    def clear_override(self, kind: str, target: str, by: str, reason: str) -> dict[str, Any]:
        return {"kind": kind, "target": target, "cleared": False}

    def resolve_did(self, number: str) -> str | None:
        return None


async def test_the_api_sets_marks_on_the_unix_socket_only(tmp_path: Path) -> None:
    control = FakeControl()
    sock = tmp_path / "lifeline.sock"
    server = HttpServer(make_app(lambda: None, control=control), None, sock)
    await server.start()
    try:
        assert await request_maintenance(sock, "a1", True, "swap") == (
            200, {"trunk": "a1", "maintenance": "swap", "operator": True, "kept_on_disk": True})
        code, doc = await request_maintenance(sock, "a1", False)
        assert code == 200 and doc["maintenance"] is None
        code, doc = await request_maintenance(sock, "a 9/x", True)
        assert code == 404 and "a 9/x" in doc["error"]
    finally:
        await server.stop()
    assert control.calls == [("a1", True, "swap"), ("a1", False, "")]
    # Over TCP (what Prometheus scrapes) the write is refused, and nothing changes.
    async with TestClient(TestServer(make_app(lambda: None, control=control))) as client:
        resp = await client.put("/api/v1/trunks/a1/maintenance", json={"reason": "x"})
        assert resp.status == 403 and "unix socket" in (await resp.json())["error"]
        resp = await client.delete("/api/v1/trunks/a1/maintenance")
        assert resp.status == 403
    assert len(control.calls) == 2


async def test_bad_bodies_are_refused(tmp_path: Path) -> None:
    control = FakeControl()
    sock = tmp_path / "lifeline.sock"
    server = HttpServer(make_app(lambda: None, control=control), None, sock)
    await server.start()
    try:
        conn = aiohttp.UnixConnector(path=str(sock))
        async with aiohttp.ClientSession(connector=conn) as session:
            url = "http://lifeline/api/v1/trunks/a1/maintenance"
            async with session.put(url, data=b"{oops") as resp:
                assert resp.status == 400
            async with session.put(url, data=json.dumps({"reason": 5})) as resp:
                assert resp.status == 400 and "string" in (await resp.json())["error"]
    finally:
        await server.stop()
    assert control.calls == []


def test_check_config_says_which_trunks_are_in_maintenance() -> None:
    from controller.config import summary

    cfg = parse_config(CONFIG.replace('uri: "sip:192.0.2.22",',
                                      'uri: "sip:192.0.2.22", maintenance: "swap",'))
    text = summary(cfg)
    assert "IN MAINTENANCE: gets no calls (swap)" in text
    assert text.count("IN MAINTENANCE") == 1


def test_a_reload_that_changes_maintenance_says_so(tmp_path: Path) -> None:
    tel = telephony(tmp_path)
    marked = parse_config(CONFIG.replace('uri: "sip:192.0.2.22",',
                                         'uri: "sip:192.0.2.22", maintenance: "works",'))
    changes = asyncio.run(tel.reconfigure(marked, tel.edges))
    assert "trunk a2: in maintenance (config: works)" in changes
    changes = asyncio.run(tel.reconfigure(parse_config(CONFIG), tel.edges))
    assert "trunk a2: back in service (config)" in changes


def test_a_fallback_change_alone_is_pushed_not_journaled(tmp_path: Path) -> None:
    """a2 going down changes only the fallback of a1's range: the edge gets it, the
    journal records no decision (no DID moved)."""
    tel = telephony(tmp_path)
    now = all_up(tel)
    first = tel.decide(now, LINKS)
    assert first.lookup("+390212345601").fallback == ("a2",)  # type: ignore[union-attr]
    tel.set_maintenance("a2", True)
    second = tel.decide(now, LINKS)
    assert second.lookup("+390212345601").fallback == ()  # type: ignore[union-attr]
    decisions = read_events(tmp_path / "j.sqlite3", 50, "decision")
    assert len(decisions) == 2  # the first plan's two ranges, nothing after
    assert tel.to_edge_plan(second).routes[0].fallback == ()


async def test_a_damaged_marks_file_is_a_standing_problem_and_journaled(
        tmp_path: Path) -> None:
    from tests.unit.test_calm_start import daemon_on
    from tests.unit.test_runtime import _kernel

    state = tmp_path / "state"
    state.mkdir()
    (state / "maintenance.json").write_text("[1, 2")
    async with daemon_on(tmp_path, _kernel()) as daemon:
        problems = daemon.status()["problems"]
        assert any("maintenance marks were dropped" in p for p in problems), problems
    errors = read_events(state / "journal.sqlite3", 50, "error")
    assert any(e.subject == "overrides" and "maintenance marks were dropped" in e.message
               for e in errors), errors
    assert (state / "maintenance.json.unreadable").read_text() == "[1, 2"
