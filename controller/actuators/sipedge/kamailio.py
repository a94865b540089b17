"""Kamailio SIP-edge actuator: holds a running Kamailio to lifeline's EdgePlan over JSON-RPC.

Level-triggered like the route actuator: `observe()` reads what Kamailio holds (the `did`
htable, the dispatcher sets, the per-trunk failure counters), the PURE `plan(desired,
actual)` lists only the differences, and `apply(steps)` carries them out, recording each
failed RPC instead of raising. `reconcile()` does all three, so a restarted Kamailio (empty
htable, no trunks) gets the whole plan again on the next cycle, and one already in sync
costs six read RPCs and no writes. Storage, matching examples/kamailio/kamailio.cfg: a
DID range becomes prefix-aligned blocks (sipplan.split_range), one htable key per block
("+3902123456xx" for ...00-...99), value "<dispatcher set>|<destination uri>"; the cfg
finds a number's block with a walk of at most MAX_WILD+1 hash lookups. That keeps a plan
of 100,000 DIDs in 1,000 ranges at about 1,000 keys, where one key per number would need
100,000 writes, and unlike dialplan it needs no database and changes single entries at
runtime. Trunks are dispatcher destinations that lifeline adds itself with attrs
"name=<trunk>;owner=lifeline"; only those are ever removed. States are `a` (active) or `d`
(disabled: Kamailio's pings, if any are configured, do not undo it, unlike `i`).
Registration-based trunks get one uac record each (l_uuid "lifeline-<trunk>", REGISTER to
the trunk's SBC from the edge's carrier-side socket, which the cfg publishes in the
`edgestat` htable); records lifeline did not add are left alone.
Which address a trunk's traffic leaves from and advertises (Via, Record-Route, Contact) is
the trunk's `source` (its pinned link's address, else the active link's). The reference cfg
listens on every uplink address; lifeline reads the edge's sockets (corex.list_sockets) and
writes "socket::<trunk>" = that address into the `edgecfg` htable, which the cfg turns into
the send socket of the trunk's calls, and gives each registration record that socket and a
Contact of its address (or the socket's `advertise`, behind NAT). A trunk whose source the
edge does not listen on falls back to the published carrier socket, with the source only in
the Contact, and the plan reports it. reg_dump shows socket and Contact back, so a link
failover changes the desired record and the plan removes and adds it (5.6 has no update
RPC and answers reg_add on an existing l_uuid with 409). An explicit refresh does the same
remove + add, since 5.6 has no "register now" RPC. Passwords go to Kamailio only: they
are kept out of every repr, describe() and error text here.
Boundary: the only module that speaks Kamailio's RPC; it does not decide anything.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

import aiohttp

from controller.actuators.sipedge.plan import EdgePlan, split_range

__all__ = [
    "DEFAULT_MAX_WILD",
    "REG_UUID_PREFIX",
    "AddRegistration",
    "AddTrunk",
    "ApplyResult",
    "DeleteDid",
    "DeleteSetting",
    "DsTarget",
    "EdgeActual",
    "EdgeSocket",
    "EdgeSteps",
    "KamailioActuator",
    "KamailioClient",
    "KamailioError",
    "Registration",
    "RemoveRegistration",
    "RemoveTrunk",
    "SetDid",
    "SetSetting",
    "SetTrunkState",
    "Step",
    "contact_addr",
    "desired_registrations",
    "desired_settings",
    "did_table",
    "plan",
    "refresh_steps",
    "simulate",
    "sip_host",
    "trunk_socket",
]

DID_TABLE: Final = "did"
STAT_TABLE: Final = "edgestat"
# Values lifeline sets for the cfg to read; every key in it is lifeline's.
CFG_TABLE: Final = "edgecfg"
SOCKET_PREFIX: Final = "socket::"
FAIL_PREFIX: Final = "trunk_fail::"
OWNER_ATTR: Final = "owner=lifeline"
# uac records lifeline adds: the prefix marks them as ours (only those are ever removed).
REG_UUID_PREFIX: Final = "lifeline-"
# Where the cfg publishes its carrier-side "addr:port" (event_route[htable:mod-init]).
CARRIER_KEY: Final = "edge::carrier"
REG_FLAG_REGISTERED: Final = 4
REG_FLAG_INITIALISED: Final = 16
# Must match EDGE_DID_MAX_WILD in kamailio.cfg: a block never ends in more wildcards.
DEFAULT_MAX_WILD: Final = 6


class KamailioError(Exception):
    """An RPC that failed: transport error, timeout, or an error answer from Kamailio."""

    def __init__(self, method: str, message: str, code: int | None = None) -> None:
        super().__init__(f"{method}: {message}" + (f" (code {code})" if code is not None else ""))
        self.method = method
        self.message = message
        self.code = code


class KamailioClient:
    """JSON-RPC over HTTP (jsonrpcs + xhttp), positional parameters.

    One retry on a transport error or timeout, because a Kamailio TCP worker may close an
    idle keep-alive connection under us; an error answer is not retried (it would answer
    the same). Every failure comes out as KamailioError naming the RPC.
    """

    def __init__(self, url: str, *, timeout: float = 2.0, concurrency: int = 4) -> None:
        self.url = url
        self.timeout = timeout
        self.concurrency = concurrency
        self.calls = 0  # RPCs sent, retries included: the push cost
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)

    async def __aenter__(self) -> KamailioClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.concurrency),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )
        return self._session

    async def call(self, method: str, *params: str | int) -> Any:
        body = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": next(self._ids)}
        last: Exception | None = None
        for _attempt in range(2):
            self.calls += 1
            try:
                async with self._get_session().post(self.url, json=body) as resp:
                    # jsonrpcs answers RPC errors with HTTP 500 and the JSON error object.
                    text = await resp.text()
                    try:
                        answer = json.loads(text)
                    except ValueError:
                        raise KamailioError(method, f"HTTP {resp.status}: {text[:200]!r}") from None
            except (TimeoutError, aiohttp.ClientError) as exc:
                last = exc
                continue
            if not isinstance(answer, dict):
                raise KamailioError(method, "answer is not a JSON object")
            error = answer.get("error")
            if isinstance(error, dict):
                code = error.get("code")
                raise KamailioError(
                    method,
                    str(error.get("message", "error")),
                    code if isinstance(code, int) else None,
                )
            return answer.get("result")
        raise KamailioError(method, f"no answer: {type(last).__name__}: {last}") from last


# ---------------------------------------------------------------- actual state


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
    # reg_dump then shows in its place (see _in_sync).
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


# ---------------------------------------------------------------- steps


@dataclass(frozen=True, slots=True)
class SetDid:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class DeleteDid:
    key: str


@dataclass(frozen=True, slots=True)
class SetSetting:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class DeleteSetting:
    key: str


@dataclass(frozen=True, slots=True)
class AddTrunk:
    group: int
    uri: str
    priority: int
    attrs: str


@dataclass(frozen=True, slots=True)
class RemoveTrunk:
    group: int
    uri: str


@dataclass(frozen=True, slots=True)
class SetTrunkState:
    group: int
    uri: str
    state: str  # "a" or "d"


@dataclass(frozen=True, slots=True)
class AddRegistration:
    registration: Registration

    def describe(self) -> str:
        r = self.registration
        return f"register {r.user}@{r.domain} via {r.proxy} (trunk {r.trunk})"


@dataclass(frozen=True, slots=True)
class RemoveRegistration:
    uuid: str

    def describe(self) -> str:
        return f"drop registration {self.uuid}"


Step = (
    SetDid
    | DeleteDid
    | SetSetting
    | DeleteSetting
    | AddTrunk
    | RemoveTrunk
    | SetTrunkState
    | AddRegistration
    | RemoveRegistration
)


@dataclass(frozen=True, slots=True)
class EdgeSteps:
    """Ordered so no call finds a gap: trunks exist before DIDs point at them (and have
    their socket), new blocks are written before stale ones are deleted, and trunks go last."""

    steps: tuple[Step, ...] = ()
    conflicts: tuple[str, ...] = ()  # plan problems the edge cannot express; reasons
    warnings: tuple[str, ...] = ()  # what the edge carries out only in part (see plan())

    @property
    def empty(self) -> bool:
        return not self.steps


@dataclass(frozen=True, slots=True)
class ApplyResult:
    done: int
    errors: tuple[KamailioError, ...]
    rpc_calls: int
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.errors


# ---------------------------------------------------------------- pure plan


def did_table(
    desired: EdgePlan, max_wild: int = DEFAULT_MAX_WILD
) -> tuple[dict[str, str], tuple[str, ...]]:
    """The htable content for a plan, and the conflicts found while building it.

    A route naming an unknown trunk is stored without a trunk (outbound refused) and
    reported; two routes claiming the same block keep the first, also reported.
    """
    groups = {t.name: t.group for t in desired.trunks}
    table: dict[str, str] = {}
    conflicts: list[str] = []
    for route in desired.routes:
        group = ""
        if route.trunk is not None:
            if route.trunk in groups:
                group = str(groups[route.trunk])
            else:
                conflicts.append(f"{route.first}-{route.last}: unknown trunk {route.trunk}")
        value = f"{group}|{route.destination_uri or ''}"
        try:
            keys = split_range(route.first, route.last, max_wild)
        except ValueError as exc:
            conflicts.append(f"{route.first}-{route.last}: {exc}")
            continue
        for key in keys:
            if key in table and table[key] != value:
                conflicts.append(f"{route.first}-{route.last}: block {key} already routed")
                continue
            table[key] = value
    return table, tuple(conflicts)


def _desired_targets(desired: EdgePlan) -> dict[tuple[int, str], tuple[int, str, str]]:
    """(group, uri) -> (priority, attrs, state); the first trunk of a set ranks highest."""
    by_group: dict[int, list[int]] = {}
    for i, t in enumerate(desired.trunks):
        by_group.setdefault(t.group, []).append(i)
    out: dict[tuple[int, str], tuple[int, str, str]] = {}
    for indices in by_group.values():
        for rank, i in enumerate(indices):
            t = desired.trunks[i]
            out[(t.group, t.uri)] = (
                len(indices) - rank,
                f"name={t.name};{OWNER_ATTR}",
                "a" if t.enabled else "d",
            )
    return out


def _transport(uri: str) -> str:
    for param in uri.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "transport":
            return value.strip().lower()
    return "udp"


def sip_host(addr: str) -> str:
    """An address as a SIP URI host: IPv6 in brackets."""
    return f"[{addr}]" if ":" in addr and not addr.startswith("[") else addr


def _same_host(a: str, b: str) -> bool:
    a, b = a.strip("[]"), b.strip("[]")
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return a.lower() == b.lower()


def _carrier_port(carrier: str | None) -> int | None:
    _, sep, port = (carrier or "").rpartition(":")
    return int(port) if sep and port.isdigit() else None


def contact_addr(host: str | None, carrier: str | None) -> str:
    """The "addr:port" a registration's Contact advertises, or "" for the cfg's default.

    The host is the site's current public address, the port the carrier socket's: only
    both together name where the carrier can reach the edge now.
    """
    port = _carrier_port(carrier)
    if not host or port is None:
        return ""
    return f"{sip_host(host)}:{port}"


def trunk_socket(actual: EdgeActual, source: str | None, proto: str) -> EdgeSocket | None:
    """The edge's `proto` socket on `source` for carrier traffic, if it listens there.

    UDP and TCP must be on the carrier port (the PBX side may share the address on another
    port); TLS has its own port, so the one TLS socket on that address is it.
    """
    port = _carrier_port(actual.carrier)
    if source is None or port is None or actual.sockets is None:
        return None
    on_host = [s for s in actual.sockets if s.proto == proto and _same_host(s.host, source)]
    exact = [s for s in on_host if s.port == port]
    if exact:
        return exact[0]
    return on_host[0] if len(on_host) == 1 and proto not in ("udp", "tcp") else None


def desired_settings(
    desired: EdgePlan, actual: EdgeActual
) -> tuple[dict[str, str], tuple[str, ...]]:
    """The `edgecfg` content ("socket::<trunk>" -> the address its calls leave from), and
    warnings for trunks whose source the edge has no socket on (their calls then leave from
    the cfg's default carrier socket and advertise that address)."""
    out: dict[str, str] = {}
    warnings: list[str] = []
    for t in desired.trunks:
        if t.source is None:
            continue
        proto = _transport(t.uri)
        sock = trunk_socket(actual, t.source, proto)
        if sock is not None and actual.settings is not None:
            out[SOCKET_PREFIX + t.name] = sock.host
        elif actual.sockets is not None and actual.carrier:
            where = sip_host(t.source)
            if proto in ("udp", "tcp"):
                where += f":{_carrier_port(actual.carrier)}"
            why = ("no edgecfg htable in its cfg" if sock is not None
                   else f"the edge has no {proto} socket on {where}")
            warnings.append(f"trunk {t.name}: {why}; its calls leave from {actual.carrier}")
    return out, tuple(warnings)


def desired_registrations(desired: EdgePlan, actual: EdgeActual) -> dict[str, Registration]:
    """uuid -> the record each registration-based trunk needs.

    The REGISTER leaves from the edge's socket on the trunk's source when there is one, and
    its Contact is that socket's address (or what it advertises); otherwise it leaves from
    the published carrier socket (udp/tcp only; else Kamailio picks) with the source in the
    Contact. No realm and no HA1: the challenge's realm is answered.
    """
    carrier = actual.carrier
    out: dict[str, Registration] = {}
    for t in desired.trunks:
        if t.register_user is None or t.register_domain is None:
            continue
        proto = _transport(t.uri)
        sock = trunk_socket(actual, t.source, proto)
        if sock is not None:
            socket = f"{proto}:{sock.host}:{sock.port}"
            contact = sock.advertise or f"{sock.host}:{sock.port}"
        else:
            socket = f"{proto}:{carrier}" if carrier and proto in ("udp", "tcp") else ""
            contact = contact_addr(t.source, carrier)
        uuid = REG_UUID_PREFIX + t.name
        out[uuid] = Registration(
            uuid=uuid,
            user=t.register_user,
            domain=t.register_domain,
            proxy=t.uri,
            expires=t.register_expires,
            socket=socket,
            password=t.register_password or "",
            contact=contact,
        )
    return out


def _in_sync(cur: Registration | None, want: Registration) -> bool:
    """Whether Kamailio's record is the wanted one; a wanted contact of "" is the cfg's
    default, which reg_dump shows resolved, so any contact Kamailio holds matches it."""
    if cur is None:
        return False
    if not want.contact:
        cur = replace(cur, contact="")
    return cur == want


def _registration_steps(desired: EdgePlan, actual: EdgeActual) -> list[Step]:
    want = desired_registrations(desired, actual)
    have = {r.uuid: r for r in actual.registrations}
    steps: list[Step] = []
    for uuid, reg in want.items():
        cur = have.get(uuid)
        if _in_sync(cur, reg):
            continue
        if cur is not None:
            steps.append(RemoveRegistration(uuid))  # uac has no update RPC; add answers 409
        steps.append(AddRegistration(reg))
    steps += [RemoveRegistration(u) for u, r in have.items() if r.owned and u not in want]
    return steps


def refresh_steps(
    desired: EdgePlan, actual: EdgeActual, planned: Iterable[Step] = ()
) -> tuple[Step, ...]:
    """Remove + add for each trunk in `desired.refresh_registrations` (PURE).

    Only trunks whose record Kamailio holds and `planned` does not already (re)write: a
    missing or changed record is added by the plan anyway, and removing what is not there
    would only fail. Trunks that do not register are skipped.
    """
    want = desired_registrations(desired, actual)
    have = {r.uuid for r in actual.registrations}
    touched = {
        s.registration.uuid if isinstance(s, AddRegistration) else s.uuid
        for s in planned
        if isinstance(s, AddRegistration | RemoveRegistration)
    }
    steps: list[Step] = []
    for trunk in dict.fromkeys(desired.refresh_registrations):
        uuid = REG_UUID_PREFIX + trunk
        if uuid in want and uuid in have and uuid not in touched:
            steps += [RemoveRegistration(uuid), AddRegistration(want[uuid])]
            touched.add(uuid)
    return tuple(steps)


def plan(desired: EdgePlan, actual: EdgeActual, max_wild: int = DEFAULT_MAX_WILD) -> EdgeSteps:
    """Only the differences between what Kamailio holds and the plan; nothing if in sync.

    Registration refreshes are not here: they are requests, not state Kamailio can show
    back, so `KamailioActuator.reconcile` adds `refresh_steps` once per request.
    """
    table, conflicts = did_table(desired, max_wild)
    want = _desired_targets(desired)
    have = {(t.group, t.uri): t for t in actual.targets}

    adds: list[Step] = []
    states: list[Step] = []
    removes: list[Step] = []
    for key, (priority, attrs, state) in want.items():
        cur = have.get(key)
        if cur is not None and cur.owned and (cur.priority != priority or cur.attrs != attrs):
            adds.append(RemoveTrunk(*key))  # dispatcher has no update RPC
            cur = None
        if cur is None:
            adds.append(AddTrunk(key[0], key[1], priority, attrs))
            if state != "a":  # a destination added by RPC starts active
                states.append(SetTrunkState(key[0], key[1], state))
        elif cur.state != state:
            states.append(SetTrunkState(key[0], key[1], state))
    for key, cur in have.items():
        if key not in want and cur.owned:
            removes.append(RemoveTrunk(*key))

    settings, warnings = desired_settings(desired, actual)
    held = actual.settings or {}
    configure: list[Step] = [SetSetting(k, v) for k, v in settings.items() if held.get(k) != v]
    unset: list[Step] = [DeleteSetting(k) for k in held if k not in settings]
    sets: list[Step] = [SetDid(k, v) for k, v in table.items() if actual.dids.get(k) != v]
    deletes: list[Step] = [DeleteDid(k) for k in actual.dids if k not in table]
    regs = _registration_steps(desired, actual)
    return EdgeSteps(
        tuple(adds + states + configure + sets + deletes + regs + unset + removes),
        conflicts,
        warnings,
    )


def simulate(actual: EdgeActual, steps: Iterable[Step]) -> EdgeActual:
    """What Kamailio would hold after `steps` (PURE): the model the property tests check."""
    dids = dict(actual.dids)
    settings = None if actual.settings is None else dict(actual.settings)
    targets = {(t.group, t.uri): t for t in actual.targets}
    regs = {r.uuid: r for r in actual.registrations}
    for s in steps:
        if isinstance(s, SetDid):
            dids[s.key] = s.value
        elif isinstance(s, DeleteDid):
            dids.pop(s.key, None)
        elif isinstance(s, SetSetting) and settings is not None:
            settings[s.key] = s.value
        elif isinstance(s, DeleteSetting) and settings is not None:
            settings.pop(s.key, None)
        elif isinstance(s, AddTrunk):
            targets[(s.group, s.uri)] = DsTarget(s.group, s.uri, "a", s.priority, s.attrs)
        elif isinstance(s, RemoveTrunk):
            targets.pop((s.group, s.uri), None)
        elif isinstance(s, SetTrunkState):
            cur = targets.get((s.group, s.uri))
            if cur is not None:
                targets[(s.group, s.uri)] = DsTarget(
                    cur.group, cur.uri, s.state, cur.priority, cur.attrs
                )
        elif isinstance(s, AddRegistration):
            regs.setdefault(s.registration.uuid, s.registration)  # 409 on an existing one
        elif isinstance(s, RemoveRegistration):
            regs.pop(s.uuid, None)
    return replace(
        actual, dids=dids, targets=tuple(targets.values()), registrations=tuple(regs.values()),
        settings=settings,
    )


# ---------------------------------------------------------------- parsing answers


def _parse_dump(result: Any) -> dict[str, Any]:
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


def _parse_ds_list(result: Any) -> tuple[DsTarget, ...]:
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


def _failures(stats: Mapping[str, Any]) -> dict[str, int]:
    return {
        k.removeprefix(FAIL_PREFIX): v
        for k, v in stats.items()
        if k.startswith(FAIL_PREFIX) and isinstance(v, int)
    }


def _parse_sockets(result: Any) -> tuple[EdgeSocket, ...]:
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


def _parse_registrations(result: Any) -> tuple[Registration, ...]:
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


# ---------------------------------------------------------------- actuator


class KamailioActuator:
    """observe / plan / apply / reconcile against one Kamailio's JSON-RPC endpoint.

    observe() reads the `did` htable, the dispatcher sets, the `edgestat` and `edgecfg`
    htables, the uac records and the sockets: six RPCs.
    """

    def __init__(self, client: KamailioClient, *, max_wild: int = DEFAULT_MAX_WILD) -> None:
        self.client = client
        self.max_wild = max_wild
        self._refreshed: tuple[str, ...] = ()

    async def observe(self) -> EdgeActual:
        """Read the edge; raises KamailioError when it cannot be read (then do not plan)."""
        dids_raw = _parse_dump(await self.client.call("htable.dump", DID_TABLE))
        dids = {k: v for k, v in dids_raw.items() if isinstance(v, str)}
        try:
            targets = _parse_ds_list(await self.client.call("dispatcher.list"))
        except KamailioError as exc:
            if "No Destination Sets" not in exc.message:
                raise
            targets = ()
        stats = _parse_dump(await self.client.call("htable.dump", STAT_TABLE))
        carrier = stats.get(CARRIER_KEY)
        return EdgeActual(
            dids,
            targets,
            _failures(stats),
            await self.registrations(),
            carrier if isinstance(carrier, str) and carrier else None,
            await self.settings(),
            await self.sockets(),
        )

    async def settings(self) -> dict[str, str] | None:
        """The `edgecfg` htable, or None when the cfg has none."""
        try:
            raw = _parse_dump(await self.client.call("htable.dump", CFG_TABLE))
        except KamailioError as exc:
            if exc.message == "No such htable":
                return None
            raise
        return {k: v for k, v in raw.items() if isinstance(v, str)}

    async def sockets(self) -> tuple[EdgeSocket, ...] | None:
        """The edge's listening sockets, or None without the corex module."""
        try:
            return _parse_sockets(await self.client.call("corex.list_sockets"))
        except KamailioError as exc:
            if exc.message == "Method Not Found":
                return None
            raise

    async def edge_failures(self) -> dict[str, int]:
        """INVITE failures (408/5xx/timeout) per trunk name since Kamailio started."""
        return _failures(_parse_dump(await self.client.call("htable.dump", STAT_TABLE)))

    async def registrations(self) -> tuple[Registration, ...]:
        """The uac records; none on an edge without uac registrations configured."""
        try:
            return _parse_registrations(await self.client.call("uac.reg_dump"))
        except KamailioError as exc:
            # 5.6 registers the uac RPCs only with reg_db_url set.
            if exc.message in ("Method Not Found", "Not enabled"):
                return ()
            raise

    def plan(self, desired: EdgePlan, actual: EdgeActual) -> EdgeSteps:
        return plan(desired, actual, self.max_wild)

    async def _run(self, step: Step) -> None:
        c = self.client
        if isinstance(step, SetDid):
            await c.call("htable.sets", DID_TABLE, step.key, step.value)
        elif isinstance(step, DeleteDid):
            await c.call("htable.delete", DID_TABLE, step.key)
        elif isinstance(step, SetSetting):
            await c.call("htable.sets", CFG_TABLE, step.key, step.value)
        elif isinstance(step, DeleteSetting):
            await c.call("htable.delete", CFG_TABLE, step.key)
        elif isinstance(step, AddTrunk):
            await c.call("dispatcher.add", step.group, step.uri, 0, step.priority, step.attrs)
        elif isinstance(step, RemoveTrunk):
            await c.call("dispatcher.remove", step.group, step.uri)
        elif isinstance(step, SetTrunkState):
            await c.call("dispatcher.set_state", step.state, step.group, step.uri)
        elif isinstance(step, AddRegistration):
            r = step.registration
            # 5.6 order: l_uuid, l_username, l_domain, r_username, r_domain, realm,
            # auth_username, auth_password, auth_ha1, auth_proxy, expires, flags, reg_delay,
            # socket, contact_addr ("" = the cfg's reg_contact_addr). All 15 are required.
            await c.call(
                "uac.reg_add", r.uuid, r.user, r.domain, r.user, r.domain, "",
                r.user, r.password, "", r.proxy, r.expires, 0, 0, r.socket, r.contact,
            )  # fmt: skip
        else:
            await c.call("uac.reg_remove", step.uuid)

    async def apply(self, steps: EdgeSteps | Sequence[Step]) -> ApplyResult:
        """Run the steps; htable writes go `concurrency` at a time, the rest in order.

        Never raises for a failed RPC: the error is collected and the next cycle retries.
        """
        todo = steps.steps if isinstance(steps, EdgeSteps) else tuple(steps)
        start, calls0 = time.monotonic(), self.client.calls
        errors: list[KamailioError] = []
        sem = asyncio.Semaphore(self.client.concurrency)

        async def one(step: Step) -> None:
            async with sem:
                try:
                    await self._run(step)
                except KamailioError as exc:
                    errors.append(exc)

        # Keep the order between kinds (see EdgeSteps); only runs of htable writes overlap.
        for is_did, group in itertools.groupby(
            todo, key=lambda s: isinstance(s, SetDid | DeleteDid)
        ):
            batch = list(group)
            if is_did:
                await asyncio.gather(*(one(s) for s in batch))
            else:
                for s in batch:
                    await one(s)
        return ApplyResult(
            done=len(todo) - len(errors),
            errors=tuple(errors),
            rpc_calls=self.client.calls - calls0,
            seconds=time.monotonic() - start,
        )

    async def reconcile(self, desired: EdgePlan) -> tuple[EdgeSteps, ApplyResult]:
        """One level-triggered cycle; a failed read gives an empty plan and that error.

        Registration refreshes are edge-triggered on purpose (Kamailio cannot show that a
        refresh over the new link happened): each distinct request is sent until it succeeds.
        """
        try:
            actual = await self.observe()
        except KamailioError as exc:
            return EdgeSteps(), ApplyResult(0, (exc,), 0, 0.0)
        steps = self.plan(desired, actual)
        refresh: tuple[Step, ...] = ()
        if desired.refresh_registrations and desired.refresh_registrations != self._refreshed:
            refresh = refresh_steps(desired, actual, steps.steps)
        result = await self.apply(steps.steps + refresh)
        # A request is done once no uac RPC failed, also when it needed no step of its own
        # (the record was being added anyway): re-sending it later would re-REGISTER again.
        if desired.refresh_registrations and not any(
            e.method.startswith("uac.") for e in result.errors
        ):
            self._refreshed = desired.refresh_registrations
        if not desired.refresh_registrations:
            self._refreshed = ()
        return EdgeSteps(steps.steps + refresh, steps.conflicts, steps.warnings), result
