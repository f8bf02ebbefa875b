"""Bulk inputs: folders, buckets and URL lists listed as (input, key) rows with safe, unique output keys."""

from __future__ import annotations

import collections
import csv
import hashlib
import io
import os
import posixpath
import unicodedata
import urllib.parse
from dataclasses import dataclass

from i2a_core.errors import ListError
from i2a_core.io import images, storage

LIST_EXTENSIONS = {".txt", ".csv", ".parquet"}
# Columns a CSV or Parquet list may name its inputs by, in order of preference (else the first column).
LIST_COLUMNS = ("input", "url", "path", "image", "key")
# UTF-8 bytes per path component, under the usual 255: leaves room for two "-<hash>" suffixes, ".json"
# and the temp-file affixes of an atomic write (".<name>.<32 hex>.tmp").
MAX_COMPONENT_BYTES = 150



@dataclass(frozen=True)
class InputItem:
    input: str  # what to read: absolute local path, s3://... or http(s)://...
    relative: str  # the input's path relative to its root, as found; seeds derive from it
    key: str  # output key: safe relative path without extension, unique within the listing


def list_inputs(roots: list[str]) -> list[InputItem]:
    """Every input under the given folders, prefixes, list files or single files, each with a unique key."""
    found: list[tuple[str, str]] = []
    for root in roots:
        found.extend(_list_root(root))
    return _with_keys(found)


def _list_root(root: str) -> list[tuple[str, str]]:
    extension = os.path.splitext(root.split("?")[0])[1].lower()
    if images.is_url(root):
        return [(root, _url_relative(root))]
    if extension in LIST_EXTENSIONS:
        return _read_list(root)
    fs, path = storage.filesystem(root)
    if fs.isdir(path):
        return _list_tree(root, fs, path)
    if not fs.exists(path):
        raise FileNotFoundError(f"{root}: no such file, folder or prefix")
    return [(_absolute(root), posixpath.basename(path))]


def _absolute(source: str) -> str:
    return source if "://" in source else os.path.abspath(source)


def _list_tree(root: str, fs, path: str) -> list[tuple[str, str]]:
    """Image files under a folder or prefix, recursively, in sorted order."""
    base = path.rstrip("/")
    protocol = root.split("://", 1)[0] + "://" if storage.is_remote(root) else ""
    found = []
    # fsspec's find follows no symlinked folder (so no loop either); symlinked files are listed and read.
    for file in sorted(fs.find(base)):
        if _extension(file) not in images.IMAGE_EXTENSIONS:
            continue
        relative = file[len(base):].lstrip("/")
        found.append((protocol + file if protocol else os.path.abspath(file), relative))
    return found


def _extension(path: str) -> str:
    """`.jpg` for `a.jpg`, and also for `.jpg` and `..jpg`, which os.path.splitext calls extensionless."""
    name = posixpath.basename(path)
    return "." + name.rsplit(".", 1)[1].lower() if "." in name else ""


def _url_relative(url: str) -> str:
    """`host/path` of a URL: keeps the site's own folder structure, drops the query and any credentials."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # a malformed URL (`http://[::1/`) is listed; its read says what is wrong
        return images.display_name(url).split("://", 1)[1]
    return f"{parts.netloc.rsplit('@', 1)[-1]}/{parts.path.lstrip('/')}"


def _read_list(url: str) -> list[tuple[str, str]]:
    """Inputs named by a .txt (one per line), .csv or .parquet file; relative paths are resolved against it."""
    extension = os.path.splitext(url)[1].lower()
    fs, path = storage.filesystem(url)
    if fs.isdir(path):
        raise ListError(f"{url}: a folder named like a {extension} list file; rename it to list it as a folder")
    if extension in (".txt", ".csv"):
        try:
            text = storage.read_text(url)
        except UnicodeDecodeError as e:
            raise ListError(f"{url}: not a UTF-8 text file (byte {e.start}); save the list as UTF-8") from None
    if extension == ".txt":
        entries = [line.strip() for line in text.splitlines()]
        entries = [e for e in entries if e and not e.startswith("#")]
    elif extension == ".csv":
        rows = list(csv.reader(io.StringIO(text)))
        if not rows:
            return []
        header = [name.strip().lower() for name in rows[0]]
        # A first row naming a known column is a header; otherwise the file is a bare list of inputs.
        if any(name in LIST_COLUMNS for name in header):
            column, rows = _pick_column(url, header), rows[1:]
        else:
            column = 0
        entries = [row[column].strip() for row in rows if len(row) > column and row[column].strip()]
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(io.BytesIO(storage.read_bytes(url)))
        except (pa.ArrowException, OSError) as e:
            if isinstance(e, FileNotFoundError):
                raise
            raise ListError(f"{url}: not a Parquet file ({type(e).__name__})") from None
        column = _pick_column(url, [name.lower() for name in table.column_names])
        entries = [str(v).strip() for v in table.column(column).to_pylist() if v is not None and str(v).strip()]
    base = posixpath.dirname(url) if storage.is_remote(url) else os.path.dirname(os.path.abspath(url))
    return [_list_entry(entry, base) for entry in entries]


def _pick_column(url: str, names: list[str]) -> int:
    for wanted in LIST_COLUMNS:
        if wanted in names:
            return names.index(wanted)
    if not names:
        raise ListError(f"{url}: no columns")
    return 0


def _list_entry(entry: str, base: str) -> tuple[str, str]:
    if images.is_url(entry):
        return entry, _url_relative(entry)
    if "://" in entry:  # s3://bucket/key -> bucket/key
        return entry, entry.split("://", 1)[1]
    if os.path.isabs(entry):
        return entry, entry.lstrip("/")
    return storage.join(base, entry), entry


_CONTROL = {"Cc", "Cf", "Zl", "Zp"}


def safe_key(relative: str) -> str:
    """A relative output path without extension that can never leave the output folder.

    Control characters go, `..`/`.`/empty components are dropped, leading dots become `_` (no hidden
    files) and long components are cut. A key that had to change gets a short hash of the original, so
    `a/../x.jpg` and `x.jpg` stay different clips.
    """
    cleaned = "".join(c for c in relative.replace("\\", "/") if unicodedata.category(c) not in _CONTROL)
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


def _cut_utf8(text: str, limit: int) -> str:
    """The longest prefix of whole characters that fits in `limit` UTF-8 bytes."""
    size = 0
    for i, char in enumerate(text):
        size += len(char.encode("utf-8", "surrogatepass"))
        if size > limit:
            return text[:i]
    return text


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _with_keys(found: list[tuple[str, str]]) -> list[InputItem]:
    """Keys for every input, unique even on case-insensitive filesystems.

    Inputs whose keys collide (a.jpg and a.png) get a hash of their source; a suffixed key is checked
    against every other key again (a file may be named `a-<that hash>.jpg`) until all differ.
    """
    unique: dict[str, tuple[str, str]] = {}
    for source, relative in found:
        unique.setdefault(source, (source, relative))  # an input listed twice is one input
    keys = [safe_key(relative) for _, relative in unique.values()]
    counts = collections.Counter(key.lower() for key in keys)
    taken = set(counts)
    final = []
    for (source, _), key in zip(unique.values(), keys):
        if counts[key.lower()] > 1:
            shown = images.display_name(source)  # no hash of a URL's password either
            candidate, salt = f"{key}-{_short_hash(shown)}", 0
            while candidate.lower() in taken:
                salt += 1
                candidate = f"{key}-{_short_hash(f'{shown}#{salt}')}"
            taken.add(candidate.lower())
            key = candidate
        final.append(key)
    return [InputItem(source, relative, key) for (source, relative), key in zip(unique.values(), final)]


def list_windows(roots: list[str], window: int = 65536):
    """Interim: list_inputs as pyarrow windows (the listing branch streams them in bounded memory)."""
    import pyarrow as pa

    items = list_inputs(roots)
    for start in range(0, max(len(items), 1), window):
        part = items[start:start + window]
        if not part:
            return
        yield pa.table({"input": [i.input for i in part], "relative": [i.relative for i in part],
                        "key": [i.key for i in part], "display": [images.display_name(i.input) for i in part],
                        "error": [""] * len(part), "error_kind": [""] * len(part)})
