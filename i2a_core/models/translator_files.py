"""What a translator directory holds, checked without torch: config.json and the safetensors header.

A translator is config.json (TranslatorConfig: type, dims, hyper-parameters) beside model.safetensors. Both are
untrusted files: inspect_translator reads config.json (bounded, regular files only) and the safetensors
header, and checks every tensor's name, dtype and shape against what the config implies, before anything
is allocated. Drivers check translators this way; models/translator.py builds the torch modules.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

import numpy as np

from i2a_core.errors import TranslatorError
from i2a_core.io import storage

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TRANSLATOR_TYPES = ("mlp", "retrieval")


@dataclass
class TranslatorConfig:
    """Everything needed to rebuild a translator; saved as config.json beside its weights."""

    type: str = "mlp"
    in_dim: int = 512
    out_dim: int = 512
    hidden: int = 512
    loss: str = "cosine"
    temperature: float = 0.07
    # Subtract the mean CLIP image vector and add the mean CLIP text vector before translating:
    # closes the modality gap for translators trained on text pairs but applied to images.
    mean_shift: bool = False
    extra: dict = field(default_factory=dict)  # free-form provenance: data, metrics, clip/clap models

    @classmethod
    def from_dict(cls, data: dict) -> "TranslatorConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# Untrusted files: config.json and the safetensors header are checked before any tensor is allocated.
MAX_DIM = 16384  # widest vector or hidden layer config.json may declare (a 16384-wide MLP is ~1 GB)
MAX_HEADER_BYTES = 16 * 2**20  # the safetensors JSON header (names, dtypes, shapes, offsets)
MAX_CONFIG_BYTES = 1 << 20  # config.json
_SAFETENSORS_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                         "U8": 1, "BOOL": 1}
_FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_config(data, where: str) -> TranslatorConfig:
    """config.json as a TranslatorConfig, refusing wrong types, unknown types and absurd sizes."""
    if not isinstance(data, dict):
        raise TranslatorError(f"{where}: not a JSON object")
    kind = data.get("type", "mlp")
    if not isinstance(kind, str) or kind not in TRANSLATOR_TYPES:
        raise TranslatorError(f"{where}: unknown translator type {_short(kind)} (known: {', '.join(TRANSLATOR_TYPES)})")
    defaults = TranslatorConfig()

    def integer(name: str, value, low: int, high: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise TranslatorError(f"{where}: {name} must be an integer from {low} to {high}, got {_short(value)}")

    for name in ("in_dim", "out_dim"):
        integer(name, data.get(name, getattr(defaults, name)), 1, MAX_DIM)
    integer("hidden", data.get("hidden", defaults.hidden), 1 if kind == "mlp" else 0, MAX_DIM)
    temperature = data.get("temperature", defaults.temperature)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < 1e6:
        raise TranslatorError(f"{where}: temperature must be a positive number, got {_short(temperature)}")
    for name, wanted in (("mean_shift", bool), ("loss", str), ("extra", dict)):
        if name in data and not isinstance(data[name], wanted):
            raise TranslatorError(f"{where}: {name} must be a {wanted.__name__}, got {_short(data[name])}")
    if kind == "retrieval":
        integer("extra.top_k", data.get("extra", {}).get("top_k", 10), 1, 10**9)
    return TranslatorConfig.from_dict(data)


def _weights_header(url: str) -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (dtype, shape) from model.safetensors' header, checked against the file's size."""
    where = storage.join(url, WEIGHTS_NAME)
    fs, path = storage.filesystem(where)
    with fs.open(path, "rb") as f:
        size = fs.size(path)
        prefix = f.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if not 0 < length <= min(MAX_HEADER_BYTES, size - 8):
            raise TranslatorError(f"{where}: not a safetensors file (bad header length)")
        try:
            header = json.loads(f.read(length))
        except (ValueError, UnicodeDecodeError):
            raise TranslatorError(f"{where}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise TranslatorError(f"{where}: not a safetensors file (header is not a JSON object)")
    data_bytes = size - 8 - length
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
            ok = (dtype in _SAFETENSORS_ITEMSIZE and all(isinstance(d, int) and d >= 0 for d in shape)
                  and isinstance(start, int) and isinstance(end, int) and 0 <= start <= end <= data_bytes
                  and end - start == int(np.prod(shape, dtype=object)) * _SAFETENSORS_ITEMSIZE[dtype])
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise TranslatorError(f"{where}: tensor {_short(name)} has a malformed header entry")
        tensors[name] = (dtype, shape)
    return tensors


def inspect_translator(url: str) -> TranslatorConfig:
    """Check a translator directory without loading its weights: config.json, and every tensor's name,
    dtype and shape (from the safetensors header) against the module config.json describes.

    `url` is a translator directory, local or s3:// (refs.local_model resolves tiny:/random: references).
    """
    where = storage.join(url, CONFIG_NAME)
    try:
        config = _check_config(json.loads(storage.read_bytes(where, limit=MAX_CONFIG_BYTES)), where)
        tensors = _weights_header(url)
    except FileNotFoundError:
        raise TranslatorError(f"{url}: not a translator directory (needs {CONFIG_NAME} and {WEIGHTS_NAME})") \
            from None
    except OSError as e:
        raise TranslatorError(f"{where}: cannot read ({e.strerror or type(e).__name__})") from None
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise TranslatorError(f"{where}: not valid JSON ({type(e).__name__})") from None
    expected = expected_tensors(config, {name: shape for name, (_, shape) in tensors.items()}, url)
    missing, unexpected = sorted(expected.keys() - tensors.keys()), sorted(tensors.keys() - expected.keys())
    if missing or unexpected:
        raise TranslatorError(f"{url}: weights do not match config.json (missing: {', '.join(missing) or 'none'}; "
                              f"unexpected: {_short(', '.join(unexpected)) if unexpected else 'none'})")
    for name, (wanted, wanted_shape) in expected.items():
        dtype, shape = tensors[name]
        if shape != wanted_shape or (dtype != wanted and not (wanted in _FLOAT_DTYPES and dtype in _FLOAT_DTYPES)):
            raise TranslatorError(f"{url}: weights do not match config.json ({name} is {dtype}{list(shape)}, "
                                  f"config.json needs {wanted}{list(wanted_shape)})")
    return config


def expected_tensors(config: TranslatorConfig, shapes: dict[str, tuple[int, ...]],
                     where: str = "translator") -> dict[str, tuple[str, tuple[int, ...]]]:
    """name -> (safetensors dtype, shape) of the weights a translator of this config holds.

    A retrieval translator's memory is sized by its data: `shapes` (from the file's header) gives its rows
    and caption bytes. tests/test_translator.py checks this against the torch modules' state_dict.
    """
    i, o, h = config.in_dim, config.out_dim, config.hidden
    tensors = {"image_mean": ("F32", (i,)), "text_mean": ("F32", (i,))}
    if config.type == "mlp":
        for n, (rows, cols) in enumerate(((h, i), (h, h), (o, h))):
            tensors[f"net.{2 * n}.weight"] = ("F32", (rows, cols))
            tensors[f"net.{2 * n}.bias"] = ("F32", (rows,))
        return tensors
    if not shapes.get("keys") or not shapes.get("caption_bytes"):
        raise TranslatorError(f"{where}: retrieval translator weights need 'keys' and 'caption_bytes'")
    rows, caption_bytes = shapes["keys"][0], shapes["caption_bytes"][0]
    tensors.update(keys=("F32", (rows, i)), values=("F32", (rows, o)), caption_bytes=("U8", (caption_bytes,)),
                   caption_offsets=("I64", (rows + 1,)))
    return tensors


def write_random(directory: str, config: TranslatorConfig, seed: int = 0) -> None:
    """A translator directory with seeded random weights of `config`'s shapes (the generated test models)."""
    from safetensors.numpy import save

    rng = np.random.default_rng(seed)
    weights = {}
    for name, (_, shape) in expected_tensors(config, {}).items():
        scale = 1.0 / np.sqrt(shape[-1]) if name.startswith("net.") else 0.0  # torch's Linear init range
        weights[name] = rng.uniform(-scale, scale, size=shape).astype(np.float32)
    storage.makedirs(directory)
    storage.write_bytes_atomic(storage.join(directory, WEIGHTS_NAME), save(weights))
    storage.write_text_atomic(storage.join(directory, CONFIG_NAME), json.dumps(dataclasses.asdict(config), indent=2))
