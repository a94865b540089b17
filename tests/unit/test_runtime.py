"""The daemon's wiring without root: probe samples -> health -> policy -> routes -> snapshot.

The real ``Daemon.run`` loop, with a kernel in memory (``fakenetlink``) instead of netlink
and looptime's fast-forwarded event-loop clock, so a 10 s hold-down takes milliseconds.
Each test runs its own looptime loop (``fast``), closed at the end: looptime's pytest
plugin is off (it leaves a loop open for every sync test).
Samples are fed the way the probe schedulers feed them (``on_round`` with the loop's time);
the tests read only what an operator reads: the kernel's routes, the snapshot, the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from unittest import mock

import looptime
import pytest

from controller.actuators.conntrack import FlushResult
from controller.actuators.netlink import Netlink, Nexthop, RouteEntry
from controller.config import parse_config
from controller.core.health import HealthState
from controller.core.snapshot import Snapshot
from controller.core.staleflows import StaleFlows
from controller.runtime.daemon import Daemon
from controller.runtime.journal import read_events
from probes.sample import ErrorKind, Sample
from tests.unit.daemonloop import looping
from tests.unit.fakenetlink import FakeKernel

GW = {"fibre-a": "198.51.100.1", "fibre-b": "203.0.113.1"}
ALIVE = Sample.success(0.012)
LOST = Sample.failure(ErrorKind.TIMEOUT)


@pytest.fixture(autouse=True)
def _no_host_conntrack() -> Iterator[None]:
    """The daemon here runs in the machine's own namespace with a kernel in memory; its
    conntrack sweep must not read (let alone delete from) the host's real table, so every
    test gets a sweep that finds nothing. A test about the flush patches its own over it."""
    async def nothing(stale: StaleFlows) -> FlushResult:
        return FlushResult(0, 0, 0, 0, False, 0.0, stale.addresses, stale.describe())

    with mock.patch("controller.runtime.links.flush_after_switch", nothing):
        yield


def fast_clock(test: Callable[[Path], Coroutine[Any, Any, None]]) -> Callable[[Path], None]:
    """Make ``test`` a plain test that runs on an event loop of its own whose clock jumps
    ahead whenever the loop would wait; no task may outlive it."""
    def run(tmp_path: Path) -> None:
        loop = looptime.new_event_loop(start=0.0)
        try:
            assert loop.looptime_on  # a start time switches the fake clock on
            loop.run_until_complete(test(tmp_path))
            pending = asyncio.all_tasks(loop)
            assert not pending, f"tasks left running: {pending}"
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    run.__name__, run.__doc__ = test.__name__, test.__doc__
    return run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(state: Path) -> str:
    return f"""
site: unit
state_dir: {state}
listen: 127.0.0.1:{_free_port()}
links:
  - {{name: fibre-a, interface: wan-a, gateway: {GW["fibre-a"]}, tier: 1,
     probes: {{targets: [{{icmp: 192.0.2.1}}, {{icmp: 192.0.2.2}}]}}}}
  - {{name: fibre-b, interface: wan-b, gateway: {GW["fibre-b"]}, tier: 2,
     probes: {{targets: [{{icmp: 192.0.2.1}}, {{icmp: 192.0.2.2}}]}}}}
route_groups: [{{name: internet, links: [fibre-a, fibre-b]}}]
"""


@dataclass
class Site:
    daemon: Daemon
    kernel: FakeKernel

    @property
    def snap(self) -> Snapshot:
        assert self.daemon.latest is not None
        return self.daemon.latest

    def state(self, link: str) -> HealthState:
        return next(k.state for k in self.snap.links if k.name == link)

    async def rounds(self, seconds: float, **samples: Sample) -> None:
        """Feed a round to each named link every probe interval for ``seconds`` of loop
        time (``fibre_a=LOST`` means fibre-a's targets all time out)."""
        loop = asyncio.get_running_loop()
        interval = self.daemon.routing.links["fibre-a"].cfg.effective_interval
        for _ in range(round(seconds / interval)):
            for key, sample in samples.items():
                name = key.replace("_", "-")
                rt = self.daemon.routing.links[name]
                self.daemon.routing.on_round(name, loop.time(), [sample] * len(rt.specs))
            await asyncio.sleep(interval)

    async def until(self, what: str, check: Callable[[], bool], timeout: float = 5.0,
                    **samples: Sample) -> None:
        """Keep feeding ``samples`` until ``check()`` holds (loop time bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not check():
            assert loop.time() < deadline, f"not within {timeout} s: {what}"
            await self.rounds(0.2, **samples)


def _kernel() -> FakeKernel:
    kernel = FakeKernel()
    kernel.add_link("wan-a", "198.51.100.2/24")
    kernel.add_link("wan-b", "203.0.113.2/24")
    return kernel


@contextlib.asynccontextmanager
async def running(tmp_path: Path, kernel: FakeKernel) -> AsyncIterator[Site]:
    """The daemon's real loop on ``kernel``, its config in ``tmp_path/lifeline.yaml``;
    stopped (and awaited) whatever happens."""
    path = tmp_path / "lifeline.yaml"
    path.write_text(_config(tmp_path / "state"))
    # The fake kernel answers every call the daemon makes of Netlink (tests/unit/fakenetlink).
    adapter = cast(Callable[[str | None], Netlink], kernel.adapter)
    daemon = Daemon(parse_config(path.read_text()), netlink=adapter,
                    start_probes=False, config_path=path)
    async with looping(daemon):
        yield Site(daemon, kernel)


@contextlib.asynccontextmanager
async def up_site(tmp_path: Path) -> AsyncIterator[Site]:
    """Both links up and the site's route via fibre-a."""
    kernel = _kernel()
    async with running(tmp_path, kernel) as s:
        await s.until("both links up", lambda: s.state("fibre-a") is HealthState.UP
                      and s.state("fibre-b") is HealthState.UP, fibre_a=ALIVE, fibre_b=ALIVE)
        await s.until("the route via fibre-a", lambda: kernel.default_via() == [GW["fibre-a"]],
                      fibre_a=ALIVE, fibre_b=ALIVE)
        yield s


@fast_clock
async def test_a_dead_link_moves_the_route_and_every_reader_agrees(tmp_path: Path) -> None:
    async with up_site(tmp_path) as site:
        assert site.snap.count("lifeline_failovers_total", ("internet", "fibre-a", "fibre-b")) == 0
        loop = asyncio.get_running_loop()
        dead_at = loop.time()
        await site.until("the route moved to fibre-b",
                         lambda: site.kernel.default_via() == [GW["fibre-b"]],
                         fibre_a=LOST, fibre_b=ALIVE)
        # three lost 200 ms rounds, then the next cycle: well under a second of loop time
        assert loop.time() - dead_at < 1.5
        await site.rounds(1.0, fibre_a=LOST, fibre_b=ALIVE)  # the next cycle publishes it
        snap = site.snap
        assert site.state("fibre-a") is HealthState.DOWN
        group = snap.groups[0]
        assert group.applied == group.decided == ("fibre-b",)
        assert snap.count("lifeline_failovers_total", ("internet", "fibre-a", "fibre-b")) == 1
        assert snap.count("lifeline_link_transitions_total", ("fibre-a", "down")) == 1
        assert snap.count("lifeline_probes_total", ("fibre-a", "icmp", "timeout")) >= 6
        doc = site.daemon.status()
        assert doc["groups"][0]["active"] == ["fibre-b"] and doc["failovers"] == 1
        decisions = read_events(site.daemon.journal.path, kind="decision", subject="internet")
        assert decisions and "fibre-a" in decisions[0].message


@fast_clock
async def test_carrier_loss_moves_the_route_without_waiting_for_probes(tmp_path: Path) -> None:
    async with up_site(tmp_path) as site:
        site.kernel.carrier("wan-a", False)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 0.5
        while site.kernel.default_via() != [GW["fibre-b"]]:
            assert loop.time() < deadline, "no failover on carrier loss"
            await asyncio.sleep(0.01)  # no rounds fed at all


@fast_clock
async def test_failback_waits_for_the_hold_down(tmp_path: Path) -> None:
    async with up_site(tmp_path) as site:
        await site.until("failover", lambda: site.kernel.default_via() == [GW["fibre-b"]],
                         fibre_a=LOST, fibre_b=ALIVE)
        loop = asyncio.get_running_loop()
        back_at = loop.time()
        hold = site.daemon.routing.links["fibre-a"].cfg.thresholds.hold_down
        await site.until("failback", lambda: site.kernel.default_via() == [GW["fibre-a"]],
                         timeout=hold + 30, fibre_a=ALIVE, fibre_b=ALIVE)
        assert loop.time() - back_at >= hold
        assert site.snap.links[0].hold_down_remaining == 0.0


@fast_clock
async def test_a_foreign_route_in_our_place_is_a_standing_problem_not_replaced(
        tmp_path: Path) -> None:
    kernel = _kernel()
    foreign = RouteEntry(254, "default", 0, proto=4, nexthops=(Nexthop("198.51.100.9", "wan-a"),))
    kernel.routes[foreign.key] = foreign
    async with running(tmp_path, kernel) as s:
        await s.until("the conflict reported", lambda: bool(s.snap.problems),
                      fibre_a=ALIVE, fibre_b=ALIVE)
        await s.rounds(2.0, fibre_a=ALIVE, fibre_b=ALIVE)
        assert kernel.routes[foreign.key] == foreign  # never replaced without takeover
        assert any("internet" in p for p in s.snap.problems)
        assert s.daemon.status()["problems"] == list(s.snap.problems)
        del kernel.routes[foreign.key]  # the operator removes it: the problem is gone
        await s.until("the problem no longer standing", lambda: not s.snap.problems,
                      fibre_a=ALIVE, fibre_b=ALIVE)
        assert kernel.default_via() == [GW["fibre-a"]]
        assert s.snap.problems == () and s.daemon.status()["problems"] == []


@fast_clock
async def test_a_route_changed_by_hand_at_our_key_is_put_back(tmp_path: Path) -> None:
    async with up_site(tmp_path) as site:
        key = next(k for k in site.kernel.routes if k[1] == 254 and k[2] == "default")
        site.kernel.routes[key] = RouteEntry(254, "default", key[3], proto=3,
                                             nexthops=(Nexthop(GW["fibre-b"], "wan-b"),))
        await site.until("the route put back", lambda: site.kernel.default_via() == [GW["fibre-a"]],
                         fibre_a=ALIVE, fibre_b=ALIVE)


@fast_clock
async def test_a_kernel_that_refuses_a_route_is_retried_and_the_loop_lives(tmp_path: Path) -> None:
    async with up_site(tmp_path) as site:
        site.kernel.refuse_routes = True
        await site.rounds(2.0, fibre_a=LOST, fibre_b=ALIVE)
        assert site.kernel.default_via() == [GW["fibre-a"]]
        assert site.snap.count("lifeline_reconcile_total", ("error",)) >= 1
        assert site.snap.groups[0].decided == ("fibre-b",)
        assert site.snap.groups[0].applied == ("fibre-a",)  # the status never runs ahead
        site.kernel.refuse_routes = False
        await site.until("the route applied once the kernel takes it",
                         lambda: site.kernel.default_via() == [GW["fibre-b"]],
                         fibre_a=LOST, fibre_b=ALIVE)


@fast_clock
async def test_a_failover_flushes_what_is_nat_ed_to_every_address_of_the_link_left(
        tmp_path: Path) -> None:
    """The sweep itself is the kernel's (tests/integration/test_conntrack.py); here, what the
    daemon asks it for: fibre-a's found source and the alias an SNAT rule may use, read off
    the interface at the switch, not fibre-b's; counted, journaled."""
    asked: list[StaleFlows] = []

    async def sweep(stale: StaleFlows) -> FlushResult:
        asked.append(stale)
        return FlushResult(4, 4, 9, 0, False, 0.001, stale.addresses, stale.describe())

    with mock.patch("controller.runtime.links.flush_after_switch", sweep):
        async with up_site(tmp_path) as site:
            site.kernel.addresses["wan-a"].append("198.51.100.9/24")  # an alias added later
            await site.until("failover", lambda: bool(asked), fibre_a=LOST, fibre_b=ALIVE)
            await site.rounds(1.0, fibre_a=LOST, fibre_b=ALIVE)
    assert len(asked) == 1, asked
    stale = asked[0]
    assert stale.addresses == ("198.51.100.2", "198.51.100.9") and stale.rules is None
    assert site.snap.count("lifeline_conntrack_flushed_total", ("internet",)) == 4
    flushes = read_events(site.daemon.journal.path, kind="action", subject="internet")
    assert flushes and flushes[0].data["deleted"] == 4
    assert "NAT'ed to 198.51.100.2, 198.51.100.9 (fibre-a)" in flushes[0].message


# -- SIGHUP: reload the config ---------------------------------------------------------------


async def _reload(site: Site, text: str) -> None:
    """Write ``text`` as the config file, ask for a reload (what SIGHUP does), and let the
    next cycle run."""
    path = site.daemon.config_path
    assert path is not None
    path.write_text(text)
    site.daemon.request_reload()
    await site.rounds(1.2, fibre_a=ALIVE, fibre_b=ALIVE)


@fast_clock
async def test_a_bad_config_is_refused_and_the_running_one_keeps_protecting(
        tmp_path: Path) -> None:
    async with up_site(tmp_path) as site:
        good = site.daemon.config_path.read_text()  # type: ignore[union-attr]
        await _reload(site, good.replace("tier: 2", "tier: two").replace("gateway: 203", "gw: 203"))
        snap = site.snap
        assert snap.reload_error is not None and "tier" in snap.reload_error
        assert snap.count("lifeline_config_reloads_total", ("refused",)) == 1
        assert site.daemon.status()["config"]["reload_error"] == snap.reload_error
        refused = read_events(site.daemon.journal.path, kind="error", subject="config")
        assert refused and "reload refused" in refused[0].message
        # the old config still runs: a dead fibre-a still moves the route
        await site.until("failover under the old config",
                         lambda: site.kernel.default_via() == [GW["fibre-b"]],
                         fibre_a=LOST, fibre_b=ALIVE)
        # a good file later clears the error
        await _reload(site, good)
        assert site.snap.reload_error is None
        assert site.snap.count("lifeline_config_reloads_total", ("ok",)) == 1


@fast_clock
async def test_a_good_reload_keeps_what_is_known_and_applies_what_changed(
        tmp_path: Path) -> None:
    async with up_site(tmp_path) as site:
        routing = site.daemon.routing
        health_a = routing.links["fibre-a"].health
        good = site.daemon.config_path.read_text()  # type: ignore[union-attr]
        swapped = (good.replace("tier: 1,", "tier: 9,").replace("tier: 2,", "tier: 1,")
                   .replace("route_groups:", "defaults: {thresholds: {hold_down: 3s}}\n"
                            "route_groups:"))
        path = site.daemon.config_path
        assert path is not None
        path.write_text(swapped)
        site.daemon.request_reload()
        await site.rounds(0.2, fibre_a=ALIVE, fibre_b=ALIVE)
        # Both links stay known (no trip through unknown), fibre-a keeps its health object,
        # retuned to the new hold-down; the tier swap moves the route, once.
        assert routing.links["fibre-a"].health is health_a
        assert health_a.params.hold_down == 3.0
        assert site.state("fibre-a") is HealthState.UP
        await site.until("the route follows the new tiers",
                         lambda: site.kernel.default_via() == [GW["fibre-b"]],
                         fibre_a=ALIVE, fibre_b=ALIVE)
        assert site.snap.count("lifeline_failovers_total", ("internet", "fibre-a", "fibre-b")) == 1
        assert site.snap.count("lifeline_link_transitions_total", ("fibre-a", "unknown")) == 0
        done = read_events(site.daemon.journal.path, kind="action", subject="config")
        assert done and "link fibre-a: settings changed, health kept" in done[0].message


@fast_clock
async def test_a_reload_that_adds_a_link_probes_it_and_restart_only_settings_wait(
        tmp_path: Path) -> None:
    async with up_site(tmp_path) as site:
        site.kernel.add_link("wwan0", "100.64.0.2/24")
        good = site.daemon.config_path.read_text()  # type: ignore[union-attr]
        listen = site.daemon.cfg.listen
        grown = good.replace(
            "route_groups: [{name: internet, links: [fibre-a, fibre-b]}]",
            "  - {name: lte, interface: wwan0, gateway: 100.64.0.1, tier: 3,\n"
            "     probes: {targets: [{icmp: 192.0.2.1}]}}\n"
            "route_groups: [{name: internet, links: [fibre-a, fibre-b, lte]}]",
        ).replace(f"listen: {listen}", "listen: 127.0.0.1:1")
        await _reload(site, grown)
        daemon = site.daemon
        assert "lte" in daemon.routing.links and daemon.cfg.listen == listen
        assert daemon.routing.links["lte"].source == "100.64.0.2"  # found on its interface
        assert site.kernel.default_via() == [GW["fibre-a"]]  # nothing moved
        await site.until("lte up", lambda: site.state("lte") is HealthState.UP,
                         fibre_a=ALIVE, fibre_b=ALIVE, lte=ALIVE)


@fast_clock
async def test_rounds_of_a_replaced_link_are_dropped_and_a_failing_reload_is_refused(
        tmp_path: Path) -> None:
    async with up_site(tmp_path) as site:
        routing = site.daemon.routing
        old_b = routing.links["fibre-b"]
        good = site.daemon.config_path.read_text()  # type: ignore[union-attr]
        await _reload(site, good.replace("{icmp: 192.0.2.2}]}}\nroute",
                                         "{icmp: 192.0.2.3}]}}\nroute"))
        assert routing.links["fibre-b"] is not old_b  # its probes changed: a new runtime
        # a round the old scheduler still delivers (two targets) is not the new link's news
        loop = asyncio.get_running_loop()
        new_b = routing.links["fibre-b"].health
        before = new_b.metrics().rounds
        routing._round(old_b, loop.time(), [LOST, LOST])
        assert new_b.metrics().rounds == before and new_b.metrics().loss_ratio == 0.0

        def broken(cfg: object) -> None:
            raise RuntimeError("netlink went away")

        routing.reconfigure = broken  # type: ignore[assignment,method-assign]
        await _reload(site, good)
        assert site.snap.reload_error is not None and "netlink went away" in site.snap.reload_error
        await site.until("still protecting: failover", lambda: site.kernel.default_via() == [
            GW["fibre-b"]], fibre_a=LOST, fibre_b=ALIVE)
