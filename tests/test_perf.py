"""Real-size performance plumbing: schedulers recorded end to end, torch threads in Ray actors, decode without
a CLIP model, torch-free read/write stages, and the full-size random preset."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from i2a_core.io import manifest, storage
from i2a_core.jobs.sonify import Sonifier, SonifyJob, run
from i2a_core.models.clip import ClipEncoder, ClipSpec, image_transform
from i2a_core.runner import Stage, _IsolatedStage
from i2a_core.specs import GenerationSettings, ImageLimits, resolve_models
from i2a_core.stages.images import DecodeImages

TINY = resolve_models("tiny")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _image_folder(tmp_path, count=2):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def test_scheduler_is_recorded_in_manifest_and_claim(tmp_path):
    folder, output = _image_folder(tmp_path), str(tmp_path / "out")
    settings = GenerationSettings(duration=0.5, steps=2, batch_size=2, scheduler="dpm++")
    assert run(SonifyJob(inputs=(str(folder),), output=output, models=TINY, settings=settings,
                         runner="local")).ok == 2
    assert set(manifest.read(output).column("scheduler").to_pylist()) == {"dpm++"}
    with pytest.raises(storage.OutputMismatch, match="scheduler 'dpm\\+\\+' -> 'unipc'"):
        run(SonifyJob(inputs=(str(folder),), output=output, models=TINY, runner="local",
                      settings=GenerationSettings(duration=0.5, steps=2, batch_size=2, scheduler="unipc")))


def test_sonify_cli_records_scheduler_in_sidecar(tmp_path):
    from i2a_core.cli import main

    folder = _image_folder(tmp_path, count=1)
    assert main(["sonify", f"{folder}/", "--output", str(tmp_path / "cli"), "--preset", "tiny", "--duration", "0.5",
                 "--steps", "2", "--scheduler", "unipc"]) == 0
    record = json.loads((tmp_path / "cli" / "audio" / "0.json").read_text())
    assert record["scheduler"] == "unipc" and "noise" in record["note"]


def test_decode_builds_clip_preprocessing_without_a_clip_model(monkeypatch):
    import open_clip

    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (50, 70, 3), dtype=np.uint8))
    expected = {"tiny": ClipEncoder(TINY.clip, device="cpu").preprocess(image).numpy(),
                "ViT-B-32": open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)[2](image).numpy()}

    def refuse(*args, **kwargs):
        raise AssertionError("a decode stage built a CLIP model")

    for name in ("create_model", "create_model_and_transforms", "create_model_from_pretrained", "CLIP"):
        monkeypatch.setattr(open_clip, name, refuse)
    np.testing.assert_array_equal(image_transform(ClipSpec("ViT-B-32", "openai"))(image).numpy(),
                                  expected["ViT-B-32"])
    decode = DecodeImages(TINY.clip, ImageLimits())
    png = __import__("io").BytesIO()
    image.save(png, format="PNG")
    batch = {"input": np.array(["x.png"], dtype=object), "data": np.array([png.getvalue()], dtype=object),
             "error": np.array([""]), "error_kind": np.array([""]), "read_s": np.zeros(1)}
    np.testing.assert_array_equal(decode(batch)["pixels"][0], expected["tiny"])


def test_read_and_write_stages_import_no_torch():
    code = ("import sys; import i2a_core.jobs.sonify, i2a_core.jobs.embed, i2a_core.stages.images, "
            "i2a_core.stages.clips, i2a_core.cli; "
            "heavy = sorted(m for m in ('torch', 'open_clip', 'diffusers', 'transformers') if m in sys.modules); "
            "print(heavy); sys.exit(bool(heavy))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=REPO))
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("cpus", [1.5])  # Ray alone would give it OMP_NUM_THREADS=1
def test_cpu_model_actor_runs_torch_on_its_cpu_share(ray_session, cpus):
    ray = ray_session

    class Probe(_IsolatedStage):  # the runner's Ray Data actor around a model stage
        def threads(self):
            import torch

            return torch.get_num_threads()

    stage = Stage("i2a_core.stages.sonify:GenerateAudio",
                  {"audioldm": "tiny:audioldm", "settings": GenerationSettings(duration=1.0)})
    actor = ray.remote(num_cpus=cpus)(Probe).remote(stage)
    try:
        assert ray.get(actor.threads.remote()) == math.ceil(cpus)
    finally:
        ray.kill(actor)


def test_full_random_preset_builds_real_sizes_and_makes_a_clip(tmp_path):
    """Build (cached in the session's I2A_CACHE) and one short clip at real shapes: about a minute on 2 cores."""
    import torch

    models = resolve_models("full-random")
    sonifier = Sonifier(models, GenerationSettings(duration=0.5, steps=1, batch_size=1), device="cpu")
    _, encode, generate = sonifier.chain.stages
    millions = {name: sum(p.numel() for p in module.parameters()) / 1e6 for name, module in
                [("unet", generate.generator.unet), ("vae", generate.generator.vae),
                 ("vocoder", generate.generator.vocoder)]}
    for name, expected in {"unet": 185.0, "vae": 55.4, "vocoder": 55.3}.items():
        assert abs(millions[name] - expected) <= 0.01 * expected, (name, millions[name])
    assert encode.clip.dim == 512 and generate.generator.clap_dim == 512
    assert isinstance(encode.clip.model.visual.transformer, torch.nn.Module)
    folder = _image_folder(tmp_path, count=1)
    (clip,) = sonifier([str(folder / "0.png")])
    assert clip.sample_rate == 16000 and len(clip.waveform) == 8000 and clip.info["steps"] == 1
