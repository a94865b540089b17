"""A link configured without ``source``: the daemon finds the interface's address, so the
link's source rule exists and its probes (and failover) work as with an explicit one."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.lab.config import lifeline_config_dict
from tests.lab.lifelined import LifelineProcess, route_devices
from tests.lab.topology import Lab

pytestmark = pytest.mark.lab


def test_source_found_on_the_interface(lab: Lab, tmp_path: Path) -> None:
    daemon = LifelineProcess(lab, tmp_path, hold_down="2s", reliability=2)
    cfg = lifeline_config_dict(lab, tmp_path, hold_down="2s", reliability=2)
    for link in cfg["links"]:
        del link["source"]
    daemon.config_path.write_text(yaml.safe_dump(cfg))
    daemon.start()
    try:
        daemon.wait_active(["fibre-a"], 15)
        rules = lab.run(lab.site, ["ip", "rule"]).stdout
        for lk in lab.links.values():
            assert f"from {lk.site_addr} lookup" in rules
        lab.faults.blackhole("fibre-a")
        st = daemon.wait_active(["fibre-b"], 15)
        # fibre-b and lte are judged through their own tables: both up, not down.
        assert daemon.link_state(st, "fibre-b") == "up"
        assert daemon.link_state(st, "lte") == "up"
        assert route_devices(lab) == ["wan-b"]
        assert "using source 198.51.100.2 found on wan-a" in daemon.log()
    finally:
        daemon.stop()
