"""Every check of a job's inputs, made once, before any lease is taken or any model loads (diffusers' check_inputs).

Deeper layers trust what was checked here: the generator does not re-check the duration, the encoders do not
re-check the translator's dims. Everything is read from config files and headers, never from weights, so a
driver checks a job without importing torch.
"""

from __future__ import annotations

from i2a_core import refs
from i2a_core.errors import ConfigError, TranslatorError
from i2a_core.models.translator_files import TranslatorConfig, inspect_translator
from i2a_core.specs import MAX_DURATION_S, SCHEDULERS, GenerationSettings, ModelSpec

MISSING_TRANSLATOR = ("images need a translator: pass --translator DIR|URL (train one with `i2a train`), "
                      "or use --preset tiny")


def check_generation(settings: GenerationSettings, audioldm: str) -> None:
    """Duration (within what this checkpoint can make), steps, guidance, batch size and scheduler."""
    if not 0 < settings.duration <= MAX_DURATION_S:
        raise ConfigError(f"--duration {settings.duration:g}: AudioLDM makes clips of at most {MAX_DURATION_S:g} s")
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
    if config.in_dim != clip_dim:
        raise TranslatorError(f"{models.translator}: maps {config.in_dim}-d CLIP vectors, "
                              f"but {models.clip.model} gives {clip_dim}-d ones")
    clap_dim = refs.clap_dim(models.audioldm)  # None for an s3:// checkpoint: its actors check it
    if clap_dim is not None and config.out_dim != clap_dim:
        raise TranslatorError(f"{models.translator}: gives {config.out_dim}-d CLAP vectors, "
                              f"but {models.audioldm} expects {clap_dim}-d ones")
    return config


def check_sonify(models: ModelSpec, settings: GenerationSettings, images: bool = True) -> None:
    """Everything about the models and settings of a sonification, before anything runs."""
    refs.check_models_reachable(models, need_clip=images)
    check_generation(settings, models.audioldm)
    if images:
        check_translator(models)
