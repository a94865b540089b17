"""End to end: the real lifeline daemon, run as an operator runs it, inside the lab's site.

Each test builds its own lab, starts ``lifeline run`` in the site namespace through
``lab.lifelined.LifelineProcess``, injects a fault on an ISP (``lab.faults``) and checks what
an engineer would check: the kernel's routes (not only what lifeline says about them), the
LAN's traffic (``lab.stream``), conntrack, the journal, ``/metrics`` and the CLI. Timing
bounds are generous on purpose (2 cores, CI alike): these tests prove behaviour, the
benchmarks measure speed. Configs use ``reliability=2`` (gateway plus two far targets: with 1
the gateway alone would keep a blackholed link up) and a short hold-down unless a test is
about the hold-down.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.runtime.journal import Event, read_events
from tests.lab.lifelined import LifelineProcess, default_route, route_devices
from tests.lab.netns import run_cmd
from tests.lab.stream import Stream, StreamResult
from tests.lab.topology import Lab
from tests.lab.wait import until

pytestmark = pytest.mark.lab

# What every test runs with unless it says otherwise (see the module docstring).
FAST: dict[str, Any] = {"reliability": 2, "hold_down": "2s"}
LISTEN = "127.0.0.1:9730"  # inside the site namespace: its own loopback


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Callable[..., LifelineProcess]]:
    """``start(lab, *cli_args, state="state", **config overrides)`` -> a running daemon.

    Teardown stops every daemon (the lab would kill it anyway) and prints its log, which
    pytest shows only for a failed test: the first thing one wants to read then.
    """
    made: list[LifelineProcess] = []

    def start(lab: Lab, *args: str, state: str = "state", **overrides: Any) -> LifelineProcess:
        daemon = LifelineProcess(lab, tmp_path / state, *args, **{**FAST, **overrides})
        made.append(daemon)
        daemon.start()
        return daemon

    yield start
    for daemon in made:
        daemon.stop()
        print(f"--- lifeline log ({daemon.state_dir}) ---\n{daemon.log()[-6000:]}")


def site(lab: Lab, *argv: str) -> str:
    return lab.run(lab.site, list(argv)).stdout


def lifeline_route(lab: Lab) -> list[dict[str, Any]]:
    """The default route(s) of main at metric 0: where lifeline's group route lives (a test
    may add a foreign default at another metric)."""
    return [r for r in default_route(lab) if int(r.get("metric", 0)) == 0]


def wait_switched(daemon: LifelineProcess, links: list[str], timeout: float = 15.0) -> float:
    """Wait until the status API says the group uses ``links``; when it switched
    (monotonic: the daemon's loop clock is the same CLOCK_MONOTONIC)."""
    before = time.monotonic()
    st = daemon.wait_active(links, timeout)
    since = next(g["since_change"] for g in st["groups"] if g["name"] == "internet")
    return time.monotonic() - float(since) if since is not None else before


def journal(daemon: LifelineProcess, kind: str) -> list[Event]:
    """The daemon's journal events of one kind, oldest first (a file: no namespace needed)."""
    return read_events(daemon.state_dir / "journal.sqlite3", 500, kind)


def link_status(st: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(lk for lk in st["links"] if lk["name"] == name)
    return found


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples ``name`` whose labels include ``labels`` (0 when none)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


# Runs inside the site namespace with the lab's Python. No proxy handler: an http_proxy in
# the environment must not send a lab request anywhere but the site's own loopback.
_FETCH = (
    "import sys, urllib.request\n"
    "opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
    "with opener.open(sys.argv[1], timeout=5) as r:\n"
    "    sys.stdout.write(r.read().decode())\n"
)


def scrape(lab: Lab) -> str:
    """/metrics as a Prometheus next to lifeline sees it: TCP inside the site namespace."""
    return site(lab, sys.executable, "-c", _FETCH, f"http://{LISTEN}/metrics")


class RouteSampler:
    """Samples the site's main default route every ``interval`` in a thread.

    The status API says what lifeline believes; this records what the kernel did between
    two polls ("was the route ever on wan-a while the link flapped?"). Samples are
    ``(monotonic time, devices)``; ``()`` means no default route. Bounded by max_seconds.
    """

    def __init__(self, lab: Lab, interval: float = 0.05, max_seconds: float = 60.0) -> None:
        self.samples: list[tuple[float, tuple[str, ...]]] = []
        self.errors = 0
        self._argv = ["ip", "-n", lab.site, "-j", "route", "show", "table", "main", "default"]
        self._interval = interval
        self._max_seconds = max_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="route-sampler", daemon=True)

    def __enter__(self) -> RouteSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        deadline = time.monotonic() + self._max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                routes = json.loads(run_cmd(self._argv, timeout=5).stdout or "[]")
            except (OSError, ValueError, RuntimeError, subprocess.SubprocessError):
                self.errors += 1
            else:
                devs: list[str] = []
                for r in routes:
                    if int(r.get("metric", 0)) != 0:
                        continue
                    devs += [r["dev"]] if "dev" in r else [h["dev"] for h in r["nexthops"]]
                self.samples.append((time.monotonic(), tuple(devs)))
            self._stop.wait(self._interval)

    def between(self, start: float, end: float = float("inf")) -> list[tuple[str, ...]]:
        return [devs for t, devs in self.samples if start <= t <= end]

    def first(self, devs: tuple[str, ...], start: float = 0.0) -> float | None:
        return next((t for t, d in self.samples if t >= start and d == devs), None)


@dataclass(frozen=True)
class Flow:
    """One conntrack entry as ``conntrack -L`` prints it (original and reply tuple)."""

    src: str
    dst: str
    sport: int
    dport: int
    reply_src: str
    reply_dst: str


def udp_flows(lab: Lab) -> list[Flow]:
    """The site's UDP conntrack entries."""
    flows = []
    for line in site(lab, "conntrack", "-L", "-p", "udp").splitlines():
        tuples: list[dict[str, str]] = [{}, {}]
        for token in line.split():
            key, eq, value = token.partition("=")
            if eq and key in ("src", "dst", "sport", "dport"):
                # The first src/dst/sport/dport are the original tuple, the second the reply.
                tuples[0 if key not in tuples[0] else 1][key] = value
        orig, reply = tuples
        if len(orig) == 4 and len(reply) == 4:
            flows.append(Flow(orig["src"], orig["dst"], int(orig["sport"]), int(orig["dport"]),
                              reply["src"], reply["dst"]))
    return flows


# Sends a few UDP packets from a fixed source port: a bounded, one-shot flow.
_SEND = (
    "import socket, sys, time\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.bind((sys.argv[1], int(sys.argv[2])))\n"
    "for _ in range(3):\n"
    "    s.sendto(b'lab', (sys.argv[3], int(sys.argv[4])))\n"
    "    time.sleep(0.02)\n"
)


def lan_udp(lab: Lab, sport: int, dport: int) -> None:
    lab.run(lab.lan, [sys.executable, "-c", _SEND, str(lab.lan_host_addr), str(sport),
                      str(lab.sink), str(dport)])


def replies_after(result: StreamResult, t: float) -> int:
    return sum(1 for when, _ in result.replies if when > t)


def arrivals_after(result: StreamResult, t: float) -> int:
    return sum(1 for when, _ in result.arrivals if when > t)


# -- 1. blackhole ----------------------------------------------------------------------------------


def test_blackhole_moves_route_to_next_tier_and_lan_traffic_resumes(
    lab: Lab, daemons: Callable[..., LifelineProcess]
) -> None:
    d = daemons(lab)
    d.wait_active(["fibre-a"])
    assert route_devices(lab) == ["wan-a"]
    with Stream(lab, interval=0.01, max_seconds=15) as stream:
        time.sleep(1.0)
        fault_at = time.monotonic()
        lab.faults.blackhole("fibre-a")
        switched_at = wait_switched(d, ["fibre-b"])
        assert route_devices(lab) == ["wan-b"], "the kernel route did not follow the status"
        time.sleep(1.5)
        result = stream.stop()

    st = d.status()
    assert st is not None
    assert link_status(st, "fibre-a")["state"] == "down"
    assert switched_at > fault_at
    # The outage shows as a gap at the sink that starts around the fault ...
    outage = [g for g in result.gaps(min_gap=0.1) if g.end > fault_at and g.start < switched_at]
    assert outage, f"no gap around the fault; gaps: {result.gaps(min_gap=0.1)}"
    # ... and the LAN's packets arrive again, through fibre-b, after the switch.
    assert arrivals_after(result, switched_at + 0.2) >= 50
    largest = result.largest_gap()
    assert largest is not None and largest.seconds < 5.0, largest


# -- 2. carrier loss -------------------------------------------------------------------------------


def test_carrier_loss_fails_over_at_once_and_returns_after_hold_down(
    lab: Lab, daemons: Callable[..., LifelineProcess]
) -> None:
    """Probes are slowed down here (10 lost rounds = 2 s to call a link down) so that the
    reason shows which signal won. The kernel reports a carrier change at once only when it
    deems it urgent; otherwise (most physical NICs, and the lab's fibre-a veth, whose ends
    share an ifindex) it batches link events about once a second, and 3 lost probe rounds
    (0.6 s) could beat the event. See controller.runtime.linkwatch."""
    d = daemons(lab, hold_down="3s", thresholds={"down_after": 10})
    d.wait_active(["fibre-a"])
    d.wait_link("fibre-b", "up")

    lab.faults.carrier("fibre-a", False)
    st = d.wait_for(
        lambda s: d.link_state(s, "fibre-a") == "down" and d.active(s) == ["fibre-b"],
        5.0, "fibre-a down on carrier loss and the route on fibre-b",
    )
    assert "carrier" in link_status(st, "fibre-a")["reason"].lower(), link_status(st, "fibre-a")
    assert link_status(st, "fibre-a")["carrier"] is False
    until(lambda: route_devices(lab) == ["wan-b"], 3.0, what="the kernel route on wan-b")

    with RouteSampler(lab) as sampler:
        back_at = time.monotonic()
        lab.faults.carrier("fibre-a", True)
        d.wait_active(["fibre-a"], timeout=20)
        until(lambda: route_devices(lab) == ["wan-a"], 5.0, what="the kernel route on wan-a")
        time.sleep(0.3)  # so the sampler, too, has seen the route back
    held = sampler.between(back_at, back_at + 2.5)
    assert held and set(held) == {("wan-b",)}, f"fibre-a back before its hold-down: {held}"
    returned = sampler.first(("wan-a",), back_at)
    assert returned is not None and returned - back_at >= 2.5


# -- 3. degraded -----------------------------------------------------------------------------------


def test_degraded_link_loses_the_route_to_an_equal_tier_link(
    lab: Lab, daemons: Callable[..., LifelineProcess]
) -> None:
    d = daemons(lab, tiers={"fibre-b": 1})
    d.wait_active(["fibre-a"])  # equal tiers: the operator's order breaks the tie
    d.wait_link("fibre-b", "up")

    lab.faults.loss_each_way("fibre-a", 0.05)  # voice-bad: 2.5 times the 2 % threshold
    lab.faults.delay("fibre-a", 40, 40)
    st = d.wait_for(
        lambda s: d.link_state(s, "fibre-a") == "degraded" and d.active(s) == ["fibre-b"],
        40.0, "fibre-a degraded and the route on fibre-b",
    )
    assert route_devices(lab) == ["wan-b"]
    reason = next(g["reason"] for g in st["groups"] if g["name"] == "internet")
    assert "fibre-a" in reason and "degraded" in reason, reason


# -- 4. recovery -----------------------------------------------------------------------------------


def test_failback_waits_for_the_hold_down(
    lab: Lab, daemons: Callable[..., LifelineProcess]
) -> None:
    d = daemons(lab, hold_down="3s")
    d.wait_active(["fibre-a"])
    lab.faults.blackhole("fibre-a")
    d.wait_active(["fibre-b"])
    until(lambda: route_devices(lab) == ["wan-b"], 3.0, what="the kernel route on wan-b")

    with RouteSampler(lab) as sampler:
        cleared_at = time.monotonic()
        lab.faults.clear("fibre-a")
        d.wait_active(["fibre-a"], timeout=20)
        until(lambda: route_devices(lab) == ["wan-a"], 5.0, what="the kernel route on wan-a")
        time.sleep(0.3)  # so the sampler, too, has seen the route back
    held = sampler.between(cleared_at, cleared_at + 2.5)
    assert held and set(held) == {("wan-b",)}, f"failback before the hold-down: {held}"
    returned = sampler.first(("wan-a",), cleared_at)
    assert returned is not None and 2.5 <= returned - cleared_at <= 20.0
    ups = [e for e in journal(d, "transition") if e.subject == "fibre-a" and e.data["new"] == "up"]
    assert "hold-down" in ups[-1].message, ups[-1].message


# -- 5. flapping -----------------------------------------------------------------------------------


def test_flapping_link_does_not_flap_the_route(
    lab: Lab, daemons: Callable[..., LifelineProcess]
) -> None:
    d = daemons(lab, hold_down="10s")
    d.wait_active(["fibre-a"])
    d.wait_link("fibre-b", "up")
    st = d.status()
    assert st is not None
    base = int(st["failovers"])  # 0: the first route after start is not a failover

    with RouteSampler(lab) as sampler:
        started = time.monotonic()
        for _ in range(10):  # 10 x (1 s dead, 1 s alive) = 20 s, bounded
            if time.monotonic() - started > 30:
                break
            lab.faults.blackhole("fibre-a")
            time.sleep(1.0)
            lab.faults.clear("fibre-a")
            time.sleep(1.0)
        ended = time.monotonic()

    st = d.status()
    assert st is not None
    changes = int(st["failovers"]) - base
    assert 1 <= changes <= 3, f"{changes} route changes while fibre-a flapped"
    first_b = sampler.first(("wan-b",), started)
    assert first_b is not None, "the route never left the flapping link"
    during = sampler.between(first_b, ended)
    assert ("wan-a",) not in during, "the route went back to fibre-a while it flapped"
    text = scrape(lab)
    assert metric_value(text, "lifeline_failovers_total", group="internet") == st["failovers"]


# -- 6. restart ------------------------------------------------------------------------------------


def test_restart_while_failed_over_changes_nothing(
    lab: Lab, daemons: Callable[..., LifelineProcess]
) -> None:
    d = daemons(lab)
    d.wait_active(["fibre-a"])
    lab.faults.blackhole("fibre-a")
    d.wait_active(["fibre-b"])
    until(lambda: route_devices(lab) == ["wan-b"], 3.0, what="the kernel route on wan-b")
    before = lifeline_route(lab)

    assert d.stop() == 0, "SIGTERM should end lifeline cleanly"
    assert lifeline_route(lab) == before, "stopping lifeline changed the route"
    stops = journal(d, "stop")
    assert stops and "internet via fibre-b" in stops[-1].message

    with RouteSampler(lab) as sampler:
        t0 = time.monotonic()
        d2 = daemons(lab)
        time.sleep(max(0.0, t0 + 3.2 - time.monotonic()))
    st = d2.wait_for(
        lambda s: d2.active(s) == ["fibre-b"] and d2.link_state(s, "fibre-a") == "down"
        and d2.link_state(s, "fibre-b") == "up",
        20.0, "the new daemon to settle on fibre-b",
    )
    early = sampler.between(t0, t0 + 3.0)
    assert len(early) >= 20, f"too few samples ({len(early)}, {sampler.errors} errors)"
    assert set(early) == {("wan-b",)}, f"the route changed during the restart: {set(early)}"
    assert lifeline_route(lab) == before
    assert st["failovers"] == 0, "the new daemon switched although nothing had changed"


# -- 7. manual change ------------------------------------------------------------------------------


def test_route_changed_by_hand_is_put_back(
    lab: Lab, daemons: Callable[..., LifelineProcess]
) -> None:
    d = daemons(lab)
    d.wait_active(["fibre-a"])
    until(lambda: route_devices(lab) == ["wan-a"], 3.0, what="the kernel route on wan-a")
    lte = lab.link("lte")
    site(lab, "ip", "route", "replace", "default", "via", str(lte.gateway), "dev", lte.site_ifname)
    assert route_devices(lab) == [lte.site_ifname]

    changed_at = time.monotonic()
    until(lambda: route_devices(lab) == ["wan-a"], 10.0, what="the route put back")
    back_at = time.monotonic()
    # reconcile_interval is 1 s: a couple of intervals, with room for a busy machine.
    assert back_at - changed_at < 5.0
    assert lifeline_route(lab)[0]["protocol"] == "201"
    assert "changed by hand" in d.log()


# -- 8. foreign routes -----------------------------------------------------------------------------


def test_routes_lifeline_did_not_create_are_untouched(
    lab: Lab, daemons: Callable[..., LifelineProcess]
) -> None:
    b_gw = str(lab.link("fibre-b").gateway)
    lte = lab.link("lte")
    site(lab, "ip", "route", "add", "198.18.5.0/24", "via", b_gw, "proto", "static")
    site(lab, "ip", "route", "add", "default", "via", str(lte.gateway), "dev", lte.site_ifname,
         "table", "500")
    site(lab, "ip", "route", "add", "default", "via", str(lte.gateway), "dev", lte.site_ifname,
         "metric", "500")

    def foreign() -> dict[str, Any]:
        main = json.loads(site(lab, "ip", "-j", "route", "show", "table", "main"))
        return {
            "net": [r for r in main if r["dst"] == "198.18.5.0/24"],
            "metric500": [r for r in main if r["dst"] == "default" and r.get("metric") == 500],
            "table500": json.loads(site(lab, "ip", "-j", "route", "show", "table", "500")),
        }

    before = foreign()
    assert all(len(v) == 1 for v in before.values()), before

    d = daemons(lab)
    d.wait_active(["fibre-a"])
    lab.faults.blackhole("fibre-a")
    d.wait_active(["fibre-b"])
    until(lambda: [r["dev"] for r in lifeline_route(lab)] == ["wan-b"], 3.0,
          what="lifeline's route on wan-b")
    time.sleep(1.5)  # a reconcile cycle or more after the switch
    assert foreign() == before
    st = d.status()
    assert st is not None
    assert st["problems"] == [], st["problems"]


# -- 9. conntrack ----------------------------------------------------------------------------------


def test_a_narrowed_flush_deletes_only_the_flows_its_rules_cover(
    lab: Lab, daemons: Callable[..., LifelineProcess]
) -> None:
    """``conntrack_flush: [udp/5060, udp/10000-20000]`` (the voice ports, what lifeline did
    before issue 9): SIP goes, a WireGuard-like flow NAT'ed to the same dead link stays (the
    default, every protocol, is tests/integration/test_daemon_conntrack.py)."""
    d = daemons(lab, conntrack_flush=["udp/5060", "udp/10000-20000"])
    d.wait_active(["fibre-a"])
    until(lambda: route_devices(lab) == ["wan-a"], 3.0, what="the kernel route on wan-a")
    a_addr = str(lab.link("fibre-a").site_addr)
    lan_udp(lab, 5060, 5060)  # SIP
    lan_udp(lab, 51820, 51820)  # no rule covers it

    def sip(flow: Flow) -> bool:
        return flow.sport == 5060 and flow.dport == 5060 and flow.reply_dst == a_addr

    def other(flow: Flow) -> bool:
        return flow.sport == 51820 and flow.dport == 51820 and flow.reply_dst == a_addr

    flows = udp_flows(lab)
    assert any(sip(f) for f in flows), flows
    assert any(other(f) for f in flows), flows

    lab.faults.blackhole("fibre-a")
    d.wait_active(["fibre-b"])
    until(lambda: not any(sip(f) for f in udp_flows(lab)), 5.0,
          what="the SIP flow NAT'ed to fibre-a to be flushed")
    assert any(other(f) for f in udp_flows(lab)), "a flow no rule covers was flushed too"
    flushes = [e for e in journal(d, "action") if e.subject == "internet"]
    assert flushes and int(flushes[-1].data["deleted"]) >= 1, flushes
    assert "only udp/5060, udp/10000-20000" in flushes[-1].message


def _two_way_failover(lab: Lab, d: LifelineProcess, settle: float = 3.0) -> tuple[
        StreamResult, float]:
    """Run a two-way RTP-port stream across a fibre-a blackhole; the result and the time
    the route switched."""
    d.wait_active(["fibre-a"])
    until(lambda: route_devices(lab) == ["wan-a"], 3.0, what="the kernel route on wan-a")
    with Stream(lab, interval=0.01, max_seconds=15, two_way=True, port=16384) as stream:
        time.sleep(1.0)
        lab.faults.blackhole("fibre-a")
        switched_at = wait_switched(d, ["fibre-b"])
        until(lambda: route_devices(lab) == ["wan-b"], 3.0, what="the kernel route on wan-b")
        time.sleep(settle)
        result = stream.stop()
    assert result.replied > 50, "the two-way stream never worked before the fault"
    return result, switched_at


def test_snat_replies_resume_after_failover_thanks_to_the_flush(
    lab: Lab, daemons: Callable[..., LifelineProcess]
) -> None:
    result, switched_at = _two_way_failover(lab, daemons(lab))
    assert replies_after(result, switched_at + 0.5) >= 50, result.largest_reply_gap()
    gap = result.largest_reply_gap()
    assert gap is not None and gap.seconds < 5.0, gap


def test_snat_replies_stay_dead_without_the_flush(
    lab: Lab, daemons: Callable[..., LifelineProcess]
) -> None:
    """The trap the flush exists for: the stream's conntrack entry keeps the SNAT to
    fibre-a's address after the route moves, so its packets leave by fibre-b with
    fibre-a's source and the replies are routed back to the dead fibre-a."""
    result, switched_at = _two_way_failover(lab, daemons(lab, conntrack_flush=[]))
    assert arrivals_after(result, switched_at + 0.5) >= 50, "nothing left by fibre-b"
    assert replies_after(result, switched_at + 0.5) == 0, "replies came back without a flush"
    a_addr = str(lab.link("fibre-a").site_addr)
    assert any(f.dport == 16384 and f.reply_dst == a_addr for f in udp_flows(lab))


def test_masquerade_remaps_the_flow_by_itself(
    lab_factory: Callable[..., Lab], daemons: Callable[..., LifelineProcess]
) -> None:
    """Finding: with MASQUERADE (instead of SNAT) the kernel re-maps the flow on its own,
    even with ``conntrack_flush: []``. MASQUERADE records the output interface in the
    conntrack entry; when a packet of the flow leaves by another interface the kernel
    drops that packet and kills the entry (nf_nat's "oif changed" check), so the next
    packet is NAT'ed anew to fibre-b's address. The flush matters for SNAT setups, which
    are common on sites with static addresses; it is harmless with MASQUERADE."""
    lab = lab_factory(nat="masquerade")
    result, switched_at = _two_way_failover(lab, daemons(lab, conntrack_flush=[]))
    assert replies_after(result, switched_at + 0.5) >= 50, result.largest_reply_gap()


# -- 10. dry run -----------------------------------------------------------------------------------


def test_dry_run_prints_the_plan_and_changes_nothing(
    lab: Lab, daemons: Callable[..., LifelineProcess]
) -> None:
    """A site that already routes each link's address by its own table (the operator's
    policy routing, tables 201..203): the dry run can probe, decides fibre-a and prints the
    route it would put in main, and the kernel keeps no trace of lifeline."""
    for i, lk in enumerate(lab.links.values()):
        table = str(201 + i)
        site(lab, "ip", "route", "add", "default", "via", str(lk.gateway), "dev", lk.site_ifname,
             "table", table)
        site(lab, "ip", "rule", "add", "from", str(lk.site_addr), "lookup", table,
             "priority", str(2000 + i))
    rules_before = site(lab, "ip", "rule", "show")

    d = daemons(lab, "--dry-run")
    # the status shows what the kernel has ("active": nothing) and what it would do
    st = d.wait_for(lambda s: s["groups"][0]["decided"] == ["fibre-a"], 20.0,
                    "the dry run to decide fibre-a")
    assert st["dry_run"] is True
    assert st["groups"][0]["active"] == []
    planned = "replace default via 198.51.100.1 dev wan-a table 254"
    until(lambda: planned in d.log(), 5.0, what=f"the dry run to print {planned!r}")
    time.sleep(1.5)  # reconcile cycles that must stay dry
    assert "[dry-run] would change" in d.log()
    assert default_route(lab) == [], "the dry run put a default route into main"
    for table in ("101", "102", "103"):
        shown = lab.run(lab.site, ["ip", "route", "show", "table", table], check=False)
        assert shown.stdout.strip() == "", f"the dry run filled table {table}"
    assert site(lab, "ip", "rule", "show") == rules_before


def test_dry_run_on_a_fresh_site_changes_nothing_and_says_why_links_read_down(
    lab: Lab, daemons: Callable[..., LifelineProcess]
) -> None:
    """A dry run creates nothing, not even the per-link tables a probe bound to a link needs
    to leave through it; on a fresh site it must leave the kernel alone and say so plainly,
    naming the tables it would create (a known limit: see README, "--dry-run")."""
    rules_before = lab.run(lab.site, ["ip", "rule"]).stdout
    d = daemons(lab, "--dry-run")
    d.wait_for(lambda s: all(lk["state"] != "unknown" for lk in s["links"]), 10.0,
               "every link to leave unknown")
    time.sleep(0.5)
    assert default_route(lab) == []
    assert lab.run(lab.site, ["ip", "rule"]).stdout == rules_before
    log = d.log()
    assert "add rule 1000: from 198.51.100.2/32 lookup 101" in log
    assert "dry run: per-link tables/rules [101, 102, 103] do not exist yet" in log


# -- 11. CLI and metrics ---------------------------------------------------------------------------


def _cli(*args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "controller", *args], capture_output=True,
                         text=True, timeout=30, check=False)
    assert res.returncode == 0, f"lifeline {' '.join(args)}: {res.returncode}\n{res.stderr}"
    return res.stdout


def test_cli_and_metrics_against_the_running_daemon(
    lab: Lab, daemons: Callable[..., LifelineProcess]
) -> None:
    d = daemons(lab)
    d.wait_active(["fibre-a"])
    lab.faults.blackhole("fibre-a")
    d.wait_active(["fibre-b"])

    table = _cli("status", "--socket", str(d.socket))
    for name in ("fibre-a", "fibre-b", "lte", "internet"):
        assert name in table, table
    doc = json.loads(_cli("status", "--socket", str(d.socket), "--json"))
    assert [lk["name"] for lk in doc["links"]] == ["fibre-a", "fibre-b", "lte"]
    assert doc["groups"][0]["active"] == ["fibre-b"]

    events = [json.loads(line) for line in
              _cli("events", "--state-dir", str(d.state_dir), "--json").splitlines()]
    down = [e for e in events if e["kind"] == "transition" and e["subject"] == "fibre-a"
            and e["data"]["new"] == "down"]
    assert down and "fibre-a" in down[-1]["message"], events
    decisions = [e for e in events if e["kind"] == "decision" and e["data"]["new"] == ["fibre-b"]]
    assert decisions and "fibre-a down" in decisions[-1]["message"], events
    text = _cli("events", "--state-dir", str(d.state_dir))
    assert "transition" in text and "decision" in text, text

    metrics = scrape(lab)
    for name in ("lifeline_link_state", "lifeline_failovers_total",
                 "lifeline_group_active_link"):
        assert name in metrics
    assert metric_value(metrics, "lifeline_link_state", link="fibre-a", state="down") == 1
    assert metric_value(metrics, "lifeline_group_active_link", group="internet",
                        link="fibre-b") == 1
    assert metric_value(metrics, "lifeline_group_active_link", group="internet",
                        link="fibre-a") == 0
    assert metric_value(metrics, "lifeline_failovers_total", group="internet",
                        **{"from": "fibre-a", "to": "fibre-b"}) == 1
