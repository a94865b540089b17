"""examples/systemd/lifeline.service says what it promises and systemd accepts it; the lab
test (tests/integration/test_daemon_systemd.py) runs the daemon with its capabilities."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "examples" / "systemd" / "lifeline.service"


def settings() -> dict[str, str]:
    out = {}
    for line in UNIT.read_text().splitlines():
        key, eq, value = line.partition("=")
        if eq and not line.startswith("#"):
            out[key.strip()] = value.strip()
    return out


def test_the_unit_runs_a_notify_service_with_a_watchdog_as_its_own_user() -> None:
    s = settings()
    assert s["Type"] == "notify" and s["NotifyAccess"] == "main"
    assert s["WatchdogSec"] and s["Restart"] == "on-failure"
    assert s["User"] not in ("", "root") and s["StateDirectory"] == "lifeline"
    assert s["NoNewPrivileges"] == "yes" and s["ProtectSystem"] == "strict"
    assert set(s["AmbientCapabilities"].split()) == {"CAP_NET_ADMIN", "CAP_NET_RAW"}
    assert s["CapabilityBoundingSet"] == s["AmbientCapabilities"]


def test_systemd_accepts_every_line_of_the_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("needs `systemd-analyze` (Debian package systemd)")
    # The command is not installed here; everything else is checked as written.
    unit = tmp_path / "lifeline.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/lifeline", "/bin/true"))
    res = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                         text=True, timeout=60, check=False)
    assert res.returncode == 0 and res.stdout + res.stderr == "", res.stdout + res.stderr
