"""lifeline's own pages to Alertmanager: which alerts a snapshot calls for, with the labels
the Prometheus rules give the same alerts; when each is posted (new, re-posted, resolved,
kept until delivered); and the poster against an HTTP server standing in for Alertmanager."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from controller.config.model import AlertmanagerPush
from controller.core.health import HealthState
from controller.core.pages import FAILOVER_SHOWN, PageBook, pages_for
from controller.core.snapshot import GroupSnap, LinkSnap, Snapshot, Tally
from controller.runtime.paging import AlertPoster
from tests.unit.test_alert_rules import RULES
from tests.unit.test_maintenance import telephony
from tests.unit.test_telephony import LINKS, LOST, all_up, feed, snap


def link(name: str, state: HealthState) -> LinkSnap:
    return LinkSnap(name, "eth0", "192.0.2.1", None, 1, state, None, "", True, 0.0, None,
                    None, None, 0, 0.0, 0.0)


def site(*states: HealthState, applied: tuple[str, ...] = ("a",)) -> Snapshot:
    links = tuple(link(n, s) for n, s in zip("abc", states, strict=False))
    groups = (GroupSnap("internet", 100, "default", ("a", "b"), applied, applied, "", None),)
    return Snapshot(site="rome", version="t", dry_run=False, taken_at=0.0, uptime=0.0,
                    links=links, groups=groups)


def names(pages: list[Any]) -> list[str]:
    return [dict(p.labels)["alertname"] for p in pages]


def test_every_uplink_down_with_the_rules_labels() -> None:
    assert pages_for(site(HealthState.UP, HealthState.DOWN), {}) == []
    (page,) = pages_for(site(HealthState.DOWN, HealthState.DOWN), {})
    rule = next(r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
                if r.get("alert") == "LifelineAllUplinksDown")
    # The rule aggregates by site: its alert's labels are these, so Alertmanager keeps one.
    assert "sum by (site)" in rule["expr"]
    assert dict(page.labels) == {"alertname": "LifelineAllUplinksDown", "site": "rome",
                                 **rule["labels"]}
    assert dict(page.annotations)["summary"] == "rome has no working uplink"


def test_unroutable_dids_page(tmp_path: Path) -> None:
    tel = telephony(tmp_path)
    now = all_up(tel)
    tel.decide(now, LINKS)
    assert pages_for(snap(tel, now), {}) == []
    now = feed(tel, "trunk", "b1", LOST, now, 5)
    tel.decide(now, LINKS)
    (page,) = pages_for(snap(tel, now), {})
    assert dict(page.labels) == {"alertname": "LifelineDidsUnroutable", "site": "tel",
                                 "severity": "page", "scope": "dids"}
    assert "+390298765400-+390298765449" in dict(page.annotations)["description"]


def test_posted_once_then_again_after_resend_then_resolved() -> None:
    book = PageBook(resend=60.0)
    down = pages_for(site(HealthState.DOWN, HealthState.DOWN), {})
    (first,) = book.due(down, 1000.0)
    assert first.starts_at == 1000.0 and first.ends_at is None
    assert book.due(down, 1001.0) == [first]  # not delivered yet: due again
    book.delivered([first], 1001.0)
    assert book.due(down, 1030.0) == []
    (again,) = book.due(down, 1061.0)
    assert again.starts_at == 1000.0  # the same alert, kept alive
    book.delivered([again], 1061.0)
    (resolved,) = book.due([], 1070.0)
    assert resolved.ends_at == 1070.0 and resolved.starts_at == 1000.0
    assert book.due([], 1071.0) == [resolved]  # until Alertmanager took it
    book.delivered([resolved], 1071.0)
    assert book.due([], 1072.0) == []
    assert resolved.document()["endsAt"] == "1970-01-01T00:17:50Z"


def test_a_failover_is_a_ticket_for_ten_minutes() -> None:
    book = PageBook()
    book.note_groups(site(HealthState.UP, HealthState.UP, applied=("a",)), 100.0)
    book.note_groups(site(HealthState.DOWN, HealthState.UP, applied=("b",)), 105.0)
    (page,) = pages_for(site(HealthState.DOWN, HealthState.UP), book.failovers)
    assert dict(page.labels) == {"alertname": "LifelineFailedOver", "site": "rome",
                                 "severity": "ticket", "scope": "site", "group": "internet"}
    assert page.ends_at == 105.0 + FAILOVER_SHOWN
    assert "from a to b" in dict(page.annotations)["summary"]
    book.note_groups(site(HealthState.DOWN, HealthState.UP, applied=("b",)),
                     105.0 + FAILOVER_SHOWN)
    assert book.failovers == {}


class FakeAlertmanager:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[list[dict[str, Any]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        return web.Response(status=self.status, text="")


async def test_the_poster_retries_and_delivers() -> None:
    am = FakeAlertmanager(status=500)
    app = web.Application()
    app.router.add_post("/api/v2/alerts", am.handle)
    clock = [1000.0]
    async with TestServer(app) as server:
        cfg = AlertmanagerPush(urls=[str(server.make_url("/"))], timeout=2.0, resend=60.0)
        tally = Tally()
        poster = AlertPoster(cfg, tally, wall=lambda: clock[0])
        cut_off = site(HealthState.DOWN, HealthState.DOWN)
        try:
            poster.cycle(cut_off)
            await asyncio.sleep(0.2)
            assert tally.value("lifeline_alertmanager_posts_total", ("error",)) == 1
            poster.cycle(cut_off)  # within the backoff: nothing sent
            await asyncio.sleep(0.1)
            assert len(am.bodies) == 1
            am.status = 200
            clock[0] += 2.0
            poster.cycle(cut_off)
            await asyncio.sleep(0.2)
            assert tally.value("lifeline_alertmanager_posts_total", ("ok",)) == 1
            assert am.bodies[-1][0]["labels"]["alertname"] == "LifelineAllUplinksDown"
            assert "endsAt" not in am.bodies[-1][0]
            clock[0] += 1.0
            poster.cycle(site(HealthState.UP, HealthState.DOWN))
            await asyncio.sleep(0.2)
            assert am.bodies[-1][0]["endsAt"] == "1970-01-01T00:16:43Z"  # resolved
        finally:
            await poster.close()
