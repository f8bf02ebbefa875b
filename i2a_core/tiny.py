"""Tiny, seeded, randomly initialised CLIP, AudioLDM and translator, built offline for tests and demos.

They follow diffusers' and open_clip's own test models, shaped so that no attention runs over the audio
latents (CPU attention over long latents is what makes dummy AudioLDM crawl). Their audio is noise.
Each model is written once to the i2a cache in the layout the real loaders read (open_clip local-dir,
diffusers save_pretrained, translator dir), so tests exercise the real loading code.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid

import torch

TINY_SCHEME = "tiny:"
TINY_VERSION = "2"  # bump when the shapes below change, so stale caches are rebuilt
CLIP_DIM = 32
CLAP_DIM = 16

CLIP_CONFIG = {
    "embed_dim": CLIP_DIM,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    # vocab_size must match open_clip's bundled BPE tokenizer, which works offline.
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def is_tiny(reference: str | None) -> bool:
    return bool(reference) and str(reference).startswith(TINY_SCHEME)


def tiny_dir(part: str) -> str:
    """Local directory of a tiny model part ('clip', 'audioldm' or 'translator'), built on first use."""
    from i2a_core.hub import cache_dir

    builders = {"clip": _build_clip, "audioldm": _build_audioldm, "translator": _build_translator}
    if part not in builders:
        raise ValueError(f"unknown tiny model 'tiny:{part}' (known: {', '.join('tiny:' + p for p in builders)})")
    target = os.path.join(cache_dir(), f"tiny-v{TINY_VERSION}", part)
    if not os.path.isdir(target):
        # Build beside the target and rename, so parallel actors never see half a model.
        staging = f"{target}.{uuid.uuid4().hex}.partial"
        os.makedirs(staging)
        try:
            builders[part](staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            os.rename(staging, target)
        except OSError:  # another process built it first
            shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve(reference: str) -> str:
    return tiny_dir(reference[len(TINY_SCHEME):])


def _build_clip(directory: str) -> None:
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.CLIP(**CLIP_CONFIG)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              os.path.join(directory, "open_clip_model.safetensors"))
    with open(os.path.join(directory, "open_clip_config.json"), "w") as f:
        json.dump({"model_cfg": CLIP_CONFIG, "preprocess_cfg": {}}, f, indent=2)


def _byte_level_tokenizer(directory: str):
    """A RoBERTa byte-level BPE tokenizer with no merges: real tokenisation, built without the hub."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import RobertaTokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    vocab = {token: i for i, token in enumerate(specials + sorted(ByteLevel.alphabet()) + ["<mask>"])}
    with open(os.path.join(directory, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(directory, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")
    return RobertaTokenizer(os.path.join(directory, "vocab.json"), os.path.join(directory, "merges.txt"),
                            model_max_length=77)


def _build_audioldm(directory: str) -> None:
    from diffusers import AudioLDMPipeline, AutoencoderKL, DDIMScheduler, UNet2DConditionModel
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
    scheduler = DDIMScheduler(beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False)
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
    pipe = AudioLDMPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                            scheduler=scheduler, vocoder=vocoder)
    pipe.save_pretrained(directory, safe_serialization=True)
    shutil.rmtree(tokenizer_files)


def _build_translator(directory: str) -> None:
    from i2a_core.translator import MLPTranslator, TranslatorConfig

    torch.manual_seed(0)
    config = TranslatorConfig(type="mlp", in_dim=CLIP_DIM, out_dim=CLAP_DIM, hidden=32,
                              extra={"note": "random tiny translator for tests; its audio is noise"})
    MLPTranslator(config).save(directory)
