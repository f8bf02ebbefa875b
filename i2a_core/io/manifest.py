"""The bulk job's Parquet manifest: one row per input, written in atomic parts, read back deduplicated."""

from __future__ import annotations

import io
import os
import time
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401
import pyarrow.parquet as pq

from i2a_core.errors import is_transient
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


def directory(output: str) -> str:
    return storage.join(output, MANIFEST_DIR)


PART_ROWS = 5000  # rows per committed part ...
PART_SECONDS = 60.0  # ... or what finished within this long, whichever comes first


class PartWriter:
    """Buffered, schema-checked Parquet parts: one atomic part per `rows_per_part` rows or `every_s` seconds."""

    def __init__(self, directory: str, schema: pa.Schema = SCHEMA, rows_per_part: int = PART_ROWS,
                 every_s: float = PART_SECONDS):
        self.directory, self.schema = directory, schema
        self.rows_per_part, self.every_s = rows_per_part, every_s
        self.buffer: list[pa.Table] = []
        self.buffered = 0
        self.oldest = 0.0
        self.written = 0

    def add(self, rows) -> int:
        if isinstance(rows, dict):
            rows = pa.table({f.name: pa.array(list(rows[f.name]) if f.name in rows else [None] * len(next(iter(rows.values()))),
                                              type=f.type) for f in self.schema})
        elif isinstance(rows, list):
            rows = pa.Table.from_pylist(rows, schema=self.schema)
        if not rows.num_rows:
            return 0
        if not self.buffered:
            self.oldest = time.monotonic()
        self.buffer.append(rows)
        self.buffered += rows.num_rows
        if self.buffered >= self.rows_per_part or time.monotonic() - self.oldest >= self.every_s:
            return self.flush()
        return 0

    def flush(self) -> int:
        if not self.buffered:
            return 0
        table = pa.concat_tables(self.buffer)
        if not storage.is_remote(self.directory):
            os.sync()  # the clips' files were written without fsync: the part that commits them comes after
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        storage.write_bytes_atomic(storage.join(self.directory, name), buffer.getvalue())
        written, self.buffer, self.buffered = table.num_rows, [], 0
        self.written += written
        return written

    close = flush


def write_part(output: str, rows: list[dict]) -> None:
    """Append rows as one new Parquet file, atomically: a killed job leaves whole parts or none."""
    if not rows:
        return
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    storage.write_bytes_atomic(storage.join(directory(output), f"part-{uuid.uuid4().hex}.parquet"),
                               buffer.getvalue())


def _part_paths(output: str) -> tuple[object, list[str]]:
    fs, path = storage.filesystem(directory(output))
    if not fs.exists(path):
        return fs, []
    fs.invalidate_cache(path)
    return fs, sorted(p for p in fs.ls(path, detail=False)
                      if p.rsplit("/", 1)[-1].startswith("part-") and p.endswith(".parquet"))


def read(output: str) -> pa.Table:
    """Every input's row, deduplicated: reruns and retried tasks may have written an input twice."""
    fs, parts = _part_paths(output)
    tables = []
    for part in parts:
        try:
            tables.append(_with_schema(pq.read_table(part, filesystem=fs)))
        except FileNotFoundError:  # compacted away by a job that lost its lease meanwhile: its rows moved on
            continue
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table()
    return _deduplicate(table)


def _with_schema(table: pa.Table) -> pa.Table:
    """A part in today's schema: parts written before a column existed get it empty."""
    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names
               else pa.nulls(table.num_rows, f.type) for f in SCHEMA]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def _deduplicate(table: pa.Table) -> pa.Table:
    """One row per input: an ok row if there is one, else the latest error (a retried transient failure)."""
    inputs, statuses = table.column("input").to_pylist(), table.column("status").to_pylist()
    finished = table.column("finished_at").to_pylist()
    chosen: dict[str, int] = {}
    for i, (source, status) in enumerate(zip(inputs, statuses)):
        kept = chosen.get(source)
        if kept is None or (statuses[kept] != "ok" and (status == "ok" or finished[i] > finished[kept])):
            chosen[source] = i
    if len(chosen) == len(inputs):
        return table
    return table.take(sorted(chosen.values()))


def compact(output: str) -> pa.Table:
    """Merge all parts into one deduplicated file and return it.

    The merged file is written before the old parts are deleted; a crash in between leaves rows twice,
    which `read` (and the next compaction) resolves.
    """
    fs, parts = _part_paths(output)
    table = read(output)
    if len(parts) > 1:
        write_part(output, table.to_pylist())
        for part in parts:
            try:
                fs.rm(part)
            except FileNotFoundError:  # removed by another compaction already
                pass
    return table


ERRORS_FILE = "errors.csv"  # beside manifest/: every failed input with its reason, for people and scripts


def write_errors(output: str) -> tuple[str, int, list[dict]]:
    """Write OUTPUT/errors.csv (input, error_kind, error) for every failed input; returns its path, the count
    and the first few rows."""
    import csv

    failed = [row for batch in failed_rows(output, ["input", "error_kind", "error"]) for row in batch.to_pylist()]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["input", "error_kind", "error"])
    writer.writeheader()
    writer.writerows(failed)
    path = storage.join(output, ERRORS_FILE)
    storage.write_text_atomic(path, buffer.getvalue())
    return path, len(failed), failed[:100]


# --- interim API (the manifest branch replaces these with bounded-memory versions) ---


class _DoneSet:
    def __init__(self, done: set):
        self.done = done

    def contains(self, values) -> np.ndarray:
        values = values.to_pylist() if hasattr(values, "to_pylist") else list(values)
        return np.array([v in self.done for v in values], bool)


def done_inputs(output: str) -> _DoneSet:
    """Inputs a rerun skips: every ok row, and errors that would recur (bad files, 404s)."""
    table = read(output)
    return _DoneSet({source for source, status, kind in zip(table.column("input").to_pylist(),
                                                            table.column("status").to_pylist(),
                                                            table.column("error_kind").to_pylist())
                     if status == "ok" or not is_transient(kind or "")})


def ok_rows(output: str, columns: list[str] | None = None):
    table = read(output)
    table = table.filter(pa.compute.equal(table.column("status"), "ok"))
    yield from (table.select(columns) if columns else table).to_batches()


def failed_rows(output: str, columns: list[str] | None = None):
    table = read(output)
    table = table.filter(pa.compute.not_equal(table.column("status"), "ok"))
    yield from (table.select(columns) if columns else table).to_batches()
