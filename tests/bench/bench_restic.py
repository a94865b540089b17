"""Benchmark: what reading a restic repository costs (probes/restic.py against the real restic).

Run from the repository: ``python -m tests.bench.bench_restic [--files 100000] [--dir /dev/shm]``;
no root. It writes a tree of tiny fake recordings (1,000 per day folder) under ``--dir``
(tmpfs by default: creating files on this machine's root filesystem is slow and uneven, see
LAB-NOTES-PEERS), backs it up into a new repository there, then measures lifeline's reads:
the snapshot ids of a local repository (a folder listing), one streamed listing of every
file (wall, lifeline's CPU and RSS next to restic's), the read-back of one day folder
(``dump`` as a tar, hashed as it streams) and of one file. Everything is removed at the
end, also on failure. No goals: the issue sets none for restic; the figures go in
docs/recordings-restic.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from probes.restic import Restic
from tests.bench.bench_failover import Figure, add_json_arg, log, print_table, write_json

__all__ = ["figures", "main", "run"]

REPO = Path(__file__).resolve().parents[2]

PER_FOLDER = 1000

# The listing in a child process of its own, so that its RSS and CPU, and its restic's, are
# the listing's alone (not the benchmark's imports, not the backup restic's).
_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from probes.restic import Restic
repo, password, src = sys.argv[1:4]
r = Restic(repo, Path(password), timeout=3600)
t0 = time.perf_counter()
ids = r.snapshot_ids()
t1 = time.perf_counter()
listed = sum(1 for _ in r.listing(ids[-1], src))
t2 = time.perf_counter()
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
with open("/proc/self/status") as f:  # VmHWM: ru_maxrss would keep the parent's across exec
    hwm_kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM"))
print(json.dumps({"snapshot_ids_ms": (t1 - t0) * 1e3, "listing_s": t2 - t1, "listed": listed,
                  "listing_cpu_s": me.ru_utime + me.ru_stime, "rss_mib": hwm_kib / 1024,
                  "restic_cpu_s": kids.ru_utime + kids.ru_stime,
                  "restic_rss_mib": kids.ru_maxrss / 1024}))
"""


def _make_tree(src: Path, files: int) -> None:
    for n in range(files):
        day = n // PER_FOLDER
        folder = src / "2026" / f"{day // 28 + 1:02d}" / f"{day % 28 + 1:02d}"
        if n % PER_FOLDER == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{n:08d}-call.wav").write_bytes(b"%d" % n)


def _restic(env: dict[str, str], *args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(["restic", "--no-cache", *args], env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def _timed(call: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    result = call()
    return result, time.perf_counter() - t0


def run(files: int = 100_000, where: str = "/dev/shm") -> dict[str, Any]:
    if shutil.which("restic") is None:
        raise RuntimeError("restic is not installed (Debian package restic)")
    tmp = Path(tempfile.mkdtemp(prefix="lifeline-bench-restic-", dir=where))
    try:
        src, repo, password = tmp / "recordings", tmp / "repo", tmp / "password"
        password.write_text("bench\n")
        _make_tree(src, files)
        env = {"PATH": os.environ["PATH"], "RESTIC_REPOSITORY": str(repo),
               "RESTIC_PASSWORD_FILE": str(password)}
        _restic(env, "init", "-q")
        backup_s = _restic(env, "backup", "-q", str(src))
        child = subprocess.run([sys.executable, "-c", _CHILD, str(repo), str(password), str(src)],
                               check=True, capture_output=True, text=True, cwd=REPO)
        listing = json.loads(child.stdout)
        r = Restic(str(repo), password, timeout=3600)
        ids = r.snapshot_ids()
        first = src / "2026" / "01" / "01"
        hashed, folder_s = _timed(
            lambda: sum(1 for _ in r.hashes(ids[-1], str(src), b"2026/01/01")))
        _digest, file_s = _timed(lambda: r.file_hash(ids[-1], str(src),
                                                     b"2026/01/01/00000000-call.wav"))
        assert listing["listed"] == files and hashed == len(os.listdir(first))
        return {"files": files, "where": where, "backup_s": backup_s, **listing,
                "folder_files": hashed, "folder_s": folder_s, "file_s": file_s}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def figures(r: dict[str, Any]) -> list[Figure]:
    return [
        Figure(f"restic backup of {r['files']:,} tiny files ({r['where']}, the test's own)",
               f"{r['backup_s']:.1f} s"),
        Figure("snapshot ids of a local repository (REPO/snapshots/, no restic call)",
               f"{r['snapshot_ids_ms']:.2f} ms"),
        Figure(f"listing of {r['files']:,} files (restic ls --json, streamed)",
               f"{r['listing_s']:.2f} s; lifeline CPU {r['listing_cpu_s']:.2f} s, max RSS "
               f"{r['rss_mib']:.0f} MiB; restic CPU {r['restic_cpu_s']:.2f} s, max RSS "
               f"{r['restic_rss_mib']:.0f} MiB"),
        Figure(f"read-back of one folder ({r['folder_files']} files, one restic dump)",
               f"{r['folder_s']:.2f} s"),
        Figure("read-back of one file (one restic dump)", f"{r['file_s']:.2f} s"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000, help="recordings in the tree")
    parser.add_argument("--dir", default="/dev/shm", help="where the tree and repository go")
    add_json_arg(parser)
    args = parser.parse_args(argv)
    if not PER_FOLDER <= args.files <= 2_000_000:
        parser.error(f"--files must be {PER_FOLDER}..2000000")
    log(f"restic: {args.files} files under {args.dir}")
    result = run(args.files, args.dir)
    rows = figures(result)
    print_table(rows, "restic benchmark")
    write_json(args.json, {**result, "summary": [asdict(f) for f in rows]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
