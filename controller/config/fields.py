"""Field types shared by every config section: names, addresses, durations, ratios, paths.

Each is an ``Annotated`` type whose validator raises ValueError with the short sentence the
operator will read (errors.py strips pydantic's "Value error, " prefix and adds the path).
``ConfigModel`` is the base of every section: unknown keys are refused and a loaded config
is frozen. Nothing here knows about links, trunks or the YAML file.
"""

from __future__ import annotations

import ipaddress
import re
import typing
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
)

from controller.core.durations import parse_duration


class ConfigModel(BaseModel):
    """A config section: an unknown key is an error (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")


def _name_checker(max_len: int) -> typing.Callable[[str], str]:
    def check(value: str) -> str:
        if len(value) > max_len:
            raise ValueError(f"longer than {max_len} characters")
        if not _NAME_RE.fullmatch(value):
            raise ValueError("must be lowercase letters, digits and '-' (not at the start or end)")
        return value

    return check


LinkName = Annotated[str, AfterValidator(_name_checker(32))]
GroupName = Annotated[str, AfterValidator(_name_checker(63))]
SiteName = Annotated[str, AfterValidator(_name_checker(63))]


def _check_ifname(value: str) -> str:
    # The kernel's dev_valid_name(): IFNAMSIZ is 16 with the NUL, and '/', ':' and
    # whitespace are refused because sysfs paths and alias syntax would break.
    if not value:
        raise ValueError("must not be empty")
    if len(value) > 15:
        raise ValueError("longer than 15 characters (the kernel's interface name limit)")
    if value in {".", ".."} or any(ch in value for ch in "/:") or any(ch.isspace() for ch in value):
        raise ValueError("not a valid interface name (no '/', ':' or whitespace)")
    return value


IfName = Annotated[str, AfterValidator(_check_ifname)]


def usable_ip(value: object) -> str:
    """Normalized text of an IP literal: the form the kernel prints back, so compares work."""
    if not isinstance(value, str):
        raise ValueError("not an IPv4/IPv6 address")
    try:
        addr = ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError("not an IPv4/IPv6 address") from None
    if addr.is_unspecified or addr.is_multicast:
        raise ValueError(f"{addr} is not a usable host address")
    return str(addr)


IPAddr = Annotated[str, BeforeValidator(usable_ip)]


def _host_port(value: object) -> str:
    """``192.0.2.2:443`` or ``[2001:db8::1]:443``, normalized; IPv6 must be bracketed."""
    if not isinstance(value, str):
        raise ValueError("must be address:port, e.g. 192.0.2.2:443 or [2001:db8::1]:443")
    host, port = split_host_port(value.strip())
    addr = usable_ip(host)
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def split_host_port(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError("must be [IPv6]:port, e.g. [2001:db8::1]:443")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError("missing port (address:port, e.g. 192.0.2.2:443 or [::1]:9730)")
        if ":" in host:
            raise ValueError("an IPv6 address with a port must be written [address]:port")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} is not a number in 1..65535")
    return host, int(port_text)


HostPort = Annotated[str, BeforeValidator(_host_port)]

_HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def _listen(value: object) -> str:
    """Like HostPort, but the host may be a name (``localhost``) or empty-free ``0.0.0.0``."""
    if not isinstance(value, str):
        raise ValueError("must be host:port, e.g. 127.0.0.1:9730 or [::1]:9730")
    host, port = split_host_port(value.strip())
    try:
        addr = str(ipaddress.ip_address(host))
    except ValueError:
        if not _HOSTNAME_RE.fullmatch(host):
            raise ValueError(f"{host!r} is neither an IP address nor a host name") from None
        return f"{host}:{port}"
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


Listen = Annotated[str, BeforeValidator(_listen)]


# No setting of lifeline needs more than a week; beyond, a value is a typo (and a huge
# float would overflow where durations are rendered or slept on).
MAX_DURATION = 7 * 24 * 3600.0


def _duration(value: object) -> float:
    if not isinstance(value, str | int | float):
        raise ValueError("not a duration (expected e.g. 200ms, 5s, 1m)")
    seconds = parse_duration(value)
    if seconds > MAX_DURATION:
        raise ValueError(f"{value!r} is longer than a week: a typo?")
    return seconds


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be longer than 0")
    return value


Duration = Annotated[float, BeforeValidator(_duration)]
PositiveDuration = Annotated[float, BeforeValidator(_duration), AfterValidator(_positive)]


def _ratio(value: object) -> object:
    """Accept ``0.02`` or ``"2%"``: operators think of loss in percent."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"not a percentage: {value!r}") from None
    return value


Ratio = Annotated[float, Strict(), BeforeValidator(_ratio), Field(ge=0.0, le=1.0)]
Count = Annotated[int, Strict(), Field(ge=1)]


def _abs_path(value: object) -> Path:
    if not isinstance(value, str | Path):
        raise ValueError("must be a path")
    path = Path(value)
    if not path.is_absolute():
        raise ValueError("must be an absolute path")
    return path


AbsPath = Annotated[Path, PlainValidator(_abs_path)]
