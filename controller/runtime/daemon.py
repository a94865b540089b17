"""The daemon: one control loop that wires sense -> decide -> act -> tell.

It owns the clock (the event loop's monotonic time, handed to every core), the journal,
the tally of counters, the kernel adapter, the HTTP face and the components' runtimes
(``links.LinkRouting`` for links and routes, ``trunks.Telephony`` for trunks and the DID
plan). A health transition wakes the loop at once; otherwise it cycles every
``reconcile_interval`` (level-triggered: a manual change, a lost event or a restart
converges by itself). Each cycle decides, converges the kernel and the SIP edge, and
publishes one frozen snapshot that every exporter reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from controller.actuators.netlink import Netlink
from controller.actuators.sipedge.drivers import drivers_from_config
from controller.config import Config, ConfigError, load_config
from controller.core.health import HealthState
from controller.core.snapshot import (
    JournalSnap,
    OverrideSnap,
    Snapshot,
    Tally,
)
from controller.runtime.journal import Journal
from controller.runtime.links import LinkRouting
from controller.runtime.linkwatch import LinkWatch
from controller.runtime.maintenance import MAINTENANCE_FILE, MaintenanceAnswer
from controller.runtime.overridebook import OVERRIDES_FILE, OverrideBook
from controller.runtime.overrides import Overrides
from controller.runtime.paging import AlertPoster
from controller.runtime.power import PowerWatch, UpsReader
from controller.runtime.recordings import RecordingsWatch
from controller.runtime.sdnotify import Notifier
from controller.runtime.services import ServiceChecks
from controller.runtime.trunks import Telephony
from controller.version import VERSION as VERSION  # importable from here, as before
from exporters.http import HttpServer, make_app
from exporters.operator_api import ApiPolicy
from exporters.status import status_document
from exporters.statuspage import StatusPage
from probes.icmp import close_all
from probes.recdisk import DiskReport, read_disk

log = logging.getLogger("lifeline")

# Settings a reload cannot take while running: where state lives and what the API listens
# on are bound at start, and a new route protocol or rule priority would make lifeline's
# own routes look foreign. A change to one is logged and waits for a restart.
RESTART_ONLY = ("state_dir", "journal", "listen", "api_socket", "api", "log_format",
                "route_protocol", "rule_priority", "alertmanager")


class Daemon:
    def __init__(
        self,
        cfg: Config,
        *,
        dry_run: bool = False,
        journal: Journal | None = None,
        netlink: Callable[[str | None], Netlink] = Netlink,
        start_probes: bool = True,
        notifier: Notifier | None = None,
        config_path: Path | None = None,
        wall_clock: Callable[[], float] = time.time,
        ups_reader: Callable[..., UpsReader] = UpsReader,
        recordings_disk: Callable[[str], DiskReport] = read_disk,
    ) -> None:
        """``netlink`` builds the kernel adapter (tests hand in a fake); without
        ``start_probes`` no probe is sent and samples come from whoever calls the runtimes'
        ``on_round`` and ``on_result`` (tests, with a fast clock). ``wall_clock``: the
        time overrides are set and lapse by (their ``until`` is the operator's wall clock)."""
        self.cfg = cfg
        self.config_path = config_path  # what SIGHUP re-reads
        self.dry_run = dry_run
        self._netlink = netlink
        self._start_probes = start_probes
        self.journal = journal or Journal(Path(cfg.state_dir) / "journal.sqlite3", cfg.journal)
        self.notifier = notifier or Notifier()
        self._cycle_started: float | None = None  # loop time, while a cycle runs
        self.tally = Tally()
        self.latest: Snapshot | None = None
        # The status page keeps its own last hour, fed from each snapshot published.
        self.page = StatusPage(recent_events=self.journal.recent)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self.routing = LinkRouting(cfg, self.journal, self.tally, dry_run=dry_run,
                                   now=self.now, on_change=self._wake.set)
        self.tally.init("lifeline_journal_write_errors_total", ())
        # The API's tokens: a token file others can read, or none, refuses the start.
        self.api = ApiPolicy.open(**cfg.api.model_dump())
        self.edges = drivers_from_config(cfg)
        # The operator's overrides outlive a restart (state_dir is restart-only); an older
        # version's maintenance.json is migrated into them.
        self.wall = wall_clock
        state = Path(cfg.state_dir)
        book = OverrideBook(state / OVERRIDES_FILE, state / MAINTENANCE_FILE, wall_clock())
        self.overrides = Overrides(cfg, book, self.journal, wall_clock)
        self._override_snaps: tuple[OverrideSnap, ...] = ()
        # lifeline's own pages to Alertmanager; a dry run pages nobody.
        self.pager = (AlertPoster(cfg.alertmanager, self.tally)
                      if cfg.alertmanager is not None and not dry_run else None)
        self.telephony = (Telephony(cfg, self.journal, self.tally, self.edges, book)
                          if cfg.trunks or cfg.dids else None)
        if self.telephony is not None:  # a loss over a failing link is not the trunk's
            self.telephony.link_proof = self.routing.proof
        # The site's software; a down one a destination needs sends its DIDs to DR.
        self.services = ServiceChecks(cfg.services, self.journal, self.tally,
                                      on_change=self._wake.set)
        self._edge_read_at = -1e9
        self._ups_reader = ups_reader  # tests hand in fake UPS readers
        self.power = (PowerWatch(cfg.power, self.journal, self.now, wake=self._wake.set,
                                 reader=ups_reader, dry_run=dry_run)
                      if cfg.power is not None else None)
        # The call recordings and their backups, checked off the loop on a worker of its own.
        self._recordings_disk = recordings_disk  # tests hand in sample /proc/mdstat and /sys
        self.recordings = self._recordings_watch(cfg)
        self._pending_refresh: set[str] = set()
        self.started = time.time()
        self._nl: Netlink | None = None
        self._watch: LinkWatch | None = None
        self._reload_requested = False
        self.reload_error: str | None = None  # why the last reload was refused
        self.tally.init("lifeline_config_reloads_total", ("ok",), ("refused",))

    def now(self) -> float:
        """The daemon's clock: the event loop's monotonic time, handed to every core."""
        assert self._loop is not None
        return self._loop.time()

    # -- reload ----------------------------------------------------------------------------
    def request_reload(self) -> None:
        """SIGHUP: re-read the config file at the next turn of the loop."""
        self._reload_requested = True
        self._wake.set()

    def _refuse(self, why: str, detail: str) -> bool:
        self.reload_error = why
        self.tally.add("lifeline_config_reloads_total", ("refused",))
        log.error("config reload refused, the running config stays:\n%s", detail)
        self.journal.record("error", "config", f"reload refused: {why}")
        return False

    async def reload(self) -> bool:
        """Re-read the config file. A bad one is refused with every error and the running
        config stays; a good one is taken without forgetting what is known: links, trunks
        and groups it leaves alone keep their health and routes (controller.runtime.links,
        trunks). Settings in RESTART_ONLY keep their running values until a restart."""
        if self.config_path is None:
            log.warning("reload asked, but the daemon was started without a config file")
            return False
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            return self._refuse(f"{len(exc.errors)} error(s): " + "; ".join(exc.errors),
                                str(exc))
        later = [f for f in RESTART_ONLY if getattr(new, f) != getattr(self.cfg, f)]
        if later:
            log.warning("config reload: %s changed; that takes a restart, the running "
                        "value stays until then", ", ".join(later))
            new = new.model_copy(update={f: getattr(self.cfg, f) for f in later})
        try:
            edges = self.edges if new.sip_edge == self.cfg.sip_edge else drivers_from_config(new)
        except (ValueError, OSError) as exc:  # e.g. a webhook secret that is not there
            return self._refuse(str(exc), str(exc))
        routing = self.routing
        stop, start, changes = routing.reconfigure(new)
        await routing.stop_probes(stop)
        await routing.resolve_sources()
        if self._start_probes:
            routing.start_probes(start)
        if self._watch is not None and set(routing.by_ifname) != self._watch.ifnames:
            await self._watch.stop()
            self._watch = LinkWatch(list(routing.by_ifname), routing.on_carrier,
                                    netlink=self._netlink)
            await self._watch.start()  # reports every interface's carrier, as at start
        elif self._watch is not None:
            # A runtime made anew starts with carrier; the watch only reports changes.
            for rt in start:
                if self._watch.carrier(rt.cfg.interface) is False:
                    routing.on_carrier(rt.cfg.interface, False,
                                       f"{rt.cfg.interface}: no carrier (kept across reload)")
        tel = self.telephony
        if new.trunks or new.dids:
            if tel is None:
                tel = self.telephony = Telephony(new, self.journal, self.tally, edges,
                                                 self.overrides.book)
                tel.link_proof = self.routing.proof
                tel.start(self._wake, probes=self._start_probes)
                changes.append("telephony: on")
            else:
                changes += await tel.reconfigure(new, edges)
        elif tel is not None:
            await tel.stop()
            self.telephony = None
            changes.append("telephony: off")
        changes += await self._reload_power(new)
        changes += await self._reload_recordings(new)
        changes += await self.services.reconfigure(new.services)
        if edges is not self.edges:
            for edge in self.edges:
                await edge.close()
            if self.pager is not None:
                await self.pager.close()
            self.edges = edges
        self.cfg, self.reload_error = new, None
        self.overrides.reconfigure(new)
        self.tally.add("lifeline_config_reloads_total", ("ok",))
        what = "; ".join(changes) or "nothing that changes probing or routing"
        log.info("config reloaded from %s: %s", self.config_path, what)
        self.journal.record("action", "config", f"config reloaded: {what}")
        return True

    async def _reload_power(self, new: Config) -> list[str]:
        power = self.power
        if new.power is None:
            if power is None:
                return []
            await power.stop()
            self.power = None
            return ["power: off"]
        if power is None:
            self.power = PowerWatch(new.power, self.journal, self.now, wake=self._wake.set,
                                    reader=self._ups_reader, dry_run=self.dry_run)
            if self._start_probes:
                self.power.start()
            return ["power: on"]
        return await power.reconfigure(new.power)

    def _recordings_watch(self, cfg: Config) -> RecordingsWatch | None:
        if cfg.recordings is None:
            return None
        return RecordingsWatch(cfg.recordings, self.journal, cfg.state_dir, self.wall,
                               self._wake.set, disk=self._recordings_disk)

    async def _reload_recordings(self, new: Config) -> list[str]:
        rec = self.recordings
        if new.recordings is None:
            if rec is None:
                return []
            await rec.stop()
            self.recordings = None
            return ["recordings: off"]
        if rec is None:
            self.recordings = self._recordings_watch(new)
            if self._start_probes and self.recordings is not None:
                self.recordings.start()
            return ["recordings: on"]
        return await rec.reconfigure(new.recordings)

    # -- operator requests (the API on the unix socket) -----------------------------------
    def set_maintenance(self, trunk: str, on: bool, reason: str = "") -> MaintenanceAnswer:
        """Take a trunk out of service or back; the next cycle pushes the new plan at once.
        KeyError: no such trunk."""
        if self.telephony is None:
            raise KeyError(trunk)
        result = self.telephony.set_maintenance(trunk, on, reason, now=self.wall())
        self._wake.set()
        return result

    def _health_now(self) -> tuple[dict[str, HealthState],
                                   dict[str, tuple[HealthState, str]] | None,
                                   dict[str, HealthState] | None,
                                   dict[str, tuple[str, ...]]]:
        """What an override's "applied" is judged on (controller.core.overrides.assess)."""
        tel = self.telephony
        return ({name: rt.health.state for name, rt in self.routing.links.items()},
                None if tel is None else tel.effective,
                None if tel is None else tel.destination_states,
                {name: g.decided for name, g in self.routing.groups.items()})

    def set_override(self, kind: str, target: str, value: str | None, reason: str, by: str,
                     until: float) -> Mapping[str, object]:
        """Hold an operator override (controller.runtime.overrides); the next cycle, at
        once, acts on it. KeyError: unknown target; ValueError: value or until refused."""
        answer = self.overrides.set(kind, target, value, reason, by, until,
                                    *self._health_now())
        self._wake.set()
        return answer

    def clear_override(self, kind: str, target: str, by: str,
                       reason: str) -> Mapping[str, object]:
        answer = self.overrides.clear(kind, target, by, reason)
        self._wake.set()
        return answer

    def resolve_did(self, number: str) -> str | None:
        return self.overrides.resolve_did(number)

    # -- the cycle -----------------------------------------------------------------------
    async def cycle(self) -> None:
        """Decide every route group, converge the kernel, then the DID plan and its push."""
        routing = self.routing
        self.overrides.lapse()
        before = {name: g.decided for name, g in routing.groups.items()}
        routing.decide(self.overrides.forced(), self.overrides.maintenance())
        site_dr = (self.power.decide(self.now()).site_dr if self.power is not None
                   else None)
        left = {
            name: before[name]
            for name, g in routing.groups.items()
            if before[name] and set(before[name]) != set(g.decided)
        }
        await routing.reconcile(left)
        self.services.tick(self.now())
        if self.telephony is not None:
            await self._telephony_cycle(bool(left), site_dr)
        self._override_snaps = self.overrides.tell(*self._health_now())

    async def _telephony_cycle(self, links_moved: bool, site_dr: str | None = None) -> None:
        """DID plan from trunk, link and destination health; pushed to the SIP edge(s)."""
        tel = self.telephony
        assert tel is not None
        now = self.now()
        if now - self._edge_read_at >= 2.0:
            self._edge_read_at = now
            await tel.read_edge_failures(now)
        links = {name: rt.health.state for name, rt in self.routing.links.items()}
        # Before deciding: a trunk's failures count only from when its path exists.
        tel.note_paths(now, self.routing.applied_link(), links)
        plan = tel.decide(now, links, self.overrides.pins(), site_dr,
                          self.services.views())
        if self.dry_run:
            return
        # After the site's route moved, registrations must leave over the new link; the
        # request stands until a push carried it, so a failed push cannot lose it.
        if links_moved:
            self._pending_refresh |= {t.name for t in self.cfg.trunks
                                      if t.registration is not None}
        # Trunks that follow the route leave from (and advertise) the address of the link
        # the kernel route uses now (see TrunkState.source), not a decision not yet applied.
        if await tel.push(plan, tuple(sorted(self._pending_refresh)),
                          self.routing.sources(), self.routing.applied_link()):
            self._pending_refresh.clear()

    # -- tell ----------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """Everything the daemon knows now, frozen: what every exporter reads."""
        now = self.now()
        cond = self.journal.condition
        writes_failed = cond.write_errors - self.tally.value(
            "lifeline_journal_write_errors_total")
        if writes_failed > 0:
            self.tally.add("lifeline_journal_write_errors_total", (), writes_failed)
        links, groups = self.routing.snapshot(now)
        counters, histograms = self.tally.freeze()
        tel = self.telephony
        trunks, destinations, edges = tel.snapshot(now) if tel is not None else ((), (), ())
        return Snapshot(
            site=self.cfg.site, version=VERSION, dry_run=self.dry_run, taken_at=time.time(),
            uptime=time.time() - self.started, links=links, groups=groups,
            trunks=trunks, destinations=destinations, edges=edges,
            plan=tel.plan if tel is not None else None,
            destination_uris=tel.destination_uris if tel is not None else {},
            problems=self.routing.problems.standing + (
                (self.overrides.book.problem,) if self.overrides.book.problem else ()),
            config_path=None if self.config_path is None else str(self.config_path),
            reload_error=self.reload_error,
            journal=JournalSnap(str(self.journal.path), cond.mode, cond.damaged_moved_to,
                                cond.problem),
            counters=counters, histograms=histograms, telephony=tel is not None,
            overrides=self._override_snaps, services=self.services.snapshot(now),
            power=self.power.snapshot(now) if self.power is not None else None,
            recordings=(self.recordings.snapshot(self.wall()) if self.recordings is not None
                        else None))

    def publish(self) -> Snapshot:
        """Take this cycle's snapshot and make it the one every reader sees."""
        self.latest = self.snapshot()
        self.page.published(self.latest)
        return self.latest

    def status(self) -> dict[str, Any]:
        """The status document of the latest snapshot (what ``/api/v1/status`` serves)."""
        return status_document(self.latest or self.publish())

    # -- run -----------------------------------------------------------------------------
    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    def routes_line(self, unset: str) -> str:
        """Each group and the link(s) it uses, in one line (systemd's STATUS, the stop log)."""
        return "; ".join(f"{n} via {','.join(g.decided) or unset}"
                         for n, g in self.routing.groups.items())

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        # Starting counts as a cycle for systemd's watchdog: a start that hangs stops the pings.
        self._cycle_started = self.now()
        watchdog = asyncio.create_task(self.notifier.watchdog(lambda: self._cycle_started))
        routing = self.routing
        cfg = self.cfg
        # Start first: what this run journals follows its start (the SLA report's runs).
        self.journal.record(
            "start",
            "daemon",
            f"lifeline {VERSION} started" + (" (dry run)" if self.dry_run else ""),
            site=cfg.site,
        )
        routing.resume_from_journal()
        self.publish()
        server = HttpServer(make_app(lambda: self.latest, control=self, api=self.api,
                                     page=self.page),
                            cfg.listen, Path(cfg.api_socket_path))
        try:
            await server.start()
        except OSError as exc:  # e.g. a state dir remounted read-only: the routes matter more
            log.error("cannot serve the API and metrics (%s); protecting the site without "
                      "them", exc)
        self._nl = self._netlink(None)
        await self._nl.__aenter__()
        routing.attach(self._nl)
        await routing.resolve_sources()
        await routing.adopt_current_routes()
        # Per-link tables and source rules first: probes bound to a link need its table to
        # reach far targets, and the group route stays as found until health is known.
        await routing.reconcile({})
        self._watch = LinkWatch(list(routing.by_ifname), routing.on_carrier,
                                netlink=self._netlink)
        await self._watch.start()
        if self._start_probes:
            routing.start_probes()
        if self.telephony is not None:
            # No trunk's path exists yet (no link is proven up): the first cycles tell.
            self.telephony.start(self._wake, probes=self._start_probes)
        self.services.start(probes=self._start_probes)
        if self.power is not None and self._start_probes:
            self.power.start()
        if self.recordings is not None and self._start_probes:
            self.recordings.start()
        # SIGTERM must not wait for the next reconcile tick.
        waker = asyncio.create_task(self._wake_on(stop))
        self._cycle_started = None
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    # An override lapses on time, not up to an interval late.
                    lapse = self.overrides.seconds_to_next_lapse()
                    await asyncio.wait_for(self._wake.wait(), self.cfg.reconcile_interval
                                           if lapse is None else
                                           min(self.cfg.reconcile_interval, lapse + 0.001))
                self._wake.clear()
                if stop.is_set():
                    break
                self._cycle_started = self.now()
                try:
                    if self._reload_requested:
                        self._reload_requested = False
                        try:
                            await self.reload()
                        except Exception as exc:  # protecting the site comes first
                            log.exception("config reload failed")
                            self._refuse(f"reload failed: {exc!r}", repr(exc))
                    await self.cycle()
                finally:
                    self._cycle_started = None
                snap = self.publish()
                if self.pager is not None:
                    self.pager.cycle(snap)
                self.notifier.running(self.routes_line("no route yet"))
        finally:
            self.notifier.stopping("stopping; routes stay as they are")
            watchdog.cancel()
            waker.cancel()
            await routing.stop_probes()
            if self._watch is not None:
                await self._watch.stop()
            if self.telephony is not None:
                await self.telephony.stop()
            await self.services.stop()
            if self.power is not None:
                await self.power.stop()
            if self.recordings is not None:
                await self.recordings.stop()
            for edge in self.edges:
                await edge.close()
            await server.stop()
            await self._nl.__aexit__(None, None, None)
            close_all()
            kept = self.routes_line("unchanged")
            log.info("stopped; routes left in place: %s", kept)
            self.journal.record("stop", "daemon", f"stopped; routes left in place: {kept}")
            self.journal.close()
            self.notifier.close()


async def run_daemon(cfg: Config, *, dry_run: bool = False,
                     config_path: Path | None = None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        daemon = Daemon(cfg, dry_run=dry_run, config_path=config_path)
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
    loop.add_signal_handler(signal.SIGHUP, daemon.request_reload)
    await daemon.run(stop)
    return 0

