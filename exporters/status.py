"""The status API's documents, written from the snapshot: ``/api/v1/status`` (what
``lifeline status`` renders) and ``/api/v1/dids?number=`` (which trunk and destination a
number uses now, and why). Pure functions of a ``Snapshot``; nothing here reads the
runtime, so the API always agrees with ``/metrics``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from controller.core.snapshot import PeerSnap, Snapshot
from exporters.power import power_document
from exporters.recordings import recordings_document
from exporters.servicestatus import services_document


def _peer(p: PeerSnap) -> dict[str, Any]:
    return {"name": p.name, "uri": p.uri, "state": p.state.value, "reason": p.reason,
            "last_code": p.last_code, "last_rtt": p.last_rtt,
            "hold_down_remaining": p.hold_down_remaining, "registered": p.registered}


def status_document(s: Snapshot) -> dict[str, Any]:
    links = [
        {"name": k.name, "interface": k.interface, "gateway": k.gateway, "source": k.source,
         "tier": k.tier, "state": k.state.value,
         "since": None if k.since is None else round(k.since, 3), "reason": k.reason,
         "carrier": k.carrier, "loss_ratio": k.loss_ratio,
         "loss_one_way": k.loss_one_way, "loss_evidence": round(k.loss_evidence, 2),
         "latency": k.latency,
         "jitter": k.jitter, "mos": k.mos, "rounds": k.rounds,
         "hold_down_remaining": k.hold_down_remaining, "flap_penalty": k.flap_penalty}
        for k in s.links
    ]
    groups = [
        {"name": g.name, "table": g.table, "destination": g.destination,
         "active": list(g.applied), "decided": list(g.decided), "reason": g.reason,
         "since_change": None if g.since_change is None else round(g.since_change, 3)}
        for g in s.groups
    ]
    doc: dict[str, Any] = {
        "site": s.site, "version": s.version, "dry_run": s.dry_run,
        "uptime": round(s.uptime, 1), "links": links, "groups": groups,
        "failovers": int(s.total("lifeline_failovers_total")),
        "reconcile_errors": int(s.count("lifeline_reconcile_total", ("error",))),
        "problems": list(s.problems),
        "journal": asdict(s.journal),
        "config": {"path": s.config_path, "reload_error": s.reload_error},
        "overrides": [{"kind": o.kind, "target": o.target, "value": o.value,
                       "reason": o.reason, "by": o.by, "since": o.since, "until": o.until,
                       "applied": o.applied, "why_not": o.why_not} for o in s.overrides],
        "power": power_document(s),
    }
    doc["services"] = services_document(s.services)
    doc["recordings"] = recordings_document(s)  # None: no recordings section
    if not s.telephony:
        return doc
    plan = s.plan
    doc["trunks"] = [_peer(t) | {"dids": t.dids, "edge_tripped": t.edge_tripped,
                                 "maintenance": t.maintenance}
                     for t in s.trunks]
    doc["destinations"] = [_peer(d) | {"service_down": d.service_down}
                           for d in s.destinations]
    doc["dids"] = None if plan is None else {
        "ranges": len(plan.decisions), "numbers": plan.total_numbers,
        "unroutable_numbers": plan.unroutable_numbers,
        "unroutable": [str(r) for r in plan.unroutable],
        "on_dr": [{"range": str(d.numbers), "destination": d.destination,
                   "cause": d.dr_cause, "reason": d.reason}
                  for d in plan.decisions if d.on_dr],
    }
    doc["edges"] = [{"name": e.name, "error": e.error, "in_sync": e.in_sync} for e in s.edges]
    return doc


def did_document(s: Snapshot, number: str) -> dict[str, Any] | None:
    """Which trunk and destination ``number`` uses now, and why; None when no plan holds it."""
    if s.plan is None:
        return None
    decision = s.plan.lookup(number)
    if decision is None:
        return None
    return {"number": number, "range": str(decision.numbers), "trunk": decision.trunk,
            "trunk_state": None if decision.trunk_state is None
            else decision.trunk_state.value,
            "destination": decision.destination,
            "destination_uri": s.destination_uris.get(decision.destination),
            "disaster_recovery": decision.on_dr, "dr_cause": decision.dr_cause,
            "unroutable": decision.unroutable,
            "reason": decision.reason}
