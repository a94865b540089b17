"""A restart must not shortcut a failback: a link that was down when the daemon stopped
starts down again and earns its way back through the full hold-down."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.lab.lifelined import LifelineProcess, route_devices
from tests.lab.topology import Lab

pytestmark = pytest.mark.lab


def test_restart_during_hold_down_keeps_the_hold_down(lab: Lab, tmp_path: Path) -> None:
    first = LifelineProcess(lab, tmp_path, hold_down="4s", reliability=2)
    first.start()
    try:
        first.wait_active(["fibre-a"], 15)
        lab.faults.blackhole("fibre-a")
        first.wait_active(["fibre-b"], 15)
        lab.faults.clear("fibre-a")  # fibre-a healthy again, its hold-down just starting
    finally:
        assert first.stop() == 0
    second = LifelineProcess(lab, tmp_path, hold_down="4s", reliability=2)
    second.start()
    try:
        started = time.monotonic()
        seen: set[tuple[str, ...]] = set()
        while time.monotonic() - started < 2.5:  # rise (1 s) is long past, hold-down not
            seen.add(tuple(route_devices(lab)))
            time.sleep(0.05)
        assert seen == {("wan-b",)}, f"route during the hold-down after restart: {seen}"
        st = second.status()
        assert st is not None and second.link_state(st, "fibre-a") == "down"
        assert "down before the restart" in next(
            lk["reason"] for lk in st["links"] if lk["name"] == "fibre-a")
        second.wait_active(["fibre-a"], 15)  # and it does come back after the hold-down
        assert route_devices(lab) == ["wan-a"]
    finally:
        second.stop()
