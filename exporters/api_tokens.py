"""The API's bearer tokens, read from the file the config names (``api.token_file``).

One ``name token`` pair a line, ``#`` starts a comment. The name is who the journal says
made a change; the token is the secret. The file is refused when others can read it (the
tokens would be everybody's) or when it cannot be read, at start (the daemon does not
start) and on a later re-read (every write is then refused with the reason, until the
file is fixed: a leaked token must not keep working because an old copy is in memory).
It is re-read when its inode, size or mtime changes, checked on every write, so a new
token works without a restart or a signal. Tokens are compared with hmac.compare_digest
against every entry, so the time taken does not tell which one nearly matched.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import stat
from pathlib import Path

__all__ = ["MIN_TOKEN", "TokenBook", "TokenFileError", "parse_tokens"]

log = logging.getLogger("lifeline.api")

MIN_TOKEN = 16  # characters; `openssl rand -hex 32` gives 64
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
_TOKEN = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space


class TokenFileError(ValueError):
    """The token file is unusable; the message says why and what to do."""


def parse_tokens(text: str, where: str) -> dict[str, bytes]:
    """``name token`` lines -> {name: token}; TokenFileError naming the line otherwise."""
    found: dict[str, bytes] = {}
    seen: set[bytes] = set()
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise TokenFileError(f"{where}:{no}: expected `name token` (two words)")
        name, token = parts
        if not _NAME.fullmatch(name):
            raise TokenFileError(f"{where}:{no}: the name {name[:64]!r} must be letters, "
                                 "digits, '.', '_', '@' or '-' (at most 64)")
        if not _TOKEN.fullmatch(token) or len(token) < MIN_TOKEN:
            raise TokenFileError(f"{where}:{no}: the token of {name} must be at least "
                                 f"{MIN_TOKEN} printable characters (e.g. `openssl rand "
                                 "-hex 32`)")
        if name in found:
            raise TokenFileError(f"{where}:{no}: {name} is named twice")
        secret = token.encode()
        if secret in seen:
            raise TokenFileError(f"{where}:{no}: {name}'s token is also another name's")
        seen.add(secret)
        found[name] = secret
    return found


class TokenBook:
    """The tokens of one file, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._key: tuple[int, int, int, int] | None = None
        self._tokens: dict[str, bytes] = {}
        self.problem: str | None = None
        self._load()  # raises TokenFileError: a daemon with a bad file does not start
        if not self._tokens:
            raise TokenFileError(f"{path} holds no token: add a `name token` line")

    def _load(self) -> None:
        try:
            with self.path.open("rb") as f:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    raise TokenFileError(f"{self.path} is not a regular file")
                if st.st_mode & (stat.S_IROTH | stat.S_IWOTH):
                    raise TokenFileError(
                        f"{self.path} can be read or written by every user (mode "
                        f"{stat.S_IMODE(st.st_mode):04o}); run chmod 0600 or 0640 on it")
                text = f.read(1 << 20).decode("utf-8")
        except OSError as exc:
            raise TokenFileError(f"cannot read the API token file {self.path}: "
                                 f"{exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise TokenFileError(f"{self.path} is not UTF-8 text") from exc
        self._tokens = parse_tokens(text, str(self.path))
        self._key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)

    def refresh(self) -> None:
        """Re-read the file if it changed. A file that went bad drops every token and
        sets ``problem``; one fixed again clears it."""
        try:
            st = os.stat(self.path)
            key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_mode)
        except OSError as exc:
            self._drop(f"cannot read the API token file {self.path}: {exc.strerror or exc}")
            return
        if key == self._key and self.problem is None:
            return
        try:
            self._load()
        except TokenFileError as exc:
            self._drop(str(exc))
            return
        if self.problem is not None:
            log.warning("API token file fixed, writes over TCP are taken again: %s",
                        self.path)
        else:
            log.info("API token file re-read: %d tokens", len(self._tokens))
        self.problem = None

    def _drop(self, why: str) -> None:
        if why != self.problem:  # once per problem: a flood must not flood the log
            log.error("API writes over TCP refused until the token file is fixed: %s", why)
        self._tokens, self._key, self.problem = {}, None, why

    def who(self, token: str) -> str | None:
        """The name holding ``token``, or None. Every entry is compared."""
        self.refresh()
        offered = token.encode("utf-8", "replace")
        holder: str | None = None
        for name, secret in self._tokens.items():
            if hmac.compare_digest(offered, secret):
                holder = name
        return holder
