"""Client side of ``lifeline status``: fetch the daemon's status over its unix socket and
render it as a table an engineer reads at a glance (the operator's writes are
exporters.operator_client)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from exporters.operator_client import Daemon, call, path_of, unix_session
from exporters.power import power_lines
from exporters.recordings import recordings_lines
from exporters.servicestatus import service_lines


async def fetch_status(socket_path: Path, timeout: float = 3.0) -> dict[str, Any]:
    async with unix_session(socket_path, timeout) as session, session.get(
            "http://lifeline/api/v1/status") as resp:
        resp.raise_for_status()
        doc: dict[str, Any] = await resp.json()
        return doc


async def request_maintenance(socket_path: Path, trunk: str, on: bool, reason: str = "",
                              timeout: float = 3.0) -> tuple[int, dict[str, Any]]:
    """PUT (on) or DELETE (off) a trunk's maintenance mark with no expiry of its own (it
    lapses after 7 days, the longest an override lasts): (HTTP status, answer). The lab
    and the tests' shorthand for what ``lifeline maintenance TRUNK`` sends."""
    code, doc = await call(Daemon(socket=socket_path), "PUT" if on else "DELETE",
                           path_of("trunks", trunk, "maintenance"),
                           {"reason": reason, "open": True} if on else None, timeout)
    return code, doc if isinstance(doc, dict) else {"answer": doc}


def _fmt(value: Any, scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value * scale:.{digits}f}{unit}"


def _overrides(items: list[dict[str, Any]]) -> list[str]:
    """The operator's overrides: what, by whom, why, until when, and whether it applies."""
    if not items:
        return []
    out = ["", f"{'OVERRIDE':<40} {'BY':<12} {'UNTIL':<17} REASON"]
    for o in items:
        what = f"{o['kind']} {o['target']}" + (f" -> {o['value']}" if o.get("value") else "")
        until = time.strftime("%Y-%m-%d %H:%M", time.gmtime(o["until"])) + "Z"
        state = "" if o.get("applied") else f"  NOT APPLIED: {o.get('why_not')}"
        out.append(f"{what:<40} {o.get('by', ''):<12} {until:<17} {o.get('reason', '')}"
                   f"{state}")
    return out


def render_status(doc: dict[str, Any]) -> str:
    lines = [f"site {doc.get('site', '?')}" + ("  (dry run: no changes made)"
                                               if doc.get("dry_run") else "")]
    lines.append("")
    lines.append(f"{'LINK':<12} {'TIER':>4} {'STATE':<9} {'LOSS':>6} {'1-WAY':>6} {'RTT':>8} "
                 f"{'JITTER':>8} {'MOS':>4} {'HOLD':>6}  REASON")
    for link in doc.get("links", []):
        lines.append(
            f"{link['name']:<12} {link['tier']:>4} {link['state']:<9} "
            f"{_fmt(link.get('loss_ratio'), 100, 1, '%'):>6} "
            f"{_fmt(link.get('loss_one_way'), 100, 1, '%'):>6} "
            f"{_fmt(link.get('latency'), 1000, 1, 'ms'):>8} "
            f"{_fmt(link.get('jitter'), 1000, 1, 'ms'):>8} "
            f"{_fmt(link.get('mos'), 1, 2):>4} "
            f"{_fmt(link.get('hold_down_remaining'), 1, 0, 's'):>6}  {link.get('reason', '')}"
        )
    lines.append("")
    lines.append(f"{'GROUP':<12} {'TABLE':>5} {'DESTINATION':<16} {'ACTIVE':<20} REASON")
    for group in doc.get("groups", []):
        active = ",".join(group.get("active", [])) or "(unchanged)"
        decided = group.get("decided")
        if decided is not None and decided != group.get("active"):
            active += f" (-> {','.join(decided) or 'none'})"
        lines.append(f"{group['name']:<12} {group['table']:>5} {group['destination']:<16} "
                     f"{active:<20} {group.get('reason', '')}")
    if doc.get("trunks"):
        lines.append("")
        lines.append(f"{'TRUNK':<18} {'STATE':<9} {'CODE':>4} {'RTT':>8} {'DIDS':>7}  REASON")
        for t in doc["trunks"]:
            code = "-" if t.get("last_code") is None else str(t["last_code"])
            why = t.get("reason", "")
            if t.get("edge_tripped"):
                why = f"fails calls at the edge: {t['edge_tripped']}"
            if t.get("maintenance") is not None:
                why = f"IN MAINTENANCE, gets no calls: {t['maintenance']}"
            lines.append(f"{t['name']:<18} {t['state']:<9} {code:>4} "
                         f"{_fmt(t.get('last_rtt'), 1000, 1, 'ms'):>8} {t.get('dids', 0):>7}  "
                         f"{why}")
    for d in doc.get("destinations", []):
        lines.append(f"destination {d['name']}: {d['state']} ({d['uri']})" + (
            f"; counted DOWN: {d['service_down']}" if d.get("service_down") else ""))
    dids = doc.get("dids")
    if dids:
        lines.append("")
        lines.append(f"DIDs: {dids['numbers']} numbers in {dids['ranges']} ranges; "
                     f"unroutable: {dids['unroutable_numbers']}"
                     + (f" ({', '.join(dids['unroutable'])})" if dids["unroutable"] else ""))
        for d in dids.get("on_dr") or []:
            lines.append(f"  on DR: {d['range']} -> {d['destination']} ({d['cause']})")
    for e in doc.get("edges", []):
        state = "in sync" if e.get("in_sync") else (e.get("error") or "not pushed yet")
        lines.append(f"edge {e['name']}: {state}")
    power = power_lines(doc.get("power"))
    if power:
        lines.append("")
        lines.extend(power)
    lines.extend(service_lines(doc.get("services") or []))
    lines.extend(recordings_lines(doc.get("recordings")))
    lines.extend(_overrides(doc.get("overrides") or []))
    problems = doc.get("problems") or []
    if problems:
        lines.append("")
        lines.extend(f"problem: {p}" for p in problems)
    config = doc.get("config") or {}
    if config.get("reload_error"):
        lines.append(f"config: the last reload was refused, the running config stays: "
                     f"{config['reload_error']}")
    journal = doc.get("journal") or {}
    if journal.get("mode") == "memory":
        lines.append(f"journal: in memory ({journal.get('problem')}); decisions are not kept "
                     "across a restart")
    if journal.get("damaged_moved_to"):
        lines.append(f"journal: an unusable journal was moved aside to "
                     f"{journal['damaged_moved_to']}")
    return "\n".join(lines)
