"""The `lifeline` command as an operator meets it: exit codes and messages."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from importlib.metadata import PackageNotFoundError
from pathlib import Path

import pytest

from controller import version
from controller.cli import main
from controller.runtime.journal import KINDS, Journal

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "lifeline.yaml"
DATA = Path(__file__).parent / "data" / "configs"


def test_check_config_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    for name in ("fibre-a", "fibre-b", "lte", "internet"):
        assert name in out


def test_check_config_takes_the_file_with_c_like_the_other_commands(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check-config", "-c", str(EXAMPLE)]) == 0
    assert "fibre-a" in capsys.readouterr().out


def test_check_config_refuses_two_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "-c", str(EXAMPLE), str(EXAMPLE)]) == 2
    err = capsys.readouterr().err
    assert "two config files given" in err and "name one" in err


@pytest.mark.parametrize("sample", ["bad-fields.yaml", "bad-semantic.yaml"])
def test_check_config_reports_every_error_with_its_path(
    sample: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = DATA / sample
    expected = [line.split("expect: ", 1)[1] for line in path.read_text().splitlines()
                if line.startswith("# expect: ")]
    assert expected, "the sample lists the errors it expects"
    assert main(["check-config", str(path)]) == 2
    err = capsys.readouterr().err
    for message in expected:
        assert message in err


@pytest.mark.parametrize(
    ("text", "path_and_message"),
    [
        ("site: x\nlinks: [{name: a, interface: e0, gateway: nope, probes: {targets: "
         "[{icmp: 192.0.2.1}]}}]\nroute_groups: [{name: g, links: [a]}]\n",
         "links[0].gateway: not an IPv4/IPv6 address"),
        ("site: x\nlinkz: []\n", "linkz: unknown field"),
        ("site: x\nlinks: [\n", "line"),
    ],
)
def test_check_config_bad_input_exits_2(
    tmp_path: Path, text: str, path_and_message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    assert main(["check-config", str(cfg)]) == 2
    assert path_and_message in capsys.readouterr().err


def test_check_config_missing_file_exits_2(tmp_path: Path) -> None:
    assert main(["check-config", str(tmp_path / "absent.yaml")]) == 2


def test_events_lists_the_journal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    journal = Journal(tmp_path / "journal.sqlite3")
    journal.record("transition", "fibre-a", "fibre-a: 3 rounds lost in a row", old="up",
                   new="down")
    journal.record("decision", "internet", "fibre-a down; fibre-b is the best up link")
    journal.close()
    assert main(["events", "--state-dir", str(tmp_path), "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "fibre-b is the best up link" in out
    assert "3 rounds lost" not in out  # -n 1: only the newest


def test_events_refuses_an_unknown_kind_and_lists_the_kinds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["events", "--state-dir", str(tmp_path), "--kind", "transitions"]) == 2
    err = capsys.readouterr().err
    assert "unknown event kind 'transitions'" in err
    assert all(kind in err for kind in KINDS)


def test_version_is_the_one_in_pyproject(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert capsys.readouterr().out.strip() == f"lifeline {project['version']}"


def test_version_of_a_tree_that_is_not_installed_says_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def absent(name: str) -> str:
        raise PackageNotFoundError(name)

    monkeypatch.setattr(version, "version", absent)
    assert version._installed() == "0+unknown"


def test_status_without_daemon_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--socket", str(tmp_path / "lifeline.sock")]) == 1
    assert "no daemon answers" in capsys.readouterr().err


def test_console_script_runs_as_module() -> None:
    proc = subprocess.run([sys.executable, "-m", "controller", "check-config", str(EXAMPLE)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONWARNINGS": "error"}, check=False)
    assert proc.returncode == 0, proc.stderr


def test_demo_refuses_without_root(monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["demo"]) == 1
    assert "needs root" in capsys.readouterr().err
