"""The reference edge's site file: lifeline's config in, the EDGE_* values Kamailio reads out.

The values must be the ones lifeline itself uses (the RPC port of rpc_url, the links'
sources, the planner's DID depth), cover every EDGE_* name the reference cfg uses, and be
written so Kamailio's preprocessor reads them back unchanged: IPv6 in brackets in listen=,
nothing that ends a ``#!substdef`` early. Writing them never clobbers an operator's file.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from controller.actuators.sipedge.kamailio.planner import DEFAULT_MAX_WILD
from controller.actuators.sipedge.kamailio.sitecfg import (
    MARKER,
    EdgeSite,
    SiteError,
    defines,
    link_sources,
    site_file,
    site_files,
    site_from_config,
)
from controller.actuators.sipedge.kamailio.sitefiles import install, preview
from controller.config import Config, parse_config

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_CFG = ROOT / "examples" / "kamailio" / "kamailio.cfg"
ETC = PurePosixPath("/etc/kamailio")
SUBSTDEF = re.compile(r'#!substdef "!(EDGE_[A-Z_]+)!([^!"\\\n]*)!g"')


def config(edge: dict[str, Any] | None = None, **extra: Any) -> Config:
    """Two IPv4 links with sources, one trunk over UDP, a Kamailio edge."""
    probes = {"targets": [{"icmp": "192.0.2.1"}]}
    data: dict[str, Any] = {
        "site": "s",
        "links": [
            {"name": "fibre-a", "interface": "wan-a", "gateway": "198.51.100.1",
             "source": "198.51.100.2", "probes": probes},
            {"name": "fibre-b", "interface": "wan-b", "gateway": "203.0.113.1",
             "source": "203.0.113.2", "probes": probes},
        ],
        "trunks": [{"name": "a1", "carrier": "a", "uri": "sip:192.0.2.10"}],
        "sip_edge": {"kamailio": edge or {}},
    }
    data.update(extra)
    return parse_config(yaml.safe_dump(data))


def site_of(cfg: Config) -> EdgeSite:
    return site_from_config(cfg, link_sources(cfg, None), ETC)


# ------------------------------------------------------------------------ the values


def test_defaults_give_the_values_lifeline_itself_uses() -> None:
    cfg = config()
    values = defines(site_of(cfg))
    assert values == {
        "EDGE_UPLINK_ADDRS": "(198.51.100.2, 203.0.113.2)",
        "EDGE_CARRIER_ADDR": "198.51.100.2",
        "EDGE_CARRIER_PORT": "5060",
        "EDGE_CARRIER_TLS_PORT": "5061",
        "EDGE_PBX_ADDR": "127.0.0.1",
        "EDGE_PBX_PORT": "5070",
        "EDGE_RPC_PORT": "5071",
        "EDGE_DID_MAX_WILD": str(DEFAULT_MAX_WILD),
        "EDGE_DS_LIST": "/etc/kamailio/dispatcher.list",
        "EDGE_REG_DB_URL": "text:///etc/kamailio/db",
        "EDGE_TRUNK_FAILOVER": "1",
        "EDGE_TLS_CFG": "/etc/kamailio/tls.cfg",
    }
    # The RPC port is the one the daemon pushes to, whatever the default becomes.
    assert cfg.sip_edge.kamailio is not None
    assert values["EDGE_RPC_PORT"] == str(cfg.sip_edge.kamailio.rpc_port)


def test_every_edge_name_the_reference_cfg_uses_gets_a_value() -> None:
    code = "\n".join(line for line in REFERENCE_CFG.read_text().splitlines()
                     if not line.lstrip().startswith("#"))
    used = set(re.findall(r"\bEDGE_[A-Z_]+\b", code))
    assert used, "the cfg uses EDGE_* names outside comments"
    assert used == set(defines(site_of(config())))


def test_the_reference_cfg_includes_the_site_file_and_holds_no_value_itself() -> None:
    text = REFERENCE_CFG.read_text()
    assert not [line for line in text.splitlines() if line.startswith("#!substdef")]
    lines = text.splitlines()
    first_listen = next(i for i, line in enumerate(lines) if line.startswith("listen="))
    assert lines.index('include_file "lifeline-site.cfg"') < first_listen


def test_sip_edge_fields_reach_the_file() -> None:
    cfg = config({"rpc_url": "http://127.0.0.1:6001/RPC", "carrier_port": 5080,
                  "carrier_tls_port": 5081, "pbx_address": "192.0.2.129", "pbx_port": 5060,
                  "trunk_failover": False})
    values = defines(site_of(cfg))
    assert values["EDGE_RPC_PORT"] == "6001"
    assert values["EDGE_CARRIER_PORT"] == "5080"
    assert values["EDGE_CARRIER_TLS_PORT"] == "5081"
    assert (values["EDGE_PBX_ADDR"], values["EDGE_PBX_PORT"]) == ("192.0.2.129", "5060")
    assert values["EDGE_TRUNK_FAILOVER"] == "0"


def test_one_uplink_is_a_plain_address_and_a_shared_source_listens_once() -> None:
    assert defines(EdgeSite(ETC, ("198.51.100.2",)))["EDGE_UPLINK_ADDRS"] == "198.51.100.2"
    # Two links found on one interface (neither names a source) pick the same address.
    cfg = _no_source(_no_source(config(), 0), 1)
    links = [link.model_dump(exclude_none=True) for link in cfg.links]
    links[1].update(interface="wan-a", gateway="198.51.100.3")
    shared = config(links=links)
    assert link_sources(shared, {"wan-a": ["198.51.100.2/24"]}) == ("198.51.100.2",)


def test_ipv6_uplinks_are_bracketed_as_listen_wants_them() -> None:
    site = EdgeSite(ETC, ("2001:db8:a::2", "198.51.100.2", "2001:db8:b::2"))
    values = defines(site)
    assert values["EDGE_UPLINK_ADDRS"] == "([2001:db8:a::2], 198.51.100.2, [2001:db8:b::2])"
    # Also the default send socket: the cfg writes "proto:EDGE_CARRIER_ADDR:port" into $fs.
    assert values["EDGE_CARRIER_ADDR"] == "[2001:db8:a::2]"


def test_addresses_are_written_as_the_kernel_prints_them() -> None:
    cfg = config()
    site = site_from_config(cfg, ["2001:DB8:0:0::2", "198.51.100.2"], ETC)
    assert site.uplinks == ("2001:db8::2", "198.51.100.2")


def test_tls_trunks_turn_tls_on_and_udp_trunks_do_not() -> None:
    assert "#!trydef WITH_TLS" not in site_file(site_of(config()))
    tls = config(trunks=[{"name": "b1", "carrier": "b", "uri": "sips:192.0.2.20"}])
    text = site_file(site_of(tls))
    # trydef: a Kamailio started with -A WITH_TLS as well is no redefinition error.
    assert "#!trydef WITH_TLS" in text.splitlines()


def test_every_value_line_reads_back_whole() -> None:
    site = EdgeSite(ETC, ("2001:db8::2", "198.51.100.2"), tls=True,
                    tls_config=PurePosixPath("/etc/kamailio/certs/tls.cfg"))
    text = site_file(site)
    assert text.startswith(MARKER)
    parsed = {m[1]: m[2] for m in SUBSTDEF.finditer(text)}
    assert parsed == defines(site)
    for line in text.splitlines():
        # Anything else is a comment; "#!" would be a directive.
        assert SUBSTDEF.fullmatch(line) or line == "#!trydef WITH_TLS" or \
            line.startswith("# "), line


@pytest.mark.parametrize("confdir", ["/etc/kamailio!x", '/etc/"k"', "/etc/my kamailio",
                                     "/etc/k\\x", "etc/kamailio", "/etc/k\nx"])
def test_a_dir_the_preprocessor_cannot_hold_is_refused(confdir: str) -> None:
    with pytest.raises(SiteError, match="#!substdef cannot hold this path"):
        EdgeSite(PurePosixPath(confdir), ("198.51.100.2",))


# ------------------------------------------------------------------------ refusals


def test_a_pbx_socket_on_a_carrier_socket_is_refused() -> None:
    cfg = config({"pbx_address": "198.51.100.2", "pbx_port": 5060})
    with pytest.raises(SiteError) as info:
        site_of(cfg)
    msg = str(info.value)
    assert "PBX side" in msg and "carrier side on 198.51.100.2" in msg
    assert "udp:198.51.100.2:5060" in msg
    # Another port on the same address is fine: the cfg tells them apart by port.
    assert site_of(config({"pbx_address": "198.51.100.2", "pbx_port": 5070}))


def test_the_rpc_socket_may_not_meet_a_carrier_socket_on_loopback() -> None:
    with pytest.raises(SiteError, match=r"JSON-RPC \(rpc_url\).*tcp:127.0.0.1:5060"):
        EdgeSite(ETC, ("127.0.0.1",), rpc_port=5060, pbx_port=5070)


def test_the_tls_port_counts_only_when_tls_is_on() -> None:
    assert EdgeSite(ETC, ("198.51.100.2",), carrier_tls_port=5070,
                    pbx_address="198.51.100.2", pbx_port=5070)
    with pytest.raises(SiteError, match="carrier TLS side"):
        EdgeSite(ETC, ("198.51.100.2",), carrier_tls_port=5070,
                 pbx_address="198.51.100.2", pbx_port=5070, tls=True)


def test_no_kamailio_edge_is_refused_with_what_to_add() -> None:
    cfg = config()
    bare = cfg.model_copy(update={"sip_edge": cfg.sip_edge.model_copy(update={"kamailio": None})})
    with pytest.raises(SiteError, match=r"no sip_edge.kamailio.*sip_edge: \{kamailio: \{\}\}"):
        site_from_config(bare, ("198.51.100.2",), ETC)


@pytest.mark.parametrize("url", ["https://127.0.0.1:5071/RPC", "http://192.0.2.5:5071/RPC",
                                 "http://localhost:5071/RPC", "http://127.0.0.1:5071/api"])
def test_an_rpc_url_the_reference_edge_does_not_serve_is_refused(url: str) -> None:
    with pytest.raises(SiteError, match=r"listens on http://127.0.0.1:PORT/RPC only"):
        site_of(config({"rpc_url": url}))


# ------------------------------------------------------------------------ link sources


def _no_source(cfg: Config, index: int) -> Config:
    links = [link.model_dump(exclude_none=True) for link in cfg.links]
    del links[index]["source"]
    return config(links=links)


def test_a_link_without_source_takes_its_interfaces_address() -> None:
    cfg = _no_source(config(), 1)
    found = {"wan-a": ["198.51.100.2/24"],
             "wan-b": ["192.0.2.77/24", "203.0.113.2/24", "2001:db8::2/64"]}
    # The address in the gateway's subnet, not the interface's primary one.
    assert link_sources(cfg, found) == ("198.51.100.2", "203.0.113.2")


def test_a_link_without_source_and_without_interface_names_what_to_set() -> None:
    cfg = _no_source(config(), 1)
    with pytest.raises(SiteError) as info:
        link_sources(cfg, {"wan-a": ["198.51.100.2/24"]})
    msg = str(info.value)
    assert "links[1] (fibre-b)" in msg and "wan-b does not exist here" in msg
    assert "set links[1].source" in msg


def test_a_link_whose_interface_has_no_address_of_its_family_names_what_to_set() -> None:
    cfg = _no_source(config(), 0)
    with pytest.raises(SiteError) as info:
        link_sources(cfg, {"wan-a": ["2001:db8::2/64", "fe80::1/64"], "wan-b": []})
    msg = str(info.value)
    assert "links[0] (fibre-a)" in msg and "wan-a has no IPv4 address now" in msg


def test_link_source_from_skips_ipv6_link_local_and_other_families() -> None:
    probes = {"targets": [{"icmp": "2001:db8:f::1"}]}
    cfg = config(links=[{"name": "v6", "interface": "wan-a", "gateway": "fe80::1",
                         "probes": probes}])
    link = cfg.links[0]
    assert link.source_from(["198.51.100.2/24", "fe80::2/64", "2001:db8::2/64"]) == "2001:db8::2"
    assert link.source_from(["198.51.100.2/24", "fe80::2/64"]) is None


# ------------------------------------------------------------------------ the files


def test_the_site_files_are_the_include_the_list_and_the_registration_tables() -> None:
    files = {str(f.path): f for f in site_files(site_of(config()))}
    assert list(files) == ["lifeline-site.cfg", "dispatcher.list", "db/version", "db/uacreg"]
    assert [p for p, f in files.items() if f.replace] == ["lifeline-site.cfg"]
    # db_text: a header of typed columns; `version` says uacreg has schema 5 (Kamailio 5.6).
    assert files["db/version"].text.splitlines()[1] == "0:uacreg:5"
    header = files["db/uacreg"].text.splitlines()
    assert len(header) == 1 and "l_uuid(string)" in header[0] and "socket(string)" in header[0]
    assert all(line.startswith("#") for line in files["dispatcher.list"].text.splitlines())


def _site(tmp: Path, **kw: Any) -> EdgeSite:
    return EdgeSite(PurePosixPath(tmp), ("198.51.100.2",), **kw)


def test_install_writes_everything_readable_by_kamailios_user(tmp_path: Path) -> None:
    old_umask = os.umask(0o077)  # a root shell's strict umask must not lock Kamailio out
    try:
        done = install(tmp_path, site_files(_site(tmp_path)))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / "db").stat().st_mode) == 0o755
    assert [a.action for a in done] == ["create"] * 4
    for rel in ("lifeline-site.cfg", "dispatcher.list", "db/version", "db/uacreg"):
        mode = stat.S_IMODE((tmp_path / rel).stat().st_mode)
        assert mode == 0o644, (rel, oct(mode))
    assert (tmp_path / "lifeline-site.cfg").read_text() == site_file(_site(tmp_path))
    assert not list(tmp_path.glob(".*")), "no temporary file left behind"


def test_install_again_rewrites_only_the_site_file(tmp_path: Path) -> None:
    install(tmp_path, site_files(_site(tmp_path)))
    row = "1:lifeline-x:site1:r.test:site1:r.test:r.test:site1:pw::::600:0:0::\n"
    with (tmp_path / "db" / "uacreg").open("a") as table:
        table.write(row)
    again = install(tmp_path, site_files(_site(tmp_path)))
    assert [a.action for a in again] == ["unchanged", "keep", "keep", "keep"]
    changed = install(tmp_path, site_files(_site(tmp_path, pbx_port=5090)))
    assert changed[0].action == "update"
    assert '"!EDGE_PBX_PORT!5090!g"' in (tmp_path / "lifeline-site.cfg").read_text()
    assert (tmp_path / "db" / "uacreg").read_text().endswith(row), "a table's rows were lost"


def test_a_site_file_lifeline_did_not_write_is_refused_and_nothing_written(
    tmp_path: Path,
) -> None:
    (tmp_path / "lifeline-site.cfg").write_text('#!substdef "!EDGE_PBX_PORT!5090!g"\n')
    with pytest.raises(SiteError, match="was not written by lifeline edge-config"):
        install(tmp_path, site_files(_site(tmp_path)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lifeline-site.cfg"]


def test_preview_writes_nothing(tmp_path: Path) -> None:
    actions = preview(tmp_path, site_files(_site(tmp_path)))
    assert [a.action for a in actions] == ["create"] * 4
    assert list(tmp_path.iterdir()) == []


def test_a_missing_directory_says_to_install_kamailio(tmp_path: Path) -> None:
    with pytest.raises(SiteError, match="not a directory: install Kamailio first"):
        install(tmp_path / "nope", site_files(_site(tmp_path / "nope")))
