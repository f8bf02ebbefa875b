"""Small builders shared by tests: generated images of every awkward kind."""

from __future__ import annotations

import io
import socket
import struct
import subprocess
import tempfile
import time

import numpy as np
from PIL import Image


def image_bytes(mode: str = "RGB", size=(48, 32), fmt: str = "PNG", seed: int = 0, color=None, **save_kwargs) -> bytes:
    """An encoded image: seeded noise, or one `color` (an RGB tuple) all over; converted to `mode`."""
    if color is not None:
        base = Image.new("RGB", size, color)
    else:
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


def clean_env(home, cache: str | None = None) -> dict:
    """A user's fresh shell: no RAY_* variables, no ~/.ray (HOME is `home`), offline hub, this venv on PATH."""
    import os
    import sys

    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(HOME=str(home), HF_HUB_OFFLINE="1", NO_ALBUMENTATIONS_UPDATE="1",
               PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "/usr/bin:/bin"))
    if cache or os.environ.get("I2A_CACHE"):
        env["I2A_CACHE"] = cache or os.environ["I2A_CACHE"]
    return env


def i2a_command(*args: str) -> list[str]:
    """The `i2a` console script of this venv, as the README runs it."""
    import os
    import sys

    return [os.path.join(os.path.dirname(sys.executable), "i2a"), *args]


def write_list(path, entries, bom: bool = False, newline: str = "\n") -> str:
    """A .txt or .csv list file of `entries` (lines, already joined for CSV), UTF-8, optionally with a BOM."""
    text = newline.join(entries) + newline
    with open(path, "wb") as f:
        f.write((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return str(path)


def write_named(folder, name: bytes, data: bytes = b"") -> bytes:
    """A file whose name is raw bytes (not necessarily UTF-8) in `folder`; returns its path as bytes."""
    import os

    path = os.path.join(os.fsencode(str(folder)), name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


def screen_gif(width: int = 8000, height: int = 8000) -> bytes:
    """A legal 35-byte GIF whose logical screen is width x height: decoding it costs width*height*3 bytes."""
    data = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    return data + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00" + b"\x3b"


def peak_rss_mb(command: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    """Run a command; its peak resident memory in MB (the child's own high-water mark, from /proc) and result.
    Its output goes through files, so that a chatty command never blocks on a full pipe."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, **kwargs)
        peak = 0
        while process.poll() is None:
            try:
                with open(f"/proc/{process.pid}/status") as f:
                    peak = max(peak, next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")))
            except (OSError, StopIteration):
                pass
            time.sleep(0.05)
        out.seek(0)
        err.seek(0)
        return peak / 1024, subprocess.CompletedProcess(command, process.returncode, out.read(), err.read())
