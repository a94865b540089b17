"""Smoke test of ``make bench-peers``: each peer starts in a lab and moves the route.

One gap trial per peer, with the fault each is built to catch quickly (carrier loss for
BFD and the mwan3 re-creation, whose blackhole figures take 10 s of bound or 100 s of
tracking), so the whole file stays under a minute and a broken peer driver (a keepalived
config it refuses, a bfdd that cannot reach its socket, a helper that dies) fails here and
not half an hour into the benchmark. keepalived's two variants share everything but four
lines of config, so one is enough.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.bench.peers.run import PEERS, missing_tools
from tests.bench.peers.scenarios import gap_trial
from tests.integration.conftest import lab_skip_reason

pytestmark = pytest.mark.lab


@pytest.mark.parametrize(("name", "fault"), [
    ("lifeline", "blackhole"),
    ("keepalived-fast", "blackhole"),
    ("bfd", "carrier"),
    ("mwan3", "carrier"),
    ("naive", "blackhole"),
])
def test_each_peer_moves_the_route_off_a_failed_primary(name: str, fault: str) -> None:
    reason = lab_skip_reason({"ping": "iputils-ping"})
    if reason is not None:
        pytest.skip(reason)
    kind = PEERS[name]
    missing = missing_tools(kind)
    if missing:
        pytest.skip(f"{name} needs {', '.join(missing)} (Debian packages keepalived, frr)")
    # A short work dir, not tmp_path: lifeline's API socket lies in it, and under pytest-xdist
    # tmp_path plus this test's name pass AF_UNIX's 107-byte limit on a socket path.
    with tempfile.TemporaryDirectory(prefix="ll-peers-") as work:
        trial = gap_trial(kind, fault, 1, Path(work))
    assert trial.error is None
    assert trial.moved_after is not None, trial.peer_log
    assert trial.moved_after < 5.0
    assert trial.forward_recovered and trial.forward_gap is not None
    if name == "lifeline":
        # The lab's stream is on an RTP port, which lifeline's default flush list covers:
        # its return path follows the new link. The other peers flush nothing.
        assert trial.recovered
