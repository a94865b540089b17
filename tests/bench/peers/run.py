"""``python -m tests.bench.peers``: every peer through every scenario, then the table.

Run as root from the repository (``make bench-peers`` installs keepalived and frr first).
Two phases keep the timing honest on a small machine: first the gap trials of the peers that
move within seconds, one lab at a time (a second lab's CPU would be in their figures); then
everything long, side by side in separate labs (``--jobs``): the noise and voice-bad runs,
the VPN-like flow trials, and the gap trials of peers whose figures are in tens of seconds
(``PeerKind.slow``, the mwan3 re-creation). A trial that breaks is recorded as such and the
run goes on; Ctrl-C or SIGTERM ends every wait at once, and each lab is torn down by its
own ``with``. Results go to ``--json``; the tables to stdout and, with
``--write-benchmarks``, to ``BENCHMARKS.md`` (rebuilt from JSON alone by ``--from-json``).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from tests.bench.bench_failover import log, write_json
from tests.bench.peers import bfd, keepalived, lifeline, mwan3, naive
from tests.bench.peers.base import ABORT, Aborted, PeerKind
from tests.bench.peers.report import benchmarks_markdown, machine, text_tables
from tests.bench.peers.scenarios import (
    DEAD_TARGET,
    VOICE_DELAY_MS,
    VOICE_JITTER_MS,
    VOICE_LOSS,
    VPN_PORT,
    GapTrial,
    NoiseRun,
    VoiceRun,
    VpnTrial,
    as_dict,
    gap_trial,
    noise_run,
    voice_run,
    vpn_trial,
)
from tests.lab.netns import cleanup_stale

__all__ = ["PEERS", "SCENARIOS", "main", "run"]

PEERS: dict[str, PeerKind] = {k.name: k for k in (
    lifeline.KIND, keepalived.FAST, keepalived.DEFAULTS, bfd.KIND, mwan3.KIND, naive.KIND)}
SCENARIOS = ("blackhole", "carrier", "vpn", "noise", "voice")

_R = TypeVar("_R", GapTrial, VpnTrial, NoiseRun, VoiceRun)


def missing_tools(kind: PeerKind) -> list[str]:
    return [t for t in kind.tools if shutil.which(t) is None and not Path(t).exists()]


def _guarded(what: str, body: Callable[[], _R], failed: _R) -> _R:
    """A broken trial becomes a recorded error; an abort is not swallowed."""
    try:
        return body()
    except Aborted:
        raise
    except Exception as exc:
        failed.error = f"{type(exc).__name__}: {str(exc)[:400]}"
        log(f"{what}: failed: {str(exc)[:3000]}")
        return failed


def _say_gap(name: str, t: GapTrial, n: int) -> None:
    if t.error:
        log(f"{name} {t.fault} {t.trial}/{n}: [{t.error}]")
        return
    moved = "never" if t.moved_after is None else f"{t.moved_after:.3f} s"
    log(f"{name} {t.fault} {t.trial}/{n}: route moved {moved}; gap two-way "
        f"{t.gap:.3f} s{'' if t.recovered else ' (never back)'}, forward "
        f"{t.forward_gap:.3f} s{'' if t.forward_recovered else ' (never back)'}")


def run(kinds: list[PeerKind], scenarios: tuple[str, ...], *, trials: int, vpn_trials: int,
        noise_minutes: float, voice_seconds: float, jobs: int,
        workdir: Path) -> dict[str, dict[str, Any]]:
    """Run ``scenarios`` for ``kinds``; the per-peer results, JSON-ready."""
    results: dict[str, dict[str, Any]] = {}
    runnable: list[PeerKind] = []
    for kind in kinds:
        entry: dict[str, Any] = {"label": kind.label, "settings": kind.settings,
                                 "blackhole": [], "carrier": [], "vpn": [], "noise": None,
                                 "voice": None}
        results[kind.name] = entry
        missing = missing_tools(kind)
        if missing:
            entry["skipped"] = f"missing {', '.join(missing)}"
            log(f"{kind.name}: skipped, {entry['skipped']}")
        else:
            runnable.append(kind)

    def gap(kind: PeerKind, fault: str, n: int) -> None:
        t = _guarded(f"{kind.name} {fault} {n}",
                     lambda: gap_trial(kind, fault, n, workdir), GapTrial(fault, n))
        results[kind.name][fault].append(as_dict(t))
        _say_gap(kind.name, t, trials)

    # Phase 1: the timing-sensitive trials, one lab at a time.
    for kind in runnable:
        if kind.slow:
            continue
        for fault in ("blackhole", "carrier"):
            if fault in scenarios:
                for n in range(1, trials + 1):
                    gap(kind, fault, n)

    # Phase 2: the long runs, side by side; the longest are submitted first.
    tasks: list[tuple[float, str, Callable[[], None]]] = []

    def add(seconds: float, what: str, body: Callable[[], None]) -> None:
        tasks.append((seconds, what, body))

    for kind in runnable:
        if "noise" in scenarios and noise_minutes > 0:
            def noise(kind: PeerKind = kind) -> None:
                r = _guarded(f"{kind.name} noise",
                             lambda: noise_run(kind, noise_minutes, workdir),
                             NoiseRun(noise_minutes, "-"))
                results[kind.name]["noise"] = as_dict(r)
                log(f"{kind.name} noise: {r.failovers} false failover(s), "
                    f"{r.seconds_away:.1f} s off fibre-a" + (f" [{r.error}]" if r.error else ""))
            add(noise_minutes * 60 + 20, f"{kind.name} noise", noise)
        if kind.slow:
            for fault in ("blackhole", "carrier"):
                if fault in scenarios:
                    for n in range(1, trials + 1):
                        def slow_gap(kind: PeerKind = kind, fault: str = fault,
                                     n: int = n) -> None:
                            gap(kind, fault, n)
                        add(kind.move_bound, f"{kind.name} {fault} {n}", slow_gap)
        if "vpn" in scenarios:
            for n in range(1, vpn_trials + 1):
                def vpn(kind: PeerKind = kind, n: int = n) -> None:
                    r = _guarded(f"{kind.name} vpn {n}", lambda: vpn_trial(kind, n, workdir),
                                 VpnTrial(n))
                    results[kind.name]["vpn"].append(as_dict(r))
                    log(f"{kind.name} vpn {n}/{vpn_trials}: "
                        + ("route never moved" if r.moved_after is None
                           else "recovered" if r.recovered else "not recovered")
                        + (f" [{r.error}]" if r.error else ""))
                add(kind.move_bound / 2 + 20, f"{kind.name} vpn {n}", vpn)
        if "voice" in scenarios and voice_seconds > 0:
            def voice(kind: PeerKind = kind) -> None:
                r = _guarded(f"{kind.name} voice", lambda: voice_run(kind, voice_seconds,
                                                                     workdir),
                             VoiceRun(voice_seconds))
                results[kind.name]["voice"] = as_dict(r)
                log(f"{kind.name} voice-bad: {r.verdict}"
                    + (f" after {r.left_after:.1f} s" if r.left_after is not None else "")
                    + (f" [{r.error}]" if r.error else ""))
            add(voice_seconds + 20, f"{kind.name} voice", voice)
    tasks.sort(key=lambda t: -t[0])
    if tasks:
        log(f"phase 2: {len(tasks)} long runs, {jobs} at a time")
        with cf.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="peers") as pool:
            futures = [pool.submit(body) for _, _, body in tasks]
            try:
                for fut in cf.as_completed(futures):
                    fut.result()
            except BaseException:
                ABORT.set()
                for fut in futures:
                    fut.cancel()
                raise
    return results


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.peers",
                                     description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10,
                        help="blackhole and carrier trials per peer (default 10)")
    parser.add_argument("--vpn-trials", type=int, default=2,
                        help="VPN-like flow trials per peer (default 2)")
    parser.add_argument("--noise-minutes", type=float, default=10.0,
                        help="minutes of 1 %% loss each way with a dead target (default 10; "
                             "0 skips)")
    parser.add_argument("--voice-seconds", type=float, default=60.0,
                        help="seconds of a voice-bad fibre-a (default 60; 0 skips)")
    parser.add_argument("--only", action="append", choices=sorted(PEERS), metavar="PEER",
                        help=f"run only this peer (repeatable): {', '.join(PEERS)}")
    parser.add_argument("--scenario", action="append", choices=SCENARIOS,
                        help="run only this scenario (repeatable; default all)")
    parser.add_argument("--jobs", type=int, default=8,
                        help="labs side by side in the long phase (default 8)")
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                        help="also write the results as JSON (to PATH, or stdout)")
    parser.add_argument("--write-benchmarks", metavar="PATH",
                        help="write the report (BENCHMARKS.md) there")
    parser.add_argument("--from-json", metavar="PATH",
                        help="run nothing: rebuild the tables (and --write-benchmarks) from "
                             "a stored --json file")
    args = parser.parse_args(argv)
    if args.from_json:
        data = json.loads(Path(args.from_json).read_text())
        return _finish(data, args)
    if os.geteuid() != 0:
        log("bench peers: needs root (network namespaces, routes, iptables)")
        return 2
    if not 1 <= args.trials <= 200 or not 0 <= args.vpn_trials <= 50:
        parser.error("--trials must be 1..200 and --vpn-trials 0..50")
    if not 0 <= args.noise_minutes <= 240 or not 0 <= args.voice_seconds <= 3600:
        parser.error("--noise-minutes must be 0..240 and --voice-seconds 0..3600")
    if not 1 <= args.jobs <= 32:
        parser.error("--jobs must be 1..32")
    kinds = [PEERS[n] for n in (args.only or PEERS)]
    scenarios = tuple(args.scenario or SCENARIOS)
    signal.signal(signal.SIGTERM, _interrupt)
    cleanup_stale()
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="lifeline-peers-") as tmp:
            peers = run(kinds, scenarios, trials=args.trials, vpn_trials=args.vpn_trials,
                        noise_minutes=args.noise_minutes, voice_seconds=args.voice_seconds,
                        jobs=args.jobs, workdir=Path(tmp))
    except KeyboardInterrupt:
        ABORT.set()
        log("bench peers: interrupted; every lab has been removed")
        return 130
    data = {
        "machine": machine(),
        "command": shlex.join(["python", "-m", "tests.bench.peers",
                               *(argv if argv is not None else sys.argv[1:])]),
        "seconds": round(time.monotonic() - started, 1),
        "settings": {
            "trials": args.trials, "vpn_trials": args.vpn_trials,
            "noise_minutes": args.noise_minutes, "voice_seconds": args.voice_seconds,
            "scenarios": list(scenarios), "vpn_port": VPN_PORT, "dead_target": DEAD_TARGET,
            "voice_loss": VOICE_LOSS, "voice_delay_ms": VOICE_DELAY_MS,
            "voice_jitter_ms": VOICE_JITTER_MS,
        },
        "peers": peers,
    }
    write_json(args.json, data)
    return _finish(data, args)


def _finish(data: dict[str, Any], args: argparse.Namespace) -> int:
    print(text_tables(data))
    if args.write_benchmarks:
        Path(args.write_benchmarks).write_text(benchmarks_markdown(data))
        log(f"report written to {args.write_benchmarks}")
    broken = [f"{name} {kind}" for name, p in data["peers"].items()
              for kind in ("blackhole", "carrier", "vpn")
              for t in p.get(kind, []) if t.get("error")]
    broken += [f"{name} {kind}" for name, p in data["peers"].items()
               for kind in ("noise", "voice") if (p.get(kind) or {}).get("error")]
    if broken:
        log(f"{len(broken)} trial(s) broke: {', '.join(broken[:10])}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
