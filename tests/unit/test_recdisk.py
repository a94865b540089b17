"""probes.recdisk: the recordings volume's space, /proc/mdstat, and which md array holds a path.

Where the samples' format comes from (tests/unit/data/mdstat/, written by hand in exactly
the kernel's layout; device names and numbers are made up):
- every file: drivers/md/md.c ``md_seq_show`` (the ``Personalities : [raid1] `` line, the
  ``mdX : active|inactive [(read-only)|(auto-read-only)] <level> dev[n](W)(F)(S)(R)``
  header, ``\\n      <blocks> blocks super 1.2``, the pers->status text, then a line that
  starts with six spaces and holds the resync status, an optional ``bitmap:`` line and an
  empty line; ``       `` (seven spaces) after an inactive array) and ``status_unused``
  (``unused devices: <none>`` or the names, each followed by a space);
- raid1-clean, raid1-degraded-recovery: raid1.c ``raid1_status`` (`` [%d/%d] [`` then
  ``U`` or ``_`` per disk), md.c ``status_resync`` (a 20-step ``[=>....]`` bar, then
  ``  recovery =%3u.%u%% (done/total) finish=%lu.%lumin speed=%ldK/sec``) and
  md-bitmap.c ``md_bitmap_status`` (``bitmap: %lu/%lu pages [%luKB], %lu%s chunk``);
- many-levels: raid5.c ``raid5_status`` (`` level %d, %dk chunk, algorithm %d [n/m] [U..]``,
  also for raid6), raid10.c ``raid10_status`` (`` %dK chunks %d near-copies``), raid0.c
  ``raid0_status`` (`` %dk chunks``, no [n/m]), md-linear.c (`` %dk rounding``), the
  ``check`` and ``resync`` words of ``status_resync`` and its ``\\tresync=PENDING``;
- imsm-container: an Intel Matrix (IMSM) container and its member array as mdadm
  assembles them (``super external:imsm``, ``super external:/md127/0``);
- no-arrays: a kernel with md loaded and no array.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.recdisk import (
    MAX_ARRAYS,
    MAX_DEVICES,
    MdArray,
    MdDevice,
    array_of,
    arrays_of,
    arrays_of_dev,
    md_arrays,
    md_from_sysfs,
    parse_mdstat,
    read_disk,
    volume,
)

SAMPLES = Path(__file__).resolve().parent / "data" / "mdstat"


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


def by_name(text: str) -> dict[str, MdArray]:
    return {a.name: a for a in md_arrays(text)}


# --------------------------------------------------------------------------- mdstat


def test_two_clean_mirrors_are_active_and_not_degraded() -> None:
    stat = parse_mdstat(sample("raid1-clean.txt"))
    assert stat.personalities == ("raid1", "linear", "multipath", "raid0", "raid6", "raid5",
                                  "raid4", "raid10")
    assert stat.unused == ()
    md1, md0 = stat.arrays
    assert md1 == MdArray(
        name="md1", level="raid1", devices=(MdDevice("sdb2", 1), MdDevice("sda2", 0)),
        active=True, degraded=False, state_words=("active",), raid_disks=2, working_disks=2,
        member_map="UU")
    assert (md0.name, md0.degraded, md0.recovery) == ("md0", False, None)
    assert md0.describe() == "raid1 [2/2] [UU]"


def test_a_mirror_rebuilding_after_a_failed_disk_is_degraded_with_its_progress() -> None:
    [md0] = md_arrays(sample("raid1-degraded-recovery.txt"))
    assert md0.degraded and md0.active
    assert (md0.raid_disks, md0.working_disks, md0.member_map) == (2, 1, "U_")
    assert md0.failed == ("sdb1",)
    assert [d.name for d in md0.devices] == ["sdc1", "sdb1", "sda1"]
    assert (md0.sync_action, md0.sync_percent) == ("recovery", 8.2)
    assert md0.recovery == ("recovery =  8.2% (80253312/976630336) finish=98.5min "
                            "speed=151662K/sec")
    assert md0.describe() == "raid1 [2/1] [U_], recovery = 8.2%"


def test_every_level_of_the_many_levels_sample() -> None:
    stat = parse_mdstat(sample("many-levels.txt"))
    arrays = {a.name: a for a in stat.arrays}
    assert list(arrays) == ["md2", "md3", "md4", "md5", "md6", "md7", "md127"]
    assert stat.unused == ("sds1", "sdt1")

    md2 = arrays["md2"]  # raid5 lost a disk; the spare is not in yet
    assert (md2.level, md2.degraded, md2.failed, md2.spares) == ("raid5", True, ("sdd1",),
                                                                  ("sde1",))
    assert (md2.raid_disks, md2.working_disks, md2.member_map) == (4, 3, "UUU_")

    md3 = arrays["md3"]  # raid6 initial resync: redundant, just busy
    assert (md3.level, md3.degraded, md3.sync_action, md3.sync_percent) == (
        "raid6", False, "resync", 38.1)

    md4 = arrays["md4"]  # the monthly check
    assert (md4.level, md4.degraded, md4.member_map, md4.sync_action) == (
        "raid10", False, "UUUU", "check")

    md5 = arrays["md5"]  # raid0 has no [n/m]: nothing to be degraded
    assert (md5.level, md5.degraded, md5.raid_disks, md5.member_map) == ("raid0", False, None,
                                                                         None)

    md6 = arrays["md6"]
    assert md6.state_words == ("active", "auto-read-only")
    assert (md6.level, md6.recovery, md6.sync_action, md6.sync_percent) == (
        "raid1", "resync=PENDING", "resync", None)
    assert md6.devices[1] == MdDevice("sdo1", 0, write_mostly=True)

    assert (arrays["md7"].level, arrays["md7"].degraded) == ("linear", False)

    md127 = arrays["md127"]  # assembled but not started
    assert (md127.active, md127.level, md127.degraded) == (False, None, False)
    assert md127.spares == ("sdq1", "sdr1")
    assert md127.describe() == "inactive"


def test_an_imsm_container_and_its_member_array() -> None:
    arrays = by_name(sample("imsm-container.txt"))
    assert (arrays["md126"].level, arrays["md126"].degraded,
            arrays["md126"].member_map) == ("raid1", False, "UU")
    assert (arrays["md127"].active, arrays["md127"].spares) == (False, ("sdb", "sda"))


def test_no_arrays_and_no_text_are_empty_not_errors() -> None:
    assert parse_mdstat(sample("no-arrays.txt")).arrays == ()
    assert parse_mdstat("").arrays == ()
    assert parse_mdstat("\n\n   \n").personalities == ()


def test_a_degraded_map_without_counts_and_counts_without_a_map_both_count() -> None:
    only_map = "md9 : active raid1 sda1[0]\n      1024 blocks [U_]\n"
    only_counts = "md9 : active raid1 sda1[0]\n      1024 blocks super 1.2 [2/1]\n"
    assert by_name(only_map)["md9"].degraded
    assert by_name(only_counts)["md9"].degraded


def test_only_the_blocks_line_gives_counts_not_the_bitmap_or_the_bar() -> None:
    text = ("md0 : active raid1 sdb1[1] sda1[0]\n"
            "      1046528 blocks super 1.2 [2/2] [UU]\n"
            "      [=>...................]  check =  5.0% (1/2) finish=1.0min speed=1K/sec\n"
            "      bitmap: 3/4 pages [12KB], 65536KB chunk\n")
    [md0] = md_arrays(text)
    assert (md0.raid_disks, md0.working_disks, md0.degraded) == (2, 2, False)


# ------------------------------------------------------------------ mdstat: never raises


@given(st.text(max_size=2000))
def test_any_text_parses_without_raising(text: str) -> None:
    stat = parse_mdstat(text)
    assert len(stat.arrays) <= MAX_ARRAYS
    assert all(len(a.devices) <= MAX_DEVICES for a in stat.arrays)


_LINES = [line for name in sorted(os.listdir(SAMPLES)) for line in sample(name).splitlines()]


@given(st.lists(st.sampled_from(_LINES) | st.text(alphabet="md0 :[]()/U_FS=%.1234\t",
                                                  max_size=60), max_size=60))
def test_shuffled_and_mangled_sample_lines_parse_without_raising(lines: list[str]) -> None:
    stat = parse_mdstat("\n".join(lines))
    for array in stat.arrays:
        assert array.degraded is False or array.active
        array.describe()


def test_a_huge_text_is_cut_and_the_output_bounded() -> None:
    header = "md0 : active raid1 " + " ".join(f"sd{i}[{i}]" for i in range(1000)) + "\n"
    many = "".join(f"md{i} : active raid1 sda[0]\n      1 blocks [1/1] [U]\n\n"
                   for i in range(2000))
    stat = parse_mdstat(header + "\n" + many + "9" * 10_000_000)
    assert len(stat.arrays) == MAX_ARRAYS
    assert len(stat.arrays[0].devices) == MAX_DEVICES


def _render(array: MdArray) -> str:
    """An array in the kernel's layout (md_seq_show + raid1_status), for the round trip."""
    devices = "".join(
        f" {d.name}[{d.slot}]" + ("(W)" if d.write_mostly else "") + ("(F)" if d.failed else "")
        + ("(S)" if d.spare and not d.failed else "") for d in array.devices)
    level = f" {array.level}" if array.active else ""
    head = f"{array.name} : {'active' if array.active else 'inactive'}{level}{devices}\n"
    if not array.active:
        return head + "      1024 blocks super 1.2\n       \n"
    return (head + f"      1024 blocks super 1.2 [{array.raid_disks}/{array.working_disks}] "
            f"[{array.member_map}]\n      \n")


device = st.builds(MdDevice, name=st.from_regex(r"(sd[a-z]{1,2}|nvme[0-9]n1p)[0-9]{1,2}",
                                                fullmatch=True),
                   slot=st.integers(0, 99), failed=st.booleans(), write_mostly=st.booleans())


@st.composite
def arrays(draw: st.DrawFn) -> MdArray:
    active = draw(st.booleans())
    devices = tuple(draw(st.lists(device, min_size=1, max_size=6)))
    if not active:
        devices = tuple(MdDevice(d.name, d.slot, spare=True) for d in devices)
        return MdArray(draw(st.from_regex(r"md[0-9]{1,3}", fullmatch=True)), None, devices,
                       False, False, ("inactive",))
    member_map = draw(st.text(alphabet="U_", min_size=1, max_size=6))
    n, m = len(member_map), member_map.count("U")
    return MdArray(draw(st.from_regex(r"md[0-9]{1,3}", fullmatch=True)),
                   draw(st.sampled_from(["raid1", "raid10", "raid5", "raid6"])), devices, True,
                   "_" in member_map, ("active",), n, m, member_map)


@given(st.lists(arrays(), max_size=5, unique_by=lambda a: a.name))
@settings(max_examples=200)
def test_rendered_arrays_parse_back_to_themselves(given_arrays: list[MdArray]) -> None:
    text = ("Personalities : [raid1] [raid10] [raid6] [raid5] \n"
            + "".join(_render(a) for a in given_arrays) + "unused devices: <none>\n")
    assert md_arrays(text) == given_arrays


# ------------------------------------------------------------------------------ sysfs


def _link(link: Path, target: str) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)


@pytest.fixture
def sysfs(tmp_path: Path) -> Path:
    """A /sys with the real layout (links as in /sys/dev/block and slaves/): md0 = raid1
    of sda1 + sdb1, md1 another array, md0p1 a partition of md0, dm-0 an LVM volume on md0,
    dm-3 a volume spanning md0 and md1, dm-1/dm-2 a (broken) loop, sdc1 a plain disk."""
    sys = tmp_path / "sys"
    blk = sys / "devices" / "virtual" / "block"
    pci = sys / "devices" / "pci0000:00" / "0000:00:1f.2" / "ata1" / "host0" / "block"
    for disk in ("sda", "sdb", "sdc"):
        (pci / disk / f"{disk}1").mkdir(parents=True)
        (pci / disk / f"{disk}1" / "partition").write_text("1\n")
        (pci / disk / "slaves").mkdir()
    for md in ("md0", "md1"):
        (blk / md / "md").mkdir(parents=True)
    (blk / "md0" / "md0p1").mkdir()
    (blk / "md0" / "md0p1" / "partition").write_text("1\n")
    for part in ("sda1", "sdb1"):
        rel = f"../../../../pci0000:00/0000:00:1f.2/ata1/host0/block/{part[:3]}/{part}"
        _link(blk / "md0" / "slaves" / part, rel)
    _link(blk / "dm-0" / "slaves" / "md0", "../../md0")
    _link(blk / "dm-3" / "slaves" / "md0", "../../md0")
    _link(blk / "dm-3" / "slaves" / "md1", "../../md1")
    _link(blk / "dm-1" / "slaves" / "dm-2", "../../dm-2")
    _link(blk / "dm-2" / "slaves" / "dm-1", "../../dm-1")
    dev = sys / "dev" / "block"
    for majmin, where in {"9:0": "virtual/block/md0", "9:1": "virtual/block/md1",
                          "259:0": "virtual/block/md0/md0p1", "253:0": "virtual/block/dm-0",
                          "253:1": "virtual/block/dm-1", "253:3": "virtual/block/dm-3",
                          "8:33": "pci0000:00/0000:00:1f.2/ata1/host0/block/sdc/sdc1"}.items():
        _link(dev / majmin, f"../../devices/{where}")
    return sys


@pytest.mark.parametrize(("major", "minor", "expected"), [
    (9, 0, ("md0",)),  # the array itself
    (259, 0, ("md0",)),  # a partition of it
    (253, 0, ("md0",)),  # LVM on it
    (253, 3, ("md0", "md1")),  # a volume spanning two arrays
    (253, 1, ()),  # a loop of slaves ends
    (8, 33, ()),  # a plain partition
    (0, 45, ()),  # tmpfs, overlay: no block device
])
def test_arrays_of_a_device_through_partitions_and_device_mapper(
        sysfs: Path, major: int, minor: int, expected: tuple[str, ...]) -> None:
    assert arrays_of_dev(major, minor, sys_root=str(sysfs)) == expected


def _on(sysfs: Path, path: Path, target: str) -> None:
    """Make ``path``'s real st_dev look like it lies on ``target`` in the fake sysfs."""
    dev = os.stat(path).st_dev
    link = sysfs / "dev" / "block" / f"{os.major(dev)}:{os.minor(dev)}"
    if link.is_symlink():
        link.unlink()
    link.symlink_to(f"../../devices/virtual/block/{target}")


def test_array_of_a_path_and_read_disk_join_statvfs_sysfs_and_mdstat(
        sysfs: Path, tmp_path: Path) -> None:
    store = tmp_path / "recordings"
    store.mkdir()
    _on(sysfs, store, "dm-0")
    assert array_of(store, sys_root=str(sysfs)) == "md0"
    assert arrays_of(store, sys_root=str(sysfs)) == ("md0",)
    mdstat = tmp_path / "mdstat"
    shutil.copy(SAMPLES / "raid1-degraded-recovery.txt", mdstat)
    report = read_disk(store, mdstat_path=str(mdstat), sys_root=str(sysfs))
    assert report.error is None and report.raid_error is None
    assert report.volume is not None and report.volume.device == "dm-0"
    [md0] = report.arrays
    assert md0.degraded and md0.failed == ("sdb1",)


def test_read_disk_says_what_it_could_not_read_and_never_raises(sysfs: Path,
                                                                 tmp_path: Path) -> None:
    gone = read_disk(tmp_path / "not-there", sys_root=str(sysfs))
    assert gone.volume is None and gone.error == (f"{tmp_path / 'not-there'}: No such file "
                                                  "or directory")
    _on(sysfs, tmp_path, "md1")
    no_mdstat = read_disk(tmp_path, mdstat_path=str(tmp_path / "mdstat"), sys_root=str(sysfs))
    assert no_mdstat.volume is not None and no_mdstat.arrays == ()
    assert no_mdstat.raid_error == (f"{tmp_path / 'mdstat'}: No such file or directory; md1 "
                                    f"in neither {tmp_path / 'mdstat'} nor {sysfs / 'block'}")
    (tmp_path / "other").write_text(sample("no-arrays.txt"))
    absent = read_disk(tmp_path, mdstat_path=str(tmp_path / "other"), sys_root=str(sysfs))
    assert absent.raid_error == f"md1 in neither {tmp_path / 'other'} nor {sysfs / 'block'}"


def _md_attrs(sysfs: Path, name: str, **attrs: str) -> None:
    """/sys/block/<name> -> the device's directory, with md/ attributes as the kernel has."""
    link = sysfs / "block" / name
    if not link.exists():
        _link(link, f"../devices/virtual/block/{name}")
    for attr, value in attrs.items():
        (sysfs / "devices" / "virtual" / "block" / name / "md" / attr).write_text(value + "\n")


def test_an_array_mdstat_does_not_list_is_read_from_sysfs(sysfs: Path, tmp_path: Path) -> None:
    _md_attrs(sysfs, "md1", array_state="clean", level="raid1", raid_disks="2", degraded="1",
              sync_action="recover")
    md1 = md_from_sysfs("md1", sys_root=str(sysfs))
    assert md1 is not None
    assert (md1.active, md1.level, md1.degraded, md1.raid_disks, md1.working_disks) == (
        True, "raid1", True, 2, 1)
    assert md1.describe() == "raid1 [2/1], sync_action recovery"
    _on(sysfs, tmp_path, "md1")
    report = read_disk(tmp_path, mdstat_path=str(tmp_path / "mdstat"), sys_root=str(sysfs))
    assert report.arrays == (md1,) and report.raid_error is None
    _md_attrs(sysfs, "md0", array_state="inactive", raid_disks="2", degraded="garbage")
    md0 = md_from_sysfs("md0", sys_root=str(sysfs))
    assert md0 is not None and (md0.active, md0.degraded, md0.level) == (False, False, None)
    assert md_from_sysfs("md9", sys_root=str(sysfs)) is None


def test_a_volume_not_on_md_reads_no_mdstat(sysfs: Path, tmp_path: Path) -> None:
    report = read_disk(tmp_path, mdstat_path="/nonexistent/mdstat", sys_root=str(sysfs))
    assert report.volume is not None and report.arrays == () and report.raid_error is None


def test_volume_agrees_with_df(tmp_path: Path) -> None:
    vol = volume(tmp_path)
    usage = shutil.disk_usage(tmp_path)
    assert vol.total_bytes == usage.total
    assert abs(vol.avail_bytes - usage.free) < 256 * 2**20  # others write meanwhile
    assert vol.total_bytes >= vol.free_bytes >= vol.avail_bytes >= 0
    assert vol.path == str(tmp_path)
