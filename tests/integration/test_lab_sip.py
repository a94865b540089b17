"""The lab's telephony peers: carrier SBCs reached only through the ISPs, the PBX on the LAN."""

from __future__ import annotations

import pytest

from tests.lab.sip import call, sipp_path, start_pbx, start_sbcs
from tests.lab.topology import CARRIER_SBCS, Lab

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(sipp_path() is None, reason="sipp (Debian sip-tester) is not installed"),
]


def test_sbcs_answer_calls_through_the_active_link_only(lab: Lab) -> None:
    start_sbcs(lab, ["carrier-a-sbc1"])
    sbc = str(CARRIER_SBCS["carrier-a-sbc1"])
    fibre_a = lab.link("fibre-a")
    # no default route in the site yet: the SBC is unreachable from the LAN
    assert call(lab, lab.lan, str(lab.lan_host_addr), sbc, "+390212345601", timeout=2) != 0
    lab.run(lab.site, ["ip", "route", "add", "default", "via", str(fibre_a.gateway)])
    assert call(lab, lab.lan, str(lab.lan_host_addr), sbc, "+390212345601") == 0
    lab.faults.blackhole("fibre-a")
    assert call(lab, lab.lan, str(lab.lan_host_addr), sbc, "+390212345601", timeout=2) != 0


def test_pbx_answers_on_the_lan(lab: Lab) -> None:
    pbx = start_pbx(lab)
    assert call(lab, lab.site, str(lab.lan_site_addr), pbx.addr, "+390212345601") == 0
