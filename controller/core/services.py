"""PURE: service checks -> service health, and services -> the destinations that need them.

The site's software (the CRM, the PBX's web side, the SBC) is judged like a trunk: each
service gets the shared health machine (controller.core.health) with one target, whose
rounds are its checks, so ``down_after`` failed checks take it down and ``hold_down``
seconds of good ones bring it back (stretched by the flap damping for one that keeps
failing). ``ServiceWatch`` feeds it and keeps what the machine does not: the last failed
check's own words ("HTTP 500 Internal Server Error", "certificate refused: certificate
has expired") and the certificate's days left.

The rules, in the operator's words:

1. A service marked as needed by a destination takes that destination down with it: the
   CRM down means the agents cannot work, so the destination's DID ranges go to their DR
   destination as if the PBX itself had died (controller.core.didplan rule 3). The
   destination comes back when the service does, that is after the service's own
   hold-down: no second timer, so the two can never disagree.
2. Only DOWN takes a destination down. A service not judged yet (start-up, or its checks
   stalled) is UNKNOWN, which changes nothing: a stalled prober must never send a site's
   calls to DR. DEGRADED (slow, or failing now and then) alerts and changes nothing.
3. A destination that needs no service is never changed, and neither is one whose needed
   services are all up.
4. Certificate expiry is an alert, never an outage: ``cert_status`` grades the days left.
   (A certificate that has expired fails the check itself when it is verified, since
   every client refuses it too: that is rule 1 through the check, not through the date.)

No I/O and no clock: every time comes in as an argument.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from controller.core.health import Health, HealthParams, HealthState, ProbeRound, Transition

__all__ = [
    "CertStatus",
    "DestinationVerdict",
    "ServiceCheck",
    "ServiceSnap",
    "ServiceView",
    "ServiceWatch",
    "cert_status",
    "effective_destinations",
]


@dataclass(frozen=True, slots=True)
class ServiceCheck:
    """One check of a service, as the runtime hands it over (from a ServiceReading)."""

    at: float  # monotonic seconds, when the check was sent
    ok: bool
    latency: float | None = None  # seconds
    detail: str = ""  # the check's own words: "HTTP 500 Internal Server Error"
    cert_days_left: float | None = None  # HTTPS only
    cert_not_after: float | None = None  # Unix seconds (a wall-clock date, for metrics)


class CertStatus(StrEnum):
    OK = "ok"
    EXPIRING = "expiring"  # fewer than the service's cert_warn_days left
    EXPIRED = "expired"


def cert_status(days_left: float | None, warn_days: float) -> CertStatus | None:
    """How a certificate's days left read against the warning threshold; None: no
    certificate seen (plain HTTP, TCP, or no TLS answer yet)."""
    if days_left is None:
        return None
    if days_left <= 0:
        return CertStatus.EXPIRED
    if days_left < warn_days:
        return CertStatus.EXPIRING
    return CertStatus.OK


@dataclass(frozen=True, slots=True)
class ServiceView:
    """What the destination rule needs to know of one service."""

    name: str
    state: HealthState
    reason: str = ""  # health's why
    failure: str = ""  # the last failed check's words; "" if none failed yet
    needed_by: tuple[str, ...] = ()  # destination names


class ServiceWatch:
    """One service: its health machine, its last failure and its certificate."""

    def __init__(self, name: str, params: HealthParams, needed_by: Iterable[str] = (),
                 cert_warn_days: float = 21) -> None:
        self.name = name
        self.needed_by = tuple(needed_by)
        self.cert_warn_days = cert_warn_days
        self.health = Health(name, params, 1, 1)
        self.last: ServiceCheck | None = None
        self.failure = ""  # the newest failed check's detail
        self.cert_days_left: float | None = None
        self.cert_not_after: float | None = None

    def observe(self, check: ServiceCheck) -> Transition | None:
        """A check came back; checks must come in the order they were sent."""
        self.last = check
        if not check.ok:
            self.failure = check.detail or "check failed"
        if check.cert_days_left is not None:
            self.cert_days_left = check.cert_days_left
            self.cert_not_after = check.cert_not_after
        rtt = (check.latency if check.latency is not None else 0.0) if check.ok else None
        return self.health.observe(ProbeRound(check.at, (rtt,)))

    def tick(self, now: float) -> Transition | None:
        """Checks that stopped coming make an up service unknown (never down)."""
        return self.health.tick(now)

    @property
    def state(self) -> HealthState:
        return self.health.state

    def cert(self) -> CertStatus | None:
        return cert_status(self.cert_days_left, self.cert_warn_days)

    def view(self) -> ServiceView:
        return ServiceView(self.name, self.health.state, self.health.reason, self.failure,
                           self.needed_by)


@dataclass(frozen=True, slots=True)
class DestinationVerdict:
    """A destination's state once the services it needs are weighed, and why."""

    name: str
    state: HealthState
    reason: str
    own_state: HealthState  # what its own probes say
    services_down: tuple[str, ...] = ()  # needed services that are down, config order

    @property
    def cause(self) -> str | None:
        """Why it is down, as a bounded word: ``destination`` (its own probes),
        ``service`` (only a needed service), None when it is not down."""
        if self.state is not HealthState.DOWN:
            return None
        return "destination" if self.own_state is HealthState.DOWN else "service"


def _why(name: str, reason: str) -> str:
    prefix = f"{name}: "
    return reason[len(prefix):] if reason.startswith(prefix) else reason


def _needs(view: ServiceView) -> str:
    detail = view.failure or _why(view.name, view.reason)
    return f"needs {view.name}, which is down" + (f": {detail}" if detail else "")


def effective_destinations(
    destinations: Mapping[str, tuple[HealthState, str]],
    services: Iterable[ServiceView],
) -> dict[str, DestinationVerdict]:
    """Every destination's effective state: its own health, taken down by any needed
    service that is DOWN (rules 1-3).

    ``destinations``: name -> (state, health's reason). A destination a service needs but
    ``destinations`` lacks counts as unknown of its own. The result holds every
    destination of either input; feed ``{n: v.state}`` to controller.core.didplan.
    """
    down_for: dict[str, list[ServiceView]] = {}
    for view in services:
        for dest in dict.fromkeys(view.needed_by):
            bucket = down_for.setdefault(dest, [])
            if view.state is HealthState.DOWN:
                bucket.append(view)
    out: dict[str, DestinationVerdict] = {}
    for name in dict.fromkeys([*destinations, *down_for]):
        own, reason = destinations.get(name, (HealthState.UNKNOWN, f"{name}: no health "
                                                                  "reported"))
        down = down_for.get(name, [])
        if not down:
            out[name] = DestinationVerdict(name, own, reason, own)
            continue
        needs = "; ".join(_needs(v) for v in down)
        if own is HealthState.DOWN:
            why = f"{name} down: {_why(name, reason)}; also {needs}"
        else:
            why = f"{name} down: {needs}"
        out[name] = DestinationVerdict(name, HealthState.DOWN, why, own,
                                       tuple(v.name for v in down))
    return out


@dataclass(frozen=True, slots=True)
class ServiceSnap:
    """A site service as the snapshot tells it (status, metrics, ``lifeline status``)."""

    name: str
    kind: str  # http, tcp
    target: str  # "GET https://crm.example/health", "tcp sbc.example:5060"
    state: HealthState
    reason: str  # health's why; when down, the last failed check's words
    latency: float | None  # seconds, the last answered check
    code: int | None  # the last HTTP status
    cert_days_left: float | None
    cert_not_after: float | None  # Unix seconds
    needed_by: tuple[str, ...] = ()
    cert: CertStatus | None = None  # cert_status() of the days left
    hold_down_remaining: float = 0.0
    # The newest failed check's words, kept once the service is back: a service that
    # fails now and then shows what it last said (None: no check has failed).
    last_error: str | None = None
    cert_warn_days: float | None = None  # the certificate alert's threshold (config)
