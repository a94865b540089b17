"""The demo's recordings act on a real lab (the daemon, Prometheus with the shipped rules,
Alertmanager with the shipped config, a webhook sink): the night's copy that skipped three
recordings is found with exactly those names, by the daemon and by ``lifeline recordings
verify``; on-call gets one page and, after the re-run, its resolution; nothing else is
paged or ticketed, and the store and the mirror are as the act left them."""

from __future__ import annotations

import pytest

from tests.lab.demo_recordings import (
    RecTiming,
    recordings_skip_reason,
    recordings_summary,
    run_recordings_act,
)

pytestmark = [pytest.mark.lab, pytest.mark.skipif(recordings_skip_reason() is not None,
                                                  reason=str(recordings_skip_reason()))]


def test_recordings_act_finds_the_skipped_recordings_and_pages_once(
        capsys: pytest.CaptureFixture[str]) -> None:
    act = run_recordings_act(quick=True)
    out = capsys.readouterr().out
    summary = recordings_summary(act)
    assert len(act.outcomes) == act.steps, out + summary  # every step reached
    assert all(o.ok for o in act.outcomes), out + summary
    f, t = act.figures, RecTiming.for_demo(True)
    assert f.recordings == (t.days + 1) * t.per_day, summary
    assert len(f.skipped) == len(t.skipped) == 3, summary
    # Exactly the skipped ones, by the daemon (status API) and by the CLI; no other name.
    assert sorted(act.outcomes[1].found) == sorted(f.skipped), out
    assert f.verify_missing == tuple(sorted(f.skipped)) and f.verify_exit == 1, out
    assert act.outcomes[0].found == () and "all ok" in act.outcomes[0].title
    # One page, then its resolution; no ticket (nothing else went wrong at this site).
    assert (f.pages, f.resolved, f.tickets) == (1, 1, 0), summary
    assert f.trees_untouched is True, out  # lifeline wrote nothing in the store or mirror
    # Loose bounds: a 1 s check cycle, a 1 s scrape and evaluation, a 2 s group_wait.
    assert f.to_finding is not None and f.to_finding < 10, summary
    assert f.to_page is not None and f.to_finding <= f.to_page < 30, summary
    assert f.to_resolved is not None and f.to_resolved < 30, summary
    assert "nas: 3 recordings older than its last copy by the grace are not in it" in out
