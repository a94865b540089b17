"""The SLA report on paper: a terminal table, CSV or JSON of controller.core.sla's figures.

Rendering only: the figures come computed, times are shown in UTC (a provider's sites
span time zones), durations in the largest units that read well. The JSON document is
the stable interface (``docs/report.schema.json``); the table is for people, the CSV one
row per subject for a spreadsheet. ``parse_when`` reads the CLI's ``--since``/``--until``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from controller.core.sla import (
    BUCKETS,
    Delays,
    GroupFigures,
    Report,
    SubjectFigures,
    utc,
)

FORMATS = ("table", "csv", "json")
TABLE_CHANGES = 30  # route changes the table lists, the latest; JSON has every one

_UNITS = {"w": 7 * 86400.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
_AGO = re.compile(r"(?:\d+[wdhms])+")
_PART = re.compile(r"(\d+)([wdhms])")


def parse_when(text: str, *, now: float, relative_to: float | None = None) -> float:
    """A time from ``--since``/``--until``: ``now``; an age like ``30d``, ``12h``, ``1d12h``
    (before ``relative_to``, default ``now``); or an ISO date/time (``2026-11-01``,
    ``2026-11-01T08:00``; UTC unless it carries an offset). ValueError with a sentence."""
    body = text.strip()
    if body == "now":
        return now
    if _AGO.fullmatch(body):
        ago = sum(int(n) * _UNITS[u] for n, u in _PART.findall(body))
        return (now if relative_to is None else relative_to) - ago
    try:
        when = datetime.fromisoformat(body.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither an age (30d, 12h, 1w, 1d12h) nor a date "
                         "(2026-11-01 or 2026-11-01T08:00, UTC)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds == 0:
        return "0s"
    millis = round(seconds * 1000, 2)
    if millis < 1:
        return f"{millis:.2f}ms"
    if millis < 999.5:
        return f"{millis:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = round(seconds)
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _pct(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value * 100:.{digits}f}%"


# -- JSON ---------------------------------------------------------------------------------


def _s(seconds: float | None) -> float | None:
    """Seconds to the microsecond: a route decision follows its fault in well under a
    millisecond; finer digits are float noise."""
    return None if seconds is None else round(seconds, 6)


def _ratio(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _buckets(seconds: Mapping[str, float]) -> dict[str, float]:
    return {b: round(seconds[b], 3) for b in BUCKETS}


def _delays(d: Delays) -> dict[str, Any]:
    return {"count": d.count, "measured": d.measured, "median_s": _s(d.median),
            "max_s": _s(d.worst)}


def _subject(s: SubjectFigures) -> dict[str, Any]:
    return {
        "name": s.name,
        "availability": _ratio(s.availability),
        "seconds": _buckets(s.seconds),
        "outages": len(s.outages),
        "outages_not_seen_to_end": sum(1 for o in s.outages if o.end is None),
        "longest_outage_s": _s(s.longest_outage),
        "time_to_recover_s": _s(s.time_to_recover),
    }


def _group(g: GroupFigures) -> dict[str, Any]:
    return {"name": g.name, "failovers": _delays(Delays.of(g.of("failover"))),
            "failbacks": _delays(Delays.of(g.of("failback")))}


def to_json(r: Report) -> dict[str, Any]:
    """The report as one JSON document (schema: docs/report.schema.json)."""
    site = r.site
    return {
        "site": r.site_name,
        "period": {"since": utc(r.since), "until": utc(r.until), "seconds": r.period,
                   "since_ts": r.since, "until_ts": r.until},
        "journal": {"events": r.events,
                    "first_event": None if r.first_event is None else utc(r.first_event),
                    "pruned": r.pruned},
        "notes": list(r.notes),
        "summary": {
            "availability": _ratio(site.availability),
            "seconds": _buckets(site.seconds),
            "no_usable_link_s": _s(site.no_link_seconds),
            "dids_unroutable_s": _s(site.unroutable_seconds),
            "dids_on_dr_s": _s(site.dr_seconds),
            "failovers": _delays(r.failovers),
            "failbacks": _delays(r.failbacks),
        },
        "links": [_subject(s) for s in r.links],
        "trunks": [_subject(s) for s in r.trunks],
        "destinations": [_subject(s) for s in r.destinations],
        "groups": [_group(g) for g in r.groups],
        "route_changes": [
            {"at": utc(c.at), "at_ts": _s(c.at), "group": c.group, "from": list(c.old),
             "to": list(c.new), "kind": c.kind, "cause": c.cause, "delay_s": _s(c.delay),
             "fault_age_s": _s(c.detect), "time_s": _s(c.total),
             "reason": c.reason}
            for c in r.changes],
        "did_ranges": [{"numbers": d.numbers, "dr_s": _s(d.dr_seconds),
                        "unroutable_s": _s(d.unroutable_seconds)} for d in r.ranges],
    }


def render_json(r: Report) -> str:
    return json.dumps(to_json(r), indent=2) + "\n"


# -- CSV ----------------------------------------------------------------------------------

CSV_COLUMNS = ("section", "name", "availability", *(f"{b}_s" for b in BUCKETS), "outages",
               "longest_outage_s", "time_to_recover_s", "failovers", "failover_median_s",
               "failover_max_s", "failbacks", "failback_median_s", "failback_max_s",
               "dr_s", "unroutable_s")


def render_csv(r: Report) -> str:
    """One row per subject (site, links, trunks, destinations, groups, DID ranges with DR or
    unroutable time), then the notes as rows of section ``note``; empty cells: no figure."""
    out = io.StringIO()
    w = csv.DictWriter(out, CSV_COLUMNS, restval="", lineterminator="\n")
    w.writeheader()

    def num(v: float | None) -> str:
        return "" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)

    def delays(prefix: str, d: Delays) -> dict[str, str]:
        return {f"{prefix}s": str(d.count), f"{prefix}_median_s": num(d.median),
                f"{prefix}_max_s": num(d.worst)}

    def buckets(seconds: Mapping[str, float]) -> dict[str, str]:
        return {f"{b}_s": f"{seconds[b]:.3f}" for b in BUCKETS}

    site = r.site
    w.writerow({"section": "site", "name": r.site_name or "", "availability":
                num(site.availability), **buckets(site.seconds),
                **delays("failover", r.failovers), **delays("failback", r.failbacks),
                "dr_s": f"{site.dr_seconds:.3f}",
                "unroutable_s": f"{site.unroutable_seconds:.3f}"})
    for section, subjects in (("link", r.links), ("trunk", r.trunks),
                              ("destination", r.destinations)):
        for s in subjects:
            w.writerow({"section": section, "name": s.name, "availability":
                        num(s.availability), **buckets(s.seconds), "outages": len(s.outages),
                        "longest_outage_s": num(s.longest_outage),
                        "time_to_recover_s": num(s.time_to_recover)})
    for g in r.groups:
        w.writerow({"section": "group", "name": g.name,
                    **delays("failover", Delays.of(g.of("failover"))),
                    **delays("failback", Delays.of(g.of("failback")))})
    for d in r.ranges:
        w.writerow({"section": "did_range", "name": d.numbers, "dr_s": f"{d.dr_seconds:.3f}",
                    "unroutable_s": f"{d.unroutable_seconds:.3f}"})
    for note in r.notes:
        w.writerow({"section": "note", "name": note})
    return out.getvalue()


# -- the terminal table -------------------------------------------------------------------


def _table(head: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]
    fmt = [f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths)]
    return ["  ".join(f.format(x) for f, x in zip(fmt, row, strict=True)).rstrip()
            for row in (head, *rows)]


def _subjects(title: str, subjects: tuple[SubjectFigures, ...], period: float) -> list[str]:
    if not subjects:
        return []
    head = (title, "AVAIL", "UP", "DEGR", "DOWN", "UNKNOWN", "UNMON", "OUTAGES", "LONGEST",
            "MTTR")
    rows = [(s.name, _pct(s.availability, 3),
             *(_pct(s.seconds[b] / period) for b in BUCKETS),
             str(len(s.outages)) + ("*" if any(o.end is None for o in s.outages) else ""),
             duration(s.longest_outage), duration(s.time_to_recover)) for s in subjects]
    return ["", *_table(head, rows)]


def _delay_line(what: str, d: Delays, label: str) -> str:
    if not d.count:
        return f"{what:<11} 0"
    measured = "" if d.measured == d.count else f", {d.count - d.measured} not measured"
    return (f"{what:<11} {d.count} ({label}: median {duration(d.median)}, worst "
            f"{duration(d.worst)}{measured})")


def render_table(r: Report) -> str:
    site = r.site
    period = r.period
    lines = [f"lifeline SLA report{' for site ' + r.site_name if r.site_name else ''}",
             f"period     {utc(r.since)} .. {utc(r.until)} ({duration(period)})",
             f"journal    {r.events} events"
             + (f", the oldest at {utc(r.first_event)}" if r.first_event is not None else "")
             + (" (older ones pruned)" if r.pruned else ""),
             "",
             f"site       availability {_pct(site.availability, 3)} of the monitored time",
             "           " + ", ".join(f"{b} {_pct(site.seconds[b] / period)}"
                                      for b in BUCKETS),
             f"           no usable link {duration(site.no_link_seconds)}, DIDs unroutable "
             f"{duration(site.unroutable_seconds)}, DIDs on DR {duration(site.dr_seconds)}",
             _delay_line("failovers", r.failovers, "fault -> route changed"),
             _delay_line("failbacks", r.failbacks, "link back -> traffic back")]
    lines += _subjects("LINK", r.links, period)
    lines += _subjects("TRUNK", r.trunks, period)
    lines += _subjects("DESTINATION", r.destinations, period)
    if r.groups:
        rows = []
        for g in r.groups:
            fo, fb = Delays.of(g.of("failover")), Delays.of(g.of("failback"))
            rows.append((g.name, str(fo.count), duration(fo.median), duration(fo.worst),
                         str(fb.count), duration(fb.median), duration(fb.worst)))
        lines += ["", *_table(("GROUP", "FAILOVERS", "TTF MEDIAN", "TTF MAX", "FAILBACKS",
                               "TTR MEDIAN", "TTR MAX"), rows)]
    if r.changes:
        shown = r.changes[-TABLE_CHANGES:]
        lines += ["", "ROUTE CHANGES" + (f" (the last {len(shown)} of {len(r.changes)}; all "
                                         "in --format json)" if len(shown) < len(r.changes)
                                         else "")]
        for c in shown:
            cause = f"{c.cause} " if c.cause else ""
            parts = ("" if c.detect is None else
                     f" (fault {duration(c.detect)} + route {duration(c.delay)})")
            lines.append(f"  {utc(c.at)}  {c.group}: {','.join(c.old)} -> {','.join(c.new)}"
                         f"  {c.kind}, {cause}{duration(c.total)}{parts}  ({c.reason})")
    if r.ranges:
        lines += ["", *_table(("DID RANGE", "ON DR", "UNROUTABLE"),
                              [(d.numbers, duration(d.dr_seconds),
                                duration(d.unroutable_seconds)) for d in r.ranges])]
    if any(o.end is None for s in (*r.links, *r.trunks, *r.destinations) for o in s.outages):
        lines += ["", "* an outage not seen to end (still down, or lifeline stopped meanwhile)"]
    if r.notes:
        lines += ["", "NOTES", *(f"  - {n}" for n in r.notes)]
    return "\n".join(lines) + "\n"


def render(r: Report, fmt: str) -> str:
    """The report in one of FORMATS (the CLI's --format); ValueError for any other, so a
    caller's typo is not answered with a table it did not ask for."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
    if fmt == "json":
        return render_json(r)
    if fmt == "csv":
        return render_csv(r)
    return render_table(r)
