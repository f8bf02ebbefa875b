"""The bulk job's Parquet manifest: rows committed in atomic parts, merged into segments, read back exactly once.

OUTPUT/manifest/ holds plain Parquet files in SCHEMA, so pyarrow.dataset, Ray Data and pandas read the folder:

    compacted-<time_ns>-<hex>.parquet  segments: compacted rows in commit order, up to SEGMENT_ROWS a file; never
                                       rewritten, except that the newest ones under MIN_SEGMENT_ROWS (together) are
                                       merged again by the next compaction
    part-<time_ns>-<hex>.parquet       rows committed since the last compaction (PartWriter)
    part-<32 hex>.parquet              parts of i2a versions before segments (older schemas too): read as they are,
                                       merged into segments by the next compaction

File names sort in commit order (segments, then parts), so readers of the folder see rows in that order too.

An input can have several rows: a transient failure retried by a later run, a batch redone after its node was
lost, a crash between a compaction's new segment and the deletion of what it merged. The views resolve that
exactly once: an input's first ok row wins; an input with no ok row is failed with its newest error. Resume
needs no resolution: an input is done when any row says ok or gives a permanent error kind.

Nothing here holds a Python object per row. Inputs become 128-bit hashes (16 bytes an input) and rows stream
in batches, so memory grows by those 16 bytes per row, never by the rows themselves.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import hashlib
import io
import os
import posixpath
import re
import secrets
import tempfile
import time
import uuid
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from i2a_core.errors import OutputError, classify, is_transient
from i2a_core.io import storage

MANIFEST_DIR = "manifest"
SCHEMA = pa.schema([
    ("input", pa.string()),  # what was read: absolute path, s3://... or URL
    ("output", pa.string()),  # the WAV, relative to the output root ("" on error)
    ("status", pa.string()),  # "ok" or "error"
    ("error", pa.string()),  # one line naming the input and the reason ("" when ok)
    ("error_kind", pa.string()),  # short tag for counting failures (not_image, http_404, ...)
    ("warning", pa.string()),  # an ok input's oddity (a lying extension, a crop); "" when none
    ("thumbnail", pa.string()),
    ("spectrogram", pa.string()),
    ("translator", pa.string()),
    ("seed", pa.int64()),
    ("scheduler", pa.string()),  # ddim | dpm++ | unipc
    ("steps", pa.int32()),
    ("guidance", pa.float32()),
    ("duration", pa.float32()),
    ("sample_rate", pa.int32()),
    ("read_s", pa.float32()),
    ("decode_s", pa.float32()),
    ("encode_s", pa.float32()),
    ("generate_s", pa.float32()),
    ("write_s", pa.float32()),
    ("captions", pa.list_(pa.string())),  # retrieval captions, when the translator explains itself
    ("explanation", pa.string()),  # the translator's full explanation as JSON ("" when it has none)
    ("finished_at", pa.timestamp("ms", tz="UTC")),
    ("modality", pa.string()),  # what was sonified: "image" or "text" (null in parts written before it existed)
    ("image", pa.string()),  # the image the clip describes: the input itself, or the image a text prompt captions
])

PART_ROWS = 5_000  # a part is written when this many rows are buffered...
PART_EVERY_S = 60.0  # ...or when its oldest row has waited this long
CONVERT_ROWS = 4_096  # numpy batches handed to a PartWriter are converted to Arrow this many rows at a time
SEGMENT_ROWS = 1_000_000  # rows per segment file at most
MIN_SEGMENT_ROWS = 100_000  # newest segments smaller than this (together) are merged again by the next compaction
BATCH_ROWS = 16_384  # rows read at a time
GROUP_ROWS, GROUP_BYTES = 32_768, 32 << 20  # pending rows deduplicated together, and a segment row group

_NEW_PART = re.compile(r"^part-\d{20}-[0-9a-f]{8}\.parquet$")
_SEGMENT = re.compile(r"^compacted-(\d{20})-[0-9a-f]{8}\.parquet$")
_REPLACES = b"i2a.replaces"  # a segment's footer: the segments it merged (cleaned up if a crash left them)


def directory(output: str) -> str:
    return storage.join(output, MANIFEST_DIR)


# --- writing: buffered, atomic parts ---


def _unique_name(prefix: str, after_ns: int) -> tuple[str, int]:
    """`prefix-<time_ns>-<8 hex>.parquet`, later than after_ns: names sort in the order they were made."""
    ns = max(time.time_ns(), after_ns + 1)
    return f"{prefix}-{ns:020d}-{secrets.token_hex(4)}.parquet", ns


def _column(values, kind: pa.DataType) -> pa.Array:
    """A numpy column as Arrow of the schema's type (object arrays of str, datetime, lists, None; or numbers)."""
    try:
        return pa.array(values, type=kind, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):  # datetimes Ray Data made naive, in us
        return pa.array(list(values), from_pandas=True).cast(kind, safe=False)


class PartWriter:
    """Rows in, atomic Parquet parts out: one part per `rows_per_part` rows, or sooner once the oldest buffered row
    has waited `every_s` seconds (checked on each `add`; `add([])` checks the clock alone).

    A part is written whole or not at all (storage.write_bytes_atomic, local or s3://), named
    `part-<time_ns>-<8 hex>.parquet` so that names sort in commit order. Rows are checked against `schema`: an
    unknown column is an error, a missing one is null, values are cast to the schema's types. Numpy batches
    (column -> array, the runner's) are kept as they are and turned into Arrow CONVERT_ROWS rows at a time, as
    converting costs about the same per batch as per row: their arrays must not change after `add`. Buffered rows
    are not committed: call `flush()` or `close()` (or leave the `with` block) to commit them. One writer per
    process or actor; it is not thread-safe.
    """

    def __init__(self, directory: str, schema: pa.Schema, rows_per_part: int = PART_ROWS,
                 every_s: float = PART_EVERY_S):
        if rows_per_part < 1:
            raise ValueError(f"rows_per_part must be at least 1, not {rows_per_part}")
        self.directory, self.schema = str(directory), schema
        self._names = frozenset(schema.names)  # schema.names builds a new list on every call
        self.rows_per_part, self.every_s = rows_per_part, every_s
        self.written = 0  # rows committed so far
        self._buffer: list[pa.Table] = []
        self._batches: list[dict] = []  # numpy batches not converted yet (they come after every table in _buffer)
        self._batch_rows = 0
        self._buffered = 0
        self._oldest = 0.0
        self._last_ns = 0

    def add(self, rows) -> int:
        """Buffer rows (a numpy batch, pa.Table, pa.RecordBatch or list of row dicts); returns the rows committed
        now."""
        if isinstance(rows, dict):
            added = self._add_batch(rows)
        else:
            self._convert()  # what came before, first: rows keep the order they were added in
            table = self._conform(rows)
            if table.num_rows:
                self._buffer.append(table)
            added = table.num_rows
        if added:
            if not self._buffered:
                self._oldest = time.monotonic()
            self._buffered += added
        if self._buffered and (self._buffered >= self.rows_per_part
                               or time.monotonic() - self._oldest >= self.every_s):
            return self.flush()
        return 0

    def _add_batch(self, batch: dict) -> int:
        unknown = [n for n in batch if n not in self._names]
        if unknown:
            raise ValueError(f"columns not in the schema: {', '.join(unknown)}")
        size = len(next(iter(batch.values()))) if batch else 0
        if size:
            self._batches.append(batch)
            self._batch_rows += size
            if self._batch_rows >= CONVERT_ROWS:
                self._convert()
        return size

    def _convert(self) -> None:
        """The numpy batches waiting, as Arrow tables: one per run of batches with the same columns."""
        while self._batches:
            names = self._batches[0].keys()
            run = 1
            while run < len(self._batches) and self._batches[run].keys() == names:
                run += 1
            group, self._batches = self._batches[:run], self._batches[run:]
            joined = {n: np.concatenate([b[n] for b in group]) for n in names} if run > 1 else group[0]
            self._buffer.append(self._conform(joined))
        self._batch_rows = 0

    def flush(self) -> int:
        """Commit every buffered row as one part; returns how many."""
        if not self._buffered:
            return 0
        self._convert()
        table = pa.concat_tables(self._buffer)
        if not storage.is_remote(self.directory):
            os.sync()  # the files these rows commit were written without fsync: they reach the disk first
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        name, self._last_ns = _unique_name("part", self._last_ns)
        try:
            storage.write_bytes_atomic(storage.join(self.directory, name), buffer.getvalue())
        except OSError as error:
            kind, reason = classify(error, self.directory, "write")
            if kind == "disk_full":  # nothing more can be committed: stop, naming the place; a rerun redoes these
                raise OutputError(f"{reason}; {table.num_rows} finished rows were not committed: the rerun does "
                                  f"them again") from error
            raise
        self._buffer, self._buffered = [], 0
        self.written += table.num_rows
        return table.num_rows

    def close(self) -> int:
        return self.flush()

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()  # rows added were finished work: commit them even when the caller failed

    def _conform(self, rows) -> pa.Table:
        # Called once per committed batch: built column by column in the schema's order, and cast only where a
        # type differs (a cast or a second table per column cost ~100 us a batch, more than a failed row's work).
        if isinstance(rows, dict):  # a numpy batch (column -> array), as the runner's stages return them
            unknown = [n for n in rows if n not in self._names]
            if unknown:
                raise ValueError(f"columns not in the schema: {', '.join(unknown)}")
            size = len(next(iter(rows.values()))) if rows else 0
            columns = [_column(rows[f.name], f.type) if f.name in rows else pa.nulls(size, f.type)
                       for f in self.schema]
            return pa.Table.from_arrays(columns, schema=self.schema)
        if isinstance(rows, (pa.Table, pa.RecordBatch)):
            unknown = [n for n in rows.schema.names if n not in self._names]
            if unknown:
                raise ValueError(f"columns not in the schema: {', '.join(unknown)}")
            table = pa.Table.from_batches([rows]) if isinstance(rows, pa.RecordBatch) else rows
            columns = []
            for f in self.schema:
                if f.name not in table.column_names:
                    columns.append(pa.nulls(table.num_rows, f.type))
                    continue
                column = table.column(f.name)
                columns.append(column if column.type == f.type else column.cast(f.type))
            return pa.Table.from_arrays(columns, schema=self.schema)
        rows = list(rows)
        unknown = sorted({k for row in rows for k in row} - set(self.schema.names))
        if unknown:
            raise ValueError(f"columns not in the schema: {', '.join(unknown)}")
        return pa.Table.from_pylist(rows, schema=self.schema)


def write_part(output: str, rows: list[dict]) -> None:
    """Commit rows as one part of OUTPUT's manifest now, atomically: a killed job leaves whole parts or none."""
    with PartWriter(directory(output), SCHEMA) as writer:
        writer.add(rows)


# --- listing: segments, then parts, in commit order ---


def _ls(fs, path: str) -> list[dict]:
    fs.invalidate_cache(path)
    if not fs.exists(path):
        return []
    return fs.ls(path, detail=True)


def _mtime(entry: dict) -> float:
    value = entry.get("mtime", entry.get("LastModified", 0))
    return value.timestamp() if hasattr(value, "timestamp") else float(value or 0)


def _part_paths(output: str) -> tuple[object, list[str]]:
    """The parts not compacted yet, in commit order: older versions' parts (by time written), then ours."""
    fs, path = storage.filesystem(directory(output))
    parts = [e for e in _ls(fs, path)
             if posixpath.basename(e["name"]).startswith("part-") and e["name"].endswith(".parquet")]

    def commit_order(entry):
        name = posixpath.basename(entry["name"])
        return (1, 0.0, name) if _NEW_PART.match(name) else (0, _mtime(entry), name)

    return fs, [e["name"] for e in sorted(parts, key=commit_order)]


def _segment_paths(output: str) -> tuple[object, list[str]]:
    fs, path = storage.filesystem(directory(output))
    return fs, sorted(e["name"] for e in _ls(fs, path) if _SEGMENT.match(posixpath.basename(e["name"])))


def _files(output: str) -> tuple[object, list[str]]:
    """Every manifest file in commit order: segments, then parts."""
    fs, segments = _segment_paths(output)
    _, parts = _part_paths(output)
    return fs, segments + parts


# --- reading ---


def _is_local(fs) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol or "local" in protocol


@contextlib.contextmanager
def _parquet(fs, path: str):
    if _is_local(fs):
        with pq.ParquetFile(path) as reader:
            yield reader
    else:
        with fs.open(path, "rb") as f, pq.ParquetFile(f) as reader:
            yield reader


def _conform(batch: pa.RecordBatch, names: list[str]) -> pa.RecordBatch:
    """A batch with exactly `names`, in SCHEMA's types; columns an older schema lacked are null."""
    arrays = []
    for name in names:
        field = SCHEMA.field(name)
        index = batch.schema.get_field_index(name)
        arrays.append(batch.column(index).cast(field.type) if index >= 0 else pa.nulls(batch.num_rows, field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema([SCHEMA.field(n) for n in names]))


def _batches(fs, files: list[str], names: list[str]) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(file index, batch) over `files` in order, reading only `names`."""
    for index, path in enumerate(files):
        try:
            with _parquet(fs, path) as reader:
                present = [n for n in names if n in reader.schema_arrow.names]
                # One row group at a time, then hand freed memory back: one reader over a whole file keeps
                # buffers of every row group it has read (apache/arrow#39808), and the allocator keeps the rest.
                for group in range(reader.num_row_groups):
                    for batch in reader.iter_batches(batch_size=BATCH_ROWS, row_groups=[group], columns=present):
                        yield index, _conform(batch, names)
                    pa.default_memory_pool().release_unused()
        except FileNotFoundError:  # compacted away by a job that lost its lease meanwhile: its rows moved on
            continue


def _names(columns: Iterable[str] | None, *needed: str) -> tuple[list[str], list[str]]:
    """(the columns asked for, those plus the ones a view needs to read)."""
    wanted = list(columns) if columns is not None else list(SCHEMA.names)
    unknown = [c for c in wanted if c not in SCHEMA.names]
    if unknown:
        raise ValueError(f"not manifest columns: {', '.join(unknown)}")
    return wanted, wanted + [n for n in needed if n not in wanted]


def _numpy(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(values.to_numpy(zero_copy_only=False) if isinstance(values, pa.Array) else values.to_numpy())


def _is_ok(rows: pa.RecordBatch | pa.Table) -> np.ndarray:
    return _numpy(pc.fill_null(pc.equal(rows.column("status"), "ok"), False))


def _permanent(kinds: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Whether each error kind is permanent (a rerun skips the input); a missing kind is, as it always was."""
    encoded = pc.fill_null(_strings(kinds), "").dictionary_encode()
    transient = np.array([is_transient(k) for k in encoded.dictionary.to_pylist()], dtype=bool)
    return ~transient[encoded.indices.to_numpy(zero_copy_only=False)] if len(transient) else \
        np.ones(len(kinds), dtype=bool)


# --- inputs as 128-bit hashes ---


def _strings(values) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        return values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if isinstance(values, pa.Array):
        return values
    return pa.array(values if isinstance(values, (list, np.ndarray)) else list(values), type=pa.string())


def _hashes(values) -> tuple[np.ndarray, np.ndarray]:
    """The two 64-bit halves of each value's 128-bit BLAKE2b digest; null hashes as ""."""
    binary = pc.fill_null(_strings(values).cast(pa.string()), "").cast(pa.binary())
    blake2b = hashlib.blake2b
    digests = b"".join([blake2b(v, digest_size=16).digest() for v in binary.to_numpy(zero_copy_only=False)])
    pairs = np.frombuffer(digests, dtype=np.uint64).reshape(-1, 2)
    return pairs[:, 0].copy(), pairs[:, 1].copy()


def _sorted_member(keys: np.ndarray, sorted_queries: np.ndarray) -> np.ndarray:
    if not len(keys):
        return np.zeros(len(sorted_queries), dtype=bool)
    at = np.minimum(np.searchsorted(keys, sorted_queries), len(keys) - 1)
    return keys[at] == sorted_queries


def _grow(array: np.ndarray, size: int) -> np.ndarray:
    """`array` resized to `size` values in place (realloc), so that no second copy is held at once."""
    if array.flags.owndata:
        array.resize(size, refcheck=False)
        return array
    grown = np.empty(size, dtype=array.dtype)
    grown[:min(len(array), size)] = array[:size]
    return grown


class _Hashes:
    """(hi, lo) pairs appended in order, 16 bytes a pair, in two growing uint64 arrays."""

    def __init__(self):
        self.hi, self.lo, self.size = np.empty(0, np.uint64), np.empty(0, np.uint64), 0

    def extend(self, hi: np.ndarray, lo: np.ndarray) -> None:
        end = self.size + len(hi)
        if end > len(self.hi):
            capacity = max(end, len(self.hi) + len(self.hi) // 8, 4096)  # resizing zero-fills: grow by little
            self.hi, self.lo = _grow(self.hi, capacity), _grow(self.lo, capacity)
        self.hi[self.size:end], self.lo[self.size:end] = hi, lo
        self.size = end

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        """The pairs, trimmed; this buffer starts empty again."""
        pairs = _grow(self.hi, self.size), _grow(self.lo, self.size)
        self.__init__()
        return pairs


class _HashSet:
    """A set of inputs as 128-bit hashes, 16 bytes a member, in sorted runs.

    Each run keeps its members' first halves and second halves in two separately sorted uint64 arrays: each sorts
    in place, and a value is a member when its first half is among the run's first halves and its second half
    among its second halves. A false match needs two independent 64-bit collisions at once: about
    n**2 * lookups / 2**128, never in practice. Added values wait in a buffer; a lookup sorts them into a new run
    and merges runs of similar size, so that n adds and lookups cost O(n log n).
    """

    def __init__(self, hi: np.ndarray | None = None, lo: np.ndarray | None = None):
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []
        self._buffer = _Hashes()
        if hi is not None:
            self._add_run(hi, lo)

    def __len__(self) -> int:
        return self._buffer.size + sum(len(h) for h, _ in self._runs)

    def add(self, hi: np.ndarray, lo: np.ndarray) -> None:
        self._buffer.extend(hi, lo)

    def _add_run(self, hi: np.ndarray, lo: np.ndarray) -> None:
        hi.sort()
        lo.sort()
        self._runs.append((hi, lo))

    def runs(self) -> list[tuple[np.ndarray, np.ndarray]]:
        if self._buffer.size:
            self._add_run(*self._buffer.take())
        while len(self._runs) > 1 and 2 * len(self._runs[-1][0]) >= len(self._runs[-2][0]):
            self._merge_last_two()
        return self._runs

    def _merge_last_two(self) -> None:
        (hi, lo), (new_hi, new_lo) = self._runs[-2], self._runs[-1]
        del self._runs[-2:]
        size = len(hi) + len(new_hi)
        hi, lo = _grow(hi, size), _grow(lo, size)
        hi[-len(new_hi):], lo[-len(new_lo):] = new_hi, new_lo
        del new_hi, new_lo
        self._add_run(hi, lo)

    def freeze(self) -> _HashSet:
        """One run: fastest lookups, for a set that is only looked up from now on."""
        self.runs()
        while len(self._runs) > 1:
            self._merge_last_two()
        return self

    def contains(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        return _in_any([self], hi, lo)


QUERY_ROWS = 1 << 16  # lookups sorted at a time: their sort costs ~40 bytes a query while it runs


def _in_any(sets: list[_HashSet], hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Whether each (hi, lo) is in any of `sets`; the queries are sorted once (QUERY_ROWS at a time), for every run
    of every set."""
    found = np.zeros(len(hi), dtype=bool)
    runs = [run for hashes in sets for run in hashes.runs()]
    if not len(hi) or not runs:
        return found
    for start in range(0, len(hi), QUERY_ROWS):
        block_hi, block_lo = hi[start:start + QUERY_ROWS], lo[start:start + QUERY_ROWS]
        hi_order, lo_order = np.argsort(block_hi), np.argsort(block_lo)
        sorted_hi, sorted_lo = block_hi[hi_order], block_lo[lo_order]
        in_hi, in_lo = np.empty(len(block_hi), dtype=bool), np.empty(len(block_lo), dtype=bool)
        block = found[start:start + QUERY_ROWS]  # a view: found is filled in place
        for run_hi, run_lo in runs:
            in_hi[hi_order] = _sorted_member(run_hi, sorted_hi)
            in_lo[lo_order] = _sorted_member(run_lo, sorted_lo)
            block |= in_hi & in_lo
    return found


class DoneSet:
    """The inputs a rerun skips: every input with an ok row, or with an error row of a permanent kind
    (i2a_core.errors.is_transient says which kinds are retried). 16 bytes an input, no strings."""

    def __init__(self, ok: _HashSet, permanent: _HashSet):
        self._ok, self._permanent = ok, permanent

    def __len__(self) -> int:
        """Rows that make an input done (an input written twice counts twice)."""
        return len(self._ok) + len(self._permanent)

    def contains(self, values) -> np.ndarray:
        """For a window of input strings (list, numpy or Arrow array), whether each is done."""
        return _in_any([self._ok, self._permanent], *_hashes(values))


class StringSet:
    """A set of strings (ids, keys) held as 128-bit hashes: 16 bytes a member, no Python strings.

    For a job's own bookkeeping over millions of items: which ids an output holds, which ids a plan has seen.
    """

    def __init__(self):
        self._hashes = _HashSet()

    def __len__(self) -> int:
        return len(self._hashes)

    def add(self, values) -> None:
        self._hashes.add(*_hashes(values))

    def contains(self, values) -> np.ndarray:
        """For a window of strings (list, numpy or Arrow array), whether each is a member."""
        return self._hashes.contains(*_hashes(values))

    def add_new(self, values) -> np.ndarray:
        """Add a window of strings; True where a value is new: not a member before, nor earlier in the window."""
        hi, lo = _hashes(values)
        new = _first_seen(hi, lo) & ~self._hashes.contains(hi, lo)
        self._hashes.add(hi[new], lo[new])
        return new


def _done_set(fs, files: list[str]) -> DoneSet:
    ok, permanent = _HashSet(), _HashSet()
    for _, batch in _batches(fs, files, ["input", "status", "error_kind"]):
        hi, lo = _hashes(batch.column("input"))
        is_ok = _is_ok(batch)
        final = ~is_ok & _permanent(batch.column("error_kind"))
        ok.add(hi[is_ok], lo[is_ok])
        permanent.add(hi[final], lo[final])
    return DoneSet(ok.freeze(), permanent.freeze())


def done_inputs(output: str) -> DoneSet:
    """What an earlier run finished (see DoneSet), reading only the input, status and error_kind columns."""
    fs, files = _files(output)
    return _done_set(fs, files)


# --- resolution: which of an input's rows counts ---


def _choose(hi: np.ndarray, lo: np.ndarray, is_ok: np.ndarray) -> np.ndarray:
    """Indices of the rows that count, ascending: each input's first ok row, else its last (newest) row."""
    n = len(hi)
    if not n:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((np.arange(n), lo, hi))
    h, low, ok = hi[order], lo[order], is_ok[order]
    start = np.ones(n, dtype=bool)
    start[1:] = (h[1:] != h[:-1]) | (low[1:] != low[:-1])
    group = np.cumsum(start) - 1
    end = np.ones(n, dtype=bool)
    end[:-1] = start[1:]
    ok_at = np.nonzero(ok)[0]
    ok_groups, first = np.unique(group[ok_at], return_index=True)
    has_ok = np.zeros(group[-1] + 1, dtype=bool)
    has_ok[ok_groups] = True
    chosen = np.concatenate([order[ok_at[first]], order[end & ~has_ok[group]]])
    chosen.sort()
    return chosen


def _first_seen(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Whether each row is its input's first in this batch."""
    keep = np.zeros(len(hi), dtype=bool)
    keep[_choose(hi, lo, np.ones(len(hi), dtype=bool))] = True
    return keep


def read(output: str) -> pa.Table:
    """Every input's row, exactly once, in commit order (the first ok row, else the newest error).

    The whole table in memory: for small outputs and tests. Large ones: ok_rows, failed_rows, counts.
    """
    fs, files = _files(output)
    batches = [batch for _, batch in _batches(fs, files, SCHEMA.names)]
    table = pa.Table.from_batches(batches, schema=SCHEMA)
    if not table.num_rows:
        return table
    hi, lo = _hashes(table.column("input"))
    chosen = _choose(hi, lo, _is_ok(table))
    return table if len(chosen) == table.num_rows else table.take(chosen)


def _repeats(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Positions (ascending) of the pairs that repeat an earlier pair. Rare: first-half collisions find them."""
    ordered = np.sort(hi)  # a copy: 8 bytes a pair, for a moment
    twice = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    del ordered
    if not len(twice):
        return np.zeros(0, dtype=np.int64)
    at = np.nonzero(_sorted_member(twice, hi))[0]
    return at[~_first_seen(hi[at], lo[at])]


class _Keys:
    """One pass over the input, status and error_kind columns: which ok rows repeat an input's earlier ok row
    (`repeats`), and which error rows are final, the newest error of an input with no ok row (`final`, with
    their `kinds`). Ok rows and error rows are each numbered in commit order from per-file offsets, so that a
    second pass over other columns picks the same rows out (a file that vanished in between shifts nothing).
    Memory: 16 bytes an ok row and 24 an error row, while it runs.
    """

    def __init__(self, fs, files: list[str], repeats: bool = True, final: bool = True):
        ok, errors = _Hashes(), _Hashes()
        kinds: list[pa.Array] = []
        self.ok_from: dict[int, int] = {}
        self.error_from: dict[int, int] = {}
        for index, batch in _batches(fs, files, ["input", "status", "error_kind"]):
            if index not in self.ok_from:
                self.ok_from[index], self.error_from[index] = ok.size, errors.size
            is_ok = _is_ok(batch)
            hi, lo = _hashes(batch.column("input"))
            ok.extend(hi[is_ok], lo[is_ok])
            if not is_ok.all():
                errors.extend(hi[~is_ok], lo[~is_ok])
                kinds.append(batch.column("error_kind").filter(pa.array(~is_ok)))
        ok_hi, ok_lo = ok.take()
        self.ok_rows = len(ok_hi)
        self.repeats = _repeats(ok_hi, ok_lo) if repeats else np.zeros(0, dtype=np.int64)
        self.final, self.kinds = np.zeros(0, dtype=np.int64), collections.Counter()
        if final:
            with_ok = _HashSet(ok_hi, ok_lo)  # sorts the arrays in place: commit order is gone from here on
            del ok_hi, ok_lo
            hi, lo = errors.take()
            open_ = np.nonzero(~with_ok.contains(hi, lo))[0]
            del with_ok
            if len(open_) < len(hi):
                hi, lo = hi[open_], lo[open_]
            # Each input's newest error: every row but those a later row repeats. Repeats are rare, so they are
            # found as _repeats finds them (one sorted copy of the first halves), not by sorting every row.
            older = len(open_) - 1 - _repeats(hi[::-1], lo[::-1])
            del hi, lo
            newest = np.delete(open_, older)
            self.final = newest
            if kinds:
                chosen = pa.chunked_array(kinds, type=pa.string()).take(pa.array(newest))
                counted = pc.value_counts(pc.fill_null(chosen, ""))  # in Arrow: no Python string per error row
                self.kinds = collections.Counter(dict(zip(counted.field("values").to_pylist(),
                                                          counted.field("counts").to_pylist(), strict=True)))


def _numbered(fs, files: list[str], names: list[str], first: dict[int, int], ok: bool,
              chosen: np.ndarray, drop: bool) -> Iterator[pa.RecordBatch]:
    """The ok (or error) rows, numbered as _Keys numbered them, without (drop) or with only the `chosen` ones."""
    number, seen_file = 0, -1
    for index, batch in _batches(fs, files, names):
        if index != seen_file:
            number, seen_file = first.get(index, number), index
        kind = _is_ok(batch) if ok else ~_is_ok(batch)
        count = int(kind.sum())
        if not count:
            continue
        picked = _sorted_member(chosen, np.arange(number, number + count))
        number += count
        keep = ~picked if drop else picked
        if keep.any():
            yield batch.filter(pa.array(kind)).filter(pa.array(keep))


def ok_rows(output: str, columns: Iterable[str] | None = None) -> Iterator[pa.RecordBatch]:
    """Each input's first ok row, in commit order, streamed in batches of `columns` (default: all)."""
    wanted, names = _names(columns, "status")
    fs, files = _files(output)
    keys = _Keys(fs, files, final=False)
    for batch in _numbered(fs, files, names, keys.ok_from, True, keys.repeats, drop=True):
        yield batch.select(wanted)


def failed_rows(output: str, columns: Iterable[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The final error row of each input with no ok row (its newest error), in commit order, streamed."""
    wanted, names = _names(columns, "status")
    fs, files = _files(output)
    keys = _Keys(fs, files, repeats=False)
    if len(keys.final):
        for batch in _numbered(fs, files, names, keys.error_from, False, keys.final, drop=False):
            yield batch.select(wanted)


def counts(output: str) -> dict:
    """{"ok": inputs with an ok row, "error": inputs without one, "error_kinds": {kind: inputs}}."""
    fs, files = _files(output)
    keys = _Keys(fs, files)
    return {"ok": keys.ok_rows - len(keys.repeats), "error": len(keys.final), "error_kinds": dict(keys.kinds)}


# --- compaction ---


def _temp_path(url: str) -> str:
    """Where to write `url`'s content before it is committed; local temp names match the job's stale-temp cleanup."""
    if storage.is_remote(url):
        handle, temp = tempfile.mkstemp(suffix=".tmp")
        os.close(handle)
        return temp
    path = storage.filesystem(url)[1]
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")


def _commit_temp(temp: str, url: str) -> None:
    """The temp file becomes `url` at once: a rename on disk, one upload to an object store."""
    fs, path = storage.filesystem(url)
    if storage.is_remote(url):
        fs.put_file(temp, path)
        os.remove(temp)
        return
    handle = os.open(temp, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
    os.replace(temp, path)


def _drop_temp(temp: str) -> None:
    if os.path.exists(temp):
        os.remove(temp)


@contextlib.contextmanager
def _local_file_for(url: str):
    """A local path to write `url`'s content to; committed when the block ends without an error."""
    temp = _temp_path(url)
    try:
        yield temp
        _commit_temp(temp, url)
    finally:
        _drop_temp(temp)


class _SegmentWriter:
    """Rows streamed into segment files of at most `rows_per_segment` rows, each committed whole when full."""

    def __init__(self, folder: str, rows_per_segment: int, after_ns: int, replaces: list[str]):
        self.folder, self.rows_per_segment, self._last_ns = folder, rows_per_segment, after_ns
        self.schema = SCHEMA.with_metadata({_REPLACES: "\n".join(replaces).encode()})
        self.rows = 0
        self._writer = None

    def write(self, table: pa.Table) -> None:
        while table.num_rows:
            if self._writer is None:
                name, self._last_ns = _unique_name("compacted", self._last_ns)
                self._url = storage.join(self.folder, name)
                self._temp = _temp_path(self._url)
                self._writer = pq.ParquetWriter(self._temp, self.schema, compression="zstd")
                self._count = 0
            take = min(table.num_rows, self.rows_per_segment - self._count)
            self._writer.write_table(table.slice(0, take))
            self._count += take
            self.rows += take
            table = table.slice(take)
            if self._count >= self.rows_per_segment:
                self._finish(commit=True)

    def _finish(self, commit: bool) -> None:
        self._writer.close()
        self._writer = None
        try:
            if commit:
                _commit_temp(self._temp, self._url)
        finally:
            _drop_temp(self._temp)

    def close(self) -> None:
        if self._writer is not None:
            self._finish(commit=self._count > 0)

    def abort(self) -> None:
        if self._writer is not None:
            self._finish(commit=False)


def _remove(fs, paths: list[str]) -> None:
    if not paths:
        return
    if not _is_local(fs):
        fs.rm(paths)  # one bulk request per thousand objects
        return
    for path in paths:
        try:
            fs.rm(path)
        except FileNotFoundError:  # removed by another compaction already
            pass


def _footer(fs, path: str) -> tuple[int, list[str]]:
    """(rows, the segments it replaced) from a segment's footer."""
    with _parquet(fs, path) as reader:
        replaced = (reader.schema_arrow.metadata or {}).get(_REPLACES, b"").decode()
        return reader.metadata.num_rows, [n for n in replaced.split("\n") if n]


def _groups(batches: Iterator[tuple[int, pa.RecordBatch]]) -> Iterator[pa.Table]:
    group, rows, size = [], 0, 0
    for _, batch in batches:
        group.append(batch)
        rows += batch.num_rows
        size += batch.nbytes
        if rows >= GROUP_ROWS or size >= GROUP_BYTES:
            yield pa.Table.from_batches(group).combine_chunks()
            group, rows, size = [], 0, 0
    if group:
        yield pa.Table.from_batches(group).combine_chunks()


def compact(output: str, rows_per_segment: int = SEGMENT_ROWS) -> int:
    """Merge the parts written since the last compaction into new segments; returns the rows they hold.

    Incremental and streaming: old segments are not read beyond the columns that say what they already hold
    (input, status, error_kind), and not rewritten, except newest ones under MIN_SEGMENT_ROWS, which are
    copied into the new segment first so that small reruns do not pile up files. Each new part row is kept
    unless its input already counts: a repeated ok row, or an error for an input that is done. Within the
    new rows, an input keeps its first ok row, else its newest error. New segments are committed before the
    parts (and small segments) they replace are deleted: a crash in between leaves rows twice, which every
    view and done_inputs resolve, and which the next compaction cleans up.
    """
    fs, parts = _part_paths(output)
    if not parts:
        return 0
    folder = directory(output)
    _, segments = _segment_paths(output)

    # 1. A crash between a compaction's commit and its deletions may have left the segments it merged: the
    #    newest segment names them. Then the newest small segments, to be merged again.
    if segments:
        _, replaced = _footer(fs, segments[-1])
        superseded = [s for s in segments if posixpath.basename(s) in replaced]
        _remove(fs, superseded)
        segments = [s for s in segments if s not in superseded]
    tail, tail_rows = [], 0
    for path in reversed(segments):
        rows, _ = _footer(fs, path)
        if tail_rows + rows >= min(MIN_SEGMENT_ROWS, rows_per_segment):  # the tail fits in the first new segment
            break
        tail.insert(0, path)
        tail_rows += rows

    # 2. What the segments hold already.
    state = _done_set(fs, segments)
    after_ns = max((int(_SEGMENT.match(posixpath.basename(s)).group(1)) for s in segments), default=0)
    writer = _SegmentWriter(folder, rows_per_segment, after_ns, [posixpath.basename(s) for s in tail])
    try:
        # 3. The small newest segments first, as they are (their rows are in `state`), then the new rows.
        for _, batch in _batches(fs, tail, SCHEMA.names):
            writer.write(pa.Table.from_batches([batch]))
        for group in _groups(_batches(fs, parts, SCHEMA.names)):
            hi, lo = _hashes(group.column("input"))
            is_ok = _is_ok(group)
            permanent = ~is_ok & _permanent(group.column("error_kind"))
            keep = np.zeros(len(hi), dtype=bool)
            keep[_choose(hi, lo, is_ok)] = True
            counted = state._ok.contains(hi, lo)
            keep &= ~np.where(is_ok, counted, counted | state._permanent.contains(hi, lo))
            writer.write(group.filter(pa.array(keep)))
            state._ok.add(hi[keep & is_ok], lo[keep & is_ok])
            state._permanent.add(hi[keep & permanent], lo[keep & permanent])
        writer.close()
    except BaseException:
        writer.abort()
        raise

    # 4. Only now what they replace.
    _remove(fs, tail)
    _remove(fs, parts)
    return writer.rows


# --- errors.csv ---

ERRORS_FILE = "errors.csv"  # beside manifest/: every failed input with its reason, for people and scripts
ERROR_COLUMNS = ["input", "error_kind", "error"]


def write_errors(output: str, first: int = 5) -> tuple[str, int, list[dict]]:
    """Stream OUTPUT/errors.csv (input, error_kind, error), one line per failed input, written atomically.

    Returns its path, how many failed, and the first `first` of them as dicts, for the console.
    """
    path = storage.join(output, ERRORS_FILE)
    count, shown = 0, []
    with _local_file_for(path) as temp, open(temp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(ERROR_COLUMNS)
        for batch in failed_rows(output, ERROR_COLUMNS):
            rows = list(zip(*(batch.column(c).to_pylist() for c in ERROR_COLUMNS), strict=True))
            writer.writerows(rows)
            if len(shown) < first:
                shown += [dict(zip(ERROR_COLUMNS, row, strict=True)) for row in rows[:first - len(shown)]]
            count += len(rows)
        f.flush()
    return path, count, shown
