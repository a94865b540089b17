"""The operator's overrides at runtime: set, clear, lapse, journal, and tell.

The daemon's control object hands ``set`` and ``clear`` the API's requests; each cycle it
calls ``lapse`` (expired overrides are dropped and journaled as lapsed), feeds ``forced``,
``maintenance`` and ``pins`` to the route policy and the DID plan, and after deciding asks
``tell`` for the snapshot's part, which journals every override whose "applied" changed
(not applied: the forced link is down; applied again: it is back). The rules are the
core's (controller.core.overrides); the file is the book's (controller.runtime.overridebook).
Time is wall clock (``until`` is what the operator typed), from the clock handed in.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Mapping
from typing import Any

from controller.config import Config
from controller.core import overrides as core
from controller.core.e164 import NumberRange, RangeIndex
from controller.core.health import HealthState
from controller.core.overrides import Assessment, Override, Targets
from controller.core.snapshot import OverrideSnap
from controller.runtime.journal import Journal
from controller.runtime.overridebook import OverrideBook

__all__ = ["Overrides", "targets_of"]

log = logging.getLogger("lifeline.overrides")


def targets_of(cfg: Config) -> Targets:
    """What an override may name in ``cfg``."""
    return Targets(
        groups={g.name: tuple(g.links) for g in cfg.route_groups},
        links=frozenset(link.name for link in cfg.links),
        trunks=frozenset(t.name for t in cfg.trunks),
        ranges={str(d.numbers): (tuple(d.trunks), d.dr_destination) for d in cfg.dids})


def _when(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")


class Overrides:
    """The override book plus what it means this cycle."""

    def __init__(self, cfg: Config, book: OverrideBook, journal: Journal,
                 wall: Callable[[], float]) -> None:
        self.book = book
        self.journal = journal
        self.wall = wall
        self._assessed: dict[tuple[str, str], Assessment] = {}
        self.reconfigure(cfg)
        for note in book.notes:
            journal.record("action", "overrides", note)
        if book.problem is not None:
            journal.record("error", "overrides", book.problem)

    def reconfigure(self, cfg: Config) -> None:
        """Take a (reloaded) config: the names overrides may use. One whose target left
        the config stays held, not applied, until it lapses or is cleared."""
        self.targets = targets_of(cfg)
        entries = cfg.did_entries()
        self.ranges: dict[str, NumberRange] = {str(e.numbers): e.numbers for e in entries}
        self._order = [str(e.numbers) for e in entries]
        self._index = RangeIndex(e.numbers for e in entries)

    # -- operator requests ---------------------------------------------------------------
    def set(self, kind: str, target: str, value: str | None, reason: str, by: str,
            until: float, links: Mapping[str, HealthState],
            trunks: Mapping[str, tuple[HealthState, str]] | None = None,
            destinations: Mapping[str, HealthState] | None = None,
            decided: Mapping[str, tuple[str, ...]] | None = None) -> dict[str, object]:
        """Validate and hold a new override (replacing one on the same target); KeyError
        for an unknown target, ValueError for a value or ``until`` not allowed. ``applied``
        in the answer is judged on the health known now (the next cycle acts on it)."""
        ov = core.make(kind, target, value, reason, by, until, self.wall(), self.targets)
        was = self.book.get(kind, target)
        kept = self.book.put(ov)
        verdict = core.assess(ov, self.targets, links, self.maintenance(), trunks,
                              destinations, decided)
        self._assessed[ov.key] = verdict
        what = (f"override {'replaced' if was is not None else 'set'}: {ov.describe()} by "
                f"{ov.by} until {_when(ov.until)}: {ov.reason}")
        if not verdict.applied:
            what += f" (not applied: {verdict.why_not})"
        log.warning("%s", what)
        self.journal.record("action", "overrides", what, **self._data(ov))
        return self._answer(ov, verdict) | {"kept_on_disk": kept}

    def clear(self, kind: str, target: str, by: str, reason: str) -> dict[str, object]:
        """Lift the override on ``target``; KeyError for a target the config does not
        hold (an override held on one that left the config can still be cleared)."""
        if self.book.get(kind, target) is None:
            core.check_target(kind, target, self.targets)
        ov = self.book.remove(kind, target)
        self._assessed.pop((kind, target), None)
        if ov is not None:
            why = " ".join(reason.split())[:core.MAX_REASON]
            what = (f"override cleared: {ov.describe()} by {' '.join(by.split()) or 'unknown'}"
                    + (f": {why}" if why else ""))
            log.warning("%s", what)
            self.journal.record("action", "overrides", what, **self._data(ov))
        return {"kind": kind, "target": target, "cleared": ov is not None,
                "kept_on_disk": self.book.kept_on_disk}

    def resolve_did(self, number: str) -> str | None:
        """The range (as the plan names it) holding ``number``; None if none does."""
        pos = self._index.find(number.strip())
        return None if pos is None else self._order[pos]

    # -- each cycle ------------------------------------------------------------------------
    def lapse(self) -> tuple[Override, ...]:
        """Drop and journal the overrides whose expiry has come."""
        gone = self.book.lapse(self.wall())
        for ov in gone:
            self._assessed.pop(ov.key, None)
            what = f"override lapsed: {ov.describe()} (set by {ov.by}: {ov.reason})"
            log.warning("%s", what)
            self.journal.record("action", "overrides", what, **self._data(ov))
        return gone

    def seconds_to_next_lapse(self) -> float | None:
        held = self.book.all()
        if not held:
            return None
        return max(0.0, min(ov.until for ov in held) - self.wall())

    def forced(self) -> dict[str, str]:
        return core.forced_links(self.book.all())

    def maintenance(self) -> frozenset[str]:
        """Links in maintenance."""
        return core.links_in_maintenance(self.book.all())

    def pins(self) -> dict[NumberRange, str]:
        return core.pins(self.book.all(), self.ranges)

    def tell(self, links: Mapping[str, HealthState],
             trunks: Mapping[str, tuple[HealthState, str]] | None = None,
             destinations: Mapping[str, HealthState] | None = None,
             decided: Mapping[str, tuple[str, ...]] | None = None,
             ) -> tuple[OverrideSnap, ...]:
        """Every override held, with whether it applies now; a change of that is journaled
        (held but not applied, and why; applied again)."""
        out = []
        maintenance = self.maintenance()
        for ov in self.book.all():
            verdict = core.assess(ov, self.targets, links, maintenance, trunks, destinations,
                                  decided)
            was = self._assessed.get(ov.key)
            if was is not None and was != verdict:
                what = (f"override applied again: {ov.describe()}" if verdict.applied else
                        f"override not applied: {ov.describe()}: {verdict.why_not}")
                log.warning("%s", what)
                self.journal.record("action", "overrides", what, applied=verdict.applied,
                                    **self._data(ov))
            self._assessed[ov.key] = verdict
            out.append(OverrideSnap(ov.kind, ov.target, ov.value, ov.reason, ov.by, ov.since,
                                    ov.until, verdict.applied, verdict.why_not))
        return tuple(out)

    @staticmethod
    def _answer(ov: Override, verdict: Assessment) -> dict[str, object]:
        return {"kind": ov.kind, "target": ov.target, "value": ov.value,
                "reason": ov.reason, "by": ov.by, "since": ov.since, "until": ov.until,
                "applied": verdict.applied, "why_not": verdict.why_not}

    @staticmethod
    def _data(ov: Override) -> dict[str, Any]:
        return {"override": ov.kind, "target": ov.target, "value": ov.value, "by": ov.by,
                "reason": ov.reason, "since": ov.since, "until": ov.until}
