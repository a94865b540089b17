"""PURE: E.164 phone numbers and number ranges, parsed strictly and found fast.

A DID plan names numbers the way carriers allocate them: single numbers and blocks such as
``+390212345600-+390212345699``. This module turns that text into integers (so a range is
two ints and containment is two compares), checks E.164's shape (a ``+``, a country code
that does not start with 0, 8 to 15 digits in all), finds overlaps between ranges with one
sort and a sweep, and answers "which range holds this number" by binary search over sorted,
disjoint ranges. It knows nothing of trunks, config or health; didplan.py and config.py
build on it. Because an E.164 number never starts with 0, the integer alone orders numbers
correctly across lengths: every 12-digit number is below every 13-digit one, so ranges of
different lengths can never overlap and one sorted index holds them all.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_DIGITS",
    "MIN_DIGITS",
    "Number",
    "NumberRange",
    "RangeIndex",
    "find_overlaps",
    "parse_number",
    "parse_range",
]

# E.164 allows at most 15 digits. Fewer than 8 is a short code or a typo, never a DID a
# carrier routes to a contact center, so refusing it catches a missing block of digits.
MIN_DIGITS = 8
MAX_DIGITS = 15


@dataclass(frozen=True, slots=True, order=True)
class Number:
    """One E.164 number: its digits as an int, and how many digits it has."""

    value: int
    digits: int

    def __post_init__(self) -> None:
        # Constructed directly (tests, other modules) it must still be a valid E.164 number.
        if not MIN_DIGITS <= self.digits <= MAX_DIGITS:
            raise ValueError(f"an E.164 number has {MIN_DIGITS} to {MAX_DIGITS} digits")
        if len(str(self.value)) != self.digits:
            raise ValueError(f"value {self.value} does not have {self.digits} digits")

    def __str__(self) -> str:
        return f"+{self.value}"


def parse_number(text: str) -> Number:
    """``+390212345601`` as a Number; ValueError with a sentence an operator can act on."""
    if not isinstance(text, str):
        raise ValueError("must be an E.164 number written as a string, e.g. '+390212345601'")
    body = text.strip()
    if not body.startswith("+"):
        raise ValueError(f"{body!r} must start with + and the country code (E.164)")
    digits = body[1:]
    if not digits.isascii() or not digits.isdigit():
        raise ValueError(f"{body!r} may hold only digits after the + (no spaces or dashes)")
    if digits[0] == "0":
        raise ValueError(f"{body!r}: a country code never starts with 0 (drop the national 0?)")
    if not MIN_DIGITS <= len(digits) <= MAX_DIGITS:
        raise ValueError(
            f"{body!r} has {len(digits)} digits; E.164 numbers have {MIN_DIGITS} to "
            f"{MAX_DIGITS} after the +"
        )
    return Number(int(digits), len(digits))


@dataclass(frozen=True, slots=True)
class NumberRange:
    """Numbers ``first`` to ``last`` inclusive, both of the same length (one carrier block)."""

    first: Number
    last: Number

    def __post_init__(self) -> None:
        if self.first.digits != self.last.digits:
            raise ValueError(
                f"{self.first} and {self.last} differ in length ({self.first.digits} and "
                f"{self.last.digits} digits); a range is one block of same-length numbers"
            )
        if self.first.value > self.last.value:
            raise ValueError(f"range {self.first}-{self.last} runs backwards")

    @classmethod
    def single(cls, number: Number) -> NumberRange:
        return cls(number, number)

    @property
    def size(self) -> int:
        """How many numbers the range holds."""
        return self.last.value - self.first.value + 1

    def __len__(self) -> int:
        return self.size

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            try:
                item = parse_number(item)
            except ValueError:
                return False
        if not isinstance(item, Number):
            return False
        return self.first.value <= item.value <= self.last.value

    def overlaps(self, other: NumberRange) -> bool:
        return self.first.value <= other.last.value and other.first.value <= self.last.value

    def __str__(self) -> str:
        if self.first == self.last:
            return str(self.first)
        return f"{self.first}-{self.last}"


def parse_range(text: str) -> NumberRange:
    """``+390212345600-+390212345699`` or one number ``+390212345601`` as a NumberRange."""
    if not isinstance(text, str):
        raise ValueError(
            "must be a quoted string, e.g. '+390212345601' or '+390212345600-+390212345699'"
        )
    body = text.strip()
    # The separator is the '-' that precedes the second '+': a '-' cannot appear in a number.
    first_text, sep, last_text = body.partition("-")
    if not sep:
        return NumberRange.single(parse_number(body))
    if not last_text.strip():
        raise ValueError(f"{body!r}: range has no last number (write +FIRST-+LAST)")
    first = parse_number(first_text)
    last = parse_number(last_text)
    return NumberRange(first, last)


def find_overlaps(ranges: Sequence[NumberRange]) -> list[tuple[int, int]]:
    """Pairs ``(later, earlier)`` of positions whose ranges overlap, found in O(n log n).

    One sort by start and one sweep that remembers the range reaching furthest so far:
    a range starting at or before that end overlaps it. Each overlapping range is reported
    once, against the range that reaches furthest (enough to name the problem; fixing it
    and running again reveals any further one). ``later`` is the position further down
    the operator's list, so the message sits on the entry that was added second.
    """
    order = sorted(range(len(ranges)), key=lambda i: (ranges[i].first.value, i))
    out: list[tuple[int, int]] = []
    reach: int | None = None  # position of the range with the highest last seen so far
    for i in order:
        r = ranges[i]
        if reach is not None and r.first.value <= ranges[reach].last.value:
            out.append((max(i, reach), min(i, reach)))
        if reach is None or r.last.value > ranges[reach].last.value:
            reach = i
    return out


class RangeIndex:
    """Which of many disjoint ranges holds a number: O(log n) by binary search.

    ``find`` answers the position of the range in the sequence given, so callers keep
    their own order (the operator's) and use the index only to look up.
    """

    __slots__ = ("_firsts", "_lasts", "_positions")

    def __init__(self, ranges: Iterable[NumberRange]) -> None:
        items = list(ranges)
        order = sorted(range(len(items)), key=lambda i: items[i].first.value)
        self._firsts = [items[i].first.value for i in order]
        self._lasts = [items[i].last.value for i in order]
        self._positions = order
        for k in range(1, len(order)):
            if self._firsts[k] <= self._lasts[k - 1]:
                a, b = sorted((order[k - 1], order[k]))
                raise ValueError(f"ranges {a} ({items[a]}) and {b} ({items[b]}) overlap")

    def __len__(self) -> int:
        return len(self._positions)

    def find(self, number: Number | str) -> int | None:
        """Position of the range holding ``number``, or None (also for text that is no number)."""
        if isinstance(number, str):
            try:
                number = parse_number(number)
            except ValueError:
                return None
        k = bisect_right(self._firsts, number.value) - 1
        if k < 0 or number.value > self._lasts[k]:
            return None
        return self._positions[k]
