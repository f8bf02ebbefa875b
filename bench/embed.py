"""Rows/s and peak memory of the Ray embed job against a plain single-process loop over the same models and images;
and the driver's peak memory while it plans N caption rows, against the smallest N.

    python bench/embed.py                      # quick: 500 images, tiny preset
    python bench/embed.py --rows 5000          # the figure to report
    python bench/embed.py --rows 5000 --actors 1 --batch-size 64
    python bench/embed.py --plan 20000,200000,2000000   # planning memory (VmHWM of a fresh process per N)

Both sides start from the same webdataset shards (the layout `i2a fetch` writes) and write the same Parquet
pairs. The loop runs in a fresh process and its time includes imports and model loading, as the Ray time
includes starting and loading the actors (the Ray instance itself is started before timing). Peak memory is
the largest summed RSS of this process and every process it started, sampled every 50 ms.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from peak_memory import PeakMemory
from PIL import Image

from i2a_core.io import images, sources
from i2a_core.jobs.embed import EmbedConfig, read_pairs, run_embed
from i2a_core.refs import clip_image_size
from i2a_core.specs import PRESETS, resolve_models

WORDS = "dog cat rain engine bird bell crowd wind water siren piano drum door train voice".split()


def write_shards(folder: str, rows: int, image_size: int, shard_size: int = 1000) -> None:
    """Random images and captions as img2dataset's webdataset output: <n>.tar beside <n>.parquet."""
    rng = np.random.default_rng(0)
    os.makedirs(folder, exist_ok=True)
    for shard in range(0, rows, shard_size):
        name, meta = f"{shard // shard_size:05d}", []
        with tarfile.open(os.path.join(folder, f"{name}.tar"), "w") as tar:
            for i in range(shard, min(shard + shard_size, rows)):
                key, url = f"{i:09d}", f"http://bench.invalid/{i}.jpg"
                caption = " ".join(rng.choice(WORDS, size=6))
                pixels = rng.integers(0, 256, (image_size // 8, image_size // 8, 3), dtype=np.uint8)
                buffer = io.BytesIO()
                Image.fromarray(pixels).resize((image_size, image_size)).save(buffer, format="JPEG", quality=90)
                record = {"key": key, "url": url, "caption": caption, "status": "success",
                          "id": sources.image_id("bench", url), "source": "bench"}
                for suffix, data in ((".jpg", buffer.getvalue()), (".txt", caption.encode()),
                                     (".json", json.dumps(record).encode())):
                    info = tarfile.TarInfo(key + suffix)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                meta.append(record)
        pq.write_table(pa.Table.from_pylist(meta), os.path.join(folder, f"{name}.parquet"))


def plain_loop(folder: str, output: str, models, batch_size: int) -> int:
    """The baseline: one process reads, decodes, encodes and writes, batch after batch."""
    import pandas as pd

    from i2a_core.jobs.embed import PAIR_SCHEMA, _list_array
    from i2a_core.models.audioldm import ClapTextEncoder
    from i2a_core.models.clip import ClipEncoder

    clip = ClipEncoder(models.clip, batch_size=batch_size)
    clap = ClapTextEncoder.load(models.audioldm)
    out = []
    for name in sorted(f for f in os.listdir(folder) if f.endswith(".tar")):
        with tarfile.open(os.path.join(folder, name)) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar}
        keys = sorted(n[:-len(".json")] for n in members if n.endswith(".json"))
        for start in range(0, len(keys), batch_size):
            batch = [json.loads(members[k + ".json"]) for k in keys[start:start + batch_size]]
            pictures = [images.decode_image(members[r["key"] + ".jpg"], r["url"], check_extension=False)
                        for r in batch]
            captions = [r["caption"] for r in batch]
            out.append(pd.DataFrame({"id": [r["id"] for r in batch], "source": "bench", "modality": "image",
                                     "caption": captions, "url": [r["url"] for r in batch],
                                     "clip": list(clip.encode_images(pictures)), "clap": list(clap.encode(captions))}))
    frame = pd.concat(out, ignore_index=True)
    table = pa.table({
        **{c: frame[c].tolist() for c in ("id", "source", "modality", "caption", "url")},
        "clip": _list_array(np.stack(frame["clip"])), "clap": _list_array(np.stack(frame["clap"]))}, schema=PAIR_SCHEMA)
    pq.write_table(table, os.path.join(output, "pairs.parquet"), compression="zstd")
    return len(table)


PLAN_PEAK = """
import sys, tempfile, time
from i2a_core.jobs.embed import EmbedConfig, plan
from i2a_core.specs import PRESETS
started = time.perf_counter()
with tempfile.TemporaryDirectory() as scratch:
    work = plan(EmbedConfig(source="audiocaps", input=sys.argv[1], output=sys.argv[2], models=PRESETS["tiny"].models),
                scratch)
seconds = time.perf_counter() - started
peak = [int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0] * 1024
print(work.todo.total, work.already_done, peak, seconds)
"""


def plan_memory(sizes: list[int], done_fraction: float) -> None:
    """The driver's peak memory (VmHWM) planning N AudioCaps rows, each N in a fresh process, a fraction of them
    already in the output; as MB and as a ratio against the smallest N."""
    with tempfile.TemporaryDirectory(prefix="i2a-bench-plan-") as tmp:
        rows = []
        for size in sizes:
            path, output = os.path.join(tmp, f"captions-{size}.csv"), os.path.join(tmp, f"pairs-{size}")
            with open(path, "w") as f:
                f.write("audiocap_id,youtube_id,start_time,caption\n")
                for i in range(size):
                    f.write(f"{i},yt{i},{i % 30},{' '.join(WORDS[(i + j) % len(WORDS)] for j in range(8))} {i}\n")
            done = int(size * done_fraction)
            os.makedirs(output)
            if done:
                pq.write_table(pa.table({"id": [f"audiocaps-{i}" for i in range(done)]}),  # row groups as parts
                               os.path.join(output, "part-00000000000000000000-00000000.parquet"), row_group_size=5000)
            result = subprocess.run([sys.executable, "-c", PLAN_PEAK, path, output], capture_output=True, text=True,
                                    check=True)
            todo, already, peak, seconds = result.stdout.split()
            rows.append((size, int(todo), int(already), int(peak), float(seconds)))
    base = rows[0]
    print(f"planning AudioCaps rows, {done_fraction:.0%} already in the output (driver VmHWM, fresh process per N)")
    for size, todo, already, peak, seconds in rows:
        extra = (peak - base[3]) / max(size - base[0], 1) if size != base[0] else 0.0
        print(f"  {size:>10,} rows: {todo:>10,} to do, {already:>10,} done; peak {peak / 2**20:7.1f} MiB "
              f"({peak / base[3]:.2f}x the smallest; {extra:.1f} bytes per extra row), {seconds:.1f} s "
              f"({seconds / size * 1e6:.1f} us a row)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=500, help="images to embed (default: 500; report 5000)")
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--actors", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs for the local Ray instance")
    parser.add_argument("--loop-threads", type=int,
                        help="torch threads for the loop (default: torch's own choice, one per core); Ray's "
                             "actors run torch with one thread per CPU they hold")
    parser.add_argument("--json", metavar="PATH", help="also write the measured figures to this JSON file")
    parser.add_argument("--plan", metavar="N,N,...", help="measure planning memory for these row counts instead")
    parser.add_argument("--done", type=float, default=0.5, help="with --plan: the fraction already in the output")
    parser.add_argument("--loop", nargs=2, metavar=("SHARDS", "OUTPUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.plan:
        plan_memory([int(n) for n in args.plan.split(",")], args.done)
        return
    models = resolve_models(args.preset)

    if args.loop:  # the baseline, in a fresh process so that it pays for its imports as Ray's workers do
        if args.loop_threads:
            import torch

            torch.set_num_threads(args.loop_threads)
        print(plain_loop(*args.loop, models, args.batch_size))
        return

    import ray

    with tempfile.TemporaryDirectory(prefix="i2a-bench-") as tmp:
        shards = os.path.join(tmp, "shards")
        image_size = clip_image_size(models.clip)
        write_shards(shards, args.rows, image_size)
        print(f"{args.rows} images of {image_size} px, preset {args.preset}, batch {args.batch_size}, "
              f"{os.cpu_count()} cores")

        os.makedirs(os.path.join(tmp, "loop"))
        command = [sys.executable, os.path.abspath(__file__), "--loop", shards, os.path.join(tmp, "loop"),
                   "--preset", args.preset, "--batch-size", str(args.batch_size)]
        if args.loop_threads:
            command += ["--loop-threads", str(args.loop_threads)]
        with PeakMemory() as loop_memory:
            started = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True, check=True)
            loop_s = time.perf_counter() - started
        loop_rows = int(result.stdout.split()[-1])

        # A running Ray instance is the starting point on a cluster; its start-up is not timed.
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        config = EmbedConfig(source="images", input=shards, output=os.path.join(tmp, "ray"), models=models,
                             actors=args.actors, batch_size=args.batch_size, rows_per_part=5000)
        with PeakMemory() as ray_memory:
            started = time.perf_counter()
            stats = run_embed(config, log=lambda *_: None)
            ray_s = time.perf_counter() - started
        ray_rows = len(read_pairs(config.output, columns=["id"]))
        ray.shutdown()

    assert loop_rows == ray_rows == args.rows, (loop_rows, ray_rows)
    loop_rate, ray_rate = loop_rows / loop_s, ray_rows / ray_s
    threads = args.loop_threads or "default"
    print(f"plain loop : {loop_rate:8.1f} rows/s  ({loop_s:.1f} s)  peak RSS {loop_memory.peak / 2**20:,.0f} MiB "
          f"(fresh process, torch threads: {threads})")
    print(f"ray embed  : {ray_rate:8.1f} rows/s  ({ray_s:.1f} s)  peak RSS {ray_memory.peak / 2**20:,.0f} MiB "
          f"(driver + local Ray instance, {args.actors} actor(s))")
    print(f"ratio      : {ray_rate / loop_rate:.2f}x the loop's rows/s, {ray_memory.peak / loop_memory.peak:.2f}x its "
          f"peak memory")
    print("ray stages (busy rows/s per worker): " + ", ".join(
        f"{name} {stage['rows_per_s']}" for name, stage in stats["stages"].items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({
                "benchmark": "embed",
                "workload": f"{args.rows} images, preset {args.preset}, batch {args.batch_size}, "
                            f"{args.actors} actor(s)",
                "baseline": {"name": "plain loop", "value": loop_rate, "unit": "rows/s", "seconds": loop_s,
                             "peak_rss_bytes": loop_memory.peak, "torch_threads": args.loop_threads or "default"},
                "i2a": {"name": "ray embed job", "value": ray_rate, "unit": "rows/s", "seconds": ray_s,
                        "peak_rss_bytes": ray_memory.peak},
                "ratio": ray_rate / loop_rate, "target": {"op": ">=", "value": 0.95},
                "checks": [
                    {"name": "embed Ray rows/s / plain loop", "ratio": ray_rate / loop_rate, "op": ">=", "value": 0.95},
                    {"name": "embed Ray peak memory / plain loop", "ratio": ray_memory.peak / loop_memory.peak,
                     "op": "<=", "value": 1.3}],
                "stages_rows_per_s": {name: stage["rows_per_s"] for name, stage in stats["stages"].items()},
                "stages_s": {f"{name} per row (busy)": stage["busy_s"] / stage["rows"]
                             for name, stage in stats["stages"].items() if stage["rows"]},
            }, f, indent=2)


if __name__ == "__main__":
    main()
