"""`i2a embed` on the one runner: AudioCaps and fetched images to CLIP/CLAP pair Parquet, on local disk and moto
S3; commits by rows and time, resumable after a kill, planned in bounded memory."""

from __future__ import annotations

import glob
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import clean_env, i2a_command, image_bytes
from PIL import Image

from i2a_core import runner
from i2a_core.cli import main
from i2a_core.io import sources, storage
from i2a_core.jobs import embed, sonify
from i2a_core.jobs.embed import PAIR_SCHEMA, EmbedConfig, read_pairs
from i2a_core.models.audioldm import ClapTextEncoder
from i2a_core.models.clip import ClipEncoder
from i2a_core.specs import PRESETS, generation_settings
from i2a_core.stages.embed import EncodePairs, ReadTarMembers

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


@pytest.fixture(scope="module")
def cc_shards(http_root, tmp_path_factory):
    """`i2a fetch` output of a CC table: 6 good images (one URL twice, one without caption), 1 dead URL.

    One stored JPEG is then corrupted inside its tar, as a damaged shard would be.
    """
    folder, base = http_root
    (folder / "embed").mkdir(exist_ok=True)
    urls = []
    for i in range(5):
        (folder / "embed" / f"img{i}.jpg").write_bytes(image_bytes(fmt="JPEG", color=(50 * i, 80, 160), size=(60 + 10 * i, 40)))
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


def _tar_shard(folder, images: dict[str, bytes], captions: dict[str, str] | None = None) -> None:
    """img2dataset's layout: 00000.tar (`<key>.jpg` members) beside 00000.parquet (key, url, caption, status)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(folder / "00000.tar", "w") as tar:
        for key, data in images.items():
            member = tarfile.TarInfo(f"{key}.jpg")
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    keys = list(images)
    pq.write_table(pa.table({"key": keys, "url": [f"http://example.invalid/{k}.jpg" for k in keys],
                             "caption": [(captions or {}).get(k, f"picture {k}") for k in keys],
                             "status": ["success"] * len(keys)}), folder / "00000.parquet")


def _pixels_by_display(chain, windows) -> dict:
    """Run the first two stages of a chain (read, decode) in this process; CLIP's input per item."""
    built = runner.BuiltChain(runner.Chain(chain.stages[:2], key=chain.key))
    out = {}
    for batch in built.run(runner.chunks(windows)):
        assert not any(batch["error"]), list(batch["error"])
        out.update(zip(batch["display"], batch["pixels"], strict=True))
    return out


def test_the_same_image_gives_identical_clip_input_through_embed_and_sonify(tmp_path, encoders):
    """Issue 15: one preprocessing. Odd sizes, a palette PNG, a grayscale JPEG and a 20:1 strip (centre-cropped
    before any resize) go through embed's stages (tar member -> DecodeImages) and sonify's (file -> DecodeImages)."""
    pictures = {"odd": image_bytes(size=(70, 45), seed=1, fmt="PNG"),
                "palette": image_bytes("P", size=(37, 81), seed=2, fmt="PNG"),
                "gray": image_bytes("L", size=(300, 200), seed=3, fmt="JPEG"),
                "strip": image_bytes(size=(400, 20), seed=4, fmt="PNG"),
                "photo": image_bytes(size=(640, 480), seed=5, fmt="JPEG", quality=85)}
    _tar_shard(tmp_path / "shards", pictures)
    config = EmbedConfig(source="images", input=str(tmp_path / "shards"), output=str(tmp_path / "pairs"),
                         models=TINY, runner="local")
    work = embed.plan(config, str(tmp_path / "embed-plan"))
    ids = {row_id: key for w in work.todo.windows() for row_id, key in zip(w["id"], w["key"], strict=True)}
    via_embed = {ids[k]: v for k, v in _pixels_by_display(embed.chain(config, "local"), work.todo.windows()).items()}

    files = tmp_path / "files"
    files.mkdir()
    for key, data in pictures.items():
        (files / f"{key}.{'jpg' if key in ('gray', 'photo') else 'png'}").write_bytes(data)
    job = sonify.SonifyJob(inputs=(str(files),), output=str(tmp_path / "sounds"), models=TINY,
                           settings=generation_settings("tiny"), runner="local")
    plans = sonify.plan(job, str(tmp_path / "sonify-plan"))
    via_sonify = {os.path.splitext(os.path.basename(k))[0]: v
                  for k, v in _pixels_by_display(sonify.image_chain(job, "local"), plans.images.windows()).items()}

    assert sorted(via_embed) == sorted(via_sonify) == sorted(pictures)
    for key in pictures:
        assert via_embed[key].dtype == np.float32 and via_embed[key].shape == via_sonify[key].shape
        np.testing.assert_array_equal(via_embed[key], via_sonify[key], err_msg=key)
    # And that input is CLIP's own preprocessing, which the encoder applies to a PIL image.
    clip, _ = encoders
    photo = Image.open(io.BytesIO(pictures["photo"])).convert("RGB")
    np.testing.assert_array_equal(via_embed["photo"], clip.preprocess(photo).numpy())


def test_encode_stage_matches_the_encoders_and_skips_failed_rows(encoders):
    clip, clap = encoders
    pictures = [Image.new("RGB", (70, 45), (200, 30, 90)),
                Image.effect_mandelbrot((37, 81), (-2, -1.5, 1, 1.5), 60).convert("RGB")]
    pixels = np.stack([clip.preprocess(p).numpy() for p in pictures] + [np.zeros_like(clip.preprocess(pictures[0]))])
    batch = {"id": np.array(["a", "b", "c"], object), "caption": np.array(["x", "y", "z"], object),
             "pixels": pixels, "error": np.array(["", "", "c: not an image"], object),
             "error_kind": np.array(["", "", "not_image"], object)}
    out = EncodePairs(TINY, "image", batch_size=4, device="cpu")(batch)
    np.testing.assert_allclose(out["clip"][:2], clip.encode_images(pictures), atol=1e-5)
    np.testing.assert_allclose(out["clap"][:2], clap.encode(["x", "y"]), atol=1e-5)
    assert not out["clip"][2].any() and not out["clap"][2].any()
    assert "pixels" not in out


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
        (folder / "s3" / f"p{i}.jpg").write_bytes(image_bytes(fmt="JPEG", color=(90 * i, 20, 20), size=(50, 50)))
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
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for key in ("a", "c"):
            data = image_bytes(fmt="JPEG", color=(200, 40, 40), size=(32, 32))
            member = tarfile.TarInfo(f"{key}.jpg")
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    good = buffer.getvalue()
    first_end = 512 + 512 * -(-len(image_bytes(fmt="JPEG", color=(200, 40, 40), size=(32, 32))) // 512)
    # A 10 KB shard: a.jpg, then b.jpg claiming 1 GiB (before: read whole, 1 GiB of zeros), then c.jpg.
    shard = good[:first_end] + _sparse_member("b.jpg", 1 << 30) + good[first_end:]
    (tmp_path / "00000.tar").write_bytes(shard)
    assert len(shard) < 12_000
    tar = str(tmp_path / "00000.tar")
    read = ReadTarMembers()({"tar": np.array([tar] * 3, dtype=object), "key": np.array(["a", "b", "c"], dtype=object),
                             "display": np.array(["a", "b", "c"], dtype=object),
                             "error": np.array([""] * 3, dtype=object), "error_kind": np.array([""] * 3, dtype=object)})
    assert list(read["error_kind"]) == ["", "image_too_large", ""]
    assert [len(data) > 0 for data in read["data"]] == [True, False, True]


# --- planning in windows, commits by rows and time, kills, a clean machine ---


def _captions(path, count: int, start: int = 0) -> str:
    lines = ["audiocap_id,youtube_id,start_time,caption"]
    lines += [f"{start + i},yt{i},{i % 30},a dog barks while rain falls, take {start + i}" for i in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_plan_streams_windows_keeping_first_ids_and_skipping_done_ones(tmp_path, monkeypatch):
    """Windows of 4 rows: an id repeated three windows later is still a duplicate, and rows already in the
    output are dropped by their hashed ids, each counted."""
    monkeypatch.setattr(sources, "WINDOW_ROWS", 4)
    lines = ["audiocap_id,youtube_id,start_time,caption"]
    lines += [f"{i},y,0,caption {i}" for i in range(10)]
    lines += ["3,y,0,the same id again", " ,y,0,no id", "11,y,0,  ", "12,y,0,caption 12", "0,y,0,again"]
    (tmp_path / "ac.csv").write_text("\n".join(lines) + "\n")
    output = tmp_path / "pairs"
    output.mkdir()
    done = pa.table({"id": ["audiocaps-1", "audiocaps-12"]})
    pq.write_table(embed.pair_table({**{c: np.array(["x", "x"], object) for c in ("source", "modality", "caption")},
                                     "id": np.array(done.column("id").to_pylist(), object),
                                     "url": np.array(["", ""], object), "clip": np.zeros((2, 3), np.float32),
                                     "clap": np.zeros((2, 3), np.float32)}, np.ones(2, bool)),
                   output / "part-00000000000000000001-00000000.parquet")
    config = EmbedConfig(source="audiocaps", input=str(tmp_path / "ac.csv"), output=str(output), models=TINY)
    work = embed.plan(config, str(tmp_path / "plan"))
    assert len(work.todo.files) > 2  # windows, not one table
    planned = [i for w in work.todo.windows() for i in w["id"]]
    assert planned == [f"audiocaps-{i}" for i in (0, 2, 3, 4, 5, 6, 7, 8, 9)]
    assert (work.input_rows, work.already_done) == (15, 2)
    assert dict(work.failures) == {"duplicate_id": 2, "missing_id": 1, "empty_caption": 1}


PLAN_PEAK = """
import os, sys, tempfile
from i2a_core.jobs.embed import EmbedConfig, plan
from i2a_core.specs import PRESETS
with tempfile.TemporaryDirectory() as scratch:
    work = plan(EmbedConfig(source="audiocaps", input=sys.argv[1], output=sys.argv[2], models=PRESETS["tiny"].models),
                scratch)
assert work.todo.total == int(sys.argv[3]), work.todo.total
print([int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM")][0] // 1024)
"""


def test_planning_200k_captions_takes_about_the_driver_memory_of_20k(tmp_path):
    """Issue 17: the plan is read, cleaned and spilled in windows. Before: the whole table in pandas and a set of
    done ids (141 MB at 20k rows, 236 MB at 200k, 1.2 GB at 2M); the hash sets now cost 16 bytes an id."""
    peaks = {}
    for rows in (20_000, 200_000):
        csv_path = _captions(tmp_path / f"ac{rows}.csv", rows)
        done = subprocess.run([sys.executable, "-c", PLAN_PEAK, csv_path, str(tmp_path / f"out{rows}"), str(rows)],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        peaks[rows] = int(done.stdout.split()[-1])
    assert peaks[200_000] - peaks[20_000] < 40, peaks  # MB; before: 95 MB more


SLOW_ENCODER = """
import sys, time
from i2a_core.stages import embed
encode = embed.EncodePairs.__call__
embed.EncodePairs.__call__ = lambda self, batch: (time.sleep({delay}), encode(self, batch))[1]
from i2a_core.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _slow_encoder(monkeypatch, delay: float) -> None:
    encode = EncodePairs.__call__

    def slow(self, batch):
        time.sleep(delay)
        return encode(self, batch)

    monkeypatch.setattr(EncodePairs, "__call__", slow)


def test_parts_are_committed_by_time_as_well_as_by_rows(tmp_path, monkeypatch):
    """Issue 16: a part every --commit-every seconds whatever its size, so a crash loses at most that much."""
    _slow_encoder(monkeypatch, 0.4)
    captions = _captions(tmp_path / "ac.csv", 16)
    args = ["embed", "--preset", "tiny", "--source", "audiocaps", "--input", captions, "--runner", "local",
            "--batch-size", "2", "--rows-per-part", "1000"]
    assert main([*args, "--output", str(tmp_path / "by-time"), "--commit-every", "1"]) == 0
    assert main([*args, "--output", str(tmp_path / "by-rows")]) == 0  # 60 s: one part at the end
    by_time = glob.glob(str(tmp_path / "by-time" / "part-*.parquet"))
    assert 2 <= len(by_time) <= 5, by_time  # ~3.2 s of rows; before: one part per 10,000 rows
    assert len(glob.glob(str(tmp_path / "by-rows" / "part-*.parquet"))) == 1
    ids = read_pairs(str(tmp_path / "by-time"), columns=["id"]).column("id").to_pylist()
    assert sorted(ids) == sorted(read_pairs(str(tmp_path / "by-rows"), columns=["id"]).column("id").to_pylist())
    assert len(ids) == len(set(ids)) == 16


def test_a_run_killed_after_its_first_part_loses_only_uncommitted_rows_and_a_rerun_finishes_exactly_once(tmp_path):
    captions = _captions(tmp_path / "ac.csv", 60)
    output = tmp_path / "pairs"
    args = ["embed", "--preset", "tiny", "--source", "audiocaps", "--input", captions, "--output", str(output),
            "--runner", "local", "--batch-size", "4", "--rows-per-part", "4"]
    killed = subprocess.Popen([sys.executable, "-c", SLOW_ENCODER.format(delay=0.3), *args],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not glob.glob(str(output / "part-*.parquet")):
            assert killed.poll() is None, killed.stderr.read()[-2000:]
            assert time.monotonic() < deadline, "no part committed"
            time.sleep(0.05)
        killed.send_signal(signal.SIGKILL)
    finally:
        killed.kill()
        killed.wait(timeout=60)
    committed = read_pairs(str(output), columns=["id"]).column("id").to_pylist()
    assert 4 <= len(committed) < 60 and len(committed) % 4 == 0  # whole parts only: lost = the batch in flight

    assert main(args) == 0
    stats = json.loads((output / "stats.json").read_text())
    assert stats["rows_already_done"] == len(committed) and stats["rows_written"] == 60 - len(committed)
    ids = read_pairs(str(output), columns=["id"]).column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 60


def test_embed_as_the_readme_runs_it_in_a_clean_environment_starts_its_own_ray(tmp_path):
    """`i2a embed --runner ray` on a fresh machine: no RAY_* variables, no ~/.ray; it starts Ray itself."""
    _captions(tmp_path / "captions.csv", 30)
    done = subprocess.run(i2a_command("embed", "--preset", "tiny", "--source", "audiocaps", "--input", "captions.csv",
                                      "--output", "pairs", "--runner", "ray", "--batch-size", "8"),
                          cwd=tmp_path, env=clean_env(tmp_path / "home"), capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "ray: one actor per node" in done.stdout
    assert "30 pairs written" in done.stdout
    assert len(read_pairs(str(tmp_path / "pairs"), columns=["id"])) == 30


def test_ray_data_pools_embed_images_like_the_local_run(tmp_path, cc_shards, ray_session):
    """The "data" strategy (GPU clusters) on CPUs: tar readers, decoders and encoders as Ray Data actor pools."""
    shards, _ = cc_shards
    pairs = {}
    for strategy in ("local", "data"):
        config = EmbedConfig(source="images", input=str(shards), output=str(tmp_path / strategy), models=TINY,
                             batch_size=2, gpus_per_actor=0.0, cpus_per_actor=0.25)
        work = embed.plan(config, str(tmp_path / f"plan-{strategy}"))
        writer = embed.PairWriter(config.output, rows_per_part=100, every_s=60)
        tally = embed.Tally()
        runner.run(work.todo, embed.chain(config, strategy, cpus=2.0), writer, strategy=strategy,
                   chunk_size=config.batch_size, on_commit=tally.commit, log=lambda line: None)
        assert (tally.written, dict(tally.failures)) == (3, {"image_corrupt": 1})
        pairs[strategy] = read_pairs(config.output).to_pandas().sort_values("id").reset_index(drop=True)
    assert list(pairs["local"]["id"]) == list(pairs["data"]["id"])
    np.testing.assert_allclose(np.stack(pairs["local"]["clip"]), np.stack(pairs["data"]["clip"]), atol=1e-5)
