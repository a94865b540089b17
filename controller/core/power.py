"""PURE: UPS readings -> each UPS's state, the site's power, and what lifeline does about it.

Three small steps, each with its reason for the journal (docs/power.md says the same to
the operator):

1. **One UPS** (``Ups``): a good reading is judged by its NUT status words. ``FSD``, or
   ``OB`` with ``LB``, is ``battery_low``; ``OB`` is ``on_battery`` (also with ``OL``: a
   UPS that says both is trusted on the side of caution); ``OL`` is ``mains``; anything
   else (no OL nor OB: ``OFF``, an empty status) is ``unknown``. A UPS is ``unknown``
   before its first reading, after ``fail_after`` failed reads in a row (one lost read
   keeps the last verdict), when no read at all came back for ``fail_after`` read periods
   (the prober stalled), and when its readings have not changed for longer than
   ``stale_after``: "changed" means any of status, charge, runtime, input voltage or load
   differs from the previous good reading (a frozen driver repeats itself exactly; a live
   UPS's voltage or load moves). A UPS is never ``mains`` by default.
2. **The site** (``site_power``): every listed UPS feeds the agents or the network the
   calls need, so the site takes the worst known UPS: ``battery_low`` if any is low, else
   ``on_battery`` if any is, else ``mains``; ``unknown`` only when no UPS is known. An
   unknown UPS does not vote (it has its own state and alert); the runtime the policy
   weighs is the least one among the UPSes on battery.
3. **The policy** (``PowerPolicy``), a small state machine over one *battery event*,
   which starts when the site leaves mains and ends once mains has been stable for
   ``hold_down``::

       normal  --site on battery/low-->                         battery  (watch, no page)
       battery --mains back-->                                  normal   (a blip: no page)
       battery --on battery for grace-->                        outage   (page)
       battery|outage --LB/FSD, runtime < runtime_margin,
                        or on battery for dr_after-->           dr       (DIDs to DR, page)
       outage|dr --mains stable for hold_down-->                normal   (DIDs back)

   The grace and ``dr_after`` clocks run over the current stint on battery, so a UPS that
   toggles OL/OB faster than them never pages nor moves a call. While an event runs, an
   unknown site counts as still on battery (it was last seen so; only mains *seen* for
   ``hold_down`` ends an event) and it restarts a hold-down in progress. The optional
   ``on_battery_low`` command is due once per event, the first time the site is
   ``battery_low``: the core says "run it now", the runtime runs it.

No I/O and no clock: every method takes the time (monotonic seconds) as an argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import Protocol

__all__ = [
    "SITE_DR_POWER",
    "Phase",
    "PolicyParams",
    "Power",
    "PowerDecision",
    "PowerPolicy",
    "PowerState",
    "Reading",
    "SitePower",
    "Ups",
    "UpsChange",
    "UpsParams",
    "judge",
    "site_power",
]

SITE_DR_POWER = "power"  # the DID plan's dr_cause of ranges moved by power

# Float sums of interval steps land a hair short: a limit met on the step that meets it
# must count as met.
_EPS = 1e-6


class Reading(Protocol):
    """One read of a UPS as the core needs it: probes.ups.UpsReading has this shape (the
    core imports no probe; the runtime hands the probes' readings in as they are)."""

    @property
    def ok(self) -> bool: ...
    @property
    def flags(self) -> frozenset[str]: ...  # NUT's ups.status words, upper case
    @property
    def charge(self) -> float | None: ...  # 0..1
    @property
    def runtime(self) -> float | None: ...  # seconds left
    @property
    def input_voltage(self) -> float | None: ...
    @property
    def load(self) -> float | None: ...  # 0..1
    @property
    def error(self) -> Enum | None: ...  # why a read failed (probes.sample.ErrorKind)
    @property
    def detail(self) -> str: ...


class PowerState(StrEnum):
    MAINS = "mains"
    ON_BATTERY = "on_battery"
    BATTERY_LOW = "battery_low"  # LB or FSD raised: the end is near
    UNKNOWN = "unknown"


_ON_BATTERY = (PowerState.ON_BATTERY, PowerState.BATTERY_LOW)


def _secs(seconds: float) -> str:
    """``45 s``, ``4m10s``: a duration as a journal line reads it."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{seconds:.1f} s" if seconds < 9.95 else f"{whole} s"
    mins, secs = divmod(whole, 60)
    if mins < 60:
        return f"{mins}m{secs:02d}s" if secs else f"{mins}m"
    hours, mins = divmod(mins, 60)
    return f"{hours}h{mins:02d}m"


def judge(reading: Reading) -> tuple[PowerState, str]:
    """The state a good reading's status words say, and those words (for reasons)."""
    flags = reading.flags
    words = " ".join(sorted(flags)) or "empty status"
    if "FSD" in flags:
        return PowerState.BATTERY_LOW, f"forced shutdown ({words})"
    if "OB" in flags:
        if "LB" in flags:
            return PowerState.BATTERY_LOW, f"battery low ({words})"
        return PowerState.ON_BATTERY, f"on battery ({words})"
    if "OL" in flags:
        return PowerState.MAINS, f"on mains ({words})"
    return PowerState.UNKNOWN, f"{words}: neither on line (OL) nor on battery (OB)"


def _figures(reading: Reading) -> str:
    parts = []
    if reading.runtime is not None:
        parts.append(f"runtime {_secs(reading.runtime)}")
    if reading.charge is not None:
        parts.append(f"charge {reading.charge * 100:.0f}%")
    return (", " + ", ".join(parts)) if parts else ""


def _same(a: Reading, b: Reading) -> bool:
    """Whether two good readings say exactly the same (staleness: a frozen driver)."""
    return (a.flags, a.charge, a.runtime, a.input_voltage, a.load) == (
        b.flags, b.charge, b.runtime, b.input_voltage, b.load)


@dataclass(frozen=True, slots=True)
class UpsParams:
    """How one UPS is read and when its readings stop being believed."""

    interval: float = 2.0  # seconds between reads
    timeout: float = 2.0  # seconds one read may take
    stale_after: float | None = None  # no change this long: unknown; None: never stale
    fail_after: int = 3  # failed reads in a row before unknown

    def __post_init__(self) -> None:
        problems = []
        if not self.interval > 0:
            problems.append(f"interval must be > 0, got {self.interval}")
        if not self.timeout > 0:
            problems.append(f"timeout must be > 0, got {self.timeout}")
        if self.stale_after is not None and not self.stale_after > 0:
            problems.append(f"stale_after must be > 0, got {self.stale_after}")
        if self.fail_after < 1:
            problems.append(f"fail_after must be >= 1, got {self.fail_after}")
        if problems:
            raise ValueError("bad UPS parameters: " + "; ".join(problems))

    @property
    def silent_after(self) -> float:
        """No read at all (good or failed) this long: the prober stalled."""
        return self.fail_after * (self.interval + self.timeout)


@dataclass(frozen=True, slots=True)
class UpsChange:
    """One UPS's state moved (for the journal)."""

    ups: str
    old: PowerState
    new: PowerState
    at: float
    reason: str  # e.g. "ups-a: on battery (DISCHRG OB), runtime 12m, charge 80%"


class Ups:
    """State of one UPS from its readings; feed ``observe`` in time order, ``tick`` often."""

    def __init__(self, name: str, params: UpsParams) -> None:
        self.name = name
        self.params = params
        self.state = PowerState.UNKNOWN
        self.reason = f"{name}: no reading yet"
        self.since: float | None = None  # when the state began (None: from the start)
        self.reading: Reading | None = None  # the last good reading
        self._failed = 0  # failed reads in a row
        self._changed_at: float | None = None  # last good reading that differed
        self._read_at: float | None = None  # last read, good or failed

    @property
    def runtime(self) -> float | None:
        """Runtime left by the last good reading, while the UPS is known."""
        if self.state is PowerState.UNKNOWN or self.reading is None:
            return None
        return self.reading.runtime

    def observe(self, at: float, reading: Reading) -> UpsChange | None:
        self._read_at = at
        if not reading.ok:
            self._failed += 1
            if self._failed >= self.params.fail_after:
                kind = f"{reading.error.value}: " if reading.error is not None else ""
                detail = reading.detail or "read failed"
                return self._move(at, PowerState.UNKNOWN,
                                  f"{self._failed} reads failed in a row ({kind}{detail})")
            return self._stale(at)
        self._failed = 0
        if self.reading is None or not _same(self.reading, reading):
            self._changed_at = at
        self.reading = reading
        stale = self._stale(at)
        if stale is not None or self._is_stale(at):
            return stale
        state, words = judge(reading)
        return self._move(at, state, words + _figures(reading))

    def tick(self, now: float) -> UpsChange | None:
        """Time passed without a reading: staleness and a stalled prober."""
        if self._read_at is not None and self.state is not PowerState.UNKNOWN and (
                now - self._read_at >= self.params.silent_after - _EPS):
            return self._move(now, PowerState.UNKNOWN,
                              f"no read came back for {_secs(now - self._read_at)}")
        return self._stale(now)

    def _is_stale(self, now: float) -> bool:
        limit = self.params.stale_after
        return (limit is not None and self._changed_at is not None
                and now - self._changed_at > limit + _EPS)

    def _stale(self, now: float) -> UpsChange | None:
        if not self._is_stale(now):
            return None
        assert self._changed_at is not None and self.params.stale_after is not None
        return self._move(now, PowerState.UNKNOWN,
                          f"readings unchanged for {_secs(now - self._changed_at)} "
                          f"(stale after {_secs(self.params.stale_after)})")

    def _move(self, at: float, state: PowerState, why: str) -> UpsChange | None:
        old = self.state
        self.reason = f"{self.name}: {why}"
        if state is old:
            return None
        self.state, self.since = state, at
        return UpsChange(self.name, old, state, at, self.reason)


@dataclass(frozen=True, slots=True)
class SitePower:
    """The site's power from its UPSes (rule 2 of the module docstring)."""

    state: PowerState
    reason: str
    runtime: float | None = None  # least runtime among the UPSes on battery, seconds
    runtime_ups: str | None = None  # the UPS that has it


_WORST = (PowerState.BATTERY_LOW, PowerState.ON_BATTERY, PowerState.MAINS)


def site_power(upses: Iterable[Ups]) -> SitePower:
    """Worst known UPS wins; unknown only when none is known."""
    listed = list(upses)
    known = [u for u in listed if u.state is not PowerState.UNKNOWN]
    if not known:
        if not listed:
            return SitePower(PowerState.UNKNOWN, "no UPS configured")
        return SitePower(PowerState.UNKNOWN, "no UPS known: " + "; ".join(
            u.reason for u in listed))
    state = next(s for s in _WORST if any(u.state is s for u in known))
    why = "; ".join(u.reason for u in known if u.state is state)
    runtime: float | None = None
    runtime_ups: str | None = None
    for ups in known:
        if ups.state in _ON_BATTERY and ups.runtime is not None and (
                runtime is None or ups.runtime < runtime):
            runtime, runtime_ups = ups.runtime, ups.name
    unknown = [u.name for u in listed if u.state is PowerState.UNKNOWN]
    if unknown:
        why += f" ({', '.join(unknown)} unknown, not counted)"
    return SitePower(state, why, runtime, runtime_ups)


class Phase(StrEnum):
    NORMAL = "normal"  # no battery event
    BATTERY = "battery"  # on battery within the grace time: watched, no page
    OUTAGE = "outage"  # on battery past the grace time: page
    DR = "dr"  # the desks are (about to go) dark: every DID range with a DR destination to it


@dataclass(frozen=True, slots=True)
class PolicyParams:
    grace: float = 30.0  # on battery this long: page
    dr_after: float | None = None  # on battery this long: DR (sites whose desks are off UPS)
    runtime_margin: float = 300.0  # runtime left below this: DR
    hold_down: float = 300.0  # mains stable this long: the event is over, DIDs come back
    command: bool = False  # an on_battery_low command is configured

    def __post_init__(self) -> None:
        for label, value in (("grace", self.grace), ("runtime_margin", self.runtime_margin),
                             ("hold_down", self.hold_down), ("dr_after", self.dr_after)):
            if value is not None and not value >= 0:
                raise ValueError(f"bad power policy: {label} must be >= 0, got {value}")


@dataclass(frozen=True, slots=True)
class PowerDecision:
    """What the site's power asks for now, and why."""

    state: PowerState  # the site's power
    phase: Phase
    reason: str  # the step taken, or where the event stands
    since: float | None  # when the phase began (None: from the start)
    battery_since: float | None = None  # start of the current stint on battery
    mains_since: float | None = None  # mains back during an event: the hold-down's start
    run_command: bool = False  # run on_battery_low now (once per event)
    changed: bool = False  # the phase moved or the command is due: journal the reason

    @property
    def outage(self) -> bool:
        """Page-worthy: on battery past the grace time, or in DR for power."""
        return self.phase in (Phase.OUTAGE, Phase.DR)

    @property
    def dr(self) -> bool:
        return self.phase is Phase.DR

    @property
    def site_dr(self) -> str | None:
        """What controller.core.didplan.compute_plan's ``site_dr`` takes: the cause while
        in DR, else None."""
        return SITE_DR_POWER if self.dr else None


class PowerPolicy:
    """The battery-event state machine (rule 3 of the module docstring)."""

    def __init__(self, params: PolicyParams) -> None:
        self.params = params
        self.phase = Phase.NORMAL
        self.since: float | None = None
        self._battery_since: float | None = None
        self._mains_since: float | None = None
        self._command_done = False

    def step(self, now: float, site: SitePower) -> PowerDecision:
        p = self.params
        state = site.state
        run = False
        moved: str | None = None  # the reason of a step taken now
        if state is PowerState.MAINS:
            self._battery_since = None
            if self.phase is Phase.BATTERY:
                moved = self._go(now, Phase.NORMAL, "mains back within the grace time: "
                                 + site.reason)
            elif self.phase is not Phase.NORMAL:
                if self._mains_since is None:
                    self._mains_since = now
                    moved = (f"mains back, holding {self.phase.value} until stable for "
                             f"{_secs(p.hold_down)}: {site.reason}")
                if now - self._mains_since >= p.hold_down - _EPS:
                    what = "leaving DR" if self.phase is Phase.DR else "outage over"
                    moved = self._go(now, Phase.NORMAL, f"mains stable for "
                                     f"{_secs(now - self._mains_since)}: {what}")
        elif state in _ON_BATTERY or self.phase is not Phase.NORMAL:
            # On battery, or unknown during an event: the event goes on, and its battery
            # clocks keep running if the site was last seen on battery.
            if state in _ON_BATTERY and self._battery_since is None:
                self._battery_since = now
            if self._mains_since is not None:
                moved = f"hold-down restarted: site {state.value}; {site.reason}"
            self._mains_since = None
            if self.phase is Phase.NORMAL:
                moved = self._go(now, Phase.BATTERY, site.reason)
            dark = self._dark(now, site)
            if dark is not None and self.phase is not Phase.DR:
                moved = self._go(now, Phase.DR, "desks dark: " + dark)
            elif (self.phase is Phase.BATTERY and self._battery_since is not None
                  and now - self._battery_since >= p.grace - _EPS):
                moved = self._go(now, Phase.OUTAGE, f"on battery for "
                                 f"{_secs(now - self._battery_since)} (grace "
                                 f"{_secs(p.grace)}): the generator did not take over; "
                                 + site.reason)
            if state is PowerState.BATTERY_LOW and p.command and not self._command_done:
                self._command_done = run = True
                moved = (moved + "; " if moved else "") + "running on_battery_low"
        reason = moved if moved is not None else self._where(now, site)
        return PowerDecision(state, self.phase, reason, self.since, self._battery_since,
                             self._mains_since, run, moved is not None)

    def dr_due(self, now: float, site: SitePower) -> bool:
        """Whether a step now would move to DR (no state is changed): a reading that
        crosses the runtime margin leaves the UPS's state as it was, so the runtime asks
        this to decide at once, as it does for a state change."""
        return (self.phase is not Phase.DR and site.state in _ON_BATTERY
                and self._dark(now, site) is not None)

    def _dark(self, now: float, site: SitePower) -> str | None:
        p = self.params
        if site.state is PowerState.BATTERY_LOW:
            return site.reason
        if (site.state is PowerState.ON_BATTERY and site.runtime is not None
                and site.runtime < p.runtime_margin):
            return (f"{site.runtime_ups} runtime {_secs(site.runtime)} below the "
                    f"{_secs(p.runtime_margin)} margin")
        if (p.dr_after is not None and self._battery_since is not None
                and now - self._battery_since >= p.dr_after - _EPS):
            return (f"on battery for {_secs(now - self._battery_since)} (dr_after "
                    f"{_secs(p.dr_after)})")
        return None

    def _go(self, now: float, phase: Phase, why: str) -> str:
        self.phase, self.since = phase, now
        if phase is Phase.NORMAL:
            self._battery_since = self._mains_since = None
            self._command_done = False
        return why

    def _where(self, now: float, site: SitePower) -> str:
        if self.phase is Phase.NORMAL:
            return site.reason
        if self._mains_since is not None:
            return (f"{self.phase.value}: mains back for {_secs(now - self._mains_since)} "
                    f"of {_secs(self.params.hold_down)}")
        if self._battery_since is not None:
            return (f"{self.phase.value}: on battery for "
                    f"{_secs(now - self._battery_since)}; {site.reason}")
        return f"{self.phase.value}: {site.reason}"


class Power:
    """Every UPS of the site and the policy: what the runtime feeds and asks."""

    def __init__(self, upses: Mapping[str, UpsParams], policy: PolicyParams) -> None:
        self.upses = {name: Ups(name, params) for name, params in upses.items()}
        self.policy = PowerPolicy(policy)

    def observe(self, ups: str, at: float, reading: Reading) -> UpsChange | None:
        return self.upses[ups].observe(at, reading)

    def dr_due(self, now: float) -> bool:
        """The policy would move to DR at ``now`` (PowerPolicy.dr_due); changes nothing."""
        return self.policy.dr_due(now, site_power(self.upses.values()))

    def decide(self, now: float) -> tuple[list[UpsChange], PowerDecision]:
        """Tick every UPS at ``now``, then the policy: (UPS state changes, the decision)."""
        changes = [c for u in self.upses.values() if (c := u.tick(now)) is not None]
        return changes, self.policy.step(now, site_power(self.upses.values()))
