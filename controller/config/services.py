"""``services:``: the site's software lifeline watches (the CRM, the PBX's web side, the SBC).

Each service is checked over HTTP(S) (status, optional body match, certificate) or by a
TCP handshake, every ``interval``, and judged by the shared health machine with its own
``down_after`` and ``hold_down``. ``needed_by`` names the destinations that cannot work
without it (the CRM down: the agents cannot take calls), which controller.core.services
then takes down with it, so their DIDs go to DR; a service no destination needs only
alerts. ``cert_warn_days`` feeds the certificate alert, never an outage. References to
destinations are checked by ``service_checks`` (called from checks.py), the rest here.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, PlainValidator, Strict, model_validator

from controller.config.fields import (
    AbsPath,
    ConfigModel,
    Count,
    Duration,
    IfName,
    IPAddr,
    LinkName,
)
from controller.config.fields import PositiveDuration as PositiveDurationField
from controller.config.sipuri import HostName
from controller.core.durations import format_duration
from controller.core.health import HealthParams
from probes.sample import HttpOptions, ProbeSpec

__all__ = ["HttpCheck", "Service", "ServiceThresholds", "TcpCheck", "service_checks",
           "services_summary"]

# A service is checked every few seconds, not every 100 ms like a link: its health
# machine looks at this many rounds for its loss figure.
_WINDOW_ROUNDS = 20


def _url(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be an http:// or https:// URL, e.g. https://crm.example/health")
    url = value.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"{url!r} is not http:// or https://")
    if "@" in parts.netloc:
        raise ValueError("a URL with user:password@ puts a secret in the config and the "
                         "logs; point the check at a page that needs no login")
    if not parts.hostname:
        raise ValueError(f"{url!r} names no host")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"{url!r} has no usable port (1..65535)") from None
    if port == 0:
        raise ValueError(f"{url!r} has no usable port (1..65535)")
    return url


def _regex(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a regular expression")
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return value


StatusCode = Annotated[int, Strict(), Field(ge=100, le=599)]


class HttpCheck(ConfigModel):
    """``http:``: one request to ``url``; ok when the status is expected and the body
    matches."""

    url: Annotated[str, PlainValidator(_url)]
    method: Literal["GET", "HEAD"] = "GET"
    # None: any 200-399 (a redirect to a login page is an answer too).
    expect_status: Annotated[list[StatusCode], Field(min_length=1)] | None = None
    body_match: Annotated[str, Field(min_length=1)] | None = None  # a substring
    body_regex: Annotated[str, PlainValidator(_regex)] | None = None
    verify: Annotated[bool, Strict()] = True
    ca_file: AbsPath | None = None
    server_name: HostName | None = None

    @model_validator(mode="after")
    def _consistent(self) -> HttpCheck:
        if self.body_match is not None and self.body_regex is not None:
            raise ValueError("give body_match (a substring) or body_regex, not both")
        if self.method == "HEAD" and (self.body_match or self.body_regex):
            raise ValueError("a HEAD answer has no body to match: use GET")
        if not self.secure:
            for key in ("ca_file", "server_name"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} is for https:// URLs; {self.url} is plain http")
        return self

    @property
    def secure(self) -> bool:
        return self.url.lower().startswith("https:")

    @property
    def host(self) -> str:
        host = urlsplit(self.url).hostname
        assert host is not None  # _url refused the rest
        return host

    @property
    def port(self) -> int:
        port = urlsplit(self.url).port
        return port if port is not None else (443 if self.secure else 80)

    def options(self) -> HttpOptions:
        return HttpOptions(
            url=self.url, method=self.method,
            expect_status=frozenset(self.expect_status) if self.expect_status else None,
            body_match=self.body_match, body_regex=self.body_regex, verify=self.verify,
            ca_file=str(self.ca_file) if self.ca_file is not None else None,
            server_name=self.server_name,
        )


class TcpCheck(ConfigModel):
    """``tcp:``: a handshake with ``host:port`` (the SBC's SIP port, a database)."""

    host: HostName
    port: Annotated[int, Strict(), Field(ge=1, le=65535)]


_HP = HealthParams()


class ServiceThresholds(ConfigModel):
    """When a service counts as down, and how long it must work again before it counts."""

    down_after: Count = 3  # failed checks in a row
    hold_down: Duration = 60.0  # good checks for this long before down -> up
    rise: Count = 2  # good checks in a row before a new service counts as up
    # An answer slower than this makes the service degraded (an alert, never an outage);
    # unset: only a timeout counts.
    slow: PositiveDurationField | None = None
    flap_max_hold_down: Duration = _HP.flap_max_hold_down


class Service(ConfigModel):
    """One site service, checked over ``http`` or ``tcp``."""

    name: LinkName
    http: HttpCheck | None = None
    tcp: TcpCheck | None = None
    interval: PositiveDurationField = 5.0
    timeout: PositiveDurationField = 2.0
    # After a failed check, while the service is not down yet, the next comes this soon:
    # confirming a failure must not take down_after whole intervals.
    recheck_interval: PositiveDurationField = 1.0
    thresholds: ServiceThresholds = ServiceThresholds()
    needed_by: list[str] = Field(default_factory=list)  # destination names
    cert_warn_days: Annotated[int, Strict(), Field(ge=1, le=365)] = 21
    # Pin the checks to a link's device and source (services usually are on the LAN).
    device: IfName | None = None
    source: IPAddr | None = None

    @model_validator(mode="after")
    def _one_check(self) -> Service:
        if (self.http is None) == (self.tcp is None):
            raise ValueError("needs exactly one of http: {url: ...} or tcp: {host, port}")
        return self

    @property
    def kind(self) -> str:
        return "http" if self.http is not None else "tcp"

    def target(self) -> str:
        """What is checked, as the summary and the status page say it."""
        if self.http is not None:
            return f"{self.http.method} {self.http.url}"
        assert self.tcp is not None
        host = f"[{self.tcp.host}]" if ":" in self.tcp.host else self.tcp.host
        return f"tcp {host}:{self.tcp.port}"

    def probe_spec(self) -> ProbeSpec:
        """The check, in the form probes.registry.read_service takes."""
        if self.http is not None:
            return ProbeSpec("http", self.http.host, self.http.port, device=self.device,
                             source=self.source, http=self.http.options())
        assert self.tcp is not None
        return ProbeSpec("tcp", self.tcp.host, self.tcp.port, device=self.device,
                         source=self.source)

    def health_params(self) -> HealthParams:
        """The shared health machine, tuned for a service: one target, checked every
        ``interval``; degraded only when slow (never by voice figures)."""
        th = self.thresholds
        slow = th.slow if th.slow is not None else self.timeout
        return HealthParams(
            interval=self.interval, window=_WINDOW_ROUNDS * self.interval,
            down_after=th.down_after, rise=th.rise, hold_down=th.hold_down,
            flap_max_hold_down=max(th.flap_max_hold_down, th.hold_down),
            degraded_latency=slow, degraded_jitter=max(slow, self.timeout),
            degraded_mos=1.0, min_rounds=min(_HP.min_rounds, _WINDOW_ROUNDS),
        )


def _unknown(kind: str, name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown {kind} {name!r}{hint}"


def service_checks(
    services: Sequence[tuple[int, Service]],
    raw_service_names: Sequence[tuple[int, str]],
    destination_names: set[str],
) -> tuple[list[str], list[str]]:
    """Errors and warnings across services and destinations: duplicate names, a
    ``needed_by`` naming no destination, timings that contradict each other."""
    errors: list[str] = []
    warnings: list[str] = []
    fmt = format_duration
    first: dict[str, int] = {}
    for i, name in raw_service_names:
        if name in first:
            errors.append(f"services[{i}].name: duplicate service name {name} "
                          f"(also services[{first[name]}])")
        else:
            first[name] = i
    for i, svc in services:
        p = f"services[{i}]"
        seen: set[str] = set()
        for k, dest in enumerate(svc.needed_by):
            if dest in seen:
                errors.append(f"{p}.needed_by[{k}]: {dest} is listed twice")
            elif dest not in destination_names:
                known = (_unknown("destination", dest, destination_names)
                         if destination_names else
                         f"unknown destination {dest!r} (no destinations: are configured)")
                errors.append(f"{p}.needed_by[{k}]: {known}")
            seen.add(dest)
        if svc.timeout > svc.interval:
            errors.append(f"{p}.timeout: {fmt(svc.timeout)} is longer than the interval "
                          f"{fmt(svc.interval)} (a check must end before the next one)")
        if svc.recheck_interval > svc.interval:
            errors.append(f"{p}.recheck_interval: {fmt(svc.recheck_interval)} is longer than "
                          f"the interval {fmt(svc.interval)} (it is the faster pace that "
                          "confirms a failed check)")
        slow = svc.thresholds.slow
        if slow is not None and slow >= svc.timeout:
            errors.append(f"{p}.thresholds.slow: {fmt(slow)} is not below the timeout "
                          f"{fmt(svc.timeout)} (an answer that slow is a timeout)")
        if svc.http is not None and not svc.http.verify:
            warnings.append(f"{p}.http.verify: false; the certificate is not checked, so an "
                            "expired or foreign one does not fail the check (its days left "
                            "are still reported)")
    return errors, warnings


def services_summary(services: Sequence[Service]) -> list[str]:
    """The ``services:`` lines of ``lifeline check-config``."""
    if not services:
        return []
    fmt = format_duration
    needing = sum(1 for s in services if s.needed_by)
    out = [f"services: {len(services)} watched, {needing} needed by a destination"]
    for svc in services:
        th = svc.thresholds
        need = (f"needed by {', '.join(svc.needed_by)} (down -> their DIDs go to DR)"
                if svc.needed_by else "alerts only")
        line = (f"  {svc.name}: {svc.target()} every {fmt(svc.interval)} (timeout "
                f"{fmt(svc.timeout)}), down after {th.down_after} failed, back after "
                f"{fmt(th.hold_down)} good; {need}")
        out.append(line)
        if svc.http is not None and svc.http.secure:
            out.append(f"    certificate alert {svc.cert_warn_days} days before it expires")
    return out
