"""Named model bundles (the real AudioLDM stack, or tiny offline models) resolved into plain specs."""

from __future__ import annotations

from dataclasses import dataclass, replace

from i2a_core import hub, tiny

# Plain data only at import time: the CLI reads presets for --help without importing torch.
DEFAULT_AUDIOLDM = "cvssp/audioldm-s-full-v2"
# --scheduler choices -> diffusers class, each built from the checkpoint's own scheduler config.
SCHEDULERS = {"ddim": "DDIMScheduler", "dpm++": "DPMSolverMultistepScheduler", "unipc": "UniPCMultistepScheduler"}
DEFAULT_SCHEDULER = "ddim"  # AudioLDM's own


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
class Preset:
    models: ModelSpec
    duration: float  # seconds of audio per clip
    steps: int
    guidance: float
    note: str
    random_weights: bool = False  # untrained models: outputs say their audio is noise and metrics meaningless


PRESETS = {
    "audioldm-s-full-v2": Preset(
        ModelSpec(ClipSpec("ViT-B-32", "openai"), DEFAULT_AUDIOLDM, None),
        duration=10.0, steps=50, guidance=2.5,
        note="OpenAI CLIP ViT-B/32 and AudioLDM-S-full-v2 from the hub; bring a translator (--translator)."),
    "tiny": Preset(
        ModelSpec(ClipSpec("tiny:clip", None), "tiny:audioldm", "tiny:translator"),
        duration=2.5, steps=4, guidance=2.5, random_weights=True,
        note="tiny random models built offline in seconds, for tests and trying the pipeline; the audio is noise."),
    "full-random": Preset(
        ModelSpec(ClipSpec("random:ViT-B-32", None), "random:audioldm-s-full-v2", "random:translator"),
        duration=10.0, steps=50, guidance=2.5, random_weights=True,
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
    random_weights = any(tiny.is_generated(reference) for reference in (clip.model, audioldm, translator))
    return ModelSpec(clip=clip, audioldm=audioldm, translator=translator, random_weights=random_weights)


def check_models_reachable(models: ModelSpec, need_clip: bool = True) -> None:
    """Fail within seconds, before any job starts, when the hub is unreachable and a model is not cached.

    Online, nothing is downloaded here: each actor fetches what it loads. Offline, the references are
    resolved against the local cache only, which is cheap and raises ModelUnavailable naming the model.
    """
    from i2a_core.audioldm import resolve_audioldm
    from i2a_core.clip import resolve_clip

    if hub.hub_reachable():
        return
    resolve_audioldm(models.audioldm)
    if need_clip:
        resolve_clip(models.clip)
