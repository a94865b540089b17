"""The ``recordings:`` config section: defaults, refusals by path (nesting, must_hold,
secrets), warnings, the summary, and the d/w/y duration units it brought."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from controller.config import ConfigError, load_config, parse_config, summary
from controller.config.recordings import recordings_checks, recordings_summary
from controller.core.durations import format_duration, format_period, parse_duration
from controller.core.recordings import RecordingsParams, verify_plan
from tests.unit.test_config import build, errors_of

DAY = 86400.0
REC: dict[str, Any] = {
    "store": {"path": "/srv/recordings"},
    "backups": [{"name": "nas", "folder": "/mnt/nas/recordings"},
                {"name": "offsite", "restic": {"repository": "/mnt/usb/restic",
                                               "password_file": "/etc/lifeline/restic.pw"}}],
    "retention": "5y",
}


def with_rec(rec: dict[str, Any], **top: Any) -> str:
    def mutate(data: dict[str, Any]) -> None:
        data["recordings"] = rec
        data.update(top)
    return build(mutate)


def rec_errors(rec: dict[str, Any], **top: Any) -> list[str]:
    return errors_of(with_rec(rec, **top))


def changed(**kw: Any) -> dict[str, Any]:
    out = copy.deepcopy(REC)
    out.update(kw)
    return out


# ------------------------------------------------------------------------------ reading


def test_defaults_are_filled_in_and_reach_the_core() -> None:
    cfg = parse_config(with_rec(REC))
    rec = cfg.recordings
    assert rec is not None
    assert rec.params() == RecordingsParams(retention=5 * 365 * DAY)
    assert rec.store.patterns == ["*.wav"]
    assert (rec.interval, rec.full_scan_every, rec.verify_days) == (300.0, DAY, 30)
    assert rec.must_hold_names == ["nas", "offsite"]
    offsite = rec.backup("offsite")
    assert offsite.kind == "restic" and offsite.restic is not None
    assert str(rec.restic_path(offsite)) == "/srv/recordings"
    assert str(offsite.restic.binary) == "/usr/bin/restic"
    assert offsite.restic.cache_dir is None
    assert cfg.warnings == []


def test_no_recordings_section_is_none_and_says_nothing() -> None:
    cfg = parse_config(build())
    assert cfg.recordings is None
    assert "recordings" not in summary(cfg)


def test_every_setting_is_read() -> None:
    cfg = parse_config(with_rec(changed(
        store={"path": "/srv/rec", "patterns": ["*.wav", "*.mp3"]},
        backups=[{"name": "usb", "folder": "/media/usb/rec"},
                 {"name": "cloud", "restic": {
                     "repository": "sftp:backup@vault.example:/srv/restic",
                     "password_file": "/etc/lifeline/restic.pw", "path": "/data/rec",
                     "binary": "/usr/local/bin/restic", "cache_dir": "/var/cache/lifeline",
                     "timeout": "1h"}}],
        schedule="12h", grace="1h", retention="10y2d", must_hold=["cloud"],
        interval="10m", full_scan_every="2d", verify_days=90,
        disk={"warn_days_left": 30, "page_days_left": 2.5, "min_free": "10%"})))
    rec = cfg.recordings
    assert rec is not None
    assert rec.params() == RecordingsParams(
        retention=3652 * DAY, schedule=12 * 3600, grace=3600, must_hold=frozenset({"cloud"}),
        warn_days_left=30, page_days_left=2.5, min_free=0.1)
    cloud = rec.backup("cloud")
    assert cloud.restic is not None and cloud.restic.local_path is None
    assert str(rec.restic_path(cloud)) == "/data/rec"
    assert (rec.full_scan_every, rec.verify_days, cloud.restic.timeout) == (2 * DAY, 90, 3600)


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(("rec", "error"), [
    (changed(backups=[]), "recordings.backups: needs at least one backup (a folder or a "
     "restic repository): the store alone, RAID or not, is not a backup"),
    ({k: v for k, v in REC.items() if k != "retention"}, "recordings.retention: required"),
    (changed(retention="forever"), "recordings.retention: not a duration: 'forever' "
     "(expected a number with ms, s, m, h, d, w or y, e.g. 200ms)"),
    (changed(retention="200y"), "recordings.retention: '200y' is longer than a century: "
     "a typo?"),
    (changed(retention=0), "recordings.retention: must be longer than 0"),
    (changed(schedule="2w"), "recordings.schedule: '2w' is longer than a week: a typo?"),
    (changed(backups=[{"name": "nas"}]), "recordings.backups[0]: needs exactly one of "
     "folder: /mnt/nas/recordings (a mirror of the tree) or restic: {repository, "
     "password_file}"),
    (changed(backups=[{"name": "nas", "folder": "mnt/nas"}]),
     "recordings.backups[0].folder: must be an absolute path"),
    (changed(backups=[{"name": "x", "restic": {"repository": "/r", "password_file": "/p",
                                               "password": "hunter2"}}]),
     "recordings.backups[0].restic.password: an inline password is not accepted: use "
     "password_file, so the secret stays out of config files, backups and logs"),
    (changed(backups=[{"name": "x", "restic": {"repository": "backups/restic",
                                               "password_file": "/p"}}]),
     "recordings.backups[0].restic.repository: 'backups/restic' is neither an absolute path "
     "nor backend:location (sftp:, rest:, s3:, ...): a relative path would depend on the "
     "daemon's working directory"),
    (changed(backups=[{"name": "x", "restic": {
        "repository": "rest:https://lifeline:secret@vault.example/", "password_file": "/p"}}]),
     "recordings.backups[0].restic.repository: a repository URL with user:password@ puts a "
     "secret in the config and the logs; use the backend's credentials file or environment"),
    (changed(backups=[{"name": "x", "restic": {"repository": "/r"}}]),
     "recordings.backups[0].restic.password_file: required"),
    (changed(store={"path": "/srv/rec", "patterns": ["2026/*.wav"]}),
     "recordings.store.patterns[0]: '2026/*.wav': a pattern matches file names, not paths "
     "(no '/'); every folder of the tree is searched"),
    (changed(disk={"warn_days_left": 2, "page_days_left": 3}),
     "recordings.disk: page_days_left 3 is above warn_days_left 2 (the ticket comes first, "
     "the page when it is urgent)"),
    (changed(verify_days=0), "recordings.verify_days: must be >= 1"),
    (changed(retnetion="5y"), "recordings.retnetion: unknown field (did you mean retention?)"),
])
def test_a_bad_field_is_named_by_its_path(rec: dict[str, Any], error: str) -> None:
    assert error in rec_errors(rec)


@pytest.mark.parametrize(("rec", "top", "error"), [
    (changed(backups=[{"name": "nas", "folder": "/srv/recordings/backup"}]), {},
     "recordings.backups[0].folder: /srv/recordings/backup is inside the store "
     "(/srv/recordings): a backup in the store's tree is on the store's own disk: no backup"),
    (changed(backups=[{"name": "nas", "folder": "/srv"}]), {},
     "recordings.backups[0].folder: /srv holds the store (/srv/recordings): a backup in the "
     "store's tree is on the store's own disk: no backup"),
    (changed(backups=[{"name": "nas", "folder": "/srv/x/../recordings/"}]), {},
     "recordings.backups[0].folder: /srv/recordings is the store (/srv/recordings): a backup "
     "in the store's tree is on the store's own disk: no backup"),
    (changed(backups=[{"name": "nas", "folder": "/mnt/nas"},
                      {"name": "usb", "restic": {"repository": "local:/mnt/nas/restic",
                                                 "password_file": "/p"}}]), {},
     "recordings.backups[1].restic.repository: /mnt/nas/restic is inside backup nas "
     "(/mnt/nas): two backups in one tree are one copy"),
    (REC, {"state_dir": "/mnt/nas/recordings/.lifeline"},
     "state_dir: /mnt/nas/recordings/.lifeline is inside backup nas (/mnt/nas/recordings): "
     "lifeline's state (its index) would be written there, and lifeline never writes in the "
     "recordings or their backups"),
    (REC, {"api_socket": "/srv/recordings/lifeline.sock"},
     "api_socket: /srv/recordings/lifeline.sock is inside the store (/srv/recordings): "
     "lifeline's socket would be written there, and lifeline never writes in the recordings "
     "or their backups"),
    (changed(backups=[{"name": "usb", "restic": {
        "repository": "/mnt/usb/restic", "password_file": "/p",
        "cache_dir": "/mnt/usb/restic/cache"}}]), {},
     "recordings.backups[0].restic.cache_dir: /mnt/usb/restic/cache is inside backup usb's "
     "repository (/mnt/usb/restic): restic's cache would be written there, and lifeline "
     "never writes in the recordings or their backups"),
    (changed(must_hold=["nsa"]), {},
     "recordings.must_hold[0]: unknown backup 'nsa' (did you mean nas?)"),
    (changed(must_hold=["nas", "nas"]), {}, "recordings.must_hold[1]: nas is listed twice"),
    (changed(must_hold=[]), {}, "recordings.must_hold: empty; name the backups every "
     "recording must reach, or leave must_hold out for all of them"),
    (changed(backups=[REC["backups"][0], {"name": "nas", "folder": "/media/usb"}]), {},
     "recordings.backups[1].name: duplicate backup name nas (also recordings.backups[0])"),
    (changed(backups=[{"name": "store", "folder": "/mnt/nas"}]), {},
     "recordings.backups[0].name: 'store' is the name of the store itself (in metrics and "
     "the API); call the backup after where it is"),
    (changed(interval="10m", full_scan_every="5m"), {},
     "recordings.full_scan_every: 5m is shorter than the interval 10m (a full scan is one of "
     "the cycles)"),
])
def test_a_layout_lifeline_could_write_into_or_that_is_no_backup_is_refused(
        rec: dict[str, Any], top: dict[str, Any], error: str) -> None:
    assert rec_errors(rec, **top) == [error]


def test_the_nesting_check_also_runs_when_another_section_is_broken() -> None:
    def mutate(data: dict[str, Any]) -> None:
        data["recordings"] = changed(backups=[{"name": "nas", "folder": "/srv/recordings/b"}])
        data["links"][0]["gateway"] = "not-an-address"
    errors = errors_of(build(mutate))
    assert "links[0].gateway: not an IPv4/IPv6 address" in errors
    assert any(e.startswith("recordings.backups[0].folder: /srv/recordings/b is inside")
               for e in errors)


def test_errors_carry_the_yaml_line() -> None:
    text = with_rec(changed(must_hold=["nsa"]))
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    [line] = info.value.lines
    assert line is not None and text.splitlines()[line - 1].strip() == "- nsa"


# ----------------------------------------------------------------------------- warnings


@pytest.mark.parametrize(("rec", "warning"), [
    (changed(retention="1d"), "recordings.retention: 1d is shorter than a copy's schedule "
     "plus grace (26h): a recording may leave before it is due in a backup"),
    (changed(retention="3d", verify_days=2), "recordings.retention: 3d is short for a legal "
     "retention; did you mean years (e.g. 5y)?"),
    (changed(retention="2w", verify_days=30), "recordings.verify_days: 30 days is longer than "
     "the retention (2w): some recordings leave before their turn to be verified"),
    (changed(schedule="1h", grace="0s", interval="2h", full_scan_every="2h"),
     "recordings.interval: 2h is longer than schedule plus grace (1h): a missed copy is "
     "found a cycle late"),
])
def test_what_is_legal_but_likely_not_meant_is_a_warning(rec: dict[str, Any],
                                                         warning: str) -> None:
    assert warning in parse_config(with_rec(rec)).warnings


# ------------------------------------------------------------------------------ summary


def test_the_summary_says_what_is_watched_due_kept_verified_and_read_only() -> None:
    cfg = parse_config(with_rec(changed(must_hold=["offsite"])))
    assert recordings_summary(cfg.recordings) == [
        "recordings: store /srv/recordings (*.wav), checked every 5m, full scan every 24h; "
        "read only (nothing in the store or a backup is ever written, moved or deleted)",
        "  nas: folder /mnt/nas/recordings; not in must_hold: tickets only",
        "  offsite: restic /mnt/usb/restic (as /srv/recordings), password from "
        "/etc/lifeline/restic.pw, /usr/bin/restic, no cache; must hold every recording",
        "  each recording due in offsite within 26h (a copy every 24h + 2h grace) and kept 5y "
        "(1825 days)",
        "  integrity: every recording read back from each backup and compared by SHA-256 once "
        "in 30 days (for a million recordings: 116 per 5m cycle)",
        "  disk: page below 3 days left at the recent write rate, ticket below 14 days or 5% "
        "free; degraded software RAID under the store pages",
    ]
    assert "\n".join(recordings_summary(cfg.recordings)) in summary(cfg)


# ---------------------------------------------------------------- durations: d, w and y


@pytest.mark.parametrize(("text", "seconds"), [
    ("1d", DAY), ("2w", 14 * DAY), ("5y", 5 * 365 * DAY), ("1y2d", 367 * DAY),
    ("1d12h", 1.5 * DAY), ("0.5d", 0.5 * DAY), ("1w1d1h1m1s", 8 * DAY + 3661),
])
def test_days_weeks_and_years_of_365_days(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5Y", "1 y", "y", "1yr", "5years", "-1d"])
def test_long_units_refuse_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_format_period_prefers_the_largest_whole_unit() -> None:
    assert [format_period(s) for s in (5 * 365 * DAY, 14 * DAY, 30 * DAY, 26 * 3600, 90.0)] == [
        "5y", "2w", "30d", "26h", "1m30s"]
    assert format_duration(7 * DAY) == "168h"  # format_duration itself is unchanged


@given(st.integers(min_value=0, max_value=100 * 365 * 86400))
def test_format_period_round_trips_whole_seconds(seconds: int) -> None:
    assert parse_duration(format_period(float(seconds))) == seconds


# ------------------------------------------------------------------ docs/recordings.md

DOC = Path(__file__).resolve().parents[2] / "docs" / "recordings.md"


def test_the_config_reference_of_docs_recordings_md_loads_without_warnings() -> None:
    text = DOC.read_text()
    block = text.split("## Config reference", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    section = yaml.safe_load(block)["recordings"]
    cfg = parse_config(with_rec(section))
    assert cfg.recordings is not None and cfg.warnings == []
    assert cfg.recordings.must_hold_names == ["nas", "offsite"]


def test_the_verification_table_of_docs_recordings_md_is_what_verify_plan_says() -> None:
    rows = re.findall(r"^\| ([\d,]+) \| (\d+) \| 5m \| (\d+) \| (\d+) MB \(([\d.]+) MB/s\) \|$",
                      DOC.read_text(), re.MULTILINE)
    assert len(rows) == 3
    for files, days, per_cycle, mb, rate in rows:
        total = int(files.replace(",", ""))
        plan = verify_plan(total, total * 1_000_000, int(days), 300, backups=2)
        assert plan.files_per_cycle == int(per_cycle)
        assert round(plan.bytes_per_cycle / 1e6) == int(mb)
        assert f"{plan.read_bytes_per_s / 1e6:.2g}" == rate


def test_the_shipped_example_watches_a_mirror_and_a_restic_repository() -> None:
    """examples/lifeline.yaml's section is what docs/recordings.md describes, and clean."""
    cfg = load_config(Path(__file__).resolve().parents[2] / "examples" / "lifeline.yaml")
    rec = cfg.recordings
    assert rec is not None and cfg.warnings == []
    assert [(b.name, b.kind) for b in rec.backups] == [("nas", "folder"), ("offsite", "restic")]
    restic = rec.backup("offsite").restic
    assert restic is not None and restic.password_file == Path("/etc/lifeline/secrets/restic")
    assert rec.must_hold_names == ["nas", "offsite"]
    assert (rec.retention, rec.schedule, rec.grace, rec.verify_days) == (
        5 * 365 * 86400.0, 86400.0, 7200.0, 30)
    assert recordings_checks(rec, cfg.state_dir, cfg.api_socket) == ([], [])
