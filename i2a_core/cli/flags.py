"""Flags shared by every command: models (preset + overrides), generation, image limits, lease, stalls, paths.

Flags become typed specs here; they are checked once, by the job (i2a_core/checks.py), before anything runs.
"""

from __future__ import annotations

import argparse
import os
import re

from i2a_core.io.lease import STALE_S
from i2a_core.io.manifest import PART_EVERY_S, PART_ROWS
from i2a_core.runner import STALL_TIMEOUT_S
from i2a_core.specs import (
    DEFAULT_PRESET,
    DEFAULT_SCHEDULER,
    PRESETS,
    SCHEDULERS,
    GenerationSettings,
    ImageLimits,
    ModelSpec,
    generation_settings,
    resolve_models,
)

EXIT_STATUS = """\
exit status:
  0  everything succeeded
  1  the command ran but some inputs failed (each is named), or it stopped on an unexpected error
  2  usage or configuration error: bad flags, paths or models (one line, no traceback; --debug shows it)"""

# Flags that name files or folders; model flags may also be hub ids or tags, made absolute only when they exist.
PATH_FLAGS = ("input", "output", "inputs", "more_inputs", "translator", "captions", "images", "reference_audio", "grid")
MODEL_FLAGS = ("audioldm", "clip_pretrained")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # s3://, http://, tiny:, hf-hub:, local-dir:


def absolute_path(path: str) -> str:
    """A local path as an absolute one, so it means the same in every process (Ray workers, Tune trials
    run in other directories); URLs and model references pass unchanged."""
    if not path or _SCHEME.match(path):
        return path
    return os.path.abspath(os.path.expanduser(path))


def absolute_paths(args: argparse.Namespace) -> None:
    """Make every local path among the parsed flags absolute, in place, before anything reaches Ray."""
    for flag in PATH_FLAGS:
        value = getattr(args, flag, None)
        if isinstance(value, str):
            setattr(args, flag, absolute_path(value))
        elif isinstance(value, list):
            setattr(args, flag, [absolute_path(v) for v in value])
    for flag in MODEL_FLAGS:
        value = getattr(args, flag, None)
        if value and os.path.exists(os.path.expanduser(value)):
            setattr(args, flag, absolute_path(value))
    clip_model = getattr(args, "clip_model", None)
    if clip_model and clip_model.startswith("local-dir:"):
        args.clip_model = "local-dir:" + absolute_path(clip_model[len("local-dir:"):])


def add_model_arguments(parser: argparse.ArgumentParser, translator: bool = True) -> None:
    group = parser.add_argument_group("models (each flag overrides the preset's choice)")
    group.add_argument("--preset", default=DEFAULT_PRESET, choices=sorted(PRESETS),
                       help="; ".join(f"{name}: {p.note}" for name, p in PRESETS.items())
                       + f" (default: {DEFAULT_PRESET})")
    group.add_argument("--clip-model", help="open_clip model name (ViT-B-32), hf-hub:ORG/NAME or local-dir:PATH")
    group.add_argument("--clip-pretrained", help="open_clip pretrained tag (openai) or checkpoint path/URL")
    group.add_argument("--audioldm", help="AudioLDM hub id (cvssp/audioldm-s-full-v2), local diffusers "
                                          "directory or s3:// prefix; its text encoder is the CLAP target")
    if translator:
        group.add_argument("--translator", help="translator directory, local or s3:// "
                                                "(config.json + model.safetensors)")
    group.add_argument("--device", help="torch device (default: cuda when visible, else cpu)")


def models_from_args(args: argparse.Namespace) -> ModelSpec:
    """The preset's models with the flags' overrides (the job checks them before it runs)."""
    return resolve_models(args.preset, args.clip_model, args.clip_pretrained, args.audioldm,
                          getattr(args, "translator", None))


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("generation (defaults come from the preset)")
    group.add_argument("--duration", type=float, help="seconds of audio per clip (real preset: 10)")
    group.add_argument("--steps", type=int, help="diffusion steps (real preset: 50)")
    group.add_argument("--guidance", type=float, help="classifier-free guidance scale (real preset: 2.5)")
    group.add_argument("--seed", type=int, default=0,
                       help="base seed; each clip's seed derives from it and the input, so reruns match")
    group.add_argument("--batch-size", type=int, default=4, help="clips per generator call (default: 4)")
    group.add_argument("--scheduler", choices=sorted(SCHEDULERS), default=DEFAULT_SCHEDULER,
                       help=f"diffusion sampler, built from the checkpoint's scheduler config (default: "
                            f"{DEFAULT_SCHEDULER}, AudioLDM's own; dpm++ gives similar audio in ~20 steps)")
    group.add_argument("--compile", action="store_true",
                       help="torch.compile the UNet: slow start, faster steps on a GPU for long runs")


def generation_from_args(args: argparse.Namespace) -> GenerationSettings:
    return generation_settings(args.preset, duration=args.duration, steps=args.steps, guidance=args.guidance,
                               seed=args.seed, batch_size=args.batch_size, scheduler=args.scheduler,
                               compile=args.compile)


def add_image_arguments(parser: argparse.ArgumentParser) -> None:
    """Limits on untrusted images and URLs."""
    group = parser.add_argument_group("untrusted inputs")
    group.add_argument("--max-pixels", type=int, default=ImageLimits.max_pixels,
                       help="refuse images with more pixels than this (decompression bombs)")
    group.add_argument("--url-timeout", type=float, default=ImageLimits.timeout_s,
                       help="seconds allowed per URL: connecting, headers and body together")
    group.add_argument("--max-bytes", type=int, default=ImageLimits.max_bytes,
                       help="largest input file or URL download, in bytes")
    add_url_arguments(group)


def add_url_arguments(parser) -> None:
    parser.add_argument("--allow-private-urls", action="store_true",
                        help="let URLs reach loopback and private addresses (10/8, 192.168/16, fc00::/7...), "
                             "for images served on your own network; cloud metadata addresses stay refused")


def limits_from_args(args: argparse.Namespace) -> ImageLimits:
    return ImageLimits(max_pixels=getattr(args, "max_pixels", ImageLimits.max_pixels),
                       max_bytes=getattr(args, "max_bytes", ImageLimits.max_bytes),
                       timeout_s=getattr(args, "url_timeout", ImageLimits.timeout_s),
                       allow_private_urls=args.allow_private_urls)


def add_job_arguments(parser, what: str = "output") -> None:
    """--take-over-lease and --stall-timeout, for every job that holds an output and runs on Ray."""
    add_lease_argument(parser, what)
    parser.add_argument("--stall-timeout", type=float, default=STALL_TIMEOUT_S, metavar="SECONDS",
                        help="when nothing finishes for this long while work remains (a lost GPU node, a cluster "
                             "that cannot place the workers), say what the job waits for, keep what finished and "
                             f"exit 1 (default: {STALL_TIMEOUT_S:.0f})")
    parser.add_argument("--rows-per-part", type=int, default=PART_ROWS,
                        help=f"rows per committed Parquet part (default: {PART_ROWS})")
    parser.add_argument("--commit-every", type=float, default=PART_EVERY_S, metavar="SECONDS",
                        help="commit what finished at least this often, whatever the part's size: a crash loses "
                             f"at most this much work (default: {PART_EVERY_S:.0f})")


def add_lease_argument(parser, what: str = "output") -> None:
    """--take-over-lease alone (train has its own stall handling)."""
    parser.add_argument("--take-over-lease", action="store_true",
                        help=f"take the {what} from another job that still looks alive (only when it is dead: "
                             "two live jobs on one output corrupt it); a lease without a heartbeat for "
                             f"{STALE_S:.0f} s is taken over without this flag")
