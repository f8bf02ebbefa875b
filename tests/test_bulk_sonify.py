"""The bulk sonify job: folders, buckets and URL lists in; WAVs, a manifest and a gallery out; exactly once."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import chromium
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile
from helpers import i2a_command, image_bytes, peak_rss_mb, write_images

from i2a_core.io import listing, manifest, storage
from i2a_core.jobs.sonify import SonifyJob, run
from i2a_core.specs import GenerationSettings, ImageLimits, resolve_models
from i2a_core.stages.clips import seed_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = GenerationSettings(duration=0.5, steps=2, guidance=2.5, seed=7, batch_size=2)
LIMITS = ImageLimits(max_pixels=50 * 50, allow_private_urls=True)  # the test HTTP server is on loopback


GOOD = {"a/one.png": image_bytes(seed=1), "a/b/two.jpg": image_bytes(fmt="JPEG", seed=2),
        "three.png": image_bytes(seed=3), "three.jpg": image_bytes(fmt="JPEG", seed=4),  # same stem
        "lies.jpg": image_bytes(seed=6)}  # a PNG: decoded by content, with a warning
BAD = {"bad/text.jpg": (b"<!DOCTYPE html><html>", "not_image"),
       "bad/truncated.png": (image_bytes(seed=5)[:60], "corrupt"),
       "bad/huge.png": (image_bytes(size=(60, 60)), "too_large")}


def write_tree(root: str) -> None:
    for name, data in {**GOOD, **{k: v for k, (v, _) in BAD.items()}}.items():
        storage.write_bytes_atomic(storage.join(root, name), data)


def job(inputs, output, runner="local") -> SonifyJob:
    return SonifyJob(inputs=tuple(inputs), output=output, models=resolve_models("tiny"), settings=SETTINGS,
                     limits=LIMITS, runner=runner)


def raw_manifest(output: str) -> pa.Table:
    """Every row in every manifest file, without the reader's deduplication."""
    fs, path = storage.filesystem(manifest.directory(output))
    return pq.read_table(path, filesystem=fs)


def check_exactly_once(output: str, inputs: list[str]) -> pa.Table:
    table = raw_manifest(output)
    assert sorted(table.column("input").to_pylist()) == sorted(inputs)  # one row per input, none twice
    fs, root = storage.filesystem(output)
    wavs = sorted(p[len(root.rstrip("/")) + 1:] for p in fs.find(root) if p.endswith(".wav"))
    ok = table.filter(pa.compute.equal(table.column("status"), "ok"))
    assert wavs == sorted(ok.column("output").to_pylist())  # one WAV per ok row, nothing else
    assert not [p for p in fs.find(root) if p.endswith(".tmp")]
    return table


def test_keys_stay_inside_and_never_collide():
    assert listing.safe_key("a/b/cat.jpg") == "a/b/cat"
    for hostile in ["a/../../x.jpg", "/etc/passwd.png", "../../x.png", "a/\x00\x07b\n.png", "..\\..\\x.png",
                    ".hidden/.x.png", "./../.", ""]:
        key = listing.safe_key(hostile)
        parts = key.split("/")
        assert key and not key.startswith("/") and ".." not in parts and "." not in parts, (hostile, key)
        assert not any(p.startswith(".") for p in parts) and not any(ord(c) < 32 for c in key), (hostile, key)
        assert os.path.realpath(os.path.join("/out/audio", key)).startswith("/out/audio/")
    # Changed keys carry a hash of the original, so they cannot take a clean key's place.
    assert listing.safe_key("a/../x.jpg") != listing.safe_key("a/x.jpg")
    items = listing._with_keys([("/r/a.jpg", "a.jpg"), ("/r/a.png", "a.png"), ("/r/A.gif", "A.gif"),
                                ("/r/b.jpg", "b.jpg"), ("/r/b.jpg", "b.jpg")])
    keys = [i.key for i in items]
    assert len(items) == 4 and len({k.lower() for k in keys}) == 4 and keys[3] == "b"


def test_list_files_txt_csv_parquet(tmp_path, http_root):
    root, base_url = http_root
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "x.png").write_bytes(image_bytes())
    entries = ["img/x.png", f"{base_url}/site/y.png?size=large", "s3://bucket/k/z.jpg"]
    (tmp_path / "list.txt").write_text("# inputs\n" + "\n".join(entries) + "\n\n")
    (tmp_path / "list.csv").write_text("id,url\n" + "\n".join(f"{i},{e}" for i, e in enumerate(entries)) + "\n")
    pq.write_table(pa.table({"n": [1, 2, 3], "path": entries}), tmp_path / "list.parquet")
    host = base_url.split("://", 1)[1]
    for name in ["list.txt", "list.csv", "list.parquet"]:
        items = listing.list_inputs([str(tmp_path / name)])
        assert [i.input for i in items] == [str(tmp_path / "img" / "x.png")] + entries[1:]
        assert [i.relative for i in items] == ["img/x.png", f"{host}/site/y.png", "bucket/k/z.jpg"]


def test_folder_job_writes_audio_manifest_gallery_and_reruns_nothing(tmp_path, monkeypatch):
    write_tree(str(tmp_path / "in"))
    output = str(tmp_path / "out")
    summary = run(job([str(tmp_path / "in")], output))
    assert (summary.ok, summary.error, summary.skipped) == (len(GOOD), len(BAD), 0)

    table = check_exactly_once(output, [str(tmp_path / "in" / name) for name in {**GOOD, **BAD}])
    rows = {os.path.relpath(r["input"], tmp_path / "in"): r for r in table.to_pylist()}
    assert rows["a/one.png"]["output"] == "audio/a/one.wav" and rows["a/b/two.jpg"]["output"] == "audio/a/b/two.wav"
    assert rows["three.png"]["output"] != rows["three.jpg"]["output"]  # same stem, two clips
    for name, (_, kind) in BAD.items():
        assert (rows[name]["status"], rows[name]["error_kind"]) == ("error", kind), name
        assert rows[name]["error"].startswith(str(tmp_path / "in" / name))
    assert rows["lies.jpg"]["warning"] == "extension says JPEG but the content is PNG"
    assert rows["a/one.png"]["warning"] == ""
    for name in GOOD:
        row = rows[name]
        assert row["seed"] == seed_for(name, SETTINGS.seed)
        assert (row["steps"], row["duration"], row["translator"]) == (2, 0.5, "tiny:translator")
        assert row["generate_s"] > 0 and row["read_s"] >= 0
        audio, rate = soundfile.read(os.path.join(output, row["output"]))
        assert rate == row["sample_rate"] and len(audio) == int(0.5 * rate) and np.abs(audio).max() > 0
        assert os.path.getsize(os.path.join(output, row["thumbnail"])) > 0
        assert os.path.getsize(os.path.join(output, row["spectrogram"])) > 0
    page = open(os.path.join(output, "index.html")).read()
    assert page.count("<audio") == len(GOOD) and "a/b/two.wav" in page
    if chromium.binary() or os.environ.get("CI"):  # the job's gallery plays in a real browser (CI has one)
        errors, shown = chromium.load_page(f"file://{output}/index.html", chromium.GALLERY_REPORT)
        assert errors == [] and shown["playable"] == len(GOOD) and shown["broken"] == []

    again = run(job([str(tmp_path / "in")], output))
    assert (again.ok, again.error, again.skipped) == (0, 0, len(GOOD) + len(BAD))
    check_exactly_once(output, [str(tmp_path / "in" / name) for name in {**GOOD, **BAD}])


def test_url_list_with_404_and_retrieval_captions(tmp_path, http_root):
    """A CSV of URLs; a retrieval translator puts its captions in the manifest and gallery."""
    from i2a_core.models.tiny import CLAP_DIM, CLIP_DIM
    from i2a_core.models.translator import RetrievalTranslator

    rng = np.random.default_rng(0)
    RetrievalTranslator.from_pairs(rng.normal(size=(2, CLIP_DIM)), rng.normal(size=(2, CLAP_DIM)),
                                   ["a dog barks", "rain on a roof"], top_k=2).save(str(tmp_path / "translator"))

    root, base_url = http_root
    (root / "cat.png").write_bytes(image_bytes(seed=9))
    (tmp_path / "urls.csv").write_text(f"url\n{base_url}/cat.png\n{base_url}/missing.png\n")
    output = str(tmp_path / "out")
    bulk = SonifyJob(inputs=(str(tmp_path / "urls.csv"),), output=output,
                     models=resolve_models("tiny", translator=str(tmp_path / "translator")), settings=SETTINGS,
                     limits=LIMITS)
    assert (run(bulk).ok, run(bulk).skipped) == (1, 2)
    rows = {r["input"]: r for r in check_exactly_once(output, [f"{base_url}/cat.png", f"{base_url}/missing.png"])
            .to_pylist()}
    host = base_url.split("://", 1)[1]
    assert rows[f"{base_url}/cat.png"]["output"] == f"audio/{host}/cat.wav"
    assert sorted(rows[f"{base_url}/cat.png"]["captions"]) == ["a dog barks", "rain on a roof"]
    assert rows[f"{base_url}/missing.png"]["error_kind"] == "http_404"
    assert "a dog barks" in open(os.path.join(output, "index.html")).read()


def test_bucket_job_on_ray_matches_in_process_run(ray_session, s3_bucket):
    import boto3

    bucket = s3_bucket[len("s3://"):]
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    for name, data in {**GOOD, "a/../../evil.png": image_bytes(seed=8), "bad/text.jpg": BAD["bad/text.jpg"][0],
                       "bad/truncated.png": BAD["bad/truncated.png"][0]}.items():
        client.put_object(Bucket=bucket, Key=f"photos/{name}", Body=data)
    client.put_object(Bucket=bucket, Key="photos/notes.txt", Body=b"not listed: no image extension")
    inputs = [f"{s3_bucket}/photos/{name}" for name in [*GOOD, "a/../../evil.png", "bad/text.jpg",
                                                         "bad/truncated.png"]]

    on_ray = run(job([f"{s3_bucket}/photos"], f"{s3_bucket}/out", runner="ray"))
    assert (on_ray.ok, on_ray.error, on_ray.runner) == (len(GOOD) + 1, 2, "ray")
    table = check_exactly_once(f"{s3_bucket}/out", inputs)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert all(k.startswith(("photos/", "out/")) for k in keys)
    assert all(".." not in k.split("/") for k in keys if k.startswith("out/"))
    evil = next(r for r in table.to_pylist() if r["input"].endswith("evil.png"))
    assert evil["status"] == "ok" and evil["output"].startswith("audio/a/evil-")
    assert "out/index.html" in keys

    # The same stages in-process give the same clips: seeds come from the input key, not the runner.
    local = run(job([f"{s3_bucket}/photos"], f"{s3_bucket}/local", runner="local"))
    assert local.ok == on_ray.ok
    for row in table.to_pylist():
        if row["status"] == "ok":
            a, _ = soundfile.read(io.BytesIO(storage.read_bytes(f"{s3_bucket}/out/{row['output']}")))
            b, _ = soundfile.read(io.BytesIO(storage.read_bytes(f"{s3_bucket}/local/{row['output']}")))
            assert np.allclose(a, b, atol=1e-3), row["input"]


def test_kill_mid_run_then_rerun_processes_every_input_once(tmp_path):
    for i in range(12):
        storage.write_bytes_atomic(str(tmp_path / "in" / f"d{i % 3}" / f"img{i}.png"), image_bytes(seed=i))
    output = str(tmp_path / "out")
    command = [sys.executable, os.path.join(REPO, "jobs", "sonify.py"), "--preset", "tiny", "--input",
               str(tmp_path / "in"), "--output", output, "--runner", "local", "--batch-size", "1",
               "--duration", "0.5", "--steps", "2", "--seed", "7", "--rows-per-part", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": REPO})
    deadline = time.monotonic() + 120
    def committed_parts():  # the temp file of an atomic write is not a committed part
        folder = manifest.directory(output)
        return os.path.isdir(folder) and any(n.endswith(".parquet") and not n.startswith(".")
                                             for n in os.listdir(folder))

    while not committed_parts():
        assert process.poll() is None, process.stderr.read().decode()
        assert time.monotonic() < deadline, "no manifest part appeared"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = raw_manifest(output).num_rows
    assert 0 < done_before < 12, "the kill should land mid-run"

    summary = run(job([str(tmp_path / "in")], output))
    assert summary.skipped == done_before and summary.ok == 12 - done_before
    table = check_exactly_once(output, [str(p) for p in (tmp_path / "in").rglob("*.png")])
    assert set(table.column("status").to_pylist()) == {"ok"}
    assert all(r["seed"] == seed_for(os.path.relpath(r["input"], tmp_path / "in"), 7) for r in table.to_pylist())


def test_a_rerun_with_nothing_left_to_do_loads_no_model_and_starts_no_ray(tmp_path):
    """What is already done is known from the manifest alone: a rerun of a finished job lists, compares and
    reports, without importing torch or Ray (the check a WIT-sized rerun depends on)."""
    for i in range(3):
        storage.write_bytes_atomic(str(tmp_path / "in" / f"img{i}.png"), image_bytes(seed=i))
    argv = ["sonify-job", "--preset", "tiny", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
            "--runner", "auto", "--batch-size", "1", "--duration", "0.5", "--steps", "2"]
    code = ("import sys; from i2a_core.cli import main; code = main(sys.argv[1:]); "
            "print('heavy:', sorted(m for m in ('torch', 'ray', 'open_clip', 'diffusers') if m in sys.modules)); "
            "sys.exit(code)")
    env = {**os.environ, "PYTHONPATH": REPO}
    first = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True)
    assert first.returncode == 0 and "'torch'" in first.stdout, first.stdout + first.stderr
    again = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "3 already done of 3 inputs" in again.stdout and "heavy: []" in again.stdout, again.stdout


def test_the_driver_peak_for_200k_failing_inputs_is_within_a_fixed_margin_of_20k(tmp_path):
    """Inputs are listed, planned and committed in bounded windows: ten times the inputs, about the same driver.
    Before issue 17 the driver grew ~83 MB per 10k inputs (1.5 GB more here)."""
    peaks = {}
    for count in (20_000, 200_000):
        listing = tmp_path / f"list{count}.txt"
        listing.write_text("".join(f"{tmp_path}/missing/{i:07d}.png\n" for i in range(count)))
        peak, done = peak_rss_mb(i2a_command("sonify-job", "--preset", "tiny", "--input", str(listing), "--output",
                                             str(tmp_path / f"out{count}"), "--runner", "local"),
                                 env={**os.environ, "PYTHONPATH": REPO})
        assert done.returncode == 1, done.stderr[-3000:]  # every input failed, each an error row
        assert f"0 ok, {count} error" in done.stdout, done.stdout[-3000:]
        peaks[count] = peak
    # ~120 MB here: buffers that fill to their bound (windows, parts, groups) between 20k and 200k, then stay
    assert peaks[200_000] - peaks[20_000] < 300, peaks  # MB


@pytest.fixture
def small_disk(tmp_path):
    """A 400 KB tmpfs: a real full disk (ENOSPC) that a remount then grows. Needs root, as CI has."""
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(folder)],
                                           capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_a_full_disk_stops_the_job_in_one_line_and_a_rerun_with_space_finishes_exactly_once(tmp_path, small_disk,
                                                                                           capsys):
    from i2a_core.cli import main

    inputs = [str(p) for p in write_images(tmp_path / "in", [f"img{i:02d}.png" for i in range(30)])]
    output = str(small_disk / "out")
    argv = ["sonify-job", "--preset", "tiny", "--input", str(tmp_path / "in"), "--output", output, "--runner",
            "local", "--duration", "0.5", "--steps", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "disk full (free space and rerun)" in err and "the rerun does them again" in err and output in err, err
    assert "Traceback" not in err

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)  # space freed
    assert main(argv) == 0, capsys.readouterr().err
    table = check_exactly_once(output, inputs)
    assert set(table.column("status").to_pylist()) == {"ok"}


def test_transient_failures_are_retried_on_rerun(tmp_path, http_root):
    """A slow URL times out (transient: retried next run); a 404 and a corrupt file are final."""
    root, base_url = http_root
    (root / "later.png").write_bytes(image_bytes(seed=3))
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    (tmp_path / "urls.txt").write_text(f"{base_url}/slow/later.png\n{base_url}/gone.png\n{tmp_path}/bad.png\n")
    output = str(tmp_path / "out")
    slow_limits = ImageLimits(timeout_s=0.5, allow_private_urls=True)
    first = run(SonifyJob(inputs=(str(tmp_path / "urls.txt"),), output=output, models=resolve_models("tiny"),
                          settings=SETTINGS, limits=slow_limits))
    assert (first.ok, first.error) == (0, 3)
    again = run(SonifyJob(inputs=(str(tmp_path / "urls.txt"),), output=output, models=resolve_models("tiny"),
                          settings=SETTINGS, limits=slow_limits))
    assert (again.skipped, again.error) == (2, 1)  # only the timed-out URL was tried again
    rows = {r["input"]: r for r in manifest.read(output).to_pylist()}
    assert len(rows) == 3 and rows[f"{base_url}/slow/later.png"]["error_kind"] == "timeout"


def test_a_bare_csv_list_keeps_its_first_row(tmp_path):
    (tmp_path / "list.csv").write_text("https://example.org/a.jpg\nhttps://example.org/b.jpg\n")
    assert [item.input for item in listing.list_inputs([str(tmp_path / "list.csv")])] == \
        ["https://example.org/a.jpg", "https://example.org/b.jpg"]


def test_rerun_with_other_settings_is_refused_not_mixed(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.png").write_bytes(image_bytes())
    output = str(tmp_path / "out")
    assert run(job([str(folder)], output)).ok == 1
    other = SonifyJob(inputs=(str(folder),), output=output, models=resolve_models("tiny"),
                      settings=GenerationSettings(duration=0.5, steps=3, guidance=2.5, seed=7, batch_size=2),
                      limits=LIMITS)
    with pytest.raises(storage.OutputMismatch, match="steps 2 -> 3"):
        run(other)


def test_i2a_sonify_and_the_job_give_an_image_the_same_audio(tmp_path):
    from i2a_core.cli import main

    folder = tmp_path / "in"
    (folder / "deep").mkdir(parents=True)
    (folder / "deep" / "a.png").write_bytes(image_bytes(seed=5))
    assert run(job([str(folder)], str(tmp_path / "job"))).ok == 1
    assert main(["sonify", f"{folder}/", "--output", str(tmp_path / "cli"), "--preset", "tiny",
                 "--duration", "0.5", "--steps", "2", "--seed", "7", "--batch-size", "2"]) == 0
    job_audio, _ = soundfile.read(tmp_path / "job" / "audio" / "deep" / "a.wav")
    cli_audio, _ = soundfile.read(tmp_path / "cli" / "audio" / "deep" / "a.wav")
    np.testing.assert_allclose(cli_audio, job_audio, atol=1e-4)


# --- the runner's per-item bookkeeping ---


def test_the_committed_keys_say_new_exactly_once_across_merged_runs(monkeypatch):
    from i2a_core.runner import KeySet

    monkeypatch.setattr(KeySet, "RECENT", 16)  # many sorted runs and merges after a few hundred keys
    keys, seen = KeySet(), set()
    rng = np.random.default_rng(0)
    for _ in range(300):  # batches of 5 drawn from 600 keys: repeats within a batch, in the newest keys, in runs
        batch = [f"photos/{int(i)}.jpg" for i in rng.integers(0, 600, 5)]
        expected = []
        for key in batch:
            expected.append(key not in seen)
            seen.add(key)
        assert keys.add_new(np.array(batch, dtype=object)).tolist() == expected
    assert len(keys) == len(seen) and len(keys.runs) > 1
    assert all((np.diff(run.astype(np.float64)) > 0).all() for run in keys.runs)  # sorted, no key twice


def test_an_actor_returns_fast_batches_together_and_slow_ones_at_once():
    from i2a_core.runner import grouped

    def batches(delays):
        for i, delay in enumerate(delays):
            time.sleep(delay)
            yield {"display": np.array([f"{i}a", f"{i}b"], dtype=object), "status": np.array(["error"] * 2)}

    fast = list(grouped(batches([0.0] * 5), seconds=10.0))
    assert len(fast) == 1 and fast[0]["display"].tolist() == [f"{i}{x}" for i in range(5) for x in "ab"]
    slow = list(grouped(batches([0.0, 0.3, 0.3]), seconds=0.2))
    assert [b["display"].tolist() for b in slow] == [["0a", "0b", "1a", "1b"], ["2a", "2b"]]
    other = list(grouped([{"display": np.array(["x"])}, {"display": np.array(["y"]), "error": np.array([""])}], 10.0))
    assert len(other) == 2  # other columns are never joined
    mixed = [{"display": np.array([name]), "error": np.array([error], dtype=object)}
             for name, error in (("a", "a: missing"), ("b", "b: missing"), ("c", ""), ("d", "d: missing"))]
    assert [b["display"].tolist() for b in grouped(mixed, 10.0, failed_only=True)] == [["a", "b", "c"], ["d"]]

    def interrupted():
        yield from batches([0.0, 0.0])
        raise KeyboardInterrupt

    handed_on = []
    with pytest.raises(KeyboardInterrupt):
        for batch in grouped(interrupted(), seconds=10.0):
            handed_on.append(batch)
    assert [b["display"].tolist() for b in handed_on] == [["0a", "0b", "1a", "1b"]]  # finished work is committed


def test_a_batch_of_failed_rows_commits_beside_one_with_captions(tmp_path):
    """Equal-length caption lists (none for failed rows, k for a retrieval translator) stay one column of lists,
    so that batches concatenate in the runner and the manifest writer."""
    from i2a_core import runner
    from i2a_core.stages.clips import WriteClips

    n = 3
    failed = {"input": np.array(["a", "b", "c"], dtype=object), "key": np.array(["a", "b", "c"], dtype=object),
              "display": np.array(["a", "b", "c"], dtype=object), "seed": np.arange(n),
              "error": np.array(["a: gone"] * n, dtype=object), "error_kind": np.array(["missing"] * n, dtype=object)}
    out = WriteClips(str(tmp_path), resolve_models("tiny"), SETTINGS)(failed)
    assert out["captions"].shape == (n,)
    with_captions = {**out, "captions": np.empty(n, dtype=object)}
    with_captions["captions"][:] = [["rain", "wind"]] * n
    joined = runner._concat([out, with_captions])
    assert joined["captions"].shape == (2 * n,) and list(joined["captions"][-1]) == ["rain", "wind"]
    writer = manifest.PartWriter(str(tmp_path / "m"), manifest.SCHEMA)
    for batch in (out, with_captions):  # as the runner's Committer hands them over: the schema's columns
        writer.add({name: batch[name] for name in manifest.SCHEMA.names if name in batch})
    assert writer.flush() == 2 * n


def test_batches_larger_than_the_read_pool_are_read(tmp_path):
    """More rows in a batch than reads in flight: the read stage still fills and yields it."""
    from i2a_core.stages.images import READ_THREADS, read_images

    count = READ_THREADS + 36
    rows = {"input": np.array([str(tmp_path / f"{i}.png") for i in range(count)], dtype=object),
            "display": np.array([f"{i}.png" for i in range(count)], dtype=object),
            "error": np.array([""] * count, dtype=object), "error_kind": np.array([""] * count, dtype=object)}
    batches = list(read_images([rows], LIMITS, count + 28))
    assert [len(b["input"]) for b in batches] == [count]
