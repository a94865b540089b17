"""PURE: link health -> desired active link(s) per route group, with a human reason."""

from __future__ import annotations

from dataclasses import dataclass

from controller.health import LinkState


@dataclass(frozen=True, slots=True)
class LinkView:
    name: str
    tier: int
    state: LinkState
    weight: int = 1
    mos: float | None = None
    loss_ratio: float = 0.0


@dataclass(frozen=True, slots=True)
class GroupSpec:
    name: str
    links: tuple[str, ...]  # operator's order: the tie-break within a tier
    multipath: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    group: str
    active: tuple[str, ...]  # empty = leave the route as it is (nothing known yet)
    reason: str
    changed: bool  # active differs from the current one
