"""controller.core.recordings: facts about recordings and backups -> findings (pure, time
passed in): what pages, what opens a ticket, and the verification quota."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.recordings import (
    DAY,
    BackupFacts,
    Check,
    RaidFacts,
    RecordingsParams,
    Severity,
    StoreFacts,
    completeness_window,
    days_left,
    judge,
    verify_plan,
    verify_quota,
)

NOW = 1_796_000_000.0  # 2026-11-30, Unix seconds
HOUR = 3600.0
P = RecordingsParams(retention=5 * 365 * DAY)  # daily copy, 2 h grace: stale after 26 h
GIB = 2**30
HEALTHY_STORE = StoreFacts(files=1000, newest_mtime=NOW - 60, oldest_mtime=NOW - 400 * DAY,
                           free_bytes=500 * GIB, total_bytes=1000 * GIB,
                           written_recent_bytes=7 * GIB, recent_window_s=7 * DAY,
                           raid=(RaidFacts("md0", detail="raid1 [2/2] [UU]"),))


def fresh(name: str, **kw: object) -> BackupFacts:
    """A backup that holds everything: last night's copy, nothing pending for long."""
    base: dict[str, object] = {"newest_mtime": NOW - 8 * HOUR, "pending_since": NOW - 7 * HOUR,
                               "oldest_mtime": NOW - 400 * DAY, "verified": 120}
    base.update(kw)
    return BackupFacts(name, **base)  # type: ignore[arg-type]


def problems(store: StoreFacts = HEALTHY_STORE, *backups: BackupFacts,
             params: RecordingsParams = P, now: float = NOW) -> list[tuple[str, str, str]]:
    verdict = judge(params, store, backups, now)
    return [(f.check.value, f.subject, f.severity.value) for f in verdict.problems]


# ------------------------------------------------------------------------------ all well


def test_a_site_whose_backups_hold_everything_has_no_problem_and_every_number() -> None:
    verdict = judge(P, HEALTHY_STORE, [fresh("nas"), fresh("offsite", last_run=NOW - 9 * HOUR)],
                    NOW)
    assert verdict.problems == ()
    assert verdict.worst is Severity.OK
    checks = {(f.check, f.subject) for f in verdict.findings}
    for name in ("nas", "offsite"):
        for check in (Check.AVAILABLE, Check.FRESHNESS, Check.MISSING, Check.MISMATCHED,
                      Check.CORRUPT, Check.GONE, Check.UNREADABLE):
            assert (check, name) in checks
    for check in (Check.AVAILABLE, Check.LOST, Check.DISK_DAYS, Check.DISK_FREE,
                  Check.UNREADABLE):
        assert (check, "store") in checks
    assert (Check.RAID, "md0") in checks
    nas_age = verdict.of(Check.FRESHNESS, "nas")
    assert nas_age is not None and nas_age.value == 8 * HOUR
    assert nas_age.reason == "nas: newest copy 8h old"


def test_a_quiet_weekend_is_not_stale_however_old_the_newest_copy_is() -> None:
    # Nothing recorded since Friday: the backup's newest is the store's newest.
    assert problems(HEALTHY_STORE, fresh("nas", newest_mtime=NOW - 60 * HOUR,
                                         pending_since=None)) == []


def test_monday_mornings_first_recording_is_not_stale_before_the_nights_copy() -> None:
    # Friday's copy is 61 h old, but the only recording after it was made an hour ago.
    assert problems(HEALTHY_STORE, fresh("nas", newest_mtime=NOW - 61 * HOUR,
                                         pending_since=NOW - HOUR)) == []


# ----------------------------------------------------------------------------- freshness


def test_a_recording_waiting_longer_than_schedule_plus_grace_makes_the_backup_stale() -> None:
    verdict = judge(P, HEALTHY_STORE, [fresh("nas", newest_mtime=NOW - 50 * HOUR,
                                             pending_since=NOW - 30 * HOUR)], NOW)
    [stale] = verdict.problems
    assert (stale.check, stale.subject, stale.severity) == (Check.FRESHNESS, "nas", Severity.PAGE)
    assert stale.value == 50 * HOUR
    assert stale.reason == ("nas: stale: newest copy 2d2h old; a recording made 30h ago is "
                            "not there, expected within 26h")


# Whole seconds: the times the runtime hands over are whole (ns truncated), and a float
# ``now - (now - limit)`` need not give ``limit`` back.
@given(schedule=st.integers(min_value=60, max_value=7 * 86400),
       grace=st.integers(min_value=0, max_value=86400),
       now=st.integers(min_value=10**9, max_value=4 * 10**9))
def test_stale_exactly_after_schedule_plus_grace(schedule: int, grace: int, now: int) -> None:
    params = RecordingsParams(retention=365 * DAY, schedule=schedule, grace=grace)
    limit = params.stale_after
    at_limit = fresh("nas", newest_mtime=now - 2 * limit, pending_since=now - limit)
    assert problems(HEALTHY_STORE, at_limit, params=params, now=now) == []
    past = fresh("nas", newest_mtime=now - 2 * limit,
                 pending_since=math.nextafter(now - limit, -math.inf))
    assert problems(HEALTHY_STORE, past, params=params, now=now) == [
        ("freshness", "nas", "page")]


def test_a_restic_job_that_stopped_running_with_nothing_to_copy_is_a_ticket() -> None:
    verdict = judge(P, HEALTHY_STORE, [fresh("offsite", pending_since=None,
                                             last_run=NOW - 3 * DAY)], NOW)
    [late] = verdict.problems
    assert (late.check, late.severity) == (Check.FRESHNESS, Severity.TICKET)
    assert late.reason == ("offsite: no backup run for 3d (expected every 24h); nothing was "
                           "waiting to be copied yet")


def test_an_empty_backup_with_recordings_waiting_is_stale_with_an_infinite_age() -> None:
    verdict = judge(P, HEALTHY_STORE, [BackupFacts("nas", pending_since=NOW - 2 * DAY)], NOW)
    [stale] = verdict.problems
    assert stale.check is Check.FRESHNESS and math.isinf(stale.value)
    assert stale.reason.startswith("nas: stale: holds nothing yet; a recording made 2d ago")


# ----------------------------------------------------------------- availability: one finding


def test_an_unmounted_backup_is_one_finding_not_everything_missing() -> None:
    gone = fresh("nas", available=False, why_unavailable="root empty: /mnt/nas/recordings",
                 missing=1000, missing_names=("a.wav",), pending_since=NOW - 9 * DAY,
                 gone_young=1000, corrupt=3)
    verdict = judge(P, HEALTHY_STORE, [gone, fresh("offsite")], NOW)
    [only] = verdict.problems
    assert (only.check, only.subject, only.severity) == (Check.AVAILABLE, "nas", Severity.PAGE)
    assert only.reason == ("nas: unavailable (root empty: /mnt/nas/recordings); its other "
                           "checks wait until it can be read")
    assert [f.check for f in verdict.findings if f.subject == "nas"] == [Check.AVAILABLE]


backup_facts = st.builds(
    BackupFacts, name=st.sampled_from(["nas", "usb", "offsite"]), available=st.booleans(),
    newest_mtime=st.none() | st.floats(0, NOW), pending_since=st.none() | st.floats(0, NOW),
    last_run=st.none() | st.floats(0, NOW), missing=st.integers(0, 10**6),
    mismatched=st.integers(0, 10), gone_young=st.integers(0, 10), corrupt=st.integers(0, 10),
    missing_names=st.lists(st.text(max_size=20), max_size=5).map(tuple))


@given(backup_facts)
def test_an_unavailable_backup_is_always_exactly_one_finding(backup: BackupFacts) -> None:
    verdict = judge(P, HEALTHY_STORE, [backup], NOW)
    mine = [f for f in verdict.findings if f.subject == backup.name]
    if not backup.available:
        assert [(f.check, f.severity) for f in mine] == [(Check.AVAILABLE, Severity.PAGE)]
    else:
        # available, freshness, missing, mismatched, corrupt, gone, unreadable
        assert len(mine) == 7


@given(backup_facts)
def test_a_backup_outside_must_hold_never_pages(backup: BackupFacts) -> None:
    params = RecordingsParams(retention=5 * 365 * DAY, must_hold=frozenset({"elsewhere"}))
    verdict = judge(params, HEALTHY_STORE, [backup], NOW)
    assert all(f.severity is not Severity.PAGE for f in verdict.findings
               if f.subject == backup.name)


def test_the_unreadable_store_pages_and_skips_its_disk_but_not_its_raid() -> None:
    store = StoreFacts(available=False, why_unavailable="root missing: /srv/recordings",
                       free_bytes=0, total_bytes=GIB,
                       raid=(RaidFacts("md0", degraded=True, detail="raid1 [2/1] [U_]"),))
    assert problems(store) == [("available", "store", "page"), ("raid", "md0", "page")]


# ----------------------------------------------- completeness, integrity, retention: page


def test_missing_and_different_copies_page_and_name_the_recordings() -> None:
    names = tuple(f"2026/11/29/call-{i}.wav" for i in range(5))
    verdict = judge(P, HEALTHY_STORE, [fresh("nas", missing=7, missing_names=names,
                                             mismatched=1, mismatched_names=names[:1])], NOW)
    missing = verdict.of(Check.MISSING, "nas")
    assert missing is not None and missing.severity is Severity.PAGE and missing.value == 7
    assert missing.names == names  # all the facts had: the API lists them
    assert missing.reason == ("nas: 7 recordings older than its last copy by the grace are not "
                              "in it: 2026/11/29/call-0.wav, 2026/11/29/call-1.wav, "
                              "2026/11/29/call-2.wav and 4 more")
    other = verdict.of(Check.MISMATCHED, "nas")
    assert other is not None and other.reason == (
        "nas: 1 recording is there with another size than the original: "
        "2026/11/29/call-0.wav")


@pytest.mark.parametrize(("facts", "check"), [
    ({"corrupt": 2, "corrupt_names": ("a.wav", "b.wav")}, "corrupt"),
    ({"gone_young": 1, "gone_names": ("2024/01/02/x.wav",)}, "gone"),
])
def test_a_corrupt_copy_and_a_retention_breach_page(facts: dict[str, object],
                                                    check: str) -> None:
    assert problems(HEALTHY_STORE, fresh("nas", **facts)) == [(check, "nas", "page")]


def test_a_recording_lost_before_any_backup_held_it_pages() -> None:
    store = dataclasses.replace(HEALTHY_STORE, lost_young=1, lost_names=("2026/11/28/c.wav",))
    verdict = judge(P, store, [fresh("nas")], NOW)
    [lost] = verdict.problems
    assert lost.reason == ("store: 1 recording younger than the retention left the store "
                           "before any backup held it: 2026/11/28/c.wav")


def test_completeness_window_is_older_than_the_backups_newest_by_the_grace() -> None:
    assert completeness_window(P, None, NOW) is None
    oldest, newest = completeness_window(P, NOW - 8 * HOUR, NOW) or (0.0, 0.0)
    assert newest == NOW - 10 * HOUR and oldest == NOW - P.retention
    # a backup clock ahead of ours does not move the window into the future
    assert completeness_window(P, NOW + DAY, NOW) == (NOW - P.retention, NOW - P.grace)
    assert completeness_window(P, NOW - P.retention, NOW) is None


def test_what_the_walk_could_not_read_is_a_ticket_naming_each() -> None:
    names = ("2026/11/29: permission ([Errno 13] Permission denied)",
             "2026/11/29/loop.wav: symlink (not followed)")
    store = dataclasses.replace(HEALTHY_STORE, problems=2, problem_names=names)
    verdict = judge(P, store, [fresh("nas", problems=1, problem_names=names[1:])], NOW)
    assert [(f.check, f.subject, f.severity) for f in verdict.problems] == [
        (Check.UNREADABLE, "store", Severity.TICKET), (Check.UNREADABLE, "nas", Severity.TICKET)]
    assert verdict.problems[0].reason == (
        "store: 2 entries could not be read: 2026/11/29: permission ([Errno 13] Permission "
        "denied), 2026/11/29/loop.wav: symlink (not followed)")
    assert verdict.problems[1].names == names[1:]


# ---------------------------------------------------------------------------- disk, RAID


@pytest.mark.parametrize(("free_gib", "per_day_gib", "expected"), [
    (500, 1, []),
    (10, 1, [("disk_days", "store", "ticket")]),  # 10 days left
    (2, 1, [("disk_days", "store", "page")]),
    # full, and so nothing written: no rate, still a page
    (0, 0, [("disk_days", "store", "page"), ("disk_free", "store", "ticket")]),
])
def test_days_left_at_the_recent_write_rate(free_gib: int, per_day_gib: int,
                                            expected: list[tuple[str, str, str]]) -> None:
    store = StoreFacts(free_bytes=free_gib * GIB, total_bytes=free_gib * GIB + GIB,
                       written_recent_bytes=7 * per_day_gib * GIB, recent_window_s=7 * DAY)
    assert problems(store) == expected


def test_the_disk_reason_says_space_days_and_rate() -> None:
    store = StoreFacts(free_bytes=2 * GIB, total_bytes=100 * GIB,
                       written_recent_bytes=7 * GIB, recent_window_s=7 * DAY)
    verdict = judge(P, store, [], NOW)
    days = verdict.of(Check.DISK_DAYS, "store")
    assert days is not None and days.value == 2.0
    assert days.reason == ("store: 2 GiB free, 2.0 days left at 1 GiB/day; full within 3 "
                           "days: the recorder stops recording")
    full = judge(P, dataclasses.replace(store, free_bytes=0), [], NOW).of(Check.DISK_DAYS,
                                                                          "store")
    assert full is not None
    assert full.reason == "store: the volume is full: the recorder cannot record"
    low = verdict.of(Check.DISK_FREE, "store")
    assert low is not None and (low.severity, low.value) == (Severity.TICKET, 0.02)
    assert low.reason == "store: 2.0% of the volume free, below the 5% minimum"


@given(st.integers(0, 2**50), st.integers(0, 2**50), st.integers(0, 2**40),
       st.floats(0, 30 * DAY))
def test_days_left_never_falls_when_free_space_grows(a: int, b: int, written: int,
                                                     window: float) -> None:
    low, high = sorted((a, b))
    assert days_left(low, written, window) <= days_left(high, written, window)
    assert days_left(low, written, window) >= 0


def test_raid_degraded_or_inactive_pages_a_failed_member_alone_is_a_ticket() -> None:
    store = StoreFacts(raid=(
        RaidFacts("md0", degraded=True, failed_devices=("sdb1",), detail="raid1 [2/1] [U_]"),
        RaidFacts("md1", active=False),
        RaidFacts("md2", failed_devices=("sdc1",), detail="raid1 [2/2] [UU]"),
        RaidFacts("md3")))
    verdict = judge(P, store, [], NOW)
    assert [(f.subject, f.severity.value) for f in verdict.problems] == [
        ("md0", "page"), ("md1", "page"), ("md2", "ticket")]
    assert verdict.problems[0].reason == ("md0: degraded (raid1 [2/1] [U_]); failed: sdb1: one "
                                          "more disk failure loses every recording not yet "
                                          "copied")


# ------------------------------------------------------------------------- verification


def test_verify_quota_for_a_million_recordings_in_thirty_days_of_five_minute_cycles() -> None:
    assert verify_quota(1_000_000, 30, 300) == 116  # 8640 cycles
    assert verify_quota(0, 30, 300) == 0
    assert verify_quota(10, 1, 7 * DAY) == 10  # a cycle longer than the period: all at once
    plan = verify_plan(1_000_000, 1_000_000 * 960_000, 30, 300, backups=2)
    assert plan.files_per_cycle == 116 and plan.cycles_per_period == 8640
    assert plan.bytes_per_cycle == 116 * 960_000 * 3
    assert plan.describe(30) == ("every recording verified once in 30 days: 116 per cycle, "
                                 "319 MiB read per cycle (1.06 MiB/s on average)")


@given(st.integers(0, 10**8), st.integers(1, 3650), st.floats(1, 30 * DAY))
def test_the_quota_covers_every_recording_within_verify_days(total: int, verify_days: int,
                                                             interval: float) -> None:
    quota = verify_quota(total, verify_days, interval)
    cycles = max(1, math.floor(verify_days * DAY / interval))
    # The cycles fit in the period, but for float rounding (275 days of 1.1 s: 21,600,000
    # cycles come to the period plus 4 ns).
    assert cycles * interval <= verify_days * DAY * (1 + 1e-12) or cycles == 1
    assert quota * cycles >= total
    assert (quota - 1) * cycles < total or total == 0  # and no more than needed


# ------------------------------------------------------------------------------ property


fresh_backups = st.lists(
    st.builds(BackupFacts, name=st.sampled_from(["nas", "usb", "offsite"]),
              newest_mtime=st.none() | st.floats(NOW - 400 * DAY, NOW),
              pending_since=st.none() | st.floats(NOW - P.stale_after, NOW),
              last_run=st.none() | st.floats(NOW - P.stale_after, NOW),
              verified=st.integers(0, 10**6)),
    max_size=3, unique_by=lambda b: b.name)


@given(fresh_backups, st.integers(0, 2**50), st.integers(0, 2**40))
def test_no_finding_when_every_backup_holds_everything_in_time(
        backups: list[BackupFacts], spare: int, written: int) -> None:
    # Enough room for the warning period at this rate, and above min_free.
    per_day = written / 7
    free = int(per_day * (P.warn_days_left + 1)) + spare + 1
    store = StoreFacts(free_bytes=free, total_bytes=free * 10, written_recent_bytes=written,
                       recent_window_s=7 * DAY, raid=(RaidFacts("md0"),))
    assert judge(P, store, backups, NOW).problems == ()
