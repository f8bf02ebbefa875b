"""Encoders: right dims and norms, CLIP's own preprocessing, batching that does not change results."""

import numpy as np
import pytest
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from PIL import Image
from torchvision import transforms

from i2a_core.models.audioldm import ClapTextEncoder
from i2a_core.models.clip import ClipEncoder, ClipSpec
from i2a_core.models.tiny import CLAP_DIM, CLIP_DIM
from i2a_core.refs import ModelUnavailable


@pytest.fixture(scope="module")
def clip():
    return ClipEncoder(ClipSpec("tiny:clip", None), batch_size=2)


def test_clip_dims_and_raw_norms(clip):
    images = [Image.new("RGB", (40 + i, 30), (i * 40, 10, 200)) for i in range(5)]
    image_vectors = clip.encode_images(images)
    text_vectors = clip.encode_texts(["a dog", "rain on a roof", "a train"])
    assert image_vectors.shape == (5, CLIP_DIM) and text_vectors.shape == (3, CLIP_DIM)
    assert image_vectors.dtype == np.float32
    # CLIP outputs are not unit-norm; the translator normalises them, the embed job stores them raw.
    assert not np.allclose(np.linalg.norm(image_vectors, axis=1), 1.0, atol=1e-3)


def test_clip_batches_do_not_change_results(clip):
    images = [Image.new("RGB", (32, 32), (i * 50, 0, 0)) for i in range(3)]
    together = clip.encode_images(images)
    alone = np.concatenate([clip.encode_images([image]) for image in images])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_clip_uses_clips_own_normalisation_not_imagenets(clip):
    normalize = [t for t in clip.preprocess.transforms if isinstance(t, transforms.Normalize)]
    assert len(normalize) == 1
    assert tuple(normalize[0].mean) == pytest.approx(OPENAI_DATASET_MEAN)
    assert tuple(normalize[0].std) == pytest.approx(OPENAI_DATASET_STD)
    assert clip.image_size == 32


def test_clap_targets_are_unit_vectors():
    clap = ClapTextEncoder.load("tiny:audioldm")
    vectors = clap.encode(["a dog barks", "", "rain " * 200])
    assert vectors.shape == (3, CLAP_DIM)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert clap.truncated(["short", "rain " * 200]).tolist() == [False, True]


def test_offline_hub_fails_fast_and_says_what_to_do():
    # conftest sets HF_HUB_OFFLINE=1: the real models must fail at once, naming the model and the flag.
    with pytest.raises(ModelUnavailable, match=r"CLIP ViT-B-32/openai.*--clip-pretrained"):
        ClipEncoder(ClipSpec("ViT-B-32", "openai"))
    with pytest.raises(ModelUnavailable, match=r"AudioLDM 'cvssp/audioldm-s-full-v2'.*--audioldm DIR"):
        ClapTextEncoder.load("cvssp/audioldm-s-full-v2")


def test_unknown_local_paths_are_not_sent_to_the_hub(tmp_path):
    with pytest.raises(ModelUnavailable, match="no such directory"):
        ClapTextEncoder.load(str(tmp_path / "missing"))
    with pytest.raises(ModelUnavailable, match="no such directory"):
        ClipEncoder(ClipSpec(f"local-dir:{tmp_path}/missing", None))
    with pytest.raises(ModelUnavailable, match="not an open_clip model name"):
        ClipEncoder(ClipSpec("ViT-Nope", None))
