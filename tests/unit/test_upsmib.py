"""The UPS-MIB values -> UpsReading mapping (probes/upsmib.py): every enum value of
upsOutputSource and upsBatteryStatus, units, objects the agent lacks, values of the wrong
type or out of range, and a property: no input raises, and a reading is ok exactly when the
power source is one the mapping knows."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probes.sample import ErrorKind
from probes.ups import FLAGS
from probes.upsmib import OBJECTS, MibValue, reading_from_mib

MAINS: dict[str, MibValue] = {
    "upsOutputSource": 3,
    "upsBatteryStatus": 2,
    "upsEstimatedMinutesRemaining": 45,
    "upsEstimatedChargeRemaining": 100,
    "upsInputVoltage": 230,
    "upsOutputPercentLoad": 35,
}


@pytest.mark.parametrize(("source", "flags"), [
    (2, {"OFF"}),  # none: the UPS feeds nothing
    (3, {"OL"}),  # normal
    (4, {"OL", "BYPASS"}),
    (5, {"OB", "DISCHRG"}),  # battery
    (6, {"OL", "BOOST"}),  # booster
    (7, {"OL", "TRIM"}),  # reducer
])
def test_each_known_output_source_becomes_nut_flags(source: int, flags: set[str]) -> None:
    reading = reading_from_mib({**MAINS, "upsOutputSource": source})
    assert reading.ok
    assert reading.flags == flags
    assert reading.error is None
    assert reading.detail == ""


@pytest.mark.parametrize(("source", "words"), [
    (1, "other(1)"),
    (0, "outside the UPS-MIB"),
    (8, "outside the UPS-MIB"),
    (-5, "outside the UPS-MIB"),
    (None, "no upsOutputSource"),
    ("OctetString 'battery'", "not an integer"),
])
def test_a_source_that_does_not_say_mains_or_battery_is_not_ok(source: MibValue,
                                                               words: str) -> None:
    reading = reading_from_mib({**MAINS, "upsOutputSource": source})
    assert not reading.ok
    assert reading.error is ErrorKind.BAD_REPLY
    assert words in reading.detail
    assert not reading.flags & {"OL", "OB"}
    # what the UPS did say is kept, for the operator and the metrics
    assert reading.charge == 1.0
    assert reading.runtime == 45 * 60


def test_a_missing_output_source_keeps_a_low_battery_flag() -> None:
    reading = reading_from_mib({**MAINS, "upsOutputSource": None, "upsBatteryStatus": 3})
    assert not reading.ok
    assert reading.flags == {"LB"}


@pytest.mark.parametrize(("status", "flags"), [
    (1, set()),  # unknown
    (2, set()),  # batteryNormal
    (3, {"LB"}),  # batteryLow
    (4, {"LB"}),  # batteryDepleted
    (None, set()),  # the agent lacks it: no claim either way
])
def test_battery_status_low_or_depleted_raises_lb(status: int | None, flags: set[str]) -> None:
    on_battery = reading_from_mib({**MAINS, "upsOutputSource": 5, "upsBatteryStatus": status})
    assert on_battery.ok
    assert on_battery.flags == {"OB", "DISCHRG"} | flags
    on_mains = reading_from_mib({**MAINS, "upsBatteryStatus": status})
    assert on_mains.flags == {"OL"} | flags


def test_units_charge_and_load_become_ratios_minutes_become_seconds() -> None:
    reading = reading_from_mib({**MAINS, "upsEstimatedMinutesRemaining": 7,
                                "upsEstimatedChargeRemaining": 64,
                                "upsInputVoltage": 118, "upsOutputPercentLoad": 120})
    assert reading.charge == pytest.approx(0.64)
    assert reading.runtime == 420.0
    assert reading.input_voltage == 118.0
    assert reading.load == pytest.approx(1.2)  # up to 200 % in the MIB: an overload


def test_objects_the_agent_lacks_stay_none_without_a_note() -> None:
    reading = reading_from_mib({"upsOutputSource": 5})
    assert reading.ok
    assert reading.flags == {"OB", "DISCHRG"}
    assert (reading.charge, reading.runtime, reading.input_voltage, reading.load) == (
        None, None, None, None)
    assert reading.detail == ""


@pytest.mark.parametrize(("name", "value", "words"), [
    ("upsEstimatedChargeRemaining", 101, "101 is outside 0..100"),
    ("upsEstimatedChargeRemaining", -1, "outside 0..100"),
    ("upsEstimatedMinutesRemaining", -3, "outside"),
    ("upsOutputPercentLoad", 201, "outside 0..200"),
    ("upsInputVoltage", "OctetString '230V'", "not an integer (OctetString '230V')"),
    ("upsBatteryStatus", 9, "outside 1..4"),
    ("upsBatteryStatus", "Null ''", "not an integer"),
])
def test_a_value_out_of_range_or_of_the_wrong_type_is_dropped_with_a_note(
        name: str, value: MibValue, words: str) -> None:
    reading = reading_from_mib({**MAINS, name: value})
    assert reading.ok  # the power source is still known
    assert reading.flags == {"OL"}
    assert name in reading.detail
    assert words in reading.detail
    field = {"upsEstimatedChargeRemaining": "charge", "upsEstimatedMinutesRemaining": "runtime",
             "upsOutputPercentLoad": "load", "upsInputVoltage": "input_voltage"}.get(name)
    if field is not None:
        assert getattr(reading, field) is None


def test_notes_are_joined_after_the_reason_a_reading_is_not_ok() -> None:
    reading = reading_from_mib({**MAINS, "upsOutputSource": 1, "upsOutputPercentLoad": 999})
    assert reading.detail.startswith("upsOutputSource is other(1)")
    assert "; upsOutputPercentLoad ignored" in reading.detail


def test_the_objects_are_the_rfc_1628_instances() -> None:
    assert OBJECTS == {
        "upsOutputSource": "1.3.6.1.2.1.33.1.4.1.0",
        "upsBatteryStatus": "1.3.6.1.2.1.33.1.2.1.0",
        "upsEstimatedMinutesRemaining": "1.3.6.1.2.1.33.1.2.3.0",
        "upsEstimatedChargeRemaining": "1.3.6.1.2.1.33.1.2.4.0",
        "upsInputVoltage": "1.3.6.1.2.1.33.1.3.3.1.3.1",
        "upsOutputPercentLoad": "1.3.6.1.2.1.33.1.4.4.1.5.1",
    }


_VALUE = st.one_of(st.none(), st.integers(-(2**40), 2**40), st.text(max_size=20))


@given(st.fixed_dictionaries({name: _VALUE for name in OBJECTS}))
def test_any_values_give_a_reading_ok_only_with_a_known_source(
        values: dict[str, MibValue]) -> None:
    reading = reading_from_mib(values)
    assert reading.flags <= FLAGS
    source = values["upsOutputSource"]
    assert reading.ok == (isinstance(source, int) and 2 <= source <= 7)
    assert reading.ok == (reading.error is None)
    if reading.ok and source != 2:
        assert len(reading.flags & {"OL", "OB"}) == 1  # never both, never neither
    for ratio in (reading.charge, reading.load):
        assert ratio is None or 0 <= ratio <= 2
    assert reading.runtime is None or reading.runtime >= 0
