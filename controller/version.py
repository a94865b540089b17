"""The running lifeline's version: one source, the ``version`` in pyproject.toml.

Read through the installed distribution's metadata, so the CLI, the status API, the log
and the build-info metric name the release that is really installed. A source tree used
without installing has no metadata: it says ``0+unknown`` rather than a guess.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["VERSION"]


def _installed() -> str:
    try:
        return version("lifeline")
    except PackageNotFoundError:
        return "0+unknown"


VERSION = _installed()
