"""The links' runtime: probe rounds and carrier events -> health -> route groups -> routes.

Probe rounds and netlink carrier events feed each link's health machine; a transition
calls ``on_change`` (the daemon's wake-up), and the daemon's cycle then asks the pure
policy for every route group's active link (``decide``) and lets the route actuator
converge the kernel to it (``reconcile``), flushing the conntrack entries of flows NAT'ed
through a link just left. Everything decided goes to the journal and the log, and counts
go to the tally; what it knows is read off ``snapshot``. Time comes from the daemon's clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from controller.actuators import routes
from controller.actuators.conntrack import flush_after_switch
from controller.actuators.netlink import Netlink
from controller.config import Config, Link, RouteGroup
from controller.core.flushrules import FlushRule
from controller.core.health import Health, HealthState, ProbeRound, Transition
from controller.core.peerpath import LinkProof
from controller.core.policy import Decision, GroupSpec, LinkView, decide_all
from controller.core.snapshot import (
    RECONCILE_BUCKETS,
    RTT_BUCKETS,
    GroupSnap,
    LinkSnap,
    Tally,
    pairs,
)
from controller.core.staleflows import GroupUse, LinkAddressing, link_addresses, stale_flows
from controller.runtime.journal import Journal
from probes.sample import ErrorKind, ProbeSpec, Sample
from probes.scheduler import RoundScheduler

log = logging.getLogger("lifeline")


@dataclass
class LinkRuntime:
    cfg: Link
    specs: list[ProbeSpec]  # the targets `reliability` counts, then the gateway ARP, if on
    targets: int
    health: Health
    scheduler: RoundScheduler | None = None
    carrier: bool = True
    source: str | None = None  # configured, or found on the interface at start
    skipped_counted: int = 0  # of scheduler.rounds_skipped, already in the tally
    answered_sent: float | None = None  # send time of the latest good round


@dataclass
class GroupRuntime:
    spec: GroupSpec
    table: int
    destination: str
    metric: int
    flush_rules: tuple[FlushRule, ...] | None  # None: every protocol; (): no flush
    takeover: bool = False
    decided: tuple[str, ...] = ()  # what the policy chose
    applied: tuple[str, ...] = ()  # what the kernel route has: the status shows this
    reason: str = "starting"
    last_change: float | None = None


@dataclass
class Problems:
    """Problems that stand now (a foreign route in our place, a step the kernel refused):
    what the last reconcile found. Each is logged and journaled when it appears, not every
    cycle, and again if it comes back after it had gone."""

    standing: tuple[str, ...] = ()

    def found(self, now_standing: list[str]) -> list[str]:
        """Take this reconcile's problems; the ones that were not standing before."""
        new = [p for p in dict.fromkeys(now_standing) if p not in self.standing]
        self.standing = tuple(dict.fromkeys(now_standing))[-20:]
        return new


def _link_runtime(link: Link) -> LinkRuntime:
    specs = link.probe_specs()
    targets = len(specs)
    health = Health(link.name, link.health_params(), targets, link.probes.reliability)
    # The gateway ARP probe is evidence for the operator (metrics: is the gateway alive at
    # layer 2 while the far targets are not?), not a vote in `reliability`.
    if (arp := link.arp_spec()) is not None:
        specs.append(arp)
    return LinkRuntime(cfg=link, specs=specs, targets=targets, health=health,
                       source=link.source)


def _probing(link: Link) -> tuple[object, ...]:
    """What a link's health is made of: the same probes through the same interface and
    source, judged by the same reliability. Anything else can change under a running one."""
    return (link.interface, link.source, tuple(link.probe_specs()), link.arp_spec(),
            link.probes.reliability)


def _by_ifname(links: dict[str, LinkRuntime]) -> dict[str, list[LinkRuntime]]:
    """Dual stack puts two links (an IPv4 and an IPv6 one) on one interface: a carrier event
    is news for both."""
    out: dict[str, list[LinkRuntime]] = {}
    for rt in links.values():
        out.setdefault(rt.cfg.interface, []).append(rt)
    return out


def _group_runtime(g: RouteGroup) -> GroupRuntime:
    return GroupRuntime(
        spec=GroupSpec(name=g.name, links=tuple(g.links), multipath=g.multipath),
        table=g.table_id,
        destination=g.destination,
        metric=g.metric,
        flush_rules=g.flush_rules,
        takeover=g.takeover,
    )


def _group_settings(g: GroupRuntime) -> tuple[object, ...]:
    return (g.spec, g.table, g.destination, g.metric, g.flush_rules, g.takeover)


class LinkRouting:
    """Every link's probing and health, the route groups' decisions, the route actuator."""

    def __init__(self, cfg: Config, journal: Journal, tally: Tally, *, dry_run: bool,
                 now: Callable[[], float], on_change: Callable[[], None]) -> None:
        self.cfg = cfg
        self.journal = journal
        self.tally = tally
        self.dry_run = dry_run
        self._now = now
        self._on_change = on_change
        self.links = {link.name: _link_runtime(link) for link in cfg.links}
        self.by_ifname = _by_ifname(self.links)
        self.groups = {g.name: _group_runtime(g) for g in cfg.route_groups}
        self.problems = Problems()
        self._nl: Netlink | None = None
        self._reconciler: routes.RouteReconciler | None = None
        self._last_plan = ""
        self._reconcile_lock = asyncio.Lock()
        self._declare()

    def reconfigure(self, cfg: Config) -> tuple[list[LinkRuntime], list[LinkRuntime], list[str]]:
        """Take a reloaded ``cfg`` and keep what is known: a link whose probing is unchanged
        keeps its runtime (health retuned to new thresholds, state and history kept); a
        group keeps its decision and applied route. Returns the runtimes whose probing must
        stop, those whose probing must start, and one line per change for the journal."""
        old, changes = self.links, []
        links: dict[str, LinkRuntime] = {}
        for link in cfg.links:
            rt = old.get(link.name)
            if rt is not None and _probing(rt.cfg) == _probing(link):
                if rt.cfg != link:
                    rt.health.retune(link.health_params())
                    changes.append(f"link {link.name}: settings changed, health kept")
                rt.cfg = link
                links[link.name] = rt
            else:
                links[link.name] = _link_runtime(link)
                changes.append(f"link {link.name}: "
                               + ("added" if rt is None else "probing changed, health anew"))
        changes += [f"link {name}: removed" for name in old if name not in links]
        stop = [rt for name, rt in old.items() if links.get(name) is not rt]
        start = [rt for name, rt in links.items() if old.get(name) is not rt]
        # A restarted schedule carries the new interval: restart the kept ones whose changed.
        for rt in links.values():
            if rt not in start and rt.scheduler is not None and (
                    rt.scheduler.interval != rt.cfg.effective_interval
                    or rt.scheduler.timeout != min(rt.cfg.effective_interval,
                                                   rt.cfg.effective_timeout)):
                stop.append(rt)
                start.append(rt)
        groups = {g.name: _group_runtime(g) for g in cfg.route_groups}
        for name, g in groups.items():
            was = self.groups.get(name)
            if was is None:
                changes.append(f"group {name}: added")
                continue
            members = set(g.spec.links)
            g.decided = tuple(n for n in was.decided if n in members)
            g.reason, g.last_change = was.reason, was.last_change
            if (g.table, g.destination, g.metric) == (was.table, was.destination, was.metric):
                g.applied = tuple(n for n in was.applied if n in members)
            if _group_settings(g) != _group_settings(was):
                changes.append(f"group {name}: changed")
        changes += [f"group {name}: removed" for name in self.groups if name not in groups]
        self.cfg, self.links, self.groups = cfg, links, groups
        self.by_ifname = _by_ifname(links)
        self._declare()
        return stop, start, changes

    def attach(self, nl: Netlink) -> None:
        """The kernel adapter the route actuator reads and writes through."""
        self._nl = nl
        self._reconciler = routes.RouteReconciler(nl)

    def start_probes(self, runtimes: list[LinkRuntime] | None = None) -> None:
        """Probe every link (or just ``runtimes``) on its own schedule."""
        for rt in self.links.values() if runtimes is None else runtimes:
            rt.scheduler = RoundScheduler(
                rt.specs,
                interval=rt.cfg.effective_interval,
                timeout=rt.cfg.effective_timeout,
                on_round=functools.partial(self._round, rt),
                name=rt.cfg.name,
            )
            rt.skipped_counted = 0
            rt.scheduler.start()

    async def stop_probes(self, runtimes: list[LinkRuntime] | None = None) -> None:
        for rt in list(self.links.values()) if runtimes is None else runtimes:
            if rt.scheduler is not None:
                await rt.scheduler.stop()
                rt.scheduler = None

    def sources(self) -> dict[str, str | None]:
        """Each link's source address (configured, or found on its interface at start)."""
        return {name: rt.source for name, rt in self.links.items()}

    def applied_link(self) -> str | None:
        """The link the first group's kernel route uses now (None before one is applied)."""
        return next((g.applied[0] for g in self.groups.values() if g.applied), None)

    def _declare(self) -> None:
        """Every label set the config names starts at 0, so ``increase()`` and alerts see
        the first event (a counter that appears only at its first failover hides it)."""
        t = self.tally
        results = ("ok", *(kind.value for kind in ErrorKind))
        states = tuple(s.value for s in HealthState)
        kinds = {name: sorted({spec.kind for spec in rt.specs})
                 for name, rt in self.links.items()}
        t.init("lifeline_link_transitions_total",
               *((name, s) for name in self.links for s in states))
        t.init("lifeline_probes_total",
               *((name, k, r) for name in self.links for k in kinds[name] for r in results))
        t.init("lifeline_probe_rounds_skipped_total", *((name,) for name in self.links))
        t.histogram("lifeline_probe_rtt_seconds", RTT_BUCKETS,
                    *((name, k) for name in self.links for k in kinds[name]))
        for name, g in self.groups.items():
            t.init("lifeline_failovers_total", *((name, *pair) for pair in pairs(g.spec.links)))
        t.init("lifeline_conntrack_flushed_total", *((name,) for name in self.groups))
        t.init("lifeline_reconcile_total", ("changed",), ("noop",), ("error",), ("dry_run",))
        t.histogram("lifeline_reconcile_duration_seconds", RECONCILE_BUCKETS, ())


    def _count_skipped(self, rt: LinkRuntime) -> None:
        """Rounds the scheduler skipped because the event loop was late (it falls behind:
        a host too busy to probe on time fails over late)."""
        sched = rt.scheduler
        if sched is not None and sched.rounds_skipped > rt.skipped_counted:
            self.tally.add("lifeline_probe_rounds_skipped_total", (rt.cfg.name,),
                           sched.rounds_skipped - rt.skipped_counted)
            rt.skipped_counted = sched.rounds_skipped

    def on_round(self, link: str, sent_at: float, samples: list[Sample]) -> None:
        """One probe round of ``link``."""
        self._round(self.links[link], sent_at, samples)

    def _round(self, rt: LinkRuntime, sent_at: float, samples: list[Sample]) -> None:
        """A round of ``rt``'s scheduler. After a reload replaced the runtime, a round the
        old scheduler still delivers is dropped: it belongs to probes that no longer run."""
        link = rt.cfg.name
        if self.links.get(link) is not rt:
            return
        tally = self.tally
        self._count_skipped(rt)
        for spec, sample in zip(rt.specs, samples, strict=True):
            result = "ok" if sample.ok else (sample.error.value if sample.error else "error")
            tally.add("lifeline_probes_total", (link, spec.kind, result))
            if sample.ok and sample.rtt is not None:
                tally.observe("lifeline_probe_rtt_seconds", sample.rtt, (link, spec.kind))
        rtts = tuple(s.rtt if s.ok else None for s in samples[: rt.targets])
        # A round good by the link's own measure (`reliability` targets answered; the
        # gateway alone answers through a blackhole) proves it carried traffic then.
        answered = sum(r is not None for r in rtts)
        if answered >= rt.cfg.probes.reliability and (rt.answered_sent is None
                                                       or sent_at > rt.answered_sent):
            rt.answered_sent = sent_at
        self._handle(rt.health.observe(ProbeRound(sent_at=sent_at, rtts=rtts)))


    def on_carrier(self, ifname: str, up: bool, reason: str) -> None:
        for rt in self.by_ifname.get(ifname, []):
            rt.carrier = up
            state = "up" if up else "lost"
            log.info("%s: carrier %s on %s (%s)", rt.cfg.name, state, ifname, reason)
            self._handle(rt.health.carrier(up, self._now()))


    def _handle(self, tr: Transition | None) -> None:
        if tr is None:
            return
        self.tally.add("lifeline_link_transitions_total", (tr.subject, tr.new.value))
        bad = tr.new in (HealthState.DOWN, HealthState.DEGRADED)
        level = logging.WARNING if bad else logging.INFO
        log.log(
            level,
            "%s: %s -> %s: %s",
            tr.subject,
            tr.old.value,
            tr.new.value,
            tr.reason,
            extra={"event": "transition", "link": tr.subject, "state": tr.new.value},
        )
        fault = {} if tr.fault_age is None else {"fault_age": round(tr.fault_age, 6)}
        self.journal.record("transition", tr.subject, tr.reason, old=tr.old.value,
                            new=tr.new.value, **fault)
        self._on_change()


    def proof(self, link: str) -> LinkProof | None:
        """What ``link``'s own probes say, for the SIP peers whose probes leave through it
        (controller.core.peerpath, rule 6); None for a link this config does not hold."""
        rt = self.links.get(link)
        if rt is None:
            return None
        p = rt.health.params
        return LinkProof(rt.health.state, rt.answered_sent,
                         2.0 * (p.down_after * p.interval + rt.cfg.effective_timeout))

    def views(self) -> dict[str, LinkView]:
        out = {}
        for name, rt in self.links.items():
            m = rt.health.metrics()
            out[name] = LinkView(
                name=name,
                tier=rt.cfg.tier,
                state=rt.health.state,
                weight=rt.cfg.weight,
                mos=m.mos,
                loss_ratio=m.loss_ratio,
                reason=rt.health.reason,
            )
        return out


    def decide(self, forced: Mapping[str, str] | None = None,
               maintenance: frozenset[str] = frozenset()) -> dict[str, Decision]:
        """Every group's decision; ``forced`` (group -> link) and ``maintenance`` (links):
        the operator's overrides (controller.core.policy)."""
        now = self._now()
        for rt in self.links.values():
            self._handle(rt.health.tick(now))
        specs = [g.spec for g in self.groups.values()]
        current = {name: g.decided for name, g in self.groups.items()}
        decisions = decide_all(specs, self.views(), current, forced, maintenance)
        for name, d in decisions.items():
            g = self.groups[name]
            if d.changed and d.active:
                old = ",".join(g.decided) or "none"
                new = ",".join(d.active)
                log.warning(
                    "%s: route %s -> %s: %s",
                    name,
                    old,
                    new,
                    d.reason,
                    extra={"event": "decision", "group": name},
                )
                # A move onto the operator's forced link says so (the SLA report tells
                # an operator's move from a failover by it).
                by_operator = bool(forced) and d.active == ((forced or {}).get(name),)
                self.journal.record(
                    "decision", name, d.reason, old=list(g.decided), new=list(d.active),
                    **({"operator": True} if by_operator else {}))
                if g.decided:  # the first route after start is no failover: no page for it
                    self.tally.add("lifeline_failovers_total", (name, old, new))
                g.decided, g.last_change = d.active, now
            g.reason = d.reason
        return decisions


    def desired(self) -> routes.Desired:
        link_routes = tuple(
            routes.LinkRoute(
                name=rt.cfg.name,
                ifname=rt.cfg.interface,
                gateway=rt.cfg.gateway,
                source=rt.source,
                table=rt.cfg.table_id,
                weight=rt.cfg.weight,
            )
            for rt in self.links.values()
        )
        group_routes = tuple(
            routes.GroupRoute(
                name=name,
                table=g.table,
                destination=g.destination,
                metric=g.metric,
                active=g.decided,
                takeover=g.takeover,
                # config holds each group to one family; the actuator needs it for the key
                family=self.links[g.spec.links[0]].cfg.family if g.spec.links else None,
            )
            for name, g in self.groups.items()
        )
        return routes.Desired(
            links=link_routes,
            groups=group_routes,
            protocol=self.cfg.route_protocol,
            rule_priority=self.cfg.rule_priority,
        )


    async def reconcile(self, left: dict[str, tuple[str, ...]]) -> None:
        """Converge the kernel to the desired routes; flush conntrack of links just left."""
        assert self._reconciler is not None
        async with self._reconcile_lock:
            started = time.perf_counter()
            try:
                desired = self.desired()
                result = await self._reconciler.reconcile(desired, dry_run=self.dry_run)
            except Exception as exc:  # an actuator error must not kill the control loop
                self.tally.add("lifeline_reconcile_total", ("error",))
                self._standing([f"reconcile failed: {exc}"])
                return
            finally:
                self.tally.observe("lifeline_reconcile_duration_seconds",
                                   time.perf_counter() - started)
            plan = result.plan
            text = plan.describe()
            if self.dry_run:
                if not plan.empty and text != self._last_plan:
                    print(f"[dry-run] would change:\n{text}", flush=True)
                    self._last_plan = text
                missing = sorted({s.rule.table for s in plan.steps
                                  if isinstance(s, routes.AddRule)})
                # A dry run creates nothing, not even the per-link tables that let a probe
                # bound to a link leave through it: such links read down.
                self._standing([
                    f"dry run: per-link tables/rules {missing} do not exist yet, so probes "
                    "through links other than the current route cannot reach far targets "
                    "and those links will read down; run once without --dry-run to create "
                    "them"] if missing else [])
                self.tally.add("lifeline_reconcile_total", ("dry_run",))
                return
            self._note_applied(desired, result)
            if result.done:
                self.tally.add("lifeline_reconcile_total", ("changed",))
                log.info("routes: %s", "; ".join(step.describe() for step in result.done))
                self.journal.record("action", "routes",
                                    "\n".join(step.describe() for step in result.done))
            elif result.ok:
                self.tally.add("lifeline_reconcile_total", ("noop",))
            for _ in result.errors:
                self.tally.add("lifeline_reconcile_total", ("error",))
            self._standing([e.describe() for e in result.errors]
                           + [c.describe() for c in plan.conflicts])
            for group, old_links in left.items():
                await self._flush(group, old_links)


    def _note_applied(self, desired: routes.Desired, result: routes.RouteResult) -> None:
        """Record which groups' kernel routes now match the decision (no failed step on
        their route, no conflict), so the status never runs ahead of the kernel."""
        failed = {e.step.route.key for e in result.errors
                  if isinstance(e.step, routes.ReplaceRoute | routes.DeleteRoute)}
        conflicted = {c.owner for c in result.plan.conflicts}
        for group in desired.groups:
            g = self.groups[group.name]
            if not group.active or group.name in conflicted:
                continue
            try:
                key = routes.group_key(group, desired.links)
            except ValueError:
                continue
            if key not in failed:
                g.applied = group.active


    def _standing(self, problems: list[str]) -> None:
        """This reconcile's problems; each newly standing one is logged and journaled."""
        for problem in self.problems.found(problems):
            log.error("routes: %s", problem)
            self.journal.record("error", "routes", problem)


    async def _flush(self, group: str, old_links: tuple[str, ...]) -> None:
        """Delete the conntrack entries NAT'ed to the links ``group`` just left (see
        controller.core.staleflows for which: every protocol unless the group narrows it,
        and not the flows another group still routes through a left link)."""
        g = self.groups[group]
        if g.flush_rules == () or not set(old_links) - set(g.decided):
            return
        # another group's route may still be on a link it is leaving (a failed apply)
        uses = {name: GroupUse(other.destination,
                               other.decided if name == group
                               else tuple(dict.fromkeys((*other.decided, *other.applied))),
                               other.table, other.metric)
                for name, other in self.groups.items()}
        stale = stale_flows(group, old_links, uses, await self._link_addresses(), g.flush_rules)
        if stale.empty and not stale.kept:
            return
        res = await flush_after_switch(stale)
        self.tally.add("lifeline_conntrack_flushed_total", (group,), res.deleted)
        log.info("%s: %s", group, res.describe())
        self.journal.record("action", group, res.describe(), deleted=res.deleted,
                            errors=res.errors, timed_out=res.timed_out)

    async def _link_addresses(self) -> dict[str, tuple[str, ...]]:
        """Each link's addresses now: its source and its interface's other addresses (a
        DHCP lease or an added alias shows here); the sources alone if they cannot be read."""
        found: dict[str, list[str]] = {}
        if self._nl is not None:
            try:
                found = await self._nl.addresses()
            except Exception as exc:  # a flush with the sources alone beats none
                log.warning("cannot read interface addresses for the conntrack flush: %s", exc)
        return link_addresses(
            (LinkAddressing(name, rt.cfg.interface, rt.cfg.family, rt.source,
                            tuple(rt.cfg.nat_addresses))
             for name, rt in self.links.items()),
            found,
        )


    def resume_from_journal(self) -> None:
        """Links that were down when the last daemon stopped start down, so a restart
        cannot shortcut their hold-down (the journal is the memory across restarts)."""
        for name, rt in self.links.items():
            last = self.journal.events(limit=1, kind="transition", subject=name)
            if last and last[0].data.get("new") == HealthState.DOWN.value:
                tr = rt.health.resume_down(self._now(), f"down before the restart "
                                           f"({last[0].message.removeprefix(name + ': ')})")
                self._handle(tr)


    async def resolve_sources(self) -> None:
        """Find the address of links configured without ``source``.

        Probes, the link's source rule and the conntrack flush all need it: without it a
        probe bound to an inactive link has no table to follow.
        """
        assert self._nl is not None
        missing = [rt for rt in self.links.values() if rt.source is None]
        if not missing:
            return
        try:
            found = await self._nl.addresses()
        except Exception as exc:
            log.error("cannot read interface addresses: %s", exc)
            return
        for rt in missing:
            pick = rt.cfg.source_from(found.get(rt.cfg.interface, []))
            if pick is None:
                log.warning("%s: no address on %s yet; probes go out unbound to a source",
                            rt.cfg.name, rt.cfg.interface)
                continue
            rt.source = pick
            rt.specs = [dataclasses.replace(spec, source=pick) for spec in rt.specs]
            log.info("%s: using source %s found on %s", rt.cfg.name, pick, rt.cfg.interface)


    async def adopt_current_routes(self) -> None:
        """Read which link each group's route uses now, so a restart changes nothing."""
        assert self._nl is not None
        desired = self.desired()
        try:
            actual = await routes.observe(self._nl, desired)
        except Exception as exc:
            log.error("cannot read current routes: %s", exc)
            return
        by_hop = {(rt.cfg.gateway, rt.cfg.interface): name for name, rt in self.links.items()}
        wanted = {group.name: group for group in desired.groups}
        for name, g in self.groups.items():
            try:
                key = routes.group_key(wanted[name], desired.links)
            except ValueError:
                continue  # the reconcile reports it
            for route in actual.routes:
                if route.key != key:
                    continue
                found = tuple(by_hop[(h.gateway, h.ifname)] for h in route.nexthops
                              if (h.gateway, h.ifname) in by_hop)
                if found:
                    g.decided = g.applied = found
                    g.reason = f"kept from before start: {','.join(found)}"
                    log.info("%s: found route via %s, keeping it until health is known",
                             name, ",".join(found))


    # -- tell ----------------------------------------------------------------------------
    def snapshot(self, now: float) -> tuple[tuple[LinkSnap, ...], tuple[GroupSnap, ...]]:
        links = []
        for name, rt in self.links.items():
            m = rt.health.metrics()
            h = rt.health
            links.append(LinkSnap(
                name=name, interface=rt.cfg.interface, gateway=rt.cfg.gateway,
                source=rt.source, tier=rt.cfg.tier, state=h.state,
                since=None if h.since is None else now - h.since, reason=h.reason,
                carrier=rt.carrier, loss_ratio=m.loss_ratio, latency=m.latency,
                jitter=m.jitter, mos=m.mos, rounds=m.rounds,
                hold_down_remaining=h.hold_down_remaining(now), flap_penalty=h.penalty(now),
                loss_one_way=m.loss_one_way, loss_evidence=m.loss_evidence))
        groups = tuple(
            GroupSnap(name, g.table, g.destination, g.spec.links, g.applied, g.decided,
                      g.reason, None if g.last_change is None else now - g.last_change)
            for name, g in self.groups.items())
        return tuple(links), groups
