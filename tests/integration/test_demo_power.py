"""The demo's power act on a real lab (upsd with dummy-ups, Kamailio, sipp PBX and DR PBX,
the daemon): every step meets its expectation, inbound calls ring at the DR PBX while the
battery runs down and at the PBX again after the hold-down, and the calls go on."""

from __future__ import annotations

import pytest

from tests.integration.conftest import SIP_LAB
from tests.lab.demo_power import power_scenario, power_summary, run_power_act
from tests.lab.nut import nut_skip_reason

pytestmark = [*SIP_LAB, pytest.mark.skipif(nut_skip_reason() is not None,
                                            reason=str(nut_skip_reason()))]


def test_power_act_plays_out(capsys: pytest.CaptureFixture[str]) -> None:
    act = run_power_act(quick=True)
    out = capsys.readouterr().out
    summary = power_summary(act)
    steps = power_scenario(act.timing)
    assert len(act.outcomes) == len(steps), out + summary  # every step reached
    assert all(o.ok for o in act.outcomes), out + summary  # none timed out or came too soon
    by_title = {o.step.title: o for o in act.outcomes}
    before_dr = act.outcomes[:3]  # mains, on battery, the grace: the PBX only
    assert all(o.at_dr == 0 and o.at_pbx >= 1 for o in before_dr), summary
    assert by_title["calls ring at the DR PBX"].at_dr >= 1, summary
    assert act.outcomes[-1].at_pbx >= 1, summary  # back at the PBX after the hold-down
    f = act.figures
    assert f is not None, out
    assert f.at_dr >= 2 and f.at_pbx >= 4, summary
    # Loose bounds: the driver's 1 s poll, a 0.5 s read, a cycle, a push, a 0.5 s call pace.
    assert f.to_first_dr_call is not None and f.to_first_dr_call < 6, summary
    assert f.to_first_pbx_call is not None, summary
    assert act.timing.hold_down * 0.9 <= f.to_first_pbx_call < act.timing.hold_down + 8, summary
    assert f.placed >= 20 and f.failed <= 2, summary  # calls went on through the act
    assert "desks dark: rack-ups runtime 1m30s below the 2m margin" in out
    assert "site in DR (power); delivering to DR dr" in out
