"""The lab's shared helpers that need no namespace: the one wait (``lab.wait``), the
builder's refusal of names ``cleanup_stale`` would not recognise (``lab.builder``) and the
config generator's way of leaving probe timing to the daemon (``lab.config``)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from controller.config import parse_config
from tests.lab.builder import NetBuilder
from tests.lab.config import lifeline_config, lifeline_config_dict
from tests.lab.netns import LAB_ROLES
from tests.lab.topology import Lab
from tests.lab.wait import until, until_async


def test_until_returns_what_the_predicate_returned_once_it_holds() -> None:
    answers: list[dict[str, str] | None] = [None, {}, {"state": "up"}]
    assert until(lambda: answers.pop(0), 1.0, 0.001, "a status") == {"state": "up"}


def test_until_times_out_naming_what_it_waited_for_and_the_detail() -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"waited 0.2 s for the route; last: none"):
        until(lambda: False, 0.2, 0.05, "the route", detail=lambda: "last: none")
    assert 0.2 <= time.monotonic() - started < 1.0


def test_until_asks_once_more_at_the_deadline() -> None:
    asked: list[float] = []

    def late() -> bool:
        asked.append(time.monotonic())
        return len(asked) == 2  # true only on the second ask, at the deadline

    assert until(late, 0.1, 10.0) is True
    assert asked[1] - asked[0] >= 0.09


def test_a_predicate_that_raises_ends_the_wait_at_once() -> None:
    def dead() -> bool:
        raise RuntimeError("the daemon exited")

    started = time.monotonic()
    with pytest.raises(RuntimeError, match="exited"):
        until(dead, 10.0)
    assert time.monotonic() - started < 1.0


async def test_until_async_awaits_an_async_predicate_and_takes_a_plain_one() -> None:
    calls = 0

    async def registered() -> str | None:
        nonlocal calls
        calls += 1
        return "registered" if calls >= 3 else None

    assert await until_async(registered, 1.0, 0.001) == "registered"
    assert await until_async(lambda: 7, 1.0) == 7
    with pytest.raises(TimeoutError, match="the REGISTER"):
        await until_async(lambda: None, 0.05, 0.01, "the REGISTER")


def test_the_builder_refuses_a_role_cleanup_stale_would_not_know() -> None:
    with pytest.raises(ValueError, match="not lab roles"):
        NetBuilder(["site", "router"])
    net = NetBuilder(["site", "isp-a"], prefix="ll-000000-")
    assert net.namespaces == ["ll-000000-site", "ll-000000-isp-a"]
    assert set(net.roles) <= set(LAB_ROLES)
    assert net.created == []  # nothing exists before create()


def test_probe_defaults_leave_interval_timeout_and_reliability_to_the_daemon(
        tmp_path: Path) -> None:
    lab = Lab(prefix="ll-000000-")  # never built: the generator only reads names
    text = lifeline_config(lab, tmp_path, probe_defaults=True, gateway_target=False,
                           far_targets=[str(t) for t in lab.targets])
    link = parse_config(text).links[0]  # valid as it stands: the daemon fills in the rest
    assert [t.host for t in link.probes.targets] == [str(t) for t in lab.targets]
    written = lifeline_config_dict(lab, tmp_path, probe_defaults=True)["links"][0]["probes"]
    assert set(written) == {"targets"}
    # Existing callers keep the lab's own timing and the gateway target.
    probes = lifeline_config_dict(lab, tmp_path)["links"][0]["probes"]
    assert probes["interval"] == "200ms" and probes["reliability"] == 1
    assert probes["targets"][0] == {"icmp": str(lab.link("fibre-a").gateway)}
    with pytest.raises(TypeError, match="interval"):
        lifeline_config_dict(lab, tmp_path, probe_defaults=True, interval="1s")
