"""The manifest: parts sized by rows and time, incremental compaction, resume in bounded memory, views exactly once,
outputs written before segments existed."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from i2a_core.io import manifest, storage

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLANK = {name: None for name in manifest.SCHEMA.names}
WHEN = pd.Timestamp("2026-12-01", tz="UTC")


def ok(source: str, **fields) -> dict:
    return {**BLANK, "input": source, "status": "ok", "output": f"audio/{source}.wav", "error": "", "error_kind": "",
            "seed": 1, "finished_at": WHEN, **fields}


def failed(source: str, kind: str, **fields) -> dict:
    return {**BLANK, "input": source, "status": "error", "output": "", "error": f"{source}: {kind}",
            "error_kind": kind, "finished_at": WHEN, **fields}


def files(output: str, prefix: str = "") -> list[str]:
    folder = manifest.directory(output)
    return sorted(n for n in os.listdir(folder) if n.startswith(prefix) and not n.startswith("."))


def raw(output: str) -> pa.Table:
    """Every row of every manifest file, as a user reading the folder sees them."""
    return pq.read_table(manifest.directory(output))


def view(output: str) -> dict:
    """Everything the views say, as plain data."""
    ok_inputs = [r["input"] for b in manifest.ok_rows(output, ["input"]) for r in b.to_pylist()]
    failures = [(r["input"], r["error_kind"], r["error"])
                for b in manifest.failed_rows(output, ["input", "error_kind", "error"]) for r in b.to_pylist()]
    table = manifest.read(output)
    return {"ok": ok_inputs, "failed": failures, "counts": manifest.counts(output),
            "read": list(zip(table.column("input").to_pylist(), table.column("status").to_pylist(),
                             table.column("error").to_pylist(), strict=True))}


# --- PartWriter ---


def test_part_writer_commits_parts_by_rows_and_by_time_in_commit_order(tmp_path):
    folder = str(tmp_path / "parts")
    writer = manifest.PartWriter(folder, manifest.SCHEMA, rows_per_part=3, every_s=3600)
    assert writer.add([ok("a"), ok("b")]) == 0 and not os.path.exists(folder)  # buffered, not committed
    assert writer.add([ok("c"), ok("d")]) == 4  # 4 >= 3: one part with all four
    assert writer.add(pa.Table.from_pylist([ok("e")], schema=manifest.SCHEMA)) == 0
    writer.every_s = 0.05
    time.sleep(0.1)
    assert writer.add([]) == 1  # the oldest buffered row waited long enough: the clock alone commits
    with writer:
        writer.add(pa.RecordBatch.from_pylist([ok("f")], schema=manifest.SCHEMA))
    assert writer.written == 6
    names = sorted(os.listdir(folder))
    assert len(names) == 3 and all(manifest._NEW_PART.match(n) for n in names)
    assert [pq.read_table(os.path.join(folder, n)).column("input").to_pylist() for n in names] == \
        [["a", "b", "c", "d"], ["e"], ["f"]]  # names sort in commit order


def test_part_writer_checks_rows_against_its_schema_and_is_generic(tmp_path):
    schema = pa.schema([("id", pa.string()), ("clip", pa.list_(pa.float32()))])
    writer = manifest.PartWriter(str(tmp_path), schema, rows_per_part=1)
    with pytest.raises(ValueError, match="columns not in the schema: cilp"):
        writer.add([{"id": "x", "cilp": [1.0]}])
    with pytest.raises(ValueError, match="columns not in the schema: extra"):
        writer.add(pa.table({"id": ["x"], "extra": [1]}))
    assert writer.add(pa.table({"id": ["x"]})) == 1  # a missing column is null
    assert writer.add([{"id": "y", "clip": [0.5, 2]}]) == 1  # values cast to the schema's types
    table = pq.read_table(str(tmp_path))
    assert table.schema == schema and table.to_pylist() == [{"id": "x", "clip": None}, {"id": "y", "clip": [0.5, 2.0]}]


def test_part_writer_converts_numpy_batches_in_bulk_in_the_order_rows_came(tmp_path, monkeypatch):
    monkeypatch.setattr(manifest, "CONVERT_ROWS", 5)  # numpy batches wait until 5 rows, then become one table

    def batch(*names: str, seed: bool = True) -> dict:  # the runner's numpy batches, as WriteClips makes them
        rows = {"input": np.array(names, dtype=object), "status": np.array(["ok"] * len(names), dtype=object),
                "captions": np.array([[f"{n} sound"] for n in names] + [None], dtype=object)[:-1]}
        return {**rows, "seed": np.arange(len(names), dtype=np.int64)} if seed else rows

    folder = str(tmp_path / "parts")
    writer = manifest.PartWriter(folder, manifest.SCHEMA, rows_per_part=9, every_s=3600)
    with pytest.raises(ValueError, match="columns not in the schema: sead"):
        writer.add({"input": np.array(["x"], dtype=object), "sead": np.array([1])})  # at add, not at conversion
    assert writer.add(batch("a", "b")) == 0 and writer.add(batch("c", seed=False)) == 0  # other columns: own run
    assert writer.add([ok("d")]) == 0  # a table: the numpy rows before it go first
    assert writer.add(batch("e", "f", "g")) == 0 and writer._batches  # 3 rows: not converted yet
    assert writer.add(batch("h", "i")) == 9  # 9 rows buffered in all: one part, in the order they came
    assert writer.add(batch("j")) == 0
    assert writer.flush() == 1
    table = pq.read_table(folder)
    assert table.column("input").to_pylist() == list("abcdefghij")
    assert table.column("seed").to_pylist() == [0, 1, None, 1, 0, 1, 2, 0, 1, 0]
    assert table.column("captions").to_pylist()[:3] == [["a sound"], ["b sound"], ["c sound"]]
    assert len(os.listdir(folder)) == 2 and writer.written == 10


# --- compaction ---


def test_compaction_merges_only_new_parts_into_segments_and_never_rewrites_old_ones(tmp_path, monkeypatch):
    output = str(tmp_path)
    monkeypatch.setattr(manifest, "MIN_SEGMENT_ROWS", 3)  # segments of 3 rows or more are final
    for start in range(0, 6, 2):
        manifest.write_part(output, [ok(f"in{start}"), ok(f"in{start + 1}")])
    assert manifest.compact(output, rows_per_segment=4) == 6
    first = files(output)
    assert [n.split("-")[0] for n in first] == ["compacted", "compacted"] and raw(output).num_rows == 6  # 4 + 2
    stamps = {n: os.stat(os.path.join(manifest.directory(output), n)).st_mtime_ns for n in first}

    manifest.write_part(output, [ok("in6"), ok("in0")])  # in0 again: a redone batch
    assert manifest.compact(output, rows_per_segment=4) == 3  # the 2-row segment again, then in6
    second = files(output)
    assert first[0] in second and first[1] not in second and len(second) == 2
    assert os.stat(os.path.join(manifest.directory(output), first[0])).st_mtime_ns == stamps[first[0]]
    assert raw(output).column("input").to_pylist() == [f"in{i}" for i in range(7)]  # once each, in commit order

    assert manifest.compact(output) == 0 and files(output) == second  # nothing new: nothing read or written


def test_the_layout_is_read_by_pyarrow_dataset_and_pandas_and_resolves_written_twice(tmp_path):
    output = str(tmp_path)
    manifest.write_part(output, [failed("a", "timeout"), ok("b")])
    manifest.write_part(output, [ok("a"), ok("b")])  # a retried task wrote its part again
    manifest.compact(output)
    manifest.write_part(output, [ok("c")])  # a part not compacted yet
    assert sorted(ds.dataset(manifest.directory(output)).to_table().column("input").to_pylist()) == ["a", "b", "c"]
    frame = pd.read_parquet(manifest.directory(output))
    assert sorted(zip(frame["input"], frame["status"], strict=True)) == [("a", "ok"), ("b", "ok"), ("c", "ok")]


def test_compaction_tolerates_parts_that_vanish_under_it(tmp_path, monkeypatch):
    """A job that lost its lease may compact the same parts meanwhile."""
    output = str(tmp_path)
    manifest.write_part(output, [ok("/x.png")])
    manifest.write_part(output, [ok("/y.png")])
    listed = manifest._part_paths

    def with_a_vanished_part(out):
        fs, parts = listed(out)
        return fs, parts + [parts[0].replace("part-", "part-gone")]

    monkeypatch.setattr(manifest, "_part_paths", with_a_vanished_part)
    manifest.compact(output)
    monkeypatch.undo()
    assert sorted(manifest.read(output).column("input").to_pylist()) == ["/x.png", "/y.png"]


# --- exactly once ---


def write_history(output: str) -> None:
    """Three runs' worth of parts: duplicates, retried transient errors, permanent ones."""
    manifest.write_part(output, [ok("a"), failed("b", "timeout"), failed("c", "not_image"), failed("d", "http_503")])
    manifest.write_part(output, [ok("a"), failed("b", "timeout")])  # the same batch written twice
    manifest.write_part(output, [ok("b"), failed("d", "host_unreachable"), failed("e", "timeout")])  # a rerun
    manifest.write_part(output, [ok("b", output="audio/b-again.wav"), failed("e", "http_404")])  # and another


EXPECTED = {
    "ok": ["a", "b"],
    "failed": [("c", "not_image", "c: not_image"), ("d", "host_unreachable", "d: host_unreachable"),
               ("e", "http_404", "e: http_404")],
    "counts": {"ok": 2, "error": 3, "error_kinds": {"not_image": 1, "host_unreachable": 1, "http_404": 1}},
    "read": [("a", "ok", ""), ("c", "error", "c: not_image"), ("b", "ok", ""),
             ("d", "error", "d: host_unreachable"), ("e", "error", "e: http_404")],
}


def test_views_and_resume_are_exactly_once_over_duplicates_and_retries(tmp_path):
    output = str(tmp_path)
    write_history(output)
    assert view(output) == EXPECTED  # from parts alone
    done = manifest.done_inputs(output)
    # a, b ok; c not_image and e http_404 are permanent; d only ever failed transiently
    assert done.contains(["a", "b", "c", "d", "e", "f"]).tolist() == [True, True, True, False, True, False]
    [b_row] = [r for r in manifest.read(output).to_pylist() if r["input"] == "b"]
    assert b_row["output"] == "audio/b.wav"  # the first ok row wins

    manifest.compact(output)
    assert view(output) == EXPECTED
    assert manifest.done_inputs(output).contains(["a", "b", "c", "d", "e", "f"]).tolist() == \
        [True, True, True, False, True, False]
    assert raw(output).column("input").to_pylist() == ["a", "c", "b", "d", "e"]  # one row each, as read() says

    manifest.write_part(output, [ok("a"), ok("d")])  # a redone batch; d finally works
    manifest.compact(output)
    manifest.write_part(output, [failed("e", "timeout"), failed("g", "http_404")])
    assert manifest.counts(output) == {"ok": 3, "error": 3, "error_kinds": {"not_image": 1, "timeout": 1,
                                                                            "http_404": 1}}
    assert raw(output).column("input").to_pylist().count("a") == 1

    # What docs/bulk-sonify.md tells pandas users to do gives the same: file names sort in commit order.
    rows = pd.read_parquet(manifest.directory(output))
    ok_rows = rows[rows.status == "ok"].drop_duplicates("input")
    failures = rows[~rows.input.isin(ok_rows.input)].drop_duplicates("input", keep="last")
    assert ok_rows.input.tolist() == view(output)["ok"] == ["a", "b", "d"]
    assert list(zip(failures.input, failures.error_kind, strict=True)) == \
        [(i, k) for i, k, _ in view(output)["failed"]] == [("c", "not_image"), ("e", "timeout"), ("g", "http_404")]


def test_a_crash_between_a_segments_commit_and_the_deletions_stays_exactly_once(tmp_path, monkeypatch):
    output = str(tmp_path)
    write_history(output)
    manifest.compact(output)  # one small segment: the next compaction merges it again
    manifest.write_part(output, [ok("f")])

    def crash(fs, paths):
        if paths:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(manifest, "_remove", crash)
    with pytest.raises(KeyboardInterrupt):
        manifest.compact(output)
    monkeypatch.undo()
    assert len(files(output, "compacted-")) == 2 and len(files(output, "part-")) == 1  # rows are there twice
    expected = {**EXPECTED, "ok": ["a", "b", "f"], "read": [*EXPECTED["read"], ("f", "ok", "")],
                "counts": {**EXPECTED["counts"], "ok": 3}}
    seen = view(output)
    assert {**seen, "read": sorted(seen["read"])} == {**expected, "read": sorted(expected["read"])}
    assert manifest.done_inputs(output).contains(["f", "d"]).tolist() == [True, False]

    manifest.write_part(output, [ok("g")])
    manifest.compact(output)  # removes the segment the crashed compaction had merged, merges the parts once
    assert len(files(output, "compacted-")) == 1 and not files(output, "part-")
    assert raw(output).column("input").to_pylist().count("f") == 1
    assert view(output) == {**expected, "ok": ["a", "b", "f", "g"], "read": [*expected["read"], ("g", "ok", "")],
                            "counts": {**expected["counts"], "ok": 4}}


def test_write_errors_streams_every_failed_input_and_returns_the_first(tmp_path):
    output = str(tmp_path)
    write_history(output)
    manifest.write_part(output, [failed(f"x{i:03d}", "http_404") for i in range(100)])
    path, count, first = manifest.write_errors(output, first=2)
    assert path == os.path.join(output, manifest.ERRORS_FILE) and count == 103
    assert first == [{"input": "c", "error_kind": "not_image", "error": "c: not_image"},
                     {"input": "d", "error_kind": "host_unreachable", "error": "d: host_unreachable"}]
    with open(path, newline="") as f:
        lines = list(csv.reader(f))
    assert lines[0] == ["input", "error_kind", "error"] and len(lines) == 104 and lines[-1][0] == "x099"
    assert not [n for n in os.listdir(output) if n.endswith(".tmp")]


def test_the_hash_set_agrees_with_a_python_set():
    rng = np.random.default_rng(0)
    members = _HashSetModel()
    for round_ in range(40):  # many adds of different sizes: runs are merged as they grow
        values = [f"v{x}" for x in rng.integers(0, 5000, int(rng.integers(0, 300)))]
        members.add(values)
        probe = [f"v{x}" for x in rng.integers(0, 6000, 200)]
        assert members.contains(probe) == [p in members.model for p in probe], round_
    members.hashes.freeze()
    probe = [f"v{x}" for x in range(6000)]
    assert members.contains(probe) == [p in members.model for p in probe]


class _HashSetModel:
    def __init__(self):
        self.hashes, self.model = manifest._HashSet(), set()

    def add(self, values):
        self.hashes.add(*manifest._hashes(values))
        self.model.update(values)

    def contains(self, values) -> list[bool]:
        return self.hashes.contains(*manifest._hashes(values)).tolist()


# --- outputs written before segments ---

# The manifest before issue 17 wrote one `part-<uuid hex>.parquet` per batch, and an even older one lacked the
# warning, captions and explanation columns, or error_kind too. Its compaction wrote one such part with everything.
OLDER_SCHEMA = pa.schema([f for f in manifest.SCHEMA if f.name not in ("warning", "captions", "explanation")])
OLDEST_SCHEMA = pa.schema([f for f in OLDER_SCHEMA if f.name != "error_kind"])


def write_old_part(output: str, rows: list[dict], schema: pa.Schema) -> None:
    table = pa.Table.from_pylist([{k: v for k, v in r.items() if k in schema.names} for r in rows], schema=schema)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    storage.write_bytes_atomic(os.path.join(manifest.directory(output), f"part-{uuid.uuid4().hex}.parquet"),
                               buffer.getvalue())


def test_outputs_from_before_segments_still_resume_and_read(tmp_path):
    output = str(tmp_path)
    write_old_part(output, [ok("a"), failed("b", "not_image"), failed("c", "timeout")], manifest.SCHEMA)
    write_old_part(output, [{**failed("d", "x"), "error_kind": None}], OLDEST_SCHEMA)  # no kind: permanent
    write_old_part(output, [ok("e"), ok("a")], OLDER_SCHEMA)
    done = manifest.done_inputs(output)
    assert done.contains(["a", "b", "c", "d", "e"]).tolist() == [True, True, False, True, True]
    table = manifest.read(output)
    assert sorted(table.column("input").to_pylist()) == ["a", "b", "c", "d", "e"]
    assert table.schema == manifest.SCHEMA

    manifest.write_part(output, [ok("c")])  # a rerun with this version
    assert manifest.compact(output) == 5
    assert files(output) and all(n.startswith("compacted-") for n in files(output))
    assert manifest.counts(output) == {"ok": 3, "error": 2, "error_kinds": {"not_image": 1, "": 1}}
    assert pd.read_parquet(manifest.directory(output))["input"].tolist().count("a") == 1


def test_the_manifest_on_s3(s3_bucket):
    output = f"{s3_bucket}/out"
    write_history(output)
    manifest.compact(output)
    manifest.write_part(output, [ok("f")])
    assert view(output) == {**EXPECTED, "ok": ["a", "b", "f"], "read": [*EXPECTED["read"], ("f", "ok", "")],
                            "counts": {**EXPECTED["counts"], "ok": 3}}
    manifest.compact(output)
    fs, path = storage.filesystem(manifest.directory(output))
    assert [p.rsplit("/", 1)[-1].split("-")[0] for p in fs.ls(path)] == ["compacted"]
    _, count, _ = manifest.write_errors(output)
    assert count == 3 and "d,host_unreachable" in storage.read_text(f"{output}/errors.csv")


# --- bounded memory ---

PEAK = """
import json, sys
from i2a_core.io import manifest
def high_water():
    return next(int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
output, step = sys.argv[1], sys.argv[2]
manifest.read  # imports done
before = high_water()
if step == "compact":
    manifest.compact(output)
else:
    done = manifest.done_inputs(output)
    assert done.contains(["https://example.com/0"]).all()
print(json.dumps({"peak": high_water(), "grown": high_water() - before}))
"""


def _synthetic(output: str, rows: int) -> None:
    writer = manifest.PartWriter(manifest.directory(output), manifest.SCHEMA, rows_per_part=50_000)
    for start in range(0, rows, 50_000):
        index = np.arange(start, min(rows, start + 50_000))
        inputs = [f"https://example.com/{i}" for i in index]
        writer.add(pa.table({"input": inputs, "status": np.where(index % 50 == 1, "error", "ok"),
                             "error_kind": np.where(index % 50 == 1, "http_404", ""),
                             "output": [f"audio/{i}.wav" for i in index]}))
    writer.close()


def _peak(output: str, step: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PEAK, output, step], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": REPO}, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_compaction_and_resume_memory_does_not_grow_with_the_manifest(tmp_path):
    """1M rows against 100k: the old compaction held 1.7-2.8 KB a row (1.5-2.5 GB more here); now 16 bytes."""
    peaks = {}
    for rows in (100_000, 1_000_000):
        output = str(tmp_path / str(rows))
        _synthetic(output, rows)
        peaks[rows] = {step: _peak(output, step) for step in ("compact", "done_inputs")}
    for step in ("compact", "done_inputs"):
        small, large = peaks[100_000][step]["peak"], peaks[1_000_000][step]["peak"]
        assert large - small < 48, (step, peaks)  # MB; 900k more rows at 16 bytes are 14 MB
    print(peaks)
