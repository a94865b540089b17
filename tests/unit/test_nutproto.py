"""The NUT reply parser and the mapping to UpsReading: pure, property-tested (probes/nutproto)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.nut import _quoted, reading_of
from probes.nutproto import (
    NutReplyError,
    NutServerError,
    VarList,
    check_ok,
    server_error,
    split_words,
)
from probes.sample import ErrorKind


def test_words_split_on_spaces_and_quotes_group_them() -> None:
    assert split_words('VAR dummy ups.status "OB LB"') == ["VAR", "dummy", "ups.status", "OB LB"]


def test_escaped_quote_and_backslash_are_unescaped() -> None:
    line = r'VAR dummy device.model "Smart \"UPS\" C:\\rack"'
    assert split_words(line)[3] == 'Smart "UPS" C:\\rack'


def test_an_empty_quoted_value_is_a_word() -> None:
    assert split_words('VAR dummy ups.serial ""') == ["VAR", "dummy", "ups.serial", ""]


@pytest.mark.parametrize("line", ['VAR dummy x "open', "VAR dummy x trailing\\"])
def test_an_unterminated_quote_or_escape_is_a_reply_error(line: str) -> None:
    with pytest.raises(NutReplyError):
        split_words(line)


def test_err_lines_carry_the_word_and_its_meaning() -> None:
    err = server_error("ERR DATA-STALE")
    assert err is not None and err.word == "DATA-STALE" and "MAXAGE" in err.meaning
    odd = server_error("ERR SOMETHING-NEW extra words")
    assert odd is not None and odd.word == "SOMETHING-NEW" and "does not know" in odd.meaning
    assert server_error("ERRATIC") is None
    assert server_error("OK") is None


def test_check_ok_accepts_ok_and_refuses_anything_else() -> None:
    check_ok("OK")
    check_ok("OK STARTTLS", "OK STARTTLS")
    with pytest.raises(NutServerError):
        check_ok("ERR FEATURE-NOT-CONFIGURED", "OK STARTTLS")
    with pytest.raises(NutReplyError):
        check_ok("OKAY")


def _listing(*lines: str, ups: str = "dummy") -> dict[str, str]:
    parser = VarList(ups)
    result = None
    for line in lines:
        result = parser.feed(line)
    assert result is not None
    return result


def test_a_var_list_reads_to_its_end() -> None:
    vars_ = _listing("BEGIN LIST VAR dummy", 'VAR dummy ups.status "OL"',
                     'VAR dummy battery.charge "97"', "END LIST VAR dummy")
    assert vars_ == {"ups.status": "OL", "battery.charge": "97"}


@pytest.mark.parametrize("lines", [
    ["VAR dummy ups.status \"OL\""],  # no BEGIN
    ["BEGIN LIST VAR other"],  # another UPS's list
    ["BEGIN LIST VAR dummy", "VAR other ups.status \"OL\""],
    ["BEGIN LIST VAR dummy", "VAR dummy ups.status"],  # no value
    ["BEGIN LIST VAR dummy", "\x00\xff garbage"],
])
def test_a_var_list_out_of_shape_is_a_reply_error(lines: list[str]) -> None:
    parser = VarList("dummy")
    with pytest.raises(NutReplyError):
        for line in lines:
            parser.feed(line)


def test_an_err_inside_a_var_list_is_upsds_error() -> None:
    parser = VarList("dummy")
    with pytest.raises(NutServerError) as err:
        parser.feed("ERR DRIVER-NOT-CONNECTED")
    assert err.value.word == "DRIVER-NOT-CONNECTED"


def test_a_var_list_that_does_not_end_is_cut_at_its_bound() -> None:
    parser = VarList("dummy", max_vars=10)
    parser.feed("BEGIN LIST VAR dummy")
    with pytest.raises(NutReplyError, match="did not end"):
        for i in range(11):
            parser.feed(f'VAR dummy v{i} "1"')


def test_a_line_after_the_end_is_refused() -> None:
    parser = VarList("dummy")
    parser.feed("BEGIN LIST VAR dummy")
    parser.feed("END LIST VAR dummy")
    with pytest.raises(NutReplyError):
        parser.feed("END LIST VAR dummy")


def test_a_reading_maps_nut_units_to_ratios_and_seconds() -> None:
    r = reading_of("dummy", {"ups.status": "OB DISCHRG LB", "battery.charge": "42",
                             "battery.runtime": "310", "input.voltage": "0.0",
                             "ups.load": "57.5"})
    assert r.ok and r.flags == {"OB", "DISCHRG", "LB"}
    assert (r.charge, r.runtime, r.input_voltage, r.load) == (0.42, 310.0, 0.0, 0.575)
    assert r.detail == ""


def test_unknown_status_words_stay_out_of_the_flags_but_are_named() -> None:
    r = reading_of("dummy", {"ups.status": "OL ECO"})
    assert r.ok and r.flags == {"OL"} and "ECO" in r.detail


@pytest.mark.parametrize("vars_", [{}, {"ups.status": "WAIT"}, {"ups.status": ""}])
def test_a_status_with_no_known_word_is_unknown_not_mains(vars_: dict[str, str]) -> None:
    r = reading_of("dummy", vars_)
    assert not r.ok and r.error is ErrorKind.BAD_REPLY and not r.flags


def test_a_value_that_is_not_a_number_is_none_and_named() -> None:
    r = reading_of("dummy", {"ups.status": "OL", "battery.charge": "n/a",
                             "battery.runtime": "nan", "ups.load": "-3"})
    assert r.ok and r.charge is None and r.runtime is None and r.load is None
    assert "battery.charge" in r.detail and "ups.load" in r.detail


def test_missing_values_are_none_without_a_note() -> None:
    r = reading_of("dummy", {"ups.status": "OL"})
    assert r.ok and r.runtime is None and r.input_voltage is None and r.detail == ""


_values = st.text(st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]),
                  max_size=60)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(_values)
def test_any_value_quoted_by_the_client_reads_back_the_same(value: str) -> None:
    assert split_words(f"VAR dummy x {_quoted(value)}")[3] == value


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.one_of(
    st.text(max_size=80),
    st.sampled_from(["BEGIN LIST VAR dummy", "END LIST VAR dummy", "ERR DATA-STALE",
                     'VAR dummy ups.status "OL"', 'VAR dummy a "\\"', "ERR", "VAR dummy"]),
), max_size=40), st.integers(min_value=1, max_value=20))
def test_the_var_list_parser_never_raises_anything_else_and_stays_bounded(
        lines: list[str], bound: int) -> None:
    parser = VarList("dummy", max_vars=bound)
    try:
        for line in lines:
            result = parser.feed(line)
            assert len(parser.vars) <= bound
            if result is not None:
                assert parser.done
    except (NutReplyError, NutServerError):
        pass
