"""The status page's last hour: one point per step holding the step's worst values,
bounded to the window, columns with nulls where a link or trunk had no value."""

from __future__ import annotations

import pytest

from controller.core.health import HealthState
from controller.core.snapshot import LinkSnap, PeerSnap, Snapshot
from exporters.history import History


def link(name: str, loss: float = 0.0, latency: float | None = 0.01,
         mos: float | None = 4.3) -> LinkSnap:
    return LinkSnap(name, "wan", "198.51.100.1", None, 1, HealthState.UP, 1.0, "ok", True,
                    loss, latency, 0.001, mos, 10, 0.0, 0.0)


def snap(t: float, *links: LinkSnap, rtt: float | None = None) -> Snapshot:
    trunks = () if rtt is None else (
        PeerSnap("sbc1", "sip:192.0.2.21", HealthState.UP, "ok", 200, rtt, 0.0),)
    return Snapshot(site="s", version="v", dry_run=False, taken_at=t, uptime=t,
                    links=links, trunks=trunks)


def test_a_point_is_kept_only_when_its_step_is_over() -> None:
    h = History(step=10, window=60)
    assert h.record(snap(100.0, link("a"))) is None
    assert h.record(snap(105.0, link("a"))) is None
    closed = h.record(snap(110.0, link("a")))
    assert closed is not None and closed.t == 100.0
    assert [p.t for p in h.points()] == [100.0]


def test_a_point_holds_the_worst_of_its_step() -> None:
    h = History(step=10, window=60)
    h.record(snap(100.0, link("a", loss=0.0, latency=0.010, mos=4.3), rtt=0.020))
    h.record(snap(103.0, link("a", loss=0.5, latency=None, mos=2.1), rtt=0.090))
    h.record(snap(106.0, link("a", loss=0.1, latency=0.030, mos=None), rtt=None))
    closed = h.record(snap(111.0, link("a")))
    assert closed is not None
    assert closed.links["a"]["loss"] == 0.5
    assert closed.links["a"]["latency"] == 0.030  # None (no answer) does not erase a value
    assert closed.links["a"]["mos"] == 2.1
    assert closed.trunks["sbc1"]["rtt"] == 0.090


def test_the_buffer_is_bounded_by_the_window() -> None:
    h = History(step=10, window=60)
    for i in range(100):
        h.record(snap(1000.0 + 10 * i, link("a", loss=i / 100)))
    points = h.points()
    assert len(points) == 6
    assert points[-1].t == 1000.0 + 10 * 98  # the open step (99) is not a point yet
    assert points[0].t == points[-1].t - 50


def test_columns_have_nulls_where_a_link_was_not_there() -> None:
    h = History(step=10, window=600)
    h.record(snap(100.0, link("a", loss=0.2)))
    h.record(snap(110.0, link("a", loss=0.3), link("b", loss=0.4)))  # b came with a reload
    h.record(snap(120.0, link("b", loss=0.5)))  # a went
    h.record(snap(130.0, link("b")))
    doc = h.as_json()
    assert doc["t"] == [100.0, 110.0, 120.0]
    assert doc["links"]["a"]["loss"] == [0.2, 0.3, None]
    assert doc["links"]["b"]["loss"] == [None, 0.4, 0.5]
    assert doc["trunks"] == {}
    assert doc["step"] == 10 and doc["window"] == 600


def test_old_points_are_left_out_of_the_json() -> None:
    h = History(step=10, window=60)
    for t in (100.0, 110.0, 120.0):
        h.record(snap(t, link("a")))
    assert h.as_json(now=125.0)["t"] == [100.0, 110.0]
    assert h.as_json(now=1000.0)["t"] == []


def test_a_wall_clock_going_back_starts_over() -> None:
    h = History(step=10, window=600)
    for t in (1000.0, 1010.0, 1020.0):
        h.record(snap(t, link("a")))
    assert len(h.points()) == 2
    assert h.record(snap(500.0, link("a"))) is None
    assert h.points() == []
    h.record(snap(510.0, link("a")))
    assert [p.t for p in h.points()] == [500.0]


@pytest.mark.parametrize(("step", "window"), [(0, 60), (-1, 60), (10, 5)])
def test_a_nonsense_size_is_refused(step: float, window: float) -> None:
    with pytest.raises(ValueError):
        History(step=step, window=window)
