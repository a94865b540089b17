"""A TLS trunk at a real Kamailio 5.6 edge (reference cfg with WITH_TLS), on loopback.

The carrier's SBC is sipp over TCP behind the TLS relay of conftest (Debian's sipp has no
TLS); the edge verifies the relay's certificate against the test CA, as examples/kamailio/
tls.cfg asks for a real carrier. lifeline's actuator must find the edge's TLS socket on the
trunk's source address (its own port, 5061 style) and point the trunk's calls at it; the
call must complete over TLS with Via naming that socket. Processes die by PID in finalizers.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.actuators.sipedge.kamailio import KamailioActuator
from controller.actuators.sipedge.plan import DidRoute, EdgePlan, TrunkState
from tests.integration.conftest import SECOND_UPLINK, TlsRelay, Uas
from tests.integration.test_kamailio import call, invites
from tests.lab.kamailio import LabKamailio
from tests.lab.sipsite import header_values

SIPP_DIR = Path(__file__).resolve().parent / "sipp"
TLS_MODULE = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so")

pytestmark = [
    pytest.mark.skipif(shutil.which("kamailio") is None, reason="needs kamailio (Debian kamailio)"),
    pytest.mark.skipif(shutil.which("sipp") is None, reason="needs sipp (Debian sip-tester)"),
    pytest.mark.skipif(not TLS_MODULE.exists(),
                       reason="needs Kamailio's tls module (Debian kamailio-tls-modules)"),
]


@pytest.fixture
def edge(tmp_path: Path, certificate: tuple[Path, Path]) -> Iterator[LabKamailio]:
    """conftest's edge (so also its `actuator`) with TLS on, as edge-config writes it for a
    site with a TLS trunk: TLS sockets on both uplink addresses; as a client it trusts only
    the test CA (the relay's certificate)."""
    cert, key = certificate
    tls_cfg = tmp_path / "tls.cfg"
    text = (Path(__file__).resolve().parents[2] / "examples" / "kamailio" / "tls.cfg").read_text()
    text = (text.replace("/etc/kamailio/edge-cert.pem", str(cert))
                .replace("/etc/kamailio/edge-key.pem", str(key))
                .replace("/etc/ssl/certs/ca-certificates.crt", str(cert)))  # fmt: skip
    tls_cfg.write_text(text)
    k = LabKamailio(tmp_path / "kamailio", uplink_addrs=("127.0.0.1", SECOND_UPLINK),
                     tls_cfg=tls_cfg)
    try:
        k.start()
        yield k
    finally:
        k.stop()


async def test_outbound_call_over_a_tls_trunk_leaves_from_its_tls_socket(
    edge: LabKamailio,
    actuator: KamailioActuator,
    uas: Uas,
    tls_relay: TlsRelay,
    tmp_path: Path,
) -> None:
    sbc_port, sbc_log = uas("sbc", tcp=True, scenario="kam_uas.xml")
    relay = await tls_relay(sbc_port)
    trunk = TrunkState("tls-sbc", f"sip:127.0.0.1:{relay};transport=tls", 1, True,
                       source=SECOND_UPLINK)
    desired = EdgePlan(
        trunks=(trunk,),
        routes=(DidRoute("+390212345600", "+390212345699", "tls-sbc", None),),
    )
    steps, result = await actuator.reconcile(desired)
    assert result.ok and not steps.warnings, (result.errors, steps.warnings)
    assert await actuator.settings() == {"socket::tls-sbc": SECOND_UPLINK}

    code, err = await call(tmp_path, "kam_uac.xml", ("127.0.0.1", edge.pbx_port),
                           "+4930999000", "+390212345601")
    assert code == 0, err + edge.log_tail()
    (sent,) = invites(sbc_log)
    assert header_values(sent, "Via")[0].startswith(
        f"SIP/2.0/TLS {SECOND_UPLINK}:{edge.tls_port}")
    assert f"sip:{SECOND_UPLINK}:{edge.tls_port};transport=tls;" in \
        header_values(sent, "Record-Route")[0]
