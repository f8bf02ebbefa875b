"""Flags shared by every command: models (preset + overrides), generation settings, input/output."""

from __future__ import annotations

import argparse
import os
import re

from i2a_core.errors import ConfigError
from i2a_core.refs import check_models_reachable
from i2a_core.specs import DEFAULT_PRESET, DEFAULT_SCHEDULER, PRESETS, SCHEDULERS, ModelSpec, resolve_models

# This module builds every command's flags, so it imports nothing heavy (torch, ray, diffusers, open_clip):
# `i2a --help` and argument errors stay instant. Import model code inside the functions that run.



EXIT_STATUS = """\
exit status:
  0  everything succeeded
  1  the command ran but some inputs failed (each is named), or it stopped on an unexpected error
  2  usage or configuration error: bad flags, paths or models (one line, no traceback; --debug shows it)"""

# Flags that name files or folders; model flags may also be hub ids or tags, made absolute only when they exist.
PATH_FLAGS = ("input", "output", "inputs", "more_inputs", "translator", "captions", "images")
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


def models_from_args(args: argparse.Namespace, need_clip: bool = True) -> ModelSpec:
    """The preset's models with the flags' overrides, checked to be loadable before any work starts."""
    try:
        models = resolve_models(args.preset, args.clip_model, args.clip_pretrained, args.audioldm,
                                getattr(args, "translator", None))
    except ValueError as e:
        raise ConfigError(str(e)) from None
    check_device(getattr(args, "device", None))
    check_models_reachable(models, need_clip)
    return models


def check_device(device: str | None) -> None:
    """Refuse a --device torch cannot use here (cuda without a GPU, a typo) before any model loads."""
    if not device:
        return
    import torch

    try:
        chosen = torch.device(device)
    except (RuntimeError, ValueError):
        raise ConfigError(f"--device {device}: not a torch device (cpu, cuda, cuda:1, mps)") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: torch sees no CUDA GPU here; leave --device out to use the CPU")
    if chosen.type == "cuda" and chosen.index is not None and chosen.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} CUDA GPU(s) visible")
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {device}: MPS is not available here")


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


def generation_from_args(args: argparse.Namespace):
    from i2a_core.models.audioldm import MAX_DURATION_S
    from i2a_core.specs import GenerationSettings

    preset = PRESETS[args.preset]
    settings = GenerationSettings(
        duration=args.duration if args.duration is not None else preset.duration,
        steps=args.steps if args.steps is not None else preset.steps,
        guidance=args.guidance if args.guidance is not None else preset.guidance,
        seed=args.seed, batch_size=args.batch_size, scheduler=args.scheduler, compile=args.compile,
    )
    if not settings.duration > 0:
        raise ConfigError(f"--duration {settings.duration:g}: must be a positive number of seconds")
    if settings.duration > MAX_DURATION_S:  # checked here, before any model loads or any output is claimed
        raise ConfigError(f"--duration {settings.duration:g}: AudioLDM makes clips from a fraction of a second "
                           f"to {MAX_DURATION_S:g} s")
    if settings.steps < 1:
        raise ConfigError(f"--steps {settings.steps}: must be at least 1")
    if settings.batch_size < 1:
        raise ConfigError(f"--batch-size {settings.batch_size}: must be at least 1")
    return settings


def add_lease_argument(parser) -> None:
    """--take-over-lease, for jobs that hold their output (sonify-job, embed, train)."""
    from i2a_core.io.lease import STALE_S

    parser.add_argument("--take-over-lease", action="store_true",
                        help="take the output from another job that still looks alive (only when it is dead: "
                             "two live jobs on one output corrupt it); a lease without a heartbeat for "
                             f"{STALE_S:.0f} s is taken over without this flag")
