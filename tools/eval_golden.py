"""Regenerate tests/fixtures/eval/golden.json: what the reference implementations compute on the golden fixtures.

Runs in a SEPARATE environment, never in i2a's (the references pin numpy<2 and older libraries), and needs
no network: the references' downloads are answered locally and any other request goes to a closed port on
loopback. The fixtures (WAVs, seeded weights, the small architectures) come from tests/eval_fixtures.py, the
same module the golden tests use, so both sides see the same bytes; golden.json records their checksums.

Setup, once (the reference repositories as checkouts at the commits listed in REFERENCES):

    python3 -m venv /work/refenv
    /work/refenv/bin/pip install torch torchaudio "numpy<2" "scipy<1.14" resampy soundfile tqdm torchlibrosa librosa
    /work/refenv/bin/python tools/eval_golden.py --wav2clip SRC/lyrebird-wav2clip --torchvggish SRC/torchvggish \
        --fad SRC/frechet-audio-distance --audioldm-eval SRC/audioldm_eval

What it runs, per i2a protocol (docs/eval.md has the table):
  fad-package    frechet_audio_distance's own FrechetAudioDistance (vggish; pann at 16 kHz): load_audio_task,
                 get_embeddings and score, as a user of the package calls them;
  audioldm-eval  audioldm_eval's EvaluationHelper(16000, cpu, backbone="cnn14"): WaveDataset, its
                 FrechetAudioDistance.score and calculate_fid over get_featuresdict, as calculate_metrics does;
  i2a            frechet_audio_distance's loader and models with one Gaussian of clip rows for FD (its Fréchet
                 maths on [clips, dims]), the same as fad-package except the PANNs statistics.
CS has no reference pipeline in either package: each protocol's reference CS embedding is Wav2CLIP's own
`embed_audio` on the audio that protocol's loader returns (whole clip, one clip at a time).

Only the model construction is adapted: the released architectures are built by the references' own
constructors, then their trunks are swapped for the small ones of tests/eval_fixtures.py made from the
references' own building blocks (ResNet._make_layer + BasicBlock, MLPLayers, PANNs' ConvBlock, VGG's
layer list), and loaded with the seeded weights. Their front ends (STFT, mel, log, standardisation,
resampling, padding, channel choice) and forward code run unchanged. Imports the packages pull in only for
other metrics (laion_clap, encodec, transformers, skimage, ssr_eval) are stubbed; torchaudio.load, which
needs torchcodec in current torchaudio, is answered by soundfile when torchcodec is missing (same float32
samples for 16-bit PCM).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import types

REFERENCES = {
    "descriptinc/lyrebird-wav2clip": "1864b3924be5a785e2d49d975b8a26ff93f62951",
    "harritaylor/torchvggish": "f3f90969ce8fb77a05d984b892ddf662e8466377",
    "gudgud96/frechet-audio-distance": "55971f6c873e9c347448c5a99e056d610ec8dc80",
    "haoheliu/audioldm_eval": "8dc07ee7c42f9dc6e295460a1034175a0d49b436",
}
HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(os.path.dirname(HERE), "tests")
DEFAULT_OUT = os.path.join(TESTS, "fixtures", "eval", "golden.json")


def _stub(name: str, **attributes) -> None:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    sys.modules[name] = module


def _offline(work: str, torchvggish_src: str) -> None:
    """No request leaves this machine: hub loads come from the checkout, checkpoints from memory or WORK."""
    import numpy as np
    import torch

    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        os.environ[variable] = "http://127.0.0.1:9"
    os.environ["HOME"] = work  # audioldm_eval reads ~/.cache/audioldm_eval/ckpt
    torch.hub.set_dir(os.path.join(work, "hub"))
    hub_load = torch.hub.load

    def local_hub_load(repo_or_dir, model, *args, **kwargs):
        assert repo_or_dir == "harritaylor/torchvggish", repo_or_dir
        return hub_load(torchvggish_src, model, source="local")

    def state_from_url(url, *args, **kwargs):  # torchvggish's released files: the right keys, any values
        from torchvggish.vggish import VGG, make_layers

        if "pca" in url:
            return {"pca_eigen_vectors": np.eye(128, dtype=np.float32), "pca_means": np.zeros(128, np.float32)}
        return VGG(make_layers()).state_dict()

    torch.hub.load = local_hub_load
    torch.hub.load_state_dict_from_url = state_from_url
    for name, attributes in (("laion_clap", {"CLAP_Module": None}), ("encodec", {"EncodecModel": None}),
                             ("transformers", {"Wav2Vec2Processor": None, "AutoModel": None,
                                               "Wav2Vec2FeatureExtractor": None}),
                             ("skimage", {}), ("skimage.metrics", {"peak_signal_noise_ratio": None,
                                                                   "structural_similarity": None}),
                             ("ssr_eval", {}), ("ssr_eval.metrics", {"AudioMetrics": None})):
        _stub(name, **attributes)


def _torchaudio_load_or_soundfile() -> None:
    import soundfile
    import torch
    import torchaudio

    def load(path, *args, **kwargs):
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
        return torch.from_numpy(samples.T.copy()), rate

    if importlib.util.find_spec("torchcodec") is None:  # torchaudio.load needs it
        torchaudio.load = load


# --- the small trunks, built from each reference's own blocks ---


def _load_into(module, arrays: dict, prefix: str) -> None:
    import torch

    state = module.state_dict()
    mine = {k[len(prefix):]: torch.from_numpy(v.copy()) for k, v in arrays.items() if k.startswith(prefix)}
    assert set(mine) <= set(state), sorted(set(mine) - set(state))[:5]
    state.update(mine)
    module.load_state_dict(state, strict=True)


def _shapes(module, prefix: str, skip: tuple = ()) -> dict:
    return {prefix + k: tuple(v.shape) for k, v in module.state_dict().items() if not k.startswith(skip)}


def small_wav2clip(fx):
    from torch import nn
    from wav2clip.model.encoder import MLPLayers, ResNetExtractor
    from wav2clip.model.resnet import BasicBlock

    extractor = ResNetExtractor(checkpoint=None, scenario="frozen", transform=False)
    encoder = extractor.encoder
    widths, blocks = fx.WAV2CLIP["widths"], fx.WAV2CLIP["blocks"]
    encoder.inplanes = widths[0]
    encoder.conv1 = nn.Conv2d(1, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
    encoder.bn1 = nn.BatchNorm2d(widths[0])
    for index, (planes, count) in enumerate(zip(widths, blocks, strict=True)):
        setattr(encoder, f"layer{index + 1}", encoder._make_layer(BasicBlock, planes, count,
                                                                  stride=1 if index == 0 else 2))
    extractor.transform = MLPLayers(units=list(fx.WAV2CLIP["mlp"]), dropout=0.1)
    shapes = {**_shapes(encoder, "audio_encoder.", ("spectrogram.",)),
              **_shapes(extractor.transform, "audio_transform.")}
    arrays = fx.weights(shapes)
    _load_into(encoder, arrays, "audio_encoder.")
    _load_into(extractor.transform, arrays, "audio_transform.")
    return extractor.eval(), fx.checksum(arrays)


def small_vggish(model, fx):
    """torchvggish's VGG with the small layer list; embeddings without the last ReLU (use_activation=False)."""
    from torch import nn

    layers, channels, pools = [], 1, 0
    for item in fx.VGGISH["layers"]:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            pools += 1
        else:
            layers += [nn.Conv2d(channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = item
    model.features = nn.Sequential(*layers)
    units = (channels * (96 >> pools) * (64 >> pools), *fx.VGGISH["hidden"])
    hidden = []
    for u0, u1 in zip(units[:-1], units[1:], strict=True):
        hidden += [nn.Linear(u0, u1), nn.ReLU(True)]
    model.embeddings = nn.Sequential(*hidden[:-1])
    shapes = {**_shapes(model.features, "features."), **_shapes(model.embeddings, "embeddings.")}
    arrays = fx.weights(shapes)
    _load_into(model.features, arrays, "features.")
    _load_into(model.embeddings, arrays, "embeddings.")
    model.eval()
    return fx.checksum(arrays)


def small_cnn14(model, fx):
    """PANNs' Cnn14 (either package's copy) with the small conv blocks and fc layers, its front end kept."""
    from torch import nn

    conv_block = sys.modules[type(model).__module__].ConvBlock
    inputs = 1
    for index, outputs in enumerate(fx.CNN14["channels"]):
        setattr(model, f"conv_block{index + 1}", conv_block(in_channels=inputs, out_channels=outputs))
        inputs = outputs
    model.fc1 = nn.Linear(inputs, fx.CNN14["embedding"], bias=True)
    model.fc_audioset = nn.Linear(fx.CNN14["embedding"], fx.CNN14["classes"], bias=True)
    shapes = _shapes(model, "", ("spectrogram_extractor.", "logmel_extractor.", "spec_augmenter."))
    arrays = fx.weights(shapes)
    _load_into(model, arrays, "")
    model.eval()
    return fx.checksum(arrays)


def _full_cnn14_checkpoint(work: str) -> str:
    """A checkpoint in the released layout for the references' constructors to load (replaced right after)."""
    import torch
    from frechet_audio_distance.models.pann import Cnn14_16k

    path = os.path.join(work, "Cnn14_16k.pth")
    model = Cnn14_16k(sample_rate=16000, window_size=512, hop_size=160, mel_bins=64, fmin=50, fmax=8000,
                      classes_num=527)
    torch.save({"model": model.state_dict()}, path)
    return path


# --- the pipelines ---


def _floats(array) -> list:
    import numpy as np

    return np.asarray(array, np.float64).tolist()


def run(args) -> dict:
    import numpy as np
    import torch

    work = tempfile.mkdtemp(prefix="i2a-golden-")
    sys.path[:0] = [TESTS, args.wav2clip, args.torchvggish, args.fad, args.audioldm_eval]
    _offline(work, args.torchvggish)
    _torchaudio_load_or_soundfile()
    import eval_fixtures as fx
    import wav2clip
    from frechet_audio_distance import FrechetAudioDistance
    from frechet_audio_distance.utils import load_audio_task

    torch.manual_seed(0)
    sets = {"generated": fx.GENERATED, "reference": fx.REFERENCE}
    folders = {name: os.path.join(work, name) for name in sets}
    wavs = {name: fx.write_wavs(folders[name], clips) for name, clips in sets.items()}
    paths = {clip: os.path.join(folders[name], f"{clip}.wav") for name, clips in sets.items() for clip in clips}

    w2c, w2c_sum = small_wav2clip(fx)
    checkpoint = _full_cnn14_checkpoint(work)
    ckpt_dir = os.path.join(work, "fad-ckpt")
    os.makedirs(ckpt_dir)
    os.symlink(checkpoint, os.path.join(ckpt_dir, "Cnn14_16k_mAP%3D0.438.pth"))
    fad_vggish = FrechetAudioDistance(model_name="vggish", sample_rate=16000, use_pca=False, use_activation=False,
                                      ckpt_dir=ckpt_dir, audio_load_worker=2)
    vggish_sum = small_vggish(fad_vggish.model, fx)
    fad_pann = FrechetAudioDistance(model_name="pann", sample_rate=16000, use_pca=False, use_activation=False,
                                    ckpt_dir=ckpt_dir, audio_load_worker=2)
    cnn14_sum = small_cnn14(fad_pann.model, fx)
    for model in (fad_vggish, fad_pann):
        model.device = model.model.device = torch.device("cpu")
        model.model.to("cpu")

    out = {"wavs": wavs, "weights": {"wav2clip": w2c_sum, "vggish": vggish_sum, "cnn14": cnn14_sum}, "protocols": {}}

    def embed_w2c(audio) -> list:
        return _floats(wav2clip.embed_audio(np.asarray(audio, np.float32), w2c)[0])

    # fad-package and i2a: frechet_audio_distance's loader (soundfile float32, mean, resampy kaiser_best).
    per_clip = {}
    for clip, path in paths.items():
        audio = load_audio_task(path, 16000, 1, "float32")
        per_clip[clip] = {"wav2clip": embed_w2c(audio),
                          "vggish": _floats(fad_vggish.get_embeddings([audio], sr=16000)),
                          "panns": _floats(fad_pann.get_embeddings([audio], sr=16000))}
    fad = float(fad_vggish.score(folders["reference"], folders["generated"]))
    out["protocols"]["fad-package"] = {"clips": per_clip, "fad": fad,
                                       "fd": float(fad_pann.score(folders["reference"], folders["generated"]))}
    rows = {name: np.array([per_clip[c]["panns"] for c in clips]) for name, clips in sets.items()}
    fd_rows = fad_pann.calculate_frechet_distance(*fad_pann.calculate_embd_statistics(rows["reference"]),
                                                  *fad_pann.calculate_embd_statistics(rows["generated"]))
    out["protocols"]["i2a"] = {"clips": per_clip, "fad": fad, "fd": float(fd_rows)}

    # audioldm-eval: EvaluationHelper(16000, cpu, backbone="cnn14").
    cache = os.path.join(work, ".cache", "audioldm_eval", "ckpt")
    os.makedirs(cache)
    os.symlink(checkpoint, os.path.join(cache, "Cnn14_16k_mAP=0.438.pth"))
    open(os.path.join(cache, "Cnn14_mAP=0.431.pth"), "wb").close()  # only its existence is checked at 16 kHz
    from audioldm_eval import calculate_fid
    from audioldm_eval.datasets.load_mel import WaveDataset
    from audioldm_eval.eval import EvaluationHelper
    from torch.utils.data import DataLoader

    helper = EvaluationHelper(16000, torch.device("cpu"), backbone="cnn14")
    assert small_vggish(helper.frechet.model, fx) == vggish_sum
    assert small_cnn14(helper.mel_model, fx) == cnn14_sum
    helper.frechet.model.device = torch.device("cpu")
    helper.frechet.model.to("cpu")
    per_clip = {}
    for name in sets:
        dataset = WaveDataset(folders[name], 16000)
        for index in range(len(dataset)):
            waveform, filename = dataset[index]
            with torch.no_grad():
                panns = helper.mel_model(waveform.float())["2048"][0]
            per_clip[filename[:-len(".wav")]] = {
                "wav2clip": embed_w2c(waveform[0].numpy()),
                "vggish": _floats(helper.frechet.model.forward(waveform[0].numpy(), 16000).detach()),
                "panns": _floats(panns)}
    fad = helper.frechet.score(folders["generated"], folders["reference"], recalculate=True)["frechet_audio_distance"]
    features = {name: helper.get_featuresdict(DataLoader(WaveDataset(folders[name], 16000), batch_size=1,
                                                         num_workers=0)) for name in sets}
    fd = calculate_fid(features["generated"], features["reference"], feat_layer_name="2048")["frechet_distance"]
    out["protocols"]["audioldm-eval"] = {"clips": per_clip, "fad": float(fad), "fd": float(fd)}

    import librosa
    import resampy
    import scipy
    import torchaudio

    out["generated_by"] = {"script": "tools/eval_golden.py", "references": REFERENCES,
                           "versions": {"torch": torch.__version__, "torchaudio": torchaudio.__version__,
                                        "numpy": np.__version__, "scipy": scipy.__version__,
                                        "resampy": resampy.__version__, "librosa": librosa.__version__}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag in ("--wav2clip", "--torchvggish", "--fad", "--audioldm-eval"):
        parser.add_argument(flag, required=True, help="a checkout of the reference at the commit in REFERENCES")
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()
    result = run(args)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}: fad/fd " + ", ".join(f"{p} {v['fad']:.6g}/{v['fd']:.6g}"
                                                    for p, v in result["protocols"].items()))


if __name__ == "__main__":
    main()
