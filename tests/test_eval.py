"""`i2a eval`: the score maths, scoring a sonify output end to end, the translator audio leaderboard, bad inputs."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest
import scipy.linalg
import soundfile
from helpers import write_images

from i2a_core import cli, refs
from i2a_core.evaluation import metrics
from i2a_core.io import storage
from i2a_core.jobs.sonify import SonifyJob
from i2a_core.jobs.sonify import run as sonify_run
from i2a_core.specs import GenerationSettings, resolve_models

SETTINGS = GenerationSettings(duration=1.0, steps=2, guidance=2.5, seed=3, batch_size=4)
# In-process runs: where the session has started Ray, `--runner auto` would use it, which only adds time here.
GENERATION = ["--preset", "tiny", "--duration", "1.0", "--steps", "2", "--seed", "3"]
TINY = [*GENERATION, "--runner", "local"]
LOCAL = ["--preset", "tiny", "--runner", "local"]


# --- the maths, on fixed vectors ---


def test_cs_is_100_times_cosine():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [3.0, 4.0]])
    b = np.array([[0.0, 2.0], [2.0, 2.0], [-3.0, -4.0]])
    assert metrics.cosine_scores(a, b) == pytest.approx([0.0, 100.0, -100.0])
    assert metrics.cosine_scores([[1.0, 2.0]], [[2.0, 1.0]])[0] == pytest.approx(100 * 4 / 5)


def test_frechet_of_a_set_with_itself_is_zero_even_when_rank_deficient():
    rng = np.random.default_rng(0)
    for rows, dims in ((200, 8), (5, 16)):  # the second: fewer clips than dimensions, singular covariance
        x = rng.normal(size=(rows, dims))
        assert metrics.frechet_between(x, x) == pytest.approx(0.0, abs=1e-8)


def test_running_gaussian_matches_all_at_once():
    x = np.random.default_rng(3).normal(size=(50, 6))
    running = metrics.GaussianAccumulator()
    for chunk in (x[:7], x[7:8], x[8:]):
        running.add(chunk)
    mean, cov = running.stats()
    assert np.allclose(mean, x.mean(axis=0)) and np.allclose(cov, np.cov(x, rowvar=False))


def test_frechet_matches_the_closed_form():
    # Diagonal Gaussians: ||mu1-mu2||^2 + sum (s1 + s2 - 2 sqrt(s1 s2)) = |dmu|^2 + sum (sqrt s1 - sqrt s2)^2.
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = 1 + 4 + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert metrics.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected)
    # Full covariances: the textbook formula with scipy's sqrtm.
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    c1, c2 = a @ a.T + np.eye(4), b @ b.T + np.eye(4)
    textbook = np.sum((mu1[:1] - mu2[:1]) ** 2) + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
    assert metrics.frechet_distance(mu1[:1].repeat(4), c1, mu2[:1].repeat(4), c2) == pytest.approx(
        textbook + 3 * (mu1[0] - mu2[0]) ** 2)


def test_bootstrap_interval_contains_the_mean():
    values = np.random.default_rng(2).normal(10, 3, 50)
    stats = metrics.bootstrap_mean(list(values) + [None, float("nan")])
    assert stats["n"] == 50 and stats["mean"] == pytest.approx(values.mean())
    assert stats["ci95"][0] < stats["mean"] < stats["ci95"][1]
    assert metrics.bootstrap_mean([]) == {"mean": None, "ci95": None, "n": 0}


# --- end to end on a bulk sonify output ---


@pytest.fixture(scope="module")
def sonified(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    write_images(root / "images", ["cat.png", "dog.png", "sea.png"])
    out = root / "out"
    sonify_run(SonifyJob(inputs=(str(root / "images"),), output=str(out), models=resolve_models("tiny"),
                         settings=SETTINGS, runner="local"), log=lambda line: None)
    (root / "captions.csv").write_text("key,caption\ncat.png,a cat purrs\ndog,a dog barks\n")
    return root


def read_scores(folder) -> list[dict]:
    with open(os.path.join(folder, "scores.csv")) as f:
        return list(csv.DictReader(f))


def test_scores_a_bulk_output_with_fad_zero_against_itself(sonified, tmp_path, monkeypatch):
    monkeypatch.chdir(sonified)  # relative paths, as a user types them
    rc = cli.main(["eval", *LOCAL, "--input", "out", "--output", "ev", "--reference-audio", "out/audio",
                   "--captions", "captions.csv"])
    assert rc == 0
    summary = json.loads((sonified / "ev" / "summary.json").read_text())
    assert summary["clips"] == 3 and summary["errors"] == 0 and "meaningless" in summary["warning"]
    assert summary["fad"] == pytest.approx(0.0, abs=1e-6) and summary["fd"] == pytest.approx(0.0, abs=1e-6)
    assert summary["cs"]["n"] == 3 and summary["clap_score"]["n"] == 2  # sea.png has no caption
    assert summary["protocol"]["name"] == "i2a" and summary["protocol"]["resampler"]["implementation"] == "resampy"
    assert summary["scoring_models"]["resampler"].startswith("resampy kaiser_best")
    rows = {os.path.basename(r["input"]): r for r in read_scores(sonified / "ev")}
    assert all(-100 <= float(r["cs"]) <= 100 for r in rows.values())
    assert rows["sea.png"]["clap_score"] == "" and rows["cat.png"]["caption"] == "a cat purrs"
    for name in ("cs_hist.png", "clap_score_hist.png", "index.html"):
        assert (sonified / "ev" / name).stat().st_size > 0
    # The gallery links back to the sonify output's files, and they exist.
    page = (sonified / "ev" / "index.html").read_text()
    assert 'src="../out/audio/cat.wav"' in page and (sonified / "ev" / "../out/audio/cat.wav").exists()


def test_bad_clips_are_counted_error_rows(sonified, tmp_path, capsys):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(sonified / "out", out)
    (out / "audio" / "cat.wav").unlink()  # in the manifest, gone from disk
    (out / "audio" / "dog.wav").write_bytes(b"RIFF not really")  # unreadable
    # The manifest's image for sea.png is gone: its audio still scores, without CS, saying why.
    moved = sonified / "images" / "sea.png"
    hidden = tmp_path / "sea-hidden.png"
    shutil.move(moved, hidden)
    try:
        rc = cli.main(["eval", *LOCAL, "--input", str(out), "--output", str(tmp_path / "ev")])
    finally:
        shutil.move(hidden, moved)
    assert rc == 1
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["errors"] == 2 and summary["scored"] == 1 and summary["cs"]["n"] == 0
    rows = {os.path.basename(r["input"]): r for r in read_scores(tmp_path / "ev")}
    assert "cannot read" in rows["cat.png"]["error"] and "not readable audio" in rows["dog.png"]["error"]
    assert rows["dog.png"]["error_kind"] == "unreadable_audio", rows["dog.png"]
    assert rows["cat.png"]["error_kind"] and rows["sea.png"]["error_kind"] == ""
    assert rows["sea.png"]["cs"] == "" and rows["sea.png"]["note"].startswith("no CS:")
    assert "sea.png" in rows["sea.png"]["note"]
    assert "error:" in capsys.readouterr().out


def test_empty_reference_folder_is_a_clear_error(sonified, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = cli.main(["eval", *LOCAL, "--input", str(sonified / "out"), "--output", str(tmp_path / "ev"),
                   "--reference-audio", str(tmp_path / "empty")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--reference-audio" in err[0] and "0 audio files" in err[0]


def test_sonify_sidecars_and_text_prompts(tmp_path):
    write_images(tmp_path / "images", ["owl.png"])
    assert cli.main(["sonify", *GENERATION, str(tmp_path / "images"), "--text", "rain on a roof",
                     "--output", str(tmp_path / "out")]) == 0
    assert cli.main(["eval", *LOCAL, "--input", str(tmp_path / "out"),
                     "--output", str(tmp_path / "ev")]) == 0
    rows = {r["input"].rsplit("/", 1)[-1]: r for r in read_scores(tmp_path / "ev")}
    assert rows["owl.png"]["cs"] != "" and rows["owl.png"]["clap_score"] == ""
    assert rows["rain on a roof"]["clap_score"] != "" and rows["rain on a roof"]["note"].startswith("no CS")


# --- the translator comparison ---


def test_two_translators_rank_and_a_rerun_resumes(tmp_path, capsys):
    import torch

    from i2a_core.models import tiny
    from i2a_core.models.translator import MLPTranslator, TranslatorConfig

    torch.manual_seed(5)
    MLPTranslator(TranslatorConfig(type="mlp", in_dim=tiny.CLIP_DIM, out_dim=tiny.CLAP_DIM, hidden=8)).save(
        str(tmp_path / "other"))
    write_images(tmp_path / "images", ["a.png", "b.png"])
    (tmp_path / "captions.csv").write_text("a.png,wind in trees\nb.png,a bell rings\n")
    reference = tmp_path / "reference"
    reference.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        soundfile.write(reference / f"real{i}.wav", rng.normal(0, 0.1, 24000).astype(np.float32), 24000)
    args = ["eval", *TINY, "--images", str(tmp_path / "images"), "--translators",
            f"{refs.local_model('tiny:translator')},{tmp_path / 'other'}", "--captions", str(tmp_path / "captions.csv"),
            "--text", "--reference-audio", str(reference), "--output", str(tmp_path / "ev")]
    assert cli.main(args) == 0
    with open(tmp_path / "ev" / "audio_leaderboard.csv") as f:
        board = list(csv.DictReader(f))
    assert len(board) == 3 and {r["name"] for r in board} == {"translator", "other", "text-audioldm"}
    assert [r["rank"] for r in board] == ["1", "2", "3"]
    assert [float(r["cs"]) for r in board] == sorted((float(r["cs"]) for r in board), reverse=True)
    assert (tmp_path / "ev" / "audio_leaderboard.md").read_text().count("\n| ") == 4
    assert all(float(r["fad"]) > 0 and float(r["fd"]) > 0 for r in board)
    out = capsys.readouterr().out
    assert out.count("3 reference clips (embedded by an earlier row)") == 2  # embedded once, for the first row
    assert (tmp_path / "ev" / "audio_leaderboard.png").stat().st_size > 0
    wavs = sorted((tmp_path / "ev" / "sonify").rglob("*.wav"))
    assert len(wavs) == 6
    stamps = {w: w.stat().st_mtime_ns for w in wavs}
    capsys.readouterr()
    assert cli.main(args) == 0  # rerun: nothing regenerated
    out = capsys.readouterr().out
    assert out.count("2 already done, 0 to sonify") == 3  # two translators and the text row
    assert {w: w.stat().st_mtime_ns for w in wavs} == stamps


def test_real_scoring_models_offline_fail_fast_naming_the_model(sonified, tmp_path, capsys):
    rc = cli.main(["eval", "--input", str(sonified / "out"), "--output", str(tmp_path / "ev")])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and ("CLIP" in err[0] or "Wav2CLIP" in err[0]) and "--preset tiny" in err[0]


def test_ray_actors_give_the_same_scores_as_in_process(sonified, tmp_path, ray_session):
    common = ["eval", "--preset", "tiny", "--input", str(sonified / "out"), "--captions",
              str(sonified / "captions.csv"), "--reference-audio", str(sonified / "out" / "audio")]
    assert cli.main([*common, "--runner", "local", "--output", str(tmp_path / "local")]) == 0
    assert cli.main([*common, "--runner", "ray", "--score-batch-size", "2", "--output", str(tmp_path / "ray")]) == 0
    local, ray = read_scores(tmp_path / "local"), read_scores(tmp_path / "ray")
    assert [r["input"] for r in local] == [r["input"] for r in ray]
    for name in ("cs", "clap_score"):  # batch layouts differ, so float sums differ in the last digits
        assert [float(r[name] or "nan") for r in ray] == pytest.approx([float(r[name] or "nan") for r in local],
                                                                      abs=1e-2, nan_ok=True)
    assert json.loads((tmp_path / "ray" / "summary.json").read_text())["fad"] == pytest.approx(0.0, abs=1e-6)


def test_real_architectures_have_the_released_checkpoints_parameter_names():
    """Guard: i2a's own definitions must keep the names and shapes the released weights are stored under."""
    import torch

    from i2a_core.evaluation import audio_models

    with torch.device("meta"):  # shapes only: no memory for the full-size models
        wav2clip = audio_models.Wav2Clip().state_dict()
        vggish = audio_models.Vggish().state_dict()
        cnn14 = audio_models.Cnn14().state_dict()
    shapes = {**{f"w:{k}": tuple(v.shape) for k, v in wav2clip.items()},
              **{f"v:{k}": tuple(v.shape) for k, v in vggish.items()},
              **{f"c:{k}": tuple(v.shape) for k, v in cnn14.items()}}
    assert shapes["w:audio_encoder.conv1.weight"] == (64, 1, 7, 7)
    assert shapes["w:audio_encoder.layer4.0.downsample.1.running_var"] == (512,)
    assert shapes["w:audio_transform.sequential.3.weight"] == (512, 512)
    assert len(wav2clip) == 124  # ResNet18 (incl. BatchNorm counters) + the 2-layer MLP
    assert shapes["v:features.0.weight"] == (64, 1, 3, 3) and shapes["v:features.13.weight"] == (512, 512, 3, 3)
    assert shapes["v:embeddings.0.weight"] == (4096, 512 * 4 * 6) and shapes["v:embeddings.4.weight"] == (128, 4096)
    assert len(vggish) == 18
    assert shapes["c:bn0.running_mean"] == (64,) and shapes["c:conv_block6.conv2.weight"] == (2048, 2048, 3, 3)
    assert shapes["c:fc1.weight"] == (2048, 2048) and shapes["c:fc_audioset.weight"] == (527, 2048)
    # The released PANNs file also stores its STFT and mel weights, which i2a recomputes and drops.
    kept = audio_models.Cnn14.checkpoint_keys({"model": {"logmel_extractor.melW": 0, "fc1.weight": 1}})
    assert kept == {"fc1.weight": 1}


def test_grid_top_trials_join_the_audio_leaderboard(tmp_path):
    from i2a_core.models import tiny
    from i2a_core.models.translator import MLPTranslator, TranslatorConfig

    grid = tmp_path / "grid"
    for seed, name in enumerate(["best", "second", "broken"]):
        import torch

        torch.manual_seed(seed)
        if name != "broken":
            MLPTranslator(TranslatorConfig(type="mlp", in_dim=tiny.CLIP_DIM, out_dim=tiny.CLAP_DIM, hidden=8)).save(
                str(grid / "trials" / name))
    (grid / "leaderboard.csv").write_text("rank,trial,status,image_r1,cosine\n1,best,ok,0.5,0.7\n"
                                          "2,second,ok,0.25,0.6\n,broken,error,,\n")
    write_images(tmp_path / "images", ["a.png"])
    assert cli.main(["eval", *TINY, "--images", str(tmp_path / "images"), "--grid", str(grid), "--top", "1",
                     "--output", str(tmp_path / "ev")]) == 0
    with open(tmp_path / "ev" / "audio_leaderboard.csv") as f:
        board = list(csv.DictReader(f))
    assert [(r["name"], r["embedding_image_r1"]) for r in board] == [("best", "0.5")]


def test_bucket_output_scored_into_the_same_bucket(tmp_path, s3_bucket):
    write_images(tmp_path / "images", ["a.png", "b.png"])
    sonify_run(SonifyJob(inputs=(str(tmp_path / "images"),), output=f"{s3_bucket}/out", models=resolve_models("tiny"),
                         settings=SETTINGS, runner="local"), log=lambda line: None)
    assert cli.main(["eval", *LOCAL, "--input", f"{s3_bucket}/out", "--output", f"{s3_bucket}/ev",
                     "--reference-audio", f"{s3_bucket}/out/audio"]) == 0
    summary = json.loads(storage.read_text(f"{s3_bucket}/ev/summary.json"))
    assert summary["clips"] == 2 and summary["fad"] == pytest.approx(0.0, abs=1e-6)
    page = storage.read_text(f"{s3_bucket}/ev/index.html")
    assert 'src="../out/audio/a.wav"' in page and storage.exists(f"{s3_bucket}/out/audio/a.wav")


def test_a_16k_cnn14_checkpoint_is_read_as_the_16k_variant():
    from i2a_core.evaluation import protocols, scorers

    sixteen = scorers.released_config("cnn14", protocols.CNN14_16K_URL)
    assert (sixteen.sample_rate, sixteen.window, sixteen.hop, sixteen.fmax) == (16000, 512, 160, 8000.0)
    assert scorers.released_config("cnn14", protocols.CNN14_URL).sample_rate == 32000
    assert scorers.released_config("cnn14", "/weights/Cnn14_mAP=0.431.pth").window == 1024
    assert protocols.ScoringModels().fd == protocols.CNN14_16K_URL  # AudioLDM's FD model by default
