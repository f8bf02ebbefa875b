"""`i2a quickstart --preset tiny`: the whole mission offline, every artefact in place, and a rerun resumes."""

import json
import os

import pyarrow.parquet as pq

from i2a_core.cli import main


def test_quickstart_tiny_produces_every_artefact(ray_session, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # as the README says it: a relative --output, from any directory
    out = tmp_path / "qs"
    assert main(["quickstart", "--preset", "tiny", "--output", "qs/", "--epochs", "2"]) == 0
    printed = capsys.readouterr().out
    for artefact in ("captions.csv", "pairs/stats.json", "translators/leaderboard.md", "translators/leaderboard.csv",
                     "translators/best/config.json", "translators/best/model.safetensors", "sounds/index.html"):
        assert (out / artefact).exists(), artefact
        assert str(out / artefact.split("/")[0]) in printed  # told where it went
    assert json.loads((out / "pairs" / "stats.json").read_text())["rows"] == 40
    leaderboard = (out / "translators" / "leaderboard.md").read_text()
    assert "retrieval" in leaderboard and "audiocaps-cosine-h256" in leaderboard
    # Random models say so where people look: the leaderboard, the gallery, the last lines.
    assert "meaningless" in leaderboard.split("|")[0]
    assert "random, untrained models" in (out / "sounds" / "index.html").read_text()
    assert "noise" in printed.strip().splitlines()[-1] and "meaningless" in printed.strip().splitlines()[-1]
    assert "(local)" in printed  # a handful of clips: no Ray start-up
    wavs = sorted(p.name for p in (out / "sounds" / "audio").glob("*.wav"))
    assert wavs == ["city.wav", "forest.wav", "sea.wav", "sunset.wav"]
    manifest = pq.ParquetDataset(sorted(str(p) for p in (out / "sounds" / "manifest").glob("*.parquet"))).read()
    assert manifest.column("status").to_pylist() == ["ok"] * 4

    # A rerun finds everything done and redoes nothing.
    before = {p: os.path.getmtime(p) for p in (out / "sounds" / "audio").glob("*.wav")}
    assert main(["quickstart", "--preset", "tiny", "--output", "qs", "--epochs", "2"]) == 0
    assert before == {p: os.path.getmtime(p) for p in (out / "sounds" / "audio").glob("*.wav")}


def test_quickstart_real_models_offline_says_so_at_once(tmp_path, capsys):
    assert main(["quickstart", "--output", str(tmp_path / "qs")]) == 2
    error = capsys.readouterr().err
    assert "hub is unreachable" in error and "--preset tiny" in error
    assert not (tmp_path / "qs").exists()
