"""Small builders shared by tests: generated images of every awkward kind."""

from __future__ import annotations

import io
import socket

import numpy as np
from PIL import Image


def image_bytes(mode: str = "RGB", size=(48, 32), fmt: str = "PNG", seed: int = 0, **save_kwargs) -> bytes:
    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), "RGB")
    image = base if mode == "RGB" else base.convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_kwargs)
    return buffer.getvalue()


def write_images(folder, names, size=(48, 32)) -> list:
    paths = []
    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        fmt = "JPEG" if name.endswith((".jpg", ".jpeg")) else "PNG"
        path.write_bytes(image_bytes(size=size, fmt=fmt, seed=i))
        paths.append(path)
    return paths


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
