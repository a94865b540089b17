"""The root of the config: one site's settings and its sections, as one frozen model.

Config composes the sections (links.py, telephony.py, thresholds.py) with the top-level
settings (state, listen address, route tagging) and offers the look-ups consumers use.
A Config comes from loader.py, which has filled in defaults and run the semantic checks,
so it holds effective values and consumers need no merging logic.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PrivateAttr, Strict

from controller.config.api import ApiSettings
from controller.config.fields import (
    AbsPath,
    ConfigModel,
    Count,
    Listen,
    PositiveDuration,
    SiteName,
    split_host_port,
)
from controller.config.links import Link, RouteGroup, RouteProtocol, RulePriority
from controller.config.power import PowerConfig
from controller.config.recordings import RecordingsConfig
from controller.config.services import Service
from controller.config.telephony import Destination, DidRange, SipEdge, Trunk
from controller.config.thresholds import Defaults
from controller.core.didplan import DidEntry


class JournalLimits(ConfigModel):
    """How much history the journal keeps: events older than ``keep_days`` and all but the
    newest ``keep_events`` are pruned (at start, then every so often), so it cannot fill
    the state dir."""

    keep_days: Count = 90
    keep_events: Annotated[int, Strict(), Field(ge=1000)] = 200_000


class AlertmanagerPush(ConfigModel):
    """Alertmanagers lifeline posts its own critical alerts to (controller.core.pages), so a
    site Prometheus cannot reach, or a Prometheus that is down, still pages. An HA pair is
    listed whole: each gets every alert, and they deduplicate among themselves."""

    urls: Annotated[list[Annotated[str, Field(pattern=r"^https?://[^\s/]+(/[^\s]*)?$")]],
                    Field(min_length=1)]
    timeout: PositiveDuration = 5.0
    # A firing alert is posted again this often: Alertmanager resolves one nobody re-posts
    # (after its resolve_timeout, 5 min by default).
    resend: PositiveDuration = 60.0


class Config(ConfigModel):
    """One site's whole config, as loaded: defaults filled in, every check passed."""

    site: SiteName
    state_dir: AbsPath = Path("/var/lib/lifeline")
    journal: JournalLimits = JournalLimits()
    listen: Listen = "127.0.0.1:9730"
    api_socket: AbsPath | None = None
    api: ApiSettings = ApiSettings()
    log_format: Literal["text", "json"] = "text"
    reconcile_interval: PositiveDuration = 1.0
    route_protocol: RouteProtocol = 201
    rule_priority: RulePriority = 1000
    defaults: Defaults = Defaults()
    links: Annotated[list[Link], Field(min_length=1)]
    route_groups: list[RouteGroup] = Field(default_factory=list)
    trunks: list[Trunk] = Field(default_factory=list)
    destinations: list[Destination] = Field(default_factory=list)
    dids: list[DidRange] = Field(default_factory=list)
    sip_edge: SipEdge = SipEdge()
    alertmanager: AlertmanagerPush | None = None
    power: PowerConfig | None = None  # the site's UPSes (docs/power.md); None: not watched
    services: list[Service] = Field(default_factory=list)
    # Call recordings and their backups (docs/recordings.md); None: not watched.
    recordings: RecordingsConfig | None = None

    # Warnings are found by the semantic pass, not read from YAML, so not a field.
    _warnings: list[str] = PrivateAttr(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        return list(self._warnings)

    @property
    def api_socket_path(self) -> Path:
        """The CLI socket: ``api_socket`` or, when unset, ``<state_dir>/lifeline.sock``."""
        return self.api_socket if self.api_socket is not None else self.state_dir / "lifeline.sock"

    @property
    def listen_host(self) -> str:
        return split_host_port(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return split_host_port(self.listen)[1]

    def link(self, name: str) -> Link:
        for link in self.links:
            if link.name == name:
                return link
        raise KeyError(name)

    def trunk(self, name: str) -> Trunk:
        for trunk in self.trunks:
            if trunk.name == name:
                return trunk
        raise KeyError(name)

    def destination(self, name: str) -> Destination:
        for dest in self.destinations:
            if dest.name == name:
                return dest
        raise KeyError(name)

    def service(self, name: str) -> Service:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise KeyError(name)

    def did_entries(self) -> tuple[DidEntry, ...]:
        """The DID plan's entries in the operator's order, for controller.core.didplan."""
        return tuple(d.entry() for d in self.dids)
