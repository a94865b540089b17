"""What must change on a Kamailio edge for it to hold an EdgePlan (PURE: no I/O, no clock).

`plan(desired, actual)` lists only the differences between what Kamailio holds (answers.py)
and the plan, as small frozen steps the actuator turns into RPCs; `simulate` is what
Kamailio would hold after them, the model the property tests check apply-then-plan against.
Storage, matching examples/kamailio/kamailio.cfg: a DID range becomes prefix-aligned blocks
(sipedge.plan.split_range), one key per block in the `did` htable ("+3902123456xx" for
...00-...99), value "<sets>|<destination uri>" where <sets> is the dispatcher set of the
range's trunk, then those of its in-call fallback, joined by ":" ("3:1"); the cfg finds a
number's block with a walk of at most MAX_WILD+1 hash lookups, sends the call to the first
set and, only if it fails there, tries the next. That keeps a plan of 100,000 DIDs in
1,000 ranges at about 1,000 keys, where one key per number would need 100,000 writes, and
unlike dialplan it needs no database and changes single entries at runtime.
Every trunk is a dispatcher set of its own (`trunk_sets`: the number it already has at the
edge, else the lowest unused one), so the range's value alone decides where its calls
go: a carrier-wide set chosen by priority would send calls to a trunk the plan left
(tripped by the edge's failure signal, in maintenance, second in a range's order), as it
did before. Trunks are dispatcher
destinations that lifeline adds itself with attrs "name=<trunk>;owner=lifeline"; only
those are ever removed. States are `a` (active: some range names the trunk) or `d`
(disabled: Kamailio's pings, if any are configured, do not undo it, unlike `i`), a second
guard behind the ranges' values. Registration-based trunks get one uac
record each (l_uuid "lifeline-<trunk>", REGISTER to the trunk's SBC from the edge's
carrier-side socket, which the cfg publishes in the `edgestat` htable); records lifeline
did not add are left alone.
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
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Final

from controller.actuators.sipedge.kamailio.answers import (
    OWNER_ATTR,
    REG_UUID_PREFIX,
    DsTarget,
    EdgeActual,
    EdgeSocket,
    Registration,
    sip_host,
)
from controller.actuators.sipedge.plan import EdgePlan, named_trunks, split_range

__all__ = [
    "DEFAULT_MAX_WILD",
    "AddRegistration",
    "AddTrunk",
    "DeleteDid",
    "DeleteSetting",
    "EdgeSteps",
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
    "hazard",
    "phases",
    "plan",
    "refresh_steps",
    "simulate",
    "trunk_sets",
    "trunk_socket",
]

# Values lifeline sets for the cfg to read in the `edgecfg` htable; every key there is
# lifeline's.
SOCKET_PREFIX: Final = "socket::"
# Must match EDGE_DID_MAX_WILD in kamailio.cfg: a block never ends in more wildcards.
DEFAULT_MAX_WILD: Final = 6


# ---------------------------------------------------------------- steps


@dataclass(frozen=True, slots=True)
class SetDid:
    key: str
    value: str

    def describe(self) -> str:
        return f"route DID block {self.key} to {self.value}"


@dataclass(frozen=True, slots=True)
class DeleteDid:
    key: str

    def describe(self) -> str:
        return f"drop DID block {self.key}"


@dataclass(frozen=True, slots=True)
class SetSetting:
    key: str
    value: str

    def describe(self) -> str:
        return f"set {self.key} = {self.value}"


@dataclass(frozen=True, slots=True)
class DeleteSetting:
    key: str

    def describe(self) -> str:
        return f"unset {self.key}"


@dataclass(frozen=True, slots=True)
class AddTrunk:
    group: int
    uri: str
    priority: int
    attrs: str

    def describe(self) -> str:
        return f"add trunk {self.uri} to set {self.group} (priority {self.priority}, {self.attrs})"


@dataclass(frozen=True, slots=True)
class RemoveTrunk:
    group: int
    uri: str

    def describe(self) -> str:
        return f"remove trunk {self.uri} from set {self.group}"


@dataclass(frozen=True, slots=True)
class SetTrunkState:
    group: int
    uri: str
    state: str  # "a" or "d"

    def describe(self) -> str:
        verb = "enable" if self.state == "a" else "disable"
        return f"{verb} trunk {self.uri} in set {self.group}"


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
    """Ordered so no call finds a gap: trunks exist and are enabled before DIDs point at
    them (and have their socket), new blocks are written before stale ones are deleted,
    trunks are disabled only once no block names them, and removed last."""

    steps: tuple[Step, ...] = ()
    conflicts: tuple[str, ...] = ()  # plan problems the edge cannot express; reasons
    warnings: tuple[str, ...] = ()  # what the edge carries out only in part (see plan())

    @property
    def empty(self) -> bool:
        return not self.steps

    def describe(self) -> str:
        """One line per change, conflict and warning (the journal's and a dry run's words)."""
        if not (self.steps or self.conflicts or self.warnings):
            return "kamailio: in sync, nothing to change"
        return "\n".join(
            [s.describe() for s in self.steps]
            + [f"CONFLICT {c}" for c in self.conflicts]
            + [f"WARNING {w}" for w in self.warnings]
        )


# ---------------------------------------------------------------- pure plan


# Separates the dispatcher sets in a `did` value: neither a digit nor s.select's ",".
SET_SEPARATOR: Final = ":"


def trunk_sets(desired: EdgePlan, actual: EdgeActual | None = None) -> dict[str, int]:
    """Each trunk's own dispatcher set.

    A trunk lifeline already put in a set keeps that number: every DID block that uses the
    trunk names its set, so renumbering would point blocks at a set holding another trunk
    until they are rewritten. A trunk without one gets the lowest number no destination of
    the edge uses yet (on an empty edge: its position in the plan + 1). So removing or
    reordering trunks in the config renumbers nothing.
    """
    targets = actual.targets if actual is not None else ()
    used = {t.group for t in targets}
    out: dict[str, int] = {}
    taken: set[int] = set()
    wanted = {t.name for t in desired.trunks}
    for t in targets:
        name = t.name
        if t.owned and name in wanted and name not in out and t.group not in taken:
            out[name] = t.group
            taken.add(t.group)
    free = 1
    for trunk in desired.trunks:
        if trunk.name in out:
            continue
        while free in used or free in taken:
            free += 1
        out[trunk.name] = free
        taken.add(free)
    return {t.name: out[t.name] for t in desired.trunks}


def did_table(
    desired: EdgePlan, max_wild: int = DEFAULT_MAX_WILD, sets: dict[str, int] | None = None
) -> tuple[dict[str, str], tuple[str, ...]]:
    """The htable content for a plan, and the conflicts found while building it.

    A route naming an unknown trunk is stored without it (outbound calls refused when it
    was the route's trunk, the fallback shortened otherwise) and reported; two routes
    claiming the same block keep the first, also reported.
    """
    sets = trunk_sets(desired) if sets is None else sets
    table: dict[str, str] = {}
    conflicts: list[str] = []
    for route in desired.routes:
        chain: list[str] = []
        names = () if route.trunk is None else (route.trunk, *route.fallback)
        for k, name in enumerate(names):
            if name not in sets:
                conflicts.append(f"{route.first}-{route.last}: unknown trunk {name}")
                if k == 0:
                    break  # never promote a fallback to the range's trunk
                continue
            chain.append(str(sets[name]))
        value = f"{SET_SEPARATOR.join(chain)}|{route.destination_uri or ''}"
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


# Each set holds one trunk, so priority orders nothing; one fixed value keeps it in sync.
TRUNK_PRIORITY: Final = 1


def _desired_targets(desired: EdgePlan, sets: dict[str, int]
                     ) -> dict[tuple[int, str], tuple[int, str, str]]:
    """(set, uri) -> (priority, attrs, state): one set per trunk, active iff a route names
    it."""
    named = named_trunks(desired.routes)
    return {
        (sets[t.name], t.uri): (TRUNK_PRIORITY, f"name={t.name};{OWNER_ATTR}",
                                "a" if t.name in named else "d")
        for t in desired.trunks
    }


def _transport(uri: str) -> str:
    for param in uri.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "transport":
            return value.strip().lower()
    return "udp"


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
    sets = trunk_sets(desired, actual)
    table, conflicts = did_table(desired, max_wild, sets)
    want = _desired_targets(desired, sets)
    have = {(t.group, t.uri): t for t in actual.targets}

    adds: list[Step] = []
    enables: list[Step] = []
    disables: list[Step] = []
    removes: list[Step] = []
    for key, (priority, attrs, state) in want.items():
        cur = have.get(key)
        # The priority orders nothing in a one-trunk set: an old one is left as it is
        # (replacing it would leave the set empty for a moment).
        if cur is not None and cur.owned and cur.attrs != attrs:
            adds.append(RemoveTrunk(*key))  # dispatcher has no update RPC
            cur = None
        if cur is None:
            adds.append(AddTrunk(key[0], key[1], priority, attrs))
            if state != "a":  # a destination added by RPC starts active
                disables.append(SetTrunkState(key[0], key[1], state))
        elif cur.state != state:
            (enables if state == "a" else disables).append(SetTrunkState(key[0], key[1], state))
    for key, cur in have.items():
        if key not in want and cur.owned:
            removes.append(RemoveTrunk(*key))

    settings, warnings = desired_settings(desired, actual)
    warnings += _strangers(sets, actual)
    held = actual.settings or {}
    configure: list[Step] = [SetSetting(k, v) for k, v in settings.items() if held.get(k) != v]
    unset: list[Step] = [DeleteSetting(k) for k in held if k not in settings]
    writes: list[Step] = [SetDid(k, v) for k, v in table.items() if actual.dids.get(k) != v]
    deletes: list[Step] = [DeleteDid(k) for k in actual.dids if k not in table]
    regs = _registration_steps(desired, actual)
    return EdgeSteps(
        tuple(adds + enables + configure + writes + deletes + disables + regs + unset
              + removes),
        conflicts,
        warnings,
    )


def _strangers(sets: dict[str, int], actual: EdgeActual) -> tuple[str, ...]:
    """Destinations lifeline did not add, in a set it uses for a trunk: the cfg picks by
    priority inside a set, so such an entry may take the trunk's calls. Left alone (not
    ours to remove), and reported."""
    names = {group: name for name, group in sets.items()}
    return tuple(
        f"set {t.group} (trunk {names[t.group]}) also holds {t.uri}, which lifeline did not "
        "add: calls of that trunk may go there"
        for t in actual.targets if not t.owned and t.group in names
    )


def _active_sets(state: EdgeActual) -> frozenset[int]:
    return frozenset(t.group for t in state.targets if t.state == "a")


def _routes_somewhere(active: frozenset[int], chain: str) -> bool:
    """Whether a `did` value's chain of sets has an active destination (``active``) in some
    set."""
    return any(g.isdigit() and int(g) in active for g in chain.split(SET_SEPARATOR))


def hazard(state: EdgeActual, step: Step) -> str | None:
    """Why running `step` on `state` would leave calls with no trunk, or None (PURE).

    The plan's order makes every step safe when all of them take; asked only once a step
    of the same apply has failed: a block is not pointed at sets whose trunks were not
    added or enabled, and a trunk is not disabled or removed while a block that still
    names it (its rewrite failed) would be left with none.
    """
    if isinstance(step, SetDid):
        chain = step.value.partition("|")[0]
        if chain and not _routes_somewhere(_active_sets(state), chain):
            return f"no active trunk in set(s) {chain} yet"
    elif isinstance(step, RemoveTrunk) or (isinstance(step, SetTrunkState)
                                           and step.state != "a"):
        now, after = _active_sets(state), _active_sets(simulate(state, (step,)))
        for key, value in state.dids.items():
            chain = value.partition("|")[0]
            if _routes_somewhere(now, chain) and not _routes_somewhere(after, chain):
                return f"DID block {key} still sends its calls there"
    return None


def phases(steps: tuple[Step, ...]) -> tuple[tuple[Step, ...], ...]:
    """The plan's steps in three phases: what DID blocks will name (trunks, states,
    settings), the blocks, then what they no longer name. A failure in one phase is what
    `hazard` guards the next ones against."""
    did = [i for i, s in enumerate(steps) if isinstance(s, SetDid | DeleteDid)]
    if not did:
        return (steps,)
    return steps[:did[0]], steps[did[0]:did[-1] + 1], steps[did[-1] + 1:]


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


