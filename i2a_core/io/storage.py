"""Local and object-storage paths behind one fsspec interface: join, read, list, atomic writes."""

from __future__ import annotations

import errno
import json
import os
import posixpath
import shutil
import stat
import uuid

import fsspec

from i2a_core.errors import OutputError, OutputMismatch


def is_remote(url: str) -> bool:
    """True for any fsspec URL with a protocol other than the local disk (s3://, gs://, memory://...)."""
    return "://" in str(url) and not str(url).startswith("file://")


# The standard AWS settings s3fs reads. Ray workers started before they were set (or on other nodes)
# would not see them, so jobs forward those set on the driver to every stage.
AWS_SETTINGS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE", "AWS_RETRY_MODE",
                "AWS_MAX_ATTEMPTS")

# botocore retries every object-store request that failed for want of the store: connection refused or reset,
# timeouts, 5xx and throttling, with capped exponential backoff (up to 20 s a wait), so a store that is away
# for seconds delays a job instead of ending it. "adaptive" also slows the client down while it is throttled.
# AWS_RETRY_MODE and AWS_MAX_ATTEMPTS, botocore's own settings, override these defaults.
RETRY_MODE = "adaptive"
MAX_ATTEMPTS = 10  # tries in all, the first included: waits add up to a minute or more before a request fails
CONNECT_TIMEOUT_S = 5.0  # a store that does not accept the connection within this is retried (s3fs's default)
READ_TIMEOUT_S = 15.0  # silence mid-request for this long is retried (s3fs's default; botocore's is 60 s)


def worker_env() -> dict[str, str]:
    """The AWS settings of this process, for a Ray runtime_env's env_vars."""
    return {k: os.environ[k] for k in AWS_SETTINGS if k in os.environ}


def _s3_options() -> dict:
    # total_max_attempts counts the first try too, as AWS_MAX_ATTEMPTS does (botocore's max_attempts would not).
    retries = {"mode": os.environ.get("AWS_RETRY_MODE", RETRY_MODE),
               "total_max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", MAX_ATTEMPTS))}
    return {"config_kwargs": {"retries": retries, "connect_timeout": CONNECT_TIMEOUT_S,
                              "read_timeout": READ_TIMEOUT_S}}


def filesystem(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem that holds `url` and the path inside it: every object-store access goes through here.

    s3fs reads the endpoint and credentials from the standard AWS settings (AWS_ENDPOINT_URL,
    AWS_ACCESS_KEY_ID, profiles, instance roles), so MinIO and other S3-compatible stores work; its
    requests retry as RETRY_MODE says.
    """
    url = str(url)
    protocol = url.split("://", 1)[0].lower() if "://" in url else "file"
    return fsspec.core.url_to_fs(url, **(_s3_options() if protocol in ("s3", "s3a") else {}))


def join(base: str, *parts: str) -> str:
    """Join path parts onto a local path or URL without touching the protocol."""
    base = str(base)
    if is_remote(base):
        return posixpath.join(base, *parts)
    return os.path.join(base, *parts)


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return fs.exists(path)


def read_bytes(url: str, limit: int | None = None) -> bytes:
    """The bytes at `url`. With `limit`, never more than that: a larger file, a FIFO or a device (a symlink to
    /dev/zero) is refused before anything is read, with an OSError naming the file and the reason."""
    if limit is None:
        fs, path = filesystem(url)
        with fs.open(path, "rb") as f:
            return f.read()
    if is_remote(url):
        fs, path = filesystem(url)
        size = fs.size(path)
        if size is not None and size > limit:
            raise OSError(errno.EFBIG, f"{size:,} bytes, over the {limit:,}-byte limit", url)
        with fs.open(path, "rb") as f:
            data = f.read(limit + 1)
    else:
        local = url[len("file://"):] if url.startswith("file://") else url
        fd = os.open(local, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", url)
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(limit + 1)
        finally:
            os.close(fd)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"over the {limit:,}-byte limit", url)
    return data


def read_text(url: str) -> str:
    return read_bytes(url).decode("utf-8")


def remove(url: str) -> None:
    """Delete one file or object (FileNotFoundError when it is not there)."""
    fs, path = filesystem(url)
    fs.rm_file(path)


def read_json(url: str, limit: int) -> object:
    """The JSON value in the file at `url`, read as read_bytes(url, limit) does (OSError for a file that is too
    large, not regular or missing). A file that is not UTF-8 JSON, or nests too deeply for Python to parse, is
    a ValueError naming the file: never a RecursionError."""
    data = read_bytes(url, limit=limit)
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{url}: not UTF-8 text") from None
    except RecursionError:
        raise ValueError(f"{url}: not valid JSON (nested too deeply)") from None
    except ValueError as e:
        raise ValueError(f"{url}: not valid JSON ({type(e).__name__} at character {getattr(e, 'pos', '?')})") \
            from None


def makedirs(url: str) -> None:
    fs, path = filesystem(url)
    if not is_remote(url):
        fs.makedirs(path, exist_ok=True)


def write_bytes_atomic(url: str, data: bytes, sync: bool = True) -> None:
    """Write so that readers see either no file or the whole file, never a partial one.

    Local files are written beside the target and renamed (atomic on POSIX); `sync=False` skips the fsync
    for files whose commit is a later, synced write (a clip's files before its manifest part). An
    object-store PUT is already all-or-nothing, so remote files are written in one call.
    """
    fs, path = filesystem(url)
    if is_remote(url):
        fs.pipe_file(path, data)
        return
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomic(url: str, text: str, sync: bool = True) -> None:
    write_bytes_atomic(url, text.encode("utf-8"), sync)



def check_output(url: str) -> None:
    """Refuse an output that no job could write, before any model is loaded or any work is done."""
    fs, path = filesystem(url)
    if not is_remote(url):
        probe = os.path.abspath(path)
        while not os.path.exists(probe) and os.path.dirname(probe) != probe:
            probe = os.path.dirname(probe)  # the nearest existing ancestor must be a folder we can write
        if not os.path.isdir(probe):
            raise OutputError(f"--output {url}: {probe} is a file, not a folder")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise OutputError(f"--output {url}: {probe} is not writable")
        return
    bucket = path.split("/", 1)[0]
    try:
        found = fs.exists(bucket)
    except Exception as e:  # no credentials, endpoint unreachable: name the reason, never the secret
        raise OutputError(f"--output {url}: cannot reach the bucket ({type(e).__name__})") from None
    if not found:
        raise OutputError(f"--output {url}: bucket '{bucket}' does not exist (create it first)")
    if path.rstrip("/") != bucket and fs.isfile(path.rstrip("/")):
        raise OutputError(f"--output {url}: an object, not a prefix")


def local_copy(url: str, cache_root: str) -> str:
    """A local path holding the file or folder at `url`, downloaded once into `cache_root`."""
    if not is_remote(url):
        return str(url)
    fs, path = filesystem(url)
    protocol = fs.protocol[0] if isinstance(fs.protocol, (tuple, list)) else fs.protocol
    target = os.path.join(cache_root, protocol, path.strip("/"))
    if os.path.exists(target):
        return target
    if not fs.exists(path):
        raise FileNotFoundError(f"{url}: no such file or prefix")
    # Download beside the target, then rename: a concurrent or killed download never leaves half a model.
    staging = f"{target}.{uuid.uuid4().hex}.partial"
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if fs.isdir(path):
        fs.get(path.rstrip("/") + "/", staging + "/", recursive=True)
    else:
        fs.get_file(path, staging)
    try:
        os.rename(staging, target)
    except OSError:  # another process won the race
        shutil.rmtree(staging, ignore_errors=True)
    return target



MAX_JOB_JSON_BYTES = 1 << 20  # job.json holds a few settings; anything larger was not written by a job


def claim_output(output: str, settings: dict, name: str = "job.json") -> None:
    """Record a resumable job's settings in its output, or check that a rerun uses the same ones.

    Resuming into an output made with other models or seeds would silently mix two runs in one result.
    """
    settings = json.loads(json.dumps(settings))  # compare as stored: tuples become lists
    url = join(output, name)
    if not exists(url):
        write_text_atomic(url, json.dumps(settings, indent=2, sort_keys=True))
        return
    try:
        before = read_json(url, limit=MAX_JOB_JSON_BYTES)
        reason = "" if isinstance(before, dict) else "not a JSON object"
    except ValueError as e:
        reason = str(e).removeprefix(f"{url}: ")
    except OSError as e:  # a FIFO, a device (/dev/zero), a folder or a huge file: refused before reading it
        if e.errno not in (errno.EINVAL, errno.EFBIG, errno.EISDIR):
            raise
        reason = e.strerror or type(e).__name__
    if reason:
        raise OutputError(f"{url}: {reason}; not a {name} that i2a wrote: delete it, or choose a new --output")
    changed = sorted(k for k in settings.keys() | before.keys() if before.get(k) != settings.get(k))
    if changed:
        details = ", ".join(f"{k} {before.get(k)!r} -> {settings.get(k)!r}" for k in changed)
        raise OutputMismatch(f"{output}: an earlier run wrote it with other settings ({details}); rerun with "
                             f"the same settings to resume, or choose a new --output")
