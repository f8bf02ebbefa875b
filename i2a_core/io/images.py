"""Safe image input: read bytes from paths, URLs or buckets, then decode to RGB with every check a user needs."""

from __future__ import annotations

import io
import os
import stat
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from i2a_core.errors import classify, one_line
from i2a_core.io import fetch_url, storage
from i2a_core.specs import ImageLimits

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".avif", ".heic", ".heif"}
# What PIL calls each format, per extension; a file whose extension lies still decodes, with a warning.
_FORMAT_OF_EXTENSION = {
    ".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF", ".bmp": "BMP",
    ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF", ".avif": "AVIF", ".heic": "HEIF", ".heif": "HEIF",
}
# ISO base media (HEIF) brands in a file's `ftyp` box: AVIF is AV1 inside HEIF; HEIC, what phones save, is HEVC.
_AVIF_BRANDS = {b"avif", b"avis"}
_HEIC_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1", b"mif2"}


OBJECT_STORE_SCHEMES = ("s3://", "gs://", "gcs://", "file://", "memory://")


class ImageError(ValueError):
    """An input that cannot become an image; str() is one line naming the input and the reason."""

    def __init__(self, name: str, reason: str, kind: str = "bad_image"):
        super().__init__(one_line(f"{name}: {reason}"))  # a name holding a newline must not forge a line
        self.name = name
        self.reason = reason
        self.kind = kind  # a short tag, used to count failures by reason


# Thinner images are centre-cropped to this aspect ratio before anything resizes them: CLIP resizes the
# short side and keeps the centre square, so the crop changes nothing it sees, while a 2x30,000,000
# image would otherwise be resized to billions of pixels.
MAX_ASPECT = 16


def is_url(source: str) -> bool:
    return str(source).startswith(("http://", "https://"))


def display_name(source: str) -> str:
    """How an input is named in messages, manifests and sidecars: never with a URL's credentials."""
    return fetch_url.redact(str(source))


def read_image_bytes(source: str, limits: ImageLimits = ImageLimits()) -> bytes:
    """Bytes of a local path, an http(s) URL or any fsspec URL (s3://...), at most limits.max_bytes of them."""
    source = str(source)
    if is_url(source):
        try:
            return fetch_url.fetch(source, limits.timeout_s, limits.max_bytes, limits.allow_private_urls)
        except fetch_url.FetchError as e:
            raise ImageError(display_name(source), e.reason, e.kind) from None
    if "://" in source and not source.startswith(OBJECT_STORE_SCHEMES):
        raise ImageError(display_name(source), "only http://, https://, s3:// and local paths are supported",
                         "bad_url")
    try:
        data = _read_local(source, limits.max_bytes + 1) if not storage.is_remote(source) else \
            _read_remote(source, limits.max_bytes + 1)
    except FileNotFoundError:
        raise ImageError(source, "no such file", "missing") from None
    except IsADirectoryError:
        raise ImageError(source, "is a directory", "missing") from None
    except PermissionError:
        raise ImageError(source, "permission denied", "unreadable") from None
    except ImageError:
        raise
    except Exception as e:  # OSErrors, and a store that is down, slow or throttling (botocore's are not OSErrors)
        kind, reason = classify(e, source, "read")
        if kind == "internal":
            raise
        raise ImageError(source, reason.removeprefix(one_line(source) + ": "), kind) from None
    if len(data) > limits.max_bytes:
        raise ImageError(source, f"over the {limits.max_bytes:,}-byte limit", "too_large")
    return data


def _read_local(source: str, most: int) -> bytes:
    """A regular file's first `most` bytes. O_NONBLOCK: opening a FIFO must not wait for a writer."""
    fd = os.open(source[len("file://"):] if source.startswith("file://") else source, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # FIFOs, devices (a symlink to /dev/zero), sockets
            raise ImageError(source, "not a regular file", "not_regular_file")
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read(most)
    finally:
        os.close(fd)


def _read_remote(url: str, most: int) -> bytes:
    fs, path = storage.filesystem(url)
    with fs.open(path, "rb") as f:
        return f.read(most)


def decode_image(data: bytes, name: str, limits: ImageLimits = ImageLimits(),
                 check_extension: bool = True) -> Image.Image:
    """Decode bytes to an upright 8-bit RGB image, or raise ImageError saying why not."""
    return decode_checked(data, name, limits, check_extension)[0]


def decode_checked(data: bytes, name: str, limits: ImageLimits = ImageLimits(),
                   check_extension: bool = True) -> tuple[Image.Image, str]:
    """The image and a warning ("" when none): the content decides the format, a lying extension only warns."""
    name = display_name(name)
    if not data:
        raise ImageError(name, "empty file", "empty")
    _allow_pixels(limits.max_pixels)
    with warnings.catch_warnings():
        # We enforce our own pixel limit below; PIL's warning would only add noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except Image.DecompressionBombError as e:
            raise ImageError(name, f"too many pixels ({e})", "too_large") from None
        except UnidentifiedImageError:
            _refuse_unsupported(data, name)
            raise ImageError(name, f"not an image ({_describe(data)})", "not_image") from None
        except Exception as e:  # a header cut short or mangled
            _refuse_unsupported(data, name)
            raise ImageError(name, f"truncated or corrupt image ({type(e).__name__})", "corrupt") from None
        width, height = image.size
        if width * height > limits.max_pixels:
            raise ImageError(name, f"{width}x{height} pixels, over the {limits.max_pixels:,}-pixel limit",
                             "too_large")
        if not width or not height:
            raise ImageError(name, f"{width}x{height} pixels: no picture", "corrupt")
        notes = [_extension_warning(image, name)] if check_extension else []
        try:
            image.load()
        except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for broken files
            raise ImageError(name, f"truncated or corrupt {image.format} ({e})", "corrupt") from None
    image = to_rgb(image)
    # Crop before any resize sees it (the crop is bounded by max_pixels, a resize of the whole would not be).
    if max(image.size) > MAX_ASPECT * min(image.size):
        image = _centre_crop(image)
        notes.append(f"{width}x{height} pixels: centre-cropped to {image.width}x{image.height}")
    return image, "; ".join(note for note in notes if note)


def _allow_pixels(max_pixels: int) -> None:
    """Let PIL open images up to max_pixels: its own bomb check (an error above twice Image.MAX_IMAGE_PIXELS,
    89.5 million by default) would otherwise overrule a larger --max-pixels. decode_checked enforces
    max_pixels itself right after reading the header; the global is only ever raised, never lowered, so
    threads decoding with other limits cannot undo each other."""
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


def _refuse_unsupported(data: bytes, name: str) -> None:
    """An AVIF or HEIC file that this Pillow cannot decode: say so, rather than "not an image"."""
    if data[4:8] != b"ftyp":
        return
    size = int.from_bytes(data[:4], "big")
    brands = {data[8:12]} | {data[i:i + 4] for i in range(16, min(size, len(data), 256) - 3, 4)}
    if brands & _AVIF_BRANDS:
        fmt, decodes = "AVIF", features.check("avif")
    elif brands & _HEIC_BRANDS:
        fmt, decodes = "HEIC", "HEIF" in Image.OPEN  # a plugin such as pillow-heif registers it
    else:
        return
    if decodes:
        return  # a decoder exists: the file itself is broken, and the caller says so
    raise ImageError(name, f"{fmt} images are not supported here (this Pillow has no {fmt} decoder); "
                     f"convert it to JPEG or PNG", "unsupported_format")


def _centre_crop(image: Image.Image) -> Image.Image:
    width, height = image.size
    keep_w, keep_h = min(width, MAX_ASPECT * height), min(height, MAX_ASPECT * width)
    left, top = (width - keep_w) // 2, (height - keep_h) // 2
    return image.crop((left, top, left + keep_w, top + keep_h))


def _describe(data: bytes) -> str:
    """What non-image bytes look like, without quoting them: a kind and a length."""
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        kind = "HTML"
    elif head.startswith(b"<"):
        kind = "XML or SVG"
    elif head.startswith((b"{", b"[")):
        kind = "JSON"
    else:
        try:
            data[:4096].decode("utf-8")
            kind = "text"
        except UnicodeDecodeError:
            kind = "binary data"
    return f"{kind}, {len(data):,} bytes"


def _extension_warning(image: Image.Image, name: str) -> str:
    extension = os.path.splitext(name.split("?")[0])[1].lower()
    claimed = _FORMAT_OF_EXTENSION.get(extension)
    if claimed and image.format and image.format != claimed:
        return f"extension says {claimed} but the content is {image.format}"
    return ""


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
    return load_checked(source, limits)[0]


def load_checked(source: str, limits: ImageLimits = ImageLimits()) -> tuple[Image.Image, str]:
    """Read and decode one image; also returns decode_checked's warning."""
    return decode_checked(read_image_bytes(source, limits), str(source), limits, check_extension=not is_url(source))
