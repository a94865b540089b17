"""What Kamailio holds, as typed values, read from its RPC answers (PURE).

htable.dump, dispatcher.list, uac.reg_dump and corex.list_sockets answer nested JSON whose
shape varies with the module version and with what is configured; this module turns each
answer into frozen values (`DsTarget`, `Registration`, `EdgeSocket`, gathered in
`EdgeActual`) and drops what it cannot read rather than raising, so a stray entry never
stops a push. It also holds the marks lifeline and the reference cfg agree on for reading:
which dispatcher destinations and uac records are lifeline's, and the keys of the
`edgestat` htable. No I/O: the actuator fetches, this module reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

__all__ = [
    "OWNER_ATTR",
    "REG_FLAG_INITIALISED",
    "REG_FLAG_REGISTERED",
    "REG_UUID_PREFIX",
    "DsTarget",
    "EdgeActual",
    "EdgeSocket",
    "Registration",
    "edge_carrier",
    "parse_ds_list",
    "parse_dump",
    "parse_registrations",
    "parse_sockets",
    "sip_host",
    "string_values",
    "trunk_failures",
]

OWNER_ATTR: Final = "owner=lifeline"
# uac records lifeline adds: the prefix marks them as ours (only those are ever removed).
REG_UUID_PREFIX: Final = "lifeline-"
REG_FLAG_REGISTERED: Final = 4
REG_FLAG_INITIALISED: Final = 16
# Keys of the cfg's `edgestat` htable: INVITE failures per trunk, and where the cfg
# publishes its carrier-side "addr:port" (event_route[htable:mod-init]).
FAIL_PREFIX: Final = "trunk_fail::"
CARRIER_KEY: Final = "edge::carrier"


def sip_host(addr: str) -> str:
    """An address as a SIP URI host: IPv6 in brackets."""
    return f"[{addr}]" if ":" in addr and not addr.startswith("[") else addr


@dataclass(frozen=True, slots=True)
class DsTarget:
    """One dispatcher destination as `dispatcher.list` shows it."""

    group: int
    uri: str
    state: str  # a active, i inactive, d disabled, t trying (first letter of FLAGS)
    priority: int
    attrs: str

    @property
    def owned(self) -> bool:
        return OWNER_ATTR in self.attrs.split(";")

    @property
    def name(self) -> str | None:
        for part in self.attrs.split(";"):
            key, _, value = part.partition("=")
            if key == "name":
                return value
        return None


@dataclass(frozen=True, slots=True)
class Registration:
    """One uac registration record: what lifeline writes, and what reg_dump shows back.

    Equal records need no write; `flags` (Kamailio's progress bits) is not compared. The
    password compares (a rotated secret re-adds the record) but never prints.
    """

    uuid: str
    user: str
    domain: str
    proxy: str  # the trunk's SBC URI: where the REGISTER goes
    expires: int
    socket: str  # "udp:addr:port" to leave from, or "" for Kamailio's choice
    password: str = field(default="", repr=False)
    flags: int = field(default=0, compare=False)
    # "addr:port" the Contact advertises; "" asks for the cfg's reg_contact_addr, which
    # reg_dump then shows in its place (see the planner's _in_sync).
    contact: str = ""

    @property
    def owned(self) -> bool:
        return self.uuid.startswith(REG_UUID_PREFIX)

    @property
    def trunk(self) -> str:
        return self.uuid.removeprefix(REG_UUID_PREFIX)

    @property
    def registered(self) -> bool:
        return bool(self.flags & REG_FLAG_REGISTERED)


@dataclass(frozen=True, slots=True)
class EdgeSocket:
    """One listening socket as corex.list_sockets shows it."""

    proto: str  # udp, tcp, tls, ...
    host: str  # as in a SIP URI: IPv6 in brackets
    port: int
    advertise: str = ""  # "host:port" the socket advertises instead, or ""


@dataclass(frozen=True, slots=True)
class EdgeActual:
    dids: Mapping[str, str] = field(default_factory=dict)
    targets: tuple[DsTarget, ...] = ()
    failures: Mapping[str, int] = field(default_factory=dict)
    registrations: tuple[Registration, ...] = ()
    carrier: str | None = None  # the carrier-side "addr:port" the cfg published, if any
    # The `edgecfg` htable; None: the cfg has no such table (then nothing is written there).
    settings: Mapping[str, str] | None = None
    # The edge's sockets; None: unknown (no corex), so no trunk gets a socket of its own.
    sockets: tuple[EdgeSocket, ...] | None = None


def parse_dump(result: Any) -> dict[str, Any]:
    """htable.dump answers a list of hash slots, each with a list of {name, value, type}."""
    out: dict[str, Any] = {}
    if not isinstance(result, list):
        return out
    for slot in result:
        if not isinstance(slot, dict) or not isinstance(slot.get("slot"), list):
            continue
        for item in slot["slot"]:
            if isinstance(item, dict) and isinstance(item.get("name"), str):
                out[item["name"]] = item.get("value")
    return out


def string_values(dump: Mapping[str, Any]) -> dict[str, str]:
    """The string entries of a parsed htable (lifeline writes only strings)."""
    return {k: v for k, v in dump.items() if isinstance(v, str)}


def trunk_failures(stats: Mapping[str, Any]) -> dict[str, int]:
    """INVITE failures per trunk name, from the parsed `edgestat` htable."""
    return {
        k.removeprefix(FAIL_PREFIX): v
        for k, v in stats.items()
        if k.startswith(FAIL_PREFIX) and isinstance(v, int)
    }


def edge_carrier(stats: Mapping[str, Any]) -> str | None:
    """The carrier-side "addr:port" the cfg published in `edgestat`, if any."""
    carrier = stats.get(CARRIER_KEY)
    return carrier if isinstance(carrier, str) and carrier else None


def parse_ds_list(result: Any) -> tuple[DsTarget, ...]:
    targets: list[DsTarget] = []
    if not isinstance(result, dict) or not isinstance(result.get("RECORDS"), list):
        return ()
    for record in result["RECORDS"]:
        ds_set = record.get("SET") if isinstance(record, dict) else None
        if not isinstance(ds_set, dict) or not isinstance(ds_set.get("TARGETS"), list):
            continue
        group = ds_set.get("ID")
        for target in ds_set["TARGETS"]:
            dest = target.get("DEST") if isinstance(target, dict) else None
            if not isinstance(dest, dict) or not isinstance(group, int):
                continue
            attrs = dest.get("ATTRS")
            body = attrs.get("BODY") if isinstance(attrs, dict) else None
            flags = str(dest.get("FLAGS", "?"))
            prio = dest.get("PRIORITY")
            targets.append(
                DsTarget(
                    group=group,
                    uri=str(dest.get("URI", "")),
                    state=flags[:1].lower(),
                    priority=prio if isinstance(prio, int) else 0,
                    attrs=body if isinstance(body, str) else "",
                )
            )
    return tuple(targets)


def parse_sockets(result: Any) -> tuple[EdgeSocket, ...]:
    """corex.list_sockets answers a list of {PROTO, NAME, PORT, ADVERTISE ("-": none)}."""
    out: list[EdgeSocket] = []
    for sock in result if isinstance(result, list) else ():
        if not isinstance(sock, dict):
            continue
        proto, name, port = sock.get("PROTO"), sock.get("NAME"), str(sock.get("PORT", ""))
        if not isinstance(proto, str) or not isinstance(name, str) or not port.isdigit():
            continue
        adv = sock.get("ADVERTISE")
        advertise = adv if isinstance(adv, str) and adv not in ("", "-") else ""
        out.append(EdgeSocket(proto.lower(), sip_host(name), int(port), advertise))
    return tuple(out)


def parse_registrations(result: Any) -> tuple[Registration, ...]:
    """uac.reg_dump answers a list of records; the password stays inside Registration."""
    out: list[Registration] = []
    if not isinstance(result, list):
        return ()
    for rec in result:
        if not isinstance(rec, dict) or not isinstance(rec.get("l_uuid"), str):
            continue
        expires, flags = rec.get("expires"), rec.get("flags")
        out.append(
            Registration(
                uuid=rec["l_uuid"],
                user=str(rec.get("r_username", "")),
                domain=str(rec.get("r_domain", "")),
                proxy=str(rec.get("auth_proxy", "")),
                expires=expires if isinstance(expires, int) else 0,
                socket=str(rec.get("socket", "")),
                password=str(rec.get("auth_password", "")),
                flags=flags if isinstance(flags, int) else 0,
                contact=str(rec.get("contact_addr", "")),
            )
        )
    return tuple(out)
