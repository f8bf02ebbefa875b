"""The maths of the scores: cosine scores, Gaussian statistics, Fréchet distance, bootstrap intervals."""

from __future__ import annotations

import numpy as np


def cosine_scores(a: np.ndarray, b: np.ndarray, scale: float = 100.0) -> np.ndarray:
    """scale x cosine between matching rows of `a` and `b`; 100, the scale CS and CLAP score are published on."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return scale * np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)


def gaussian_stats(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of a set of embeddings, one per row."""
    embeddings = np.asarray(embeddings, np.float64)
    if embeddings.ndim != 2 or len(embeddings) < 2:
        raise ValueError(f"a Fréchet distance needs at least 2 embeddings, got {len(embeddings)}")
    return embeddings.mean(axis=0), np.cov(embeddings, rowvar=False)


class GaussianAccumulator:
    """Running mean and covariance of embeddings added in batches: a million clips never sit in memory."""

    def __init__(self):
        self.count, self.total, self.outer = 0, None, None

    def add(self, embeddings: np.ndarray) -> None:
        embeddings = np.asarray(embeddings, np.float64)
        embeddings = embeddings.reshape(-1, embeddings.shape[-1])
        if self.total is None:
            self.total = np.zeros(embeddings.shape[1])
            self.outer = np.zeros((embeddings.shape[1], embeddings.shape[1]))
        self.count += len(embeddings)
        self.total += embeddings.sum(axis=0)
        self.outer += embeddings.T @ embeddings

    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and unbiased covariance, as gaussian_stats gives for all the embeddings at once."""
        if self.count < 2:
            raise ValueError(f"a Fréchet distance needs at least 2 embeddings, got {self.count}")
        mean = self.total / self.count
        return mean, (self.outer - self.count * np.outer(mean, mean)) / (self.count - 1)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^1/2) between two Gaussians.

    tr (S1 S2)^1/2 equals tr (S1^1/2 S2 S1^1/2)^1/2, whose argument is symmetric PSD: two symmetric
    eigendecompositions give it exactly, where a general sqrtm of S1 S2 turns complex or inaccurate for
    the rank-deficient covariances that small sets (fewer clips than dimensions) have.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    root1 = _psd_sqrt(sigma1)
    middle = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
    trace_sqrt = float(np.sum(np.sqrt(np.clip(middle, 0, None))))
    distance = float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)
    return max(distance, 0.0)  # rounding can leave -1e-12 for identical sets


def frechet_between(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))


BOOTSTRAP_CHUNK = 50


def bootstrap_mean(values, resamples: int = 1000, seed: int = 0) -> dict:
    """Mean and percentile-bootstrap 95% interval of the mean; None for an empty set."""
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], np.float64)
    if len(values) == 0:
        return {"mean": None, "ci95": None, "n": 0}
    rng = np.random.default_rng(seed)
    # Resamples drawn BOOTSTRAP_CHUNK at a time (the same stream, the same means): memory stays ~50 x N, not 1000 x N
    means = np.concatenate([values[rng.integers(0, len(values), (min(BOOTSTRAP_CHUNK, resamples - done), len(values)))]
                            .mean(axis=1) for done in range(0, resamples, BOOTSTRAP_CHUNK)])
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(values.mean()), "ci95": [float(low), float(high)], "n": int(len(values))}
