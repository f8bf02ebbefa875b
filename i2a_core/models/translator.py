"""Translators from CLIP space to AudioLDM's CLAP space as torch modules: build, load, save, translate, explain.

The files (config.json + model.safetensors) and their checks are models/translator_files.py's, torch-free.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from i2a_core import refs
from i2a_core.errors import TranslatorError
from i2a_core.io import storage
from i2a_core.models.translator_files import CONFIG_NAME, WEIGHTS_NAME, TranslatorConfig, inspect_translator
from i2a_core.specs import SOUNDS_LIKE


class Translator(nn.Module):
    """Base class: maps [B, in_dim] CLIP vectors to [B, out_dim] unit CLAP vectors."""

    def __init__(self, config: TranslatorConfig):
        super().__init__()
        self.config = config
        self.register_buffer("image_mean", torch.zeros(config.in_dim))
        self.register_buffer("text_mean", torch.zeros(config.in_dim))

    @classmethod
    def build(cls, config: TranslatorConfig, shapes: dict[str, tuple[int, ...]]) -> "Translator":
        """An empty translator of the right shape for the weights' `shapes` (types sized by data override)."""
        return cls(config)

    def check_weights(self, where: str) -> None:
        """Refuse loaded values that no training writes (non-finite weights, broken memory)."""
        for name, tensor in self.state_dict().items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise TranslatorError(f"{where}: {name} holds NaN or infinite values")

    def shift(self, clip_vectors: torch.Tensor) -> torch.Tensor:
        if not self.config.mean_shift:
            return clip_vectors
        return clip_vectors - self.image_mean + self.text_mean

    @torch.inference_mode()
    def translate(self, clip_vectors: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(np.asarray(clip_vectors, np.float32))
        if x.ndim != 2 or x.shape[1] != self.config.in_dim:
            raise TranslatorError(f"translator expects CLIP vectors of dim {self.config.in_dim}, "
                                  f"got shape {tuple(x.shape)}")
        return self.eval()(x).numpy()

    def explain(self, clip_vectors: np.ndarray) -> list[dict] | None:
        """Per-row, human-readable reasons for the translation (retrieval captions), if this type has any."""
        return None

    def check_dims(self, clip_dim: int, clap_dim: int, where: str = "translator") -> None:
        if (self.config.in_dim, self.config.out_dim) != (clip_dim, clap_dim):
            raise TranslatorError(
                f"{where}: maps {self.config.in_dim}-d CLIP to {self.config.out_dim}-d CLAP, but the encoders give "
                f"{clip_dim}-d CLIP and {clap_dim}-d CLAP (was it trained for other models?)")

    def save(self, url: str) -> None:
        """Write config.json and model.safetensors under `url` (a local dir or s3://...)."""
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        storage.makedirs(url)
        storage.write_bytes_atomic(storage.join(url, WEIGHTS_NAME), save_safetensors(tensors))
        storage.write_text_atomic(storage.join(url, CONFIG_NAME),
                                  json.dumps(dataclasses.asdict(self.config), indent=2))


class MLPTranslator(Translator):
    """The thesis MLP: L2-normalise, Linear, ReLU, Linear, ReLU, Linear, L2-normalise."""

    def __init__(self, config: TranslatorConfig):
        super().__init__(config)
        self.net = nn.Sequential(
            nn.Linear(config.in_dim, config.hidden), nn.ReLU(),
            nn.Linear(config.hidden, config.hidden), nn.ReLU(),
            nn.Linear(config.hidden, config.out_dim),
        )

    def forward(self, clip_vectors: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.shift(clip_vectors), dim=-1)
        return F.normalize(self.net(x), dim=-1)


class RetrievalTranslator(Translator):
    """Training-free: the softmax-weighted (temperature, top-k) average of the CLAP vectors of the captions
    whose CLIP text vectors are nearest the input. It explains itself with those captions.

    The memory (unit CLIP keys, CLAP values, UTF-8 captions) is stored in model.safetensors like weights,
    so loading it needs no pickle and no side files.
    """

    def __init__(self, config: TranslatorConfig, memory_rows: int = 0, caption_bytes: int = 0):
        super().__init__(config)
        self.register_buffer("keys", torch.zeros(memory_rows, config.in_dim))
        self.register_buffer("values", torch.zeros(memory_rows, config.out_dim))
        self.register_buffer("caption_bytes", torch.zeros(caption_bytes, dtype=torch.uint8))
        self.register_buffer("caption_offsets", torch.zeros(memory_rows + 1, dtype=torch.int64))

    @classmethod
    def build(cls, config: TranslatorConfig, shapes: dict[str, tuple[int, ...]]) -> "RetrievalTranslator":
        if not shapes.get("keys") or not shapes.get("caption_bytes"):
            raise TranslatorError("retrieval translator weights need 'keys' and 'caption_bytes'")
        return cls(config, shapes["keys"][0], shapes["caption_bytes"][0])

    def check_weights(self, where: str) -> None:
        """The memory must index itself: offsets from 0 to the end of the captions, each caption UTF-8."""
        super().check_weights(where)
        rows, offsets = len(self.keys), self.caption_offsets.tolist()
        top_k = self.config.extra.get("top_k", 10)
        if not rows:
            raise TranslatorError(f"{where}: retrieval memory is empty")
        if top_k > rows:
            raise TranslatorError(f"{where}: top_k {top_k} is more than the {rows} captions in memory")
        if offsets[0] != 0 or offsets[-1] != len(self.caption_bytes) or any(b < a for a, b in zip(offsets, offsets[1:])):
            raise TranslatorError(f"{where}: retrieval caption offsets do not index the caption bytes")
        data = self.caption_bytes.numpy().tobytes()
        for i, (start, end) in enumerate(zip(offsets, offsets[1:])):
            try:
                data[start:end].decode("utf-8")
            except UnicodeDecodeError:
                raise TranslatorError(f"{where}: retrieval caption {i} is not UTF-8") from None

    @classmethod
    def from_pairs(cls, clip_vectors: np.ndarray, clap_vectors: np.ndarray, captions: list[str],
                   top_k: int = 10, temperature: float = 0.05, **config_fields) -> "RetrievalTranslator":
        """Build from (CLIP text vector, CLAP vector, caption) rows, e.g. AudioCaps."""
        if not len(clip_vectors) == len(clap_vectors) == len(captions) or not len(captions):
            raise TranslatorError(f"retrieval translator needs equally many (>0) CLIP vectors, CLAP vectors and "
                                  f"captions, got {len(clip_vectors)}, {len(clap_vectors)}, {len(captions)}")
        if top_k < 1 or not temperature > 0:
            raise TranslatorError(f"retrieval translator needs top_k >= 1 and temperature > 0 "
                                  f"(got {top_k}, {temperature})")
        encoded = [c.encode("utf-8") for c in captions]
        config = TranslatorConfig(type="retrieval", in_dim=clip_vectors.shape[1], out_dim=clap_vectors.shape[1],
                                  hidden=0, loss="none", temperature=temperature, **config_fields)
        config.extra = {**config.extra, "top_k": min(int(top_k), len(captions)), "memory_rows": len(captions)}
        translator = cls(config, len(captions), sum(map(len, encoded)))
        translator.keys.copy_(F.normalize(torch.as_tensor(np.asarray(clip_vectors, np.float32)), dim=-1))
        translator.values.copy_(F.normalize(torch.as_tensor(np.asarray(clap_vectors, np.float32)), dim=-1))
        translator.caption_bytes.copy_(torch.frombuffer(bytearray(b"".join(encoded)), dtype=torch.uint8))
        translator.caption_offsets.copy_(torch.as_tensor(np.cumsum([0] + [len(e) for e in encoded])))
        return translator.eval()

    @property
    def top_k(self) -> int:
        return min(int(self.config.extra.get("top_k", 10)), len(self.keys))

    def neighbours(self, clip_vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(softmax weights, memory indices) of each row's top-k captions."""
        queries = F.normalize(self.shift(clip_vectors), dim=-1)
        similarity, index = (queries @ self.keys.T).topk(self.top_k, dim=-1)
        return torch.softmax(similarity / self.config.temperature, dim=-1), index

    def forward(self, clip_vectors: torch.Tensor) -> torch.Tensor:
        weights, index = self.neighbours(clip_vectors)
        return F.normalize((weights.unsqueeze(-1) * self.values[index]).sum(dim=1), dim=-1)

    def caption(self, i: int) -> str:
        start, end = self.caption_offsets[i].item(), self.caption_offsets[i + 1].item()
        return bytes(self.caption_bytes[start:end].tolist()).decode("utf-8")

    @torch.inference_mode()
    def explain(self, clip_vectors: np.ndarray) -> list[dict]:
        weights, index = self.neighbours(torch.as_tensor(np.asarray(clip_vectors, np.float32)))
        return [{SOUNDS_LIKE: [{"caption": self.caption(i), "weight": round(w, 4)}
                                 for w, i in zip(row_weights.tolist(), row_index.tolist())]}
                for row_weights, row_index in zip(weights, index)]


TRANSLATOR_CLASSES: dict[str, type[Translator]] = {"mlp": MLPTranslator, "retrieval": RetrievalTranslator}


def load_translator(url: str) -> Translator:
    """Load a translator directory from a local path or any fsspec URL (s3://...). No pickle involved.

    Every way a file can be wrong is a TranslatorError naming it, raised before the module is allocated.
    """
    url = refs.local_model(url)
    config = inspect_translator(url)
    try:
        weights = load_safetensors(storage.read_bytes(storage.join(url, WEIGHTS_NAME)))
    except Exception as e:  # changed under us, or bytes the header check cannot see
        raise TranslatorError(f"{url}/{WEIGHTS_NAME}: cannot read ({type(e).__name__})") from None
    translator = TRANSLATOR_CLASSES[config.type].build(config, {k: tuple(v.shape) for k, v in weights.items()})
    try:
        translator.load_state_dict(weights)
    except RuntimeError as e:
        raise TranslatorError(f"{url}: weights do not match config.json ({str(e).splitlines()[0]})") from None
    translator.check_weights(url)
    return translator.eval()
