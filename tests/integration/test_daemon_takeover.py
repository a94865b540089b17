"""A default route lifeline did not create, at the group's own key: a conflict that is
reported and left alone, unless the group says ``takeover``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from tests.lab.config import lifeline_config_dict
from tests.lab.lifelined import LifelineProcess, route_devices
from tests.lab.topology import Lab

pytestmark = pytest.mark.lab


def _daemon(lab: Lab, tmp_path: Path, takeover: bool) -> LifelineProcess:
    lte = lab.link("lte")
    # The installer's default route, via LTE, with the kernel's default proto ("boot").
    lab.run(lab.site, ["ip", "route", "add", "default", "via", str(lte.gateway), "dev",
                       lte.site_ifname])
    daemon = LifelineProcess(lab, tmp_path, hold_down="2s", reliability=2)
    cfg = lifeline_config_dict(lab, tmp_path, hold_down="2s", reliability=2)
    cfg["route_groups"][0]["takeover"] = takeover
    daemon.config_path.write_text(yaml.safe_dump(cfg))
    return daemon


def test_foreign_route_at_the_group_key_is_a_reported_conflict(lab: Lab,
                                                                tmp_path: Path) -> None:
    daemon = _daemon(lab, tmp_path, takeover=False)
    daemon.start()
    try:
        st = daemon.wait_for(lambda s: bool(s["problems"]), 15, "a conflict to be reported")
        assert any("internet" in c for c in st["problems"]), st["problems"]
        time.sleep(1.5)  # more reconcile cycles: still untouched
        assert route_devices(lab) == ["lte0"]
        route = lab.run(lab.site, ["ip", "route", "show", "default"]).stdout
        assert "proto 201" not in route
    finally:
        daemon.stop()


def test_takeover_replaces_the_foreign_route(lab: Lab, tmp_path: Path) -> None:
    daemon = _daemon(lab, tmp_path, takeover=True)
    daemon.start()
    try:
        daemon.wait_active(["fibre-a"], 15)
        assert route_devices(lab) == ["wan-a"]
        route = lab.run(lab.site, ["ip", "route", "show", "default"]).stdout
        assert "proto 201" in route
    finally:
        daemon.stop()
