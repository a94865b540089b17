"""The one result every actuator answers: what it says for the log and the journal, and the
results that adapt to it (a conntrack flush) or stand beside it (a document push)."""

from __future__ import annotations

from controller.actuators.base import ApplyResult, StepError, StepLike
from controller.actuators.conntrack import FlushFlows, FlushResult
from controller.actuators.sipedge.document import PushResult
from controller.actuators.sipedge.kamailio import EdgeSteps, RemoveTrunk, SetDid

STEPS = EdgeSteps((SetDid("+3902123456xx", "1|sip:pbx"), RemoveTrunk(2, "sip:sbc")))


def test_nothing_to_do_says_nothing() -> None:
    result: ApplyResult[EdgeSteps, StepLike] = ApplyResult(EdgeSteps())
    assert result.ok and result.describe() == ""


def test_changes_are_counted_with_their_cost() -> None:
    result = ApplyResult(STEPS, done=STEPS.steps, calls=3, seconds=0.0123)
    assert result.ok and result.describe() == "2 change(s) in 3 requests (12 ms)"


def test_a_failure_names_its_step_and_reads_the_same_each_cycle() -> None:
    failed = StepError(STEPS.steps[1], "dispatcher.remove: not found (code 404)")
    cycles = [
        ApplyResult(STEPS, done=STEPS.steps[:1], errors=(failed,), calls=n, seconds=n / 10)
        for n in (2, 5)
    ]
    assert not cycles[0].ok
    assert {c.describe() for c in cycles} == {
        "FAILED remove trunk sip:sbc from set 2: dispatcher.remove: not found (code 404)"
    }
    unread: StepError[SetDid] = StepError(None, "htable.dump: no answer: TimeoutError: ")
    assert ApplyResult(EdgeSteps(), errors=(unread,) * 5).describe() == "; ".join(
        ["htable.dump: no answer: TimeoutError: "] * 3
    )


def test_a_conntrack_flush_reads_as_an_apply_result() -> None:
    clean = FlushResult(3, 3, 40, 0, False, 0.004, ("198.51.100.2",))
    applied = clean.as_apply_result()
    assert applied.ok and applied.done == (FlushFlows(("198.51.100.2",)),)
    assert applied.plan.describe() == "flush conntrack entries NAT'ed to 198.51.100.2"
    partial = FlushResult(1, 3, 40, 2, True, 2.0, ("198.51.100.2",)).as_apply_result()
    assert not partial.ok and partial.done == ()
    assert partial.describe().endswith(": 2 errors, timed out (partial)")
    nothing = FlushResult(0, 0, 0, 0, False, 0.0, ()).as_apply_result()
    assert nothing.ok and nothing.plan.empty and nothing.done == ()


def test_a_document_push_says_what_the_daemon_journals() -> None:
    assert PushResult(True, 0, None, None, 0.0).describe() == ""
    assert PushResult(True, 2, 204, None, 0.1, generation=7, full=True).describe() == (
        "pushed full plan (generation 7) in 2 attempt(s)"
    )
    assert PushResult(True, 1, 0, None, 0.1, generation=8, full=False).describe() == (
        "pushed changes (generation 8) in 1 attempt(s)"
    )
    assert PushResult(False, 1, 400, "HTTP 400: no such site", 0.1).describe() == (
        "HTTP 400: no such site"
    )
    assert PushResult(False, 1, 503, None, 0.1).describe() == "failed (status 503)"
