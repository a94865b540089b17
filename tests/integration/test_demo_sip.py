"""The demo's telephony act on a real lab: every step meets its expectation, with calls."""

from __future__ import annotations

import os

import pytest

from tests.lab.demo_sip import run_sip_act, sip_scenario, sip_summary
from tests.lab.sipsite import sip_site_skip_reason

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (network namespaces)"),
    pytest.mark.skipif(sip_site_skip_reason() is not None,
                       reason=str(sip_site_skip_reason())),
]


def test_telephony_act_plays_out(capsys: pytest.CaptureFixture[str]) -> None:
    outcomes = run_sip_act(quick=True)
    out = capsys.readouterr().out
    summary = sip_summary(outcomes)
    assert len(outcomes) == len(sip_scenario(3.0, lambda _t, _on: None)), out + summary
    assert "trunk carrier-a-sbc1: in maintenance, gets no calls" in out
    assert all(o.ok for o in outcomes), out + summary
    assert "DID plan (status API): 150 numbers in 2 ranges, 0 unroutable" in out
    # Calls went on through every step, both ways.
    for o in outcomes:
        assert o.out_calls[0] >= 1 and o.in_calls[0] >= 1, summary
    killed = outcomes[1]
    assert killed.switch_after is not None and killed.switch_after < 5, summary
