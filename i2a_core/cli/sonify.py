"""`i2a sonify` and `i2a sonify-job`: one job (i2a_core/jobs/sonify.py), in this process or on Ray."""

from __future__ import annotations

import argparse

from i2a_core.cli import flags
from i2a_core.errors import ConfigError
from i2a_core.jobs import sonify

SONIFY_HELP = "turn images (files, folders, http(s) URLs) or texts into audio clips, in this process"
SONIFY_DESCRIPTION = """\
Turn images into sound: CLIP encodes each image, the translator maps the CLIP vector into AudioLDM's
CLAP space, and AudioLDM generates a clip. Runs in this process and writes what the bulk job writes:
OUTPUT/audio/<name>.wav (mono, 16 kHz for AudioLDM) with OUTPUT/audio/<name>.json beside it (input, models,
seed, settings, timings), the manifest (OUTPUT/manifest/), errors.csv and the gallery (OUTPUT/index.html).
A bad input (not an image, a 404, a missing path) is reported and skipped; the exit status is 1 then.

examples:
  i2a sonify --preset tiny photos/ --output out/           # offline, random tiny models: noise
  i2a sonify cat.jpg https://example.org/dog.png --translator runs/grid/best --output out/
  i2a sonify --text "a dog barks in the rain" --output out/   # plain AudioLDM, for comparison
"""
JOB_HELP = "bulk sonification: folders, s3:// prefixes or URL lists -> WAVs, manifest and gallery (Ray)"
JOB_DESCRIPTION = """\
Sonify a folder (recursive), an s3:// prefix or a list of paths/URLs (.txt, .csv, .parquet) into
OUTPUT/audio/<relative path>.wav, a Parquet manifest (OUTPUT/manifest/, one row per input with its status,
error, seed, settings, timings and retrieval captions) and a paginated gallery (OUTPUT/index.html).
Takes every flag of `i2a sonify`. Rerunning the same command skips the inputs already done (transient
failures are retried). Bad inputs become error rows: the summary names the first few and
OUTPUT/errors.csv lists them all (input, error_kind, error), and the exit status is 1.

examples:
  i2a sonify-job --input photos/ --translator runs/grid/best --output s3://bucket/sounds/
  ray job submit --working-dir . -- python jobs/sonify.py --input s3://bucket/photos/ \\
      --translator s3://bucket/grid/best --output s3://bucket/sounds/ --gpus-per-actor 1 --batch-size 16
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="image file, folder (recursive), s3:// prefix, http(s) URL or .txt/.csv/.parquet list")
    parser.add_argument("--input", action="append", default=[], dest="more_inputs", metavar="INPUT",
                        help="same as a positional INPUT; repeatable")
    parser.add_argument("--text", action="append", default=[],
                        help="generate from this text through AudioLDM's own CLAP encoder (repeatable)")
    parser.add_argument("--output", required=True, help="output directory, local or s3://")
    parser.add_argument("--page-size", type=int, default=100, help="clips per gallery page (default: 100)")
    flags.add_image_arguments(parser)
    flags.add_model_arguments(parser)
    flags.add_generation_arguments(parser)
    flags.add_job_arguments(parser.add_argument_group("job"))


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    add_arguments(parser)
    group = parser.add_argument_group("bulk job")
    group.add_argument("--runner", choices=["auto", "local", "ray"], default="auto",
                       help="local: stages in this process; ray: one actor per node without GPUs, Ray Data "
                            "actor pools with them; auto (default): local for a handful of inputs when no Ray "
                            "cluster is set (RAY_ADDRESS), else ray")
    group.add_argument("--gpus-per-actor", type=float,
                       help="GPUs per AudioLDM actor, fractions share a GPU (default: 1 when the cluster has GPUs)")
    group.add_argument("--actors", type=int, help="AudioLDM actors (default: one per --gpus-per-actor share)")


def job_from_args(args: argparse.Namespace, in_process: bool) -> sonify.SonifyJob:
    inputs = tuple(args.inputs) + tuple(args.more_inputs)
    if not in_process and args.text:
        raise ConfigError("the bulk job sonifies images; use `i2a sonify --text` for texts")
    if not in_process and not inputs:
        raise ConfigError("nothing to sonify: give --input FOLDER|s3://PREFIX|LIST.txt|.csv|.parquet")
    return sonify.SonifyJob(
        inputs=inputs, texts=tuple(args.text), output=args.output, models=flags.models_from_args(args),
        settings=flags.generation_from_args(args), limits=flags.limits_from_args(args),
        runner="local" if in_process else args.runner, gpus_per_actor=getattr(args, "gpus_per_actor", None),
        actors=getattr(args, "actors", None), device=args.device, page_size=args.page_size,
        take_over_lease=args.take_over_lease, stall_timeout=args.stall_timeout, sidecars=in_process,
        rows_per_part=args.rows_per_part, commit_every=args.commit_every,
        shown_failures=50 if in_process else sonify.SHOWN_FAILURES,
        missing_roots_are_errors=not in_process)


def run(args: argparse.Namespace) -> int:
    summary = sonify.run(job_from_args(args, in_process=True))
    print(f"{summary.ok} clip{'s' if summary.ok != 1 else ''} written to {args.output}, {summary.failed} failed")
    return 1 if summary.failed else 0


def run_job(args: argparse.Namespace) -> int:
    summary = sonify.run(job_from_args(args, in_process=False))
    return 1 if summary.failed else 0  # the job ran; bad inputs are rows in the manifest and errors.csv


COMMANDS = {
    "sonify": (SONIFY_HELP, SONIFY_DESCRIPTION, add_arguments, run),
    "sonify-job": (JOB_HELP, JOB_DESCRIPTION, add_job_arguments, run_job),
}
