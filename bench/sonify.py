"""Clips/s of the bulk sonify job against a loop that calls the diffusers pipeline once per image, same models."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image

from i2a_core import images, storage
from i2a_core.cli import quiet_libraries
from i2a_core.commands.common import (
    add_generation_arguments,
    add_model_arguments,
    generation_from_args,
    models_from_args,
)
from i2a_core.pipelines.sonify import SonifyJob, run
from i2a_core.sonify import Sonifier, seed_for, wav_bytes


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
    """(model load s, clips/s): per image read, decode, CLIP, translate, one pipeline call, write."""
    started = time.perf_counter()
    sonifier = Sonifier(models_from_args(args), device=args.device)
    load_s = time.perf_counter() - started
    settings = generation_from_args(args)
    started = time.perf_counter()
    for path in paths:
        key = os.path.relpath(path, root)
        clap, _ = sonifier.clap_for_images([images.load_image(path)])
        (waveform,) = sonifier.generator.generate(clap, [seed_for(key, settings.seed)], duration=settings.duration,
                                                  steps=settings.steps, guidance=settings.guidance)
        storage.write_bytes_atomic(os.path.join(output, key + ".wav"),
                                   wav_bytes(waveform, sonifier.generator.sample_rate))
    return load_s, len(paths) / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
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
    with tempfile.TemporaryDirectory() as work:
        root = os.path.join(work, "images")
        paths = make_images(root, args.images)
        print(f"{args.images} images, preset {args.preset}, {settings.duration:g} s clips, {settings.steps} steps, "
              f"batch {settings.batch_size}, runner {args.runner}")

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
