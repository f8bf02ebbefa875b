"""open_clip image and text encoder: loaded once per process, batched, inference mode, fp16 on CUDA."""

from __future__ import annotations

import json
import os

import numpy as np

from i2a_core import hub, storage, tiny
from i2a_core.devices import pick_device, pick_dtype
from i2a_core.presets import ClipSpec  # noqa: F401  (defined with the presets, which import no torch)


def resolve_clip(spec: ClipSpec) -> tuple[str, str | None]:
    """(model name, pretrained) that open_clip can load without touching the network."""
    if tiny.is_generated(spec.model):
        return f"local-dir:{hub.local_model(spec.model)}", None
    if spec.model.startswith("local-dir:"):
        path = spec.model[len("local-dir:"):]
        if not os.path.isdir(path):
            raise hub.ModelUnavailable(f"cannot load CLIP '{spec.model}': no such directory")
        return spec.model, None
    if spec.model.startswith("hf-hub:"):
        repo = spec.model[len("hf-hub:"):]
        local = hub.resolve_repo(repo, "CLIP", "--clip-model local-dir:",
                                 allow_patterns=["open_clip_config.json", "*.safetensors", "*.bin", "*.txt"])
        return f"local-dir:{local}", None
    import open_clip  # only here: it imports torch, which a driver checking references should not pay for

    if spec.model not in open_clip.list_models():
        raise hub.ModelUnavailable(f"cannot load CLIP '{spec.model}': not an open_clip model name "
                                   f"(see open_clip.list_models()), hf-hub:ORG/NAME or local-dir:PATH")
    pretrained = spec.pretrained
    if pretrained and storage.is_remote(pretrained):
        return spec.model, storage.local_copy(pretrained, os.path.join(hub.cache_dir(), "remote"))
    if not pretrained or os.path.exists(pretrained):
        return spec.model, pretrained
    cfg = open_clip.get_pretrained_cfg(spec.model, pretrained)
    if not cfg:
        tags = [tag for name, tag in open_clip.list_pretrained() if name == spec.model]
        raise hub.ModelUnavailable(f"cannot load CLIP '{spec.model}': unknown pretrained tag '{pretrained}' "
                                   f"(known: {', '.join(tags) or 'none'}; or pass a checkpoint path)")
    if cfg.get("hf_hub"):
        # open_clip writes "ORG/REPO/" or "ORG/REPO/FILE".
        location = cfg["hf_hub"].rstrip("/")
        repo, filename = os.path.split(location) if location.count("/") > 1 else (location, "")
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        checkpoint = hub.resolve_file(repo, names, f"CLIP {spec.model}/{pretrained}",
                                      "--clip-pretrained")
        return spec.model, checkpoint
    if not hub.hub_reachable():
        raise hub.ModelUnavailable(f"cannot load CLIP {spec.model}/{pretrained}: it downloads from "
                                   f"{cfg.get('url')} and this machine is offline; pass --clip-pretrained PATH")
    return spec.model, pretrained


def image_transform(spec: ClipSpec):
    """CLIP's eval preprocessing (resize, crop, CLIP's mean/std) from the model config alone: no weights loaded.

    Decode workers use it instead of a CPU copy of the model (1.7 GB at ViT-B/32); it is the transform
    open_clip.create_model_and_transforms returns, merged from the same config sources.
    """
    from dataclasses import asdict

    import open_clip
    from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

    preprocess = asdict(PreprocessCfg())
    if tiny.is_generated(spec.model) or spec.model.startswith(("local-dir:", "hf-hub:")):
        name, _ = resolve_clip(spec)
        with open(os.path.join(name[len("local-dir:"):], "open_clip_config.json")) as f:
            config = json.load(f)
        model_cfg = config["model_cfg"]
        preprocess = merge_preprocess_dict(preprocess, config.get("preprocess_cfg", {}))
    else:
        model_cfg = open_clip.get_model_config(spec.model)
        if model_cfg is None:
            raise hub.ModelUnavailable(f"cannot load CLIP '{spec.model}': not an open_clip model name "
                                       f"(see open_clip.list_models()), hf-hub:ORG/NAME or local-dir:PATH")
        tag = open_clip.get_pretrained_cfg(spec.model, spec.pretrained) if spec.pretrained else None
        preprocess = merge_preprocess_dict(preprocess, tag or {})
    size = model_cfg["vision_cfg"].get("image_size", 224)
    preprocess["size"] = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    return image_transform_v2(PreprocessCfg(**preprocess), is_train=False)


def clip_dim_from_config(spec: ClipSpec) -> int | None:
    """CLIP's vector size from its config alone (tiny, local-dir: or a built-in open_clip name), else None."""
    import json

    import open_clip

    if tiny.is_generated(spec.model) or spec.model.startswith("local-dir:"):
        folder = hub.local_model(spec.model) if tiny.is_generated(spec.model) else spec.model[len("local-dir:"):]
        try:
            with open(os.path.join(folder, "open_clip_config.json")) as f:
                return int(json.load(f)["model_cfg"]["embed_dim"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
    config = open_clip.get_model_config(spec.model) if not spec.model.startswith("hf-hub:") else None
    return int(config["embed_dim"]) if config and "embed_dim" in config else None


class ClipEncoder:
    """CLIP image and text towers. Vectors come back as CLIP outputs them: float32, not normalised."""

    def __init__(self, spec: ClipSpec = ClipSpec(), device: str | None = None, batch_size: int = 64):
        import open_clip
        import torch

        name, pretrained = resolve_clip(spec)
        self.spec = spec
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device)
        self.batch_size = batch_size
        model, _, self.preprocess = open_clip.create_model_and_transforms(
            name, pretrained=pretrained, device=self.device,
            precision="fp16" if self.dtype == torch.float16 else "fp32",
        )
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(name)
        self.context_length = getattr(self.tokenizer, "context_length", 77)
        self.dim = int(self.encode_texts([""]).shape[1])

    def encode_pixels(self, pixels) -> np.ndarray:
        """Encode preprocessed images, shape [B, 3, H, W], as produced by `self.preprocess`."""
        import torch

        with torch.inference_mode():
            out = [self.model.encode_image(chunk.to(self.device, self.dtype)).float().cpu()
                   for chunk in torch.as_tensor(pixels).split(self.batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim), np.float32)

    def encode_images(self, images: list) -> np.ndarray:
        """Encode PIL images with the model's own preprocessing (CLIP's mean/std, not ImageNet's)."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        import torch

        return self.encode_pixels(torch.stack([self.preprocess(image) for image in images]))

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                tokens = self.tokenizer(list(texts[start:start + self.batch_size])).to(self.device)
                out.append(self.model.encode_text(tokens).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim), np.float32)

    @property
    def image_size(self) -> int:
        size = getattr(self.model.visual, "image_size", 224)
        return int(size[0] if isinstance(size, (tuple, list)) else size)
