"""`lifeline edge-config` as an operator meets it: the files it writes, what it refuses, why.

The interfaces are faked where a link has no source (the real command reads them with a
netlink dump); everything else is the command itself on a temporary directory standing in
for /etc/kamailio.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller import cli
from controller.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "lifeline.yaml"
REFERENCE = ROOT / "examples" / "kamailio"
FILES = ["db/uacreg", "db/version", "dispatcher.list", "lifeline-site.cfg"]


def written(confdir: Path) -> list[str]:
    return sorted(str(p.relative_to(confdir)) for p in confdir.rglob("*") if p.is_file())


def example_without(tmp_path: Path, change: Any) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    change(data)
    path = tmp_path / "lifeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_writes_the_site_files_of_the_example_and_says_what_is_next(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["edge-config", "-c", str(EXAMPLE), "--dir", str(tmp_path)]) == 0
    assert written(tmp_path) == FILES
    site = (tmp_path / "lifeline-site.cfg").read_text()
    # Every link's source, the example's PBX side, TLS because carrier-b is a sips: trunk.
    assert '"!EDGE_UPLINK_ADDRS!(198.51.100.2, 198.51.100.66, 198.51.100.130)!g"' in site
    assert '"!EDGE_PBX_ADDR!192.0.2.129!g"' in site
    assert '"!EDGE_RPC_PORT!5071!g"' in site
    assert "#!trydef WITH_TLS" in site
    out = capsys.readouterr().out
    for name in FILES:
        assert f"created        {tmp_path / name}" in out
    # No kamailio.cfg there yet: the first step is to copy it; then check and start.
    assert f"copy lifeline's reference cfg there: install -m 644 " \
           f"examples/kamailio/kamailio.cfg {tmp_path}/" in out
    assert f"kamailio -c -f {tmp_path / 'kamailio.cfg'}" in out
    assert "kamailio-tls-modules" in out
    assert '"edge kamailio: in sync"' in out


def test_never_touches_kamailio_cfg_and_notices_one_that_is_not_lifelines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "kamailio.cfg").write_text("#!KAMAILIO\n# Debian's own\n")
    assert main(["edge-config", "-c", str(EXAMPLE), "--dir", str(tmp_path)]) == 0
    assert (tmp_path / "kamailio.cfg").read_text() == "#!KAMAILIO\n# Debian's own\n"
    assert "does not include lifeline-site.cfg: it is not lifeline's reference cfg" in \
        capsys.readouterr().out
    shutil.copy(REFERENCE / "kamailio.cfg", tmp_path / "kamailio.cfg")
    assert main(["edge-config", "-c", str(EXAMPLE), "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "reference cfg" not in out
    assert f"unchanged      {tmp_path / 'lifeline-site.cfg'}" in out
    assert f"kept (exists)  {tmp_path / 'db' / 'uacreg'}" in out


def test_dry_run_prints_the_site_file_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["edge-config", "-c", str(EXAMPLE), "--dir", str(tmp_path), "--dry-run"]) == 0
    assert written(tmp_path) == []
    out = capsys.readouterr().out
    assert '#!substdef "!EDGE_CARRIER_ADDR!198.51.100.2!g"' in out
    assert f"would create   {tmp_path / 'lifeline-site.cfg'}" in out


def test_a_config_without_a_kamailio_edge_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = example_without(tmp_path, lambda d: d.pop("sip_edge"))
    edge_dir = tmp_path / "etc"
    edge_dir.mkdir()
    assert main(["edge-config", "-c", str(cfg), "--dir", str(edge_dir)]) == 2
    assert "no sip_edge.kamailio" in capsys.readouterr().err
    assert written(edge_dir) == []


def test_a_bad_config_is_refused_with_its_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    def bad(d: dict[str, Any]) -> None:
        d["sip_edge"]["kamailio"]["pbx_port"] = 70000

    cfg = example_without(tmp_path, bad)
    assert main(["edge-config", "-c", str(cfg), "--dir", str(tmp_path)]) == 2
    assert "sip_edge.kamailio.pbx_port" in capsys.readouterr().err


def test_a_missing_directory_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["edge-config", "-c", str(EXAMPLE), "--dir", str(tmp_path / "nope")]) == 2
    assert "install Kamailio first" in capsys.readouterr().err


def _drop_source(d: dict[str, Any]) -> None:
    del d["links"][1]["source"]


def test_a_link_without_source_takes_the_address_on_its_interface(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = example_without(tmp_path, _drop_source)
    monkeypatch.setattr(cli, "_interface_addresses",
                        lambda: {"wan-b": ["198.51.100.70/26"], "lo": ["127.0.0.1/8"]})
    edge_dir = tmp_path / "etc"
    edge_dir.mkdir()
    assert main(["edge-config", "-c", str(cfg), "--dir", str(edge_dir)]) == 0
    site = (edge_dir / "lifeline-site.cfg").read_text()
    assert "(198.51.100.2, 198.51.100.70, 198.51.100.130)" in site


def test_a_link_without_source_or_interface_names_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    cfg = example_without(tmp_path, _drop_source)
    monkeypatch.setattr(cli, "_interface_addresses", lambda: {"lo": ["127.0.0.1/8"]})
    edge_dir = tmp_path / "etc"
    edge_dir.mkdir()
    assert main(["edge-config", "-c", str(cfg), "--dir", str(edge_dir)]) == 2
    err = capsys.readouterr().err
    assert "links[1] (fibre-b) has no source and interface wan-b does not exist here" in err
    assert "set links[1].source" in err
    assert written(edge_dir) == []


def test_unreadable_interfaces_are_a_runtime_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    def fail() -> dict[str, list[str]]:
        raise OSError(13, "Permission denied")

    cfg = example_without(tmp_path, _drop_source)
    monkeypatch.setattr(cli, "_interface_addresses", fail)
    assert main(["edge-config", "-c", str(cfg), "--dir", str(tmp_path)]) == 1
    assert "cannot read this machine's interfaces" in capsys.readouterr().err


def test_the_interfaces_of_this_machine_are_read_for_real() -> None:
    # Read-only netlink dumps: loopback is always there, with its address.
    found = cli._interface_addresses()
    assert "127.0.0.1/8" in found["lo"]


def test_a_directory_it_may_not_write_is_a_runtime_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    def denied(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)  # what a non-root user meets in /etc
    assert main(["edge-config", "-c", str(EXAMPLE), "--dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {tmp_path / 'lifeline-site.cfg'}: Permission denied" in err
