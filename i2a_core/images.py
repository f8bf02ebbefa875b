"""Safe image input: read bytes from paths, URLs or buckets, then decode to RGB with every check a user needs."""

from __future__ import annotations

import io
import os
import time
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from i2a_core import storage

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
# What PIL calls each format, per extension; used to catch files whose extension lies.
_FORMAT_OF_EXTENSION = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF", ".bmp": "BMP",
    ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF",
}


OBJECT_STORE_SCHEMES = ("s3://", "gs://", "gcs://", "file://", "memory://")


class ImageError(ValueError):
    """An input that cannot become an image; str() is one line naming the input and the reason."""

    def __init__(self, name: str, reason: str, kind: str = "bad_image"):
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason
        self.kind = kind  # a short tag, used to count failures by reason


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = 64_000_000  # decompression-bomb guard, in pixels (width * height)
    max_bytes: int = 32 * 1024 * 1024  # per download
    timeout_s: float = 10.0  # per URL, for the whole download


def is_url(source: str) -> bool:
    return str(source).startswith(("http://", "https://"))


def read_image_bytes(source: str, limits: ImageLimits = ImageLimits()) -> bytes:
    """Bytes of a local path, an http(s) URL or any fsspec URL (s3://...)."""
    source = str(source)
    if is_url(source):
        return _download(source, limits)
    if "://" in source and not source.startswith(OBJECT_STORE_SCHEMES):
        raise ImageError(source, "only http://, https://, s3:// and local paths are supported", "bad_url")
    try:
        return storage.read_bytes(source)
    except FileNotFoundError:
        raise ImageError(source, "no such file", "missing") from None
    except IsADirectoryError:
        raise ImageError(source, "is a directory", "missing") from None
    except PermissionError:
        raise ImageError(source, "permission denied", "unreadable") from None
    except OSError as e:
        raise ImageError(source, f"cannot read ({e})", "unreadable") from None


def _download(url: str, limits: ImageLimits) -> bytes:
    deadline = time.monotonic() + limits.timeout_s
    request = urllib.request.Request(url, headers={"User-Agent": "i2a/0.1"})
    try:
        with urllib.request.urlopen(request, timeout=limits.timeout_s) as response:
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > limits.max_bytes:
                raise ImageError(url, f"{int(declared)} bytes, over the {limits.max_bytes}-byte download cap",
                                 "too_large")
            chunks, total = [], 0
            while chunk := response.read1(64 * 1024):  # read1: return what has arrived, do not wait for more
                total += len(chunk)
                if total > limits.max_bytes:
                    raise ImageError(url, f"over the {limits.max_bytes}-byte download cap", "too_large")
                # A server that trickles bytes never trips the socket timeout; bound the whole read.
                if time.monotonic() > deadline:
                    raise ImageError(url, f"timed out after {limits.timeout_s:g} s", "timeout")
                chunks.append(chunk)
            return b"".join(chunks)
    except urllib.error.HTTPError as e:
        raise ImageError(url, f"HTTP {e.code} {e.reason}", f"http_{e.code}") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, TimeoutError):
            raise ImageError(url, f"timed out after {limits.timeout_s:g} s", "timeout") from None
        raise ImageError(url, f"cannot connect ({e.reason})", "unreachable") from None
    except TimeoutError:
        raise ImageError(url, f"timed out after {limits.timeout_s:g} s", "timeout") from None
    except OSError as e:  # connection resets and other socket errors
        raise ImageError(url, f"download failed ({e})", "unreachable") from None


def decode_image(data: bytes, name: str, limits: ImageLimits = ImageLimits(),
                 check_extension: bool = True) -> Image.Image:
    """Decode bytes to an upright 8-bit RGB image, or raise ImageError saying why not."""
    if not data:
        raise ImageError(name, "empty file", "empty")
    with warnings.catch_warnings():
        # We enforce our own pixel limit below; PIL's warning would only add noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as e:
            raise ImageError(name, f"too many pixels ({e})", "too_large") from None
        except UnidentifiedImageError:
            raise ImageError(name, f"not an image (starts with {data[:16]!r})", "not_image") from None
        except Exception as e:  # a header cut short or mangled
            raise ImageError(name, f"truncated or corrupt image ({e})", "corrupt") from None
        width, height = image.size
        if width * height > limits.max_pixels:
            raise ImageError(name, f"{width}x{height} pixels, over the {limits.max_pixels:,}-pixel limit",
                             "too_large")
        if check_extension:
            _check_extension(image, name)
        try:
            image.load()
        except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for broken files
            raise ImageError(name, f"truncated or corrupt {image.format} ({e})", "corrupt") from None
    return to_rgb(image)


def _check_extension(image: Image.Image, name: str) -> None:
    extension = os.path.splitext(name.split("?")[0])[1].lower()
    claimed = _FORMAT_OF_EXTENSION.get(extension)
    if claimed and image.format and image.format != claimed:
        raise ImageError(name, f"extension says {claimed} but the content is {image.format}", "wrong_extension")


def to_rgb(image: Image.Image) -> Image.Image:
    """Upright RGB from any mode: EXIF rotation, 16-bit, CMYK, palette and alpha (over white)."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # PIL's own conversion clips 16-bit values at 255; rescale to the full 8-bit range instead.
        pixels = np.asarray(image, dtype=np.float32)
        top = 65535.0 if image.mode.startswith("I;16") or pixels.max() > 255 else 255.0
        image = Image.fromarray(np.clip(pixels / top * 255.0, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def load_image(source: str, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Read and decode one image from a path or URL."""
    return decode_image(read_image_bytes(source, limits), str(source), limits, check_extension=not is_url(source))
