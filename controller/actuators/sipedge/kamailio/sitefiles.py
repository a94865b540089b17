"""Puts the reference edge's site files into its directory (the I/O; the texts are sitecfg's).

The site file is lifeline's: it is replaced atomically (a temporary file renamed over it, so
a Kamailio starting meanwhile never reads half of it), and a file of that name that
lifeline did not write (no MARKER on its first line) is refused, not overwritten. Every
other file is written only when it is missing: a dispatcher list or a db_text table may
hold rows an operator added. kamailio.cfg itself is never written. Files are made readable
by all (Debian runs Kamailio as its own user) and hold no secret.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from controller.actuators.sipedge.kamailio.sitecfg import MARKER, SiteError, SiteFile

__all__ = ["FileAction", "SiteIOError", "install", "preview"]

Action = Literal["create", "update", "unchanged", "keep"]


class SiteIOError(OSError):
    """A file of the edge's directory could not be read or written (permissions, a full
    disk): the machine's problem, not the config's; the message names the file."""


@dataclass(frozen=True, slots=True)
class FileAction:
    """What happens (or happened) to one file: ``create`` or ``update`` write it,
    ``unchanged`` and ``keep`` (a file that is written only when missing) leave it."""

    path: Path
    action: Action
    file: SiteFile

    @property
    def writes(self) -> bool:
        return self.action in ("create", "update")


def _action(target: Path, file: SiteFile) -> Action:
    try:
        text = target.read_text()
    except FileNotFoundError:
        return "create"
    except (OSError, UnicodeDecodeError) as exc:
        raise SiteIOError(f"cannot read {target}: {exc}") from None
    if not file.replace:
        return "keep"
    if not text.startswith(MARKER):
        raise SiteError(f"{target} exists and was not written by lifeline edge-config: move it "
                        "away (its values belong in lifeline's config) and run it again")
    return "unchanged" if text == file.text else "update"


def preview(confdir: Path, files: Sequence[SiteFile]) -> list[FileAction]:
    """What ``install`` would do to each file; writes nothing."""
    if not confdir.is_dir():
        raise SiteError(f"{confdir} is not a directory: install Kamailio first (Debian "
                        "package kamailio makes /etc/kamailio), or name another with --dir")
    return [FileAction(confdir / f.path, _action(confdir / f.path, f), f) for f in files]


def _write(target: Path, text: str) -> None:
    if not target.parent.is_dir():
        target.parent.mkdir(parents=True)
        # Whatever the umask: Kamailio reads the directory as its own user.
        os.chmod(target.parent, 0o755)  # noqa: S103 - a directory of no secrets
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def install(confdir: Path, files: Sequence[SiteFile]) -> list[FileAction]:
    """Write what ``preview`` says must be written; every check runs before the first write,
    so a refused run changes nothing."""
    actions = preview(confdir, files)
    for act in actions:
        if act.writes:
            try:
                _write(act.path, act.file.text)
            except OSError as exc:
                raise SiteIOError(f"cannot write {act.path}: {exc.strerror or exc}") from None
    return actions
