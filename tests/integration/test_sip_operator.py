"""A DR drill end to end in the SIP site lab: ``lifeline pin NUMBER dr`` over the unix
socket sends the number's whole DID range to the disaster-recovery destination (a sipp
UAS on the LAN host), so a carrier's real call through Kamailio lands there; ``--off``
brings the range back to the PBX. The daemon, the edge, the carrier and the destinations
are the real ones; only the command line is the operator's."""

from __future__ import annotations

import time
from pathlib import Path

from tests.integration.conftest import SIP_LAB
from tests.integration.test_daemon_operator import events, lifeline
from tests.integration.test_sip_e2e import dids_lookup
from tests.lab.sipsite import DR_PORT, SipSite, plan_ready
from tests.lab.topology import Lab

pytestmark = SIP_LAB

NUMBER = "+390212345601"  # in +390212345600-+390212345699
NEIGHBOUR = "+390212345677"  # the same range: pinned with it
OTHER = "+390298765401"  # carrier B's range: left alone


def test_a_dr_drill_pins_the_range_to_dr_and_back(lab: Lab, tmp_path: Path) -> None:
    sip = SipSite(lab, tmp_path / "sip").start()
    dr = sip.start_uas("dr", lab.lan, str(lab.lan_host_addr), DR_PORT)
    pbx = sip.peers["pbx"]
    daemon = sip.start_daemon(tmp_path / "state")
    try:
        daemon.wait_for(lambda st: any(d["name"] == "dr" and d["state"] == "up"
                                       for d in st["destinations"]), 15, "DR up")
        assert dids_lookup(daemon, NUMBER)[1]["destination"] == "pbx"
        config = str(daemon.config_path)

        pinned = lifeline(lab, "pin", NUMBER, "dr", "--reason", "quarterly DR drill",
                          "--for", "2m", "-c", config)
        assert pinned.returncode == 0, pinned
        daemon.wait_for(lambda st: bool(st["overrides"]) and st["overrides"][0]["applied"]
                        and plan_ready(st), 10, "the pin applied and pushed")
        for number in (NUMBER, NEIGHBOUR):
            code, doc = dids_lookup(daemon, number)
            assert code == 200 and doc["destination"] == "dr", doc
            assert doc["disaster_recovery"] is True and "DR drill" in doc["reason"], doc
        assert dids_lookup(daemon, OTHER)[1]["destination"] == "pbx"
        (held,) = daemon.wait_for(lambda st: True, 5)["overrides"]
        assert (held["kind"], held["value"], held["by"]) == ("did", "dr", "unix:root"), held
        assert held["until"] > time.time() + 100
        assert sip.inbound(NUMBER) == 0
        assert dr.invites_to(NUMBER) == 1 and pbx.invites_to(NUMBER) == 0
        assert sip.inbound(OTHER, sbc="carrier-b-sbc1") == 0
        assert pbx.invites_to(OTHER) == 1  # the other range still reaches the PBX
        assert any("override set" in e["message"] and "quarterly DR drill" in e["message"]
                   for e in events(daemon.state_dir, "overrides"))

        lifted = lifeline(lab, "pin", NUMBER, "--off", "--reason", "drill over", "-c", config)
        assert lifted.returncode == 0, lifted
        daemon.wait_for(lambda st: not st["overrides"] and plan_ready(st), 10,
                        "the pin lifted and pushed")
        assert dids_lookup(daemon, NUMBER)[1]["destination"] == "pbx"
        assert sip.inbound(NUMBER) == 0
        assert pbx.invites_to(NUMBER) == 1 and dr.invites_to(NUMBER) == 1
    finally:
        assert daemon.stop() == 0
