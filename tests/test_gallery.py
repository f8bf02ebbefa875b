"""The listening gallery: fast spectrograms, pages written as they fill, an index that reaches every page, and the
pages in a real headless Chromium, from disk and over HTTP, with no console errors."""

from __future__ import annotations

import html.parser
import io
import json
import os
import posixpath
import urllib.parse

import chromium
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from i2a_core.io import gallery, manifest, storage
from i2a_core.stages.clips import wav_bytes

# .ci/run installs Chromium, so in CI a missing browser is a failure, not a skip.
needs_chromium = pytest.mark.skipif(chromium.binary() is None and not os.environ.get("CI"),
                                    reason="needs Chromium (apt-get install chromium; .ci/run installs it)")


def make_outputs(output: str, names: list[str], seconds: float = 1.0) -> list[dict]:
    """Clip files as the write stage lays them out, for names with folders and awkward characters."""
    rows = []
    for i, name in enumerate(names):
        image = Image.fromarray(np.full((40, 60, 3), 40 * i, np.uint8))
        waveform = 0.3 * np.sin(np.linspace(0, 2000 * (i + 1), int(16000 * seconds))).astype(np.float32)
        row = {"input": f"/photos/{name}.jpg", "output": f"audio/{name}.wav", "status": "ok",
               "thumbnail": f"thumbs/{name}.jpg", "spectrogram": f"spectrograms/{name}.png",
               "captions": [f"caption {i} <b>&</b>"], "duration": seconds, "sample_rate": 16000,
               "explanation": json.dumps({"sounds_like": [{"caption": f"caption {i} <b>&</b>", "weight": 0.75}]})}
        storage.write_bytes_atomic(os.path.join(output, row["thumbnail"]), gallery.thumbnail_jpeg(image))
        storage.write_bytes_atomic(os.path.join(output, row["spectrogram"]), gallery.spectrogram_png(waveform, 16000))
        storage.write_bytes_atomic(os.path.join(output, row["output"]), wav_bytes(waveform, 16000))
        rows.append(row)
    rows.append({"input": "/photos/bad.jpg", "output": "", "status": "error", "thumbnail": "", "spectrogram": "",
                 "captions": [], "error": "/photos/bad.jpg: not an image (HTML, 1,204 bytes)", "error_kind": "not_image"})
    return rows


def clip_rows(count: int, start: int = 0) -> list[dict]:
    """Manifest-like clip rows without files: enough for what is written when."""
    return [{"input": f"/in/{i}.jpg", "output": f"audio/{i:04d}.wav", "status": "ok", "thumbnail": f"thumbs/{i}.jpg",
             "spectrogram": f"spectrograms/{i}.png", "captions": [f"caption {i}"], "explanation": "",
             "duration": 2.5, "sample_rate": 16000} for i in range(start, start + count)]


def failed_rows(count: int, start: int = 0) -> list[dict]:
    return [{"input": f"/in/bad {i}.jpg", "output": "", "status": "error", "error_kind": "not_image",
             "error": f"/in/bad {i}.jpg: not an image"} for i in range(start, start + count)]


NAMES = ["a/cat", "a/b/dog #1", "zebra ünï?"]
INFO = {"models": {"clip_model": "tiny:clip", "clip_pretrained": None, "audioldm": "tiny:audioldm"},
        "translator": "/home/me/runs/grid/best", "settings": {"steps": 4, "guidance": 2.5}, "inputs": 4,
        "date": "2026-01-02 03:04 UTC", "random_weights": True}


# --- the spectrogram ---


def test_spectrogram_is_a_small_palette_png_with_low_frequencies_at_the_bottom_and_time_left_to_right():
    """A 1 kHz tone that starts half-way: its row sits 1/8 up from the bottom (0-8 kHz), right half only."""
    rate, seconds = 16000, 2.5
    t = np.arange(int(rate * seconds)) / rate
    waveform = (0.5 * np.sin(2 * np.pi * 1000 * t) * (t >= seconds / 2)).astype(np.float32)
    data = gallery.spectrogram_png(waveform, rate)
    image = Image.open(io.BytesIO(data))
    # The tiny preset's clip: 2.5 s at 16 kHz, 16-bit mono; every STFT frame (hop 128) gets a column up to 360.
    assert image.mode == "P" and image.size == ((len(waveform) - 512) // 128 + 1, 128)
    assert image.text == {"duration_s": "2.500", "sample_rate": "16000", "frequency_hz": "0-8000", "db_range": "80"}
    assert len(data) < len(wav_bytes(waveform, rate)) / 2
    levels = np.asarray(image)  # palette indices: 255 is the loudest, 0 is DB_RANGE dB below or quieter
    row = int(np.argmax(levels[:, -50:].mean(axis=1)))
    assert abs(row - (127 - 1000 / 8000 * 128)) <= 1.5
    assert levels[row, -100:].min() > 200 and levels[row, :100].max() < 60
    ten_seconds = np.random.default_rng(0).standard_normal(rate * 10).astype(np.float32)  # noise: the worst case
    data = gallery.spectrogram_png(ten_seconds, rate)
    width, height = Image.open(io.BytesIO(data)).size  # frames step further apart: about one per column
    assert 350 <= width <= 360 and height == 128 and len(data) < len(wav_bytes(ten_seconds, rate)) / 5


def test_spectrogram_of_silence_and_of_a_clip_shorter_than_one_frame():
    assert not np.asarray(Image.open(io.BytesIO(gallery.spectrogram_png(np.zeros(16000), 16000)))).any()
    assert Image.open(io.BytesIO(gallery.spectrogram_png(np.ones(100), 16000))).size == (1, 128)


def test_palette_is_matplotlibs_magma():
    colormaps = pytest.importorskip("matplotlib").colormaps
    expected = np.rint(np.asarray(colormaps["magma"].colors) * 255).astype(np.uint8)
    assert np.array_equal(np.frombuffer(gallery.MAGMA, np.uint8).reshape(256, 3), expected)


def test_axis_ticks_are_round_and_span_the_axis():
    assert gallery._ticks(10, 5) == [0, 2, 4, 6, 8, 10]
    assert gallery._ticks(2.5, 5) == [0, 0.5, 1, 1.5, 2, 2.5]
    assert gallery._ticks(8, 4) == [0, 2, 4, 6, 8]
    assert gallery._ticks(11.025, 4) == [0, 5, 10]
    assert gallery._ticks(0.0, 5) == [] and gallery._ticks(None, 5) == []


# --- what is written when ---


def html_written(result: dict) -> set[str]:
    return {name for name in result["written"] if name.endswith(".html")}


def test_second_update_rewrites_only_the_last_partial_page_new_pages_and_the_index(tmp_path):
    output = str(tmp_path / "out")
    first = gallery.update_gallery(output, clip_rows(5), failed_rows(3), INFO, page_size=2)
    assert (first["pages"], first["failed_pages"], first["clips"], first["failed"]) == (3, 1, 5, 3)
    assert html_written(first) == {"index.html", "gallery/page-00002.html", "gallery/page-00003.html",
                                   "gallery/failed.html"}
    page2 = tmp_path / "out" / "gallery" / "page-00002.html"
    before = page2.stat().st_mtime_ns

    # Four more clips in commit order: page 3 fills, pages 4 and 5 are new; page 2 and the failed page stay.
    second = gallery.update_gallery(output, clip_rows(9), failed_rows(3), INFO, page_size=2)
    assert second["pages"] == 5
    assert html_written(second) == {"index.html", "gallery/page-00003.html", "gallery/page-00004.html",
                                    "gallery/page-00005.html"}
    assert page2.stat().st_mtime_ns == before
    assert "gallery/gallery.js" in second["written"]  # the only file that knows there are 5 pages now

    # Nothing new: only the index (its date and counts). A last page that was full stays when a page follows it.
    assert html_written(gallery.update_gallery(output, clip_rows(9), failed_rows(3), INFO, page_size=2)) == {
        "index.html"}
    third = gallery.update_gallery(output, clip_rows(10), failed_rows(3), INFO, page_size=2)
    assert html_written(third) == {"index.html", "gallery/page-00005.html"}
    fourth = gallery.update_gallery(output, clip_rows(11), failed_rows(3), INFO, page_size=2)
    assert html_written(fourth) == {"index.html", "gallery/page-00006.html"}


def test_pages_are_the_same_whatever_the_batching_arrow_or_dicts(tmp_path):
    """Rows from Parquet in odd-sized batches hash as the same rows given as dicts: nothing is rewritten."""
    output = str(tmp_path / "out")
    rows = clip_rows(23)
    gallery.update_gallery(output, rows, [], INFO, page_size=5)
    table = pa.Table.from_pylist(rows, schema=manifest.SCHEMA)  # float32 durations, int32 rates, as written
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    again = pq.read_table(io.BytesIO(buffer.getvalue()))
    result = gallery.update_gallery(output, again.to_batches(max_chunksize=7), [], INFO, page_size=5)
    assert html_written(result) == {"index.html"}
    # A changed row in the middle rewrites its page, and only that one.
    rows[12]["captions"] = ["something else"]
    assert html_written(gallery.update_gallery(output, iter(rows), [], INFO, page_size=5)) == {
        "index.html", "gallery/page-00003.html"}


def test_failed_pages_shrink_and_settings_that_change_every_page(tmp_path):
    output = str(tmp_path / "out")
    gallery.update_gallery(output, clip_rows(3), failed_rows(45), INFO, page_size=2)  # 20 failed per page
    assert os.path.exists(os.path.join(output, "gallery", "failed-00003.html"))
    # A rerun retried the first five: every failed page after them shifts, and the third page is gone.
    result = gallery.update_gallery(output, clip_rows(3), failed_rows(40, start=5), INFO, page_size=2)
    assert html_written(result) == {"index.html", "gallery/failed.html", "gallery/failed-00002.html"}
    assert result["failed_pages"] == 2 and not os.path.exists(os.path.join(output, "gallery", "failed-00003.html"))
    # Another page size: every page again (30 failed per page), and the clips now fit on the index.
    result = gallery.update_gallery(output, clip_rows(3), failed_rows(40, start=5), INFO, page_size=3)
    assert html_written(result) == {"index.html", "gallery/failed.html", "gallery/failed-00002.html"}
    assert result["pages"] == 1 and not os.path.exists(os.path.join(output, "gallery", "page-00002.html"))


def test_pages_are_written_as_they_fill(tmp_path):
    """update_gallery streams: a page is on disk before the rows of the pages after it are even made."""
    output = str(tmp_path / "out")

    def batches():
        for i in range(6):
            if i >= 3:  # pages 2.. are written as the next page's rows arrive
                assert os.path.exists(os.path.join(output, gallery.page_name(i - 1)))
            yield pa.RecordBatch.from_pylist(clip_rows(4, start=4 * i))

    assert gallery.update_gallery(output, batches(), iter(()), INFO, page_size=4)["pages"] == 6


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.links += [value for name, value in attrs if name in ("href", "src") and value]


def links_of(output: str, name: str) -> list[str]:
    """The files under `output` that page `name` links to, resolved like a browser, relative to `output`."""
    parser = Links()
    parser.feed(open(os.path.join(output, name), encoding="utf-8").read())
    return [posixpath.normpath(posixpath.join(posixpath.dirname(name), urllib.parse.unquote(link)))
            for link in parser.links if not link.startswith(("data:", "http"))]


@pytest.mark.parametrize("chunk", [1000, 3], ids=["one-index", "chunked-index"])
def test_index_links_every_page(tmp_path, monkeypatch, chunk):
    """Every clip page and failed page is linked from the index or from an index page it links; no link is dead."""
    monkeypatch.setattr(gallery, "INDEX_CHUNK", chunk)
    output = str(tmp_path / "out")
    result = gallery.update_gallery(output, clip_rows(21), failed_rows(95), INFO, page_size=2)
    assert (result["pages"], result["failed_pages"]) == (11, 5)
    reached = set(links_of(output, "index.html"))
    for name in sorted(n for n in reached if "/pages-" in n or "/failed-pages-" in n):
        assert os.path.exists(os.path.join(output, name)), name
        reached |= set(links_of(output, name))
    pages = {gallery.page_name(p) for p in range(1, 12)} | {gallery.failed_page_name(p) for p in range(1, 6)}
    assert pages <= reached
    if chunk == 3:  # no page lists more than a chunk: the index links the chunks, not the pages
        assert "gallery/page-00011.html" not in links_of(output, "index.html")
        assert "gallery/pages-00004.html" in links_of(output, "index.html")
    on_disk = {os.path.relpath(os.path.join(d, f), output) for d, _, fs in os.walk(output) for f in fs}
    for name in (n for n in on_disk if n.endswith(".html")):
        dead = {link for link in links_of(output, name) if link.endswith((".html", ".js")) and link not in on_disk}
        assert not dead, (name, dead)
    # Appending 6 clips (3 pages) rewrites the last index chunk and adds one, never the full ones before.
    result = gallery.update_gallery(output, clip_rows(27), failed_rows(95), INFO, page_size=2)
    if chunk == 3:
        assert html_written(result) == {"index.html", "gallery/page-00011.html", "gallery/page-00012.html",
                                        "gallery/page-00013.html", "gallery/page-00014.html",
                                        "gallery/pages-00004.html", "gallery/pages-00005.html"}


def test_clip_pages_show_no_counts_and_no_local_paths(tmp_path):
    output = str(tmp_path / "out")
    gallery.update_gallery(output, clip_rows(5), failed_rows(2), INFO, page_size=2)
    page = open(os.path.join(output, "gallery", "page-00002.html")).read()
    assert "of 3" not in page and "5 made" not in page and "2026-01-02" not in page
    index = open(os.path.join(output, "index.html")).read()
    assert "5 made" in index and "2 failed" in index and "2026-01-02" in index and "grid/best" in index
    for name in ("index.html", "gallery/page-00002.html", "gallery/failed.html"):
        text = open(os.path.join(output, name)).read()
        assert "/home/me" not in text and "/in/" not in text, name


# --- in a browser ---


@pytest.fixture(scope="module")
def gallery_dir(http_root):
    root, base_url = http_root
    output = os.path.join(root, "run 1")  # a space: links must be quoted
    assert gallery.write_gallery(output, make_outputs(output, NAMES), page_size=2, info=INFO) == 2
    return output, f"{base_url}/run%201"


@needs_chromium
@pytest.mark.parametrize("served", [False, True], ids=["from-disk", "over-http"])
def test_gallery_pages_render_without_console_errors(gallery_dir, served):
    output, base_url = gallery_dir
    first = f"{base_url}/index.html" if served else f"file://{output}/index.html"
    errors, page1 = chromium.load_page(first, chromium.GALLERY_REPORT)
    assert errors == []
    assert page1["audios"] == page1["playable"] == 2
    assert all(abs(d - 1.0) < 0.01 for d in page1["durations"])
    assert page1["images"] == 4 and page1["broken"] == []
    assert page1["captions"] == ["caption 1 <b>&</b>", "caption 0 <b>&</b>"]  # sorted by output path
    assert page1["weights"] == ["0.75", "0.75"] and page1["names"] == ["a/b/dog #1", "a/cat"]
    for text in ("tiny:clip", "grid/best", "steps 4", "3 made", "1 failed", "2026-01-02", "random, untrained"):
        assert text in page1["header"], text
    assert "/home/me" not in page1["header"]
    assert page1["pageOf"] == "page 1 of 2" and len(page1["pages"]) == 2

    errors, page2 = chromium.load_page(page1["next"], chromium.GALLERY_REPORT)
    assert errors == []
    assert page2["audios"] == page2["playable"] == 1
    assert page2["images"] == 2 and page2["broken"] == [] and page2["next"] is None
    assert page2["pageOf"] == "page 2 of 2"


@needs_chromium
def test_missing_file_is_caught(tmp_path):
    """The check can fail: a gallery with a missing spectrogram logs a console error."""
    output = str(tmp_path / "out")
    gallery.write_gallery(output, make_outputs(output, ["only"]))
    os.remove(os.path.join(output, "spectrograms", "only.png"))
    errors, page = chromium.load_page(f"file://{output}/index.html", chromium.GALLERY_REPORT)
    assert page["broken"] and any("only.png" in e or "ERR_FILE_NOT_FOUND" in e for e in errors)


@needs_chromium
def test_gallery_fits_a_laptop_and_a_phone_with_axes_and_a_colour_scale(tmp_path):
    """Screenshots at 1280 and 390 CSS pixels: no sideways scrolling; every spectrogram has time and frequency
    axes with round ticks and a magma dB scale beside it, drawn by the page, none of it overlapping."""
    output = str(tmp_path / "out")
    rows = make_outputs(output, ["ten seconds"], seconds=10.0)
    gallery.write_gallery(output, rows + make_outputs(output, ["short"], seconds=2.5)[:1], info=INFO)
    for width in (1280, 390):
        shot = tmp_path / f"gallery-{width}.png"
        errors, page = chromium.load_page(f"file://{output}/index.html", chromium.GALLERY_REPORT, width=width,
                                          screenshot=str(shot))
        assert errors == [] and page["overflow"] <= 0, (width, page["overflow"])
        screenshot = np.asarray(Image.open(shot).convert("RGB")).astype(int)
        assert screenshot.shape[1] == width
        by_name = dict(zip(page["names"], page["spectrograms"], strict=True))
        assert by_name["short"]["x"] == ["0", "0.5", "1", "1.5", "2", "2.5"]
        assert by_name["ten seconds"]["x"] == ["0", "2", "4", "6", "8", "10"]
        for spectrogram in page["spectrograms"]:
            assert spectrogram["y"] == ["0", "2", "4", "6", "8"] and spectrogram["colour"] == ["0", "-40", "-80"]
            assert sorted(spectrogram["titles"]) == ["dB", "frequency (kHz)", "time (s)"]
            assert spectrogram["image"][1] == 128 and spectrogram["plot"][2] > 200
            assert not spectrogram["overlap"] and not spectrogram["outside"], (width, spectrogram)
            # The colour bar as drawn: magma's brightest at the top, its darkest at the bottom.
            left, top, bar_width, height = spectrogram["bar"]
            assert bar_width >= 6 and height >= 100 and "linear-gradient" in spectrogram["gradient"]
            x = int(left + bar_width / 2)
            assert np.abs(screenshot[int(top) + 1, x] - (252, 253, 191)).max() < 40
            assert np.abs(screenshot[int(top + height) - 2, x] - (0, 0, 4)).max() < 40
        errors, failed = chromium.load_page(f"file://{output}/{gallery.FAILED_PAGE}", chromium.GALLERY_REPORT,
                                            width=width)
        assert errors == [] and failed["overflow"] <= 0 and failed["pageOf"] == "page 1 of 1"


@needs_chromium
@pytest.mark.parametrize("served", [False, True], ids=["from-disk", "over-http"])
def test_jump_to_any_page(tmp_path, http_root, served):
    """The jump form goes to page N of the clips or of the failed inputs, from the index and from a page."""
    root, base_url = http_root
    output = os.path.join(root, f"jump {served}")
    gallery.update_gallery(output, clip_rows(9), failed_rows(50), INFO, page_size=2)
    base = f"{base_url}/{urllib.parse.quote(os.path.basename(output))}" if served else f"file://{output}"
    jump = """(() => {{ const form = document.querySelector('form.jump[data-kind={kind}]');
                        form.querySelector('input').value = '{page}'; form.requestSubmit(); }})()"""
    where = "({url: location.href, of: document.querySelector('[data-of]').parentElement.textContent})"
    for start, kind, page, expected, of in [("index.html", "pages", 4, "gallery/page-00004.html", "page 4 of 5"),
                                             ("gallery/page-00004.html", "pages", 1, "index.html", "page 1 of 5"),
                                             ("gallery/page-00002.html", "pages", 5, "gallery/page-00005.html",
                                              "page 5 of 5"),
                                             ("index.html", "failed", 3, "gallery/failed-00003.html", "page 3 of 3"),
                                             ("gallery/failed-00003.html", "failed", 1, "gallery/failed.html",
                                              "page 1 of 3")]:
        errors, shown = chromium.load_page(f"{base}/{start}", jump.format(kind=kind, page=page), after=where)
        errors = [e for e in errors if "/thumbs/" not in e and "/spectrograms/" not in e]  # rows without files
        assert errors == [] and shown["url"].endswith(expected) and shown["of"] == of, (start, shown, errors)


@pytest.mark.parametrize("state", ['{"pages": "x"}', "[" * 100_000 + "]" * 100_000, "[1, 2]", "not json"])
def test_a_state_file_that_is_not_ours_makes_a_full_rewrite_not_a_crash(tmp_path, state):
    output = str(tmp_path / "out")
    gallery.update_gallery(output, clip_rows(5), failed_rows(3), INFO, page_size=2)
    with open(os.path.join(output, gallery.STATE), "w") as f:
        f.write(state)
    result = gallery.update_gallery(output, clip_rows(5), failed_rows(3), INFO, page_size=2)
    assert (result["pages"], result["failed_pages"]) == (3, 1)
    assert "index.html" in html_written(result)
