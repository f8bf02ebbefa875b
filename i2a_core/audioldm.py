"""The only module that touches diffusers/transformers' AudioLDM parts: the CLAP target encoder and the generator.

AudioLDMPipeline is deprecated upstream, so every call into it lives here, pinned in pyproject.toml and
covered by tests/test_audioldm_adapter.py, which fails if upstream changes what we rely on.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from i2a_core import hub, storage
from i2a_core.devices import pick_device, pick_dtype

DEFAULT_AUDIOLDM = "cvssp/audioldm-s-full-v2"
MAX_DURATION_S = 60.0  # AudioLDM is trained on 10 s clips; past a minute memory grows and quality drops


def resolve_audioldm(source: str) -> str:
    """A local diffusers-layout directory for a hub id, local path, s3:// prefix or tiny:audioldm."""
    return hub.resolve_repo(source, "AudioLDM", "--audioldm",
                            allow_patterns=["*.json", "*.txt", "*.safetensors", "tokenizer/*"])


def _config_files(source: str) -> dict | None:
    """The vocoder, VAE and CLAP text encoder configs of a checkpoint, fetching only its JSON files.

    None for an s3:// checkpoint: the driver never downloads a model that only its actors run.
    """
    import json
    import os

    if storage.is_remote(source):
        return None
    local = hub.resolve_repo(source, "AudioLDM", "--audioldm", allow_patterns=["*.json"])
    configs = {}
    for part in ("vocoder", "vae", "text_encoder"):
        with open(os.path.join(local, part, "config.json")) as f:
            configs[part] = json.load(f)
    return configs


def check_duration_from_config(source: str, duration: float) -> None:
    """The generator's duration check, from the checkpoint's config files alone (no weights are loaded).

    Jobs run it on the driver before they claim an output; an s3:// checkpoint is only range-checked here
    (its actors check the rest).
    """
    if not 0 < duration <= MAX_DURATION_S:
        raise ValueError(f"--duration {duration:g}: AudioLDM makes clips of at most {MAX_DURATION_S:g} s")
    configs = _config_files(source)
    if configs is None:
        return
    vocoder = configs["vocoder"]
    vae_scale_factor = 2 ** (len(configs["vae"]["block_out_channels"]) - 1)
    shortest = float(np.prod(vocoder["upsample_rates"])) / vocoder["sampling_rate"] * vae_scale_factor
    if duration < shortest:
        raise ValueError(f"--duration {duration:g}: AudioLDM makes clips from {shortest:g} s to {MAX_DURATION_S:g} s")


def clap_dim_from_config(source: str) -> int | None:
    """The CLAP vector size AudioLDM conditions on, from its config (None when not known without a download)."""
    configs = _config_files(source)
    return int(configs["text_encoder"]["projection_dim"]) if configs else None


class ClapTextEncoder:
    """AudioLDM's own CLAP text tower: the exact vectors AudioLDM conditions on (text_embeds, L2-normalised)."""

    def __init__(self, tokenizer, text_encoder, device: torch.device):
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder.eval()
        self.device = device
        self.dim = int(text_encoder.config.projection_dim)
        self.max_tokens = int(tokenizer.model_max_length)

    @classmethod
    def load(cls, source: str = DEFAULT_AUDIOLDM, device: str | None = None) -> "ClapTextEncoder":
        """Load only the tokenizer and text encoder of an AudioLDM checkpoint, not the UNet/VAE/vocoder."""
        from transformers import AutoTokenizer, ClapTextModelWithProjection

        local = resolve_audioldm(source)
        torch_device = pick_device(device)
        text_encoder = ClapTextModelWithProjection.from_pretrained(
            local, subfolder="text_encoder", torch_dtype=pick_dtype(torch_device)).to(torch_device)
        tokenizer = AutoTokenizer.from_pretrained(local, subfolder="tokenizer")
        return cls(tokenizer, text_encoder, torch_device)

    def truncated(self, texts: list[str]) -> np.ndarray:
        """Per text: is it longer than the tokenizer keeps (so truncated, as AudioLDM does)?"""
        if not len(texts):
            return np.zeros(0, bool)
        lengths = self.tokenizer(list(texts), truncation=False)["input_ids"]
        return np.array([len(ids) > self.max_tokens for ids in lengths], bool)

    @torch.inference_mode()
    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """[B, dim] float32 unit vectors, computed as AudioLDMPipeline._encode_prompt computes them."""
        out = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[start:start + batch_size]), padding="max_length",
                                    max_length=self.max_tokens, truncation=True, return_tensors="pt")
            embeds = self.text_encoder(tokens.input_ids.to(self.device),
                                       attention_mask=tokens.attention_mask.to(self.device)).text_embeds
            out.append(F.normalize(embeds.float(), dim=-1).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim), np.float32)


class AudioLDMGenerator:
    """AudioLDM conditioned on given CLAP vectors, batched, one seed per clip."""

    def __init__(self, source: str = DEFAULT_AUDIOLDM, device: str | None = None):
        from diffusers import AudioLDMPipeline
        from diffusers.utils import logging as diffusers_logging

        local = resolve_audioldm(source)
        self.source = source
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device)
        diffusers_logging.set_verbosity_error()  # the deprecation banner once per actor is noise
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipe = AudioLDMPipeline.from_pretrained(local, torch_dtype=self.dtype)
        self.pipe = pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self.clap = ClapTextEncoder(pipe.tokenizer, pipe.text_encoder, self.device)
        self.sample_rate = int(pipe.vocoder.config.sampling_rate)
        self._empty = torch.from_numpy(self.clap.encode([""]))

    @property
    def clap_dim(self) -> int:
        return self.clap.dim

    @property
    def min_duration(self) -> float:
        """Shortest clip: one latent frame, as AudioLDMPipeline.check_inputs computes it."""
        vocoder = self.pipe.vocoder.config
        return float(np.prod(vocoder.upsample_rates)) / vocoder.sampling_rate * self.pipe.vae_scale_factor

    def check_duration(self, duration: float) -> None:
        if not (self.min_duration <= duration <= MAX_DURATION_S):
            raise ValueError(f"--duration {duration:g}: AudioLDM makes clips from {self.min_duration:g} s "
                             f"to {MAX_DURATION_S:g} s")

    @torch.inference_mode()
    def generate(self, clap_vectors: np.ndarray, seeds: list[int], duration: float = 10.0,
                 steps: int = 50, guidance: float = 2.5) -> list[np.ndarray]:
        """One mono float32 waveform per CLAP vector, at `self.sample_rate`.

        Each clip has its own seeded generator, so a clip's audio does not depend on its batch-mates.
        The negative embedding is AudioLDM's own embedding of the empty prompt, as plain AudioLDM uses.
        """
        self.check_duration(duration)
        embeds = torch.as_tensor(np.asarray(clap_vectors, np.float32))
        if embeds.ndim != 2 or embeds.shape[1] != self.clap_dim:
            raise ValueError(f"expected CLAP vectors of shape [B, {self.clap_dim}], got {tuple(embeds.shape)}")
        if len(seeds) != len(embeds):
            raise ValueError(f"{len(seeds)} seeds for {len(embeds)} clips")
        # CPU generators: the same seed gives the same starting noise on any device.
        generators = [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]
        logging.getLogger("diffusers").setLevel(logging.ERROR)
        audio = self.pipe(
            prompt_embeds=F.normalize(embeds, dim=-1).to(self.device, self.dtype),
            negative_prompt_embeds=self._empty.expand(len(embeds), -1).to(self.device, self.dtype),
            audio_length_in_s=duration, num_inference_steps=steps, guidance_scale=guidance,
            generator=generators, output_type="np",
        ).audios
        return [np.asarray(clip, np.float32) for clip in audio]
