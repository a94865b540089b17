"""The edge-plan document: shape (validated against docs/edge-plan.schema.json), full and
diff contents, the diff round trip through the reference receiver, canonical bytes, signing,
the sequencer's full-after-failure rule, and a document edge as an actuator."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.actuators.sipedge.document import (
    DOCUMENT_VERSION,
    DocumentError,
    DocumentPusher,
    PlanSequencer,
    PushResult,
    apply_document,
    canonical_json,
    plan_document,
    sign,
    verify,
)
from controller.actuators.sipedge.plan import DidRoute, EdgePlan, TrunkState
from tests.unit.isolated_loop import run

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "edge-plan.schema.json"
SCHEMA = json.loads(SCHEMA_PATH.read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())


def valid(doc: dict[str, Any]) -> None:
    # Through canonical JSON, as a receiver sees it (tuples become lists, etc.).
    VALIDATOR.validate(json.loads(canonical_json(doc)))


A1 = TrunkState("carrier-a-sbc1", "sip:192.0.2.10:5060;transport=udp", 1, True,
                source="198.51.100.2")
A2 = TrunkState("carrier-a-sbc2", "sip:192.0.2.11:5060;transport=udp", 1, True)
B = TrunkState("carrier-b", "sips:198.51.100.20:5061;transport=tls", 2, True)
R1 = DidRoute("+390212345600", "+390212345699", "carrier-a-sbc1", "sip:pbx@203.0.113.5")
R2 = DidRoute("+390298765400", "+390298765499", "carrier-b", "sip:pbx@203.0.113.5")
R3 = DidRoute("+442071234500", "+442071234599", None, None)
PLAN = EdgePlan(trunks=(B, A1, A2), routes=(R2, R1, R3), refresh_registrations=())


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_full_document_lists_everything_in_order_and_validates() -> None:
    doc = plan_document(PLAN, site="milano-1", generation=7, previous=None)
    valid(doc)
    assert doc["version"] == DOCUMENT_VERSION
    assert doc["full"] is True
    assert doc["site"] == "milano-1" and doc["generation"] == 7
    assert [t["name"] for t in doc["trunks"]["added"]] == [
        "carrier-a-sbc1", "carrier-a-sbc2", "carrier-b"
    ]
    assert [r["first"] for r in doc["routes"]["added"]] == [
        "+390212345600", "+390298765400", "+442071234500"
    ]
    assert doc["routes"]["added"][2] == {
        "first": "+442071234500", "last": "+442071234599", "trunk": None, "fallback": [],
        "destination_uri": None,
    }
    assert doc["totals"] == {"trunks": 3, "routes": 3}
    assert "base_generation" not in doc


def test_diff_carries_only_added_changed_and_removed() -> None:
    moved = DidRoute(R1.first, R1.last, "carrier-a-sbc2", R1.destination_uri)
    # R2 keeps its trunk, but gains an in-call fallback: a change a receiver must get.
    r2_fallback = replace(R2, fallback=("carrier-a-sbc1",))
    new_range = DidRoute("+390255500000", "+390255500099", "carrier-b", "sip:dr@203.0.113.9")
    # A1 fails and the route moved: it is disabled and now leaves from the other link.
    a1_down = TrunkState(A1.name, A1.uri, A1.group, False, source="203.0.113.2")
    c = TrunkState("carrier-c", "sip:203.0.113.30", 3, True)
    new = EdgePlan(
        trunks=(a1_down, A2, c), routes=(moved, r2_fallback, new_range),
        refresh_registrations=("carrier-a-sbc2", "carrier-a-sbc2"),
    )
    doc = plan_document(new, site="s", generation=9, previous=PLAN, base_generation=8)
    valid(doc)
    assert doc["full"] is False and doc["base_generation"] == 8
    assert doc["trunks"] == {
        "added": [{"name": "carrier-c", "uri": "sip:203.0.113.30", "group": 3, "priority": 0,
                   "enabled": True, "source": None}],
        "changed": [{"name": A1.name, "uri": A1.uri, "group": 1, "priority": 0,
                     "enabled": False, "source": "203.0.113.2"}],
        "removed": ["carrier-b"],
    }
    assert [r["first"] for r in doc["routes"]["added"]] == ["+390255500000"]
    assert doc["routes"]["changed"] == [
        {"first": R1.first, "last": R1.last, "trunk": "carrier-a-sbc2", "fallback": [],
         "destination_uri": R1.destination_uri},
        {"first": R2.first, "last": R2.last, "trunk": R2.trunk, "fallback": ["carrier-a-sbc1"],
         "destination_uri": R2.destination_uri},
    ]
    assert doc["routes"]["removed"] == [{"first": R3.first, "last": R3.last}]
    assert doc["refresh_registrations"] == ["carrier-a-sbc2"]
    assert doc["totals"] == {"trunks": 3, "routes": 3}


def test_order_inside_a_group_is_the_trunk_priority() -> None:
    doc = plan_document(PLAN, site="s", generation=1, previous=None)
    assert [(t["name"], t["group"], t["priority"]) for t in doc["trunks"]["added"]] == [
        ("carrier-a-sbc1", 1, 0), ("carrier-a-sbc2", 1, 1), ("carrier-b", 2, 0)
    ]
    swapped = EdgePlan(trunks=(A2, A1, B), routes=PLAN.routes, refresh_registrations=())
    diff = plan_document(swapped, site="s", generation=2, previous=PLAN)
    assert [(t["name"], t["priority"]) for t in diff["trunks"]["changed"]] == [
        ("carrier-a-sbc2", 0), ("carrier-a-sbc1", 1)
    ]
    assert apply_document(apply_document(None, doc), diff).trunks == (A2, A1, B)


def test_diff_of_equal_plans_is_empty() -> None:
    doc = plan_document(PLAN, site="s", generation=2, previous=PLAN)
    valid(doc)
    for part in ("trunks", "routes"):
        assert doc[part] == {"added": [], "changed": [], "removed": []}


def test_duplicate_identities_are_refused() -> None:
    with pytest.raises(DocumentError, match="carrier-b"):
        plan_document(EdgePlan((B, B), (), ()), site="s", generation=1, previous=None)
    with pytest.raises(DocumentError, match=r"\+390212345600"):
        plan_document(EdgePlan((), (R1, R1), ()), site="s", generation=1, previous=None)
    with pytest.raises(DocumentError, match="generation"):
        plan_document(PLAN, site="s", generation=-1, previous=None)
    with pytest.raises(DocumentError, match="base generation"):
        plan_document(PLAN, site="s", generation=3, previous=PLAN, base_generation=3)


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda d: d.pop("version"), "missing version"),
        (lambda d: d.__setitem__("version", 2), "older version"),
        (lambda d: d.__setitem__("version", 4), "unknown version"),
        (lambda d: d["trunks"]["added"][0].pop("source"), "trunk without source"),
        (lambda d: d["trunks"]["removed"].append("x"), "full document that removes"),
        (lambda d: d.__setitem__("base_generation", 1), "full document with a base"),
        (lambda d: d["routes"]["added"][0].__setitem__("first", "0212345600"), "not E.164"),
        (lambda d: d["trunks"]["added"][0].__setitem__("uri", "http://x"), "not a SIP URI"),
        (lambda d: d.__setitem__("extra", 1), "unknown field"),
        (lambda d: d.__setitem__("generation", -1), "negative generation"),
    ],
)
def test_schema_rejects_malformed_documents(mutate: Any, why: str) -> None:
    doc = json.loads(canonical_json(plan_document(PLAN, site="s", generation=1, previous=None)))
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError):
        VALIDATOR.validate(doc)


def test_canonical_json_is_sorted_compact_utf8_and_stable() -> None:
    body = canonical_json({"b": 1, "a": {"z": "è", "y": [1, 2]}})
    assert body == '{"a":{"y":[1,2],"z":"è"},"b":1}'.encode()
    # Interleaving across groups and route order carry no meaning; order inside a group does.
    shuffled = EdgePlan(trunks=(A1, B, A2), routes=(R3, R1, R2), refresh_registrations=())
    assert canonical_json(plan_document(shuffled, site="s", generation=1, previous=None)) == (
        canonical_json(plan_document(PLAN, site="s", generation=1, previous=None))
    )
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_sign_and_verify() -> None:
    body = canonical_json(plan_document(PLAN, site="s", generation=1, previous=None))
    secret = b"s3cret-bytes"
    header = sign(body, secret)
    assert header.startswith("sha256=") and len(header) == len("sha256=") + 64
    assert verify(body, secret, header)
    assert verify(body, secret, header + "\r\n")  # header folding leftovers
    assert not verify(body + b" ", secret, header)
    assert not verify(body.replace(b'"generation":1', b'"generation":2'), secret, header)
    assert not verify(body, b"other", header)
    assert not verify(body, secret, None)
    assert not verify(body, secret, header.removeprefix("sha256="))
    assert not verify(body, secret, "sha1=" + header.removeprefix("sha256="))
    assert not verify(body, secret, header.upper())
    assert not verify(body, secret, "sha256=" + "é" * 64)
    assert not verify(body, secret, "")


# Small alphabets so that generated plans share names and ranges, which is what makes
# changed/removed entries show up.
_names = st.sampled_from(["t1", "t2", "t3", "t4"])
_trunks = st.builds(
    TrunkState, name=_names, uri=st.sampled_from(["sip:192.0.2.1", "sip:192.0.2.2;transport=tcp"]),
    group=st.integers(0, 2), enabled=st.booleans(),
)
_range_starts = st.sampled_from(["+3902100", "+3902200", "+3902300", "+4420700"])
_routes = st.builds(
    lambda start, trunk, dest, fallback: DidRoute(start + "00", start + "99", trunk, dest,
                                                  tuple(fallback)),
    _range_starts,
    st.none() | _names,
    st.none() | st.sampled_from(["sip:pbx@192.0.2.9", "sip:dr@198.51.100.9"]),
    st.lists(_names, max_size=2, unique=True),
)


@st.composite
def _plans(draw: st.DrawFn) -> EdgePlan:
    trunks = draw(st.lists(_trunks, max_size=4, unique_by=lambda t: t.name))
    routes = draw(st.lists(_routes, max_size=4, unique_by=lambda r: (r.first, r.last)))
    refresh = draw(st.lists(_names, max_size=3))
    return EdgePlan(tuple(trunks), tuple(routes), tuple(refresh))


def _ordered(plan: EdgePlan) -> EdgePlan:
    return EdgePlan(
        # Stable: trunks of one group keep their plan order (their preference).
        trunks=tuple(sorted(plan.trunks, key=lambda t: t.group)),
        routes=tuple(sorted(plan.routes, key=lambda r: (r.first, r.last))),
        refresh_registrations=tuple(sorted(set(plan.refresh_registrations))),
    )


@settings(max_examples=300, deadline=None)
@given(old=_plans(), new=_plans())
def test_diff_applied_to_previous_gives_the_new_plan(old: EdgePlan, new: EdgePlan) -> None:
    full = plan_document(old, site="s", generation=1, previous=None)
    valid(full)
    held = apply_document(None, json.loads(canonical_json(full)))
    assert held == _ordered(old)
    diff = plan_document(new, site="s", generation=2, previous=old, base_generation=1)
    valid(diff)
    assert apply_document(held, json.loads(canonical_json(diff))) == _ordered(new)
    # A full document also replaces whatever was held.
    full_new = plan_document(new, site="s", generation=3, previous=None)
    assert apply_document(held, full_new) == _ordered(new)


def test_reference_receiver_detects_a_diff_it_cannot_apply() -> None:
    new = EdgePlan((A1,), (R1,), ())
    diff = plan_document(new, site="s", generation=2, previous=PLAN)
    with pytest.raises(DocumentError, match="held plan"):
        apply_document(None, diff)
    # Held something other than the diff's base: removals of what it lacks are caught.
    with pytest.raises(DocumentError, match="not held"):
        apply_document(EdgePlan((A1,), (R1,), ()), diff)
    wrong_totals = json.loads(canonical_json(diff))
    wrong_totals["totals"]["routes"] = 5
    with pytest.raises(DocumentError, match="says 1 and 5"):
        apply_document(_ordered(PLAN), wrong_totals)
    with pytest.raises(DocumentError, match="malformed"):
        apply_document(_ordered(PLAN), {"kind": "lifeline.edge-plan",
                                        "version": DOCUMENT_VERSION})
    with pytest.raises(DocumentError, match="not a version 3"):  # v2 receivers picked by group
        apply_document(_ordered(PLAN), {**diff, "version": 2})
    with pytest.raises(DocumentError, match="version"):
        apply_document(None, {**diff, "version": 99})


def in_sync(seq: PlanSequencer) -> bool:
    """Read through a call: mypy keeps ``seq.in_sync`` narrowed across the settle() that
    changes it, and would skip the rest of the test as unreachable."""
    return seq.in_sync


def test_sequencer_sends_full_first_then_diffs_and_full_after_failure() -> None:
    seq = PlanSequencer(site="s", start_generation=100)
    assert not in_sync(seq)
    d1 = seq.next_document(PLAN)
    assert d1 is not None and d1["full"] and d1["generation"] == 100
    seq.settle(PLAN, d1, ok=True)
    assert in_sync(seq)
    assert seq.next_document(PLAN) is None  # nothing new to say

    p2 = EdgePlan(PLAN.trunks, (R1, R2), ())
    d2 = seq.next_document(p2)
    assert d2 is not None and not d2["full"]
    assert d2["generation"] == 101 and d2["base_generation"] == 100
    assert d2["routes"]["removed"] == [{"first": R3.first, "last": R3.last}]
    seq.settle(p2, d2, ok=False)
    assert not in_sync(seq)

    d3 = seq.next_document(p2)  # after a failure: the whole plan again
    assert d3 is not None and d3["full"] and d3["generation"] == 102
    assert "base_generation" not in d3
    seq.settle(p2, d3, ok=True)

    seq.resync()  # e.g. the receiver restarted
    d4 = seq.next_document(p2)
    assert d4 is not None and d4["full"] and d4["generation"] == 103


def test_sequencer_skips_a_change_that_only_drops_a_spent_refresh() -> None:
    seq = PlanSequencer(site="s", start_generation=1)
    with_refresh = EdgePlan(PLAN.trunks, PLAN.routes, ("carrier-b",))
    d1 = seq.next_document(with_refresh)
    assert d1 is not None and d1["refresh_registrations"] == ["carrier-b"]
    seq.settle(with_refresh, d1, ok=True)
    assert seq.next_document(PLAN) is None
    # The next real change is based on what the receiver holds (generation 1).
    d3 = seq.next_document(EdgePlan(PLAN.trunks, (R1,), ()))
    assert d3 is not None and d3["base_generation"] == 1 and d3["generation"] == 3
    with pytest.raises(DocumentError):
        PlanSequencer(site="s", start_generation=0)


class Receiver(DocumentPusher):
    """A document edge whose receiver applies each document as the reference receiver
    does, or refuses it (a drifted receiver answering 4xx)."""

    def __init__(self) -> None:
        self.name = "receiver"
        self.sequencer = PlanSequencer(site="s", start_generation=1)
        self.holds: EdgePlan | None = None
        self.refuse = False

    async def send(self, doc: Mapping[str, Any]) -> PushResult:
        if self.refuse:
            return PushResult(False, 1, 409, "HTTP 409: drifted", 0.0, permanent=True)
        self.holds = apply_document(self.holds, json.loads(canonical_json(doc)))
        return PushResult(True, 1, 204, None, 0.0, generation=doc["generation"], full=doc["full"])


def _sans_refresh(plan: EdgePlan | None) -> EdgePlan | None:
    return None if plan is None else replace(plan, refresh_registrations=())


@settings(max_examples=200, deadline=None)
@given(cycles=st.lists(st.tuples(_plans(), st.booleans()), min_size=1, max_size=4))
def test_document_edge_apply_then_plan_is_empty(cycles: list[tuple[EdgePlan, bool]]) -> None:
    async def cycles_of_push() -> None:
        edge = Receiver()
        for desired, refused_once in cycles:
            edge.refuse = refused_once
            first = await edge.apply(edge.plan(desired, await edge.observe()))
            if refused_once and not first.ok:
                assert first.describe() in (f"FAILED send the {what}: HTTP 409: drifted"
                                            for what in ("changes", "full plan"))
                assert await edge.observe() is None  # forgotten: the next push is full
                edge.refuse = False
                assert edge.plan(desired, None).steps[0].full
                assert (await edge.apply(edge.plan(desired, await edge.observe()))).ok
            again = edge.plan(desired, await edge.observe())
            assert again.empty, again.describe()
            assert _sans_refresh(edge.holds) == _sans_refresh(_ordered(desired))

    run(cycles_of_push())
