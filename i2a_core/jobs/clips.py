"""Images or texts to audio clips: CLIP -> translator -> AudioLDM, loaded once, batched, written as WAV + JSON."""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np
import soundfile

from i2a_core.errors import TranslatorError
from i2a_core.io import images, storage
from i2a_core.io.listing import InputItem
from i2a_core.models.tiny import NOISE_NOTE
from i2a_core.specs import GenerationSettings, ImageLimits, ModelSpec, is_generated

if TYPE_CHECKING:  # the models import torch; this module must not, so that write stages stay small
    from i2a_core.models.translator import Translator


READ_THREADS = 64  # image reads in flight at once


def seed_for(key: str, base_seed: int) -> int:
    """A clip's seed: stable across reruns and batch layouts, different for every input."""
    digest = hashlib.sha256(f"{base_seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class Sonifier:
    """The whole model chain, loaded once per process (or per Ray actor)."""

    def __init__(self, models: ModelSpec, device: str | None = None, need_translator: bool = True,
                 need_text: bool = False):
        from i2a_core.models.audioldm import AudioLDMGenerator
        from i2a_core.models.clip import ClipEncoder
        from i2a_core.models.translator import load_translator

        self.models = models
        self._compiled = False
        self.clip: ClipEncoder | None = None
        self.translator: Translator | None = None
        if need_translator:  # the translator first: it is small, and a bad one should fail before big loads
            if not models.translator:
                raise TranslatorError("images need a translator: pass --translator DIR|URL "
                                      "(train one with `i2a train`), or use --preset tiny")
            self.translator = load_translator(models.translator)
        # Text prompts need AudioLDM's CLAP text tower; images need only its cached empty-prompt vector.
        self.generator = AudioLDMGenerator(models.audioldm, device=device,
                                           text_encoder=need_text or not need_translator)
        if need_translator:
            self.clip = ClipEncoder(models.clip, device=device)
            self.translator.check_dims(self.clip.dim, self.generator.clap_dim, where=models.translator)

    def clap_for_images(self, pil_images: list) -> tuple[np.ndarray, list[dict] | None]:
        """CLAP vectors for images, and the translator's per-image explanation when it has one."""
        clip_vectors = self.clip.encode_images(pil_images)
        return self.translator.translate(clip_vectors), self.translator.explain(clip_vectors)

    def clap_for_texts(self, texts: list[str]) -> np.ndarray:
        """Plain AudioLDM text conditioning, through AudioLDM's own CLAP encoder."""
        return self.generator.clap.encode(texts)

    def generate(self, clap_vectors: np.ndarray, keys: list[str], settings: GenerationSettings) -> list[np.ndarray]:
        seeds = [seed_for(key, settings.seed) for key in keys]
        if settings.compile and not self._compiled:
            self.generator.compile()
            self._compiled = True
        return self.generator.generate(clap_vectors, seeds, duration=settings.duration, steps=settings.steps,
                                       guidance=settings.guidance, scheduler=settings.scheduler)


def wav_bytes(waveform: np.ndarray, sample_rate: int) -> bytes:
    """Mono 16-bit PCM WAV."""
    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(waveform, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def write_clip(output: str, name: str, waveform: np.ndarray, sample_rate: int, record: dict) -> str:
    """Write `<output>/<name>.wav` and its JSON sidecar atomically; returns the WAV path."""
    wav_path = storage.join(output, f"{name}.wav")
    storage.write_bytes_atomic(wav_path, wav_bytes(waveform, sample_rate))
    storage.write_text_atomic(storage.join(output, f"{name}.json"), json.dumps(record, indent=2, default=str))
    return wav_path


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def text_key(text: str) -> str:
    """Output name of a text prompt: readable, file-name safe, plus a short hash so prompts never collide."""
    readable = _UNSAFE.sub("_", text).strip("._")[:60] or "text"
    return f"text-{readable}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


@dataclass
class ClipResult:
    source: str
    name: str
    ok: bool
    error: str = ""
    wav: str = ""


def clip_record(source: str, models: ModelSpec, seed: int, settings: GenerationSettings, sample_rate: int,
                timings: dict, explanation: dict | None = None, modality: str = "image") -> dict:
    record = {"input": source, "modality": modality, "models": models.describe(), "seed": seed,
              **{k: v for k, v in asdict(settings).items() if k != "seed"}, "base_seed": settings.seed,
              "sample_rate": sample_rate, "timings_s": timings}
    if explanation:
        record.update(explanation)
    if is_generated(models.audioldm):
        record["note"] = f"{models.audioldm} has {NOISE_NOTE}"
    return record


def sonify_sources(sonifier: Sonifier, items: list[InputItem], output: str, settings: GenerationSettings,
                   limits: ImageLimits = ImageLimits()) -> list[ClipResult]:
    """Decode, translate, generate and write every listed image; one bad input never stops the others.

    Names and seeds follow the bulk job's rules (listing.py): `<output>/<key>.wav`, seeded by the input's
    path relative to its root, so both give an image the same audio.
    """
    def load(item: InputItem):
        started = time.perf_counter()
        try:
            image, warning = images.load_checked(item.input, limits)
            return item, image, warning, time.perf_counter() - started, None
        except images.ImageError as e:
            return item, None, "", 0.0, e

    results: list[ClipResult] = []
    decoded = []
    # Reads overlap, so a URL that never answers costs one timeout, not one per URL behind it.
    with ThreadPoolExecutor(max(1, min(READ_THREADS, len(items)))) as pool:
        for item, image, warning, read_s, error in pool.map(load, items):
            if error:
                print(f"error: {error}", file=sys.stderr)
                results.append(ClipResult(images.display_name(item.input), item.key, False, str(error)))
            else:
                decoded.append((item, image, warning, read_s))
    for start in range(0, len(decoded), settings.batch_size):
        batch = decoded[start:start + settings.batch_size]
        started = time.perf_counter()
        clap, explanations = sonifier.clap_for_images([image for _, image, _, _ in batch])
        encode_s = (time.perf_counter() - started) / len(batch)
        started = time.perf_counter()
        waveforms = sonifier.generate(clap, [item.relative for item, _, _, _ in batch], settings)
        generate_s = (time.perf_counter() - started) / len(batch)
        for i, ((item, _, warning, read_s), waveform) in enumerate(zip(batch, waveforms)):
            source = images.display_name(item.input)
            record = clip_record(source, sonifier.models, seed_for(item.relative, settings.seed), settings,
                                 sonifier.generator.sample_rate,
                                 {"read_decode": read_s, "encode_translate": encode_s, "generate": generate_s},
                                 explanations[i] if explanations else None)
            record["warning"] = warning
            if warning:
                print(f"warning: {source}: {warning}", file=sys.stderr)
            try:
                wav = write_clip(output, item.key, waveform, sonifier.generator.sample_rate, record)
            except OSError as e:  # this clip's files only; the others are still written
                error = f"{source}: cannot write {item.key}.wav ({e.strerror or e})"
                print(f"error: {error}", file=sys.stderr)
                results.append(ClipResult(source, item.key, False, error))
                continue
            results.append(ClipResult(source, item.key, True, wav=wav))
            print(f"wrote {wav}")
    return results


def sonify_texts(sonifier: Sonifier, texts: list[str], output: str, settings: GenerationSettings) -> list[ClipResult]:
    """Plain AudioLDM: text -> AudioLDM's CLAP -> audio, the reference to compare image sonifications with."""
    names = [text_key(text) for text in texts]
    results = []
    for start in range(0, len(texts), settings.batch_size):
        batch, batch_names = texts[start:start + settings.batch_size], names[start:start + settings.batch_size]
        started = time.perf_counter()
        waveforms = sonifier.generate(sonifier.clap_for_texts(batch), batch, settings)
        generate_s = (time.perf_counter() - started) / len(batch)
        for text, name, waveform in zip(batch, batch_names, waveforms):
            record = clip_record(text, sonifier.models, seed_for(text, settings.seed), settings,
                                 sonifier.generator.sample_rate, {"generate": generate_s}, modality="text")
            record["models"]["translator"] = None
            wav = write_clip(output, name, waveform, sonifier.generator.sample_rate, record)
            results.append(ClipResult(text, name, True, wav=wav))
            print(f"wrote {wav}")
    return results
