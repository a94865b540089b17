"""Wires sense -> decide -> act -> tell for SIP trunks, destinations and the DID plan.

Each trunk (a carrier SBC) and each destination (the PBX, the DR platform) is probed with
SIP OPTIONS on its own interval; the answers feed the same pure health machine links use
(hysteresis, hold-down, flap damping). Every control cycle the pure DID policy turns trunk,
link and destination health into a plan per DID range, the plan goes to the SIP edge
drivers (Kamailio's JSON-RPC, a webhook, a command), and the metrics, journal and status
API tell what changed. The daemon owns the loop; this module owns the telephony state.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.actuators.sipedge.drivers import SipEdge
from controller.actuators.sipedge.plan import DidRoute, EdgePlan, TrunkState
from controller.config import Config, Destination, Register, Trunk
from controller.core.didplan import DidPlan, TrunkView, compute_plan, diff
from controller.core.edgesignal import EdgeBreaker
from controller.core.health import Health, HealthParams, HealthState, ProbeRound, Transition
from controller.runtime.journal import Journal
from exporters.metrics import Metrics
from probes.sample import ErrorKind
from probes.sip import SipResult, SipTarget, options, register_check

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
    target: SipTarget
    interval: float
    timeout: float
    health: Health
    last: SipResult | None = None
    task: asyncio.Task[None] | None = None
    # The second signal: the edge's failed calls on this trunk (controller.core.edgesignal).
    edge: EdgeBreaker = field(default_factory=EdgeBreaker)
    register: Register | None = None
    registered: SipResult | None = None
    reg_task: asyncio.Task[None] | None = None
    recheck: float = 0.2


def next_probe_at(planned: float, last_sent: float, *, suspect: bool, down: bool,
                  interval: float, recheck: float) -> float:
    """PURE: when the next OPTIONS to a peer goes. While the peer is suspect (its last
    answer was lost, or the newest OPTIONS is still unanswered) and not down yet, another
    goes ``recheck`` after the last one, overlapping it: a dead SBC is then confirmed about
    one timeout plus (down_after - 1) rechecks after the first lost OPTIONS, not after
    down_after intervals. Otherwise (answered, or already down: a dead SBC is polled at the
    normal pace, carriers rate-limit) the fixed cadence from ``planned``, the time the last
    one was due, re-anchored when the loop fell more than an interval behind."""
    if suspect and not down:
        return last_sent + recheck
    due = planned + interval
    return due if due > last_sent else last_sent + interval


async def _resolved(target: SipTarget) -> SipTarget | SipResult:
    """A target whose host is a name gets an address (A/AAAA, the system resolver: SRV and
    NAPTR are not followed); the name stays the TLS server name. A failed lookup is a
    failed probe, never an exception."""
    try:
        ipaddress.ip_address(target.host)
        return target
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            target.host, target.port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        return SipResult(reachable=False, error=ErrorKind.NETWORK,
                         detail=f"cannot resolve {target.host}: {exc}")
    address = str(infos[0][4][0])
    return dataclasses.replace(target, host=address,
                               server_name=target.server_name or target.host)


class Telephony:
    """Trunk and destination probing, the DID plan, and its push to the SIP edge."""

    def __init__(self, cfg: Config, journal: Journal, metrics: Metrics,
                 edges: list[SipEdge]) -> None:
        self.cfg = cfg
        self.journal = journal
        self.metrics = metrics
        self.edges = edges
        self.entries = cfg.did_entries()
        self.trunks: dict[str, Peer] = {t.name: self._trunk_peer(t) for t in cfg.trunks}
        self.destinations: dict[str, Peer] = {
            d.name: self._destination_peer(d) for d in cfg.destinations
        }
        self.plan: DidPlan | None = None
        self.edge_plan: EdgePlan | None = None
        self.pushed: dict[str, EdgePlan] = {}
        self.push_errors: dict[str, str] = {}
        self._unroutable: set[str] = set()
        self._groups = self._trunk_groups(cfg.trunks)
        self._wake: asyncio.Event | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.trunks or self.entries)

    # -- set-up ----------------------------------------------------------------------------
    def _trunk_peer(self, t: Trunk) -> Peer:
        tgt = t.probe_target()
        device = source = None
        if t.pinned and t.links:
            # A pinned trunk is probed (and carried) through its link only.
            link = self.cfg.link(t.links[0])
            device, source = link.interface, link.source
        target = SipTarget(tgt.host, tgt.port, tgt.transport, tgt.uri, alive_codes=t.alive,
                           device=device, source=source)
        return Peer(t.name, target, t.interval, t.timeout,
                    Health(t.name, t.health_params(), 1, 1), register=t.registration,
                    recheck=t.recheck_interval, edge=EdgeBreaker(t.edge_signal.params()))

    def _destination_peer(self, d: Destination) -> Peer:
        uri = d.sip_uri
        target = SipTarget(uri.host, uri.port, uri.transport, str(uri))
        # A destination that misses 3 OPTIONS in a row (one a second; an unanswered one is
        # rechecked every 200 ms, overlapping: about 0.9-1.9 s) sends its DIDs to the DR
        # destination.
        params = HealthParams(interval=1.0, window=10.0, hold_down=10.0)
        return Peer(d.name, target, 1.0, 0.5, Health(d.name, params, 1, 1))

    @staticmethod
    def _trunk_groups(trunks: list[Trunk]) -> dict[str, int]:
        """One dispatcher set per carrier, in config order: trunks of one carrier can stand
        in for each other within a call (the edge tries the next on 408/5xx)."""
        carriers: dict[str, int] = {}
        return {t.name: carriers.setdefault(t.carrier, len(carriers) + 1) for t in trunks}

    def start(self, wake: asyncio.Event) -> None:
        self._wake = wake
        for kind, peers in (("trunk", self.trunks), ("destination", self.destinations)):
            for peer in peers.values():
                peer.task = asyncio.create_task(self._probe_loop(kind, peer),
                                                name=f"lifeline-sip-{peer.name}")
                if peer.register is not None:
                    peer.reg_task = asyncio.create_task(self._register_loop(peer),
                                                        name=f"lifeline-reg-{peer.name}")

    async def stop(self) -> None:
        for peer in (*self.trunks.values(), *self.destinations.values()):
            for task in (peer.task, peer.reg_task):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            peer.task = peer.reg_task = None

    # -- sense -----------------------------------------------------------------------------
    async def _probe_loop(self, kind: str, peer: Peer) -> None:
        """Sends OPTIONS on ``next_probe_at``'s schedule, at most down_after in flight (a
        verdict needs no more), and feeds the answers to health in the order they were sent."""
        loop = asyncio.get_running_loop()
        inflight: deque[tuple[float, asyncio.Task[SipResult]]] = deque()
        limit = max(1, peer.health.params.down_after)
        planned = last_sent = loop.time() - peer.interval  # the first one goes at once
        lost = False
        try:
            while True:
                while inflight and inflight[0][1].done():
                    sent_at, task = inflight.popleft()
                    result = task.result()
                    self.on_result(kind, peer, sent_at, result)
                    lost = not result.reachable
                pending = bool(inflight) and not inflight[-1][1].done()
                due = next_probe_at(planned, last_sent, suspect=lost or pending,
                                    down=peer.health.state is HealthState.DOWN,
                                    interval=peer.interval, recheck=peer.recheck)
                now = loop.time()
                if now >= due and len(inflight) < limit:
                    planned, last_sent = due, now
                    inflight.append((now, asyncio.create_task(
                        self._probe_once(kind, peer), name=f"lifeline-options-{peer.name}")))
                    continue
                if inflight:
                    wait = None if len(inflight) >= limit else max(0.0, due - now)
                    await asyncio.wait((inflight[0][1],), timeout=wait)
                else:
                    await asyncio.sleep(max(0.0, due - now))
        finally:
            for _, task in inflight:
                task.cancel()
            await asyncio.gather(*(task for _, task in inflight), return_exceptions=True)

    async def _probe_once(self, kind: str, peer: Peer) -> SipResult:
        try:
            target = await _resolved(peer.target)
            return (await options(target, timeout=peer.timeout)
                    if isinstance(target, SipTarget) else target)
        except Exception as exc:  # a probe must never kill its loop
            log.error("%s %s: probe failed internally: %s", kind, peer.name, exc)
            return SipResult(reachable=False, detail=f"internal error: {exc}")

    async def _register_loop(self, peer: Peer) -> None:
        """A registration-based trunk: check that REGISTER with digest succeeds, every
        REGISTER_EVERY seconds (not at the OPTIONS pace: registrars rate-limit). The result is
        reported (status, metric), OPTIONS stays the health signal."""
        reg = peer.register
        assert reg is not None
        while True:
            try:
                password = read_password(reg)
                result = await register_check(peer.target, reg.user, reg.domain, password,
                                              timeout=max(peer.timeout, 2.0))
            except (OSError, ValueError) as exc:  # the secret file or variable is missing
                result = SipResult(reachable=False, error=ErrorKind.INTERNAL,
                                   detail=f"no password: {exc}")
            was = peer.registered
            peer.registered = result
            self.metrics.trunk_registered.labels(trunk=peer.name).set(
                1.0 if result.reachable else 0.0)
            if was is None or was.reachable != result.reachable:
                what = "registered" if result.reachable else f"not registered: {result.detail}"
                log.log(logging.INFO if result.reachable else logging.WARNING,
                        "trunk %s: %s", peer.name, what)
                self.journal.record("transition", peer.name, f"{peer.name}: {what}",
                                    peer="registration")
            # A failed check (e.g. no route yet at start) is retried soon, not in a minute.
            await asyncio.sleep(REGISTER_EVERY if result.reachable else REGISTER_RETRY)

    def on_result(self, kind: str, peer: Peer, sent_at: float, result: SipResult) -> None:
        peer.last = result
        code = str(result.code) if result.code is not None else (
            result.error.value if result.error else "error")
        if kind == "trunk":
            self.metrics.trunk_responses.labels(trunk=peer.name, code=code).inc()
            if result.rtt is not None and result.code is not None:
                self.metrics.trunk_rtt.labels(trunk=peer.name).set(result.rtt)
        rtt = result.rtt if result.reachable and result.rtt is not None else None
        if result.reachable and rtt is None:
            rtt = 0.0
        self._handle(kind, peer.health.observe(ProbeRound(sent_at=sent_at, rtts=(rtt,))))

    def _handle(self, kind: str, tr: Transition | None) -> None:
        if tr is None:
            return
        if kind == "trunk":
            self.metrics.set_trunk_state(tr.subject, tr.new.value)
            if HealthState.DOWN in (tr.old, tr.new):
                self.trunks[tr.subject].edge.forget()
        else:
            self.metrics.destination_up.labels(destination=tr.subject).set(
                1.0 if tr.new in (HealthState.UP, HealthState.DEGRADED) else 0.0)
        level = logging.WARNING if tr.new is HealthState.DOWN else logging.INFO
        log.log(level, "%s %s: %s -> %s: %s", kind, tr.subject, tr.old.value, tr.new.value,
                tr.reason)
        self.journal.record("transition", tr.subject, tr.reason, old=tr.old.value,
                            new=tr.new.value, peer=kind)
        if self._wake is not None:
            self._wake.set()

    async def read_edge_failures(self, now: float) -> None:
        """Poll the edges' per-trunk INVITE failure counters (the second signal)."""
        for edge in self.edges:
            try:
                counts = await edge.failures()
            except Exception as exc:
                log.debug("%s: cannot read failure counters: %s", edge.name, exc)
                continue
            for name, count in counts.items():
                peer = self.trunks.get(name)
                if peer is not None and peer.edge.observe(now, count):
                    _, why = peer.edge.verdict(now)
                    self.metrics.trunk_edge_trips.labels(trunk=name).inc()
                    log.warning("trunk %s: fails calls while answering OPTIONS: %s", name, why)
                    self.journal.record("transition", name, f"{name}: {why}", peer="edge",
                                        edge=edge.name)

    # -- decide ----------------------------------------------------------------------------
    def decide(self, now: float, links: Mapping[str, HealthState]) -> DidPlan:
        for kind, peers in (("trunk", self.trunks), ("destination", self.destinations)):
            for peer in peers.values():
                self._handle(kind, peer.health.tick(now))
        views = {}
        for name, peer in self.trunks.items():
            cfg_trunk = self.cfg.trunk(name)
            failing, why = peer.edge.verdict(now)
            self.metrics.trunk_edge_failing.labels(trunk=name).set(1.0 if failing else 0.0)
            views[name] = TrunkView(name, peer.health.state, peer.health.reason,
                                    links=cfg_trunk.allowed_links, pinned=cfg_trunk.pinned,
                                    edge_failing=failing, edge_reason=why)
        dests = {name: p.health.state for name, p in self.destinations.items()}
        plan = compute_plan(self.entries, views, links, dests)
        changes = diff(self.plan, plan)
        for decision in changes.changed:
            self.journal.record("decision", "dids", f"{decision.numbers}: {decision.reason}",
                                trunk=decision.trunk, destination=decision.destination)
        unroutable = {str(r) for r in plan.unroutable}
        for rng in sorted(unroutable - self._unroutable):
            log.error("DIDs %s unroutable: no capable trunk is healthy", rng)
            self.journal.record("error", "dids", f"{rng} unroutable: no capable trunk healthy")
        for rng in sorted(self._unroutable - unroutable):
            self.journal.record("decision", "dids", f"{rng} routable again")
        self._unroutable = unroutable
        self.plan = plan
        self._tell(plan)
        return plan

    def _tell(self, plan: DidPlan) -> None:
        m = self.metrics
        m.dids_unroutable.set(plan.unroutable_numbers)
        m.did_ranges_unroutable.set(len(plan.unroutable))
        m.dids_total.set(plan.total_numbers)
        for trunk, count in plan.numbers_per_trunk.items():
            m.dids_per_trunk.labels(trunk=trunk).set(count)

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
        trunks = tuple(
            TrunkState(name, str(self.cfg.trunk(name).sip_uri), self._groups[name],
                       peer.health.state is not HealthState.DOWN,
                       source=self.trunk_source(name, sources or {}, active),
                       **_registration_fields(self.cfg.trunk(name).registration))
            for name, peer in self.trunks.items()
        )
        uris = {d.name: str(d.sip_uri) for d in self.cfg.destinations}
        routes = tuple(
            DidRoute(str(d.numbers.first), str(d.numbers.last), d.trunk, uris.get(d.destination))
            for d in plan.decisions
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
            self.metrics.plan_pushes.labels(actuator=edge.name,
                                            result="ok" if ok else "error").inc()
            self.metrics.plan_push_duration.labels(actuator=edge.name).observe(
                time.perf_counter() - started)
            previous = self.push_errors.get(edge.name)
            if ok:
                self.pushed[edge.name] = edge_plan
                self.push_errors.pop(edge.name, None)
                if detail:
                    log.info("%s: %s", edge.name, detail)
                    self.journal.record("action", edge.name, detail)
            else:
                all_ok = False
                if detail != previous:
                    self.push_errors[edge.name] = detail
                    log.error("%s: plan push failed: %s", edge.name, detail)
                    self.journal.record("error", edge.name, f"plan push failed: {detail}")
        return all_ok

    # -- tell ------------------------------------------------------------------------------
    def status(self, now: float) -> dict[str, Any]:
        def peer_doc(p: Peer) -> dict[str, Any]:
            last = p.last
            return {"name": p.name, "uri": p.target.request_uri(), "state": p.health.state.value,
                    "reason": p.health.reason,
                    "last_code": None if last is None else last.code,
                    "last_rtt": None if last is None else last.rtt,
                    "hold_down_remaining": p.health.hold_down_remaining(now),
                    "registered": None if p.registered is None else p.registered.reachable}

        plan = self.plan
        return {
            "trunks": [peer_doc(p) | {"dids": plan.numbers_per_trunk.get(p.name, 0) if plan
                                      else 0,
                                      "edge_failing": p.edge.verdict(now)[1] or None}
                       for p in self.trunks.values()],
            "destinations": [peer_doc(p) for p in self.destinations.values()],
            "dids": None if plan is None else {
                "ranges": len(plan.decisions), "numbers": plan.total_numbers,
                "unroutable_numbers": plan.unroutable_numbers,
                "unroutable": [str(r) for r in plan.unroutable],
            },
            "edges": [{"name": e.name, "error": self.push_errors.get(e.name),
                       "in_sync": self.pushed.get(e.name) == self.edge_plan}
                      for e in self.edges],
        }

    def lookup(self, number: str) -> dict[str, Any] | None:
        """Which trunk and destination ``number`` uses now, and why (for /api/v1/dids)."""
        if self.plan is None:
            return None
        decision = self.plan.lookup(number)
        if decision is None:
            return None
        uris = {d.name: str(d.sip_uri) for d in self.cfg.destinations}
        return {"number": number, "range": str(decision.numbers), "trunk": decision.trunk,
                "trunk_state": None if decision.trunk_state is None
                else decision.trunk_state.value,
                "destination": decision.destination,
                "destination_uri": uris.get(decision.destination),
                "disaster_recovery": decision.on_dr, "unroutable": decision.unroutable,
                "reason": decision.reason}
