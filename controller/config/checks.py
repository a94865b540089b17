"""Semantic checks: what no single field can see, across links, groups, trunks and DIDs.

Duplicate names, two links on one table, address families that do not match, references to
unknown links, trunks or destinations (with did-you-mean), overlapping DID ranges, timings
that contradict each other. Errors block loading; warnings (a link in no group, a trunk in
no DID entry) ride on the loaded Config. When some fields are invalid the checks still run
over the parts that validate on their own, so one run reports everything.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from pydantic import ValidationError

from controller.config.fields import ConfigModel
from controller.config.links import RULE_PRIORITY_MAX, Link, RouteGroup
from controller.config.model import Config
from controller.config.power import power_warnings
from controller.config.recordings import RecordingsConfig, recordings_checks
from controller.config.services import Service, service_checks
from controller.config.telephony import Destination, DidRange, Trunk
from controller.config.thresholds import Defaults, Thresholds
from controller.core.durations import format_duration
from controller.core.e164 import find_overlaps

_M = TypeVar("_M", bound=ConfigModel)


def semantic_checks(cfg: Config) -> tuple[list[str], list[str]]:
    """Errors and warnings of a config whose every field is valid."""
    errors, warnings = _link_checks(
        cfg.rule_priority,
        cfg.defaults,
        list(enumerate(cfg.links)),
        len(cfg.links),
        [(i, link.name) for i, link in enumerate(cfg.links)],
        list(enumerate(cfg.route_groups)),
    )
    tel_errors, tel_warnings = _telephony_checks(
        {link.name for link in cfg.links},
        list(enumerate(cfg.trunks)),
        [(i, t.name) for i, t in enumerate(cfg.trunks)],
        list(enumerate(cfg.destinations)),
        [(i, d.name) for i, d in enumerate(cfg.destinations)],
        list(enumerate(cfg.dids)),
    )
    warnings += power_warnings(cfg.power, sum(d.dr_destination is not None for d in cfg.dids))
    svc_errors, svc_warnings = service_checks(
        list(enumerate(cfg.services)), [(i, s.name) for i, s in enumerate(cfg.services)],
        {d.name for d in cfg.destinations})
    rec_errors, rec_warnings = recordings_checks(cfg.recordings, cfg.state_dir, cfg.api_socket)
    return (errors + tel_errors + svc_errors + rec_errors,
            warnings + tel_warnings + svc_warnings + rec_warnings)


def partial_semantic_checks(data: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Semantic checks over the parts of a config that validate on their own.

    Without this, fixing one typo could reveal a duplicate name that was there all along;
    the operator gets both in the first run instead.
    """
    raw_links = data.get("links")
    names = _raw_names(raw_links)
    raw_defaults = data.get("defaults", {})
    defaults = _valid(Defaults, raw_defaults if raw_defaults is not None else {})
    priority = data.get("rule_priority", 1000)
    in_range = isinstance(priority, int) and 1 <= priority <= RULE_PRIORITY_MAX
    rule_priority = priority if in_range and not isinstance(priority, bool) else None
    errors, warnings = _link_checks(
        rule_priority,
        defaults,
        _valid_items(data, "links", Link),
        len(raw_links) if isinstance(raw_links, list) else 0,
        names,
        _valid_items(data, "route_groups", RouteGroup),
    )
    tel_errors, tel_warnings = _telephony_checks(
        {name for _, name in names},
        _valid_items(data, "trunks", Trunk),
        _raw_names(data.get("trunks")),
        _valid_items(data, "destinations", Destination),
        _raw_names(data.get("destinations")),
        _valid_items(data, "dids", DidRange),
    )
    svc_errors, svc_warnings = service_checks(
        _valid_items(data, "services", Service), _raw_names(data.get("services")),
        {name for _, name in _raw_names(data.get("destinations"))})
    rec_errors, rec_warnings = _partial_recordings(data)
    return (errors + tel_errors + svc_errors + rec_errors,
            warnings + tel_warnings + svc_warnings + rec_warnings)


def _partial_recordings(data: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The recordings checks when that section is valid, against a state_dir (and
    api_socket) that is valid too; the default state_dir when it is left out."""
    rec = _valid(RecordingsConfig, data.get("recordings"))
    state_dir = data.get("state_dir", "/var/lib/lifeline")
    socket = data.get("api_socket")
    if rec is None or not isinstance(state_dir, str) or not state_dir.startswith("/"):
        return [], []
    return recordings_checks(rec, state_dir,
                             socket if isinstance(socket, str) and socket.startswith("/")
                             else None)


def _valid(model: type[_M], raw: object) -> _M | None:
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


def _valid_items(data: dict[str, Any], key: str, model: type[_M]) -> list[tuple[int, _M]]:
    raw = data.get(key)
    if not isinstance(raw, list):
        return []
    return [(i, m) for i, item in enumerate(raw) if (m := _valid(model, item)) is not None]


_DEFAULT_DSTS = ("default", "0.0.0.0/0", "::/0")


def _fam(addr: str) -> int:
    return ipaddress.ip_address(addr).version


def _check_timing(
    path: str, interval: float, timeout: float | None, th: Thresholds | None
) -> Iterator[str]:
    """Checks on one interval/timeout/thresholds set; ``path`` is where they live."""
    fmt = format_duration
    if timeout is not None and timeout > interval:
        tpath = f"{path}.timeout"
        yield (
            f"{tpath}: {fmt(timeout)} is longer than the interval {fmt(interval)} "
            "(a round must end before the next one starts)"
        )
    if th is None:
        return
    tp = f"{path.removesuffix('.probes')}.thresholds"
    if th.window < interval:
        yield f"{tp}.window: {fmt(th.window)} is shorter than the probe interval {fmt(interval)}"
    if th.flap_max_hold_down < th.hold_down:
        yield (
            f"{tp}.flap_max_hold_down: {fmt(th.flap_max_hold_down)} is below "
            f"hold_down {fmt(th.hold_down)}"
        )
    if th.degraded_loss >= th.down_loss:
        yield (f"{tp}.degraded_loss: {th.degraded_loss:g} must be below down_loss {th.down_loss:g}")


def _link_checks(
    rule_priority: int | None,
    defaults: Defaults | None,
    links: Sequence[tuple[int, Link]],
    link_count: int,
    raw_link_names: Sequence[tuple[int, str]],
    groups: Sequence[tuple[int, RouteGroup]],
) -> tuple[list[str], list[str]]:
    """Errors and warnings across defaults, links and route groups; works on whichever
    parts are valid."""
    errors: list[str] = []
    warnings: list[str] = []

    if defaults is not None:
        errors += _check_timing("defaults", defaults.interval, defaults.timeout, None)

    if rule_priority is not None and rule_priority + link_count - 1 > RULE_PRIORITY_MAX:
        errors.append(
            f"rule_priority: {rule_priority} leaves no room for {link_count} link rules "
            f"below the main table's rule at 32766"
        )

    errors += _duplicates("links", "link", raw_link_names)
    known_names = {name for _, name in raw_link_names}
    by_table: dict[int, tuple[int, Link]] = {}
    by_source: dict[str, int] = {}
    for i, link in links:
        p = f"links[{i}]"
        fam = link.family
        if link.source is not None:
            if _fam(link.source) != fam:
                errors.append(
                    f"{p}.source: {link.source} is IPv{_fam(link.source)} but the gateway "
                    f"{link.gateway} is IPv{fam}"
                )
            if (first := _first_seen(by_source, link.source, i)) is not None:
                errors.append(
                    f"{p}.source: {link.source} is also the source of "
                    f"links[{first}] (each link needs its own source rule)"
                )
        for j, addr in enumerate(link.nat_addresses):
            if _fam(addr) != fam:
                errors.append(
                    f"{p}.nat_addresses[{j}]: {addr} is IPv{_fam(addr)} but the gateway "
                    f"{link.gateway} is IPv{fam}"
                )
        for j, target in enumerate(link.probes.targets):
            if _fam(target.host) != fam:
                errors.append(
                    f"{p}.probes.targets[{j}].{target.kind}: {target.host} is "
                    f"IPv{_fam(target.host)} but the link's gateway {link.gateway} is IPv{fam}"
                )
        if link.probes.arp_gateway and fam != 4:
            errors.append(
                f"{p}.probes.arp_gateway: ARP is IPv4 only and the gateway {link.gateway} is IPv6"
            )
        if link.probes.reliability > len(link.probes.targets):
            n = len(link.probes.targets)
            errors.append(
                f"{p}.probes.reliability: {link.probes.reliability} but the link has only "
                f"{n} target{'s' if n != 1 else ''}"
            )
        inherited = defaults is not None and (link.probes.interval, link.probes.timeout) == (
            defaults.interval,
            defaults.timeout,
        )
        # A timeout inherited from a bad `defaults:` is reported there once, not per link.
        timeout = None if inherited else link.probes.timeout
        errors += _check_timing(f"{p}.probes", link.probes.interval, timeout, link.thresholds)
        if link.table in by_table:
            other_i, other = by_table[link.table]
            same_if = " on the same interface" if other.interface == link.interface else ""
            # A clash with a positional default is puzzling unless the message says so.
            why = " (100 + its position, the default)" if link.table == 101 + i else ""
            errors.append(
                f"{p}.table: table {link.table}{why} is also used by {other.name} "
                f"(links[{other_i}]){same_if}; each link needs its own table"
            )
        else:
            by_table[link.table] = (i, link)

    links_by_name = {link.name: link for _, link in links}
    group_names: dict[str, int] = {}
    routes: dict[tuple[int | None, int, str, int], tuple[int, str]] = {}
    used: set[str] = set()
    for g, group in groups:
        p = f"route_groups[{g}]"
        if (first := _first_seen(group_names, group.name, g)) is not None:
            errors.append(
                f"{p}.name: duplicate route group name {group.name} (also route_groups[{first}])"
            )
        if group.table in by_table:
            _, owner = by_table[group.table]
            errors.append(f"{p}.table: table {group.table} is link {owner.name}'s own table")
        seen: set[str] = set()
        wrong_family: list[Link] = []
        first_family: tuple[str, int] | None = None
        for k, name in enumerate(group.links):
            lp = f"{p}.links[{k}]"
            if name in seen:
                errors.append(f"{lp}: {name} is listed twice")
                continue
            seen.add(name)
            used.add(name)
            if name not in known_names and known_names:
                errors.append(f"{lp}: " + _unknown("link", name, known_names))
                continue
            member = links_by_name.get(name)
            if member is None:  # the link itself is invalid; its own errors say why
                continue
            if group.destination != "default":
                if ipaddress.ip_network(group.destination).version != member.family:
                    wrong_family.append(member)
            elif first_family is None:
                first_family = (name, member.family)
            elif first_family[1] != member.family:
                errors.append(
                    f"{lp}: {name}'s gateway is IPv{member.family} but {first_family[0]}'s is "
                    f"IPv{first_family[1]}; one route group holds one address family"
                )

        # The kernel keys a route by family too: an IPv4 and an IPv6 "default" in one table
        # are two routes (dual stack), and an IPv6 metric 0 is stored as 1024.
        if group.destination != "default":
            gfam: int | None = ipaddress.ip_network(group.destination).version
        else:
            gfam = first_family[1] if first_family is not None else None
        key = (
            gfam,
            group.table,
            "default" if group.destination in _DEFAULT_DSTS else group.destination,
            1024 if gfam == 6 and group.metric == 0 else group.metric,
        )
        if key in routes:
            other_g, other_dst = routes[key]
            same = group.destination
            if other_dst != group.destination:
                same = f"{group.destination} (as {other_dst})"
            # as in ip(8), a bare "default" reads IPv4; IPv6 is said
            family = "IPv6 " if gfam == 6 else ""
            errors.append(
                f"{p}.destination: route_groups[{other_g}] already owns {family}{same} "
                f"with metric {group.metric} in table {group.table_name}"
            )
        else:
            routes[key] = (g, group.destination)

        if wrong_family:
            dfam = ipaddress.ip_network(group.destination).version
            which = ", ".join(f"{m.name} ({m.gateway})" for m in wrong_family)
            errors.append(
                f"{p}.destination: {group.destination} is IPv{dfam} but "
                f"{'these links have' if len(wrong_family) > 1 else 'this link has'} "
                f"an IPv{wrong_family[0].family} gateway: {which}"
            )

    for i, link in links:
        if link.name not in used:
            warnings.append(
                f"links[{i}]: {link.name} is in no route group (probed and reported, "
                "never routed over)"
            )
    if not groups and links:
        warnings.append(
            "route_groups: none configured; lifeline will watch links but move no route"
        )
    return errors, warnings


def _unknown(kind: str, name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown {kind} {name!r}{hint}"


def _first_seen(first: dict[str, int], key: str, i: int) -> int | None:
    """The index ``key`` was first seen at, or None when this is it (``i`` is recorded)."""
    if key in first:
        return first[key]
    first[key] = i
    return None


def _duplicates(section: str, kind: str, names: Sequence[tuple[int, str]]) -> Iterator[str]:
    first: dict[str, int] = {}
    for i, name in names:
        if (at := _first_seen(first, name, i)) is not None:
            yield f"{section}[{i}].name: duplicate {kind} name {name} (also {section}[{at}])"


def _raw_names(raw: object) -> list[tuple[int, str]]:
    if not isinstance(raw, list):
        return []
    return [
        (i, item["name"])
        for i, item in enumerate(raw)
        if isinstance(item, dict) and isinstance(item.get("name"), str)
    ]


def _telephony_checks(
    link_names: set[str],
    trunks: Sequence[tuple[int, Trunk]],
    raw_trunk_names: Sequence[tuple[int, str]],
    destinations: Sequence[tuple[int, Destination]],
    raw_destination_names: Sequence[tuple[int, str]],
    dids: Sequence[tuple[int, DidRange]],
) -> tuple[list[str], list[str]]:
    """Errors and warnings across trunks, destinations and the DID plan."""
    errors: list[str] = []
    warnings: list[str] = []
    errors += _duplicates("trunks", "trunk", raw_trunk_names)
    errors += _duplicates("destinations", "destination", raw_destination_names)
    trunk_names = {name for _, name in raw_trunk_names}
    dest_names = {name for _, name in raw_destination_names}

    for i, trunk in trunks:
        p = f"trunks[{i}]"
        seen: set[str] = set()
        for k, name in enumerate(trunk.links):
            if name in seen:
                errors.append(f"{p}.links[{k}]: {name} is listed twice")
            elif name not in link_names and link_names:
                errors.append(f"{p}.links[{k}]: " + _unknown("link", name, link_names))
            seen.add(name)
        if trunk.pinned and not trunk.links:
            errors.append(f"{p}.pinned: a pinned trunk needs links (it uses the first one)")
        errors += _check_timing(p, trunk.interval, trunk.timeout, trunk.thresholds)
        if trunk.recheck_interval > trunk.interval:
            errors.append(
                f"{p}.recheck_interval: {format_duration(trunk.recheck_interval)} is longer "
                f"than the interval {format_duration(trunk.interval)} (it is the faster pace "
                "that confirms a lost OPTIONS)")

    carrier_of = {trunk.name: trunk.carrier for _, trunk in trunks}
    used: set[str] = set()
    for i, did in dids:
        p = f"dids[{i}]"
        seen = set()
        for k, name in enumerate(did.trunks):
            used.add(name)
            if name in seen:
                errors.append(f"{p}.trunks[{k}]: {name} is listed twice")
            elif name not in trunk_names:
                errors.append(f"{p}.trunks[{k}]: " + _unknown("trunk", name, trunk_names))
            seen.add(name)
        if did.destination not in dest_names:
            errors.append(
                f"{p}.destination: " + _unknown("destination", did.destination, dest_names)
            )
        if did.dr_destination is not None:
            if did.dr_destination not in dest_names:
                errors.append(
                    f"{p}.dr_destination: "
                    + _unknown("destination", did.dr_destination, dest_names)
                )
            elif did.dr_destination == did.destination:
                warnings.append(
                    f"{p}.dr_destination: same as destination {did.destination}; "
                    "this range has no disaster-recovery fallback"
                )
        carriers = list(dict.fromkeys(carrier_of[t] for t in did.trunks if t in carrier_of))
        if len(carriers) > 1 and not did.verified_cli:
            warnings.append(
                f"{p}.trunks: trunks of carriers {', '.join(carriers)} without "
                "verified_cli: true; a carrier that does not hold these numbers rejects "
                "them as caller ID (or attests them low) unless it has verified them"
            )

    ranges = [did.numbers for _, did in dids]
    for later, earlier in sorted(find_overlaps(ranges)):
        li, ei = dids[later][0], dids[earlier][0]
        errors.append(
            f"dids[{li}].numbers: {ranges[later]} overlaps dids[{ei}] ({ranges[earlier]})"
        )

    for i, trunk in trunks:
        if dids and trunk.name not in used:
            warnings.append(
                f"trunks[{i}]: {trunk.name} is in no DID entry (probed and reported, "
                "carries no number)"
            )
    return errors, warnings
