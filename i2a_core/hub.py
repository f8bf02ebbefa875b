"""Turn model references (hub ids, local dirs, s3:// prefixes, generated tiny:/random: models) into local paths,
failing fast when offline."""

from __future__ import annotations

import functools
import os
import socket
import urllib.parse

from i2a_core import storage, tiny


class ModelUnavailable(RuntimeError):
    """A model that cannot be loaded here; str() says which one and what to do."""


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
    return tiny.resolve(reference, cache_dir()) if tiny.is_generated(reference) else reference


def resolve_repo(reference: str, what: str, flag: str, allow_patterns: list[str] | None = None) -> str:
    """A local directory for a hub repo id, a local path, an s3:// prefix or a generated model."""
    if tiny.is_generated(reference):
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
