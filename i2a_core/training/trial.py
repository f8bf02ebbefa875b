"""One translator trial: train on a dataset group with early stopping, then score it on the shared test split."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from i2a_core.models.losses import get_loss
from i2a_core.models.translator import MLPTranslator, RetrievalTranslator, Translator, TranslatorConfig
from i2a_core.training.data import PreparedData, SplitArrays

RECALL_AT = (1, 5, 10)
EVAL_BATCH_ROWS = 1024


@dataclass(frozen=True)
class TrialSpec:
    """One grid point plus the optimisation settings every trial shares.

    kind "retrieval" is the training-free translator: it uses dataset audiocaps, top_k and temperature.
    """

    dataset: str
    loss: str
    hidden: int
    kind: str = "mlp"
    top_k: int = 10
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    patience: int = 3
    temperature: float = 0.07
    mean_shift: bool = False

    @property
    def name(self) -> str:
        if self.kind == "retrieval":
            return f"retrieval-k{self.top_k}"
        return f"{self.dataset}-{self.loss}-h{self.hidden}"


@dataclass
class TrialResult:
    """What a trial produced: the translator (None when it failed), its history and its test metrics."""

    spec: TrialSpec
    status: str  # ok | skipped | diverged (| failed, set by the pipeline when a trial raised)
    reason: str = ""
    translator: Translator | None = None
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    train_rows: int = 0
    seconds: float = 0.0

    def record(self) -> dict:
        """The JSON-able summary written as metrics.json."""
        return {"trial": self.spec.name, "spec": asdict(self.spec), "status": self.status, "reason": self.reason,
                "train_rows": self.train_rows, "seconds": round(self.seconds, 3),
                "epochs_run": len(self.history), "history": self.history, "metrics": self.metrics}


def group_problem(data: PreparedData, dataset: str) -> str:
    """Why a dataset group cannot be trained ('' when it can)."""
    train = len(data.splits["train"].group_rows(dataset))
    val = len(data.splits["val"].group_rows(dataset))
    if train == 0 or val == 0:
        return f"dataset '{dataset}' has no rows in the input's {'train' if train == 0 else 'val'} split"
    return ""


def _batches(split: SplitArrays, rows: np.ndarray, batch_size: int, device: torch.device):
    """(clip, clap) tensors, one batch at a time; rows sorted per batch so the memory map reads forward."""
    for start in range(0, len(rows), batch_size):
        index = np.sort(rows[start:start + batch_size])
        yield (torch.from_numpy(np.asarray(split.clip[index])).to(device),
               torch.from_numpy(np.asarray(split.clap[index])).to(device))


def _val_loss(model: Translator, loss_fn, split: SplitArrays, rows: np.ndarray, batch_size: int,
              device: torch.device) -> float:
    total, count = 0.0, 0
    with torch.no_grad():
        for clip, clap in _batches(split, rows, batch_size, device):
            total += loss_fn(model(clip), clap).item() * len(clip)
            count += len(clip)
    return total / count


def run_trial(spec: TrialSpec, data: PreparedData, device: str | torch.device = "cpu", on_epoch=None) -> TrialResult:
    """Train (or, for retrieval, build) one translator and score it on the test split."""
    if spec.kind == "retrieval":
        return build_retrieval(spec, data, torch.device(device))
    return train_trial(spec, data, torch.device(device), on_epoch)


def train_trial(spec: TrialSpec, data: PreparedData, device: torch.device, on_epoch=None) -> TrialResult:
    """Train one MLP translator; `on_epoch(record)` sees each epoch's losses (Ray Tune reports through it)."""
    started = time.perf_counter()
    problem = group_problem(data, spec.dataset)
    if problem:
        return TrialResult(spec, "skipped", problem)
    torch.manual_seed(spec.seed)
    rng = np.random.default_rng(spec.seed)
    train, val = data.splits["train"], data.splits["val"]
    train_rows, val_rows = train.group_rows(spec.dataset), val.group_rows(spec.dataset)
    config = TranslatorConfig(type="mlp", in_dim=data.clip_dim, out_dim=data.clap_dim, hidden=spec.hidden,
                              loss=spec.loss, temperature=spec.temperature, mean_shift=False,
                              extra={"dataset": spec.dataset, "input": data.stats["input"],
                                     "train_rows": int(len(train_rows)), "seed": spec.seed})
    model = MLPTranslator(config).to(device)
    loss_fn = get_loss(spec.loss, spec.temperature)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr)

    history: list[dict] = []
    best_loss, best_state, stale = math.inf, None, 0
    for epoch in range(1, spec.epochs + 1):
        model.train()
        total, count = 0.0, 0
        for clip, clap in _batches(train, rng.permutation(train_rows), spec.batch_size, device):
            loss = loss_fn(model(clip), clap)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(clip)
            count += len(clip)
        model.eval()
        val_loss = _val_loss(model, loss_fn, val, val_rows, spec.batch_size, device)
        record = {"epoch": epoch, "train_loss": total / count, "val_loss": val_loss}
        history.append(record)
        if on_epoch:
            on_epoch(record)
        if not (math.isfinite(record["train_loss"]) and math.isfinite(val_loss)):
            return TrialResult(spec, "diverged", f"non-finite loss at epoch {epoch} (try a lower --lr)",
                               history=history, train_rows=len(train_rows),
                               seconds=time.perf_counter() - started)
        if val_loss < best_loss:
            best_loss, best_state, stale = val_loss, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= spec.patience:  # early stopping on validation loss
                break
    model.load_state_dict(best_state)
    # The shift maps image vectors towards text ones: it helps translators trained on text pairs only.
    _set_modality_means(model, data, spec.mean_shift and spec.dataset == "audiocaps")
    metrics = evaluate(model, data.splits["test"], device)
    metrics["best_val_loss"] = best_loss
    return TrialResult(spec, "ok", translator=model.cpu().eval(), history=history, metrics=metrics,
                       train_rows=len(train_rows), seconds=time.perf_counter() - started)


def _set_modality_means(translator: Translator, data: PreparedData, mean_shift: bool) -> None:
    # The means come from the whole input's training rows: a text-only group has no images of its own.
    translator.image_mean.copy_(torch.as_tensor(data.image_mean))
    translator.text_mean.copy_(torch.as_tensor(data.text_mean))
    translator.config.mean_shift = mean_shift


def build_retrieval(spec: TrialSpec, data: PreparedData, device: torch.device) -> TrialResult:
    """The training-free retrieval translator over the AudioCaps train+val rows, scored like a trained one."""
    started = time.perf_counter()
    problem = group_problem(data, "audiocaps")
    if problem:
        return TrialResult(spec, "skipped", f"retrieval needs AudioCaps rows: {problem}")
    clip, clap, captions = data.retrieval_bank()
    translator = RetrievalTranslator.from_pairs(
        clip, clap, captions, top_k=spec.top_k, temperature=spec.temperature,
        extra={"dataset": "audiocaps", "input": data.stats["input"]})
    _set_modality_means(translator, data, spec.mean_shift)
    metrics = evaluate(translator.to(device), data.splits["test"], device)
    return TrialResult(spec, "ok", translator=translator.cpu().eval(), metrics=metrics, train_rows=len(captions),
                       seconds=time.perf_counter() - started)


def retrieval_scores(predictions: torch.Tensor, targets: torch.Tensor) -> dict:
    """Mean cosine, MSE, R@k and median rank of each row's own target among all targets (rank 1 = best)."""
    predictions, targets = F.normalize(predictions, dim=-1), F.normalize(targets, dim=-1)
    ranks = []
    for start in range(0, len(predictions), EVAL_BATCH_ROWS):  # chunks keep the n x n similarity small
        pred = predictions[start:start + EVAL_BATCH_ROWS]
        similarity = pred @ targets.T
        rows = torch.arange(len(pred), device=pred.device)
        own = similarity[rows, rows + start]
        ranks.append((similarity > own.unsqueeze(1)).sum(dim=1) + 1)
    rank = torch.cat(ranks).double().cpu()
    scores = {"rows": len(predictions),
              "cosine": (predictions * targets).sum(dim=-1).mean().item(),
              "mse": F.mse_loss(predictions, targets).item()}
    for k in RECALL_AT:
        scores[f"r{k}"] = (rank <= k).double().mean().item()
    scores["median_rank"] = rank.median().item()
    return scores


@torch.no_grad()
def _predict(translator: Translator, clip: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.cat([translator(torch.from_numpy(np.array(clip[i:i + EVAL_BATCH_ROWS])).to(device))
                      for i in range(0, len(clip), EVAL_BATCH_ROWS)])


def evaluate(translator: Translator, test: SplitArrays, device: torch.device = torch.device("cpu")) -> dict:
    """Test metrics on all rows and on image rows alone, the latter with and without the mean shift.

    The test split is the whole input's, whatever the trial trained on, so every trial's numbers compare.
    "image" metrics use the translator as configured; "image_shift_delta" is (with shift) - (without) on
    image rows: the modality-gap correction's effect.
    """
    translator = translator.eval()
    if len(test) == 0:
        return {}
    targets = torch.from_numpy(np.array(test.clap)).to(device)
    metrics = {"all": retrieval_scores(_predict(translator, test.clip, device), targets)}
    images = np.flatnonzero(test.is_image)
    if len(images):
        image_clip, image_targets = test.clip[images], targets[images]
        configured = translator.config.mean_shift
        by_shift = {}
        for shift in (False, True):
            translator.config.mean_shift = shift
            by_shift[shift] = retrieval_scores(_predict(translator, image_clip, device), image_targets)
        translator.config.mean_shift = configured
        metrics["image"] = by_shift[configured]
        metrics["image_shift_delta"] = {k: by_shift[True][k] - by_shift[False][k]
                                        for k in ("cosine", "r1", "r10", "median_rank")}
    return metrics
