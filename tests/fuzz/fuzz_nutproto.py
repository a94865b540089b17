"""Coverage-guided fuzzing of the NUT reply parser with atheris.

Run: ``python -m tests.fuzz.fuzz_nutproto -runs=200000`` (libFuzzer flags). The input is
split into lines as the client would read them and fed to a LIST VAR parser, then mapped
to a reading; any exception other than NutReplyError/NutServerError, or a hang, is a bug:
the parser reads whatever answers on a UPS's port.
"""

from __future__ import annotations

import contextlib
import sys

import atheris

with atheris.instrument_imports():
    from probes.nut import reading_of
    from probes.nutproto import NutReplyError, NutServerError, VarList, check_ok


def one_input(data: bytes) -> None:
    lines = data.decode("utf-8", "replace").split("\n")
    parser = VarList("dummy", max_vars=50)
    with contextlib.suppress(NutReplyError, NutServerError):
        check_ok(lines[0])
    result = None
    with contextlib.suppress(NutReplyError, NutServerError):
        for line in lines:
            result = parser.feed(line.rstrip("\r"))
    assert len(parser.vars) <= 50
    if result is not None:
        reading = reading_of("dummy", result)
        assert reading.ok or reading.error is not None


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
