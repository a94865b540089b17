"""Wires sense -> decide -> act -> tell for links and routes.

Probe rounds and netlink carrier events feed the pure health machines; a transition wakes
the control loop at once, which asks the pure policy for the desired active link of every
route group and lets the route actuator converge the kernel to it (level-triggered: the
same reconcile also runs every ``reconcile_interval`` so a manual change, a lost event or a
restart converges by itself). Everything the daemon decides goes to the journal, the log
and the metrics. Time is the event loop's monotonic clock, handed to the cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import ipaddress
import logging
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.actuators import routes
from controller.actuators.conntrack import FlushRule as CtRule
from controller.actuators.conntrack import flush_after_switch, stale_sources
from controller.actuators.netlink import Netlink
from controller.actuators.sipedge.drivers import drivers_from_config
from controller.config import Config, Link
from controller.core.health import Health, HealthState, ProbeRound, Transition
from controller.core.policy import Decision, GroupSpec, LinkView, decide_all
from controller.runtime.journal import Journal, read_events
from controller.runtime.linkwatch import LinkWatch
from controller.runtime.trunks import Telephony
from exporters.http import HttpServer, make_app
from exporters.metrics import Metrics
from probes.icmp import close_all
from probes.sample import ProbeSpec, Sample
from probes.scheduler import RoundScheduler

log = logging.getLogger("lifeline")

VERSION = "0.1.0"


@dataclass
class LinkRuntime:
    cfg: Link
    specs: list[ProbeSpec]  # the targets `reliability` counts, then the gateway ARP, if on
    targets: int
    health: Health
    scheduler: RoundScheduler | None = None
    carrier: bool = True
    source: str | None = None  # configured, or found on the interface at start


@dataclass
class GroupRuntime:
    spec: GroupSpec
    table: int
    destination: str
    metric: int
    flush_rules: tuple[CtRule, ...]
    takeover: bool = False
    active: tuple[str, ...] = ()  # what the policy decided
    applied: tuple[str, ...] = ()  # what the kernel route has: the status shows this
    reason: str = "starting"
    last_change: float | None = None


@dataclass
class Counters:
    failovers: int = 0
    reconcile_errors: int = 0
    conflicts: list[str] = field(default_factory=list)


class Daemon:
    def __init__(
        self,
        cfg: Config,
        *,
        dry_run: bool = False,
        journal: Journal | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.cfg = cfg
        self.dry_run = dry_run
        self.journal = journal or Journal(Path(cfg.state_dir) / "journal.sqlite3")
        self.metrics = metrics or Metrics()
        self.links: dict[str, LinkRuntime] = {}
        for link in cfg.links:
            specs = link.probe_specs()
            targets = len(specs)
            health = Health(link.name, link.health_params(), targets, link.probes.reliability)
            # The gateway ARP probe is evidence for the operator (metrics: is the gateway
            # alive at layer 2 while the far targets are not?), not a vote in `reliability`.
            if (arp := link.arp_spec()) is not None:
                specs.append(arp)
            self.links[link.name] = LinkRuntime(
                cfg=link, specs=specs, targets=targets, health=health, source=link.source
            )
        # Dual stack puts two links (an IPv4 and an IPv6 one) on one interface: a carrier
        # event is news for both.
        self.by_ifname: dict[str, list[LinkRuntime]] = {}
        for rt in self.links.values():
            self.by_ifname.setdefault(rt.cfg.interface, []).append(rt)
        self.groups: dict[str, GroupRuntime] = {
            g.name: GroupRuntime(
                spec=GroupSpec(name=g.name, links=tuple(g.links), multipath=g.multipath),
                table=g.table_id,
                destination=g.destination,
                metric=g.metric,
                flush_rules=tuple(CtRule(r.proto, r.lo, r.hi) for r in g.flush_rules),
                takeover=g.takeover,
            )
            for g in cfg.route_groups
        }
        self.counters = Counters()
        self.edges = drivers_from_config(cfg)
        self.telephony = (Telephony(cfg, self.journal, self.metrics, list(self.edges))
                          if cfg.trunks or cfg.dids else None)
        self._edge_read_at = -1e9
        self._pending_refresh: set[str] = set()
        self.started = time.time()
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reconcile_lock = asyncio.Lock()
        self._nl: Netlink | None = None
        self._reconciler: routes.RouteReconciler | None = None
        self._last_plan: str = ""
        self.metrics.build_info.info({"version": VERSION, "site": cfg.site})
        for name, rt in self.links.items():
            self.metrics.link_tier.labels(link=name).set(rt.cfg.tier)
            self.metrics.set_link_state(name, rt.health.state.value)

    # -- sense ---------------------------------------------------------------------------
    def now(self) -> float:
        assert self._loop is not None
        return self._loop.time()

    def on_round(self, link: str, sent_at: float, samples: list[Sample]) -> None:
        rt = self.links[link]
        m = self.metrics
        for spec, sample in zip(rt.specs, samples, strict=True):
            result = "ok" if sample.ok else (sample.error.value if sample.error else "error")
            m.probes.labels(link=link, kind=spec.kind, result=result).inc()
            if sample.ok and sample.rtt is not None:
                m.probe_rtt.labels(link=link).observe(sample.rtt)
        rtts = tuple(s.rtt if s.ok else None for s in samples[: rt.targets])
        self._handle(rt.health.observe(ProbeRound(sent_at=sent_at, rtts=rtts)))
        metrics = rt.health.metrics()
        m.link_loss.labels(link=link).set(metrics.loss_ratio)
        if metrics.latency is not None:
            m.link_latency.labels(link=link).set(metrics.latency)
        if metrics.jitter is not None:
            m.link_jitter.labels(link=link).set(metrics.jitter)
        if metrics.mos is not None:
            m.link_mos.labels(link=link).set(metrics.mos)

    def on_carrier(self, ifname: str, up: bool, reason: str) -> None:
        for rt in self.by_ifname.get(ifname, []):
            rt.carrier = up
            state = "up" if up else "lost"
            log.info("%s: carrier %s on %s (%s)", rt.cfg.name, state, ifname, reason)
            self._handle(rt.health.carrier(up, self.now()))

    def _handle(self, tr: Transition | None) -> None:
        if tr is None:
            return
        self.metrics.set_link_state(tr.subject, tr.new.value)
        self.metrics.link_transitions.labels(link=tr.subject, to=tr.new.value).inc()
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
        self.journal.record("transition", tr.subject, tr.reason, old=tr.old.value, new=tr.new.value)
        self._wake.set()

    # -- decide --------------------------------------------------------------------------
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

    def decide(self) -> dict[str, Decision]:
        now = self.now()
        for rt in self.links.values():
            self._handle(rt.health.tick(now))
        specs = [g.spec for g in self.groups.values()]
        current = {name: g.active for name, g in self.groups.items()}
        decisions = decide_all(specs, self.views(), current)
        for name, d in decisions.items():
            g = self.groups[name]
            if d.changed and d.active:
                old = ",".join(g.active) or "none"
                new = ",".join(d.active)
                log.warning(
                    "%s: route %s -> %s: %s",
                    name,
                    old,
                    new,
                    d.reason,
                    extra={"event": "decision", "group": name},
                )
                self.journal.record(
                    "decision", name, d.reason, old=list(g.active), new=list(d.active)
                )
                if g.active:  # the first route after start is no failover: no page for it
                    self.metrics.failovers.labels(group=name, **{"from": old, "to": new}).inc()
                    self.counters.failovers += 1
                g.active, g.last_change = d.active, now
            g.reason = d.reason
            self.metrics.set_group_active(name, list(g.spec.links), g.active)
        return decisions

    # -- act -----------------------------------------------------------------------------
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
                active=g.active,
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
                self.counters.reconcile_errors += 1
                self.metrics.reconciles.labels(result="error").inc()
                log.error("reconcile failed: %s", exc)
                self.journal.record("error", "routes", f"reconcile failed: {exc}")
                return
            finally:
                self.metrics.reconcile_duration.observe(time.perf_counter() - started)
            plan = result.plan
            text = plan.describe()
            if self.dry_run:
                if not plan.empty and text != self._last_plan:
                    print(f"[dry-run] would change:\n{text}", flush=True)
                    self._last_plan = text
                    missing = sorted({s.rule.table for s in plan.steps
                                      if isinstance(s, routes.AddRule)})
                    if missing:
                        # A dry run creates nothing, not even the per-link tables that let
                        # a probe bound to a link leave through it: such links read down.
                        self._report_once(
                            f"dry run: per-link tables/rules {missing} do not exist yet, so "
                            "probes through links other than the current route cannot reach "
                            "far targets and those links will read down; run once without "
                            "--dry-run to create them"
                        )
                self.metrics.reconciles.labels(result="dry_run").inc()
                return
            self._note_applied(desired, result)
            if result.done:
                self.metrics.reconciles.labels(result="changed").inc()
                log.info("routes: %s", "; ".join(step.describe() for step in result.done))
                self.journal.record("action", "routes",
                                    "\n".join(step.describe() for step in result.done))
            elif result.ok:
                self.metrics.reconciles.labels(result="noop").inc()
            for err in result.errors:
                self.counters.reconcile_errors += 1
                self.metrics.reconciles.labels(result="error").inc()
                self._report_once(err.describe())
            for conflict in plan.conflicts:
                self._report_once(conflict.describe())
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

    def _report_once(self, problem: str) -> None:
        """Log and journal a standing problem when it first shows, not every cycle."""
        if problem in self.counters.conflicts:
            return
        self.counters.conflicts.append(problem)
        del self.counters.conflicts[:-20]
        log.error("routes: %s", problem)
        self.journal.record("error", "routes", problem)

    async def _flush(self, group: str, old_links: tuple[str, ...]) -> None:
        g = self.groups[group]
        sources = {name: rt.source for name, rt in self.links.items()}
        old_sources = stale_sources(old_links, g.active, sources)
        if not old_sources:
            return
        res = await flush_after_switch(old_sources, g.flush_rules)
        self.metrics.conntrack_flushed.labels(group=group).inc(res.deleted)
        log.info("%s: %s", group, res.describe())
        self.journal.record("action", group, res.describe(), deleted=res.deleted,
                            errors=res.errors, timed_out=res.timed_out)

    def resume_from_journal(self) -> None:
        """Links that were down when the last daemon stopped start down, so a restart
        cannot shortcut their hold-down (the journal is the memory across restarts)."""
        for name, rt in self.links.items():
            last = read_events(self.journal.path, limit=1, kind="transition", subject=name)
            if last and last[0].data.get("new") == HealthState.DOWN.value:
                tr = rt.health.resume_down(self.now(), f"down before the restart "
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
            addrs = found.get(rt.cfg.interface, [])
            gateway = ipaddress.ip_address(rt.cfg.gateway)
            # Only the gateway's family; no IPv6 link-local address, which cannot reach
            # far targets (a link-local gateway is fine: the global address is picked).
            ifaces = [
                i
                for a in addrs
                if (i := ipaddress.ip_interface(a)).version == gateway.version
                and not (i.version == 6 and i.ip.is_link_local)
            ]
            # The address in the gateway's subnet, else the interface's primary one.
            on_link = [i for i in ifaces if gateway in i.network] or ifaces
            if not on_link:
                log.warning("%s: no address on %s yet; probes go out unbound to a source",
                            rt.cfg.name, rt.cfg.interface)
                continue
            pick = str(on_link[0].ip)
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
                    g.active = g.applied = found
                    g.reason = f"kept from before start: {','.join(found)}"
                    log.info("%s: found route via %s, keeping it until health is known",
                             name, ",".join(found))

    async def cycle(self) -> None:
        before = {name: g.active for name, g in self.groups.items()}
        self.decide()
        left = {
            name: before[name]
            for name, g in self.groups.items()
            if before[name] and set(before[name]) != set(g.active)
        }
        await self.reconcile(left)
        if self.telephony is not None:
            await self._telephony_cycle(bool(left))

    async def _telephony_cycle(self, links_moved: bool) -> None:
        """DID plan from trunk, link and destination health; pushed to the SIP edge(s)."""
        tel = self.telephony
        assert tel is not None
        now = self.now()
        if now - self._edge_read_at >= 2.0:
            self._edge_read_at = now
            await tel.read_edge_failures(now)
        plan = tel.decide(now, {name: rt.health.state for name, rt in self.links.items()})
        if self.dry_run:
            return
        # After the site's route moved, registrations must leave over the new link; the
        # request stands until a push carried it, so a failed push cannot lose it.
        if links_moved:
            self._pending_refresh |= {t.name for t in self.cfg.trunks
                                      if t.registration is not None}
        # Trunks that follow the route leave from (and advertise) the address of the link
        # the kernel route uses now (see TrunkState.source), not a decision not yet applied.
        active = next((g.applied[0] for g in self.groups.values() if g.applied), None)
        sources = {name: rt.source for name, rt in self.links.items()}
        if await tel.push(plan, tuple(sorted(self._pending_refresh)), sources, active):
            self._pending_refresh.clear()

    # -- tell ----------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        now = self.now()
        links = []
        for name, rt in self.links.items():
            m = rt.health.metrics()
            links.append(
                {
                    "name": name,
                    "interface": rt.cfg.interface,
                    "gateway": rt.cfg.gateway,
                    "tier": rt.cfg.tier,
                    "state": rt.health.state.value,
                    "since": None if rt.health.since is None else round(now - rt.health.since, 3),
                    "reason": rt.health.reason,
                    "carrier": rt.carrier,
                    "loss_ratio": m.loss_ratio,
                    "latency": m.latency,
                    "jitter": m.jitter,
                    "mos": m.mos,
                    "rounds": m.rounds,
                    "hold_down_remaining": rt.health.hold_down_remaining(now),
                }
            )
        groups = [
            {
                "name": name,
                "table": g.table,
                "destination": g.destination,
                "active": list(g.applied),
                "decided": list(g.active),
                "reason": g.reason,
                "since_change": None if g.last_change is None else round(now - g.last_change, 3),
            }
            for name, g in self.groups.items()
        ]
        return {
            "site": self.cfg.site,
            "version": VERSION,
            "dry_run": self.dry_run,
            "uptime": round(time.time() - self.started, 1),
            "links": links,
            "groups": groups,
            "failovers": self.counters.failovers,
            "reconcile_errors": self.counters.reconcile_errors,
            "conflicts": self.counters.conflicts,
        } | (self.telephony.status(now) if self.telephony is not None else {})

    # -- run -----------------------------------------------------------------------------
    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self.resume_from_journal()
        cfg = self.cfg
        self.journal.record(
            "start",
            "daemon",
            f"lifeline {VERSION} started" + (" (dry run)" if self.dry_run else ""),
            site=cfg.site,
        )
        server = HttpServer(
            make_app(self.metrics, self.status,
                     self.telephony.lookup if self.telephony is not None else None),
            cfg.listen, Path(cfg.api_socket_path)
        )
        await server.start()
        self._nl = Netlink()
        await self._nl.__aenter__()
        self._reconciler = routes.RouteReconciler(self._nl)
        await self.resolve_sources()
        await self.adopt_current_routes()
        # Per-link tables and source rules first: probes bound to a link need its table to
        # reach far targets, and the group route stays as found until health is known.
        await self.reconcile({})
        watch = LinkWatch(list(self.by_ifname), self.on_carrier)
        await watch.start()
        for name, rt in self.links.items():
            rt.scheduler = RoundScheduler(
                rt.specs,
                interval=rt.cfg.effective_interval,
                timeout=rt.cfg.effective_timeout,
                on_round=functools.partial(self.on_round, name),
                name=name,
            )
            rt.scheduler.start()
        if self.telephony is not None:
            self.telephony.start(self._wake)
        # SIGTERM must not wait for the next reconcile tick.
        waker = asyncio.create_task(self._wake_on(stop))
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), cfg.reconcile_interval)
                self._wake.clear()
                if stop.is_set():
                    break
                await self.cycle()
                self.metrics.journal_errors.set(self.journal.write_errors)
        finally:
            waker.cancel()
            for rt in self.links.values():
                if rt.scheduler is not None:
                    await rt.scheduler.stop()
            await watch.stop()
            if self.telephony is not None:
                await self.telephony.stop()
            for edge in self.edges:
                await edge.close()
            await server.stop()
            await self._nl.__aexit__(None, None, None)
            close_all()
            kept = "; ".join(
                f"{n} via {','.join(g.active) or 'unchanged'}" for n, g in self.groups.items()
            )
            log.info("stopped; routes left in place: %s", kept)
            self.journal.record("stop", "daemon", f"stopped; routes left in place: {kept}")
            self.journal.close()


async def run_daemon(cfg: Config, *, dry_run: bool = False) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        daemon = Daemon(cfg, dry_run=dry_run)
    except (ValueError, OSError) as exc:  # e.g. a secret file or variable that is not there
        log.error("cannot start: %s", exc)
        return 2
    log.info(
        "lifeline %s: site %s, %d links, %d route groups%s",
        VERSION,
        cfg.site,
        len(cfg.links),
        len(cfg.route_groups),
        " (dry run)" if dry_run else "",
    )
    await daemon.run(stop)
    return 0

