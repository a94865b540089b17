"""SIGHUP reloads the config of the real daemon in the lab: a bad file is refused and the
running config keeps protecting the site; a good one is taken without a restart and
without forgetting any link's health (the route moves only because the tiers did)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import yaml

from tests.lab.lifelined import LifelineProcess, route_devices
from tests.lab.topology import Lab

pytestmark = pytest.mark.lab


def _hup(daemon: LifelineProcess) -> None:
    assert daemon.pid is not None
    os.kill(daemon.pid, signal.SIGHUP)


def test_sighup_refuses_a_bad_file_then_takes_a_good_one(lab: Lab, tmp_path: Path) -> None:
    daemon = LifelineProcess(lab, tmp_path, reliability=2)
    daemon.start()
    try:
        daemon.wait_active(["fibre-a"], 15)
        pid = daemon.pid
        good = yaml.safe_load(daemon.config_path.read_text())
        daemon.config_path.write_text("site: lab\nlinks: [{name: fibre-a}]\n")
        _hup(daemon)
        st = daemon.wait_for(lambda s: bool(s["config"]["reload_error"]), 10,
                             "the bad file refused")
        assert "links[0]" in st["config"]["reload_error"]
        assert "reload refused" in daemon.log()
        assert daemon.pid == pid and route_devices(lab) == ["wan-a"]

        for link in good["links"]:  # fibre-b becomes the preferred link
            link["tier"] = {"fibre-a": 2, "fibre-b": 1}.get(link["name"], link["tier"])
        daemon.config_path.write_text(yaml.safe_dump(good, sort_keys=False))
        _hup(daemon)
        st = daemon.wait_active(["fibre-b"], 15)
        assert st["config"]["reload_error"] is None
        assert route_devices(lab) == ["wan-b"] and daemon.pid == pid
        assert daemon.link_state(st, "fibre-a") == "up"  # kept, never unknown
        text = daemon.metrics_text()
        assert 'lifeline_config_reloads_total{result="ok"} 1.0' in text
        assert 'lifeline_config_reloads_total{result="refused"} 1.0' in text
        assert 'lifeline_link_transitions_total{link="fibre-a",to="unknown"} 0.0' in text
    finally:
        assert daemon.stop() == 0
