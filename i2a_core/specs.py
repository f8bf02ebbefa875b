"""Plain data every layer shares: which models (ClipSpec, ModelSpec, presets), how to generate, image limits.

Nothing here imports torch or any i2a module: the CLI reads it for --help, and specs cross process
boundaries (Ray actors, Tune trials) as they are, to be loaded where they run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

DEFAULT_AUDIOLDM = "cvssp/audioldm-s-full-v2"
# --scheduler choices -> diffusers class, each built from the checkpoint's own scheduler config.
SCHEDULERS = {"ddim": "DDIMScheduler", "dpm++": "DPMSolverMultistepScheduler", "unipc": "UniPCMultistepScheduler"}
DEFAULT_SCHEDULER = "ddim"  # AudioLDM's own
MAX_DURATION_S = 60.0  # AudioLDM is trained on 10 s clips; past a minute memory grows and quality drops
SOUNDS_LIKE = "sounds_like"  # a translator explanation's key: [{"caption": str, "weight": float}, ...], best first

# Models i2a builds itself with random weights (models/tiny.py): tiny ones for tests, real-size ones for benches.
TINY_SCHEME = "tiny:"
RANDOM_SCHEME = "random:"
RANDOM_WEIGHTS_NOTE = ("note: made with random, untrained models (a test preset): the audio is noise and every "
                       "metric is meaningless; use the default preset for real sounds")


def is_generated(reference: str | None) -> bool:
    """A model i2a builds with random weights (tiny: or random:), rather than one to download."""
    return bool(reference) and str(reference).startswith((TINY_SCHEME, RANDOM_SCHEME))


@dataclass(frozen=True)
class ClipSpec:
    """Which CLIP to load: an open_clip name with a pretrained tag or checkpoint, or hf-hub:/local-dir:."""

    model: str = "ViT-B-32"
    pretrained: str | None = "openai"


@dataclass(frozen=True)
class ModelSpec:
    """Which models a job uses. Plain strings, so it crosses process boundaries; each actor loads its own."""

    clip: ClipSpec
    audioldm: str
    translator: str | None  # None: no translator (text input, or a job that does not need one)
    random_weights: bool = False  # some model is untrained (tiny preset): the audio is noise, metrics meaningless

    def describe(self) -> dict:
        return {"clip_model": self.clip.model, "clip_pretrained": self.clip.pretrained,
                "audioldm": self.audioldm, "translator": self.translator}


@dataclass(frozen=True)
class GenerationSettings:
    duration: float = 10.0
    steps: int = 50
    guidance: float = 2.5
    seed: int = 0  # base seed; each clip's seed derives from it and the input's key
    batch_size: int = 4
    scheduler: str = DEFAULT_SCHEDULER  # ddim | dpm++ | unipc, built from the checkpoint's scheduler config
    compile: bool = False  # torch.compile the UNet (speed only: same settings, same audio up to rounding)

    def describe(self) -> dict:
        """What decides the audio (recorded in job.json and every manifest row); batch size and compile do not."""
        return {"seed": self.seed, "scheduler": self.scheduler, "steps": self.steps, "guidance": self.guidance,
                "duration": self.duration}


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = 64_000_000  # decompression-bomb guard, in pixels (width * height)
    max_bytes: int = 32 * 1024 * 1024  # per file or download
    timeout_s: float = 10.0  # per URL, for the whole download: connect, headers and body
    allow_private_urls: bool = False  # let URLs reach loopback and private addresses (never cloud metadata)


@dataclass(frozen=True)
class Preset:
    models: ModelSpec
    duration: float  # seconds of audio per clip
    steps: int
    guidance: float
    note: str


PRESETS = {
    "audioldm-s-full-v2": Preset(
        ModelSpec(ClipSpec("ViT-B-32", "openai"), DEFAULT_AUDIOLDM, None),
        duration=10.0, steps=50, guidance=2.5,
        note="OpenAI CLIP ViT-B/32 and AudioLDM-S-full-v2 from the hub; bring a translator (--translator)."),
    "tiny": Preset(
        ModelSpec(ClipSpec("tiny:clip", None), "tiny:audioldm", "tiny:translator", random_weights=True),
        duration=2.5, steps=4, guidance=2.5,
        note="tiny random models built offline in seconds, for tests and trying the pipeline; the audio is noise."),
    "full-random": Preset(
        ModelSpec(ClipSpec("random:ViT-B-32", None), "random:audioldm-s-full-v2", "random:translator",
                  random_weights=True),
        duration=10.0, steps=50, guidance=2.5,
        note="the real architectures (CLIP ViT-B/32, AudioLDM-S-full-v2, a 512->512 translator) with random "
             "weights, built offline once (~2 GB): real sizes and real cost for benchmarks; the audio is noise."),
}
DEFAULT_PRESET = "audioldm-s-full-v2"


def resolve_models(preset: str = DEFAULT_PRESET, clip_model: str | None = None, clip_pretrained: str | None = None,
                   audioldm: str | None = None, translator: str | None = None) -> ModelSpec:
    """The preset's models with every explicitly given flag overriding its choice."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset '{preset}' (choose from {', '.join(PRESETS)})")
    models = PRESETS[preset].models
    clip = models.clip
    if clip_model is not None:
        # A new model name drops the preset's weights; the documented default tag applies
        # (hf-hub: and local-dir: carry their own weights and ignore it).
        clip = ClipSpec(clip_model, clip_pretrained or "openai")
    elif clip_pretrained is not None:
        clip = replace(clip, pretrained=clip_pretrained)
    audioldm, translator = audioldm or models.audioldm, translator or models.translator
    # Any generated (random-weight) model in the mix makes the audio noise and the metrics meaningless.
    random_weights = any(is_generated(reference) for reference in (clip.model, audioldm, translator))
    return ModelSpec(clip=clip, audioldm=audioldm, translator=translator, random_weights=random_weights)


def generation_settings(preset: str, duration: float | None = None, steps: int | None = None,
                        guidance: float | None = None, **others) -> GenerationSettings:
    """The preset's generation settings with every explicitly given value overriding its choice."""
    chosen = PRESETS[preset]
    return GenerationSettings(duration=chosen.duration if duration is None else duration,
                              steps=chosen.steps if steps is None else steps,
                              guidance=chosen.guidance if guidance is None else guidance, **others)
