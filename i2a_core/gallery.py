"""The listening gallery: thumbnails, spectrogram PNGs and static, paginated HTML pages with relative links."""

from __future__ import annotations

import html
import io
import math
import urllib.parse

import numpy as np
from PIL import Image

from i2a_core import storage

THUMBNAIL_SIZE = 256
SPECTROGRAM_SIZE = (384, 128)  # width, height in pixels
PAGES_DIR = "gallery"  # pages 2.. live here; page 1 is <output>/index.html


def thumbnail_jpeg(image: Image.Image) -> bytes:
    small = image.copy()
    small.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def spectrogram_png(waveform: np.ndarray, sample_rate: int, n_fft: int = 512) -> bytes:
    """Log-magnitude STFT (dB, 80 dB range) coloured with magma, low frequencies at the bottom."""
    from matplotlib import colormaps

    waveform = np.asarray(waveform, np.float32).reshape(-1)
    hop = n_fft // 4
    if len(waveform) < n_fft:
        waveform = np.pad(waveform, (0, n_fft - len(waveform)))
    frames = np.lib.stride_tricks.sliding_window_view(waveform, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)).T ** 2
    decibels = 10 * np.log10(np.maximum(power, 1e-10))
    decibels = np.clip(decibels, decibels.max() - 80, None)
    scaled = (decibels - decibels.min()) / max(float(np.ptp(decibels)), 1e-6)
    rgb = (colormaps["magma"](scaled[::-1])[..., :3] * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).resize(SPECTROGRAM_SIZE, Image.BILINEAR).save(buffer, format="PNG")
    return buffer.getvalue()


def page_name(page: int) -> str:
    """Where page `page` (1-based) lives, relative to the output root."""
    return "index.html" if page == 1 else f"{PAGES_DIR}/page-{page:05d}.html"


def _link(from_page: int, target: str) -> str:
    """A relative, URL-quoted link from a page to a file under the output root (works on disk and in buckets)."""
    prefix = "" if from_page == 1 else "../"
    return html.escape(prefix + urllib.parse.quote(target), quote=True)


_STYLE = """
body{font-family:sans-serif;margin:1.5em;background:#fafafa}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(400px,1fr));gap:1em}
.clip{background:#fff;border:1px solid #ddd;padding:.6em}
.clip img.thumb{max-height:160px;max-width:100%}
.clip img.spec{width:100%;image-rendering:pixelated}
.clip audio{width:100%}
.name{font-size:.8em;word-break:break-all;color:#444}
nav{margin:1em 0}
"""


def clip_key(row: dict) -> str:
    """The clip's name on the page: its output key (relative to the output), never the input it came from,
    which may be an absolute local path, a presigned URL's query string or a URL with credentials."""
    key = row["output"]
    key = key[len("audio/"):] if key.startswith("audio/") else key
    return key[:-len(".wav")] if key.endswith(".wav") else key


def _clip_html(page: int, row: dict) -> str:
    name = html.escape(row["output"])
    captions = "".join(f"<li>{html.escape(c)}</li>" for c in row.get("captions") or [])
    return (f'<figure class="clip">'
            f'<img class="thumb" src="{_link(page, row["thumbnail"])}" alt="{name}">'
            f'<audio controls preload="none" src="{_link(page, row["output"])}"></audio>'
            f'<img class="spec" src="{_link(page, row["spectrogram"])}" alt="spectrogram of {name}">'
            f'<figcaption><div class="name">{html.escape(clip_key(row))}</div>'
            f'{"<ul class=captions>" + captions + "</ul>" if captions else ""}</figcaption></figure>')


def _nav_html(page: int, pages: int) -> str:
    links = []
    if page > 1:
        links.append(f'<a href="{_link(page, page_name(page - 1))}" rel="prev">previous</a>')
    links.append(f"page {page} of {pages}")
    if page < pages:
        links.append(f'<a href="{_link(page, page_name(page + 1))}" rel="next">next</a>')
    return "<nav>" + " · ".join(links) + "</nav>"


def render_page(rows: list[dict], page: int, pages: int, errors: int) -> str:
    title = "i2a gallery"
    header = f"{len(rows)} clip{'s' if len(rows) != 1 else ''} on this page"
    if errors:
        header += f"; {errors} input{'s' if errors != 1 else ''} failed (see manifest/)"
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            '<link rel="icon" href="data:,">'  # no favicon request: a 404 would be a console error
            f"<title>{title} - page {page}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{title}</h1><p>{header}</p>{_nav_html(page, pages)}"
            f'<div class="grid">{"".join(_clip_html(page, row) for row in rows)}</div>'
            f"{_nav_html(page, pages)}</body></html>\n")


def write_gallery(output: str, rows: list[dict], page_size: int = 100) -> int:
    """Write index.html and gallery/page-N.html for the ok rows; returns the number of pages."""
    clips = sorted((r for r in rows if r["status"] == "ok"), key=lambda r: r["output"])
    errors = sum(1 for r in rows if r["status"] != "ok")
    pages = max(1, math.ceil(len(clips) / page_size))
    for page in range(1, pages + 1):
        chunk = clips[(page - 1) * page_size:page * page_size]
        storage.write_text_atomic(storage.join(output, page_name(page)), render_page(chunk, page, pages, errors))
    return pages
