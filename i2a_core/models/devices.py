"""Pick the torch device and dtype once: CUDA in fp16 when torch can see a GPU, else CPU in fp32 (AudioLDM's
generator takes bf16 instead where the GPU has it: models/audioldm.generation_dtype)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a device is picked, so that importing this module stays cheap
    import torch


def pick_device(requested: str | None = None) -> torch.device:
    """`requested` wins; else CUDA when torch sees one. Ray may hand out a logical GPU torch cannot see."""
    import torch

    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device) -> torch.dtype:
    import torch

    return torch.float16 if device.type == "cuda" else torch.float32


def match_torch_threads_to_ray() -> int:
    """In a Ray actor without a GPU: as many torch threads as the CPUs Ray gave it (rounded up); returns them.

    Ray pins OMP_NUM_THREADS to the whole CPUs an actor asked for (1 for a fraction), so an actor holding
    most of a node would otherwise run its model on one core. Outside Ray, or with a GPU, nothing changes.
    """
    import math

    import torch

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized() or ray.get_runtime_context().get_actor_id() is None:
        return torch.get_num_threads()  # not inside an actor (a driver, an in-process run)
    resources = ray.get_runtime_context().get_assigned_resources()
    if resources.get("GPU") or not resources.get("CPU"):
        return torch.get_num_threads()
    threads = max(1, math.ceil(resources["CPU"] - 1e-6))
    torch.set_num_threads(threads)
    return threads
