"""Metrics the alert rules need beyond what the state already shows: probe rounds the
scheduler had to skip (the probe loop falling behind), and DIDs delivered to the disaster-
recovery destination."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import cast

from controller.config import parse_config
from controller.core.snapshot import Tally
from controller.runtime.journal import Journal
from controller.runtime.links import LinkRouting
from exporters.metrics import registry_for
from probes.sample import Sample
from probes.scheduler import RoundScheduler
from tests.unit.test_maintenance import telephony
from tests.unit.test_runtime import _config
from tests.unit.test_telephony import LINKS, LOST, all_up, feed, snap

OK = Sample(ok=True, rtt=0.01)


def test_skipped_rounds_are_counted_once_per_link(tmp_path: Path) -> None:
    cfg = parse_config(_config(tmp_path / "state"))
    tally = Tally()
    routing = LinkRouting(cfg, Journal(tmp_path / "j.sqlite3"), tally, dry_run=True,
                          now=lambda: 0.0, on_change=lambda: None)
    assert tally.value("lifeline_probe_rounds_skipped_total", ("fibre-a",)) == 0.0
    rt = routing.links["fibre-a"]
    sched = SimpleNamespace(rounds_skipped=0)
    rt.scheduler = cast(RoundScheduler, sched)
    samples = [OK] * len(rt.specs)
    routing.on_round("fibre-a", 0.0, samples)
    sched.rounds_skipped = 3  # the loop stalled past three slots
    routing.on_round("fibre-a", 0.1, samples)
    routing.on_round("fibre-a", 0.2, samples)
    assert tally.value("lifeline_probe_rounds_skipped_total", ("fibre-a",)) == 3.0
    assert tally.value("lifeline_probe_rounds_skipped_total", ("fibre-b",)) == 0.0


def test_dids_on_the_dr_destination(tmp_path: Path) -> None:
    tel = telephony(tmp_path)
    now = all_up(tel)
    tel.decide(now, LINKS)
    metrics = registry_for(lambda: snap(tel, now))
    assert metrics.get_sample_value("lifeline_dids_on_dr") == 0.0
    now = feed(tel, "destination", "pbx", LOST, now, 10)
    tel.decide(now, LINKS)
    # The Rome range has a DR destination (100 numbers); the other has none and stays.
    assert metrics.get_sample_value("lifeline_dids_on_dr") == 100.0
