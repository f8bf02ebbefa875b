"""The scorer: WAV + image + caption rows -> CS, CLAP score and FAD/FD embedding rows, loaded as a protocol says.

Built once per process (a Ray actor or this one) from plain data (protocols.ScoringModels); the eval driver
reaches it by dotted path, so torch and the models load only where scoring runs.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from i2a_core import refs
from i2a_core.evaluation import audio_models, loading, metrics, protocols, tiny_scorers, weights
from i2a_core.evaluation.resampling import resample
from i2a_core.io import images
from i2a_core.models.clip import ClipEncoder
from i2a_core.models.devices import pick_device
from i2a_core.quiet import quiet_libraries

# --- weights ---


def load_checkpoint(path: str, what: str, trust_pickles: bool = False) -> dict:
    """A state dict from .safetensors, or from a pickle with weights_only=True (unless trusted explicitly)."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickles)
    except Exception as e:  # a pickle with objects beyond tensors and containers, or not a checkpoint at all
        raise refs.ModelUnavailable(
            f"cannot load {what} '{path}': not a plain-tensor checkpoint ({type(e).__name__}); convert it to "
            f".safetensors, or pass --trust-checkpoints if you trust the file (it runs the pickle's code)") from None


def local_weights(reference: str, what: str, flag: str) -> str:
    """A local path for tiny:NAME (built here, offline) or anything weights.resolve_weights takes."""
    if weights.is_tiny(reference):
        return tiny_scorers.resolve(reference)
    return weights.resolve_weights(reference, what, flag)


def released_config(kind: str, reference: str):
    """The architecture of a released checkpoint: the defaults, or CNN14's 16 kHz variant ("16k" in its name)."""
    _, config_class = audio_models.ARCHITECTURES[kind]
    if kind == "cnn14" and "16k" in os.path.basename(urllib.parse.unquote(reference)):
        return config_class(sample_rate=16000, window=512, hop=160, fmax=8000.0)
    return config_class()


def load_audio_model(kind: str, reference: str, what: str, flag: str, trust_pickles: bool = False):
    """One of audio_models.ARCHITECTURES with its weights; a folder holds config.json + the checkpoint."""
    model_class, _ = audio_models.ARCHITECTURES[kind]
    path = local_weights(reference, what, flag)
    config = released_config(kind, reference)
    if os.path.isdir(path):  # a self-describing folder (the tiny scorers, or a converted checkpoint)
        with open(os.path.join(path, "config.json")) as f:
            described = json.load(f)
        config = audio_models.config_from_dict(kind, described["config"])
        path = os.path.join(path, described["weights"])
    model = model_class(config)
    state = model_class.checkpoint_keys(load_checkpoint(path, what, trust_pickles))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else str(e)
        raise refs.ModelUnavailable(f"cannot load {what} '{reference}': weights do not match the architecture "
                                   f"({first[:200]})") from None
    return model.eval()


# --- audio in ---


def fit_length(tensor: torch.Tensor, length: int) -> torch.Tensor:
    """Crop to, or zero-pad up to, `length` samples (a fixed Wav2CLIP window from the start)."""
    return tensor[:length] if tensor.numel() >= length else F.pad(tensor, (0, length - tensor.numel()))


@dataclass
class Clip:
    """One clip as the protocol loads it: mono float32 at the file's rate, and its copies at each model's rate."""

    samples: torch.Tensor
    rate: int
    at: dict = field(default_factory=dict)


# --- the scorers ---


def _pooled(output):
    """transformers 5 returns a model output whose pooler_output is the projected embedding; 4.x a tensor."""
    return getattr(output, "pooler_output", output)


class ClapScorer:
    """CLAP audio and text embeddings (transformers' ClapModel and its processor)."""

    def __init__(self, reference: str, device: str):
        from transformers import ClapModel, ClapProcessor

        path = local_weights(reference, "CLAP", "--clap-score-model")
        self.processor = ClapProcessor.from_pretrained(path)
        self.model = ClapModel.from_pretrained(path).to(device).eval()
        self.device = device
        extractor = self.processor.feature_extractor
        self.sample_rate = int(extractor.sampling_rate)
        self.max_samples = int(extractor.nb_max_samples)

    def audio(self, clips: list) -> np.ndarray:
        # The first max_length_s seconds, so no random crop makes a score change between runs.
        arrays = [clip[:self.max_samples].numpy() for clip in clips]
        inputs = self.processor.feature_extractor(arrays, sampling_rate=self.sample_rate, return_tensors="pt")
        with torch.inference_mode():
            out = self.model.get_audio_features(**{k: v.to(self.device) for k, v in inputs.items()})
        return _pooled(out).float().cpu().numpy()

    def text(self, texts: list[str]) -> np.ndarray:
        tokens = self.processor.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            out = self.model.get_text_features(**{k: v.to(self.device) for k, v in tokens.items()})
        return _pooled(out).float().cpu().numpy()


class ScoreClips:
    """Ray Data mapper (and in-process stage): WAV + image + caption rows -> CS, CLAP score, FAD/FD embeddings.

    `want` names what to compute: any of cs, clap, fad, fd. A clip whose audio cannot be read gets an
    error; a clip without an image gets no CS and a note saying why, the rest of its scores still count.
    Every clip is loaded and embedded on its own, as models.protocol says, so no score depends on the batch.
    Output columns: cs, clap_score, error, note, and with fad/fd `vggish` ([patches, 128] rows) and `panns`
    (the clip's rows of the FD Gaussian: [2048], or [2048, 1] when the protocol pools values).
    """

    def __init__(self, models: protocols.ScoringModels, want: tuple = ("cs", "clap"), device: str | None = None):
        quiet_libraries()
        self.models, self.want = models, set(want)
        self.protocol = protocols.protocol(models.protocol)
        self.cs_seconds = protocols.cs_window(models)
        self.device = pick_device(device)
        trust = models.trust_pickles
        if "cs" in self.want:
            try:
                self.clip = ClipEncoder(models.cs_clip, device=self.device)
            except refs.ModelUnavailable as e:
                raise refs.ModelUnavailable(weights.scoring_flags(str(e))) from None
            self.wav2clip = load_audio_model("wav2clip", models.cs_audio, "Wav2CLIP", "--cs-audio", trust)
            self.wav2clip.to(self.device)
            if self.wav2clip.config.mlp[-1] != self.clip.dim:
                raise refs.ModelUnavailable(f"--cs-audio gives {self.wav2clip.config.mlp[-1]}-d embeddings but the "
                                           f"scoring CLIP {models.cs_clip.model} gives {self.clip.dim}-d ones")
        if "clap" in self.want:
            self.clap = ClapScorer(models.clap, self.device)
        if "fad" in self.want:
            self.vggish = load_audio_model("vggish", models.fad, "VGGish", "--fad-model", trust).to(self.device)
        if "fd" in self.want:
            self.cnn14 = load_audio_model("cnn14", models.fd, "PANNs CNN14", "--fd-model", trust).to(self.device)

    # --- one clip, as the protocol loads it ---

    def load(self, wav: str) -> Clip:
        """Read, choose or mix channels, remove DC (ValueError naming the file when it is not audio)."""
        samples, rate = loading.read_audio(wav)
        mono = torch.from_numpy(loading.channels(samples, self.protocol.channels))
        if self.protocol.remove_dc:
            mono = mono - mono.mean()
        return Clip(mono, rate)

    def audio_at(self, clip: Clip, rate: int) -> torch.Tensor:
        """The clip at `rate` Hz, resampled once, zero-padded to the protocol's minimum length."""
        if rate not in clip.at:
            audio = resample(clip.samples, clip.rate, rate, self.protocol.resampler)
            shortest = int(round(self.protocol.min_seconds * rate))
            clip.at[rate] = F.pad(audio, (0, shortest - audio.numel())) if audio.numel() < shortest else audio
        return clip.at[rate]

    def wav2clip_embedding(self, clip: Clip) -> np.ndarray:
        audio = self.audio_at(clip, self.wav2clip.config.sample_rate)
        if self.cs_seconds is not None:
            audio = fit_length(audio, int(round(self.cs_seconds * self.wav2clip.config.sample_rate)))
        with torch.inference_mode():
            return self.wav2clip(audio[None].to(self.device)).float().cpu().numpy()[0]

    def vggish_rows(self, clip: Clip) -> np.ndarray:
        with torch.inference_mode():
            return self.vggish(self.audio_at(clip, self.vggish.config.sample_rate).to(self.device)).float().cpu().numpy()

    def panns_rows(self, clip: Clip) -> np.ndarray:
        audio = self.audio_at(clip, self.cnn14.config.sample_rate)
        with torch.inference_mode():
            embedding = self.cnn14(audio[None].to(self.device)).float().cpu().numpy()[0]
        return embedding[:, None] if self.protocol.fd == "values" else embedding

    # --- a batch ---

    def __call__(self, batch: dict) -> dict:
        wavs = [str(w) for w in batch["wav"]]
        pictures = [str(i) for i in batch.get("image", [""] * len(wavs))]
        captions = [str(c) for c in batch.get("caption", [""] * len(wavs))]
        n = len(wavs)
        cs, clap = np.full(n, np.nan), np.full(n, np.nan)
        errors = [str(e) for e in batch.get("error", [""] * n)]  # rows that failed before (the runner's)
        kinds = [str(k) for k in batch.get("error_kind", [""] * n)]
        notes = [""] * n
        vggish, panns = [None] * n, [None] * n
        clips = {}
        for i, wav in enumerate(wavs):
            if errors[i]:
                continue
            try:
                clips[i] = self.load(wav)
            except ValueError as e:
                errors[i], kinds[i] = str(e), "unreadable_audio"
        if "cs" in self.want:
            self._cs(clips, pictures, cs, notes)
        if "clap" in self.want:
            self._clap(clips, captions, clap)
        for i, clip in clips.items():
            if "fad" in self.want:
                vggish[i] = self.vggish_rows(clip)
            if "fd" in self.want:
                panns[i] = self.panns_rows(clip)
        out = {**batch, "cs": cs, "clap_score": clap, "error": np.array(errors, dtype=object),
               "error_kind": np.array(kinds, dtype=object), "note": np.array(notes, dtype=object)}
        if "fad" in self.want:
            out["vggish"] = _objects(vggish)
        if "fd" in self.want:
            out["panns"] = _objects(panns)
        return out

    def _cs(self, clips, pictures, cs, notes):
        pairs = []
        for i in clips:
            if not pictures[i]:
                notes[i] = "no CS: no image for this clip"
                continue
            try:
                pairs.append((i, images.load_image(pictures[i])))
            except images.ImageError as e:
                notes[i] = f"no CS: {e}"
        if not pairs:
            return
        audio_vectors = np.stack([self.wav2clip_embedding(clips[i]) for i, _ in pairs])
        image_vectors = self.clip.encode_images([image for _, image in pairs])
        scores = metrics.cosine_scores(audio_vectors, image_vectors, scale=self.protocol.cs_scale)
        for (i, _), score in zip(pairs, scores, strict=True):
            cs[i] = score

    def _clap(self, clips, captions, clap):
        chosen = [i for i in clips if captions[i]]
        if not chosen:
            return
        audio = [self.audio_at(clips[i], self.clap.sample_rate) for i in chosen]
        scores = metrics.cosine_scores(self.clap.audio(audio), self.clap.text([captions[i] for i in chosen]))
        for i, score in zip(chosen, scores, strict=True):
            clap[i] = score


def _objects(values: list) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array
