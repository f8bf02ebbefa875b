"""Where the scoring models' weights come from: tiny:NAME, a local file or folder, s3://, an http(s) URL, a hub id.

No torch here, so the eval driver can check every model before any work starts.
"""

from __future__ import annotations

import os
import urllib.parse
import urllib.request

from i2a_core import refs
from i2a_core.io import storage

TINY_SCHEME = "tiny:"  # built offline by tiny_scorers.py where the model runs


def is_tiny(reference: str | None) -> bool:
    return bool(reference) and str(reference).startswith(TINY_SCHEME)


def _download(url: str, what: str, flag: str) -> str:
    """A cached local copy of a released checkpoint; offline, one line saying how to point at a local copy."""
    name = os.path.basename(urllib.parse.unquote(urllib.parse.urlparse(url).path))
    target = os.path.join(refs.cache_dir(), "eval-weights", name)
    if os.path.exists(target):
        return target
    offline_hint = (f"cannot load {what} '{url}': it is not in the cache and cannot be downloaded here "
                    f"({{reason}}). Download it on a connected machine and pass {flag} PATH (a local file or "
                    f"s3:// URL), or score offline with --preset tiny.")
    if os.environ.get("HF_HUB_OFFLINE") == "1":
        raise refs.ModelUnavailable(offline_hint.format(reason="HF_HUB_OFFLINE is set"))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    staging = f"{target}.{os.getpid()}.partial"  # actors on one node may download at once
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(staging, "wb") as f:
            while chunk := response.read(1 << 20):
                f.write(chunk)
        os.replace(staging, target)
    except OSError as e:
        reason = getattr(e, "reason", None) or type(e).__name__
        raise refs.ModelUnavailable(offline_hint.format(reason=reason)) from None
    finally:
        if os.path.exists(staging):
            os.remove(staging)
    return target


def resolve_weights(reference: str, what: str, flag: str) -> str:
    """A local path for a checkpoint file or model folder given as a path, s3://..., a URL or a hub id."""
    if reference.startswith(("http://", "https://")):
        return _download(reference, what, flag)
    if storage.is_remote(reference):
        try:
            return storage.local_copy(reference, os.path.join(refs.cache_dir(), "remote"))
        except FileNotFoundError:
            raise refs.ModelUnavailable(f"cannot load {what} '{reference}': no such file or prefix") from None
    if os.path.exists(reference):
        return reference
    if reference.count("/") == 1 and not reference.startswith((".", "/", "~")):
        return refs.resolve_repo(reference, what, flag)
    raise refs.ModelUnavailable(f"cannot load {what} '{reference}': no such file")


def scoring_flags(message: str) -> str:
    """clip.py names the generation flags; the scoring CLIP is set with --cs-clip / --cs-clip-pretrained."""
    return message.replace("--clip-pretrained", "--cs-clip-pretrained").replace("--clip-model", "--cs-clip")


def check_available(models, want: tuple) -> None:
    """Resolve every scoring model this run needs (cache, download or ModelUnavailable) before any work starts.
    tiny: models are built offline where they run, so there is nothing to check for them."""
    if "cs" in want:
        try:
            refs.resolve_clip(models.cs_clip)
        except refs.ModelUnavailable as e:
            raise refs.ModelUnavailable(scoring_flags(str(e))) from None
    for name, reference, what, flag in (("cs", models.cs_audio, "Wav2CLIP", "--cs-audio"),
                                        ("clap", models.clap, "CLAP", "--clap-score-model"),
                                        ("fad", models.fad, "VGGish", "--fad-model"),
                                        ("fd", models.fd, "PANNs CNN14", "--fd-model")):
        if name in want and not is_tiny(reference):
            resolve_weights(reference, what, flag)
