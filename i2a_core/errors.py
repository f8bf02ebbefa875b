"""Every error a user can fix, under one base class the CLI maps to exit status 2, one subclass per domain."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix (a flag, a path, a model, a setting): one line naming it, exit status 2."""


class ConfigError(UserError):
    """A flag or setting that cannot work: str() names the flag and the reason."""


class ModelUnavailable(UserError):
    """A model that cannot be loaded here; str() says which one and what to do."""


class TranslatorError(UserError):
    """A translator that cannot be used: missing, malformed, or the wrong shape for the encoders."""


class OutputError(UserError):
    """An output location that cannot be written: a file, not a folder, or a bucket that does not exist."""


class OutputMismatch(UserError):
    """An output folder that an earlier run filled with other settings."""


class LeaseHeld(UserError):
    """Another job holds the output; str() says who, since when, and how to take over."""


class LeaseLost(UserError):
    """This job's lease was taken over by another job while it ran."""


class ListError(UserError):
    """A list file that cannot be read as one: a folder, not UTF-8 text, or not Parquet."""


class SourceError(UserError):
    """A caption table that cannot be read as the requested source; str() names the input and the reason."""


class DatasetError(UserError):
    """Embedding input that cannot be trained on: missing, empty, wrong schema, or no valid rows."""


class ClusterError(UserError):
    """A job setting that cannot work on this cluster; str() names the setting and the fix."""


class EvalError(UserError):
    """Eval inputs that cannot be scored (an empty reference folder, no clips)."""


class Stalled(RuntimeError):
    """Nothing finished for --stall-timeout seconds while work remained; str() says what the job waited for."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: stop, keep what is committed; exit status 143."""

    exit_code = 143


# Error kinds of one input (its manifest row's error_kind) that a rerun retries: the cause was the network, a
# store or a worker, not the input. Every other kind is permanent: a rerun skips the input.
TRANSIENT_KINDS = frozenset({
    "timeout", "unreachable", "host_unreachable",  # an http(s) host that did not answer
    "http_408", "http_429",  # the server asked to come back later
    "truncated_download",  # the body ended before its Content-Length
    "storage_unavailable",  # an object store or file server that timed out, dropped the connection or throttled
    "disk_full",  # ENOSPC, EDQUOT: free space and rerun
    "worker_lost",  # the actor or node holding the input died
})


def is_transient(kind: str) -> bool:
    """Whether a rerun retries an input that failed with this error kind (5xx statuses are transient)."""
    return kind in TRANSIENT_KINDS or kind.startswith("http_5")


def classify(error: BaseException, name: str, writing: bool = False) -> tuple[str, str]:
    """(error kind, one-line reason naming the input) for any exception raised while one input was handled."""
    kind = getattr(error, "kind", None)
    if writing and isinstance(error, OSError):
        return "write_failed", one_line(f"{name}: cannot write ({error.strerror or type(error).__name__})")
    if isinstance(kind, str) and kind:
        reason = getattr(error, "reason", None) or str(error)
        return kind, one_line(reason if str(reason).startswith(name) else f"{name}: {reason}")
    return "internal", one_line(f"{name}: {type(error).__name__}: {error}")


_CONTROL = {i: f"\\x{i:02x}" for i in (*range(0x00, 0x20), 0x7F)}


def one_line(text: str) -> str:
    """Text made safe for one console line: control characters (newlines, escapes) shown as \\xNN."""
    return str(text).translate(_CONTROL)
