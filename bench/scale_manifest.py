"""The manifest at web scale: synthetic manifests written through i2a's PartWriter, then compaction, resume and the
views, each timed in a fresh process with its peak memory; and the code before issue 17 at the sizes it can handle.

    python bench/scale_manifest.py                                   # 1M and 10M rows
    python bench/scale_manifest.py --rows 100000 1000000 --old-rows 10000 50000

Rows are realistic: URLs of about 80 characters, 3% errors (1% transient), 0.5% of parts written twice (a batch
redone after its node was lost). Each size gets its own folder, deleted afterwards; 10M rows need about 2 GB.
Figures are seconds and peak resident MB of the process (`peak`; `grown`: above the same process just before the
step, after its imports), each with its ratio to the smallest size. The no-op resume is done_inputs plus the
membership check of every input, in windows of 100k, as a rerun of the same inputs does it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from i2a_core.errors import is_transient
from i2a_core.io import manifest

OLD_COMMIT = "41ca35cfe53177aab8b5844726abe1d335bd8ec9"  # the manifest before issue 17: one part per batch, dicts
OLD_BATCH = 4  # the old job wrote one part per 4-clip batch
WINDOW = 100_000  # inputs checked at a time by the no-op resume
CHUNK = 5_000  # rows handed to the writer at a time (one committed batch of the job)
HOSTS = ["images.example-cdn.net", "upload.wikimedia.example.org", "photos.static-host.example.com",
         "farm5.staticflickr.example.com", "i.pinimg.example.com"]
ERRORS = [("http_404", 0.012), ("not_image", 0.008), ("timeout", 0.006), ("http_503", 0.004)]  # 3%, 1% transient
GALLERY_COLUMNS = ["input", "output", "thumbnail", "spectrogram", "captions", "explanation"]
STEPS = ("compact", "compact_noop", "done_inputs", "noop_resume", "ok_rows", "failed_rows", "counts", "write_errors")


def _text(values) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def inputs(start: int, count: int) -> pa.Array:
    """The input URLs of rows start..start+count: deterministic, about 80 characters."""
    index = np.arange(start, start + count, dtype=np.uint64)
    mixed = (index * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(30)
    host = pa.array(HOSTS).take(pa.array((mixed % np.uint64(len(HOSTS))).astype(np.int64)))
    return pc.binary_join_element_wise("https://", host, "/photos/", _text(mixed % np.uint64(10**10)), "/",
                                       _text(index), "-", _text((mixed >> np.uint64(7)) % np.uint64(10**9)),
                                       ".jpg", "")


def synthetic_rows(start: int, count: int) -> pa.Table:
    """Manifest rows as the sonify job writes them."""
    rng = np.random.default_rng(start)
    source = inputs(start, count)
    draw = rng.random(count)
    kinds = np.full(count, "", dtype=object)
    edge = 0.0
    for kind, share in ERRORS:
        kinds[(draw >= edge) & (draw < edge + share)] = kind
        edge += share
    failed = pa.array(kinds != "")
    key = pc.utf8_slice_codeunits(source, 8)
    blank = pa.array([""] * count)
    stamp = np.datetime64("2026-12-01T00:00:00", "ms") + np.arange(start, start + count).astype("timedelta64[ms]")
    columns = {
        "input": source,
        "output": pc.if_else(failed, blank, pc.binary_join_element_wise("audio/", key, ".wav", "")),
        "status": pc.if_else(failed, "error", "ok"),
        "error": pc.if_else(failed, pc.binary_join_element_wise(source, ": ", pa.array(kinds.tolist()), ""), blank),
        "error_kind": pa.array(kinds.tolist(), pa.string()),
        "warning": blank,
        "thumbnail": pc.if_else(failed, blank, pc.binary_join_element_wise("thumbs/", key, ".jpg", "")),
        "spectrogram": pc.if_else(failed, blank, pc.binary_join_element_wise("spectrograms/", key, ".png", "")),
        "translator": pa.array(["/models/translators/mlp-512-wit"] * count),
        "seed": pa.array(rng.integers(0, 2**31, count)),
        "scheduler": pa.array(["dpm++"] * count),
        "steps": pa.array(np.full(count, 20, np.int32)),
        "guidance": pa.array(np.full(count, 2.5, np.float32)),
        "duration": pa.array(np.full(count, 10.0, np.float32)),
        "sample_rate": pa.array(np.full(count, 16000, np.int32)),
        **{name: pa.array(rng.random(count).astype(np.float32))
           for name in ("read_s", "decode_s", "encode_s", "generate_s", "write_s")},
        "captions": pa.nulls(count, pa.list_(pa.string())),
        "explanation": blank,
        "finished_at": pa.array(stamp, pa.timestamp("ms", tz="UTC")),
        "modality": pa.array(["image"] * count),
        "image": source,
    }
    return pa.table({name: columns[name] for name in manifest.SCHEMA.names}, schema=manifest.SCHEMA)


def write_manifest(output: str, rows: int) -> dict:
    """rows rows through PartWriter in the job's way; every 200th batch is written twice (0.5% duplicates)."""
    started = time.perf_counter()
    writer = manifest.PartWriter(manifest.directory(output), manifest.SCHEMA)
    for number, start in enumerate(range(0, rows, CHUNK)):
        table = synthetic_rows(start, min(CHUNK, rows - start))
        writer.add(table)
        if number % 200 == 199:
            writer.add(table)
    writer.close()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows_written": writer.written, "rows_per_s": writer.written / seconds}


# --- the code before issue 17, from git ---


def old_manifest() -> types.ModuleType:
    source = subprocess.run(["git", "-C", REPO, "show", f"{OLD_COMMIT}:i2a_core/io/manifest.py"],
                            capture_output=True, text=True, check=True).stdout
    module = types.ModuleType("old_manifest")
    exec(compile(source, "old_manifest.py", "exec"), module.__dict__)
    return module


def old_finished_inputs(rows) -> set[str]:
    """The resume of jobs/sonify.py before issue 17: a Python set of every finished input."""
    kinds = rows.column("error_kind").to_pylist()
    statuses = rows.column("status").to_pylist()
    return {row_input for row_input, status, kind in zip(rows.column("input").to_pylist(), statuses, kinds,
                                                         strict=True)
            if status == "ok" or not is_transient(kind)}


def write_old_compacted(output: str, rows: int) -> dict:
    """What the old code's compaction left after a run: every row in one `part-<uuid hex>.parquet`."""
    import uuid

    import pyarrow.parquet as pq

    started = time.perf_counter()
    path = os.path.join(manifest.directory(output), f"part-{uuid.uuid4().hex}.parquet")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with pq.ParquetWriter(path, manifest.SCHEMA) as writer:
        for start in range(0, rows, CHUNK * 20):
            writer.write_table(synthetic_rows(start, min(CHUNK * 20, rows - start)))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows_written": rows, "rows_per_s": rows / seconds}


def write_old_manifest(output: str, rows: int) -> dict:
    """The old layout: one part per 4-row batch, written by the old code."""
    old = old_manifest()
    started = time.perf_counter()
    for start in range(0, rows, CHUNK):
        table = synthetic_rows(start, min(CHUNK, rows - start))
        for at in range(0, table.num_rows, OLD_BATCH):
            old.write_part(output, table.slice(at, OLD_BATCH).to_pylist())
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows_written": rows, "rows_per_s": rows / seconds}


# --- one step in this process ---


def _noop_resume(output: str, rows: int) -> int:
    manifest.compact(output)
    done = manifest.done_inputs(output)
    return sum(int(done.contains(inputs(start, min(WINDOW, rows - start))).sum()) for start in range(0, rows, WINDOW))


def _old_resume(output: str, rows: int) -> int:
    old = old_manifest()
    done = old_finished_inputs(old.compact(output))
    return sum(sum(1 for x in inputs(start, min(WINDOW, rows - start)).to_pylist() if x in done)
               for start in range(0, rows, WINDOW))


def _rows(batches) -> int:
    return sum(batch.num_rows for batch in batches)


STEP_FUNCTIONS = {
    "compact": lambda output, rows: manifest.compact(output),
    "compact_noop": lambda output, rows: manifest.compact(output),
    "done_inputs": lambda output, rows: len(manifest.done_inputs(output)),
    "noop_resume": _noop_resume,
    "ok_rows": lambda output, rows: _rows(manifest.ok_rows(output, GALLERY_COLUMNS)),
    "failed_rows": lambda output, rows: _rows(manifest.failed_rows(output, manifest.ERROR_COLUMNS)),
    "counts": lambda output, rows: manifest.counts(output)["ok"],
    "write_errors": lambda output, rows: manifest.write_errors(output)[1],
    "old_compact": lambda output, rows: old_manifest().compact(output).num_rows,
    "old_resume": _old_resume,
}


def _high_water_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _measure_here(step: str, output: str, rows: int) -> dict:
    before = _high_water_mb()
    started = time.perf_counter()
    result = STEP_FUNCTIONS[step](output, rows)
    return {"seconds": time.perf_counter() - started, "peak_mb": _high_water_mb(),
            "grown_mb": _high_water_mb() - before, "result": result}


def measure(step: str, output: str, rows: int) -> dict:
    """One step in a fresh process: its seconds, its peak memory, what it returned."""
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--measure", step, output, str(rows)],
                          capture_output=True, text=True)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the bench ---


def _ratios(by_size: dict, steps) -> None:
    smallest = min(by_size)
    for figures in by_size.values():
        for step in steps:
            here, base = figures.get(step, {}), by_size[smallest].get(step, {})
            if "seconds" in here and "seconds" in base:
                here["seconds_ratio"] = here["seconds"] / max(base["seconds"], 1e-9)
                here["peak_ratio"] = here["peak_mb"] / base["peak_mb"]


def run(rows=(1_000_000, 10_000_000), old_rows=(10_000, 50_000), old_resume_rows=(100_000, 1_000_000),
        folder: str | None = None, log=print) -> dict:
    """Write, compact, resume and read synthetic manifests of each size in `rows`. The code before: its
    end-of-run compaction of one part per 4-row batch at `old_rows`, and its no-op resume over one compacted
    part (what its runs left) at `old_resume_rows`."""
    results = {"new": {}, "old": {}, "old_resume": {}}
    root = tempfile.mkdtemp(prefix="i2a-scale-manifest-", dir=folder)
    try:
        for size in sorted(rows):
            output = os.path.join(root, f"new-{size}")
            figures = results["new"][size] = {"write": write_manifest(output, size)}
            log(f"{size:,} rows written in {figures['write']['seconds']:.1f} s")
            for step in STEPS:
                figures[step] = measure(step, output, size)
                log(f"  {step}: {_line(figures[step])}")
            shutil.rmtree(output, ignore_errors=True)
        for size in sorted(old_rows):
            output = os.path.join(root, f"old-{size}")
            figures = results["old"][size] = {"write": write_old_manifest(output, size)}
            log(f"{size:,} rows in the old layout written in {figures['write']['seconds']:.1f} s (code before)")
            for step in ("old_compact", "old_resume"):
                figures[step] = measure(step, output, size)
                log(f"  {step}: {_line(figures[step])}")
            shutil.rmtree(output, ignore_errors=True)
        for size in sorted(old_resume_rows):
            output = os.path.join(root, f"old-compacted-{size}")
            figures = results["old_resume"][size] = {"write": write_old_compacted(output, size)}
            log(f"{size:,} rows in one old compacted part (code before)")
            figures["old_resume"] = measure("old_resume", output, size)
            log(f"  old_resume: {_line(figures['old_resume'])}")
            shutil.rmtree(output, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    _ratios(results["new"], STEPS)
    for code, steps in (("old", ("old_compact", "old_resume")), ("old_resume", ("old_resume",))):
        if results[code]:
            _ratios(results[code], steps)
    return results


def _line(figures: dict) -> str:
    if "error" in figures:
        return f"failed: {figures['error']}"
    return f"{figures['seconds']:.2f} s, peak {figures['peak_mb']:.0f} MB (grown {figures['grown_mb']:.0f} MB)"


def report(results: dict) -> str:
    lines = ["| code | rows | step | seconds | x smallest | peak MB | x smallest | grown MB | ms per 1k rows |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for code, by_size in results.items():
        for size, figures in sorted(by_size.items()):
            for step, f in figures.items():
                if step == "write" or "seconds" not in f:
                    continue
                lines.append(f"| {code} | {size:,} | {step} | {f['seconds']:.2f} | {f.get('seconds_ratio', 1):.2f} | "
                             f"{f['peak_mb']:.0f} | {f.get('peak_ratio', 1):.2f} | {f['grown_mb']:.0f} | "
                             f"{f['seconds'] / size * 1e6:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--old-rows", type=int, nargs="*", default=[10_000, 50_000],
                        help="the code before: end-of-run compaction of one part per 4-row batch")
    parser.add_argument("--old-resume-rows", type=int, nargs="*", default=[100_000, 1_000_000],
                        help="the code before: no-op resume over what its runs left (one compacted part)")
    parser.add_argument("--folder", help="where to write the synthetic manifests (default: the temp folder)")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--measure", nargs=3, metavar=("STEP", "OUTPUT", "ROWS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        step, output, rows = args.measure
        print(json.dumps(_measure_here(step, output, int(rows)), default=str))
        return 0
    results = run(tuple(args.rows), tuple(args.old_rows), tuple(args.old_resume_rows), args.folder)
    print(report(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
