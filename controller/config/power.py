"""The ``power:`` section: the site's UPSes (NUT or SNMP) and the battery-event policy.

Each UPS is read over exactly one protocol: NUT's upsd (optionally logged in, the password
from a file or the environment, optionally over STARTTLS) or SNMP's UPS-MIB (v2c with the
community from a file, or v3 with its keys from files). Secrets are never accepted inline:
a ``password``, ``community``, ``auth_key`` or ``priv_key`` key is refused with the line to
write instead. The policy's durations feed controller.core.power (docs/power.md).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, PlainValidator, model_validator

from controller.config.fields import (
    AbsPath,
    ConfigModel,
    Count,
    Duration,
    LinkName,
    PositiveDuration,
)
from controller.config.sipuri import HostName
from controller.config.telephony import EnvName, Port
from controller.core.durations import format_duration
from controller.core.power import PolicyParams, UpsParams


def _refuse(field: str, instead: str) -> PlainValidator:
    def refuse(value: object) -> None:
        raise ValueError(f"an inline {field} is not accepted: use {instead}, so the secret "
                         "stays out of config files, backups and logs")

    return PlainValidator(refuse)


_NUT_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def _nut_name(value: object) -> str:
    if not isinstance(value, str) or not _NUT_NAME_RE.fullmatch(value):
        raise ValueError("must be the UPS's name in upsd (ups.conf's [section]): letters, "
                         "digits, '_', '.', '-'")
    return value


def _user(value: object) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise ValueError("must be a user name without spaces")
    return value


class NutTls(ConfigModel):
    """STARTTLS to upsd; the server's certificate is checked against ``ca_file`` (the
    system's CAs when unset) and ``server_name`` (the host when unset)."""

    ca_file: AbsPath | None = None
    server_name: HostName | None = None


class NutSource(ConfigModel):
    """A UPS served by upsd (TCP 3493)."""

    host: HostName
    port: Port = 3493
    ups: Annotated[str, PlainValidator(_nut_name)]
    username: Annotated[str, PlainValidator(_user)] | None = None
    password_file: AbsPath | None = None
    password_env: EnvName | None = None
    password: Annotated[None, _refuse("password", "password_file or password_env")] = Field(
        default=None, repr=False, exclude=True)
    tls: NutTls | None = None

    @model_validator(mode="after")
    def _login(self) -> NutSource:
        secrets = (self.password_file is not None) + (self.password_env is not None)
        if self.username is None and secrets:
            raise ValueError("a password_file or password_env needs a username")
        if self.username is not None and secrets != 1:
            raise ValueError("username needs exactly one of password_file or password_env")
        return self


AuthProtocol = Literal["md5", "sha", "sha224", "sha256", "sha384", "sha512"]
PrivProtocol = Literal["des", "3des", "aes", "aes192", "aes256"]


class SnmpV3(ConfigModel):
    """SNMPv3 USM: authentication always (authNoPriv or authPriv), keys from files."""

    user: Annotated[str, PlainValidator(_user)]
    auth_protocol: AuthProtocol = "sha"
    auth_key_file: AbsPath
    priv_protocol: PrivProtocol | None = "aes"
    priv_key_file: AbsPath | None = None
    auth_key: Annotated[None, _refuse("auth_key", "auth_key_file")] = Field(
        default=None, repr=False, exclude=True)
    priv_key: Annotated[None, _refuse("priv_key", "priv_key_file")] = Field(
        default=None, repr=False, exclude=True)

    @model_validator(mode="after")
    def _privacy(self) -> SnmpV3:
        if self.priv_protocol is not None and self.priv_key_file is None:
            raise ValueError(f"priv_protocol {self.priv_protocol} needs a priv_key_file "
                             "(or priv_protocol: null for authentication without privacy)")
        if self.priv_protocol is None and self.priv_key_file is not None:
            raise ValueError("priv_key_file is set but priv_protocol is null")
        return self


class SnmpSource(ConfigModel):
    """A UPS answering the standard UPS-MIB (RFC 1628) over SNMP (UDP 161)."""

    host: HostName
    port: Port = 161
    community_file: AbsPath | None = None
    community: Annotated[None, _refuse("community", "community_file (SNMP v2c) or v3")] = (
        Field(default=None, repr=False, exclude=True))
    v3: SnmpV3 | None = None

    @model_validator(mode="after")
    def _one_auth(self) -> SnmpSource:
        if (self.community_file is None) == (self.v3 is None):
            raise ValueError("needs exactly one of community_file (SNMP v2c) or v3")
        return self


class UpsConfig(ConfigModel):
    """One UPS that feeds the agents' desks or the network the calls need."""

    name: LinkName
    nut: NutSource | None = None
    snmp: SnmpSource | None = None
    interval: PositiveDuration = 2.0
    timeout: PositiveDuration = 2.0
    # Readings identical this long: unknown (a frozen agent). Off by default: upsd already
    # says ERR DATA-STALE for a silent driver, and many UPSes report flat figures for hours.
    stale_after: PositiveDuration | None = None
    fail_after: Count = 3  # failed reads in a row before the UPS is unknown

    @model_validator(mode="after")
    def _check(self) -> UpsConfig:
        fmt = format_duration
        if (self.nut is None) == (self.snmp is None):
            raise ValueError("needs exactly one of nut or snmp")
        if self.timeout > self.interval:
            raise ValueError(f"timeout {fmt(self.timeout)} is longer than the interval "
                             f"{fmt(self.interval)} (a read must end before the next starts)")
        if self.stale_after is not None and self.stale_after <= 2 * self.interval:
            raise ValueError(f"stale_after {fmt(self.stale_after)} is not longer than two "
                             f"intervals ({fmt(2 * self.interval)}): a healthy UPS would "
                             "turn unknown between reads")
        return self

    @property
    def protocol(self) -> str:
        return "nut" if self.nut is not None else "snmp"

    def params(self) -> UpsParams:
        """This UPS's parameters, in the form controller.core.power consumes."""
        return UpsParams(interval=self.interval, timeout=self.timeout,
                         stale_after=self.stale_after, fail_after=self.fail_after)


def _argv(value: object) -> list[str]:
    if isinstance(value, str):
        raise ValueError("must be a list (argv, run without a shell), e.g. "
                         "[/usr/local/sbin/site-shutdown, --grace, 60]")
    if not isinstance(value, list) or not value:
        raise ValueError("must be a non-empty list of arguments")
    if not all(isinstance(a, str) and a and "\0" not in a for a in value):
        raise ValueError("every argument must be a non-empty string")
    if not value[0].startswith("/"):
        raise ValueError(f"{value[0]!r}: the program must be an absolute path (no PATH "
                         "search for a command the daemon runs as root)")
    return list(value)


class PowerConfig(ConfigModel):
    """The site's UPSes and what lifeline does when they leave mains."""

    ups: Annotated[list[UpsConfig], Field(min_length=1)]
    grace: Duration = 30.0  # on battery this long: page
    dr_after: Duration | None = None  # on battery this long: DR (desks not on the UPS)
    runtime_margin: Duration = 300.0  # runtime left below this: DR
    hold_down: Duration = 300.0  # mains stable this long: the DIDs come back
    on_battery_low: Annotated[list[str], PlainValidator(_argv)] | None = None

    @model_validator(mode="after")
    def _names(self) -> PowerConfig:
        seen: set[str] = set()
        for ups in self.ups:
            if ups.name in seen:
                raise ValueError(f"two UPSes are named {ups.name}")
            seen.add(ups.name)
        return self

    def policy(self) -> PolicyParams:
        """The policy's parameters, in the form controller.core.power consumes."""
        return PolicyParams(grace=self.grace, dr_after=self.dr_after,
                            runtime_margin=self.runtime_margin, hold_down=self.hold_down,
                            command=self.on_battery_low is not None)

    def ups_params(self) -> dict[str, UpsParams]:
        return {ups.name: ups.params() for ups in self.ups}


def _at(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def power_summary(power: PowerConfig | None) -> list[str]:
    """``lifeline check-config``'s lines for power (controller.config.summary)."""
    fmt = format_duration
    if power is None:
        return ["power: not watched (no power section)"]
    dr_after = f", or on battery for {fmt(power.dr_after)}" if power.dr_after is not None else ""
    command = (" ".join(power.on_battery_low) if power.on_battery_low is not None
               else "none")
    out = [
        f"power: {len(power.ups)} UPS{'es' if len(power.ups) != 1 else ''}; page after "
        f"{fmt(power.grace)} on battery; DIDs to DR on LB/FSD, runtime below "
        f"{fmt(power.runtime_margin)}{dr_after}; back after {fmt(power.hold_down)} of "
        f"stable mains; on_battery_low: {command}",
    ]
    for ups in power.ups:
        if ups.nut is not None:
            nut = ups.nut
            login = f", login {nut.username}" if nut.username is not None else ""
            tls = ", STARTTLS" if nut.tls is not None else ""
            where = f"NUT {nut.ups}@{_at(nut.host, nut.port)}{login}{tls}"
        else:
            assert ups.snmp is not None
            snmp = ups.snmp
            auth = (f"v3 user {snmp.v3.user}" if snmp.v3 is not None else "v2c")
            where = f"SNMP {_at(snmp.host, snmp.port)} {auth}"
        stale = (f" or unchanged for {fmt(ups.stale_after)}" if ups.stale_after is not None
                 else "; never stale by sameness")
        out.append(f"  {ups.name}: {where}, every {fmt(ups.interval)} (timeout "
                   f"{fmt(ups.timeout)}); unknown after {ups.fail_after} failed reads{stale}")
    return out


def power_warnings(power: PowerConfig | None, dr_ranges: int) -> list[str]:
    """What is legal but likely not meant: power watched while no DID range has a DR
    destination to move to (``dr_ranges``: how many do)."""
    if power is None or dr_ranges:
        return []
    return ["power: no DID range names a dr_destination: a power failure pages, but no "
            "call moves to a DR site before the desks go dark"]
