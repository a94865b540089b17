"""PURE: probe rounds and carrier events -> health of one subject (the state machine).

One ``Health`` per watched subject (a link, a SIP trunk, a destination; the same machine
serves every component that is probed) turns what the prober saw (a ``ProbeRound``: one
RTT or a loss per target) and, for links, what netlink said (carrier up/down) into a
``HealthState`` with a reason, and reports every change as a ``Transition``. It owns the
window metrics (loss, latency, jitter, MOS), the thresholds with their hysteresis, the
hold-down before a failed subject is trusted again, and the flap damping that stretches
that hold-down for one that keeps failing. The comments say "link" where a rule was made
for links; a trunk is a subject with one target whose rounds are its OPTIONS. No I/O and
no clock: every method takes the time as an argument, so the whole state machine is
tested exhaustively and property-based without sleeping. Choosing what carries traffic is
the policies' job, not this module's.

States and what moves them (``N`` = ``down_after``, ``H`` = effective hold-down)::

    UNKNOWN --rise alive rounds--> UP or DEGRADED
    any     --N dead rounds | window loss > down_loss | carrier lost--> DOWN
    DOWN    --alive rounds for H seconds (carrier up)--> UP or DEGRADED
    UP      --window over a degraded threshold, or loss proven--> DEGRADED  (at once)
    DEGRADED --every metric under the stricter bound for hold_down--> UP
    UP/DEGRADED --no rounds for stale_rounds intervals (tick)--> UNKNOWN

Loss is judged as a call suffers it, one way, and on evidence rather than on one window's
ratio (controller.core.lossmodel). Probes measure round-trip loss; the one-way estimate
feeds the E-model and the ``degraded_loss`` threshold, and loss makes a link degraded only
once the accumulated evidence (a CUSUM over every probe of the targets that see the same
path) reaches ``loss_evidence_level`` (e^5: about 150 to 1). A lost probe is evidence
only outside a run of dead rounds (a run is an outage, the down rule's business, not a
loss rate; a lone dead round counts, as every loss of a single-target link is one) and
only if its target answers again within ``silent_rounds`` (a target that went silent on
its own is not the path losing packets), so the verdict lags that many rounds.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from controller.core.damping import Penalty, damped
from controller.core.emodel import mos_from
from controller.core.lossmodel import LossEvidence, one_way_loss

# Float sums of interval steps land a hair short (50 x 0.2 = 9.999999999999998):
# a hold-down met on the round that completes it must count as met.
_EPS = 1e-6


class HealthState(StrEnum):
    UNKNOWN = "unknown"  # just started, not enough rounds yet
    UP = "up"
    DEGRADED = "degraded"  # alive but bad for voice: used only when nothing is up
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class HealthParams:
    """Thresholds of one link; defaults aim at sub-second detection of a dead link."""

    interval: float = 0.1  # seconds between probe rounds
    window: float = 10.0  # seconds of rounds behind loss/latency/jitter/MOS
    down_after: int = 3  # consecutive failed rounds -> down
    down_loss: float = 0.5  # loss ratio over the window -> down
    rise: int = 5  # consecutive good rounds before an unknown link counts
    hold_down: float = 10.0  # seconds of stable good rounds before down -> up
    degraded_loss: float = 0.02
    degraded_latency: float = 0.15  # mean RTT, seconds
    degraded_jitter: float = 0.03  # seconds
    degraded_mos: float = 3.6
    flap_half_life: float = 60.0  # seconds for the flap penalty to halve
    flap_max_hold_down: float = 300.0  # ceiling of the damped hold-down
    # Rounds the window must hold before loss (and the MOS, which includes loss) may call a
    # link degraded or down: 1 lost probe out of 3 is noise, not 33 % loss.
    min_rounds: int = 10
    # The MOS takes loss into account only with this many lost probes on the target that
    # sets the loss figure: before that the loss estimate is noise.
    degraded_min_lost: int = 3
    # Loss evidence (lossmodel.LossEvidence): the CUSUM weighs "the line loses
    # degraded_loss one way" against "it loses loss_bad_factor times that", and loss is
    # proven when the score reaches loss_evidence_level (log-odds).
    loss_bad_factor: float = 2.0
    loss_evidence_level: float = 5.0
    # A lost probe is evidence only if its target answers within this many later rounds.
    silent_rounds: int = 5
    # Stricter bounds to leave DEGRADED (hysteresis): loss evidence <= level * this and
    # one-way loss <= degraded_loss ...
    recover_evidence_factor: float = 0.5
    # ... latency and jitter <= threshold * this ...
    recover_delay_factor: float = 0.8
    # ... and MOS >= degraded_mos + this.
    recover_mos_margin: float = 0.1
    # No round for this many intervals: the prober stalled, so an up link is unknown again.
    stale_rounds: int = 15
    codec: str = "g711"  # the codec the E-model assumes for MOS

    def __post_init__(self) -> None:
        problems = []
        if not self.interval > 0:
            problems.append(f"interval must be > 0, got {self.interval}")
        if not self.window > 0:
            problems.append(f"window must be > 0, got {self.window}")
        for label, count in (
            ("down_after", self.down_after),
            ("rise", self.rise),
            ("min_rounds", self.min_rounds),
            ("stale_rounds", self.stale_rounds),
            ("silent_rounds", self.silent_rounds),
        ):
            if count < 1:
                problems.append(f"{label} must be >= 1, got {count}")
        if not 0 <= self.down_loss <= 1:
            problems.append(f"down_loss must be a ratio 0..1, got {self.down_loss}")
        if not self.hold_down >= 0:
            problems.append(f"hold_down must be >= 0, got {self.hold_down}")
        if not self.loss_bad_factor > 1:
            problems.append(f"loss_bad_factor must be > 1, got {self.loss_bad_factor}")
        if not self.loss_evidence_level > 0:
            problems.append(f"loss_evidence_level must be > 0, got {self.loss_evidence_level}")
        if not self.flap_half_life > 0:
            problems.append(f"flap_half_life must be > 0, got {self.flap_half_life}")
        if problems:
            raise ValueError("bad health parameters: " + "; ".join(problems))

    def window_rounds(self) -> int:
        """How many rounds the window keeps (at least one)."""
        return max(1, round(self.window / self.interval))

    def loss_evidence(self) -> LossEvidence:
        """A fresh CUSUM for these thresholds. degraded_loss is kept inside the range the
        model can weigh (a threshold of 0 would make every single loss conclusive)."""
        acceptable = min(max(self.degraded_loss, 1e-4), 0.45)
        bad = min(acceptable * self.loss_bad_factor, 0.9)
        return LossEvidence(acceptable, bad, self.loss_evidence_level)


@dataclass(frozen=True, slots=True)
class ProbeRound:
    """One probe round of a link: every target probed once, answered or lost."""

    sent_at: float  # monotonic seconds
    rtts: tuple[float | None, ...]  # one per target in config order; None = lost


@dataclass(frozen=True, slots=True)
class HealthMetrics:
    loss_ratio: float
    latency: float | None  # mean RTT, seconds
    jitter: float | None  # RFC 3550-style interarrival jitter of the RTT, seconds
    mos: float | None  # E-model estimate, 1.0 .. 4.5
    rounds: int  # rounds in the window
    # Lost probes of the target that sets loss_ratio (the evidence behind the ratio).
    lost: int = 0
    span: float = 0.0  # seconds the window covers
    # One-way loss estimated from the round-trip loss of the targets that see the same
    # path (pooled over the window): what the E-model and degraded_loss judge.
    loss_one_way: float = 0.0
    # The loss CUSUM's score; loss is proven at HealthParams.loss_evidence_level.
    loss_evidence: float = 0.0


@dataclass(frozen=True, slots=True)
class Transition:
    subject: str  # the link, trunk or destination whose state moved
    old: HealthState
    new: HealthState
    at: float
    reason: str  # e.g. "fibre-a: 3 rounds lost in a row (0.6 s)"
    # How long the fault had lasted when health judged it down: the dead run's rounds, 0
    # for a lost carrier; None without a clear start (loss over the window). The journal
    # keeps it, so the SLA report's time to fail over starts at the fault.
    fault_age: float | None = None


def _pct(ratio: float) -> str:
    return f"{ratio * 100:.1f}%"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def _secs(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds >= 9.95 else f"{seconds:.1f} s"


class Health:
    """Health of one subject: feed it rounds, carrier events and ticks; read state and reason.

    ``targets`` is how many targets every round carries; ``reliability`` how many of them
    must answer for a round to count as alive. With reliability below targets, one far
    target that stops answering ICMP does not fail the link: the loss figure is taken from
    the reliability-th best target, so that dead target is simply not counted.

    Rounds must be observed in the order they were sent. The cost per round is
    O(targets log targets), independent of the window length.
    """

    def __init__(self, name: str, params: HealthParams, targets: int, reliability: int) -> None:
        if targets < 1:
            raise ValueError(f"{name}: a link needs at least one target, got {targets}")
        if not 1 <= reliability <= targets:
            raise ValueError(
                f"{name}: reliability must be between 1 and the {targets} targets, "
                f"got {reliability}"
            )
        self.name = name
        self.params = params
        self.targets = targets
        self.reliability = reliability
        self.state = HealthState.UNKNOWN
        self.since: float | None = None
        self.reason = f"{name}: no probe results yet"

        self._window: deque[ProbeRound] = deque()
        self._size = params.window_rounds()
        # Running per-target sums over the window, so a round costs O(targets).
        self._lost = [0] * targets
        self._rtt_sum = [0.0] * targets
        self._rtt_n = [0] * targets
        # RFC 3550 jitter is a running estimate, not a window sum: it needs the last RTT.
        self._jitter = [0.0] * targets
        self._jitter_n = [0] * targets
        self._last_rtt: list[float | None] = [None] * targets
        self._metrics: HealthMetrics | None = None
        self._evidence = params.loss_evidence()
        # Rounds whose losses wait for silent_rounds later rounds (are their targets alive?)
        self._lookahead: deque[tuple[ProbeRound, bool]] = deque()
        self._prev_dead = False  # the last round weighed was dead

        self._dead_run = 0
        self._dead_since: float | None = None  # first round of the current dead run
        self._alive_run = 0
        self._carrier_up = True
        self._last_round_at: float | None = None
        self._stable_since: float | None = None  # DOWN: first alive round of the good run
        self._good_since: float | None = None  # DEGRADED: first round within recovery bounds
        self._penalty = Penalty(params.flap_half_life)

    def retune(self, params: HealthParams) -> None:
        """New thresholds, same history (a config reload): the state, its reason, the runs,
        the hold-down in progress and the flap penalty stay; the window keeps its newest
        rounds up to the new length. The next round is judged by the new thresholds, so a
        reload never turns a known link unknown, and never moves a route by itself."""
        self.params = params
        self._size = params.window_rounds()
        while len(self._window) > self._size:
            self._drop_oldest()
        self._metrics = None
        self._penalty.half_life = params.flap_half_life
        score = self._evidence.score
        self._evidence = params.loss_evidence()
        self._evidence.score = score
        while len(self._lookahead) > params.silent_rounds:
            self._weigh(*self._lookahead.popleft())

    # -- inputs ---------------------------------------------------------------------------

    def observe(self, rnd: ProbeRound) -> Transition | None:
        """A probe round came back; ``rnd.sent_at`` is "now" for every time-based rule."""
        if len(rnd.rtts) != self.targets:
            raise ValueError(
                f"{self.name}: round has {len(rnd.rtts)} results, the link has "
                f"{self.targets} targets"
            )
        for rtt in rnd.rtts:
            if rtt is not None and (math.isnan(rtt) or rtt < 0):
                raise ValueError(f"{self.name}: bad RTT {rtt!r} in round at {rnd.sent_at}")
        now = rnd.sent_at
        if self._last_round_at is not None and now - self._last_round_at > self._stale_gap():
            # No evidence at all in the gap: it cannot count as stable time.
            self._stable_since = None
            self._good_since = None
        self._last_round_at = now
        answered = sum(1 for rtt in rnd.rtts if rtt is not None)
        alive = answered >= self.reliability
        if alive and self.state is HealthState.DOWN and self._stable_since is None:
            # The first answer after an outage starts a fresh window: the outage's losses
            # are why the link went down, not evidence against its recovery (else the
            # window loss would hold it down for up to a window after it came back).
            self._clear_window()
        self._push(rnd)
        self._lookahead.append((rnd, alive))
        if len(self._lookahead) > self.params.silent_rounds:
            self._weigh(*self._lookahead.popleft())
        if alive:
            self._alive_run += 1
            self._dead_run = 0
            self._dead_since = None
        else:
            self._dead_run += 1
            self._alive_run = 0
            if self._dead_since is None:
                self._dead_since = now
        return self._step(now, alive, self.metrics())

    def resume_down(self, now: float, why: str) -> Transition | None:
        """At start, a link that was down when the daemon stopped starts DOWN, so it earns
        its way back through the full hold-down instead of ``rise`` rounds (a restart must
        not shortcut a failback). Only from UNKNOWN; counts no flap."""
        if self.state is not HealthState.UNKNOWN:
            return None
        return self._move(HealthState.DOWN, now, f"{self.name}: {why}")

    def carrier(self, up: bool, now: float) -> Transition | None:
        """Netlink carrier event: lost -> DOWN at once; back -> still DOWN until hold-down.

        Carrier back proves nothing about the path behind the modem, so recovery goes
        through the same hold-down of good rounds as any other failure.
        """
        if up:
            if self._carrier_up:
                return None
            self._carrier_up = True
            self._stable_since = None
            if self.state is HealthState.DOWN:
                hold = self.effective_hold_down(now)
                self.reason = (
                    f"{self.name}: carrier back; down until {_secs(hold)} of good rounds "
                    f"(hold-down)"
                )
            return None
        if not self._carrier_up:
            return None
        self._carrier_up = False
        self._stable_since = None
        self._good_since = None
        self._alive_run = 0
        if self.state is HealthState.DOWN:
            self.reason = f"{self.name}: carrier lost"
            return None
        return self._go_down(now, "carrier lost", 0.0)

    def tick(self, now: float) -> Transition | None:
        """Time-driven transitions: a link whose rounds stopped coming is no longer known up.

        A stalled prober is not a dead link, so it does not go DOWN (that would fail over
        on our own bug); it goes UNKNOWN, which policy treats as "keep what you have".
        A DOWN link stays DOWN: without rounds nothing shows it recovered.
        """
        if self._last_round_at is None or self.state in (HealthState.UNKNOWN, HealthState.DOWN):
            return None
        gap = now - self._last_round_at
        if gap <= self._stale_gap():
            return None
        self._clear_window()
        self._alive_run = 0
        self._dead_run = 0
        self._dead_since = None
        return self._move(HealthState.UNKNOWN, now,
                          f"{self.name}: no probe results for {_secs(gap)}")

    # -- outputs --------------------------------------------------------------------------

    @property
    def carrier_up(self) -> bool:
        return self._carrier_up

    def metrics(self) -> HealthMetrics:
        """Loss, latency, jitter and MOS over the window.

        Targets are ranked by their loss in the window; the ``reliability`` best ones are
        the ones counted, and loss is the worst among them (the reliability-th lowest),
        so a target that went silent on its own does not show as link loss.
        """
        if self._metrics is not None:
            return self._metrics
        n = len(self._window)
        if n == 0:
            self._metrics = HealthMetrics(0.0, None, None, None, 0)
            return self._metrics
        lost = self._lost
        ranked = sorted(range(self.targets), key=lambda i: (lost[i], i))
        counted = ranked[: self.reliability]
        worst_lost = lost[counted[-1]]
        loss = worst_lost / n
        total = sum(self._rtt_sum[i] for i in counted)
        count = sum(self._rtt_n[i] for i in counted)
        latency = total / count if count else None
        jitters = [self._jitter[i] for i in counted if self._jitter_n[i] > 0]
        jitter = sum(jitters) / len(jitters) if jitters else None
        pool = self._pool()
        one_way = one_way_loss(sum(lost[i] for i in pool) / (n * len(pool)))
        mos = None
        if latency is not None:
            mos = mos_from(latency, jitter or 0.0, one_way, self.params.codec)
        span = self._window[-1].sent_at - self._window[0].sent_at + self.params.interval
        self._metrics = HealthMetrics(loss, latency, jitter, mos, n, worst_lost, span,
                                      one_way, self._evidence.score)
        return self._metrics

    def _pool(self) -> list[int]:
        """The targets that see the same path: the ``reliability`` best ones and every other
        whose losses in the window are within chance of theirs (three Poisson standard
        deviations). A target that went silent or drops ICMP on its own is left out, so it
        neither dilutes nor inflates the link's loss."""
        lost = self._lost
        ranked = sorted(range(self.targets), key=lambda i: (lost[i], i))
        ref = lost[ranked[self.reliability - 1]]
        bound = ref + 3.0 * math.sqrt(ref + 1.0)
        return [i for i in ranked if lost[i] <= bound]

    def _weigh(self, rnd: ProbeRound, alive: bool) -> None:
        """Add one round, ``silent_rounds`` behind, to the loss evidence."""
        later = self._lookahead
        prev_dead, self._prev_dead = self._prev_dead, not alive
        if not alive and (prev_dead or (later and not later[0][1])):
            return  # part of an outage: the down rule's evidence, not a loss rate
        lost = answered = 0
        for i in self._pool():
            if rnd.rtts[i] is not None:
                answered += 1
            elif any(r.rtts[i] is not None for r, _ in later):
                lost += 1
        self._evidence.add(lost, answered)
        self._metrics = None

    def penalty(self, now: float) -> float:
        """Flap penalty at ``now``: +1 per transition into DOWN, halving every half-life."""
        return self._penalty.at(now)

    def effective_hold_down(self, now: float) -> float:
        """Hold-down stretched by the flap penalty: plain for one failure, capped for many."""
        p = self.params
        # The ceiling never undercuts the plain hold-down, whatever the config says.
        return damped(p.hold_down, self.penalty(now) - 1.0,
                      max(p.flap_max_hold_down, p.hold_down))

    def hold_down_remaining(self, now: float) -> float:
        """Seconds of good rounds still needed before this link counts again; 0 if not held.

        For a DOWN link that is not answering yet (or has no carrier) this is the whole
        effective hold-down: the least it will take from the first good round on.
        """
        if self.state is HealthState.DOWN:
            hold = self.effective_hold_down(now)
            if not self._carrier_up or self._stable_since is None:
                return hold
            return max(0.0, hold - (now - self._stable_since))
        if self.state is HealthState.DEGRADED and self._good_since is not None:
            return max(0.0, self.params.hold_down - (now - self._good_since))
        return 0.0

    # -- the window -----------------------------------------------------------------------

    def _push(self, rnd: ProbeRound) -> None:
        self._metrics = None
        if len(self._window) >= self._size:
            self._drop_oldest()
        self._window.append(rnd)
        for i, rtt in enumerate(rnd.rtts):
            if rtt is None:
                self._lost[i] += 1
                continue
            self._rtt_n[i] += 1
            self._rtt_sum[i] += rtt
            last = self._last_rtt[i]
            if last is not None:
                self._jitter[i] += (abs(rtt - last) - self._jitter[i]) / 16.0
                self._jitter_n[i] += 1
            self._last_rtt[i] = rtt

    def _drop_oldest(self) -> None:
        old = self._window.popleft()
        for i, rtt in enumerate(old.rtts):
            if rtt is None:
                self._lost[i] -= 1
            else:
                self._rtt_n[i] -= 1
                # Reset at zero so float residue cannot build up over days.
                self._rtt_sum[i] = self._rtt_sum[i] - rtt if self._rtt_n[i] else 0.0

    def _clear_window(self) -> None:
        self._metrics = None
        self._window.clear()
        self._lookahead.clear()
        self._prev_dead = False
        self._evidence.reset()
        t = self.targets
        self._lost = [0] * t
        self._rtt_sum = [0.0] * t
        self._rtt_n = [0] * t
        self._jitter = [0.0] * t
        self._jitter_n = [0] * t
        self._last_rtt = [None] * t

    def _stale_gap(self) -> float:
        return self.params.stale_rounds * self.params.interval

    # -- judging --------------------------------------------------------------------------

    def _down_reason(self, now: float, m: HealthMetrics) -> str | None:
        p = self.params
        if self._dead_run >= p.down_after:
            assert self._dead_since is not None
            took = now - self._dead_since + p.interval
            why = f"{self._dead_run} rounds lost in a row ({_secs(took)}"
            if self.targets > 1:
                if self.reliability == 1:
                    why += f", none of {self.targets} targets answering"
                else:
                    why += f", fewer than {self.reliability} of {self.targets} targets answering"
            return why + ")"
        if m.rounds >= p.min_rounds and m.loss_ratio > p.down_loss:
            return f"loss {_pct(m.loss_ratio)} > {_pct(p.down_loss)} over {_secs(m.span)}"
        return None

    def _degraded_reason(self, m: HealthMetrics) -> str | None:
        """What makes the link bad for voice, with figures; None if nothing does."""
        p = self.params
        parts = []
        if self._evidence.proven:
            parts.append(
                f"loss {_pct(m.loss_one_way)} one way > {_pct(p.degraded_loss)} (evidence "
                f"{self._evidence.score:.1f} >= {p.loss_evidence_level:g})"
            )
        if m.latency is not None and m.latency > p.degraded_latency:
            parts.append(f"latency {_ms(m.latency)} > {_ms(p.degraded_latency)}")
        if m.jitter is not None and m.jitter > p.degraded_jitter:
            parts.append(f"jitter {_ms(m.jitter)} > {_ms(p.degraded_jitter)}")
        mos = self._judged_mos(m)
        if mos is not None and mos < p.degraded_mos:
            parts.append(f"MOS {mos:.2f} < {p.degraded_mos:.2f}")
        if not parts:
            return None
        return ", ".join(parts) + f" over {_secs(m.span)}"

    def _judged_mos(self, m: HealthMetrics) -> float | None:
        # Before min_rounds the loss figure is noise, so judge the MOS on delay alone;
        # the same goes for a loss figure that lacks the evidence of degraded_min_lost.
        if m.latency is None:
            return None
        if m.rounds >= self.params.min_rounds and m.lost >= self.params.degraded_min_lost:
            return m.mos
        return mos_from(m.latency, m.jitter or 0.0, 0.0, self.params.codec)

    def _within_recovery_bounds(self, m: HealthMetrics) -> bool:
        p = self.params
        if m.rounds < p.min_rounds:
            return False
        if self._evidence.score > p.loss_evidence_level * p.recover_evidence_factor:
            return False
        if m.loss_one_way > p.degraded_loss:
            return False
        if m.latency is not None and m.latency > p.degraded_latency * p.recover_delay_factor:
            return False
        if m.jitter is not None and m.jitter > p.degraded_jitter * p.recover_delay_factor:
            return False
        return m.mos is None or m.mos >= p.degraded_mos + p.recover_mos_margin

    def _summary(self, m: HealthMetrics) -> str:
        parts = [f"loss {_pct(m.loss_ratio)} ({_pct(m.loss_one_way)} one way)"]
        if m.latency is not None:
            parts.append(f"latency {_ms(m.latency)}")
        if m.jitter is not None:
            parts.append(f"jitter {_ms(m.jitter)}")
        if m.mos is not None:
            parts.append(f"MOS {m.mos:.2f}")
        return ", ".join(parts) + f" over {_secs(m.span)}"

    # -- the state machine ----------------------------------------------------------------

    def _step(self, now: float, alive: bool, m: HealthMetrics) -> Transition | None:
        p = self.params
        if not self._carrier_up:
            return None  # carrier() already made it DOWN; rounds cannot undo that
        why_down = self._down_reason(now, m)
        if why_down is not None:
            self._stable_since = None
            self._good_since = None
            if self.state is HealthState.DOWN:
                return None
            return self._go_down(now, why_down, self._dead_age(now))

        state = self.state
        if state is HealthState.UNKNOWN:
            if self._alive_run < p.rise:
                return None
            bad = self._degraded_reason(m)
            if bad is not None:
                return self._move(HealthState.DEGRADED, now, f"{self.name}: {bad}")
            return self._move(
                HealthState.UP,
                now,
                f"{self.name}: {self._alive_run} rounds answered in a row; {self._summary(m)}",
            )

        if state is HealthState.DOWN:
            if not alive:
                self._stable_since = None
                return None
            if self._stable_since is None:
                self._stable_since = now
            hold = self.effective_hold_down(now)
            held = now - self._stable_since
            if held + _EPS < hold:
                return None
            back = f"{self.name}: answering again for {_secs(held)} (hold-down {_secs(hold)})"
            bad = self._degraded_reason(m)
            if bad is not None:
                return self._move(HealthState.DEGRADED, now, f"{back}, but {bad}")
            return self._move(HealthState.UP, now, f"{back}; {self._summary(m)}")

        if state is HealthState.UP:
            bad = self._degraded_reason(m)
            if bad is None:
                return None
            return self._move(HealthState.DEGRADED, now, f"{self.name}: {bad}")

        # DEGRADED: back to UP only under the stricter bounds, held for the hold-down.
        if not self._within_recovery_bounds(m):
            self._good_since = None
            return None
        if self._good_since is None:
            self._good_since = now
        held = now - self._good_since
        if held + _EPS < p.hold_down:
            return None
        return self._move(
            HealthState.UP,
            now,
            f"{self.name}: quality within bounds for {_secs(held)}; {self._summary(m)}",
        )

    def _go_down(self, now: float, why: str, fault_age: float | None) -> Transition:
        # A flap is losing a link that worked; a link found dead at start never flapped,
        # and counting it would lengthen its first hold-down for no reason.
        if self.state in (HealthState.UP, HealthState.DEGRADED):
            self._penalty.add(now)
        return self._move(HealthState.DOWN, now, f"{self.name}: {why}", fault_age)

    def _dead_age(self, now: float) -> float | None:
        """The dead run's length as the reason states it; None when loss judged it."""
        if self._dead_run < self.params.down_after or self._dead_since is None:
            return None
        return now - self._dead_since + self.params.interval

    def _move(self, new: HealthState, now: float, reason: str,
              fault_age: float | None = None) -> Transition:
        t = Transition(self.name, self.state, new, now, reason, fault_age)
        self.state = new
        self.since = now
        self.reason = reason
        self._stable_since = None
        self._good_since = None
        return t
