"""lifeline's own pages to Alertmanager: which alerts a snapshot calls for, with the labels
the Prometheus rules give the same alerts; when each is posted (new, re-posted, resolved,
kept until delivered); and the poster against an HTTP server standing in for Alertmanager."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import given
from hypothesis import strategies as st

from controller.config.model import AlertmanagerPush
from controller.core.health import HealthState
from controller.core.pages import FAILOVER_SHOWN, OUTAGE_LINGER, PageBook, pages_for
from controller.core.powersnap import PowerSnap, UpsSnap
from controller.core.snapshot import GroupSnap, LinkSnap, OverrideSnap, Snapshot, Tally
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


def on_power(phase: str, reason: str = "") -> Snapshot:
    """The site with both links up and its power policy in ``phase``."""
    outage, dr = phase in ("outage", "dr"), phase == "dr"
    state = {"normal": "mains", "battery": "on_battery", "outage": "on_battery",
             "dr": "battery_low"}[phase]
    ups = UpsSnap("ups-a", "nut", state, reason, 10.0, ("OB",), 0.5, 600.0, 0.0, 0.3, True)
    power = PowerSnap(state, phase, reason or f"{phase}: ups-a", 10.0, outage, dr, (ups,))
    base = site(HealthState.UP, HealthState.UP)
    return Snapshot(site=base.site, version=base.version, dry_run=False, taken_at=0.0,
                    uptime=0.0, links=base.links, groups=base.groups, power=power)


def test_a_power_outage_pages_with_the_rules_labels() -> None:
    # Within the grace time, or on mains, nothing: the policy has not called an outage.
    assert pages_for(on_power("normal"), {}) == []
    assert pages_for(on_power("battery"), {}) == []
    assert pages_for(site(HealthState.UP, HealthState.UP), {}) == []  # no power section
    (page,) = pages_for(on_power("outage"), {})
    rule = next(r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
                if r.get("alert") == "LifelinePowerOutage")
    # The rule aggregates by site: Alertmanager keeps lifeline's copy and Prometheus' as one.
    assert "max by (site)" in rule["expr"] and "for" not in rule
    assert dict(page.labels) == {"alertname": "LifelinePowerOutage", "site": "rome",
                                 **rule["labels"]}
    assert dict(page.annotations)["summary"] == (
        "rome is on battery: mains is lost and the generator did not take over")
    assert dict(page.annotations)["runbook"] == "docs/alerts.md#lifelinepoweroutage"
    (in_dr,) = pages_for(on_power("dr"), {})
    assert in_dr.labels == page.labels  # DR is the same incident: the same alert
    assert "delivered there" in dict(in_dr.annotations)["description"]


def test_the_outage_is_posted_again_when_dr_begins_not_as_its_clock_ticks() -> None:
    book = PageBook(resend=60.0)
    (first,) = book.due(pages_for(on_power("outage", "outage: on battery for 31 s"), {}),
                        1000.0)
    book.delivered([first], 1000.0)
    # The policy's reason changes every cycle (its clock); the alert's words do not.
    assert book.due(pages_for(on_power("outage", "outage: on battery for 40 s"), {}),
                    1009.0) == []
    (dr,) = book.due(pages_for(on_power("dr", "desks dark: ups-a LB"), {}), 1010.0)
    assert dr.starts_at == 1000.0 and dr.labels == first.labels
    book.delivered([dr], 1010.0)
    assert book.due(pages_for(on_power("dr", "dr: on battery for 5 m"), {}), 1020.0) == []
    # Mains stable for the hold-down: the policy is back to normal, the page resolved,
    # ending a little later so the DR alert Prometheus still fires stays held back.
    (resolved,) = book.due(pages_for(on_power("normal"), {}), 1400.0)
    assert resolved.labels == first.labels and resolved.ends_at == 1400.0 + OUTAGE_LINGER
    assert resolved.document()["endsAt"] == "1970-01-01T00:25:20Z"
    book.delivered([resolved], 1400.0)
    assert book.due(pages_for(on_power("normal"), {}), 1401.0) == []


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


def moved(applied: str, *, decided: str | None = None, forced: str | None = None,
          held: bool = True) -> Snapshot:
    """The site with group internet on ``applied`` (the policy chose ``decided``) and,
    with ``forced``, an operator's route override onto that link (``held``: applied)."""
    base = site(HealthState.UP, HealthState.UP, HealthState.UP)
    group = GroupSnap("internet", 100, "default", ("a", "b", "c"), (applied,),
                      (decided or applied,), "", None)
    overrides = () if forced is None else (OverrideSnap(
        "route", "internet", forced, "carrier works on a", "alice", 50.0, 9000.0, held,
        None if held else f"{forced} is down"),)
    return Snapshot(site=base.site, version=base.version, dry_run=False, taken_at=0.0,
                    uptime=0.0, links=base.links, groups=(group,), overrides=overrides)


def failed_over(book: PageBook, *snaps: Snapshot) -> list[tuple[str, str]]:
    """Each snapshot noted in turn; the (from, to) of every ticket raised on the way."""
    tickets = []
    for t, snap_ in enumerate(snaps):
        book.note_groups(snap_, 100.0 + t)
        for _, (old, new, at) in book.failovers.items():
            if at == 100.0 + t:
                tickets.append((old, new))
    return tickets


def test_no_ticket_for_a_move_the_operator_forced_nor_for_the_move_back() -> None:
    book = PageBook()
    assert failed_over(book, moved("a"), moved("b", forced="b"), moved("b", forced="b"),
                       moved("a")) == []
    assert pages_for(moved("a"), book.failovers) == []
    # Still a ticket for a failover after the drill: the operator's mark does not linger.
    assert failed_over(book, moved("c")) == [("a", "c")]


def test_the_move_back_after_a_lift_is_the_operators_also_when_the_kernel_lags() -> None:
    book = PageBook()
    assert failed_over(book, moved("a"), moved("b", decided="b", forced="b"),
                       moved("b", decided="a"), moved("b", decided="a"), moved("a")) == []


def test_a_lift_the_policy_agrees_with_leaves_later_failovers_ticketed() -> None:
    book = PageBook()
    # Forced to b; lifted while a is down, so the policy keeps b: nothing moved then.
    assert failed_over(book, moved("a"), moved("b", forced="b"), moved("b")) == []
    assert book.released == {}
    # Later b fails and lifeline moves the group: that is a failover.
    assert failed_over(book, moved("c")) == [("b", "c")]


def test_the_forced_link_failing_is_a_failover_not_a_lift() -> None:
    book = PageBook()
    # b forced; b goes down, the override is held but not applied, lifeline moves to a.
    assert failed_over(book, moved("a"), moved("b", forced="b"),
                       moved("a", forced="b", held=False)) == [("b", "a")]


@given(st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from("abc")), max_size=30))
def test_without_overrides_every_change_of_link_is_a_ticket(
        steps: list[tuple[str, str]]) -> None:
    """The operator's exceptions take nothing away from a site nobody overrode: each
    change of the kernel's link is a ticket, whatever the policy decided meanwhile."""
    snaps = [moved(applied, decided=decided) for applied, decided in steps]
    changes = [(old[0], new[0]) for old, new in itertools.pairwise(steps)
               if old[0] != new[0]]
    assert failed_over(PageBook(), *snaps) == changes


def test_moves_the_override_did_not_make_are_still_tickets() -> None:
    book = PageBook()
    # Held but not applied (its link is down): the policy's move is a failover.
    assert failed_over(book, moved("a"), moved("c", forced="b", held=False)) == [("a", "c")]
    # An override onto b in force, the group on another link: lifeline's own move.
    book = PageBook()
    assert failed_over(book, moved("b", forced="b"), moved("c", forced="b")) == [("b", "c")]


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
