"""`lifeline force`, `pin`, `maintenance` and `overrides` as the operator meets them,
against the real API on a unix socket and over TCP with a token, the daemon's side faked
(tests/unit/fakecontrol.py): what is sent, what is printed, the exit codes."""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.cli import main
from exporters.http import make_app
from exporters.operator_api import ApiPolicy
from tests.unit.apiserver import serving
from tests.unit.fakecontrol import RANGE, TOKEN, FakeControl, token_file

User = f"unix:{getpass.getuser()}"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, FakeControl]]:
    control = FakeControl()
    app = make_app(lambda: None, control=control,
                   api=ApiPolicy.open(token_file=token_file(tmp_path), burst=50))
    with serving(app, unix=tmp_path / "lifeline.sock") as sock:
        yield sock, control


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_force_and_lift_over_the_socket(site: Any, capsys: pytest.CaptureFixture[str]) -> None:
    sock, control = site
    code, out, err = run(capsys, "force", "voice", "lte", "--reason", "fibre works",
                         "--for", "2h", "--socket", sock)
    assert (code, err) == (0, ""), err
    assert out.startswith("route group voice: forced to lte until ") and "(120 min" in out
    kind, target, value, reason, by = control.calls[0][1:6]
    assert (kind, target, value, reason, by) == ("route", "voice", "lte", "fibre works", User)
    code, out, _ = run(capsys, "force", "voice", "--off", "--socket", sock)
    assert code == 0 and "force lifted" in out
    assert control.calls[-1] == ("clear", "route", "voice", User, "")


def test_pin_a_number_to_dr(site: Any, capsys: pytest.CaptureFixture[str]) -> None:
    sock, control = site
    code, out, err = run(capsys, "pin", "+390212345601", "dr", "--reason", "DR drill",
                         "--until", "2099-01-01T00:00:00Z", "--socket", sock)
    assert code == 2 and "more than 168h" in err  # the daemon's maximum, said plainly
    code, out, err = run(capsys, "pin", "+390212345601", "dr", "--reason", "DR drill",
                         "--for", "30m", "--socket", sock)
    assert code == 0, err
    assert f"DID range {RANGE}: pinned to its DR destination until" in out
    code, out, err = run(capsys, "pin", "+441632960000", "a1", "--reason", "x",
                         "--socket", sock)
    assert code == 2 and "+441632960000 is not in the DID plan" in err
    code, out, _ = run(capsys, "pin", "+390212345601", "--off", "--reason", "drill over",
                       "--socket", sock)
    assert code == 0 and "pin lifted" in out
    assert [c[0] for c in control.calls] == ["set", "clear"]


def test_maintenance_old_and_new_forms(site: Any, capsys: pytest.CaptureFixture[str]) -> None:
    sock, control = site
    code, out, _ = run(capsys, "maintenance", "a1", "--reason", "SBC swap", "--socket", sock)
    assert code == 0 and "trunk a1: in maintenance, gets no calls (SBC swap)" in out
    code, out, _ = run(capsys, "maintenance", "a1", "--off", "--socket", sock)
    assert code == 0 and "trunk a1: in service" in out
    code, out, err = run(capsys, "maintenance", "link", "lte", "--reason", "ISP works",
                         "--for", "3h", "--socket", sock)
    assert code == 0 and "link lte: in maintenance, carries no group route until" in out, err
    code, out, _ = run(capsys, "maintenance", "trunk", "a2", "--reason", "x", "--socket", sock)
    assert code == 0 and "trunk a2: in maintenance, gets no calls until" in out
    assert control.calls == [
        ("mark", "a1", True, "SBC swap"),
        ("clear", "maintenance", "trunk:a1", User, ""), ("mark", "a1", False, ""),
        ("set", "maintenance", "link:lte", None, "ISP works", User, control.calls[3][6]),
        ("set", "maintenance", "trunk:a2", None, "x", User, control.calls[4][6]),
    ]
    code, _, err = run(capsys, "maintenance", "trunk", "zz", "--reason", "x", "--socket", sock)
    assert code == 2 and "zz" in err


@pytest.mark.parametrize(("argv", "words"), [
    (["force", "voice", "lte"], "--reason is required"),
    (["force", "voice", "--reason", "x"], "name the link"),
    (["force", "voice", "lte", "--reason", "x", "--for", "soon"], "--for: not a duration"),
    (["pin", "+390212345601", "--reason", "x"], "name the trunk"),
    (["maintenance", "router", "x", "--reason", "x"], "link or trunk, not 'router'"),
    (["maintenance", "link", "lte"], "--reason is required"),
])
def test_bad_arguments_are_said_before_anything_is_sent(
        site: Any, capsys: pytest.CaptureFixture[str], argv: list[str], words: str) -> None:
    sock, control = site
    code, _, err = run(capsys, *argv, "--socket", sock)
    assert code == 2 and words in err, err
    assert control.calls == []


def test_over_tcp_with_a_token_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    control = FakeControl()
    app = make_app(lambda: None, control=control,
                   api=ApiPolicy.open(token_file=token_file(tmp_path)))
    mine = tmp_path / "my-token"
    mine.write_text(f"# copied from the router\nnoc {TOKEN}\n")
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token-at-all-0000\n")
    with serving(app) as url:
        code, out, err = run(capsys, "force", "voice", "lte", "--reason", "remote",
                             "--url", url, "--token-file", str(mine))
        assert code == 0 and "forced to lte" in out, err
        code, _, err = run(capsys, "force", "voice", "lte", "--reason", "remote",
                           "--url", url, "--token-file", str(wrong))
        assert code == 1 and "refused (401)" in err and "token" in err
        code, _, err = run(capsys, "force", "voice", "lte", "--reason", "x", "--url", url)
        assert code == 2 and "--url needs a token" in err
    assert [c[5] for c in control.calls] == ["noc"]


def test_no_daemon_is_exit_1_with_a_sentence(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "force", "voice", "lte", "--reason", "x",
                       "--socket", str(tmp_path / "none.sock"))
    assert code == 1 and "no daemon answers on" in err
    code, _, err = run(capsys, "overrides", "--url", "http://127.0.0.1:9",
                       "--token-file", str(tmp_path / "missing"))
    assert code == 2 and "cannot read the token file" in err


def test_overrides_lists_what_the_daemon_holds(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import exporters.operator_api as api_module

    listed = [{"kind": "did", "target": RANGE, "value": "dr", "reason": "DR drill",
               "by": "noc", "until": 4102444800.0}]
    monkeypatch.setattr(api_module, "status_document", lambda snap: {"overrides": listed})
    app = make_app(lambda: object(), control=FakeControl())  # type: ignore[arg-type,return-value]
    with serving(app, unix=tmp_path / "s.sock") as sock:
        code, out, _ = run(capsys, "overrides", "--socket", sock)
        assert code == 0
        assert out.startswith(f"did {RANGE} -> dr until 2100-01-01 00:00:00 UTC")
        assert out.rstrip().endswith("by noc: DR drill")
        code, out, _ = run(capsys, "overrides", "--json", "--socket", sock)
        assert code == 0 and '"by": "noc"' in out


def test_overrides_says_which_are_held_but_not_applied(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    import exporters.operator_api as api_module

    listed = [{"kind": "route", "target": "voice", "value": "lte", "reason": "fibre works",
               "by": "noc", "until": 4102444800.0, "applied": False,
               "why_not": "link lte is down"},
              {"kind": "maintenance", "target": "trunk:a1", "value": None, "reason": "swap",
               "by": "noc", "until": 4102444800.0, "applied": True, "why_not": None}]
    monkeypatch.setattr(api_module, "status_document", lambda snap: {"overrides": listed})
    app = make_app(lambda: object(), control=FakeControl())  # type: ignore[arg-type,return-value]
    with serving(app, unix=tmp_path / "s.sock") as sock:
        code, out, _ = run(capsys, "overrides", "--socket", sock)
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("route voice -> lte until "), out
    assert lines[1] == "  held, not applied: link lte is down", out
    assert lines[2].startswith("maintenance trunk:a1 until ") and len(lines) == 3, out
