"""What one read of a UPS says, whichever protocol read it (NUT's upsd or SNMP's UPS-MIB).

Both UPS probes return a ``UpsReading``: the controller judges power from these fields
only, so a site may mix a NUT UPS in one rack with an SNMP one in the next. A read that
failed is a reading with ``ok=False``, an ``ErrorKind`` and a human ``detail``, never an
exception: a UPS we cannot read is *unknown*, never *on mains*. Values a UPS does not
report stay None (many report no runtime, some no input voltage); the flags are NUT's
``ups.status`` words, and the SNMP probe maps the UPS-MIB onto the same words, so the
rules that read them are written once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from probes.sample import ErrorKind

__all__ = ["FLAGS", "UpsReading"]

# NUT's ups.status words (docs: "status data"); the SNMP probe uses the same ones.
FLAGS = frozenset({
    "OL",  # on line: mains power
    "OB",  # on battery
    "LB",  # low battery: the UPS says the end is near
    "HB",  # high battery
    "RB",  # replace battery
    "CHRG",  # charging
    "DISCHRG",  # discharging
    "BYPASS",  # on bypass: mains, but unprotected
    "CAL",  # calibrating
    "OFF",  # output off
    "OVER",  # overloaded
    "TRIM",  # trimming a high input voltage
    "BOOST",  # boosting a low input voltage
    "FSD",  # forced shutdown: the UPS (or upsmon) is about to cut the load
    "ALARM",
})


@dataclass(frozen=True, slots=True)
class UpsReading:
    """One read of one UPS."""

    ok: bool
    flags: frozenset[str] = field(default_factory=frozenset)  # upper case, from FLAGS
    charge: float | None = None  # battery charge, 0..1
    runtime: float | None = None  # estimated runtime left, seconds
    input_voltage: float | None = None  # volts
    load: float | None = None  # output load, 0..1 of the rated power
    error: ErrorKind | None = None  # why the read failed (ok=False)
    detail: str = ""  # the UPS's or the protocol's own words, for the operator

    @classmethod
    def failure(cls, error: ErrorKind, detail: str) -> UpsReading:
        return cls(ok=False, error=error, detail=detail)
