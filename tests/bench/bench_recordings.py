"""Benchmark: the recordings index at a million recordings, first scan and steady state.

Run: ``python -m tests.bench.bench_recordings [--files 1000000] [--where shm|tmp] [--json]``.
No root, no network. It builds a store of ``--files`` tiny recordings as recorders lay
them out (``YYYY/MM/DD/<call-id>.wav``, 550 a day, going back from today, each day's
directory and files stamped with that day) and a mirror of it, on /dev/shm (``shm``, so
the figure is lifeline's cost and not the disk's) or /tmp; the index goes to a temporary
state directory on /tmp, as ``state_dir`` would be on disk. It measures, with wall time,
CPU time and peak RSS (VmHWM, reset before each phase):

- the first full scan of both trees into an empty index, then the first compare (which
  computes the pair's gaps once; the schema's triggers keep them from then on);
- a steady-state cycle after 1,000 new recordings reached the store and 990 the mirror:
  both incremental scans, compare (it must find the 10), gone, lost, stats of both,
  the write rate and one verification batch: what the runtime does every cycle;
- a cycle with nothing new, ``compare`` alone, the daily full pass of both trees, and
  opening the index again (what a daemon start costs: the schema check and quick_check).

Goals (issue 13): steady-state cycle <= 2 s, first scan <= 60 s, RSS <= 300 MB. Trees and
index are removed at the end, also on failure. The probe-lateness part (probe rounds during
a full scan) comes with the runtime's wiring.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from probes.recindex import RecIndex

if TYPE_CHECKING:
    from tests.bench.bench_failover import Figure

__all__ = ["figures", "main", "run"]

PER_DAY = 550
NEW = 1000
NOT_COPIED = 10  # of the new recordings, this many never reach the mirror
WAV = ["*.wav"]
DAY_NS = 86400 * 10**9
GRACE_NS = 2 * 3600 * 10**9
RETENTION_NS = 5 * 365 * DAY_NS
GOAL_FIRST_S = 60.0
GOAL_STEADY_S = 2.0
GOAL_RSS_MB = 300.0
WHERE = {"shm": "/dev/shm", "tmp": "/tmp"}  # the bench's own scratch space
INODE_BYTES = 2048  # what a tiny file costs a tmpfs, generously


def _status(key: str) -> float:
    """VmRSS / VmHWM of this process in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    """Reset VmHWM to the current RSS, so each phase's peak is its own."""
    Path("/proc/self/clear_refs").write_text("5")


@contextmanager
def _measured(into: dict[str, Any], key: str) -> Iterator[None]:
    _reset_peak()
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    into[key] = {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
                 "peak_rss_mb": _status("VmHWM"), "rss_mb": _status("VmRSS")}


def _build(root: Path, files: int, now_ns: int, copied: Callable[[int], bool]) -> int:
    """``files`` empty recordings, PER_DAY a day back from yesterday, stamped with their day
    (directories too, as an untouched archive's are). Returns how many were made."""
    made = 0
    day = 1
    base = os.fsencode(root)
    while made < files:
        t = now_ns - day * DAY_NS
        d = base + time.strftime("/%Y/%m/%d", time.gmtime(t // 10**9)).encode()
        os.makedirs(d, exist_ok=True)
        for i in range(min(PER_DAY, files - made)):
            if copied(made):
                path = d + b"/%08d-%04d.wav" % (day, i)
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
                stamp = t + i * 10**9
                os.utime(path, ns=(stamp, stamp))
            made += 1
        for p in (d, os.path.dirname(d), os.path.dirname(os.path.dirname(d))):
            os.utime(p, ns=(t + DAY_NS // 2, t + DAY_NS // 2))
        day += 1
    return made


def _add_new(root: Path, now_ns: int, count: int) -> None:
    """Today's new recordings (three hours old: past the grace, so a missing one counts)."""
    d = os.fsencode(root) + time.strftime("/%Y/%m/%d", time.gmtime(now_ns // 10**9)).encode()
    os.makedirs(d, exist_ok=True)
    stamp = now_ns - 3 * 3600 * 10**9
    for i in range(count):
        path = d + b"/new-%04d.wav" % i
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
        os.utime(path, ns=(stamp, stamp))


def _cycle(index: RecIndex, roots: dict[str, Path], now_ns: int) -> dict[str, Any]:
    """What the runtime asks of the index every cycle."""
    scans = {name: index.scan_tree(name, root, WAV, now_ns=now_ns)
             for name, root in roots.items()}
    cmp = index.compare("store", "nas", older_than_ns=now_ns - GRACE_NS)
    gone, _ = index.gone("nas", younger_than_ns=now_ns - RETENTION_NS)
    lost, _ = index.lost("store", ["nas"], younger_than_ns=now_ns - RETENTION_NS)
    stats = {name: index.stats(name) for name in roots}
    written = index.written_bytes("store", now_ns - DAY_NS)
    batch = index.verify_batch("store", None, 120)
    return {"missing": cmp.missing, "mismatched": cmp.mismatched, "gone": gone, "lost": lost,
            "files": {n: s.files for n, s in stats.items()}, "written": written,
            "batch": len(batch),
            "dirs_listed": {n: r.dirs_listed for n, r in scans.items()},
            "dirs_skipped": {n: r.dirs_skipped for n, r in scans.items()},
            "problems": sum(r.problems_total for r in scans.values())}


def run(files: int = 1_000_000, where: str = "shm",
        out: Callable[[str], None] = print) -> dict[str, Any]:
    """The bench, on one worker thread as the daemon scans (probes/recworker.py): glibc
    grows and shrinks a main thread's heap on every big scan, which about doubled the
    first scan's time when this ran on the main thread (bench_scan_lateness's finding)."""
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bench-rec") as worker:
        return worker.submit(_run, files, where, out).result()


def _run(files: int, where: str, out: Callable[[str], None]) -> dict[str, Any]:
    result: dict[str, Any] = {"files": files, "where": where}
    with tempfile.TemporaryDirectory(prefix="bench-rec-", dir=WHERE[where]) as trees, \
            tempfile.TemporaryDirectory(prefix="bench-rec-state-") as state:
        roots = {"store": Path(trees) / "store", "nas": Path(trees) / "nas"}
        now = time.time_ns()
        began = time.perf_counter()
        for root in roots.values():
            _build(root, files, now, lambda _: True)
        out(f"built 2 x {files} recordings in {time.perf_counter() - began:.0f} s")
        index = RecIndex(Path(state) / "index.sqlite")
        try:
            with _measured(result, "first_scan"):
                reports = [index.scan_tree(n, r, WAV, now_ns=now) for n, r in roots.items()]
            if any(r.files != files for r in reports):
                raise RuntimeError(f"first scan indexed {[r.files for r in reports]}")
            with _measured(result, "first_compare"):
                first = index.compare("store", "nas", older_than_ns=now - GRACE_NS)
            if first.missing or first.mismatched:
                raise RuntimeError(f"identical trees compared as different: {first}")
            out(f"first scan: {_line(result['first_scan'])}")

            _add_new(roots["store"], now, NEW)
            _add_new(roots["nas"], now, NEW - NOT_COPIED)
            with _measured(result, "steady_cycle"):
                checked = _cycle(index, roots, time.time_ns())
            result["steady_found"] = checked
            if (checked["missing"], checked["mismatched"]) != (NOT_COPIED, 0):
                raise RuntimeError(f"steady cycle found {checked}, expected {NOT_COPIED} missing")
            out(f"steady cycle after {NEW} new: {_line(result['steady_cycle'])} ({checked})")
            with _measured(result, "idle_cycle"):
                _cycle(index, roots, time.time_ns())
            with _measured(result, "compare_alone"):
                index.compare("store", "nas", older_than_ns=now - GRACE_NS)
            with _measured(result, "full_pass"):
                for name, root in roots.items():
                    index.scan_tree(name, root, WAV, now_ns=time.time_ns(), full=True)
            out(f"full pass: {_line(result['full_pass'])}")
        finally:
            index.close()
        with _measured(result, "reopen"):
            RecIndex(Path(state) / "index.sqlite").close()
        result["index_mb"] = sum(p.stat().st_size for p in Path(state).iterdir()) / 2**20
        began = time.perf_counter()
    out(f"removed the trees in {time.perf_counter() - began:.0f} s")
    return result


def _line(m: dict[str, float]) -> str:
    return (f"wall {m['wall_s']:.2f} s, CPU {m['cpu_s']:.2f} s, "
            f"peak RSS {m['peak_rss_mb']:.0f} MB")


def figures(result: dict[str, Any]) -> list[Figure]:
    """The summary rows of ``run``'s result, for ``run_all``."""
    from tests.bench.bench_failover import Figure

    n = f"{result['files']:,} files x 2 trees ({result['where']})"
    first, steady = result["first_scan"], result["steady_cycle"]
    peak = max(m["peak_rss_mb"] for k, m in result.items()
               if isinstance(m, dict) and "peak_rss_mb" in m)
    return [
        Figure(f"recordings: first full scan, {n}", _line(first), f"<= {GOAL_FIRST_S:g} s",
               first["wall_s"] <= GOAL_FIRST_S),
        Figure("recordings: first compare (the pair's gaps computed once)",
               _line(result["first_compare"])),
        Figure(f"recordings: steady cycle after {NEW:,} new (scans, compare, gone, lost, "
               "stats)", _line(steady), f"<= {GOAL_STEADY_S:g} s",
               steady["wall_s"] <= GOAL_STEADY_S),
        Figure("recordings: cycle with nothing new", _line(result["idle_cycle"])),
        Figure("recordings: compare alone", _line(result["compare_alone"])),
        Figure("recordings: daily full pass of both trees", _line(result["full_pass"])),
        Figure("recordings: opening the index (schema and quick_check)",
               _line(result["reopen"])),
        Figure("recordings: peak RSS over all phases", f"{peak:.0f} MB",
               f"<= {GOAL_RSS_MB:g} MB", peak <= GOAL_RSS_MB),
        Figure("recordings: index file", f"{result['index_mb']:.0f} MB"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=1_000_000,
                        help="recordings in the store (and its mirror); default 1,000,000")
    parser.add_argument("--where", choices=sorted(WHERE), default="shm",
                        help="where the trees go: /dev/shm (default) or /tmp")
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)
    if not NEW <= args.files <= 2_000_000:
        parser.error(f"--files must be {NEW}..2000000")
    free = shutil.disk_usage(WHERE[args.where]).free
    if free < 2 * args.files * INODE_BYTES:
        print(f"bench_recordings: {WHERE[args.where]} has {free / 2**20:.0f} MB free, "
              f"too little for 2 x {args.files} files", file=sys.stderr)
        return 2
    from tests.bench.bench_failover import print_table

    result = run(args.files, args.where)
    print_table(figures(result), "recordings index")
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
