"""One translator trial: train on a dataset group with early stopping, score it on the shared test split, save it.

This is the torch side of the grid. Drivers reach it by dotted path (jobs/train.py: TUNE_TRIAL, IN_PROCESS),
so that `i2a train --help` and the Tune driver never import torch.
"""

from __future__ import annotations

import copy
import json
import math
import time

import numpy as np
import torch

from i2a_core.errors import one_line
from i2a_core.io import storage
from i2a_core.models.devices import pick_device
from i2a_core.models.losses import get_loss
from i2a_core.models.translator import MLPTranslator, RetrievalTranslator, Translator, TranslatorConfig
from i2a_core.training.data import DEFAULT_POOL_SIZE, PreparedData, SplitArrays, data_key, group_problem, open_prepared
from i2a_core.training.plots import loss_plot
from i2a_core.training.scoring import evaluate
from i2a_core.training.spec import TrialResult, TrialSpec

__all__ = ["TrialSpec", "TrialResult", "evaluate", "run_trial", "save_trial", "tune_trial", "run_trials"]


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


def run_trial(spec: TrialSpec, data: PreparedData, device: str | torch.device = "cpu", on_epoch=None,
              pool_size: int = DEFAULT_POOL_SIZE) -> TrialResult:
    """Train (or, for retrieval, build) one translator and score it on the test split (R@k in pools of `pool_size`)."""
    if spec.kind == "retrieval":
        return build_retrieval(spec, data, torch.device(device), pool_size)
    return train_trial(spec, data, torch.device(device), on_epoch, pool_size)


def train_trial(spec: TrialSpec, data: PreparedData, device: torch.device, on_epoch=None,
                pool_size: int = DEFAULT_POOL_SIZE) -> TrialResult:
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
    metrics = evaluate(model, data.splits["test"], device, pool_size)
    metrics["best_val_loss"] = best_loss
    return TrialResult(spec, "ok", translator=model.cpu().eval(), history=history, metrics=metrics,
                       train_rows=len(train_rows), seconds=time.perf_counter() - started)


def _set_modality_means(translator: Translator, data: PreparedData, mean_shift: bool) -> None:
    # The means come from the whole input's training rows: a text-only group has no images of its own.
    translator.image_mean.copy_(torch.as_tensor(data.image_mean))
    translator.text_mean.copy_(torch.as_tensor(data.text_mean))
    translator.config.mean_shift = mean_shift


def build_retrieval(spec: TrialSpec, data: PreparedData, device: torch.device,
                    pool_size: int = DEFAULT_POOL_SIZE) -> TrialResult:
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
    metrics = evaluate(translator.to(device), data.splits["test"], device, pool_size)
    return TrialResult(spec, "ok", translator=translator.cpu().eval(), metrics=metrics, train_rows=len(captions),
                       seconds=time.perf_counter() - started)


def save_trial(output: str, result: TrialResult, data_url: str, pool_size: int) -> dict:
    """Write the translator, its loss curve and, last, metrics.json: the marker that the trial is finished."""
    directory = storage.join(output, "trials", result.spec.name)
    record = {**result.record(), "data": data_key(data_url), "pool_size": pool_size}
    if result.translator is not None:
        result.translator.save(directory)
    if result.history:
        storage.write_bytes_atomic(storage.join(directory, "loss.png"), loss_plot([record]))
    storage.write_text_atomic(storage.join(directory, "metrics.json"), json.dumps(record, indent=2))
    return record


def _device(gpus: float) -> torch.device:
    return pick_device(None) if gpus > 0 else torch.device("cpu")


def tune_trial(trial_config: dict) -> None:
    """The body of the Ray Tune trainable: one grid point, written straight to --output.

    trial_config: spec (TrialSpec fields), data_url, output, cpus, gpus, pool_size. Each epoch is reported
    to Tune (the driver's stall watch sees it), then a final {"done": True, "status": ...}.
    """
    from ray import tune

    torch.set_num_threads(max(1, int(trial_config["cpus"])))
    spec = TrialSpec(**trial_config["spec"])
    data = open_prepared(trial_config["data_url"])
    result = run_trial(spec, data, _device(trial_config["gpus"]), on_epoch=tune.report,
                       pool_size=trial_config["pool_size"])
    record = save_trial(trial_config["output"], result, trial_config["data_url"], trial_config["pool_size"])
    tune.report({"done": True, "status": record["status"]})


def run_trials(specs: list[dict], data_url: str, output: str, gpus: float, pool_size: int,
               on_done=None) -> dict[str, dict]:
    """Trials one after another in this process (`i2a train --no-ray`); `on_done(record)` after each."""
    data = open_prepared(data_url)
    device = _device(gpus)
    records = {}
    for fields in specs:
        spec = TrialSpec(**fields)
        try:
            result = run_trial(spec, data, device, pool_size=pool_size)
        except Exception as error:  # one trial's failure (out of memory, say): recorded, and the grid goes on
            result = TrialResult(spec, "failed", one_line(f"{type(error).__name__}: {error}"))
        records[spec.name] = save_trial(output, result, data_url, pool_size)
        if on_done:
            on_done(records[spec.name])
    return records
