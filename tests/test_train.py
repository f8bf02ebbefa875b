"""i2a train: data preparation and bad input, one trial's learning, pooled scoring, the 18-trial grid on Ray,
resume, S3, failed and lost trials, stalls (a real two-node cluster whose GPU node is killed)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from cluster import LocalCluster, wait_for

from i2a_core.cli import main
from i2a_core.jobs.train import GridWatch, TrainConfig, train_grid
from i2a_core.models.translator import MLPTranslator, TranslatorConfig, load_translator
from i2a_core.raycluster import describe_wait
from i2a_core.synthetic import SCHEMA, synthetic_pairs, write_synthetic
from i2a_core.training.data import SplitArrays, load_prepared, pool_key, prepare, split_of
from i2a_core.training.scoring import PooledScores, evaluate, pooled_scores
from i2a_core.training.trial import TrialSpec, run_trial


def leaderboard(output) -> list[dict]:
    with open(os.path.join(output, "leaderboard.csv")) as f:
        return list(csv.DictReader(f))


def test_split_is_deterministic_by_id_and_near_the_fractions():
    ids = [f"row-{i}" for i in range(5000)]
    splits = [split_of(i) for i in ids]
    assert splits == [split_of(i) for i in ids]
    shares = {s: splits.count(s) / len(ids) for s in ("train", "val", "test")}
    assert abs(shares["test"] - 0.1) < 0.02 and abs(shares["val"] - 0.1) < 0.02
    # the same id lands in the same split whatever file or order it comes in
    assert [split_of(i) for i in reversed(ids)] == splits[::-1]


def test_cosine_translator_learns_a_nonlinear_map(tmp_path):
    data = load_prepared(prepare(write_synthetic(str(tmp_path / "in"), 3000), str(tmp_path / "work")))
    result = run_trial(TrialSpec("all", "cosine", 256, epochs=40, patience=5, lr=3e-3), data)
    assert result.status == "ok"
    scores = result.metrics["all"]
    chance = 1 / scores["rows"]
    assert scores["cosine"] >= 0.9
    assert scores["r1"] >= 50 * chance
    assert result.metrics["image"]["rows"] == int(data.splits["test"].is_image.sum())
    # the untrained start is far from the target: the test measures learning, not the data
    untrained = run_trial(TrialSpec("all", "cosine", 256, epochs=1, lr=1e-9), data)
    assert untrained.metrics["all"]["cosine"] < 0.5


def test_grid_of_18_trials_on_ray_then_resume(tmp_path, ray_session):
    source = write_synthetic(str(tmp_path / "in"), 600, files=2)
    output = str(tmp_path / "grid")
    config = TrainConfig(input=source, output=output, epochs=2, batch_size=64, retrieval=True)
    summary = train_grid(config)

    rows = leaderboard(output)
    assert len(rows) == 19 and all(r["status"] == "ok" for r in rows)
    assert {r["trial"] for r in rows} >= {"audiocaps-cosine-h256", "images-mse-h512", "all-contrastive-h512",
                                          "retrieval-k10"}
    image_r1 = [float(r["image_r1"]) for r in rows]
    assert image_r1 == sorted(image_r1, reverse=True)
    assert rows[0]["trial"] == summary.best and rows[0]["rank"] == "1"
    best = load_translator(os.path.join(output, "best"))
    assert best.config.in_dim == 32 and best.config.out_dim == 16
    trial_dir = os.path.join(output, "trials", "images-cosine-h256")
    assert load_translator(trial_dir).config.hidden == 256
    metrics = json.load(open(os.path.join(trial_dir, "metrics.json")))
    assert len(metrics["history"]) == 2 and os.path.getsize(os.path.join(trial_dir, "loss.png")) > 0
    for plot in ("loss_curves.png", "metrics.png"):
        assert os.path.getsize(os.path.join(output, "plots", plot)) > 0
    assert "| 1 | " in open(os.path.join(output, "leaderboard.md")).read()

    # Resume: an interrupted run left two trials unfinished; the rerun trains only those two.
    for name in ("all-mse-h256", "retrieval-k10"):
        os.remove(os.path.join(output, "trials", name, "metrics.json"))
    kept = os.path.join(output, "trials", "audiocaps-cosine-h256", "model.safetensors")
    kept_mtime = os.stat(kept).st_mtime_ns
    logs = []
    train_grid(config, log=logs.append)
    assert any("17 finished earlier" in line and "2 to run" in line for line in logs), logs
    assert os.stat(kept).st_mtime_ns == kept_mtime
    assert len(leaderboard(output)) == 19
    assert os.path.exists(os.path.join(output, "trials", "all-mse-h256", "metrics.json"))


def test_group_without_rows_is_skipped_with_the_reason(tmp_path, capsys):
    source = write_synthetic(str(tmp_path / "in"), 300, sources={"audiocaps": 1.0})
    output = str(tmp_path / "out")
    code = main(["train", "--input", source, "--output", output, "--datasets", "audiocaps,images",
                 "--losses", "cosine", "--hidden", "16", "--epochs", "1", "--no-ray"])
    assert code == 0
    rows = {r["trial"]: r for r in leaderboard(output)}
    assert rows["audiocaps-cosine-h16"]["status"] == "ok" and rows["audiocaps-cosine-h16"]["rank"] == "1"
    assert rows["images-cosine-h16"]["status"] == "skipped"
    assert "'images' has no rows" in rows["images-cosine-h16"]["reason"]
    assert not os.path.exists(os.path.join(output, "trials", "images-cosine-h16"))
    assert "images-cosine-h16: skipped" in capsys.readouterr().out


def test_a_diverging_trial_is_reported_never_saved_as_a_model(tmp_path, capsys):
    source = write_synthetic(str(tmp_path / "in"), 300)
    output = str(tmp_path / "out")
    code = main(["train", "--input", source, "--output", output, "--datasets", "all", "--losses", "mse",
                 "--hidden", "16", "--epochs", "3", "--lr", "inf", "--no-ray"])
    assert code == 1
    row = leaderboard(output)[0]
    assert row["status"] == "diverged" and "non-finite loss" in row["reason"] and row["rank"] == ""
    assert not os.path.exists(os.path.join(output, "best"))
    assert not os.path.exists(os.path.join(output, "trials", "all-mse-h16", "model.safetensors"))
    assert "best: none" in capsys.readouterr().out


def test_without_ray_a_trial_that_raises_is_marked_failed_and_the_rest_are_ranked(tmp_path, monkeypatch, capsys):
    from i2a_core.training import trial

    real = trial.train_trial

    def out_of_memory_for_mse(spec, *args, **kwargs):
        if spec.loss == "mse":
            raise RuntimeError("CUDA out of memory (a test's)")
        return real(spec, *args, **kwargs)

    monkeypatch.setattr(trial, "train_trial", out_of_memory_for_mse)
    source = write_synthetic(str(tmp_path / "in"), 300)
    output = str(tmp_path / "out")
    code = main(["train", "--input", source, "--output", output, "--datasets", "all", "--losses", "cosine,mse",
                 "--hidden", "16", "--epochs", "1", "--no-ray"])
    assert code == 1
    rows = {r["trial"]: r for r in leaderboard(output)}
    assert rows["all-cosine-h16"]["status"] == "ok" and rows["all-cosine-h16"]["rank"] == "1"
    assert rows["all-mse-h16"]["status"] == "failed" and "CUDA out of memory" in rows["all-mse-h16"]["reason"]
    assert os.path.exists(os.path.join(output, "best", "model.safetensors"))


def _write(path, table):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(table, path)
    return path


def _with_vectors(table: pa.Table, column: str, rows: dict[int, list | None]) -> pa.Table:
    values = table.column(column).to_pylist()
    for i, vector in rows.items():
        values[i] = vector
    return table.set_column(table.schema.get_field_index(column), column, pa.array(values, pa.list_(pa.float32())))


def test_nan_inf_and_wrong_dim_rows_are_skipped_and_counted(tmp_path):
    table = synthetic_pairs(400)
    table = _with_vectors(table, "clip", {0: [float("nan")] * 32, 1: [0.5] * 31, 2: None})
    table = _with_vectors(table, "clap", {3: [float("inf")] + [0.0] * 15, 4: [0.1] * 17})
    source = _write(str(tmp_path / "in" / "part.parquet"), table)
    output = str(tmp_path / "out")
    summary = train_grid(TrainConfig(input=source, output=output, datasets=("all",), losses=("mse",),
                                     hidden=(16,), epochs=2, ray=False))
    skipped = summary.stats["rows_skipped"]
    assert skipped == {"null_or_wrong_dim_clip": 2, "null_or_wrong_dim_clap": 1, "non_finite": 2}
    assert summary.stats["rows_valid"] == 395
    assert json.load(open(os.path.join(output, "data.json")))["rows_skipped"] == skipped
    model = load_translator(os.path.join(output, "best"))
    assert all(np.isfinite(p.detach().numpy()).all() for p in model.parameters())


@pytest.mark.parametrize("case, message", [
    ("no_files", "empty input (no .parquet files"),
    ("zero_rows", "empty input (no rows)"),
    ("all_bad", "no valid rows among 20"),
    ("missing_column", "missing column(s) clap"),
    ("missing_path", "no such file or folder"),
])
def test_bad_input_is_a_clear_error(tmp_path, capsys, case, message):
    folder = tmp_path / "in"
    folder.mkdir()
    if case == "zero_rows":
        _write(str(folder / "a.parquet"), SCHEMA.empty_table())
    elif case == "all_bad":
        table = synthetic_pairs(20)
        _write(str(folder / "a.parquet"), _with_vectors(table, "clap", {i: [float("nan")] * 16 for i in range(20)}))
    elif case == "missing_column":
        _write(str(folder / "a.parquet"), synthetic_pairs(20).drop(["clap"]))
    elif case == "no_files":
        (folder / "stats.json").write_text("{}")
    source = str(folder if case != "missing_path" else tmp_path / "nowhere")
    code = main(["train", "--input", source, "--output", str(tmp_path / "out"), "--no-ray"])
    assert code == 2
    assert message in capsys.readouterr().err


def test_bad_flags_are_one_line_errors(tmp_path, capsys):
    assert main(["train", "--input", "x", "--output", "y", "--losses", "cosine,hinge"]) == 2
    assert "--losses hinge: unknown" in capsys.readouterr().err


def test_input_and_output_on_s3(tmp_path, s3_bucket):
    import fsspec

    fs = fsspec.filesystem("s3")
    table = synthetic_pairs(300)
    fs.pipe_file(f"{s3_bucket}/pairs/part-0.parquet", _parquet_bytes(table))
    output = f"{s3_bucket}/grid"
    summary = train_grid(TrainConfig(input=f"{s3_bucket}/pairs", output=output, datasets=("all",),
                                     losses=("cosine",), hidden=(16,), epochs=1, retrieval=True, ray=False))
    assert summary.best in ("all-cosine-h16", "retrieval-k10")
    assert load_translator(f"{output}/best").config.out_dim == 16
    assert fs.exists(f"{output}/leaderboard.md") and fs.exists(f"{output}/trials/all-cosine-h16/metrics.json")


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def test_mean_shift_is_stored_and_its_effect_on_images_is_in_the_leaderboard(tmp_path):
    source = write_synthetic(str(tmp_path / "in"), 1500, gap=1.0)
    output = str(tmp_path / "out")
    assert main(["train", "--input", source, "--output", output, "--datasets", "audiocaps,images",
                 "--losses", "cosine", "--hidden", "64", "--epochs", "8", "--lr", "3e-3", "--mean-shift",
                 "--no-ray"]) == 0
    rows = {r["trial"]: r for r in leaderboard(output)}
    # trained on text, applied to images: removing the modality offset helps; trained on images, it hurts
    assert float(rows["audiocaps-cosine-h64"]["shift_effect_image_cosine"]) > 0.02
    assert float(rows["images-cosine-h64"]["shift_effect_image_cosine"]) < 0
    translator = load_translator(os.path.join(output, "trials", "audiocaps-cosine-h64"))
    data = json.load(open(os.path.join(output, "data.json")))
    assert translator.config.mean_shift
    assert not load_translator(os.path.join(output, "trials", "images-cosine-h64")).config.mean_shift
    np.testing.assert_allclose(translator.image_mean.numpy(), data["image_mean"], rtol=1e-6)
    np.testing.assert_allclose(translator.text_mean.numpy(), data["text_mean"], rtol=1e-6)


def test_gpus_per_trial_without_gpus_runs_on_cpu(tmp_path, ray_session):
    source = write_synthetic(str(tmp_path / "in"), 200)
    logs = []
    summary = train_grid(TrainConfig(input=source, output=str(tmp_path / "out"), datasets=("all",),
                                     losses=("cosine",), hidden=(8,), epochs=1, gpus_per_trial=0.25), log=logs.append)
    assert summary.best == "all-cosine-h8"
    assert any("no GPU, so trials run on CPU" in line for line in logs), logs


def test_prepare_streams_in_batches_with_the_same_result(tmp_path, monkeypatch):
    from i2a_core.training import data

    source = write_synthetic(str(tmp_path / "in"), 500)
    whole = load_prepared(prepare(source, str(tmp_path / "whole")))
    monkeypatch.setattr(data, "READ_BATCH_ROWS", 64)  # eight batches instead of one
    batched = load_prepared(prepare(source, str(tmp_path / "batched")))
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(whole.splits[split].clip, batched.splits[split].clip)
        np.testing.assert_array_equal(whole.splits[split].is_image, batched.splits[split].is_image)
    np.testing.assert_allclose(whole.image_mean, batched.image_mean, rtol=1e-5)
    assert whole.retrieval_bank()[2] == batched.retrieval_bank()[2]
    assert isinstance(batched.splits["train"].clip, np.memmap)  # trials page rows in, nothing is loaded whole


def test_new_input_rows_retrain_instead_of_mixing_test_splits(tmp_path):
    source = write_synthetic(str(tmp_path / "in"), 300, sources={"audiocaps": 1.0})
    output = str(tmp_path / "out")
    argv = ["train", "--input", source, "--output", output, "--datasets", "audiocaps", "--losses", "cosine",
            "--hidden", "16", "--epochs", "1", "--no-ray"]
    assert main(argv) == 0
    metrics = os.path.join(output, "trials", "audiocaps-cosine-h16", "metrics.json")
    first = json.load(open(metrics))["data"]
    assert main(argv) == 0 and json.load(open(metrics))["data"] == first  # unchanged input: kept
    write_synthetic(str(tmp_path / "in"), 400, sources={"audiocaps": 1.0})  # the pairs grew
    assert main(argv) == 0
    assert json.load(open(metrics))["data"] != first


# --- pooled retrieval scores (issue 17: R@k within fixed-size pools, linear in the test rows) ---

def _unit_rows(*rows):
    return torch.tensor(rows, dtype=torch.float32)


# Five 2-d rows, worked by hand. Targets: t0 (1,0), t1 (0,1), t2 (-1,0), t3 (0,-1), t4 (1,1)/sqrt2.
# Predictions: p0 (1,0), p1 (1,0.1), p2 (0,-1), p3 (0,-1), p4 (1,0).
HAND_TARGETS = _unit_rows([1, 0], [0, 1], [-1, 0], [0, -1], [1, 1])
HAND_PREDICTIONS = _unit_rows([1, 0], [1, 0.1], [0, -1], [0, -1], [1, 0])
HAND_COSINE = (1 + 0.1 / math.sqrt(1.01) + 0 + 1 + 1 / math.sqrt(2)) / 5


def test_pooled_recall_on_a_known_case_computed_by_hand():
    # Pools of 2: {0,1} and {2,3}; row 4 is left over, so it is scored for cosine/MSE but not ranked.
    #   p0 vs (t0 1, t1 0): rank 1.   p1 vs (t0 .995, t1 .0995): t0 beats its own t1, rank 2.
    #   p2 vs (t2 0, t3 1): rank 2.   p3 vs (t2 0, t3 1): rank 1.      ranks 1,2,2,1
    scores = pooled_scores(HAND_PREDICTIONS, HAND_TARGETS, pool_size=2)
    assert (scores["pools"], scores["ranked_rows"], scores["pool_size"], scores["rows"]) == (2, 4, 2, 5)
    assert (scores["r1"], scores["r5"], scores["r10"], scores["median_rank"]) == (0.5, 1.0, 1.0, 1.5)
    assert scores["cosine"] == pytest.approx(HAND_COSINE)
    assert scores["mse"] == pytest.approx((2 - 2 * HAND_COSINE) / 2)  # |p-t|^2 = 2 - 2cos, over 2 dims
    # One pool of all five: p0 1; p1 behind t0 and t4 (.774), 3; p2 behind t3 (t0 ties at 0, in its favour), 2;
    # p3 1; p4 behind t0, 2. Ranks 1,3,2,1,2.
    whole = pooled_scores(HAND_PREDICTIONS, HAND_TARGETS, pool_size=5)
    assert (whole["pools"], whole["ranked_rows"]) == (1, 5)
    assert (whole["r1"], whole["r5"], whole["median_rank"]) == (0.4, 1.0, 2.0)
    # Fewer rows than one pool: they are the pool, and the pool size says so.
    small = pooled_scores(HAND_PREDICTIONS, HAND_TARGETS, pool_size=1000)
    assert (small["pool_size"], small["r1"], small["median_rank"]) == (5, 0.4, 2.0)


def test_pooled_scores_are_the_same_fed_row_by_row():
    rng = np.random.default_rng(0)
    predictions, targets = torch.from_numpy(rng.normal(size=(103, 8))), torch.from_numpy(rng.normal(size=(103, 8)))
    streamed = PooledScores(10)
    for start in range(0, 103, 7):
        streamed.add(predictions[start:start + 7], targets[start:start + 7])
    assert streamed.result() == pytest.approx(pooled_scores(predictions, targets, 10))


class _ReadRecorder:
    """A test split's vectors that record the largest slice anyone read."""

    def __init__(self, array):
        self.array, self.largest = array, 0
        self.shape = array.shape

    def __len__(self):
        return len(self.array)

    def __getitem__(self, index):
        part = self.array[index]
        self.largest = max(self.largest, len(part))
        return part


def test_evaluate_streams_the_test_split_in_chunks_and_pools_consecutive_rows(tmp_path):
    data = load_prepared(prepare(write_synthetic(str(tmp_path / "in"), 3000), str(tmp_path / "work")))
    test = data.splits["test"]
    torch.manual_seed(0)
    translator = MLPTranslator(TranslatorConfig(type="mlp", in_dim=data.clip_dim, out_dim=data.clap_dim, hidden=16))
    clip, clap = _ReadRecorder(np.asarray(test.clip)), _ReadRecorder(np.asarray(test.clap))
    recorded = SplitArrays(clip=clip, clap=clap, is_audiocaps=test.is_audiocaps, is_image=test.is_image)
    metrics = evaluate(translator, recorded, pool_size=50, chunk_rows=64)
    assert clip.largest == clap.largest == 64  # never the whole split: one chunk at a time
    # the same as ranking each run of 50 consecutive test rows on its own, all at once
    with torch.no_grad():
        expected = pooled_scores(translator(torch.from_numpy(np.array(test.clip))),
                                 torch.from_numpy(np.array(test.clap)), 50)
    assert metrics["all"] == pytest.approx(expected)
    assert metrics["all"]["rows"] == len(test) and metrics["all"]["ranked_rows"] == len(test) // 50 * 50
    images = np.flatnonzero(test.is_image)
    assert metrics["image"]["rows"] == len(images) and metrics["image"]["pool_size"] == 50
    whole_chunks = evaluate(translator, test, pool_size=50)  # chunking changes nothing
    assert whole_chunks.keys() == metrics.keys()
    for key, scores in metrics.items():
        assert whole_chunks[key] == pytest.approx(scores)


def test_test_rows_are_stored_in_pool_order_whatever_the_input_order(tmp_path):
    table = synthetic_pairs(1500)
    forward = _write(str(tmp_path / "forward" / "part.parquet"), table)
    backward = _write(str(tmp_path / "backward" / "part.parquet"), table.take(np.arange(len(table))[::-1]))
    a = load_prepared(prepare(forward, str(tmp_path / "wa")))
    b = load_prepared(prepare(backward, str(tmp_path / "wb")))
    np.testing.assert_array_equal(a.splits["test"].clap, b.splits["test"].clap)
    np.testing.assert_array_equal(a.splits["test"].is_image, b.splits["test"].is_image)
    # row i of the test split is the test row with the i-th smallest pool key (a hash of its id)
    ids = [i for i in table.column("id").to_pylist() if split_of(i) == "test"]
    by_key = sorted(ids, key=pool_key)
    clap_of = dict(zip(table.column("id").to_pylist(), table.column("clap").to_pylist(), strict=True))
    np.testing.assert_allclose(a.splits["test"].clap, np.array([clap_of[i] for i in by_key]), rtol=1e-6)
    keys = np.fromfile(os.path.join(a.directory, "test.keys"), np.uint64)
    assert (np.diff(keys.astype(np.float64)) >= 0).all() and len(keys) == len(ids)


def test_leaderboard_says_the_pool_size_and_another_pool_size_rescores(tmp_path):
    source = write_synthetic(str(tmp_path / "in"), 600)
    output = str(tmp_path / "out")
    argv = ["train", "--input", source, "--output", output, "--datasets", "all", "--losses", "cosine",
            "--hidden", "16", "--epochs", "1", "--no-ray", "--pool-size", "16"]
    assert main(argv) == 0
    row = leaderboard(output)[0]
    assert row["pool_size"] == "16"
    assert "a pool of 16 test rows" in open(os.path.join(output, "leaderboard.md")).read()
    metrics = json.load(open(os.path.join(output, "trials", "all-cosine-h16", "metrics.json")))
    assert metrics["pool_size"] == 16 and metrics["metrics"]["all"]["pool_size"] == 16
    logs = []
    train_grid(TrainConfig(input=source, output=output, datasets=("all",), losses=("cosine",), hidden=(16,),
                           epochs=1, ray=False, pool_size=32), log=logs.append)
    assert any("1 to run" in line for line in logs), logs  # scores in other pools do not compare: rerun
    assert leaderboard(output)[0]["pool_size"] == "32"
    assert main(["train", "--input", source, "--output", output, "--pool-size", "1"]) == 2


def test_the_cli_and_the_grid_driver_import_no_torch():
    code = ("import sys; import i2a_core.cli.train, i2a_core.jobs.train; "
            "print(sorted(m for m in ('torch', 'ray') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --- failed, lost and stalled trials (issue 16) ---

def test_what_a_stalled_grid_waits_for_is_one_line():
    cpu_node, gpu_node = {"CPU": 2.0}, {"CPU": 2.0, "GPU": 1.0}
    assert describe_wait({"CPU": 1, "GPU": 1}, [cpu_node], [cpu_node]) == "waiting for 1 GPU; no alive node has one"
    assert describe_wait({"CPU": 4, "GPU": 0}, [cpu_node], [cpu_node]) == \
        "waiting for 4 CPUs on one node; the largest alive node has 2 CPUs"
    assert describe_wait({"CPU": 1, "GPU": 1}, [cpu_node, gpu_node], [cpu_node, {"CPU": 1.0, "GPU": 0.0}]) == \
        "waiting for 1 GPU; 1 GPU of 1 on the alive nodes are in use"
    assert describe_wait({"CPU": 1}, [], []) == "waiting for 1 CPU; no node is alive"
    assert describe_wait({"CPU": 1, "GPU": 1}, [gpu_node], [gpu_node]) == ""  # it fits now: not a resource wait

    now = [0.0]
    lines = []
    watch = GridWatch(60, {"CPU": 1}, log=lines.append, clock=lambda: now[0])
    now[0] = 59
    assert not watch.should_stop(["RUNNING", "TERMINATED"])
    watch.alive()  # an epoch reported: the clock starts again
    now[0] = 118
    assert not watch.should_stop(["RUNNING"])
    now[0] = 120
    assert watch.should_stop(["RUNNING"]) and watch.should_stop(["RUNNING"])
    assert lines == ["stalled: no trial reported for 60 s with 1 left; waiting for 1 running trial(s) that report "
                     "nothing (is an epoch longer than --stall-timeout?)"]


def test_a_trial_that_keeps_failing_is_retried_then_marked_failed_and_the_rest_are_ranked(tmp_path, ray_session,
                                                                                          capsys):
    source = write_synthetic(str(tmp_path / "in"), 300)
    output = tmp_path / "out"
    (output / "trials").mkdir(parents=True)
    (output / "trials" / "all-mse-h8").write_text("a file where the trial's folder goes: saving it fails")
    code = main(["train", "--input", source, "--output", str(output), "--datasets", "all", "--losses", "cosine,mse",
                 "--hidden", "8", "--epochs", "1"])
    out = capsys.readouterr().out
    assert code == 1
    rows = {r["trial"]: r for r in leaderboard(output)}
    assert rows["all-cosine-h8"]["status"] == "ok" and rows["all-cosine-h8"]["rank"] == "1"
    assert rows["all-mse-h8"]["status"] == "failed" and "all-mse-h8" in rows["all-mse-h8"]["reason"]
    assert "retrying (2 of 2 retries)" in out, out  # Tune's FailureConfig ran it three times in all
    assert "1 trials finished, 0 skipped, 1 failed; best: all-cosine-h8" in out


@pytest.fixture(scope="module")
def gpu_less_cluster(i2a_cache):
    """A real Ray cluster on loopback: a head with 2 CPUs and no GPU; tests add (and kill) GPU nodes."""
    with LocalCluster(head_cpus=2, head_gpus=0) as cluster:
        yield cluster


def _train_on(cluster, tmp_path, *args: str, epochs: int = 20) -> subprocess.Popen:
    source = write_synthetic(str(tmp_path / "in"), 8000)
    # 8,000 pairs, batch 32, 20 epochs: each trial trains for 4-10 s, long enough to lose its node midway.
    command = [sys.executable, "-m", "i2a_core.cli", "train", "--input", source, "--output", str(tmp_path / "out"),
               "--datasets", "all", "--losses", "cosine,mse", "--hidden", "16", "--epochs", str(epochs),
               "--patience", str(epochs), "--batch-size", "32", *args]
    return subprocess.Popen(command, env=cluster.client_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _finish(process: subprocess.Popen, timeout_s: float = 300) -> str:
    try:
        return process.communicate(timeout=timeout_s)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError("i2a train still running: " + process.communicate()[0][-3000:]) from None


def _stop(process: subprocess.Popen) -> None:
    """The test failed before `i2a train` ended: end it, and show what it said (pytest prints captured output)."""
    process.kill()
    print("i2a train said:", process.communicate()[0][-5000:])


def test_trials_lost_with_their_node_are_retried_on_a_node_that_joins(gpu_less_cluster, tmp_path):
    cluster = gpu_less_cluster
    first = cluster.add_node(cpus=2, gpus=1)
    process = _train_on(cluster, tmp_path, "--gpus-per-trial", "0.5", "--stall-timeout", "120", epochs=100)
    try:
        wait_for(lambda: process.poll() is not None or cluster.alive_actors(first), "a trial on the GPU node")
        time.sleep(3)  # both trials (half a GPU each) are training on the GPU node
        assert process.poll() is None
        cluster.kill_node(first)
        replacement = cluster.add_node(cpus=2, gpus=1)  # what an autoscaler does for a lost spot node
    except BaseException:
        _stop(process)
        raise
    out = _finish(process)
    assert process.returncode == 0, out[-3000:]
    assert "retrying (1 of 2 retries)" in out, out[-3000:]
    rows = leaderboard(tmp_path / "out")
    assert sorted((r["trial"], r["status"]) for r in rows) == [("all-cosine-h16", "ok"), ("all-mse-h16", "ok")]
    assert sorted(os.listdir(tmp_path / "out" / "trials")) == ["all-cosine-h16", "all-mse-h16"]
    for name in ("all-cosine-h16", "all-mse-h16"):  # each trained once to the end, not twice over
        assert len(json.load(open(tmp_path / "out" / "trials" / name / "metrics.json"))["history"]) == 100
    cluster.kill_node(replacement)


def test_losing_the_only_gpu_node_ends_in_a_stall_report_and_a_leaderboard(gpu_less_cluster, tmp_path):
    cluster = gpu_less_cluster
    node = cluster.add_node(cpus=2, gpus=1)
    # The second trial must still be running when its node goes: 100 epochs is 20-50 s of work.
    process = _train_on(cluster, tmp_path, "--gpus-per-trial", "1", "--stall-timeout", "10", epochs=100)
    try:
        # one trial at a time: the first finishes, then the node is lost under the second
        wait_for(lambda: process.poll() is not None or any(
            os.path.exists(tmp_path / "out" / "trials" / name / "metrics.json")
            for name in ("all-cosine-h16", "all-mse-h16")), "the first trial", 240)
        assert process.poll() is None
        cluster.wait_for_actor(node)
        time.sleep(2)
        cluster.kill_node(node)
    except BaseException:
        _stop(process)
        raise
    out = _finish(process)
    assert process.returncode == 1, out[-3000:]
    stall = "stalled: no trial reported for 10 s with 1 left; waiting for 1 GPU; no alive node has one"
    assert stall in out, out[-3000:]
    rows = leaderboard(tmp_path / "out")
    assert sorted(r["status"] for r in rows) == ["failed", "ok"]
    failed = next(r for r in rows if r["status"] == "failed")
    assert failed["reason"].startswith("stalled: ") and "no alive node has one" in failed["reason"]
    assert os.path.exists(tmp_path / "out" / "best" / "model.safetensors")
