"""open_clip image and text encoder, and CLIP's one image preprocessing: loaded once per process, batched."""

from __future__ import annotations

import numpy as np

from i2a_core import refs
from i2a_core.models.devices import pick_device, pick_dtype
from i2a_core.specs import ClipSpec


def image_transform(spec: ClipSpec):
    """CLIP's eval preprocessing (resize, crop, CLIP's mean/std) from the model config alone: no weights loaded.

    The one preprocessing every path uses (embed's decode stage, sonify's, the encoder's own
    encode_images): open_clip's transform, built from the config refs.clip_config reads.
    """
    from dataclasses import asdict

    from open_clip.transform import PreprocessCfg, image_transform_v2, merge_preprocess_dict

    model_cfg, preprocess_cfg = refs.clip_config(spec)
    preprocess = merge_preprocess_dict(asdict(PreprocessCfg()), preprocess_cfg)
    size = model_cfg["vision_cfg"].get("image_size", 224)
    preprocess["size"] = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    return image_transform_v2(PreprocessCfg(**preprocess), is_train=False)


class ClipEncoder:
    """CLIP image and text towers. Vectors come back as CLIP outputs them: float32, not normalised."""

    def __init__(self, spec: ClipSpec = ClipSpec(), device: str | None = None, batch_size: int = 64):
        import open_clip
        import torch

        name, pretrained = refs.resolve_clip(spec)
        self.spec = spec
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device)
        self.batch_size = batch_size
        model = open_clip.create_model(name, pretrained=pretrained, device=self.device,
                                       precision="fp16" if self.dtype == torch.float16 else "fp32")
        self.preprocess = image_transform(spec)
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
