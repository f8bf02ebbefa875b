"""The only module that touches diffusers/transformers' AudioLDM parts: the CLAP target encoder and i2a's own sampler.

diffusers stopped maintaining its AudioLDM pipeline, so i2a owns the sampling loop over the maintained components
(UNet2DConditionModel, AutoencoderKL, any diffusers scheduler, SpeechT5HifiGan, ClapTextModelWithProjection).
tests/test_audioldm_adapter.py checks it against the pipeline for as long as diffusers ships one.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import time
import uuid
from typing import TYPE_CHECKING

import numpy as np

from i2a_core import refs
from i2a_core.models.devices import pick_device, pick_dtype
from i2a_core.specs import DEFAULT_AUDIOLDM, DEFAULT_SCHEDULER, MAX_DURATION_S, SCHEDULERS

if TYPE_CHECKING:  # torch is imported where models run, so that the CLI and torch-free stages can import this
    import torch

def generation_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPUs that have it (no fp16 overflow in the VAE), fp16 on older ones, fp32 on CPU."""
    import torch

    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return pick_dtype(device)


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

        local = refs.resolve_audioldm(source)
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

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """[B, dim] float32 unit vectors, as the diffusers AudioLDM pipeline computed them.

        Padding goes only to the batch's longest text: the attention mask hides padding, so the vectors
        equal those of padding to the model maximum, at a fraction of the cost for short captions.
        """
        import torch

        out = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[start:start + batch_size]), padding="longest",
                                    max_length=self.max_tokens, truncation=True, return_tensors="pt")
            with torch.inference_mode():
                embeds = self.text_encoder(tokens.input_ids.to(self.device),
                                           attention_mask=tokens.attention_mask.to(self.device)).text_embeds
            out.append(torch.nn.functional.normalize(embeds.float(), dim=-1).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim), np.float32)


def _checkpoint_key(local: str, parts: tuple[str, ...]) -> str:
    """Identifies a checkpoint's files (path, size, mtime), so a cached value follows the weights it came from."""
    digest = hashlib.sha256()
    for part in parts:
        folder = os.path.join(local, part)
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            stat = os.stat(os.path.join(folder, name))
            digest.update(f"{os.path.realpath(os.path.join(folder, name))}:{stat.st_size}:{stat.st_mtime_ns}\n"
                          .encode())
    return digest.hexdigest()[:24]


def empty_prompt_embedding(local: str) -> np.ndarray:
    """AudioLDM's CLAP embedding of "" (the unconditional half of guidance), cached in the i2a cache.

    Image sonification needs nothing else from the 125M-parameter text tower, so the generator never keeps
    it loaded: the first load computes the vector once on CPU, in fp32, and later loads read 2 KB.
    """
    path = os.path.join(refs.cache_dir(), "clap-empty", _checkpoint_key(local, ("text_encoder", "tokenizer")) + ".npy")
    if os.path.exists(path):
        return np.load(path)
    clap = ClapTextEncoder.load(local, device="cpu")
    vector = clap.encode([""])[0]
    del clap
    os.makedirs(os.path.dirname(path), exist_ok=True)
    staging = f"{path}.{uuid.uuid4().hex}.tmp.npy"
    np.save(staging, vector)
    os.replace(staging, path)
    return vector


def _load_component(cls, local: str, subfolder: str, dtype: torch.dtype, device: torch.device):
    # low_cpu_mem_usage (accelerate): weights go straight into an empty model instead of a random one first.
    model = cls.from_pretrained(local, subfolder=subfolder, torch_dtype=dtype, low_cpu_mem_usage=True)
    return model.to(device).eval()


class AudioLDMGenerator:
    """AudioLDM conditioned on given CLAP vectors, batched, one seed per clip.

    `text_encoder=True` also loads AudioLDM's CLAP text tower (`self.clap`), for text prompts; image work
    needs only the cached empty-prompt embedding.
    """

    def __init__(self, source: str = DEFAULT_AUDIOLDM, device: str | None = None, text_encoder: bool = False):
        import torch
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
        from transformers import SpeechT5HifiGan

        local = refs.resolve_audioldm(source)
        self.source = source
        self.device = pick_device(device)
        self.dtype = generation_dtype(self.device)
        self.unet = _load_component(UNet2DConditionModel, local, "unet", self.dtype, self.device)
        self.vae = _load_component(AutoencoderKL, local, "vae", self.dtype, self.device)
        self.vocoder = _load_component(SpeechT5HifiGan, local, "vocoder", self.dtype, self.device)
        if self.device.type == "cuda":  # NHWC convolutions are faster on tensor cores; on CPU they are not
            self.unet.to(memory_format=torch.channels_last)
            self.vae.to(memory_format=torch.channels_last)
        self.scheduler_config = DDIMScheduler.load_config(local, subfolder="scheduler")
        self.clap = ClapTextEncoder.load(local, device=str(self.device)) if text_encoder else None
        self._empty = torch.from_numpy(empty_prompt_embedding(local))
        self.clap_dim = int(self._empty.shape[0])
        self.sample_rate = int(self.vocoder.config.sampling_rate)
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.timings: dict[str, float] = {}  # seconds per stage of the last generate() call

    def compile(self) -> None:
        """torch.compile the UNet (opt-in: minutes of compilation, repaid over long runs on a GPU)."""
        import torch

        self.unet = torch.compile(self.unet)

    def scheduler(self, name: str = DEFAULT_SCHEDULER):
        """A fresh scheduler of kind `name`, from the checkpoint's own scheduler config."""
        import diffusers

        if name not in SCHEDULERS:
            raise ValueError(f"--scheduler {name}: unknown (choose from {', '.join(SCHEDULERS)})")
        return getattr(diffusers, SCHEDULERS[name]).from_config(self.scheduler_config)

    @property
    def seconds_per_frame(self) -> float:
        """Audio seconds per mel frame: the vocoder's hop."""
        return float(np.prod(self.vocoder.config.upsample_rates)) / self.vocoder.config.sampling_rate

    @property
    def min_duration(self) -> float:
        """Shortest clip: one latent frame, as the diffusers AudioLDM pipeline computed it."""
        return self.seconds_per_frame * self.vae_scale_factor

    def check_duration(self, duration: float) -> None:
        if not (self.min_duration <= duration <= MAX_DURATION_S):
            raise ValueError(f"--duration {duration:g}: AudioLDM makes clips from {self.min_duration:g} s "
                             f"to {MAX_DURATION_S:g} s")

    def generate(self, clap_vectors: np.ndarray, seeds: list[int], duration: float = 10.0, steps: int = 50,
                 guidance: float = 2.5, scheduler: str = DEFAULT_SCHEDULER) -> list[np.ndarray]:
        """One mono float32 waveform per CLAP vector, at `self.sample_rate`.

        Each clip has its own seeded generator, so a clip's audio does not depend on its batch-mates.
        The negative embedding is AudioLDM's own embedding of the empty prompt, as plain AudioLDM uses.
        """
        import torch

        with torch.inference_mode():
            return self._sample(clap_vectors, seeds, duration, steps, guidance, scheduler)

    def _sample(self, clap_vectors, seeds, duration, steps, guidance, scheduler) -> list[np.ndarray]:
        """generate()'s numbered steps, run under inference mode."""
        import torch

        # 1. Check inputs.
        self.check_duration(duration)
        embeds = torch.as_tensor(np.asarray(clap_vectors, np.float32))
        if embeds.ndim != 2 or embeds.shape[1] != self.clap_dim:
            raise ValueError(f"expected CLAP vectors of shape [B, {self.clap_dim}], got {tuple(embeds.shape)}")
        if len(seeds) != len(embeds):
            raise ValueError(f"{len(seeds)} seeds for {len(embeds)} clips")
        timings = {}
        started = time.perf_counter()
        # 2. Conditioning: [empty prompt; CLAP vectors] when guiding, as one UNet batch.
        guided = guidance > 1.0
        condition = torch.nn.functional.normalize(embeds, dim=-1).to(self.device, self.dtype)
        if guided:
            condition = torch.cat([self._empty.expand(len(embeds), -1).to(self.device, self.dtype), condition])
        # 3. Timesteps.
        sampler = self.scheduler(scheduler)
        sampler.set_timesteps(steps, device=self.device)
        # 4. Starting noise from per-clip CPU generators: the same seed gives the same noise on any device.
        frames = int(duration / self.seconds_per_frame)
        samples = int(duration * self.sample_rate)
        frames = int(np.ceil(frames / self.vae_scale_factor)) * self.vae_scale_factor
        generators = [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]
        shape = (1, self.unet.config.in_channels, frames // self.vae_scale_factor,
                 int(self.vocoder.config.model_in_dim) // self.vae_scale_factor)
        latents = torch.cat([torch.randn(shape, generator=g, dtype=self.dtype) for g in generators])
        latents = latents.to(self.device) * sampler.init_noise_sigma
        step_arguments = inspect.signature(sampler.step).parameters
        extra = {k: v for k, v in (("eta", 0.0), ("generator", generators)) if k in step_arguments}
        timings["prepare"] = time.perf_counter() - started
        # 5. Denoising loop, guidance batched with the clips.
        started = time.perf_counter()
        for t in sampler.timesteps:
            model_input = sampler.scale_model_input(torch.cat([latents] * 2) if guided else latents, t)
            noise = self.unet(model_input, t, encoder_hidden_states=None, class_labels=condition,
                              return_dict=False)[0]
            if guided:
                unconditional, conditional = noise.chunk(2)
                noise = unconditional + guidance * (conditional - unconditional)
            latents = sampler.step(noise, t, latents, **extra).prev_sample
        timings["unet"] = self._synchronized(started)
        # 6. VAE decode to mel spectrograms, the whole batch at once.
        started = time.perf_counter()
        mel = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        timings["vae"] = self._synchronized(started)
        # 7. Vocoder, batched, then trim each clip to the asked duration.
        started = time.perf_counter()
        audio = self.vocoder(mel.squeeze(1)).cpu().float()[:, :samples]
        timings["vocoder"] = self._synchronized(started)
        timings["unet_step"] = timings["unet"] / max(len(sampler.timesteps), 1)
        self.timings = timings
        return [np.asarray(clip, np.float32) for clip in audio.numpy()]

    def _synchronized(self, started: float) -> float:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize(self.device)
        return time.perf_counter() - started
