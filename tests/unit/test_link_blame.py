"""OPTIONS lost over a link that is failing are the link's evidence, not the trunks': a fibre
cut moves the route to the next link and must not take every trunk, and with them every
DID, down on the way (controller.core.peerpath, rule 6). First the pure rule, then the
telephony runtime fed by hand with a link whose own probes we script.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.config import parse_config
from controller.core.health import HealthState
from controller.core.peerpath import LinkProof, loss_verdict
from controller.core.snapshot import Tally
from controller.runtime.journal import Journal, read_events
from controller.runtime.trunks import Telephony
from tests.unit.test_telephony import CONFIG, LOST, OK, feed

UP, DOWN, DEGRADED = HealthState.UP, HealthState.DOWN, HealthState.DEGRADED
LINKS_UP = {"fibre-a": UP}
B_RANGE = "+390298765400-+390298765449"


@pytest.mark.parametrize(("sent_at", "now", "proof", "expected"), [
    (5.0, 5.2, None, "count"),  # no link known: as it always was
    (5.0, 5.2, LinkProof(UP, 5.0, 1.6), "count"),  # the link's round of that moment was good
    (5.0, 5.2, LinkProof(UP, 5.1, 1.6), "count"),
    (5.0, 5.2, LinkProof(UP, 4.9, 1.6), "wait"),  # the link has not spoken for that moment
    (5.0, 5.2, LinkProof(DEGRADED, 4.9, 1.6), "wait"),
    (5.0, 5.9, LinkProof(DOWN, 4.9, 1.6), "drop"),  # the link failed: not the peer's loss
    (5.0, 5.9, LinkProof(DOWN, None, 1.6), "drop"),
    (5.0, 5.9, LinkProof(DOWN, 5.0, 1.6), "count"),  # it worked at that moment, then failed
    (5.0, 6.7, LinkProof(UP, 4.9, 1.6), "count"),  # the link's verdict is overdue: count
])
def test_which_losses_wait_count_or_drop(sent_at: float, now: float, proof: LinkProof | None,
                                         expected: str) -> None:
    assert loss_verdict(sent_at, now, proof) == expected


class ScriptedLink:
    """fibre-a's own probes, as the test says them."""

    def __init__(self) -> None:
        self.state = UP
        self.good_sent: float | None = 0.0

    def proof(self, link: str) -> LinkProof | None:
        assert link == "fibre-a"
        return LinkProof(self.state, self.good_sent, 1.6)


@pytest.fixture
def tel(tmp_path: Path) -> tuple[Telephony, ScriptedLink]:
    t = Telephony(parse_config(CONFIG), Journal(tmp_path / "j.sqlite3"), Tally(), [])
    link = ScriptedLink()
    t.link_proof = link.proof
    t.note_paths(0.0, "fibre-a", LINKS_UP)
    for name in t.trunks:
        feed(t, "trunk", name, OK, 0.0, 6)
    t.decide(1.2, LINKS_UP)
    assert {p.health.state for p in t.trunks.values()} == {UP}
    return t, link


def test_losses_over_a_link_that_then_fails_take_no_trunk_down(
        tel: tuple[Telephony, ScriptedLink], tmp_path: Path) -> None:
    t, link = tel
    link.good_sent = 1.1  # the last good round of fibre-a before the cut at 1.2
    for name in t.trunks:
        feed(t, "trunk", name, LOST, 1.2, 4)  # more than down_after
    assert {p.health.state for p in t.trunks.values()} == {UP}  # held: fibre-a has not spoken
    assert all(len(p.held) == 4 for p in t.trunks.values())
    link.state = DOWN  # fibre-a judged down; the route moves on
    t.note_paths(2.0, "fibre-a", {"fibre-a": DOWN})
    plan = t.decide(2.0, {"fibre-a": UP})  # as if the next link carried the route
    assert {p.health.state for p in t.trunks.values()} == {UP}
    assert all(p.dropped == 4 and not p.held for p in t.trunks.values())
    assert plan.unroutable == ()
    journal = read_events(tmp_path / "j.sqlite3", 100)
    assert [e for e in journal if e.kind == "error" or e.data.get("new") == "down"] == []


def test_losses_over_a_link_that_works_take_the_trunk_down_once_it_has_spoken(
        tel: tuple[Telephony, ScriptedLink]) -> None:
    t, link = tel
    b1 = t.trunks["b1"]
    feed(t, "trunk", "b1", LOST, 1.2, 3)  # carrier B's SBC died; fibre-a is fine
    assert b1.health.state is UP and len(b1.held) == 3
    link.good_sent = 1.65  # fibre-a's next good round, sent after the last lost OPTIONS
    t.note_paths(1.7, "fibre-a", LINKS_UP)
    assert b1.health.state is DOWN and not b1.held and b1.dropped == 0
    assert [str(r) for r in t.decide(1.7, LINKS_UP).unroutable] == [B_RANGE]


def test_a_link_that_never_speaks_does_not_hold_a_trunks_failure_for_long(
        tel: tuple[Telephony, ScriptedLink]) -> None:
    t, link = tel
    link.good_sent = 1.0
    feed(t, "trunk", "b1", LOST, 1.2, 3)
    t.note_paths(2.5, "fibre-a", LINKS_UP)
    assert t.trunks["b1"].health.state is UP  # 1.3 s: within fibre-a's judging time
    t.note_paths(3.3, "fibre-a", LINKS_UP)  # 1.7 s and more > 1.6 s: they count
    assert t.trunks["b1"].health.state is DOWN


def test_answers_wait_behind_a_held_loss_so_the_health_sees_probes_in_order(
        tel: tuple[Telephony, ScriptedLink]) -> None:
    t, link = tel
    b1 = t.trunks["b1"]
    link.good_sent = 1.0
    for sent_at, sample in ((1.2, LOST), (1.4, LOST), (1.6, OK), (1.8, LOST)):
        t.on_result("trunk", b1, sent_at, sample)
    assert [s.ok for _, s, _ in b1.held] == [False, False, True, False]
    link.good_sent = 2.0
    t.note_paths(2.1, "fibre-a", LINKS_UP)
    assert not b1.held and b1.health.state is not DOWN  # never three lost in a row
    t.on_result("trunk", b1, 2.2, OK)  # nothing held: an answer goes straight in
    assert not b1.held
