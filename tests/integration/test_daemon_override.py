"""An operator override on a real daemon in the lab: the site's real default route forced
to the backup link, told in the status and the metrics, and back on the primary when the
override lapses by itself. The override is in the state dir before the daemon starts (the
file a previous run wrote: overrides survive a restart); setting one through the API is
tested with the API."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.lab.lifelined import LifelineProcess, route_devices
from tests.lab.topology import Lab

pytestmark = pytest.mark.lab

FORCE_FOR = 20.0  # seconds: the daemon starts, forces the route, and the override lapses


def test_a_forced_route_uses_the_backup_link_and_goes_back_at_the_lapse(
        lab: Lab, tmp_path: Path) -> None:
    until = time.time() + FORCE_FOR
    (tmp_path / "overrides.json").write_text(json.dumps({"version": 1, "overrides": [{
        "kind": "route", "target": "internet", "value": "fibre-b", "reason": "lab drill",
        "by": "test", "since": time.time(), "until": until}]}))
    daemon = LifelineProcess(lab, tmp_path)
    daemon.start()
    try:
        st = daemon.wait_active(["fibre-b"], 15)
        assert route_devices(lab) == ["wan-b"]
        st = daemon.wait_for(lambda s: bool(s["overrides"]) and s["overrides"][0]["applied"],
                             5, "the override applied")
        assert st["overrides"] == [{
            "kind": "route", "target": "internet", "value": "fibre-b", "reason": "lab drill",
            "by": "test", "since": pytest.approx(until - FORCE_FOR, abs=1), "until": until,
            "applied": True, "why_not": None}]
        # Forced, not failed over: fibre-a is (or soon is: both links are judged at the
        # same pace, fibre-b may be first) up, and the route stays on fibre-b.
        daemon.wait_for(lambda s: daemon.link_state(s, "fibre-a") == "up", 5, "fibre-a up")
        assert route_devices(lab) == ["wan-b"]
        metrics = daemon.metrics_text()
        assert ('lifeline_override_active{kind="route",target="internet"} 1.0'
                in metrics)
        back = daemon.wait_active_at(["fibre-a"], FORCE_FOR + 10)
        assert back >= time.monotonic() - (time.time() - until) - 1.5  # not before `until`
        assert route_devices(lab) == ["wan-a"]
        st = daemon.wait_for(lambda s: s["overrides"] == [], 5, "the override gone")
        assert "lifeline_override_active{" not in daemon.metrics_text()
    finally:
        assert daemon.stop() == 0
    kept = json.loads((tmp_path / "overrides.json").read_text())
    assert kept["overrides"] == []
