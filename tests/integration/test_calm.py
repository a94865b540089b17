"""Calm under ordinary noise, quick on a line that is really bad: the real daemon in the lab.

A line that loses 1 % of the packets each way (2 % of the probes) is fine for calls; with
one far target that stops answering ping on top, lifeline must not move the route at all.
The same daemon must then leave the link when it turns voice-bad (5 % each way). The
daemon runs with its own probe timing and thresholds (the shipped defaults), probing each
link's gateway and two far targets with reliability 1, as the issue's lab did. What is
checked is the kernel's route, sampled all along, not only what lifeline says.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.test_daemon import RouteSampler, journal, link_status
from tests.lab.lifelined import LifelineProcess, route_devices
from tests.lab.topology import Lab

pytestmark = pytest.mark.lab

CALM_SECONDS = 120.0


def test_one_percent_loss_each_way_and_a_dead_target_move_nothing(
        lab: Lab, tmp_path: Path) -> None:
    daemon = LifelineProcess(lab, tmp_path / "state", probe_defaults=True, hold_down="2s")
    try:
        daemon.start()
        daemon.wait_active(["fibre-a"], timeout=30.0)
        wan_a = lab.link("fibre-a").site_ifname
        assert route_devices(lab) == [wan_a]

        lab.faults.silent_target(str(lab.targets[1]))
        lab.faults.loss_each_way("fibre-a", 0.01)
        with RouteSampler(lab, interval=0.25, max_seconds=CALM_SECONDS + 10) as sampler:
            time.sleep(CALM_SECONDS)
        moved = [devs for _, devs in sampler.samples if devs != (wan_a,)]
        assert len(sampler.samples) > CALM_SECONDS * 2  # the sampler really watched
        assert moved == [], f"the route left fibre-a under 1 % loss: {moved[:5]}"
        st = daemon.status()
        assert st is not None
        fibre_a = link_status(st, "fibre-a")
        assert fibre_a["state"] == "up", fibre_a["reason"]
        assert st["failovers"] == 0
        # The line's loss is seen, and is a 1 % line's. One 10 s window of ~200 answered
        # probes at 2 % round-trip loss holds none about 2 % of the time and twice the mean
        # about 5 %, so windows are read until one shows loss, and the bound leaves room
        # for a window's chance (the one-way arithmetic is test_lossmodel's to prove).
        def one_way() -> float:
            now = daemon.status()
            assert now is not None
            return float(link_status(now, "fibre-a")["loss_one_way"])

        seen = [fibre_a["loss_one_way"]]
        deadline = time.monotonic() + 25.0
        while seen[-1] == 0.0 and time.monotonic() < deadline:
            time.sleep(0.5)
            seen.append(one_way())
        assert 0.0 < seen[-1] < 0.03, f"one-way loss over 25 s of windows: {seen}"
        assert fibre_a["loss_evidence"] < 5.0
        assert not [e for e in journal(daemon, "transition") if e.subject == "fibre-a"
                    and e.data.get("new") in ("degraded", "down")]

        # Now the line turns voice-bad: 5 % each way. Left well within a minute (the
        # benchmark measures how soon), and the reason says why in the operator's terms.
        lab.faults.loss_each_way("fibre-a", 0.05)
        st = daemon.wait_active(["fibre-b"], timeout=60.0)
        fibre_a = link_status(st, "fibre-a")
        assert fibre_a["state"] == "degraded"
        assert "one way" in fibre_a["reason"] and "evidence" in fibre_a["reason"]
    finally:
        daemon.stop()
