"""A translator's test metrics, streamed: cosine and MSE over every test row, R@k and median rank within pools.

Retrieval is scored the way the 1k/5k image-text protocols do it: each test row's own CLAP vector is ranked
among the CLAP vectors of a fixed-size pool of test rows (DEFAULT_POOL_SIZE, `i2a train --pool-size`), so
R@1 means the same for a thousand test rows and for four million. The prepared test split is stored in pool
order (training/data.py), so a pool is a run of consecutive rows and evaluation is one forward pass over
the memory map, a chunk at a time: time grows with the rows, memory stays at one chunk and one pool.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from i2a_core.models.translator import Translator
from i2a_core.training.data import DEFAULT_POOL_SIZE, SplitArrays

RECALL_AT = (1, 5, 10)
EVAL_CHUNK_ROWS = 8192  # test rows read from the memory map at a time
PREDICT_BATCH_ROWS = 1024  # rows per forward pass (the retrieval translator compares each with its memory)


class PooledScores:
    """Takes (prediction, target) rows in pool order, chunk by chunk, and keeps only sums and one pool.

    Cosine and MSE (of unit vectors) cover every row. Each run of `pool_size` consecutive rows is a pool: a
    row's rank is 1 + the number of the pool's targets more similar to its prediction than its own target
    (ties count in its favour). Rows after the last full pool are not ranked, unless no pool filled at all:
    then the rows there are (fewer than `pool_size`) form the one pool. Ranks are kept as a histogram, so the
    median is exact in bounded memory.
    """

    def __init__(self, pool_size: int = DEFAULT_POOL_SIZE):
        if pool_size < 1:
            raise ValueError(f"pool size {pool_size}: must be at least 1")
        self.pool_size = pool_size
        self.rows, self.dim, self.pools = 0, 0, 0
        self.cosine_sum, self.squared_error_sum = 0.0, 0.0
        self.rank_counts = np.zeros(pool_size + 1, np.int64)  # rank_counts[r]: rows ranked r (1..pool_size)
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._pending_rows = 0

    def add(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        if len(predictions) == 0:
            return
        predictions, targets = F.normalize(predictions.float(), dim=-1), F.normalize(targets.float(), dim=-1)
        self.rows += len(predictions)
        self.dim = predictions.shape[1]
        self.cosine_sum += (predictions * targets).sum(dim=-1).double().sum().item()
        self.squared_error_sum += (predictions - targets).double().pow(2).sum().item()
        self._pending.append((predictions, targets))
        self._pending_rows += len(predictions)
        if self._pending_rows < self.pool_size:
            return
        predictions = torch.cat([p for p, _ in self._pending])
        targets = torch.cat([t for _, t in self._pending])
        full = len(predictions) - len(predictions) % self.pool_size
        for start in range(0, full, self.pool_size):
            self._rank_pool(predictions[start:start + self.pool_size], targets[start:start + self.pool_size])
        self._pending = [(predictions[full:], targets[full:])] if full < len(predictions) else []
        self._pending_rows = len(predictions) - full

    def _rank_pool(self, predictions: torch.Tensor, targets: torch.Tensor) -> None:
        similarity = predictions @ targets.T
        own = similarity.diagonal().unsqueeze(1)
        ranks = (similarity > own).sum(dim=1) + 1
        self.rank_counts += np.bincount(ranks.cpu().numpy(), minlength=self.pool_size + 1)
        self.pools += 1

    def result(self) -> dict:
        """rows, cosine, mse (all rows); r1/r5/r10 and median_rank (ranked rows); pool_size, pools, ranked_rows."""
        pool_size = self.pool_size
        if self.pools == 0 and self._pending_rows:  # fewer rows than one pool: they are the pool
            pool_size = self._pending_rows
            predictions = torch.cat([p for p, _ in self._pending])
            targets = torch.cat([t for _, t in self._pending])
            self._rank_pool(predictions, targets)
            self._pending, self._pending_rows = [], 0
        ranked = int(self.rank_counts.sum())
        scores = {"rows": self.rows,
                  "cosine": self.cosine_sum / self.rows if self.rows else None,
                  "mse": self.squared_error_sum / (self.rows * self.dim) if self.rows else None,
                  "pool_size": pool_size, "pools": self.pools, "ranked_rows": ranked}
        for k in RECALL_AT:
            scores[f"r{k}"] = float(self.rank_counts[1:k + 1].sum() / ranked) if ranked else None
        scores["median_rank"] = _median(self.rank_counts) if ranked else None
        return scores


def _median(counts: np.ndarray) -> float:
    """The median of values 0..len(counts)-1 given how often each occurs (the mean of the two middle ones)."""
    total = int(counts.sum())
    cumulative = np.cumsum(counts)
    lower = int(np.searchsorted(cumulative, (total - 1) // 2 + 1))
    upper = int(np.searchsorted(cumulative, total // 2 + 1))
    return (lower + upper) / 2


def pooled_scores(predictions: torch.Tensor, targets: torch.Tensor, pool_size: int = DEFAULT_POOL_SIZE) -> dict:
    """PooledScores over rows already in pool order, in one call."""
    scores = PooledScores(pool_size)
    scores.add(predictions, targets)
    return scores.result()


@torch.no_grad()
def _predict(translator: Translator, clip: torch.Tensor) -> torch.Tensor:
    return torch.cat([translator(clip[i:i + PREDICT_BATCH_ROWS]) for i in range(0, len(clip), PREDICT_BATCH_ROWS)])


@torch.no_grad()
def evaluate(translator: Translator, test: SplitArrays, device: torch.device | str = "cpu",
             pool_size: int = DEFAULT_POOL_SIZE, chunk_rows: int = EVAL_CHUNK_ROWS) -> dict:
    """Test metrics on all rows and on image rows alone, the latter with and without the mean shift.

    The test split is the whole input's, whatever the trial trained on, so every trial's numbers compare.
    Image rows are pooled among image rows (the next `pool_size` of them in pool order). "image" metrics
    use the translator as configured; "image_shift_delta" is (with shift) - (without) on image rows: the
    modality-gap correction's effect. Reads `chunk_rows` rows of the memory map at a time; nothing more.
    """
    translator, device = translator.eval(), torch.device(device)
    if len(test) == 0:
        return {}
    configured = translator.config.mean_shift
    overall = PooledScores(pool_size)
    images = {False: PooledScores(pool_size), True: PooledScores(pool_size)}
    try:
        for start in range(0, len(test), chunk_rows):
            stop = min(start + chunk_rows, len(test))
            clip = torch.from_numpy(np.array(test.clip[start:stop])).to(device)
            clap = torch.from_numpy(np.array(test.clap[start:stop])).to(device)
            predictions = _predict(translator, clip)
            overall.add(predictions, clap)
            image_rows = np.flatnonzero(test.is_image[start:stop])
            if len(image_rows):
                index = torch.from_numpy(image_rows).to(device)
                images[configured].add(predictions[index], clap[index])
                translator.config.mean_shift = not configured
                images[not configured].add(_predict(translator, clip[index]), clap[index])
                translator.config.mean_shift = configured
    finally:
        translator.config.mean_shift = configured
    metrics = {"all": overall.result()}
    if images[False].rows:
        by_shift = {shift: scores.result() for shift, scores in images.items()}
        metrics["image"] = by_shift[configured]
        metrics["image_shift_delta"] = {k: by_shift[True][k] - by_shift[False][k]
                                        for k in ("cosine", "r1", "r10", "median_rank")}
    return metrics
