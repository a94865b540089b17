"""The example Alertmanager config (grafana/alertmanager/alertmanager.yml) as amtool reads it:
valid, every alert of the rules routed to the right receiver, and inhibitions whose sources
can arrive in time (a source's `for:` no longer than its targets')."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_alert_rules import _alerts

REPO = Path(__file__).resolve().parents[2]
AM_CONFIG = REPO / "grafana" / "alertmanager" / "alertmanager.yml"
AMTOOL = shutil.which("amtool")

needs_amtool = pytest.mark.skipif(
    AMTOOL is None, reason="needs amtool (Debian package prometheus-alertmanager)")


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert AMTOOL is not None
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=60,
                          check=False)


@needs_amtool
def test_amtool_checks_the_config() -> None:
    done = _amtool("check-config", str(AM_CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


@needs_amtool
@pytest.mark.parametrize("rule", _alerts(), ids=lambda r: str(r["alert"]))
def test_each_alert_reaches_its_receiver(rule: dict[str, Any]) -> None:
    labels = {**rule["labels"], "alertname": rule["alert"], "site": "rome"}
    want = "oncall" if labels["severity"] == "page" else "tickets"
    done = _amtool("config", "routes", "test", f"--config.file={AM_CONFIG}",
                   f"--verify.receivers={want}", *(f"{k}={v}" for k, v in labels.items()))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == want


def _duration(text: str | None) -> float:
    if not text:
        return 0.0
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", text))


def _matches(matchers: list[str], labels: dict[str, str]) -> bool:
    for m in matchers:
        name, op, value = re.fullmatch(r'(\w+)(=~|!~|!=|=)"(.*)"', m).groups()  # type: ignore[union-attr]
        have = labels.get(name, "")
        ok = {"=": have == value, "!=": have != value,
              "=~": re.fullmatch(value, have) is not None,
              "!~": re.fullmatch(value, have) is None}[op]
        if not ok:
            return False
    return True


def test_every_inhibition_source_fires_no_later_than_its_targets() -> None:
    """Alertmanager inhibits only what arrives while the source fires: a source with a
    longer `for:` than a target would let the target page first."""
    rules = yaml.safe_load(AM_CONFIG.read_text())["inhibit_rules"]
    alerts = {r["alert"]: r for r in _alerts()}
    pairs = 0
    for inhibit in rules:
        sources = [a for a in alerts.values()
                   if _matches(inhibit["source_matchers"], {**a["labels"],
                                                            "alertname": a["alert"]})]
        assert sources, inhibit
        for target in alerts.values():
            labels = {**target["labels"], "alertname": target["alert"]}
            if not _matches(inhibit["target_matchers"], labels):
                continue
            for source in sources:
                pairs += 1
                # LifelineDown is the exception: while lifeline is not scraped its other
                # alerts' data goes stale, so they stop firing rather than start.
                assert _duration(source.get("for")) <= _duration(target.get("for")) or (
                    source["alert"] == "LifelineDown"), (source["alert"], target["alert"])
    assert pairs >= 5


def _own_pages() -> list[dict[str, str]]:
    """The label sets of the alerts lifeline posts itself (controller.core.pages)."""
    from controller.core.health import HealthState
    from controller.core.pages import pages_for
    from tests.unit.test_pages import on_power, site

    book_failover = {"internet": ("a", "b", 0.0)}
    pages = [*pages_for(site(HealthState.DOWN, HealthState.DOWN), book_failover),
             *pages_for(on_power("dr"), {})]
    return [dict(p.labels) for p in pages]


@needs_amtool
def test_lifelines_own_pages_route_and_are_never_stale() -> None:
    own = _own_pages()
    assert {p["alertname"] for p in own} == {"LifelineAllUplinksDown", "LifelineFailedOver",
                                             "LifelinePowerOutage"}
    inhibits = yaml.safe_load(AM_CONFIG.read_text())["inhibit_rules"]
    stale = next(i for i in inhibits if i["source_matchers"] == ['alertname="LifelineDown"'])
    for labels in [*own, {"alertname": "LifelineDidsUnroutable", "site": "rome",
                          "severity": "page", "scope": "dids"}]:
        want = "oncall" if labels["severity"] == "page" else "tickets"
        done = _amtool("config", "routes", "test", f"--config.file={AM_CONFIG}",
                       f"--verify.receivers={want}", *(f"{k}={v}" for k, v in labels.items()))
        assert done.returncode == 0, done.stdout + done.stderr
        assert not _matches(stale["target_matchers"], labels), labels


def _inhibited(alert: dict[str, str], firing: list[dict[str, str]]) -> bool:
    """Whether the shipped inhibit rules hold ``alert`` back while ``firing`` fire (what
    Alertmanager does; tests/integration/test_alertmanager.py checks the real one)."""
    for rule in yaml.safe_load(AM_CONFIG.read_text())["inhibit_rules"]:
        if not _matches(rule["target_matchers"], alert):
            continue
        for source in firing:
            if source is not alert and _matches(rule["source_matchers"], source) and all(
                    source.get(k) == alert.get(k) for k in rule["equal"]):
                return True
    return False


def _firing(name: str, site: str = "rome", **more: str) -> dict[str, str]:
    rule = next(r for r in _alerts() if r["alert"] == name)
    return {"alertname": name, "site": site, **rule["labels"], **more}


def test_one_power_incident_is_one_page() -> None:
    """On battery, then DR for power (and the PBX or the CRM, not on the UPS, dying with
    mains): of every alert the incident raises, only the outage reaches on-call."""
    incident = [
        _firing("LifelinePowerOutage"),
        _firing("LifelineDidsOnDr", cause="power"),
        _firing("LifelineDidsOnDr", cause="destination_down"),
        _firing("LifelineDidsOnDr", cause="service"),
        _firing("LifelineServiceDown", service="crm", state="down"),
        _firing("LifelineUpsUnknown", ups="ups-b", state="unknown"),
        _firing("LifelineUpsBatteryLow", ups="ups-a"),
    ]
    delivered = [a["alertname"] for a in incident if not _inhibited(a, incident)]
    assert delivered == ["LifelinePowerOutage"]
    # Calls failing now still page; another site's DR still pages; and with mains back
    # (the outage resolved) a service still down is delivered.
    more = [_firing("LifelineDidsUnroutable"), _firing("LifelineSipEdgeOutOfSync",
                                                       edge="kamailio"),
            _firing("LifelineDidsOnDr", "milano", cause="service")]
    assert not any(_inhibited(a, incident + more) for a in more)
    after = [a for a in incident if a["alertname"] != "LifelinePowerOutage"]
    assert not any(_inhibited(a, after) for a in after
                   if a["alertname"] == "LifelineServiceDown")


def test_a_service_incident_pages_once_as_dids_on_dr() -> None:
    """The CRM down takes its PBX's DIDs to DR: the DR page, and a ticket naming the
    service (tickets go to the queue, never to on-call)."""
    incident = [_firing("LifelineServiceDown", service="crm", state="down"),
                _firing("LifelineDidsOnDr", cause="service")]
    pages = [a["alertname"] for a in incident
             if a["severity"] == "page" and not _inhibited(a, incident)]
    assert pages == ["LifelineDidsOnDr"]


def test_recordings_alerts_are_held_back_only_by_a_stale_lifeline() -> None:
    """No inhibition of their own (one cause is already one finding in lifeline): a
    recordings incident delivers every one of its alerts, and neither a site cut off nor a
    power outage hides a recording at risk; lifeline not scraped (their data stale) does."""
    recordings = [_firing(r["alert"], check="available", subject="nas") for r in _alerts()
                  if r["labels"]["scope"] == "recordings"]
    assert len(recordings) >= 10
    assert not any(_inhibited(a, recordings) for a in recordings)
    larger = [_firing("LifelineAllUplinksDown"), _firing("LifelinePowerOutage")]
    assert not any(_inhibited(a, recordings + larger) for a in recordings)
    stale = [*recordings, _firing("LifelineDown", job="lifeline", instance="rome-gw:9730")]
    assert all(_inhibited(a, stale) for a in recordings)
    milano = [_firing(r["alert"], "milano") for r in _alerts()
              if r["labels"]["scope"] == "recordings"]
    assert not any(_inhibited(a, stale + milano) for a in milano)
