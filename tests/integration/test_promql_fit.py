"""The proof that the dashboards and the rules fit the exporter: a real Prometheus scrapes the
real lifeline of a lab SIP site (links, trunks, DIDs, Kamailio as the edge) with the shipped
rules loaded and the shipped Alertmanager config behind both, the site goes through a run
of failures, and every PromQL expression of the rules (alert and record) and of every
``grafana/dashboards/*.json`` panel target is asked of Prometheus' HTTP API after each step.
Each must parse every time, and each must return data at least once: a metric or label
renamed in the code without the dashboards and rules following returns nothing in every
step and fails here. The few alerts no lab step can provoke are in ALLOWED_EMPTY, each with
its reason.

The site has a UPS (the real upsd with NUT's dummy-ups driver on the site's own loopback,
tests.lab.nut) and a service that only alerts (the CRM: HTTPS on the site's loopback,
tests.lab.servicethread, its certificate from the lab CA with 3 days left, so the
certificate series is near its expiry from the start), and call recordings (a store and two
mirror backups, folders under the test's tmp dir that lifeline only reads, checked every
second: ``nas`` must hold every recording, so its findings page, ``usb`` need not, so its
findings are tickets). From the start both mirrors skipped two recordings (missing), hold
one with another size (mismatched) and one with other bytes (corrupt, found by the
read-back), and their newest copy is 30 h old while a 28 h old recording waits (stale); the
store is a 2 MiB tmpfs that a long call 20 minutes ago all but filled (disk full within a
day: a page; under 5 % free: a ticket).

The steps, each waited for in Prometheus itself before the expressions are asked: the site
at work (lte slowed to a latency too high for voice, one trunk in maintenance by config),
on battery past the grace time (a power outage; meanwhile a cleanup drops a recording from
both mirrors five years early and one not yet copied leaves the store: dropped early, lost),
then LB with the runtime below the margin
(the DIDs on DR for power; mains back after it and the DIDs home), the UPS unreadable (its
driver killed) with the CRM slow (degraded) and both mirrors unmounted (moved aside:
unavailable; back after the step), the CRM answering 500 (down; both mended
after), the primary uplink blackholed (failover to fibre-b), the PBX gone (DIDs on the DR
destination), one SBC dead and another failing calls while answering OPTIONS (trunk down,
DIDs unroutable, edge tripped), Kamailio gone and a new plan to push (edge out of sync), a
bad config refused, every uplink down, lifeline itself stopped.
Scrape and evaluation every second (the recording group's 30 s interval shortened to match
in a copy of the rules; the expressions are the shipped ones). Run with ``-s`` for the table
of expressions and result counts per step.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import SIP_LAB
from tests.integration.test_restic import write_recording
from tests.lab.httpservice import make_pki, openssl_missing
from tests.lab.monitoring import (
    ALERTMANAGER,
    AM_CONFIG,
    AM_PORT,
    PROMETHEUS,
    SITE,
    prometheus_config,
    query,
    query_doc,
    quietly,
    start_alertmanager,
    start_prometheus,
    start_sink,
)
from tests.lab.nut import Upsd, nut_skip_reason
from tests.lab.promql_exprs import Expr, dashboard_exprs, rule_exprs, substitute
from tests.lab.servicethread import ServiceThread
from tests.lab.sipsite import DR_PORT, SipSite
from tests.lab.topology import Lab
from tests.lab.wait import until

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "grafana" / "alerts" / "lifeline.rules.yaml"
DASHBOARDS = REPO / "grafana" / "dashboards"

pytestmark = [
    *SIP_LAB,
    pytest.mark.skipif(PROMETHEUS is None or ALERTMANAGER is None,
                       reason="needs prometheus and prometheus-alertmanager (Debian packages)"),
    pytest.mark.skipif(nut_skip_reason() is not None, reason=str(nut_skip_reason())),
    pytest.mark.skipif(openssl_missing() is not None, reason=str(openssl_missing())),
]

# The dashboards' variables: the lab's site, every link and trunk.
VARIABLES = {"site": SITE, "link": ".*", "trunk": ".*"}

# Alerts no step of a lab run can make true, and why. Keep it short: an expression that is
# empty because a metric was renamed must fail, not be listed here.
ALLOWED_EMPTY = {
    "rules: LifelineNotScraped": "absent(): true only while Prometheus has no lifeline target",
    "rules: LifelineProbeLoopBehind": "needs the daemon's event loop starved (an overloaded host)",
    "rules: LifelineJournalTrouble": "needs the journal's disk to fail (full, read-only)",
    "rules: LifelineReconcileErrors": "needs the kernel to refuse a route, or a foreign route "
                                      "at the group's key when lifeline starts",
    "rules: LifelineFlapping": "needs more than 4 failovers in 30 min, which flap damping "
                               "(a growing hold-down) stretches to minutes",
    "recordings.json: RAID degraded [A]": "lifeline_recordings_raid_degraded needs an md "
                                          "array under the store, and the lab has none "
                                          "(test_recordings_raid serves it from sample "
                                          "/proc/mdstat and /sys through the daemon)",
    "rules: LifelineRecordingsRaidDegraded": "as the RAID panel: no md array in the lab",
    "rules: LifelineRecordingsCheckStalled": "needs an hour without a completed check "
                                             "(test_recordings_stuck holds a check hung)",
}

SBC_DOWN, SBC_503, SBC_MAINT = "carrier-b-sbc1", "carrier-a-sbc1", "carrier-a-sbc2"
A_DID = "+390212345601"  # carrier A's range: sbc1 (then sbc2, here in maintenance)


NUT_PASSWORD = "lab-secret"


@pytest.fixture
def ups(lab: Lab, tmp_path: Path) -> Iterator[Upsd]:
    """The site's UPS: upsd and dummy-ups on the site's loopback (where lifeline reads it),
    on mains; stopped by PID at the end, before the lab goes."""
    users = {"monitor": (NUT_PASSWORD, "upsmon secondary")}
    with Upsd(tmp_path / "nut", ns=lab.site, users=users).running() as server:
        yield server


@pytest.fixture
def crm(lab: Lab, tmp_path: Path) -> Iterator[tuple[ServiceThread, Path]]:
    """The CRM: HTTPS on the site's loopback with the lab CA's certificate that expires in 3
    days, and the CA's file; closed at the end, before the lab goes."""
    pki = make_pki(tmp_path / "pki")
    service = ServiceThread(lab.site, tls=pki.expiring)
    try:
        yield service, pki.ca
    finally:
        service.close()


HOUR, DAY = 3600.0, 86400.0
ROT = "2026/11/01/a-rot.wav"  # same size, other bytes in the mirrors: corrupt
EARLY = "2026/11/01/b-early.wav"  # dropped from the mirrors by a cleanup: a retention breach
CHANGED = "2026/11/02/c-changed.wav"  # another size in the mirrors: mismatched
SKIPPED = ("2026/12/02/d-skipped.wav", "2026/12/02/e-skipped.wav")  # missing
COPIED = "2026/12/02/f-copied.wav"  # the mirrors' newest copy, 30 h old
WAITING = "2026/12/03/g-waiting.wav"  # 28 h waiting, past schedule + grace: stale
UNCOPIED = "2026/12/04/h-new.wav"  # leaves the store before any copy: lost
LONG = "2026/12/04/i-long.wav"  # a long call 20 min ago that all but fills the store's volume
MIRRORS = ("nas", "usb")  # nas must hold every recording (pages), usb need not (tickets)
STORE_VOLUME = "2m"  # the store's own tmpfs: small enough to fill with one recording


@pytest.fixture
def store_volume(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs for the recordings store, so its volume can be all but full (the disk
    checks' page and ticket) without filling this machine's disk; unmounted at the end."""
    where = tmp_path / "recordings" / "store"
    where.mkdir(parents=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={STORE_VOLUME},mode=0755",
                           "lifeline-lab-store", str(where)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"cannot mount the store's tmpfs: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def recordings_site(base: Path, now: float) -> dict[str, Any]:
    """The store and its two mirrors as a night's copy left them (see the module's
    docstring), and the recordings config that watches them every second."""
    ages = {ROT: 30 * DAY, EARLY: 30 * DAY - 60, "2026/11/01/c-fine.wav": 30 * DAY - 120,
            CHANGED: 29 * DAY, SKIPPED[0]: 40 * HOUR, SKIPPED[1]: 39 * HOUR,
            COPIED: 30 * HOUR, WAITING: 28 * HOUR, UNCOPIED: 1 * HOUR}
    store = base / "store"
    for i, (rel, age) in enumerate(ages.items()):
        write_recording(store / rel, 1000 + 100 * i, int((now - age) * 1e9))
    # One long call, too young to be judged, leaves about 3 % of the volume free: below
    # min_free (a ticket), and less than a day left at the rate it was written (a page).
    vfs = os.statvfs(store)
    room = vfs.f_bavail * vfs.f_frsize - int(0.03 * vfs.f_blocks * vfs.f_frsize)
    write_recording(store / LONG, room - room % 4096, int((now - 20 * 60) * 1e9))
    for name in MIRRORS:
        for rel in ages:
            if rel in SKIPPED or rel in (WAITING, UNCOPIED):
                continue
            copy = base / name / rel
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(store / rel, copy)
        for rel, damage in ((CHANGED, lambda b: b[:-100]), (ROT, lambda b: bytes(len(b)))):
            copy = base / name / rel
            st = copy.stat()
            copy.write_bytes(damage(copy.read_bytes()))
            os.utime(copy, ns=(st.st_mtime_ns, st.st_mtime_ns))
    return {"store": {"path": str(store)},
            "backups": [{"name": name, "folder": str(base / name)} for name in MIRRORS],
            "must_hold": ["nas"], "retention": "5y", "interval": "1s",
            "full_scan_every": "1h", "verify_days": 1}


def all_exprs() -> list[Expr]:
    dashboards = sorted(DASHBOARDS.glob("*.json"))
    assert dashboards, f"no dashboard in {DASHBOARDS}: nothing to check them against"
    return rule_exprs(RULES) + [e for d in dashboards for e in dashboard_exprs(d)]


def fast_rules(into: Path) -> Path:
    """A copy of the shipped rules whose groups evaluate every second (the recording group
    ships with 30 s); the expressions are untouched."""
    doc = yaml.safe_load(RULES.read_text())
    for group in doc["groups"]:
        group["interval"] = "1s"
    into.write_text(yaml.safe_dump(doc, sort_keys=False))
    return into


def trunk(st: dict[str, Any], name: str) -> dict[str, Any]:
    return dict(next(t for t in st["trunks"] if t["name"] == name))


class Steps:
    """Asks every expression after each step; keeps (step, result count) per expression."""

    def __init__(self, lab: Lab, exprs: list[Expr]) -> None:
        self.lab = lab
        self.exprs = exprs
        self.asked = {e: substitute(e.expr, VARIABLES) for e in exprs}
        self.steps: list[str] = []
        self.counts: dict[Expr, list[int]] = {e: [] for e in exprs}

    def seen(self, expr: str, what: str, timeout: float = 30.0) -> None:
        """Wait until Prometheus itself has data for ``expr`` (scraped and evaluated)."""
        until(lambda: bool(query(self.lab, expr)), timeout, 0.25, f"Prometheus to see {what}")

    def ask_all(self, step: str) -> None:
        self.steps.append(step)
        for e, asked in self.asked.items():
            doc = query_doc(self.lab, asked)
            assert doc["status"] == "success", (
                f"{e.source}: Prometheus refused {asked!r}: {doc.get('error')}")
            self.counts[e].append(len(doc["data"]["result"]))

    def table(self) -> str:
        head = "  ".join(f"{i}" for i in range(len(self.steps)))
        lines = ["steps: " + ", ".join(f"{i} {s}" for i, s in enumerate(self.steps)),
                 f"{'results per step':<24}  {head}  expression (source)"]
        for e in self.exprs:
            counts = "  ".join(f"{n:>{len(str(i))}}" for i, n in enumerate(self.counts[e]))
            mark = "allowed empty" if e.source in ALLOWED_EMPTY else (
                "ok" if any(self.counts[e]) else "NO DATA")
            lines.append(f"{mark:<24}  {counts}  {' '.join(self.asked[e].split())}"
                         f"  ({e.source})")
        return "\n".join(lines)


def test_every_dashboard_and_rule_expression_fits_the_exporter(
        lab: Lab, tmp_path: Path, ups: Upsd, crm: tuple[ServiceThread, Path],
        store_volume: Path) -> None:
    exprs = all_exprs()  # no dashboard: fail before building anything
    steps = Steps(lab, exprs)
    service, ca = crm
    sip = SipSite(lab, tmp_path / "sip").start()
    # The DR destination answers too (the lab leaves it silent): a PBX gone sends DIDs there.
    sip.start_uas("dr", lab.lan, str(lab.lan_host_addr), DR_PORT)
    # lte slowed to ~240 ms round trip (probed every 500 ms, so a probe still comes back in
    # time): up, but not good enough for voice (latency over 150 ms).
    lab.faults.delay("lte", 120.0)

    # The shipped Alertmanager config, its webhooks to the sink: lifeline posts its own
    # pages there (the dashboards chart those posts) and Prometheus sends its alerts.
    start_sink(lab, tmp_path / "am")
    start_alertmanager(lab, tmp_path / "am", yaml.safe_load(AM_CONFIG.read_text()))

    rec = tmp_path / "recordings"

    def edit(config: dict[str, Any]) -> None:
        config["alertmanager"] = {"urls": [f"http://127.0.0.1:{AM_PORT}"], "timeout": "1s"}
        lte = next(lk for lk in config["links"] if lk["name"] == "lte")
        lte["probes"].update(interval="500ms", timeout="500ms")
        next(t for t in config["trunks"] if t["name"] == SBC_MAINT)["maintenance"] = (
            "SBC swap, lab")
        secret = tmp_path / "nut-password"
        secret.write_text(NUT_PASSWORD + "\n")
        secret.chmod(0o600)
        # Lab pace: a page after 1 s on battery, DIDs home 2 s after mains is back. The
        # dummy UPS's figures are flat, so sameness must not make it unknown.
        config["power"] = {
            "grace": "1s", "hold_down": "2s", "runtime_margin": "60s",
            "ups": [{"name": "rack-ups", "interval": "500ms", "timeout": "500ms",
                     "stale_after": None,
                     "nut": {"host": "127.0.0.1", "port": ups.port, "ups": ups.ups,
                             "username": "monitor", "password_file": str(secret)}}]}
        # No needed_by: a service that only alerts (test_sip_services moves DIDs for one).
        config["services"] = [{
            "name": "crm", "http": {"url": service.url(), "ca_file": str(ca)},
            "interval": "1s", "timeout": "800ms", "recheck_interval": "250ms",
            "thresholds": {"down_after": 3, "hold_down": "2s", "slow": "250ms"}}]
        config["recordings"] = recordings_site(rec, time.time())

    daemon = sip.start_daemon(tmp_path / "state", edit=edit, ready_timeout=None)
    daemon.wait_for(lambda s: s["dids"] is not None and s["dids"]["unroutable_numbers"] == 0
                    and all(e["in_sync"] for e in s["edges"]), 30, "the DID plan at the edge")
    start_prometheus(lab, tmp_path / "prom",
                     prometheus_config([fast_rules(tmp_path / "rules.yaml")]))
    until(lambda: quietly(lambda: bool(query(lab, 'up{job="lifeline"} == 1'))), 30, 0.25,
          "Prometheus scraping lifeline")
    steps.seen("group:lifeline_best_tier:min", "the recording rules evaluated")
    steps.seen('lifeline_link_state{link="lte", state="degraded"} == 1', "lte degraded")
    steps.seen("lifeline_trunk_maintenance == 1", "the trunk in maintenance")
    steps.seen("lifeline_alertmanager_posts_total", "lifeline's posts to Alertmanager")
    steps.seen('lifeline_site_power_state{state="mains"} == 1', "the site on mains")
    steps.seen('lifeline_service_state{service="crm", state="up"} == 1', "the CRM up")
    steps.seen("lifeline_service_cert_expiry_timestamp_seconds - time() < 4 * 86400",
               "the CRM's certificate 3 days from expiry")
    for check in ("missing", "mismatched", "freshness"):
        steps.seen(f'lifeline_recordings_check_severity{{check="{check}", subject="nas", '
                   'severity="page"} == 1', f"recordings {check} on nas (a page)")
    steps.seen('lifeline_recordings_check_severity{check="missing", subject="usb", '
               'severity="ticket"} == 1', "recordings missing on usb (a ticket)")
    steps.seen('lifeline_recordings_check_severity{check="disk_days", severity="page"} == 1 '
               'and on () lifeline_recordings_check_severity{check="disk_free", '
               'severity="ticket"} == 1', "the store's volume all but full")
    steps.seen('lifeline_recordings_corrupt{backup="nas"} > 0 and on () '
               'lifeline_recordings_corrupt{backup="usb"} > 0', "the corrupt copies read back")
    steps.ask_all("site at work")

    # A cleanup drops a recording from both mirrors five years early, and one not yet
    # copied leaves the store (seen with the power cut's step, to keep the run short).
    for name in MIRRORS:
        (rec / name / EARLY).unlink()
    (rec / "store" / UNCOPIED).unlink()

    # A power cut: on battery past the grace time (the page), then LB with the runtime
    # below the margin (DIDs on DR for power); mains back, the DIDs come home.
    ups.set(status="OB DISCHRG", charge=70, runtime=600, input_voltage=0, load=40)
    steps.seen("lifeline_power_outage == 1", "the power outage (past the grace time)")
    steps.seen('lifeline_site_power_state{state="on_battery"} == 1', "the site on battery")
    steps.seen('lifeline_recordings_dropped_early{backup="nas"} > 0 and on () '
               'lifeline_recordings_dropped_early{backup="usb"} > 0',
               "the recording dropped early from both mirrors")
    steps.seen("lifeline_recordings_lost > 0", "the recording lost from the store")
    steps.ask_all("on battery")
    ups.set(status="OB LB DISCHRG", charge=8, runtime=45)
    steps.seen('lifeline_dids_on_dr_by_cause{cause="power"} > 0', "DIDs on DR for power")
    steps.seen('lifeline_ups_status{flag="LB"} == 1', "LB scraped")
    steps.ask_all("battery low, DIDs on DR")
    ups.set(status="OL CHRG", charge=9, runtime=60, input_voltage=231, load=35)
    steps.seen('lifeline_power_outage == 0 and on () lifeline_dids_on_dr_by_cause'
               '{cause="power"} == 0', "mains back and the DIDs home (hold-down 2 s)")

    # The UPS unreadable (its driver gone: ERR DRIVER-NOT-CONNECTED, then unknown), and the
    # CRM slow (degraded: over its 250 ms), then answering 500 (down).
    ups.kill_driver()
    service.set(delay=0.5)
    for name in MIRRORS:  # unmounted: unavailable, a page (nas) and a ticket (usb)
        (rec / name).rename(rec / f"{name}.away")
    steps.seen('lifeline_site_power_state{state="unknown"} == 1', "the UPS unknown")
    steps.seen('lifeline_service_state{service="crm", state="degraded"} == 1',
               "the CRM degraded (slow)")
    steps.seen('lifeline_recordings_source_up{source="nas"} == 0 and on () '
               'lifeline_recordings_source_up{source="usb"} == 0', "both mirrors unmounted")
    steps.ask_all("UPS unreadable, CRM slow, mirrors unmounted")
    for name in MIRRORS:
        (rec / f"{name}.away").rename(rec / name)
    service.set(delay=0.0, status=500)
    steps.seen('lifeline_service_up{service="crm"} == 0', "the CRM down (HTTP 500)")
    steps.ask_all("CRM down")
    ups.start_driver()
    service.set(status=200)
    steps.seen('lifeline_site_power_state{state="mains"} == 1', "the UPS read again")

    lab.faults.blackhole("fibre-a")
    daemon.wait_active(["fibre-b"], timeout=30.0)
    steps.seen('lifeline_link_state{link="fibre-a", state="down"} == 1', "fibre-a down")
    steps.seen('ALERTS{alertname="LifelineOnBackupLink"}', "the site on a backup link")
    steps.ask_all("fibre-a blackholed")

    sip.stop_peer("pbx")
    steps.seen("lifeline_dids_on_dr > 0", "DIDs on the DR destination")
    steps.ask_all("PBX gone")

    sip.stop_peer(SBC_DOWN)
    steps.seen(f'lifeline_trunk_state{{trunk="{SBC_DOWN}", state="down"}} == 1',
               f"{SBC_DOWN} down")
    steps.seen("lifeline_dids_unroutable > 0", "DIDs unroutable")
    # sbc1 answers OPTIONS but refuses every call: the edge's failure signal trips it.
    sip.stop_peer(SBC_503)
    sip.start_sbc(SBC_503, "uas_503.xml")
    daemon.wait_for(lambda s: trunk(s, SBC_503)["state"] == "up", 15, "sbc1 answering")

    def tripped() -> bool:
        sip.outbound(A_DID, timeout=1.5)  # fails: 503
        st = daemon.status()
        return st is not None and bool(trunk(st, SBC_503)["edge_tripped"])

    until(tripped, 40, 0.3, f"{SBC_503} tripped by failing calls")
    steps.seen("lifeline_trunk_edge_tripped == 1", "the tripped trunk")
    steps.ask_all("trunks failed")

    sip.stop_kamailio()
    # Out of sync once there is a new plan it cannot take: carrier B's SBC comes back.
    sip.start_sbc(SBC_DOWN)
    daemon.wait_for(lambda s: not s["edges"][0]["in_sync"], 20, "a push failing")
    steps.seen("lifeline_sip_edge_in_sync == 0", "the edge out of sync")
    steps.ask_all("Kamailio gone")

    daemon.config_path.write_text("site: lab\nlinks: [{name: fibre-a}]\n")
    assert daemon.pid is not None
    os.kill(daemon.pid, signal.SIGHUP)
    steps.seen("lifeline_config_last_reload_successful == 0", "the bad config refused")
    steps.ask_all("config refused")

    for link in ("fibre-b", "lte"):
        lab.faults.blackhole(link)
    steps.seen("sum by (site) (lifeline_link_up) == 0", "every uplink down")
    steps.ask_all("every uplink down")

    stopped = time.monotonic()
    daemon.stop()
    steps.seen('up{job="lifeline"} == 0', "lifeline not answering")
    steps.ask_all("lifeline stopped")
    took = time.monotonic() - stopped

    print(f"\n{steps.table()}\n({len(exprs)} expressions, {len(steps.steps)} steps; "
          f"the last step seen {took:.1f} s after the stop)")
    empty = [e for e in exprs if not any(steps.counts[e]) and e.source not in ALLOWED_EMPTY]
    assert not empty, "no data in any step (a renamed metric or label?):\n" + "\n".join(
        f"  {e.source}: {steps.asked[e]}" for e in empty)
    unused = set(ALLOWED_EMPTY) - {e.source for e in exprs}
    assert not unused, f"ALLOWED_EMPTY names rules that are gone: {sorted(unused)}"

