"""`i2a sonify-job` (also `python jobs/sonify.py`): `i2a sonify` for large inputs, as a resumable Ray batch job."""

from __future__ import annotations

import argparse

from i2a_core.cli import sonify

HELP = "bulk sonification: folders, s3:// prefixes or URL lists -> WAVs, manifest and gallery (Ray)"
DESCRIPTION = """\
Sonify a folder (recursive), an s3:// prefix or a list of paths/URLs (.txt, .csv, .parquet) into
OUTPUT/audio/<relative path>.wav, a Parquet manifest (OUTPUT/manifest/, one row per input with its status,
error, seed, settings, timings and retrieval captions) and a paginated gallery (OUTPUT/index.html).
Takes every flag of `i2a sonify`. Rerunning the same command skips the inputs already done (transient
download failures are retried). Bad inputs become error rows: the summary names the first few and
OUTPUT/errors.csv lists them all (input, error_kind, error), and the exit status is 1.

examples:
  i2a sonify-job --input photos/ --translator runs/grid/best --output s3://bucket/sounds/
  ray job submit --working-dir . -- python jobs/sonify.py --input s3://bucket/photos/ \\
      --translator s3://bucket/grid/best --output s3://bucket/sounds/ --gpus-per-actor 1 --batch-size 16
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sonify.add_arguments(parser)
    sonify.add_job_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return sonify.run_job(args)
