"""`i2a sonify`: images (files, folders, URLs) or texts to WAV clips with JSON sidecars."""

from __future__ import annotations

import argparse
import sys
import time

from i2a_core.cli.flags import (
    ConfigError,
    add_generation_arguments,
    add_lease_argument,
    add_model_arguments,
    generation_from_args,
    models_from_args,
)
from i2a_core.errors import Terminated
from i2a_core.io import images, storage
from i2a_core.specs import ImageLimits

HELP = "turn images (files, folders, http(s) URLs) or texts into audio clips"
DESCRIPTION = """\
Turn images into sound: CLIP encodes each image, the translator maps the CLIP vector into AudioLDM's
CLAP space, and AudioLDM generates a clip. Writes OUTPUT/<name>.wav (mono, at the vocoder's rate,
16 kHz for AudioLDM) and OUTPUT/<name>.json (input, models, seed, settings, timings).

examples:
  i2a sonify --preset tiny photos/ --output out/           # offline, random tiny models: noise
  i2a sonify cat.jpg https://example.org/dog.png --translator runs/grid/best --output out/
  i2a sonify --text "a dog barks in the rain" --output out/   # plain AudioLDM, for comparison
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="image file, folder (recursive) or http(s) URL")
    parser.add_argument("--input", action="append", default=[], dest="more_inputs", metavar="INPUT",
                        help="same as a positional INPUT; repeatable")
    parser.add_argument("--text", action="append", default=[],
                        help="generate from this text through AudioLDM's own CLAP encoder (repeatable)")
    parser.add_argument("--output", required=True, help="output directory, local or s3://")
    parser.add_argument("--max-pixels", type=int, default=ImageLimits.max_pixels,
                        help="refuse images with more pixels than this (decompression bombs)")
    parser.add_argument("--url-timeout", type=float, default=ImageLimits.timeout_s,
                        help="seconds allowed per URL: connecting, headers and body together")
    parser.add_argument("--max-bytes", type=int, default=ImageLimits.max_bytes,
                        help="largest input file or URL download, in bytes")
    add_url_arguments(parser)
    add_model_arguments(parser)
    add_generation_arguments(parser)


def add_url_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-private-urls", action="store_true",
                        help="let URLs reach loopback and private addresses (10/8, 192.168/16, fc00::/7...), "
                             "for images served on your own network; link-local addresses stay refused")


def limits_from_args(args: argparse.Namespace) -> ImageLimits:
    return ImageLimits(max_pixels=args.max_pixels, max_bytes=args.max_bytes, timeout_s=args.url_timeout,
                              allow_private_urls=args.allow_private_urls)


def add_job_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags only the bulk job (jobs/sonify.py) has, on top of `i2a sonify`'s."""
    group = parser.add_argument_group("bulk job")
    group.add_argument("--runner", choices=["auto", "local", "ray"], default="auto",
                       help="local: stages in this process; ray: Ray Data stages; auto (default): local for a "
                            "handful of inputs when no Ray cluster is set (RAY_ADDRESS), else ray")
    group.add_argument("--gpus-per-actor", type=float,
                       help="GPUs per AudioLDM actor, fractions share a GPU (default: 1 when the cluster has GPUs)")
    group.add_argument("--actors", type=int, help="AudioLDM actors (default: one per --gpus-per-actor share)")
    group.add_argument("--page-size", type=int, default=100, help="clips per gallery page (default: 100)")
    add_lease_argument(group)


def run_job(args: argparse.Namespace) -> int:
    """The bulk job: OUTPUT/audio/<key>.wav, OUTPUT/manifest/*.parquet and OUTPUT/index.html; resumable."""
    from i2a_core.jobs.sonify import SonifyJob
    from i2a_core.jobs.sonify import run as run_pipeline

    inputs = list(args.inputs) + list(args.more_inputs)
    if args.text:
        raise ConfigError("the bulk job sonifies images; use `i2a sonify --text` for texts")
    if not inputs:
        raise ConfigError("nothing to sonify: give --input FOLDER|s3://PREFIX|LIST.txt|.csv|.parquet")
    if args.page_size < 1:
        raise ConfigError(f"--page-size {args.page_size}: must be at least 1")
    if args.gpus_per_actor is not None and args.gpus_per_actor < 0:
        raise ConfigError(f"--gpus-per-actor {args.gpus_per_actor:g}: must not be negative")
    job = SonifyJob(
        inputs=tuple(inputs), output=args.output, models=models_from_args(args),
        settings=generation_from_args(args),
        limits=limits_from_args(args),
        runner=args.runner, gpus_per_actor=args.gpus_per_actor, actors=args.actors, device=args.device,
        page_size=args.page_size, take_over_lease=args.take_over_lease)
    try:
        summary = run_pipeline(job)
    except Terminated:
        print(f"i2a {args.command}: terminated (SIGTERM); finished clips are kept, rerun to do the rest",
              file=sys.stderr)
        return Terminated.exit_code
    return 1 if summary.failed else 0  # the job ran; bad inputs are rows in the manifest and errors.csv


def run(args: argparse.Namespace) -> int:
    from i2a_core.io.listing import list_inputs
    from i2a_core.jobs.clips import Sonifier, sonify_sources, sonify_texts

    # 1. Check inputs and settings before loading any model.
    inputs = list(args.inputs) + list(args.more_inputs)
    if not inputs and not args.text:
        raise ConfigError("nothing to sonify: give image files, folders or URLs, or --text")
    settings = generation_from_args(args)
    models = models_from_args(args, need_clip=bool(inputs))
    limits = limits_from_args(args)
    # A path that does not exist is one bad input among others, not a reason to stop.
    missing = [root for root in inputs if not images.is_url(root) and not storage.exists(root)]
    for root in missing:
        print(f"error: {root}: no such file, folder or prefix", file=sys.stderr)
    try:
        sources = list_inputs([root for root in inputs if root not in missing])
    except ValueError as e:  # an unreadable list file
        raise ConfigError(str(e)) from None
    if inputs and not sources and not missing:
        raise ConfigError(f"no images found in {', '.join(inputs)}")
    try:
        storage.check_output(args.output)
    except storage.OutputError as e:
        raise ConfigError(str(e)) from None
    storage.makedirs(args.output)

    # 2. Load every model once.
    started = time.perf_counter()
    sonifier = Sonifier(models, device=args.device, need_translator=bool(sources), need_text=bool(args.text))
    try:
        sonifier.generator.check_duration(settings.duration)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    load_s = time.perf_counter() - started

    # 3. Images, then texts; a bad input is reported and skipped.
    started = time.perf_counter()
    results = sonify_sources(sonifier, sources, args.output, settings, limits) if sources else []
    results += sonify_texts(sonifier, args.text, args.output, settings) if args.text else []

    # 4. Summary.
    written = sum(r.ok for r in results)
    failed = len(results) - written + len(missing)
    seconds = time.perf_counter() - started
    print(f"{written} clip{'s' if written != 1 else ''} written to {args.output}, {failed} failed "
          f"(models loaded in {load_s:.1f} s, clips made in {seconds:.1f} s)")
    if models.random_weights:
        from i2a_core.specs import RANDOM_WEIGHTS_NOTE

        print(RANDOM_WEIGHTS_NOTE)
    return 1 if failed else 0
