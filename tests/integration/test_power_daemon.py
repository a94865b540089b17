"""The daemon's power runtime against the real upsd with NUT's dummy-ups driver on
127.0.0.1 (tests/lab/nut.py): logged in with a password from a file, the UPS goes OL ->
OB -> OB LB and the DID range with a DR destination moves to it for power (status, the DID
API's document, metrics), then OL brings it back after the hold-down. A second site has
two UPSes, that upsd's and an SNMPv3 card (snmpsim, tests/lab/snmpups.py, keys from
files): the card alone running low moves the site, as the worst known UPS decides. The
daemon runs in-process on the unit tests' kernel in memory (no route is touched); upsd and
snmpsim are the peers."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import pytest
from prometheus_client import generate_latest

from controller.actuators.netlink import Netlink
from controller.config import parse_config
from controller.core.snapshot import Snapshot
from controller.runtime.daemon import Daemon
from controller.runtime.journal import read_events
from exporters.metrics import CATALOG, POWER_WHEN, registry_for
from exporters.status import did_document
from tests.lab.nut import Upsd, nut_skip_reason
from tests.lab.snmpups import BATTERY_LOW, MAINS, V3_AUTH_KEY, V3_PRIV_KEY, V3_USER, snmp_ups
from tests.unit.daemonloop import looping
from tests.unit.test_calm_start import A_RANGE
from tests.unit.test_calm_start import _config as _telephony_config
from tests.unit.test_runtime import _kernel

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(nut_skip_reason() is not None, reason=str(nut_skip_reason())),
]

PASSWORD = "lab-secret"


@pytest.fixture
def upsd(tmp_path: Path) -> Iterator[Upsd]:
    users = {"monitor": (PASSWORD, "upsmon secondary")}
    with Upsd(tmp_path / "nut", users=users).running() as server:
        yield server


async def _until(daemon: Daemon, what: str, ok: Callable[[Snapshot], bool],
                 within: float) -> float:
    start = time.monotonic()
    while True:
        snap = daemon.latest
        if snap is not None and ok(snap):
            return time.monotonic() - start
        assert time.monotonic() - start < within, f"not within {within} s: {what}"
        await asyncio.sleep(0.1)


def _daemon(tmp_path: Path, power: str) -> Daemon:
    """The telephony site of the unit tests plus ``power`` (YAML), on the kernel in memory;
    no probe starts until the test starts the power runtime's own."""
    path = tmp_path / "lifeline.yaml"
    path.write_text(_telephony_config(tmp_path / "state") + power)
    adapter = cast(Callable[[str | None], Netlink], _kernel().adapter)
    return Daemon(parse_config(path.read_text()), netlink=adapter, start_probes=False,
                  config_path=path)


def _on_dr(s: Snapshot) -> dict[str, str | None]:
    if s.plan is None:
        return {}
    return {str(d.numbers): d.dr_cause for d in s.plan.decisions if d.on_dr}


async def test_a_power_cut_on_a_real_upsd_moves_the_dr_ranges_and_back(
        upsd: Upsd, tmp_path: Path) -> None:
    secret = tmp_path / "nut-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    power = f"""
power:
  grace: 1s
  hold_down: 3s
  runtime_margin: 60s
  ups:
    - {{name: rack-ups, nut: {{host: 127.0.0.1, port: {upsd.port}, ups: {upsd.ups},
       username: monitor, password_file: {secret}}}, interval: 500ms, timeout: 500ms,
       stale_after: null}}
"""
    daemon = _daemon(tmp_path, power)
    async with looping(daemon):
        assert daemon.power is not None
        daemon.power.start()  # only the UPS is read: no link or SIP probe leaves the host
        await _until(daemon, "mains read from upsd", lambda s: s.power is not None
                     and s.power.state == "mains", 10.0)
        upsd.set(status="OB DISCHRG", charge=80, runtime=1200, input_voltage=0)
        await _until(daemon, "the outage", lambda s: s.power is not None
                     and s.power.outage, 15.0)
        assert _on_dr(daemon.latest) == {}  # type: ignore[arg-type]
        upsd.set(status="OB LB DISCHRG", charge=10, runtime=45)
        await _until(daemon, "DR for power", lambda s: _on_dr(s) == {A_RANGE: "power"},
                     15.0)
        doc = daemon.status()
        assert doc["power"]["phase"] == "dr"
        [rack] = doc["power"]["ups"]
        assert rack["flags"] == ["DISCHRG", "LB", "OB"] and rack["runtime"] == 45
        assert rack["read_ok"] is True
        assert doc["dids"]["on_dr"][0]["cause"] == "power"
        number = did_document(daemon.latest, "+390212345650")  # type: ignore[arg-type]
        assert number is not None and number["disaster_recovery"]
        assert number["dr_cause"] == "power" and "site in DR (power)" in number["reason"]
        scraped = generate_latest(registry_for(lambda: daemon.latest)).decode()
        assert 'lifeline_ups_status{flag="LB",ups="rack-ups"} 1.0' in scraped
        assert 'lifeline_dids_on_dr_by_cause{cause="power"} 100.0' in scraped
        for m in CATALOG:  # every power series is served by a daemon that reads a UPS
            if m.when in POWER_WHEN or m.name == "lifeline_dids_on_dr_by_cause":
                assert f"\n{m.name}{{" in scraped or f"\n{m.name} " in scraped, m.name
        upsd.set(status="OL CHRG", charge=12, runtime=60, input_voltage=230)
        back = await _until(daemon, "DIDs back", lambda s: _on_dr(s) == {}, 20.0)
        assert back >= 2.5, back  # not before the hold-down (3 s)
    moves = [e.message.split(":")[0]
             for e in read_events(daemon.journal.path, 500, "transition", "rack-ups")]
    assert moves == ["unknown -> mains", "mains -> on_battery", "on_battery -> battery_low",
                     "battery_low -> mains"]


def _secret(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


@pytest.mark.skipif(importlib.util.find_spec("snmpsim") is None,
                    reason="the SNMP lab needs snmpsim (PyPI snmpsim 1.2)")
async def test_two_upses_the_snmp_card_running_low_alone_moves_the_site(
        upsd: Upsd, tmp_path: Path) -> None:
    nut_secret = _secret(tmp_path / "nut-password", PASSWORD)
    auth = _secret(tmp_path / "snmp-auth", V3_AUTH_KEY)
    priv = _secret(tmp_path / "snmp-priv", V3_PRIV_KEY)
    with snmp_ups(tmp_path / "snmpsim", MAINS) as card:
        power = f"""
power:
  grace: 1s
  hold_down: 2s
  runtime_margin: 5m
  ups:
    - {{name: rack-nut, nut: {{host: 127.0.0.1, port: {upsd.port}, ups: {upsd.ups},
       username: monitor, password_file: {nut_secret}}}, interval: 500ms, timeout: 500ms}}
    - {{name: rack-snmp, snmp: {{host: 127.0.0.1, port: {card.port},
       v3: {{user: {V3_USER}, auth_protocol: sha, auth_key_file: {auth},
             priv_protocol: aes, priv_key_file: {priv}}}}}, interval: 500ms, timeout: 500ms}}
"""
        daemon = _daemon(tmp_path, power)
        async with looping(daemon):
            assert daemon.power is not None
            daemon.power.start()
            await _until(daemon, "both UPSes on mains", lambda s: s.power is not None
                         and s.power.state == "mains"
                         and all(u.state == "mains" for u in s.power.upses), 15.0)
            card.set(BATTERY_LOW)  # the card's UPS: on battery, low, 3 minutes left
            await _until(daemon, "DR for power", lambda s: _on_dr(s) == {A_RANGE: "power"},
                         15.0)
            doc = daemon.status()
            ups = {u["name"]: u for u in doc["power"]["ups"]}
            assert doc["power"]["state"] == "battery_low", doc["power"]
            assert ups["rack-nut"]["state"] == "mains", ups  # the other rack is fine
            assert ups["rack-snmp"]["state"] == "battery_low", ups
            assert "LB" in ups["rack-snmp"]["flags"] and ups["rack-snmp"]["runtime"] == 180
            scraped = generate_latest(registry_for(lambda: daemon.latest)).decode()
            assert 'lifeline_ups_status{flag="OB",ups="rack-snmp"} 1.0' in scraped
            assert 'lifeline_ups_status{flag="OL",ups="rack-nut"} 1.0' in scraped
            assert 'lifeline_site_power_state{state="battery_low"} 1.0' in scraped
            card.set(MAINS)
            back = await _until(daemon, "DIDs back", lambda s: _on_dr(s) == {}, 20.0)
            assert back >= 1.5, back  # not before the hold-down (2 s)
    moves = [e.message.split(":")[0]
             for e in read_events(daemon.journal.path, 500, "transition", "rack-snmp")]
    assert moves == ["unknown -> mains", "mains -> battery_low", "battery_low -> mains"], moves
