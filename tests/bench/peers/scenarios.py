"""The five scenarios every peer meets, each in a fresh lab: they measure, they do not judge.

- ``gap_trial``: blackhole or carrier loss on fibre-a at a random phase of the peer's probing
  period, with the lab's two-way data-plane stream running (LAN host -> sink through the
  site's SNAT, every 5 ms, the sink echoing); the largest gap in the echoes back at the LAN
  host (what a call hears, and the only view that also needs the SNAT'ed return path to
  follow the new link), the largest forward gap (what the route move alone costs) and when
  the route moved. Gap arithmetic is ``bench_failover.outage_gap``.
- ``vpn_trial``: the same blackhole with a VPN-like flow instead, one fixed 5-tuple
  (UDP 51820 <-> 51820): do its echoes come back within ``recover_within`` s of the move?
- ``noise_run``: minutes of 1 % loss each way on fibre-a with one far target dead; every move
  of the route away from fibre-a is a false failover.
- ``voice_run``: fibre-a turns voice-bad (5 % loss each way, delay with 30 ms jitter) and
  stays so; did the peer move away and stay, ignore it, or go back and forth?

Every wait is bounded, every lab and peer is torn down in ``finally``/``with`` (also when
the run is aborted), and nothing here touches the route: only the peer does.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.bench_failover import STREAM_INTERVAL, outage_gap
from tests.bench.peers.base import BACKUP, PRIMARY, Peer, PeerKind, RouteWatch, pause
from tests.lab.stream import Stream, StreamResult
from tests.lab.topology import INET_TARGETS, Lab

__all__ = [
    "DEAD_TARGET",
    "NOISE_LOSS",
    "VOICE_DELAY_MS",
    "VOICE_JITTER_MS",
    "VOICE_LOSS",
    "VPN_PORT",
    "GapTrial",
    "NoiseRun",
    "VoiceRun",
    "VpnTrial",
    "as_dict",
    "classify_voice",
    "gap_trial",
    "moves_between",
    "noise_run",
    "time_away",
    "voice_run",
    "vpn_trial",
]

SETTLE = 1.0  # seconds of stream before the fault
AFTER = 2.0  # seconds of stream after the route moved (or the wait for it ended)
VPN_PORT = 51820
VPN_INTERVAL = 0.02  # a busy tunnel: 50 packets a second each way
NOISE_LOSS = 0.01  # each way
NOISE_SETTLE = 5.0
DEAD_TARGET = str(INET_TARGETS[0])  # the one target the single-target peers ping
VOICE_LOSS = 0.05  # each way
VOICE_DELAY_MS = 20.0
VOICE_JITTER_MS = 30.0
VOICE_SETTLE = 5.0
VOICE_LEAVE_WITHIN = 10.0  # "moved": left within this and stayed away

FAULTS: dict[str, Callable[[Lab], None]] = {
    "blackhole": lambda lab: lab.faults.blackhole(PRIMARY),
    "carrier": lambda lab: lab.faults.carrier(PRIMARY, False),
}


# --- results -------------------------------------------------------------------------------


@dataclass
class GapTrial:
    fault: str
    trial: int
    moved_after: float | None = None  # fault -> route on fibre-b (None: it never moved)
    gap: float | None = None  # largest gap in the echoes back at the LAN host
    recovered: bool = False  # echoes flowed again before the stream ended
    forward_gap: float | None = None  # largest gap at the sink
    forward_recovered: bool = False
    lost: int | None = None  # forward packets lost in that gap
    error: str | None = None
    peer_log: str | None = None


@dataclass
class VpnTrial:
    trial: int
    moved_after: float | None = None
    recovered: bool = False  # echoes of the fixed-port flow back within recover_within
    recovered_after_move: float | None = None  # route moved -> first echo again
    error: str | None = None
    peer_log: str | None = None


@dataclass
class NoiseRun:
    minutes: float
    dead_target: str
    failovers: int = 0  # moves of the route away from fibre-a
    seconds_away: float = 0.0  # time the route was not on fibre-a
    moves: list[tuple[float, str | None]] = field(default_factory=list)  # (s since fault, link)
    error: str | None = None
    peer_log: str | None = None


@dataclass
class VoiceRun:
    seconds: float
    verdict: str = "-"  # moved | moved late | ignored | flapping | -
    left_after: float | None = None  # fault -> first move away from fibre-a
    moves: list[tuple[float, str | None]] = field(default_factory=list)
    error: str | None = None
    peer_log: str | None = None


# --- the common frame ----------------------------------------------------------------------


class _Running:
    """A fresh lab, the route watch, the peer started and on fibre-a; all torn down on exit,
    the peer's log kept when the caller asks for it."""

    def __init__(self, kind: PeerKind, workdir: Path) -> None:
        self.kind = kind
        self.workdir = workdir
        self.lab = Lab()
        self.watch: RouteWatch | None = None
        self.peer: Peer | None = None
        self.on_primary_at: float | None = None

    def __enter__(self) -> _Running:
        try:
            self.lab.build()
            self.watch = RouteWatch(self.lab)
            self.watch.start()
            self.peer = self.kind.make()
            self.peer.start(self.lab, self.workdir)
            self.on_primary_at = self.watch.wait_for(PRIMARY, self.kind.start_bound)
            if self.on_primary_at is None:
                raise RuntimeError(f"{self.kind.name} did not put the route on {PRIMARY} "
                                   f"within {self.kind.start_bound:g} s (route: "
                                   f"{self.watch.current})")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            if self.peer is not None:
                self.peer.stop()
            if self.watch is not None:
                self.watch.stop()
        finally:
            self.lab.destroy()

    def log_tail(self) -> str:
        return self.peer.log_tail() if self.peer is not None else ""


History = list[tuple[float, str | None]]


def moves_between(history: Sequence[tuple[float, str | None]], start: float,
                  end: float) -> History:
    """The route's changes within (start, end], timed in seconds since ``start``."""
    return [(round(t - start, 3), link) for t, link in history if start < t <= end]


def time_away(history: Sequence[tuple[float, str | None]], start: float,
              end: float) -> tuple[int, float]:
    """(moves away from fibre-a, seconds not on fibre-a) within [start, end]."""
    state = next((v for t, v in reversed(history) if t <= start), None)
    away_since = None if state == PRIMARY else start
    moves, away = 0, 0.0
    for t, link in history:
        if not start < t <= end:
            continue
        if link != PRIMARY and state == PRIMARY:
            moves += 1
            away_since = t
        elif link == PRIMARY and state != PRIMARY and away_since is not None:
            away += t - away_since
            away_since = None
        state = link
    if away_since is not None:
        away += end - away_since
    return moves, away


# --- the scenarios -------------------------------------------------------------------------


def gap_trial(kind: PeerKind, fault: str, trial: int, workdir: Path) -> GapTrial:
    """One fault on fibre-a under the two-way stream; see the module docstring."""
    out = GapTrial(fault=fault, trial=trial)
    inject = FAULTS[fault]
    with _Running(kind, workdir / f"{kind.name}-{fault}-{trial}") as run:
        assert run.watch is not None
        stream = Stream(run.lab, interval=STREAM_INTERVAL, two_way=True,
                        max_seconds=SETTLE + kind.period + kind.move_bound + AFTER + 5)
        with stream:
            pause(SETTLE + random.uniform(0.0, kind.period))
            fault_at = time.monotonic()
            inject(run.lab)
            moved = run.watch.wait_for(BACKUP, kind.move_bound, after=fault_at)
            out.moved_after = None if moved is None else moved - fault_at
            pause(AFTER)
            result = stream.stop()
        if out.moved_after is None:
            out.peer_log = run.log_tail()
    _fill(out, result, fault_at)
    return out


def _fill(out: GapTrial, result: StreamResult, fault_at: float) -> None:
    gap, ok = outage_gap(result.replies, result, fault_at)
    fwd, fwd_ok = outage_gap(result.arrivals, result, fault_at)
    out.gap = gap.seconds if gap else 0.0
    out.recovered = ok
    out.forward_gap = fwd.seconds if fwd else 0.0
    out.forward_recovered = fwd_ok
    out.lost = fwd.lost_packets if fwd else 0


def vpn_trial(kind: PeerKind, trial: int, workdir: Path, *,
              recover_within: float = 15.0) -> VpnTrial:
    """A blackhole under a fixed-port two-way flow: back within ``recover_within`` s of the
    route's move? (A tunnel keeps its 5-tuple, so a stale SNAT entry is never replaced.)"""
    out = VpnTrial(trial=trial)
    with _Running(kind, workdir / f"{kind.name}-vpn-{trial}") as run:
        assert run.watch is not None
        stream = Stream(run.lab, interval=VPN_INTERVAL, two_way=True, port=VPN_PORT,
                        source_port=VPN_PORT,
                        max_seconds=SETTLE + kind.period + kind.move_bound
                        + recover_within + 5)
        with stream:
            pause(SETTLE + random.uniform(0.0, kind.period))
            fault_at = time.monotonic()
            FAULTS["blackhole"](run.lab)
            moved = run.watch.wait_for(BACKUP, kind.move_bound, after=fault_at)
            if moved is not None:
                out.moved_after = moved - fault_at
                pause(max(0.0, moved + recover_within - time.monotonic()))
            result = stream.stop()
        if moved is None:  # a result, not an error: the row says "route never moved"
            out.peer_log = run.log_tail()
            return out
    back = sorted(t for t, _ in result.replies if t > moved)
    # Echoes already in flight at the move are not a recovery: need a steady trickle, the
    # last of at least 10 echoes after the move within the window.
    if len(back) >= 10 and back[9] <= moved + recover_within:
        out.recovered = True
        out.recovered_after_move = max(0.0, back[0] - moved)
    return out


def noise_run(kind: PeerKind, minutes: float, workdir: Path, *,
              dead_target: str | None = None) -> NoiseRun:
    """``minutes`` of 1 % loss each way on fibre-a with one far target silent."""
    with _Running(kind, workdir / f"{kind.name}-noise") as run:
        assert run.watch is not None
        dead = dead_target or DEAD_TARGET
        out = NoiseRun(minutes=minutes, dead_target=dead)
        pause(NOISE_SETTLE)
        start = time.monotonic()
        run.lab.faults.loss_each_way(PRIMARY, NOISE_LOSS)
        run.lab.faults.silent_target(dead)
        pause(minutes * 60.0)
        end = time.monotonic()
        history = run.watch.history()
        out.failovers, out.seconds_away = time_away(history, start, end)
        out.moves = moves_between(history, start, end)
        if out.failovers:
            out.peer_log = run.log_tail()
    return out


def voice_run(kind: PeerKind, seconds: float, workdir: Path) -> VoiceRun:
    """fibre-a voice-bad for ``seconds``: moved, moved late, ignored or flapping."""
    out = VoiceRun(seconds=seconds)
    with _Running(kind, workdir / f"{kind.name}-voice") as run:
        assert run.watch is not None
        pause(VOICE_SETTLE)
        start = time.monotonic()
        run.lab.faults.loss_each_way(PRIMARY, VOICE_LOSS)
        run.lab.faults.delay(PRIMARY, VOICE_DELAY_MS, VOICE_JITTER_MS)
        pause(seconds)
        end = time.monotonic()
        out.moves = moves_between(run.watch.history(), start, end)
        out.verdict, out.left_after = classify_voice(out.moves)
        out.peer_log = run.log_tail()
    return out


def classify_voice(moves: Sequence[tuple[float, str | None]]) -> tuple[str, float | None]:
    """The verdict on a voice-bad run from the route's moves (seconds since the fault)."""
    away = [t for t, link in moves if link != PRIMARY]
    if not away:
        return "ignored", None
    returns = [t for t, link in moves if link == PRIMARY and t > away[0]]
    if returns:
        return "flapping", away[0]
    return ("moved" if away[0] <= VOICE_LEAVE_WITHIN else "moved late"), away[0]


def as_dict(obj: Any) -> dict[str, Any]:
    """A result as JSON-ready data (the result dataclasses hold JSON types only)."""
    data: dict[str, Any] = asdict(obj)
    return data
