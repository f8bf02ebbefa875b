"""Every check of a job's inputs, made once, before any lease is taken or any model loads (diffusers' check_inputs).

Deeper layers trust what was checked here: the generator does not re-check the duration, the encoders do not
re-check the translator's dims. Everything is read from config files and headers, never from weights, so a
driver checks a job without importing torch.
"""

from __future__ import annotations

from i2a_core import refs
from i2a_core.errors import ConfigError, TranslatorError
from i2a_core.models.translator_files import TranslatorConfig, inspect_translator
from i2a_core.specs import MAX_DURATION_S, SCHEDULERS, GenerationSettings, ImageLimits, ModelSpec

MISSING_TRANSLATOR = ("images need a translator: pass --translator DIR|URL (train one with `i2a train`), "
                      "or use --preset tiny")


def check_limits(limits: ImageLimits) -> None:
    """Image limits that would fail every input (as a permanent error a rerun never retries) are a flag error."""
    for flag, value in (("--max-pixels", limits.max_pixels), ("--max-bytes", limits.max_bytes),
                        ("--url-timeout", limits.timeout_s)):
        if not value > 0:
            raise ConfigError(f"{flag} {value:g}: must be positive (0 would refuse every input)")


def check_generation(settings: GenerationSettings, audioldm: str) -> None:
    """Duration (within what this checkpoint can make), steps, guidance, batch size and scheduler."""
    if not settings.duration > 0:
        raise ConfigError(f"--duration {settings.duration:g}: must be a positive number of seconds")
    if settings.duration > MAX_DURATION_S:
        raise ConfigError(f"--duration {settings.duration:g}: AudioLDM makes clips from a fraction of a second "
                          f"to {MAX_DURATION_S:g} s")
    shortest = refs.shortest_clip_s(audioldm)  # None for an s3:// checkpoint: its actors load the configs
    if shortest is not None and settings.duration < shortest:
        raise ConfigError(f"--duration {settings.duration:g}: AudioLDM makes clips from {shortest:g} s "
                          f"to {MAX_DURATION_S:g} s")
    if settings.steps < 1:
        raise ConfigError(f"--steps {settings.steps}: must be at least 1")
    if settings.batch_size < 1:
        raise ConfigError(f"--batch-size {settings.batch_size}: must be at least 1")
    if not settings.guidance >= 0:
        raise ConfigError(f"--guidance {settings.guidance:g}: must not be negative")
    if settings.scheduler not in SCHEDULERS:
        raise ConfigError(f"--scheduler {settings.scheduler}: unknown (choose from {', '.join(SCHEDULERS)})")


def check_translator(models: ModelSpec) -> TranslatorConfig:
    """The translator exists, is well formed, and maps this CLIP's vectors to this AudioLDM's CLAP vectors."""
    if not models.translator:
        raise TranslatorError(MISSING_TRANSLATOR)
    config = inspect_translator(refs.local_model(models.translator))
    clip_dim = refs.clip_dim(models.clip)
    clap_dim = refs.clap_dim(models.audioldm)  # None for an s3:// checkpoint: known only to its actors
    if config.in_dim != clip_dim or (clap_dim is not None and config.out_dim != clap_dim):
        raise TranslatorError(
            f"{models.translator}: maps {config.in_dim}-d CLIP to {config.out_dim}-d CLAP, but the encoders give "
            f"{clip_dim}-d CLIP and {clap_dim if clap_dim is not None else '?'}-d CLAP (was it trained for other "
            f"models?)")
    return config


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


def check_sonify(models: ModelSpec, settings: GenerationSettings, images: bool = True,
                 device: str | None = None) -> None:
    """Everything about the models and settings of a sonification, before anything runs."""
    check_device(device)
    refs.check_models_reachable(models, need_clip=images)
    check_generation(settings, models.audioldm)
    if images:
        check_translator(models)
