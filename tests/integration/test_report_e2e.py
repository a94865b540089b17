"""`lifeline report` on the journal a real daemon wrote in the lab: a blackholed fibre, the
failover and the failback, a stop and a restart, read back as one failover with its time,
one failback, one outage of fibre-a seen to end, and the stopped minutes as unmonitored."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import pytest

from tests.lab.lifelined import LifelineProcess
from tests.lab.topology import Lab

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]


def test_the_report_of_a_real_failover_and_restart(lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state"
    d = LifelineProcess(lab, state, reliability=2, hold_down="2s")
    d.start()
    try:
        d.wait_active(["fibre-a"], 15)
        lab.faults.blackhole("fibre-a")
        d.wait_active(["fibre-b"], 15)
        lab.faults.clear("fibre-a")
        d.wait_active(["fibre-a"], 30)
    finally:
        assert d.stop() == 0, d.log()
    stopped = time.time()
    time.sleep(2.0)  # lifeline is not running: unmonitored
    d.start()
    try:
        d.wait_active(["fibre-a"], 15)
        d.wait_link("fibre-b", "up", 15)
    finally:
        assert d.stop() == 0, d.log()

    def report(fmt: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "controller", "report", "--journal",
             str(state / "journal.sqlite3"), "--since", "10m", "--format", fmt],
            cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    print(report("table"))  # for the test's log: what an operator would read
    doc = json.loads(report("json"))
    schema = json.loads((REPO / "docs" / "report.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)

    changes = doc["route_changes"]
    assert [(c["kind"], c["from"], c["to"], c["cause"]) for c in changes] == [
        ("failover", ["fibre-a"], ["fibre-b"], "fibre-a"),
        ("failback", ["fibre-b"], ["fibre-a"], "fibre-a")], changes
    failover = changes[0]
    assert failover["delay_s"] is not None and 0 <= failover["delay_s"] < 5
    # the dead run health judged, as the daemon journaled it: a few probe rounds
    assert failover["fault_age_s"] is not None and 0 < failover["fault_age_s"] < 5
    assert failover["time_s"] == pytest.approx(failover["fault_age_s"] + failover["delay_s"])
    links = {x["name"]: x for x in doc["links"]}
    a = links["fibre-a"]
    assert a["outages"] == 1 and a["outages_not_seen_to_end"] == 0
    assert a["seconds"]["down"] > 0 and a["time_to_recover_s"] is not None
    # The stop: at least the two seconds slept, for every link and the site.
    assert a["seconds"]["unmonitored"] >= 2.0
    summary = doc["summary"]
    assert summary["failovers"]["count"] == 1 and summary["failbacks"]["count"] == 1
    assert summary["seconds"]["up"] > 0 and summary["no_usable_link_s"] == 0
    assert any("begins at" in n for n in doc["notes"])  # the journal is minutes old
    assert not any("without a stop" in n for n in doc["notes"])
    assert doc["period"]["until_ts"] > stopped
