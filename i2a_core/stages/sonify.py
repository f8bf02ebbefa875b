"""Model stages of sonification: CLIP + translator (images), AudioLDM's CLAP (texts), AudioLDM (audio).

Built where they run (this process, a Ray actor); drivers name them by path and never import this module.
"""

from __future__ import annotations

import json
import time

import numpy as np

from i2a_core.io import listing
from i2a_core.models.audioldm import AudioLDMGenerator, ClapTextEncoder
from i2a_core.models.clip import ClipEncoder
from i2a_core.models.translator import load_translator
from i2a_core.specs import SOUNDS_LIKE, GenerationSettings, ModelSpec
from i2a_core.stages.clips import seed_for
from i2a_core.stages.images import objects, pending, strings

Batch = dict


class EncodeImages:
    """Model stage: CLIP image vectors -> translator -> CLAP vectors, with the translator's explanations."""

    def __init__(self, models: ModelSpec, device: str | None = None):
        self.clip = ClipEncoder(models.clip, device=device)
        self.translator = load_translator(models.translator)

    def __call__(self, batch: Batch) -> Batch:
        ok = pending(batch)
        n = len(batch["input"])
        clap = np.zeros((n, self.translator.config.out_dim), np.float32)
        # Plain strings and lists cross Ray Data's Arrow blocks intact (a dict or None would not): the explanation
        # is dumped to JSON here, once, and its captions listed beside it.
        explanations, captions = [""] * n, [[] for _ in range(n)]
        seconds = 0.0
        if ok:
            started = time.perf_counter()
            clip_vectors = self.clip.encode_pixels(np.asarray(batch["pixels"])[ok])
            clap[ok] = self.translator.translate(clip_vectors)
            for i, explanation in zip(ok, self.translator.explain(clip_vectors) or []):
                if explanation:
                    explanations[i] = json.dumps(explanation)
                    captions[i] = [str(item["caption"]) for item in explanation.get(SOUNDS_LIKE, [])]
            seconds = (time.perf_counter() - started) / len(ok)
        rest = {k: v for k, v in batch.items() if k != "pixels"}
        return {**rest, "clap": clap, "explanation": objects(explanations), "captions": objects(captions),
                "encode_s": np.full(n, seconds)}


class EncodeTexts:
    """Model stage: text prompts -> AudioLDM's own CLAP text vectors (plain AudioLDM, for comparison)."""

    def __init__(self, audioldm: str, device: str | None = None):
        self.clap = ClapTextEncoder.load(audioldm, device=device)

    def __call__(self, batch: Batch) -> Batch:
        ok = pending(batch)
        n = len(batch["input"])
        clap = np.zeros((n, self.clap.dim), np.float32)
        started = time.perf_counter()
        if ok:
            clap[ok] = self.clap.encode([str(batch["input"][i]) for i in ok])
        seconds = (time.perf_counter() - started) / max(len(ok), 1)
        return {**batch, "clap": clap, "explanation": objects([""] * n), "captions": objects([[] for _ in range(n)]),
                "encode_s": np.full(n, seconds),
                "read_s": np.zeros(n), "decode_s": np.zeros(n), "thumbnail": objects([b""] * n),
                "warning": objects([""] * n)}


class GenerateAudio:
    """GPU stage: batched AudioLDM generation, one seed per input (from its relative path), waveforms out."""

    def __init__(self, audioldm: str, settings: GenerationSettings, device: str | None = None):
        self.generator = AudioLDMGenerator(audioldm, device=device)
        if settings.compile:
            self.generator.compile()
        self.settings = settings

    def __call__(self, batch: Batch) -> Batch:
        ok = pending(batch)
        n = len(batch["input"])
        seeds = [seed_for(listing.os_string(relative), self.settings.seed) for relative in strings(batch, "relative")]
        waveforms = [None] * n
        seconds = 0.0
        if ok:
            started = time.perf_counter()
            made = self.generator.generate(np.asarray(batch["clap"], np.float32)[ok], [seeds[i] for i in ok],
                                           duration=self.settings.duration, steps=self.settings.steps,
                                           guidance=self.settings.guidance, scheduler=self.settings.scheduler)
            seconds = (time.perf_counter() - started) / len(ok)
            for i, waveform in zip(ok, made):
                waveforms[i] = waveform
        rest = {k: v for k, v in batch.items() if k != "clap"}
        return {**rest, "waveform": objects(waveforms), "seed": np.array(seeds, np.int64),
                "generate_s": np.full(n, seconds), "sample_rate": np.full(n, self.generator.sample_rate, np.int32)}
