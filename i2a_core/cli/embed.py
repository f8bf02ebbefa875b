"""`i2a embed`: AudioCaps captions or fetched images to paired CLIP/CLAP vectors as Parquet, on the one runner."""

from __future__ import annotations

import argparse

from i2a_core.cli.flags import add_job_arguments, add_model_arguments, models_from_args
from i2a_core.io import sources
from i2a_core.jobs.embed import LOCAL_MAX_ROWS, SOURCES, EmbedConfig, run_embed

HELP = "compute (CLIP, CLAP) training pairs from AudioCaps captions or fetched images, as Parquet"
DESCRIPTION = """\
Compute the pairs translators learn from, on i2a's runner: read tar members -> decode with CLIP's own
preprocessing -> CLIP + CLAP encoders -> zstd Parquet parts under OUTPUT (local or s3://).

  --source audiocaps  (CLIP text embedding of the caption, CLAP embedding of the caption);
                      --input is an AudioCaps CSV, default: the official train CSV, downloaded once
  --source images     (CLIP image embedding, CLAP embedding of the caption); --input is `i2a fetch` output

Columns: id, source, modality (what CLIP encoded), caption, url, clip (raw CLIP output), clap (AudioLDM's
CLAP vector). Read them with i2a_core.jobs.embed.read_pairs(OUTPUT) or glob OUTPUT/part-*.parquet.
A part is committed every --rows-per-part rows or --commit-every seconds, so a crash loses at most that much;
a rerun with the same arguments computes only the rows missing from OUTPUT, and no id is written twice.
Bad rows (empty captions, duplicated ids, undecodable images) are skipped and counted, and the exit
status is 1; long captions are truncated and counted. Each run writes OUTPUT/stats.json and OUTPUT/{clip,clap}_norms.png.

examples:
  i2a embed --preset tiny --source audiocaps --input train.csv --output pairs/
  ray job submit --working-dir . -- python jobs/embed.py --source images --input s3://b/wit \\
      --output s3://b/pairs/wit --actors 8 --gpus-per-actor 1 --batch-size 256
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, choices=SOURCES, help="what the rows are")
    parser.add_argument("--input", help="AudioCaps CSV, or the shard folder of `i2a fetch` (local or s3://)")
    parser.add_argument("--output", required=True, help="Parquet folder, local or s3://")
    parser.add_argument("--runner", choices=["auto", "local", "ray"], default="auto",
                        help="local: every stage in this process; ray: one actor per node without GPUs, Ray Data "
                             f"actor pools with them; auto (default): local for {LOCAL_MAX_ROWS} rows or fewer when "
                             "no Ray cluster is set (RAY_ADDRESS), else ray")
    parser.add_argument("--actors", type=int, default=1, help="encoder actors with GPUs, on Ray Data (default: 1); "
                                                              "without GPUs, one actor per node runs every stage")
    parser.add_argument("--gpus-per-actor", type=float,
                        help="GPUs per encoder actor (default: 1 when the Ray cluster has GPUs, else 0)")
    parser.add_argument("--cpus-per-actor", type=float,
                        help="CPUs per encoder actor on Ray Data, each running as many torch threads (default: 1)")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per encoder call (default: 64)")
    add_model_arguments(parser, translator=False)
    add_job_arguments(parser)


def config_from_args(args: argparse.Namespace) -> EmbedConfig:
    return EmbedConfig(source=args.source, input=args.input, output=args.output, models=models_from_args(args),
                       actors=args.actors, gpus_per_actor=args.gpus_per_actor, cpus_per_actor=args.cpus_per_actor,
                       batch_size=args.batch_size, rows_per_part=args.rows_per_part, commit_every=args.commit_every,
                       runner=args.runner, device=args.device, stall_timeout=args.stall_timeout,
                       take_over_lease=args.take_over_lease)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    stats = run_embed(config)
    failures = ", ".join(f"{reason} {count}" for reason, count in stats["failures"].items()) or "none"
    print(f"{stats['rows_written']} pairs written to {config.output} ({stats['rows']} in total, "
          f"{stats['rows_per_s']} rows/s); skipped: {failures}; truncated captions: "
          f"clip {stats['truncated_captions']['clip']}, clap {stats['truncated_captions']['clap']}, "
          f"over {sources.MAX_CAPTION_CHARS} characters {stats['truncated_captions']['characters']}")
    # Rows that `i2a fetch` could not download were its failures, reported there; the rest are this run's.
    failed = sum(count for reason, count in stats["failures"].items() if not reason.startswith("fetch_"))
    return 1 if failed else 0


COMMANDS = {"embed": (HELP, DESCRIPTION, add_arguments, run)}
