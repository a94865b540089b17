"""PURE: a probed peer's path, whether a failed probe is evidence, and the start-up hold.

A trunk's OPTIONS leave through one link: its pinned link, or the one the site's route uses
(a destination's too: a disaster-recovery platform is across the internet, and a PBX on
the LAN loses nothing by waiting for the first route). At start the kernel has no route
until lifeline has proven a link up and installed it, so every OPTIONS sent before then
fails on the site, not at the carrier; counting those would take every trunk down at every
start and journal, export and page its DIDs as unroutable until the hold-down passed.

The rules, in the operator's words:

1. A path exists while the link it leaves through is known to work: the link of the route
   lifeline applied (or adopted at a restart), or a pinned trunk's own link, with that
   link's health up or degraded. A link not proven up yet, or down, is no path (a trunk
   behind a down link is down by didplan's rule 1 anyway).
2. A peer never judged (its health has never left unknown) counts a failed probe only if
   the probe was sent while its path existed; until then it stays unknown, which the DID
   plan treats as usable. An answered probe always counts: it proves the path and the peer.
3. Once judged up or down, every probe counts, path or not, exactly as before.
4. Patience has an end: PATIENCE after lifeline began noting paths, every probe counts,
   unless the path is missing because its link (for the route: every link) is known down.
   A path missing for another reason by then is not coming from lifeline (a foreign route
   it may not replace, a dry run), and is worth a page; a link that is down is paged for
   already, and its trunks count as down in the plan (didplan's rule 1), so they wait
   for their first verdict until it is back (slow PPPoE at boot is no carrier outage).
5. At start the plan keeps the configured order: while a trunk is *pending* (never judged,
   and its path not there yet or younger than the time a healthy trunk takes to be judged,
   within PATIENCE), a DID range in which it comes before the plan's choice stays on its
   first trunk that is not down (didplan's ``waiting``), so a range does not move to its
   second trunk because that one happened to be judged first, and move back a moment
   later. Nothing waits for a trunk that is down, in maintenance, tripped, or whose link is
   down (no path is coming soon; didplan counts it down): such a trunk is left at once.
6. A lost probe is the link's evidence before it is the peer's. A probe lost over a link
   counts against the peer once a round of the link's own probes sent no earlier was good
   (enough of its targets answered: the link worked then, the peer did not answer). It
   is dropped if the link is judged down before that: the link failed, not the peer, and
   a fibre cut must not take every trunk down, and with them every DID, while the route
   moves to the next link. With neither after the link's own judging time (its probes
   stalled, or it limps on without a verdict), it counts anyway: a peer's failure is
   never held for long. Answered probes wait behind a held loss, so the peer's health
   still sees its probes in order.

No I/O and no clock: the daemon passes the time in, once a cycle.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from controller.core.health import HealthState

__all__ = ["PATIENCE", "LinkProof", "PeerPath", "counts", "follow", "judge_time", "loss_verdict",
           "pending"]

PATIENCE = 30.0  # seconds after the first noted paths: then every probe counts (rule 4)

_WORKING = (HealthState.UP, HealthState.DEGRADED)


@dataclass(frozen=True, slots=True)
class PeerPath:
    """Where probes leave now, and since when that has worked."""

    link: str | None  # the link they leave through; None: no route applied yet
    since: float | None  # when the path came to exist; None: it does not exist now
    why: str = ""  # while it does not exist: why, in the operator's words
    link_down: bool = False  # it does not exist because its link (every link) is down

    @property
    def exists(self) -> bool:
        return self.since is not None


def follow(previous: PeerPath | None, now: float, link: str | None,
           links: Mapping[str, HealthState]) -> PeerPath:
    """The path at ``now`` through ``link`` (rule 1), given each link's health;
    ``previous`` is what the last call said, so a path that went on existing keeps its
    start (a failover from one working link to another keeps it too: the probes never
    lacked a way out)."""
    if link is None:
        dark = bool(links) and all(s is HealthState.DOWN for s in links.values())
        return PeerPath(None, None, "every link is down" if dark else "no route applied yet",
                        link_down=dark)
    state = links.get(link, HealthState.UNKNOWN)
    if state not in _WORKING:
        word = "not proven up yet" if state is HealthState.UNKNOWN else state.value
        return PeerPath(link, None, f"its link {link} is {word}",
                        link_down=state is HealthState.DOWN)
    if previous is not None and previous.since is not None:
        return PeerPath(link, previous.since)
    return PeerPath(link, now)


def counts(ok: bool, judged: bool, sent_at: float, path: PeerPath | None,
           patience_end: float | None) -> bool:
    """Whether a probe sent at ``sent_at`` (answered: ``ok``) is evidence about a peer
    (``judged``: its health has left unknown at least once): rules 2 to 4.
    ``patience_end``: PATIENCE after the first noted paths (None: none noted yet)."""
    if ok or judged:
        return True
    if path is not None and path.since is not None and sent_at >= path.since:
        return True
    if path is not None and path.link_down:
        return False
    return patience_end is not None and sent_at >= patience_end


def judge_time(rise: int, interval: float, timeout: float) -> float:
    """How long a healthy peer may take to be judged up once its path exists: ``rise``
    answers in a row, the wait for the first of them and its timeout, doubled for the
    phase of its schedule and the cycle that notices."""
    return 2.0 * ((rise + 1) * interval + timeout)


def pending(judged: bool, path: PeerPath | None, now: float, judging: float,
            patience_end: float | None) -> bool:
    """Whether a peer still waits for its first verdict at start (rule 5): never judged,
    its path not there yet (its link not down) or younger than ``judging``
    (``judge_time``), and within patience."""
    if judged or patience_end is None or now >= patience_end:
        return False
    if path is not None and path.link_down:
        return False
    return path is None or path.since is None or now < path.since + judging


@dataclass(frozen=True, slots=True)
class LinkProof:
    """What a link's own probes say, for rule 6."""

    state: HealthState
    answered_sent: float | None  # send time of its latest good round (reliability met)
    judging: float  # how long its probes may take to judge it down


def loss_verdict(sent_at: float, now: float,
                 proof: LinkProof | None) -> Literal["count", "drop", "wait"]:
    """Rule 6 for a probe sent at ``sent_at`` and lost over a link (``proof``: what that
    link's probes say; None: no link known, the loss counts as it always did)."""
    if proof is None:
        return "count"
    if proof.answered_sent is not None and proof.answered_sent >= sent_at:
        return "count"
    if proof.state is HealthState.DOWN:
        return "drop"
    if now - sent_at >= proof.judging:
        return "count"
    return "wait"
