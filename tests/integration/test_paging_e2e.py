"""Paging end to end in the lab: a real Prometheus scrapes the real lifeline, evaluates the
shipped rules and sends to a real Alertmanager running the shipped config (receivers pointed
at a webhook sink, group timings shortened), all inside the site's namespace. Every uplink
of the site is blackholed: exactly one page arrives (every uplink down), the link-down
tickets fire in Prometheus a minute later and are held by Alertmanager as inhibited, and
when the uplinks are back the page is resolved. What is checked is what reached the sink and
what Alertmanager says of each alert, not lifeline's own view."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab.config import lifeline_config_dict
from tests.lab.lifelined import LifelineProcess
from tests.lab.monitoring import (
    ALERTMANAGER,
    AM_PORT,
    PROMETHEUS,
    SINK_PORT,
    prometheus_config,
    query,
    shipped_alertmanager,
    site_get,
    start_alertmanager,
    start_prometheus,
    start_sink,
)
from tests.lab.monitoring import quietly as _quietly
from tests.lab.nut import Upsd, nut_skip_reason
from tests.lab.topology import Lab
from tests.lab.wait import until
from tests.lab.webhook_sink import deliveries, read
from tests.unit.test_alert_rules import RULES, _metric_names

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(PROMETHEUS is None or ALERTMANAGER is None,
                       reason="needs prometheus and prometheus-alertmanager (Debian)"),
]


class Paging:
    """Prometheus, Alertmanager and the webhook sink, started in the lab's site."""

    def __init__(self, lab: Lab, workdir: Path) -> None:
        self.lab, self.workdir = lab, workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.sink = workdir / "delivered.jsonl"

    def start(self) -> Paging:
        lab, w = self.lab, self.workdir
        am = shipped_alertmanager(f"http://127.0.0.1:{SINK_PORT}")
        # Tickets wait as shipped-like (longer than a page): a failover ticket posted while
        # the links go down one by one must meet the every-uplink-down page that inhibits it.
        next(r for r in am["route"]["routes"] if "severity=\"ticket\"" in r["matchers"][0]
             )["group_wait"] = "20s"
        self.sink = start_sink(lab, w)
        start_alertmanager(lab, w, am)
        start_prometheus(lab, w, prometheus_config([RULES]))
        return self

    def query(self, expr: str) -> list[dict[str, Any]]:
        return query(self.lab, expr)

    def am_alerts(self) -> list[dict[str, Any]]:
        return list(site_get(self.lab, f"http://127.0.0.1:{AM_PORT}/api/v2/alerts"))

    def deliveries(self, receiver: str) -> list[tuple[str, list[str]]]:
        """(status of the notification, its alerts' names) for each one ``receiver`` got."""
        return deliveries(self.sink, receiver)


@pytest.fixture
def paging(lab: Lab, tmp_path: Path) -> Iterator[tuple[LifelineProcess, Paging]]:
    """lifeline on the lab's default links, then the paging chain; the lab kills them all."""
    # reliability 2: the gateway alone, which a blackhole leaves answering, is not enough.
    # lifeline posts its own pages to the same Alertmanager: one page must still come.
    config = lifeline_config_dict(lab, tmp_path / "state", reliability=2, hold_down="2s")
    config["alertmanager"] = {"urls": [f"http://127.0.0.1:{AM_PORT}"], "timeout": "1s"}
    daemon = LifelineProcess.with_config(lab, tmp_path / "state", config)
    daemon.start()
    daemon.wait_active(["fibre-a"], timeout=30.0)
    chain = Paging(lab, tmp_path / "paging").start()
    scraped: Callable[[], bool] = lambda: bool(  # noqa: E731
        chain.query('up{job="lifeline"} == 1'))
    until(lambda: _quietly(scraped), 30, 0.5, "Prometheus scraping lifeline")
    yield daemon, chain


# Served only with trunks, DIDs, a SIP edge, a power section, services or recordings
# configured: this lab has links only (test_promql_fit has them all).
TELEPHONY = ("lifeline_trunk_", "lifeline_dids", "lifeline_did_", "lifeline_sip_edge_",
             "lifeline_destination_", "lifeline_plan_", "lifeline_ups_", "lifeline_power_",
             "lifeline_site_power_", "lifeline_service_", "lifeline_recordings_")


def test_a_site_cut_off_pages_once_and_resolves(lab: Lab,
                                                paging: tuple[LifelineProcess, Paging]) -> None:
    daemon, chain = paging
    assert chain.query("lifeline_build_info")  # the exporter really is what it scrapes
    # Every expression of the rules parses in this Prometheus, and every lifeline metric
    # they use that a links-only site serves has data (a renamed metric fails here).
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    for rule in rules:
        chain.query(str(rule["expr"]))  # asserts status success
    used = {n for r in rules for n in _metric_names(str(r["expr"]))}
    for name in sorted(used):
        if not name.startswith(TELEPHONY):
            assert chain.query(f"count({name})"), f"no data for {name}"
    cut = time.monotonic()
    for link in lab.links:
        lab.faults.blackhole(link)
    until(lambda: ("firing", ["LifelineAllUplinksDown"]) in chain.deliveries("oncall"),
          60, 0.5, "the page for a site with no uplink")
    paged_after = time.monotonic() - cut

    # A minute on, the link-down tickets fire in Prometheus: Alertmanager holds them.
    def links_inhibited() -> bool:
        down = [a for a in chain.am_alerts()
                if a["labels"]["alertname"] == "LifelineLinkDown"]
        return len(down) == len(lab.links) and all(
            a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"] for a in down)

    until(lambda: _quietly(links_inhibited), 120, 1.0, "link-down alerts inhibited")
    assert chain.deliveries("oncall") == [("firing", ["LifelineAllUplinksDown"])]
    assert chain.deliveries("tickets") == []
    # lifeline posted its own copy too: Alertmanager holds one alert for both.
    posted = re.search(r'^lifeline_alertmanager_posts_total\{result="ok"\} (\S+)$',
                       daemon.metrics_text(), re.M)
    assert posted is not None and float(posted.group(1)) >= 1
    cut_alerts = [a for a in chain.am_alerts()
                  if a["labels"]["alertname"] == "LifelineAllUplinksDown"]
    assert len(cut_alerts) == 1, cut_alerts
    page = next(d for d in read(chain.sink) if d["path"] == "/oncall")
    alert = page["body"]["alerts"][0]  # type: ignore[index]
    assert alert["labels"]["site"] == "lab" and alert["labels"]["severity"] == "page"
    assert alert["annotations"]["summary"] == "lab has no working uplink"

    for link in lab.links:
        lab.faults.clear(link)
    daemon.wait_active(["fibre-a"], timeout=60.0)
    until(lambda: ("resolved", ["LifelineAllUplinksDown"]) in chain.deliveries("oncall"),
          60, 0.5, "the page resolved")
    print(f"\nall uplinks blackholed -> page at the webhook after {paged_after:.1f} s "
          "(Prometheus 1 s scrape and evaluation, group_wait shortened to 2 s)")


@pytest.fixture
def site_ups(lab: Lab, tmp_path: Path) -> Iterator[Upsd]:
    """A real upsd and dummy UPS on the site's own loopback, where lifeline runs."""
    reason = nut_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    users = {"monitor": ("lab-secret", "upsmon secondary")}
    with Upsd(tmp_path / "nut", users=users, ns=lab.site).running() as server:
        yield server


def test_a_site_on_battery_pages_once_and_resolves(lab: Lab, site_ups: Upsd,
                                                   tmp_path: Path) -> None:
    """The dummy UPS goes on battery: past the grace, lifeline posts the outage and
    Prometheus' rule fires it from the scrape; Alertmanager holds one alert and on-call
    gets one page. Mains back and stable: the page is resolved, by Prometheus' copy well
    before the linger of lifeline's own resolved post."""
    secret = tmp_path / "nut-password"
    secret.write_text("lab-secret\n")
    secret.chmod(0o600)
    config = lifeline_config_dict(lab, tmp_path / "state", reliability=2, hold_down="2s")
    config["alertmanager"] = {"urls": [f"http://127.0.0.1:{AM_PORT}"], "timeout": "1s"}
    config["power"] = {"grace": "2s", "hold_down": "3s", "ups": [{
        "name": "rack-ups", "interval": "500ms", "timeout": "500ms", "stale_after": None,
        "nut": {"host": "127.0.0.1", "port": site_ups.port, "ups": site_ups.ups,
                "username": "monitor", "password_file": str(secret)}}]}
    daemon = LifelineProcess.with_config(lab, tmp_path / "state", config)
    daemon.start()
    daemon.wait_active(["fibre-a"], timeout=30.0)
    chain = Paging(lab, tmp_path / "paging").start()
    on_mains: Callable[[], bool] = lambda: bool(  # noqa: E731
        chain.query('lifeline_site_power_state{job="lifeline", state="mains"} == 1'))
    until(lambda: _quietly(on_mains), 30, 0.5, "Prometheus seeing the site on mains")

    cut = time.monotonic()
    site_ups.set(status="OB DISCHRG", charge=90, runtime=1500, input_voltage=0)
    until(lambda: ("firing", ["LifelinePowerOutage"]) in chain.deliveries("oncall"),
          60, 0.5, "the page for a site on battery")
    paged_after = time.monotonic() - cut
    assert paged_after >= 2.0, paged_after  # not before lifeline's grace
    prometheus_fires: Callable[[], bool] = lambda: bool(chain.query(  # noqa: E731
        'ALERTS{alertname="LifelinePowerOutage", alertstate="firing"}'))
    until(lambda: _quietly(prometheus_fires), 30, 0.5, "Prometheus' rule firing too")
    time.sleep(5)  # group rounds: nothing else may come
    outage = [a for a in chain.am_alerts()
              if a["labels"]["alertname"] == "LifelinePowerOutage"]
    assert len(outage) == 1, outage  # lifeline's copy and Prometheus' copy: one alert
    assert outage[0]["labels"] == {"alertname": "LifelinePowerOutage", "site": "lab",
                                   "severity": "page", "scope": "power"}
    assert chain.deliveries("oncall") == [("firing", ["LifelinePowerOutage"])]
    assert chain.deliveries("tickets") == []

    back = time.monotonic()
    site_ups.set(status="OL CHRG", input_voltage=230)
    until(lambda: ("resolved", ["LifelinePowerOutage"]) in chain.deliveries("oncall"),
          60, 0.5, "the page resolved")
    resolved_after = time.monotonic() - back
    assert resolved_after >= 3.0, resolved_after  # not before the hold-down
    # Prometheus' resolved copy ended it, not the 120 s linger of lifeline's own.
    assert resolved_after < 60.0, resolved_after
    assert [d for d in chain.deliveries("oncall") if d[0] == "firing"] == [
        ("firing", ["LifelinePowerOutage"])]
    print(f"\nUPS on battery -> page at the webhook after {paged_after:.1f} s (grace 2 s); "
          f"mains back -> resolved after {resolved_after:.1f} s (hold-down 3 s)")
