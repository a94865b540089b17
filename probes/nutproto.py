"""NUT's network protocol as text: splitting upsd's reply lines, its ERR words, LIST VAR.

Pure and bounded (no I/O), so the client in ``probes/nut.py`` stays a thin loop and the
parser can be property-tested and fuzzed. upsd's replies are lines of words; a word may be
quoted, and inside a value ``\\"`` and ``\\\\`` stand for ``"`` and ``\\`` (upsd escapes
them, and neither aionut nor PyNUTClient undoes it). Anything else that does not make sense
raises ``NutReplyError``; an ``ERR <WORD>`` line raises ``NutServerError`` carrying upsd's
word and what it means to an operator.
"""

from __future__ import annotations

__all__ = [
    "ERR_MEANINGS",
    "MAX_VARS",
    "NutReplyError",
    "NutServerError",
    "VarList",
    "check_ok",
    "server_error",
    "shown",
    "split_words",
]

# A UPS reports a few dozen variables (a big USB HID one ~150); more is a reply gone wrong.
MAX_VARS = 1000

# upsd's ERR words (NUT docs, "net-protocol": "Error responses") in the operator's words.
ERR_MEANINGS: dict[str, str] = {
    "ACCESS-DENIED": "access denied (wrong username or password, or this host is not allowed)",
    "UNKNOWN-UPS": "upsd knows no UPS of that name (see upsd's ups.conf)",
    "VAR-NOT-SUPPORTED": "the UPS does not report that variable",
    "CMD-NOT-SUPPORTED": "the UPS does not support that command",
    "INVALID-ARGUMENT": "upsd refused an argument",
    "INSTCMD-FAILED": "the driver failed the command",
    "SET-FAILED": "the driver failed to set the variable",
    "READONLY": "the variable is read-only",
    "TOO-LONG": "a value was too long",
    "FEATURE-NOT-SUPPORTED": "upsd was built without that feature (TLS?)",
    "FEATURE-NOT-CONFIGURED": "upsd has that feature but it is not configured "
                              "(STARTTLS: no certificate)",
    "ALREADY-SSL-MODE": "the connection is already in TLS",
    "DRIVER-NOT-CONNECTED": "upsd has no connection to the UPS's driver: the UPS state is "
                            "unknown",
    "DATA-STALE": "the driver's data is older than upsd's MAXAGE: the UPS state is unknown",
    "ALREADY-LOGGED-IN": "already logged in",
    "INVALID-PASSWORD": "upsd refused the password's form",
    "ALREADY-SET-PASSWORD": "password already sent",
    "INVALID-USERNAME": "upsd refused the username's form",
    "ALREADY-SET-USERNAME": "username already sent",
    "USERNAME-REQUIRED": "upsd wants a username first",
    "PASSWORD-REQUIRED": "upsd wants a password first",
    "UNKNOWN-COMMAND": "upsd does not know the command",
    "INVALID-VALUE": "upsd refused a value",
}


class NutReplyError(Exception):
    """A reply line that is not what the protocol allows here."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NutServerError(Exception):
    """upsd answered ``ERR <word>``."""

    def __init__(self, word: str, meaning: str) -> None:
        super().__init__(f"ERR {word}")
        self.word = word
        self.meaning = meaning


def shown(text: str, limit: int = 80) -> str:
    """A peer's text as it may go into a detail: printable, quoted, cut short."""
    cut = text if len(text) <= limit else text[:limit] + "..."
    return repr(cut)


def split_words(line: str) -> list[str]:
    """The words of one reply line: quotes group, a backslash takes the next character."""
    words: list[str] = []
    word: list[str] = []
    in_word = quoted = escaped = False
    for ch in line:
        if escaped:
            word.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = in_word = True
        elif ch == '"':
            quoted = not quoted
            in_word = True
        elif ch == " " and not quoted:
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
        else:
            word.append(ch)
            in_word = True
    if quoted or escaped:
        raise NutReplyError(f"unterminated quote or escape in {shown(line)}")
    if in_word:
        words.append("".join(word))
    return words


def server_error(line: str) -> NutServerError | None:
    """The error an ``ERR <WORD> [...]`` line carries, or None for any other line."""
    if line != "ERR" and not line.startswith("ERR "):
        return None
    parts = line.split(" ", 2)
    word = parts[1] if len(parts) > 1 and parts[1] else "?"
    meaning = ERR_MEANINGS.get(word, f"an error this client does not know: {shown(line)}")
    return NutServerError(word[:40], meaning)


def check_ok(line: str, expected: str = "OK") -> None:
    """A one-line command's answer: ``expected`` (``OK``, ``OK STARTTLS``) or raise."""
    err = server_error(line)
    if err is not None:
        raise err
    if line != expected and not line.startswith(expected + " "):
        raise NutReplyError(f"expected {expected!r}, got {shown(line)}")


class VarList:
    """The lines of one ``LIST VAR <ups>`` reply, fed one at a time.

    ``feed`` returns the variables once ``END LIST VAR <ups>`` arrives and None before;
    more than ``max_vars`` lines is a reply that does not end, not a bigger dict.
    """

    def __init__(self, ups: str, max_vars: int = MAX_VARS) -> None:
        self.ups = ups
        self.max_vars = max_vars
        self.begun = False
        self.done = False
        self.vars: dict[str, str] = {}
        self._lines = 0

    def feed(self, line: str) -> dict[str, str] | None:
        if self.done:
            raise NutReplyError("a line after END LIST VAR")
        err = server_error(line)
        if err is not None:
            raise err
        words = split_words(line)
        if not self.begun:
            if words != ["BEGIN", "LIST", "VAR", self.ups]:
                raise NutReplyError(f"expected BEGIN LIST VAR {self.ups}, got {shown(line)}")
            self.begun = True
            return None
        if words == ["END", "LIST", "VAR", self.ups]:
            self.done = True
            return self.vars
        self._lines += 1
        if self._lines > self.max_vars:
            raise NutReplyError(f"LIST VAR did not end within {self.max_vars} variables")
        if len(words) != 4 or words[0] != "VAR" or words[1] != self.ups:
            raise NutReplyError(f"expected VAR {self.ups} <name> \"<value>\", "
                                f"got {shown(line)}")
        self.vars[words[2]] = words[3]
        return None
