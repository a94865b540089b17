"""The recordings volume: its free space (statvfs) and the Linux software RAID under it.

Blocking and cheap (a statvfs, a few sysfs links, one small /proc file): the runtime calls
it from its worker thread once per recordings cycle. Three readers and one that joins them:

- ``volume(path)``: total, free (for root) and available (for an unprivileged writer such
  as the recorder: what ``df`` shows as Avail) bytes of the filesystem holding ``path``, and
  the block device's kernel name.
- ``parse_mdstat(text)`` / ``md_arrays(text)``: the text of ``/proc/mdstat`` as the kernel's
  md driver writes it (drivers/md/md.c ``md_seq_show``, the personalities' ``status``
  methods, ``status_resync``): a header line per array (``md0 : active raid1 sdb1[1]
  sda1[0]``, members flagged ``(F)`` failed, ``(S)`` spare, ``(W)`` write-mostly, ``(J)``
  journal, ``(R)`` replacement), then its indented lines (``... blocks super 1.2 [2/1]
  [U_]``, a progress line ``[==>...]  recovery = 12.6% ...`` or ``resync=DELAYED``, a
  ``bitmap:`` line). Any text is accepted: what does not parse is skipped, output is
  bounded, nothing raises.
- ``arrays_of(path)``: the md arrays under the filesystem of ``path``, found from its
  ``st_dev`` through ``/sys/dev/block/MAJ:MIN`` and the ``slaves/`` of device-mapper
  (LVM, LUKS) layers, partitions included (``md0p1``).
- ``md_from_sysfs(name)``: one array from ``/sys/block/<name>/md/`` (``level``,
  ``raid_disks``, ``degraded``, ``array_state``, ``sync_action``), for an array under the
  store that /proc/mdstat does not list (or when it cannot be read).
- ``read_disk(path)``: all of them for the runtime, never raising: errors are words.

The /proc and /sys locations are parameters, so tests run on sample files.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

__all__ = [
    "DiskReport",
    "MdArray",
    "MdDevice",
    "MdStat",
    "Volume",
    "array_of",
    "arrays_of",
    "arrays_of_dev",
    "md_arrays",
    "md_from_sysfs",
    "parse_mdstat",
    "read_disk",
    "volume",
]

# Bounds: a real /proc/mdstat is a few KiB; anything beyond these is not one.
MAX_TEXT = 1 << 20  # characters read
MAX_ARRAYS = 256
MAX_DEVICES = 256  # members kept per array
MAX_DEPTH = 16  # device layers followed (md on dm on dm ...)
MAX_NODES = 1024  # sysfs block devices visited for one path


@dataclass(frozen=True, slots=True)
class Volume:
    """The filesystem holding a path, as statvfs sees it."""

    path: str
    device: str | None  # kernel name (vda, md0, dm-2); None for a virtual fs (tmpfs, overlay)
    total_bytes: int
    free_bytes: int  # f_bfree: free for root
    avail_bytes: int  # f_bavail: free for an unprivileged writer (the recorder)


@dataclass(frozen=True, slots=True)
class MdDevice:
    """One member of an array: ``sdb1[1](F)`` is name sdb1, slot 1, failed."""

    name: str
    slot: int  # the member's descriptor number in the brackets
    failed: bool = False  # (F)
    spare: bool = False  # (S)
    write_mostly: bool = False  # (W)
    journal: bool = False  # (J)
    replacement: bool = False  # (R)


@dataclass(frozen=True, slots=True)
class MdArray:
    """One array of /proc/mdstat."""

    name: str  # md0, md127, md_d0
    level: str | None  # raid1, raid5, raid10, raid0, linear, ...; None when inactive
    devices: tuple[MdDevice, ...]
    active: bool
    degraded: bool  # active, and [n/m] has m < n or the map has a '_'
    state_words: tuple[str, ...] = ()  # ("active", "auto-read-only")
    raid_disks: int | None = None  # n of [n/m]
    working_disks: int | None = None  # m of [n/m]
    member_map: str | None = None  # "U_" of [U_]
    recovery: str | None = None  # "recovery = 12.6% (...) finish=... speed=...", "resync=DELAYED"
    sync_action: str | None = None  # resync, recovery, reshape, check, repair
    sync_percent: float | None = None

    @property
    def failed(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.devices if d.failed)

    @property
    def spares(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.devices if d.spare)

    def describe(self) -> str:
        """``raid1 [2/1] [U_], recovery = 12.6%``: what a reason quotes."""
        parts = [self.level or "inactive"]
        if self.raid_disks is not None and self.working_disks is not None:
            parts.append(f"[{self.raid_disks}/{self.working_disks}]")
        if self.member_map is not None:
            parts.append(f"[{self.member_map}]")
        text = " ".join(parts)
        if self.sync_action is not None and self.sync_percent is not None:
            text += f", {self.sync_action} = {self.sync_percent:g}%"
        elif self.recovery is not None:
            text += f", {self.recovery}"
        return text


@dataclass(frozen=True, slots=True)
class MdStat:
    personalities: tuple[str, ...]
    arrays: tuple[MdArray, ...]
    unused: tuple[str, ...]


_HEADER = re.compile(r"(\S{1,64}) : (active|inactive)(?: |$)(.*)")
# ASCII digits only ([0-9], not \d) and bounded counts: int() of a Unicode digit or of
# thousands of digits is not what the kernel writes.
_DEVICE = re.compile(r"([^\s\[\]()]{1,64})\[([0-9]{1,6})\]((?:\([A-Z]\)){0,8})")
_STATE_WORD = re.compile(r"\(([a-z-]{1,32})\)")
_COUNTS = re.compile(r"\[([0-9]{1,6})/([0-9]{1,6})\]")
_MAP = re.compile(r"\[([U_]{1,4096})\]")
# status_resync prints "%s =%3u.%u%%": "recovery =  8.2%", "check = 12.6%".
_SYNC = re.compile(
    r"\b(resync|recovery|reshape|check|repair) {0,4}= {0,4}([0-9]{1,3}(?:\.[0-9]{1,3})?)%")
_SYNC_STATE = re.compile(r"\b(resync|recovery|reshape|check|repair)=([A-Z]{1,16})\b")
_PROGRESS_BAR = re.compile(r"^\[[=>.]{0,64}\]\s*")


def parse_mdstat(text: str) -> MdStat:
    """The personalities, arrays and unused devices of a /proc/mdstat text; never raises."""
    personalities: list[str] = []
    unused: list[str] = []
    arrays: list[MdArray] = []
    current: dict[str, object] | None = None

    def close() -> None:
        nonlocal current
        if current is not None and len(arrays) < MAX_ARRAYS:
            arrays.append(_array(current))
        current = None

    for raw in text[:MAX_TEXT].splitlines():
        line = raw.rstrip()
        if not line.strip():
            close()
            continue
        if line.startswith("Personalities :"):
            close()
            personalities = re.findall(r"\[([^\]\s]{1,32})\]", line)[:64]
            continue
        if line.startswith("unused devices:"):
            close()
            rest = line[len("unused devices:"):].split()
            unused = [w for w in rest if w != "<none>"][:MAX_DEVICES]
            continue
        if not line[0].isspace():
            close()
            if len(arrays) < MAX_ARRAYS and (match := _HEADER.fullmatch(line)) is not None:
                current = _header(match)
            continue
        if current is not None:
            _body(current, line.strip())
    close()
    return MdStat(tuple(personalities), tuple(arrays), tuple(unused))


def md_arrays(text: str) -> list[MdArray]:
    """The arrays of a /proc/mdstat text (parse_mdstat's), in the file's order."""
    return list(parse_mdstat(text).arrays)


def _header(match: re.Match[str]) -> dict[str, object]:
    name, state, rest = match.group(1), match.group(2), match.group(3)
    words = [state]
    level: str | None = None
    devices: list[MdDevice] = []
    for token in rest.split():
        word = _STATE_WORD.fullmatch(token)
        if word is not None and not devices and level is None:
            if len(words) < 8:
                words.append(word.group(1))
        elif (dev := _DEVICE.fullmatch(token)) is not None:
            if len(devices) < MAX_DEVICES:
                flags = dev.group(3)
                devices.append(MdDevice(
                    dev.group(1), int(dev.group(2)), failed="(F)" in flags,
                    spare="(S)" in flags, write_mostly="(W)" in flags,
                    journal="(J)" in flags, replacement="(R)" in flags))
        elif state == "active" and level is None and not devices and len(token) <= 32:
            level = token
    return {"name": name, "active": state == "active", "level": level,
            "devices": tuple(devices), "words": tuple(words)}


def _body(current: dict[str, object], line: str) -> None:
    if " blocks" in line and "counts" not in current:
        counts = _COUNTS.search(line)
        member_map = _MAP.search(line)
        current["counts"] = ((int(counts.group(1)), int(counts.group(2)))
                             if counts is not None else None)
        current["map"] = member_map.group(1) if member_map is not None else None
        return
    if "recovery" in current:
        return
    if (sync := _SYNC.search(line)) is not None:
        current["recovery"] = _PROGRESS_BAR.sub("", line)[:256]
        current["sync"] = (sync.group(1), float(sync.group(2)))
    elif (pending := _SYNC_STATE.search(line)) is not None:
        current["recovery"] = pending.group(0)
        current["sync"] = (pending.group(1), None)


def _array(current: dict[str, object]) -> MdArray:
    counts = current.get("counts")
    member_map = current.get("map")
    active = bool(current["active"])
    raid_disks = working = None
    if isinstance(counts, tuple):
        raid_disks, working = counts
    degraded = active and (
        (raid_disks is not None and working is not None and working < raid_disks)
        or (isinstance(member_map, str) and "_" in member_map))
    sync = current.get("sync")
    action, percent = sync if isinstance(sync, tuple) else (None, None)
    devices = current["devices"]
    words = current["words"]
    level = current["level"]
    recovery = current.get("recovery")
    assert isinstance(devices, tuple) and isinstance(words, tuple)
    return MdArray(
        name=str(current["name"]), level=level if isinstance(level, str) else None,
        devices=devices, active=active, degraded=degraded, state_words=words,
        raid_disks=raid_disks, working_disks=working,
        member_map=member_map if isinstance(member_map, str) else None,
        recovery=recovery if isinstance(recovery, str) else None,
        sync_action=action, sync_percent=percent)


# --------------------------------------------------------------------------- the volume


def _block_dir(major: int, minor: int, sys_root: str) -> str | None:
    """The sysfs directory of block device MAJ:MIN (links resolved), or None."""
    link = os.path.join(sys_root, "dev", "block", f"{major}:{minor}")
    if not os.path.exists(link):
        return None
    return os.path.realpath(link)


def volume(path: str | os.PathLike[str], *, sys_root: str = "/sys") -> Volume:
    """Space on the filesystem holding ``path``; raises OSError when it cannot be read."""
    where = os.fspath(path)
    st = os.statvfs(where)
    dev = os.stat(where).st_dev
    block = _block_dir(os.major(dev), os.minor(dev), sys_root)
    return Volume(path=where, device=os.path.basename(block) if block else None,
                  total_bytes=st.f_blocks * st.f_frsize, free_bytes=st.f_bfree * st.f_frsize,
                  avail_bytes=st.f_bavail * st.f_frsize)


def arrays_of_dev(major: int, minor: int, *, sys_root: str = "/sys") -> tuple[str, ...]:
    """The md arrays block device MAJ:MIN is or lies on, sorted: itself when it is an
    array (a directory with ``md/``), the array of a partition (``md0p1``'s parent), and
    through ``slaves/`` the arrays under device-mapper layers (LVM, LUKS)."""
    start = _block_dir(major, minor, sys_root)
    if start is None:
        return ()
    found: set[str] = set()
    seen: set[str] = set()
    todo = [(start, 0)]
    while todo and len(seen) < MAX_NODES:
        node, depth = todo.pop()
        if node in seen or depth > MAX_DEPTH:
            continue
        seen.add(node)
        if os.path.isfile(os.path.join(node, "partition")):
            node = os.path.dirname(node)  # a partition's directory sits in its disk's
        if os.path.isdir(os.path.join(node, "md")):
            found.add(os.path.basename(node))
        try:
            slaves = os.listdir(os.path.join(node, "slaves"))
        except OSError:
            continue
        todo += [(os.path.realpath(os.path.join(node, "slaves", s)), depth + 1)
                 for s in sorted(slaves)]
    return tuple(sorted(found))


def arrays_of(path: str | os.PathLike[str], *, sys_root: str = "/sys") -> tuple[str, ...]:
    """The md arrays under the filesystem holding ``path`` (empty: none, or not a block
    device); raises OSError when ``path`` cannot be stat'ed."""
    dev = os.stat(os.fspath(path)).st_dev
    return arrays_of_dev(os.major(dev), os.minor(dev), sys_root=sys_root)


def array_of(path: str | os.PathLike[str], *, sys_root: str = "/sys") -> str | None:
    """The md array holding ``path``'s filesystem (the first, when LVM spans several)."""
    found = arrays_of(path, sys_root=sys_root)
    return found[0] if found else None


def _attr(md_dir: str, name: str) -> str | None:
    try:
        with open(os.path.join(md_dir, name), encoding="ascii", errors="replace") as fh:
            return fh.read(256).strip()
    except OSError:
        return None


def _small_int(text: str | None) -> int | None:
    return int(text) if text is not None and re.fullmatch(r"[0-9]{1,6}", text) else None


# md's sync_action words, as mdstat's progress line says them.
_SYNC_WORDS = {"resync": "resync", "recover": "recovery", "check": "check",
               "repair": "repair", "reshape": "reshape"}


def md_from_sysfs(name: str, *, sys_root: str = "/sys") -> MdArray | None:
    """Array ``name`` as ``/sys/block/<name>/md/`` describes it (no member list), or None
    when there is no such array. ``degraded`` there is the count of missing members."""
    md_dir = os.path.join(sys_root, "block", name, "md")
    state = _attr(md_dir, "array_state")
    if state is None:
        return None
    active = state not in ("inactive", "clear", "")
    raid_disks = _small_int(_attr(md_dir, "raid_disks"))
    missing = _small_int(_attr(md_dir, "degraded"))
    sync = _SYNC_WORDS.get(_attr(md_dir, "sync_action") or "")
    level = _attr(md_dir, "level") or None
    working = (raid_disks - missing if raid_disks is not None and missing is not None
               and missing <= raid_disks else None)
    return MdArray(name=name, level=level if active else None, devices=(), active=active,
                   degraded=active and bool(missing), state_words=(state[:32],),
                   raid_disks=raid_disks if missing is not None else None,
                   working_disks=working, sync_action=sync,
                   recovery=f"sync_action {sync}" if sync is not None else None)


@dataclass(frozen=True, slots=True)
class DiskReport:
    """One reading of the recordings volume, for the runtime (never an exception)."""

    volume: Volume | None
    error: str | None  # why volume is None: the OS's words
    arrays: tuple[MdArray, ...]  # the arrays under the volume (from mdstat, else sysfs)
    raid_error: str | None = None  # an array under the volume that neither describes


def read_disk(path: str | os.PathLike[str], *, mdstat_path: str = "/proc/mdstat",
              sys_root: str = "/sys") -> DiskReport:
    """The volume of ``path`` and the state of the md arrays under it."""
    try:
        vol = volume(path, sys_root=sys_root)
        names = arrays_of(path, sys_root=sys_root)
    except OSError as exc:
        return DiskReport(None, f"{os.fspath(path)}: {exc.strerror or exc}", ())
    if not names:
        return DiskReport(vol, None, ())
    why: list[str] = []
    try:
        with open(mdstat_path, encoding="utf-8", errors="replace") as fh:
            by_name = {a.name: a for a in md_arrays(fh.read(MAX_TEXT))}
    except OSError as exc:
        by_name = {}
        why.append(f"{mdstat_path}: {exc.strerror or exc}")
    arrays: list[MdArray] = []
    absent: list[str] = []
    for name in names:
        array = by_name.get(name) or md_from_sysfs(name, sys_root=sys_root)
        if array is not None:
            arrays.append(array)
        else:
            absent.append(name)
    if absent:
        why.append(f"{', '.join(absent)} in neither {mdstat_path} nor "
                   f"{os.path.join(sys_root, 'block')}")
    return DiskReport(vol, None, tuple(arrays), "; ".join(why) if absent else None)
