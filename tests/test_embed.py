"""`i2a embed`: AudioCaps and fetched images to CLIP/CLAP pair Parquet, on local disk and moto S3, resumable."""

from __future__ import annotations

import glob
import io
import json
import os
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from i2a_core.cli import main
from i2a_core.io import storage
from i2a_core.jobs.embed import PAIR_SCHEMA, PairEncoder, decode_images, read_pairs
from i2a_core.models.audioldm import ClapTextEncoder
from i2a_core.models.clip import ClipEncoder
from i2a_core.specs import PRESETS

TINY = PRESETS["tiny"].models
LONG = "a dog barks while rain falls on a tin roof and cars pass " * 8  # past both tiny tokenizers' 77 tokens


@pytest.fixture(scope="module")
def encoders():
    return ClipEncoder(TINY.clip, device="cpu"), ClapTextEncoder.load(TINY.audioldm, device="cpu")


def _audiocaps(path, count: int) -> list[str]:
    """An AudioCaps CSV of `count` good rows plus an empty caption, a blank one and a duplicated id."""
    captions = [f"sound number {i} with birds" for i in range(count - 1)] + [LONG]
    lines = ["audiocap_id,youtube_id,start_time,caption"]
    lines += [f"{100 + i},yt{i},{i},\"{caption}\"" for i, caption in enumerate(captions)]
    lines += ["900,ytx,0,", "901,yty,0,\"   \"", "100,ytz,0,a duplicate of the first id"]
    path.write_text("\n".join(lines) + "\n")
    return captions


def _embed(*args) -> int:
    return main(["embed", "--preset", "tiny", "--batch-size", "4", *args])


def test_audiocaps_pairs_schema_counts_and_values(tmp_path, ray_session, encoders):
    captions = _audiocaps(tmp_path / "ac.csv", 10)
    output = tmp_path / "pairs"
    # Exit status 1: two empty captions and a duplicated id are failed inputs (counted in stats.json).
    assert _embed("--source", "audiocaps", "--input", str(tmp_path / "ac.csv"), "--output", str(output),
                  "--rows-per-part", "4") == 1

    table = read_pairs(str(output))
    assert table.schema.equals(PAIR_SCHEMA)
    for part in glob.glob(str(output / "part-*.parquet")):
        assert pq.ParquetFile(part).metadata.row_group(0).column(0).compression == "ZSTD"
    rows = table.to_pandas().sort_values("id", key=lambda ids: ids.str[10:].astype(int)).reset_index(drop=True)
    assert list(rows["id"]) == [f"audiocaps-{100 + i}" for i in range(10)]
    assert list(rows["caption"]) == [" ".join(c.split()) for c in captions]
    assert set(rows["source"]) == {"audiocaps"} and set(rows["modality"]) == {"text"}
    assert rows["url"].isna().all()

    # The vectors are exactly what the encoders give: CLIP raw, CLAP as AudioLDM consumes it.
    clip, clap = encoders
    np.testing.assert_allclose(np.stack(rows["clip"]), clip.encode_texts(list(rows["caption"])), atol=1e-5)
    np.testing.assert_allclose(np.stack(rows["clap"]), clap.encode(list(rows["caption"])), atol=1e-5)
    assert not np.allclose(np.linalg.norm(np.stack(rows["clip"]), axis=1), 1.0)

    stats = json.loads((output / "stats.json").read_text())
    assert stats["input_rows"] == 13 and stats["rows"] == 10 and stats["rows_written"] == 10
    assert stats["failures"] == {"empty_caption": 2, "duplicate_id": 1}
    assert stats["truncated_captions"] == {"characters": 0, "clip": 1, "clap": 1}
    assert {"clip", "clap", "write"} <= set(stats["stages"])
    assert all(stage["rows_per_s"] > 0 for stage in stats["stages"].values())
    for name in ("clip", "clap"):
        assert Image.open(output / f"{name}_norms.png").format == "PNG"


def test_resume_computes_only_missing_rows_exactly_once(tmp_path, ray_session):
    _audiocaps(tmp_path / "ac.csv", 12)
    output = tmp_path / "pairs"
    args = ["--source", "audiocaps", "--input", str(tmp_path / "ac.csv"), "--output", str(output),
            "--rows-per-part", "3"]
    assert _embed(*args) == 1  # the helper's bad rows
    parts = sorted(glob.glob(str(output / "part-*.parquet")))
    assert len(parts) >= 3
    # An interrupted run: some parts never landed, and a killed writer left its temporary file behind.
    lost = parts[:2]
    lost_ids = set(read_pairs(str(output)).column("id").to_pylist()) - {
        i for p in parts[2:] for i in pq.read_table(p, columns=["id"]).column("id").to_pylist()}
    for part in lost:
        os.remove(part)
    (output / ".part-dead.parquet.1234.tmp").write_bytes(b"half a file")

    assert _embed(*args) == 1  # the helper's bad rows
    stats = json.loads((output / "stats.json").read_text())
    assert stats["rows_already_done"] == 12 - len(lost_ids)
    assert stats["rows_written"] == len(lost_ids)
    ids = read_pairs(str(output), columns=["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 12

    # Nothing left: a third run writes nothing and keeps every row once.
    assert _embed(*args) == 1  # the helper's bad rows
    assert json.loads((output / "stats.json").read_text())["rows_written"] == 0
    assert len(read_pairs(str(output), columns=["id"])) == 12


def _jpeg(color, size) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def cc_shards(http_root, tmp_path_factory):
    """`i2a fetch` output of a CC table: 6 good images (one URL twice, one without caption), 1 dead URL.

    One stored JPEG is then corrupted inside its tar, as a damaged shard would be.
    """
    folder, base = http_root
    (folder / "embed").mkdir(exist_ok=True)
    urls = []
    for i in range(5):
        (folder / "embed" / f"img{i}.jpg").write_bytes(_jpeg((50 * i, 80, 160), (60 + 10 * i, 40)))
        urls.append(f"{base}/embed/img{i}.jpg")
    root = tmp_path_factory.mktemp("cc")
    lines = [f"picture {i}\t{url}" for i, url in enumerate(urls[:4])]
    lines += [f"picture again\t{urls[0]}", f"\t{urls[4]}", f"dead\t{base}/embed/missing.jpg"]
    (root / "cc.tsv").write_text("\n".join(lines) + "\n")
    shards = root / "shards"
    assert main(["fetch", "--source", "cc", "--input", str(root / "cc.tsv"), "--output", str(shards),
                 "--preset", "tiny", "--processes", "1", "--threads", "4", "--shard-size", "4"]) == 1  # the dead URL
    # Corrupt picture 3's JPEG in place (same tar layout, broken bytes).
    meta = pq.read_table(glob.glob(str(shards / "*.parquet"))).to_pandas()
    key, = meta.loc[meta["caption"] == "picture 3", "key"]
    tar_path = next(p for p in glob.glob(str(shards / "*.tar")) if f"{key}.jpg" in tarfile.open(p).getnames())
    with tarfile.open(tar_path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(tar_path, "w") as tar:
        for member, data in members:
            data = data[:len(data) // 2] if member.name == f"{key}.jpg" else data
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return shards, urls


def test_images_to_s3(cc_shards, s3_bucket, ray_session, encoders):
    shards, urls = cc_shards
    output = f"{s3_bucket}/pairs/cc"
    # 1: an empty caption, a duplicate and a corrupt image failed here (the dead URL was fetch's failure).
    assert _embed("--source", "images", "--input", str(shards), "--output", output) == 1

    table = read_pairs(output)
    assert table.schema.equals(PAIR_SCHEMA)
    rows = table.to_pandas().sort_values("caption").reset_index(drop=True)
    assert list(rows["caption"]) == ["picture 0", "picture 1", "picture 2"]
    assert list(rows["url"]) == urls[:3]
    assert set(rows["source"]) == {"cc"} and set(rows["modality"]) == {"image"}
    assert rows["id"].is_unique

    stats = json.loads(storage.read_text(f"{output}/stats.json"))
    assert stats["rows"] == 3
    assert stats["failures"] == {"fetch_failed_to_download": 1, "empty_caption": 1, "duplicate_id": 1,
                                 "image_corrupt": 1}
    assert {"read", "decode", "clip", "clap", "write"} <= set(stats["stages"])
    assert storage.exists(f"{output}/clip_norms.png") and storage.exists(f"{output}/clap_norms.png")

    # CLIP saw the stored image through the same preprocessing as ClipEncoder.encode_images.
    clip, clap = encoders
    stored = {}
    for tar_path in glob.glob(str(shards / "*.tar")):
        with tarfile.open(tar_path) as tar:
            names = tar.getnames()
            for name in names:
                if name.endswith(".json"):
                    meta = json.loads(tar.extractfile(name).read())
                    stored[meta["url"]] = tar.extractfile(name[:-5] + ".jpg").read()
    expected = clip.encode_images([Image.open(io.BytesIO(stored[url])) for url in rows["url"]])
    np.testing.assert_allclose(np.stack(rows["clip"]), expected, atol=1e-4)
    np.testing.assert_allclose(np.stack(rows["clap"]), clap.encode(list(rows["caption"])), atol=1e-5)


def test_decode_stage_matches_clip_preprocessing(encoders):
    """The CPU decode stage + the actor's normalisation equal open_clip's own transform on odd-sized images."""
    clip, _ = encoders
    pictures = [Image.new("RGB", (70, 45), (200, 30, 90)),
                Image.effect_mandelbrot((37, 81), (-2, -1.5, 1, 1.5), 60).convert("RGB")]
    data = []
    for picture in pictures:
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        data.append(buffer.getvalue())
    batch = {"id": np.array(["a", "b", "c"], object), "caption": np.array(["x", "y", "z"], object),
             "url": np.array(["a.png", "b.png", "c.png"], object),
             "image": np.array(data + [b"not an image"], object)}
    decoded = decode_images(batch, clip.image_size)
    assert list(decoded["error"]) == ["", "", "image_not_image"]
    encoder = PairEncoder(TINY, "image", batch_size=4, device="cpu")
    out = encoder(decoded)
    np.testing.assert_allclose(out["clip"][:2], clip.encode_images(pictures), atol=1e-5)
    assert not out["clip"][2].any()


def test_embed_errors_name_the_input(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("id,text\n1,hello\n")
    assert _embed("--source", "audiocaps", "--input", str(tmp_path / "bad.csv"), "--output", str(tmp_path / "o")) == 2
    assert "bad.csv: not an AudioCaps CSV: missing column(s) audiocap_id, caption" in capsys.readouterr().err
    assert _embed("--source", "images", "--input", str(tmp_path), "--output", str(tmp_path / "o")) == 2
    assert "no webdataset shards (*.tar) found" in capsys.readouterr().err


def test_fetch_to_s3_then_embed_from_s3(http_root, s3_bucket, ray_session, tmp_path):
    folder, base = http_root
    (folder / "s3").mkdir(exist_ok=True)
    lines = []
    for i in range(3):
        (folder / "s3" / f"p{i}.jpg").write_bytes(_jpeg((90 * i, 20, 20), (50, 50)))
        lines.append(f"{base}/s3/p{i}.jpg,photo {i}")
    (tmp_path / "t.csv").write_text("link,text\n" + "\n".join(lines) + "\n")
    shards = f"{s3_bucket}/shards"
    assert main(["fetch", "--source", "table", "--input", str(tmp_path / "t.csv"), "--url-col", "link",
                 "--caption-col", "text", "--output", shards, "--preset", "tiny", "--processes", "1",
                 "--threads", "2"]) == 0
    output = f"{s3_bucket}/pairs"
    assert _embed("--source", "images", "--input", shards, "--output", output) == 0
    rows = read_pairs(output).to_pandas().sort_values("caption")
    assert list(rows["caption"]) == ["photo 0", "photo 1", "photo 2"]
    assert set(rows["source"]) == {"table"}
    assert json.loads(storage.read_text(f"{output}/stats.json"))["failures"] == {}


def test_jobs_parse_the_cli_arguments():
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for job, flag in (("fetch", "--distributor"), ("embed", "--gpus-per-actor")):
        result = subprocess.run([sys.executable, os.path.join(root, "jobs", f"{job}.py"), "--help"],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and flag in result.stdout, result.stderr


def test_resume_with_other_models_is_refused_not_mixed(tmp_path, ray_session, capsys):
    from i2a_core.cli import main

    captions = tmp_path / "captions.csv"
    captions.write_text("audiocap_id,youtube_id,start_time,caption\n1,a,0,rain on a roof\n2,b,0,a dog barks\n")
    argv = ["embed", "--preset", "tiny", "--source", "audiocaps", "--input", str(captions),
            "--output", str(tmp_path / "pairs")]
    assert main(argv) == 0
    assert main([*argv, "--audioldm", "tiny:audioldm", "--clip-pretrained", "other"]) == 2
    assert "an earlier run wrote it with other settings (clip_pretrained None -> 'other')" in capsys.readouterr().err


def _sparse_member(name: str, size: int) -> bytes:
    """A GNU sparse tar header for a member of `size` bytes that are all hole: 512 bytes in the tar."""
    info = tarfile.TarInfo(name)
    info.size = 0
    header = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
    octal = (lambda n: b"%011o\0" % n if n < 8**11 else b"%012o" % n)
    header[156:157] = b"S"  # old GNU sparse
    header[386:398], header[398:410] = octal(size), octal(0)  # one map entry: no data, at the very end
    header[483:495] = octal(size)  # the member's real size
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def test_a_sparse_tar_member_claiming_gigabytes_is_refused_before_it_is_read(tmp_path):
    from i2a_core.jobs.embed import read_images

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for key in ("a", "c"):
            data = _jpeg((200, 40, 40), (32, 32))
            member = tarfile.TarInfo(f"{key}.jpg")
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    good = buffer.getvalue()
    first_end = 512 + 512 * -(-len(_jpeg((200, 40, 40), (32, 32))) // 512)
    # A 10 KB shard: a.jpg, then b.jpg claiming 1 GiB (before: read whole, 1 GiB of zeros), then c.jpg.
    shard = good[:first_end] + _sparse_member("b.jpg", 1 << 30) + good[first_end:]
    (tmp_path / "00000.tar").write_bytes(shard)
    assert len(shard) < 12_000
    tar = str(tmp_path / "00000.tar")
    read = read_images({"tar": np.array([tar] * 3, dtype=object), "key": np.array(["a", "b", "c"], dtype=object)})
    assert list(read["error"]) == ["", "image_too_large", ""]
    assert [len(data) > 0 for data in read["image"]] == [True, False, True]
