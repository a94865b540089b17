"""The demo's power act without a lab: reading where calls rang from a sipp message log,
the steps' expectations, the summary's figures, and the CLI switch that skips the act."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.lab.demo_power import (
    InviteLog,
    PowerAct,
    PowerFigures,
    PowerOutcome,
    PowerTiming,
    PowerView,
    power_scenario,
    power_summary,
)
from tests.lab.demo_sip import A_DID
from tests.lab.sipsite import SipPeer

SEP = "-" * 47


def _message(wall: float, first_line: str, call_id: str, kind: str = "received") -> str:
    stamp = datetime.fromtimestamp(wall).strftime("%Y-%m-%d %H:%M:%S.%f")
    return (f"{SEP} {stamp}\nUDP message {kind} [500] bytes :\n\n{first_line}\r\n"
            f"Via: SIP/2.0/UDP 192.0.2.129:5070\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\n")


def test_invite_log_counts_each_call_once_when_whole(tmp_path: Path) -> None:
    log = tmp_path / "pbx_messages.log"
    reader = InviteLog(SipPeer("pbx", "ns", "192.0.2.130", 5060, log), A_DID)
    assert reader.poll() == []  # no log yet
    now = time.time()
    invite = f"INVITE sip:{A_DID}@192.0.2.130:5060 SIP/2.0"
    log.write_text(
        _message(now - 2.0, invite, "a1")
        + _message(now - 1.9, invite, "a1")  # a retransmission: the same call
        + _message(now - 1.8, "OPTIONS sip:192.0.2.130:5060 SIP/2.0", "o1")
        + _message(now - 1.7, "INVITE sip:+390298765401@192.0.2.130:5060 SIP/2.0", "b1")
        + _message(now - 1.6, "SIP/2.0 200 OK", "a1", kind="sent")
        + _message(now - 1.0, invite, "a2"))
    # The last message may still be half written: counted once the next one begins.
    first = reader.poll()
    assert len(first) == 1
    assert time.monotonic() - first[0] == pytest.approx(2.0, abs=0.2)
    with log.open("a") as f:
        f.write(_message(now - 0.5, invite, "a3"))
        f.write(SEP)
    arrivals = reader.poll()
    assert len(arrivals) == 3 and arrivals == sorted(arrivals)
    assert time.monotonic() - arrivals[-1] == pytest.approx(0.5, abs=0.2)


def _view(state: str, phase: str, destination: str, *, pbx: tuple[float, ...] = (),
          dr: tuple[float, ...] = (), cause: str | None = None,
          in_sync: bool = True) -> PowerView:
    status: dict[str, Any] = {
        "trunks": [{"name": "carrier-a-sbc1", "state": "up"}],
        "dids": {"unroutable_numbers": 0, "on_dr": []},
        "edges": [{"name": "kamailio", "in_sync": in_sync, "error": None}],
    }
    power = {"state": state, "phase": phase, "reason": "", "ups": []}
    return PowerView(status, power, destination, cause, "", pbx, dr)


def test_each_step_holds_only_on_what_it_expects() -> None:
    t = PowerTiming(grace=3.0, runtime_margin=120.0, hold_down=5.0)
    mains, lost, grace, low, rings, back, returned = power_scenario(t)
    marks = {"start": 10.0, "runtime low": 20.0, "mains back": 30.0}
    assert mains.done(_view("mains", "normal", "pbx", pbx=(11.0,)), marks)
    assert not mains.done(_view("mains", "normal", "pbx", pbx=(9.0,)), marks)  # before it
    assert lost.done(_view("on_battery", "battery", "pbx"), marks)
    assert not lost.done(_view("mains", "normal", "pbx"), marks)
    assert grace.done(_view("on_battery", "outage", "pbx"), marks)
    assert grace.min_wait == pytest.approx(2.7) and grace.since == "mains lost"
    assert lost.dr_forbidden and grace.dr_forbidden and not rings.dr_forbidden
    assert low.done(_view("on_battery", "dr", "dr", cause="power"), marks)
    assert not low.done(_view("on_battery", "dr", "dr", cause="power", in_sync=False), marks)
    assert not low.done(_view("on_battery", "dr", "dr", cause="pin"), marks)
    assert rings.done(_view("on_battery", "dr", "dr", dr=(20.5,)), marks)
    assert not rings.done(_view("on_battery", "dr", "dr", dr=(19.5,)), marks)
    assert back.done(_view("mains", "dr", "dr"), marks)
    assert not back.done(_view("mains", "normal", "pbx"), marks)
    assert returned.done(_view("mains", "normal", "pbx", pbx=(35.0,)), marks)
    assert not returned.done(_view("mains", "normal", "pbx", pbx=(29.0,)), marks)
    assert returned.min_wait == pytest.approx(4.5) and returned.since == "mains back"


def test_summary_gives_the_figures_and_why_a_step_failed() -> None:
    t = PowerTiming(grace=3.0, runtime_margin=120.0, hold_down=5.0)
    steps = power_scenario(t)
    act = PowerAct(t, [PowerOutcome(steps[0], True, 0.2, 4, 0, 2, 0),
                       PowerOutcome(steps[1], False, 0.7, 4, 1, 1, 1,
                                    "1 inbound call(s) rang at DR")],
                   PowerFigures(placed=8, failed=1, at_pbx=3, at_dr=1, to_dr_plan=1.25,
                                to_first_dr_call=1.5, to_first_pbx_call=None))
    assert not act.passed
    text = power_summary(act)
    lines = text.splitlines()
    assert lines[1].endswith("ok") and "0.20 s" in lines[1]
    assert "FAILED: 1 inbound call(s) rang at DR" in lines[2]
    assert "8 placed (both ways), 1 failed" in text
    assert "first call at the DR PBX: 1.50 s" in text
    assert "first call at the PBX again: - (hold-down 5 s)" in text
