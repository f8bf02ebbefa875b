"""The bulk sonify job against a baseline over the same models: a loop of one generator call per image
(`--compare loop`), or the job's own in-process runner (`--compare runners`: Ray against `--runner local`,
each in a fresh process, with the peak memory of its whole process tree).

    python bench/sonify.py                                          # tiny, job vs loop
    python bench/sonify.py --preset full-random --compare runners --images 4 --duration 5 --steps 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from peak_memory import PeakMemory
from PIL import Image

from i2a_core.cli.flags import (
    add_generation_arguments,
    add_model_arguments,
    generation_from_args,
    models_from_args,
)
from i2a_core.io import storage
from i2a_core.jobs.sonify import Sonifier, SonifyJob, run
from i2a_core.quiet import quiet_libraries
from i2a_core.stages.clips import wav_bytes


def make_images(folder: str, count: int) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = os.path.join(folder, f"set{i % 4}", f"image{i:05d}.jpg")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def baseline(args, paths: list[str], root: str, output: str) -> tuple[float, float]:
    """(model load s, clips/s): per image read, decode, CLIP, translate, one generator call, write."""
    from dataclasses import replace

    started = time.perf_counter()
    sonifier = Sonifier(models_from_args(args), replace(generation_from_args(args), batch_size=1), device=args.device)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    for path in paths:
        (clip,) = sonifier([path])
        storage.write_bytes_atomic(os.path.join(output, os.path.relpath(path, root) + ".wav"),
                                   wav_bytes(clip.waveform, clip.sample_rate))
    return load_s, len(paths) / (time.perf_counter() - started)


def child_run(args, root: str, output: str) -> int:
    """One job run in this (fresh) process; prints its figures as one JSON line."""
    if args.child == "ray":
        import ray

        ray.init(include_dashboard=False, log_to_driver=False)  # cluster start is not the job's cost
        ray.data.DataContext.get_current().enable_progress_bars = False
    job = SonifyJob(inputs=(root,), output=output, models=models_from_args(args), settings=generation_from_args(args),
                    runner=args.child)
    summary = run(job, log=lambda line: None)
    from i2a_core.io import manifest

    table = manifest.read(output).to_pydict()
    stages = {f"{name} per clip": float(np.mean(table[name])) for name in
              ("read_s", "decode_s", "encode_s", "generate_s", "write_s")}
    print(json.dumps({"wall_s": summary.wall_s, "ok": summary.ok, "error": summary.error, "stages_s": stages}))
    return 0


def compare_runners(args, root: str, work: str) -> dict:
    """`--runner local`, then Ray, then local again, each a fresh process measured with its process tree."""
    runs = []
    for i, runner in enumerate(["local", "ray", "local"]):
        command = [sys.executable, os.path.abspath(__file__), "--child", runner, "--child-root", root,
                   "--child-output", os.path.join(work, f"{runner}-{i}"), *sys.argv[1:]]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as child:
            with PeakMemory(root=child.pid) as memory:
                out, err = child.communicate()
        if child.returncode != 0:
            raise RuntimeError(f"{runner} run failed: {err[-2000:]}")
        figures = json.loads(out.strip().splitlines()[-1])
        runs.append({"runner": runner, **figures, "peak_rss_bytes": memory.peak})
        print(f"{runner:5}: {figures['ok']} clips in {figures['wall_s']:.1f} s, peak RSS "
              f"{memory.peak / 2**30:.2f} GiB (process tree)")
    local = [r for r in runs if r["runner"] == "local"]
    ray_run = runs[1]
    local_wall = sum(r["wall_s"] for r in local) / len(local)
    local_peak = max(r["peak_rss_bytes"] for r in local)
    speed = local_wall / ray_run["wall_s"]
    memory_ratio = ray_run["peak_rss_bytes"] / local_peak
    print(f"Ray / local: {speed:.2f}x the speed (local wall = mean of both local runs), "
          f"{memory_ratio:.2f}x the peak memory")
    return {"runs": runs, "speed_ratio": speed, "memory_ratio": memory_ratio, "local_wall_s": local_wall,
            "local_peak_rss_bytes": local_peak}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", choices=["loop", "runners"], default="loop")
    parser.add_argument("--child", choices=["local", "ray"], help=argparse.SUPPRESS)
    parser.add_argument("--child-root", help=argparse.SUPPRESS)
    parser.add_argument("--child-output", help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, default=32, help="synthetic 640x480 JPEGs to sonify (default: 32)")
    parser.add_argument("--runner", choices=["local", "ray"], default="ray")
    parser.add_argument("--gpus-per-actor", type=float)
    parser.add_argument("--actors", type=int)
    parser.add_argument("--json", metavar="PATH", help="also write the measured figures to this JSON file")
    add_model_arguments(parser)
    add_generation_arguments(parser)
    parser.set_defaults(preset="tiny")  # a quick offline run; pass --preset audioldm-s-full-v2 --translator DIR
    args = parser.parse_args()
    quiet_libraries()
    settings = generation_from_args(args)
    if args.child:
        return child_run(args, args.child_root, args.child_output)
    with tempfile.TemporaryDirectory() as work:
        root = os.path.join(work, "images")
        paths = make_images(root, args.images)
        print(f"{args.images} images, preset {args.preset}, {settings.duration:g} s clips, {settings.steps} steps, "
              f"{settings.scheduler}, batch {settings.batch_size}, compare {args.compare}")
        if args.compare == "runners":
            result = compare_runners(args, root, work)
            workload = (f"{args.images} images, preset {args.preset}, {settings.duration:g} s clips, "
                        f"{settings.steps} {settings.scheduler} steps, batch {settings.batch_size}")
            if args.json:
                with open(args.json, "w") as f:
                    json.dump({
                        "benchmark": "sonify", "workload": workload,
                        "baseline": {"name": "sonify-job --runner local", "value": result["local_wall_s"],
                                     "unit": "s", "peak_rss_bytes": result["local_peak_rss_bytes"]},
                        "i2a": {"name": "sonify-job on Ray", "value": result["runs"][1]["wall_s"], "unit": "s",
                                "peak_rss_bytes": result["runs"][1]["peak_rss_bytes"]},
                        "ratio": result["speed_ratio"], "target": {"op": ">=", "value": 0.9},
                        "checks": [
                            {"name": "sonify-job Ray speed / --runner local", "ratio": result["speed_ratio"],
                             "op": ">=", "value": 0.9},
                            {"name": "sonify-job Ray peak memory / --runner local", "ratio": result["memory_ratio"],
                             "op": "<=", "value": 1.5}],
                        "stages_s": {f"{r['runner']}#{i} {k}": v for i, r in enumerate(result["runs"])
                                     for k, v in r["stages_s"].items()},
                        "runs": result["runs"]}, f, indent=2)
            return 0

        load_s, loop_rate = baseline(args, paths, root, os.path.join(work, "loop"))
        print(f"loop (one pipeline call per image): {loop_rate:.3f} clips/s, models loaded in {load_s:.1f} s "
              f"(not counted)")

        if args.runner == "ray":
            import ray

            ray.init()  # cluster start is not the job's cost; actor start-up and model loading are
        job = SonifyJob(inputs=(root,), output=os.path.join(work, "job"), models=models_from_args(args),
                        settings=settings, runner=args.runner, gpus_per_actor=args.gpus_per_actor,
                        actors=args.actors, device=args.device)
        summary = run(job, log=lambda line: None)
        job_rate = summary.ok / summary.wall_s
        print(f"job ({args.runner}, models loaded inside, counted): {job_rate:.3f} clips/s "
              f"({summary.ok} ok, {summary.error} error, {summary.wall_s:.1f} s)")
        # The loop again: on a shared machine the load can change while the job runs.
        _, loop_after = baseline(args, paths, root, os.path.join(work, "loop-after"))
        print(f"loop again after the job: {loop_after:.3f} clips/s")
        loop_before, loop_rate = loop_rate, (loop_rate + loop_after) / 2
        print(f"ratio job/loop (mean of both loops): {job_rate / loop_rate:.2f}x "
              f"(vs loop including its model load: {job_rate / (len(paths) / (len(paths) / loop_rate + load_s)):.2f}x)")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({
                    "benchmark": "sonify",
                    "workload": f"{args.images} images, preset {args.preset}, {settings.duration:g} s clips, "
                                f"{settings.steps} steps, batch {settings.batch_size}, runner {args.runner}",
                    "baseline": {"name": "loop, one pipeline call per image (mean of before/after)",
                                 "value": loop_rate, "unit": "clips/s", "before": loop_before, "after": loop_after,
                                 "model_load_s": load_s},
                    "i2a": {"name": f"sonify job ({args.runner})", "value": job_rate, "unit": "clips/s",
                            "seconds": summary.wall_s, "ok": summary.ok, "error": summary.error},
                    "ratio": job_rate / loop_rate, "target": {"op": ">=", "value": 1.5},
                }, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
