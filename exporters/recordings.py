"""What the status document, ``lifeline status`` and ``/metrics`` say of the call recordings,
read off ``Snapshot.recordings`` (None: no ``recordings:`` section, and nothing is served).

Names of recordings go to the status document only (bounded by the snapshot), never into
a metric label: the series carry counts, labelled by ``source``/``backup`` (config names),
``check``, ``severity`` and ``array`` (md device names), all bounded. JSON cannot carry
an infinity, so figures that may be +Inf (no recent writes: no days-left figure; a backup
holding nothing: no newest age) are null in the document and +Inf only in ``/metrics``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

from controller.core.recordings import Check, Severity
from controller.core.recsnap import FindingSnap, RecordingsSnap, RecSourceSnap
from controller.core.snapshot import Labels, Snapshot

Series = Iterable[tuple[Labels, float]]

SEVERITIES = tuple(s.value for s in Severity)  # ok, ticket, page
PROBLEM_SEVERITIES = (Severity.TICKET.value, Severity.PAGE.value)
CHECKS = tuple(c.value for c in Check)
# A backup's count checks, in the order the page and the text show them.
COUNTS = (("missing", Check.MISSING.value), ("mismatched", Check.MISMATCHED.value),
          ("corrupt", Check.CORRUPT.value), ("dropped_early", Check.GONE.value))


def _finite(value: float | None, digits: int | None = None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return value if digits is None else round(value, digits)


# Checks whose value counts the recordings (or entries) its names list.
_NAMED = frozenset({*(check for _, check in COUNTS), Check.LOST.value, Check.UNREADABLE.value})


def _finding(f: FindingSnap) -> dict[str, Any]:
    left_off = max(0, int(f.value) - len(f.names)) if f.check in _NAMED and f.names else 0
    return {"check": f.check, "subject": f.subject, "severity": f.severity,
            "value": _finite(f.value, 6), "reason": f.reason, "names": list(f.names),
            "names_left_off": left_off}


def _source(r: RecordingsSnap, src: RecSourceSnap, taken_at: float) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": src.name, "kind": src.kind, "where": src.where, "must_hold": src.must_hold,
        "available": src.available, "why_unavailable": src.why_unavailable,
        "files": src.files, "bytes": src.bytes, "newest_mtime": src.newest_mtime,
        "newest_age": (None if src.newest_mtime is None
                       else round(max(0.0, taken_at - src.newest_mtime), 1)),
        "oldest_mtime": src.oldest_mtime, "last_run": src.last_run,
        "scanned_at": src.scanned_at, "scan_seconds": _finite(src.scan_seconds, 3),
        "scan_full": src.scan_full, "problems": src.problems,
    }
    if not src.is_store:
        fresh = r.finding(Check.FRESHNESS.value, src.name)
        doc["verified"] = src.verified
        doc["freshness"] = None if fresh is None else fresh.severity
        for key, check in COUNTS:
            f = r.finding(check, src.name)
            doc[key] = None if f is None else int(f.value)
    return doc


def recordings_document(s: Snapshot) -> dict[str, Any] | None:
    """The status document's ``recordings`` key: every finding (names included, bounded),
    each source's figures, the disk and the verifier."""
    r = s.recordings
    if r is None:
        return None
    problems = r.problems
    disk = r.disk
    v = r.verifier
    return {
        "judged_at": r.judged_at, "cycle_seconds": _finite(r.cycle_seconds, 3),
        "worst": ("page" if any(f.severity == "page" for f in problems)
                  else "ticket" if problems else "ok"),
        "pages": sum(f.severity == "page" for f in problems),
        "tickets": sum(f.severity == "ticket" for f in problems),
        "sources": [_source(r, src, s.taken_at) for src in r.sources],
        "disk": None if disk is None else {
            "avail_bytes": disk.avail_bytes, "total_bytes": disk.total_bytes,
            "free_bytes": disk.free_bytes, "days_left": _finite(disk.days_left, 2),
            "write_bytes_per_day": _finite(disk.write_bytes_per_day, 0),
            "raid": [{"name": a.name, "active": a.active, "degraded": a.degraded,
                      "failed_devices": list(a.failed_devices), "detail": a.detail}
                     for a in disk.raid]},
        "verifier": None if v is None else {
            "verify_days": v.verify_days, "files_per_cycle": v.files_per_cycle,
            "read_bytes_per_s": round(v.read_bytes_per_s, 1),
            "verified_total": v.verified_total,
            "period_coverage": round(v.period_coverage, 4)},
        "findings": [_finding(f) for f in r.findings],
    }


# -- lifeline status ---------------------------------------------------------------------

def _size(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            v = n / scale
            return f"{v:.1f} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{int(n)} B"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = max(0, int(seconds))
    if whole >= 2 * 86400:
        return f"{whole // 86400}d{whole % 86400 // 3600}h"
    if whole >= 3600:
        return f"{whole // 3600}h{whole % 3600 // 60}m"
    if whole >= 60:
        return f"{whole // 60}m"
    return f"{whole}s"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def recordings_lines(doc: dict[str, Any] | None) -> list[str]:
    """``lifeline status``'s block for the recordings (none when they are not watched):
    a head line, the store with its disk and RAID, one line per backup, the verifier, and
    each finding that is not ok (its reason quotes the first names; the API has them all)."""
    if not doc:
        return []
    if doc.get("judged_at") is None:
        return ["", "recordings: not checked yet"]
    verdict = ("all good" if doc["worst"] == "ok" else ", ".join(
        _plural(doc[k], w) for k, w in (("pages", "page"), ("tickets", "ticket")) if doc[k]))
    took = "" if doc.get("cycle_seconds") is None else f", took {doc['cycle_seconds']:.1f} s"
    lines = ["", f"recordings: {verdict} (checked "
                 f"{time.strftime('%H:%M:%SZ', time.gmtime(doc['judged_at']))}{took})"]
    disk = doc.get("disk")
    for src in doc.get("sources") or []:
        head = (f"  store {src['where']}" if src["name"] == "store"
                else f"  {src['name']} ({src['kind']} {src['where']})")
        if not src["available"]:
            lines.append(f"{head}: UNAVAILABLE: {src['why_unavailable'] or 'unknown'}")
            continue
        parts = [f"{src['files']} recordings ({_size(src['bytes'])})"]
        if src["name"] == "store":
            if disk:
                days = disk.get("days_left")
                parts.append(f"disk {_size(disk.get('avail_bytes'))} free of "
                             f"{_size(disk.get('total_bytes'))}"
                             + ("" if days is None else f", {days:.1f} days left"))
                for a in disk.get("raid") or []:
                    state = ("inactive" if not a["active"] else "DEGRADED" if a["degraded"]
                             else "healthy")
                    parts.append(f"{a['name']} {state}")
        else:
            fresh = src.get("freshness")
            parts.insert(0, ("STALE " if fresh == "page" else "")
                         + f"newest {_age(src.get('newest_age'))} old")
            parts.append(", ".join(f"{key.replace('_', ' ')} {src[key]}"
                                   for key, _ in COUNTS if src.get(key) is not None))
            parts.append(f"verified {src.get('verified', 0)}")
            if not src["must_hold"]:
                parts.append("tickets only")
        if src.get("problems"):
            parts.append(f"{src['problems']} unreadable")
        lines.append(f"{head}: " + "; ".join(p for p in parts if p))
    v = doc.get("verifier")
    if v:
        lines.append(f"  verify: {v['period_coverage']:.0%} of the recordings this period "
                     f"(each once in {v['verify_days']:g} days), {v['files_per_cycle']} per "
                     f"cycle, {_size(v['read_bytes_per_s'])}/s")
    for f in doc.get("findings") or []:
        if f["severity"] != "ok":
            lines.append(f"  {f['severity'].upper()} {f['check']}: {f['reason']}")
    return lines


# -- metric series (exporters.metrics's CATALOG reads these) -------------------------------

def _sources(s: Snapshot) -> Iterable[RecSourceSnap]:
    return () if s.recordings is None else s.recordings.sources


def source_up(s: Snapshot) -> Series:
    for src in _sources(s):
        yield (src.name,), float(src.available)


def source_scanned(attr: str) -> Any:
    """A per-source figure of the index and the last scan, once the source was scanned."""
    def read(s: Snapshot) -> Series:
        for src in _sources(s):
            value = getattr(src, attr)
            if src.scanned_at is not None and value is not None:
                yield (src.name,), float(value)
    return read


def oldest_timestamp(s: Snapshot) -> Series:
    for src in _sources(s):
        if src.oldest_mtime is not None:
            yield (src.name,), src.oldest_mtime


def newest_age(s: Snapshot) -> Series:
    """Age of the newest recording each backup holds, at the snapshot's time."""
    for src in _sources(s):
        if not src.is_store and src.newest_mtime is not None:
            yield (src.name,), max(0.0, s.taken_at - src.newest_mtime)


def finding_value(check: str, *, store: bool = False) -> Any:
    """A check's number per subject (a backup's, or the store's with no label), served while
    the subject can be read: an unavailable backup is one finding, not every count."""
    def read(s: Snapshot) -> Series:
        if s.recordings is None:
            return
        for f in s.recordings.findings:
            if f.check == check and (f.subject == "store") == store:
                yield ((), f.value) if store else ((f.subject,), f.value)
    return read


def unreadable(s: Snapshot) -> Series:
    if s.recordings is not None:
        for f in s.recordings.findings:
            if f.check == Check.UNREADABLE.value:
                yield (f.subject,), f.value


def verified(s: Snapshot) -> Series:
    for src in _sources(s):
        if not src.is_store:
            yield (src.name,), float(src.verified)


def verifier_field(attr: str) -> Any:
    def read(s: Snapshot) -> Series:
        if s.recordings is not None and s.recordings.verifier is not None:
            yield (), float(getattr(s.recordings.verifier, attr))
    return read


def disk_field(attr: str, scale: float = 1.0) -> Any:
    def read(s: Snapshot) -> Series:
        disk = None if s.recordings is None else s.recordings.disk
        value = None if disk is None else getattr(disk, attr)
        if value is not None:
            yield (), float(value) * scale
    return read


def raid_degraded(s: Snapshot) -> Series:
    disk = None if s.recordings is None else s.recordings.disk
    for a in () if disk is None else disk.raid:
        yield (a.name,), float(a.degraded or not a.active)


def last_check(s: Snapshot) -> Series:
    if s.recordings is not None and s.recordings.judged_at is not None:
        yield (), s.recordings.judged_at


def findings_by_severity(s: Snapshot) -> Series:
    r = s.recordings
    if r is not None and r.judged_at is not None:
        for sev in PROBLEM_SEVERITIES:
            yield (sev,), float(sum(f.severity == sev for f in r.findings))


def check_severity(s: Snapshot) -> Series:
    """A state set per (check, subject): 1 for the finding's severity, 0 for the others, so
    an alert pages or tickets exactly as the core judged (must_hold, quiet weekends, days
    left) instead of redoing the rules in PromQL."""
    if s.recordings is not None:
        for f in s.recordings.findings:
            for sev in SEVERITIES:
                yield (f.check, f.subject, sev), float(f.severity == sev)
