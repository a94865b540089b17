"""The site part of lifeline's reference SIP edge, as file texts (PURE: no I/O).

examples/kamailio/kamailio.cfg holds no site value: it includes ``lifeline-site.cfg`` from
its own directory, whose ``#!substdef`` lines give its EDGE_* names this site's values (the
uplink addresses it listens on, the PBX-side socket, the JSON-RPC port lifeline pushes to,
the paths of its other files). This module turns lifeline's config into that file, plus the
files the cfg needs to exist: an empty dispatcher list (lifeline adds the trunks at
runtime) and the db_text directory of the uac registrations. So lifeline and its edge agree
by construction: the RPC port is the one of ``sip_edge.kamailio.rpc_url``, the uplinks are
the links' sources, the DID lookup depth is the planner's. Which addresses the links have
now is the caller's to find (sources not configured are looked up on the interfaces);
writing the files is sitefiles.py's. Values in, texts out: it reads no file and no
interface.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Final
from urllib.parse import urlsplit

from controller.actuators.sipedge.kamailio.planner import DEFAULT_MAX_WILD
from controller.config import Config
from controller.config.telephony import KamailioEdge

__all__ = [
    "CFG_FILE",
    "DS_LIST_FILE",
    "MARKER",
    "REG_DB_DIR",
    "SITE_FILE",
    "EdgeSite",
    "SiteError",
    "SiteFile",
    "defines",
    "link_sources",
    "site_file",
    "site_files",
    "site_from_config",
]

CFG_FILE: Final = "kamailio.cfg"
SITE_FILE: Final = "lifeline-site.cfg"
DS_LIST_FILE: Final = "dispatcher.list"
REG_DB_DIR: Final = "db"
TLS_CFG_FILE: Final = "tls.cfg"
# The first line of every site file lifeline writes: a file without it is someone else's
# and is never overwritten.
MARKER: Final = "# Written by `lifeline edge-config`"

_K = KamailioEdge()

# What a #!substdef value may hold: its own delimiters ("!" and the quotes around it), a
# backslash (an escape in the replacement) and line breaks would end or change it.
_SAFE_PATH = re.compile(r"/[A-Za-z0-9._/+,:@=-]*")

# The db_text tables of the uac registrations, as Kamailio 5.6's db_text reads them: a
# header line of typed columns, then rows. `version` says which schema `uacreg` has (5);
# `uacreg` starts empty (lifeline adds its records at runtime through uac.reg_add).
_REG_DB: Final = {
    "version": "id(int,auto) table_name(string) table_version(int) \n0:uacreg:5\n",
    "uacreg": (
        "id(int,auto) l_uuid(string) l_username(string) l_domain(string) r_username(string) "
        "r_domain(string) realm(string) auth_username(string) auth_password(string) "
        "auth_ha1(string) auth_proxy(string) expires(int) flags(int) reg_delay(int) "
        "contact_addr(string) socket(string) \n"
    ),
}

_DS_LIST: Final = (
    "# Dispatcher destinations of lifeline's reference SIP edge. Kept empty on purpose:\n"
    "# lifeline adds every trunk at runtime (dispatcher.add, attrs owner=lifeline) and\n"
    "# removes only its own; the file only has to exist for Kamailio to start.\n"
)


class SiteError(ValueError):
    """A site the reference edge cannot be set up for; the message says what to change."""


@dataclass(frozen=True, slots=True)
class SiteFile:
    """One file of the edge's directory: its path in that directory and its text.
    ``replace``: rewritten on every run (lifeline's own); else written only when missing
    (a db_text table or a list may hold rows an operator added)."""

    path: PurePosixPath
    text: str
    replace: bool = False


def _host(addr: str) -> str:
    """An address as Kamailio writes a host in listen= and in a socket: IPv6 in brackets."""
    return f"[{addr}]" if ":" in addr else addr


@dataclass(frozen=True, slots=True)
class EdgeSite:
    """The values of the reference edge's EDGE_* names for one site (see kamailio.cfg).

    ``confdir`` is the directory kamailio.cfg runs from (paths in the site file are
    absolute under it); ``uplinks`` are every link's source address, one carrier-side
    socket each, the first being where calls leave from until lifeline names another.
    """

    confdir: PurePosixPath
    uplinks: tuple[str, ...]
    carrier_port: int = _K.carrier_port
    carrier_tls_port: int = _K.carrier_tls_port
    pbx_address: str = _K.pbx_address
    pbx_port: int = _K.pbx_port
    rpc_port: int = _K.rpc_port
    trunk_failover: bool = _K.trunk_failover
    tls: bool = False  # a trunk is reached over TLS: the edge listens with TLS too
    tls_config: PurePosixPath | None = None  # the tls module's file; None: confdir/tls.cfg
    max_wild: int = DEFAULT_MAX_WILD
    config_path: str = field(default="", compare=False)  # lifeline's config, for the header

    def __post_init__(self) -> None:
        if not self.uplinks:
            raise SiteError("no uplink address: the edge needs a carrier-side socket")
        for path in (self.confdir, self.tls_path):
            if not path.is_absolute() or not _SAFE_PATH.fullmatch(str(path)):
                raise SiteError(f"{path}: Kamailio's #!substdef cannot hold this path; use an "
                                "absolute path of letters, digits and . _ / + , : @ = -")
        _check_sockets(self)

    @property
    def tls_path(self) -> PurePosixPath:
        return self.tls_config or self.confdir / TLS_CFG_FILE

    @property
    def carrier(self) -> str:
        return self.uplinks[0]


def _check_sockets(site: EdgeSite) -> None:
    """Two of the edge's sockets on one address and port (TCP and TLS share the TCP ports)
    would stop Kamailio at start, or send carriers' calls into the PBX route."""
    seen: dict[tuple[str, str, int], str] = {}
    want: list[tuple[tuple[str, ...], str, int, str]] = []
    for addr in site.uplinks:
        want.append((("udp", "tcp"), addr, site.carrier_port, f"carrier side on {addr}"))
        if site.tls:
            want.append((("tcp",), addr, site.carrier_tls_port, f"carrier TLS side on {addr}"))
    want.append((("udp", "tcp"), site.pbx_address, site.pbx_port, "PBX side"))
    want.append((("tcp",), "127.0.0.1", site.rpc_port, "JSON-RPC (rpc_url)"))
    for protos, addr, port, what in want:
        for proto in protos:
            other = seen.setdefault((proto, addr, port), what)
            if other != what:
                raise SiteError(f"the {what} and the {other} would both be "
                                f"{proto}:{_host(addr)}:{port}: give sip_edge.kamailio "
                                "another port for one of them")


def defines(site: EdgeSite) -> dict[str, str]:
    """Each EDGE_* name of the reference cfg and its value, in the file's order."""
    hosts = [_host(a) for a in site.uplinks]
    return {
        "EDGE_UPLINK_ADDRS": hosts[0] if len(hosts) == 1 else "(" + ", ".join(hosts) + ")",
        "EDGE_CARRIER_ADDR": _host(site.carrier),
        "EDGE_CARRIER_PORT": str(site.carrier_port),
        "EDGE_CARRIER_TLS_PORT": str(site.carrier_tls_port),
        "EDGE_PBX_ADDR": site.pbx_address,
        "EDGE_PBX_PORT": str(site.pbx_port),
        "EDGE_RPC_PORT": str(site.rpc_port),
        "EDGE_DID_MAX_WILD": str(site.max_wild),
        "EDGE_DS_LIST": str(site.confdir / DS_LIST_FILE),
        "EDGE_REG_DB_URL": f"text://{site.confdir / REG_DB_DIR}",
        "EDGE_TRUNK_FAILOVER": "1" if site.trunk_failover else "0",
        "EDGE_TLS_CFG": str(site.tls_path),
    }


_WHY: Final = {
    "EDGE_UPLINK_ADDRS": "every link's source address: one carrier-side socket each",
    "EDGE_CARRIER_ADDR": "the first link's: calls leave from it until lifeline names another",
    "EDGE_CARRIER_PORT": "sip_edge.kamailio.carrier_port (UDP and TCP)",
    "EDGE_CARRIER_TLS_PORT": "sip_edge.kamailio.carrier_tls_port (only with WITH_TLS)",
    "EDGE_PBX_ADDR": "sip_edge.kamailio.pbx_address: the socket facing the PBX",
    "EDGE_PBX_PORT": "sip_edge.kamailio.pbx_port",
    "EDGE_RPC_PORT": "the port of sip_edge.kamailio.rpc_url, on 127.0.0.1 only",
    "EDGE_DID_MAX_WILD": "lifeline's DID blocks end in at most this many wildcard digits",
    "EDGE_DS_LIST": "the dispatcher list: must exist, stays empty",
    "EDGE_REG_DB_URL": "db_text directory of the uac registrations",
    "EDGE_TRUNK_FAILOVER": "sip_edge.kamailio.trunk_failover: a failed call tries the next trunk",
    "EDGE_TLS_CFG": "the tls module's certificates and CAs (only with WITH_TLS)",
}


def site_file(site: EdgeSite) -> str:
    """The text of lifeline-site.cfg: a header, then one ``#!substdef`` per EDGE_* name."""
    source = f" from {site.config_path}" if site.config_path else ""
    lines = [
        f"{MARKER}{source}.",
        "# This site's values for lifeline's reference SIP edge: kamailio.cfg, next to this",
        "# file, includes it. Change the links or sip_edge.kamailio in lifeline's config and",
        "# run `lifeline edge-config` again rather than editing here: it rewrites this file.",
    ]
    for name, value in defines(site).items():
        lines += [f"# {_WHY[name]}", f'#!substdef "!{name}!{value}!g"']
    if site.tls:
        lines += ["# A trunk is reached over TLS: listen with TLS too (needs the Debian package",
                  "# kamailio-tls-modules and this site's certificate in EDGE_TLS_CFG).",
                  "#!trydef WITH_TLS"]
    return "\n".join(lines) + "\n"


def site_files(site: EdgeSite) -> tuple[SiteFile, ...]:
    """Every file the reference cfg needs beside itself, in the order to write them."""
    db = PurePosixPath(REG_DB_DIR)
    return (
        SiteFile(PurePosixPath(SITE_FILE), site_file(site), replace=True),
        SiteFile(PurePosixPath(DS_LIST_FILE), _DS_LIST),
        *(SiteFile(db / name, text) for name, text in _REG_DB.items()),
    )


def link_sources(cfg: Config, found: Mapping[str, Sequence[str]] | None) -> tuple[str, ...]:
    """Every link's source address in config order, duplicates once: the configured one,
    else the one ``Link.source_from`` picks from ``found`` (interface -> ``addr/prefix``
    now; None: not looked up). A link with neither is an error naming what to set."""
    out: list[str] = []
    for i, link in enumerate(cfg.links):
        source = link.source
        if source is None:
            where = f"links[{i}] ({link.name})"
            if found is None or link.interface not in found:
                raise SiteError(f"{where} has no source and interface {link.interface} does "
                                f"not exist here: set links[{i}].source to the site's address "
                                "on that link (the edge listens on it)")
            source = link.source_from(found[link.interface])
            if source is None:
                family = "IPv6" if ":" in link.gateway else "IPv4"
                raise SiteError(f"{where} has no source and {link.interface} has no {family} "
                                f"address now: set links[{i}].source to the site's address on "
                                "that link (the edge listens on it)")
        if source not in out:
            out.append(source)
    return tuple(out)


def _rpc_port(edge: KamailioEdge) -> int:
    """The RPC port, refusing a URL the reference cfg does not serve (plain HTTP on
    127.0.0.1, path /RPC): lifeline would push to where no edge answers."""
    url = urlsplit(edge.rpc_url)
    if url.scheme != "http" or url.hostname != "127.0.0.1" or not url.path.startswith("/RPC"):
        raise SiteError(f"sip_edge.kamailio.rpc_url {edge.rpc_url} is not where the reference "
                        "edge serves JSON-RPC: it listens on http://127.0.0.1:PORT/RPC only "
                        "(e.g. the default, http://127.0.0.1:5071/RPC)")
    return edge.rpc_port


def site_from_config(cfg: Config, uplinks: Sequence[str], confdir: PurePosixPath,
                     config_path: str = "") -> EdgeSite:
    """The reference edge of ``cfg``'s site (``uplinks`` from ``link_sources``)."""
    edge = cfg.sip_edge.kamailio
    if edge is None:
        raise SiteError("the config has no sip_edge.kamailio, so lifeline would push the DID "
                        "plan to no Kamailio: add `sip_edge: {kamailio: {}}` (the defaults "
                        "fit the reference edge)")
    return EdgeSite(
        confdir=confdir,
        uplinks=tuple(str(ipaddress.ip_address(a)) for a in uplinks),
        carrier_port=edge.carrier_port,
        carrier_tls_port=edge.carrier_tls_port,
        pbx_address=edge.pbx_address,
        pbx_port=edge.pbx_port,
        rpc_port=_rpc_port(edge),
        trunk_failover=edge.trunk_failover,
        tls=any(t.sip_uri.transport == "tls" for t in cfg.trunks),
        config_path=config_path,
    )
