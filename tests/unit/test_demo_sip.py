"""The demo's telephony act without a lab: call tallies, step expectations, the summary,
and the CLI switch that skips the act."""

from __future__ import annotations

from typing import Any, cast

import pytest

import tests.lab.demo as lab_demo
from controller.cli import main
from tests.lab.demo_sip import (
    A_DID,
    B_DID,
    Call,
    CallLoad,
    SipOutcome,
    View,
    sip_scenario,
    sip_summary,
    tally,
)
from tests.lab.sipsite import DID_RANGES, SipSite

A_RANGE, B_RANGE = DID_RANGES[0][0], DID_RANGES[1][0]


def test_tally_counts_calls_that_ended_in_the_window_per_direction() -> None:
    calls = [Call("out", 0.0, 0.5, True), Call("out", 0.5, 1.2, False),
             Call("in", 0.0, 0.9, True), Call("in", 1.0, 2.0, True)]
    assert tally(calls, 0.0, 1.0) == (2, 0)
    assert tally(calls, 0.0, 1.5, "out") == (1, 1)
    assert tally(calls, 1.0, 2.0, "in") == (0, 0)  # the window's end is open
    assert tally(calls, 1.0, 2.1, "in") == (1, 0)


def _view(trunks: dict[str, str], ranges: dict[str, str], unroutable: list[str],
          in_sync: bool = True) -> View:
    status: dict[str, Any] = {
        "trunks": [{"name": n, "state": s, "reason": "", "dids": 0} for n, s in trunks.items()],
        "dids": {"ranges": 2, "numbers": 150, "unroutable": unroutable,
                 "unroutable_numbers": 50 * len(unroutable)},
        "edges": [{"name": "kamailio", "in_sync": in_sync, "error": None}],
    }
    return View(status, ranges, {})


UP = {"carrier-a-sbc1": "up", "carrier-a-sbc2": "up", "carrier-b-sbc1": "up"}
HOME = {A_RANGE: "carrier-a-sbc1", B_RANGE: "carrier-b-sbc1"}


def test_each_step_holds_only_on_what_it_expects() -> None:
    ready, a_down, a_back, b_down = sip_scenario(5.0)
    assert ready.done(_view(UP, HOME, []))
    assert not ready.done(_view(UP, HOME, [], in_sync=False))  # plan not pushed yet
    moved = {A_RANGE: "carrier-a-sbc2", B_RANGE: "carrier-b-sbc1"}
    sbc1_down = UP | {"carrier-a-sbc1": "down"}
    assert a_down.done(_view(sbc1_down, moved, []))
    assert not a_down.done(_view(sbc1_down, HOME, []))  # reported down, DIDs not moved
    assert not a_back.done(_view(sbc1_down, HOME, []))
    assert a_back.done(_view(UP, HOME, []))
    assert a_back.min_wait == pytest.approx(4.5)
    lost = {A_RANGE: "carrier-a-sbc1", B_RANGE: "unroutable"}
    b1_down = UP | {"carrier-b-sbc1": "down"}
    assert b_down.done(_view(b1_down, lost, [B_RANGE]))
    assert not b_down.done(_view(b1_down, HOME, []))
    assert not b_down.done(_view(b1_down, lost | {A_RANGE: "unroutable"}, [B_RANGE, A_RANGE]))
    assert A_DID.startswith(A_RANGE[:10]) and B_DID.startswith(B_RANGE[:10])


def test_the_maintenance_steps_use_the_command_and_wait_for_the_move() -> None:
    asked: list[tuple[str, bool]] = []
    steps = sip_scenario(5.0, lambda trunk, on: asked.append((trunk, on)))
    assert len(steps) == 6
    maint, lifted = steps[3], steps[4]
    assert maint.action is not None and lifted.action is not None
    maint.action(cast(SipSite, None), cast(CallLoad, None))
    lifted.action(cast(SipSite, None), cast(CallLoad, None))
    assert asked == [("carrier-a-sbc1", True), ("carrier-a-sbc1", False)]
    moved = {A_RANGE: "carrier-a-sbc2", B_RANGE: "carrier-b-sbc1"}
    view = _view(UP, moved, [])
    assert not maint.done(view)  # moved, but not for maintenance: not this step
    view.status["trunks"][0]["maintenance"] = "SBC swap (demo) (set by the operator)"
    assert maint.done(view)
    assert not maint.done(_view(UP, HOME, []))
    assert lifted.done(_view(UP, HOME, [])) and not lifted.done(_view(UP, moved, []))


def test_summary_shows_calls_and_why_a_step_failed() -> None:
    steps = sip_scenario(5.0)
    text = sip_summary([
        SipOutcome(steps[0], True, None, (4, 0), (4, 0)),
        SipOutcome(steps[1], False, 0.8, (3, 1), (6, 0), "no good out call after the switch"),
    ])
    lines = text.splitlines()
    assert len(lines) == 3
    assert "0.80 s" in lines[2] and "3/1" in lines[2] and "6/0" in lines[2]
    assert lines[1].endswith("ok")
    assert "FAILED: no good out call after the switch" in lines[2]


@pytest.mark.parametrize(("argv", "acts"), [
    (["demo"], {"sip": True, "power": True, "recordings": True}),
    (["demo", "--no-sip"], {"sip": False, "power": True}),
    (["demo", "--no-power"], {"sip": True, "power": False}),
    (["demo", "--no-recordings"], {"sip": True, "power": True, "recordings": False}),
])
def test_no_sip_and_no_power_skip_their_act(monkeypatch: pytest.MonkeyPatch, argv: list[str],
                                            acts: dict[str, bool]) -> None:
    seen: dict[str, Any] = {}

    def fake(**kw: Any) -> int:
        seen.update(kw)
        return 7

    monkeypatch.setattr(lab_demo, "run_demo", fake)
    assert main(argv) == 7
    assert {act: seen[act] for act in acts} == acts
