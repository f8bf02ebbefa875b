"""Every error a user can fix, under one base class the CLI maps to exit status 2, one subclass per domain."""

from __future__ import annotations

import errno
import re


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
    "internal",  # an unexpected error (a bug, or a library's): retried once it is fixed
})


def is_transient(kind: str) -> bool:
    """Whether a rerun retries an input that failed with this error kind (5xx statuses are transient)."""
    return kind in TRANSIENT_KINDS or kind.startswith("http_5")


# --- one input's failure: a kind and a one-line reason ---

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
_DISK_FULL_WORDS = ("No space left on device", "Disk quota exceeded")  # libraries that lose the errno (pyarrow)
# What an object store or file server says when it is down, throttling or too slow: s3fs turns S3's 500, 503 and
# SlowDown into these errnos; the rest are the network's own.
_STORE_ERRNOS = {errno.EREMOTEIO, errno.EBUSY, errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNREFUSED,
                 errno.ECONNABORTED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EPIPE}
# S3 and AWS error codes that mean "come back later" (botocore's own list of throttling and transient codes).
_STORE_CODES = {"Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
                "TooManyRequestsException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
                "BandwidthLimitExceeded", "LimitExceededException", "RequestThrottled", "SlowDown",
                "PriorRequestNotComplete", "EC2ThrottledException", "RequestTimeout", "RequestTimeoutException",
                "InternalError", "ServiceUnavailable", "TransactionInProgressException"}


def classify(error: BaseException, name: str, operation: str = "read") -> tuple[str, str]:
    """(error_kind, one-line reason naming the input) for any exception raised while one input was handled.

    `operation` ("read" or "write") says what failed; it decides the kind of a plain OSError (`missing`,
    `unreadable` or `write_failed`, all permanent). Disk full and an object store that is down, slow or
    throttling are transient (TRANSIENT_KINDS). The reason never quotes what a server sent.
    """
    kind, reason = _kind_and_reason(error, operation)
    return kind, one_line(f"{name}: {reason}")


def _kind_and_reason(error: BaseException, operation: str) -> tuple[str, str]:
    kind, reason = getattr(error, "kind", None), getattr(error, "reason", None)
    if isinstance(kind, str) and isinstance(reason, str):  # ImageError, FetchError: classified where raised
        return kind, reason
    for cause in _causes(error):
        if isinstance(cause, OSError) and cause.errno in _DISK_FULL or any(w in str(cause) for w in _DISK_FULL_WORDS):
            return "disk_full", f"cannot {operation}: disk full (free space and rerun)"
    unavailable = _store_unavailable(error)
    if unavailable:
        return "storage_unavailable", f"cannot {operation}: storage unavailable ({unavailable})"
    if isinstance(error, OSError):
        why = error.strerror or type(error).__name__
        if operation == "write":
            return "write_failed", f"cannot write ({why})"
        if isinstance(error, FileNotFoundError):
            return "missing", "no such file"
        return "unreadable", f"cannot read ({why})"
    return "internal", f"internal error ({type(error).__name__}); rerun with --debug for the traceback"


def _causes(error: BaseException | None):
    """The error and what caused it, outermost first (s3fs raises an OSError caused by botocore's error)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _store_unavailable(error: BaseException) -> str:
    """What shows that an object store or file server was unreachable, slow or throttling ('' if nothing).

    s3fs raises botocore's connection errors as they are (they are not OSErrors) and turns S3's error
    responses into OSErrors caused by the ClientError, so every cause is looked at.
    """
    try:
        from botocore import exceptions as boto
    except ImportError:  # no object-store support installed: only the OSErrors below
        boto = None
    for cause in _causes(error):
        if boto is not None:
            if isinstance(cause, (boto.ConnectionError, boto.HTTPClientError)):  # refused, reset, timed out
                return type(cause).__name__
            if isinstance(cause, boto.ClientError):
                response = getattr(cause, "response", None) or {}
                code = str(response.get("Error", {}).get("Code", ""))
                status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
                if code in _STORE_CODES:
                    return code
                if status in (408, 429) or status >= 500:
                    return f"HTTP {status}"
                return ""  # an answer that will not change: access denied, no such bucket...
        if type(cause).__module__.split(".")[0] == "aiohttp" and isinstance(cause, Exception):
            return type(cause).__name__  # a connection error that reached us unwrapped
        if isinstance(cause, (TimeoutError, ConnectionError)):  # also asyncio's and fsspec's timeouts
            return type(cause).__name__
        if isinstance(cause, OSError) and cause.errno in _STORE_ERRNOS:
            return errno.errorcode.get(cause.errno, type(cause).__name__)
    return ""


# Characters that would move the cursor, forge a line, recolour or reorder a console line: C0 and C1 controls,
# DEL, line and paragraph separators, bidirectional overrides, and lone surrogates (undecodable file names).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str) -> str:
    """`text` made safe for one console line: newlines, escape sequences and other control characters are
    written visibly as escapes (`\\n`, `\\x1b`, `\\u202e`), so a crafted name cannot forge or recolour lines."""
    return _UNSAFE.sub(_escape, str(text))


def _escape(match: re.Match) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
