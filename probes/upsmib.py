"""What an RFC 1628 UPS-MIB agent says, in NUT's words: the pure half of the SNMP UPS probe.

``probes/snmpups.py`` fetches six objects in one GET and hands their values here; this
module turns them into the ``UpsReading`` a NUT UPS would give, so the power rules are
written once. It does no I/O and imports no SNMP library, so every value an agent may send
(each enum, an object it does not implement, a value of the wrong type) is tested without a
network. The rule for doubt: a reading that does not say whether the load runs on mains or
on battery is not ok (the site's power is then *unknown*, never *mains*); the other
objects are optional, and a value outside its range is dropped with a note in ``detail``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Final

from probes.sample import ErrorKind
from probes.ups import UpsReading

__all__ = ["BATTERY_STATUS", "OBJECTS", "OUTPUT_SOURCE", "MibValue", "reading_from_mib"]

_UPS = "1.3.6.1.2.1.33.1"

# The objects one read asks for, name -> instance OID. Input and output are tables indexed
# by line: line 1 is the only line of a single-phase UPS and the first of a three-phase one.
OBJECTS: Final[Mapping[str, str]] = {
    "upsOutputSource": f"{_UPS}.4.1.0",
    "upsBatteryStatus": f"{_UPS}.2.1.0",
    "upsEstimatedMinutesRemaining": f"{_UPS}.2.3.0",
    "upsEstimatedChargeRemaining": f"{_UPS}.2.4.0",
    "upsInputVoltage": f"{_UPS}.3.3.1.3.1",
    "upsOutputPercentLoad": f"{_UPS}.4.4.1.5.1",
}

# upsOutputSource -> NUT flags. booster/reducer are mains with the voltage corrected (NUT's
# BOOST/TRIM); none means the UPS feeds nothing (OFF); other(1) says nothing and is refused.
OUTPUT_SOURCE: Final[Mapping[int, frozenset[str]]] = {
    2: frozenset({"OFF"}),  # none
    3: frozenset({"OL"}),  # normal
    4: frozenset({"OL", "BYPASS"}),  # bypass: mains, but the load is unprotected
    5: frozenset({"OB", "DISCHRG"}),  # battery
    6: frozenset({"OL", "BOOST"}),  # booster
    7: frozenset({"OL", "TRIM"}),  # reducer
}
_SOURCE_NAMES: Final = {1: "other", 2: "none", 3: "normal", 4: "bypass", 5: "battery",
                        6: "booster", 7: "reducer"}

# upsBatteryStatus -> NUT flags: low(3) and depleted(4) are both "the end is near" (LB).
BATTERY_STATUS: Final[Mapping[int, frozenset[str]]] = {
    1: frozenset(),  # unknown
    2: frozenset(),  # batteryNormal
    3: frozenset({"LB"}),  # batteryLow
    4: frozenset({"LB"}),  # batteryDepleted
}

# One object's value as the SNMP adapter hands it over: an integer; None when the agent
# does not have it (noSuchObject, noSuchInstance, endOfMibView, or left out of the reply);
# a string describing a value of the wrong type (e.g. "OctetString 'abc'").
MibValue = int | str | None


def reading_from_mib(values: Mapping[str, MibValue]) -> UpsReading:
    """The reading the six UPS-MIB values make; see the module's rule for doubt."""
    notes: list[str] = []
    source = values.get("upsOutputSource")
    battery = _ranged(values, "upsBatteryStatus", 1, 4, notes)
    minutes = _ranged(values, "upsEstimatedMinutesRemaining", 0, 2**31 - 1, notes)
    charge = _ranged(values, "upsEstimatedChargeRemaining", 0, 100, notes)
    volts = _ranged(values, "upsInputVoltage", 0, 2**31 - 1, notes)
    load = _ranged(values, "upsOutputPercentLoad", 0, 200, notes)
    flags = BATTERY_STATUS.get(battery, frozenset()) if battery is not None else frozenset()
    reading = UpsReading(
        ok=True, flags=flags,
        charge=None if charge is None else charge / 100,
        runtime=None if minutes is None else float(minutes * 60),
        input_voltage=None if volts is None else float(volts),
        load=None if load is None else load / 100,
    )
    power = OUTPUT_SOURCE.get(source) if isinstance(source, int) else None
    if power is None:
        notes.insert(0, _why_no_source(source))
        return replace(reading, ok=False, error=ErrorKind.BAD_REPLY, detail="; ".join(notes))
    return replace(reading, flags=power | flags, detail="; ".join(notes))


def _why_no_source(source: MibValue) -> str:
    if source is None:
        return "no upsOutputSource (is this a UPS-MIB agent?): mains or battery unknown"
    if isinstance(source, str):
        return f"upsOutputSource is not an integer ({source}): mains or battery unknown"
    name = _SOURCE_NAMES.get(source)
    if name is None:
        return f"upsOutputSource {source} is outside the UPS-MIB (1..7): mains or battery unknown"
    return f"upsOutputSource is {name}({source}): the UPS does not say mains or battery"


def _ranged(values: Mapping[str, MibValue], name: str, low: int, high: int,
            notes: list[str]) -> int | None:
    """The value if it is an integer in [low, high]; else None, with a note unless absent."""
    value = values.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        notes.append(f"{name} ignored: not an integer ({value})")
        return None
    if not low <= value <= high:
        notes.append(f"{name} ignored: {value} is outside {low}..{high}")
        return None
    return value
