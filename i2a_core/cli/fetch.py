"""`i2a fetch`: WIT, Conceptual Captions or any URL/caption table to webdataset shards with img2dataset."""

from __future__ import annotations

import argparse
import os

from i2a_core.errors import ConfigError
from i2a_core.io import sources
from i2a_core.jobs.fetch import DISTRIBUTORS, SOURCES, FetchConfig, run_fetch
from i2a_core.refs import clip_image_size
from i2a_core.specs import DEFAULT_PRESET, PRESETS, resolve_models

HELP = "download WIT / Conceptual Captions / any URL+caption table into webdataset shards"
DESCRIPTION = """\
Download the images of a URL/caption table with img2dataset into webdataset shards (local or s3://),
resized and center-cropped to the CLIP input size. Each sample keeps its caption, URL, a stable id and
its source, which `i2a embed --source images` reads. A rerun with the same arguments skips finished
shards. Ends with a summary of successes and failures by reason (exit status 1 when any failed).

sources:
  wit    WIT's 17-column TSV, plain or .gz; caption = reference, else alt text, else attribution
  cc     Conceptual Captions TSV: caption<TAB>url, no header
  table  any CSV/TSV/Parquet with --url-col and --caption-col

examples:
  i2a fetch --source cc --input Train_GCC-training.tsv --output s3://bucket/cc --distributor ray
  i2a fetch --source wit --input wit_v1.train.all-00000-of-00010.tsv.gz --languages en --output wit/
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, choices=SOURCES, help="input table format")
    parser.add_argument("--input", required=True, help="input table, local or s3://")
    parser.add_argument("--output", required=True, help="shard folder, local or s3://")
    parser.add_argument("--languages", default="", help="wit: comma-separated language codes to keep (default: all)")
    parser.add_argument("--url-col", default="url", help="table: URL column (default: url)")
    parser.add_argument("--caption-col", default="caption", help="table: caption column (default: caption)")
    parser.add_argument("--distributor", default="multiprocessing", choices=DISTRIBUTORS,
                        help="multiprocessing on this machine, or Ray tasks on the current cluster")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1,
                        help="download processes (multiprocessing; default: one per core)")
    parser.add_argument("--threads", type=int, default=64, help="download threads per process (default: 64)")
    parser.add_argument("--shard-size", type=int, default=10_000, help="images per shard (default: 10000)")
    parser.add_argument("--timeout", type=int, default=10, help="seconds per download (default: 10)")
    parser.add_argument("--retries", type=int, default=0, help="retries per failed download (default: 0)")
    parser.add_argument("--image-size", type=int, help="side of the stored images (default: the CLIP input size)")
    parser.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS),
                        help=f"the preset whose CLIP input size images are resized to (default: {DEFAULT_PRESET})")
    parser.add_argument("--clip-model", help="open_clip model (name, hf-hub:, local-dir:) whose input size to use")


def config_from_args(args: argparse.Namespace) -> FetchConfig:
    for flag in ("processes", "threads", "shard_size", "timeout"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be at least 1")
    # Only CLIP's input size is needed, read from its config: no weights, no hub check.
    image_size = args.image_size or clip_image_size(
        resolve_models(args.preset, clip_model=args.clip_model).clip)
    return FetchConfig(
        source=args.source, input=args.input, output=args.output, image_size=image_size,
        languages=tuple(code.strip() for code in args.languages.split(",") if code.strip()),
        url_col=args.url_col, caption_col=args.caption_col, distributor=args.distributor,
        processes=args.processes, threads=args.threads, shard_size=args.shard_size,
        timeout_s=args.timeout, retries=args.retries,
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    try:
        summary = run_fetch(config)
    except sources.SourceError as e:
        raise ConfigError(str(e)) from None
    print("\n".join(summary.lines()))
    return 1 if summary.failures else 0  # some images could not be fetched: counted by reason above


COMMANDS = {"fetch": (HELP, DESCRIPTION, add_arguments, run)}
