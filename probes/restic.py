"""Read a restic repository through the ``restic`` CLI: snapshots, listings, read-back hashes.

Why the CLI and its JSON: restic is a Go program with no library Python can call, and its
repository format is encrypted (scrypt-derived key, AES-256 with Poly1305 MACs), compressed
and versioned; reading it ourselves would be a reimplementation of restic to keep up with
every format change. The CLI's ``--json`` output is its interface for programs. What a call
costs: opening a repository derives the key with scrypt, about 0.7 s (0.5 s of CPU) per call
whatever the call then does, so this module makes few calls: the snapshot ids of a local
repository are the file names in ``REPO/snapshots/`` (no password, no key derivation), only
new snapshots are asked for (``snapshots --json ID...``), a listing is one streamed
``ls --json``, and recordings are read back one directory per call (``dump`` of a directory is
a tar stream, hashed member by member as it passes), never one call per file. Every call runs
with ``--no-lock``: restic otherwise creates and removes a lock file in the repository even to
read, and lifeline never writes to a backup. Calls are argv lists with stdin closed, in their
own process group, killed by that group's id at the deadline; stdout is streamed (a
1,000,000-line listing never sits in memory) and only a tail of stderr is kept, for the error.
Everything restic or the repository does wrong comes out as a ``ResticError`` of one kind;
nothing else escapes. Blocking: the runtime calls it from a worker thread.

One gap of restic's JSON, closed here: a file name that is not valid UTF-8 comes out of
``ls --json`` with U+FFFD in place of each bad byte (Go's JSON encoder), while the repository
holds the raw bytes. Such entries are held back and given their raw names from one plain
``ls`` (raw bytes, one path a line, same order), a second call made only for a listing that
has any.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import tarfile
import threading
from collections import deque
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, get_args

from probes.recfiles import FileEntry

__all__ = [
    "ERROR_KINDS",
    "ErrorKind",
    "LsNode",
    "Restic",
    "ResticError",
    "SnapshotInfo",
    "classify",
    "go_lossy",
    "hash_tar",
    "parse_ls_line",
    "parse_snapshots",
    "parse_time_ns",
    "relative_to",
    "resolve_names",
]

ErrorKind = Literal[
    "missing_binary",  # no restic where configured (or not executable)
    "wrong_password",  # the password file's password opens no key (or is missing/empty)
    "no_repository",  # nothing that is a restic repository at that location
    "not_found",  # a snapshot id or a path that the repository does not hold
    "corrupt",  # data that does not verify (ciphertext MAC) or a pack that is gone
    "timeout",  # no answer within the call's deadline (the process was killed)
    "bad_output",  # restic said success but printed what we cannot read
    "failed",  # anything else restic refused, with its words
]
ERROR_KINDS: tuple[str, ...] = get_args(ErrorKind)

_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_CHUNK = 1 << 20
_MAX_LINE = 1 << 20  # an ls --json line is a few hundred bytes; a path is at most 4 KiB
_MAX_SNAPSHOTS_JSON = 64 << 20
_IDS_PER_CALL = 200  # snapshots --json ID...: bounded argv, still one call for a usual day
_TAIL_LINES = 20
_TAIL_LINE_CHARS = 300
_DETAIL_CHARS = 500
_ID = re.compile(r"[0-9a-f]{64}", re.ASCII)
_REMOTE = re.compile(r"(sftp|rest|s3|b2|azure|gs|swift|rclone):", re.ASCII)
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# restic retries a failed read of a pack for about 45 s before it gives up; from a local
# folder a file that is gone or cut short does not come back, so that is decided at once.
_LOST_PACK = re.compile(
    r"Load\(<(?:data|tree)/([0-9a-f]+)>[^)]*\) returned error, retrying after [^:]*: "
    r"(.*(?:no such file or directory|unexpected EOF).*)",
    re.IGNORECASE,
)


class ResticError(Exception):
    """What went wrong with a repository: a kind to act on and restic's (or our) words."""

    def __init__(self, kind: ErrorKind, detail: str, *, path: bytes | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind: ErrorKind = kind
        self.detail = detail
        # For a read-back: the recording (relative to the root) being read when it broke.
        self.path = path


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """One snapshot as ``restic snapshots --json`` describes it."""

    id: str  # the full 64-hex id
    time_ns: int  # when the backup started (restic's snapshot time)
    paths: tuple[str, ...]  # the absolute paths it backed up
    hostname: str
    tags: tuple[str, ...]


# --- pure parsing (no I/O; unit- and property-tested) -----------------------------------------


def _bad(what: str, value: object) -> ResticError:
    return ResticError("bad_output", f"{what}: {value!r:.120}")


def parse_time_ns(text: object) -> int:
    """RFC 3339 as Go prints it (up to 9 fractional digits, Z or an offset) to ns since 1970."""
    match = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise _bad("not an RFC 3339 time", text)
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError as exc:
        raise _bad(f"not a time ({exc})", text) from exc
    zone = match.group(8)
    offset = 0
    if zone != "Z":
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise _bad("not a time zone offset", text)
        offset = (hours * 3600 + minutes * 60) * (1 if zone[0] == "+" else -1)
    since = moment - _EPOCH
    seconds = since.days * 86400 + since.seconds - offset
    return seconds * 1_000_000_000 + int((match.group(7) or "").ljust(9, "0"))


def go_lossy(raw: bytes) -> str:
    """A byte string as Go's JSON encoder shows it: each byte that starts no valid UTF-8
    sequence becomes one U+FFFD (how ``restic ls --json`` prints a non-UTF-8 name)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    out: list[str] = []
    i = 0
    while i < len(raw):
        lead = raw[i]
        width = (
            1 if lead < 0x80
            else 2 if 0xC2 <= lead <= 0xDF
            else 3 if 0xE0 <= lead <= 0xEF
            else 4 if 0xF0 <= lead <= 0xF4
            else 0
        )
        if width:
            try:
                out.append(raw[i : i + width].decode("utf-8"))
                i += width
                continue
            except UnicodeDecodeError:
                pass
        out.append("\ufffd")
        i += 1
    return "".join(out)


def _root_bytes(root: str | bytes) -> bytes:
    raw = os.fsencode(root)
    if not raw.startswith(b"/"):
        raise ResticError("failed", f"the backed-up path must be absolute: {root!r}")
    return raw.rstrip(b"/")  # '' is the filesystem root


def relative_to(path: bytes, root: bytes) -> bytes | None:
    """``path`` (absolute, as stored) relative to ``root`` (absolute, no trailing '/'), or None
    when it is the root itself or outside it."""
    prefix = root + b"/"
    if path.startswith(prefix) and len(path) > len(prefix):
        return path[len(prefix) :]
    return None


def _json_line(line: bytes) -> Mapping[str, object]:
    try:
        value = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise _bad(f"not a JSON line ({exc.__class__.__name__})", line) from exc
    if not isinstance(value, dict):
        raise _bad("not a JSON object", line)
    return value


def _record_kind(obj: Mapping[str, object]) -> str:
    # 0.14 marks lines with struct_type, newer releases (also) with message_type.
    kind = obj.get("message_type", obj.get("struct_type"))
    return kind if isinstance(kind, str) else ""


@dataclass(frozen=True, slots=True)
class LsNode:
    """A node of a listing: its type ("file", "dir", "symlink", ...) and absolute path."""

    type: str
    path: str
    size: int
    mtime_ns: int


def _node(obj: Mapping[str, object]) -> LsNode:
    """One ``ls --json`` node; size and mtime are read for files only."""
    node_type, path = obj.get("type"), obj.get("path")
    if not isinstance(node_type, str) or not isinstance(path, str) or not path.startswith("/"):
        raise _bad("a node without type or absolute path", obj)
    if node_type != "file":
        return LsNode(node_type, path, 0, 0)
    size = obj.get("size", 0)  # omitted by some releases for an empty file
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _bad("a file node with a bad size", obj)
    return LsNode(node_type, path, size, parse_time_ns(obj.get("mtime")))


def parse_ls_line(line: bytes) -> tuple[str, LsNode | None]:
    """One line of ``restic ls --json``: ("snapshot", None), ("node", the node), or another
    kind a newer restic may add, (kind, None), to be skipped."""
    obj = _json_line(line)
    kind = _record_kind(obj)
    return kind, _node(obj) if kind == "node" else None


def _path_bytes(path: str) -> bytes:
    try:
        return path.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate escape: Go never prints one
        raise _bad("a path that is not Unicode text", path) from exc


def _snapshot_info(obj: object) -> SnapshotInfo:
    if not isinstance(obj, dict):
        raise _bad("a snapshot that is not a JSON object", obj)
    sid, paths, host, tags = obj.get("id"), obj.get("paths"), obj.get("hostname", ""), obj.get(
        "tags", []
    )
    if not isinstance(sid, str) or _ID.fullmatch(sid) is None:
        raise _bad("a snapshot without a 64-hex id", obj)
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise _bad("a snapshot without its paths", obj)
    if not isinstance(host, str) or not isinstance(tags, list):
        raise _bad("a snapshot with a bad hostname or tags", obj)
    if not all(isinstance(t, str) for t in tags):
        raise _bad("a snapshot with a bad tag", obj)
    return SnapshotInfo(sid, parse_time_ns(obj.get("time")), tuple(paths), host, tuple(tags))


def parse_snapshots(body: bytes) -> list[SnapshotInfo]:
    """The JSON array of ``restic snapshots --json``."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise _bad(f"snapshots: not JSON ({exc.__class__.__name__})", body[:120]) from exc
    if not isinstance(value, list):
        raise _bad("snapshots: not a JSON array", body[:120])
    return [_snapshot_info(item) for item in value]


def _pick(lines: Sequence[str], *needles: str) -> str | None:
    for line in lines:
        low = line.lower()
        if any(needle in low for needle in needles):
            return line
    return None


def classify(returncode: int, stderr: str) -> ResticError:
    """The error a failed call means, from its exit status and stderr (restic's words kept).

    restic 0.14 exits 1 for most fatal errors and 2 for a failed dump, so the words decide;
    the exit codes newer releases added (10: no repository, 12: wrong password) are honoured.
    """
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]

    def detail(line: str | None) -> str:
        text = line or (lines[-1] if lines else f"restic exited with status {returncode}")
        return text[:_DETAIL_CHARS]

    if found := _pick(lines, "not found in snapshot"):
        return ResticError("not_found", detail(found))
    if found := _pick(
        lines, "wrong password", "empty password", "resolving password failed", "password file"
    ):
        return ResticError("wrong_password", detail(found))
    if returncode == 12:
        return ResticError("wrong_password", detail(None))
    if found := _pick(lines, "permission denied"):  # lifeline may not read it: not "no repo"
        return ResticError("failed", detail(found))
    if found := _pick(
        lines, "unable to open config file", "is there a repository", "repository does not exist"
    ):
        return ResticError("no_repository", detail(found))
    if returncode == 10:
        return ResticError("no_repository", detail(None))
    if found := _pick(
        lines, "ciphertext verification failed", "invalid data returned", "readfull(<data/",
        "readfull(<tree/", "unexpected eof", "pack file cannot be listed", "is damaged",
        "hash does not match", "decrypting blob",
    ):
        return ResticError("corrupt", detail(found))
    if found := _pick(lines, "no matching id found", "invalid id", "no snapshot matched"):
        return ResticError("not_found", detail(found))
    return ResticError("failed", detail(None))


def resolve_names(
    held: Sequence[FileEntry], raw_lines: Iterable[bytes], root: bytes
) -> Iterator[FileEntry]:
    """Give entries whose JSON path was lossy (U+FFFD) their raw paths from plain ``ls`` lines.

    The plain listing prints every path raw, one a line, in the order of the JSON listing, so
    the n-th raw path whose lossy form equals a held path is that held entry's (equal lossy
    forms are paired in order). A name with a newline spans lines, so a path is tried from
    each line on, the most lines first (up to as many as the held names span): a name cut at
    its newline is never taken for another. An entry never matched keeps its lossy path (it
    then shows as missing, not silently as present).
    """
    pending: dict[str, deque[FileEntry]] = {}
    for entry in held:
        pending.setdefault(entry.path.decode("utf-8", "replace"), deque()).append(entry)
    if not pending:
        return
    span_max = 1 + max(key.count("\n") for key in pending)
    window: deque[bytes] = deque()

    def match() -> FileEntry | None:
        """The held entry the path starting at window[0] is, its lines taken off; else None
        and that line dropped."""
        for span in range(len(window), 0, -1):
            rel = relative_to(b"\n".join(list(window)[:span]), root)
            queue = None if rel is None else pending.get(go_lossy(rel))
            if rel is not None and queue:
                entry = queue.popleft()
                if not queue:
                    del pending[go_lossy(rel)]
                for _ in range(span):
                    window.popleft()
                return FileEntry(rel, entry.size, entry.mtime_ns)
        window.popleft()
        return None

    lines = iter(raw_lines)
    while pending:
        for raw in lines:
            window.append(raw)
            if len(window) == span_max:
                break
        if not window:
            break
        if (found := match()) is not None:
            yield found
    for queue in pending.values():
        yield from queue


def hash_tar(stream: IO[bytes], root: bytes) -> Iterator[tuple[bytes, int, str]]:
    """(path relative to ``root``, size, SHA-256 hex) of each regular file of a tar stream, as it
    streams by (one chunk in memory at a time). A stream that breaks is ``bad_output`` naming
    the member being read (the caller learns from restic's exit status what broke it)."""
    current: bytes | None = None
    try:
        with tarfile.open(
            fileobj=stream, mode="r|", encoding="utf-8", errors="surrogateescape"
        ) as tar:
            for member in tar:
                if not member.isreg():
                    continue
                name = b"/" + member.name.encode("utf-8", "surrogateescape").lstrip(b"/")
                rel = relative_to(name, root)
                if rel is None:
                    continue
                current = rel
                body = tar.extractfile(member)
                if body is None:
                    raise _bad("a regular tar member without data", member.name)
                digest = hashlib.sha256()
                size = 0
                while chunk := body.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                if size != member.size:
                    raise ResticError(
                        "bad_output", f"{member.size} bytes announced, {size} read", path=rel
                    )
                yield rel, size, digest.hexdigest()
                current = None
    except (tarfile.TarError, EOFError, OSError, ValueError, UnicodeError) as exc:
        raise ResticError("bad_output", f"tar stream: {exc}", path=current) from exc


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    while line := stream.readline(_MAX_LINE):
        if not line.endswith(b"\n") and len(line) >= _MAX_LINE:
            raise _bad("a line longer than 1 MiB", line[:120])
        yield line[:-1] if line.endswith(b"\n") else line


# --- the process ------------------------------------------------------------------------------


class _Run:
    """One restic process: stdout to stream, a tail of stderr, a deadline.

    Killed (SIGKILL to its own process group, by its PID) at the deadline, when the stderr
    watcher sees a pack that will not come back, or when the reader gives up early; never
    after it was reaped (a PID may be reused), hence the wait-without-reaping before.
    """

    def __init__(
        self, argv: Sequence[str | bytes], env: Mapping[str, str], timeout: float,
        *, lost_pack_is_final: bool,
    ) -> None:
        try:
            self.proc = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, env=dict(env), start_new_session=True,
            )
        except OSError as exc:  # not there, not executable, not a program
            raise ResticError("missing_binary", f"cannot run {argv[0]!r}: {exc}") from exc
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.stdout: IO[bytes] = self.proc.stdout
        self._stderr_pipe: IO[bytes] = self.proc.stderr
        self.tail: deque[str] = deque(maxlen=_TAIL_LINES)
        self.killed: tuple[ErrorKind, str] | None = None
        self.returncode: int | None = None
        self._lost_pack_is_final = lost_pack_is_final
        self._lock = threading.Lock()
        self._exited = False
        self._timer = threading.Timer(
            timeout, self._kill, args=("timeout", f"no answer within {timeout:g} s: killed")
        )
        self._timer.daemon = True
        self._stderr = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr.start()
        self._timer.start()

    def _kill(self, kind: ErrorKind, why: str) -> None:
        with self._lock:
            if self._exited:
                return
            if self.killed is None:
                self.killed = (kind, why)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def _read_stderr(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            while raw := self._stderr_pipe.readline(4096):
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    continue
                self.tail.append(line[:_TAIL_LINE_CHARS])
                if self._lost_pack_is_final and (lost := _LOST_PACK.search(line)):
                    self._kill("corrupt", f"pack {lost.group(1)}: {lost.group(2)}"[:_DETAIL_CHARS])

    def _wait(self) -> int:
        pid = self.proc.pid
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
        with self._lock:
            self._exited = True
        self._timer.cancel()
        code = self.proc.wait()
        self._stderr.join(timeout=5)
        for pipe in (self.stdout, self._stderr_pipe):
            with contextlib.suppress(OSError):
                pipe.close()
        self.returncode = code
        return code

    def error(self) -> ResticError | None:
        """restic's own failure, if it failed (call after the process ended)."""
        if self.killed is not None:
            return ResticError(self.killed[0], self.killed[1])
        if self.returncode:
            return classify(self.returncode, "\n".join(self.tail))
        return None

    def __enter__(self) -> _Run:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        ours = exc is None or (isinstance(exc, ResticError) and exc.kind == "bad_output")
        if not ours:  # abandoned (generator closed, interrupted): stop it, let that propagate
            self._kill("failed", "abandoned by the reader")
            self._wait()
            return
        # Read what is left so restic is never blocked on a full pipe, then its verdict
        # goes first: a tar cut short by a corrupt blob is restic's "corrupt", not ours.
        with contextlib.suppress(OSError, ValueError):
            while self.stdout.read(_CHUNK):
                pass
        self._wait()
        failure = self.error()
        if failure is not None:
            if isinstance(exc, ResticError) and failure.path is None:
                failure.path = exc.path
            raise failure from exc
        # exc is our own bad_output of a successful call: it propagates by itself


# --- the repository ---------------------------------------------------------------------------


class Restic:
    """A restic repository, read only, through the restic CLI; every method blocks.

    ``repository`` as restic takes it (a path or ``local:``, ``sftp:``, ``rest:``, ...);
    ``password_file`` is handed to restic by name (never read here, never logged);
    ``cache_dir`` is restic's cache (lifeline's own state_dir), None for ``--no-cache``;
    ``env`` adds what a remote backend needs (e.g. AWS_* for s3): nothing else of lifeline's
    environment reaches restic.
    """

    def __init__(
        self,
        repository: str,
        password_file: Path,
        *,
        binary: str = "restic",
        cache_dir: Path | None = None,
        timeout: float = 300.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.repository = repository
        self.password_file = Path(password_file)
        self.binary = binary
        self.cache_dir = cache_dir
        self.timeout = timeout
        self._extra_env = dict(env or {})
        local = repository.removeprefix("local:")
        self.local: Path | None = None if _REMOTE.match(repository) else Path(local)

    def _env(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", _DEFAULT_PATH),
            "TZ": "UTC",
            "RESTIC_REPOSITORY": self.repository,
            "RESTIC_PASSWORD_FILE": str(self.password_file),
        }
        if "HOME" in os.environ:  # ssh (sftp:) finds its keys and known_hosts there
            env["HOME"] = os.environ["HOME"]
        if self.cache_dir is not None:
            env["RESTIC_CACHE_DIR"] = str(self.cache_dir)
        env.update(self._extra_env)
        return env

    def _run(self, *args: str | bytes) -> _Run:
        argv: list[str | bytes] = [self.binary, "--no-lock"]
        if self.cache_dir is None:
            argv.append("--no-cache")
        argv.extend(args)
        return _Run(argv, self._env(), self.timeout, lost_pack_is_final=self.local is not None)

    def _locked_note(self) -> str:
        """A note when another restic holds a lock: a prune may be removing what we read."""
        if self.local is None:
            return ""
        with contextlib.suppress(OSError):
            if any(_ID.fullmatch(name) for name in os.listdir(self.local / "locks")):
                return ("; another restic holds a lock on the repository (a prune may be "
                        "running): read it again before calling it corrupt")
        return ""

    def _corrupt_noted(self, error: ResticError) -> ResticError:
        if error.kind == "corrupt" and (note := self._locked_note()):
            error.detail += note
            error.args = (f"{error.kind}: {error.detail}",)
        return error

    def snapshot_ids(self) -> list[str]:
        """Every snapshot id (64 hex), sorted. Local: the names in REPO/snapshots/, read with
        no password and no key derivation (a snapshot file is named by its id); else one
        ``restic list snapshots``."""
        if self.local is None:
            return self.listed_snapshot_ids()
        folder = self.local / "snapshots"
        try:
            names = os.listdir(folder)
            is_repo = (self.local / "config").is_file()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ResticError(
                "no_repository", f"{self.local}: no restic repository ({exc})"
            ) from exc
        except OSError as exc:
            raise ResticError("failed", f"{folder}: {exc}") from exc
        if not is_repo:
            raise ResticError("no_repository", f"{self.local}: no restic repository (no config)")
        return sorted(name for name in names if _ID.fullmatch(name))

    def listed_snapshot_ids(self) -> list[str]:
        """Every snapshot id through ``restic list snapshots`` (any backend; one call)."""
        ids: list[str] = []
        with self._run("list", "snapshots") as run:
            for line in _lines(run.stdout):
                text = line.decode("ascii", "replace").strip()
                if text:
                    if _ID.fullmatch(text) is None:
                        raise _bad("list snapshots: not an id", text)
                    ids.append(text)
        return sorted(ids)

    def snapshots(self, ids: Sequence[str]) -> list[SnapshotInfo]:
        """What the given snapshots are (one call per 200 ids). A snapshot forgotten meanwhile
        is left out; one that is there but cannot be read is ``corrupt``."""
        found: list[SnapshotInfo] = []
        for start in range(0, len(ids), _IDS_PER_CALL):
            chunk = list(ids[start : start + _IDS_PER_CALL])
            with self._run("snapshots", "--json", *chunk) as run:
                body = run.stdout.read(_MAX_SNAPSHOTS_JSON + 1)
                if len(body) > _MAX_SNAPSHOTS_JSON:
                    raise _bad("snapshots: more than 64 MiB of JSON", len(body))
                infos = parse_snapshots(body)
            found.extend(infos)
            self._unreadable(chunk, infos, list(run.tail))
        return found

    def _unreadable(
        self, asked: Sequence[str], infos: Sequence[SnapshotInfo], tail: Sequence[str]
    ) -> None:
        got = [info.id for info in infos]
        for sid in asked:
            if any(full.startswith(sid) for full in got):
                continue
            said = _pick([ln for ln in tail if sid in ln], "could not load snapshot")
            on_disk = self.local is not None and (self.local / "snapshots" / sid).is_file()
            if said or on_disk:
                raise self._corrupt_noted(ResticError(
                    "corrupt", f"snapshot {sid} is there but cannot be read: {said or '(no words)'}"
                ))

    def listing(self, snapshot_id: str, root: str) -> Generator[FileEntry, None, None]:
        """Every file under ``root`` (the path as it was backed up) in a snapshot, relative to
        it, streamed from one ``restic ls --json``; a second, plain ``ls`` only when some names
        are not UTF-8 (module docstring). An unknown snapshot or a root the snapshot does not
        hold is ``not_found``. Streamed: a listing that fails gives its error after the
        entries read until then, so keep a listing only when it ended without one."""
        base = _root_bytes(root)
        where = [os.fsdecode(base)] if base else []
        held: list[FileEntry] = []
        seen_snapshot = seen_root = False
        with self._run("ls", "--json", "--recursive", snapshot_id, *where) as run:
            for line in _lines(run.stdout):
                kind, node = parse_ls_line(line)
                if kind == "snapshot":
                    seen_snapshot = True
                if node is None:
                    continue
                path = _path_bytes(node.path)
                if path.rstrip(b"/") == base:
                    seen_root = True
                if node.type != "file" or (rel := relative_to(path, base)) is None:
                    continue
                entry = FileEntry(rel, node.size, node.mtime_ns)
                if "\ufffd" in node.path:
                    held.append(entry)
                else:
                    yield entry
        if not seen_snapshot:
            raise ResticError("not_found", f"no snapshot {snapshot_id} in the repository")
        if base and not seen_root:
            raise ResticError("not_found", f"snapshot {snapshot_id} holds no {root!r}")
        if held:
            with self._run("ls", "--recursive", snapshot_id, *where) as run:
                yield from resolve_names(held, _lines(run.stdout), base)

    def hashes(
        self, snapshot_id: str, root: str, directory: bytes
    ) -> Generator[tuple[bytes, int, str], None, None]:
        """(path relative to ``root``, size, SHA-256) of every file under ``directory`` (relative
        to root; b'' for root itself) as the snapshot holds it: one ``restic dump`` of the
        directory, a tar stream hashed as it passes, nothing written anywhere. restic stops at
        the first file that does not verify: that is ``corrupt`` with ``path`` naming it, and
        the files after it in the stream were not read (hash them with ``file_hash``)."""
        base = _root_bytes(root)
        target = base + b"/" + directory.strip(b"/") if directory.strip(b"/") else base or b"/"
        try:
            with self._run("dump", snapshot_id, target) as run:
                yield from hash_tar(run.stdout, base)
        except ResticError as exc:
            self._corrupt_noted(exc)
            raise

    def file_hash(self, snapshot_id: str, root: str, path: bytes) -> str:
        """SHA-256 of one file as the snapshot holds it (``path`` relative to ``root``): one call
        (~0.7 s), so for a whole directory use ``hashes``."""
        target = _root_bytes(root) + b"/" + path.strip(b"/")
        digest = hashlib.sha256()
        try:
            with self._run("dump", snapshot_id, target) as run:
                while chunk := run.stdout.read(_CHUNK):
                    digest.update(chunk)
        except ResticError as exc:
            if exc.path is None:
                exc.path = path
            self._corrupt_noted(exc)
            raise
        return digest.hexdigest()
