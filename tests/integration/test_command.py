"""Command actuator with small real programs written into tmp_path: one that saves its stdin
and environment and exits 0, one that fails with exit 3 and a message, one that sleeps past
the timeout (it and a child it forks must be killed and gone), one that never reads stdin."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from controller.actuators.sipedge.command import CommandActuator
from controller.actuators.sipedge.document import apply_document
from controller.actuators.sipedge.plan import DidRoute, EdgePlan, TrunkState
from tests.lab.wait import until_async

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "edge-plan.schema.json").read_text()
)

A1 = TrunkState("carrier-a-sbc1", "sip:192.0.2.10:5060", 1, True)
R1 = DidRoute("+390212345600", "+390212345699", "carrier-a-sbc1", "sip:pbx@203.0.113.5")
PLAN = EdgePlan((A1,), (R1,), ())


def script(tmp_path: Path, name: str, body: str) -> list[str]:
    path = tmp_path / name
    path.write_text(body)
    return [sys.executable, str(path)]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purpose only once reaped, but a
    # grandchild is reaped by init, so read its state.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


SAVE_STDIN = """
import json, os, sys
out = sys.argv[1]
data = sys.stdin.buffer.read()
with open(out, "wb") as f:
    f.write(data)
with open(out + ".env", "w") as f:
    json.dump(dict(os.environ), f)
"""


async def test_exit_0_gets_the_document_on_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "plan.json"
    monkeypatch.setenv("LIFELINE_SIP_PASSWORD", "do-not-leak")
    monkeypatch.setenv("LIFELINE_TEST_PASS_ME", "passed-on")
    cmd = CommandActuator(
        [*script(tmp_path, "save.py", SAVE_STDIN), str(out)], site="milano-1",
        env={"EDGE_MODE": "test"}, pass_env=["LIFELINE_TEST_PASS_ME"], start_generation=5,
    )
    result = await cmd.push(PLAN)
    assert result.ok and result.status == 0 and result.error is None
    assert result.attempts == 1 and result.full is True and result.generation == 5
    raw = out.read_bytes()
    assert raw.endswith(b"}\n")
    doc = json.loads(raw)
    jsonschema.validate(doc, SCHEMA)
    assert apply_document(None, doc) == PLAN
    env = json.loads((tmp_path / "plan.json.env").read_text())
    assert "LIFELINE_SIP_PASSWORD" not in env  # lifeline's secrets stay home
    assert env["LIFELINE_TEST_PASS_ME"] == "passed-on"
    assert env["EDGE_MODE"] == "test"
    assert env["LIFELINE_GENERATION"] == "5" and env["LIFELINE_FULL"] == "1"
    assert env["LIFELINE_SITE"] == "milano-1"
    assert "PATH" in env

    # Unchanged plan: the program is not run again; a change runs it with a diff.
    out.unlink()
    assert (await cmd.push(PLAN)).attempts == 0
    assert not out.exists()
    moved = EdgePlan((A1,), (DidRoute(R1.first, R1.last, None, None),), ())
    result = await cmd.push(moved)
    assert result.ok and result.full is False
    diff = json.loads(out.read_bytes())
    assert diff["base_generation"] == 5 and diff["routes"]["changed"][0]["trunk"] is None


async def test_nonzero_exit_fails_with_stderr_tail_and_next_push_is_full(tmp_path: Path) -> None:
    argv = script(tmp_path, "fail.py", """
import sys
sys.stdin.read()
print("noise " * 2000, file=sys.stderr)
print("edge refused: unknown trunk carrier-a-sbc1", file=sys.stderr)
sys.exit(3)
""")
    cmd = CommandActuator(argv, site="s", start_generation=1)
    result = await cmd.push(PLAN)
    assert not result.ok and result.status == 3 and not result.permanent
    assert result.error is not None
    assert result.error.startswith("exit status 3: ")
    assert result.error.endswith("edge refused: unknown trunk carrier-a-sbc1")
    assert len(result.error) < 600  # a tail, not the whole noise
    again = await cmd.push(PLAN)
    assert not again.ok and again.full is True and again.generation == 2


async def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    argv = script(tmp_path, "sleep.py", f"""
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open({str(pids)!r}, "w") as f:
    f.write(f"{{os.getpid()}} {{child.pid}}")
time.sleep(60)
""")
    cmd = CommandActuator(argv, site="s", timeout=1.0, kill_grace=0.5, start_generation=1)
    started = time.monotonic()
    result = await cmd.push(PLAN)
    elapsed = time.monotonic() - started
    assert not result.ok
    assert result.error is not None and "no exit within 1 s" in result.error
    assert 0.9 <= elapsed < 10
    leader, child = (int(p) for p in pids.read_text().split())
    assert not pid_alive(leader)
    # The grandchild went with the group (reaped by init; allow it a moment).
    await until_async(lambda: not pid_alive(child), 5, 0.05, "the grandchild to be gone")


async def test_program_that_ignores_stdin_and_big_document(tmp_path: Path) -> None:
    # The document is larger than a pipe buffer; a program that never reads it must not
    # hang the push: its exit status decides.
    routes = tuple(
        DidRoute(f"+3902{i:06d}00", f"+3902{i:06d}99", A1.name, "sip:pbx@203.0.113.5")
        for i in range(2000)
    )
    argv = script(tmp_path, "ignore.py", "import sys; sys.exit(0)\n")
    cmd = CommandActuator(argv, site="s", timeout=5.0, start_generation=1)
    result = await cmd.push(EdgePlan((A1,), routes, ()))
    assert result.ok, result.error


async def test_missing_program_is_a_permanent_failure(tmp_path: Path) -> None:
    cmd = CommandActuator([str(tmp_path / "no-such-program")], site="s", start_generation=1)
    result = await cmd.push(PLAN)
    assert not result.ok and result.permanent and result.status is None
    assert result.error is not None and "cannot run" in result.error
    with pytest.raises(ValueError):
        CommandActuator([], site="s")
