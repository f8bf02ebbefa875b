"""The AudioLDM adapter against the installed diffusers/transformers: fails if upstream changes what we rely on."""

import inspect

import numpy as np
import pytest
import torch

from i2a_core.audioldm import MAX_DURATION_S, AudioLDMGenerator, ClapTextEncoder
from i2a_core.tiny import CLAP_DIM


@pytest.fixture(scope="module")
def generator():
    return AudioLDMGenerator("tiny:audioldm")


def test_pipeline_still_takes_what_we_pass():
    from diffusers import AudioLDMPipeline

    parameters = inspect.signature(AudioLDMPipeline.__call__).parameters
    for name in ("prompt_embeds", "negative_prompt_embeds", "audio_length_in_s", "num_inference_steps",
                 "guidance_scale", "generator", "output_type"):
        assert name in parameters, f"AudioLDMPipeline.__call__ lost '{name}'"


def test_clap_targets_match_what_the_pipeline_conditions_on(generator):
    texts = ["a dog barks in the rain", "", "engine idling"]
    upstream = generator.pipe._encode_prompt(texts, generator.device, 1, False)
    np.testing.assert_allclose(generator.clap.encode(texts), upstream.detach().float().numpy(), atol=1e-6)


def test_text_encoder_alone_loads_the_same_weights(generator):
    texts = ["a cat meows", "waves crash"]
    alone = ClapTextEncoder.load("tiny:audioldm")
    np.testing.assert_allclose(alone.encode(texts), generator.clap.encode(texts), atol=1e-6)


def test_generate_shapes_rate_and_seeds(generator):
    clap = torch.nn.functional.normalize(torch.randn(3, CLAP_DIM), dim=-1).numpy()
    audio = generator.generate(clap, seeds=[1, 2, 3], duration=1.5, steps=2)
    assert generator.sample_rate == 16000
    assert [a.shape for a in audio] == [(24000,)] * 3 and all(a.dtype == np.float32 for a in audio)
    again = generator.generate(clap, seeds=[1, 2, 3], duration=1.5, steps=2)
    for a, b in zip(audio, again):
        np.testing.assert_array_equal(a, b)
    other = generator.generate(clap, seeds=[9, 2, 3], duration=1.5, steps=2)
    assert not np.array_equal(audio[0], other[0])
    # A clip's seed, not its batch-mates, decides its audio.
    alone = generator.generate(clap[1:2], seeds=[2], duration=1.5, steps=2)
    np.testing.assert_allclose(alone[0], audio[1], atol=1e-6)


def test_durations_audioldm_cannot_make(generator):
    for bad in (0.0, -1.0, generator.min_duration / 2, MAX_DURATION_S + 1):
        with pytest.raises(ValueError, match=f"--duration {bad:g}: AudioLDM makes clips from"):
            generator.check_duration(bad)


def test_wrong_vector_shape(generator):
    with pytest.raises(ValueError, match=f"shape \\[B, {CLAP_DIM}\\]"):
        generator.generate(np.zeros((1, 5), np.float32), seeds=[0], duration=1.0, steps=1)
