"""Translator training losses: cosine, MSE and symmetric InfoNCE (any batch size)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a loss runs, so `i2a train --help` stays light
    import torch

LOSSES = ("cosine", "mse", "contrastive")


def cosine_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    return (1.0 - F.cosine_similarity(pred, target, dim=-1)).mean()


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    return F.mse_loss(pred, target)


def contrastive_loss(pred: torch.Tensor, target: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Symmetric InfoNCE: each prediction must pick its own target among the batch's, and vice versa.

    Works for any batch size >= 1 (the thesis dropped every batch that was not exactly 64); with one
    row the loss is zero, since there is nothing to contrast against.
    """
    import torch
    import torch.nn.functional as F

    logits = F.normalize(pred, dim=-1) @ F.normalize(target, dim=-1).T / temperature
    labels = torch.arange(len(pred), device=pred.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def get_loss(name: str, temperature: float = 0.07):
    if name == "cosine":
        return cosine_loss
    if name == "mse":
        return mse_loss
    if name == "contrastive":
        return lambda pred, target: contrastive_loss(pred, target, temperature)
    raise ValueError(f"unknown loss '{name}' (choose from {', '.join(LOSSES)})")
