"""i2a train: data preparation and bad input, one trial's learning, the 18-trial grid on Ray, resume, S3."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from i2a_core.cli import main
from i2a_core.jobs.train import TrainConfig, train_grid
from i2a_core.models.translator import load_translator
from i2a_core.synthetic import SCHEMA, synthetic_pairs, write_synthetic
from i2a_core.training.data import load_prepared, prepare, split_of
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
