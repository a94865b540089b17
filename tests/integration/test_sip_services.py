"""The site's software end to end in the SIP site lab: the CRM the agents need (an HTTPS
service on the site's own loopback, tests.lab.servicethread, checked against the lab CA)
answers 500, so the PBX that needs it counts as down and a carrier's real call through
Kamailio to a DID lands on the DR PBX (a sipp UAS on the LAN host); the CRM mended, the
DIDs come back to the PBX after the CRM's hold-down. The daemon, the edge, the carrier and
the destinations are the real ones. Timings are loose bounds (figures: bench_services)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import SIP_LAB
from tests.integration.test_sip_e2e import dids_lookup
from tests.lab.httpservice import make_pki, openssl_missing
from tests.lab.servicethread import ServiceThread
from tests.lab.sipsite import DR_PORT, SipSite, plan_ready
from tests.lab.topology import Lab

pytestmark = [*SIP_LAB, pytest.mark.skipif(openssl_missing() is not None,
                                            reason=str(openssl_missing()))]

NUMBER = "+390212345601"  # carrier A's range
OTHER = "+390298765401"  # carrier B's range: the same PBX, so it moves too
HOLD_DOWN = 5.0


def _pbx_counted_down(st: dict[str, Any]) -> bool:
    return any(d["name"] == "pbx" and d.get("service_down") for d in st["destinations"])


def test_crm_500_sends_the_pbx_dids_to_the_dr_pbx_and_back(lab: Lab, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    crm = ServiceThread(lab.site, tls=pki.valid)
    daemon = None
    try:
        sip = SipSite(lab, tmp_path / "sip").start()
        dr = sip.start_uas("dr", lab.lan, str(lab.lan_host_addr), DR_PORT)
        pbx = sip.peers["pbx"]

        def with_crm(config: dict[str, Any]) -> None:
            config["services"] = [{
                "name": "crm", "http": {"url": crm.url(), "ca_file": str(pki.ca)},
                "interval": "1s", "timeout": "500ms", "recheck_interval": "500ms",
                "thresholds": {"down_after": 3, "hold_down": f"{HOLD_DOWN:g}s"},
                "needed_by": ["pbx"]}]

        daemon = sip.start_daemon(tmp_path / "state", edit=with_crm)
        daemon.wait_for(lambda st: any(d["name"] == "dr" and d["state"] == "up"
                                       for d in st["destinations"])
                        and any(s["name"] == "crm" and s["state"] == "up"
                                for s in st["services"]), 20, "DR and the CRM up")
        assert dids_lookup(daemon, NUMBER)[1]["destination"] == "pbx"
        st = daemon.wait_for(lambda st: True, 5)
        (svc,) = st["services"]
        assert svc["code"] == 200 and 25 < svc["cert_days_left"] <= 30, svc

        crm.set(status=500)
        broke = time.monotonic()
        daemon.wait_for(lambda st: _pbx_counted_down(st) and plan_ready(st), 15,
                        "the PBX counted down for the CRM, the plan pushed")
        took = time.monotonic() - broke
        for number in (NUMBER, OTHER):
            code, doc = dids_lookup(daemon, number)
            assert code == 200 and doc["destination"] == "dr", doc
            assert doc["disaster_recovery"] is True and doc["dr_cause"] == "service", doc
            assert "pbx down: needs crm, which is down: HTTP 500" in doc["reason"], doc
        assert sip.inbound(NUMBER) == 0
        assert sip.inbound(OTHER, sbc="carrier-b-sbc1") == 0
        assert dr.invites_to(NUMBER) == 1 and pbx.invites_to(NUMBER) == 0
        assert dr.invites_to(OTHER) == 1 and pbx.invites_to(OTHER) == 0
        # At most an interval plus two rechecks, a cycle and a push: 10 s is generous.
        assert took < 10, took

        crm.set(status=200)
        mended = time.monotonic()
        daemon.wait_for(lambda st: not _pbx_counted_down(st) and plan_ready(st), 20,
                        "the PBX back after the CRM's hold-down, the plan pushed")
        back = time.monotonic() - mended
        assert back >= HOLD_DOWN - 1.0, back  # the CRM's hold-down, not at once
        code, doc = dids_lookup(daemon, NUMBER)
        assert doc["destination"] == "pbx" and doc["dr_cause"] is None, doc
        assert sip.inbound(NUMBER) == 0
        assert pbx.invites_to(NUMBER) == 1 and dr.invites_to(NUMBER) == 1
        metrics = daemon.metrics_text()
        assert 'lifeline_service_cert_expiry_timestamp_seconds{service="crm"}' in metrics
        failed = re.search(r'^lifeline_service_checks_total\{result="bad_status",'
                           r'service="crm"\} (\S+)$', metrics, re.M)
        assert failed is not None and float(failed.group(1)) >= 3, metrics
        print(f"\nCRM 500 -> DIDs on DR and pushed in {took:.2f} s; back {back:.2f} s after "
              f"it was mended (hold-down {HOLD_DOWN:g} s)")
    finally:
        try:
            if daemon is not None:
                assert daemon.stop() == 0
        finally:
            crm.close()
