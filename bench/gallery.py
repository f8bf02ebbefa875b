"""Gallery cost against the number of rows: a first write, an incremental update, and a rerun with nothing new.

    python bench/gallery.py                          # 10k and 100k manifest rows, 100 clips a page
    python bench/gallery.py --rows 10000 100000 1000000

Each size runs in its own process on synthetic manifest rows (Arrow batches of 4,096, made on the fly: 98% clips
with three captions and an explanation, 2% failed inputs), as the bulk job streams them from its manifest:
1. first: an empty folder, every page written;
2. +1%: 1% more clips and failures appended in commit order: only the last pages and the index are rewritten;
3. same: the same rows again: only the index.
It prints seconds, ms per row, files written (HTML pages among them) and the process's peak RSS, with each figure
as a ratio against the smallest size. Rows are hashed per page to find what changed, so the reruns still read
every row: their cost is linear, but about 10x below a full write, and nothing else grows with N.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from i2a_core.io import gallery

BATCH = 4096
INFO = {"models": {"clip_model": "ViT-B-32", "audioldm": "cvssp/audioldm-s-full-v2"}, "translator": "runs/best",
        "settings": {"steps": 50}, "date": "2026-01-01 00:00 UTC"}


def clips(count: int) -> pa.RecordBatch:
    """Batches of clip rows 0..count-1, the same rows every time they are asked for."""
    explanation = json.dumps({"sounds_like": [{"caption": f"a sound of thing {k}", "weight": 0.3} for k in range(3)]})
    for start in range(0, count, BATCH):
        n = min(BATCH, count - start)
        key = pc.binary_join_element_wise("photos/", pa.array(np.arange(start, start + n)).cast(pa.string()), "")
        yield pa.RecordBatch.from_pydict({
            "output": pc.binary_join_element_wise("audio/", key, ".wav", ""),
            "thumbnail": pc.binary_join_element_wise("thumbs/", key, ".jpg", ""),
            "spectrogram": pc.binary_join_element_wise("spectrograms/", key, ".png", ""),
            "captions": pa.array([["a dog barks", "rain on a roof", "a car passes"]] * n),
            "explanation": pa.array([explanation] * n), "duration": pa.array(np.full(n, 10.0, np.float32)),
            "sample_rate": pa.array(np.full(n, 16000, np.int32))})


def failed(count: int) -> pa.RecordBatch:
    for start in range(0, count, BATCH):
        n = min(BATCH, count - start)
        name = pc.binary_join_element_wise("/data/in/", pa.array(np.arange(start, start + n)).cast(pa.string()),
                                           ".jpg", "")
        yield pa.RecordBatch.from_pydict({"input": name, "error_kind": pa.array(["not_image"] * n),
                                          "error": pc.binary_join_element_wise(name, ": not an image (HTML)", "")})


def one_size(rows: int, page_size: int) -> dict:
    made, bad = rows * 98 // 100, rows * 2 // 100
    out = {}
    with tempfile.TemporaryDirectory(prefix="i2a-gallery-bench-") as output:
        for step, (n_clips, n_failed) in [("first", (made, bad)), ("+1%", (made * 101 // 100, bad * 101 // 100)),
                                          ("same", (made * 101 // 100, bad * 101 // 100))]:
            started = time.perf_counter()
            result = gallery.update_gallery(output, clips(n_clips), failed(n_failed), INFO, page_size)
            seconds = time.perf_counter() - started
            out[step] = {"seconds": seconds, "rows": n_clips + n_failed, "written": len(result["written"]),
                         "pages": sum(name.endswith(".html") for name in result["written"])}
        started = time.perf_counter()
        for _ in clips(made):
            pass
        for _ in failed(bad):
            pass
        out["rows_made_s"] = time.perf_counter() - started
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_size(args.child, args.page_size)))
        return 0
    results = {}
    for rows in args.rows:
        child = subprocess.run([sys.executable, __file__, "--child", str(rows), "--page-size", str(args.page_size)],
                               check=True, capture_output=True, text=True)
        results[rows] = json.loads(child.stdout.strip().splitlines()[-1])
    smallest = results[args.rows[0]]
    print(f"{'rows':>9} {'step':>5} {'seconds':>8} {'ms/row':>7} {'x time':>7} {'files':>6} {'pages':>6} "
          f"{'peak MB':>8} {'x peak':>6}")
    for rows, result in results.items():
        for step in ("first", "+1%", "same"):
            r, base = result[step], smallest[step]
            print(f"{rows:9,} {step:>5} {r['seconds']:8.2f} {1000 * r['seconds'] / r['rows']:7.3f} "
                  f"{r['seconds'] / base['seconds']:6.1f}x {r['written']:6,} {r['pages']:6,} "
                  f"{result['peak_mb']:8.0f} {result['peak_mb'] / smallest['peak_mb']:5.2f}x")
        print(f"{'':9} (making the rows alone: {result['rows_made_s']:.2f} s of each step)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
