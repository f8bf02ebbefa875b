"""Each loss trains a translator on a small learnable problem; InfoNCE handles any batch size."""

import pytest
import torch

from i2a_core.models.losses import LOSSES, contrastive_loss, get_loss
from i2a_core.models.translator import MLPTranslator, TranslatorConfig


@pytest.mark.parametrize("name", LOSSES)
def test_loss_decreases_on_a_learnable_map(name):
    torch.manual_seed(0)
    x = torch.randn(256, 16)
    target = torch.nn.functional.normalize(torch.tanh(x @ torch.randn(16, 8)), dim=-1)
    model = MLPTranslator(TranslatorConfig(in_dim=16, out_dim=8, hidden=64, loss=name))
    loss_fn = get_loss(name)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = loss_fn(model(x), target).item()
    for _ in range(150):
        for batch in torch.arange(256).split(50):  # 50 does not divide 256: the last batch is short
            optimizer.zero_grad()
            loss_fn(model(x[batch]), target[batch]).backward()
            optimizer.step()
    last = loss_fn(model(x), target).item()
    assert last < 0.5 * first, (name, first, last)


@pytest.mark.parametrize("batch", [1, 3, 63, 64, 65])
def test_contrastive_any_batch_size(batch):
    torch.manual_seed(batch)
    pred, target = torch.randn(batch, 8), torch.randn(batch, 8)
    loss = contrastive_loss(pred, target)
    assert torch.isfinite(loss)
    if batch == 1:
        assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_contrastive_prefers_matching_pairs():
    target = torch.nn.functional.normalize(torch.randn(32, 8), dim=-1)
    assert contrastive_loss(target, target) < contrastive_loss(target.roll(1, 0), target)


def test_unknown_loss():
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        get_loss("hinge")
