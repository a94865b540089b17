"""The recordings' tell side: a RecordingsSnap built from hand-made facts and ``judge()``,
read by ``/metrics`` (prometheus_client's own exposition of exporters.metrics's registry),
the status document and ``lifeline status``'s text. Names of recordings reach the document,
never a metric label; figures JSON cannot carry (+Inf) are null there."""

from __future__ import annotations

import json
import math
import re

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from controller.core.recordings import (
    DAY,
    BackupFacts,
    RaidFacts,
    RecordingsParams,
    StoreFacts,
    judge,
)
from controller.core.recsnap import (
    NAMES_KEPT,
    RecordingsSnap,
    ScanStats,
    SourceInfo,
    recordings_snap,
)
from controller.core.snapshot import Snapshot
from exporters.metrics import CATALOG, RECORDINGS_WHEN, registry_for
from exporters.recordings import recordings_lines
from exporters.status import status_document
from exporters.statusview import render_status

NOW = 1_780_000_000.0
HOUR = 3600.0
PARAMS = RecordingsParams(retention=5 * 365 * DAY, must_hold=frozenset({"nas", "offsite"}))
SOURCES = (SourceInfo("store", "store", "/srv/recordings"),
           SourceInfo("nas", "folder", "/mnt/nas/recordings"),
           SourceInfo("offsite", "restic", "/mnt/usb/restic"),
           SourceInfo("usb", "folder", "/mnt/usb/recordings"))
MISSING = tuple(f"2026/12/02/call-{i:04}.wav" for i in range(150))


def _facts() -> tuple[StoreFacts, list[BackupFacts]]:
    """nas: last night's copy did not run (stale) and skipped 150 files earlier, one with
    another size; offsite: fresh, one corrupt copy; usb (not must-hold): unreadable;
    the store on a degraded md0 with 2 days left at its write rate."""
    store = StoreFacts(
        files=12000, newest_mtime=NOW - 600, oldest_mtime=NOW - 400 * DAY,
        lost_young=1, lost_names=("2026/11/30/gone.wav",),
        free_bytes=20 * 2**30, total_bytes=1000 * 2**30,
        written_recent_bytes=10 * 2**30, recent_window_s=DAY,
        raid=(RaidFacts("md0", degraded=True, failed_devices=("sdb1",),
                        detail="raid1 [2/1] [U_]"),),
        problems=2, problem_names=("2026/12/01: permission ([Errno 13] Permission denied)",
                                   "2026/12/03/x.wav: symlink"))
    nas = BackupFacts(
        "nas", newest_mtime=NOW - 2 * DAY - 3 * HOUR, pending_since=NOW - 2 * DAY,
        missing=len(MISSING), missing_names=MISSING, mismatched=1,
        mismatched_names=("2026/12/01/short.wav",), verified=1200,
        oldest_mtime=NOW - 400 * DAY)
    offsite = BackupFacts(
        "offsite", newest_mtime=NOW - 5 * HOUR, last_run=NOW - 4 * HOUR, verified=800,
        corrupt=1, corrupt_names=("2026/10/01/rot.wav",), oldest_mtime=NOW - 300 * DAY,
        gone_young=2, gone_names=("2025/01/01/a.wav", "2025/01/02/b.wav"))
    usb = BackupFacts("usb", available=False, why_unavailable="root missing: /mnt/usb")
    return store, [nas, offsite, usb]


def _rec() -> RecordingsSnap:
    store, backups = _facts()
    verdict = judge(PARAMS, store, backups, NOW)
    scans = {"store": ScanStats(12000, 12000 * 2**20, NOW - 30, 1.5, False),
             "nas": ScanStats(11849, 11849 * 2**20, NOW - 25, 0.75, True),
             "offsite": ScanStats(11990, 11990 * 2**20, NOW - 20, 3.0, False)}
    return recordings_snap(PARAMS, store, backups, verdict, now=NOW, sources=SOURCES,
                           scans=scans, verify_days=30, interval=300.0,
                           verified_this_period=3000, cycle_seconds=4.2)


def _snap(rec: RecordingsSnap | None) -> Snapshot:
    return Snapshot(site="rome", version="1", dry_run=False, taken_at=NOW + 60, uptime=9.0,
                    recordings=rec)


def _scrape(snap: Snapshot) -> tuple[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    text = generate_latest(registry_for(lambda: snap)).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return text, samples


def test_the_builder_keeps_every_source_the_disk_the_verifier_and_bounded_names() -> None:
    rec = _rec()
    assert [s.name for s in rec.sources] == ["store", "nas", "offsite", "usb"]
    assert rec.store is not None and rec.store.files == 12000 and rec.store.problems == 2
    nas, offsite, usb = rec.backups
    assert nas.must_hold and offsite.must_hold and not usb.must_hold
    assert nas.scan_full is True and nas.verified == 1200 and offsite.last_run == NOW - 4 * HOUR
    assert not usb.available and usb.why_unavailable == "root missing: /mnt/usb"
    assert rec.disk is not None and rec.disk.days_left == 2.0
    assert rec.disk.raid[0].degraded and rec.disk.raid[0].failed_devices == ("sdb1",)
    assert rec.verifier is not None and rec.verifier.files_per_cycle == 2  # 12000 / 8640
    assert rec.verifier.verified_total == 2000 and rec.verifier.period_coverage == 0.25
    missing = rec.finding("missing", "nas")
    assert missing is not None and missing.value == 150 and missing.severity == "page"
    assert len(missing.names) == NAMES_KEPT == 100 and missing.names[0] == MISSING[0]


def test_a_backup_configured_but_not_read_yet_shows_unavailable() -> None:
    store, backups = _facts()
    verdict = judge(PARAMS, store, backups[:1], NOW)
    rec = recordings_snap(PARAMS, store, backups[:1], verdict, now=NOW, sources=SOURCES,
                          scans={}, verify_days=30, interval=300.0)
    by = {s.name: s for s in rec.sources}
    assert by["nas"].available and not by["offsite"].available
    assert by["offsite"].why_unavailable == "not read yet" and by["offsite"].scanned_at is None


def test_metrics_serve_counts_ages_disk_raid_and_the_core_s_severity_without_names() -> None:
    text, got = _scrape(_snap(_rec()))
    for name in (*MISSING[:3], "short.wav", "rot.wav", "gone.wav", "Permission"):
        assert name not in text  # no file name, no free text in any label
    assert got[("lifeline_recordings_missing", (("backup", "nas"),))] == 150
    assert got[("lifeline_recordings_missing", (("backup", "offsite"),))] == 0
    assert got[("lifeline_recordings_mismatched", (("backup", "nas"),))] == 1
    assert got[("lifeline_recordings_corrupt", (("backup", "offsite"),))] == 1
    assert got[("lifeline_recordings_dropped_early", (("backup", "offsite"),))] == 2
    assert got[("lifeline_recordings_lost", ())] == 1
    # An unavailable backup is one finding: no counts that would read "0 missing".
    assert ("lifeline_recordings_missing", (("backup", "usb"),)) not in got
    assert got[("lifeline_recordings_source_up", (("source", "usb"),))] == 0
    assert got[("lifeline_recordings_source_up", (("source", "nas"),))] == 1
    # The age is at the snapshot's time (a minute after the verdict).
    age = got[("lifeline_recordings_backup_newest_age_seconds", (("backup", "nas"),))]
    assert age == 2 * DAY + 3 * HOUR + 60
    assert got[("lifeline_recordings_verified_total", (("backup", "nas"),))] == 1200
    assert got[("lifeline_recordings_files", (("source", "offsite"),))] == 11990
    assert got[("lifeline_recordings_scan_duration_seconds", (("source", "nas"),))] == 0.75
    assert got[("lifeline_recordings_last_scan_timestamp_seconds",
                (("source", "store"),))] == NOW - 30
    assert got[("lifeline_recordings_unreadable_entries", (("source", "store"),))] == 2
    assert got[("lifeline_recordings_oldest_timestamp_seconds",
                (("source", "offsite"),))] == NOW - 300 * DAY
    assert got[("lifeline_recordings_disk_avail_bytes", ())] == 20 * 2**30
    assert got[("lifeline_recordings_disk_time_left_seconds", ())] == 2 * DAY
    assert got[("lifeline_recordings_raid_degraded", (("array", "md0"),))] == 1
    assert got[("lifeline_recordings_verify_coverage_ratio", ())] == 0.25
    assert got[("lifeline_recordings_last_check_timestamp_seconds", ())] == NOW

    def sev(check: str, subject: str) -> str:
        [on] = [s for s in ("ok", "ticket", "page") if got[(
            "lifeline_recordings_check_severity",
            (("check", check), ("severity", s), ("subject", subject)))] == 1]
        return on

    assert sev("freshness", "nas") == "page" and sev("freshness", "offsite") == "ok"
    assert sev("available", "usb") == "ticket"  # not in must_hold: never a page
    assert sev("raid", "md0") == "page" and sev("disk_days", "store") == "page"
    assert sev("unreadable", "store") == "ticket"
    pages = got[("lifeline_recordings_findings", (("severity", "page"),))]
    tickets = got[("lifeline_recordings_findings", (("severity", "ticket"),))]
    assert (pages, tickets) == (8, 3)  # tickets: usb, unreadable, 2% free


def test_every_recordings_metric_is_served_for_a_site_that_has_each_part() -> None:
    """The catalog's recordings entries each read a series off this snapshot (the
    runtime's own test proves a daemon fills them)."""
    _, got = _scrape(_snap(_rec()))
    served = {name.removesuffix("_total") for name, _ in got}
    rec = [m for m in CATALOG if m.when in RECORDINGS_WHEN]
    assert len(rec) >= 20 and all(m.name.startswith("lifeline_recordings_") for m in rec)
    for m in rec:
        assert m.name.removesuffix("_total") in served, m.name
    assert {m.name for m in CATALOG if m.name.startswith("lifeline_recordings_")} == {
        m.name for m in rec}


def test_without_a_recordings_section_nothing_is_served_or_shown() -> None:
    snap = _snap(None)
    text, _ = _scrape(snap)
    assert not re.search(r"^lifeline_recordings_\w+[{ ]", text, re.M)
    doc = status_document(snap)
    assert doc["recordings"] is None
    assert "recordings" not in render_status(doc)


def test_no_infinity_reaches_the_document_and_it_is_plain_json() -> None:
    store = StoreFacts(files=0, free_bytes=10, total_bytes=100)  # nothing written: inf days
    backups = [BackupFacts("nas")]  # holds nothing: freshness value inf
    verdict = judge(PARAMS, store, backups, NOW)
    assert any(math.isinf(f.value) for f in verdict.findings)
    rec = recordings_snap(PARAMS, store, backups, verdict, now=NOW, sources=SOURCES[:2],
                          scans={}, verify_days=30, interval=300.0)
    doc = status_document(_snap(rec))
    text = json.dumps(doc, allow_nan=False)  # raises on inf/nan
    assert doc["recordings"]["disk"]["days_left"] is None
    assert json.loads(text)["recordings"]["sources"][1]["newest_age"] is None
    _, got = _scrape(_snap(rec))
    assert got[("lifeline_recordings_disk_time_left_seconds", ())] == math.inf


def test_the_status_document_names_what_is_missing_and_counts_the_rest() -> None:
    doc = status_document(_snap(_rec()))["recordings"]
    assert doc["worst"] == "page" and doc["pages"] == 8 and doc["tickets"] == 3
    by = {s["name"]: s for s in doc["sources"]}
    assert by["nas"]["missing"] == 150 and by["nas"]["freshness"] == "page"
    assert by["nas"]["newest_age"] == 2 * DAY + 3 * HOUR + 60
    assert by["offsite"]["corrupt"] == 1 and by["offsite"]["dropped_early"] == 2
    assert by["usb"]["missing"] is None and by["usb"]["why_unavailable"]
    assert "missing" not in by["store"]
    [missing] = [f for f in doc["findings"] if f["check"] == "missing" and f["subject"] == "nas"]
    assert missing["names"] == list(MISSING[:100]) and missing["names_left_off"] == 50
    [lost] = [f for f in doc["findings"] if f["check"] == "lost"]
    assert lost["names"] == ["2026/11/30/gone.wav"] and lost["names_left_off"] == 0
    assert doc["disk"]["raid"][0] == {"name": "md0", "active": True, "degraded": True,
                                      "failed_devices": ["sdb1"], "detail": "raid1 [2/1] [U_]"}
    assert doc["verifier"]["period_coverage"] == 0.25
    json.dumps(doc, allow_nan=False)


def test_lifeline_status_has_a_line_per_source_and_each_finding_that_is_not_ok() -> None:
    text = render_status(status_document(_snap(_rec())))
    block = text[text.index("recordings:"):].splitlines()
    assert block[0].startswith("recordings: 8 pages, 3 tickets (checked ")
    assert "took 4.2 s" in block[0]
    store = next(x for x in block if x.startswith("  store /srv/recordings"))
    assert "12000 recordings" in store and "md0 DEGRADED" in store
    assert "2.0 days left" in store and "2 unreadable" in store
    nas = next(x for x in block if x.startswith("  nas (folder /mnt/nas/recordings)"))
    assert "STALE newest 2d3h old" in nas and "missing 150" in nas and "verified 1200" in nas
    usb = next(x for x in block if x.startswith("  usb "))
    assert "UNAVAILABLE: root missing: /mnt/usb" in usb
    assert any(x.startswith("  verify: 25% of the recordings this period") for x in block)
    found = [x for x in block if x.startswith(("  PAGE ", "  TICKET "))]
    assert len(found) == 11
    assert any(x.startswith("  PAGE freshness: nas: stale") for x in found)
    assert any("TICKET available: usb: unavailable" in x for x in found)
    assert not any(" OK " in x for x in block)


def test_before_the_first_check_the_block_says_so() -> None:
    doc = status_document(_snap(RecordingsSnap(judged_at=None)))
    assert recordings_lines(doc["recordings"]) == ["", "recordings: not checked yet"]
    _, got = _scrape(_snap(RecordingsSnap(judged_at=None)))
    assert not any(name.startswith("lifeline_recordings_findings") for name, _ in got)


_times = st.one_of(st.none(), st.floats(NOW - 400 * DAY, NOW + DAY))
_counts = st.integers(0, 10**6)


@st.composite
def _any_facts(draw: st.DrawFn) -> tuple[StoreFacts, list[BackupFacts]]:
    store = StoreFacts(
        available=draw(st.booleans()), files=draw(_counts), newest_mtime=draw(_times),
        lost_young=draw(st.integers(0, 3)), free_bytes=draw(st.one_of(st.none(), _counts)),
        total_bytes=draw(st.one_of(st.none(), st.integers(1, 10**12))),
        written_recent_bytes=draw(_counts), recent_window_s=draw(st.sampled_from([0.0, DAY])),
        raid=tuple(RaidFacts(f"md{i}", draw(st.booleans()), draw(st.booleans()))
                   for i in range(draw(st.integers(0, 2)))))
    backups = [BackupFacts(name, available=draw(st.booleans()), newest_mtime=draw(_times),
                           pending_since=draw(_times), last_run=draw(_times),
                           missing=draw(st.integers(0, 3)), corrupt=draw(st.integers(0, 2)),
                           verified=draw(_counts))
               for name in ("nas", "offsite")]
    return store, backups


@settings(max_examples=150, deadline=None)
@given(_any_facts(), st.integers(0, 10**6))
def test_any_verdict_makes_a_plain_json_document_a_text_and_a_scrape(
        facts: tuple[StoreFacts, list[BackupFacts]], verified: int) -> None:
    """Whatever the facts, the page gets JSON it can parse (no Infinity, no NaN), the text
    renders, and /metrics serves every finding's state set with exactly one severity on."""
    store, backups = facts
    verdict = judge(PARAMS, store, backups, NOW)
    rec = recordings_snap(PARAMS, store, backups, verdict, now=NOW, sources=SOURCES[:3],
                          scans={}, verify_days=30, interval=300.0,
                          verified_this_period=verified)
    snap = _snap(rec)
    doc = status_document(snap)
    json.dumps(doc, allow_nan=False)
    assert render_status(doc).count("\n  ") >= len(SOURCES[:3])
    _, got = _scrape(snap)
    on = [labels for (name, labels), value in got.items()
          if name == "lifeline_recordings_check_severity" and value == 1]
    assert len(on) == len(verdict.findings)
