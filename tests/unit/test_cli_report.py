"""`lifeline report` on a real journal file written through the Journal class: the table,
the CSV and the JSON (checked against docs/report.schema.json) tell the same figures."""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest

from controller.cli import main
from controller.runtime import journal as journal_module
from controller.runtime.journal import Journal

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "docs" / "report.schema.json").read_text())
T0 = 1_793_000_000.0  # 2026-10-26 ...Z: the journal's times are set, not read
DAY = 86400.0
R1 = "+390212345600-+390212345699"


def write_journal(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten days of a site: a fibre cut with failover and failback, a restart, a PBX outage
    on DR, then a crash (no stop) and a new start; recorded as the runtime records them."""
    clock = SimpleNamespace(now=T0)
    fake = SimpleNamespace(time=lambda: clock.now, monotonic=time.monotonic,
                           strftime=time.strftime, gmtime=time.gmtime,
                           localtime=time.localtime)
    monkeypatch.setattr(journal_module, "time", fake)
    j = Journal(path)

    def at(offset: float, kind: str, subject: str, message: str, **data: Any) -> None:
        clock.now = T0 + offset
        j.record(kind, subject, message, **data)

    at(0, "start", "daemon", "lifeline 1.0 started", site="rome")
    for name in ("fibre-a", "lte"):
        at(2, "transition", name, f"{name}: answering", old="unknown", new="up")
    at(2, "transition", "a1", "a1: 200 OK", old="unknown", new="up", peer="trunk")
    at(3, "decision", "internet", "fibre-a is the best up link", old=[], new=["fibre-a"])
    at(3, "decision", "dids", f"{R1}: a1 up", trunk="a1", destination="pbx-rome",
       numbers=R1, on_dr=False)
    at(DAY, "transition", "fibre-a", "fibre-a: 3 rounds lost in a row (0.6 s)",
       old="up", new="down", fault_age=0.6)
    at(DAY + 0.002, "decision", "internet", "fibre-a down; lte is the best up link",
       old=["fibre-a"], new=["lte"])
    at(DAY + 3600, "transition", "fibre-a", "fibre-a: answering again for 60 s (hold-down "
       "60 s)", old="down", new="up")
    at(DAY + 3600.001, "decision", "internet", "fibre-a is the best up link (tier 1)",
       old=["lte"], new=["fibre-a"])
    at(2 * DAY, "decision", "dids", f"{R1}: a1 up; pbx-rome down; delivering to DR dr-milan",
       trunk="a1", destination="dr-milan", numbers=R1, on_dr=True)
    at(2 * DAY + 1800, "decision", "dids", f"{R1}: a1 up", trunk="a1",
       destination="pbx-rome", numbers=R1, on_dr=False)
    at(3 * DAY, "stop", "daemon", "stopped; routes left in place: internet via fibre-a")
    at(3 * DAY + 7200, "start", "daemon", "lifeline 1.0 started", site="rome")
    for name in ("fibre-a", "lte"):
        at(3 * DAY + 7202, "transition", name, f"{name}: answering", old="unknown", new="up")
    at(3 * DAY + 7203, "transition", "a1", "a1: 200 OK", old="unknown", new="up", peer="trunk")
    at(5 * DAY, "transition", "lte", "lte: 3 rounds lost in a row", old="up", new="down")
    # the daemon dies here without a stop; it is started again a day later
    at(6 * DAY, "start", "daemon", "lifeline 1.0 started", site="rome")
    for name in ("fibre-a", "lte"):
        at(6 * DAY + 2, "transition", name, f"{name}: answering", old="unknown", new="up")
    at(6 * DAY + 3, "transition", "a1", "a1: 200 OK", old="unknown", new="up", peer="trunk")
    j.close()
    monkeypatch.undo()


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))


def run(path: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> str:
    code = main(["report", "--journal", str(path), "--since", iso(T0 - DAY),
                 "--until", iso(T0 + 7 * DAY), "--format", fmt])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "reading" in out.err
    return out.out


@pytest.fixture
def journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "journal.sqlite3"
    write_journal(path, monkeypatch)
    return path


def test_json_report_is_valid_and_tells_the_figures(
        journal: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(run(journal, "json", capsys))
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    assert doc["site"] == "rome" and doc["period"]["seconds"] == 8 * DAY
    unmonitored = DAY + 7200 + DAY  # before the first start, the stop, the crash
    links = {x["name"]: x for x in doc["links"]}
    a = links["fibre-a"]
    assert a["seconds"]["unmonitored"] == pytest.approx(unmonitored)
    assert a["seconds"]["down"] == pytest.approx(3600)
    assert a["outages"] == 1 and a["time_to_recover_s"] == pytest.approx(3600)
    lte = links["lte"]
    assert lte["outages_not_seen_to_end"] == 1  # down when the daemon died
    summary = doc["summary"]
    assert summary["failovers"]["count"] == 1
    assert summary["failovers"]["median_s"] == pytest.approx(0.602)  # 0.6 s to judge + 2 ms
    over = doc["route_changes"][0]
    assert (over["fault_age_s"], over["delay_s"]) == (pytest.approx(0.6), pytest.approx(0.002))
    assert summary["failbacks"]["median_s"] == pytest.approx(0.001)
    assert summary["dids_on_dr_s"] == pytest.approx(1800)
    assert summary["seconds"]["unmonitored"] == pytest.approx(unmonitored)
    assert doc["did_ranges"] == [{"numbers": R1, "dr_s": pytest.approx(1800),
                                  "unroutable_s": 0.0}]
    assert [c["kind"] for c in doc["route_changes"]] == ["failover", "failback"]
    assert any("ended without a stop event" in n for n in doc["notes"])
    assert any("begins at" in n for n in doc["notes"])
    assert doc["journal"]["pruned"] is False


def test_csv_and_table_carry_the_same_figures(
        journal: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = json.loads(run(journal, "json", capsys))
    rows = list(csv.DictReader(io.StringIO(run(journal, "csv", capsys))))
    link_row = next(r for r in rows if r["section"] == "link" and r["name"] == "fibre-a")
    links = {x["name"]: x for x in doc["links"]}
    assert float(link_row["availability"]) == pytest.approx(
        links["fibre-a"]["availability"], rel=1e-5)
    site = next(r for r in rows if r["section"] == "site")
    assert int(site["failovers"]) == 1 and float(site["dr_s"]) == pytest.approx(1800)
    assert any(r["section"] == "note" for r in rows)
    table = run(journal, "table", capsys)
    assert "lifeline SLA report for site rome" in table
    assert "failovers   1 (fault -> route changed: median 602ms" in table
    assert "internet: fibre-a -> lte  failover, fibre-a 602ms (fault 600ms + route 2ms)" in table
    assert f"{links['fibre-a']['availability'] * 100:.3f}%" in table


def test_a_missing_journal_is_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--journal", str(tmp_path / "nope.sqlite3")]) == 1
    assert "no journal at" in capsys.readouterr().err


def test_a_file_that_is_no_journal_is_a_clear_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "journal.sqlite3"
    bad.write_bytes(b"not a database at all" * 100)
    assert main(["report", "--journal", str(bad)]) == 1
    assert "cannot read the journal" in capsys.readouterr().err


@pytest.mark.parametrize("args", [["--since", "yesterday"],
                                  ["--since", "2026-11-02", "--until", "2026-11-01"],
                                  ["--until", "2026-13-01"]])
def test_bad_periods_are_refused_with_a_sentence(
        journal: Path, args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--journal", str(journal), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lifeline report: ") and ("age" in err or "before" in err)


def test_an_empty_journal_reports_nothing_monitored(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "journal.sqlite3"
    Journal(path).close()
    assert main(["report", "--journal", str(path), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    assert doc["summary"]["availability"] is None
    assert doc["summary"]["seconds"]["unmonitored"] == pytest.approx(30 * DAY, rel=1e-6)
    assert any("no events" in n for n in doc["notes"])


def test_a_format_the_renderer_does_not_know_is_refused(tmp_path: Path) -> None:
    from controller.core.sla import compute
    from controller.runtime.history import read_history
    from exporters.slareport import FORMATS, render

    path = tmp_path / "journal.sqlite3"
    Journal(path).close()
    now = time.time()
    report = compute(read_history(path, now).events, now - DAY, now, now)
    assert all(render(report, fmt) for fmt in FORMATS)
    with pytest.raises(ValueError, match="'xml'"):
        render(report, "xml")


def test_the_example_in_docs_report_md_is_what_the_code_prints(
        journal: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/report.md shows this very journal's table and CSV: a change of the output
    must update the docs (``python -m tests.unit.test_cli_report`` prints them)."""
    doc = (REPO / "docs" / "report.md").read_text()
    for fmt in ("table", "csv"):
        out = run(journal, fmt, capsys).rstrip()
        assert f"```\n{out}\n```" in doc, f"docs/report.md's {fmt} example is stale"


if __name__ == "__main__":  # the example of docs/report.md, from this module's journal
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        path = Path(tmp) / "journal.sqlite3"
        write_journal(path, mp)
        for fmt in ("table", "csv", "json"):
            print(f"===== {fmt}", flush=True)
            main(["report", "--journal", str(path), "--since", iso(T0 - DAY),
                  "--until", iso(T0 + 7 * DAY), "--format", fmt])
        sys.stdout.flush()
