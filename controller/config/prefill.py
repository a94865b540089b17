"""Defaults filled into the raw data before validation: ``defaults:`` and link tables.

Done on the raw YAML data (not on models) so a bad value inherited from ``defaults:`` is
reported once, under ``defaults``, and links fall back to the built-in defaults; and so a
loaded Config holds the effective values, with no merging left to its consumers.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from controller.config.thresholds import Defaults


def prefill(data: dict[str, Any]) -> dict[str, Any]:
    """Copy of the raw data with defaults and positional tables filled into each link,
    and default thresholds into each trunk."""
    out = dict(data)
    raw_defaults = data.get("defaults", {})
    try:
        Defaults.model_validate(raw_defaults if raw_defaults is not None else {})
        defaults_ok = isinstance(raw_defaults, dict)
    except ValidationError:
        defaults_ok = False
    raw_trunks = data.get("trunks")
    if defaults_ok and isinstance(raw_trunks, list):
        assert isinstance(raw_defaults, dict)
        base_th = raw_defaults.get("thresholds") or {}
        trunks: list[Any] = []
        for raw in raw_trunks:
            if isinstance(raw, dict) and isinstance(raw.get("thresholds", {}), dict):
                trunk = dict(raw)
                trunk["thresholds"] = {**base_th, **(raw.get("thresholds") or {})}
                trunks.append(trunk)
            else:
                trunks.append(raw)
        out["trunks"] = trunks
    raw_links = data.get("links")
    if not isinstance(raw_links, list):
        return out
    links = []
    for position, raw in enumerate(raw_links, start=1):
        if not isinstance(raw, dict):
            links.append(raw)
            continue
        link = dict(raw)
        link.setdefault("table", 100 + position)
        if defaults_ok:
            assert isinstance(raw_defaults, dict)
            probes = link.get("probes")
            if isinstance(probes, dict):
                probes = dict(probes)
                for key in ("interval", "timeout"):
                    if key in raw_defaults:
                        probes.setdefault(key, raw_defaults[key])
                link["probes"] = probes
            base = raw_defaults.get("thresholds") or {}
            own = link.get("thresholds")
            if own is None:
                link["thresholds"] = dict(base)
            elif isinstance(own, dict):
                link["thresholds"] = {**base, **own}
        links.append(link)
    out["links"] = links
    return out
