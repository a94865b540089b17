"""The wheel ships exactly what pyproject promises: the packages controller, probes and exporters
(generic names, listed one by one, so nothing else such as the lab or the tests is swept in),
every subpackage of theirs in the source tree, and the ``lifeline`` command.

The wheel is built from a copy of the source tree with the backend pyproject names, in a
subprocess and without build isolation: nothing is downloaded or installed, and the build's
droppings (build/, *.egg-info) stay out of the checkout. Skipped, saying why, where that
backend is not installed at a version pyproject accepts.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from exporters.statuspage import STATIC_FILES

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
TOP_LEVEL = {"controller", "probes", "exporters"}
PYTHON = sys.executable  # the interpreter whose build backend builds the wheel

_BUILD = """
import importlib, sys
backend = importlib.import_module(sys.argv[1])
print(backend.build_wheel(sys.argv[2]))
"""


def backend_missing() -> str | None:
    """Why the build backend cannot run here (a requirement of build-system.requires not
    installed, or at a version it refuses), or None."""
    for text in PYPROJECT["build-system"]["requires"]:
        req = Requirement(text)
        try:
            have = version(req.name)
        except PackageNotFoundError:
            return f"build backend unavailable: {req.name} is not installed (needs {req})"
        if not req.specifier.contains(have, prereleases=True):
            return f"build backend unavailable: {req.name} {have} is installed, needs {req}"
    return None


def build_wheel(workdir: Path) -> Path:
    """Build the project's wheel from a copy of the tree in ``workdir``; its path."""
    src, out = workdir / "src", workdir / "dist"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"))
    backend = PYPROJECT["build-system"]["build-backend"]
    done = subprocess.run([PYTHON, "-c", _BUILD, backend, str(out)], cwd=src,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"wheel build failed:\n{done.stdout}\n{done.stderr}"
    return out / done.stdout.strip().splitlines()[-1]


def source_packages() -> set[str]:
    """Every package (a folder with __init__.py) under the three top-level ones, dotted."""
    return {
        ".".join(init.parent.relative_to(REPO).parts)
        for top in TOP_LEVEL
        for init in (REPO / top).rglob("__init__.py")
    }


@pytest.mark.skipif(backend_missing() is not None, reason=str(backend_missing()))
def test_the_wheel_holds_the_three_packages_and_the_lifeline_command(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    tops = {n.split("/")[0] for n in names} - {dist_info}
    assert tops == TOP_LEVEL, f"top-level names in {wheel.name}: {sorted(tops)}"
    shipped = {".".join(n.split("/")[:-1]) for n in names if n.endswith("/__init__.py")}
    assert shipped == source_packages(), "a package is missing from pyproject's list"
    # The status page's files are package data, not a package: listed in pyproject too.
    missing = {f"exporters/static/{name}" for name in STATIC_FILES} - set(names)
    assert not missing, f"status page files not in the wheel: {sorted(missing)}"

    parser = configparser.ConfigParser(delimiters=("=",))
    parser.read_string(entry_points)
    scripts = dict(parser["console_scripts"]) if parser.has_section("console_scripts") else {}
    assert scripts.get("lifeline") == PYPROJECT["project"]["scripts"]["lifeline"], scripts
