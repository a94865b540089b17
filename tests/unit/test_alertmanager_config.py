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
    from tests.unit.test_pages import site

    book_failover = {"internet": ("a", "b", 0.0)}
    pages = pages_for(site(HealthState.DOWN, HealthState.DOWN), book_failover)
    return [dict(p.labels) for p in pages]


@needs_amtool
def test_lifelines_own_pages_route_and_are_never_stale() -> None:
    own = _own_pages()
    assert {p["alertname"] for p in own} == {"LifelineAllUplinksDown", "LifelineFailedOver"}
    inhibits = yaml.safe_load(AM_CONFIG.read_text())["inhibit_rules"]
    stale = next(i for i in inhibits if i["source_matchers"] == ['alertname="LifelineDown"'])
    for labels in [*own, {"alertname": "LifelineDidsUnroutable", "site": "rome",
                          "severity": "page", "scope": "dids"}]:
        want = "oncall" if labels["severity"] == "page" else "tickets"
        done = _amtool("config", "routes", "test", f"--config.file={AM_CONFIG}",
                       f"--verify.receivers={want}", *(f"{k}={v}" for k, v in labels.items()))
        assert done.returncode == 0, done.stdout + done.stderr
        assert not _matches(stale["target_matchers"], labels), labels
