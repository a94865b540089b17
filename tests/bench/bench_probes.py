"""Benchmark: CPU and memory of the ICMP engine at 2,000 targets x 1 probe/s, next to fping.

Run as root: ``python -m tests.bench.bench_probes [--seconds 30] [--targets 2000]``.
It builds its own pair of network namespaces (A probes, B answers for every target: the
targets are /32 addresses from 198.18.0.0/15 on B's loopback, routed from A over a veth),
runs the RoundScheduler with one ICMP batch per second for ``--seconds`` rounds inside A
(this thread switches into A with setns), then runs fping in A for the same number of
probes at the same rate, and prints CPU seconds per 1,000 probes, loss and RSS for both
and the ratio ours/fping. Sending is bounded by the round count; the namespaces are
deleted on the way out, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from probes import icmp
from probes.sample import ProbeSpec, Sample
from probes.scheduler import RoundScheduler
from tests.lab.builder import NetBuilder
from tests.lab.netns import inside

A_IP, B_IP = "192.0.2.1", "192.0.2.2"
SCALE_NET = ipaddress.IPv4Network("198.18.0.0/15")


@contextlib.contextmanager
def lab(targets: list[str]) -> Iterator[str]:
    """ns A (prober, lab role "site") and ns B (all targets, role "inet"); yields A's name,
    deletes both at the end."""
    with NetBuilder(["site", "inet"]) as net:
        net.veth("site", "a0", "inet", "b0")
        net.iface("site", "a0", f"{A_IP}/24")
        net.iface("inet", "b0", f"{B_IP}/24")
        net.ip("inet", *(f"addr add {t}/32 dev lo" for t in targets))
        net.ip("site", f"route add {SCALE_NET} via {B_IP}")
        net.run("site", ["ping", "-c", "1", "-W", "3", targets[0]], check=False)
        yield net.ns("site")


def rss_kib() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in KiB."""
    fields = dict(
        line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
        if ":" in line
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


async def run_ours(targets: list[str], rounds: int, interval: float) -> dict[str, float]:
    specs = [ProbeSpec("icmp", t, device="a0", source=A_IP) for t in targets]
    done = asyncio.Event()
    sent = ok = 0
    finished = 0

    def on_round(sent_at: float, samples: list[Sample]) -> None:
        nonlocal sent, ok, finished
        sent += len(samples)
        ok += sum(1 for s in samples if s.ok)
        finished += 1
        if finished >= rounds:
            done.set()

    scheduler = RoundScheduler(specs, interval=interval, timeout=interval, start_jitter=0.0,
                               on_round=on_round, name="bench")
    # Open the socket before the clock starts, as a daemon would have long before.
    engine = icmp.get_engine(socket.AF_INET, "a0", A_IP)
    await engine.ping_many(targets[:1], 1.0)
    cpu0, wall0 = time.process_time(), time.monotonic()
    scheduler.start()
    # Bounded: the rounds plus a generous margin, then stop regardless.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=rounds * interval + 10)
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - wall0
    await scheduler.stop()
    stats = engine.stats
    icmp.close_all()
    rss, hwm = rss_kib()
    return {
        "probes": sent, "ok": ok, "cpu_s": cpu, "wall_s": wall, "rss_kib": rss,
        "hwm_kib": hwm, "ignored": sum(stats.ignored.values()), "rounds": finished,
    }


def run_fping(ns: str, targets: list[str], rounds: int, interval: float) -> dict[str, float]:
    gap_ms = interval * 1000 / len(targets)
    with (
        tempfile.NamedTemporaryFile("w", suffix=".targets") as listing,
        tempfile.TemporaryFile("w+") as report,
    ):
        listing.write("\n".join(targets) + "\n")
        listing.flush()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall0 = time.monotonic()
        # `ip netns exec` execs fping in place, so the PID is fping's; its peak RSS is
        # read from /proc while it runs (RUSAGE_CHILDREN's maxrss would report the
        # forked Python image before the exec).
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "fping", "-q", "-c", str(rounds),
             "-p", f"{interval * 1000:g}", "-i", f"{gap_ms:.3f}", "-t", f"{interval * 900:g}",
             "-r", "0", "-f", listing.name],
            # A file, not a pipe: fping writes its per-target summary (far more than a
            # pipe holds) only at exit, while we are polling rather than reading.
            stdout=subprocess.DEVNULL, stderr=report,
        )
        peak_kib = 0
        deadline = wall0 + rounds * interval + 60
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
                status = Path(f"/proc/{proc.pid}/status").read_text()
                fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
                if "fping" in fields["Name"]:
                    peak_kib = max(peak_kib, int(fields["VmHWM"].split()[0]))
            time.sleep(0.5)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        wall = time.monotonic() - wall0
        report.seek(0)
        stderr = report.read()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sent = received = 0
    for line in stderr.splitlines():
        # "198.18.0.1 : xmt/rcv/%loss = 30/30/0%, min/avg/max = ..."
        if "xmt/rcv/%loss" in line:
            xmt, rcv = line.split("=", 1)[1].split("/")[:2]
            sent += int(xmt)
            received += int(rcv)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"probes": sent, "ok": received, "cpu_s": cpu, "wall_s": wall,
            "hwm_kib": peak_kib, "exit": proc.returncode}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=30, help="rounds of 1 s (default 30)")
    parser.add_argument("--targets", type=int, default=2000, help="targets (default 2000)")
    parser.add_argument("--no-fping", action="store_true", help="skip the fping comparison")
    parser.add_argument("--json", action="store_true", help="print one JSON line at the end")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench_probes: needs root (network namespaces, raw sockets)", file=sys.stderr)
        return 2
    if not 1 <= args.targets <= 60000 or not 1 <= args.seconds <= 600:
        parser.error("--targets must be 1..60000 and --seconds 1..600")
    hosts = SCALE_NET.hosts()
    targets = [str(next(hosts)) for _ in range(args.targets)]
    interval = 1.0
    with lab(targets) as ns_a:
        with inside(ns_a):
            ours = asyncio.run(run_ours(targets, args.seconds, interval))
        theirs = None
        if not args.no_fping and shutil.which("fping"):
            theirs = run_fping(ns_a, targets, args.seconds, interval)

    def per_k(r: dict[str, float]) -> float:
        return r["cpu_s"] / r["probes"] * 1000 if r["probes"] else float("nan")

    def loss(r: dict[str, float]) -> float:
        return 1 - r["ok"] / r["probes"] if r["probes"] else float("nan")

    print(f"targets {args.targets}, {args.seconds} rounds of {interval:g} s")
    print(f"lifeline: {ours['probes']:.0f} probes in {ours['wall_s']:.1f} s, "
          f"CPU {ours['cpu_s']:.2f} s = {per_k(ours) * 1000:.1f} ms per 1000 probes "
          f"({ours['cpu_s'] / ours['wall_s'] * 100:.1f} % of a core), loss {loss(ours):.2%}, "
          f"RSS {ours['rss_kib'] / 1024:.1f} MiB (peak {ours['hwm_kib'] / 1024:.1f} MiB), "
          f"ignored packets {ours['ignored']:.0f}")
    result: dict[str, object] = {"targets": args.targets, "seconds": args.seconds,
                                 "ours": ours}
    if theirs is not None:
        ratio = per_k(ours) / per_k(theirs) if theirs["cpu_s"] else float("inf")
        print(f"fping:    {theirs['probes']:.0f} probes in {theirs['wall_s']:.1f} s, "
              f"CPU {theirs['cpu_s']:.2f} s = {per_k(theirs) * 1000:.1f} ms per 1000 probes, "
              f"loss {loss(theirs):.2%}, peak RSS {theirs['hwm_kib'] / 1024:.1f} MiB")
        print(f"CPU per probe, lifeline / fping: {ratio:.2f}x (goal: at most 3x)")
        result["fping"] = theirs
        result["ratio"] = ratio
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
