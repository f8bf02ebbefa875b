"""Scoring models: which ones (ScoringModels), where their weights come from, and the actor that scores clips."""

from __future__ import annotations

import io
import json
import os
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass

import numpy as np

from i2a_core import refs
from i2a_core.io import storage
from i2a_core.models.clip import ClipSpec

# Released weights. Plain checkpoints are downloaded once into the i2a cache; CLAP is a hub repo.
WAV2CLIP_URL = "https://github.com/descriptinc/lyrebird-wav2clip/releases/download/v0.1.0-alpha/Wav2CLIP.pt"
VGGISH_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"
CNN14_URL = "https://zenodo.org/record/3987831/files/Cnn14_mAP%3D0.431.pth"
# The 16 kHz CNN14 that audioldm_eval uses for FD on 16 kHz audio; chosen by "16k" in the file name.
CNN14_16K_URL = "https://zenodo.org/record/3987831/files/Cnn14_16k_mAP%3D0.438.pth"
CLAP_HUB_ID = "laion/clap-htsat-unfused"
RESAMPLER = "torchaudio.functional.resample (sinc_interp_hann, lowpass_filter_width=6, rolloff=0.99)"
CS_SECONDS = 10.0  # Wav2CLIP input length: AudioLDM's and V2A-Mapper's 10 s clips


@dataclass(frozen=True)
class ScoringModels:
    """The scoring models, fixed whatever models generated the audio. Plain strings: actors load their own."""

    cs_clip: ClipSpec = ClipSpec("ViT-B-32", "openai")
    cs_audio: str = WAV2CLIP_URL
    clap: str = CLAP_HUB_ID
    fad: str = VGGISH_URL
    fd: str = CNN14_URL
    cs_seconds: float = CS_SECONDS
    tiny: bool = False
    trust_pickles: bool = False  # allow full unpickling of .pt/.pth checkpoints (only for files you trust)

    def describe(self) -> dict:
        versions = _versions()
        return {
            "cs_image": {"model": f"CLIP {self.cs_clip.model}", "pretrained": self.cs_clip.pretrained,
                         "library": f"open_clip {versions['open_clip']}", "embedding": "encode_image (projected)"},
            "cs_audio": {"model": "Wav2CLIP", "weights": self.cs_audio, "sample_rate": 16000,
                         "seconds": self.cs_seconds, "embedding": "audio_transform output (CLIP space)"},
            "clap_score": {"model": "CLAP (transformers ClapModel)", "weights": self.clap,
                           "library": f"transformers {versions['transformers']}",
                           "embedding": "get_audio_features / get_text_features (projected)"},
            "fad": {"model": "VGGish", "weights": self.fad, "sample_rate": 16000,
                    "embedding": "128-d per 0.96 s patch, last layer before ReLU, no PCA"},
            "fd": {"model": "PANNs CNN14", "weights": self.fd,
                   "sample_rate": 16000 if self.tiny or "16k" in self.fd else 32000,
                   "embedding": "2048-d fc1 + ReLU per clip"},
            "resampler": RESAMPLER, "torch": versions["torch"], "torchaudio": versions["torchaudio"],
        }


TINY = ScoringModels(cs_clip=ClipSpec("tiny:clip", None), cs_audio="tiny:wav2clip", clap="tiny:clap",
                     fad="tiny:vggish", fd="tiny:cnn14", cs_seconds=1.0, tiny=True)
TINY_WARNING = ("scored with --preset tiny: random scoring models built offline; the numbers are meaningless "
                "and only show that the pipeline runs")


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name, package in (("open_clip", "open_clip_torch"), ("transformers", "transformers"),
                          ("torch", "torch"), ("torchaudio", "torchaudio")):
        try:
            found[name] = version(package)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


# --- weights: tiny:, local file or folder, s3://, http(s) URL, hub id ---


def _download(url: str, what: str, flag: str) -> str:
    """A cached local copy of a released checkpoint; offline, one line saying how to point at a local copy."""
    name = os.path.basename(urllib.parse.unquote(urllib.parse.urlparse(url).path))
    target = os.path.join(refs.cache_dir(), "eval-weights", name)
    if os.path.exists(target):
        return target
    offline_hint = (f"cannot load {what} '{url}': it is not in the cache and cannot be downloaded here "
                    f"({{reason}}). Download it on a connected machine and pass {flag} PATH (a local file or "
                    f"s3:// URL), or score offline with --preset tiny.")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise refs.ModelUnavailable(offline_hint.format(reason="HF_HUB_OFFLINE is set"))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    staging = f"{target}.{os.getpid()}.partial"  # actors on one node may download at once
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(staging, "wb") as f:
            while chunk := response.read(1 << 20):
                f.write(chunk)
        os.replace(staging, target)
    except OSError as e:
        reason = getattr(e, "reason", None) or type(e).__name__
        raise refs.ModelUnavailable(offline_hint.format(reason=reason)) from None
    finally:
        if os.path.exists(staging):
            os.remove(staging)
    return target


def resolve_weights(reference: str, what: str, flag: str) -> str:
    """A local path for a checkpoint file or model folder given as tiny:NAME, a path, s3://... or a URL."""
    from i2a_core.evaluation import tiny_scorers

    if tiny_scorers.is_tiny(reference):
        return tiny_scorers.resolve(reference)
    if reference.startswith(("http://", "https://")):
        return _download(reference, what, flag)
    if storage.is_remote(reference):
        try:
            return storage.local_copy(reference, os.path.join(refs.cache_dir(), "remote"))
        except FileNotFoundError:
            raise refs.ModelUnavailable(f"cannot load {what} '{reference}': no such file or prefix") from None
    if os.path.exists(reference):
        return reference
    if reference.count("/") == 1 and not reference.startswith((".", "/", "~")):
        return refs.resolve_repo(reference, what, flag)
    raise refs.ModelUnavailable(f"cannot load {what} '{reference}': no such file")


def load_checkpoint(path: str, what: str, trust_pickles: bool = False) -> dict:
    """A state dict from .safetensors, or from a pickle with weights_only=True (unless trusted explicitly)."""
    import torch

    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickles)
    except Exception as e:  # a pickle with objects beyond tensors and containers, or not a checkpoint at all
        raise refs.ModelUnavailable(
            f"cannot load {what} '{path}': not a plain-tensor checkpoint ({type(e).__name__}); convert it to "
            f".safetensors, or pass --trust-checkpoints if you trust the file (it runs the pickle's code)") from None


def released_config(kind: str, reference: str):
    """The architecture of a released checkpoint: the defaults, or CNN14's 16 kHz variant ("16k" in its name)."""
    from i2a_core.evaluation import audio_models

    _, config_class = audio_models.ARCHITECTURES[kind]
    if kind == "cnn14" and "16k" in os.path.basename(urllib.parse.unquote(reference)):
        return config_class(sample_rate=16000, window=512, hop=160, fmax=8000.0)
    return config_class()


def load_audio_model(kind: str, reference: str, what: str, flag: str, trust_pickles: bool = False):
    """One of audio_models.ARCHITECTURES with its weights; a folder holds config.json + the checkpoint."""
    from i2a_core.evaluation import audio_models

    model_class, _ = audio_models.ARCHITECTURES[kind]
    path = resolve_weights(reference, what, flag)
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


def _scoring_flags(message: str) -> str:
    """clip.py names the generation flags; the scoring CLIP is set with --cs-clip / --cs-clip-pretrained."""
    return message.replace("--clip-pretrained", "--cs-clip-pretrained").replace("--clip-model", "--cs-clip")


def check_available(models: ScoringModels, want: tuple) -> None:
    """Resolve every scoring model this run needs (cache, download or ModelUnavailable) before any work starts."""
    if "cs" in want:
        try:
            refs.resolve_clip(models.cs_clip)
        except refs.ModelUnavailable as e:
            raise refs.ModelUnavailable(_scoring_flags(str(e))) from None
        resolve_weights(models.cs_audio, "Wav2CLIP", "--cs-audio")
    if "clap" in want:
        resolve_weights(models.clap, "CLAP", "--clap-score-model")
    if "fad" in want:
        resolve_weights(models.fad, "VGGish", "--fad-model")
    if "fd" in want:
        resolve_weights(models.fd, "PANNs CNN14", "--fd-model")


# --- audio in ---


def read_wav(path: str) -> tuple[np.ndarray, int]:
    """Mono float32 samples and the rate; ValueError naming the file when it is missing or not audio."""
    import soundfile

    try:
        data = storage.read_bytes(path)
    except (FileNotFoundError, OSError) as e:
        raise ValueError(f"{path}: cannot read ({type(e).__name__})") from None
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises its own LibsndfileError and RuntimeErrors
        raise ValueError(f"{path}: not readable audio ({type(e).__name__}, {len(data)} bytes)") from None
    if len(samples) == 0:
        raise ValueError(f"{path}: empty audio")
    return samples.mean(axis=1), int(rate)


def resample(samples: np.ndarray, rate: int, target: int):
    """A torch tensor at `target` Hz, through RESAMPLER (recorded in summary.json)."""
    import torch
    import torchaudio

    tensor = torch.from_numpy(np.ascontiguousarray(samples, np.float32))
    return tensor if rate == target else torchaudio.functional.resample(tensor, rate, target)


def fit_length(tensor, length: int):
    """Crop to, or zero-pad up to, `length` samples (Wav2CLIP and CLAP see a fixed window from the start)."""
    import torch.nn.functional as F

    return tensor[:length] if tensor.numel() >= length else F.pad(tensor, (0, length - tensor.numel()))


# --- the scorers ---


def _pooled(output):
    """transformers 5 returns a model output whose pooler_output is the projected embedding; 4.x a tensor."""
    return getattr(output, "pooler_output", output)


class ClapScorer:
    """CLAP audio and text embeddings (transformers' ClapModel and its processor)."""

    def __init__(self, reference: str, device: str):
        from transformers import ClapModel, ClapProcessor

        path = resolve_weights(reference, "CLAP", "--clap-score-model")
        self.processor = ClapProcessor.from_pretrained(path)
        self.model = ClapModel.from_pretrained(path).to(device).eval()
        self.device = device
        extractor = self.processor.feature_extractor
        self.sample_rate = int(extractor.sampling_rate)
        self.max_samples = int(extractor.nb_max_samples)

    def audio(self, clips: list) -> np.ndarray:
        import torch

        # The first max_length_s seconds, so no random crop makes a score change between runs.
        arrays = [clip[:self.max_samples].numpy() for clip in clips]
        inputs = self.processor.feature_extractor(arrays, sampling_rate=self.sample_rate, return_tensors="pt")
        with torch.inference_mode():
            out = self.model.get_audio_features(**{k: v.to(self.device) for k, v in inputs.items()})
        return _pooled(out).float().cpu().numpy()

    def text(self, texts: list[str]) -> np.ndarray:
        import torch

        tokens = self.processor.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        with torch.inference_mode():
            out = self.model.get_text_features(**{k: v.to(self.device) for k, v in tokens.items()})
        return _pooled(out).float().cpu().numpy()


class ScoreClips:
    """Ray Data mapper (and in-process stage): WAV + image + caption rows -> CS, CLAP score, FAD/FD embeddings.

    `want` names what to compute: any of cs, clap, fad, fd. A clip whose audio cannot be read gets an
    error; a clip without an image gets no CS and a note saying why, the rest of its scores still count.
    """

    def __init__(self, models: ScoringModels, want: tuple = ("cs", "clap"), device: str | None = None):
        import torch

        from i2a_core.models.devices import pick_device
        from i2a_core.quiet import quiet_libraries

        quiet_libraries()
        self.models, self.want = models, set(want)
        self.device = pick_device(device)
        trust = models.trust_pickles
        if "cs" in self.want:
            from i2a_core.models.clip import ClipEncoder

            try:
                self.clip = ClipEncoder(models.cs_clip, device=self.device)
            except refs.ModelUnavailable as e:
                raise refs.ModelUnavailable(_scoring_flags(str(e))) from None
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
        self.torch = torch

    def __call__(self, batch: dict) -> dict:
        from i2a_core.evaluation import metrics
        from i2a_core.io import images

        wavs = [str(w) for w in batch["wav"]]
        pictures = [str(i) for i in batch.get("image", [""] * len(wavs))]
        captions = [str(c) for c in batch.get("caption", [""] * len(wavs))]
        n = len(wavs)
        cs, clap = np.full(n, np.nan), np.full(n, np.nan)
        errors, notes = [""] * n, [""] * n
        vggish, panns = [None] * n, [None] * n
        audio = {}
        for i, wav in enumerate(wavs):
            try:
                audio[i] = read_wav(wav)
            except ValueError as e:
                errors[i] = str(e)
        with self.torch.inference_mode():
            if "cs" in self.want:
                self._cs(audio, pictures, cs, notes, images, metrics)
            if "clap" in self.want:
                self._clap(audio, captions, clap, metrics)
            for i, (samples, rate) in audio.items():
                if "fad" in self.want:
                    vggish[i] = self.vggish(resample(samples, rate, 16000).to(self.device)).float().cpu().numpy()
                if "fd" in self.want:
                    clip = resample(samples, rate, self.cnn14.config.sample_rate).to(self.device)
                    panns[i] = self.cnn14(clip[None]).float().cpu().numpy()[0]
        out = {**batch, "cs": cs, "clap_score": clap, "error": np.array(errors, dtype=object),
               "note": np.array(notes, dtype=object)}
        if "fad" in self.want:
            out["vggish"] = _objects(vggish)
        if "fd" in self.want:
            out["panns"] = _objects(panns)
        return out

    def _cs(self, audio, pictures, cs, notes, images, metrics):
        pairs = []
        for i, (samples, rate) in audio.items():
            if not pictures[i]:
                notes[i] = "no CS: no image for this clip"
                continue
            try:
                pairs.append((i, images.load_image(pictures[i])))
            except images.ImageError as e:
                notes[i] = f"no CS: {e}"
        if not pairs:
            return
        length = int(self.models.cs_seconds * 16000)
        clips = self.torch.stack([fit_length(resample(*audio[i], 16000), length) for i, _ in pairs])
        audio_vectors = self.wav2clip(clips.to(self.device)).float().cpu().numpy()
        image_vectors = self.clip.encode_images([image for _, image in pairs])
        for (i, _), score in zip(pairs, metrics.cosine_scores(audio_vectors, image_vectors)):
            cs[i] = score

    def _clap(self, audio, captions, clap, metrics):
        chosen = [i for i in audio if captions[i]]
        if not chosen:
            return
        clips = [resample(*audio[i], self.clap.sample_rate) for i in chosen]
        scores = metrics.cosine_scores(self.clap.audio(clips), self.clap.text([captions[i] for i in chosen]))
        for i, score in zip(chosen, scores):
            clap[i] = score


def _objects(values: list) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def describe(models: ScoringModels) -> dict:
    return {**models.describe(), "spec": {k: str(v) for k, v in asdict(models).items()}}
