"""Translators from CLIP space to AudioLDM's CLAP space, stored as config.json + model.safetensors."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from i2a_core import storage, tiny

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


class TranslatorError(ValueError):
    """A translator that cannot be used: missing, malformed, or the wrong shape for the encoders."""


@dataclass
class TranslatorConfig:
    """Everything needed to rebuild a translator; saved as config.json beside its weights."""

    type: str = "mlp"
    in_dim: int = 512
    out_dim: int = 512
    hidden: int = 512
    loss: str = "cosine"
    temperature: float = 0.07
    # Subtract the mean CLIP image vector and add the mean CLIP text vector before translating:
    # closes the modality gap for translators trained on text pairs but applied to images.
    mean_shift: bool = False
    extra: dict = field(default_factory=dict)  # free-form provenance: data, metrics, clip/clap models

    @classmethod
    def from_dict(cls, data: dict) -> "TranslatorConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class Translator(nn.Module):
    """Base class: maps [B, in_dim] CLIP vectors to [B, out_dim] unit CLAP vectors."""

    def __init__(self, config: TranslatorConfig):
        super().__init__()
        self.config = config
        self.register_buffer("image_mean", torch.zeros(config.in_dim))
        self.register_buffer("text_mean", torch.zeros(config.in_dim))

    @classmethod
    def build(cls, config: TranslatorConfig, weights: dict[str, torch.Tensor]) -> "Translator":
        """An empty translator of the right shape for `weights` (types whose shape depends on data override)."""
        return cls(config)

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


TRANSLATOR_TYPES: dict[str, type[Translator]] = {"mlp": MLPTranslator}


def load_translator(url: str) -> Translator:
    """Load a translator directory from a local path or any fsspec URL (s3://...). No pickle involved."""
    if tiny.is_tiny(url):
        url = tiny.resolve(url)
    try:
        config_data = json.loads(storage.read_text(storage.join(url, CONFIG_NAME)))
        weights = load_safetensors(storage.read_bytes(storage.join(url, WEIGHTS_NAME)))
    except FileNotFoundError:
        raise TranslatorError(f"{url}: not a translator directory (needs {CONFIG_NAME} and {WEIGHTS_NAME})") \
            from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TranslatorError(f"{url}/{CONFIG_NAME}: not valid JSON ({e})") from None
    config = TranslatorConfig.from_dict(config_data)
    if config.type not in TRANSLATOR_TYPES:
        raise TranslatorError(f"{url}: unknown translator type '{config.type}' "
                              f"(known: {', '.join(TRANSLATOR_TYPES)})")
    translator = TRANSLATOR_TYPES[config.type].build(config, weights)
    try:
        translator.load_state_dict(weights)
    except RuntimeError as e:
        raise TranslatorError(f"{url}: weights do not match config.json ({str(e).splitlines()[0]})") from None
    return translator.eval()
