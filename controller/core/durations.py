"""Durations as operators write them (``200ms``, ``5s``, ``1m30s``, ``5y``) and back.

Parsing and rendering only: no clock and no config knowledge. The config loader, the CLI
summary and any log line that shows an interval use these two functions, so an interval
reads the same everywhere. Values are plain float seconds, the unit every other module uses.
"""

from __future__ import annotations

import math
import re

# Milliseconds divide rather than multiply by 0.001, so "1234ms" == 1234 / 1000 exactly.
# Days, weeks and years are for periods like a legal retention (``5y``); a year is 365
# days, not a calendar year (docs/recordings.md says what that means for a retention).
_DAY = 86400.0
_UNIT_MULTIPLY = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": _DAY, "w": 7 * _DAY, "y": 365 * _DAY}

# One or more number+unit parts ("1m30s"); a bare number stands alone and means seconds.
_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h|d|w|y)")
_BARE = re.compile(r"\d+(?:\.\d+)?|\.\d+")


def parse_duration(value: str | int | float) -> float:
    """Seconds in ``value``: ``"200ms"``, ``"1.5s"``, ``"1m30s"``, ``"1h"``, ``"30d"``,
    ``"2w"``, ``"5y"`` (365 days each), or a bare number.

    Raises ValueError with a sentence fit for an operator. Negative, infinite and NaN
    values are refused here; whether zero is allowed is the caller's business, since a
    zero hold-down makes sense and a zero probe interval does not.
    """
    if isinstance(value, bool):  # YAML's `yes` must not become one second
        raise ValueError("not a duration (expected e.g. 200ms, 5s, 1m)")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value)
    else:
        raise ValueError("not a duration (expected e.g. 200ms, 5s, 1m)")
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError("not a finite duration")
    if seconds < 0:
        raise ValueError("must not be negative")
    return seconds


def _parse_text(text: str) -> float:
    body = text.strip()
    if not body:
        raise ValueError("empty duration (expected e.g. 200ms, 5s, 1m)")
    if body.startswith("-"):
        raise ValueError("must not be negative")
    if _BARE.fullmatch(body):
        return float(body)
    total = 0.0
    pos = 0
    for match in _PART.finditer(body):
        if match.start() != pos:
            break
        number, unit = float(match.group(1)), match.group(2)
        total += number / 1000 if unit == "ms" else number * _UNIT_MULTIPLY[unit]
        pos = match.end()
    if pos != len(body) or pos == 0:
        raise ValueError(
            f"not a duration: {text!r} (expected a number with ms, s, m, h, d, w or y, "
            "e.g. 200ms)"
        )
    return total


def format_duration(seconds: float) -> str:
    """Shortest exact-looking rendering: ``0.2`` -> ``200ms``, ``90`` -> ``1m30s``.

    Whole milliseconds render exactly, so ``parse_duration(format_duration(x)) == x`` for
    any whole number of milliseconds; finer values keep up to microseconds as seconds.
    """
    if seconds < 0 or math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"cannot render {seconds!r} as a duration")
    millis = round(seconds * 1000)
    if abs(millis / 1000 - seconds) > 1e-9:
        return f"{seconds:.6f}".rstrip("0").rstrip(".") + "s"
    if millis == 0:
        return "0s"
    if millis < 1000:
        return f"{millis}ms"
    if millis % 1000:
        whole, frac = divmod(millis, 1000)
        if whole < 60:
            return f"{whole}.{frac:03d}".rstrip("0") + "s"
        return f"{millis}ms"
    secs = millis // 1000
    hours, rest = divmod(secs, 3600)
    mins, secs = divmod(rest, 60)
    parts = []
    if hours:
        parts.append(f"{hours}h")
    if mins:
        parts.append(f"{mins}m")
    if secs:
        parts.append(f"{secs}s")
    return "".join(parts)


def format_period(seconds: float) -> str:
    """A long period in the largest whole unit: ``5y``, ``3w``, ``30d``; else as
    format_duration (``26h``). For retentions and schedules, where ``43800h`` says nothing.

    ``parse_duration(format_period(x)) == x`` wherever format_duration's round trip holds.
    """
    if seconds >= _DAY and not math.isinf(seconds) and not math.isnan(seconds):
        for unit in ("y", "w", "d"):
            count = seconds / _UNIT_MULTIPLY[unit]
            if count >= 1 and count == int(count):
                return f"{int(count)}{unit}"
    return format_duration(seconds)
