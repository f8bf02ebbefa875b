"""Tiny, seeded, random scoring models (Wav2CLIP, VGGish, CNN14, CLAP) built offline, for tests and dry runs.

They are written in the released checkpoints' own formats (flat or {"model": ...} .pth pickles, a
transformers CLAP folder), so tests exercise the real loading code. Their scores are meaningless.
Cached under I2A_CACHE/tiny-eval-v<N>/, apart from tiny.py's generation models.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict

import torch

from i2a_core.evaluation.audio_models import Cnn14, Cnn14Config, Vggish, VggishConfig, Wav2Clip, Wav2ClipConfig
from i2a_core.evaluation.weights import TINY_SCHEME
from i2a_core.models import tiny
from i2a_core.refs import cache_dir

VERSION = "1"  # bump when a shape below changes, so stale caches are rebuilt
CNN14_RATE = 16000
CLAP_RATE = 16000


def resolve(reference: str) -> str:
    part = reference[len(TINY_SCHEME):]
    builders = {"wav2clip": _build_wav2clip, "vggish": _build_vggish, "cnn14": _build_cnn14, "clap": _build_clap}
    if part not in builders:
        raise ValueError(f"unknown tiny scoring model '{reference}' (known: "
                         f"{', '.join(TINY_SCHEME + p for p in builders)})")
    target = os.path.join(cache_dir(), f"tiny-eval-v{VERSION}", part)
    if not os.path.isdir(target):
        staging = f"{target}.{uuid.uuid4().hex}.partial"  # built aside and renamed: actors never see half
        os.makedirs(staging)
        try:
            builders[part](staging)
            os.rename(staging, target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            if not os.path.isdir(target):
                raise
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def _save(directory: str, config, checkpoint: dict) -> None:
    torch.save(checkpoint, os.path.join(directory, "checkpoint.pth"))
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump({"config": asdict(config), "weights": "checkpoint.pth",
                   "note": "random tiny scoring model for tests; its scores are meaningless"}, f, indent=2)


def _randomise_norms(model: torch.nn.Module) -> None:
    """Non-trivial BatchNorm statistics, so eval-mode outputs differ between inputs."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)


def _build_wav2clip(directory: str) -> None:
    torch.manual_seed(0)
    config = Wav2ClipConfig(widths=(4, 4, 8, 8), blocks=(1, 1, 1, 1), mlp=(8, 16, tiny.CLIP_DIM))
    model = Wav2Clip(config)
    _randomise_norms(model)
    state = dict(model.state_dict())
    state["audio_encoder.spectrogram.window"] = torch.hann_window(config.n_fft)  # as in the released file
    _save(directory, config, state)


def _build_vggish(directory: str) -> None:
    torch.manual_seed(0)
    config = VggishConfig(layers=(4, "M", 8, "M", 8, 8, "M", 8, 8, "M"), hidden=(16, 16, 8))
    _save(directory, config, dict(Vggish(config).state_dict()))


def _build_cnn14(directory: str) -> None:
    torch.manual_seed(0)
    config = Cnn14Config(channels=(4, 4, 8, 8, 8, 16), embedding=16, classes=4, sample_rate=CNN14_RATE,
                         window=512, hop=160, fmax=8000.0)
    model = Cnn14(config)
    _randomise_norms(model)
    state = dict(model.state_dict())
    state["logmel_extractor.melW"] = torch.zeros(config.window // 2 + 1, config.mel_bins)  # dropped on load
    _save(directory, config, {"model": state, "iteration": 0})


def _byte_tokenizer(directory: str):
    """A RoBERTa byte-level BPE tokenizer without merges: real tokenisation, no hub."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import RobertaTokenizer

    tokens = ["<s>", "<pad>", "</s>", "<unk>"] + sorted(ByteLevel.alphabet()) + ["<mask>"]
    with open(os.path.join(directory, "vocab.json"), "w") as f:
        json.dump({token: i for i, token in enumerate(tokens)}, f)
    with open(os.path.join(directory, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")
    return RobertaTokenizer(os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt"),
                            model_max_length=77)


def _build_clap(directory: str) -> None:
    from transformers import ClapConfig, ClapFeatureExtractor, ClapModel, ClapProcessor

    torch.manual_seed(0)
    sources = os.path.join(directory, "_tokenizer")
    os.makedirs(sources)
    tokenizer = _byte_tokenizer(sources)
    config = ClapConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 16, "intermediate_size": 32,
                     "num_attention_heads": 2, "num_hidden_layers": 1, "projection_dim": 16,
                     "max_position_embeddings": 80, "pad_token_id": tokenizer.pad_token_id,
                     "bos_token_id": 0, "eos_token_id": 2},
        audio_config={"spec_size": 64, "num_mel_bins": 16, "window_size": 4, "patch_size": 2, "patch_stride": 2,
                      "freq_ratio": 2, "patch_embeds_hidden_size": 16, "hidden_size": 32, "depths": [1, 1],
                      "num_attention_heads": [2, 2], "intermediate_size": 32, "projection_dim": 16,
                      "enable_fusion": False},
        projection_dim=16)
    # 1 s at 16 kHz, 100 frames of 16 mels: within the tiny HTSAT's 128 x 32 spectrogram image.
    extractor = ClapFeatureExtractor(feature_size=16, sampling_rate=CLAP_RATE, hop_length=160, max_length_s=1,
                                     fft_window_size=400, frequency_max=8000, truncation="rand_trunc",
                                     padding="repeatpad")
    ClapModel(config).save_pretrained(directory, safe_serialization=True)
    ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(directory)
    shutil.rmtree(sources)
