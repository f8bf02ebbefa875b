"""`i2a fetch`: img2dataset over WIT / CC / table inputs served by a loopback HTTP server, broken images included."""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import subprocess
import tarfile

import pyarrow.parquet as pq
import pytest
from helpers import clean_env, i2a_command, image_bytes
from PIL import Image

from i2a_core.cli import main
from i2a_core.io import sources
from i2a_core.io.sources import WIT_COLUMNS


@pytest.fixture(scope="module")
def served(http_root):
    """Five good images, one truncated JPEG, one HTML page named .jpg, and one URL that 404s."""
    folder, base = http_root
    target = folder / "fetch"
    target.mkdir(exist_ok=True)
    good = []
    for i in range(5):
        (target / f"good{i}.jpg").write_bytes(image_bytes(fmt="JPEG", color=(40 * i, 100, 200), size=(48, 40)))
        good.append(f"{base}/fetch/good{i}.jpg")
    (target / "truncated.jpg").write_bytes(image_bytes(fmt="JPEG", color=(1, 2, 3), size=(64, 64))[:200])
    (target / "page.jpg").write_bytes(b"<!DOCTYPE html><html>not an image</html>")
    broken = [f"{base}/fetch/truncated.jpg", f"{base}/fetch/page.jpg", f"{base}/fetch/missing.jpg"]
    return good, broken


def _samples(output: str) -> list[dict]:
    samples = []
    for tar_path in sorted(glob.glob(os.path.join(output, "*.tar"))):
        with tarfile.open(tar_path) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name, data in members.items():
            if name.endswith(".json"):
                key = name[:-len(".json")]
                meta = json.loads(data)
                meta["image"] = Image.open(io.BytesIO(members[f"{key}.jpg"]))
                meta["txt"] = members[f"{key}.txt"].decode()
                samples.append(meta)
    return samples


def _wit_row(url: str, reference: str = "", alt: str = "", attribution: str = "", language: str = "en") -> str:
    row = dict.fromkeys(WIT_COLUMNS, "")
    row.update(language=language, image_url=url, caption_reference_description=reference,
               caption_alt_text_description=alt, caption_attribution_description=attribution)
    return "\t".join(row[c] for c in WIT_COLUMNS)


def test_read_wit_caption_fallback_and_languages(tmp_path):
    path = tmp_path / "wit.tsv.gz"
    lines = ["\t".join(WIT_COLUMNS),
             _wit_row("http://x/a.jpg", reference="ref", alt="alt", attribution="attr"),
             _wit_row("http://x/b.jpg", alt="alt only", attribution="attr"),
             _wit_row("http://x/c.jpg", attribution="attribution only"),
             _wit_row("http://x/d.jpg", reference="deutsch", language="de"),
             _wit_row("", reference="no url")]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    rows = sources.read_wit(str(path), ["en"])
    assert list(rows["caption"]) == ["ref", "alt only", "attribution only"]
    assert list(rows["source"]) == ["wit"] * 3
    assert rows["id"].is_unique and rows["id"].str.startswith("wit-").all()
    assert len(sources.read_wit(str(path))) == 4  # no language filter; the URL-less row is always dropped


def test_fetch_cc_counts_failures_and_rerun_skips_finished_shards(served, tmp_path, capsys):
    good, broken = served
    table = tmp_path / "cc.tsv"
    table.write_text("".join(f"caption {i}\t{url}\n" for i, url in enumerate(good + broken)))
    output = tmp_path / "shards"
    argv = ["fetch", "--source", "cc", "--input", str(table), "--output", str(output), "--preset", "tiny",
            "--processes", "1", "--threads", "4", "--shard-size", "4", "--timeout", "5"]
    assert main(argv) == 1  # three URLs failed
    summary = capsys.readouterr().out
    assert "5 of 8 images fetched into 2 shard(s), 3 failed" in summary
    assert "404" in summary

    samples = _samples(str(output))
    assert len(samples) == 5
    assert {s["url"] for s in samples} == set(good)
    assert all(s["image"].size == (32, 32) for s in samples)  # the tiny CLIP's input size
    assert all(s["source"] == "cc" and s["id"] == sources.image_id("cc", s["url"]) for s in samples)
    assert {s["txt"] for s in samples} == {f"caption {i}" for i in range(5)}
    metadata = pq.read_table(sorted(glob.glob(str(output / "*.parquet")))).to_pandas()
    assert sorted(metadata["status"]) == ["failed_to_download"] + ["failed_to_resize"] * 2 + ["success"] * 5

    # A rerun finds both shards finished: nothing is downloaded again, the tars are untouched.
    mtimes = {p: os.stat(p).st_mtime_ns for p in glob.glob(str(output / "*.tar"))}
    assert main(argv) == 1  # three URLs failed
    assert "5 of 8 images fetched into 2 shard(s), 3 failed" in capsys.readouterr().out
    assert {p: os.stat(p).st_mtime_ns for p in glob.glob(str(output / "*.tar"))} == mtimes


def test_fetch_wit_with_ray_distributor_as_the_readme_runs_it_starts_its_own_ray(served, tmp_path):
    """`i2a fetch --distributor ray` as a subprocess in a clean environment (no RAY_*, no Ray running)."""
    good, broken = served
    table = tmp_path / "wit.tsv"
    lines = ["\t".join(WIT_COLUMNS)] + [_wit_row(url, alt=f"image {i}") for i, url in enumerate(good + broken)]
    lines.append(_wit_row(good[0], reference="not english", language="fr"))
    table.write_text("\n".join(lines) + "\n")
    done = subprocess.run(i2a_command("fetch", "--source", "wit", "--input", "wit.tsv", "--output", "wit-shards",
                                      "--languages", "en", "--preset", "tiny", "--distributor", "ray", "--threads",
                                      "4", "--timeout", "5"),
                          cwd=tmp_path, env=clean_env(tmp_path / "home"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr  # three URLs failed
    assert "5 of 8 images fetched into 1 shard(s), 3 failed" in done.stdout
    samples = _samples(str(tmp_path / "wit-shards"))
    assert sorted(s["txt"] for s in samples) == [f"image {i}" for i in range(5)]
    assert all(s["source"] == "wit" for s in samples)


def test_fetch_names_a_table_without_the_columns(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("link,text\nhttp://x/a.jpg,a\n")
    assert main(["fetch", "--source", "table", "--input", str(table), "--output", str(tmp_path / "o"),
                 "--preset", "tiny"]) == 2
    assert "t.csv: not a table with --url-col/--caption-col: missing column(s) url, caption" in capsys.readouterr().err
