"""Resamplers that match what the reference pipelines call, sample for sample.

Two are needed: resampy's `kaiser_best` (torchvggish and frechet_audio_distance resample with it; >= 80 dB
down above the new Nyquist) and torchaudio's default windowed sinc (audioldm_eval calls it; it aliases).
resampy's algorithm is reproduced here rather than imported: resampy needs numba, and its filter is fully
described by four numbers (50 zero crossings, 2^13 table points per crossing, Kaiser beta, roll-off),
from which numpy rebuilds its table to 1e-15. Each output sample is resampy's sum over both wings of the
table, linearly interpolated at the output's fractional position; grouped by phase, that is a strided
convolution, computed here in float64.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio

from i2a_core.evaluation.protocols import Resampler

_FRAMES_PER_PRODUCT = 8192
_FFT_PHASES = 4


@functools.lru_cache(maxsize=4)
def _resampy_table(zero_crossings: int, precision: int, beta: float, rolloff: float) -> np.ndarray:
    """resampy.filters.sinc_window(zero_crossings, precision, Kaiser(beta), rolloff): the right wing."""
    points = 2 ** precision
    n = points * zero_crossings
    sinc = rolloff * np.sinc(rolloff * np.linspace(0, zero_crossings, num=n + 1, endpoint=True))
    return np.kaiser(2 * n + 1, beta)[n:] * sinc


@functools.lru_cache(maxsize=16)
def _resampy_kernel(rate: int, target: int, resampler: Resampler) -> tuple[torch.Tensor, int, int, int, int]:
    """Per output phase, the weights resampy gives each input sample: [phases, taps], the input stride,
    and the padding before and after the signal (resampy's missing neighbours count as zeros)."""
    table = _resampy_table(resampler.zero_crossings, resampler.precision, resampler.beta, resampler.rolloff)
    points = 2 ** resampler.precision
    ratio = target / rate
    if ratio < 1:
        table = ratio * table
    delta = np.diff(table, append=table[-1])
    scale = min(1.0, ratio)
    step = int(scale * points)
    common = math.gcd(rate, target)
    stride, phases = rate // common, target // common
    rows, columns, values = [], [], []  # (phase, input offset from the frame start, weight)
    for phase in range(phases):
        base = phase * stride // phases  # the input sample at or before this output
        fraction = scale * ((phase * stride % phases) / phases)
        for side, position in ((-1, fraction), (1, scale - fraction)):
            index = position * points
            offset = int(index)
            eta = index - offset
            at = offset + np.arange((len(table) - offset) // step) * step
            values.append(table[at] + eta * delta[at])
            columns.append(base - np.arange(len(at)) if side < 0 else base + 1 + np.arange(len(at)))
            rows.append(np.full(len(at), phase))
    rows, columns, values = np.concatenate(rows), np.concatenate(columns), np.concatenate(values)
    low, high = int(columns.min()), int(columns.max())
    kernel = np.zeros((phases, high - low + 1))
    kernel[rows, columns - low] = values
    return torch.from_numpy(kernel), stride, phases, -low, high


def _fast_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: an FFT length without large prime factors."""
    best, power5 = 1 << max(0, (n - 1).bit_length()), 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            candidate = power35 * (1 << max(0, (-(-n // power35) - 1).bit_length()))
            best = min(best, candidate)
            power35 *= 3
        power5 *= 5
    return best


def _resampy(samples: torch.Tensor, rate: int, target: int, resampler: Resampler) -> torch.Tensor:
    kernel, stride, phases, before, high = _resampy_kernel(rate, target, resampler)
    length = int(samples.numel() * float(target) / float(rate))  # resampy truncates
    frames = -(-length // phases)
    after = max(0, (frames - 1) * stride + high + 1 - samples.numel())
    padded = F.pad(samples.to(torch.float64), (before, after))
    taps = kernel.shape[1]
    if phases <= _FFT_PHASES:  # few phases, long kernels (48 -> 16 kHz, 16 -> 48 kHz): FFT correlation per phase
        size = _fast_length(padded.numel() + taps - 1)
        spectrum = torch.fft.rfft(padded, size)
        end = taps - 1 + (frames - 1) * stride + 1
        out = torch.stack([torch.fft.irfft(spectrum * torch.fft.rfft(row.flip(0), size), size)[taps - 1:end:stride]
                           for row in kernel], dim=1)
    else:  # many phases (44.1 -> 16 kHz): a strided convolution as bounded matrix products
        out = torch.cat([padded[start * stride:(min(start + _FRAMES_PER_PRODUCT, frames) - 1) * stride + taps]
                         .unfold(0, taps, stride) @ kernel.T for start in range(0, frames, _FRAMES_PER_PRODUCT)])
    return out.reshape(-1)[:length].to(torch.float32)  # [frames, phases] -> time order


def resample(samples: torch.Tensor, rate: int, target: int, resampler: Resampler) -> torch.Tensor:
    """float32 samples [T] at `target` Hz, as the protocol's reference resamples them."""
    if rate == target:
        return samples
    if resampler.implementation == "resampy":
        return _resampy(samples, rate, target, resampler)
    options = {"lowpass_filter_width": resampler.zero_crossings, "rolloff": resampler.rolloff,
               "resampling_method": f"sinc_interp_{resampler.window}"}
    if resampler.beta is not None:
        options["beta"] = resampler.beta
    return torchaudio.functional.resample(samples.to(torch.float32), rate, target, **options)
