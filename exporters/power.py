"""What the status document, ``lifeline status`` and ``/metrics`` say of the site's power,
read off ``Snapshot.power`` (None: no ``power:`` section, and nothing is served)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from controller.core.didplan import DR_DESTINATION_DOWN, DR_PIN, DR_SERVICE
from controller.core.power import SITE_DR_POWER
from controller.core.snapshot import Labels, Snapshot
from probes.ups import FLAGS

Series = Iterable[tuple[Labels, float]]

SITE_STATES = ("mains", "on_battery", "battery_low", "unknown")
_FLAGS = tuple(sorted(FLAGS))
# Bounded: a metric label. Each is served from the first plan on (0 until used), so an
# alert or a panel on one cause sees it start.
DR_CAUSES = (DR_DESTINATION_DOWN, DR_PIN, DR_SERVICE, SITE_DR_POWER)


def power_document(s: Snapshot) -> dict[str, Any] | None:
    """The status document's ``power`` key."""
    p = s.power
    if p is None:
        return None
    return {
        "state": p.state, "phase": p.phase, "reason": p.reason,
        "since": None if p.since is None else round(p.since, 3),
        "outage": p.outage, "dr": p.dr, "command": p.command,
        "ups": [{"name": u.name, "protocol": u.protocol, "state": u.state,
                 "reason": u.reason, "since": None if u.since is None else round(u.since, 3),
                 "flags": list(u.flags), "charge": u.charge, "runtime": u.runtime,
                 "input_voltage": u.input_voltage, "load": u.load,
                 "read_ok": u.read_ok, "read_detail": u.read_detail} for u in p.upses],
    }


def _num(value: Any, fmt: str) -> str | None:
    return None if value is None else fmt.format(value)


def _pct(ratio: float | None) -> float | None:
    return None if ratio is None else ratio * 100


def power_lines(doc: dict[str, Any] | None) -> list[str]:
    """``lifeline status``'s lines for power (none when it is not watched)."""
    if not doc:
        return []
    phase = {"normal": "", "battery": ", on battery (within the grace time)",
             "outage": ", OUTAGE", "dr": ", DR: DID ranges moved to their DR destination"
             }.get(doc["phase"], f", {doc['phase']}")
    lines = [f"power: {doc['state']}{phase}: {doc['reason']}"]
    for u in doc.get("ups") or []:
        figures = [f for f in (
            _num(_pct(u.get("charge")), "charge {:.0f}%"),
            _num(u.get("runtime"), "runtime {:.0f} s"),
            _num(u.get("input_voltage"), "input {:.0f} V"),
            _num(_pct(u.get("load")), "load {:.0f}%")) if f]
        flags = " ".join(u.get("flags") or []) or "-"
        read = "" if u.get("read_ok") in (True, None) else (
            f"; last read failed: {u.get('read_detail')}")
        lines.append(f"  ups {u['name']} ({u['protocol']}): {u['state']} [{flags}]"
                     f"{' ' + ', '.join(figures) if figures else ''} - {u['reason']}{read}")
    if doc.get("command"):
        lines.append(f"  command: {doc['command']}")
    return lines


# -- metric series (exporters.metrics's CATALOG reads these) ---------------------------------

def ups_status(s: Snapshot) -> Series:
    if s.power is not None:
        for u in s.power.upses:
            for flag in _FLAGS:
                yield (u.name, flag), float(flag in u.flags)


def ups_field(attr: str) -> Any:
    def read(s: Snapshot) -> Series:
        if s.power is not None:
            for u in s.power.upses:
                value = getattr(u, attr)
                if value is not None and u.state != "unknown":
                    yield (u.name,), float(value)
    return read


def ups_state(s: Snapshot) -> Series:
    """Each UPS's own judged state (an unknown UPS, e.g. stale, may still answer reads)."""
    if s.power is not None:
        for u in s.power.upses:
            for state in SITE_STATES:
                yield (u.name, state), float(u.state == state)


def ups_up(s: Snapshot) -> Series:
    if s.power is not None:
        for u in s.power.upses:
            yield (u.name,), float(bool(u.read_ok))


def site_power_state(s: Snapshot) -> Series:
    if s.power is not None:
        for state in SITE_STATES:
            yield (state,), float(s.power.state == state)


def power_outage(s: Snapshot) -> Series:
    if s.power is not None:
        yield (), float(s.power.outage)


def dids_on_dr_by_cause(s: Snapshot) -> Series:
    if s.plan is None:
        return
    by = dict.fromkeys(DR_CAUSES, 0)
    for d in s.plan.decisions:
        if d.on_dr:
            cause = d.dr_cause or DR_DESTINATION_DOWN
            by[cause] = by.get(cause, 0) + d.numbers.size
    for cause, n in by.items():
        yield (cause,), float(n)
