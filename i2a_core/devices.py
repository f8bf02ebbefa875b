"""Pick the torch device and dtype once: CUDA in fp16 when torch can see a GPU, else CPU in fp32."""

from __future__ import annotations

import torch


def pick_device(requested: str | None = None) -> torch.device:
    """`requested` wins; else CUDA when torch sees one. Ray may hand out a logical GPU torch cannot see."""
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    return torch.float16 if device.type == "cuda" else torch.float32
