"""The power runtime (controller.runtime.power) in the daemon's real loop: fake UPS readers
on the fast clock, a kernel in memory, the trunks and DIDs of test_calm_start. What the
operator would see: the outage after the grace time, the DID ranges with a DR destination
moved on LB and back after the hold-down, a UPS that cannot be read unknown (never mains),
the on_battery_low command run once, and all of it in status, journal and metrics."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import cast

import pytest
from prometheus_client import generate_latest

from controller.actuators.netlink import Netlink
from controller.config import parse_config
from controller.config.power import UpsConfig
from controller.core.snapshot import Snapshot
from controller.runtime.daemon import Daemon
from controller.runtime.journal import Journal, read_events
from controller.runtime.power import PowerWatch, Reader, ReaderFactory, UpsReader
from exporters.metrics import registry_for
from exporters.statusview import render_status
from probes.ups import UpsReading
from tests.unit.daemonloop import looping
from tests.unit.test_calm_start import A_RANGE, B_RANGE
from tests.unit.test_calm_start import _config as _telephony_config
from tests.unit.test_runtime import ALIVE, _kernel, fast_clock
from tests.unit.test_telephony import OK

POWER = """
power:
  grace: 5s
  hold_down: 10s
  runtime_margin: 60s
  ups:
    - {name: ups-a, nut: {host: 127.0.0.1, ups: ups1}, interval: 1s, timeout: 500ms,
       stale_after: null}
"""


def _reading(*flags: str, runtime: float = 900.0) -> UpsReading:
    return UpsReading(ok=True, flags=frozenset(flags), charge=0.8, runtime=runtime,
                      input_voltage=0.0 if "OB" in flags else 230.0, load=0.3)


MAINS = _reading("OL", "CHRG")
BATTERY = _reading("OB", "DISCHRG")
LOW = _reading("OB", "LB", "DISCHRG", runtime=40.0)


class FakeUps:
    """What the UPS says now; ``fail`` makes each read raise, ``hang`` never answer."""

    def __init__(self) -> None:
        self.now = MAINS
        self.fail = False
        self.hang = False
        self.reads = 0

    async def read(self, timeout: float) -> UpsReading:
        self.reads += 1
        if self.fail:
            raise RuntimeError("driver exploded")
        if self.hang:
            await asyncio.sleep(3600)
        return self.now


def readers_of(readers: dict[str, Reader]) -> ReaderFactory:
    """A reader factory over plain functions by UPS name: no secrets, no sockets."""
    class Fake(UpsReader):
        def __init__(self, cfg: UpsConfig) -> None:
            self.cfg = cfg
            self._snmp = None
            self._problem = None

        async def read(self, timeout: float) -> UpsReading:
            return await readers[self.cfg.name](timeout)

    return Fake


@contextlib.asynccontextmanager
async def site(tmp_path: Path, ups: FakeUps, extra: str = "") -> AsyncIterator[Daemon]:
    """The real loop with trunks, DIDs and one UPS read by ``ups``; the links and every SIP
    peer answer (fed by a task of the test), so only power moves anything."""
    path = tmp_path / "lifeline.yaml"
    path.write_text(_telephony_config(tmp_path / "state") + POWER + extra)
    kernel = _kernel()
    adapter = cast(Callable[[str | None], Netlink], kernel.adapter)
    readers: dict[str, Reader] = {"ups-a": ups.read}
    daemon = Daemon(parse_config(path.read_text()), netlink=adapter, start_probes=False,
                    config_path=path, ups_reader=readers_of(readers))
    async with looping(daemon):
        assert daemon.power is not None
        daemon.power.start()  # no probes started by the daemon: the test starts the UPS's
        feeder = asyncio.create_task(_answer(daemon))
        try:
            await until(daemon, "the first plan", lambda s: s.plan is not None
                        and s.power is not None and s.power.state == "mains")
            yield daemon
        finally:
            feeder.cancel()
            await asyncio.gather(feeder, return_exceptions=True)


async def _answer(daemon: Daemon) -> None:
    loop = asyncio.get_running_loop()
    tel = daemon.telephony
    assert tel is not None
    while True:
        now = loop.time()
        for name, rt in daemon.routing.links.items():
            daemon.routing.on_round(name, now, [ALIVE] * len(rt.specs))
        for kind, peers in (("trunk", tel.trunks), ("destination", tel.destinations)):
            for peer in peers.values():
                tel.on_result(kind, peer, now, OK)
        await asyncio.sleep(0.2)


async def until(daemon: Daemon, what: str, ok: Callable[[Snapshot], bool],
                within: float = 60.0) -> float:
    """Loop seconds until the published snapshot satisfies ``ok``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        snap = daemon.latest
        if snap is not None and ok(snap):
            return loop.time() - start
        assert loop.time() - start < within, f"not within {within} s: {what}"
        await asyncio.sleep(0.1)


def _on_dr(s: Snapshot) -> dict[str, str | None]:
    assert s.plan is not None
    return {str(d.numbers): d.dr_cause for d in s.plan.decisions if d.on_dr}


@fast_clock
async def test_an_outage_pages_after_grace_lb_moves_dids_and_mains_brings_them_back(
        tmp_path: Path) -> None:
    ups = FakeUps()
    async with site(tmp_path, ups) as daemon:
        ups.now = BATTERY
        await until(daemon, "on battery", lambda s: s.power is not None
                    and s.power.phase == "battery")
        assert daemon.latest is not None and not daemon.latest.power.outage  # type: ignore[union-attr]
        took = await until(daemon, "the outage", lambda s: s.power is not None
                           and s.power.outage)
        assert 3.0 <= took <= 7.0, took  # the grace time (5 s), give or take a read
        assert _on_dr(daemon.latest) == {}
        ups.now = LOW
        await until(daemon, "DR", lambda s: _on_dr(s) == {A_RANGE: "power"}, within=5.0)
        doc = daemon.status()
        assert doc["power"]["phase"] == "dr" and doc["power"]["dr"]
        assert doc["power"]["ups"][0]["flags"] == ["DISCHRG", "LB", "OB"]
        assert [d["cause"] for d in doc["dids"]["on_dr"]] == ["power"]
        assert "site in DR (power)" in doc["dids"]["on_dr"][0]["reason"]
        text = render_status(doc)
        assert "power: battery_low, DR" in text and "ups ups-a (nut): battery_low" in text
        scraped = generate_latest(registry_for(lambda: daemon.latest)).decode()
        assert 'lifeline_ups_status{flag="LB",ups="ups-a"} 1.0' in scraped
        assert 'lifeline_ups_status{flag="OL",ups="ups-a"} 0.0' in scraped
        assert "lifeline_power_outage 1.0" in scraped
        assert 'lifeline_site_power_state{state="battery_low"} 1.0' in scraped
        assert 'lifeline_dids_on_dr_by_cause{cause="power"} 100.0' in scraped
        # Every cause is a series from the first plan on, 0 when none: rate() and alerts
        # see a drop to 0, not a series that vanished.
        for cause in ("destination_down", "pin", "service"):
            assert f'lifeline_dids_on_dr_by_cause{{cause="{cause}"}} 0.0' in scraped, cause
        assert 'lifeline_ups_battery_runtime_seconds{ups="ups-a"} 40.0' in scraped
        assert 'lifeline_ups_up{ups="ups-a"} 1.0' in scraped
        assert 'lifeline_ups_state{state="battery_low",ups="ups-a"} 1.0' in scraped
        assert 'lifeline_ups_state{state="mains",ups="ups-a"} 0.0' in scraped
        assert 'lifeline_dids_on_dr_by_cause{cause="service"} 0.0' in scraped
        ups.now = MAINS
        await until(daemon, "mains seen", lambda s: s.power is not None
                    and s.power.state == "mains")
        assert _on_dr(daemon.latest) == {A_RANGE: "power"}
        back = await until(daemon, "DIDs back", lambda s: _on_dr(s) == {})
        assert 8.0 <= back <= 13.0, back  # the hold-down (10 s)
        assert daemon.status()["power"]["phase"] == "normal"
    journal = daemon.journal.path
    ups_moves = [e.message for e in read_events(journal, 500, "transition", "ups-a")]
    assert [m.split(":")[0] for m in ups_moves] == [
        "unknown -> mains", "mains -> on_battery", "on_battery -> battery_low",
        "battery_low -> mains"]
    phases = [e.data["phase"] for e in read_events(journal, 500, "decision", "power")]
    assert phases[:3] == ["battery", "outage", "dr"] and phases[-1] == "normal"
    moved = [e for e in read_events(journal, 500, "decision", "dids")
             if A_RANGE in e.message]
    assert any("site in DR (power)" in e.message for e in moved)
    # The range without a DR destination says why it stays (the site is in DR).
    kept = [e.message for e in read_events(journal, 500, "decision", "dids")
            if B_RANGE in e.message]
    assert all(e.data.get("on_dr") is False for e in read_events(journal, 500, "decision",
                                                                 "dids")
               if B_RANGE in e.message), kept


@fast_clock
async def test_a_reader_that_raises_or_hangs_makes_the_ups_unknown_never_mains(
        tmp_path: Path) -> None:
    ups = FakeUps()
    async with site(tmp_path, ups) as daemon:
        ups.fail = True
        await until(daemon, "unknown", lambda s: s.power is not None
                    and s.power.upses[0].state == "unknown", within=6.0)
        snap = daemon.latest
        assert snap is not None and snap.power is not None
        ups_snap = snap.power.upses[0]
        assert ups_snap.read_ok is False and "driver exploded" in ups_snap.read_detail
        assert "3 reads failed" in ups_snap.reason
        assert snap.power.state == "unknown"
        scraped = generate_latest(registry_for(lambda: daemon.latest)).decode()
        assert 'lifeline_ups_up{ups="ups-a"} 0.0' in scraped
        assert 'lifeline_ups_state{state="unknown",ups="ups-a"} 1.0' in scraped
        assert 'lifeline_site_power_state{state="mains"} 0.0' in scraped
        assert "lifeline_ups_battery_runtime_seconds{" not in scraped  # unknown: no figure
        ups.fail = False
        await until(daemon, "mains again", lambda s: s.power is not None
                    and s.power.state == "mains")
        ups.hang = True
        reads = ups.reads
        await until(daemon, "unknown on timeouts", lambda s: s.power is not None
                    and s.power.upses[0].state == "unknown", within=10.0)
        assert ups.reads > reads
        snap = daemon.latest
        assert snap is not None and snap.power is not None
        assert "timeout" in snap.power.upses[0].reason
        assert _on_dr(snap) == {}  # unknown is no battery event


@fast_clock
async def test_a_reload_that_removes_the_power_section_stops_the_polling(
        tmp_path: Path) -> None:
    ups = FakeUps()
    async with site(tmp_path, ups) as daemon:
        watch = daemon.power
        assert watch is not None
        task = watch.watched["ups-a"].task
        assert task is not None and not task.done()
        assert daemon.config_path is not None
        daemon.config_path.write_text(_telephony_config(tmp_path / "state"))
        daemon.request_reload()
        await until(daemon, "power gone", lambda s: s.power is None, within=5.0)
        assert task.done() and daemon.status()["power"] is None
        reads = ups.reads
        await asyncio.sleep(5)
        assert ups.reads == reads


@fast_clock
async def test_a_reload_that_changes_a_ups_restarts_its_polling_and_keeps_the_event(
        tmp_path: Path) -> None:
    ups = FakeUps()
    async with site(tmp_path, ups) as daemon:
        watch = daemon.power
        assert watch is not None and daemon.config_path is not None
        ups.now = BATTERY
        await until(daemon, "the outage", lambda s: s.power is not None and s.power.outage)
        old = watch.watched["ups-a"].task
        text = daemon.config_path.read_text().replace("interval: 1s", "interval: 2s")
        daemon.config_path.write_text(text)
        daemon.request_reload()
        await until(daemon, "the new interval", lambda s: watch.watched["ups-a"].cfg.interval
                    == 2.0, within=5.0)
        assert old is not None and old.done()
        new = watch.watched["ups-a"].task
        assert new is not None and not new.done()
        await until(daemon, "read again", lambda s: s.power is not None
                    and s.power.upses[0].state == "on_battery", within=5.0)
        assert daemon.latest is not None and daemon.latest.power is not None
        assert daemon.latest.power.outage  # the battery event went on across the reload
    reloads = read_events(daemon.journal.path, 100, "action", "config")
    assert "UPS ups-a changed" in reloads[-1].message


async def _command_run(tmp_path: Path) -> tuple[list[str], Path]:
    marker = tmp_path / "ran"
    script = (f"open({str(marker)!r}, 'a').write('x'); print('shutting down the desks'); "
              "raise SystemExit(3)")
    cfg = parse_config(_telephony_config(tmp_path / "state") + POWER
                       + f"  on_battery_low: [{sys.executable}, -c, \"{script}\"]\n")
    assert cfg.power is not None
    journal = Journal(tmp_path / "j.sqlite3")
    loop = asyncio.get_running_loop()
    watch = PowerWatch(cfg.power, journal, loop.time,
                       reader=readers_of({"ups-a": FakeUps().read}))
    try:
        for reading in (MAINS, BATTERY, LOW, LOW, LOW):
            watch.on_reading("ups-a", reading)
            watch.decide(loop.time())
            await asyncio.sleep(0.05)
        assert watch.command_task is not None
        await asyncio.wait_for(watch.command_task, 30)
        for _ in range(3):  # still low: the command is not run again
            watch.on_reading("ups-a", LOW)
            watch.decide(loop.time())
    finally:
        await watch.stop()
        journal.close()
    return [e.message for e in read_events(tmp_path / "j.sqlite3", 100)
            if e.subject == "power" and e.kind in ("action", "error")], marker


def test_the_on_battery_low_command_runs_once_and_its_outcome_is_journaled(
        tmp_path: Path) -> None:
    """A real subprocess (argv, no shell), on a real loop: the fast clock would time it out."""
    messages, marker = asyncio.run(_command_run(tmp_path))
    assert marker.read_text() == "x"
    assert messages[0].startswith("running on_battery_low: ")
    assert messages[1] == "on_battery_low exited 3: shutting down the desks"
    assert len(messages) == 2


def test_status_text_without_power_says_nothing_of_it() -> None:
    doc = {"site": "s", "version": "1", "dry_run": False, "uptime": 1.0, "links": [],
           "groups": [], "failovers": 0, "reconcile_errors": 0, "problems": [],
           "journal": {}, "config": {}, "overrides": [], "power": None}
    assert "power" not in render_status(doc)




def test_a_dry_run_journals_the_command_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    cfg = parse_config(_telephony_config(tmp_path / "state") + POWER
                       + f"  on_battery_low: [/usr/bin/touch, {marker}]\n")
    assert cfg.power is not None
    journal = Journal(tmp_path / "j.sqlite3")
    watch = PowerWatch(cfg.power, journal, lambda: 0.0, dry_run=True,
                       reader=readers_of({"ups-a": FakeUps().read}))
    for reading in (MAINS, LOW):
        watch.on_reading("ups-a", reading)
        decision = watch.decide(1.0)
    journal.close()
    assert decision.run_command and watch.command_task is None and not marker.exists()
    [event] = read_events(tmp_path / "j.sqlite3", 100, "action", "power")
    assert event.message == f"dry run: would run on_battery_low: /usr/bin/touch {marker}"


def test_a_runtime_below_the_margin_wakes_the_daemon_though_no_ups_changed_state(
        tmp_path: Path) -> None:
    """LB wakes the cycle through the UPS's state change; the runtime crossing the margin
    changes no state, and once waited for the next cycle (up to reconcile_interval)."""
    cfg = parse_config(_telephony_config(tmp_path / "state") + POWER)
    assert cfg.power is not None
    journal = Journal(tmp_path / "j.sqlite3")
    woken: list[str] = []
    watch = PowerWatch(cfg.power, journal, lambda: 0.0, wake=lambda: woken.append("wake"),
                       reader=readers_of({"ups-a": FakeUps().read}))
    try:
        for reading, wakes in ((MAINS, 1), (BATTERY, 1), (BATTERY, 0),
                               (_reading("OB", "DISCHRG", runtime=30.0), 1)):
            before = len(woken)
            watch.on_reading("ups-a", reading)
            assert len(woken) - before == wakes, reading
            watch.decide(0.0)
        assert watch.decision is not None and watch.decision.dr
        watch.on_reading("ups-a", _reading("OB", "DISCHRG", runtime=25.0))
        assert len(woken) == 3  # already in DR: nothing to hurry
    finally:
        journal.close()


def _ups(tmp_path: Path, source: str) -> UpsConfig:
    cfg = parse_config(_telephony_config(tmp_path / "state") + f"""
power:
  ups:
    - {{name: ups-a, {source}}}
""")
    assert cfg.power is not None
    return cfg.power.ups[0]


async def test_a_secret_that_cannot_be_read_is_a_failed_reading_not_a_crash(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIFELINE_TEST_NUT_PW", raising=False)
    nut = UpsReader(_ups(tmp_path, "nut: {host: 127.0.0.1, ups: u, username: m, "
                                   "password_env: LIFELINE_TEST_NUT_PW}"))
    reading = await nut.read(0.5)
    assert not reading.ok and "LIFELINE_TEST_NUT_PW is not set" in reading.detail
    snmp = UpsReader(_ups(tmp_path, f"snmp: {{host: 127.0.0.1, community_file: "
                                    f"{tmp_path / 'missing'}}}"))
    reading = await snmp.read(0.5)
    assert not reading.ok and "missing" in reading.detail
    (tmp_path / "community").write_text("public\n")
    ok = UpsReader(_ups(tmp_path, f"snmp: {{host: 127.0.0.1, community_file: "
                                  f"{tmp_path / 'community'}}}"))
    assert ok._problem is None and ok._snmp is not None
    await ok.aclose()
