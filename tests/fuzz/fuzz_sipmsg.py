"""Coverage-guided fuzzing of the SIP parser and stream framer with atheris.

Run: ``python -m tests.fuzz.fuzz_sipmsg -runs=200000`` (libFuzzer flags). Any exception
other than SipParseError, or a hang, is a bug: the parser reads what carriers send.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from probes.sipmsg import SipParseError, StreamFramer, parse


def one_input(data: bytes) -> None:
    with contextlib.suppress(SipParseError):
        parse(data)
    framer = StreamFramer()
    half = len(data) // 2
    try:
        framer.feed(data[:half])
        framer.feed(data[half:])
    except SipParseError:
        pass


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
