"""The training-free retrieval translator: round trip, nearest caption first, explanations, use in sonify."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from i2a_core.cli import main
from i2a_core.models.translator import TRANSLATOR_CLASSES, RetrievalTranslator, TranslatorError, load_translator
from i2a_core.synthetic import synthetic_pairs, write_synthetic
from i2a_core.training.data import load_prepared, prepare, split_of
from i2a_core.training.trial import TrialSpec, run_trial


def memory(rows=50, clip_dim=32, clap_dim=16, seed=0):
    rng = np.random.default_rng(seed)
    captions = [f"caption {i}: {'ü' * (i % 3)}" for i in range(rows)]  # non-ASCII must survive the bytes
    return rng.normal(size=(rows, clip_dim)) * 7, rng.normal(size=(rows, clap_dim)), captions


def test_round_trip_and_the_true_neighbour_ranks_first(tmp_path):
    clip, clap, captions = memory()
    translator = RetrievalTranslator.from_pairs(clip, clap, captions, top_k=5, temperature=0.01)
    assert TRANSLATOR_CLASSES["retrieval"] is RetrievalTranslator
    translator.save(str(tmp_path / "retrieval"))
    loaded = load_translator(str(tmp_path / "retrieval"))
    assert isinstance(loaded, RetrievalTranslator) and loaded.config.type == "retrieval"

    queries = clip[[3, 17]] * 1.3 + 0.01  # each query is (nearly) one stored caption's CLIP vector
    np.testing.assert_allclose(loaded.translate(queries), translator.translate(queries), atol=1e-6)
    explanations = loaded.explain(queries)
    assert [e["sounds_like"][0]["caption"] for e in explanations] == [captions[3], captions[17]]
    assert len(explanations[0]["sounds_like"]) == 5
    weights = [s["weight"] for s in explanations[0]["sounds_like"]]
    assert weights == sorted(weights, reverse=True) and abs(sum(weights) - 1) < 1e-3
    # with a sharp temperature the output is the neighbour's own (unit) CLAP vector
    target = clap[3] / np.linalg.norm(clap[3])
    assert float(loaded.translate(queries[:1])[0] @ target) > 0.99


def test_weighted_average_of_the_top_k(tmp_path):
    clip, clap, captions = memory(rows=4)
    translator = RetrievalTranslator.from_pairs(clip, clap, captions, top_k=2, temperature=1.0)
    query = clip[:1]
    unit = clip / np.linalg.norm(clip, axis=1, keepdims=True)
    similarity = unit @ (query[0] / np.linalg.norm(query[0]))
    top = np.argsort(-similarity)[:2]
    weights = np.exp(similarity[top]) / np.exp(similarity[top]).sum()
    values = clap / np.linalg.norm(clap, axis=1, keepdims=True)
    expected = (weights[:, None] * values[top]).sum(axis=0)
    np.testing.assert_allclose(translator.translate(query)[0], expected / np.linalg.norm(expected), atol=1e-5)


def test_bad_memory_is_refused():
    clip, clap, captions = memory(rows=3)
    with pytest.raises(TranslatorError, match="equally many"):
        RetrievalTranslator.from_pairs(clip, clap, captions[:2])
    with pytest.raises(TranslatorError, match="top_k >= 1"):
        RetrievalTranslator.from_pairs(clip, clap, captions, top_k=0)


def test_built_from_audiocaps_rows_with_mean_shift(tmp_path):
    data = load_prepared(prepare(write_synthetic(str(tmp_path / "in"), 800), str(tmp_path / "work")))
    result = run_trial(TrialSpec("audiocaps", "retrieval", 0, kind="retrieval", top_k=5, temperature=0.05,
                                 mean_shift=True), data)
    assert result.status == "ok"
    translator = result.translator
    bank_rows = sum(len(data.splits[s].group_rows("audiocaps")) for s in ("train", "val"))
    assert len(translator.keys) == bank_rows == result.train_rows
    assert translator.config.mean_shift
    np.testing.assert_allclose(translator.image_mean.numpy(), data.image_mean)
    # each bank caption stays with its own vectors: a stored row's CLIP vector explains as its own caption
    table = synthetic_pairs(800).to_pylist()
    row = next(r for r in table if r["source"] == "audiocaps" and split_of(r["id"]) == "val")
    translator.config.mean_shift = False  # the query is a text row
    assert translator.explain(np.array([row["clip"]]))[0]["sounds_like"][0]["caption"] == row["caption"]
    translator.config.mean_shift = True
    # synthetic images carry a modality offset: shifting it away must help image rows
    assert result.metrics["image_shift_delta"]["cosine"] > 0
    assert result.metrics["all"]["r1"] > 10 / result.metrics["all"]["rows"]


def test_sonify_writes_the_captions_it_sounds_like(tmp_path, capsys):
    clip, clap, captions = memory()
    translator_dir = str(tmp_path / "retrieval")
    RetrievalTranslator.from_pairs(clip, clap, captions, top_k=3).save(translator_dir)
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (40, 40), (200, 30, 30)).save(images / "red.png")
    code = main(["sonify", "--preset", "tiny", str(images), "--translator", translator_dir,
                 "--output", str(tmp_path / "out"), "--steps", "2"])
    assert code == 0, capsys.readouterr().err
    record = json.load(open(os.path.join(tmp_path, "out", "audio", "red.json")))
    assert len(record["sounds_like"]) == 3
    assert all(s["caption"] in captions for s in record["sounds_like"])
