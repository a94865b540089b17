"""A damaged journal never stops the daemon from protecting the site: the real daemon,
started on a state dir whose journal.sqlite3 is garbage, sets the route and fails over,
and the garbage is kept aside for the operator."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from controller.runtime.journal import read_events
from tests.lab.lifelined import LifelineProcess, route_devices
from tests.lab.topology import Lab

pytestmark = pytest.mark.lab


def test_a_garbage_journal_is_moved_aside_and_the_site_still_fails_over(
    lab: Lab, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    garbage = os.urandom(64 * 1024)
    (state / "journal.sqlite3").write_bytes(garbage)
    d = LifelineProcess(lab, state, reliability=2, hold_down="2s")
    d.start()
    try:
        d.wait_active(["fibre-a"], 15)
        assert route_devices(lab) == ["wan-a"]
        lab.faults.blackhole("fibre-a")
        st = d.wait_active(["fibre-b"], 15)
        assert route_devices(lab) == ["wan-b"]
    finally:
        assert d.stop() == 0, d.log()
    journal = st["journal"]
    assert journal["mode"] == "disk" and journal["problem"] is None
    moved = Path(journal["damaged_moved_to"])
    assert moved.parent == state and moved.name.startswith("journal.sqlite3.damaged-")
    assert moved.read_bytes() == garbage
    assert "not a usable database" in d.log()
    events = read_events(state / "journal.sqlite3", 500)
    assert events[0].kind == "error" and str(moved) in events[0].message
    assert [e.kind for e in events[1:2]] == ["start"]
    decisions = [e.data["new"] for e in events if e.kind == "decision"]
    assert decisions == [["fibre-a"], ["fibre-b"]]
