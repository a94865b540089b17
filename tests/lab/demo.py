"""``lifeline demo``: the failover scenario on the built-in lab, with a live timeline.

Builds the lab (site router, three ISPs, internet, LAN host), starts the real daemon in the
site namespace, and plays: all good -> fibre-a blackholed -> fibre-b takes over -> fibre-b
blackholed too -> LTE -> both fibres back -> failback after the hold-down -> fibre-a
degraded (5 % loss each way, 40 ms jitter) while fibre-b is up -> traffic leaves the degraded link.
For every step a packet stream from the LAN host through the site's NAT measures the
data-plane gap; the daemon's own timeline (state changes with their reasons) is printed as
it happens. Then, unless skipped or Kamailio/sipp are missing, the telephony act
(``lab.demo_sip``) plays a trunk failover on a fresh lab with calls going on, and, unless
skipped or NUT's upsd is missing too, the power act (``lab.demo_power``) runs a UPS down
until the DIDs ring at the DR PBX and brings mains back; then, unless skipped or Prometheus
or Alertmanager are missing, the recordings act (``lab.demo_recordings``) has a night's
copy skip recordings, found and paged, and re-run. It ends with a summary table and removes
every namespace and process it made.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.lab.demo_power import PowerAct, power_summary, run_power_act
from tests.lab.demo_recordings import (
    RecAct,
    recordings_skip_reason,
    recordings_summary,
    run_recordings_act,
)
from tests.lab.demo_sip import SipOutcome, run_sip_act, sip_scenario, sip_summary
from tests.lab.lifelined import LifelineProcess, route_devices
from tests.lab.nut import nut_skip_reason
from tests.lab.sipsite import sip_site_skip_reason
from tests.lab.stream import Stream
from tests.lab.topology import Lab
from tests.lab.wait import until


@dataclass
class Step:
    title: str
    action: Callable[[Lab], None] | None
    expect: list[str]  # active links of group `internet` once the step has played out
    timeout: float
    min_wait: float = 0.0  # the switch must not come sooner (the hold-down)


@dataclass
class Outcome:
    step: Step
    ok: bool
    switch_after: float | None  # seconds from the fault to the route change
    gap: float | None  # largest data-plane gap (LAN -> internet) during the step
    reply_gap: float | None  # same, for the replies (the NAT'ed return path)
    route: list[str]
    note: str = ""


class Timeline:
    """Prints what the daemon reports, as it changes: one line per transition."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.links: dict[str, str] = {}
        self.active: dict[str, list[str]] = {}

    def update(self, st: dict[str, Any]) -> None:
        stamp = f"{time.monotonic() - self.t0:7.2f}s"
        for link in st["links"]:
            if self.links.get(link["name"]) != link["state"]:
                self.links[link["name"]] = link["state"]
                print(f"  {stamp}  link  {link['name']:<8} {link['state']:<9} {link['reason']}",
                      flush=True)
        for group in st["groups"]:
            if self.active.get(group["name"]) != group["active"]:
                old = ",".join(self.active.get(group["name"], [])) or "none"
                self.active[group["name"]] = group["active"]
                new = ",".join(group["active"]) or "unchanged"
                print(f"  {stamp}  route {group['name']:<8} {old} -> {new}: {group['reason']}",
                      flush=True)


def _scenario(hold_down: float) -> list[Step]:
    def blackhole(link: str) -> Callable[[Lab], None]:
        return lambda lab: lab.faults.blackhole(link)

    def fibres_back(lab: Lab) -> None:
        lab.faults.clear("fibre-a")
        lab.faults.clear("fibre-b")

    def degrade(lab: Lab) -> None:
        lab.faults.loss_each_way("fibre-a", 0.05)
        lab.faults.delay("fibre-a", 10, 40)

    return [
        Step("all links good: fibre-a carries the site", None, ["fibre-a"], 15),
        Step("fibre-a blackholed (its gateway still answers ping)", blackhole("fibre-a"),
             ["fibre-b"], 10),
        Step("fibre-b blackholed too", blackhole("fibre-b"), ["lte"], 10),
        Step(f"both fibres back: failback after the {hold_down:g} s hold-down", fibres_back,
             ["fibre-a"], hold_down + 20, min_wait=hold_down * 0.9),
        Step("fibre-a degraded: 5% loss each way, 40 ms jitter", degrade, ["fibre-b"], 60),
    ]


def _play(lab: Lab, daemon: LifelineProcess, step: Step, timeline: Timeline) -> Outcome:
    print(f"\n== {step.title}", flush=True)
    stream = Stream(lab, interval=0.005, max_seconds=step.timeout + 15, two_way=True)
    stream.start()
    time.sleep(0.5)
    injected = time.monotonic()
    if step.action is not None:
        step.action(lab)

    def expected() -> bool:
        st = daemon.status()
        if st is None:
            return False
        timeline.update(st)
        return daemon.active(st) == step.expect

    switched: float | None = None
    with contextlib.suppress(TimeoutError):  # a step that does not play out is an outcome
        until(expected, injected + step.timeout - time.monotonic(), 0.02, step.title)
        switched = time.monotonic()
    time.sleep(1.0)  # let the stream show the traffic flowing again
    result = stream.stop()
    route = route_devices(lab)

    def gap_after(gaps: list[Any]) -> float | None:
        relevant = [g.seconds for g in gaps if g.end >= injected]
        return max(relevant) if relevant else 0.0

    gap = gap_after(result.gaps(0.02)) if step.action else None
    reply_gap = gap_after(result.reply_gaps(0.02)) if step.action else None
    ok = switched is not None
    note = ""
    after = None if switched is None or step.action is None else switched - injected
    if ok and after is not None and after < step.min_wait:
        ok, note = False, f"switched after {after:.1f} s, before the hold-down"
    if not ok and not note:
        note = f"route did not move to {','.join(step.expect)} within {step.timeout:g} s"
    shown = "-" if gap is None else f"{gap * 1000:.0f} ms"
    print(f"   -> route via {','.join(route) or 'none'}; data-plane gap {shown}"
          + (f"; switched {after:.2f} s after the change" if after is not None else "")
          + (f"; {note}" if note else ""), flush=True)
    return Outcome(step, ok, after, gap, reply_gap, route, note)


def _summary(outcomes: list[Outcome]) -> str:
    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v * 1000:.0f} ms"

    def s(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} s"

    rows = [f"{'step':<52} {'expect':<8} {'switch':>8} {'gap':>8} {'reply gap':>9}  result"]
    for o in outcomes:
        rows.append(f"{o.step.title[:52]:<52} {','.join(o.step.expect):<8} "
                    f"{s(o.switch_after):>8} {ms(o.gap):>8} {ms(o.reply_gap):>9}  "
                    + ("ok" if o.ok else f"FAILED: {o.note}"))
    return "\n".join(rows)


def _metrics_excerpt(lab: Lab, listen: str) -> list[str]:
    code = (f"import urllib.request;print(urllib.request.urlopen('http://{listen}/metrics',"
            "timeout=3).read().decode())")
    out = lab.run(lab.site, [sys.executable, "-c", code], check=False).stdout
    keep = ("lifeline_failovers_total{", "lifeline_group_active_link{", "lifeline_link_state{")
    return [line for line in out.splitlines()
            if line.startswith(keep) and not line.endswith(" 0.0")]


def _not_played(act: str, flag: str, enabled: bool, missing: Callable[[], str | None],
                installs: str, failed: str, passed: bool, keep_going: bool) -> str:
    """Why an act is not played, in the words printed ('': play it): its flag, a peer
    missing (asked only when the act is wanted), or an earlier act that failed."""
    if not enabled:
        return f"{act} act skipped ({flag})"
    if (reason := missing()) is not None:
        return f"{act} act skipped: it {reason}; `make demo` installs {installs}"
    if not passed and not keep_going:
        return f"{act} act not played: {failed}"
    return ""


def run_demo(quick: bool = False, keep_going: bool = False, sip: bool = True,
             power: bool = True, recordings: bool = True) -> int:
    if os.geteuid() != 0:
        print("lifeline demo: the lab needs root (it creates network namespaces); "
              "run it as root: sudo make demo", file=sys.stderr)
        return 1
    missing = [t for t in ("ip", "iptables") if shutil.which(t) is None]
    if missing:
        print(f"lifeline demo: missing tools {missing}; `make demo` installs them",
              file=sys.stderr)
        return 1
    hold_down = 4.0 if quick else 10.0
    listen = "127.0.0.1:9730"
    state_dir = Path(tempfile.mkdtemp(prefix="lifeline-demo-"))
    outcomes: list[Outcome] = []
    try:
        with Lab() as lab:
            print(f"lab {lab.prefix.rstrip('-')} built in {lab.build_seconds or 0:.2f} s: "
                  f"site {lab.site}, ISPs "
                  + ", ".join(f"{n} ({lk.isp_ns})" for n, lk in lab.links.items()),
                  flush=True)
            # The shipped probe timing (probe_defaults), as an operator's config has it.
            daemon = LifelineProcess(lab, state_dir, hold_down=f"{hold_down:g}s",
                                     probe_defaults=True, reliability=2, listen=listen)
            daemon.start()
            print(f"lifeline runs in {lab.site} (pid {daemon.proc.pid}); metrics: "
                  f"ip netns exec {lab.site} curl -s http://{listen}/metrics ; "
                  f"status: lifeline status --socket {daemon.socket}", flush=True)
            timeline = Timeline(time.monotonic())
            for step in _scenario(hold_down):
                outcome = _play(lab, daemon, step, timeline)
                outcomes.append(outcome)
                if not outcome.ok and not keep_going:
                    break
            print("\nmetrics now (non-zero series):")
            for line in _metrics_excerpt(lab, listen):
                print(f"  {line}")
            daemon.stop()
            print(f"\ndaemon stopped (exit {daemon.exit_code}); it left the route in place: "
                  f"{','.join(route_devices(lab))}")
            events = lab.run(lab.site, [sys.executable, "-m", "controller", "events",
                                        "--state-dir", str(state_dir), "-n", "8"],
                             check=False).stdout
            print("last journal entries:\n" + events.rstrip())
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)
    passed = len(outcomes) == len(_scenario(hold_down)) and all(o.ok for o in outcomes)
    sip_outcomes: list[SipOutcome] = []
    sip_note = _not_played("telephony", "--no-sip", sip, sip_site_skip_reason, "it",
                           "the link scenario failed", passed, keep_going)
    if not sip_note:
        print("\n=== telephony: SIP trunk failover with calls going on", flush=True)
        sip_outcomes = run_sip_act(quick=quick, keep_going=keep_going)
        passed = (passed and len(sip_outcomes) == len(sip_scenario(1.0, lambda _t, _on: None))
                  and all(o.ok for o in sip_outcomes))
    if sip_note:
        print(f"\n{sip_note}", flush=True)
    power_act: PowerAct | None = None
    power_note = _not_played("power", "--no-power", power,
                             lambda: sip_site_skip_reason() or nut_skip_reason(), "it",
                             "an earlier act failed", passed, keep_going)
    if not power_note:
        print("\n=== power: the UPS runs down, the DIDs ring at the DR PBX, mains comes back",
              flush=True)
        power_act = run_power_act(quick=quick, keep_going=keep_going)
        passed = passed and power_act.passed
    if power_note:
        print(f"\n{power_note}", flush=True)
    rec_act: RecAct | None = None
    rec_note = _not_played("recordings", "--no-recordings", recordings,
                           recordings_skip_reason, "them", "an earlier act failed", passed,
                           keep_going)
    if not rec_note:
        print("\n=== recordings: last night's copy skipped recordings: found, paged, "
              "copied again", flush=True)
        rec_act = run_recordings_act(quick=quick, keep_going=keep_going)
        passed = passed and rec_act.passed
    if rec_note:
        print(f"\n{rec_note}", flush=True)
    print("\n" + _summary(outcomes))
    if sip_outcomes:
        print("\n" + sip_summary(sip_outcomes))
    if power_act is not None and power_act.outcomes:
        print("\n" + power_summary(power_act))
    if rec_act is not None and rec_act.outcomes:
        print("\n" + recordings_summary(rec_act))
    print("lab removed (namespaces and processes)")
    return 0 if passed else 1
