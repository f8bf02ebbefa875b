"""`i2a embed`: AudioCaps captions or fetched images to paired CLIP/CLAP vectors as Parquet, with Ray Data."""

from __future__ import annotations

import argparse

from i2a_core.cli.flags import ConfigError, add_job_arguments, add_model_arguments, models_from_args
from i2a_core.io import sources
from i2a_core.jobs.embed import SOURCES, EmbedConfig, run_embed

HELP = "compute (CLIP, CLAP) training pairs from AudioCaps captions or fetched images, as Parquet"
DESCRIPTION = """\
Compute the pairs translators learn from, as a Ray Data pipeline: read -> decode (CPU tasks) ->
CLIP + CLAP encoders (actor pool) -> zstd Parquet parts under OUTPUT (local or s3://).

  --source audiocaps  (CLIP text embedding of the caption, CLAP embedding of the caption);
                      --input is an AudioCaps CSV, default: the official train CSV, downloaded once
  --source images     (CLIP image embedding, CLAP embedding of the caption); --input is `i2a fetch` output

Columns: id, source, modality (what CLIP encoded), caption, url, clip (raw CLIP output), clap (AudioLDM's
CLAP vector). Read them with i2a_core.jobs.embed.read_pairs(OUTPUT) or glob OUTPUT/part-*.parquet.
A rerun with the same arguments computes only the rows missing from OUTPUT; no id is written twice.
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
    parser.add_argument("--actors", type=int, default=1, help="encoder actors (default: 1)")
    parser.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs per encoder actor (default: 0)")
    parser.add_argument("--cpus-per-actor", type=float,
                        help="CPUs per encoder actor, each running as many torch threads (default: 1 with GPUs; "
                             "without, the node's CPUs shared by the actors, less a sliver for reading and writing)")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per encoder call (default: 64)")
    add_model_arguments(parser, translator=False)
    add_job_arguments(parser)


def config_from_args(args: argparse.Namespace) -> EmbedConfig:
    for flag in ("actors", "batch_size", "rows_per_part"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be at least 1")
    if args.gpus_per_actor < 0 or (args.cpus_per_actor is not None and args.cpus_per_actor <= 0):
        raise ConfigError("--gpus-per-actor must be >= 0 and --cpus-per-actor > 0")
    if args.source == "images" and not args.input:
        raise ConfigError("--source images needs --input: the shard folder written by `i2a fetch`")
    return EmbedConfig(source=args.source, input=args.input, output=args.output, models=models_from_args(args),
                       actors=args.actors, gpus_per_actor=args.gpus_per_actor, cpus_per_actor=args.cpus_per_actor,
                       batch_size=args.batch_size, rows_per_part=args.rows_per_part, device=args.device,
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
