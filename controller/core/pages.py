"""PURE: the critical alerts lifeline sends to Alertmanager itself, and when to send them.

Prometheus evaluates the rules of grafana/alerts/, but a site whose every uplink is down is
exactly the site Prometheus cannot scrape, and a Prometheus that is down pages nobody. So
lifeline posts the alerts that matter most straight to Alertmanager's v2 API as well:

- ``LifelineAllUplinksDown`` (page) while every link of the site is down;
- ``LifelineDidsUnroutable`` (page) while some DIDs have no healthy capable trunk;
- ``LifelinePowerOutage`` (page) while the site's power policy says outage (on battery past
  the grace time, or in DR for power): a site on battery may soon lose the Prometheus that
  watches it, or the uplink it is scraped over;
- ``LifelineFailedOver`` (ticket) for ten minutes after a route group changed link, unless
  the operator moved it (an override forced it there, or lifting one moved it back): the
  operator knows, and a ticket for every drill teaches people to ignore the ticket.

The first three carry the very label set the Prometheus rules give them (alertname, site,
severity, scope), so Alertmanager takes lifeline's copy and Prometheus' for one alert and
pages once. ``PageBook`` decides what to post: a new alert at once, a firing one again every
``resend`` seconds (Alertmanager resolves an alert nobody re-posts), a gone one once with its
end time (resolved; the power outage's a little later, ``OUTAGE_LINGER``). Wall-clock
times in, posts out; no I/O, no clock.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.core.health import HealthState
from controller.core.snapshot import Snapshot

__all__ = ["FAILOVER_SHOWN", "OUTAGE_LINGER", "Page", "PageBook", "Post", "pages_for"]

FAILOVER_SHOWN = 600.0  # seconds a LifelineFailedOver alert stays up after the switch
# The power outage's resolved post ends it this long after the policy did. It inhibits
# LifelineDidsOnDr, which Prometheus still fires from its last scrape until it scrapes and
# evaluates again: ended at once by lifeline, the outage would let that DR alert page as
# the incident closes. Prometheus' own resolved copy ends it sooner (Alertmanager takes
# a resolved end over a future one); without Prometheus it ends after this.
OUTAGE_LINGER = 120.0

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Page:
    """One alert as Alertmanager keys it (its label set) with its words."""

    labels: Labels
    annotations: Labels
    ends_at: float | None = None  # an event's alert ends by itself at this wall time
    linger: float = 0.0  # once gone, its resolved post ends it this much later (below)


@dataclass(frozen=True, slots=True)
class Post:
    """One alert to send: firing (ends_at None, or an event's end) or resolved (ended)."""

    labels: Labels
    annotations: Labels
    starts_at: float
    ends_at: float | None

    def document(self) -> dict[str, object]:
        """The alert in Alertmanager's v2 shape (times as RFC 3339, UTC)."""
        doc: dict[str, object] = {"labels": dict(self.labels),
                                  "annotations": dict(self.annotations),
                                  "startsAt": _rfc3339(self.starts_at)}
        if self.ends_at is not None:
            doc["endsAt"] = _rfc3339(self.ends_at)
        return doc


def _rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z")


def _page(alertname: str, site: str, severity: str, scope: str, summary: str,
          description: str, ends_at: float | None = None, linger: float = 0.0,
          **more: str) -> Page:
    """An alert with the labels the rules give it and the runbook section of its name."""
    labels = tuple(sorted({"alertname": alertname, "site": site, "severity": severity,
                           "scope": scope, **more}.items()))
    return Page(labels, (("summary", summary), ("description", description),
                         ("runbook", f"docs/alerts.md#{alertname.lower()}")), ends_at,
                linger)


def pages_for(snap: Snapshot, failovers: Mapping[str, tuple[str, str, float]]) -> list[Page]:
    """The alerts ``snap`` calls for now; ``failovers``: group -> (from, to, wall time) of
    its last switch (PageBook keeps them)."""
    site = snap.site
    out: list[Page] = []
    if snap.links and all(k.state is HealthState.DOWN for k in snap.links):
        out.append(_page(
            "LifelineAllUplinksDown", site, "page", "site", f"{site} has no working uplink",
            f"Every uplink of site {site} is down: the site is cut off, calls in and out "
            "fail unless the carriers reroute them. (Sent by lifeline itself.)"))
    plan = snap.plan
    if plan is not None and plan.unroutable_numbers > 0:
        n = plan.unroutable_numbers
        ranges = ", ".join(str(r) for r in plan.unroutable)
        out.append(_page(
            "LifelineDidsUnroutable", site, "page", "dids",
            f"{n} DIDs of {site} cannot be reached",
            f"{n} numbers ({ranges}) have no healthy capable trunk: calls to and from them "
            "fail now. `lifeline status` says why each trunk was left. (Sent by lifeline "
            "itself.)"))
    power = snap.power
    if power is not None and power.outage:
        out.append(_page(
            "LifelinePowerOutage", site, "page", "power",
            f"{site} is on battery: mains is lost and the generator did not take over",
            _power_words(site, power.dr), linger=OUTAGE_LINGER))
    for group, (old, new, at) in sorted(failovers.items()):
        out.append(_page(
            "LifelineFailedOver", site, "ticket", "site",
            f"{site}: route group {group} failed over from {old} to {new}",
            f"lifeline moved route group {group} of site {site} from link {old} to {new}; "
            "`lifeline events` tells why.", ends_at=at + FAILOVER_SHOWN, group=group))
    return out


def _power_words(site: str, dr: bool) -> str:
    """The outage's description: by phase only (not the policy's running reason, whose
    clock ticks each cycle), so the alert is re-posted when DR begins, not every cycle."""
    if dr:
        return (f"Site {site} is on battery and its batteries are running out: every DID "
                "range that names a DR destination is delivered there; agents must work "
                "from the DR site. The numbers come back once mains has been stable for "
                "the hold-down. `lifeline status` shows each UPS. (Sent by lifeline itself.)")
    return (f"Site {site} has run on its UPS batteries past the grace time. Before they run "
            "out (LB raised, or the runtime under the margin) lifeline moves every DID range "
            "that names a DR destination there. `lifeline status` shows each UPS's charge "
            "and runtime. (Sent by lifeline itself.)")


@dataclass
class _Sent:
    page: Page
    starts_at: float
    sent_at: float | None = None  # None: not delivered yet


@dataclass
class PageBook:
    """What was posted, and what to post next (``due``); ``delivered`` after a good post."""

    resend: float = 60.0
    active: dict[Labels, _Sent] = field(default_factory=dict)
    ended: dict[Labels, Post] = field(default_factory=dict)  # resolved, not delivered yet
    last_applied: dict[str, tuple[str, ...]] = field(default_factory=dict)
    failovers: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    forced: dict[str, str] = field(default_factory=dict)  # group -> link an override holds
    released: dict[str, str] = field(default_factory=dict)  # lifted, the move back pending

    def note_groups(self, snap: Snapshot, now: float) -> None:
        """Remember each group's link; a change from one link to another is a failover,
        except a move the operator made: onto the link an applied route override names,
        or away from it when the override was lifted (the policy deciding again). Both
        still count in lifeline_failovers_total; only the ticket is left out. An override
        that stops applying (its link went down) is not a lift: that move is a failover."""
        held = {o.target for o in snap.overrides if o.kind == "route"}
        forced = {o.target: o.value for o in snap.overrides
                  if o.kind == "route" and o.applied and o.value}
        for g in snap.groups:
            before = self.last_applied.get(g.name)
            if g.name not in held and g.name in self.forced:  # lifted or lapsed
                self.released[g.name] = self.forced[g.name]
            if before and g.applied and before != g.applied:
                operator = (g.applied == (forced.get(g.name),)
                            or self.released.get(g.name) == ",".join(before))
                if not operator:
                    self.failovers[g.name] = (",".join(before), ",".join(g.applied), now)
                self.released.pop(g.name, None)
            elif g.decided == g.applied:  # nothing pending: the lift moved nothing
                self.released.pop(g.name, None)
            if g.applied:
                self.last_applied[g.name] = g.applied
        self.forced = forced
        for group, (_, _, at) in list(self.failovers.items()):
            if now >= at + FAILOVER_SHOWN:
                del self.failovers[group]

    def due(self, pages: list[Page], now: float) -> list[Post]:
        """Posts to send now for the alerts ``pages`` says are up."""
        want = {p.labels: p for p in pages}
        for key, gone in list(self.active.items()):
            if key not in want:
                del self.active[key]
                self.ended[key] = Post(key, gone.page.annotations, gone.starts_at,
                                       now + gone.page.linger)
        posts = list(self.ended.values())
        for key, page in want.items():
            was = self.active.get(key)
            sent = was
            if was is None or was.page.annotations != page.annotations:
                # New, or its words changed (e.g. more DIDs): post it now, same start.
                sent = self.active[key] = _Sent(page, was.starts_at if was else now)
            assert sent is not None
            if sent.sent_at is None or now - sent.sent_at >= self.resend:
                posts.append(Post(key, page.annotations, sent.starts_at, page.ends_at))
        return posts

    def delivered(self, posts: list[Post], now: float) -> None:
        """Alertmanager took ``posts``: resend firing ones only after ``resend``."""
        for post in posts:
            self.ended.pop(post.labels, None)
            sent = self.active.get(post.labels)
            if sent is not None and post.annotations == sent.page.annotations:
                sent.sent_at = now
