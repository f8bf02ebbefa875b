"""Benchmark: the translator grid as parallel Ray Tune trials vs the same trials one after another in one process.

    python bench/train.py --rows 20000 --epochs 2

Both runs read the same synthetic embedding Parquet (512-d CLIP and CLAP by default, like the real models),
train the same grid with the same seed, and include preparing the data. Ray starts before the clock
(a cluster is already up when a real grid runs). Target: parallel <= 0.6x sequential on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import ray
import torch

from i2a_core.jobs.train import TrainConfig, train_grid
from i2a_core.synthetic import write_synthetic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5000, help="synthetic pairs (default: 5000)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--clip-dim", type=int, default=512)
    parser.add_argument("--clap-dim", type=int, default=512)
    parser.add_argument("--cpus", type=int, default=2, help="CPUs for Ray (default: 2)")
    parser.add_argument("--datasets", default="audiocaps,images,all")
    parser.add_argument("--losses", default="cosine,mse,contrastive")
    parser.add_argument("--hidden", default="256,512")
    parser.add_argument("--json", metavar="PATH", help="also write the measured figures to this JSON file")
    args = parser.parse_args()

    root = tempfile.mkdtemp(prefix="i2a-bench-train-")
    source = write_synthetic(os.path.join(root, "pairs"), args.rows, files=4, clip_dim=args.clip_dim,
                             clap_dim=args.clap_dim)
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)

    def grid(output: str, on_ray: bool) -> tuple[float, str]:
        config = TrainConfig(input=source, output=os.path.join(root, output), epochs=args.epochs,
                             patience=args.epochs, batch_size=args.batch_size,
                             datasets=tuple(args.datasets.split(",")), losses=tuple(args.losses.split(",")),
                             hidden=tuple(int(h) for h in args.hidden.split(",")), ray=on_ray)
        started = time.perf_counter()
        summary = train_grid(config, log=lambda line: None)
        return time.perf_counter() - started, summary.best

    threads = torch.get_num_threads()
    sequential_s, sequential_best = grid("sequential", on_ray=False)
    torch.set_num_threads(1)  # second baseline: what one trial costs without intra-op threads
    single_thread_s, _ = grid("sequential-1-thread", on_ray=False)
    torch.set_num_threads(threads)
    parallel_s, parallel_best = grid("parallel", on_ray=True)
    trials = len(args.datasets.split(",")) * len(args.losses.split(",")) * len(args.hidden.split(","))
    print(f"grid: {trials} trials x {args.epochs} epochs on {args.rows} rows "
          f"({args.clip_dim}-d CLIP -> {args.clap_dim}-d CLAP), {os.cpu_count()} cores visible, Ray num_cpus={args.cpus}")
    print(f"sequential, one process, {threads} torch threads: {sequential_s:.1f} s (best {sequential_best})")
    print(f"sequential, one process, 1 torch thread:  {single_thread_s:.1f} s")
    print(f"parallel, Ray Tune, 1 CPU per trial:      {parallel_s:.1f} s (best {parallel_best})")
    print(f"ratio parallel/sequential: {parallel_s / sequential_s:.2f}x (target <= 0.6x); "
          f"against the 1-thread loop: {parallel_s / single_thread_s:.2f}x")
    ray.shutdown()
    if args.json:
        with open(args.json, "w") as f:
            json.dump({
                "benchmark": "train",
                "workload": f"{trials} trials x {args.epochs} epochs, {args.rows} rows, "
                            f"{args.clip_dim}-d -> {args.clap_dim}-d, Ray num_cpus={args.cpus}",
                "baseline": {"name": f"sequential, {threads} torch threads", "value": sequential_s, "unit": "s"},
                "i2a": {"name": "Ray Tune, 1 CPU per trial", "value": parallel_s, "unit": "s"},
                "ratio": parallel_s / sequential_s, "target": {"op": "<=", "value": 0.6},
                "sequential_1_thread_s": single_thread_s, "ratio_vs_1_thread": parallel_s / single_thread_s,
            }, f, indent=2)


if __name__ == "__main__":
    main()
