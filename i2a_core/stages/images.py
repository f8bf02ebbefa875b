"""Image stages shared by the jobs: reads overlapped across a whole chunk, and decoding with CLIP's one preprocessing.

Every stage takes and returns a numpy batch (column -> array) and fills `error`/`error_kind` for the rows it
cannot handle; rows that already failed pass through untouched.
"""

from __future__ import annotations

import collections
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import numpy as np

from i2a_core.errors import classify
from i2a_core.io import gallery, images, listing
from i2a_core.models.clip import image_transform
from i2a_core.specs import ClipSpec, ImageLimits

Batch = dict

READ_THREADS = 64  # reads are I/O bound: this many downloads stay in flight per reader


def objects(values: list) -> np.ndarray:
    """A 1-d object array (numpy would make a 2-d array of equal-length sequences)."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def strings(batch: Batch, name: str) -> list[str]:
    return [str(v) for v in batch[name].tolist()]


def pending(batch: Batch) -> list[int]:
    """The rows no stage has failed yet: the ones a stage still works on."""
    return [i for i, error in enumerate(strings(batch, "error")) if not error]


def rows_to_batch(rows: list[dict]) -> Batch:
    """Row dicts (all with the same keys) as a numpy batch: numbers as numeric arrays, the rest as objects."""
    batch = {}
    for name in rows[0] if rows else ():
        values = [row[name] for row in rows]
        numeric = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values)
        batch[name] = np.array(values) if numeric else objects(values)
    return batch


def _read_one(source: str, name: str, limits: ImageLimits) -> tuple[bytes, str, str, float]:
    started = time.perf_counter()
    try:
        return images.read_image_bytes(source, limits), "", "", time.perf_counter() - started
    except Exception as error:  # missing, unreadable, a 404, a dropped connection: this input's problem only
        kind, reason = classify(error, name)
        return b"", reason, kind, time.perf_counter() - started


def read_images(chunks: Iterator[Batch], limits: ImageLimits, batch_size: int) -> Iterator[Batch]:
    """I/O stage: the raw bytes of every input of the chunks, in batches of `batch_size`, in input order.

    READ_THREADS reads stay in flight across the whole stream, so a host that never answers holds one thread
    until its deadline while the others go on. Batches keep the input order, so that a rerun makes the same
    batches and (with the same seeds) bit-identical audio.
    """
    pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="i2a-read")
    rows = (row for chunk in chunks for row in _row_dicts(chunk))
    in_order: collections.deque = collections.deque()  # (row, future or None), in input order
    exhausted = False
    try:
        while in_order or not exhausted:
            while len(in_order) < max(READ_THREADS, batch_size) and not exhausted:  # a batch can be larger
                row = next(rows, None)
                if row is None:
                    exhausted = True
                elif row["error"]:  # failed already (a bad list entry): nothing to read
                    in_order.append((row, None))
                else:
                    in_order.append((row, pool.submit(_read_one, listing.os_string(row["input"]),
                                                      row.get("display") or row["input"], limits)))
            ready = min(batch_size, len(in_order))
            if ready < batch_size and not exhausted:
                continue
            batch = []
            for _ in range(ready):
                row, future = in_order.popleft()
                if future is None:
                    batch.append({**row, "data": b"", "read_s": 0.0})
                    continue
                data, error, kind, seconds = future.result()
                batch.append({**row, "data": data, "error": error or row["error"],
                              "error_kind": kind or row["error_kind"], "read_s": seconds})
            if batch:
                yield rows_to_batch(batch)
    finally:  # a job stopped early does not wait for the reads still in flight
        pool.shutdown(wait=False, cancel_futures=True)


def _row_dicts(batch: Batch) -> Iterator[dict]:
    names = list(batch)
    for values in zip(*(batch[n].tolist() for n in names)):
        yield dict(zip(names, values))


class DecodeImages:
    """CPU stage: bytes -> checked RGB image -> CLIP's own preprocessing (float32 pixels), plus a thumbnail.

    The preprocessing is models.clip.image_transform, the one every path uses (embed, sonify, the encoder).
    """

    def __init__(self, clip: ClipSpec, limits: ImageLimits = ImageLimits(), check_extension: bool = True,
                 thumbnails: bool = True):
        from PIL import Image

        self.preprocess = image_transform(clip)
        self.limits, self.check_extension, self.thumbnails = limits, check_extension, thumbnails
        self.blank = np.zeros_like(self.preprocess(Image.new("RGB", (8, 8))).numpy())

    def _blanks(self, rows: int) -> np.ndarray:
        """Pixels of a batch in which no image decoded: one blank image seen `rows` times (a read-only view, no
        copy), so that inputs that fail at once cost no pixels."""
        return np.broadcast_to(self.blank, (rows, *self.blank.shape))

    def pixels(self, image) -> np.ndarray:
        """One PIL image as CLIP input: float32 [3, H, W]."""
        return self.preprocess(image).numpy()

    def __call__(self, batch: Batch) -> Batch:
        errors, kinds = strings(batch, "error"), strings(batch, "error_kind")
        names = strings(batch, "display") if "display" in batch else strings(batch, "input")
        sources = strings(batch, "input")
        pixels, thumbnails, seconds, warnings = [], [], [], []
        for i, data in enumerate(batch["data"]):
            started = time.perf_counter()
            pixel, thumbnail, warning = self.blank, b"", ""
            if not errors[i]:
                try:
                    image, warning = images.decode_checked(bytes(data), names[i], self.limits,
                                                           check_extension=self.check_extension
                                                           and not images.is_url(sources[i]))
                    pixel = self.pixels(image)
                    thumbnail = gallery.thumbnail_jpeg(image) if self.thumbnails else b""
                except Exception as error:  # PIL can fail late in odd ways; that is this image's problem only
                    kinds[i], errors[i] = classify(error, names[i])
            pixels.append(pixel)
            thumbnails.append(thumbnail)
            warnings.append(warning)
            seconds.append(time.perf_counter() - started)
        rest = {k: v for k, v in batch.items() if k != "data"}
        decoded = any(pixel is not self.blank for pixel in pixels)
        return {**rest, "pixels": np.stack(pixels) if decoded else self._blanks(len(pixels)),
                "thumbnail": objects(thumbnails), "error": objects(errors), "error_kind": objects(kinds),
                "decode_s": np.array(seconds, np.float64), "warning": objects(warnings)}
