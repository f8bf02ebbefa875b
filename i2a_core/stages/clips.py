"""The write stage of sonification: each clip's WAV, spectrogram, thumbnail (and JSON sidecar) -> manifest rows.

Torch-free: drivers also run it, to record items that no worker finished. The WAV is encoded once and the
spectrogram drawn from the same waveform; the translator's explanation is dumped to JSON once.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
from dataclasses import asdict
from datetime import datetime, timezone

import numpy as np

from i2a_core.errors import classify
from i2a_core.io import gallery, listing, storage
from i2a_core.specs import RANDOM_WEIGHTS_NOTE, GenerationSettings, ModelSpec
from i2a_core.stages.images import objects, strings

Batch = dict


def seed_for(key: str, base_seed: int) -> int:
    """A clip's seed: stable across reruns and batch layouts, different for every input.

    Derived from the input's path relative to its root, as bytes: a file name that is not valid UTF-8
    (kept as surrogate escapes) seeds from its original bytes.
    """
    digest = hashlib.sha256(f"{base_seed}:".encode() + str(key).encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def text_key(text: str) -> str:
    """Output key of a text prompt: readable, file-name safe, plus a short hash so prompts never collide."""
    readable = _UNSAFE.sub("_", text).strip("._")[:60] or "text"
    return f"text-{readable}-{hashlib.sha256(text.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


def wav_bytes(waveform: np.ndarray, sample_rate: int) -> bytes:
    """Mono 16-bit PCM WAV."""
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, np.clip(waveform, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def _inside(key: str) -> str:
    if key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"refusing output key {key!r}: it would leave the output folder")
    return key


class WriteClips:
    """Write stage: thumbnail, spectrogram, WAV (and sidecar), each atomically; then the batch's manifest rows.

    A clip's row is committed by the runner after its files exist: an input without a row is redone by the
    next run, which rewrites the same files with the same seed.
    """

    def __init__(self, output: str, models: ModelSpec, settings: GenerationSettings, modality: str = "image",
                 sidecars: bool = False):
        self.output, self.models, self.settings = output, models, settings
        self.modality, self.sidecars = modality, sidecars

    def __call__(self, batch: Batch) -> Batch:
        n = len(batch["input"])
        errors, kinds = strings(batch, "error"), strings(batch, "error_kind")
        keys, names = strings(batch, "key"), strings(batch, "display")
        rows = []
        for i in range(n):
            started = time.perf_counter()
            ok = not errors[i]
            audio_key, thumbnail_key, spectrogram_key = f"audio/{keys[i]}.wav", "", ""
            explanation = str(batch["explanation"][i] or "") if ok and "explanation" in batch else ""
            if ok:
                try:
                    waveform, rate = batch["waveform"][i], int(batch["sample_rate"][i])
                    _inside(keys[i])
                    if "thumbnail" in batch and len(batch["thumbnail"][i]):
                        thumbnail_key = f"thumbs/{keys[i]}.jpg"
                        storage.write_bytes_atomic(storage.join(self.output, thumbnail_key),
                                                   bytes(batch["thumbnail"][i]), sync=False)
                    spectrogram_key = f"spectrograms/{keys[i]}.png"
                    storage.write_bytes_atomic(storage.join(self.output, spectrogram_key),
                                               gallery.spectrogram_png(waveform, rate), sync=False)
                    if self.sidecars:
                        storage.write_text_atomic(storage.join(self.output, f"audio/{keys[i]}.json"),
                                                  json.dumps(self._sidecar(batch, i, explanation), indent=2,
                                                             default=str), sync=False)
                    storage.write_bytes_atomic(storage.join(self.output, audio_key), wav_bytes(waveform, rate),
                                               sync=False)
                except Exception as error:  # this clip's files only (a refused name, a full disk, a store blip)
                    ok = False
                    kinds[i], errors[i] = classify(error, names[i], operation="write")
            rows.append(self._row(batch, i, ok, errors[i], kinds[i], audio_key, thumbnail_key, spectrogram_key,
                                  explanation, time.perf_counter() - started))
        # 1-d object columns: a column of equal-length lists (captions) must not become a 2-d array
        out = {name: objects([row[name] for row in rows]) for name in rows[0]} if rows else {}
        out["display"] = batch["display"]  # the item's identity for the runner (the manifest's `input`)
        return out

    def _row(self, batch: Batch, i: int, ok: bool, error: str, kind: str, audio: str, thumbnail: str,
             spectrogram: str, explanation: str, write_s: float) -> dict:
        settings = self.settings

        def seconds(name: str) -> float:
            return float(batch[name][i]) if name in batch else 0.0

        return {
            "input": str(batch["display"][i]), "output": audio if ok else "", "status": "ok" if ok else "error",
            "error": "" if ok else error, "error_kind": "" if ok else kind,
            "warning": str(batch["warning"][i]) if ok and "warning" in batch else "",
            "thumbnail": thumbnail if ok else "", "spectrogram": spectrogram if ok else "",
            "translator": self.models.translator if self.modality == "image" else None,
            "seed": int(batch["seed"][i]) if "seed" in batch else
            seed_for(listing.os_string(str(batch["relative"][i])), settings.seed),
            "scheduler": settings.scheduler, "steps": settings.steps, "guidance": settings.guidance,
            "duration": settings.duration,
            "sample_rate": int(batch["sample_rate"][i]) if "sample_rate" in batch else None,
            "read_s": seconds("read_s"), "decode_s": seconds("decode_s"), "encode_s": seconds("encode_s"),
            "generate_s": seconds("generate_s"), "write_s": write_s,
            "captions": [str(c) for c in batch["captions"][i]] if explanation and "captions" in batch else [],
            "explanation": explanation,
            "finished_at": datetime.now(timezone.utc), "modality": self.modality,
            "image": str(batch["display"][i]) if self.modality == "image" else
            (str(batch["image"][i]) if "image" in batch and batch["image"][i] else None),
        }

    def _sidecar(self, batch: Batch, i: int, explanation: str) -> dict:
        """`i2a sonify`'s JSON beside each WAV: input, models, seed, settings, timings."""
        settings, models = self.settings, self.models
        record = {"input": str(batch["display"][i]), "modality": self.modality,
                  "models": {**models.describe(), **({} if self.modality == "image" else {"translator": None})},
                  "seed": int(batch["seed"][i]),
                  **{k: v for k, v in asdict(settings).items() if k != "seed"}, "base_seed": settings.seed,
                  "sample_rate": int(batch["sample_rate"][i]),
                  "timings_s": {name: float(batch[name][i]) for name in ("read_s", "decode_s", "encode_s",
                                                                          "generate_s") if name in batch},
                  "warning": str(batch["warning"][i]) if "warning" in batch else ""}
        if self.modality == "text" and "image" in batch and batch["image"][i]:
            record["image"] = str(batch["image"][i])
        if explanation:
            record.update(json.loads(explanation))
        if models.random_weights:
            record["note"] = RANDOM_WEIGHTS_NOTE
        return record
