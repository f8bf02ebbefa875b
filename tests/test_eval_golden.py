"""Golden values: i2a's eval (WAV file -> embeddings -> CS, FAD, FD) against the reference implementations' outputs.

tests/fixtures/eval/golden.json was written by tools/eval_golden.py, which runs Wav2CLIP, torchvggish,
frechet_audio_distance and audioldm_eval themselves (in a separate environment) on the same WAVs and the
same seeded weights that tests/eval_fixtures.py regenerates here; their checksums must match first.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import eval_fixtures as fx
import numpy as np
import pytest
from helpers import write_images

from i2a_core import cli
from i2a_core.evaluation import protocols

GOLDEN = json.load(open(os.path.join(os.path.dirname(__file__), "fixtures", "eval", "golden.json")))
CLIPS = {**fx.GENERATED, **fx.REFERENCE}
RELATIVE = 1e-4  # ||i2a - reference|| / ||reference||, per embedding and distance
# Wav2CLIP's log(power + 1e-7) magnifies stop-band rounding: resampy's own float32 output moves a 44.1/48 kHz
# sweep's embedding by 1.6e-4 and 1.9e-4 against its float64 output (i2a's), measured in the reference env.
TOLERANCE = {"wav2clip": 5e-4, "vggish": RELATIVE, "panns": RELATIVE}
REGENERATE = "the fixtures changed: rerun tools/eval_golden.py (see its docstring) to regenerate golden.json"


def relative_error(mine, reference) -> float:
    mine, reference = np.asarray(mine, np.float64), np.asarray(reference, np.float64)
    assert mine.shape == reference.shape, (mine.shape, reference.shape)
    return float(np.linalg.norm(mine - reference) / max(np.linalg.norm(reference), 1e-12))


def _save_model(folder, kind: str, config, arrays: dict) -> None:
    import torch

    os.makedirs(folder)
    state = {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}
    torch.save({"model": state} if kind == "cnn14" else state, os.path.join(folder, "checkpoint.pth"))
    from dataclasses import asdict

    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"config": asdict(config), "weights": "checkpoint.pth"}, f)


@pytest.fixture(scope="module")
def golden(tmp_path_factory):
    """The WAVs (as files), the seeded models (as i2a model folders) and a sonify-style folder to score."""
    from i2a_core.evaluation import audio_models

    root = tmp_path_factory.mktemp("golden")
    assert fx.write_wavs(str(root / "generated"), fx.GENERATED) == GOLDEN["wavs"]["generated"], REGENERATE
    assert fx.write_wavs(str(root / "reference"), fx.REFERENCE) == GOLDEN["wavs"]["reference"], REGENERATE
    configs = {"wav2clip": audio_models.Wav2ClipConfig(**fx.WAV2CLIP),
               "vggish": audio_models.VggishConfig(**fx.VGGISH), "cnn14": audio_models.Cnn14Config(**fx.CNN14)}
    for kind, config in configs.items():
        model_class, _ = audio_models.ARCHITECTURES[kind]
        shapes = {k: tuple(v.shape) for k, v in model_class(config).state_dict().items()}
        arrays = fx.weights(shapes)
        assert fx.checksum(arrays) == GOLDEN["weights"][kind], f"{kind}: names, shapes or values differ; {REGENERATE}"
        _save_model(root / kind, kind, config, arrays)
    # `i2a sonify`'s layout: NAME.wav beside NAME.json naming the image it was made from.
    write_images(root / "images", [f"{name}.png" for name in fx.GENERATED])
    (root / "sonified").mkdir()
    for name in fx.GENERATED:
        shutil.copy(root / "generated" / f"{name}.wav", root / "sonified" / f"{name}.wav")
        (root / "sonified" / f"{name}.json").write_text(json.dumps({"input": str(root / "images" / f"{name}.png")}))
    return root


def scoring_models(root, protocol: str) -> protocols.ScoringModels:
    from dataclasses import replace

    return replace(protocols.TINY, cs_audio=str(root / "wav2clip"), fad=str(root / "vggish"), fd=str(root / "cnn14"),
                   protocol=protocol)


def wav(root, name: str) -> str:
    return str(root / ("generated" if name in fx.GENERATED else "reference") / f"{name}.wav")


def test_the_golden_file_covers_every_protocol():
    assert set(GOLDEN["protocols"]) == set(protocols.PROTOCOLS)
    rates = {spec[0] for spec in CLIPS.values()}
    assert rates == {16000, 44100, 48000} and {spec[1] for spec in CLIPS.values()} == {1.0, 5.0, 10.0, 12.0}


def test_i2a_loads_audio_as_the_fad_package_does():
    """So the per-clip embedding test below covers i2a's protocol too: only the FD statistics differ."""
    i2a, fad = protocols.PROTOCOLS["i2a"], protocols.PROTOCOLS["fad-package"]
    assert (i2a.channels, i2a.remove_dc, i2a.resampler, i2a.min_seconds, i2a.cs_seconds) == \
        (fad.channels, fad.remove_dc, fad.resampler, fad.min_seconds, fad.cs_seconds)
    assert GOLDEN["protocols"]["i2a"]["clips"] == GOLDEN["protocols"]["fad-package"]["clips"]


@pytest.mark.parametrize("protocol", ["audioldm-eval", "fad-package"])
def test_every_clip_embeds_as_the_reference_does(golden, protocol):
    """Wav2CLIP, VGGish and CNN14 embeddings of every clip, WAV file in, within 1e-4 of the reference's."""
    from i2a_core.evaluation.scorers import ScoreClips

    scorer = ScoreClips(scoring_models(golden, protocol), want=("cs", "fad", "fd"), device="cpu")
    expected = GOLDEN["protocols"][protocol]["clips"]
    worst = {}
    for name in CLIPS:
        clip = scorer.load(wav(golden, name))
        panns = scorer.panns_rows(clip).reshape(-1)
        for what, mine in (("wav2clip", scorer.wav2clip_embedding(clip)), ("vggish", scorer.vggish_rows(clip)),
                           ("panns", panns)):
            worst[f"{name} {what}"] = relative_error(mine, expected[name][what])
    failed = {k: f"{v:.2e}" for k, v in worst.items() if not v <= TOLERANCE[k.split()[-1]]}
    assert not failed, f"{protocol}: relative error above {TOLERANCE}: {failed}"


@pytest.mark.parametrize("protocol", list(protocols.PROTOCOLS))
def test_i2a_eval_gives_the_reference_fad_fd_and_cs(golden, protocol, tmp_path):
    """The whole command: WAVs + images in, summary.json and scores.csv out."""
    from i2a_core.io import images
    from i2a_core.models.clip import ClipEncoder

    out = tmp_path / "ev"
    assert cli.main(["eval", "--preset", "tiny", "--runner", "local", "--protocol", protocol,
                     "--input", str(golden / "sonified"), "--reference-audio", str(golden / "reference"),
                     "--cs-audio", str(golden / "wav2clip"), "--fad-model", str(golden / "vggish"),
                     "--fd-model", str(golden / "cnn14"), "--output", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    reference = GOLDEN["protocols"][protocol]
    assert summary["protocol"]["name"] == protocol
    assert summary["protocol"]["resampler"]["name"] == protocols.PROTOCOLS[protocol].resampler.name
    assert summary["fad"] == pytest.approx(reference["fad"], rel=RELATIVE)
    assert summary["fd"] == pytest.approx(reference["fd"], rel=RELATIVE)
    # CS: the reference Wav2CLIP embedding against the scoring CLIP's image embedding.
    encoder = ClipEncoder(protocols.TINY.cs_clip, device="cpu")
    with open(out / "scores.csv") as f:
        rows = {os.path.basename(r["output"])[:-len(".wav")]: r for r in csv.DictReader(f)}
    for name in fx.GENERATED:
        image = encoder.encode_images([images.load_image(str(golden / "images" / f"{name}.png"))])[0]
        audio = np.asarray(reference["clips"][name]["wav2clip"])
        expected = 100 * float(audio @ image / (np.linalg.norm(audio) * np.linalg.norm(image)))
        # TOLERANCE["wav2clip"] bounds the cosine's error: 100 x 5e-4.
        assert float(rows[name]["cs"]) == pytest.approx(expected, abs=0.05), name


def test_silence_and_dc_score_the_same_alone_and_in_a_batch_of_eight(golden):
    from i2a_core.evaluation.scorers import ScoreClips

    scorer = ScoreClips(scoring_models(golden, "i2a"), want=("cs", "fad", "fd"), device="cpu")
    names = list(fx.GENERATED)  # silence and DC among them

    def batch(chosen):
        return {"key": np.array(chosen, dtype=object), "wav": np.array([wav(golden, n) for n in chosen], dtype=object),
                "image": np.array([str(golden / "images" / f"{n}.png") for n in chosen], dtype=object),
                "caption": np.array([""] * len(chosen), dtype=object)}

    together = scorer(batch(names))
    for name in ("g01_silence_16k_1s", "g02_dc_44k_5s", "g07_silence_48k_10s"):
        alone = scorer(batch([name]))
        i = names.index(name)
        # The audio side is the same computation either way; CLIP's image batch moves the last digits.
        assert alone["cs"][0] == pytest.approx(together["cs"][i], abs=1e-4), name
        assert np.array_equal(alone["vggish"][0], together["vggish"][i])
        assert np.array_equal(alone["panns"][0], together["panns"][i])


def test_wav2clip_standardises_each_clip_of_a_stacked_batch_as_the_reference_does_alone(golden):
    """Silence (a constant log spectrogram, whose spread is rounding noise) and DC, stacked 8 at a time."""
    import torch

    from i2a_core.evaluation.scorers import ScoreClips

    scorer = ScoreClips(scoring_models(golden, "fad-package"), want=("cs",), device="cpu")
    names = ["g01_silence_16k_1s", "r06_dc_16k_1s", "r01_noise_44k_1s", "r03_sweep_48k_1s"] * 2
    clips = torch.stack([scorer.audio_at(scorer.load(wav(golden, n)), 16000) for n in names])
    with torch.inference_mode():
        stacked = scorer.wav2clip(clips).numpy()
    expected = GOLDEN["protocols"]["fad-package"]["clips"]
    for name, row in zip(names, stacked, strict=True):
        alone = scorer.wav2clip_embedding(scorer.load(wav(golden, name)))
        assert relative_error(row, alone) < 1e-5, name
        assert relative_error(row, expected[name]["wav2clip"]) <= TOLERANCE["wav2clip"], name


@pytest.mark.parametrize("rate", [44100, 48000])
def test_the_default_resampler_is_80_db_down_above_the_new_nyquist(rate):
    import torch

    from i2a_core.evaluation.resampling import resample

    t = torch.arange(rate, dtype=torch.float64) / rate

    def level(frequency, resampler):
        out = resample(torch.sin(2 * np.pi * frequency * t).float(), rate, 16000, resampler)[2000:-2000]
        return 20 * np.log10(float(out.double().pow(2).mean().sqrt()) / np.sqrt(0.5))

    for frequency in (8200.0, 9000.0, 12000.0):
        assert level(frequency, protocols.KAISER_BEST) < -80, frequency
    assert abs(level(1000.0, protocols.KAISER_BEST)) < 0.01
    # audioldm-eval keeps its reference's resampler, and so its aliasing (docs/eval.md says so).
    assert level(8200.0, protocols.TORCHAUDIO_DEFAULT) > -20


def test_the_eval_driver_and_cli_import_no_torch():
    code = ("import sys, i2a_core.jobs.eval, i2a_core.cli.eval, i2a_core.evaluation.protocols; "
            "print(sorted(m for m in ('torch', 'torchaudio') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
