"""Synthetic embedding Parquet (the embed job's contract) with a known nonlinear CLIP -> CLAP map, for tests and benchmarks."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from i2a_core.jobs.embed import PAIR_SCHEMA

SCHEMA = PAIR_SCHEMA  # the embed job's own schema: what synthetic pairs stand in for


def synthetic_pairs(rows: int, sources: dict[str, float] | None = None, clip_dim: int = 32, clap_dim: int = 16,
                    seed: int = 0, gap: float = 0.6, noise: float = 0.02) -> pa.Table:
    """Rows of the embedding contract: a hidden unit "meaning" u per row; CLIP = scale * (u + noise), CLAP =
    normalize(W2 tanh(W1 u)). Image rows (every source but audiocaps) carry a constant offset of size `gap`
    in CLIP space, like CLIP's modality gap, so a translator trained on text pays for it on images.
    """
    sources = sources or {"audiocaps": 0.5, "wit": 0.3, "cc": 0.2}
    rng = np.random.default_rng(seed)
    world = np.random.default_rng(1234)  # the map itself is the same for every seed
    w1 = world.normal(size=(clip_dim, 64)) * 2.0 / np.sqrt(clip_dim)
    w2 = world.normal(size=(64, clap_dim)) / np.sqrt(64)
    offset = world.normal(size=clip_dim)
    offset *= gap / np.linalg.norm(offset)

    names = list(sources)
    source = rng.choice(names, size=rows, p=np.asarray(list(sources.values())) / sum(sources.values()))
    meaning = rng.normal(size=(rows, clip_dim))
    meaning /= np.linalg.norm(meaning, axis=1, keepdims=True)
    is_image = source != "audiocaps"
    clip = meaning + noise * rng.normal(size=meaning.shape) + np.where(is_image[:, None], offset, 0.0)
    clip *= rng.uniform(5.0, 10.0, size=(rows, 1))  # raw CLIP vectors are not unit length
    clap = np.tanh(meaning @ w1) @ w2
    clap /= np.linalg.norm(clap, axis=1, keepdims=True)
    return pa.table({
        "id": [f"{s}-{seed}-{i}" for i, s in enumerate(source)],
        "source": source.tolist(),
        "modality": np.where(is_image, "image", "text").tolist(),
        "caption": [f"sound number {i} from {s}" for i, s in enumerate(source)],
        "url": [f"http://example.invalid/{i}.jpg" if img else None for i, img in enumerate(is_image)],
        "clip": pa.array(list(clip.astype(np.float32)), pa.list_(pa.float32())),
        "clap": pa.array(list(clap.astype(np.float32)), pa.list_(pa.float32())),
    }, schema=SCHEMA)


def write_synthetic(path: str, rows: int, files: int = 1, **kwargs) -> str:
    """Write `rows` synthetic pairs as `files` Parquet files (zstd) in the folder `path`; returns `path`."""
    import os

    os.makedirs(path, exist_ok=True)
    table = synthetic_pairs(rows, **kwargs)
    bounds = np.linspace(0, rows, files + 1).astype(int)
    for n, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
        pq.write_table(table.slice(start, end - start), os.path.join(path, f"part-{n:05d}.parquet"),
                       compression="zstd")
    return path
