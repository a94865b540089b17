"""Wires sense -> decide -> act -> tell for SIP trunks, destinations and the DID plan.

Each trunk (a carrier SBC) and each destination (the PBX, the DR platform) is a ``sip``
probe spec, run by a ``probes.scheduler.RecheckScheduler`` on its own interval (sooner
while it looks dead); the samples feed the same pure health machine links use
(hysteresis, hold-down, flap damping). A peer never judged ignores its failed probes sent
before its path existed, and at start the plan keeps each range's configured order until
the trunks before it are judged (controller.core.peerpath: before the first route, a lost
OPTIONS is no evidence against a carrier). Every control cycle the pure DID policy turns trunk,
link and destination health into a plan per DID range, the plan goes to the SIP edge
drivers (Kamailio's JSON-RPC, a webhook, a command), the journal says what changed, and
``snapshot`` gives the daemon's snapshot its telephony part. The daemon owns the loop;
this module owns the telephony state.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from controller.actuators.sipedge.drivers import SipEdge
from controller.actuators.sipedge.plan import DidRoute, EdgePlan, TrunkState, named_trunks
from controller.config import Config, Destination, Register, Trunk
from controller.core.didplan import (
    DidPlan,
    TrunkView,
    compute_plan,
    diff,
    effective_trunk_state,
)
from controller.core.e164 import NumberRange
from controller.core.edgesignal import EdgeSignal
from controller.core.health import Health, HealthParams, HealthState, ProbeRound, Transition
from controller.core.overrides import MAX_DURATION, Override
from controller.core.peerpath import (
    PATIENCE,
    LinkProof,
    PeerPath,
    counts,
    follow,
    judge_time,
    loss_verdict,
    pending,
)
from controller.core.services import DestinationVerdict, ServiceView, effective_destinations
from controller.core.snapshot import PUSH_BUCKETS, EdgeSnap, PeerSnap, Tally
from controller.runtime.journal import Journal
from controller.runtime.maintenance import MaintenanceAnswer
from controller.runtime.overridebook import OverrideBook
from probes.resolve import resolved
from probes.sample import ErrorKind, ProbeSpec, Sample
from probes.scheduler import RecheckScheduler
from probes.sip import SipResult, SipTarget, register_check

log = logging.getLogger("lifeline.sip")

REGISTER_EVERY = 60.0
REGISTER_RETRY = 5.0


def read_password(reg: Register) -> str:
    """The registration password, from its file or environment variable, read at use so a
    rotated secret is picked up; never logged."""
    if reg.password_file is not None:
        return reg.password_file.read_text().rstrip("\r\n")
    assert reg.password_env is not None
    value = os.environ.get(reg.password_env)
    if value is None:
        raise ValueError(f"environment variable {reg.password_env} is not set")
    return value


def _registration_fields(reg: Register | None) -> dict[str, Any]:
    """TrunkState's registration fields for the edge; a password that cannot be read now is
    left out (the REGISTER then fails its challenge and the trunk's probe reports why)."""
    if reg is None:
        return {}
    try:
        password: str | None = read_password(reg)
    except (OSError, ValueError):
        password = None
    return {"register_user": reg.user, "register_domain": reg.domain,
            "register_password": password, "register_expires": int(reg.expires)}


@dataclass
class Peer:
    """A probed SIP peer: a trunk or a destination, with its own health."""

    name: str
    spec: ProbeSpec  # its OPTIONS probe, run by a RecheckScheduler
    interval: float
    timeout: float
    health: Health
    last: Sample | None = None
    scheduler: RecheckScheduler | None = None
    # The edge signal: the edge's failed calls on this trunk (controller.core.edgesignal).
    edge_signal: EdgeSignal = field(default_factory=EdgeSignal)
    register: Register | None = None
    registered: SipResult | None = None
    reg_task: asyncio.Task[None] | None = None
    recheck: float = 0.2
    # Failed probes not counted: sent before its path existed, while never judged.
    uncounted: int = 0
    # Outcomes held until the link a lost one left through has spoken (peerpath rule 6):
    # (sent at, outcome, that link).
    held: deque[tuple[float, Sample, str | None]] = field(default_factory=deque)
    dropped: int = 0  # lost probes dropped since start: their link failed, not the peer

    @property
    def target(self) -> SipTarget:
        return SipTarget.from_spec(self.spec)


def _is_down(health: Health) -> bool:
    return health.state is HealthState.DOWN


def _judged(health: Health) -> bool:
    """Whether health has ever left unknown (every move sets ``since``)."""
    return health.since is not None


class Telephony:
    """Trunk and destination probing, the DID plan, and its push to the SIP edge."""

    def __init__(self, cfg: Config, journal: Journal, tally: Tally,
                 edges: list[SipEdge], book: OverrideBook | None = None) -> None:
        self.cfg = cfg
        self.journal = journal
        # The operator's overrides (trunk maintenance; the config's is read from cfg).
        self.book = book if book is not None else OverrideBook(None)
        self.tally = tally
        self.edges = edges
        self.entries = cfg.did_entries()
        self.trunks: dict[str, Peer] = {t.name: self._trunk_peer(t) for t in cfg.trunks}
        self.destinations: dict[str, Peer] = {
            d.name: self._destination_peer(d) for d in cfg.destinations
        }
        self.plan: DidPlan | None = None
        # Each trunk's state as the plan counts it, and each destination's, as of the last
        # decide: what the override assessment reads (controller.core.overrides.assess).
        self.effective: dict[str, tuple[HealthState, str]] = {}
        self.destination_states: dict[str, HealthState] = {}
        # Each destination's verdict once the services it needs are weighed (decide).
        self.verdicts: dict[str, DestinationVerdict] = {}
        self.edge_plan: EdgePlan | None = None
        self.pushed: dict[str, EdgePlan] = {}
        self.push_errors: dict[str, str] = {}
        self._unroutable: set[str] = set()
        # Paths by the link they leave through, None for the route's (note_paths).
        self._paths: dict[str | None, PeerPath] = {}
        self._patience_end: float | None = None  # PATIENCE after the first noted paths
        # What a link's own probes say (the daemon sets it; None: every loss counts at once).
        self.link_proof: Callable[[str], LinkProof | None] | None = None
        self._now = 0.0  # the time of the last note_paths
        self._groups = self._trunk_groups(cfg.trunks)
        self._wake: asyncio.Event | None = None
        self._probing = False
        self.destination_uris = {d.name: str(d.sip_uri) for d in cfg.destinations}
        self._declare(tally)

    def _declare(self, tally: Tally) -> None:
        """Every label set the config names starts at 0, so ``increase()`` sees the first
        event (an alert on a trunk's first timeout must not need a second one)."""
        codes = ("200", *(kind.value for kind in ErrorKind))
        tally.init("lifeline_trunk_responses_total",
                   *((t, code) for t in self.trunks for code in codes))
        tally.init("lifeline_trunk_edge_trips_total", *((t,) for t in self.trunks))
        tally.init("lifeline_plan_pushes_total",
                   *((e.name, r) for e in self.edges for r in ("ok", "error")))
        tally.histogram("lifeline_plan_push_duration_seconds", PUSH_BUCKETS,
                        *((e.name,) for e in self.edges))

    # -- set-up ----------------------------------------------------------------------------
    def _trunk_peer(self, t: Trunk) -> Peer:
        device = source = None
        if t.pinned and t.links:
            # A pinned trunk is probed (and carried) through its link only.
            link = self.cfg.link(t.links[0])
            device, source = link.interface, link.source
        spec = t.probe_spec(device, source)
        return Peer(t.name, spec, t.interval, t.timeout,
                    Health(t.name, t.health_params(), 1, 1), register=t.registration,
                    recheck=t.recheck_interval, edge_signal=EdgeSignal(t.edge_signal.params()))

    def _destination_peer(self, d: Destination) -> Peer:
        spec = d.sip_uri.probe_spec()
        # A destination that misses 3 OPTIONS in a row (one a second; an unanswered one is
        # rechecked every 200 ms, overlapping: about 0.9-1.9 s) sends its DIDs to the DR
        # destination.
        params = HealthParams(interval=1.0, window=10.0, hold_down=10.0)
        return Peer(d.name, spec, 1.0, 0.5, Health(d.name, params, 1, 1))

    @staticmethod
    def _trunk_groups(trunks: list[Trunk]) -> dict[str, int]:
        """One group number per carrier, in config order: informative in the plan and its
        document (which trunk carries a call is each range's trunk and fallback)."""
        carriers: dict[str, int] = {}
        return {t.name: carriers.setdefault(t.carrier, len(carriers) + 1) for t in trunks}

    def start(self, wake: asyncio.Event, *, probes: bool = True) -> None:
        """Probe every peer (unless ``probes`` is off: tests feed ``on_result``)."""
        self._wake = wake
        self._probing = probes
        for kind, peer in self._peers():
            self._start_peer(kind, peer)

    def _peers(self) -> list[tuple[str, Peer]]:
        return ([("trunk", p) for p in self.trunks.values()]
                + [("destination", p) for p in self.destinations.values()])

    def _start_peer(self, kind: str, peer: Peer) -> None:
        if not self._probing:
            return
        peer.scheduler = RecheckScheduler(
            peer.spec, interval=peer.interval, timeout=peer.timeout,
            recheck=peer.recheck, limit=peer.health.params.down_after,
            on_sample=functools.partial(self.on_result, kind, peer),
            is_down=functools.partial(_is_down, peer.health),
            name=f"{kind}-{peer.name}")
        peer.scheduler.start()
        if peer.register is not None:
            peer.reg_task = asyncio.create_task(self._register_loop(peer),
                                                name=f"lifeline-reg-{peer.name}")

    @staticmethod
    async def _stop_peer(peer: Peer) -> None:
        if peer.scheduler is not None:
            await peer.scheduler.stop()
        if peer.reg_task is not None:
            peer.reg_task.cancel()
            await asyncio.gather(peer.reg_task, return_exceptions=True)
        peer.scheduler = peer.reg_task = None

    async def stop(self) -> None:
        for _, peer in self._peers():
            await self._stop_peer(peer)

    async def reconfigure(self, cfg: Config, edges: list[SipEdge]) -> list[str]:
        """Take a reloaded ``cfg``: a trunk or destination probed as before keeps its health
        (retuned to new thresholds), its last answer, registration state and edge signal; the
        others start anew. New edges get the whole plan at the next cycle. One line per
        change, for the journal."""
        was_cfg, self.cfg = self.cfg, cfg
        changes: list[str] = []
        before_maint = {t.name: t.maintenance for t in was_cfg.trunks}
        for t in cfg.trunks:
            if before_maint.get(t.name) != t.maintenance:
                changes.append(f"trunk {t.name}: " + (
                    "back in service (config)" if t.maintenance is None else
                    f"in maintenance (config: {t.maintenance or 'no reason given'})"))
        restart: list[tuple[str, Peer]] = []
        stop: list[Peer] = []

        def merge(kind: str, old: dict[str, Peer], fresh: dict[str, Peer]) -> dict[str, Peer]:
            out: dict[str, Peer] = {}
            for name, new in fresh.items():
                was = old.get(name)
                if was is None or (was.spec, was.register) != (new.spec, new.register):
                    changes.append(f"{kind} {name}: " + ("added" if was is None
                                                         else "probe changed, health anew"))
                    if was is not None:
                        stop.append(was)
                    restart.append((kind, new))
                    out[name] = new
                    continue
                was.health.retune(new.health.params)
                timing = (new.interval, new.timeout, new.recheck)
                limit = new.health.params.down_after  # the scheduler's in-flight limit
                if (timing != (was.interval, was.timeout, was.recheck)
                        or (was.scheduler is not None and was.scheduler.limit != limit)):
                    was.interval, was.timeout, was.recheck = timing
                    stop.append(was)
                    restart.append((kind, was))
                if was.edge_signal.params != new.edge_signal.params:
                    was.edge_signal = new.edge_signal
                out[name] = was
            for name, was in old.items():
                if name not in fresh:
                    changes.append(f"{kind} {name}: removed")
                    stop.append(was)
            return out

        self.trunks = merge("trunk", self.trunks,
                            {t.name: self._trunk_peer(t) for t in cfg.trunks})
        self.destinations = merge("destination", self.destinations,
                                  {d.name: self._destination_peer(d) for d in cfg.destinations})
        for peer in stop:
            await self._stop_peer(peer)
        for kind, peer in restart:
            self._start_peer(kind, peer)
        self.entries = cfg.did_entries()
        self._groups = self._trunk_groups(cfg.trunks)
        self.destination_uris = {d.name: str(d.sip_uri) for d in cfg.destinations}
        if edges is not self.edges:
            self.edges, self.pushed, self.push_errors = edges, {}, {}
            changes.append("SIP edge: " + (", ".join(e.name for e in edges) or "none"))
        self._declare(self.tally)
        return changes

    # -- sense -----------------------------------------------------------------------------
    def note_paths(self, now: float, route: str | None,
                   links: Mapping[str, HealthState]) -> None:
        """Where every peer's probes leave at ``now``: ``route`` is the link the site's
        kernel route uses (None before one is applied), ``links`` each link's health. The
        daemon calls this every cycle (until the first, no path exists); a failed probe of
        a peer never judged counts only if sent while its path existed
        (controller.core.peerpath)."""
        if self._patience_end is None:
            self._patience_end = now + PATIENCE
        paths: dict[str | None, PeerPath] = {
            None: follow(self._paths.get(None), now, route, links)}
        for link in links:
            paths[link] = follow(self._paths.get(link), now, link, links)
        self._paths = paths
        self._now = now
        for kind, peer in self._peers():
            self._release(kind, peer)

    def _path(self, kind: str, name: str) -> PeerPath | None:
        """A peer's path: its pinned link's, else the route's (None: nothing noted yet)."""
        if kind == "trunk":
            t = self.cfg.trunk(name)
            if t.pinned and t.links:
                return self._paths.get(t.links[0])
        return self._paths.get(None)

    def _counts(self, kind: str, peer: Peer, sent_at: float, ok: bool) -> bool:
        return counts(ok, _judged(peer.health), sent_at, self._path(kind, peer.name),
                      self._patience_end)

    def _waiting(self, now: float) -> frozenset[str]:
        """Trunks never judged whose verdict is still coming: the plan keeps the configured
        order in the ranges where they come first (didplan, the start-up hold)."""
        return frozenset(
            name for name, peer in self.trunks.items()
            if pending(_judged(peer.health), self._path("trunk", name), now,
                       judge_time(peer.health.params.rise, peer.interval, peer.timeout),
                       self._patience_end))

    def _uncounted_reason(self, kind: str, peer: Peer) -> str:
        """Why a peer is still unknown though its probes fail (status and debug log)."""
        path = self._path(kind, peer.name)
        why = "no route applied yet" if path is None else (path.why or "path just came up")
        return (f"{peer.name}: {peer.uncounted} failed probe(s) not counted, sent before "
                f"its path existed ({why})")

    async def _register_loop(self, peer: Peer) -> None:
        """A registration-based trunk: check that REGISTER with digest succeeds, every
        REGISTER_EVERY seconds (not at the OPTIONS pace: registrars rate-limit). The result is
        reported (status, metric), OPTIONS stays the health signal."""
        reg = peer.register
        assert reg is not None
        loop = asyncio.get_running_loop()
        while True:
            sent_at = loop.time()
            try:
                password = read_password(reg)
                spec = await resolved(peer.spec, max(peer.timeout, 2.0))
                result = (SipResult(reachable=False, error=spec.error, detail=spec.detail)
                          if isinstance(spec, Sample) else
                          await register_check(SipTarget.from_spec(spec), reg.user, reg.domain,
                                               password, timeout=max(peer.timeout, 2.0)))
            except (OSError, ValueError) as exc:  # the secret file or variable is missing
                result = SipResult(reachable=False, error=ErrorKind.INTERNAL,
                                   detail=f"no password: {exc}")
            was = peer.registered
            if was is None and not self._counts("trunk", peer, sent_at, result.reachable):
                # No path yet (first start): unknown, not "not registered"; retried soon.
                log.debug("trunk %s: REGISTER check before its path existed, not counted: %s",
                          peer.name, result.detail)
                await asyncio.sleep(REGISTER_RETRY)
                continue
            peer.registered = result
            if was is None or was.reachable != result.reachable:
                what = "registered" if result.reachable else f"not registered: {result.detail}"
                log.log(logging.INFO if result.reachable else logging.WARNING,
                        "trunk %s: %s", peer.name, what)
                self.journal.record("transition", peer.name, f"{peer.name}: {what}",
                                    peer="registration")
            # A failed check (e.g. no route yet at start) is retried soon, not in a minute.
            await asyncio.sleep(REGISTER_EVERY if result.reachable else REGISTER_RETRY)

    def on_result(self, kind: str, peer: Peer, sent_at: float, sample: Sample) -> None:
        """One OPTIONS outcome, in send order (the scheduler's callback); an outcome of a
        peer a reload replaced is dropped. A failure sent before the path of a peer never
        judged existed is counted as a response and shown as the last answer, but is no
        evidence for its health (controller.core.peerpath)."""
        peers = self.trunks if kind == "trunk" else self.destinations
        if peers.get(peer.name) is not peer:
            return
        peer.last = sample
        code = str(sample.code) if sample.code is not None else (
            sample.error.value if sample.error else "error")
        if kind == "trunk":
            self.tally.add("lifeline_trunk_responses_total", (peer.name, code))
        if not self._counts(kind, peer, sent_at, sample.ok):
            peer.uncounted += 1
            log.debug("%s %s: %s not counted: %s", kind, peer.name, code,
                      self._uncounted_reason(kind, peer))
            return
        if sample.ok and not peer.held:
            self._observe(kind, peer, sent_at, sample)
            return
        path = self._path(kind, peer.name)
        peer.held.append((sent_at, sample, None if path is None else path.link))
        self._release(kind, peer)

    def _release(self, kind: str, peer: Peer) -> None:
        """Hand held outcomes to the peer's health, in order, as far as rule 6 allows."""
        while peer.held:
            sent_at, sample, link = peer.held[0]
            if not sample.ok:
                proof = (None if link is None or self.link_proof is None
                         else self.link_proof(link))
                verdict = loss_verdict(sent_at, max(self._now, sent_at), proof)
                if verdict == "wait":
                    return
                if verdict == "drop":
                    peer.held.popleft()
                    peer.dropped += 1
                    log.debug("%s %s: a probe lost over %s not counted: %s is down",
                              kind, peer.name, link, link)
                    continue
            peer.held.popleft()
            self._observe(kind, peer, sent_at, sample)

    def _observe(self, kind: str, peer: Peer, sent_at: float, sample: Sample) -> None:
        rtt = sample.rtt if sample.ok and sample.rtt is not None else None
        if sample.ok and rtt is None:
            rtt = 0.0
        self._handle(kind, peer.health.observe(ProbeRound(sent_at=sent_at, rtts=(rtt,))))

    def _handle(self, kind: str, tr: Transition | None) -> None:
        if tr is None:
            return
        if kind == "trunk" and HealthState.DOWN in (tr.old, tr.new):
            self.trunks[tr.subject].edge_signal.forget()
        level = logging.WARNING if tr.new is HealthState.DOWN else logging.INFO
        log.log(level, "%s %s: %s -> %s: %s", kind, tr.subject, tr.old.value, tr.new.value,
                tr.reason)
        self.journal.record("transition", tr.subject, tr.reason, old=tr.old.value,
                            new=tr.new.value, peer=kind)
        if self._wake is not None:
            self._wake.set()

    async def read_edge_failures(self, now: float) -> None:
        """Poll the edges' per-trunk INVITE failure counters (the edge signal)."""
        for edge in self.edges:
            try:
                counts = await edge.failures()
            except Exception as exc:
                log.debug("%s: cannot read failure counters: %s", edge.name, exc)
                continue
            for name, count in counts.items():
                peer = self.trunks.get(name)
                if peer is not None and peer.edge_signal.observe(now, count):
                    _, why = peer.edge_signal.verdict(now)
                    self.tally.add("lifeline_trunk_edge_trips_total", (name,))
                    log.warning("trunk %s: fails calls while answering OPTIONS: %s", name, why)
                    self.journal.record("transition", name, f"{name}: {why}", peer="edge",
                                        edge=edge.name)

    # -- maintenance ---------------------------------------------------------------------
    def maintenance(self, name: str) -> str | None:
        """Why trunk ``name`` is out of service, or None when it is in service. The
        operator's mark wins over the config's, so lifting it shows the config's again."""
        mark = self.book.get("maintenance", f"trunk:{name}")
        if mark is not None:
            return f"{mark.reason} (set by {mark.by})" if mark.reason else \
                f"set by {mark.by}"
        reason = self.cfg.trunk(name).maintenance
        if reason is None:
            return None
        return f"{reason} (set in the config)" if reason else "set in the config"

    def set_maintenance(self, name: str, on: bool, reason: str = "",
                        now: float | None = None) -> MaintenanceAnswer:
        """Put trunk ``name`` in maintenance or take it out (the operator's mark only: one
        the config sets stays until the config changes). KeyError for an unknown trunk.
        The mark is a maintenance override that lapses MAX_DURATION after ``now`` (wall
        clock; default: the system's)."""
        if name not in self.trunks:
            raise KeyError(name)
        target = f"trunk:{name}"
        if on:
            at = time.time() if now is None else now
            self.book.put(Override("maintenance", target, None, " ".join(reason.split())[:200],
                                   "the operator", at, at + MAX_DURATION))
            what = f"trunk {name} put in maintenance: {self.maintenance(name)}"
        elif self.book.remove("maintenance", target) is not None:
            still = self.maintenance(name)
            what = f"trunk {name} back in service" + (
                f" for the operator, still in maintenance: {still}" if still else "")
        else:
            what = ""
        if what:
            log.warning("%s", what)
            mark = self.book.get("maintenance", target)
            self.journal.record("action", name, what, peer="maintenance",
                                **({} if mark is None else {"by": mark.by,
                                                            "until": mark.until}))
        if self._wake is not None:
            self._wake.set()
        return {"trunk": name, "maintenance": self.maintenance(name),
                "operator": self.book.get("maintenance", target) is not None,
                "kept_on_disk": self.book.kept_on_disk}

    # -- decide ----------------------------------------------------------------------------
    def decide(self, now: float, links: Mapping[str, HealthState],
               pins: Mapping[NumberRange, str] | None = None,
               site_dr: str | None = None,
               services: Sequence[ServiceView] = ()) -> DidPlan:
        """The plan of this cycle; ``pins``: the operator's (range -> trunk or "dr");
        ``site_dr``: the whole site is in DR and why (e.g. "power"); ``services``: the
        site's services, whose down ones take the destinations that need them down
        (controller.core.services)."""
        for kind, peers in (("trunk", self.trunks), ("destination", self.destinations)):
            for peer in peers.values():
                self._handle(kind, peer.health.tick(now))
        views = {}
        for name, peer in self.trunks.items():
            cfg_trunk = self.cfg.trunk(name)
            failing, why = peer.edge_signal.verdict(now)
            views[name] = TrunkView(name, peer.health.state, peer.health.reason,
                                    links=cfg_trunk.allowed_links, pinned=cfg_trunk.pinned,
                                    edge_tripped=failing, edge_reason=why,
                                    maintenance=self.maintenance(name))
        verdicts = effective_destinations(
            {name: (p.health.state, p.health.reason) for name, p in self.destinations.items()},
            services)
        dests = {name: v.state for name, v in verdicts.items()}
        self.verdicts = verdicts
        self.effective = {n: effective_trunk_state(v, links) for n, v in views.items()}
        self.destination_states = dests
        plan = compute_plan(self.entries, views, links, dests, self._waiting(now), pins,
                            site_dr=site_dr,
                            service_down={n: v.reason for n, v in verdicts.items()
                                          if v.cause == "service"})
        changes = diff(self.plan, plan)
        before = self.plan.by_range() if changes.changed and self.plan is not None else {}
        for decision in changes.changed:
            was = before.get(decision.numbers)
            # A new in-call fallback alone moves no DID: pushed to the edge, not journaled.
            if was is not None and (was.trunk, was.destination) == (decision.trunk,
                                                                    decision.destination):
                continue
            self.journal.record("decision", "dids", f"{decision.numbers}: {decision.reason}",
                                trunk=decision.trunk, destination=decision.destination,
                                numbers=str(decision.numbers), on_dr=decision.on_dr)
        unroutable = {str(r) for r in plan.unroutable}
        for rng in sorted(unroutable - self._unroutable):
            log.error("DIDs %s unroutable: no capable trunk is healthy", rng)
            self.journal.record("error", "dids", f"{rng} unroutable: no capable trunk healthy",
                                numbers=rng, routable=False)
        for rng in sorted(self._unroutable - unroutable):
            self.journal.record("decision", "dids", f"{rng} routable again", numbers=rng,
                                routable=True)
        self._unroutable = unroutable
        self.plan = plan
        return plan

    def trunk_source(self, name: str, sources: Mapping[str, str | None],
                     active: str | None) -> str | None:
        """The site address trunk ``name`` leaves from: its pinned link's, else that of the
        ``active`` link (None while no route is applied). ``sources``: each link's address,
        as the daemon resolved it (configured, or found on the interface)."""
        t = self.cfg.trunk(name)
        link = t.links[0] if t.pinned and t.links else active
        return None if link is None else sources.get(link)

    def to_edge_plan(self, plan: DidPlan, refresh: tuple[str, ...] = (),
                     sources: Mapping[str, str | None] | None = None,
                     active: str | None = None) -> EdgePlan:
        uris = self.destination_uris
        routes = tuple(
            DidRoute(str(d.numbers.first), str(d.numbers.last), d.trunk, uris.get(d.destination),
                     d.fallback)
            for d in plan.decisions
        )
        # A trunk may carry calls only where the plan names it (a range's trunk, or its
        # in-call fallback): down, tripped, in maintenance or never first, it gets none.
        named = named_trunks(routes)
        trunks = tuple(
            TrunkState(name, str(self.cfg.trunk(name).sip_uri), self._groups[name],
                       name in named,
                       source=self.trunk_source(name, sources or {}, active),
                       **_registration_fields(self.cfg.trunk(name).registration))
            for name in self.trunks
        )
        return EdgePlan(trunks=trunks, routes=routes, refresh_registrations=refresh)

    # -- act -------------------------------------------------------------------------------
    async def push(self, plan: DidPlan, refresh: tuple[str, ...] = (),
                   sources: Mapping[str, str | None] | None = None,
                   active: str | None = None) -> bool:
        """Push to every edge; True when all of them took it."""
        edge_plan = self.to_edge_plan(plan, refresh, sources, active)
        all_ok = True
        self.edge_plan = edge_plan
        for edge in self.edges:
            started = time.perf_counter()
            outcome = await edge.push(edge_plan)
            ok, detail = outcome.ok, outcome.describe()
            self.tally.add("lifeline_plan_pushes_total", (edge.name, "ok" if ok else "error"))
            self.tally.observe("lifeline_plan_push_duration_seconds",
                               time.perf_counter() - started, (edge.name,))
            previous = self.push_errors.get(edge.name)
            if ok:
                self.pushed[edge.name] = edge_plan
                self.push_errors.pop(edge.name, None)
                if detail:
                    log.info("%s: %s", edge.name, detail)
                    self.journal.record("action", edge.name, detail)
            else:
                all_ok = False
                # The edge is not known to hold the plan any more (a dead Kamailio holds
                # nothing): out of sync until a push succeeds, changed plan or not.
                self.pushed.pop(edge.name, None)
                if detail != previous:
                    self.push_errors[edge.name] = detail
                    log.error("%s: plan push failed: %s", edge.name, detail)
                    self.journal.record("error", edge.name, f"plan push failed: {detail}")
        return all_ok

    # -- tell ----------------------------------------------------------------------------
    def _service_down(self, name: str) -> str | None:
        """Why destination ``name`` counts as down for a service it needs, or None."""
        verdict = self.verdicts.get(name)
        return verdict.reason if verdict is not None and verdict.cause == "service" else None

    def snapshot(self, now: float) -> tuple[tuple[PeerSnap, ...], tuple[PeerSnap, ...],
                                            tuple[EdgeSnap, ...]]:
        """Trunks, destinations and edges as the snapshot tells them."""
        def peer(kind: str, p: Peer, **extra: Any) -> PeerSnap:
            last = p.last
            reason = p.health.reason
            if p.uncounted and not _judged(p.health):
                reason = self._uncounted_reason(kind, p)
            return PeerSnap(p.name, p.target.request_uri(), p.health.state, reason,
                            None if last is None else last.code,
                            None if last is None else last.rtt,
                            p.health.hold_down_remaining(now), **extra)

        per_trunk = self.plan.numbers_per_trunk if self.plan is not None else {}
        trunks = tuple(
            peer("trunk", p, registered=None if p.registered is None else p.registered.reachable,
                 edge_tripped=p.edge_signal.verdict(now)[1] or None, dids=per_trunk.get(p.name, 0),
                 maintenance=self.maintenance(p.name))
            for p in self.trunks.values())
        destinations = tuple(
            peer("destination", p, service_down=self._service_down(p.name))
            for p in self.destinations.values())
        edges = tuple(EdgeSnap(e.name, self.edge_plan is not None
                               and self.pushed.get(e.name) == self.edge_plan,
                               self.push_errors.get(e.name))
                      for e in self.edges)
        return trunks, destinations, edges
