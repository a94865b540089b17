"""The edge-plan JSON document that the generic actuators (webhook, command) send.

This module owns the wire format and nothing else: it turns an `EdgePlan` (trunk states,
DID range routes, registrations to refresh) into a versioned JSON document, either the full
plan or only what changed since a plan the receiver already holds; it serialises that
document canonically so it can be signed; it signs and verifies with HMAC-SHA256; and it
holds the reference receiver (`apply_document`) that the tests use to prove a diff carries
everything. `PlanSequencer` decides, per receiver, whether the next push is full or a diff
and numbers the pushes; `DocumentPusher` is what a receiver of the document is to the
daemon (a SIP edge, and an actuator whose observed state is what it last delivered). It is
PURE: no I/O, no clock, no asyncio; the sending lives in webhook.py and command.py. The
schema is docs/edge-plan.schema.json and the prose is docs/edge-actuators.md: a change here
changes both and bumps `DOCUMENT_VERSION`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from controller.actuators.base import Actuator, ApplyResult, StepError
from controller.actuators.sipedge.plan import DidRoute, EdgePlan, TrunkState

__all__ = [
    "DOCUMENT_KIND",
    "DOCUMENT_VERSION",
    "SIGNATURE_PREFIX",
    "DeliveryPlan",
    "DeliveryResult",
    "DocumentError",
    "DocumentPusher",
    "PlanSequencer",
    "PushResult",
    "SendPlan",
    "apply_document",
    "canonical_json",
    "is_empty_change",
    "plan_delivery",
    "plan_document",
    "sign",
    "verify",
]

DOCUMENT_KIND = "lifeline.edge-plan"
# Bumped on any change a receiver written for the old format could misread.
DOCUMENT_VERSION = 3
SIGNATURE_PREFIX = "sha256="


class DocumentError(ValueError):
    """A plan that cannot be expressed (duplicate identities) or a document that is malformed."""


@dataclass(frozen=True, slots=True)
class PushResult:
    """Outcome of one push to one receiver, as the daemon journals and counts it.

    `status` is the HTTP status of the last answer (webhook) or the exit code (command;
    negative: killed by that signal); None when no answer came at all. `attempts` is 0 when
    nothing needed sending. `permanent` says a retry of the same document cannot help
    (a 4xx, a body over the size limit, a command that cannot be started).
    """

    ok: bool
    attempts: int
    status: int | None
    error: str | None
    seconds: float
    generation: int | None = None
    full: bool | None = None
    permanent: bool = False

    def describe(self) -> str:
        """The daemon's words for it: why it failed, what was sent, or "" (nothing to send)."""
        if not self.ok:
            return self.error or f"failed (status {self.status})"
        if self.attempts == 0:
            return ""
        kind = "full plan" if self.full else "changes"
        return f"pushed {kind} (generation {self.generation}) in {self.attempts} attempt(s)"


def _trunk_obj(ranked: tuple[TrunkState, int]) -> dict[str, Any]:
    t, priority = ranked
    return {
        "name": t.name, "uri": t.uri, "group": t.group, "priority": priority,
        "enabled": t.enabled, "source": t.source,
    }


def _route_obj(r: DidRoute) -> dict[str, Any]:
    return {
        "first": r.first,
        "last": r.last,
        "trunk": r.trunk,
        "fallback": list(r.fallback),
        "destination_uri": r.destination_uri,
    }


def _trunks_by_name(trunks: Iterable[TrunkState]) -> dict[str, tuple[TrunkState, int]]:
    """Each trunk with its priority: its rank among the trunks of its group, in plan order.

    The order of `EdgePlan.trunks` is the preference inside a dispatcher set, so it is part
    of the plan; a rank per group (not a global index) keeps a trunk added to one group
    from showing every trunk of the other groups as changed.
    """
    out: dict[str, tuple[TrunkState, int]] = {}
    per_group: dict[int, int] = {}
    for t in trunks:
        if t.name in out:
            raise DocumentError(f"trunk {t.name!r} appears twice in the plan")
        rank = per_group.get(t.group, 0)
        per_group[t.group] = rank + 1
        out[t.name] = (t, rank)
    return out


def _by_preference(trunks: Mapping[str, tuple[TrunkState, int]]) -> list[str]:
    return sorted(trunks, key=lambda n: (trunks[n][0].group, trunks[n][1], n))


def _routes_by_range(routes: Iterable[DidRoute]) -> dict[tuple[str, str], DidRoute]:
    out: dict[tuple[str, str], DidRoute] = {}
    for r in routes:
        key = (r.first, r.last)
        if key in out:
            raise DocumentError(f"DID range {r.first}-{r.last} appears twice in the plan")
        out[key] = r
    return out


def _sorted_names(names: Iterable[str]) -> list[str]:
    # A set first: asking twice for the same refresh is one refresh.
    return sorted(set(names))


def plan_document(
    plan: EdgePlan,
    *,
    site: str,
    generation: int,
    previous: EdgePlan | None,
    base_generation: int | None = None,
) -> dict[str, Any]:
    """The document for `plan`: the full plan, or the change from `previous`.

    One shape serves both, so a receiver has one code path: trunks and routes each carry
    `added`, `changed` and `removed`. With `full=true` everything is in `added` and the
    receiver drops whatever it holds that is not listed; with `full=false` it applies the
    three lists to the plan of `base_generation`. `totals` are the counts of the whole plan
    after the change, so a receiver can notice that it drifted and refuse the diff (a 4xx,
    after which lifeline sends the full plan). A trunk's `priority` is its rank inside its
    group (0 is tried first); moving it in the order is a change. Lists are sorted (trunks
    by group and priority, routes by range) so equal plans give equal bytes.
    """
    if generation < 0:
        raise DocumentError(f"generation must be >= 0, not {generation}")
    trunks = _trunks_by_name(plan.trunks)
    routes = _routes_by_range(plan.routes)
    doc: dict[str, Any] = {
        "kind": DOCUMENT_KIND,
        "version": DOCUMENT_VERSION,
        "site": site,
        "generation": generation,
        "full": previous is None,
        "totals": {"trunks": len(trunks), "routes": len(routes)},
        "refresh_registrations": _sorted_names(plan.refresh_registrations),
    }
    if previous is None:
        doc["trunks"] = {
            "added": [_trunk_obj(trunks[n]) for n in _by_preference(trunks)],
            "changed": [],
            "removed": [],
        }
        doc["routes"] = {
            "added": [_route_obj(routes[k]) for k in sorted(routes)],
            "changed": [],
            "removed": [],
        }
        return doc

    old_trunks = _trunks_by_name(previous.trunks)
    old_routes = _routes_by_range(previous.routes)
    if base_generation is not None:
        if not 0 <= base_generation < generation:
            raise DocumentError(
                f"base generation {base_generation} must lie below generation {generation}"
            )
        doc["base_generation"] = base_generation
    doc["trunks"] = {
        "added": [
            _trunk_obj(trunks[n]) for n in _by_preference(trunks) if n not in old_trunks
        ],
        "changed": [
            _trunk_obj(trunks[n])
            for n in _by_preference(trunks)
            if n in old_trunks and trunks[n] != old_trunks[n]
        ],
        "removed": sorted(old_trunks.keys() - trunks.keys()),
    }
    doc["routes"] = {
        "added": [_route_obj(routes[k]) for k in sorted(routes.keys() - old_routes.keys())],
        "changed": [
            _route_obj(routes[k])
            for k in sorted(routes.keys() & old_routes.keys())
            if routes[k] != old_routes[k]
        ],
        "removed": [
            {"first": first, "last": last}
            for first, last in sorted(old_routes.keys() - routes.keys())
        ],
    }
    return doc


def is_empty_change(doc: Mapping[str, Any]) -> bool:
    """True for a diff that changes nothing and asks for no registration refresh."""
    if doc.get("full", True) or doc.get("refresh_registrations"):
        return False
    return not any(
        doc[part][op] for part in ("trunks", "routes") for op in ("added", "changed", "removed")
    )


def canonical_json(doc: Mapping[str, Any]) -> bytes:
    """The exact bytes that are signed and sent: sorted keys, no spaces, UTF-8.

    Receivers must verify the signature over the bytes they received, never over a
    re-serialisation of their own, which is why the canonical form matters only on our side:
    it makes equal documents byte-equal (and so comparable in logs and tests).
    """
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sign(body: bytes, secret: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of body>`, the X-Lifeline-Signature header value."""
    return SIGNATURE_PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: bytes, header: str | None) -> bool:
    """Whether `header` is the signature of `body` under `secret`, compared in constant time.

    Anything malformed (missing, another algorithm, not ASCII) is simply False: a receiver
    has no use for the reason, and an attacker should get none.
    """
    if header is None or not header.isascii():
        return False
    return hmac.compare_digest(sign(body, secret).encode("ascii"), header.strip().encode("ascii"))


def _trunk_from(obj: Mapping[str, Any]) -> tuple[TrunkState, int]:
    trunk = TrunkState(
        name=str(obj["name"]), uri=str(obj["uri"]), group=int(obj["group"]),
        enabled=bool(obj["enabled"]),
        source=None if obj["source"] is None else str(obj["source"]),
    )
    return trunk, int(obj["priority"])


def _route_from(obj: Mapping[str, Any]) -> DidRoute:
    trunk = obj["trunk"]
    dest = obj["destination_uri"]
    return DidRoute(
        first=str(obj["first"]), last=str(obj["last"]),
        trunk=None if trunk is None else str(trunk),
        destination_uri=None if dest is None else str(dest),
        fallback=tuple(str(n) for n in obj["fallback"]),
    )


def apply_document(held: EdgePlan | None, doc: Mapping[str, Any]) -> EdgePlan:
    """The reference receiver: the plan a receiver holds after applying `doc` to `held`.

    Written the way docs/edge-actuators.md tells receivers to work, so the tests can prove
    that a diff applied to the previous plan gives the new plan, and that a receiver can
    detect drift. Raises DocumentError on a diff it cannot apply (no plan held, removing
    or changing what it does not hold, adding what it already holds, totals that disagree).
    The result is ordered like plan_document orders it: trunks by group, then priority
    (the configured order within a carrier), routes by range.
    """
    try:
        if doc.get("kind") != DOCUMENT_KIND or doc.get("version") != DOCUMENT_VERSION:
            raise DocumentError(f"not a version {DOCUMENT_VERSION} {DOCUMENT_KIND} document")
        t_part, r_part = doc["trunks"], doc["routes"]
        if doc["full"]:
            trunks: dict[str, tuple[TrunkState, int]] = {}
            routes: dict[tuple[str, str], DidRoute] = {}
        elif held is None:
            raise DocumentError("a diff needs a held plan: ask for the full plan")
        else:
            trunks = _trunks_by_name(held.trunks)
            routes = _routes_by_range(held.routes)
        for name in t_part["removed"]:
            if trunks.pop(name, None) is None:
                raise DocumentError(f"removes trunk {name!r}, which is not held")
        for obj in t_part["changed"]:
            if obj["name"] not in trunks:
                raise DocumentError(f"changes trunk {obj['name']!r}, which is not held")
            trunks[obj["name"]] = _trunk_from(obj)
        for obj in t_part["added"]:
            if obj["name"] in trunks:
                raise DocumentError(f"adds trunk {obj['name']!r}, which is held already")
            trunks[obj["name"]] = _trunk_from(obj)
        for obj in r_part["removed"]:
            if routes.pop((obj["first"], obj["last"]), None) is None:
                raise DocumentError(f"removes range {obj['first']}-{obj['last']}, not held")
        for obj in r_part["changed"]:
            key = (obj["first"], obj["last"])
            if key not in routes:
                raise DocumentError(f"changes range {key[0]}-{key[1]}, which is not held")
            routes[key] = _route_from(obj)
        for obj in r_part["added"]:
            key = (obj["first"], obj["last"])
            if key in routes:
                raise DocumentError(f"adds range {key[0]}-{key[1]}, which is held already")
            routes[key] = _route_from(obj)
        totals = doc["totals"]
        if (totals["trunks"], totals["routes"]) != (len(trunks), len(routes)):
            raise DocumentError(
                f"after applying: {len(trunks)} trunks and {len(routes)} routes held, "
                f"the document says {totals['trunks']} and {totals['routes']}"
            )
        return EdgePlan(
            trunks=tuple(trunks[n][0] for n in _by_preference(trunks)),
            routes=tuple(routes[k] for k in sorted(routes)),
            refresh_registrations=tuple(doc["refresh_registrations"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, DocumentError):
            raise
        raise DocumentError(f"malformed document: {exc!r}") from exc


class PlanSequencer:
    """Numbers one receiver's pushes and chooses full or diff; PURE (no clock, no I/O).

    Level-triggered in spirit: until a push is acknowledged, or after any failure, the next
    document is the full plan, so a receiver that missed or refused something converges on
    the next cycle. A plan equal to the acknowledged one sends nothing. `generation` grows by
    one per document; seed `start_generation` from something that also grows across daemon
    restarts (the actuators use wall-clock microseconds) so receivers can drop stale pushes.
    """

    def __init__(self, *, site: str, start_generation: int) -> None:
        if start_generation < 1:
            raise DocumentError("start_generation must be >= 1")
        self.site = site
        self._next = start_generation
        self._acked: EdgePlan | None = None
        self._acked_generation: int | None = None

    @property
    def in_sync(self) -> bool:
        """Whether the receiver is known to hold the last acknowledged plan."""
        return self._acked is not None

    @property
    def held(self) -> EdgePlan | None:
        """The plan the receiver acknowledged last; None: not known to hold anything."""
        return self._acked

    def resync(self) -> None:
        """Forget what the receiver holds: the next document is full (receiver restarted)."""
        self._acked = None
        self._acked_generation = None

    def next_document(self, plan: EdgePlan) -> dict[str, Any] | None:
        """The document to send for `plan`, or None when the receiver already holds it."""
        if self._acked is not None and self._acked == plan:
            return None
        generation = self._next
        self._next += 1
        doc = plan_document(
            plan, site=self.site, generation=generation, previous=self._acked,
            base_generation=self._acked_generation,
        )
        if is_empty_change(doc):
            # Only a spent refresh request went away: the receiver's state is already this
            # plan. A skipped generation is fine; receivers need growth, not contiguity.
            self._acked = plan
            return None
        return doc

    def settle(self, plan: EdgePlan, doc: Mapping[str, Any], ok: bool) -> None:
        """Record the outcome of sending `doc` (made from `plan`)."""
        if ok:
            self._acked = plan
            self._acked_generation = int(doc["generation"])
        else:
            self.resync()


@dataclass(frozen=True, slots=True)
class SendPlan:
    """The one step a receiver of the document knows: hand it what it lacks of `desired`
    (the full plan when it is not known to hold anything, else the changes)."""

    desired: EdgePlan
    full: bool

    def describe(self) -> str:
        return "send the full plan" if self.full else "send the changes"


@dataclass(frozen=True, slots=True)
class DeliveryPlan:
    steps: tuple[SendPlan, ...] = ()  # none, or one

    @property
    def empty(self) -> bool:
        return not self.steps

    def describe(self) -> str:
        return self.steps[0].describe() if self.steps else "in sync, nothing to send"


DeliveryResult: TypeAlias = ApplyResult[DeliveryPlan, SendPlan]


def plan_delivery(desired: EdgePlan, held: EdgePlan | None) -> DeliveryPlan:
    """PURE: nothing when the receiver holds `desired`, else one push."""
    if held == desired:
        return DeliveryPlan()
    return DeliveryPlan((SendPlan(desired, full=held is None),))


class DocumentPusher:
    """A receiver of the plan document (webhook, command) as a SIP edge and as an actuator.

    Each push hands the receiver what it lacks of the plan: the full plan at start and after
    a failure, else the changes. A receiver has no state lifeline can read back, so
    `observe()` answers what it last delivered and the receiver acknowledged: the plan is
    "push" while desired differs from that, and empty once it was taken. Subclasses send.
    """

    name: str
    sequencer: PlanSequencer

    async def send(self, doc: Mapping[str, Any]) -> PushResult:
        raise NotImplementedError

    async def push(self, plan: EdgePlan) -> PushResult:
        """Send what the receiver lacks of `plan`, if anything; never raises."""
        doc = self.sequencer.next_document(plan)
        if doc is None:
            return PushResult(ok=True, attempts=0, status=None, error=None, seconds=0.0)
        result = await self.send(doc)
        self.sequencer.settle(plan, doc, result.ok)
        return result

    async def observe(self) -> EdgePlan | None:
        return self.sequencer.held

    def plan(self, desired: EdgePlan, actual: EdgePlan | None) -> DeliveryPlan:
        return plan_delivery(desired, actual)

    async def apply(self, plan: DeliveryPlan) -> DeliveryResult:
        """Push each step's plan; a push that found nothing to send did no step."""
        done: list[SendPlan] = []
        errors: list[StepError[SendPlan]] = []
        durations: list[float] = []
        calls, seconds = 0, 0.0
        for step in plan.steps:
            res = await self.push(step.desired)
            calls, seconds = calls + res.attempts, seconds + res.seconds
            if not res.ok:
                errors.append(StepError(step, res.describe()))
            elif res.attempts:
                done.append(step)
                durations.append(res.seconds)
        return ApplyResult(plan, tuple(done), tuple(errors), tuple(durations), calls, seconds)

    async def failures(self) -> dict[str, int]:
        """None known: a receiver reports no failed calls back."""
        return {}

    async def close(self) -> None:
        """Nothing held open by default."""


if TYPE_CHECKING:  # mypy holds it to the one actuator shape

    def _is_an_actuator(
        d: DocumentPusher,
    ) -> Actuator[EdgePlan, EdgePlan | None, DeliveryPlan, SendPlan]:
        return d
