"""Reading audio files for scoring: samples and rate, every channel kept (the protocol chooses what to use)."""

from __future__ import annotations

import io

import numpy as np

from i2a_core.io import storage


def read_audio(path: str) -> tuple[np.ndarray, int]:
    """float32 samples [frames, channels] and the rate; ValueError naming the file when it is missing or not audio."""
    import soundfile

    try:
        data = storage.read_bytes(path)
    except (FileNotFoundError, OSError) as e:
        raise ValueError(f"{path}: cannot read ({type(e).__name__})") from None
    try:
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises its own LibsndfileError and RuntimeErrors
        raise ValueError(f"{path}: not readable audio ({type(e).__name__}, {len(data)} bytes)") from None
    if len(samples) == 0:
        raise ValueError(f"{path}: empty audio")
    return samples, int(rate)


def read_wav(path: str) -> tuple[np.ndarray, int]:
    """Mono float32 samples (the channels' mean) and the rate, for spectrograms; ValueError as read_audio."""
    samples, rate = read_audio(path)
    return samples.mean(axis=1), rate


def channels(samples: np.ndarray, how: str) -> np.ndarray:
    """[frames, channels] -> [frames]: "mean" mixes down (np.mean, as frechet_audio_distance and torchvggish),
    "first" keeps channel 0 (as audioldm_eval)."""
    if how == "first" or samples.shape[1] == 1:
        return np.ascontiguousarray(samples[:, 0])
    if how == "mean":
        return samples.mean(axis=1)
    raise ValueError(f"unknown channel choice '{how}'")
