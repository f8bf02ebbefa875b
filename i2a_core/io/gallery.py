"""The listening gallery: thumbnails, fast spectrograms, and static HTML pages written as they fill, with an index.

Layout under the output root (every link relative and URL-quoted, so it works from disk and from a bucket):

    index.html                   the header (models, settings, counts, date), the page index, a jump form, page 1
    gallery/page-00002.html ...  clip pages; a full page never changes again, so only the last one and new ones
                                 are written when clips are appended
    gallery/failed.html, failed-00002.html ...   failed inputs, paged the same way
    gallery/pages-00001.html ... chunks of the page index (1,000 pages each) once there are more than 1,000 pages
    gallery/gallery.js           the counts that change every run (page X "of N", the jump form's range)
    gallery/state.json, gallery/state/*.json     per-page row counts and content hashes: what to rewrite
"""

from __future__ import annotations

import functools
import hashlib
import html
import io
import json
import math
import os
import urllib.parse
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
from PIL import Image, PngImagePlugin

from i2a_core.io import storage
from i2a_core.specs import RANDOM_WEIGHTS_NOTE

THUMBNAIL_SIZE = 256
SPECTROGRAM_COLUMNS, SPECTROGRAM_ROWS = 360, 128  # at most; the page scales the image to its card
DB_RANGE = 80  # dB below the clip's loudest cell that still get a colour; quieter is black
PAGES_DIR = "gallery"  # pages 2.. live here; page 1 is <output>/index.html
FAILED_PAGE = f"{PAGES_DIR}/failed.html"
FAILED_PAGE_SCALE = 10  # a failed page holds 10 x page_size inputs (a table row each, not a player)
INDEX_CHUNK = 1000  # pages linked from one index page: no file grows with the number of clips
STATE = f"{PAGES_DIR}/state.json"
STATE_BYTES = 16 << 20  # the gallery's own bookkeeping files are a few KB; anything larger is not ours
RENDER_VERSION = 2  # bump when the page HTML changes: every page is then rewritten once
# Score columns a row may carry (the evaluation adds them); the gallery shows them, best first where sorted.
SCORES = {"clap_score": "CLAP score", "cs": "CLIP score"}

# matplotlib's "magma" colour map (CC0), 256 RGB entries: the spectrogram's palette and the page's colour scale.
MAGMA = bytes.fromhex(
    "00000401000501010601010802010902020b02020d03030f03031204041405041606051806051a07061c08071e090720"
    "0a08220b09240c09260d0a290e0b2b100b2d110c2f120d31130d34140e36150e38160f3b180f3d19103f1a10421c1044"
    "1d11471e114920114b21114e22115024125325125527125829115a2a115c2c115f2d11612f1163311165331067341069"
    "36106b38106c390f6e3b0f703d0f713f0f72400f74420f75440f764510774710784910784a10794c117a4e117b4f127b"
    "51127c52137c54137d56147d57157e59157e5a167e5c167f5d177f5f187f601880621980641a80651a80671b80681c81"
    "6a1c816b1d816d1d816e1e81701f81721f817320817521817621817822817922827b23827c23827e2482802582812581"
    "8326818426818627818827818928818b29818c29818e2a81902a81912b81932b80942c80962c80982d80992d809b2e7f"
    "9c2e7f9e2f7fa02f7fa1307ea3307ea5317ea6317da8327daa337dab337cad347cae347bb0357bb2357bb3367ab5367a"
    "b73779b83779ba3878bc3978bd3977bf3a77c03a76c23b75c43c75c53c74c73d73c83e73ca3e72cc3f71cd4071cf4070"
    "d0416fd2426fd3436ed5446dd6456cd8456cd9466bdb476adc4869de4968df4a68e04c67e24d66e34e65e44f64e55064"
    "e75263e85362e95462ea5661eb5760ec5860ed5a5fee5b5eef5d5ef05f5ef1605df2625df2645cf3655cf4675cf4695c"
    "f56b5cf66c5cf66e5cf7705cf7725cf8745cf8765cf9785df9795df97b5dfa7d5efa7f5efa815ffb835ffb8560fb8761"
    "fc8961fc8a62fc8c63fc8e64fc9065fd9266fd9467fd9668fd9869fd9a6afd9b6bfe9d6cfe9f6dfea16efea36ffea571"
    "fea772fea973feaa74feac76feae77feb078feb27afeb47bfeb67cfeb77efeb97ffebb81febd82febf84fec185fec287"
    "fec488fec68afec88cfeca8dfecc8ffecd90fecf92fed194fed395fed597fed799fed89afdda9cfddc9efddea0fde0a1"
    "fde2a3fde3a5fde5a7fde7a9fde9aafdebacfcecaefceeb0fcf0b2fcf2b4fcf4b6fcf6b8fcf7b9fcf9bbfcfbbdfcfdbf"
)


def thumbnail_jpeg(image: Image.Image) -> bytes:
    small = image.copy()
    small.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


# --- the spectrogram: numpy STFT -> dB -> palette PNG; its axes and colour scale are drawn by the page ---


def spectrogram_png(waveform: np.ndarray, sample_rate: int, n_fft: int = 512) -> bytes:
    """Log-power STFT in magma: time left to right, 0 Hz at the bottom to sample_rate / 2 at the top, the clip's
    loudest cell white-yellow and DB_RANGE dB below it black. At most 360 x 128 px (cells are averaged in power);
    the PNG's text chunks say what the axes span, and the gallery draws them in HTML around the image.

    Frames step n_fft / 4, or further for a long clip, up to n_fft, so that there are about as many as columns."""
    waveform = np.asarray(waveform, np.float32).reshape(-1)
    seconds = len(waveform) / sample_rate
    if len(waveform) < n_fft:
        waveform = np.pad(waveform, (0, n_fft - len(waveform)))
    hop = n_fft // 4
    if len(waveform) - n_fft > hop * (SPECTROGRAM_COLUMNS - 1):  # more frames than columns: no FFT is wasted,
        hop = min(n_fft, -(-(len(waveform) - n_fft) // (SPECTROGRAM_COLUMNS - 1)))  # and no sample skipped
    frames = np.lib.stride_tricks.sliding_window_view(waveform, n_fft)[::hop] * _hann(n_fft)
    spectrum = np.fft.rfft(frames, axis=1)[:, :n_fft // 2]  # the Nyquist bin dropped: an even number of bins
    power = spectrum.real ** 2 + spectrum.imag ** 2  # (frames, bins)
    power = _average(_average(power, SPECTROGRAM_COLUMNS, axis=0), SPECTROGRAM_ROWS, axis=1)
    peak = float(power.max())
    if 0 < peak < math.inf:
        decibels = 10 * np.log10(np.maximum(power, peak * 10 ** (-DB_RANGE / 10)) / peak)  # -DB_RANGE .. 0
        levels = np.rint((decibels + DB_RANGE) * (255 / DB_RANGE)).astype(np.uint8)
    else:  # silence (or a broken waveform): black, not a colour map stretched over rounding noise
        levels = np.zeros(power.shape, np.uint8)
    image = Image.fromarray(np.ascontiguousarray(levels.T[::-1]))  # rows: high frequencies first
    image.putpalette(MAGMA)  # "L" -> "P": one byte a pixel, compressed well
    text = PngImagePlugin.PngInfo()
    for key, value in (("duration_s", f"{seconds:.3f}"), ("sample_rate", str(int(sample_rate))),
                       ("frequency_hz", f"0-{sample_rate / 2:g}"), ("db_range", str(DB_RANGE))):
        text.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=text)
    return buffer.getvalue()


@functools.lru_cache(maxsize=4)
def _hann(n: int) -> np.ndarray:
    return np.hanning(n).astype(np.float32)


def _average(values: np.ndarray, most: int, axis: int) -> np.ndarray:
    """At most `most` cells along `axis`, each the mean of a run of neighbours."""
    n = values.shape[axis]
    if n <= most:
        return values
    edges = np.linspace(0, n, most + 1).astype(np.int64)
    sums = np.add.reduceat(values, edges[:-1], axis=axis)
    shape = [1, 1]
    shape[axis] = most
    return sums / np.diff(edges).reshape(shape)


def _magma_css() -> str:
    stops = ",".join(f"#{MAGMA[3 * i:3 * i + 3].hex()} {100 * i / 255:.0f}%" for i in range(0, 256, 32))
    return f"linear-gradient(to top,{stops},#{MAGMA[-3:].hex()} 100%)"


def _ticks(span: float, most: int) -> list[float]:
    """Round values from 0 to `span`, at most `most` intervals apart (1, 2, 2.5 or 5 times a power of ten)."""
    if not span or not math.isfinite(span) or span <= 0:
        return []
    power = 10.0 ** math.floor(math.log10(span / most))
    step = next(power * m for m in (1, 2, 2.5, 5, 10) if span / (power * m) <= most + 1e-9)
    return [round(i * step, 6) for i in range(int(span / step + 1e-9) + 1)]


def _spectrogram_html(src: str, name: str, duration: float | None, sample_rate: int | None) -> str:
    """The spectrogram with its time (s) and frequency (kHz) axes and dB scale, as HTML around the image."""
    times, freqs = _tick_labels(duration, sample_rate)
    return (f'<div class="spec"><span class="yt">frequency (kHz)</span><div class="ya">{freqs}</div>'
            f'<img class="sp" src="{src}" alt="spectrogram of {name}"><div class="cb"></div>'
            f'<div class="ca"><span style="top:0">0</span><span style="top:50%;transform:translateY(-50%)">'
            f'-{DB_RANGE // 2}</span><span style="bottom:0">-{DB_RANGE}</span></div>'
            f'<div class="xa">{times}</div><span class="ct">dB</span><span class="xt">time (s)</span></div>')


@functools.lru_cache(maxsize=256)  # a job's clips share a length and a rate: the labels are made once
def _tick_labels(duration: float | None, sample_rate: int | None) -> tuple[str, str]:
    """(time, frequency) tick labels, placed along the image in % of its width and height."""
    def place(value: float, span: float, side: str) -> str:
        where = 100 * value / span
        shift = 0 if where < 8 else 100 if where > 92 else 50
        if side == "left":
            return f'<span style="left:{where:.4g}%;transform:translateX(-{shift}%)">{value:g}</span>'
        return f'<span style="bottom:{where:.4g}%;transform:translateY({shift}%)">{value:g}</span>'

    kilohertz = sample_rate / 2000 if sample_rate else None
    times = "".join(place(t, duration, "left") for t in _ticks(duration, 5)) if duration else ""
    freqs = "".join(place(f, kilohertz, "bottom") for f in _ticks(kilohertz, 4)) if kilohertz else ""
    return times, freqs


# --- rows in: Arrow batches or dicts, conformed to the columns a page shows ---

_TEXT, _NUMBER = pa.string(), pa.float64()
CLIP_COLUMNS = pa.schema([("output", _TEXT), ("thumbnail", _TEXT), ("spectrogram", _TEXT),
                          ("captions", pa.list_(_TEXT)), ("explanation", _TEXT), ("duration", _NUMBER),
                          ("sample_rate", pa.int64()), ("cs", _NUMBER), ("clap_score", _NUMBER)])
FAILED_COLUMNS = pa.schema([("input", _TEXT), ("error_kind", _TEXT), ("error", _TEXT)])
_DICT_BATCH = 1024


def _batches(rows: Iterable, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """RecordBatches with exactly `schema`'s columns, from pyarrow RecordBatches / Tables or row dicts."""
    pending: list[dict] = []
    for item in rows:
        if isinstance(item, dict):
            pending.append(item)
            if len(pending) >= _DICT_BATCH:
                yield _from_dicts(pending, schema)
                pending = []
            continue
        if pending:
            yield _from_dicts(pending, schema)
            pending = []
        for batch in item.to_batches() if isinstance(item, pa.Table) else [item]:
            yield _conform(batch, schema)
    if pending:
        yield _from_dicts(pending, schema)


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    names = batch.schema.names
    return pa.RecordBatch.from_arrays(
        [batch.column(names.index(f.name)).cast(f.type) if f.name in names else pa.nulls(batch.num_rows, f.type)
         for f in schema], schema=schema)


def _from_dicts(rows: list[dict], schema: pa.Schema) -> pa.RecordBatch:
    def plain(value):
        if isinstance(value, np.generic):
            return value.item()
        return json.dumps(value) if isinstance(value, dict) else value

    return pa.RecordBatch.from_pydict({f.name: [plain(r.get(f.name)) for r in rows] for f in schema}, schema=schema)


def _pages(batches: Iterator[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    """Tables of `size` rows (the last one shorter) from a stream of batches; holds at most one page."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        offset = 0
        while offset < batch.num_rows:
            take = min(size - count, batch.num_rows - offset)
            pending.append(batch.slice(offset, take))
            count, offset = count + take, offset + take
            if count == size:
                yield pa.Table.from_batches(pending)
                pending, count = [], 0
    if count:
        yield pa.Table.from_batches(pending)


def _digest(page: pa.Table) -> str:
    """A hash of a page's rows that does not depend on how they were batched: the Arrow IPC bytes of a compact copy
    (`take` builds new buffers of exactly these rows; a slice would carry its parent's)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, page.schema) as writer:
        writer.write_table(page.take(np.arange(page.num_rows)).combine_chunks())
    return hashlib.blake2b(sink.getvalue().to_pybytes(), digest_size=8).hexdigest()


# --- what was written before: per-page row counts and hashes, in chunks of INDEX_CHUNK pages ---


class _PageLog:
    """The (rows, hash) of every page of one kind, read and rewritten one chunk of INDEX_CHUNK pages at a time."""

    def __init__(self, output: str, kind: str, known_pages: int, written: list[str]):
        self.output, self.kind, self.known_pages, self.written = output, kind, known_pages, written
        self.chunk, self.entries, self.changed = -1, [], False

    def name(self, chunk: int) -> str:
        return f"{PAGES_DIR}/state/{self.kind}-{chunk + 1:05d}.json"

    def unchanged(self, page: int, entry: list) -> bool:
        chunk, i = divmod(page - 1, INDEX_CHUNK)
        if chunk != self.chunk:
            self._open(chunk)
        return i < len(self.entries) and self.entries[i] == entry

    def record(self, page: int, entry: list) -> None:
        i = (page - 1) % INDEX_CHUNK  # pages come in order, so i <= len(self.entries)
        if i < len(self.entries) and self.entries[i] == entry:
            return
        self.entries[i:i + 1] = [entry]
        self.changed = True

    def close(self, pages: int) -> None:
        """Save the last chunk, cut to `pages` pages."""
        chunk = (pages - 1) // INDEX_CHUNK if pages else 0
        if chunk != self.chunk:
            self._open(chunk)
        keep = pages - chunk * INDEX_CHUNK
        if len(self.entries) > keep:
            del self.entries[keep:]
            self.changed = True
        self._save()

    def _open(self, chunk: int) -> None:
        self._save()
        self.chunk, self.entries, self.changed = chunk, [], False
        if chunk * INDEX_CHUNK < self.known_pages:
            try:
                entries = storage.read_json(storage.join(self.output, self.name(chunk)), STATE_BYTES)
                self.entries = entries if isinstance(entries, list) else []
            except (OSError, ValueError):  # missing, torn or not ours: its pages are written again
                self.entries = []

    def _save(self) -> None:
        if self.changed:
            _write(self.output, self.name(self.chunk), json.dumps(self.entries, separators=(",", ":")), self.written)
        self.changed = False


def _read_state(output: str) -> dict:
    """What the last run wrote, or {} (everything is written again) when the file is missing or not its own."""
    try:
        state = storage.read_json(storage.join(output, STATE), STATE_BYTES)
    except (OSError, ValueError):
        return {}
    counts_ok = isinstance(state, dict) and all(type(state.get(name, 0)) is int for name in ("pages", "failed_pages"))
    return state if counts_ok else {}


def _write(output: str, name: str, text: str, written: list[str]) -> None:
    storage.write_text_atomic(storage.join(output, name), text)
    written.append(name)


def _remove(output: str, names: list[str]) -> None:
    """Pages past the end (a shorter run than the last): gone, so no stale page is reachable by its number."""
    for name in names:
        fs, path = storage.filesystem(storage.join(output, name))
        try:
            fs.rm(path)
        except FileNotFoundError:
            pass


# --- names and links ---


def page_name(page: int) -> str:
    """Where clip page `page` (1-based) lives, relative to the output root."""
    return "index.html" if page == 1 else f"{PAGES_DIR}/page-{page:05d}.html"


def failed_page_name(page: int) -> str:
    """Where failed-inputs page `page` (1-based) lives, relative to the output root."""
    return FAILED_PAGE if page == 1 else f"{PAGES_DIR}/failed-{page:05d}.html"


def _index_chunk_name(kind: str, chunk: int) -> str:
    return f"{PAGES_DIR}/{'pages' if kind == 'pages' else 'failed-pages'}-{chunk + 1:05d}.html"


_NAMERS = {"pages": page_name, "failed": failed_page_name}


def _href(depth: int, target: str) -> str:
    """A relative, URL-quoted link from a page `depth` folders below the output root (works on disk and in buckets)."""
    return html.escape("../" * depth + urllib.parse.quote(target), quote=True)


# --- pages ---

_STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f4f4f6;color:#1d1d1f}
header,main,.bar{max-width:1400px;margin:0 auto;padding:0 16px}
header{padding-top:16px}
h1{font-size:1.4em;margin:0 0 8px}
h1 a{color:inherit;text-decoration:none}
.banner{background:#fff3cd;border:1px solid #e0c36a;border-radius:6px;padding:8px 12px;margin:8px 0}
dl.info{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:2px 12px;margin:8px 0;font-size:.85em}
dl.info dt{color:#666}
dl.info dd{margin:0;overflow-wrap:anywhere}
.legend{font-size:.8em;color:#555;margin:4px 0}
.bar{display:flex;flex-wrap:wrap;gap:8px 24px;align-items:center;margin-top:12px;margin-bottom:12px}
nav{display:flex;flex-wrap:wrap;gap:4px 12px;align-items:baseline}
nav.pages{gap:2px 10px;font-size:.9em;font-variant-numeric:tabular-nums}
form.jump{display:flex;gap:6px;align-items:center;margin:0}
form.jump input{width:6em}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,360px),1fr));gap:16px;padding-bottom:16px}
.clip{background:#fff;border:1px solid #ddd;border-radius:8px;padding:10px;margin:0;min-width:0}
.clip .top{display:flex;gap:10px;align-items:flex-start}
.clip img.thumb{width:96px;height:96px;object-fit:cover;border-radius:4px;flex:none;background:#eee}
.clip .name{font-weight:600;font-size:.9em;overflow-wrap:anywhere}
.clip .scores{font-size:.8em;color:#444;margin-top:4px}
.clip audio{width:100%;margin:8px 0 4px}
.spec{display:grid;grid-template-columns:1.1em 2em minmax(0,1fr) 8px 2em;grid-template-rows:112px 1.3em auto;
  column-gap:3px;font-size:10px;line-height:1.1;color:#555;margin-top:4px}
.spec .yt{grid-area:1/1;writing-mode:vertical-rl;transform:rotate(180deg);text-align:center;white-space:nowrap}
.spec .ya,.spec .ca,.spec .xa{position:relative;min-width:0}
.spec .ya{grid-area:1/2}
.spec .ya span{position:absolute;right:0}
.spec img.sp{grid-area:1/3;width:100%;height:100%;display:block;background:#000}
.spec .cb{grid-area:1/4;background:MAGMA_CSS}
.spec .ca{grid-area:1/5}
.spec .ca span{position:absolute;left:0;white-space:nowrap}
.spec .xa{grid-area:2/3}
.spec .xa span{position:absolute;top:2px}
.spec .ct{grid-area:2/4/3/6;text-align:center;padding-top:2px}
.spec .xt{grid-area:3/3;text-align:center}
.captions{font-size:.8em;margin:6px 0 0;width:100%;border-collapse:collapse}
.captions caption{text-align:left;color:#666;font-size:.95em;padding-bottom:2px}
.captions td{padding:1px 4px;vertical-align:top;overflow-wrap:anywhere}
.captions td.w{text-align:right;color:#666;white-space:nowrap}
table.failed{border-collapse:collapse;width:100%;font-size:.85em;background:#fff;table-layout:fixed}
table.failed th,table.failed td{border:1px solid #ddd;padding:4px 6px;text-align:left;overflow-wrap:anywhere}
""".replace("MAGMA_CSS", _magma_css())

# gallery/gallery.js: the only file that knows how many pages there are, so no page is rewritten when that grows.
_SCRIPT = """// i2a gallery: page counts, the jump-to-page forms, and sorting a scored page. Rewritten when the counts change.
(() => {
  const total = {pages: PAGES, failed: FAILED};
  const pad = n => String(n).padStart(5, '0');
  const name = (kind, n) => kind === 'pages'
    ? (n === 1 ? 'index.html' : `gallery/page-${pad(n)}.html`)
    : (n === 1 ? 'gallery/failed.html' : `gallery/failed-${pad(n)}.html`);
  for (const el of document.querySelectorAll('[data-of]')) el.textContent = ` of ${total[el.dataset.of]}`;
  for (const a of document.querySelectorAll('a[rel=next][data-page]'))
    if (+a.dataset.page > total[a.dataset.kind]) a.remove();
  for (const form of document.querySelectorAll('form.jump')) {
    const input = form.querySelector('input'), kind = form.dataset.kind;
    input.max = total[kind];
    form.addEventListener('submit', e => {
      e.preventDefault();
      const n = parseInt(input.value, 10);
      if (n >= 1 && n <= total[kind]) location.href = form.dataset.root + name(kind, n);
      else input.setCustomValidity(`1 to ${total[kind]}`), input.reportValidity(), input.setCustomValidity('');
    });
  }
  const sort = document.getElementById('sort');
  if (sort) sort.addEventListener('change', e => {
    const grid = document.querySelector('.grid'), key = e.target.value;
    const value = c => key === 'name' ? c.dataset.name : -parseFloat(c.dataset[key] ?? 'Infinity');
    [...grid.children].sort((a, b) => value(a) < value(b) ? -1 : value(a) > value(b) ? 1 : 0)
      .forEach(c => grid.appendChild(c));
  });
})();
"""


def clip_name(row: dict) -> str:
    """A clip's key relative to the output (`audio/a/cat.wav` -> `a/cat`): never a local absolute path."""
    name = row["output"] or ""
    name = name[len("audio/"):] if name.startswith("audio/") else name
    return os.path.splitext(name)[0]


def _sounds_like(row: dict) -> list[tuple[str, float | None]]:
    """(caption, weight) pairs from the translator's explanation, else the bare captions."""
    explanation = row.get("explanation")
    if isinstance(explanation, str) and explanation:
        try:
            explanation = json.loads(explanation)
        except ValueError:
            explanation = None
    if isinstance(explanation, dict) and explanation.get("sounds_like"):
        return [(str(item.get("caption", "")), item.get("weight")) for item in explanation["sounds_like"]]
    return [(str(caption), None) for caption in row.get("captions") or []]


def _score(row: dict, column: str) -> float | None:
    value = row.get(column)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _clip_html(depth: int, row: dict, scores: list[str]) -> str:
    name = html.escape(clip_name(row))
    data = "".join(f' data-{c.replace("_", "")}="{_score(row, c)}"' for c in scores if _score(row, c) is not None)
    shown = " · ".join(f"{SCORES[c]} {_score(row, c):.3f}" for c in scores if _score(row, c) is not None)
    captions = _sounds_like(row)
    rows = "".join(f'<tr><td>{html.escape(c)}</td><td class="w">{"" if w is None else f"{float(w):.2f}"}</td></tr>'
                   for c, w in captions)
    table = (f'<table class="captions"><caption>sounds like (caption, retrieval weight)</caption>{rows}</table>'
             if captions else "")
    return (f'<figure class="clip" data-name="{name}"{data}><div class="top">'
            f'<img class="thumb" src="{_href(depth, row["thumbnail"] or "")}" alt="image {name}">'
            f'<figcaption><div class="name">{name}</div>'
            f'{f"<div class=scores>{shown}</div>" if shown else ""}</figcaption></div>'
            f'<audio controls preload="none" src="{_href(depth, row["output"])}"></audio>'
            f'{_spectrogram_html(_href(depth, row["spectrogram"] or ""), name, row.get("duration"), row.get("sample_rate"))}'
            f"{table}</figure>")


def _nav(kind: str, page: int, full: bool, depth: int) -> str:
    """previous · page N of M · next; "of M" and a next page that does not exist yet are the script's business."""
    namer = _NAMERS[kind]
    links = []
    if page > 1:
        links.append(f'<a href="{_href(depth, namer(page - 1))}" rel="prev">previous</a>')
    links.append(f'<span>page {page}<span data-of="{kind}"></span></span>')
    if full:
        links.append(f'<a href="{_href(depth, namer(page + 1))}" rel="next" data-kind="{kind}" '
                     f'data-page="{page + 1}">next</a>')
    return "<nav>" + "".join(links) + "</nav>"


def _jump(kind: str, depth: int) -> str:
    what = "page" if kind == "pages" else "failed page"
    return (f'<form class="jump" data-kind="{kind}" data-root="{"../" * depth}"><label>go to {what} '
            f'<input type="number" name="page" min="1" inputmode="numeric" required></label>'
            f'<button type="submit">go</button></form>')


def _page(title: str, body: str, depth: int) -> str:
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            '<link rel="icon" href="data:,">'  # no favicon request: a 404 would be a console error
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>{body}"
            f'<script src="{_href(depth, PAGES_DIR + "/gallery.js")}"></script></body></html>\n')


def _banner(info: dict) -> str:
    return f'<p class="banner">{html.escape(RANDOM_WEIGHTS_NOTE)}</p>' if info.get("random_weights") else ""


def _sort_control(scores: list[str]) -> str:
    if not scores:
        return ""
    options = "".join(f'<option value="{c.replace("_", "")}">{SCORES[c]}, best first</option>' for c in scores)
    return f'<label>sort this page by <select id="sort">{options}<option value="name">name</option></select></label>'


def _scores_in(rows: list[dict]) -> list[str]:
    return [c for c in SCORES if any(_score(r, c) is not None for r in rows)]


def _clip_page(page: int, rows: list[dict], page_size: int, banner: str) -> str:
    """Clip page 2.. (in gallery/): its clips and links; nothing that changes when later pages are added."""
    scores = _scores_in(rows)
    nav = _nav("pages", page, len(rows) == page_size, 1)
    body = (f'<header><h1><a href="{_href(1, "index.html")}">i2a gallery</a></h1>{banner}</header>'
            f'<div class=bar>{nav}{_jump("pages", 1)}{_sort_control(scores)}</div>'
            f'<main><div class="grid">{"".join(_clip_html(1, row, scores) for row in rows)}</div></main>'
            f"<div class=bar>{nav}</div>")
    return _page(f"i2a gallery - page {page}", body, 1)


def _failed_page(page: int, rows: list[dict], page_size: int) -> str:
    root = _common_root([r["input"] or "" for r in rows])
    lines = "".join(f"<tr><td>{html.escape(_relative(r['input'] or '', root))}</td>"
                    f"<td>{html.escape(r.get('error_kind') or '')}</td>"
                    f"<td>{html.escape(_relative(r.get('error') or '', root))}</td></tr>" for r in rows)
    nav = _nav("failed", page, len(rows) == page_size, 1)
    body = (f'<header><h1><a href="{_href(1, "index.html")}">i2a gallery</a>: failed inputs</h1>'
            f'<p>Inputs that made no clip, with the reason. Every one is also in <a href="../errors.csv">errors.csv'
            f'</a>.</p></header><div class=bar>{nav}{_jump("failed", 1)}</div>'
            f'<main><table class="failed"><colgroup><col style="width:35%"><col style="width:6.5em"><col></colgroup>'
            f"<tr><th>input</th><th>kind</th><th>reason</th></tr>{lines}</table></main><div class=bar>{nav}</div>")
    return _page(f"i2a gallery - failed inputs, page {page}", body, 1)


def _page_list(kind: str, pages: int, depth: int) -> str:
    """Links to every page, or with more than INDEX_CHUNK pages, to the index pages that link them."""
    if pages <= INDEX_CHUNK:
        links = "".join(f'<a href="{_href(depth, _NAMERS[kind](p))}">{p}</a>' for p in range(1, pages + 1))
    else:
        links = "".join(f'<a href="{_href(depth, _index_chunk_name(kind, c))}">{c * INDEX_CHUNK + 1}-'
                        f'{min(pages, (c + 1) * INDEX_CHUNK)}</a>' for c in range(math.ceil(pages / INDEX_CHUNK)))
    label = "pages" if kind == "pages" else "failed inputs, pages"
    return f'<nav class="pages" aria-label="{label}">{label}: {links}</nav>'


def _index_chunk_page(kind: str, chunk: int, pages: int) -> str:
    """gallery/pages-0000C.html: links to pages of chunk C (at most INDEX_CHUNK)."""
    first, last = chunk * INDEX_CHUNK + 1, min(pages, (chunk + 1) * INDEX_CHUNK)
    links = "".join(f'<a href="{_href(1, _NAMERS[kind](p))}">{p}</a>' for p in range(first, last + 1))
    what = "pages" if kind == "pages" else "failed inputs, pages"
    body = (f'<header><h1><a href="{_href(1, "index.html")}">i2a gallery</a>: {what} {first}-{last}</h1></header>'
            f'<div class=bar>{_jump(kind, 1)}</div><div class=bar><nav class="pages">{links}</nav></div>')
    return _page(f"i2a gallery - {what} {first}-{last}", body, 1)


def _info_html(info: dict, counts: dict) -> str:
    items = []
    models = info.get("models") or {}
    if models:
        clip = models.get("clip_model", "")
        if models.get("clip_pretrained"):
            clip += f" ({models['clip_pretrained']})"
        items += [("CLIP", clip), ("AudioLDM", models.get("audioldm", ""))]
    if info.get("translator") or models.get("translator"):
        items.append(("translator", _display_path(info.get("translator") or models.get("translator"))))
    settings = info.get("settings") or {}
    if settings:
        items.append(("settings", ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in settings.items())))
    items.append(("clips", ", ".join(f"{n:,} {label}" for label, n in counts.items())))
    if info.get("date"):
        items.append(("date", info["date"]))
    return '<dl class="info">' + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>"
                                         for k, v in items) + "</dl>"


def _display_path(path: str) -> str:
    """Models and translators by their last two path parts: a page may be shared; local paths are private."""
    if "://" in path or not os.path.isabs(path):
        return path
    return "/".join(path.rstrip("/").split("/")[-2:])


def _index_page(rows: list[dict], page_size: int, pages: int, failed_pages: int, counts: dict, info: dict) -> str:
    """index.html: the header, every page reachable (a list and a jump form), the failed inputs, then page 1."""
    scores = _scores_in(rows)
    failed = counts["failed"]
    failed_link = (f'<a href="{_href(0, FAILED_PAGE)}">{failed:,} failed input{"s" if failed != 1 else ""} '
                   f"and why</a>" if failed else "")
    nav = _nav("pages", 1, len(rows) == page_size, 0)
    body = (f"<header><h1>i2a gallery</h1>{_banner(info)}{_info_html(info, counts)}"
            f'<p class="legend">Spectrograms: time (s) across, frequency (kHz) up; colour is power in dB below '
            f"the clip's loudest moment, 0 to -{DB_RANGE} dB.</p></header>"
            f'<div class=bar>{_page_list("pages", pages, 0)}{_jump("pages", 0)}</div>'
            + (f'<div class=bar>{failed_link}{_page_list("failed", failed_pages, 0) if failed_pages > 1 else ""}'
               f'{_jump("failed", 0) if failed_pages > 1 else ""}</div>' if failed else "")
            + f'<div class=bar>{nav}{_sort_control(scores)}</div>'
            f'<main><div class="grid">{"".join(_clip_html(0, row, scores) for row in rows)}</div></main>'
            f"<div class=bar>{nav}</div>")
    return _page("i2a gallery", body, 0)


def _common_root(inputs: list[str]) -> str:
    """The folder shared by the local inputs, shown relative to it: no user's home directory on the page."""
    local = [i for i in inputs if os.path.isabs(i)]
    if not local:
        return ""
    return os.path.dirname(os.path.commonpath(local)) if len(local) == 1 else os.path.commonpath(local)


def _relative(text: str, root: str) -> str:
    return text.replace(root.rstrip("/") + "/", "") if root and root != "/" else text


# --- the writer ---


def update_gallery(output: str, clips: Iterable, failed: Iterable, info: dict | None = None,
                   page_size: int = 100) -> dict:
    """Bring the gallery under `output` up to date with these clips and failed inputs; rewrite only what changed.

    clips, failed: iterables of pyarrow RecordBatches (or Tables) or of row dicts, with manifest columns (output,
    thumbnail, spectrogram, captions, explanation, duration, sample_rate, optional cs / clap_score; failed rows:
    input, error_kind, error), in page order: clips appended in commit order leave every full page as it was.
    Streams both: at most one page of rows is held. info: models, translator, settings, inputs, date,
    random_weights, for the index's header. Returns {"pages", "failed_pages", "clips", "failed", "written"}
    (written: the files written, relative to output).
    """
    info = info or {}
    banner = _banner(info)
    failed_size = page_size * FAILED_PAGE_SCALE
    before = _read_state(output)
    context = {"version": RENDER_VERSION, "page_size": page_size, "random_weights": bool(info.get("random_weights"))}
    same = before.get("context") == context
    known = {"pages": int(before.get("pages", 0)), "failed": int(before.get("failed_pages", 0))}
    written: list[str] = []

    # 1. Clip pages 2.. as they fill, each only when its rows changed; page 1 waits for the index.
    log = _PageLog(output, "pages", known["pages"] if same else 0, written)
    first: list[dict] = []
    clip_count = pages = 0
    for pages, table in enumerate(_pages(_batches(clips, CLIP_COLUMNS), page_size), 1):
        clip_count += table.num_rows
        entry = [table.num_rows, _digest(table)]
        unchanged = log.unchanged(pages, entry)
        if pages == 1:
            first = table.to_pylist()
        elif not unchanged:
            _write(output, page_name(pages), _clip_page(pages, table.to_pylist(), page_size, banner), written)
        log.record(pages, entry)
    log.close(pages)

    # 2. Failed inputs, paged the same way.
    log = _PageLog(output, "failed", known["failed"] if same else 0, written)
    failed_count = failed_pages = 0
    for failed_pages, table in enumerate(_pages(_batches(failed, FAILED_COLUMNS), failed_size), 1):
        failed_count += table.num_rows
        entry = [table.num_rows, _digest(table)]
        if not log.unchanged(failed_pages, entry):
            _write(output, failed_page_name(failed_pages), _failed_page(failed_pages, table.to_pylist(), failed_size),
                   written)
        log.record(failed_pages, entry)
    log.close(failed_pages)

    # 3. Index pages (past INDEX_CHUNK pages) whose page count changed; pages past the new end go.
    totals = {"pages": max(1, pages), "failed": failed_pages}
    stale = [page_name(p) for p in range(totals["pages"] + 1, known["pages"] + 1)]
    stale += [failed_page_name(p) for p in range(failed_pages + 1, known["failed"] + 1)]
    for kind, count in totals.items():
        stale += _update_index_chunks(output, kind, count, known[kind] if same else 0, known[kind], written)
    _remove(output, stale)

    # 4. The counts (gallery.js), the index with page 1, and last the state that says all this was written.
    if not same or known != totals or not storage.exists(
            storage.join(output, PAGES_DIR, "gallery.js")):
        _write(output, f"{PAGES_DIR}/gallery.js",
               _SCRIPT.replace("PAGES", str(totals["pages"])).replace("FAILED", str(totals["failed"])), written)
    counts = {"made": clip_count, "failed": failed_count}
    if info.get("inputs") is not None:
        counts["inputs listed"] = info["inputs"]
    _write(output, page_name(1), _index_page(first, page_size, totals["pages"], failed_pages, counts, info), written)
    _write(output, STATE, json.dumps({"context": context, "pages": totals["pages"], "clips": clip_count,
                                      "failed_pages": failed_pages, "failed": failed_count}), written)
    return {"pages": totals["pages"], "failed_pages": failed_pages, "clips": clip_count, "failed": failed_count,
            "written": written}


def _update_index_chunks(output: str, kind: str, count: int, unchanged: int, before: int,
                         written: list[str]) -> list[str]:
    """Write the index pages of `count` pages whose content differs from when there were `unchanged` (0: none
    known to be on disk); returns the index pages of the `before` pages that are no longer needed."""
    def chunks(pages: int) -> int:  # up to INDEX_CHUNK pages, the index itself lists them
        return math.ceil(pages / INDEX_CHUNK) if pages > INDEX_CHUNK else 0

    def pages_in(chunk: int, pages: int) -> int:
        return max(0, min(pages, (chunk + 1) * INDEX_CHUNK) - chunk * INDEX_CHUNK)

    for chunk in range(chunks(count)):
        if chunk >= chunks(unchanged) or pages_in(chunk, count) != pages_in(chunk, unchanged):
            _write(output, _index_chunk_name(kind, chunk), _index_chunk_page(kind, chunk, count), written)
    return [_index_chunk_name(kind, chunk) for chunk in range(chunks(count), chunks(before))]


def write_gallery(output: str, rows: list[dict], page_size: int = 100, info: dict | None = None) -> int:
    """The whole gallery from manifest rows (status "ok" clips and failed inputs); returns the number of clip pages.

    Clips are sorted by output path, or best first by `clap_score` / `cs` when the rows carry scores (None:
    missing, last). A thin wrapper over update_gallery, which callers that stream rows should use instead.
    """
    rows = list(rows)
    clips = [r for r in rows if r["status"] == "ok"]
    scores = [c for c in SCORES if any(_score(r, c) is not None for r in clips)]
    if scores:
        clips.sort(key=lambda r: (_score(r, scores[0]) is None, -(_score(r, scores[0]) or 0.0), r["output"]))
    else:
        clips.sort(key=lambda r: r["output"])
    return update_gallery(output, clips, [r for r in rows if r["status"] != "ok"], info, page_size)["pages"]
