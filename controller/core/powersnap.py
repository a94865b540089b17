"""PURE: what the snapshot says of the site's power (controller.runtime.power builds it).

Kept apart from controller.core.snapshot so the power pieces stay in their own files;
``Snapshot.power`` is None when no ``power:`` section is configured.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class UpsSnap:
    """One UPS: its judged state and its last reading's figures."""

    name: str
    protocol: str  # nut, snmp
    state: str  # controller.core.power.PowerState value
    reason: str
    since: float | None  # seconds in this state (None: since the start)
    flags: tuple[str, ...] = ()  # the last good reading's status words, sorted
    charge: float | None = None  # 0..1
    runtime: float | None = None  # seconds
    input_voltage: float | None = None  # volts
    load: float | None = None  # 0..1
    read_ok: bool | None = None  # the last read (None: none came back yet)
    read_detail: str = ""  # why the last read failed, or the UPS's own words


@dataclass(frozen=True, slots=True)
class PowerSnap:
    """The site's power and the battery-event policy's phase."""

    state: str  # the site's PowerState value
    phase: str  # controller.core.power.Phase value
    reason: str
    since: float | None  # seconds in this phase (None: since the start)
    outage: bool  # page-worthy: past the grace time, or in DR for power
    dr: bool  # every DID range with a DR destination is moved there for power
    upses: tuple[UpsSnap, ...] = ()
    command: str | None = None  # the on_battery_low command's last outcome, if it ran
