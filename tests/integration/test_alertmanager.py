"""The example Alertmanager config in a real Alertmanager (Debian prometheus-alertmanager):
the alerts of a whole-site outage make one page, the consequences are inhibited while the
outage lasts and delivered once it ends if they still fire, and another site's ticket goes
through untouched. Alerts are posted to Alertmanager's v2 API as Prometheus would; the
receivers are a webhook this test runs on loopback. The config is the shipped one with only
the receivers' URLs and the group timings shortened (the timings' design is checked in
tests/unit/test_alertmanager_config.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from tests.lab.monitoring import shipped_alertmanager
from tests.unit.test_alert_rules import _alerts

BINARY = shutil.which("prometheus-alertmanager")

pytestmark = pytest.mark.skipif(
    BINARY is None, reason="needs prometheus-alertmanager (Debian package)")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """The webhook both receivers post to: every notification, by receiver."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.got.append(await request.json())
        return web.Response(text="ok")

    def names(self, receiver: str, status: str = "firing") -> list[list[str]]:
        """Per notification to ``receiver``: the names of its alerts with ``status``."""
        return [sorted(a["labels"]["alertname"] for a in n["alerts"] if a["status"] == status)
                for n in self.got if n["receiver"] == receiver]


@pytest.fixture
async def alertmanager(tmp_path: Path) -> AsyncIterator[tuple[str, Receiver]]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/{name}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    hook_port = _port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()
    config = tmp_path / "alertmanager.yml"
    config.write_text(yaml.safe_dump(shipped_alertmanager(f"http://127.0.0.1:{hook_port}")))
    port = _port()
    assert BINARY is not None
    with (tmp_path / "am.log").open("w") as log:
        # No cluster listener: a lone Alertmanager needs no gossip port.
        proc = subprocess.Popen(
            [BINARY, f"--config.file={config}", f"--storage.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
            stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(100):  # bounded: up to 10 s
                try:
                    async with session.get(f"{url}/-/ready") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise RuntimeError("alertmanager not ready: " + (tmp_path / "am.log").read_text())
        yield url, receiver
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        await runner.cleanup()


def _alert(name: str, site: str, *, ended: bool = False, **labels: str) -> dict[str, Any]:
    rule = next(r for r in _alerts() if r["alert"] == name)
    now = dt.datetime.now(dt.UTC)
    doc: dict[str, Any] = {
        "labels": {"alertname": name, "site": site, "job": "lifeline", **rule["labels"],
                   **labels},
        "annotations": {"summary": f"{name} at {site}"},
        "startsAt": (now - dt.timedelta(minutes=5)).isoformat(),
    }
    if ended:
        doc["endsAt"] = now.isoformat()
    return doc


async def _post(url: str, alerts: list[dict[str, Any]]) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            f"{url}/api/v2/alerts", json=alerts) as resp:
        assert resp.status == 200, await resp.text()


async def _held(url: str, alertname: str) -> None:
    """Wait (bounded) until Alertmanager's API lists ``alertname``, then a moment more for
    its inhibitor, which reads the same alerts through its own subscription."""
    async with aiohttp.ClientSession() as session:
        for _ in range(50):  # bounded: up to 5 s
            async with session.get(f"{url}/api/v2/alerts") as resp:
                held = await resp.json()
            if any(a["labels"].get("alertname") == alertname for a in held):
                await asyncio.sleep(0.5)
                return
            await asyncio.sleep(0.1)
    raise AssertionError(f"Alertmanager never held {alertname}")


async def _until(check: Any, seconds: float) -> None:
    for _ in range(int(seconds * 10)):  # bounded
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("not within the time")


async def test_a_site_cut_off_is_one_page(alertmanager: tuple[str, Receiver]) -> None:
    url, rx = alertmanager
    outage = [
        _alert("LifelineAllUplinksDown", "rome"),
        _alert("LifelineLinkDown", "rome", link="fibre-a", state="down"),
        _alert("LifelineLinkDown", "rome", link="lte", state="down"),
        _alert("LifelineTrunkDown", "rome", trunk="carrier-a-sbc1", state="down"),
        _alert("LifelineDidsUnroutable", "rome"),
        _alert("LifelineOnBackupLink", "rome", group="internet"),
        _alert("LifelineLinkDown", "milano", link="fibre-a", state="down"),
    ]
    # The source first, as its shorter `for:` makes it arrive in production, and only once
    # Alertmanager holds it: a freshly started Alertmanager's inhibitor takes its alerts
    # in asynchronously, and an outage posted all at once in its first second was seen
    # (once in CI) to beat it there.
    await _post(url, outage[:1])
    await _held(url, "LifelineAllUplinksDown")
    await _post(url, outage[1:])
    await _until(lambda: rx.names("oncall") and rx.names("tickets"), 15)
    await asyncio.sleep(3)  # a second group round: nothing else may come
    assert rx.names("oncall") == [["LifelineAllUplinksDown"]]
    assert rx.names("tickets") == [["LifelineLinkDown"]]  # milano's, not rome's
    assert [n["groupLabels"] for n in rx.got if n["receiver"] == "tickets"] == [
        {"site": "milano", "alertname": "LifelineLinkDown"}]

    # The uplinks are back; the DIDs are still unroutable (a carrier fault): now they page.
    rx.got.clear()
    still = [a for a in outage if a["labels"]["alertname"] != "LifelineAllUplinksDown"
             and a["labels"]["site"] == "rome" and a["labels"]["scope"] == "dids"]
    await _post(url, [_alert("LifelineAllUplinksDown", "rome", ended=True), *still])
    await _until(lambda: any("LifelineDidsUnroutable" in n for n in rx.names("oncall")), 15)
    assert ["LifelineAllUplinksDown"] in rx.names("oncall", "resolved")


async def test_lifelines_copy_and_prometheus_copy_are_one_page(
        alertmanager: tuple[str, Receiver]) -> None:
    """The same alert posted by lifeline itself and by Prometheus (the rule's labels, plus
    nothing: the rule aggregates by site) is one alert in Alertmanager and one page."""
    from controller.core.health import HealthState
    from controller.core.pages import PageBook, pages_for
    from tests.unit.test_pages import site

    url, rx = alertmanager
    book = PageBook()
    (own,) = book.due(pages_for(site(HealthState.DOWN, HealthState.DOWN), {}), 1.0e9)
    rule = next(r for r in _alerts() if r["alert"] == "LifelineAllUplinksDown")
    prometheus_copy = {"labels": {"alertname": "LifelineAllUplinksDown", "site": "rome",
                                  **rule["labels"]},
                       "annotations": {"summary": "rome has no working uplink"},
                       "startsAt": dt.datetime.now(dt.UTC).isoformat()}
    own_doc = own.document()
    own_doc["startsAt"] = prometheus_copy["startsAt"]
    await _post(url, [own_doc])
    await _post(url, [prometheus_copy])
    await _until(lambda: rx.names("oncall"), 15)
    await asyncio.sleep(3)
    assert rx.names("oncall") == [["LifelineAllUplinksDown"]]
    async with aiohttp.ClientSession() as session, session.get(
            f"{url}/api/v2/alerts") as resp:
        held = await resp.json()
    assert len(held) == 1, held


def _by_site(name: str, site: str, *, ended: bool = False, **labels: str) -> dict[str, Any]:
    """An alert of a rule that aggregates by site (no job, no instance), as Prometheus
    sends it."""
    doc = _alert(name, site, ended=ended, **labels)
    del doc["labels"]["job"]
    return doc


def _pages_of(rx: Receiver, site: str, status: str = "firing") -> list[list[str]]:
    """Per on-call notification of ``site``'s group: its alerts with ``status``."""
    return [sorted(a["labels"]["alertname"] for a in n["alerts"] if a["status"] == status)
            for n in rx.got
            if n["receiver"] == "oncall" and n["groupLabels"].get("site") == site]


async def test_a_power_incident_is_one_page(alertmanager: tuple[str, Receiver]) -> None:
    """On battery past the grace, then the DIDs to DR for power, then mains back: rome's
    on-call gets the outage once (lifeline's copy and Prometheus' are one alert) and its
    resolution; the DR move, the PBX that died with mains, the UPS and service tickets are
    held back; a service still down after mains is back is ticketed then; milano's own DR
    incident still pages."""
    import time

    from controller.core.pages import PageBook, pages_for
    from tests.unit.test_pages import on_power

    url, rx = alertmanager
    book = PageBook()

    async def lifeline_posts(phase: str) -> None:
        posts = book.due(pages_for(on_power(phase), {}), time.time())
        assert posts, phase
        await _post(url, [p.document() for p in posts])
        book.delivered(posts, time.time())

    # The grace is over: lifeline posts its outage at once; Prometheus' copy and the
    # consequences come a scrape and an evaluation later (the PBX, not on the UPS, died
    # with mains and its DIDs went to DR; a UPS's network card is dark; the wiki is down).
    await lifeline_posts("outage")
    await _held(url, "LifelinePowerOutage")
    await _post(url, [
        _by_site("LifelinePowerOutage", "rome"),
        _by_site("LifelineDidsOnDr", "rome", cause="destination_down"),
        _alert("LifelineUpsUnknown", "rome", ups="ups-b", state="unknown"),
        _alert("LifelineServiceDown", "rome", service="wiki", state="down"),
        _by_site("LifelineDidsOnDr", "milano", cause="service"),
    ])
    await _until(lambda: _pages_of(rx, "rome") and _pages_of(rx, "milano"), 15)
    await asyncio.sleep(3)  # a second group round: nothing else may come
    assert _pages_of(rx, "rome") == [["LifelinePowerOutage"]]
    assert _pages_of(rx, "milano") == [["LifelineDidsOnDr"]]  # another site: its own page
    assert not [n for n in rx.got if n["receiver"] == "tickets"]

    # The batteries run low: every range goes to DR for power. lifeline re-posts its outage
    # with the DR words; Prometheus fires the DR alert. No new page.
    await lifeline_posts("dr")
    await _post(url, [_by_site("LifelineDidsOnDr", "rome", cause="power")])
    await asyncio.sleep(5)
    assert _pages_of(rx, "rome") == [["LifelinePowerOutage"]]
    async with aiohttp.ClientSession() as session, session.get(
            f"{url}/api/v2/alerts") as resp:
        held = [a for a in await resp.json() if a["labels"]["site"] == "rome"]
    outage = [a for a in held if a["labels"]["alertname"] == "LifelinePowerOutage"]
    assert len(outage) == 1, outage  # lifeline's copy and Prometheus' copy: one alert
    assert "delivered there" in outage[0]["annotations"]["description"]  # lifeline's newest
    others = [a for a in held if a["labels"]["alertname"] != "LifelinePowerOutage"]
    assert len(others) == 4 and all(
        a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"] for a in others)

    # Mains stable for the hold-down: lifeline ends its copy at once. Prometheus still
    # fires the DR alerts from its last scrape; the outage's linger keeps them held.
    await lifeline_posts("normal")
    await asyncio.sleep(5)
    assert _pages_of(rx, "rome") == [["LifelinePowerOutage"]]
    # Prometheus scrapes, evaluates, and ends its outage and the DR alerts together. The
    # UPS card is back; the wiki is still down: its ticket goes out now.
    await _post(url, [
        _by_site("LifelinePowerOutage", "rome", ended=True),
        _by_site("LifelineDidsOnDr", "rome", ended=True, cause="destination_down"),
        _by_site("LifelineDidsOnDr", "rome", ended=True, cause="power"),
        _alert("LifelineUpsUnknown", "rome", ended=True, ups="ups-b", state="unknown"),
    ])
    # The resolution lists the DR alerts too, as resolved: they were never sent firing.
    await _until(lambda: any("LifelinePowerOutage" in n
                             for n in _pages_of(rx, "rome", "resolved")), 15)
    await _until(lambda: rx.names("tickets"), 15)
    await asyncio.sleep(3)
    assert [p for p in _pages_of(rx, "rome") if p] == [["LifelinePowerOutage"]]
    assert rx.names("tickets") == [["LifelineServiceDown"]]


async def test_a_recordings_night_is_one_page_per_site(
        alertmanager: tuple[str, Receiver]) -> None:
    """rome's NAS unmounted, its md0 degraded and its disk near full: three pages in one
    on-call notification; its tickets (usb unreadable entries, no run on offsite) one
    ticket; milano's disk filling its own ticket. Then milano's lifeline stops answering:
    its recordings page, made of stale data, is held back behind LifelineDown."""
    url, rx = alertmanager
    await _post(url, [
        _alert("LifelineRecordingsUnavailable", "rome", check="available", subject="nas"),
        _alert("LifelineRecordingsRaidDegraded", "rome", check="raid", subject="md0"),
        _alert("LifelineRecordingsDiskFull", "rome", check="disk_days", subject="store"),
        _alert("LifelineRecordingsFinding", "rome", check="unreadable", subject="usb"),
        _alert("LifelineRecordingsFinding", "rome", check="freshness", subject="offsite"),
        _alert("LifelineRecordingsDiskFilling", "milano", check="disk_free", subject="store"),
    ])
    await _until(lambda: _pages_of(rx, "rome") and len(rx.names("tickets")) >= 2, 15)
    await asyncio.sleep(3)  # a second group round: nothing else may come
    assert _pages_of(rx, "rome") == [["LifelineRecordingsDiskFull",
                                      "LifelineRecordingsRaidDegraded",
                                      "LifelineRecordingsUnavailable"]]
    tickets = sorted((n["groupLabels"]["site"], len(n["alerts"])) for n in rx.got
                     if n["receiver"] == "tickets")
    assert tickets == [("milano", 1), ("rome", 2)]

    rx.got.clear()
    await _post(url, [_alert("LifelineDown", "milano", instance="milano-gw:9730")])
    await _held(url, "LifelineDown")
    await _post(url, [_alert("LifelineRecordingsCorrupt", "milano", check="corrupt",
                             subject="nas")])
    await _until(lambda: _pages_of(rx, "milano"), 15)
    await asyncio.sleep(3)
    assert _pages_of(rx, "milano") == [["LifelineDown"]]
