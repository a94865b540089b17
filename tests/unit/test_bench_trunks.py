"""The trunk-failover benchmark's own parts that need no lab: its sipp scenario and call log.

The benchmark's figures come from the per-call log lines the generated scenario writes, so a
change to the edge's scenario (``kam_uac.xml``) that breaks the rewrite, or a log line the
parser misreads, must fail here rather than give a silent "0 good calls".
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from tests.bench.bench_trunks import carrier_a_dids, parse_call_log, uac_scenario


def test_scenario_takes_the_caller_from_the_injection_file_and_logs_each_call() -> None:
    text = uac_scenario()
    body = re.sub(r"<\?xml[^>]*\?>|<!DOCTYPE[^>]*>", "", text)
    root = ET.fromstring(body)
    assert "[caller]" not in text and "[field0]" in text
    actions = [a.tag for nop in root.iter("nop") for a in nop.iter() if a.tag != "nop"]
    assert actions.count("gettimeofday") == 2 and actions.count("log") == 1
    # The log line comes last: only a call that hung up cleanly is counted as good.
    children = list(root)
    assert children[-1].tag == "nop" and children[-1].find("action/log") is not None


def test_call_log_gives_start_and_answer_in_start_order() -> None:
    text = ("ok 100.000000 900000.000000 101.000000 100000.000000 +390212345601\n"
            "garbage line\n"
            "ok 100.000000 500000.000000 100.000000 510000.000000 +390212345600\n")
    calls = parse_call_log(text)
    assert calls == [(100.5, 100.51), (100.9, 101.1)]
    assert parse_call_log("") == []


def test_callers_are_carrier_a_range() -> None:
    dids = carrier_a_dids()
    assert len(dids) == 100 and dids[0] == "+390212345600" and dids[-1] == "+390212345699"
