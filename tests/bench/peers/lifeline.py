"""lifeline as a peer of the side-by-side benchmark: the real daemon at its defaults.

"At its defaults" means the config says what an operator must say (the two links, their
gateways and interfaces, the far targets to probe: the lab's three, 192.0.2.1-3) and leaves
to the daemon everything it has a default for: probe interval, timeout, reliability, health
thresholds, hold-down, the conntrack flush list. So the row follows whatever the defaults are
on the commit that runs it. The gateway is not a target: with the default reliability of 1 it
would answer through an ISP blackhole and keep the link up (the lab's own benches set
reliability 2 for that reason; here nothing is tuned).
"""

from __future__ import annotations

from pathlib import Path

from controller.core.health import HealthParams
from tests.bench.peers.base import BACKUP, PRIMARY, PeerKind
from tests.lab.lifelined import LifelineProcess
from tests.lab.topology import Lab

__all__ = ["KIND", "LifelinePeer"]


class LifelinePeer:
    """``LifelineProcess`` with the defaults config; the daemon makes its own tables, rules
    and routes, so the site gets nothing else."""

    def __init__(self) -> None:
        self._daemon: LifelineProcess | None = None

    def start(self, lab: Lab, workdir: Path) -> None:
        self._daemon = LifelineProcess(
            lab, workdir / "lifeline", links=[PRIMARY, BACKUP],
            far_targets=[str(t) for t in lab.targets], gateway_target=False,
            probe_defaults=True)
        self._daemon.start()

    def stop(self) -> None:
        if self._daemon is not None:
            self._daemon.stop()

    def log_tail(self) -> str:
        return self._daemon.log()[-4000:] if self._daemon is not None else ""


def _settings() -> str:
    hp = HealthParams()
    return (f"lifeline defaults (probe round {hp.interval:g} s, down after {hp.down_after}, "
            f"hold-down {hp.hold_down:g} s at the time of the run); targets 192.0.2.1-3, "
            "reliability and conntrack flush list at their defaults")


KIND = PeerKind(
    name="lifeline",
    label="lifeline (defaults)",
    settings=_settings(),
    make=LifelinePeer,
    period=HealthParams().interval,
    move_bound=10.0,
)
