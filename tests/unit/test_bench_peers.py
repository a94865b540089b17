"""The peers benchmark's parts that need no lab: how it reads the route, judges a voice-bad
run, counts time off the primary, parses bfdd's control messages and words the table.

The figures of ``BENCHMARKS.md`` come out of these functions, so a misread route or a wrong
ratio must fail here rather than print a plausible table.
"""

from __future__ import annotations

import argparse
import json
import struct
from typing import Any

import pytest

from tests.bench.peers.base import effective_link
from tests.bench.peers.bfd import read_messages
from tests.bench.peers.helper import Route
from tests.bench.peers.report import benchmarks_markdown, markdown_table, tables
from tests.bench.peers.scenarios import classify_voice, time_away

DEVICES = {"wan-a": "fibre-a", "wan-b": "fibre-b"}


def test_the_effective_route_is_the_lowest_metric_one_named_by_its_link() -> None:
    keepalived_master = [{"dst": "default", "dev": "wan-a", "metric": 100},
                         {"dst": "default", "dev": "wan-b", "metric": 200}]
    assert effective_link(keepalived_master, DEVICES) == "fibre-a"
    assert effective_link(keepalived_master[1:], DEVICES) == "fibre-b"
    assert effective_link([{"dst": "default", "dev": "wan-b"}], DEVICES) == "fibre-b"
    multipath = [{"dst": "default", "nexthops": [{"dev": "wan-b"}, {"dev": "wan-a"}]}]
    assert effective_link(multipath, DEVICES) == "fibre-a+fibre-b"
    assert effective_link([], DEVICES) is None


@pytest.mark.parametrize(("moves", "verdict", "left"), [
    ([], "ignored", None),
    ([(3.2, "fibre-b")], "moved", 3.2),
    ([(12.5, "fibre-b")], "moved late", 12.5),
    ([(1.0, "fibre-b"), (4.0, "fibre-a"), (5.0, "fibre-b")], "flapping", 1.0),
    ([(2.0, None)], "moved", 2.0),  # no default route at all is away too
])
def test_a_voice_bad_run_is_moved_ignored_or_flapping(
        moves: list[tuple[float, str | None]], verdict: str, left: float | None) -> None:
    assert classify_voice(moves) == (verdict, left)


def test_time_away_counts_each_move_off_the_primary_and_the_time_spent_there() -> None:
    history = [(0.0, "fibre-a"), (12.0, "fibre-b"), (15.0, "fibre-a"), (30.0, "fibre-b")]
    assert time_away(history, 10.0, 40.0) == (2, 3.0 + 10.0)
    # Before the window counts only as the state the window starts in.
    assert time_away(history, 13.0, 14.0) == (0, 1.0)
    assert time_away([(0.0, "fibre-a")], 1.0, 2.0) == (0, 0.0)


def test_bfd_control_messages_are_taken_whole_and_partial_ones_wait() -> None:
    def frame(body: dict[str, Any], msg_id: int = 0) -> bytes:
        data = json.dumps(body).encode()
        return struct.pack("!IHBB", len(data), msg_id, 4, 1) + data

    first = frame({"status": "ok"}, 1)
    second = frame({"op": "status", "peer-address": "198.51.100.1", "state": "down"})
    buf = bytearray(first + second[:10])
    assert read_messages(buf) == [{"status": "ok"}]
    assert bytes(buf) == second[:10]
    buf += second[10:]
    assert read_messages(buf) == [{"op": "status", "peer-address": "198.51.100.1",
                                   "state": "down"}]
    assert buf == bytearray()


def test_a_route_argument_needs_gateway_and_device() -> None:
    assert Route.parse("198.51.100.1@wan-a") == Route("198.51.100.1", "wan-a")
    with pytest.raises(argparse.ArgumentTypeError, match="GATEWAY@DEVICE"):
        Route.parse("198.51.100.1")


def _gap(moved: float | None, gap: float, back: bool) -> dict[str, Any]:
    return {"moved_after": moved, "gap": gap, "recovered": back, "forward_gap": gap,
            "forward_recovered": moved is not None, "error": None}


def _data() -> dict[str, Any]:
    lifeline = {"label": "lifeline (defaults)", "settings": "defaults",
                "blackhole": [_gap(0.6, 0.6, True), _gap(0.7, 0.7, True)],
                "carrier": [_gap(0.01, 0.02, True)], "vpn": [],
                "noise": {"minutes": 10.0, "failovers": 0, "seconds_away": 0.0,
                          "moves": [], "error": None},
                "voice": {"verdict": "moved", "left_after": 4.0, "moves": [(4.0, "fibre-b")],
                          "error": None}}
    naive = {"label": "naive", "settings": "ping",
             "blackhole": [_gap(1.3, 1.3, False), _gap(1.3, 1.3, False)],
             "carrier": [_gap(1.0, 1.0, False)],
             "vpn": [{"moved_after": 1.2, "recovered": False, "recovered_after_move": None}],
             "noise": {"minutes": 10.0, "failovers": 1, "seconds_away": 590.0,
                       "moves": [], "error": None},
             "voice": {"verdict": "flapping", "left_after": 2.0,
                       "moves": [(2.0, "fibre-b"), (3.0, "fibre-a")], "error": None}}
    bfd = {"label": "bfd", "settings": "300 ms x 3",
           "blackhole": [_gap(None, 12.0, False)], "carrier": [], "vpn": [
               {"moved_after": None, "recovered": False, "recovered_after_move": None}],
           "noise": None, "voice": None}
    skipped = {"label": "keepalived", "settings": "-", "skipped": "missing keepalived"}
    return {
        "machine": {"cpu": "cpu", "cores": 2, "kernel": "6.1", "debian": "12.11",
                    "python": "3.11", "packages": {"frr": "8.4"}, "commit": "abc",
                    "date": "today"},
        "command": "python -m tests.bench.peers", "seconds": 60.0,
        "settings": {"trials": 2, "vpn_trials": 1, "noise_minutes": 10.0,
                     "voice_seconds": 60.0},
        "peers": {"lifeline": lifeline, "naive": naive, "bfd": bfd, "keepalived": skipped},
    }


def test_the_tables_give_ratios_against_lifeline_and_say_never_plainly() -> None:
    outages, judgment = tables(_data())
    rows = {r[0]: r for r in outages[1:]}
    assert rows["lifeline (defaults)"][1:5] == ["0.65 s", "0.65 / 0.70 / 0.70 s", "1.0x",
                                                "0.65 / 0.70 / 0.70 s"]
    naive = rows["naive"]
    assert naive[2:5] == ["never back (2/2)", "never", "1.30 / 1.30 / 1.30 s"]
    assert naive[5] == "2.0x"  # forward gap 1.3 s against lifeline's median 0.65 s
    assert rows["bfd"][1] == "never (1/1)" and rows["bfd"][4] == "never back (1/1)"
    assert rows["keepalived"][1] == "skipped: missing keepalived"
    verdicts = {r[0]: r for r in judgment[1:]}
    assert verdicts["naive"][1:] == ["no (1/1 stuck)", "1", "590.0 s (98%)",
                                     "flapping (2 route changes, first after 2.0 s)"]
    assert verdicts["bfd"][1] == "route never moved (1/1)"
    assert verdicts["lifeline (defaults)"][4] == "moved (after 4.0 s, stayed away)"


def test_the_report_has_machine_command_and_both_tables() -> None:
    text = benchmarks_markdown(_data())
    assert "`python -m tests.bench.peers`" in text and "frr 8.4" in text
    assert text.count("| peer ") == 2
    lines = markdown_table([["a", "bb"], ["ccc", "d"]]).splitlines()
    assert lines == ["| a   | bb |", "|-----|----|", "| ccc | d  |"]
