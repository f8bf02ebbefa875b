"""Scoring protocols and scoring models as plain data: every front-end choice behind a CS, FAD or FD, by name.

No torch here: the eval driver and the CLI read this; the scorer (scorers.py) applies it where it runs.
docs/eval.md has the same table with the reference line each choice follows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from i2a_core.specs import ClipSpec

# Released weights. Plain checkpoints are downloaded once into the i2a cache; CLAP is a hub repo.
WAV2CLIP_URL = "https://github.com/descriptinc/lyrebird-wav2clip/releases/download/v0.1.0-alpha/Wav2CLIP.pt"
VGGISH_URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/vggish-10086976.pth"
CNN14_URL = "https://zenodo.org/record/3987831/files/Cnn14_mAP%3D0.431.pth"
# The 16 kHz CNN14 that audioldm_eval and frechet_audio_distance use on 16 kHz audio; chosen by "16k" in the name.
CNN14_16K_URL = "https://zenodo.org/record/3987831/files/Cnn14_16k_mAP%3D0.438.pth"
CLAP_HUB_ID = "laion/clap-htsat-unfused"


@dataclass(frozen=True)
class Resampler:
    """A windowed-sinc resampler, as the reference that uses it configures it (resampling.py runs it)."""

    name: str
    implementation: str  # "resampy": resampy's table-interpolation algorithm; "torchaudio": functional.resample
    window: str  # "kaiser" or "hann"
    zero_crossings: int  # on each side (resampy's num_zeros, torchaudio's lowpass_filter_width)
    rolloff: float  # cut-off as a fraction of the lower Nyquist
    beta: float | None = None  # Kaiser window only
    precision: int | None = None  # resampy: 2**precision table points per zero crossing


# resampy's "kaiser_best" (its data file's table, rebuilt from these numbers to 1e-15), which torchvggish and
# frechet_audio_distance resample with: >= 80 dB down above the new Nyquist.
KAISER_BEST = Resampler("resampy kaiser_best (50 zero crossings, Kaiser beta 12.9846, roll-off 0.9173)", "resampy",
                        "kaiser", 50, 0.9173473712608761, 12.984585247040018, 13)
# torchaudio.functional.resample's defaults, which audioldm_eval calls: 6 zero crossings, Hann window; it aliases
# (an 8.2 kHz tone keeps -8 dB after 48 -> 16 kHz), kept only where the reference does so.
TORCHAUDIO_DEFAULT = Resampler("torchaudio default (sinc_interp_hann, width 6, rolloff 0.99)", "torchaudio", "hann",
                               6, 0.99)


@dataclass(frozen=True)
class Protocol:
    """Every front-end choice between a WAV file and the scoring models."""

    name: str
    summary: str
    channels: str  # "mean": mix every channel down; "first": keep channel 0
    remove_dc: bool  # subtract the clip's mean (before resampling)
    resampler: Resampler
    min_seconds: float  # zero-pad every model input shorter than this (after resampling)
    cs_seconds: float | None  # Wav2CLIP window: None = the whole clip; else the first N s, cropped or zero-padded
    cs_scale: float  # CS = cs_scale x cosine
    fad: str  # the VGGish rows of a set's Gaussian
    fd: str  # the PANNs rows: "clips" (one 2048-d row per clip) or "values" (every value one 1-d sample)
    follows: dict  # choice -> the reference line it follows


PROTOCOLS = {
    "i2a": Protocol(
        name="i2a", summary="i2a's default: anti-aliased resampling, mixdown, whole-clip CS, AudioLDM's 16 kHz CNN14",
        channels="mean", remove_dc=False, resampler=KAISER_BEST, min_seconds=0.0, cs_seconds=None, cs_scale=100.0,
        fad="vggish patches", fd="clips",
        follows={"loading": "frechet_audio_distance utils.load_audio_task (soundfile, np.mean over channels, "
                            "resampy.resample)",
                 "cs": "wav2clip.embed_audio on the whole clip, one clip at a time; x100 as Im2Wav and V2A-Mapper "
                       "report it",
                 "fad": "frechet_audio_distance FrechetAudioDistance(model_name='vggish', use_pca=False, "
                        "use_activation=False)",
                 "fd": "audioldm_eval calculate_fid: one 2048-d row per clip from the 16 kHz CNN14"}),
    "audioldm-eval": Protocol(
        name="audioldm-eval", summary="audioldm_eval's EvaluationHelper(16000, device, backbone='cnn14')",
        channels="first", remove_dc=True, resampler=TORCHAUDIO_DEFAULT, min_seconds=2.0, cs_seconds=None,
        cs_scale=100.0, fad="vggish patches", fd="clips",
        follows={"loading": "audioldm_eval datasets/load_mel.py WaveDataset.read_from_file (first channel, "
                            "minus its mean, torchaudio.functional.resample, pad_short_audio to 32000 samples)",
                 "cs": "no CS in audioldm_eval: wav2clip.embed_audio on the clip WaveDataset returns; x100",
                 "fad": "audioldm_eval metrics/fad.py FrechetAudioDistance(use_pca=False, use_activation=False)",
                 "fd": "audioldm_eval eval.py: Cnn14 16 kHz '2048' features, calculate_fid"}),
    "fad-package": Protocol(
        name="fad-package", summary="the frechet_audio_distance package 0.3.5 (vggish; pann at 16 kHz)",
        channels="mean", remove_dc=False, resampler=KAISER_BEST, min_seconds=0.0, cs_seconds=None, cs_scale=100.0,
        fad="vggish patches", fd="values",
        follows={"loading": "frechet_audio_distance utils.load_audio_task (soundfile, np.mean over channels, "
                            "resampy.resample)",
                 "cs": "no CS in frechet_audio_distance: wav2clip.embed_audio on the whole clip; x100",
                 "fad": "FrechetAudioDistance(model_name='vggish', sample_rate=16000, use_pca=False, "
                        "use_activation=False).score",
                 "fd": "FrechetAudioDistance(model_name='pann', sample_rate=16000).score: get_embeddings "
                       "concatenates 1-d embeddings, so the Gaussian is over every embedding value pooled "
                       "(the package's issue #37), reproduced here"}),
}
DEFAULT_PROTOCOL = "i2a"


def protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown scoring protocol '{name}' (known: {', '.join(PROTOCOLS)})") from None


def cs_window(models: "ScoringModels") -> float | None:
    """The Wav2CLIP window in seconds (None: whole clip): --cs-seconds when given, else the protocol's."""
    return models.cs_seconds if models.cs_seconds is not None else protocol(models.protocol).cs_seconds


def describe_protocol(models: "ScoringModels") -> dict:
    """What summary.json records: the protocol and every choice it makes, with the flags that overrode it."""
    chosen = protocol(models.protocol)
    window = cs_window(models)
    out = {k: v for k, v in asdict(chosen).items() if k not in ("resampler",)}
    out.update(resampler=asdict(chosen.resampler), cs_seconds=window,
               cs_window="whole clip" if window is None else f"first {window:g} s at 16 kHz, zero-padded",
               fd_model=models.fd, fad_model=models.fad)
    if models.cs_seconds is not None and models.cs_seconds != chosen.cs_seconds:
        out["overridden"] = ["--cs-seconds"]
    return out


def cs_description(models: "ScoringModels") -> str:
    chosen, window = protocol(models.protocol), cs_window(models)
    audio = "whole clip" if window is None else f"first {window:g} s, zero-padded"
    return (f"{chosen.cs_scale:g} x cosine(Wav2CLIP({audio} at 16 kHz, {chosen.name} loading), "
            f"CLIP image embedding)")


@dataclass(frozen=True)
class ScoringModels:
    """The scoring models and the protocol, fixed whatever models generated the audio. Plain strings: actors
    load their own."""

    cs_clip: ClipSpec = ClipSpec("ViT-B-32", "openai")
    cs_audio: str = WAV2CLIP_URL
    clap: str = CLAP_HUB_ID
    fad: str = VGGISH_URL
    fd: str = CNN14_16K_URL
    cs_seconds: float | None = None  # --cs-seconds: overrides the protocol's Wav2CLIP window
    tiny: bool = False
    trust_pickles: bool = False  # allow full unpickling of .pt/.pth checkpoints (only for files you trust)
    protocol: str = DEFAULT_PROTOCOL

    def describe(self) -> dict:
        versions = _versions()
        chosen = protocol(self.protocol)
        return {
            "cs_image": {"model": f"CLIP {self.cs_clip.model}", "pretrained": self.cs_clip.pretrained,
                         "library": f"open_clip {versions['open_clip']}", "embedding": "encode_image (projected)"},
            "cs_audio": {"model": "Wav2CLIP", "weights": self.cs_audio, "sample_rate": 16000,
                         "seconds": cs_window(self), "embedding": "audio_transform output (CLIP space)"},
            "clap_score": {"model": "CLAP (transformers ClapModel)", "weights": self.clap,
                           "library": f"transformers {versions['transformers']}",
                           "embedding": "get_audio_features / get_text_features (projected)"},
            "fad": {"model": "VGGish", "weights": self.fad, "sample_rate": 16000,
                    "embedding": "128-d per 0.96 s patch, last layer before ReLU, no PCA"},
            "fd": {"model": "PANNs CNN14", "weights": self.fd,
                   "sample_rate": 16000 if self.tiny or "16k" in self.fd else 32000,
                   "embedding": "2048-d fc1 + ReLU per clip"
                                + (", every value one sample" if chosen.fd == "values" else "")},
            "resampler": chosen.resampler.name, "torch": versions["torch"], "torchaudio": versions["torchaudio"],
        }


TINY = ScoringModels(cs_clip=ClipSpec("tiny:clip", None), cs_audio="tiny:wav2clip", clap="tiny:clap",
                     fad="tiny:vggish", fd="tiny:cnn14", tiny=True)
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


def describe(models: ScoringModels) -> dict:
    return {**models.describe(), "spec": {k: str(v) for k, v in asdict(models).items()}}
