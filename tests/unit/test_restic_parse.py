"""The pure parts of probes.restic: restic's JSON lines, RFC 3339 times, paths, error words.

The samples are restic 0.14's own output (Debian 12), taken from real runs. Whatever bytes
come in, nothing but a ResticError comes out (hypothesis).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.recfiles import FileEntry
from probes.restic import (
    ERROR_KINDS,
    LsNode,
    Restic,
    ResticError,
    classify,
    go_lossy,
    hash_tar,
    parse_ls_line,
    parse_snapshots,
    parse_time_ns,
    relative_to,
    resolve_names,
)

SNAPSHOT_LINE = (
    b'{"time":"2026-12-04T08:56:31.527770238Z","parent":"4db83869a402b4a34f247e62cb731172614316e2'
    b'7cd0c66dd722a3a5163cfaed","tree":"e5838c7b8fc8a177d9cf0b89b012c0a90a8d19bcb328467fd418f95dfa'
    b'767d53","paths":["/srv/rec"],"hostname":"h","username":"root","id":"9de18bf320145a1d4d2bb2a3'
    b'8e632fdbd2b0bec215c66de27009e48b48c2ebfe","short_id":"9de18bf3","struct_type":"snapshot"}'
)
FILE_LINE = (
    b'{"name":"c1.wav","type":"file","path":"/srv/rec/2026/12/03/c1.wav","uid":0,"gid":0,'
    b'"size":3000,"mode":420,"permissions":"-rw-r--r--","mtime":"2026-12-03T10:00:00.123456789Z",'
    b'"atime":"2026-12-03T10:00:00.123456789Z","ctime":"2026-12-04T08:55:47.21660647Z",'
    b'"struct_type":"node"}'
)
SNAPSHOTS_JSON = (
    b'[{"time":"2026-12-04T08:55:50.246944048Z","tree":"f3460fc263f8610ee2d3d618b9ece42e544e0f4be3'
    b'38eea39b0c2e7b4d5fd7e7","paths":["/srv/rec"],"hostname":"lab-recorder","username":"root",'
    b'"id":"4db83869a402b4a34f247e62cb731172614316e27cd0c66dd722a3a5163cfaed",'
    b'"short_id":"4db83869"},{"time":"2026-12-05T01:00:00+01:00","tree":"aa","paths":["/srv/rec"],'
    b'"hostname":"h2","username":"root","tags":["nightly","recordings"],'
    b'"id":"9de18bf320145a1d4d2bb2a38e632fdbd2b0bec215c66de27009e48b48c2ebfe","short_id":"9de18bf3"}]'
)


def never_raises_else(call: object, *args: object) -> None:
    try:
        call(*args)  # type: ignore[operator]
    except ResticError as exc:
        assert exc.kind in ERROR_KINDS


# --- times --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "ns"), [
    ("1970-01-01T00:00:00Z", 0),
    ("1970-01-01T01:00:00+01:00", 0),
    ("1969-12-31T19:00:00.5-05:00", 500_000_000),
    ("2026-12-03T10:00:00.123456789Z", 1_796_292_000_123_456_789),
    ("2026-12-04T08:55:47.21660647Z", 1_796_374_547_216_606_470),  # Go trims trailing zeros
    ("0001-01-01T00:00:00Z", -62_135_596_800 * 10**9),  # Go's zero time: an unknown mtime
])
def test_rfc3339_times_as_go_prints_them_become_ns_since_1970(text: str, ns: int) -> None:
    assert parse_time_ns(text) == ns


@pytest.mark.parametrize("text", [
    "", "2026-12-03T10:00:00", "2026-12-03 10:00:00Z", "2026-13-01T00:00:00Z",
    "2026-02-30T00:00:00Z", "2026-12-03T10:00:00.1234567891Z", "2026-12-03T10:00:00+24:00",
    "2026-12-03T24:00:00Z", "٢٠٢٦-12-03T10:00:00Z", None, 1796292000, "2026-12-03T10:00:60Z",
])
def test_what_is_not_such_a_time_is_bad_output(text: object) -> None:
    with pytest.raises(ResticError) as caught:
        parse_time_ns(text)
    assert caught.value.kind == "bad_output"


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(0, 999_999_999),
    st.integers(-(23 * 60 + 59), 23 * 60 + 59),
)
def test_any_time_in_any_offset_parses_to_its_instant(
    moment: datetime, ns: int, offset_min: int
) -> None:
    utc = moment.replace(microsecond=0, tzinfo=UTC)
    local = utc + timedelta(minutes=offset_min)
    frac = f".{ns:09d}".rstrip("0").rstrip(".")
    sign = "+" if offset_min >= 0 else "-"
    hours, minutes = divmod(abs(offset_min), 60)
    zone = "Z" if offset_min == 0 else f"{sign}{hours:02d}:{minutes:02d}"
    text = local.strftime("%Y-%m-%dT%H:%M:%S").zfill(19) + frac + zone
    if not 1 <= local.year <= 9999:
        return
    since = utc - datetime(1970, 1, 1, tzinfo=UTC)
    assert parse_time_ns(text) == (since.days * 86400 + since.seconds) * 10**9 + ns


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T.{0,25}")))
def test_a_time_never_raises_anything_but_a_restic_error(text: str) -> None:
    never_raises_else(parse_time_ns, text)


# --- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "shown"), [
    (b"c1.wav", "c1.wav"),
    ("ü-日本.wav".encode(), "ü-日本.wav"),
    (b"caf\xe9.wav", "caf\ufffd.wav"),  # Latin-1
    (b"\xff\xfe", "\ufffd\ufffd"),
    (b"\xe6\x97x", "\ufffd\ufffdx"),  # a cut 3-byte sequence: one U+FFFD per byte, as Go does
    (b"\xed\xa0\x80", "\ufffd" * 3),  # a surrogate encoded
    (b"\xc0\xaf", "\ufffd\ufffd"),  # overlong '/'
    (b"\xf4\x90\x80\x80", "\ufffd" * 4),  # beyond U+10FFFF
])
def test_names_show_as_go_json_shows_them(raw: bytes, shown: str) -> None:
    assert go_lossy(raw) == shown


@given(st.binary(max_size=60))
def test_the_lossy_form_keeps_valid_text_and_has_one_mark_per_bad_byte_at_most(raw: bytes) -> None:
    shown = go_lossy(raw)
    assert len(shown.encode("utf-8")) >= len(shown)  # encodable: no lone surrogates
    assert len(shown) <= len(raw)
    try:
        assert shown == raw.decode("utf-8")
    except UnicodeDecodeError:
        assert "\ufffd" in shown


@given(st.text(max_size=30))
def test_valid_utf8_is_shown_as_it_is(text: str) -> None:
    raw = text.encode("utf-8", "surrogatepass")
    try:
        want = raw.decode("utf-8")
    except UnicodeDecodeError:
        return
    assert go_lossy(raw) == want


@pytest.mark.parametrize(("path", "root", "rel"), [
    (b"/srv/rec/2026/12/03/a.wav", b"/srv/rec", b"2026/12/03/a.wav"),
    (b"/srv/rec", b"/srv/rec", None),  # the root itself
    (b"/srv/recordings/a.wav", b"/srv/rec", None),  # a sibling with a common prefix
    (b"/etc/passwd", b"/srv/rec", None),
    (b"/a.wav", b"", b"a.wav"),  # root '/'
])
def test_paths_are_made_relative_to_the_backed_up_root(
    path: bytes, root: bytes, rel: bytes | None
) -> None:
    assert relative_to(path, root) == rel


_component = st.binary(min_size=1, max_size=8).filter(lambda b: b"/" not in b and b"\0" not in b)


@given(st.lists(_component, min_size=1, max_size=4), st.lists(_component, min_size=1, max_size=4))
def test_a_path_under_the_root_comes_back_as_its_relative_part(
    root_parts: list[bytes], rel_parts: list[bytes]
) -> None:
    root = b"/" + b"/".join(root_parts)
    rel = b"/".join(rel_parts)
    assert relative_to(root + b"/" + rel, root) == rel
    assert relative_to(root, root) is None


# --- ls --json and snapshots --json -------------------------------------------------------------


def test_ls_lines_give_the_snapshot_and_file_nodes() -> None:
    assert parse_ls_line(SNAPSHOT_LINE) == ("snapshot", None)
    assert parse_ls_line(FILE_LINE) == (
        "node", LsNode("file", "/srv/rec/2026/12/03/c1.wav", 3000, 1_796_292_000_123_456_789))
    newer = json.loads(FILE_LINE)
    newer["message_type"] = "node"  # restic >= 0.17 marks lines this way
    del newer["size"]  # an empty file, as some releases print it
    assert parse_ls_line(json.dumps(newer).encode())[1] == LsNode(
        "file", "/srv/rec/2026/12/03/c1.wav", 0, 1_796_292_000_123_456_789)
    folder = b'{"name":"03","type":"dir","path":"/srv/rec/2026/12/03","struct_type":"node"}'
    assert parse_ls_line(folder) == ("node", LsNode("dir", "/srv/rec/2026/12/03", 0, 0))
    assert parse_ls_line(b'{"message_type":"summary","total":3}') == ("summary", None)


@pytest.mark.parametrize("line", [
    b"", b"not json", b"[1,2]", b'{"struct_type":"node","type":"file"}',
    b'{"struct_type":"node","type":"file","path":"rel/a.wav","mtime":"1970-01-01T00:00:00Z"}',
    b'{"struct_type":"node","type":"file","path":"/a","size":-1,"mtime":"1970-01-01T00:00:00Z"}',
    b'{"struct_type":"node","type":"file","path":"/a","size":true,"mtime":"1970-01-01T00:00:00Z"}',
    b'{"struct_type":"node","type":"file","path":"/a","size":1,"mtime":"yesterday"}',
    b"[" * 100_000,
])
def test_broken_ls_lines_are_bad_output(line: bytes) -> None:
    with pytest.raises(ResticError) as caught:
        parse_ls_line(line)
    assert caught.value.kind == "bad_output"


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(max_size=200),
    st.builds(lambda d: json.dumps(d).encode(), st.dictionaries(
        st.sampled_from(["struct_type", "message_type", "type", "path", "size", "mtime"]),
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=30),
                  st.sampled_from(["node", "snapshot", "file", "/a/b", "2026-12-03T10:00:00Z"])),
    )),
))
def test_an_ls_line_never_raises_anything_but_a_restic_error(line: bytes) -> None:
    never_raises_else(parse_ls_line, line)


def test_snapshots_json_gives_ids_times_paths_hosts_and_tags() -> None:
    first, second = parse_snapshots(SNAPSHOTS_JSON)
    assert first.id.startswith("4db83869") and first.tags == ()  # no tags: the key is absent
    assert first.time_ns == 1_796_374_550_246_944_048
    assert (first.paths, first.hostname) == (("/srv/rec",), "lab-recorder")
    assert second.tags == ("nightly", "recordings")
    assert second.time_ns == parse_time_ns("2026-12-05T00:00:00Z")
    assert parse_snapshots(b"[]") == []


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.builds(lambda v: json.dumps(v).encode(), st.lists(
    st.dictionaries(st.sampled_from(["id", "time", "paths", "hostname", "tags"]),
                    st.one_of(st.none(), st.integers(), st.text(max_size=10),
                              st.lists(st.text(max_size=5), max_size=2))), max_size=3))))
def test_snapshots_json_never_raises_anything_but_a_restic_error(body: bytes) -> None:
    never_raises_else(parse_snapshots, body)


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "stderr", "kind"), [
    (1, "Fatal: wrong password or no key found", "wrong_password"),
    (1, "reading repository password from stdin\nFatal: an empty password is not a password",
     "wrong_password"),
    (1, "Resolving password failed: Fatal: /etc/lifeline/restic.pw does not exist",
     "wrong_password"),
    (12, "Fatal: something new", "wrong_password"),
    (1, "Fatal: unable to open config file: stat /mnt/usb/restic/config: no such file or "
        "directory\nIs there a repository at the following location?\n/mnt/usb/restic",
     "no_repository"),
    (10, "Fatal: repository does not exist", "no_repository"),
    (1, "Fatal: unable to open config file: open /mnt/usb/restic/config: permission denied\n"
        "Is there a repository at the following location?", "failed"),
    (2, 'cannot dump file: path "/srv/rec/2026/12/31" not found in snapshot', "not_found"),
    (1, 'invalid id "deadbeef": no matching ID found for prefix "deadbeef"', "not_found"),
    (2, "cannot dump file: decrypting blob 4882fc53 failed: ciphertext verification failed",
     "corrupt"),
    (2, "cannot dump file: ReadFull(<data/1b0cda0856>): unexpected EOF", "corrupt"),
    (1, "Fatal: unable to create lock in backend: permission denied", "failed"),
    (1, "", "failed"),
    (-9, "", "failed"),
])
def test_exit_status_and_words_say_what_failed(code: int, stderr: str, kind: str) -> None:
    error = classify(code, stderr)
    assert error.kind == kind
    assert error.detail  # restic's words, or the status when it said nothing


@given(st.integers(-255, 255), st.text(max_size=2000))
def test_any_failure_is_one_of_the_kinds_with_a_bounded_detail(code: int, stderr: str) -> None:
    error = classify(code, stderr)
    assert error.kind in ERROR_KINDS
    assert 0 < len(error.detail) <= 500


def test_a_missing_binary_is_missing_binary(tmp_path: Path) -> None:
    r = Restic(str(tmp_path), tmp_path / "pw", binary=str(tmp_path / "no-restic"))
    with pytest.raises(ResticError) as caught:
        r.snapshots(["0" * 64])
    assert caught.value.kind == "missing_binary"
    assert r.snapshots([]) == []  # nothing asked: nothing run


def test_the_snapshot_ids_of_a_local_repository_are_its_snapshot_files(tmp_path: Path) -> None:
    (tmp_path / "snapshots").mkdir()
    (tmp_path / "config").write_bytes(b"encrypted")
    ids = ["b" * 64, "a" * 64]
    for name in [*ids, "a" * 64 + "-tmp-123", "README"]:
        (tmp_path / "snapshots" / name).write_bytes(b"")
    assert Restic(str(tmp_path), tmp_path / "pw", binary="/nonexistent").snapshot_ids() == sorted(
        ids)
    assert Restic(f"local:{tmp_path}", tmp_path / "pw").snapshot_ids() == sorted(ids)
    (tmp_path / "config").unlink()
    with pytest.raises(ResticError) as caught:
        Restic(str(tmp_path), tmp_path / "pw").snapshot_ids()
    assert caught.value.kind == "no_repository"


# --- raw names for lossy ones, tar streams ------------------------------------------------------


def _listing(root: bytes, rels: list[bytes]) -> list[bytes]:
    """What plain `restic ls` prints: a header, then each path raw (a newline splits it)."""
    out = [b"snapshot 9de18bf3 of [/srv/rec] at 2026-12-04 08:56:31 +0000 UTC):", root]
    for rel in rels:
        out.extend((root + b"/" + rel).split(b"\n"))
    return out


def test_lossy_names_get_their_raw_bytes_back_in_order() -> None:
    root = b"/srv/rec"
    rels = [b"d/\xfe\n\xfe", b"d/\xff", b"d/caf\xe9", b"d/caf\xe8", b"d/ok.wav", b"d/x\n\xffy"]
    lossy = [(i, r) for i, r in enumerate(rels) if b"ok" not in r]
    held = [FileEntry(go_lossy(r).encode(), i, i * 10) for i, r in lossy]
    got = list(resolve_names(held, _listing(root, rels), root))
    assert got == [FileEntry(r, i, i * 10) for i, r in lossy]


def test_a_lossy_name_never_found_keeps_its_lossy_path() -> None:
    held = [FileEntry("d/\ufffd".encode(), 1, 2)]
    assert list(resolve_names(held, [b"/srv/rec/d/other"], b"/srv/rec")) == held


_name = st.binary(min_size=1, max_size=6).filter(lambda b: b"/" not in b and b"\0" not in b)


@settings(max_examples=200, deadline=None)
@given(st.lists(_name, min_size=1, max_size=12, unique=True))
def test_every_lossy_name_is_resolved_to_its_own_bytes(names: list[bytes]) -> None:
    root = b"/srv/rec"
    rels = sorted(b"2026/" + n for n in names)  # restic lists a folder sorted by name
    held = [FileEntry(go_lossy(r).encode(), i, i) for i, r in enumerate(rels)
            if "\ufffd" in go_lossy(r)]
    got = list(resolve_names(held, _listing(root, rels), root))
    assert sorted(got, key=lambda e: e.size) == [
        FileEntry(rels[e.size], e.size, e.size) for e in held]


def _tar(files: dict[str, bytes], *, cut: int = 0) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT,
                      encoding="utf-8", errors="surrogateescape") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        folder = tarfile.TarInfo("srv/rec/d")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
    data = buffer.getvalue()
    return io.BytesIO(data[: len(data) - cut] if cut else data)


def test_a_tar_stream_gives_each_file_its_sha256() -> None:
    files = {"srv/rec/d/a.wav": b"a" * 3000, "srv/rec/d/caf\udce9.wav": b"", "etc/x": b"x"}
    got = list(hash_tar(_tar(files), b"/srv/rec"))
    assert got == [(b"d/a.wav", 3000, hashlib.sha256(b"a" * 3000).hexdigest()),
                   (b"d/caf\xe9.wav", 0, hashlib.sha256(b"").hexdigest())]


def test_a_tar_stream_cut_short_names_the_file_being_read() -> None:
    files = {"srv/rec/d/a.wav": b"a" * 600, "srv/rec/d/b.wav": b"b" * 5000}
    stream = _tar(files, cut=10240 + 1024 + 4096)
    read: list[bytes] = []
    with pytest.raises(ResticError) as caught:
        for path, _size, _digest in hash_tar(stream, b"/srv/rec"):
            read.append(path)
    assert caught.value.kind == "bad_output"
    assert (read, caught.value.path) == ([b"d/a.wav"], b"d/b.wav")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000))
def test_a_tar_stream_never_raises_anything_but_a_restic_error(data: bytes) -> None:
    never_raises_else(lambda: list(hash_tar(io.BytesIO(data), b"/srv/rec")))
