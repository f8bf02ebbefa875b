"""The listening gallery: thumbnails, labelled spectrograms and static, paginated HTML pages with relative links."""

from __future__ import annotations

import html
import io
import json
import math
import os
import urllib.parse

import numpy as np
from PIL import Image

from i2a_core.io import storage
from i2a_core.specs import RANDOM_WEIGHTS_NOTE

THUMBNAIL_SIZE = 256
SPECTROGRAM_INCHES = (4.4, 1.9)  # at 100 dpi: 440 x 190 px, axes and colour scale included
PAGES_DIR = "gallery"  # pages 2.. live here; page 1 is <output>/index.html
FAILED_PAGE = f"{PAGES_DIR}/failed.html"
MAX_FAILED_SHOWN = 1000  # errors.csv has every one
# Score columns a row may carry (the evaluation adds them); the gallery shows them and sorts by the first found.
SCORES = {"clap_score": "CLAP score", "cs": "CLIP score"}


def thumbnail_jpeg(image: Image.Image) -> bytes:
    small = image.copy()
    small.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def spectrogram_png(waveform: np.ndarray, sample_rate: int, n_fft: int = 512) -> bytes:
    """Log-magnitude STFT (dB, 80 dB range) in magma, with time (s) and frequency (kHz) axes and a dB scale."""
    from matplotlib.figure import Figure  # the object API: no pyplot state, safe in threads and actors

    waveform = np.asarray(waveform, np.float32).reshape(-1)
    seconds = len(waveform) / sample_rate
    hop = n_fft // 4
    if len(waveform) < n_fft:
        waveform = np.pad(waveform, (0, n_fft - len(waveform)))
    frames = np.lib.stride_tricks.sliding_window_view(waveform, n_fft)[::hop] * np.hanning(n_fft)
    power = np.abs(np.fft.rfft(frames, axis=1)).T ** 2
    decibels = 10 * np.log10(np.maximum(power, 1e-10))
    decibels = np.clip(decibels, decibels.max() - 80, None)
    # No more cells than the plot has pixels: a smaller PNG, drawn faster.
    decibels = np.asarray(Image.fromarray(decibels.astype(np.float32)).resize(
        (min(decibels.shape[1], 360), min(decibels.shape[0], 128)), Image.BILINEAR))

    figure = Figure(figsize=SPECTROGRAM_INCHES, dpi=100, layout="constrained")
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


def page_name(page: int) -> str:
    """Where page `page` (1-based) lives, relative to the output root."""
    return "index.html" if page == 1 else f"{PAGES_DIR}/page-{page:05d}.html"


def _link(from_page: int, target: str) -> str:
    """A relative, URL-quoted link from a page to a file under the output root (works on disk and in buckets)."""
    prefix = "" if from_page == 1 else "../"
    return html.escape(prefix + urllib.parse.quote(target), quote=True)


_STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f4f4f6;color:#1d1d1f}
header,main,.bar{max-width:1400px;margin:0 auto;padding:0 16px}
header{padding-top:16px}
h1{font-size:1.4em;margin:0 0 8px}
.banner{background:#fff3cd;border:1px solid #e0c36a;border-radius:6px;padding:8px 12px;margin:8px 0}
dl.info{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:2px 12px;margin:8px 0;font-size:.85em}
dl.info dt{color:#666}
dl.info dd{margin:0;overflow-wrap:anywhere}
.bar{display:flex;flex-wrap:wrap;gap:8px 24px;align-items:center;margin-top:12px;margin-bottom:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,360px),1fr));gap:16px;padding-bottom:16px}
.clip{background:#fff;border:1px solid #ddd;border-radius:8px;padding:10px;margin:0;min-width:0}
.clip .top{display:flex;gap:10px;align-items:flex-start}
.clip img.thumb{width:96px;height:96px;object-fit:cover;border-radius:4px;flex:none;background:#eee}
.clip .name{font-weight:600;font-size:.9em;overflow-wrap:anywhere}
.clip .scores{font-size:.8em;color:#444;margin-top:4px}
.clip audio{width:100%;margin:8px 0 4px}
.clip img.spec{width:100%;height:auto;display:block}
.captions{font-size:.8em;margin:6px 0 0;width:100%;border-collapse:collapse}
.captions caption{text-align:left;color:#666;font-size:.95em;padding-bottom:2px}
.captions td{padding:1px 4px;vertical-align:top;overflow-wrap:anywhere}
.captions td.w{text-align:right;color:#666;white-space:nowrap}
table.failed{border-collapse:collapse;width:100%;font-size:.85em;background:#fff;table-layout:fixed}
table.failed th,table.failed td{border:1px solid #ddd;padding:4px 6px;text-align:left;overflow-wrap:anywhere}
"""

_SORT_SCRIPT = """
document.getElementById('sort').addEventListener('change', e => {
  const grid = document.querySelector('.grid'), key = e.target.value;
  const value = c => key === 'name' ? c.dataset.name : -parseFloat(c.dataset[key] ?? 'Infinity');
  [...grid.children].sort((a, b) => value(a) < value(b) ? -1 : value(a) > value(b) ? 1 : 0)
    .forEach(c => grid.appendChild(c));
});
"""


def clip_name(row: dict) -> str:
    """A clip's key relative to the output (`audio/a/cat.wav` -> `a/cat`): never a local absolute path."""
    name = row["output"]
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


def _clip_html(page: int, row: dict, scores: list[str]) -> str:
    name = html.escape(clip_name(row))
    data = "".join(f' data-{c.replace("_", "")}="{_score(row, c)}"' for c in scores if _score(row, c) is not None)
    shown = " · ".join(f"{SCORES[c]} {_score(row, c):.3f}" for c in scores if _score(row, c) is not None)
    captions = _sounds_like(row)
    rows = "".join(f'<tr><td>{html.escape(c)}</td><td class="w">{"" if w is None else f"{float(w):.2f}"}</td></tr>'
                   for c, w in captions)
    table = (f'<table class="captions"><caption>sounds like (caption, retrieval weight)</caption>{rows}</table>'
             if captions else "")
    return (f'<figure class="clip" data-name="{name}"{data}><div class="top">'
            f'<img class="thumb" src="{_link(page, row["thumbnail"])}" alt="image {name}">'
            f'<figcaption><div class="name">{name}</div>'
            f'{f"<div class=scores>{shown}</div>" if shown else ""}</figcaption></div>'
            f'<audio controls preload="none" src="{_link(page, row["output"])}"></audio>'
            f'<img class="spec" src="{_link(page, row["spectrogram"])}" alt="spectrogram of {name}">'
            f"{table}</figure>")


def _nav_html(page: int, pages: int) -> str:
    links = []
    if page > 1:
        links.append(f'<a href="{_link(page, page_name(page - 1))}" rel="prev">previous</a>')
    links.append(f"page {page} of {pages}")
    if page < pages:
        links.append(f'<a href="{_link(page, page_name(page + 1))}" rel="next">next</a>')
    return "<nav>" + " · ".join(links) + "</nav>"


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
    items.append(("clips", ", ".join(f"{n} {label}" for label, n in counts.items())))
    if info.get("date"):
        items.append(("date", info["date"]))
    return '<dl class="info">' + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>"
                                         for k, v in items) + "</dl>"


def _display_path(path: str) -> str:
    """Models and translators by their last two path parts: a page may be shared; local paths are private."""
    if "://" in path or not os.path.isabs(path):
        return path
    return "/".join(path.rstrip("/").split("/")[-2:])


def _page(title: str, body: str, page: int) -> str:
    return ("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            '<link rel="icon" href="data:,">'  # no favicon request: a 404 would be a console error
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>{body}</body></html>\n")


def _header(page: int, info: dict, counts: dict, failed: int, bar: str) -> str:
    banner = f'<p class="banner">{html.escape(RANDOM_WEIGHTS_NOTE)}</p>' if info.get("random_weights") else ""
    failed_link = (f'<a href="{_link(page, FAILED_PAGE)}">{failed} failed input{"s" if failed != 1 else ""}'
                   f" and why</a>" if failed else "")
    return (f"<header><h1>i2a gallery</h1>{banner}{_info_html(info, counts)}</header>"
            f"<div class=bar>{bar}{failed_link}</div>")


def render_page(rows: list[dict], page: int, pages: int, info: dict, counts: dict, failed: int,
                scores: list[str]) -> str:
    sort = ""
    if scores:
        options = "".join(f'<option value="{c.replace("_", "")}">{SCORES[c]}, best first</option>' for c in scores)
        sort = (f'<label>sort this page by <select id="sort">{options}<option value="name">name</option>'
                f"</select></label>")
    header = _header(page, info, counts, failed, _nav_html(page, pages) + sort)
    body = (f"{header}<main><div class=\"grid\">{''.join(_clip_html(page, row, scores) for row in rows)}</div></main>"
            f"<div class=bar>{_nav_html(page, pages)}</div>"
            + (f"<script>{_SORT_SCRIPT}</script>" if scores else ""))
    return _page(f"i2a gallery - page {page}", body, page)


def _failed_page(rows: list[dict]) -> str:
    root = _common_root([r["input"] for r in rows])
    shown = rows[:MAX_FAILED_SHOWN]
    lines = "".join(f"<tr><td>{html.escape(_relative(r['input'], root))}</td>"
                    f"<td>{html.escape(r.get('error_kind') or '')}</td>"
                    f"<td>{html.escape(_relative(r.get('error') or '', root))}</td></tr>" for r in shown)
    more = (f"<p>{len(rows) - len(shown)} more in errors.csv.</p>" if len(rows) > len(shown) else "")
    body = (f'<header><h1>Failed inputs</h1><p>{len(rows)} input{"s" if len(rows) != 1 else ""} made no clip. '
            f'Every one is also in <a href="../errors.csv">errors.csv</a>. '
            f'<a href="../index.html">back to the gallery</a></p></header>'
            f'<main><table class="failed"><colgroup><col style="width:35%"><col style="width:12%"><col></colgroup>'
            f"<tr><th>input</th><th>kind</th><th>reason</th></tr>{lines}</table>{more}</main>")
    return _page("i2a gallery - failed inputs", body, 2)


def _common_root(inputs: list[str]) -> str:
    """The folder shared by the local inputs, shown relative to it: no user's home directory on the page."""
    local = [i for i in inputs if os.path.isabs(i)]
    if not local:
        return ""
    return os.path.dirname(os.path.commonpath(local)) if len(local) == 1 else os.path.commonpath(local)


def _relative(text: str, root: str) -> str:
    return text.replace(root.rstrip("/") + "/", "") if root and root != "/" else text


def write_gallery(output: str, rows: list[dict], page_size: int = 100, info: dict | None = None) -> int:
    """Write index.html, gallery/page-N.html and gallery/failed.html; returns the number of clip pages.

    rows are manifest rows; a row may carry float `clap_score` / `cs` (None: missing), shown per clip and
    used for the order (best first). info: models, translator, settings, date, random_weights, for the header.
    """
    info = info or {}
    clips = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"] != "ok"]
    scores = [c for c in SCORES if any(_score(r, c) is not None for r in clips)]
    if scores:
        clips.sort(key=lambda r: (_score(r, scores[0]) is None, -(_score(r, scores[0]) or 0.0), r["output"]))
    else:
        clips.sort(key=lambda r: r["output"])
    counts = {"made": len(clips), "failed": len(failed)}
    if info.get("inputs") is not None:
        counts["inputs listed"] = info["inputs"]
    pages = max(1, math.ceil(len(clips) / page_size))
    for page in range(1, pages + 1):
        chunk = clips[(page - 1) * page_size:page * page_size]
        storage.write_text_atomic(storage.join(output, page_name(page)),
                                  render_page(chunk, page, pages, info, counts, len(failed), scores))
    if failed:
        storage.write_text_atomic(storage.join(output, FAILED_PAGE), _failed_page(failed))
    return pages


def update_gallery(output: str, clips, failed, info: dict | None = None, page_size: int = 100) -> dict:
    """Interim: the gallery over the manifest's ok and failed rows (the gallery branch makes it incremental)."""
    rows = [row for batch in clips for row in batch.to_pylist()] + \
        [row for batch in failed for row in batch.to_pylist()]
    pages = write_gallery(output, rows, page_size, info=info)
    return {"pages": pages}
