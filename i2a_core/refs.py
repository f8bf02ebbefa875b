"""Every model reference resolved in one place: tiny:, random:, local-dir:, hf-hub:, s3://, hub ids and paths.

References become local paths (downloaded once, or built once for generated models), failing within seconds
when the hub is unreachable. The config readers here answer questions about a model (vector sizes, CLIP's
preprocessing, AudioLDM's shortest clip) from its config files alone, without loading weights or torch.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import socket
import urllib.parse

from i2a_core.errors import ModelUnavailable
from i2a_core.io import storage
from i2a_core.models import tiny
from i2a_core.specs import ClipSpec, ModelSpec, is_generated


def cache_dir() -> str:
    return os.environ.get("I2A_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "i2a"))


@functools.lru_cache(maxsize=1)
def hub_reachable(timeout_s: float = 3.0) -> bool:
    """One quick TCP connect to the hub instead of huggingface_hub's ~30 s of retries."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = urllib.parse.urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _offline_message(what: str, reference: str, flag: str, filename: str = "") -> str:
    target = f"DIR/{filename}" if filename else "DIR"
    return (
        f"cannot load {what} '{reference}': the Hugging Face hub is unreachable (or HF_HUB_OFFLINE is set) "
        f"and it is not in the local cache. Download it on a connected machine "
        f"(`hf download {reference} --local-dir DIR`) and pass {flag} {target}, "
        f"or try i2a offline with --preset tiny."
    )


def local_model(reference: str) -> str:
    """A generated model's local directory (built on first use); any other reference unchanged."""
    return tiny.resolve(reference, cache_dir()) if is_generated(reference) else reference


def resolve_repo(reference: str, what: str, flag: str, allow_patterns: list[str] | None = None) -> str:
    """A local directory for a hub repo id, a local path, an s3:// prefix or a generated model."""
    if is_generated(reference):
        return local_model(reference)
    if os.path.isdir(reference):
        return reference
    if storage.is_remote(reference):
        return storage.local_copy(reference, os.path.join(cache_dir(), "remote"))
    # Hub ids are ORG/NAME; anything else that is not a directory is a path that does not exist.
    if reference.startswith(("/", ".", "~")) or reference.count("/") != 1:
        raise ModelUnavailable(f"cannot load {what} '{reference}': no such directory")
    from huggingface_hub import snapshot_download

    online = hub_reachable()
    try:
        return snapshot_download(reference, allow_patterns=allow_patterns, local_files_only=not online)
    except Exception as e:
        if not online:
            raise ModelUnavailable(_offline_message(what, reference, flag)) from None
        raise ModelUnavailable(f"cannot load {what} '{reference}' from the hub: {e}") from None


def resolve_file(repo_id: str, filenames: list[str], what: str, flag: str) -> str:
    """A local path for the first of `filenames` found in a hub repo."""
    from huggingface_hub import hf_hub_download

    online = hub_reachable()
    errors = []
    for filename in filenames:
        try:
            return hf_hub_download(repo_id, filename, local_files_only=not online)
        except Exception as e:  # try the next candidate name
            errors.append(f"{filename}: {e}")
    if not online:
        raise ModelUnavailable(_offline_message(what, repo_id, flag, filenames[0]))
    raise ModelUnavailable(f"cannot load {what} '{repo_id}': " + "; ".join(errors))


def resolve_clip(spec: ClipSpec) -> tuple[str, str | None]:
    """(model name, pretrained) that open_clip can load without touching the network."""
    if is_generated(spec.model):
        return f"local-dir:{local_model(spec.model)}", None
    if spec.model.startswith("local-dir:"):
        path = spec.model[len("local-dir:"):]
        if not os.path.isdir(path):
            raise ModelUnavailable(f"cannot load CLIP '{spec.model}': no such directory")
        return spec.model, None
    if spec.model.startswith("hf-hub:"):
        repo = spec.model[len("hf-hub:"):]
        local = resolve_repo(repo, "CLIP", "--clip-model local-dir:",
                             allow_patterns=["open_clip_config.json", "*.safetensors", "*.bin", "*.txt"])
        return f"local-dir:{local}", None
    import open_clip  # only here: it imports torch, which a driver checking references should not pay for

    if spec.model not in open_clip.list_models():
        raise ModelUnavailable(f"cannot load CLIP '{spec.model}': not an open_clip model name "
                               f"(see open_clip.list_models()), hf-hub:ORG/NAME or local-dir:PATH")
    pretrained = spec.pretrained
    if pretrained and storage.is_remote(pretrained):
        return spec.model, storage.local_copy(pretrained, os.path.join(cache_dir(), "remote"))
    if not pretrained or os.path.exists(pretrained):
        return spec.model, pretrained
    cfg = open_clip.get_pretrained_cfg(spec.model, pretrained)
    if not cfg:
        tags = [tag for name, tag in open_clip.list_pretrained() if name == spec.model]
        raise ModelUnavailable(f"cannot load CLIP '{spec.model}': unknown pretrained tag '{pretrained}' "
                               f"(known: {', '.join(tags) or 'none'}; or pass a checkpoint path)")
    if cfg.get("hf_hub"):
        # open_clip writes "ORG/REPO/" or "ORG/REPO/FILE".
        location = cfg["hf_hub"].rstrip("/")
        repo, filename = os.path.split(location) if location.count("/") > 1 else (location, "")
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        checkpoint = resolve_file(repo, names, f"CLIP {spec.model}/{pretrained}", "--clip-pretrained")
        return spec.model, checkpoint
    if not hub_reachable():
        raise ModelUnavailable(f"cannot load CLIP {spec.model}/{pretrained}: it downloads from "
                               f"{cfg.get('url')} and this machine is offline; pass --clip-pretrained PATH")
    return spec.model, pretrained


def clip_config(spec: ClipSpec, preprocess: bool = True) -> tuple[dict, dict]:
    """CLIP's (model config, preprocessing config) from its config files alone: the one CLIP config reader.

    Generated and local-dir:/hf-hub: models carry open_clip_config.json; built-in names use open_clip's own
    configs merged with the pretrained tag's preprocessing, as open_clip.create_model_and_transforms does.
    """
    if is_generated(spec.model) or spec.model.startswith(("local-dir:", "hf-hub:")):
        name, _ = resolve_clip(spec)
        path = os.path.join(name[len("local-dir:"):], "open_clip_config.json")
        try:
            config = json.loads(storage.read_bytes(path, limit=MAX_CONFIG_BYTES))
            return config["model_cfg"], config.get("preprocess_cfg", {})
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
            raise ModelUnavailable(f"cannot load CLIP '{spec.model}': {path} is not an open_clip config "
                                   f"({type(e).__name__})") from None
    return _builtin_clip_config(spec.model), _pretrained_preprocess(spec) if preprocess else {}


def _builtin_clip_config(name: str) -> dict:
    """An open_clip built-in architecture's config, read from open_clip's own model_configs/NAME.json without
    importing open_clip (which imports torch): drivers check jobs from config files alone."""
    found = importlib.util.find_spec("open_clip")
    folders = list(found.submodule_search_locations or []) if found else []
    for folder in folders:
        path = os.path.join(folder, "model_configs", f"{name}.json")
        if os.path.isfile(path):
            return json.loads(storage.read_bytes(path, limit=MAX_CONFIG_BYTES))
    raise ModelUnavailable(f"cannot load CLIP '{name}': not an open_clip model name (see open_clip.list_models()), "
                           f"hf-hub:ORG/NAME or local-dir:PATH")


def _pretrained_preprocess(spec: ClipSpec) -> dict:
    """The preprocessing a pretrained tag declares (mean, std, interpolation...): open_clip's registry."""
    if not spec.pretrained or os.path.exists(spec.pretrained) or storage.is_remote(spec.pretrained):
        return {}
    import open_clip  # imports torch: only where the transform is built (decode stages), never for dims

    return dict(open_clip.get_pretrained_cfg(spec.model, spec.pretrained) or {})


def clip_dim(spec: ClipSpec) -> int:
    """CLIP's vector size, from its config."""
    return int(clip_config(spec, preprocess=False)[0]["embed_dim"])


def clip_image_size(spec: ClipSpec) -> int:
    """The side of CLIP's square input, from its config (what `i2a fetch` resizes images to)."""
    size = clip_config(spec, preprocess=False)[0]["vision_cfg"].get("image_size", 224)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


def resolve_audioldm(source: str) -> str:
    """A local diffusers-layout directory for a hub id, local path, s3:// prefix or generated model (tiny:)."""
    return resolve_repo(source, "AudioLDM", "--audioldm",
                        allow_patterns=["*.json", "*.txt", "*.safetensors", "tokenizer/*"])


MAX_CONFIG_BYTES = 1 << 20  # a model's JSON config; anything larger is not one


def audioldm_configs(source: str) -> dict | None:
    """The vocoder, VAE and CLAP text encoder configs of an AudioLDM checkpoint, fetching only its JSON files.

    None for an s3:// checkpoint: the driver never downloads a model that only its actors run.
    """
    if storage.is_remote(source):
        return None
    local = resolve_repo(source, "AudioLDM", "--audioldm", allow_patterns=["*.json"])
    configs = {}
    for part in ("vocoder", "vae", "text_encoder"):
        path = os.path.join(local, part, "config.json")
        try:
            configs[part] = json.loads(storage.read_bytes(path, limit=MAX_CONFIG_BYTES))
        except (OSError, ValueError, RecursionError) as e:
            raise ModelUnavailable(f"cannot load AudioLDM '{source}': {path} is not a model config "
                                   f"({type(e).__name__})") from None
    return configs


def clap_dim(source: str) -> int | None:
    """The CLAP vector size AudioLDM conditions on (None for an s3:// checkpoint, known only to its actors)."""
    configs = audioldm_configs(source)
    return int(configs["text_encoder"]["projection_dim"]) if configs else None


def shortest_clip_s(source: str) -> float | None:
    """AudioLDM's shortest clip (one latent frame), as its configs give it (None for an s3:// checkpoint)."""
    configs = audioldm_configs(source)
    if configs is None:
        return None
    vocoder, vae = configs["vocoder"], configs["vae"]
    hop = 1
    for rate in vocoder["upsample_rates"]:
        hop *= rate
    return hop / vocoder["sampling_rate"] * 2 ** (len(vae["block_out_channels"]) - 1)


def check_models_reachable(models: ModelSpec, need_clip: bool = True) -> None:
    """Fail within seconds, before any job starts, when the hub is unreachable and a model is not cached.

    Online, nothing is downloaded here: each actor fetches what it loads. Offline, the references are
    resolved against the local cache only, which is cheap and raises ModelUnavailable naming the model.
    """
    if hub_reachable():
        return
    resolve_audioldm(models.audioldm)
    if need_clip:
        resolve_clip(models.clip)
