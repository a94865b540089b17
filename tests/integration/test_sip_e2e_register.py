"""Registration continuity end to end: after a fibre failover the edge registers again over the
new link.

The lab site of ``test_sip_e2e`` plus a registration-based trunk (``lab.sipsite``:
``config_dict(registration=True)``, a sipp digest registrar in ``inet``). Once the daemon has
the trunk registered through Kamailio's uac record over fibre-a, fibre-a is blackholed: the
route moves to fibre-b, the daemon asks the edge to refresh its registrations, and the
registrar must receive a NEW authorized REGISTER (a Call-ID it has not seen) from the site's
fibre-b address, and Kamailio must hold the record as registered again. Which link a
REGISTER took is read from iptables counters in ``inet`` (sipp's message log has no source
address; Kamailio's carrier socket is 0.0.0.0, so its Via does not tell either). The new
REGISTER's Contact must name the fibre-b address too: lifeline passes the active link's
source as the uac record's contact_addr. Timings are loose bounds.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.actuators.sipedge.kamailio import REG_FLAG_REGISTERED, REG_UUID_PREFIX
from exporters.statusview import request_maintenance
from tests.lab.httpservice import make_pki
from tests.lab.lifelined import LifelineProcess
from tests.lab.servicethread import ServiceThread
from tests.lab.sipsite import (
    REGISTRAR_TRUNK,
    REGISTRAR_USER,
    SipPeer,
    SipSite,
    sip_site_skip_reason,
    site_ready,
)
from tests.lab.topology import Lab
from tests.lab.wait import until

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root (network namespaces)"),
    pytest.mark.skipif(sip_site_skip_reason() is not None,
                       reason=str(sip_site_skip_reason())),
]

UUID = REG_UUID_PREFIX + REGISTRAR_TRUNK

# Runs inside the site namespace, where Kamailio's JSON-RPC listens on 127.0.0.1.
_REG_DUMP = """
import json, sys, urllib.request
body = json.dumps({"jsonrpc": "2.0", "method": "uac.reg_dump", "id": 1}).encode()
req = urllib.request.Request(sys.argv[1], data=body, method="POST",
                             headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=3) as resp:
    print(resp.read().decode())
"""


def reg_record(lab: Lab, sip: SipSite) -> dict[str, Any] | None:
    """Kamailio's uac record of the registration trunk (uac.reg_dump), or None."""
    out = lab.run(lab.site, [sys.executable, "-c", _REG_DUMP, sip.rpc_url]).stdout
    result = json.loads(out).get("result") or []
    for rec in result if isinstance(result, list) else [result]:
        if isinstance(rec, dict) and rec.get("l_uuid") == UUID:
            return rec
    return None


def registered(lab: Lab, sip: SipSite) -> bool:
    rec = reg_record(lab, sip)
    return rec is not None and bool(int(rec.get("flags", 0)) & REG_FLAG_REGISTERED)


def call_id(message: str) -> str:
    for line in message.splitlines():
        if line.lower().startswith(("call-id:", "i:")):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no Call-ID in {message!r}")


def edge_registers(registrar: SipPeer) -> list[str]:
    """Authorized REGISTERs of the edge's uac record (not lifeline's own REGISTER check)."""
    return registrar.registers(contact_user=UUID)


@pytest.fixture
def site(lab: Lab, tmp_path: Path) -> Iterator[tuple[Lab, SipSite, LifelineProcess]]:
    """Telephony, the registrar and the daemon with the registration trunk; all trunks up and
    the edge registered over fibre-a. The lab kills every process by PID."""
    # Every documented series must be served: a site service's too (an HTTPS one on the
    # site's loopback, which no destination needs: it only alerts).
    pki = make_pki(tmp_path / "pki")
    wiki = ServiceThread(lab.site, tls=pki.valid)
    try:
        sip = SipSite(lab, tmp_path / "sip").start()
        sip.start_registrar()

        def has_registration_trunk(config: dict[str, Any]) -> None:
            assert REGISTRAR_USER in json.dumps(config)
            # lifeline's own paging too. Nothing listens there (the site's loopback): its
            # posts fail and are counted.
            config["alertmanager"] = {"urls": ["http://127.0.0.1:9"], "timeout": "1s"}
            config["services"] = [{"name": "wiki", "interval": "1s", "timeout": "500ms",
                                   "http": {"url": wiki.url(), "ca_file": str(pki.ca)}}]

        daemon = sip.start_daemon(tmp_path / "state", registration=True,
                                  edit=has_registration_trunk,
                                  what="trunks up (the registration trunk too), plan pushed")
        yield lab, sip, daemon
    finally:
        wiki.close()


def fail_over(site: tuple[Lab, SipSite, LifelineProcess]) -> tuple[list[str], float]:
    """Check the registration over fibre-a, blackhole fibre-a, wait (bounded) for a new
    authorized REGISTER from the fibre-b address; (those new REGISTERs, seconds it took)."""
    lab, sip, daemon = site
    registrar = sip.peers[REGISTRAR_TRUNK]
    until(lambda: bool(edge_registers(registrar)) and registered(lab, sip), 20, 0.5,
          "the edge registered over fibre-a")
    assert sip.registrar_packets_from("fibre-a") > 0
    assert sip.registrar_packets_from("fibre-b") == 0
    seen = {call_id(m) for m in edge_registers(registrar)}

    def reg_trunk() -> dict[str, Any]:
        st = daemon.status()
        assert st is not None
        return dict(next(t for t in st["trunks"] if t["name"] == REGISTRAR_TRUNK))

    # Not status "registered": lifeline's own REGISTER check runs once a minute and its first
    # run, at start, comes before any route exists; the edge's record is what is checked.
    assert reg_trunk()["state"] == "up"

    fault_at = time.monotonic()
    lab.faults.blackhole("fibre-a")
    daemon.wait_active(["fibre-b"], timeout=15)
    fresh: list[str] = []

    def new_register_via_b() -> bool:
        fresh[:] = [m for m in edge_registers(registrar) if call_id(m) not in seen]
        return bool(fresh) and sip.registrar_packets_from("fibre-b") > 0

    until(new_register_via_b, 30, 0.2, "a new authorized REGISTER from the site's fibre-b address")
    return fresh, time.monotonic() - fault_at


def test_fibre_failover_registers_again_over_fibre_b(
    site: tuple[Lab, SipSite, LifelineProcess],
) -> None:
    lab, sip, daemon = site
    fresh, via_b = fail_over(site)
    assert fresh
    until(lambda: registered(lab, sip), 15, 0.5, "Kamailio holds the record registered again")
    assert "lab-registrar-secret" not in daemon.log_path.read_text(errors="replace")
    print(f"\nfibre-a blackholed -> new REGISTER via fibre-b after {via_b:.2f} s")
    daemon.wait_for(site_ready, 20, "everything ready on fibre-b")


def test_new_register_advertises_fibre_b_contact(
    site: tuple[Lab, SipSite, LifelineProcess],
) -> None:
    lab, _, _ = site
    fresh, _ = fail_over(site)
    contact = f"<sip:{UUID}@{lab.link('fibre-b').site_addr}:"
    assert any(contact in m for m in fresh), fresh[-1]


def test_every_documented_metric_is_served_after_a_failover(
    site: tuple[Lab, SipSite, LifelineProcess],
) -> None:
    """The tell side cannot drift from the code: after a fibre failover (links, trunks with a
    registration, DIDs, the Kamailio edge all in play) the real daemon serves every series
    docs/metrics.md lists, counters at their first events, and no ``_created`` series."""
    from prometheus_client.parser import text_string_to_metric_families

    from exporters.metrics import CATALOG, POWER_WHEN, RECORDINGS_WHEN

    _, _, daemon = site
    fail_over(site)
    daemon.wait_for(site_ready, 20, "everything ready on fibre-b")
    # An operator override is held (a trunk in maintenance is one), so its series are served.
    code, _ = asyncio.run(request_maintenance(daemon.socket, "carrier-a-sbc2", True,
                                              "metrics test"))
    assert code == 200
    daemon.wait_for(lambda st: bool(st["overrides"]), 5, "the override in the status")
    documented = re.findall(r"^\| `(lifeline_[a-z_]+)` \|", (
        Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text(), re.M)
    assert sorted(documented) == sorted(m.name for m in CATALOG)
    text = daemon.metrics_text()
    assert "_created" not in text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    # prometheus-client's parser names a counter family without its _total suffix
    served = {name for name, f in families.items() if f.samples}
    served |= {f"{name}_total" for name, f in families.items()
               if f.type == "counter" and f.samples}
    # The power series need a UPS: tests/integration/test_power_daemon.py checks them.
    power = {m.name for m in CATALOG if m.when in POWER_WHEN}
    # The recordings series need a recordings section (a store and its backups), which
    # this lab has not: tests/unit/test_recordings_tell.py reads each off a snapshot, and
    # the recordings runtime's own test (coming next) scrapes them off a daemon.
    recordings = {m.name for m in CATALOG if m.when in RECORDINGS_WHEN}
    assert set(documented) - served - power - recordings == set()
    assert "process_resident_memory_bytes" in families
    failovers = {(s.labels["from"], s.labels["to"]): s.value
                 for s in families["lifeline_failovers"].samples if s.name.endswith("_total")}
    assert failovers[("fibre-a", "fibre-b")] >= 1
