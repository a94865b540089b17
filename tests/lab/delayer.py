"""Userspace packet delayer for the lab: ``python -m tests.lab.delayer --queue N --delay-ms D``.

This machine's kernel has no ``tc netem``, so delay and jitter are made here: iptables sends
a link's packets to NFQUEUE ``N`` (in the ISP namespace, see ``lab.faults``), this process
holds each one and gives the accept verdict after ``D + U(0, J)`` milliseconds. One thread,
one select loop over the queue's socket and a heap of due times, so verdicts never race.
It only delays; it never drops, rewrites or sends a packet of its own. It prints ``ready``
once its queue is bound, and on SIGTERM or SIGINT accepts whatever it still holds (so a
stopped delayer loses nothing) and exits. A hard upper bound on its lifetime
(``--max-seconds``) keeps a forgotten delayer from running forever.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import os
import random
import select
import signal
import sys
import time
import warnings
from types import FrameType
from typing import Any

__all__ = ["main"]


_stop = False


def _on_signal(signum: int, frame: FrameType | None) -> None:
    # Only a flag: raising here could land inside the queue's C callback, which would
    # swallow it. The wakeup fd makes the select below return at once.
    global _stop
    _stop = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab.delayer", description=__doc__)
    parser.add_argument("--queue", type=int, required=True, help="NFQUEUE number")
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--max-seconds", type=float, default=3600.0,
                        help="exit after this long even if nobody stops us")
    args = parser.parse_args(argv)

    from netfilterqueue import COPY_META, NetfilterQueue

    delay = args.delay_ms / 1000.0
    jitter = args.jitter_ms / 1000.0
    # (due time, tie-breaker, packet): the counter keeps packets with equal due times
    # comparable without comparing Packet objects.
    held: list[tuple[float, int, Any]] = []
    order = itertools.count()

    def on_packet(pkt: Any) -> None:
        # COPY_META: the verdict does not need the payload, so none is copied to us.
        due = time.monotonic() + delay + random.uniform(0.0, jitter)
        heapq.heappush(held, (due, next(order), pkt))

    nfq = NetfilterQueue()
    with warnings.catch_warnings():
        # A smaller socket buffer than asked for is fine at lab packet rates.
        warnings.simplefilter("ignore", RuntimeWarning)
        nfq.bind(args.queue, on_packet, max_len=4096, mode=COPY_META)
    fd = nfq.get_fd()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    end = time.monotonic() + args.max_seconds
    print("ready", flush=True)
    try:
        while not _stop:
            now = time.monotonic()
            if now >= end:
                break
            while held and held[0][0] <= now:
                heapq.heappop(held)[2].accept()
            wait = min(end - now, (held[0][0] - now) if held else 1.0)
            readable, _, _ = select.select([fd, wake_r], [], [], max(wait, 0.0))
            if fd in readable:
                nfq.run(block=False)
    finally:
        # Release what we hold, in due order, rather than let the kernel drop it at unbind.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while held:
            heapq.heappop(held)[2].accept()
        nfq.unbind()
    return 0


if __name__ == "__main__":
    sys.exit(main())
