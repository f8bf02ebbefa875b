"""The AudioLDM adapter against the installed diffusers/transformers: i2a's own sampler, its schedulers, and
what it relies on upstream. Fails if upstream changes what we rely on."""

import inspect

import numpy as np
import pytest
import torch

from i2a_core import refs
from i2a_core.models import audioldm
from i2a_core.models.audioldm import MAX_DURATION_S, SCHEDULERS, AudioLDMGenerator, ClapTextEncoder
from i2a_core.models.tiny import CLAP_DIM


@pytest.fixture(scope="module")
def generator(i2a_cache):
    return AudioLDMGenerator("tiny:audioldm", device="cpu")


@pytest.fixture(scope="module")
def clap_vectors():
    torch.manual_seed(0)
    return torch.nn.functional.normalize(torch.randn(3, CLAP_DIM), dim=-1).numpy()


def _pipeline(generator):
    """diffusers' deprecated AudioLDMPipeline over the very same components, or a skip once it is gone."""
    diffusers = pytest.importorskip("diffusers")
    if not hasattr(diffusers, "AudioLDMPipeline"):
        pytest.skip(f"diffusers {diffusers.__version__} no longer ships AudioLDMPipeline: "
                    "nothing left to compare i2a's sampler with")
    from transformers import AutoTokenizer

    local = refs.resolve_audioldm("tiny:audioldm")
    clap = ClapTextEncoder.load(local, device="cpu")
    pipe = diffusers.AudioLDMPipeline(vae=generator.vae, text_encoder=clap.text_encoder,
                                      tokenizer=AutoTokenizer.from_pretrained(local, subfolder="tokenizer"),
                                      unet=generator.unet, scheduler=generator.scheduler("ddim"),
                                      vocoder=generator.vocoder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("steps,guidance,duration,batch", [
    (1, 2.5, 0.5, 1), (3, 2.5, 1.5, 3), (4, 1.0, 1.0, 2), (2, 4.0, 0.37, 2), (5, 2.5, 2.0, 1),
])
def test_sampler_matches_the_diffusers_pipeline(generator, clap_vectors, steps, guidance, duration, batch):
    pipe = _pipeline(generator)
    seeds = list(range(7, 7 + batch))
    ours = generator.generate(clap_vectors[:batch], seeds, duration=duration, steps=steps, guidance=guidance)
    empty = torch.from_numpy(audioldm.empty_prompt_embedding(refs.resolve_audioldm("tiny:audioldm")))
    theirs = pipe(prompt_embeds=torch.from_numpy(clap_vectors[:batch]),
                  negative_prompt_embeds=empty.expand(batch, -1), audio_length_in_s=duration,
                  num_inference_steps=steps, guidance_scale=guidance,
                  generator=[torch.Generator("cpu").manual_seed(s) for s in seeds], output_type="np").audios
    assert len(ours) == len(theirs) == batch
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        assert np.abs(a - b).max() <= 1e-5


def test_cached_empty_prompt_is_the_pipeline_negative(generator):
    pipe = _pipeline(generator)
    upstream = pipe._encode_prompt([""], torch.device("cpu"), 1, False)
    np.testing.assert_allclose(generator._empty.numpy()[None], upstream.detach().float().numpy(), atol=1e-6)


def test_image_generator_loads_no_text_encoder(generator):
    assert generator.clap is None
    assert not any("text" in name for name, _ in vars(generator).items() if isinstance(_, torch.nn.Module))


def test_clap_targets_match_what_the_pipeline_conditions_on(generator):
    texts = ["a dog barks in the rain", "", "engine idling while a man talks loudly near it"]
    pipe = _pipeline(generator)
    upstream = pipe._encode_prompt(texts, torch.device("cpu"), 1, False)
    # i2a pads to the batch's longest caption, the pipeline to 77 tokens: the same vectors.
    np.testing.assert_allclose(ClapTextEncoder.load("tiny:audioldm").encode(texts),
                               upstream.detach().float().numpy(), atol=1e-6)


def test_components_we_rely_on_keep_their_interfaces():
    from diffusers import DDIMScheduler, UNet2DConditionModel

    forward = inspect.signature(UNet2DConditionModel.forward).parameters
    for name in ("encoder_hidden_states", "class_labels", "return_dict"):
        assert name in forward, f"UNet2DConditionModel.forward lost '{name}'"
    assert "scale_model_input" in vars(DDIMScheduler) and "init_noise_sigma" in vars(DDIMScheduler())


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
def test_every_scheduler_gives_length_rate_and_seed_determinism(generator, clap_vectors, scheduler):
    audio = generator.generate(clap_vectors, seeds=[1, 2, 3], duration=1.5, steps=3, scheduler=scheduler)
    assert generator.sample_rate == 16000
    assert [a.shape for a in audio] == [(24000,)] * 3 and all(a.dtype == np.float32 for a in audio)
    again = generator.generate(clap_vectors, seeds=[1, 2, 3], duration=1.5, steps=3, scheduler=scheduler)
    for a, b in zip(audio, again):
        np.testing.assert_array_equal(a, b)
    other = generator.generate(clap_vectors, seeds=[9, 2, 3], duration=1.5, steps=3, scheduler=scheduler)
    assert not np.array_equal(audio[0], other[0])
    # A clip's seed, not its batch-mates, decides its audio.
    alone = generator.generate(clap_vectors[1:2], seeds=[2], duration=1.5, steps=3, scheduler=scheduler)
    np.testing.assert_allclose(alone[0], audio[1], atol=1e-5)


def test_schedulers_differ_and_unknown_is_refused(generator, clap_vectors):
    ddim, dpm = (generator.generate(clap_vectors[:1], [0], duration=0.5, steps=3, scheduler=s)[0]
                 for s in ("ddim", "dpm++"))
    assert not np.allclose(ddim, dpm)
    with pytest.raises(ValueError, match="--scheduler euler: unknown"):
        generator.scheduler("euler")


def test_durations_audioldm_cannot_make(generator):
    for bad in (0.0, -1.0, generator.min_duration / 2, MAX_DURATION_S + 1):
        with pytest.raises(ValueError, match=f"--duration {bad:g}: AudioLDM makes clips from"):
            generator.check_duration(bad)


def test_wrong_vector_shape(generator):
    with pytest.raises(ValueError, match=f"shape \\[B, {CLAP_DIM}\\]"):
        generator.generate(np.zeros((1, 5), np.float32), seeds=[0], duration=1.0, steps=1)
