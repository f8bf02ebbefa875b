"""Run every benchmark, each in its own process, and write their figures as JSON plus a Markdown table.

    python bench/run_all.py --quick                    # small sizes, a few minutes on 2 CPU cores
    python bench/run_all.py --full                     # real model sizes (--preset full-random), offline
    python bench/run_all.py                            # the sizes to report; on a GPU node adds absolute figures
    python bench/run_all.py --audioldm cvssp/audioldm-s-full-v2   # plus AudioLDM clips/s and real-time factor
    ray job submit --address ADDR --working-dir . -- python bench/run_all.py --output /tmp/results.json

Each bench runs as a subprocess (a fresh interpreter, its own Ray instance, a peak-memory figure of its
own) and writes its figures with --json. A bench that fails is recorded as failed with the tail of its
output; the others still run. Absolute throughput (bench/absolute.py) runs when torch sees a GPU, or on
CPU with --absolute.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
sys.path.insert(0, BENCH_DIR)

from projection import projection_markdown

# (bench, arguments for --quick, arguments for a full run); relative benches compare i2a with a baseline.
RELATIVE = [
    ("embed", ["--rows", "300"], ["--rows", "5000"]),
    ("train", ["--rows", "2000", "--epochs", "1", "--datasets", "audiocaps,all", "--losses", "cosine,contrastive",
               "--hidden", "256"], ["--rows", "20000", "--epochs", "2"]),
    ("sonify", ["--images", "16", "--duration", "5", "--steps", "20", "--batch-size", "8"],
     ["--images", "256", "--duration", "5", "--steps", "20", "--batch-size", "8"]),
]
# Real architectures with random weights: what a user pays, measured against the plain loop, the in-process
# runner and diffusers' pipeline. Short (few rows, steps and clips) but at full model size.
FULL = [
    ("embed", ["--preset", "full-random", "--rows", "128", "--batch-size", "32"]),
    ("sonify", ["--preset", "full-random", "--compare", "runners", "--images", "4", "--duration", "5", "--steps", "2",
                "--batch-size", "4"]),
    ("generator", ["--preset", "full-random"]),
]


def run_bench(name: str, arguments: list[str]) -> dict:
    """Run bench/<name>.py in a fresh process; its --json figures, or why there are none."""
    with tempfile.TemporaryDirectory(prefix=f"i2a-bench-{name}-") as tmp:
        figures_path = os.path.join(tmp, "figures.json")
        command = [sys.executable, os.path.join(BENCH_DIR, f"{name}.py"), *arguments, "--json", figures_path]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
        # Each bench starts a private Ray instance on this node, even under `ray job submit` or beside a
        # `ray start` node: its figures are one node's, and its ray.init(num_cpus=...) stays valid.
        env["RAY_ADDRESS"] = "local"
        print(f"\n== {name}: {shlex.join(command[1:])}", flush=True)
        load_before = os.getloadavg()
        started = time.perf_counter()
        done = subprocess.run(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wall_s = time.perf_counter() - started
        print(done.stdout.rstrip(), flush=True)
        run = {"command": shlex.join(["python", os.path.relpath(command[1], ROOT), *arguments]),
               "wall_s": round(wall_s, 1), "load_average_before": load_before, "load_average_after": os.getloadavg()}
        if done.returncode != 0 or not os.path.exists(figures_path):
            return {"benchmark": name, "run": run,
                    "failed": f"exit code {done.returncode}; last output: {done.stdout[-2000:]}"}
        with open(figures_path) as f:
            return {**json.load(f), "run": run}


def target_met(figures: dict) -> bool | None:
    target = figures.get("target")
    if not target or "ratio" not in figures:
        return None
    return figures["ratio"] >= target["value"] if target["op"] == ">=" else figures["ratio"] <= target["value"]


def check_met(check: dict) -> bool:
    return check["ratio"] >= check["value"] if check["op"] == ">=" else check["ratio"] <= check["value"]


def full_markdown(full: list[dict]) -> list[str]:
    """The full-size section: every target as a measured ratio, per-stage seconds, peak memory, GPU figures."""
    lines = ["", "## Full size (--preset full-random: real architectures, random weights)", "",
             "| bench | check | measured ratio | target | met? |", "| --- | --- | ---: | --- | --- |"]
    for bench in full:
        if "failed" in bench:
            lines.append(f"| {bench['benchmark']} | `{bench['run']['command']}` | - | - | failed |")
            continue
        for check in bench.get("checks", []):
            lines.append(f"| {bench['benchmark']} | {check['name']} | {check['ratio']:.2f}x | {check['op']} "
                         f"{check['value']}x | {'yes' if check_met(check) else 'no'} |")
    lines += ["", "| bench | stage | seconds |", "| --- | --- | ---: |"]
    for bench in full:
        for stage, seconds in (bench.get("stages_s") or {}).items():
            lines.append(f"| {bench['benchmark']} | {stage} | {seconds:.4f} |")
    lines += ["", "Peak memory (RSS summed over the whole process tree): " + "; ".join(
        f"{bench['benchmark']} " + (", ".join(f"{side['name']} {side['peak_rss_bytes'] / 2**30:.2f} GiB"
                                              for side in (bench.get("baseline"), bench.get("i2a")) if side)
                                    or f"{bench.get('peak_rss_bytes', 0) / 2**30:.2f} GiB")
        for bench in full if "failed" not in bench) + "."]
    generator = next((b for b in full if b.get("benchmark") == "generator" and "failed" not in b), None)
    gpu = generator.get("gpu") if generator else None
    lines += ["", "| GPU batch | scheduler | clips/s | real-time factor |", "| ---: | --- | ---: | ---: |"]
    if isinstance(gpu, list):
        lines += [f"| {r['batch']} | {r['scheduler']} {r['steps']} | {r['clips_per_s']:.2f} | "
                  f"{r['real_time_factor']:.1f} |" for r in gpu]
    else:
        lines.append("| - | - | no GPU in this run | no GPU in this run |")
    return lines


def gpu_present() -> bool:
    import torch

    return torch.cuda.is_available()


def figure(side: dict) -> str:
    value = side["value"]
    return f"{value:,.1f} {side['unit']}" if value >= 10 else f"{value:.3f} {side['unit']}"


def results_markdown(results: dict) -> str:
    """The results as Markdown: the relative table, the absolute figures, and the projection they drive."""
    env = results["environment"]
    lines = [f"# Benchmark results ({'quick' if results['quick'] else 'full'} run)", "",
             f"{env['date']} on {env['gpu'] or 'CPU only'}, {env['cpu_count']} cores, torch {env['torch']}, "
             f"commit {env['commit']}. Load average at start: "
             + ", ".join(f"{x:.1f}" for x in env["load_average_start"]) + ".", "",
             "| benchmark | workload | baseline | i2a | ratio | target | met? |",
             "| --- | --- | ---: | ---: | ---: | --- | --- |"]
    for bench in results["relative"]:
        if "failed" in bench:
            lines.append(f"| {bench['benchmark']} | `{bench['run']['command']}` | - | - | - | - | failed |")
            continue
        target = bench["target"]
        lines.append(
            f"| {bench['benchmark']} | {bench['workload']} | {bench['baseline']['name']}: {figure(bench['baseline'])} "
            f"| {bench['i2a']['name']}: {figure(bench['i2a'])} | {bench['ratio']:.2f}x | {target['op']} "
            f"{target['value']}x | {'yes' if bench['met'] else 'no'} |")
    lines += ["", "Load average while each ran (before -> after): " + "; ".join(
        f"{b['benchmark']} {b['run']['load_average_before'][0]:.1f} -> {b['run']['load_average_after'][0]:.1f}"
        for b in results["relative"] + results.get("full", [])) + "."]
    for bench in results["relative"]:
        if "failed" in bench:
            lines += ["", f"{bench['benchmark']} failed: {bench['failed'].splitlines()[0]}"]

    absolute = results.get("absolute")
    lines += ["", "## Absolute throughput", ""]
    if absolute is None:
        lines.append(f"Not run: {results['absolute_skipped']}")
    elif "failed" in absolute:
        lines.append(f"Failed: {absolute['failed'].splitlines()[0]}")
    else:
        clip, audio = absolute["clip"], absolute["audioldm"]
        lines += ["| stage | figure | setting |", "| --- | ---: | --- |"]
        lines += [f"| JPEG decode (embed's decode stage) | {d['images_per_s_per_core']:,.0f} images/s per CPU core "
                  f"| {d['source_size']} JPEG -> 224 px crop, 1 thread |" for d in absolute["decode"]]
        lines += [f"| CLIP image encoding | {clip['images_per_s']:,.1f} images/s | {clip['model']}, {clip['weights']}, "
                  f"{clip['device']} {clip['dtype']}, batch {clip['batch_size']}, synthetic tensors |"]
        if "skipped" in audio:
            lines += ["", f"AudioLDM skipped: {audio['skipped']}"]
        else:
            lines += [f"| AudioLDM generation | {audio['clips_per_s']:.3f} clips/s, real-time factor "
                      f"{audio['real_time_factor']:.3f} | {audio['source']}, {audio['device']} {audio['dtype']}, "
                      f"batch {audio['batch_size']}, {audio['duration_s']:g} s, {audio['steps']} steps |",
                      f"| CLAP text encoding | {audio['clap_texts_per_s']:,.1f} captions/s | AudioLDM's text tower, "
                      f"batch 64 |"]
            if "note" in audio:
                lines += ["", f"AudioLDM note: {audio['note']}"]
        lines += ["", "## Projection", "", projection_markdown(results)]
    if results.get("full"):
        lines += full_markdown(results["full"])
    return "\n".join(lines) + "\n"


def git_commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=os.path.join(BENCH_DIR, "results.json"),
                        help="JSON file to write; the Markdown goes beside it as .md (default: bench/results.json)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not figures to report")
    parser.add_argument("--full", action="store_true",
                        help="only the full-size benches (--preset full-random): the real cost, offline")
    parser.add_argument("--absolute", action="store_true", help="run the absolute throughput bench even without a GPU")
    parser.add_argument("--audioldm", help="AudioLDM path or hub id for the absolute AudioLDM figure")
    parser.add_argument("--render", action="store_true",
                        help="run nothing: rewrite the Markdown from the existing --output JSON")
    parser.add_argument("--only", help="comma-separated subset of: embed,train,sonify,absolute")
    for name, _, _ in RELATIVE + [("absolute", None, None), ("generator", None, None)]:
        parser.add_argument(f"--{name}-args", default="", help=f"extra arguments for bench/{name}.py (one string)")
    args = parser.parse_args()
    markdown_path = os.path.splitext(args.output)[0] + ".md"
    if args.render:
        with open(args.output) as f:
            results = json.load(f)
        with open(markdown_path, "w") as f:
            f.write(results_markdown(results))
        print(f"wrote {markdown_path}")
        return 0
    only = set(args.only.split(",")) if args.only else None
    if args.full:
        only = only or {name for name, _ in FULL}
    import torch

    gpu = gpu_present()
    results = {"quick": args.quick, "environment": {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(), "cpu_count": os.cpu_count(), "load_average_start": os.getloadavg(),
        "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0) if gpu else None, "commit": git_commit()}}

    # 1. Relative benches: i2a against a baseline in the same command (--full: at real model size).
    results["relative"], results["full"] = [], []
    for name, full_args in FULL if args.full else []:
        if name in only:
            bench = run_bench(name, full_args + shlex.split(getattr(args, f"{name}_args", "") or ""))
            if "failed" not in bench:
                bench["met"] = all(check_met(c) for c in bench.get("checks", []))
            results["full"].append(bench)
    for name, quick_args, full_args in [] if args.full else RELATIVE:
        if only is None or name in only:
            bench = run_bench(name, (quick_args if args.quick else full_args)
                              + shlex.split(getattr(args, f"{name}_args")))
            if "failed" not in bench:
                bench["met"] = target_met(bench)
            results["relative"].append(bench)

    # 2. Absolute throughput: on a GPU, or when asked for.
    if args.full:
        results["absolute_skipped"] = "--full runs the full-size benches only"
    elif only is not None and "absolute" not in only:
        results["absolute_skipped"] = "not selected with --only"
    elif gpu or args.absolute:
        absolute_args = (["--quick"] if args.quick else []) + (["--audioldm", args.audioldm] if args.audioldm else [])
        results["absolute"] = run_bench("absolute", absolute_args + shlex.split(args.absolute_args))
    else:
        results["absolute_skipped"] = "torch sees no GPU (pass --absolute to measure on CPU)"
        print(f"\n== absolute: skipped, {results['absolute_skipped']}")

    # 3. Write JSON and Markdown side by side.
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)
    with open(markdown_path, "w") as f:
        f.write(results_markdown(results))
    print(f"\n{results_markdown(results)}\nwrote {args.output} and {markdown_path}")
    return 1 if any("failed" in b for b in results["relative"] + results["full"] + [results.get("absolute") or {}]) \
        else 0


if __name__ == "__main__":
    sys.exit(main())
