"""The site's services in the status document (``/api/v1/status`` key ``services``) and
in ``lifeline status``: a pure function of the snapshot's ServiceSnaps, and the lines the
client renders from the document it fetched."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from controller.core.services import ServiceSnap

__all__ = ["service_lines", "services_document"]


def services_document(services: Iterable[ServiceSnap]) -> list[dict[str, Any]]:
    return [
        {"name": s.name, "kind": s.kind, "target": s.target, "state": s.state.value,
         "reason": s.reason, "latency": s.latency, "code": s.code,
         "cert_days_left": None if s.cert_days_left is None else round(s.cert_days_left, 2),
         "cert_not_after": s.cert_not_after,
         "cert": None if s.cert is None else s.cert.value,
         "needed_by": list(s.needed_by),
         "hold_down_remaining": round(s.hold_down_remaining, 1),
         "last_error": s.last_error}
        for s in services
    ]


def _ms(value: Any) -> str:
    return "-" if value is None else f"{value * 1000:.1f}ms"


def service_lines(items: list[dict[str, Any]]) -> list[str]:
    """``lifeline status``'s services table: state, last answer, certificate, who needs it
    (a down service takes those destinations down: their DIDs go to DR)."""
    if not items:
        return []
    out = ["", f"{'SERVICE':<14} {'STATE':<9} {'CODE':>4} {'LATENCY':>9} {'CERT':<28} "
               f"{'NEEDED BY':<16} REASON"]
    for s in items:
        code = "-" if s.get("code") is None else str(s["code"])
        cert = "-"
        if s.get("cert_days_left") is not None:
            until = ("" if s.get("cert_not_after") is None else
                     time.strftime(" (%Y-%m-%d)", time.gmtime(s["cert_not_after"])))
            cert = f"{s['cert_days_left']:.0f}d {s.get('cert') or ''}{until}"
        needed = ",".join(s.get("needed_by") or []) or "(alerts only)"
        why = s.get("reason", "")
        if s.get("hold_down_remaining"):
            why += f" (back in {s['hold_down_remaining']:.0f}s)"
        out.append(f"{s['name']:<14} {s['state']:<9} {code:>4} {_ms(s.get('latency')):>9} "
                   f"{cert:<28} {needed:<16} {why}")
    return out
