"""The eval golden tests' inputs, made the same way in i2a's env and in the reference env: WAVs and seeded weights.

numpy and soundfile only (no torch, no i2a), so tools/eval_golden.py can import it from the separate
environment where the reference implementations run. Everything is regenerated at test time; the golden
file records a SHA-256 of every WAV and of every weight set, so a change here fails loudly instead of as a
tolerance miss.
"""

from __future__ import annotations

import hashlib
import os
import zlib

import numpy as np

SEED = 20240518

# Small architectures of the released models (same code paths, fewer channels), shared by both sides.
WAV2CLIP = {"widths": (8, 8, 16, 16), "blocks": (1, 1, 1, 1), "mlp": (16, 16, 32)}  # 32: the tiny CLIP's width
VGGISH = {"layers": (8, "M", 8, "M", 16, 16, "M", 16, 16, "M"), "hidden": (32, 32, 8)}
CNN14 = {"channels": (8, 8, 16, 16, 16, 32), "embedding": 4, "classes": 4, "sample_rate": 16000, "window": 512,
         "hop": 160, "fmax": 8000.0}

# name: (rate, seconds, signal, channels). Silence, DC, sweeps and noise at 16, 44.1 and 48 kHz, 1 to 12 s;
# the stereo clips carry different channels, so first-channel and mixdown protocols differ.
GENERATED = {
    "g01_silence_16k_1s": (16000, 1.0, "silence", 1),
    "g02_dc_44k_5s": (44100, 5.0, "dc", 1),
    "g03_sweep_44k_5s": (44100, 5.0, "sweep", 1),
    "g04_noise_48k_12s": (48000, 12.0, "noise", 2),
    "g05_sweep_48k_10s": (48000, 10.0, "sweep", 2),
    "g06_noise_16k_5s": (16000, 5.0, "noise", 1),
    "g07_silence_48k_10s": (48000, 10.0, "silence", 1),
    "g08_sweep_16k_12s": (16000, 12.0, "sweep", 1),
}
REFERENCE = {
    "r01_noise_44k_1s": (44100, 1.0, "noise", 1),
    "r02_tones_16k_5s": (16000, 5.0, "tones", 1),
    "r03_sweep_48k_1s": (48000, 1.0, "sweep", 1),
    "r04_tones_44k_10s": (44100, 10.0, "tones", 2),
    "r05_noise_16k_12s": (16000, 12.0, "noise", 1),
    "r06_dc_16k_1s": (16000, 1.0, "dc", 1),
    "r07_tones_48k_5s": (48000, 5.0, "tones", 1),
    "r08_noise_48k_10s": (48000, 10.0, "noise", 2),
}


def _signal(name: str, rate: int, seconds: float, kind: str) -> np.ndarray:
    n = int(round(rate * seconds))
    t = np.arange(n, dtype=np.float64) / rate
    rng = np.random.default_rng([SEED, zlib.crc32(name.encode())])
    if kind == "silence":
        return np.zeros(n)
    if kind == "dc":
        return np.full(n, 0.25)
    if kind == "sweep":  # exponential sweep from 50 Hz to 0.45 x the rate: content above 8 kHz at 44.1/48 kHz
        low, high = 50.0, 0.45 * rate
        k = np.log(high / low) / seconds
        return 0.5 * np.sin(2 * np.pi * low * (np.exp(k * t) - 1) / k)
    if kind == "noise":
        return np.clip(0.2 * rng.standard_normal(n), -1, 1)
    if kind == "tones":  # a few partials, two of them above 8 kHz
        freqs = rng.uniform(100, 0.45 * rate, 5)
        return sum(0.15 * np.sin(2 * np.pi * f * t + p) for f, p in zip(freqs, rng.uniform(0, 2 * np.pi, 5), strict=True))
    raise ValueError(kind)


def clip_samples(name: str, spec: tuple) -> np.ndarray:
    """[T, channels] float64 in [-1, 1]; a second channel is the first, attenuated, plus a 440 Hz tone."""
    rate, seconds, kind, channels = spec
    first = _signal(name, rate, seconds, kind)
    if channels == 1:
        return first[:, None]
    tone = 0.3 * np.sin(2 * np.pi * 440.0 * np.arange(len(first)) / rate)
    return np.stack([first, 0.5 * first + tone], axis=1)


def write_wavs(folder: str, clips: dict) -> dict:
    """Write each clip as 16-bit PCM FOLDER/NAME.wav; returns name -> SHA-256 of the file."""
    import soundfile

    os.makedirs(folder, exist_ok=True)
    digests = {}
    for name, spec in clips.items():
        path = os.path.join(folder, f"{name}.wav")
        soundfile.write(path, clip_samples(name, spec), spec[0], subtype="PCM_16")
        with open(path, "rb") as f:
            digests[name] = hashlib.sha256(f.read()).hexdigest()
    return digests


# --- seeded weights: one stream per tensor name, so the two sides need not build tensors in the same order ---

def _value(name: str, shape: tuple, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    u = rng.random(int(np.prod(shape, dtype=np.int64))).reshape(shape)  # [0, 1), float64
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return np.zeros(shape, np.int64)
    if leaf == "running_mean":
        center, spread = (-40.0, 20.0) if name.startswith("bn0.") else (0.0, 0.2)  # CNN14's bn0 sees dB
        return (center + spread * (u - 0.5)).astype(np.float32)
    if leaf == "running_var":
        low, high = (300.0, 600.0) if name.startswith("bn0.") else (0.5, 1.5)
        return (low + (high - low) * u).astype(np.float32)
    if len(shape) == 1 and leaf == "weight":  # BatchNorm scale
        return (0.8 + 0.4 * u).astype(np.float32)
    if len(shape) == 1:  # biases
        return (0.2 * (u - 0.5)).astype(np.float32)
    fan_in = int(np.prod(shape[1:]))
    bound = np.sqrt(6.0 / fan_in)  # He-uniform: activations stay of order one through ReLU layers
    return (bound * (2 * u - 1)).astype(np.float32)


def weights(shapes: dict, seed: int = SEED) -> dict:
    """name -> numpy array for every (name -> shape) given."""
    return {name: _value(name, tuple(shape), seed) for name, shape in shapes.items()}


def checksum(arrays: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()
