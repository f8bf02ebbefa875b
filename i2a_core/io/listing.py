"""Bulk inputs: folders, buckets and list files listed in bounded windows of rows with safe, unique output keys.

Every row says what to read (`input`), where it sits under its root (`relative`: seeds derive from it), the
output key (`key`), the name shown in messages and the manifest (`display`), and, for an entry that cannot be
an input (a NUL byte, a gs:// URL, a field over the limit), why not (`error`, `error_kind`). Only whole-file
problems (a list that is a folder, not UTF-8, not Parquet) raise ListError.

Keys are unique across the whole listing, so listing runs in two passes, and nothing is yielded before the
first pass ends. The first pass reads every source once, in order (folders, s3:// pages and list files are
streamed), and keeps the rows in a spill file (lz4 Arrow IPC in a temporary folder) and their hashes in 256
partition files: 128 bits of the input (an input listed twice is one input) and 64 bits of its lower-cased
key. Between the passes each partition is sorted on its own; the second pass reads the rows back and gives
suffixes to colliding keys only, each checked against the memory-mapped sorted hashes of every key.

Memory that remains per item: none for an ordinary listing; 8 bytes per input listed twice or key shared, and
~70 bytes per suffixed key (a set of their hashes). Besides that: one window of rows, one partition (1/256 of
the hashes, 32 bytes an item), a Parquet list's largest row group, and the entries of the largest single
folder (~70 bytes each). Listings up to 16,384 rows stay in memory. Temporary disk: ~77 bytes per item (32 of
hashes, ~45 of compressed rows for paths of ~40 characters).

Names that are not UTF-8 (a folder's file `caf\\xff.jpg`) stay lossless. Arrow strings must be UTF-8, so in
the tables each undecodable byte of `input` and `relative` is written as a NUL (which no path or accepted
entry holds) and four hex digits; `os_string` gives back the string `open` and the seed need (PEP 383
surrogate escapes). Their keys carry `%FF` and their display `\\xff`.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import os
import posixpath
import re
import shutil
import stat
import tempfile
import unicodedata
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from i2a_core.errors import ListError
from i2a_core.io import images, storage

LIST_EXTENSIONS = {".txt", ".csv", ".parquet"}
# Listed under folders and prefixes. AVIF and HEIC are listed too: an image the decoder cannot read becomes
# that input's error row, never a file skipped without a word.
LISTED_EXTENSIONS = images.IMAGE_EXTENSIONS | {".avif", ".heic", ".heif"}
# Columns a CSV or Parquet list may name its inputs by, in order of preference (else the first column).
LIST_COLUMNS = ("input", "url", "path", "image", "key")
# UTF-8 bytes per path component, under the usual 255: leaves room for two "-<hash>" suffixes, ".json"
# and the temp-file affixes of an atomic write (".<name>.<32 hex>.tmp").
MAX_COMPONENT_BYTES = 150
# Longest list entry (the csv module's own field limit); longer ones are that entry's error row.
MAX_ENTRY_CHARS = 131_072
# Longest line of a list file held in memory; a longer one is skipped as it streams by, as an error row.
MAX_LINE_CHARS = 1 << 20
WINDOW = 65_536

COLUMNS = ("input", "relative", "key", "display", "error", "error_kind")
SCHEMA = pa.schema([(name, pa.string()) for name in COLUMNS])


@dataclass(frozen=True)
class InputItem:
    input: str  # what to read: absolute local path, s3://... or http(s)://...
    relative: str  # the input's path relative to its root, as found; seeds derive from it
    key: str  # output key: safe relative path without extension, unique within the listing ("" on error)
    error: str = ""  # why this entry cannot be an input: one line naming it ("" when fine)
    error_kind: str = ""  # bad_input, bad_url, unreadable ("" when fine)


def list_inputs(roots: list[str]) -> list[InputItem]:
    """Every input under the given folders, prefixes, list files or single files, each with a unique key."""
    return [item for window in list_windows(roots) for item in _items(window)]


def list_windows(roots: list[str], window: int = WINDOW) -> Iterator[pa.Table]:
    """Every input under the given folders, s3:// prefixes, .txt/.csv/.parquet lists, files or URLs, in
    listing order, as tables of at most `window` rows (COLUMNS, all strings). Nothing is yielded before the
    whole listing is read (keys depend on all of it): a ListError or a missing root comes first.
    """
    keyed = _KeyedListing(window)
    try:
        for rows in _batches(_blocks(roots), min(window, _BATCH)):
            keyed.add(rows)
        yield from keyed.windows()
    finally:
        keyed.close()


def os_string(value: str) -> str:
    """The str that `open` (and a seed) needs for a table's `input` or `relative`: undecodable bytes as PEP 383
    surrogate escapes, so `value.encode("utf-8", "surrogateescape")` gives the name's own bytes back."""
    return _UNDECODABLE.sub(_from_marker, value) if "\x00" in value else value


def _items(window: pa.Table) -> Iterator[InputItem]:
    columns = [window.column(name).to_pylist() for name in COLUMNS]
    for source, relative, key, _, error, kind in zip(*columns, strict=True):
        yield InputItem(os_string(source), os_string(relative), key, error, kind)


def _with_keys(found: list[tuple[str, str]]) -> list[InputItem]:
    """(input, relative) pairs keyed as a listing keys them: an input given twice is one input, colliding keys
    get suffixes."""
    keyed = _KeyedListing(WINDOW)
    try:
        block = ([source for source, _ in found], [relative for _, relative in found], [""] * len(found),
                 [""] * len(found))
        for rows in _batches([block], _BATCH):
            keyed.add(rows)
        return [item for window in keyed.windows() for item in _items(window)]
    finally:
        keyed.close()


# Rows travel in blocks of columns: (inputs, relatives, errors, error kinds), each a list.
Rows = tuple[list[str], list[str], list[str], list[str]]


def _batches(blocks: Iterable[Rows], size: int) -> Iterator[Rows]:
    """Blocks of any length regrouped into batches of `size` rows (the last may be shorter)."""
    pending: Rows = ([], [], [], [])
    for block in blocks:
        for column, values in zip(pending, block, strict=True):
            column.extend(values)
        whole = len(pending[0]) - len(pending[0]) % size  # cut once per block, not once per batch
        for start in range(0, whole, size):
            yield tuple(column[start:start + size] for column in pending)
        if whole:
            pending = tuple(column[whole:] for column in pending)
    if pending[0]:
        yield pending


def _row(source: str, relative: str, error: str = "", kind: str = "") -> Rows:
    return [source], [relative], [error], [kind]


# --- 1. sources: each yields blocks of rows in listing order ---


def _blocks(roots: list[str]) -> Iterator[Rows]:
    for root in roots:
        yield from _list_root(str(root))


def _list_root(root: str) -> Iterator[Rows]:
    if "://" in root or "\x00" in root:
        row = _entry_row(root, "")
        if row[2] or images.is_url(root):  # why it cannot be an input, or a URL
            yield _row(*row)
            return
    extension = os.path.splitext(root.split("?")[0])[1].lower()
    if extension in LIST_EXTENSIONS:
        yield from _read_list(root)
    elif root.startswith("s3://"):
        yield from _list_bucket(root)
    else:
        local = root[len("file://"):] if root.startswith("file://") else root
        if os.path.isdir(local):
            yield from _walk(os.path.abspath(local))
        elif os.path.exists(local):
            yield _row(_absolute(root), os.path.basename(os.path.abspath(local)))
        else:
            raise FileNotFoundError(f"{root}: no such file, folder or prefix")


def _absolute(source: str) -> str:
    return source if "://" in source else os.path.abspath(source)


def _walk(root: str) -> Iterator[Rows]:
    """Image files under a local folder, recursively, in sorted order (that of their full paths).

    Symlinked files are listed and read; symlinked folders are listed like files and never followed (so no
    loop either), as fsspec's find does. Names are bytes throughout, so none is lost to decoding.
    """
    base = os.fsencode(root).rstrip(b"/")
    stack = [(base, b"", iter(_sorted_folder(base or b"/")))]
    block: Rows = ([], [], [], [])
    while stack:
        folder, relative, entries = stack[-1]
        for entry in entries:
            if isinstance(entry, OSError):  # a folder we may not read: its own error row, the rest goes on
                shown = _shown(os.fsdecode(folder))
                row = _row(shown, "", f"{shown}: cannot list this folder ({entry.strerror or type(entry).__name__})",
                           "unreadable")
                for column, value in zip(block, row, strict=True):
                    column.extend(value)
            elif entry.endswith(b"/"):
                path = folder + b"/" + entry[:-1]
                stack.append((path, relative + entry, iter(_sorted_folder(path))))
                break
            elif _extension(entry) in _LISTED_BYTES:
                block[0].append(_text(folder + b"/" + entry))
                block[1].append(_text(relative + entry))
                block[2].append("")
                block[3].append("")
            if len(block[0]) >= _BATCH:  # within a folder too: a flat folder of millions is not one block
                yield block
                block = ([], [], [], [])
        else:
            stack.pop()
    if block[0]:
        yield block


def _sorted_folder(path: bytes) -> list:
    """A folder's entry names, folders with a trailing b"/" (so that the order is that of full paths), sorted;
    or [the OSError] when it cannot be read."""
    try:
        with os.scandir(path) as found:
            names = []
            for entry in found:
                try:
                    folder = entry.is_dir(follow_symlinks=False)
                except OSError:
                    folder = False
                names.append(entry.name + b"/" if folder else entry.name)
    except OSError as e:
        return [e]
    names.sort()
    return names


_LISTED_BYTES = {extension.encode() for extension in LISTED_EXTENSIONS}


def _extension(name):
    """`.jpg` for `a.jpg`, and also for `.jpg` and `..jpg`, which os.path.splitext calls extensionless."""
    if isinstance(name, bytes):
        return b"." + name.rsplit(b".", 1)[1].lower() if b"." in name else b""
    name = posixpath.basename(name)
    return "." + name.rsplit(".", 1)[1].lower() if "." in name else ""


_S3_PAGE = 1_000  # keys per listing request, S3's own most


def _list_bucket(root: str) -> Iterator[Rows]:
    """Image objects under an s3:// prefix in key order (S3 lists keys sorted), a page at a time."""
    fs, path = storage.filesystem(root)
    if not fs.isdir(path):
        if not fs.exists(path):
            raise FileNotFoundError(f"{root}: no such file, folder or prefix")
        yield _row(root, posixpath.basename(path))
        return
    bucket, _, prefix = path.rstrip("/").partition("/")
    prefix = prefix + "/" if prefix else ""
    request = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": _S3_PAGE}
    while True:
        page = fs.call_s3("list_objects_v2", **request)  # s3fs's own retries, endpoint and credentials
        keys = [item["Key"] for item in page.get("Contents", ())]
        keys = [key for key in keys if _extension(key) in LISTED_EXTENSIONS]
        yield ([f"s3://{bucket}/{key}" for key in keys], [key[len(prefix):].lstrip("/") for key in keys],
               [""] * len(keys), [""] * len(keys))
        if not page.get("IsTruncated"):
            return
        request["ContinuationToken"] = page["NextContinuationToken"]


# --- 2. list files, streamed ---

# A block of a list file's entries: their line (or row) numbers, the entries (None where the entry itself could
# not be read), and why not, by position in the block.
Entries = tuple[list[int], list, dict[int, str]]


def _read_list(url: str) -> Iterator[Rows]:
    """Inputs named by a .txt (one per line), .csv or .parquet file; relative paths are resolved against it."""
    extension = os.path.splitext(url.split("?")[0])[1].lower()
    fs, path = storage.filesystem(url)
    if fs.isdir(path):
        raise ListError(f"{url}: a folder named like a {extension} list file; rename it to list it as a folder")
    base = posixpath.dirname(url) if storage.is_remote(url) else os.path.dirname(os.path.abspath(url))
    folder = base if base.endswith("/") else base + "/"  # what storage.join(base, entry) puts before an entry
    shown = _shown(images.display_name(url))
    unit = "row" if extension == ".parquet" else "line"
    with _open_list(url, fs, path) as stream:
        if extension == ".parquet":
            blocks = _parquet_entries(url, stream)
        elif extension == ".csv":
            blocks = _csv_entries(url, stream)
        else:
            blocks = _txt_entries(url, stream)
        for numbers, entries, reasons in blocks:
            yield _resolve(numbers, entries, reasons, folder, f"{shown}, {unit}")


def _resolve(numbers: list[int], entries: list, reasons: dict[int, str], folder: str, where: str) -> Rows:
    """Rows for a block of list entries: what each names, or why it cannot be an input."""
    sources, relatives, errors, kinds = [], [], [], []
    for i, entry in enumerate(entries):
        if entry is None:  # the entry itself is not known (a field over the csv module's limit)
            row = _bad(f"{where} {numbers[i]:,}", reasons[i], "bad_input")
        elif "://" in entry or entry[0] == "/" or len(entry) > MAX_ENTRY_CHARS or _UNSAFE.search(entry):
            row = _entry_row(entry, folder, where=f" ({where} {numbers[i]:,})")
        else:
            sources.append(folder + entry)
            relatives.append(entry)
            errors.append("")
            kinds.append("")
            continue
        sources.append(row[0])
        relatives.append(row[1])
        errors.append(row[2])
        kinds.append(row[3])
    return sources, relatives, errors, kinds


def _open_list(url: str, fs, path: str):
    if storage.is_remote(url):
        return fs.open(path, "rb")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ListError(f"{url}: not a regular file")
    return os.fdopen(fd, "rb")


_LINE_LIMIT = f"a line over the {MAX_LINE_CHARS:,}-character limit"


def _txt_entries(url: str, stream) -> Iterator[Entries]:
    number = 0
    for lines in _lines(url, stream, csv_lines=False):
        numbers, entries, reasons = [], [], {}
        for line in lines:
            number += 1
            if line is None:
                reasons[len(entries)] = _LINE_LIMIT
                numbers.append(number)
                entries.append(None)
                continue
            entry = line.strip()
            if entry and entry[0] != "#":
                numbers.append(number)
                entries.append(entry)
        yield numbers, entries, reasons


def _csv_entries(url: str, stream) -> Iterator[Entries]:
    too_long: list[int] = []

    def lines():
        number = 0
        for block in _lines(url, stream, csv_lines=True):
            for line in block:
                number += 1
                if line is None:
                    too_long.append(number)
                    line = "\n"  # an empty row in its place keeps the count of lines
                yield line

    reader = csv.reader(lines())
    column = None
    numbers, entries, reasons = [], [], {}
    while True:
        try:
            row, reason = next(reader), ""
        except StopIteration:
            break
        except csv.Error as e:  # the csv module's own field limit (131,072): this row's error, the rest goes on
            row, reason = None, (f"a field over the {csv.field_size_limit():,}-character limit"
                                 if "field larger" in str(e) else "not a CSV row")
        for number in too_long:
            reasons[len(entries)] = _LINE_LIMIT
            numbers.append(number)
            entries.append(None)
        too_long.clear()
        if row is None:
            reasons[len(entries)] = reason
            numbers.append(reader.line_num)
            entries.append(None)
            continue
        if column is None:
            header = [name.strip().lower() for name in row]
            # A first row naming a known column is a header; otherwise the file is a bare list of inputs.
            if any(name in LIST_COLUMNS for name in header):
                column = _pick_column(url, header)
                continue
            column = 0
        if len(row) > column and (entry := row[column].strip()):
            numbers.append(reader.line_num)
            entries.append(entry)
        if len(entries) >= _BATCH:
            yield numbers, entries, reasons
            numbers, entries, reasons = [], [], {}
    if entries:
        yield numbers, entries, reasons


def _parquet_entries(url: str, stream) -> Iterator[Entries]:
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(stream)
        names = table.schema_arrow.names
        column = _pick_column(url, [name.lower() for name in names])
        number = 0
        for batch in table.iter_batches(batch_size=_BATCH, columns=[names[column]]):
            values = batch.column(0)
            text = pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
            numbers, entries = [], []
            for value in values.to_pylist():
                number += 1
                if value is not None and (entry := (value if text else str(value)).strip()):
                    numbers.append(number)
                    entries.append(entry)
            yield numbers, entries, {}
    except (pa.ArrowException, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise ListError(f"{url}: not a Parquet file ({type(e).__name__})") from None


def _pick_column(url: str, names: list[str]) -> int:
    for wanted in LIST_COLUMNS:
        if wanted in names:
            return names.index(wanted)
    if not names:
        raise ListError(f"{url}: no columns")
    return 0


_BLOCK = 1 << 20
_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")  # where str.splitlines splits


def _lines(url: str, stream, csv_lines: bool) -> Iterator[list[str | None]]:
    """The lines of a UTF-8 list file, its BOM dropped, read a block at a time; None for a line over
    MAX_LINE_CHARS, which is skipped unread. CSV lines end at "\\n" and keep it (what the csv module reads);
    text lines end wherever str.splitlines would end them."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    carry, skipping, start, consumed = "", False, True, 0
    while True:
        block = stream.read(_BLOCK)
        pending = decoder.getstate()[0]
        try:
            text = decoder.decode(block, final=not block)
        except UnicodeDecodeError as e:
            byte = consumed - len(pending) + e.start
            raise ListError(f"{url}: not a UTF-8 text file (byte {byte}); save the list as UTF-8") from None
        consumed += len(block)
        if start and text:
            text, start = text.removeprefix("\ufeff"), False
        if skipping:  # the rest of an over-long line
            end = _line_end(text, csv_lines)
            if end < 0:
                if not block:
                    return
                continue
            text, skipping = text[end:], False
        data = carry + text
        if csv_lines:
            lines = data.split("\n")
            carry = lines.pop()
            lines = [line + "\n" for line in lines]
        else:
            lines = data.splitlines(keepends=True)
            # The last line may go on in the next block (and a "\r" may be half of a "\r\n").
            carry = lines.pop() if lines and (not _BREAKS.match(lines[-1][-1]) or lines[-1][-1] == "\r") else ""
        if not block and carry:
            lines.append(carry)
            carry = ""
        yield [None if len(line) > MAX_LINE_CHARS else line for line in lines]
        if not block:
            return
        if len(carry) > MAX_LINE_CHARS:
            yield [None]
            carry, skipping = "", True


def _line_end(text: str, csv_lines: bool) -> int:
    """Where the first line of `text` ends, just past its line break; -1 when it has none."""
    if csv_lines:
        found = text.find("\n")
        return found + 1 if found >= 0 else -1
    found = _LINE_BREAK.search(text)
    return found.end() if found else -1


_LINE_BREAK = re.compile("\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


# --- 3. entries: what can be an input ---

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # control characters and line separators
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")


def _entry_row(entry: str, folder: str, where: str = "") -> tuple[str, str, str, str]:
    """The row of a list entry (or of a root given as a URL): what it names, or why it cannot be an input.
    Relative paths are resolved against `folder` (with its trailing slash); `where` says where the entry is."""
    if len(entry) > MAX_ENTRY_CHARS:
        return _bad(entry, f"over the {MAX_ENTRY_CHARS:,}-character limit", "bad_input", where)
    if _UNSAFE.search(entry):
        return _bad(entry, "holds a NUL byte" if "\x00" in entry else "holds control characters", "bad_input", where)
    scheme, separator, rest = entry.partition("://")
    if not separator:
        return (entry, entry.lstrip("/"), "", "") if entry.startswith("/") else (folder + entry, entry, "", "")
    if scheme in ("http", "https"):
        try:
            parts = urllib.parse.urlsplit(entry)
            _ = parts.port  # raises ValueError for a malformed port
        except ValueError:
            return _bad(entry, "malformed URL", "bad_url", where)
        if not parts.hostname:
            return _bad(entry, "no host in the URL", "bad_url", where)
        # host/path: keeps the site's own folder structure, drops the query and any credentials
        return entry, f"{parts.netloc.rsplit('@', 1)[-1]}/{parts.path.lstrip('/')}", "", ""
    if scheme == "s3" and not rest.split("/", 1)[0]:
        return _bad(entry, "no bucket in the s3:// URL", "bad_url", where)
    if scheme in ("s3", "file"):  # s3://bucket/key -> bucket/key
        return entry, rest, "", ""
    if _SCHEME.fullmatch(scheme):
        return _bad(entry, f"unsupported scheme {scheme}:// (only http://, https://, s3:// and local paths)",
                    "bad_url", where)
    return _bad(entry, "neither a URL nor a path", "bad_url", where)


def _bad(entry: str, reason: str, kind: str, where: str = "") -> tuple[str, str, str, str]:
    """An error row: named by the entry on one line, escaped and without credentials, cut if over-long."""
    shown = images.display_name(entry)
    if len(shown) > MAX_ENTRY_CHARS:
        shown = f"{shown[:60]}... ({len(shown):,} characters, {_short_hash(shown)})"
    shown = _shown(shown)
    return shown, "", f"{shown}: {reason}{where}", kind


def _shown(text: str) -> str:
    """`text` on one line: control characters, line separators and undecodable bytes as escapes (\\n, \\x00,
    \\xff)."""
    return _SHOWN.sub(_escape, text)


_SHOWN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    return match.group().encode("unicode_escape", "backslashreplace").decode("ascii")


# --- 4. undecodable names: NUL and hex in tables, surrogate escapes for os ---

_SURROGATE = re.compile("[\ud800-\udfff]")
_UNDECODABLE = re.compile("\x00([0-9a-f]{4})")


def _to_marker(match: re.Match) -> str:
    return f"\x00{ord(match.group()):04x}"


def _from_marker(match: re.Match) -> str:
    return chr(int(match.group(1), 16))


def _table_text(text: str) -> str:
    """`text` as a valid UTF-8 string for an Arrow table; os_string undoes it."""
    return _SURROGATE.sub(_to_marker, text)


def _text(name: bytes) -> str:
    """A file name's bytes as table text."""
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        return _table_text(name.decode("utf-8", "surrogateescape"))


def _utf8(text: str) -> bytes:
    """Bytes to hash: a name's own bytes where it has surrogate escapes."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate no file name produces
        return text.encode("utf-8", "surrogatepass")


# --- 5. keys ---

_CONTROL = {"Cc", "Cf", "Zl", "Zp"}


def safe_key(relative: str) -> str:
    """A relative output path without extension that can never leave the output folder.

    Control characters go, `..`/`.`/empty components are dropped, leading dots become `_` (no hidden
    files), long components are cut and undecodable bytes become `%FF`. A key that had to change gets a
    short hash of the original, so `a/../x.jpg` and `x.jpg` stay different clips.
    """
    cleaned = _SURROGATE.sub(_percent, relative).replace("\\", "/")
    cleaned = "".join(c for c in cleaned if unicodedata.category(c) not in _CONTROL)
    parts = []
    for part in cleaned.split("/"):
        if part in ("", ".", ".."):
            continue
        if part.startswith("."):
            part = "_" + part[1:]
        parts.append(_cut_utf8(part, MAX_COMPONENT_BYTES).strip() or "_")
    if not parts:
        parts = ["input"]
    stem = os.path.splitext(parts[-1])[0]
    parts[-1] = stem if stem and stem != "_" else parts[-1]
    key = "/".join(parts)
    if key != os.path.splitext(relative)[0]:
        key = f"{key}-{_short_hash(relative)}"
    return key


def _percent(match: re.Match) -> str:
    code = ord(match.group())
    return f"%{code - 0xDC00:02X}" if 0xDC80 <= code <= 0xDCFF else f"%u{code:04X}"


def _cut_utf8(text: str, limit: int) -> str:
    """The longest prefix of whole characters that fits in `limit` UTF-8 bytes."""
    size = 0
    for i, char in enumerate(text):
        size += len(char.encode("utf-8", "surrogatepass"))
        if size > limit:
            return text[:i]
    return text


def _short_hash(text: str) -> str:
    return hashlib.sha256(_utf8(text)).hexdigest()[:8]


# A relative whose safe_key is itself without extension: printable characters only (no backslash), no empty,
# dotted or space-edged component, and a last component other than `_` or `_.ext`. The rest go through safe_key.
_PLAIN = r"^[\p{L}\p{M}\p{N}\p{P}\p{S} /]+$"
_NOT_PLAIN = r"\\|(^|/)[. /]|(^|/)$| (/|$)|(^|/)_(\.[^./]*)?$"


def _base_keys(relatives: pa.Array, wanted: np.ndarray) -> pa.Array:
    """safe_key of every wanted relative ("" for the others), vectorised where the key is the relative
    without its extension."""
    plain = pc.and_(pc.match_substring_regex(relatives, _PLAIN),
                    pc.invert(pc.match_substring_regex(relatives, _NOT_PLAIN)))
    plain = plain.to_numpy(zero_copy_only=False) & wanted
    components = pc.split_pattern(relatives, "/")
    sizes = pc.binary_length(pc.list_flatten(components)).to_numpy()
    starts = components.offsets.to_numpy()[:-1]
    longest = np.maximum.reduceat(sizes, starts) if len(sizes) else np.zeros(0, np.int64)
    plain &= longest <= MAX_COMPONENT_BYTES
    keys = pc.replace_substring_regex(relatives, r"\.[^./]*$", "", max_replacements=1).to_numpy(
        zero_copy_only=False)
    keys[~wanted] = ""
    for i in np.flatnonzero(wanted & ~plain):
        keys[i] = safe_key(os_string(relatives[i].as_py()))
    return pa.array(keys, pa.string())


def _key_hashes(keys: list[str], wanted: np.ndarray) -> np.ndarray:
    """64 bits of each lower-cased key (0 for rows without one)."""
    digests = b"".join(hashlib.blake2b(key.lower().encode("utf-8"), digest_size=8).digest() if want
                       else bytes(8) for key, want in zip(keys, wanted, strict=True))
    hashes = np.frombuffer(digests, "<u8").copy()
    hashes[wanted & (hashes == 0)] = 1  # 0 means "no key"
    return hashes


def _key_hash(key: str) -> int:
    return max(1, int.from_bytes(hashlib.blake2b(key.lower().encode("utf-8"), digest_size=8).digest(), "little"))


# --- 6. the two passes ---

_RECORD = np.dtype([("seq", "<u8"), ("hi", "<u8"), ("lo", "<u8"), ("key", "<u8")])
_KEYED = np.dtype([("seq", "<u8"), ("key", "<u8")])
_BATCH = 8_192  # rows keyed at a time in the first pass
_IN_MEMORY = 16_384  # rows kept in memory between the passes; a longer listing waits on disk
_PARTITION_BITS = 8  # 256 partitions: one is sorted at a time
_BUFFERED = 1 << 16  # hash records gathered before they are appended to the partition files


class _KeyedListing:
    """Rows in listing order, kept (in memory, or on disk once past one window) until keys can be made unique."""

    def __init__(self, window: int):
        if window < 1:
            raise ValueError(f"window must be at least 1, not {window}")
        self.window = window
        self.count = 0
        self.tables: list[pa.Table] = []  # in memory until the listing outgrows one window
        self.records: list[np.ndarray] = []
        self.scratch: str | None = None
        self.spill = None
        self.inputs: _Partitions | None = None

    def add(self, rows: Rows) -> None:
        table, records = _keyed_batch(rows, self.count)
        self.count += len(rows[0])
        self.tables.append(table)
        self.records.append(records)
        if self.count > min(self.window, _IN_MEMORY) and self.scratch is None:
            self.scratch = tempfile.mkdtemp(prefix="i2a-listing-")
            options = pa.ipc.IpcWriteOptions(compression="lz4" if pa.Codec.is_available("lz4") else None)
            self.spill = pa.ipc.new_stream(os.path.join(self.scratch, "rows.arrows"), SCHEMA, options=options)
            self.inputs = _Partitions(os.path.join(self.scratch, "inputs"), "hi")
        if self.scratch is not None:
            for table in self.tables:
                self.spill.write_table(table)
            for records in self.records:
                self.inputs.add(records)
            self.tables, self.records = [], []

    def windows(self) -> Iterator[pa.Table]:
        """The rows again, in order, without inputs listed before and with colliding keys suffixed."""
        dropped, colliding, taken = self._analyse()
        assigned: set[int] = set()
        seq, ready, size = 0, [], 0
        for table in self._stored():
            n = table.num_rows
            keep = ~_members(dropped, seq, n)
            suffixed = np.flatnonzero(_members(colliding, seq, n))
            if len(suffixed):
                keys = table.column("key").to_pylist()
                display = table.column("display")
                for i in suffixed:
                    keys[i] = _suffixed(keys[i], display[i].as_py(), taken, assigned)
                table = table.set_column(COLUMNS.index("key"), "key", pa.array(keys, pa.string()))
            if not keep.all():
                table = table.filter(pa.array(keep))
            seq += n
            while table.num_rows:
                taken_rows = min(table.num_rows, self.window - size)
                ready.append(table.slice(0, taken_rows))
                size += taken_rows
                table = table.slice(taken_rows)
                if size == self.window:
                    yield pa.concat_tables(ready)
                    ready, size = [], 0
        if size:
            yield pa.concat_tables(ready)

    def _analyse(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sequence numbers of inputs listed before (dropped) and of keys shared by several inputs (colliding),
        and the sorted hashes of every distinct key (taken)."""
        if self.scratch is None:
            records = np.concatenate(self.records) if self.records else np.zeros(0, _RECORD)
            dropped, kept = _first_listed(records)
            colliding, taken = _shared_keys(kept)
            return np.sort(dropped), np.sort(colliding), taken
        self.spill.close()
        self.spill = None
        self.inputs.flush()
        keys = _Partitions(os.path.join(self.scratch, "keys"), "key")
        dropped, colliding = [], []
        for part in range(1 << _PARTITION_BITS):
            found, kept = _first_listed(self.inputs.read(part, _RECORD))
            dropped.append(found)
            keys.add(kept)
        keys.flush()
        path = os.path.join(self.scratch, "taken")
        with open(path, "wb") as taken:  # partitions by top bits: written in order, the hashes are sorted
            for part in range(1 << _PARTITION_BITS):
                found, distinct = _shared_keys(keys.read(part, _KEYED))
                colliding.append(found)
                distinct.tofile(taken)
        shutil.rmtree(self.inputs.folder, ignore_errors=True)
        shutil.rmtree(keys.folder, ignore_errors=True)
        return np.sort(np.concatenate(dropped)), np.sort(np.concatenate(colliding)), _mapped(path)

    def _stored(self) -> Iterator[pa.Table]:
        if self.scratch is None:
            yield from self.tables
            return
        with pa.OSFile(os.path.join(self.scratch, "rows.arrows")) as f, pa.ipc.open_stream(f) as reader:
            for batch in reader:
                yield pa.Table.from_batches([batch])

    def close(self) -> None:
        if self.spill is not None:
            self.spill.close()
            self.spill = None
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None
        self.tables, self.records = [], []


def _mapped(path: str) -> np.ndarray:
    """The uint64 array in a file, memory-mapped: its pages are read as searches touch them."""
    return np.memmap(path, "<u8", mode="r") if os.path.getsize(path) else np.zeros(0, "<u8")


class _Partitions:
    """Hash records appended to 256 files by the top bits of one field, a few hundred thousand at a time."""

    def __init__(self, folder: str, field: str):
        self.folder, self.field = folder, field
        self.pending: list[np.ndarray] = []
        self.size = 0
        os.makedirs(folder, exist_ok=True)

    def add(self, records: np.ndarray) -> None:
        self.pending.append(records)
        self.size += len(records)
        if self.size >= _BUFFERED:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        records = np.concatenate(self.pending)
        self.pending, self.size = [], 0
        parts = (records[self.field] >> np.uint64(64 - _PARTITION_BITS)).astype(np.int64)
        order = np.argsort(parts, kind="stable")
        bounds = np.searchsorted(parts[order], np.arange((1 << _PARTITION_BITS) + 1))
        records = records[order]
        for part in np.flatnonzero(np.diff(bounds)):
            with open(os.path.join(self.folder, f"{part:03d}"), "ab") as f:
                records[bounds[part]:bounds[part + 1]].tofile(f)

    def read(self, part: int, dtype: np.dtype) -> np.ndarray:
        path = os.path.join(self.folder, f"{part:03d}")
        return np.fromfile(path, dtype) if os.path.exists(path) else np.zeros(0, dtype)


def _keyed_batch(rows: Rows, first: int) -> tuple[pa.Table, np.ndarray]:
    """A table of rows with their base keys (before suffixes), and the hashes that make inputs and keys unique."""
    sources, relatives, errors, kinds = rows
    sources, relatives = _table_texts(sources), _table_texts(relatives)
    wanted = np.array([not error for error in errors], dtype=bool)
    display = [source if not want or ("@" not in source and "\x00" not in source) else
               images.display_name(_undecodable_shown(source)) for source, want in zip(sources, wanted, strict=True)]
    relative_array = pa.array(relatives, pa.string())
    keys = _base_keys(relative_array, wanted)
    table = pa.Table.from_arrays(
        [pa.array(sources, pa.string()), relative_array, keys, pa.array(display, pa.string()),
         pa.array(errors, pa.string()), pa.array(kinds, pa.string())], schema=SCHEMA)
    identity = np.frombuffer(b"".join(hashlib.blake2b(source.encode("utf-8"), digest_size=16).digest()
                                      for source in sources), "<u8").reshape(-1, 2)
    records = np.empty(len(sources), _RECORD)
    records["seq"] = np.arange(first, first + len(sources), dtype=np.uint64)
    records["hi"], records["lo"] = identity[:, 0], identity[:, 1]
    records["key"] = _key_hashes(keys.to_pylist(), wanted)
    return table, records


def _table_texts(texts: list[str]) -> list[str]:
    try:
        pa.array(texts, pa.string())
        return texts
    except UnicodeEncodeError:  # an undecodable name somewhere in the batch
        return [_table_text(text) for text in texts]


def _undecodable_shown(source: str) -> str:
    """A table's input as it is shown: undecodable bytes as \\xff."""
    return _SURROGATE.sub(_escape, os_string(source))


def _first_listed(records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sequence numbers of inputs listed before, and the (seq, key) records of the rest."""
    ordered = records[np.lexsort((records["seq"], records["lo"], records["hi"]))]
    first = np.ones(len(ordered), bool)
    first[1:] = (ordered["hi"][1:] != ordered["hi"][:-1]) | (ordered["lo"][1:] != ordered["lo"][:-1])
    kept = ordered[first & (ordered["key"] != 0)]
    out = np.empty(len(kept), _KEYED)
    out["seq"], out["key"] = kept["seq"], kept["key"]
    return ordered["seq"][~first], out


def _shared_keys(records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sequence numbers of inputs whose key another input shares, and the sorted distinct key hashes."""
    ordered = records[np.argsort(records["key"], kind="stable")]
    keys = ordered["key"]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, np.int64)
    counts = np.diff(np.r_[starts, len(keys)])
    return ordered["seq"][np.repeat(counts > 1, counts)], keys[starts]


def _members(sorted_seqs: np.ndarray, first: int, n: int) -> np.ndarray:
    """Which of first..first+n-1 are in a sorted array of sequence numbers."""
    mask = np.zeros(n, bool)
    lo, hi = np.searchsorted(sorted_seqs, np.array([first, first + n], np.uint64))
    mask[(sorted_seqs[lo:hi] - np.uint64(first)).astype(np.int64)] = True
    return mask


def _suffixed(key: str, display: str, taken: np.ndarray, assigned: set[int]) -> str:
    """A colliding key with a hash of its input; re-checked against every key (a file may be named
    `a-<that hash>.jpg`) until it differs from all, case-insensitively."""
    candidate, salt = f"{key}-{_short_hash(display)}", 0  # the display: no hash of a URL's password either
    while _is_taken(candidate, taken, assigned):
        salt += 1
        candidate = f"{key}-{_short_hash(f'{display}#{salt}')}"
    assigned.add(_key_hash(candidate))
    return candidate


def _is_taken(key: str, taken: np.ndarray, assigned: set[int]) -> bool:
    hashed = _key_hash(key)
    i = int(np.searchsorted(taken, np.uint64(hashed)))
    return hashed in assigned or (i < len(taken) and int(taken[i]) == hashed)
