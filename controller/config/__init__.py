"""Typed lifeline config: YAML in, frozen pydantic models out, every mistake named by path.

This package reads and checks the operator's YAML and nothing else: it opens no socket,
reads no clock and touches no route. Loading (loader.py) composes the YAML with the line of
every key kept (yamlsrc.py), fills in defaults (prefill.py), lets pydantic check each field
(fields.py, thresholds.py, links.py, sipuri.py, telephony.py, model.py), then checks what
no single field can see (checks.py). Every error of every pass is raised together as one
ConfigError (errors.py) whose messages read ``links[1].gateway: not an IPv4/IPv6
address``. summary.py says the result in words. Import from here, not from the modules.
"""

from __future__ import annotations

from controller.config.api import ApiSettings
from controller.config.errors import ConfigError
from controller.config.links import Link, Probes, RouteGroup, Target
from controller.config.loader import load_config, parse_config
from controller.config.model import Config, JournalLimits
from controller.config.services import Service
from controller.config.sipuri import SipUri, parse_sip_uri
from controller.config.summary import summary
from controller.config.telephony import Destination, DidRange, Register, Trunk
from controller.config.thresholds import Defaults, Thresholds
from controller.core.durations import parse_duration
from controller.core.flushrules import FlushRule

__all__ = [
    "ApiSettings",
    "Config",
    "ConfigError",
    "Defaults",
    "Destination",
    "DidRange",
    "FlushRule",
    "JournalLimits",
    "Link",
    "Probes",
    "Register",
    "RouteGroup",
    "Service",
    "SipUri",
    "Target",
    "Thresholds",
    "Trunk",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_sip_uri",
    "summary",
]
