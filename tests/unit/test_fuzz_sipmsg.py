"""Runs the atheris harness of the SIP parser for a bounded number of inputs: a crash (any
exception but SipParseError) or a hang fails the test."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
def test_atheris_finds_no_crash_in_the_sip_parser(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.fuzz_sipmsg", "-runs=50000",
         "-max_total_time=60", "-timeout=5", f"-artifact_prefix={tmp_path}/"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Done 50000 runs" in proc.stderr, proc.stderr[-2000:]
    assert not list(tmp_path.iterdir()), "atheris left a crash artifact"
