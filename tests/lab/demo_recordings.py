"""``lifeline demo``'s recordings act: last night's copy skipped a few recordings; lifeline
finds them, names them, and on-call is paged; the copy re-runs and the page is resolved.

On a fresh lab it makes a recorder's store and a mirror backup (a NAS share, as folders in
a temporary directory the act removes), starts the real daemon with a ``recordings:``
section at lab pace (a check cycle every second or two; the copy is daily and the grace
30 minutes, as a site has them: the recordings carry past mtimes, so the grace is already
behind them), and next to it, in the site namespace, a real Prometheus with the SHIPPED
rules and a real Alertmanager with the SHIPPED config (receivers pointed to the webhook
sink, group timings shortened, as in tests/integration/test_paging_e2e.py). It plays:
three days of calls in the store and the mirror, today's calls waiting for the night's
copy (all ok, no page) -> the night's copy runs, as rsync would, but skips a few (lifeline
names exactly those, so does ``lifeline recordings verify``, and one page reaches the sink)
-> the copy re-runs and completes (the page is resolved). After every step the store and
the mirror are compared with what the act itself last left there (paths, sizes, mtimes):
lifeline only reads. This module plays and reports; lifeline decides.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporters.recordings import recordings_lines
from tests.lab.config import lifeline_config_dict
from tests.lab.lifelined import LifelineProcess
from tests.lab.monitoring import (
    ALERTMANAGER,
    PROMETHEUS,
    SINK_PORT,
    prometheus_config,
    query,
    quietly,
    shipped_alertmanager,
    start_alertmanager,
    start_prometheus,
    start_sink,
)
from tests.lab.topology import Lab
from tests.lab.wait import until
from tests.lab.webhook_sink import deliveries
from tests.unit.rectrees import put, tree_state

__all__ = [
    "ALERT",
    "RecAct",
    "RecFigures",
    "RecOutcome",
    "RecTiming",
    "recordings_skip_reason",
    "recordings_summary",
    "run_recordings_act",
]

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "grafana" / "alerts" / "lifeline.rules.yaml"
ALERT = "LifelineRecordingsMissing"
BACKUP = "nas"
HOUR, DAY = 3600.0, 86400.0
NS = 10**9


def recordings_skip_reason() -> str | None:
    """Why the act cannot run here (None: it can): it needs the real Prometheus and
    Alertmanager, the page's way to on-call."""
    missing = [name for name, path in (("prometheus", PROMETHEUS),
                                       ("prometheus-alertmanager", ALERTMANAGER))
               if path is None]
    return f"needs {' and '.join(missing)} (Debian)" if missing else None


@dataclass(frozen=True, slots=True)
class RecTiming:
    """The act's pace. The check cycle is at lab pace; the copy's schedule and grace are a
    site's own (the recordings' mtimes lie hours and days back, so the grace is behind
    them already and only the cycle, the scrape and Alertmanager set the pace)."""

    interval: float  # lifeline's check cycle
    schedule: str = "24h"  # a copy every night
    grace: str = "30m"  # missing once the copy went past a recording by this much
    days: int = 3  # past days in the store and the mirror
    per_day: int = 40  # calls recorded per day
    skipped: tuple[int, ...] = (7, 19, 31)  # today's calls (by time) the copy skips
    quiet: float = 4.0  # seconds watched for no page (a scrape, an evaluation, group_wait)

    @classmethod
    def for_demo(cls, quick: bool) -> RecTiming:
        return cls(interval=1.0, quiet=3.0) if quick else cls(interval=2.0)


@dataclass
class RecOutcome:
    title: str
    expect: str
    ok: bool
    took: float | None  # seconds from the step's action to what it expects
    found: tuple[str, ...] = ()  # what lifeline named missing from the mirror
    note: str = ""


@dataclass
class RecFigures:
    recordings: int = 0  # in the store at the end
    skipped: tuple[str, ...] = ()  # what the night's copy left out
    to_finding: float | None = None  # copy done -> lifeline names them (status API)
    to_page: float | None = None  # copy done -> the page at the webhook sink
    to_ok: float | None = None  # copy completed -> lifeline's verdict ok again
    to_resolved: float | None = None  # copy completed -> the page resolved at the sink
    verify_missing: tuple[str, ...] = ()  # what `lifeline recordings verify` named
    verify_exit: int | None = None
    verify_seconds: float | None = None
    pages: int = 0  # firing notifications on-call got
    resolved: int = 0
    tickets: int = 0  # notifications of the ticket receiver
    trees_untouched: bool | None = None  # store and mirror as the act left them


@dataclass
class RecAct:
    timing: RecTiming
    outcomes: list[RecOutcome] = field(default_factory=list)
    figures: RecFigures = field(default_factory=RecFigures)
    steps: int = 3

    @property
    def passed(self) -> bool:
        return (len(self.outcomes) == self.steps and all(o.ok for o in self.outcomes)
                and self.figures.trees_untouched is True)


# -- the recorder and the night's copy ------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Recording:
    rel: str  # 2026/12/03/call-20261203-007.wav
    mtime_ns: int
    size: int


def _calls(now: float, t: RecTiming) -> tuple[list[Recording], list[Recording]]:
    """(past days' recordings, today's), tiny files whose mtimes lie in the past: each
    day's calls spread from 10 h to 1 h before the same time of day, in date folders."""
    def day(start: float) -> list[Recording]:
        step = 9 * HOUR / (t.per_day - 1)
        out = []
        for i in range(t.per_day):
            at = start + i * step
            tm = time.gmtime(at)
            rel = time.strftime("%Y/%m/%d/call-%Y%m%d-%H%M%S", tm) + f"-{i:03d}.wav"
            out.append(Recording(rel, int(at * NS), 200 + 7 * i))
        return out

    past = [r for k in range(t.days, 0, -1) for r in day(now - k * DAY - 10 * HOUR)]
    return past, day(now - 10 * HOUR)


def _record(store: Path, recs: list[Recording]) -> None:
    for r in recs:
        put(store, r.rel, r.size, r.mtime_ns)


def _copy(store: Path, mirror: Path, recs: list[Recording]) -> None:
    """What a night's ``rsync -rt store/ mirror/`` does for ``recs``: files with their
    mtimes, those already there with the same size and mtime left alone."""
    for r in recs:
        src, dst = store / r.rel, mirror / r.rel
        with contextlib.suppress(FileNotFoundError):
            st = dst.stat()
            if st.st_size == r.size and st.st_mtime_ns == r.mtime_ns:
                continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


# -- the paging chain -----------------------------------------------------------------------


# -- the act --------------------------------------------------------------------------------

class _Site:
    """The daemon, the trees, the sink: what the steps read."""

    def __init__(self, lab: Lab, daemon: LifelineProcess, store: Path, mirror: Path,
                 sink: Path, t0: float) -> None:
        self.lab, self.daemon, self.store, self.mirror, self.sink = (
            lab, daemon, store, mirror, sink)
        self.t0 = t0
        self.trees = self.snapshot()
        self.shown = ""

    def stamp(self) -> str:
        return f"{time.monotonic() - self.t0:7.2f}s"

    def snapshot(self) -> dict[str, dict[bytes, tuple[int, int, int]]]:
        return {"store": tree_state(self.store), "mirror": tree_state(self.mirror)}

    def untouched(self) -> list[str]:
        """What changed in either tree since the act's own last write (nothing: [])."""
        now = self.snapshot()
        out = []
        for name, before in self.trees.items():
            after = now[name]
            for path in sorted(set(before) | set(after)):
                if before.get(path) != after.get(path):
                    out.append(f"{name}/{path.decode(errors='replace')}: "
                               f"{before.get(path)} -> {after.get(path)}")
        return out

    def acted(self) -> None:
        """The act wrote to a tree: this is now what lifeline must leave as it is."""
        self.trees = self.snapshot()

    def recordings(self) -> dict[str, Any] | None:
        st = self.daemon.status()
        doc = None if st is None else st.get("recordings")
        if doc is not None and doc.get("judged_at") is not None:
            line = f"{doc['worst']} {self._missing(doc)}"
            if line != self.shown:
                self.shown = line
                finding = self._finding(doc, "missing")
                reason = finding["reason"] if finding else "-"
                print(f"  {self.stamp()}  lifeline {doc['worst']:<6} {reason}", flush=True)
            return dict(doc)
        return None

    @staticmethod
    def _finding(doc: dict[str, Any], check: str) -> dict[str, Any] | None:
        return next((f for f in doc["findings"]
                     if f["check"] == check and f["subject"] == BACKUP), None)

    @classmethod
    def _missing(cls, doc: dict[str, Any]) -> tuple[str, ...]:
        f = cls._finding(doc, "missing")
        return tuple(f["names"]) if f and f["severity"] != "ok" else ()

    def missing(self) -> tuple[str, ...] | None:
        doc = self.recordings()
        return None if doc is None else self._missing(doc)

    def pages(self) -> list[tuple[str, list[str]]]:
        return deliveries(self.sink, "oncall")

    def verify(self) -> tuple[int, dict[str, Any] | None, str, float]:
        """``lifeline recordings verify --since 7d``, as an operator runs it: exit code,
        its JSON report, its text, seconds."""
        argv = [sys.executable, "-m", "controller", "recordings", "verify", "-c",
                str(self.daemon.config_path), "--since", "7d"]
        began = time.monotonic()
        text = self.lab.run(self.lab.site, argv, check=False, timeout=60)
        took = time.monotonic() - began
        machine = self.lab.run(self.lab.site, [*argv, "--json"], check=False, timeout=60)
        try:
            doc = json.loads(machine.stdout)
        except ValueError:
            doc = None
        return text.returncode, doc, (text.stdout + text.stderr).rstrip(), took


def _wait(what: str, check: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until ``check`` holds (polled every 0.1 s), None if not within timeout."""
    began = time.monotonic()
    try:
        until(lambda: quietly(check), timeout, 0.1, what)
    except TimeoutError:
        return None
    return time.monotonic() - began


def _hm(seconds: float) -> str:
    return f"{int(seconds // HOUR)}h{int(seconds % HOUR // 60):02d}m"


def _step(title: str) -> None:
    print(f"\n== {title}", flush=True)


def _finish(act: RecAct, site: _Site, outcome: RecOutcome) -> bool:
    changed = site.untouched()
    if changed:
        outcome.ok = False
        outcome.note = (outcome.note + "; " if outcome.note else "") + (
            f"lifeline changed {len(changed)} path(s): {changed[0]}")
        act.figures.trees_untouched = False
    elif act.figures.trees_untouched is None:
        act.figures.trees_untouched = True
    print(f"   -> {outcome.expect}" + ("" if outcome.took is None
                                       else f" after {outcome.took:.2f} s")
          + ("; store and mirror as the act left them (paths, sizes, mtimes)" if not changed
             else "") + (f"; {outcome.note}" if outcome.note else ""), flush=True)
    act.outcomes.append(outcome)
    return outcome.ok


def _play(act: RecAct, site: _Site, today: list[Recording], keep_going: bool) -> None:
    t = act.timing
    f = act.figures
    skipped = [today[i] for i in t.skipped]
    f.skipped = tuple(r.rel for r in skipped)
    nightly = [r for r in today if r not in skipped]

    # (a) all copied up to last night; today's calls wait for tonight's copy: no finding.
    title = (f"{t.days} days of calls in the store and the mirror, today's {len(today)} "
             "waiting for the night's copy: all ok")
    _step(title)

    def all_ok() -> bool:
        doc = site.recordings()
        return doc is not None and doc["worst"] == "ok" and bool(query(
            site.lab, f'lifeline_recordings_check_severity{{check="missing", '
            f'subject="{BACKUP}", severity="ok"}} == 1'))

    took = _wait("lifeline ok and Prometheus scraping it", all_ok, 40)
    outcome = RecOutcome(title, "ok, no page", took is not None, took)
    if took is None:
        outcome.note = f"lifeline not ok within 40 s: {site.recordings()}"
    else:
        time.sleep(t.quiet)  # a scrape, an evaluation and group_wait: nothing may come
        doc = site.recordings() or {}
        src: dict[str, Any] = next(
            (s for s in doc.get("sources", []) if s["name"] == BACKUP), {})
        print(f"  {site.stamp()}  {BACKUP}: {src.get('files')} recordings, newest "
              f"{(src.get('newest_age') or 0) / HOUR:.1f} h old; today's {len(today)} wait "
              f"for the copy (not stale before {t.schedule} + {t.grace})", flush=True)
        if site.pages():
            outcome.ok, outcome.note = False, f"paged: {site.pages()}"
    if not _finish(act, site, outcome) and not keep_going:
        return

    # (b) the night's copy skips three: found, named, paged, once.
    title = (f"the night's copy runs and skips {len(skipped)} of {len(today)}: "
             "found, named, paged")
    _step(title)
    _copy(site.store, site.mirror, nightly)
    copied = time.monotonic()
    site.acted()
    print(f"  {site.stamp()}  copy done: {len(nightly)} copied to the mirror, skipped "
          + ", ".join(r.rel for r in skipped), flush=True)
    behind = [(nightly[-1].mtime_ns - r.mtime_ns) / NS for r in skipped]
    print(f"  {site.stamp()}  the skipped were recorded {_hm(min(behind))} to "
          f"{_hm(max(behind))} before the newest copy: past the {t.grace} grace, so missing",
          flush=True)
    expected = tuple(sorted(f.skipped))
    outcome = RecOutcome(title, f"{len(skipped)} missing, 1 page", False, None)
    found = _wait("lifeline to find the skipped recordings",
                  lambda: bool(site.missing()), 30)
    if found is not None:
        f.to_finding = found
        outcome.found = site.missing() or ()
        print(f"  {site.stamp()}  lifeline names {len(outcome.found)} missing from "
              f"{BACKUP} (status API): " + ", ".join(outcome.found), flush=True)
        for line in recordings_lines(site.recordings())[1:]:
            print(f"  {' ' * 8}  | {line}", flush=True)
    paged = _wait("the page at the webhook sink",
                  lambda: ("firing", [ALERT]) in site.pages(), 40)
    if paged is not None:
        f.to_page = time.monotonic() - copied
        print(f"  {site.stamp()}  on-call paged: {ALERT} at the webhook sink, "
              f"{f.to_page:.2f} s after the copy", flush=True)
    code, report, text, took = site.verify()
    f.verify_exit, f.verify_seconds = code, took
    nas: dict[str, Any] = next(
        (b for b in (report or {}).get("backups", []) if b["name"] == BACKUP), {})
    f.verify_missing = tuple(sorted(nas.get("missing_paths", [])))
    print(f"  {site.stamp()}  lifeline recordings verify --since 7d (exit {code}, "
          f"{took:.2f} s):", flush=True)
    for line in text.splitlines():
        print(f"  {' ' * 8}  | {line}", flush=True)
    time.sleep(t.quiet)  # group_interval: a second page may not come
    f.pages = sum(s == "firing" for s, _ in site.pages())
    outcome.took = f.to_page
    problems = []
    if tuple(sorted(outcome.found)) != expected:
        problems.append(f"lifeline named {list(outcome.found)}, expected {list(expected)}")
    if f.verify_missing != expected or code != 1:
        problems.append(f"verify named {list(f.verify_missing)} (exit {code})")
    if site.pages() != [("firing", [ALERT])]:
        problems.append(f"on-call got {site.pages()}, expected one {ALERT} page")
    outcome.ok, outcome.note = not problems, "; ".join(problems)
    if not _finish(act, site, outcome) and not keep_going:
        return

    # (c) the copy re-runs and completes: resolved.
    title = "the copy re-runs and completes: page resolved"
    _step(title)
    _copy(site.store, site.mirror, today)
    fixed = time.monotonic()
    site.acted()
    print(f"  {site.stamp()}  copy done: the {len(skipped)} missing copied", flush=True)
    outcome = RecOutcome(title, "ok, resolved", False, None)
    ok_again = _wait("lifeline ok again", lambda: site.missing() == (), 30)
    if ok_again is not None:
        f.to_ok = ok_again
    resolved = _wait("the page resolved at the sink",
                     lambda: ("resolved", [ALERT]) in site.pages(), 60)
    if resolved is not None:
        f.to_resolved = time.monotonic() - fixed
        print(f"  {site.stamp()}  on-call: {ALERT} resolved, {f.to_resolved:.2f} s after "
              "the copy", flush=True)
    outcome.took = f.to_resolved
    if ok_again is None or resolved is None:
        outcome.note = ("lifeline still names missing recordings" if ok_again is None
                        else "no resolved notification within 60 s")
    else:
        outcome.ok = True
    _finish(act, site, outcome)


def _print_journal(lab: Lab, daemon: LifelineProcess) -> None:
    out = lab.run(lab.site, [sys.executable, "-m", "controller", "events", "--state-dir",
                             str(daemon.state_dir), "--subject", BACKUP, "-n", "6"],
                  check=False)
    text = (out.stdout or out.stderr).rstrip()
    if text:
        print(f"journal (lifeline events --subject {BACKUP}):\n" + text, flush=True)


def _config(lab: Lab, state: Path, store: Path, mirror: Path, t: RecTiming
            ) -> dict[str, Any]:
    config = lifeline_config_dict(lab, state, reliability=2)
    config["recordings"] = {
        "store": {"path": str(store)},
        "backups": [{"name": BACKUP, "folder": str(mirror)}],
        "schedule": t.schedule, "grace": t.grace, "retention": "5y",
        "interval": f"{t.interval:g}s", "full_scan_every": "1h", "verify_days": 1,
    }
    return config


def run_recordings_act(quick: bool = False, keep_going: bool = False) -> RecAct:
    """Play the act on a fresh lab; its outcomes (fewer than the steps if it stopped)."""
    timing = RecTiming.for_demo(quick)
    act = RecAct(timing)
    workdir = Path(tempfile.mkdtemp(prefix="lifeline-demo-recordings-"))
    try:
        store, mirror = workdir / "recorder" / "recordings", workdir / "nas" / "recordings"
        store.mkdir(parents=True)
        mirror.mkdir(parents=True)
        past, today = _calls(time.time(), timing)
        _record(store, past + today)
        _copy(store, mirror, past)
        act.figures.recordings = len(past) + len(today)
        with Lab() as lab:
            t0 = time.monotonic()
            daemon = LifelineProcess.with_config(
                lab, workdir / "state", _config(lab, workdir / "state", store, mirror,
                                                timing))
            try:
                paging = workdir / "paging"
                sink = start_sink(lab, paging)
                start_alertmanager(lab, paging,
                                   shipped_alertmanager(f"http://127.0.0.1:{SINK_PORT}"))
                start_prometheus(lab, paging, prometheus_config([RULES]))
                site = _Site(lab, daemon, store, mirror, sink, t0)
                daemon.start()
            except (OSError, RuntimeError, TimeoutError, subprocess.SubprocessError) as exc:
                print(f"the recordings act did not start: {exc}", flush=True)
                return act
            print(f"lab {lab.prefix.rstrip('-')}: lifeline (pid {daemon.proc.pid}), "
                  f"Prometheus (shipped rules, 1 s scrape), Alertmanager (shipped config, "
                  f"group_wait 2 s) and the webhook sink in {lab.site}", flush=True)
            print(f"recordings (config): store {store}, backup {BACKUP} (folder {mirror}), "
                  f"a copy every {timing.schedule} + {timing.grace} grace, retention 5y, "
                  f"checked every {timing.interval:g} s; {len(past)} recordings of "
                  f"{timing.days} days in both, today's {len(today)} in the store only",
                  flush=True)
            try:
                _play(act, site, today, keep_going)
            finally:
                print()
                _print_journal(lab, daemon)
                f = act.figures
                f.resolved = sum(s == "resolved" for s, _ in site.pages())
                f.pages = sum(s == "firing" for s, _ in site.pages())
                f.tickets = len(deliveries(sink, "tickets"))
                daemon.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return act


def recordings_summary(act: RecAct) -> str:
    def s(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} s"

    rows = [f"{'recordings step':<64} {'expect':<18} {'took':>7}  result"]
    for o in act.outcomes:
        rows.append(f"{o.title[:64]:<64} {o.expect:<18} {s(o.took):>7}  "
                    + ("ok" if o.ok else f"FAILED: {o.note}"))
    f, t = act.figures, act.timing
    named = len(act.outcomes[1].found) if len(act.outcomes) > 1 else 0
    untouched = {True: "untouched (paths, sizes, mtimes)", False: "CHANGED by lifeline",
                 None: "-"}[f.trees_untouched]
    rows += [
        f"recordings: {f.recordings} in the store; the night's copy skipped "
        f"{len(f.skipped)}; lifeline named {named}, "
        f"verify named {len(f.verify_missing)} (exit {f.verify_exit}, "
        f"{s(f.verify_seconds)})",
        f"copy done -> lifeline names them: {s(f.to_finding)}; -> page at the webhook sink: "
        f"{s(f.to_page)} (check every {t.interval:g} s, scrape and rules every 1 s, "
        "group_wait 2 s)",
        f"copy completed -> lifeline ok: {s(f.to_ok)}; -> page resolved: {s(f.to_resolved)}",
        f"on-call notifications: {f.pages} page(s), {f.resolved} resolved; tickets "
        f"{f.tickets}; store and mirror: {untouched}",
    ]
    return "\n".join(rows)


def main() -> int:
    """The act alone (``python -m tests.lab.demo_recordings [--quick]``), as root."""
    act = run_recordings_act(quick="--quick" in sys.argv[1:],
                             keep_going="--keep-going" in sys.argv[1:])
    print("\n" + recordings_summary(act))
    return 0 if act.passed else 1


if __name__ == "__main__":
    sys.exit(main())
