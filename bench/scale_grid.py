"""Benchmark: one grid trial's evaluation at growing test splits; its time should grow like the rows.

    python bench/scale_grid.py                          # 100k and 1M test rows (64-d), about 2-4 min on 2 cores
    python bench/scale_grid.py --sizes 10000,100000     # other sizes; ratios are against the smallest

For each size, synthetic pairs are written (in blocks, so memory stays flat) and prepared by i2a's own
`prepare` with 98% of the rows in the test split; then an untrained MLP translator (hidden 256) is scored on
that split by `training.trial.evaluate`, on one torch thread (a trial's default of one CPU). Only the
evaluation is timed. Target (issue 17): 10x the rows cost <= 11x the time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import pyarrow.parquet as pq
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from i2a_core.models.translator import MLPTranslator, TranslatorConfig
from i2a_core.synthetic import synthetic_pairs
from i2a_core.training.data import load_prepared, prepare
from i2a_core.training.trial import evaluate

TEST_FRACTION, VAL_FRACTION = 0.98, 0.01
BLOCK_ROWS = 200_000
TARGET_RATIO_PER_10X = 11.0


def _write_pairs(folder: str, test_rows: int, dim: int) -> str:
    """Enough synthetic pairs for about `test_rows` test rows, one Parquet file per block of rows."""
    rows = int(test_rows / TEST_FRACTION) + 1
    os.makedirs(folder, exist_ok=True)
    for block, start in enumerate(range(0, rows, BLOCK_ROWS)):
        table = synthetic_pairs(min(BLOCK_ROWS, rows - start), clip_dim=dim, clap_dim=dim, seed=block)
        pq.write_table(table, os.path.join(folder, f"part-{block:05d}.parquet"), compression="zstd")
    return folder


def _evaluation_seconds(directory: str, hidden: int) -> tuple[float, int, dict]:
    data = load_prepared(directory)
    torch.manual_seed(0)
    translator = MLPTranslator(TranslatorConfig(type="mlp", in_dim=data.clip_dim, out_dim=data.clap_dim,
                                                hidden=hidden, loss="cosine"))
    test = data.splits["test"]
    started = time.perf_counter()
    metrics = evaluate(translator, test)
    return time.perf_counter() - started, len(test), metrics


def run(sizes=(100_000, 1_000_000), dim: int = 64, hidden: int = 256, log=print) -> dict:
    """Time one trial's evaluation at each test-row count; returns the figures and the ratios to the smallest."""
    torch.set_num_threads(1)  # a Tune trial's default (--cpus-per-trial 1), and steadier on a shared machine
    root = tempfile.mkdtemp(prefix="i2a-bench-scale-grid-")
    figures = []
    try:
        for size in sorted(sizes):
            started = time.perf_counter()
            source = _write_pairs(os.path.join(root, f"pairs-{size}"), size, dim)
            directory = prepare(source, os.path.join(root, f"work-{size}"), VAL_FRACTION, TEST_FRACTION)
            prepare_s = time.perf_counter() - started
            seconds, rows, metrics = _evaluation_seconds(directory, hidden)
            figures.append({"test_rows": rows, "evaluation_s": seconds, "prepare_s": prepare_s,
                            "pool_size": metrics.get("all", {}).get("pool_size")})
            log(f"{rows:>10,} test rows: evaluation {seconds:8.2f} s "
                f"({seconds / rows * 1e6:.1f} us per row; preparing took {prepare_s:.1f} s)")
            shutil.rmtree(os.path.join(root, f"pairs-{size}"), ignore_errors=True)
            shutil.rmtree(os.path.join(root, f"work-{size}"), ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = figures[0]
    for figure in figures:
        figure["rows_ratio"] = figure["test_rows"] / base["test_rows"]
        figure["time_ratio"] = figure["evaluation_s"] / base["evaluation_s"]
        # The target scaled to this size ratio: 11x per 10x rows, i.e. 1.1x the linear cost.
        figure["target_time_ratio"] = TARGET_RATIO_PER_10X / 10 * figure["rows_ratio"]
    for figure in figures[1:]:
        met = figure["time_ratio"] <= figure["target_time_ratio"]
        log(f"{figure['rows_ratio']:.1f}x the rows: {figure['time_ratio']:.2f}x the evaluation time "
            f"(target <= {figure['target_time_ratio']:.1f}x: {'met' if met else 'MISSED'})")
    return {"benchmark": "scale_grid", "dim": dim, "hidden": hidden, "sizes": figures}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="test-row counts, comma-separated")
    parser.add_argument("--dim", type=int, default=64, help="CLIP and CLAP vector size (default: 64)")
    parser.add_argument("--hidden", type=int, default=256, help="the MLP's hidden size (default: 256)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    args = parser.parse_args()
    figures = run(tuple(int(s) for s in args.sizes.split(",")), dim=args.dim, hidden=args.hidden)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
