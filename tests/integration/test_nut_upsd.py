"""read_ups against the real upsd with NUT's dummy-ups driver on 127.0.0.1 (tests/lab/nut.py).

The UPS goes OL -> OB DISCHRG -> OB LB -> OL by rewriting the driver's file, and each
state reads back as upsd serves it; a wrong password, an unknown UPS, STARTTLS on an upsd
without certificates, a killed driver and a frozen one (stale after MAXAGE) are failed
readings with upsd's words, never an ``ok`` UPS.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from probes.nut import NutTls, read_ups
from probes.sample import ErrorKind
from tests.lab.nut import Upsd, nut_skip_reason
from tests.lab.wait import until_async

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(nut_skip_reason() is not None, reason=str(nut_skip_reason())),
]

PASSWORD = "lab-secret"


@pytest.fixture
def upsd_factory(tmp_path: Path) -> Iterator[Callable[..., Upsd]]:
    """``make(**Upsd options) -> Upsd`` started; every one is stopped at teardown."""
    made: list[Upsd] = []

    def make(**options: object) -> Upsd:
        upsd = Upsd(tmp_path / f"nut{len(made)}",
                    users={"monitor": (PASSWORD, "upsmon secondary")},
                    **options)  # type: ignore[arg-type]
        made.append(upsd)
        upsd.start()
        return upsd

    try:
        yield make
    finally:
        for upsd in made:
            upsd.stop()


@pytest.fixture
def upsd(upsd_factory: Callable[..., Upsd]) -> Upsd:
    return upsd_factory()


async def test_a_power_cut_reads_through_every_state(upsd: Upsd) -> None:
    steps = [
        ("OB DISCHRG", 90, 1500, 0.0),
        ("OB LB", 12, 120, 0.0),
        ("OL CHRG", 15, 150, 229.5),
    ]
    first = await read_ups(upsd.host, upsd.port, upsd.ups, timeout=2.0,
                           username="monitor", password=PASSWORD)
    assert first.ok and first.flags == {"OL", "CHRG"} and first.charge == 1.0, first
    assert (first.runtime, first.input_voltage, first.load) == (1800.0, 230.0, 0.35)
    for status, charge, runtime, volts in steps:
        upsd.set(status=status, charge=charge, runtime=runtime, input_voltage=volts)

        async def arrived(status: str = status) -> bool:
            r = await read_ups(upsd.host, upsd.port, upsd.ups, timeout=2.0)
            return r.ok and r.flags == frozenset(status.split())

        await until_async(arrived, 10.0, 0.05, f"upsd to serve {status}")
        r = await read_ups(upsd.host, upsd.port, upsd.ups, timeout=2.0,
                           username="monitor", password=PASSWORD)
        assert r.ok, r.detail
        assert (r.charge, r.runtime, r.input_voltage) == (charge / 100, runtime, volts)


async def test_refusals_of_the_real_upsd_are_failed_readings(upsd: Upsd) -> None:
    wrong = await read_ups(upsd.host, upsd.port, upsd.ups, timeout=2.0,
                           username="monitor", password="not-the-secret")
    assert not wrong.ok and wrong.error is ErrorKind.BAD_REPLY
    assert "ACCESS-DENIED" in wrong.detail and "not-the-secret" not in wrong.detail
    nobody = await read_ups(upsd.host, upsd.port, upsd.ups, timeout=2.0,
                            username="intruder", password=PASSWORD)
    assert not nobody.ok and "ACCESS-DENIED" in nobody.detail
    unknown = await read_ups(upsd.host, upsd.port, "rack9", timeout=2.0)
    assert not unknown.ok and "UNKNOWN-UPS" in unknown.detail
    tls = await read_ups(upsd.host, upsd.port, upsd.ups, timeout=2.0, tls=NutTls())
    assert not tls.ok and "FEATURE-NOT-CONFIGURED" in tls.detail
    # upsd is still fine after all that
    assert (await read_ups(upsd.host, upsd.port, upsd.ups, timeout=2.0)).ok


async def test_a_killed_driver_is_unknown_not_mains(upsd: Upsd) -> None:
    upsd.kill_driver()
    r = await read_ups(upsd.host, upsd.port, upsd.ups, timeout=2.0)
    assert not r.ok and r.error is ErrorKind.BAD_REPLY and not r.flags
    assert "DRIVER-NOT-CONNECTED" in r.detail
    upsd.start_driver()

    async def back() -> bool:
        return (await read_ups(upsd.host, upsd.port, upsd.ups, timeout=2.0)).ok

    await until_async(back, 20.0, 0.2, "upsd to reconnect to the restarted driver")


async def test_a_frozen_driver_goes_stale_after_maxage(upsd_factory: Callable[..., Upsd]) -> None:
    upsd = upsd_factory(maxage=3)
    upsd.freeze_driver()
    frozen = time.monotonic()

    async def stale() -> str | None:
        r = await read_ups(upsd.host, upsd.port, upsd.ups, timeout=2.0)
        assert r.ok or "DATA-STALE" in r.detail, r.detail
        return None if r.ok else r.detail

    detail = await until_async(stale, 20.0, 0.2, "upsd to call the frozen driver stale")
    assert "MAXAGE" in detail and time.monotonic() - frozen >= 2.0
