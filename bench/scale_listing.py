"""Listing and keying cost per item and peak memory, for a .txt, a .csv and a .parquet list and a folder, as the
number of inputs grows; the listing before streaming (list_inputs of commit 41ca35c) measured the same way.

    python bench/scale_listing.py                                 # 10k, 100k, 1M entries (the folder to 100k)
    python bench/scale_listing.py --sizes 10000,100000 --json figures.json

Each figure comes from a fresh process that lists one source: ms per item from the call to the last window
(listing, keying, de-duplication: everything list_windows does), its process's peak RSS (VmHWM), and that peak
less the process's own after imports (`listing_mb`). Ratios are against the smallest size of the same source and
version. List entries need not exist (listing never opens them); the folder holds empty files 1,000 a folder.
Targets: ms per item flat (10x the items cost <= 10.5x the time) and well under 0.05 ms for list files; peak
at the largest size <= 1.2x that at the next.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH_DIR)
BEFORE = "41ca35c"  # the last commit whose list_inputs held every input in memory
SOURCES = ("txt", "csv", "parquet", "folder")
FOLDER_MAX = 100_000  # creating a million files is a bench of the filesystem, not of i2a


def run(sizes=(10_000, 100_000, 1_000_000)) -> dict:
    """Figures for every source, size and version; bench/scale.py imports this."""
    sizes = sorted(sizes)
    rows = []
    with tempfile.TemporaryDirectory(prefix="i2a-bench-listing-") as tmp:
        before = _before_source(tmp)
        for size in sizes:
            for source in SOURCES:
                if source == "folder" and size > FOLDER_MAX:
                    continue
                root = _make(source, size, os.path.join(tmp, f"{source}-{size}"))
                for version in ("after", "before") if before else ("after",):
                    figures = _measure(version, root, before)
                    rows.append({"source": source, "version": version, "size": size, **figures})
                    print(f"  {source:8} {version:6} {size:>9,}: {figures['ms_per_item']:.4f} ms/item, "
                          f"peak {figures['peak_mb']:.0f} MB (listing {figures['listing_mb']:.0f} MB)", flush=True)
                shutil.rmtree(os.path.dirname(root) if source != "folder" else root, ignore_errors=True)
    _add_ratios(rows)
    return {"benchmark": "scale_listing", "sizes": sizes, "before": BEFORE if before else None, "rows": rows,
            "targets": {"ms_per_item_list_files": 0.05, "time_ratio_per_10x": 10.5, "peak_ratio_last_step": 1.2}}


def _add_ratios(rows: list[dict]) -> None:
    smallest, previous = {}, {}
    for row in sorted(rows, key=lambda r: r["size"]):
        group = (row["source"], row["version"])
        first = smallest.setdefault(group, row)
        row["ms_ratio"] = round(row["ms_per_item"] / first["ms_per_item"], 3)
        row["time_ratio"] = round(row["ms_per_item"] * row["size"] / (first["ms_per_item"] * first["size"]), 3)
        row["peak_ratio"] = round(row["peak_mb"] / first["peak_mb"], 3)
        row["peak_ratio_last_step"] = round(row["peak_mb"] / previous[group]["peak_mb"], 3) if group in previous \
            else 1.0
        previous[group] = row
    after = {(r["source"], r["size"]): r for r in rows if r["version"] == "after"}
    for row in rows:
        if row["version"] == "before" and (row["source"], row["size"]) in after:
            new = after[(row["source"], row["size"])]
            new["speedup_vs_before"] = round(row["ms_per_item"] / new["ms_per_item"], 2)
            new["memory_vs_before"] = round(new["listing_mb"] / max(row["listing_mb"], 1.0), 3)


def _make(source: str, size: int, folder: str) -> str:
    """A list of `size` entries (or a folder of `size` image files) shaped like real ones."""
    os.makedirs(folder, exist_ok=True)
    names = (f"part{i // 1000:05d}/image_{i:09d}.{('jpg', 'png', 'webp')[i % 3]}" for i in range(size))
    if source == "folder":
        for i, name in enumerate(names):
            if i % 1000 == 0:
                os.makedirs(os.path.join(folder, f"part{i // 1000:05d}"), exist_ok=True)
            open(os.path.join(folder, name), "wb").close()
        return folder
    path = os.path.join(folder, f"list.{source}")
    if source == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"id": range(size), "path": [f"images/{name}" for name in names]}), path)
        return path
    with open(path, "w") as f:
        if source == "csv":
            f.write("id,url,caption\n")
            f.writelines(f"{i},https://cdn{i % 7}.example.com/{name}?w=640,a photo number {i}\n"
                         for i, name in enumerate(names))
        else:
            f.writelines(f"images/{name}\n" for name in names)
    return path


def _before_source(tmp: str) -> str | None:
    """listing.py of commit BEFORE, from git, or None where there is no git history."""
    try:
        text = subprocess.run(["git", "show", f"{BEFORE}:i2a_core/io/listing.py"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        print(f"  (no git history with {BEFORE}: the listing before is not measured)")
        return None
    path = os.path.join(tmp, "listing_before.py")
    with open(path, "w") as f:
        f.write(text)
    return path


def _measure(version: str, root: str, before: str | None) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, __file__, "--one", version, root, *([before] if before else [])],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode:
        raise RuntimeError(f"listing {root} ({version}) failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _one(version: str, root: str, before: str | None) -> dict:
    """Runs in the measuring process: list `root` once, after a warm-up that pays the imports."""
    if version == "before":
        import importlib.util

        spec = importlib.util.spec_from_file_location("listing_before", before)
        module = importlib.util.module_from_spec(spec)
        sys.modules["listing_before"] = module
        spec.loader.exec_module(module)

        def listed(roots):
            return len(module.list_inputs(roots))
    else:
        from i2a_core.io import listing

        def listed(roots):
            return sum(window.num_rows for window in listing.list_windows(roots))
    with tempfile.TemporaryDirectory() as warm:  # pyarrow and pandas load on first use: not listing's cost
        for name in ("warm.txt", "warm.csv"):
            with open(os.path.join(warm, name), "w") as f:
                f.write("a.png\n")
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"path": ["a.png"]}), os.path.join(warm, "warm.parquet"))
        open(os.path.join(warm, "b.png"), "wb").close()
        listed([os.path.join(warm, name) for name in ("warm.txt", "warm.csv", "warm.parquet")] + [warm])
    base = peak_kb()
    started = time.perf_counter()
    count = listed([root])
    seconds = time.perf_counter() - started
    peak = peak_kb()
    return {"items": count, "seconds": round(seconds, 3), "ms_per_item": round(seconds * 1000 / max(count, 1), 5),
            "peak_mb": round(peak / 1024, 1), "listing_mb": round((peak - base) / 1024, 1)}


def peak_kb() -> int:
    """This process's peak resident memory in KB. VmHWM, not ru_maxrss: the latter starts from the parent's
    resident size at fork, which hides a child's own peak when the parent is larger."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _markdown(figures: dict) -> str:
    lines = ["| source | version | items | ms/item | x smallest | peak MB | listing MB | peak x previous size | "
             "speed-up vs before |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in sorted(figures["rows"], key=lambda r: (r["source"], r["version"] != "after", r["size"])):
        lines.append(f"| {row['source']} | {row['version']} | {row['size']:,} | {row['ms_per_item']:.4f} | "
                     f"{row['ms_ratio']:.2f} | {row['peak_mb']:.0f} | {row['listing_mb']:.0f} | "
                     f"{row['peak_ratio_last_step']:.2f} | {row.get('speedup_vs_before', '')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated entry counts")
    parser.add_argument("--json", help="write the figures here")
    parser.add_argument("--one", nargs="+", help=argparse.SUPPRESS)  # VERSION ROOT [BEFORE]: one measurement
    args = parser.parse_args()
    if args.one:
        version, root, *before = args.one
        print(json.dumps(_one(version, root, before[0] if before else None)))
        return
    figures = run(tuple(int(size) for size in args.sizes.split(",")))
    print(_markdown(figures))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
