"""i2a's own definitions of the scoring audio encoders (Wav2CLIP, VGGish, PANNs CNN14), with their front ends.

Each module's parameter names match its released checkpoint, so the published weights load with
`load_state_dict(strict=True)`; the architectures are data (a config dataclass), so the tiny random
scorers are the same code with smaller widths. Front ends (STFT, mel) are computed here in torch
instead of being stored as weights, and the checkpoints' copies of them are dropped on load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

# --- Wav2CLIP: a ResNet18 over a log spectrogram, then a 2-layer MLP into CLIP's space ---


@dataclass(frozen=True)
class Wav2ClipConfig:
    widths: tuple = (64, 128, 256, 512)
    blocks: tuple = (2, 2, 2, 2)
    mlp: tuple = (512, 512, 512)  # the "audio_transform" that maps the ResNet output into CLIP space
    n_fft: int = 512
    hop: int = 353
    sample_rate: int = 16000


class _BasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class _ResNetAudio(nn.Module):
    def __init__(self, config: Wav2ClipConfig):
        super().__init__()
        self.conv1 = nn.Conv2d(1, config.widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(config.widths[0])
        inplanes = config.widths[0]
        for index, (planes, blocks) in enumerate(zip(config.widths, config.blocks, strict=True)):
            stride = 1 if index == 0 else 2
            layers = [_BasicBlock(inplanes, planes, stride)] + [_BasicBlock(planes, planes, 1)
                                                               for _ in range(blocks - 1)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*layers))
            inplanes = planes
        self.depth = len(config.widths)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for index in range(self.depth):
            x = getattr(self, f"layer{index + 1}")(x)
        return x.mean(dim=(2, 3))


class _MLP(nn.Module):
    def __init__(self, units: tuple):
        super().__init__()
        layers = []
        for u0, u1 in zip(units[:-1], units[1:], strict=True):
            layers += [nn.Linear(u0, u1), nn.ReLU(), nn.Dropout(0.1)]
        self.sequential = nn.Sequential(*layers[:-2])  # no activation after the last layer

    def forward(self, x):
        return self.sequential(x)


class Wav2Clip(nn.Module):
    """16 kHz waveforms [B, T] -> CLIP-space audio embeddings [B, mlp[-1]]."""

    def __init__(self, config: Wav2ClipConfig = Wav2ClipConfig()):
        super().__init__()
        self.config = config
        self.audio_encoder = _ResNetAudio(config)
        self.audio_transform = _MLP(config.mlp)
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(waveforms, self.config.n_fft, self.config.hop, window=self.window, center=True,
                          pad_mode="reflect", return_complex=True).abs() ** 2
        x = torch.log(spec + 1e-7).unsqueeze(1)
        return self.audio_transform(self.audio_encoder(self.standardise(x)))

    @staticmethod
    def standardise(x: torch.Tensor) -> torch.Tensor:
        """Wav2CLIP's `(x - torch.mean(x)) / (torch.std(x) + 1e-9)` for each clip [1, 1, F, T] on its own.

        The reference standardises its whole input tensor, so a clip's embedding there depends on its
        batch-mates; here each clip gets exactly the reference's statistics at batch size 1, reduced on the
        CPU in float32 as the reference's own CPU run does. That matters for a silent clip: its log
        spectrogram is constant, its spread is rounding noise (about 6e-6), and any other reduction (a
        batched one, a GPU one) can give exactly 0 and a standardised input of about 5,700 instead of ±1.
        """
        stats = x.detach().to("cpu", torch.float32)
        mean = torch.stack([torch.mean(stats[i:i + 1]) for i in range(len(stats))])
        std = torch.stack([torch.std(stats[i:i + 1]) for i in range(len(stats))])
        shape = (-1, 1, 1, 1)
        return (x - mean.view(shape).to(x)) / (std.view(shape).to(x) + 1e-9)

    @staticmethod
    def checkpoint_keys(state: dict) -> dict:
        """The released Wav2CLIP.pt: flat, keys `audio_encoder.*` and `audio_transform.*` (plus its STFT window)."""
        return {k: v for k, v in state.items() if k.startswith(("audio_encoder.", "audio_transform."))
                and not k.startswith("audio_encoder.spectrogram.")}


# --- VGGish: log-mel patches of 0.96 s -> VGG -> 128-d, the FAD embedding ---


@dataclass(frozen=True)
class VggishConfig:
    layers: tuple = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M")
    hidden: tuple = (4096, 4096, 128)
    sample_rate: int = 16000
    mel_bins: int = 64
    patch_frames: int = 96  # 0.96 s of 10 ms frames, without overlap


def vggish_mel_matrix(n_fft: int = 512, sample_rate: int = 16000, bins: int = 64, low: float = 125.0,
                      high: float = 7500.0) -> np.ndarray:
    """VGGish's mel weights [n_fft//2+1, bins]: HTK mel scale, triangles linear in mel, DC bin zero."""
    def mel(hz):
        return 1127.0 * np.log1p(np.asarray(hz, np.float64) / 700.0)

    spectrum_mel = mel(np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1))
    edges = np.linspace(mel(low), mel(high), bins + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (spectrum_mel[:, None] - lower) / (center - lower)
    falling = (upper - spectrum_mel[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0
    return weights


class Vggish(nn.Module):
    """16 kHz waveform [T] -> one 128-d embedding per 0.96 s patch [P, 128] (last layer, before its ReLU)."""

    def __init__(self, config: VggishConfig = VggishConfig()):
        super().__init__()
        self.config = config
        layers, channels = [], 1
        for item in config.layers:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=True)]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        pools = sum(1 for item in config.layers if item == "M")
        flat = channels * (config.patch_frames >> pools) * (config.mel_bins >> pools)
        units = (flat, *config.hidden)
        hidden = []
        for u0, u1 in zip(units[:-1], units[1:], strict=True):
            hidden += [nn.Linear(u0, u1), nn.ReLU(True)]
        self.embeddings = nn.Sequential(*hidden[:-1])  # FAD uses the last layer before its ReLU
        window = 400  # 25 ms at 16 kHz; periodic Hann, as VGGish's numpy front end
        self.register_buffer("window", 0.5 - 0.5 * torch.cos(2 * math.pi * torch.arange(window) / window),
                             persistent=False)
        self.register_buffer("mel", torch.tensor(vggish_mel_matrix(), dtype=torch.float32), persistent=False)

    def log_mel_patches(self, waveform: torch.Tensor) -> torch.Tensor:
        """[T] -> [P, 1, 96, 64]: 25 ms frames every 10 ms, |rfft 512|, mel, log(x + 0.01), 96-frame patches."""
        minimum = 400 + 160 * (self.config.patch_frames - 1)
        if waveform.numel() < minimum:  # shorter than one patch: pad with silence to one
            waveform = F.pad(waveform, (0, minimum - waveform.numel()))
        frames = waveform.unfold(0, 400, 160) * self.window
        magnitude = torch.fft.rfft(frames, n=512).abs()
        log_mel = torch.log(magnitude @ self.mel + 0.01)
        patches = log_mel.shape[0] // self.config.patch_frames
        return log_mel[:patches * self.config.patch_frames].reshape(patches, 1, self.config.patch_frames, -1)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        x = self.features(self.log_mel_patches(waveform))
        # The TF original flattens channels last.
        return self.embeddings(x.permute(0, 2, 3, 1).reshape(x.shape[0], -1))

    @staticmethod
    def checkpoint_keys(state: dict) -> dict:
        """torchvggish's vggish-10086976.pth: a flat state dict of `features.*` and `embeddings.*`."""
        return {k: v for k, v in state.items() if k.startswith(("features.", "embeddings."))}


# --- PANNs CNN14: log-mel -> six conv blocks -> 2048-d embedding, the FD embedding ---


@dataclass(frozen=True)
class Cnn14Config:
    channels: tuple = (64, 128, 256, 512, 1024, 2048)
    embedding: int = 2048
    classes: int = 527
    sample_rate: int = 32000
    window: int = 1024
    hop: int = 320
    mel_bins: int = 64
    fmin: float = 50.0
    fmax: float = 14000.0


class _ConvBlock(nn.Module):
    def __init__(self, inputs: int, outputs: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, 1, 1, bias=False)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.bn2 = nn.BatchNorm2d(outputs)

    def forward(self, x, pool: int):
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        return F.avg_pool2d(x, pool)


class Cnn14(nn.Module):
    """Waveforms at `sample_rate` [B, T] -> 2048-d clip embeddings [B, 2048] (fc1 + ReLU, PANNs' "embedding")."""

    def __init__(self, config: Cnn14Config = Cnn14Config()):
        super().__init__()
        self.config = config
        self.bn0 = nn.BatchNorm2d(config.mel_bins)
        inputs = 1
        for index, outputs in enumerate(config.channels):
            setattr(self, f"conv_block{index + 1}", _ConvBlock(inputs, outputs))
            inputs = outputs
        self.fc1 = nn.Linear(inputs, config.embedding)
        self.fc_audioset = nn.Linear(config.embedding, config.classes)
        self.register_buffer("window", torch.hann_window(config.window), persistent=False)
        # librosa's default mel filters (Slaney scale and area normalisation), which PANNs was trained with;
        # computed on the CPU even when the model is built on the meta device (shape checks).
        with torch.device("cpu"):
            mel = torchaudio.functional.melscale_fbanks(config.window // 2 + 1, config.fmin, config.fmax,
                                                        config.mel_bins, config.sample_rate, norm="slaney",
                                                        mel_scale="slaney")
        self.register_buffer("mel", mel, persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        power = torch.stft(waveforms, self.config.window, self.config.hop, window=self.window, center=True,
                           pad_mode="reflect", return_complex=True).abs() ** 2
        x = 10 * torch.log10(torch.clamp(power.transpose(1, 2) @ self.mel, min=1e-10))  # [B, frames, mels]
        x = self.bn0(x.unsqueeze(1).transpose(1, 3)).transpose(1, 3)
        for index in range(len(self.config.channels)):
            x = getattr(self, f"conv_block{index + 1}")(x, 2 if index < len(self.config.channels) - 1 else 1)
        x = x.mean(dim=3)
        x = x.max(dim=2).values + x.mean(dim=2)
        return F.relu(self.fc1(x))

    @staticmethod
    def checkpoint_keys(state: dict) -> dict:
        """Cnn14_mAP=0.431.pth: {"model": state dict, ...}; its STFT and mel weights are recomputed here."""
        state = state.get("model", state)
        return {k: v for k, v in state.items()
                if not k.startswith(("spectrogram_extractor.", "logmel_extractor.", "spec_augmenter."))}


ARCHITECTURES = {"wav2clip": (Wav2Clip, Wav2ClipConfig), "vggish": (Vggish, VggishConfig),
                 "cnn14": (Cnn14, Cnn14Config)}


def config_from_dict(kind: str, values: dict):
    """A config from its JSON form (tuples come back as lists)."""
    _, config_class = ARCHITECTURES[kind]
    return config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


