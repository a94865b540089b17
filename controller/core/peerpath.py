"""PURE: a probed peer's path, and whether a failed probe is evidence against the peer.

A trunk's OPTIONS leave through one link: its pinned link, or the one the site's route uses
(a destination's too: a disaster-recovery platform is across the internet, and a PBX on
the LAN loses nothing by waiting for the first route). At start the kernel has no route
until lifeline has proven a link up and installed it, so every OPTIONS sent before then
fails on the site, not at the carrier; counting those would take every trunk down at every
start and journal, export and page its DIDs as unroutable until the hold-down passed.

The rules, in the operator's words:

1. A peer's path exists while the link its probes leave through is known to work: the
   link of the route lifeline applied (or adopted at a restart), or a pinned trunk's own
   link, with that link's health up or degraded. A link not proven up yet, or down, is no
   path (a trunk behind a down link is down by didplan's rule 1 anyway).
2. A peer never judged (its health has never left unknown) counts a failed probe only if
   the probe was sent while its path existed; until then it stays unknown, which the DID
   plan treats as usable in the configured order. An answered probe always counts: it
   proves the path and the peer.
3. Once judged up or down, every probe counts, path or not, exactly as before.

No I/O and no clock: the daemon passes the time in, once a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from controller.core.health import HealthState

__all__ = ["PeerPath", "counts", "follow"]

_WORKING = (HealthState.UP, HealthState.DEGRADED)


@dataclass(frozen=True, slots=True)
class PeerPath:
    """Where a peer's probes leave now, and since when that has worked."""

    link: str | None  # the link its probes leave through; None: no route applied yet
    since: float | None  # when the path came to exist; None: it does not exist now
    why: str = ""  # while it does not exist: why, in the operator's words

    @property
    def exists(self) -> bool:
        return self.since is not None


def follow(previous: PeerPath | None, now: float, link: str | None,
           links: Mapping[str, HealthState]) -> PeerPath:
    """The path at ``now`` of a peer whose probes leave through ``link`` (rule 1), given
    each link's health; ``previous`` is what the last call said, so a path that went on
    existing keeps its start (a failover from one working link to another keeps it too:
    the probes never lacked a way out)."""
    if link is None:
        return PeerPath(None, None, "no route applied yet")
    state = links.get(link, HealthState.UNKNOWN)
    if state not in _WORKING:
        word = "not proven up yet" if state is HealthState.UNKNOWN else state.value
        return PeerPath(link, None, f"its link {link} is {word}")
    if previous is not None and previous.since is not None:
        return PeerPath(link, previous.since)
    return PeerPath(link, now)


def counts(ok: bool, judged: bool, sent_at: float, path: PeerPath | None) -> bool:
    """Whether a probe sent at ``sent_at`` (answered: ``ok``) is evidence about a peer
    (``judged``: its health has left unknown at least once): rules 2 and 3."""
    if ok or judged:
        return True
    return path is not None and path.since is not None and sent_at >= path.since
