"""Tests of E.164 numbers and ranges: strict parsing, containment, overlaps, the range index."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.core.e164 import (
    Number,
    NumberRange,
    RangeIndex,
    find_overlaps,
    parse_number,
    parse_range,
)


def test_number_parses_to_int_and_digit_count() -> None:
    n = parse_number(" +390212345601 ")
    assert n == Number(390212345601, 12)
    assert str(n) == "+390212345601"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("390212345601", "must start with +"),
        ("+39 02 1234", "only digits"),
        ("+39-0212345601", "only digits"),
        ("+0390212345601", "never starts with 0"),
        ("+3902123", "has 7 digits"),
        ("+3902123456012345", "has 16 digits"),
        ("+", "only digits"),
        ("+\uff13\uff19\uff10\uff12\uff11\uff12\uff13\uff14", "only digits"),  # full-width
    ],
)
def test_bad_numbers_are_refused_with_a_reason(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_number(text)


def test_number_refuses_inconsistent_construction() -> None:
    with pytest.raises(ValueError):
        Number(390212345601, 13)
    with pytest.raises(ValueError):
        Number(1234, 4)


def test_range_parses_contains_and_counts() -> None:
    r = parse_range("+390212345600-+390212345699")
    assert r.size == 100 == len(r)
    assert str(r) == "+390212345600-+390212345699"
    assert "+390212345650" in r
    assert parse_number("+390212345699") in r
    assert "+390212345700" not in r
    assert "+39021234560" not in r  # shorter number, smaller value
    assert "not a number" not in r
    assert 390212345650 not in r  # an int is not a Number


def test_single_number_is_a_range_of_one() -> None:
    r = parse_range("+390212345601")
    assert r.size == 1 and str(r) == "+390212345601" and r.first == r.last


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("+390212345699-+390212345600", "runs backwards"),
        ("+390212345600-+3902123456999", "differ in length"),
        ("+390212345600-", "no last number"),
        ("+390212345600-390212345699", "must start with +"),
    ],
)
def test_bad_ranges_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_range(text)


def test_non_string_input_is_refused() -> None:
    with pytest.raises(ValueError, match="quoted string"):
        parse_range(390212345601)  # type: ignore[arg-type]


def r(first: int, last: int, digits: int = 12) -> NumberRange:
    return NumberRange(Number(first, digits), Number(last, digits))


BASE = 390212345000


def test_overlaps_are_found_with_later_first() -> None:
    ranges = [r(BASE, BASE + 99), r(BASE + 200, BASE + 299), r(BASE + 50, BASE + 60)]
    assert find_overlaps(ranges) == [(2, 0)]


def test_touching_ranges_do_not_overlap_but_sharing_an_end_does() -> None:
    assert find_overlaps([r(BASE, BASE + 9), r(BASE + 10, BASE + 19)]) == []
    assert find_overlaps([r(BASE + 9, BASE + 19), r(BASE, BASE + 9)]) == [(1, 0)]


def test_a_long_range_overlaps_several_later_ones() -> None:
    ranges = [r(BASE, BASE + 999), r(BASE + 10, BASE + 20), r(BASE + 500, BASE + 600)]
    assert sorted(find_overlaps(ranges)) == [(1, 0), (2, 0)]


def brute_overlapping(ranges: list[NumberRange]) -> set[int]:
    """Positions that overlap any other: the O(n^2) truth."""
    out: set[int] = set()
    for i, j in itertools.combinations(range(len(ranges)), 2):
        if ranges[i].overlaps(ranges[j]):
            out.update((i, j))
    return out


ranges_st = st.lists(
    st.tuples(st.integers(0, 300), st.integers(0, 40)).map(
        lambda t: r(BASE + t[0], BASE + t[0] + t[1])
    ),
    max_size=25,
)


@given(ranges_st)
def test_sweep_finds_an_overlap_iff_there_is_one(ranges: list[NumberRange]) -> None:
    found = find_overlaps(ranges)
    truth = brute_overlapping(ranges)
    assert bool(found) == bool(truth)
    for later, earlier in found:
        assert later > earlier and ranges[later].overlaps(ranges[earlier])
    named = {i for pair in found for i in pair}
    assert named <= truth

    # Every range that overlaps one starting before it is named (the sweep visits it).
    def key(i: int) -> tuple[int, int]:
        return (ranges[i].first.value, i)

    for i in range(len(ranges)):
        if any(key(j) < key(i) and ranges[i].overlaps(ranges[j]) for j in range(len(ranges))):
            assert i in named


@given(ranges_st, st.lists(st.integers(-10, 360), max_size=30))
def test_index_agrees_with_a_linear_scan(ranges: list[NumberRange], probes: list[int]) -> None:
    # Keep a disjoint subset: the index is for disjoint ranges.
    disjoint: list[NumberRange] = []
    for candidate in ranges:
        if not any(candidate.overlaps(d) for d in disjoint):
            disjoint.append(candidate)
    index = RangeIndex(disjoint)
    assert len(index) == len(disjoint)
    for offset in probes:
        number = Number(BASE + offset, 12)
        expected = next((i for i, d in enumerate(disjoint) if number in d), None)
        assert index.find(number) == expected


def test_index_refuses_overlaps_and_answers_text() -> None:
    with pytest.raises(ValueError, match="overlap"):
        RangeIndex([r(BASE, BASE + 10), r(BASE + 5, BASE + 20)])
    index = RangeIndex([r(BASE + 100, BASE + 199), r(BASE, BASE + 99, 12)])
    assert index.find(f"+{BASE + 150}") == 0
    assert index.find(f"+{BASE}") == 1
    assert index.find("garbage") is None
    assert index.find(f"+{BASE + 200}") is None


def test_ranges_of_different_lengths_never_collide_in_the_index() -> None:
    short = r(39021234500, 39021234599, 11)
    long = r(BASE, BASE + 99)
    index = RangeIndex([short, long])
    assert index.find("+39021234550") == 0
    assert index.find(f"+{BASE + 50}") == 1
    assert find_overlaps([short, long]) == []
