"""From the benchmark's JSON to the tables, the terminal and ``BENCHMARKS.md``.

Everything here reads the JSON the runner writes (``run --json``) and nothing else, so the
tables can be rebuilt from a stored run (``--from-json``) after a wording change without
running a lab again. ``machine()`` is the exception: it describes the machine the runner is
on, and the runner stores its answer in the JSON. Ratios are always a peer's median over
lifeline's median on the same figure: above 1 means the peer is slower.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench.bench_failover import percentile

__all__ = ["benchmarks_markdown", "machine", "tables", "text_tables"]

REPO = Path(__file__).resolve().parents[3]
PACKAGES = ("keepalived", "frr", "iproute2", "iptables", "iputils-ping", "conntrack")
LIFELINE = "lifeline"


# --- the machine ---------------------------------------------------------------------------


def _first(path: str, key: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def _out(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=10,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _commit() -> str:
    """The commit the figures belong to; "-dirty" when the tree had changes."""
    head = _out(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
    if not head:
        return "unknown"
    dirty = _out(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"])
    return head + ("-dirty" if dirty else "")


def machine() -> dict[str, Any]:
    """What a reader needs to weigh the figures: CPU, kernel, distribution, versions."""
    try:
        debian = Path("/etc/debian_version").read_text().strip()
    except OSError:
        debian = "not Debian"
    packages = {p: _out(["dpkg-query", "-W", "-f", "${Version}", p]) or "not installed"
                for p in PACKAGES}
    return {
        "cpu": _first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "debian": debian,
        "python": platform.python_version(),
        "packages": packages,
        "commit": _commit(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


# --- cells ---------------------------------------------------------------------------------


def _stats(values: list[float]) -> str:
    return (f"{statistics.median(values):.2f} / {percentile(values, 95):.2f} / "
            f"{max(values):.2f} s")


def _gap(trials: list[dict[str, Any]], key: str, ok_key: str) -> tuple[str, float | None]:
    """Median / p95 / max of a gap over trials that recovered, the rest counted as never
    back; with the median when every trial recovered (ratios only compare those)."""
    good = [t for t in trials if t.get("error") is None and t.get(key) is not None]
    if not good:
        return ("no data" if not trials else "trials failed"), None
    back = [float(t[key]) for t in good if t[ok_key]]
    stuck = len(good) - len(back)
    broken = len(trials) - len(good)
    tail = f"; {broken} failed" if broken else ""
    if not stuck:
        return _stats(back) + tail, statistics.median(back)
    if not back:
        return f"never back ({stuck}/{len(good)}){tail}", None
    return f"{_stats(back)}; never back {stuck}/{len(good)}{tail}", None


def _moved(trials: list[dict[str, Any]]) -> str:
    good = [t for t in trials if t.get("error") is None]
    if not good:
        return "no data" if not trials else "trials failed"
    moved = [float(t["moved_after"]) for t in good if t.get("moved_after") is not None]
    if not moved:
        return f"never ({len(good)}/{len(good)})"
    text = f"{statistics.median(moved):.2f} s"
    if len(moved) < len(good):
        text += f"; never {len(good) - len(moved)}/{len(good)}"
    return text


def _ratio(value: float | None, ref: float | None, never: bool) -> str:
    if never:
        return "never"
    if value is None or ref is None or ref <= 0:
        return "-"
    return f"{value / ref:.1f}x"


def _vpn(trials: list[dict[str, Any]]) -> str:
    if not trials:
        return "not run"
    moved = [t for t in trials if t.get("moved_after") is not None]
    if not moved:
        return f"route never moved ({len(trials)}/{len(trials)})"
    back = [t for t in moved if t["recovered"]]
    if not back:
        return f"no ({len(moved)}/{len(moved)} stuck)"
    after = statistics.median(float(t["recovered_after_move"]) for t in back)
    verdict = "yes" if len(back) == len(moved) else "sometimes"
    return f"{verdict} ({len(back)}/{len(moved)}, {after:.2f} s after the move)"


def _noise(run: dict[str, Any] | None) -> tuple[str, str]:
    if not run:
        return "not run", "-"
    if run.get("error"):
        return "run failed", "-"
    total = float(run["minutes"]) * 60.0
    away = float(run["seconds_away"])
    share = f" ({away / total:.0%})" if total else ""
    return str(run["failovers"]), f"{away:.1f} s{share}"


def _voice(run: dict[str, Any] | None) -> str:
    if not run:
        return "not run"
    if run.get("error"):
        return "run failed"
    verdict = str(run["verdict"])
    left = float(run.get("left_after") or 0.0)
    if verdict == "ignored":
        return "ignored (stayed on fibre-a)"
    moves = len(run.get("moves", []))
    if verdict == "flapping":
        return f"flapping ({moves} route changes, first after {left:.1f} s)"
    return f"{verdict} (after {left:.1f} s, stayed away)"


# --- tables --------------------------------------------------------------------------------


def tables(data: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
    """(outages, judgment): each a header row then one row per peer that ran."""
    peers: dict[str, Any] = data["peers"]
    ref = peers.get(LIFELINE, {})
    refs: dict[tuple[str, str], float | None] = {}
    for fault in ("blackhole", "carrier"):
        for key, ok in (("gap", "recovered"), ("forward_gap", "forward_recovered")):
            refs[(fault, key)] = _gap(ref.get(fault, []), key, ok)[1]
    s = data["settings"]
    outages = [["peer",
                "blackhole: route moved after (median)",
                "blackhole gap, two-way (median / p95 / max)", "vs lifeline",
                "blackhole gap, forward only", "vs lifeline",
                "carrier loss: route moved after",
                "carrier gap, two-way", "vs lifeline",
                "carrier gap, forward only", "vs lifeline"]]
    minutes = s.get("noise_minutes", 0)
    judgment = [["peer",
                 f"VPN-like flow (UDP {s.get('vpn_port', 51820)} both ends) back after the "
                 "move",
                 f"false failovers in {minutes:g} min (1 % loss each way, "
                 f"{s.get('dead_target', '192.0.2.1')} silent)",
                 "time off fibre-a",
                 f"voice-bad fibre-a ({s.get('voice_loss', 0.05):.0%} loss each way, "
                 f"{s.get('voice_delay_ms', 20):g} ms + 0-{s.get('voice_jitter_ms', 30):g} ms "
                 f"jitter, {s.get('voice_seconds', 60):g} s)"]]
    for name, p in peers.items():
        if p.get("skipped"):
            outages.append([p["label"], f"skipped: {p['skipped']}", *["-"] * 9])
            judgment.append([p["label"], f"skipped: {p['skipped']}", "-", "-", "-"])
            continue
        row = [p["label"]]
        for fault in ("blackhole", "carrier"):
            trials = p.get(fault, [])
            row.append(_moved(trials))
            for key, ok in (("gap", "recovered"), ("forward_gap", "forward_recovered")):
                text, median = _gap(trials, key, ok)
                never = text.startswith("never")
                row += [text, "1.0x" if name == LIFELINE and median is not None
                        else _ratio(median, refs[(fault, key)], never)]
        outages.append(row)
        failovers, away = _noise(p.get("noise"))
        judgment.append([p["label"], _vpn(p.get("vpn", [])), failovers, away,
                         _voice(p.get("voice"))])
    return outages, judgment


def markdown_table(rows: list[list[str]]) -> str:
    """A GitHub table whose columns are also aligned for a terminal."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(rows[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|",
                      *(line(r) for r in rows[1:])])


def text_tables(data: dict[str, Any]) -> str:
    outages, judgment = tables(data)
    return (f"Outages (fault on fibre-a; data plane through SNAT)\n\n{markdown_table(outages)}"
            f"\n\nJudgment\n\n{markdown_table(judgment)}\n")


# --- BENCHMARKS.md -------------------------------------------------------------------------

_HOW = """\
## How it is measured

- Every trial and every run builds a fresh lab (`tests/lab/topology.py`, SNAT): the site
  router with fibre-a (primary), fibre-b (backup) and LTE (unused here) to three ISP
  namespaces, the far targets 192.0.2.1-3 and the sink 192.0.2.10 in `inet`, the LAN host
  192.0.2.130. Each peer starts there, and the runner waits until the site's default route
  is on fibre-a. Nothing else changes the route: the figures are the peers' own.
- The route is watched from outside the peers with `ip monitor route` in the site
  namespace; "the route" is the default route of table main with the lowest metric.
- **Gaps**: the lab's two-way stream (LAN host -> sink, one 172-byte UDP packet every 5 ms,
  the sink echoing each) runs through the site's SNAT; the fault (`tests/lab/faults.py`:
  a blackhole drops everything the ISP forwards while its gateway still answers; carrier
  loss sets the ISP end of the link down) lands at a random phase of the peer's probing
  period. *Two-way* is the largest gap in the echoes back at the LAN host: what a call
  hears, and the only view that needs the SNAT'ed return path to follow the new link (an
  SNAT entry made on fibre-a keeps fibre-a's address until conntrack forgets it, and a
  busy flow never lets it expire). *Forward only* is the largest gap at the sink: what
  the route move alone costs. "Never back" means no echo came back before the stream
  ended (2 s after the route moved, or after the peer's bound when it never moved).
  p95 is nearest-rank (a value that was measured): below 20 trials it is the max.
- **VPN-like flow**: the same blackhole under a two-way flow with one fixed 5-tuple
  (UDP 51820 -> 51820, 50 packets a second); "back" means at least 10 echoes returned
  within 15 s of the route's move.
- **False failovers**: fibre-a gets 1 % random loss each way and the first far target
  (192.0.2.1, the one target of every single-target peer) stops answering ping, for the
  whole run; every move of the route away from fibre-a counts, and "time off fibre-a" says
  how long the route stayed away. All peers' runs go at once, each in its own lab.
- **Voice-bad link**: fibre-a gets 5 % random loss each way plus 20 ms + U(0, 30 ms) delay
  each way (NFQUEUE delayer, or netem where the kernel has it) and keeps it. *moved*: left
  within 10 s and stayed away; *moved late*: left later and stayed away; *flapping*:
  came back to fibre-a while it was still bad; *ignored*: never left.
- Timing-sensitive trials (blackhole and carrier gaps of every peer that moves within
  seconds) run one at a time; the long runs (noise, voice, VPN, and the gap trials of the
  mwan3 re-creation, whose timing is in tens of seconds) run side by side in separate labs.
"""

_SOURCES = """\
## Where the peers' settings come from

- **keepalived** (Debian 12 package): built-in `vrrp_script` defaults are interval 1 s,
  timeout = interval, rise 1, fall 1 (keepalived 2.2.7 source: `VRRP_SCRIPT_DI 1`,
  `VRRP_SCRIPT_DT 0` in vrrp_track.h; `rise = fall = 1` in `alloc_vrrp_script`; a 0 timeout
  runs the script with the interval as its timeout). So its "fastest sane" setting
  (interval 1 s, fall 1, written out) and its defaults (nothing written) track the same
  way; both rows are run to show it. A single-node VRRP instance on the LAN port tracks
  `wan-a` (`track_interface`) and the ping script; in MASTER it installs the fibre-a
  default route (`virtual_routes`, metric 100) over a static fibre-b default (metric 200).
- **BFD** (Debian 12 `frr` 8.4.4): `bfdd` in the site namespace peers with a `bfdd` in
  isp-a's namespace (the ISP gateway, single hop) at FRR's defaults (300 ms x 3); FRR 8.4
  cannot tie a static route to BFD, so a small follower subscribes to bfdd's control
  socket (`--bfdctl`, peer-state notifications) and moves the default route with
  `ip route replace`. Daemons run per instance with their own config, pid file, vty and
  control sockets in a temporary directory.
- **mwan3 (re-creation)**: not mwan3 itself (it needs OpenWrt's netifd, ubus and uci) but
  its tracking loop as `mwan3track` runs it, in Python, with the defaults of
  openwrt/packages `net/mwan3` 2.12.2 (commit 0521bb5679 of openwrt/packages; mwan3track
  last changed in 1e721190f9) (`mwan3track`: count 1, timeout 4 s, interval 10 s, down 5,
  up 5, size 56, max_ttl 60, failure and recovery interval = interval, check_quality off)
  and the shipped `/etc/config/mwan3` `wan` interface (reliability 2 of its track IPs:
  here the lab's three far targets), `initial_state` online; `flush_conntrack` is unset
  in the shipped config, so no flush. Carrier loss: netifd takes a DHCP WAN down (ifdown)
  when its carrier goes, and mwan3's hotplug then drops the route at once; the
  re-creation does the same (a static WAN, `force_link 1`, would wait for tracking).
- **naive ping loop**: `ping -c1 -W1` to 192.0.2.1 bound to wan-a every second; first
  loss -> fibre-b, first answer -> fibre-a.
- **lifeline**: the daemon of this commit at its defaults (see its row's settings line).
- Every peer other than lifeline gets the same per-link probe path (a table and rules per
  link, as mwan3 and lifeline make) so a probe of fibre-a leaves by fibre-a even when the
  main default route points elsewhere. None of them flushes conntrack: they are run as
  they come.
- Older mwan3 releases shipped these numbers in `/etc/config/mwan3` itself (count 1,
  timeout 2, interval 5, down 3, up 8, reliability 1 with two track IPs); the current
  package leaves them to `mwan3track`'s defaults, which this re-creation follows.
"""


def benchmarks_markdown(data: dict[str, Any]) -> str:
    """The whole ``BENCHMARKS.md`` from one run's JSON."""
    m = data["machine"]
    s = data["settings"]
    pk = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    outages, judgment = tables(data)
    peers = "\n".join(f"- **{p['label']}**: {p['settings']}" for p in data["peers"].values())
    wall = float(data.get("seconds", 0.0))
    return f"""\
# Benchmarks: lifeline next to keepalived, BFD, mwan3 and a naive ping loop

Generated from one run of `make bench-peers`; refresh the text from a stored run with
`python -m tests.bench.peers --from-json PATH --write-benchmarks BENCHMARKS.md`.

## Machine and command

- CPU: {m['cpu']} ({m['cores']} cores); kernel {m['kernel']}; Debian {m['debian']};
  Python {m['python']}
- Packages: {pk}
- lifeline commit {m['commit']}; run on {m['date']}, {wall / 60:.0f} min wall time
- Command: `{data['command']}`
- Trials: {s['trials']} per fault and peer, VPN-like flow {s['vpn_trials']} per peer, noise
  {s['noise_minutes']:g} min, voice-bad {s['voice_seconds']:g} s

## Peers

{peers}

## Outages

The fault hits fibre-a; the figures are gaps in the LAN host's stream through the site's
SNAT (see "How it is measured"). "vs lifeline" divides medians (above 1: slower than
lifeline). A finite forward gap with a two-way gap "never back" means the peer moved the
route but left the flow's SNAT entry on fibre-a's address: it flushes no conntrack, or not
for that flow's ports (the stream uses UDP port 16384, an RTP port).

{markdown_table(outages)}

## Judgment

{markdown_table(judgment)}

{_HOW}
{_SOURCES}"""
