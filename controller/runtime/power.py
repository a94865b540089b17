"""The site's UPSes, read on their own tasks and judged by controller.core.power.

One task per UPS reads it every ``interval`` (NUT: ``probes.nut.read_ups`` with the
password read from its file or variable at each read, as trunk registrations do, so a
rotated secret is picked up; SNMP: one ``probes.snmpups.SnmpUps`` per UPS, its community
or v3 keys read from their files when it is made). A read that raises or overruns its
timeout is a failed reading, never "mains". Each reading is handed to the core ``Power`` at
the daemon's clock; the daemon asks ``decide`` once per cycle, and what moved (a UPS's
state, the policy's phase) is journaled with its reason. The ``on_battery_low`` command is
run as an argv (no shell) on a task of its own, bounded by ``COMMAND_TIMEOUT``, so a slow
script never holds the cycle; its exit code and the tail of its output are journaled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from controller.config.power import PowerConfig, UpsConfig
from controller.core.power import Power, PowerDecision, Ups, UpsChange
from controller.core.powersnap import PowerSnap, UpsSnap
from controller.runtime.journal import Journal
from probes.nut import NutTls, read_ups
from probes.sample import ErrorKind
from probes.snmpups import SnmpUps, SnmpV3User
from probes.ups import UpsReading

log = logging.getLogger("lifeline.power")

COMMAND_TIMEOUT = 120.0  # seconds on_battery_low may run before it is killed
_TAIL = 400  # characters of the command's output kept for the journal
_OVERRUN = 1.0  # seconds past its timeout a read is cut off (it should end by itself)

# One read of one UPS within ``timeout`` seconds.
Reader = Callable[[float], Awaitable[UpsReading]]
ReaderFactory = Callable[[UpsConfig], "UpsReader"]


class UpsReader:
    """Reads one UPS as its config says; ``aclose`` releases what it holds."""

    def __init__(self, cfg: UpsConfig) -> None:
        self.cfg = cfg
        self._snmp: SnmpUps | None = None
        self._problem: str | None = None  # a secret that could not be read: every read fails
        if cfg.snmp is not None:
            try:
                self._snmp = _snmp_client(cfg)
            except OSError as exc:
                self._problem = f"SNMP secret: {exc.strerror or exc}: {exc.filename}"

    async def read(self, timeout: float) -> UpsReading:
        if self._problem is not None:
            return UpsReading.failure(ErrorKind.INTERNAL, self._problem)
        if self._snmp is not None:
            return await self._snmp.read(timeout=timeout)
        nut = self.cfg.nut
        assert nut is not None
        password = None
        if nut.username is not None:
            try:
                password = _nut_password(nut.password_file, nut.password_env)
            except (OSError, ValueError) as exc:
                return UpsReading.failure(ErrorKind.INTERNAL, f"NUT password: {exc}")
        tls = (None if nut.tls is None else
               NutTls(ca_file=None if nut.tls.ca_file is None else str(nut.tls.ca_file),
                      server_name=nut.tls.server_name))
        return await read_ups(nut.host, nut.port, nut.ups, timeout=timeout,
                              username=nut.username, password=password, tls=tls)

    async def aclose(self) -> None:
        if self._snmp is not None:
            await self._snmp.aclose()


def _snmp_client(cfg: UpsConfig) -> SnmpUps:
    """The SNMP client of one UPS, its community or v3 keys read from their files now (a
    reload that changes the UPS reads them again)."""
    s = cfg.snmp
    assert s is not None
    v3 = None
    if s.v3 is not None:
        v3 = SnmpV3User(s.v3.user, s.v3.auth_protocol, _secret(s.v3.auth_key_file),
                        s.v3.priv_protocol or "none",
                        None if s.v3.priv_key_file is None else _secret(s.v3.priv_key_file))
    community = None if s.community_file is None else _secret(s.community_file)
    return SnmpUps(s.host, s.port, community=community, v3=v3)


def _secret(path: os.PathLike[str]) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read().rstrip("\r\n")


def _nut_password(path: os.PathLike[str] | None, env: str | None) -> str:
    """Read at each use: a rotated password is picked up, and never logged."""
    if path is not None:
        return _secret(path)
    assert env is not None
    value = os.environ.get(env)
    if value is None:
        raise ValueError(f"environment variable {env} is not set")
    return value


@dataclass
class _Watched:
    cfg: UpsConfig
    reader: UpsReader
    task: asyncio.Task[None] | None = None
    last: UpsReading | None = None  # the last reading, good or failed
    reads: int = field(default=0)


class PowerWatch:
    """Every UPS's polling task, the core ``Power``, the journal lines and the command."""

    def __init__(self, cfg: PowerConfig, journal: Journal, now: Callable[[], float], *,
                 wake: Callable[[], None] = lambda: None,
                 reader: ReaderFactory = UpsReader, dry_run: bool = False) -> None:
        self.cfg = cfg
        self.journal = journal
        self.now = now
        self.wake = wake  # a UPS changed state or DR is due: the daemon should decide now
        self._reader = reader
        self.dry_run = dry_run  # a dry run journals the command it would run, runs nothing
        self.core = Power(cfg.ups_params(), cfg.policy())
        self.watched = {u.name: _Watched(u, reader(u)) for u in cfg.ups}
        self.decision: PowerDecision | None = None
        self.command_task: asyncio.Task[None] | None = None
        self.command_outcome: str | None = None
        self._started = False

    # -- polling -----------------------------------------------------------------------
    def start(self) -> None:
        self._started = True
        for w in self.watched.values():
            self._start(w)

    def _start(self, w: _Watched) -> None:
        w.task = asyncio.create_task(self._poll(w), name=f"ups {w.cfg.name}")

    async def _poll(self, w: _Watched) -> None:
        loop = asyncio.get_running_loop()
        interval, timeout = w.cfg.interval, w.cfg.timeout
        next_at = loop.time()
        while True:
            reading = await self._read_once(w, timeout)
            self.on_reading(w.cfg.name, reading)
            next_at += interval
            late = loop.time() - next_at
            if late > 0:  # a read overran: start afresh instead of catching up in a burst
                next_at = loop.time()
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def _read_once(self, w: _Watched, timeout: float) -> UpsReading:
        try:
            async with asyncio.timeout(timeout + _OVERRUN):
                return await w.reader.read(timeout)
        except TimeoutError:
            return UpsReading.failure(ErrorKind.TIMEOUT,
                                      f"the read did not end within {timeout:g} s")
        except Exception as exc:  # a reader's bug is a failed read, never "mains"
            return UpsReading.failure(ErrorKind.INTERNAL, f"{type(exc).__name__}: {exc}")

    def on_reading(self, name: str, reading: UpsReading) -> None:
        """One reading of UPS ``name``, at the daemon's clock (tests call this directly)."""
        w = self.watched.get(name)
        if w is None:
            return
        w.last, w.reads = reading, w.reads + 1
        now = self.now()
        change = self.core.observe(name, now, reading)
        if change is not None:
            self._journal_change(change)
        # The runtime falling below the margin changes no UPS's state but moves the DIDs:
        # decide at once, as for LB, rather than at the next cycle.
        if change is not None or self.core.dr_due(now):
            self.wake()

    def _journal_change(self, c: UpsChange) -> None:
        log.warning("UPS %s: %s -> %s: %s", c.ups, c.old.value, c.new.value, c.reason)
        self.journal.record("transition", c.ups, f"{c.old.value} -> {c.new.value}: "
                            f"{c.reason}", ups=c.ups, old=c.old.value, new=c.new.value)

    # -- deciding ----------------------------------------------------------------------
    def decide(self, now: float) -> PowerDecision:
        """Tick the core at ``now``: journal what moved, start the command when due."""
        changes, decision = self.core.decide(now)
        for change in changes:
            self._journal_change(change)
        if decision.changed:
            log.warning("power: %s (%s): %s", decision.phase.value, decision.state.value,
                        decision.reason)
            self.journal.record("decision", "power", decision.reason,
                                phase=decision.phase.value, state=decision.state.value,
                                dr=decision.dr, outage=decision.outage)
        argv = self.cfg.on_battery_low
        if decision.run_command and argv is not None and self.dry_run:
            self.command_outcome = "dry run: on_battery_low not run"
            self.journal.record("action", "power", "dry run: would run on_battery_low: "
                                + " ".join(argv), argv=list(argv))
        elif decision.run_command and argv is not None and (
                self.command_task is None or self.command_task.done()):
            self.command_task = asyncio.create_task(self._run_command(list(argv)),
                                                    name="on_battery_low")
        self.decision = decision
        return decision

    async def _run_command(self, argv: list[str]) -> None:
        shown = " ".join(argv)
        self.journal.record("action", "power", f"running on_battery_low: {shown}",
                            argv=argv)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT)
        except OSError as exc:
            self._command_done(f"on_battery_low could not start: {exc}", None, "")
            return
        try:
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT)
            except TimeoutError:
                proc.kill()
                out, _ = await proc.communicate()
                self._command_done(f"on_battery_low killed after {COMMAND_TIMEOUT:g} s",
                                   proc.returncode, _tail(out))
                return
        except asyncio.CancelledError:  # shutdown: leave no child behind
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(Exception):
                await asyncio.shield(proc.wait())
            self._command_done("on_battery_low killed: lifeline stopping", proc.returncode,
                               "")
            raise
        code = proc.returncode
        self._command_done(f"on_battery_low exited {code}", code, _tail(out))

    def _command_done(self, what: str, code: int | None, tail: str) -> None:
        self.command_outcome = what + (f": {tail}" if tail else "")
        kind = "action" if code == 0 else "error"
        (log.info if code == 0 else log.error)("%s", self.command_outcome)
        self.journal.record(kind, "power", self.command_outcome, exit_code=code,
                            output=tail)

    # -- reload and stop ---------------------------------------------------------------
    async def reconfigure(self, cfg: PowerConfig) -> list[str]:
        """Take a new ``power:`` section: a UPS removed or changed has its task stopped
        (a changed one starts afresh, unknown until read), the others keep their state."""
        changes: list[str] = []
        fresh = {u.name: u for u in cfg.ups}
        known = set(self.watched)
        for name, w in list(self.watched.items()):
            if fresh.get(name) != w.cfg:
                await self._stop(w)
                del self.watched[name]
                self.core.upses.pop(name, None)
                if name not in fresh:
                    changes.append(f"UPS {name} removed")
        params = cfg.ups_params()
        for name, ups in fresh.items():
            if name in self.watched:
                continue
            self.core.upses[name] = Ups(name, params[name])
            w = self.watched[name] = _Watched(ups, self._reader(ups))
            changes.append(f"UPS {name} " + ("changed" if name in known else "added"))
            if self._started:
                self._start(w)
        self.core.policy.params = cfg.policy()
        self.cfg = cfg
        return changes

    async def _stop(self, w: _Watched) -> None:
        if w.task is not None:
            w.task.cancel()
            await asyncio.gather(w.task, return_exceptions=True)
            w.task = None
        with contextlib.suppress(Exception):
            await w.reader.aclose()

    async def stop(self) -> None:
        for w in self.watched.values():
            await self._stop(w)
        if self.command_task is not None and not self.command_task.done():
            self.command_task.cancel()
            await asyncio.gather(self.command_task, return_exceptions=True)
        self._started = False

    # -- tell --------------------------------------------------------------------------
    def snapshot(self, now: float) -> PowerSnap:
        ups_snaps = []
        for name, ups in self.core.upses.items():
            w = self.watched.get(name)
            r = ups.reading
            last = w.last if w is not None else None
            ups_snaps.append(UpsSnap(
                name=name, protocol=w.cfg.protocol if w is not None else "?",
                state=ups.state.value, reason=ups.reason,
                since=None if ups.since is None else now - ups.since,
                flags=tuple(sorted(r.flags)) if r is not None else (),
                charge=None if r is None else r.charge,
                runtime=None if r is None else r.runtime,
                input_voltage=None if r is None else r.input_voltage,
                load=None if r is None else r.load,
                read_ok=None if last is None else last.ok,
                read_detail="" if last is None else last.detail))
        d = self.decision
        if d is None:
            return PowerSnap("unknown", "normal", "not decided yet", None, False, False,
                             tuple(ups_snaps), self.command_outcome)
        return PowerSnap(d.state.value, d.phase.value, d.reason,
                         None if d.since is None else now - d.since, d.outage, d.dr,
                         tuple(ups_snaps), self.command_outcome)


def _tail(out: bytes | None) -> str:
    text = (out or b"").decode("utf-8", "replace").strip()
    return text[-_TAIL:]

