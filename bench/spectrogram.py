"""Spectrogram time and size: i2a's numpy + palette-PNG renderer against the matplotlib one it replaced.

    python bench/spectrogram.py              # 2.5 s (the tiny preset's clip) and 10 s (a real clip) at 16 kHz
    python bench/spectrogram.py --repeat 50

Targets (issue 17): at least 10x faster than matplotlib, and the image smaller than the clip's WAV (16-bit mono).
Both renderers get the same waveforms: white noise (what the tiny preset's random models make, and the hardest
image to compress) and a structured clip (harmonics and decaying noise bursts, closer to real sound). Times are
the median of --repeat calls after one warm-up call each; matplotlib's first call in a process (its import,
paid once per worker) is printed apart.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import numpy as np

from i2a_core.io.gallery import spectrogram_png
from i2a_core.stages.clips import wav_bytes

SAMPLE_RATE = 16000


def matplotlib_spectrogram_png(waveform: np.ndarray, sample_rate: int, n_fft: int = 512) -> bytes:
    """The baseline: i2a's renderer before issue 17 (a 440 x 190 px matplotlib figure, axes and colour bar baked
    into the PNG), kept verbatim."""
    from matplotlib.figure import Figure
    from PIL import Image

    waveform = np.asarray(waveform, np.float32).reshape(-1)
    seconds = len(waveform) / sample_rate
    hop = n_fft // 4
    if len(waveform) < n_fft:
        waveform = np.pad(waveform, (0, n_fft - len(waveform)))
    frames = np.lib.stride_tricks.sliding_window_view(waveform, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)).T ** 2
    decibels = 10 * np.log10(np.maximum(power, 1e-10))
    decibels = np.clip(decibels, decibels.max() - 80, None)
    decibels = np.asarray(Image.fromarray(decibels.astype(np.float32)).resize(
        (min(decibels.shape[1], 360), min(decibels.shape[0], 128)), Image.BILINEAR))

    figure = Figure(figsize=(4.4, 1.9), dpi=100, layout="constrained")
    ax = figure.add_subplot()
    image = ax.imshow(decibels, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                      extent=(0, seconds, 0, sample_rate / 2000))
    ax.set_xlabel("time (s)", fontsize=8)
    ax.set_ylabel("frequency (kHz)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.locator_params(axis="x", nbins=6)
    colour = figure.colorbar(image, ax=ax, pad=0.01)
    colour.set_label("power (dB)", fontsize=8)
    colour.ax.tick_params(labelsize=7)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def clip(kind: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    if kind == "noise":
        return (0.3 * rng.standard_normal(len(t))).astype(np.float32)
    tones = sum(np.sin(2 * np.pi * f * t * (1 + 0.02 * np.sin(3 * t))) / (k + 1)
                for k, f in enumerate((220, 440, 660, 1320, 2500)))
    envelope = np.exp(-6 * (t % 0.5))
    return (0.15 * tones * envelope + 0.05 * rng.standard_normal(len(t)) * envelope).astype(np.float32)


def median_ms(render, waveform: np.ndarray, repeat: int) -> tuple[float, bytes]:
    data = render(waveform, SAMPLE_RATE)  # warm-up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        render(waveform, SAMPLE_RATE)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times), data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=20, help="timed calls per renderer and clip (default: 20)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    started = time.perf_counter()
    matplotlib_spectrogram_png(np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    print(f"matplotlib's first call in a process (import, font cache): {time.perf_counter() - started:.2f} s")
    print(f"{'clip':<18} {'matplotlib ms':>13} {'new ms':>7} {'speed-up':>8} {'WAV B':>7} {'mpl PNG B':>9} "
          f"{'new PNG B':>9} {'new/WAV':>7} {'mpl/WAV':>7}")
    speedups, ratios = [], []
    for seconds in (2.5, 10.0):
        for kind in ("noise", "structured"):
            waveform = clip(kind, seconds, rng)
            old_ms, old = median_ms(matplotlib_spectrogram_png, waveform, args.repeat)
            new_ms, new = median_ms(spectrogram_png, waveform, args.repeat)
            wav = len(wav_bytes(waveform, SAMPLE_RATE))
            speedups.append(old_ms / new_ms)
            ratios.append(len(new) / wav)
            print(f"{f'{seconds:g} s {kind}':<18} {old_ms:13.1f} {new_ms:7.2f} {old_ms / new_ms:7.1f}x {wav:7,} "
                  f"{len(old):9,} {len(new):9,} {len(new) / wav:7.2f} {len(old) / wav:7.2f}")
    print(f"targets: speed-up >= 10x: {min(speedups):.1f}x at worst ({'met' if min(speedups) >= 10 else 'MISSED'}); "
          f"PNG < WAV: {max(ratios):.2f} of the WAV at worst ({'met' if max(ratios) < 1 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
