"""The listening gallery renders in a real headless Chromium, from disk and over HTTP, with no console errors."""

from __future__ import annotations

import json
import os

import chromium
import numpy as np
import pytest
from PIL import Image

from i2a_core.io import gallery, storage
from i2a_core.stages.clips import wav_bytes

# .ci/run installs Chromium, so in CI a missing browser is a failure, not a skip.
pytestmark = pytest.mark.skipif(chromium.binary() is None and not os.environ.get("CI"),
                                reason="needs Chromium (apt-get install chromium; .ci/run installs it)")


def make_outputs(output: str, names: list[str]) -> list[dict]:
    """Clip files as the write stage lays them out, for names with folders and awkward characters."""
    rows = []
    for i, name in enumerate(names):
        image = Image.fromarray(np.full((40, 60, 3), 40 * i, np.uint8))
        waveform = 0.3 * np.sin(np.linspace(0, 2000 * (i + 1), 16000)).astype(np.float32)
        row = {"input": f"/photos/{name}.jpg", "output": f"audio/{name}.wav", "status": "ok",
               "thumbnail": f"thumbs/{name}.jpg", "spectrogram": f"spectrograms/{name}.png",
               "captions": [f"caption {i} <b>&</b>"],
               "explanation": json.dumps({"sounds_like": [{"caption": f"caption {i} <b>&</b>", "weight": 0.75}]})}
        storage.write_bytes_atomic(os.path.join(output, row["thumbnail"]), gallery.thumbnail_jpeg(image))
        storage.write_bytes_atomic(os.path.join(output, row["spectrogram"]), gallery.spectrogram_png(waveform, 16000))
        storage.write_bytes_atomic(os.path.join(output, row["output"]), wav_bytes(waveform, 16000))
        rows.append(row)
    rows.append({"input": "/photos/bad.jpg", "output": "", "status": "error", "thumbnail": "", "spectrogram": "",
                 "captions": [], "error": "/photos/bad.jpg: not an image (HTML, 1,204 bytes)", "error_kind": "not_image"})
    return rows


NAMES = ["a/cat", "a/b/dog #1", "zebra ünï?"]


@pytest.fixture(scope="module")
def gallery_dir(http_root):
    root, base_url = http_root
    output = os.path.join(root, "run 1")  # a space: links must be quoted
    info = {"models": {"clip_model": "tiny:clip", "clip_pretrained": None, "audioldm": "tiny:audioldm"},
            "translator": "/home/me/runs/grid/best", "settings": {"steps": 4, "guidance": 2.5}, "inputs": 4,
            "date": "2026-01-02 03:04 UTC", "random_weights": True}
    assert gallery.write_gallery(output, make_outputs(output, NAMES), page_size=2, info=info) == 2
    return output, f"{base_url}/run%201"


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

    errors, page2 = chromium.load_page(page1["next"], chromium.GALLERY_REPORT)
    assert errors == []
    assert page2["audios"] == page2["playable"] == 1
    assert page2["images"] == 2 and page2["broken"] == [] and page2["next"] is None


def test_missing_file_is_caught(tmp_path):
    """The check can fail: a gallery with a missing spectrogram logs a console error."""
    output = str(tmp_path / "out")
    gallery.write_gallery(output, make_outputs(output, ["only"]))
    os.remove(os.path.join(output, "spectrograms", "only.png"))
    errors, page = chromium.load_page(f"file://{output}/index.html", chromium.GALLERY_REPORT)
    assert page["broken"] and any("only.png" in e or "ERR_FILE_NOT_FOUND" in e for e in errors)


def test_gallery_fits_a_laptop_and_a_phone_with_labelled_spectrograms(gallery_dir, tmp_path):
    """Screenshots at 1280 and 390 CSS pixels: no sideways scrolling, and every spectrogram has its axes."""
    output, _ = gallery_dir
    for width in (1280, 390):
        shot = tmp_path / f"gallery-{width}.png"
        errors, page = chromium.load_page(f"file://{output}/index.html", chromium.GALLERY_REPORT, width=width,
                                          screenshot=str(shot))
        assert errors == [] and page["overflow"] <= 0, (width, page["overflow"])
        assert Image.open(shot).width == width
    # The spectrogram PNG carries its axes, labels and colour scale: wider than the plot, with dark label pixels
    # in the margins (a bare spectrogram fills the whole image).
    spectrogram = np.asarray(Image.open(os.path.join(output, "spectrograms", "a", "cat.png")).convert("L"))
    left_margin, bottom_margin = spectrogram[:, :25], spectrogram[-25:, :]
    assert (left_margin < 100).any() and (bottom_margin < 100).any()
    assert (left_margin > 240).mean() > 0.5  # mostly white background around the axis labels


def test_failed_inputs_page_and_score_order(tmp_path):
    output = str(tmp_path / "out")
    rows = make_outputs(output, ["low", "high", "none"])
    scores = {"low": 0.1, "high": 0.9, "none": None}
    for row in rows[:3]:
        row["clap_score"] = scores[gallery.clip_name(row)]
    gallery.write_gallery(output, rows)
    errors, page = chromium.load_page(f"file://{output}/index.html", chromium.GALLERY_REPORT)
    assert errors == [] and page["names"] == ["high", "low", "none"]  # best score first, missing last
    failed = open(os.path.join(output, gallery.FAILED_PAGE)).read()
    assert "bad.jpg" in failed and "not an image" in failed and "not_image" in failed
    assert "/photos/" not in failed  # shown relative to the inputs' folder
