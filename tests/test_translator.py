"""Translators: the thesis MLP, safetensors round trips (local and S3), and clear errors for bad ones."""

import json

import numpy as np
import pytest
import torch

from i2a_core.models.translator import MLPTranslator, TranslatorConfig, TranslatorError, load_translator


def make_translator(**overrides) -> MLPTranslator:
    torch.manual_seed(0)
    return MLPTranslator(TranslatorConfig(in_dim=12, out_dim=6, hidden=16, **overrides))


def test_outputs_are_unit_vectors_whatever_the_input_norm():
    out = make_translator().translate(np.random.default_rng(0).normal(size=(5, 12)) * 40)
    assert out.shape == (5, 6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_input_scale_does_not_matter():
    translator = make_translator()
    x = np.random.default_rng(1).normal(size=(3, 12)).astype(np.float32)
    np.testing.assert_allclose(translator.translate(x), translator.translate(x * 7.5), atol=1e-6)


@pytest.mark.parametrize("where", ["local", "s3"])
def test_round_trip(tmp_path, where, request):
    url = str(tmp_path / "t") if where == "local" else request.getfixturevalue("s3_bucket") + "/models/t"
    translator = make_translator(mean_shift=True, extra={"trained_on": "synthetic"})
    translator.image_mean.fill_(0.5)
    translator.save(url)
    loaded = load_translator(url)
    x = np.random.default_rng(2).normal(size=(4, 12)).astype(np.float32)
    assert loaded.config == translator.config
    np.testing.assert_array_equal(loaded.translate(x), translator.translate(x))


def test_missing_translator_names_the_path(tmp_path):
    with pytest.raises(TranslatorError, match=f"{tmp_path}/none: not a translator directory"):
        load_translator(str(tmp_path / "none"))


def test_weights_that_do_not_match_config(tmp_path):
    make_translator().save(str(tmp_path / "t"))
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    (tmp_path / "t" / "config.json").write_text(json.dumps({**config, "hidden": 99}))
    with pytest.raises(TranslatorError, match="weights do not match config.json"):
        load_translator(str(tmp_path / "t"))


def test_unknown_type(tmp_path):
    make_translator().save(str(tmp_path / "t"))
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    (tmp_path / "t" / "config.json").write_text(json.dumps({**config, "type": "magic"}))
    with pytest.raises(TranslatorError, match="unknown translator type 'magic'"):
        load_translator(str(tmp_path / "t"))


def test_dim_check_explains_the_mismatch():
    with pytest.raises(TranslatorError, match="maps 12-d CLIP to 6-d CLAP, but the encoders give 512-d CLIP"):
        make_translator().check_dims(512, 512)
    with pytest.raises(TranslatorError, match="expects CLIP vectors of dim 12"):
        make_translator().translate(np.zeros((2, 5), np.float32))
