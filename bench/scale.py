"""Issue 17's scale targets in one command: i2a's own per-item costs from ten thousand to a million inputs.

    python bench/scale.py                        # the full run: about 1.5-2 hours on the shared 2-core box
    python bench/scale.py --quick                # 1k and 10k inputs, small manifests and grids: a few minutes
    python bench/scale.py --sizes 10000,100000 --parts sonify --runners ray
    python bench/scale.py --parts sonify --before        # also the code before issue 17 (git 41ca35c)

Parts, each run in fresh processes and written to bench/scale.json (parts not run keep their earlier figures):

- sonify: `i2a sonify-job --preset tiny` over a .txt list of N fast-failing inputs (half missing files, half
  http://127.0.0.1:9/... URLs refused at once as loopback addresses) plus 4 real images, with `--runner local`
  and `--runner ray` (one actor per node, as on a CPU cluster), then the same command again (a no-op rerun).
  Each command runs in its own driver process, which reports its own CPU time (user + system, all its threads,
  no Ray worker) and its peak resident memory (VmHWM: not ru_maxrss, which a forked child inherits from its
  parent); the CPU time of its whole process tree (a local Ray's daemons and actor too) is sampled from /proc.
  The same runs with only the 4 real images (3 times: the median, and the spread as the noise) give the fixed
  cost (imports, Ray's start, model loads), which per-item figures leave out: per-item ms = (wall - fixed
  wall) / N, and the same for CPU. On a shared machine the wall time moves with other jobs' load; the CPU
  seconds hardly do, so each wall-time ratio is printed with its CPU twin.
- manifest: compaction, no-op resume and the views on synthetic manifests written through i2a's PartWriter
  (bench/scale_manifest.py), 1M and 10M rows.
- grid: one trial's evaluation at 100k and 1M test rows (bench/scale_grid.py).
- listing: list_windows on .txt, .csv, .parquet lists and a folder (bench/scale_listing.py).
- spectrogram: i2a's numpy renderer against the matplotlib one (bench/spectrogram.py's baseline).

Targets (issue 17): orchestration <= 1 ms per item and 10x the items <= 10.5x the time; on Ray, the driver's
own CPU <= 0.1 ms per item; driver peak memory at the largest size <= 1.2x that at the one before; a no-op
rerun of the largest size (1M) <= 60 s and without torch in the driver; grid evaluation 10x rows <= 11x time;
spectrogram >= 10x faster than matplotlib and smaller than the clip's WAV. Every ratio is against the smallest
size of the same run. The machine is shared: the load average before and after each command is recorded.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
BEFORE = "41ca35c"  # the code before issue 17 (sonify-job holding every input, one manifest part per batch)
REAL_IMAGES = 4
PARTS = ("sonify", "manifest", "grid", "listing", "spectrogram")
RUNNERS = ("local", "ray")
FULL = {"sizes": (10_000, 100_000, 1_000_000), "manifest_rows": (1_000_000, 10_000_000),
        "manifest_old_rows": (10_000, 50_000), "manifest_old_resume_rows": (100_000, 1_000_000),
        "grid": (100_000, 1_000_000), "listing": (10_000, 100_000, 1_000_000), "spectrogram_repeat": 20,
        "before_sizes": (10_000, 100_000)}
QUICK = {"sizes": (1_000, 10_000), "manifest_rows": (100_000, 1_000_000), "manifest_old_rows": (),
         "manifest_old_resume_rows": (), "grid": (10_000, 100_000), "listing": (10_000, 100_000),
         "spectrogram_repeat": 5, "before_sizes": (1_000, 10_000)}
TARGETS = {"ms_per_item": 1.0, "time_ratio_per_10x": 10.5, "ray_driver_cpu_ms_per_item": 0.1,
           "peak_ratio_last_step": 1.2, "noop_s_largest": 60.0, "grid_ratio_per_10x": 11.0,
           "spectrogram_speedup": 10.0, "spectrogram_png_per_wav": 1.0}


# --- the driver: one i2a command in this process, measured by itself ---


def _driver(figures_path: str, argv: list[str]) -> int:
    """Run `i2a ARGV` here; write this process's CPU seconds, peak memory and whether torch was imported."""
    code = 1
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != BENCH_DIR]  # bench/gallery.py is not i2a's
    try:
        from i2a_core.cli import main

        code = main(argv)
    finally:
        times = os.times()
        with open(figures_path, "w") as f:
            json.dump({"exit": code, "cpu_s": times.user + times.system, "user_s": times.user,
                       "system_s": times.system, "peak_mb": _high_water_kb() / 1024,
                       "torch_imported": "torch" in sys.modules}, f)
    return code


def _high_water_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


class TreeCPU:
    """CPU seconds of a process and every process under it (a local Ray's daemons and workers too), sampled: each
    process counts with its last reading, so one that ends between samples loses at most INTERVAL_S of its CPU.
    Unlike the wall time, the sum hardly moves with the load that other jobs put on a shared machine."""

    INTERVAL_S = 0.5

    def __init__(self, root: int):
        self.root, self.ticks = root, {}

    def sample(self) -> None:
        parents, ticks = {}, {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents.setdefault(int(fields[1]), []).append(int(entry))
            ticks[int(entry)] = int(fields[11]) + int(fields[12])  # utime + stime
        stack = [self.root]
        while stack:
            pid = stack.pop()
            if pid in ticks:
                self.ticks[pid] = max(self.ticks.get(pid, 0), ticks[pid])
            stack.extend(parents.get(pid, ()))

    def seconds(self) -> float:
        return sum(self.ticks.values()) / os.sysconf("SC_CLK_TCK")


def _command(code_root: str, figures_path: str, argv: list[str], log_path: str) -> dict:
    """`i2a ARGV` in a fresh driver process running the i2a of `code_root`; wall, CPU, peak, its summary line."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [code_root, os.environ.get("PYTHONPATH")])),
               HF_HUB_OFFLINE="1")
    env.pop("RAY_ADDRESS", None)  # a private local Ray per command: the figures are this node's
    load = os.getloadavg()[0]
    started = time.perf_counter()
    with open(log_path, "w") as log:
        done = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--driver", figures_path, "--", *argv],
                                env=env, cwd=code_root, stdout=log, stderr=subprocess.STDOUT)
        tree = TreeCPU(done.pid)
        while True:
            try:
                done.wait(timeout=TreeCPU.INTERVAL_S)
                break
            except subprocess.TimeoutExpired:
                tree.sample()
    wall = time.perf_counter() - started
    with open(log_path) as log:
        output = log.read()
    figures = {"wall_s": wall, "tree_cpu_s": tree.seconds(), "load_before": load, "load_after": os.getloadavg()[0]}
    if os.path.exists(figures_path):
        with open(figures_path) as f:
            figures.update(json.load(f))
        os.remove(figures_path)
        # The driver's own CPU as it measured it at its end, not as last sampled.
        figures["tree_cpu_s"] += figures["cpu_s"] - tree.ticks.get(done.pid, 0) / os.sysconf("SC_CLK_TCK")
    summary = re.search(r"(\d+) ok, (\d+) error.*?(\d+) already done of (\d+) inputs", output)
    if summary:
        figures.update(zip(("ok", "error", "skipped", "listed"), map(int, summary.groups()), strict=True))
    if done.returncode not in (0, 1) or not summary:  # 1: the job ran, and some inputs failed (they all do)
        figures["failed"] = f"exit {done.returncode}: {output[-1500:]}"
    return figures


# --- sonify-job over fast-failing inputs ---


def _make_inputs(folder: str, count: int) -> str:
    """A .txt list: REAL_IMAGES small PNGs, then `count` inputs that fail at once, half missing files, half
    URLs of a loopback address (refused before any connection)."""
    import numpy as np
    from PIL import Image

    images = os.path.join(folder, "images")
    os.makedirs(images, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(REAL_IMAGES):
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(os.path.join(images, f"real{i}.png"))
        lines.append(f"images/real{i}.png\n")
    path = os.path.join(folder, f"inputs-{count}.txt")
    with open(path, "w") as f:
        f.writelines(lines)
        for start in range(0, count, 100_000):
            f.writelines(f"missing/part{i // 1000:05d}/image_{i:09d}.jpg\n" if i % 2 else
                         f"http://127.0.0.1:9/part{i // 1000:05d}/image_{i:09d}.jpg\n"
                         for i in range(start, min(count, start + 100_000)))
    return path


FIXED_RUNS = 3  # runs of the real images alone; their median is the fixed cost, their spread its noise


def _sonify_runs(code_root: str, runner: str, sizes, work: str, log) -> dict:
    """The fixed cost (the real images alone, FIXED_RUNS times), then each size and its no-op rerun."""
    fixed, runs = [], {}
    for size in [0] * FIXED_RUNS + sorted(sizes):
        inputs = _make_inputs(work, size)
        output = os.path.join(work, f"out-{runner}-{size}")
        argv = ["sonify-job", "--preset", "tiny", inputs, "--output", output, "--runner", runner]
        first = _command(code_root, os.path.join(work, "figures.json"), argv, os.path.join(work, "run.log"))
        again = _command(code_root, os.path.join(work, "figures.json"), argv, os.path.join(work, "rerun.log"))
        shutil.rmtree(output, ignore_errors=True)
        os.remove(inputs)
        if size:
            runs[size] = {"run": first, "noop": again}
        else:
            fixed.append(first)
        log(f"  {runner:5} {size:>9,} inputs: {_line(first)}" + (f"; no-op rerun {_line(again)}" if size else ""))
    return {"fixed_runs": fixed, "sizes": runs}


def derive(runs: dict) -> dict:
    """Per-item figures and ratios from one runner's raw runs (recomputed whenever the figures are read)."""
    fixed_runs = [f for f in runs.get("fixed_runs", [runs["fixed"]["run"]] if "fixed" in runs else [])
                  if "failed" not in f]
    out = {"fixed": {}, "sizes": {}}
    if fixed_runs:
        walls = sorted(f["wall_s"] for f in fixed_runs)
        cpus = sorted(f["cpu_s"] for f in fixed_runs)
        trees = sorted(f.get("tree_cpu_s", float("nan")) for f in fixed_runs)
        out["fixed"] = {"wall_s": walls[len(walls) // 2], "cpu_s": cpus[len(cpus) // 2],
                        "tree_cpu_s": trees[len(trees) // 2],
                        "spread_s": walls[-1] - walls[0], "runs": len(walls),
                        "peak_mb": max(f["peak_mb"] for f in fixed_runs)}
    fixed = out["fixed"]
    for size, figures in sorted(runs["sizes"].items(), key=lambda item: int(item[0])):
        size, run, noop = int(size), figures["run"], figures["noop"]
        row = out["sizes"][size] = {"run": run, "noop": noop}
        if "failed" in run or not fixed:
            continue
        row["ms_per_item"] = (run["wall_s"] - fixed["wall_s"]) * 1000 / size
        row["noise_ms_per_item"] = fixed["spread_s"] * 1000 / size  # the fixed cost's spread, per item
        row["cpu_ms_per_item"] = (run["cpu_s"] - fixed["cpu_s"]) * 1000 / size
        row["tree_cpu_ms_per_item"] = (run.get("tree_cpu_s", float("nan")) - fixed["tree_cpu_s"]) * 1000 / size
        row["peak_mb_per_10k"] = run["peak_mb"] / (size / 10_000)
        row["counts_ok"] = run.get("ok") == REAL_IMAGES and run.get("error") == size
        row["noop_ok"] = noop.get("skipped") == size + REAL_IMAGES and "failed" not in noop
    sizes = [s for s in out["sizes"] if "ms_per_item" in out["sizes"][s]]
    previous = None
    for size in sizes:
        row, base = out["sizes"][size], out["sizes"][sizes[0]]
        row["ms_ratio"] = row["ms_per_item"] / base["ms_per_item"]
        row["time_ratio"] = row["ms_per_item"] * size / (base["ms_per_item"] * sizes[0])
        row["time_ratio_limit"] = TARGETS["time_ratio_per_10x"] / 10 * size / sizes[0]
        row["tree_cpu_ratio"] = row["tree_cpu_ms_per_item"] * size / (base["tree_cpu_ms_per_item"] * sizes[0])
        row["peak_per_10k_ratio"] = row["peak_mb_per_10k"] / base["peak_mb_per_10k"]
        row["peak_ratio_last_step"] = row["run"]["peak_mb"] / out["sizes"][previous]["run"]["peak_mb"] \
            if previous else 1.0
        row["noop_ratio"] = row["noop"]["wall_s"] / base["noop"]["wall_s"]
        previous = size
    return out


def _line(figures: dict) -> str:
    if "failed" in figures:
        return "FAILED " + figures["failed"].strip().splitlines()[-1][:200]
    return (f"{figures['wall_s']:.1f} s, driver CPU {figures['cpu_s']:.1f} s, peak {figures['peak_mb']:.0f} MB"
            f"{', torch imported' if figures.get('torch_imported') else ''}")


def _code_tree(commit: str, work: str) -> str | None:
    """The i2a of `commit`, unpacked from git into `work`; None without the history."""
    folder = os.path.join(work, f"i2a-{commit}")
    os.makedirs(folder, exist_ok=True)
    try:
        archive = subprocess.run(["git", "-C", ROOT, "archive", commit, "i2a_core"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    subprocess.run(["tar", "-x", "-C", folder], input=archive.stdout, check=True)
    return folder


def sonify_part(sizes, runners, before: dict, log=print) -> dict:
    """This code's runs per runner; and for each commit in `before` (commit -> sizes), that code's."""
    result = {"real_images": REAL_IMAGES, "runners": {}, "before": {}}
    work = tempfile.mkdtemp(prefix="i2a-bench-scale-")
    try:
        for runner in runners:
            log(f"sonify-job --runner {runner} (this code)")
            result["runners"][runner] = _sonify_runs(ROOT, runner, sizes, work, log)
        for commit, commit_sizes in before.items():
            old = _code_tree(commit, work)
            if old is None:
                log(f"  (no git history with {commit}: not measured)")
                continue
            for runner in runners:
                log(f"sonify-job --runner {runner} (the code of {commit})")
                result["before"].setdefault(commit, {})[runner] = _sonify_runs(old, runner, commit_sizes, work, log)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result


# --- the other parts: each bench's own run(), in a fresh process ---


def _import_bench(name: str):
    sys.path.insert(0, BENCH_DIR)
    sys.path.insert(0, ROOT)
    return __import__(name)


def _child(part: str, settings: dict) -> dict:
    if part == "manifest":
        bench = _import_bench("scale_manifest")
        return bench.run(settings["manifest_rows"], settings["manifest_old_rows"],
                         settings["manifest_old_resume_rows"])
    if part == "grid":
        return _import_bench("scale_grid").run(settings["grid"])
    if part == "listing":
        return _import_bench("scale_listing").run(settings["listing"])
    if part == "spectrogram":
        return spectrogram_part(settings["spectrogram_repeat"])
    if part == "sonify":
        return sonify_part(settings["sizes"], settings["runners"], settings["before"])
    raise ValueError(part)


def spectrogram_part(repeat: int) -> dict:
    import numpy as np

    bench = _import_bench("spectrogram")
    from i2a_core.io.gallery import spectrogram_png
    from i2a_core.stages.clips import wav_bytes

    rng, rows = np.random.default_rng(0), []
    bench.matplotlib_spectrogram_png(np.zeros(bench.SAMPLE_RATE, np.float32), bench.SAMPLE_RATE)  # its import
    for seconds in (2.5, 10.0):
        for kind in ("noise", "structured"):
            waveform = bench.clip(kind, seconds, rng)
            old_ms, old = bench.median_ms(bench.matplotlib_spectrogram_png, waveform, repeat)
            new_ms, new = bench.median_ms(spectrogram_png, waveform, repeat)
            wav = len(wav_bytes(waveform, bench.SAMPLE_RATE))
            rows.append({"clip": f"{seconds:g} s {kind}", "matplotlib_ms": old_ms, "ms": new_ms,
                         "speedup": old_ms / new_ms, "wav_bytes": wav, "png_bytes": len(new),
                         "matplotlib_png_bytes": len(old), "png_per_wav": len(new) / wav})
            print(f"  {rows[-1]['clip']:<16} {new_ms:6.2f} ms vs matplotlib {old_ms:6.1f} ms "
                  f"({rows[-1]['speedup']:.0f}x), PNG {len(new):,} B vs WAV {wav:,} B", flush=True)
    return {"repeat": repeat, "clips": rows}


def _run_part(part: str, settings: dict) -> dict:
    """One part in a fresh process (its own memory and imports); its figures, or why there are none."""
    with tempfile.TemporaryDirectory(prefix="i2a-bench-scale-part-") as tmp:
        path = os.path.join(tmp, "figures.json")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
                   HF_HUB_OFFLINE="1")
        started = time.perf_counter()
        done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", part, path,
                               json.dumps(settings)], env=env, cwd=ROOT)
        if done.returncode or not os.path.exists(path):
            return {"failed": f"exit {done.returncode}", "wall_s": time.perf_counter() - started}
        with open(path) as f:
            figures = json.load(f)
    figures["wall_s"] = time.perf_counter() - started
    return figures


# --- targets and the table ---


def _check(name: str, measured, op: str, limit, note: str = "") -> dict:
    met = None if measured is None else (measured <= limit if op == "<=" else measured >= limit)
    return {"target": name, "measured": measured, "op": op, "limit": limit, "met": met, "note": note}


def _groups(sonify: dict) -> list[tuple[str, str, dict]]:
    """(label, runner, raw runs) of this code and of each commit measured before."""
    before = sonify.get("before", {})
    if set(before) & set(RUNNERS):  # figures written before commits were named: those of BEFORE
        before = {BEFORE: before}
    return [("this code", runner, runs) for runner, runs in sonify.get("runners", {}).items()] + \
        [(f"code of {commit}", runner, runs) for commit, by_runner in before.items()
         for runner, runs in by_runner.items()]


def targets(results: dict) -> list[dict]:
    checks = []
    for runner, runs in results.get("sonify", {}).get("runners", {}).items():
        derived = derive(runs)["sizes"]
        by_size = {s: f for s, f in derived.items() if "ms_per_item" in f}
        if not by_size:
            checks.append(_check(f"sonify {runner}: runs", None, "<=", 0, "every run failed"))
            continue
        sizes = sorted(by_size)
        worst = max(sizes, key=lambda s: by_size[s]["ms_per_item"])
        checks.append(_check(f"{runner}: orchestration ms per item (worst size)", by_size[worst]["ms_per_item"], "<=",
                             TARGETS["ms_per_item"], f"at {worst:,} inputs"))
        cpu = max(by_size[s]["tree_cpu_ms_per_item"] for s in sizes)
        if cpu == cpu:
            checks.append(_check(f"{runner}: CPU ms per item, all processes (worst size)", cpu, "<=",
                                 TARGETS["ms_per_item"], "the driver and, on Ray, its daemons and actor"))
        for small, large in zip(sizes, sizes[1:], strict=False):
            ratio = by_size[large]["ms_per_item"] * large / (by_size[small]["ms_per_item"] * small)
            limit = TARGETS["time_ratio_per_10x"] / 10 * large / small
            cpu_ratio = by_size[large]["tree_cpu_ms_per_item"] * large / (by_size[small]["tree_cpu_ms_per_item"] * small)
            if cpu_ratio == cpu_ratio:  # figures from before the process tree's CPU was measured have none (nan)
                checks.append(_check(f"{runner}: CPU (all processes) {large:,} / {small:,} inputs", cpu_ratio, "<=",
                                     limit, "the same ratio in CPU seconds, which the machine's load hardly moves"))
            noise = by_size[small]["noise_ms_per_item"]
            if by_size[small]["ms_per_item"] <= noise:  # the smaller run's own cost is within the fixed cost's noise
                checks.append(_check(f"{runner}: time {large:,} / {small:,} inputs", None, "<=", limit,
                                     f"not measurable: {small:,} inputs cost less than the fixed cost's spread"))
                continue
            checks.append(_check(f"{runner}: time {large:,} / {small:,} inputs", ratio, "<=", limit,
                                 f"fixed-cost noise {noise / by_size[small]['ms_per_item']:.0%} of the {small:,} "
                                 f"figure"))
        if runner == "ray":
            cpu = max(by_size[s]["cpu_ms_per_item"] for s in sizes)
            checks.append(_check("ray: driver CPU ms per item (worst size)", cpu, "<=",
                                 TARGETS["ray_driver_cpu_ms_per_item"]))
        if len(sizes) > 1:
            last = by_size[sizes[-1]]
            checks.append(_check(f"{runner}: driver peak {sizes[-1]:,} / {sizes[-2]:,} inputs",
                                 last["peak_ratio_last_step"], "<=", TARGETS["peak_ratio_last_step"],
                                 f"{last['run']['peak_mb']:.0f} MB"))
        largest = by_size[sizes[-1]]
        checks.append(_check(f"{runner}: no-op rerun of {sizes[-1]:,} inputs, s", largest["noop"]["wall_s"], "<=",
                             TARGETS["noop_s_largest"],
                             "torch imported!" if largest["noop"].get("torch_imported") else "no torch imported"))
        bad = [s for s in sizes if not (by_size[s]["counts_ok"] and by_size[s]["noop_ok"])]
        if bad:
            checks.append(_check(f"{runner}: every input committed once, rerun skips all", None, "<=", 0,
                                 f"wrong counts at {bad}"))
    grid = results.get("grid", {}).get("sizes", [])
    for small, large in zip(grid, grid[1:], strict=False):
        ratio = large["evaluation_s"] / small["evaluation_s"]
        limit = TARGETS["grid_ratio_per_10x"] / 10 * large["test_rows"] / small["test_rows"]
        checks.append(_check(f"grid evaluation {large['test_rows']:,} / {small['test_rows']:,} rows", ratio, "<=",
                             limit))
    clips = results.get("spectrogram", {}).get("clips", [])
    if clips:
        checks.append(_check("spectrogram speed-up vs matplotlib (worst clip)", min(c["speedup"] for c in clips),
                             ">=", TARGETS["spectrogram_speedup"]))
        checks.append(_check("spectrogram PNG / WAV bytes (worst clip)", max(c["png_per_wav"] for c in clips), "<=",
                             TARGETS["spectrogram_png_per_wav"]))
    return checks


def table(results: dict) -> str:
    lines = []
    for label, runner, runs in _groups(results.get("sonify", {})):
        derived = derive(runs)
        fixed = derived["fixed"]
        lines += ["", f"sonify-job --runner {runner}, {label}: fixed cost (4 real images alone, median of "
                      f"{fixed.get('runs', 0)}) {fixed.get('wall_s', float('nan')):.1f} s wall (spread "
                      f"{fixed.get('spread_s', float('nan')):.1f} s), {fixed.get('cpu_s', float('nan')):.1f} s driver "
                      f"CPU, peak {fixed.get('peak_mb', float('nan')):.0f} MB",
                  "| inputs | wall s | ms/item (± noise) | x | time x (limit) | CPU ms/item, all processes | CPU x | "
                  "driver CPU ms/item | peak MB | MB per 10k | x | no-op s | x | no-op torch |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for size, f in derived["sizes"].items():
            if "ms_per_item" not in f:
                lines.append(f"| {size:,} | failed: {_line(f['run'])} |")
                continue
            lines.append(f"| {size:,} | {f['run']['wall_s']:.1f} | {f['ms_per_item']:.3f} (± "
                         f"{f['noise_ms_per_item']:.3f}) | {f['ms_ratio']:.2f} | {f['time_ratio']:.2f} "
                         f"({f['time_ratio_limit']:.1f}) | {f['tree_cpu_ms_per_item']:.3f} | {f['tree_cpu_ratio']:.2f} | "
                         f"{f['cpu_ms_per_item']:.3f} | {f['run']['peak_mb']:.0f} | "
                         f"{f['peak_mb_per_10k']:.1f} | {f['peak_per_10k_ratio']:.3f} | {f['noop']['wall_s']:.1f} | "
                         f"{f['noop_ratio']:.2f} | {'yes' if f['noop'].get('torch_imported') else 'no'} |")
    manifest = results.get("manifest", {})
    if manifest.get("new"):
        lines += ["", "manifest (synthetic, PartWriter): seconds (x smallest), peak MB",
                  "| rows | compact | compact no-op | no-op resume | ok_rows | failed_rows | write_errors |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for rows, steps in sorted(manifest["new"].items(), key=lambda item: int(item[0])):
            cells = [f"{steps[s]['seconds']:.1f} ({steps[s].get('seconds_ratio', 1):.1f}x), {steps[s]['peak_mb']:.0f} MB"
                     if "seconds" in steps.get(s, {}) else "failed"
                     for s in ("compact", "compact_noop", "noop_resume", "ok_rows", "failed_rows", "write_errors")]
            lines.append(f"| {int(rows):,} | " + " | ".join(cells) + " |")
    grid = results.get("grid", {}).get("sizes", [])
    if grid:
        lines += ["", "grid evaluation", "| test rows | seconds | x smallest |", "|---:|---:|---:|"]
        lines += [f"| {g['test_rows']:,} | {g['evaluation_s']:.2f} | {g['time_ratio']:.2f} |" for g in grid]
    listing = [r for r in results.get("listing", {}).get("rows", []) if r["version"] == "after"]
    if listing:
        lines += ["", "listing (list_windows)", "| source | items | ms/item | x smallest | peak MB |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {r['source']} | {r['size']:,} | {r['ms_per_item']:.4f} | {r['ms_ratio']:.2f} | "
                  f"{r['peak_mb']:.0f} |" for r in sorted(listing, key=lambda r: (r["source"], r["size"]))]
    clips = results.get("spectrogram", {}).get("clips", [])
    if clips:
        lines += ["", "spectrogram", "| clip | ms | matplotlib ms | speed-up | PNG B | WAV B |",
                  "|---|---:|---:|---:|---:|---:|"]
        lines += [f"| {c['clip']} | {c['ms']:.2f} | {c['matplotlib_ms']:.1f} | {c['speedup']:.0f}x | "
                  f"{c['png_bytes']:,} | {c['wav_bytes']:,} |" for c in clips]
    checks = results.get("targets", [])
    if checks:
        lines += ["", "| target | measured | limit | met | note |", "|---|---:|---:|---|---|"]
        for c in checks:
            measured = "-" if c["measured"] is None else f"{c['measured']:.3f}"
            met = {True: "yes", False: "NO", None: "-"}[c["met"]]
            lines.append(f"| {c['target']} | {measured} | {c['op']} {c['limit']:g} | {met} | {c['note']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: a check that everything runs")
    parser.add_argument("--sizes", help="sonify input counts, comma-separated (default 10k,100k,1M; quick 1k,10k)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--runners", default=",".join(RUNNERS), help="sonify-job runners (default: local,ray)")
    parser.add_argument("--before", action="append", nargs="?", const=BEFORE, metavar="COMMIT[:SIZES]",
                        help=f"also run sonify-job of this commit (default {BEFORE}), at SIZES (comma-separated; "
                             f"default 10k and 100k, quick 1k and 10k); repeatable")
    parser.add_argument("--json", default=os.path.join(BENCH_DIR, "scale.json"),
                        help="figures file (default: bench/scale.json); parts not run keep their figures there")
    parser.add_argument("--render", action="store_true", help="print the table of --json without running anything")
    parser.add_argument("--driver", help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if args.driver:
        return _driver(args.driver, rest[1:] if rest[:1] == ["--"] else rest)
    if args.child:
        part, path, settings = args.child
        figures = _child(part, json.loads(settings))
        with open(path, "w") as f:
            json.dump(figures, f, indent=1, default=str)
        return 0
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    results = {}
    if os.path.exists(args.json):
        with open(args.json) as f:
            results = json.load(f)
    if not args.render:
        settings = dict(QUICK if args.quick else FULL)
        if args.sizes:
            settings["sizes"] = tuple(int(s) for s in args.sizes.split(","))
        settings["runners"] = tuple(args.runners.split(","))
        settings["before"] = {}
        for given in args.before or ():
            commit, _, sizes = given.partition(":")
            settings["before"][commit] = tuple(int(n) for n in sizes.split(",")) if sizes else \
                settings["before_sizes"]
        for part in args.parts.split(","):
            if part not in PARTS:
                parser.error(f"--parts: unknown part {part!r}")
            print(f"== {part}", flush=True)
            figures = _run_part(part, settings)
            if part == "sonify" and not figures.get("before") and results.get("sonify", {}).get("before"):
                figures["before"] = results["sonify"]["before"]  # the code before, measured by an earlier run
                figures["before_measured"] = results["sonify"].get("before_measured", results["sonify"]["measured"])
            figures["measured"] = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                                   "quick": args.quick, "cpus": os.cpu_count(), "load_after": os.getloadavg()}
            results[part] = figures
            results["targets"] = targets(results)
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1, default=str)
    results["targets"] = targets(results)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
