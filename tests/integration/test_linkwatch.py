"""Link watch against real veth carrier changes: the ISP end set down makes the router's end
lose carrier, and on_carrier must hear of it at once; also the state at start, admin down,
recovery, unwatched interfaces and a failing callback."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from controller.actuators.netlink import Netlink
from controller.runtime.linkwatch import LinkWatch
from tests.integration.test_routes import Lab, small_lab
from tests.lab.wait import until_async

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create network namespaces"),
]


@pytest.fixture
def lab() -> Iterator[Lab]:
    with small_lab(n_links=2) as the_lab:
        yield the_lab


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[float, str, bool, str]] = []

    def __call__(self, ifname: str, up: bool, reason: str) -> None:
        self.calls.append((time.perf_counter(), ifname, up, reason))

    async def wait_for(self, ifname: str, up: bool, after: int, timeout: float = 5.0) -> float:
        """Time of the first matching call at index >= after (taken by the call itself, so
        the poll's pace does not blur it); fails after `timeout`."""

        def first() -> float | None:
            return next((t for t, name, state, _ in self.calls[after:]
                         if name == ifname and state == up), None)

        return await until_async(first, timeout, 0.005, f"on_carrier({ifname}, {up})",
                                 detail=lambda: f"calls: {self.calls}")


async def test_initial_state_then_carrier_loss_and_recovery(lab: Lab) -> None:
    rec = Recorder()
    peer0 = lab.peers[0]
    async with (
        Netlink(peer0) as isp,
        LinkWatch(["wan0", "wan1", "wan9"], rec, netns=lab.router) as watch,
    ):
        initial = {(name, up) for _, name, up, _ in rec.calls}
        assert initial == {("wan0", True), ("wan1", True), ("wan9", False)}
        assert all("at start" in reason for *_, reason in rec.calls)

        await isp.links()  # warm the name cache so the timed call is one netlink message
        n = len(rec.calls)
        t0 = time.perf_counter()
        await isp.set_link_up("isp0", False)
        t_down = await rec.wait_for("wan0", False, n)
        reason = rec.calls[-1][3]
        assert "NO-CARRIER" in reason, reason

        n = len(rec.calls)
        t1 = time.perf_counter()
        await isp.set_link_up("isp0", True)
        t_up = await rec.wait_for("wan0", True, n)
        assert watch.state["wan0"] is True and watch.state["wan1"] is True

    down_ms, up_ms = (t_down - t0) * 1e3, (t_up - t1) * 1e3
    print(
        f"\ncarrier loss -> on_carrier: {down_ms:.2f} ms from the netlink call that set the "
        f"ISP end down; recovery: {up_ms:.2f} ms"
    )
    # generous bound (no flaky timing): the kernel may rate-limit carrier events to 1/s
    assert down_ms < 1500 and up_ms < 1500
    # only wan0 moved, and each change was reported once
    moves = [(name, up) for _, name, up, r in rec.calls if "at start" not in r]
    assert moves == [("wan0", False), ("wan0", True)]


async def test_admin_down_and_failing_callback(lab: Lab) -> None:
    calls: list[tuple[str, bool, str]] = []

    async def flaky(ifname: str, up: bool, reason: str) -> None:
        calls.append((ifname, up, reason))
        if len(calls) == 3:  # the first change: the watch must survive this
            raise RuntimeError("consumer bug")

    async def next_call(count: int) -> tuple[str, bool, str]:
        await until_async(lambda: len(calls) >= count, 5, 0.005, f"on_carrier call {count}")
        return calls[count - 1]

    async with LinkWatch(["wan0", "wan1"], flaky, netns=lab.router):
        assert len(calls) == 2
        lab.ip("link", "set", "wan1", "down")
        assert (await next_call(3))[:2] == ("wan1", False)
        assert "admin down" in calls[2][2]
        lab.ip("link", "set", "wan1", "up")
        assert (await next_call(4))[:2] == ("wan1", True)
