"""Randomly initialised models built offline: tiny ones for tests and demos, real-size ones for benchmarks.

`tiny:clip`, `tiny:audioldm`, `tiny:translator` follow diffusers' and open_clip's own test models, shaped so
that no attention runs over the audio latents (CPU attention over long latents is what makes dummy AudioLDM
crawl). `random:ViT-B-32`, `random:audioldm-s-full-v2`, `random:translator` have the real architectures
(CLIP ViT-B/32, AudioLDM-S-full-v2 as diffusers' conversion script builds it) with random weights: real
shapes and real cost without the hub. The audio of both is noise.
Each model is written once to the i2a cache in the layout the real loaders read (open_clip local-dir,
diffusers component folders, translator dir), so tests and benchmarks exercise the real loading code.
This module knows nothing of where models come from: hub.resolve_repo treats it as one more source.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid

from i2a_core.errors import ModelUnavailable
from i2a_core.models.translator_files import TranslatorConfig, write_random
from i2a_core.specs import RANDOM_SCHEME, TINY_SCHEME

# Bump when the shapes, weights or layout below change, so stale caches are rebuilt.
VERSIONS = {TINY_SCHEME: "4", RANDOM_SCHEME: "2"}
CLIP_DIM = 32
CLAP_DIM = 16
FULL_CLIP_DIM = FULL_CLAP_DIM = 512
NOISE_NOTE = "random weights built offline: its audio is noise"

CLIP_CONFIG = {
    "embed_dim": CLIP_DIM,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    # vocab_size must match open_clip's bundled BPE tokenizer, which works offline.
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def _builders() -> dict[str, callable]:
    return {"tiny:clip": _build_clip, "tiny:audioldm": _build_audioldm, "tiny:translator": _build_translator,
            "random:ViT-B-32": _build_full_clip, "random:audioldm-s-full-v2": _build_full_audioldm,
            "random:translator": _build_full_translator}


def resolve(reference: str, cache_root: str) -> str:
    """Local directory of a generated model, built under `cache_root` on first use."""
    builders = _builders()
    if reference not in builders:
        raise ModelUnavailable(f"unknown generated model '{reference}' (known: {', '.join(builders)})")
    scheme, part = reference.split(":", 1)
    target = os.path.join(cache_root, f"{scheme}-v{VERSIONS[scheme + ':']}", part)
    if not os.path.isdir(target):
        # Build beside the target and rename, so parallel actors never see half a model.
        staging = f"{target}.{uuid.uuid4().hex}.partial"
        os.makedirs(staging)
        try:
            builders[reference](staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            os.rename(staging, target)
        except OSError:  # another process built it first
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _save_clip(directory: str, model, config: dict) -> None:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(directory, "open_clip_model.safetensors"))
    with open(os.path.join(directory, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": config, "preprocess_cfg": {}}, f, indent=2)


def _build_clip(directory: str) -> None:
    import open_clip
    import torch

    torch.manual_seed(0)
    _save_clip(directory, open_clip.CLIP(**CLIP_CONFIG), CLIP_CONFIG)


def _build_full_clip(directory: str) -> None:
    import open_clip
    import torch

    torch.manual_seed(0)
    config = open_clip.get_model_config("ViT-B-32")  # open_clip's own architecture config
    _save_clip(directory, open_clip.create_model("ViT-B-32", pretrained=None), config)


def _byte_level_tokenizer(directory: str, vocab_size: int | None = None):
    """A RoBERTa byte-level BPE tokenizer built without the hub.

    Tiny: the byte alphabet, no merges. Real size: merges learned from the bundled sample captions (so a
    caption has a realistic token count), the vocabulary filled to `vocab_size` so that the embedding
    matrix has RoBERTa's real shape.
    """
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import RobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    merges: list[str] = []
    tokens = specials + sorted(ByteLevel.alphabet())
    if vocab_size:
        from importlib import resources

        import pandas as pd
        from tokenizers import ByteLevelBPETokenizer

        captions = pd.read_csv(resources.files("i2a_core") / "data" / "sample_captions.csv").iloc[:, -1]
        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator([str(c) for c in captions], vocab_size=vocab_size, show_progress=False,
                                special_tokens=specials)
        learned = json.loads(bpe.to_str())["model"]
        tokens = sorted(learned["vocab"], key=learned["vocab"].get)
        merges = [" ".join(m) if isinstance(m, list) else m for m in learned["merges"]]
        tokens += [f"<unused{i}>" for i in range(vocab_size - 1 - len(tokens))]
    vocab = {token: i for i, token in enumerate(tokens + ["<mask>"])}
    with open(os.path.join(directory, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(directory, "merges.txt"), "w") as f:
        f.write("\n".join(["#version: 0.2", *merges]) + "\n")
    return RobertaTokenizer(os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt"),
                            model_max_length=77)


def _save_audioldm(directory: str, components: dict) -> None:
    """The diffusers layout: one folder per component, and model_index.json naming each one's class."""
    index = {}
    for name, component in components.items():
        component.save_pretrained(os.path.join(directory, name))
        library = "diffusers" if type(component).__module__.startswith("diffusers") else "transformers"
        index[name] = [library, type(component).__name__]
    with open(os.path.join(directory, "model_index.json"), "w") as f:
        json.dump(index, f, indent=2)


def _audioldm_scheduler():
    from diffusers import DDIMScheduler

    # AudioLDM's own schedule, as the conversion script writes it.
    return DDIMScheduler(beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear", num_train_timesteps=1000,
                         steps_offset=1, clip_sample=False, set_alpha_to_one=False)


def _build_audioldm(directory: str) -> None:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import ClapTextConfig, ClapTextModelWithProjection, SpeechT5HifiGan, SpeechT5HifiGanConfig

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        norm_num_groups=8, down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"), mid_block_type=None, cross_attention_dim=8,
        class_embed_type="simple_projection", projection_class_embeddings_input_dim=CLAP_DIM,
        class_embeddings_concat=True,
    )
    vae = AutoencoderKL(
        in_channels=1, out_channels=1, block_out_channels=(8, 16), latent_channels=4, norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        mid_block_add_attention=False,
    )
    tokenizer_files = os.path.join(directory, "_tokenizer_src")
    os.makedirs(tokenizer_files)
    tokenizer = _byte_level_tokenizer(tokenizer_files)
    text_encoder = ClapTextModelWithProjection(ClapTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_attention_heads=2,
        num_hidden_layers=1, projection_dim=CLAP_DIM, max_position_embeddings=80,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=0, eos_token_id=2,
    ))
    # Same hop (160 samples at 16 kHz) as the real AudioLDM vocoder, so durations mean the same thing.
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=16, sampling_rate=16000, upsample_initial_channel=16, upsample_rates=[8, 5, 4],
        upsample_kernel_sizes=[16, 10, 8], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3, 5]],
        normalize_before=False, initializer_range=0.15,  # audible noise; the default init is near-silent
    ))
    _save_audioldm(directory, {"unet": unet, "vae": vae, "vocoder": vocoder, "text_encoder": text_encoder,
                               "tokenizer": tokenizer, "scheduler": _audioldm_scheduler()})
    shutil.rmtree(tokenizer_files)


def _build_full_audioldm(directory: str) -> None:
    """AudioLDM-S-full-v2's architecture: the conversion script's default config, as diffusers builds it."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import ClapTextConfig, ClapTextModelWithProjection, SpeechT5HifiGan, SpeechT5HifiGanConfig

    torch.manual_seed(0)
    channels = (128, 256, 384, 640)  # model_channels 128 x channel_mult (1, 2, 3, 5)
    unet = UNet2DConditionModel(
        sample_size=128, in_channels=8, out_channels=8, block_out_channels=channels, layers_per_block=2,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=channels, attention_head_dim=8,
        class_embed_type="simple_projection", projection_class_embeddings_input_dim=FULL_CLAP_DIM,
        class_embeddings_concat=True,
    )
    vae = AutoencoderKL(
        sample_size=512, in_channels=1, out_channels=1, block_out_channels=(128, 256, 512), latent_channels=8,
        layers_per_block=2, down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        scaling_factor=1.0,
    )
    tokenizer_files = os.path.join(directory, "_tokenizer_src")
    os.makedirs(tokenizer_files)
    tokenizer = _byte_level_tokenizer(tokenizer_files, vocab_size=50265)
    text_encoder = ClapTextModelWithProjection(ClapTextConfig())  # laion/clap-htsat-unfused: RoBERTa-base + 512-d
    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        model_in_dim=64, sampling_rate=16000, upsample_initial_channel=1024, upsample_rates=[5, 4, 2, 2, 2],
        upsample_kernel_sizes=[16, 16, 8, 4, 4], resblock_kernel_sizes=[3, 7, 11],
        resblock_dilation_sizes=[[1, 3, 5]] * 3, normalize_before=False,
    ))
    _save_audioldm(directory, {"unet": unet, "vae": vae, "vocoder": vocoder, "text_encoder": text_encoder,
                               "tokenizer": tokenizer, "scheduler": _audioldm_scheduler()})
    shutil.rmtree(tokenizer_files)


def _build_translator(directory: str) -> None:
    config = TranslatorConfig(type="mlp", in_dim=CLIP_DIM, out_dim=CLAP_DIM, hidden=32,
                              extra={"note": "random tiny translator for tests; its audio is noise"})
    write_random(directory, config)


def _build_full_translator(directory: str) -> None:
    config = TranslatorConfig(type="mlp", in_dim=FULL_CLIP_DIM, out_dim=FULL_CLAP_DIM, hidden=512,
                              extra={"note": f"random 512->512 translator, {NOISE_NOTE}"})
    write_random(directory, config)
