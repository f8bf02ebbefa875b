"""errors: every failure of one input gets a kind (transient or permanent) and a reason that fits one line."""

from __future__ import annotations

import errno

import pytest
import s3fs.errors
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

from i2a_core import cli
from i2a_core.errors import UserError, classify, is_transient, one_line
from i2a_core.io.fetch_url import FetchError
from i2a_core.io.images import ImageError


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "SECRET server words"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def _s3fs(error: ClientError) -> OSError:
    """What s3fs raises for an S3 error answer: an OSError caused by botocore's ClientError."""
    try:
        raise s3fs.errors.translate_boto_error(error) from error
    except OSError as e:
        return e


@pytest.mark.parametrize("error, operation, kind", [
    (ImageError("a.png", "not an image (HTML, 10 bytes)", "not_image"), "read", "not_image"),
    (FetchError("timed out after 10 s", "timeout"), "read", "timeout"),
    (OSError(errno.ENOSPC, "No space left on device"), "write", "disk_full"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "write", "disk_full"),
    (OSError("pyarrow: error writing: No space left on device"), "write", "disk_full"),  # errno lost on the way
    (EndpointConnectionError(endpoint_url="http://store"), "read", "storage_unavailable"),  # not an OSError
    (ConnectionClosedError(endpoint_url="http://store"), "write", "storage_unavailable"),
    (ReadTimeoutError(endpoint_url="http://store"), "read", "storage_unavailable"),
    (_client_error("SlowDown", 503), "write", "storage_unavailable"),
    (_s3fs(_client_error("SlowDown", 503)), "write", "storage_unavailable"),  # before: write_failed, never retried
    (_s3fs(_client_error("InternalError", 500)), "read", "storage_unavailable"),  # before: unreadable
    (_s3fs(_client_error("WeirdGateway", 502)), "read", "storage_unavailable"),
    (_s3fs(_client_error("RequestTimeout", 400)), "read", "storage_unavailable"),
    (TimeoutError(), "read", "storage_unavailable"),
    (_s3fs(_client_error("AccessDenied", 403)), "read", "unreadable"),  # a rerun would not change it
    (_s3fs(_client_error("NoSuchKey", 404)), "read", "missing"),
    (OSError(errno.EACCES, "Permission denied"), "write", "write_failed"),
    (IsADirectoryError(errno.EISDIR, "Is a directory"), "read", "unreadable"),
    (ZeroDivisionError("division by zero"), "read", "internal"),
])
def test_classify(error, operation, kind):
    got, reason = classify(error, "s3://bucket/cat\n.png", operation)
    assert got == kind, (error, reason)
    assert reason.startswith("s3://bucket/cat\\n.png: ") and "\n" not in reason
    assert "SECRET" not in reason  # what a server said is never repeated
    assert is_transient(got) == (kind in ("timeout", "disk_full", "storage_unavailable", "internal")), kind


def test_one_line_shows_control_characters_instead_of_obeying_them():
    assert one_line("plain café 猫.png") == "plain café 猫.png"
    assert one_line("a\nb\rc\td") == "a\\nb\\rc\\td"
    assert one_line("\x1b[31mred\x1b[0m\x07\x00\x7f\x85") == "\\x1b[31mred\\x1b[0m\\x07\\x00\\x7f\\x85"
    assert one_line("a\u2028b\u202egnp.exe") == "a\\u2028b\\u202egnp.exe"  # line separator, right-to-left override
    assert one_line("bad-\udcff.png") == "bad-\\udcff.png"  # an undecodable file name byte: printable now
    assert len(one_line("x\n" * 1000).splitlines()) == 1


def _user_error_types() -> list[type]:
    found, stack = [], [UserError]
    while stack:
        kind = stack.pop()
        found.append(kind)
        stack.extend(kind.__subclasses__())
    return found


@pytest.mark.parametrize("error", [*_user_error_types(), FileNotFoundError, RuntimeError], ids=lambda t: t.__name__)
def test_every_user_error_type_exits_2_in_one_line_through_the_one_base_class(error, monkeypatch, capsys):
    """The CLI maps exceptions to exit codes by type: every UserError subclass (and a path the user named that
    cannot be read) is exit 2 with one line; anything else is exit 1, pointing to --debug."""
    def fail(args):
        raise error("the reason, naming the input")

    name, (help_text, description, add_arguments, _) = "sonify", cli.COMMANDS["sonify"]
    monkeypatch.setitem(cli.COMMANDS, name, (help_text, description, add_arguments, fail))
    code = cli.main(["sonify", "--output", "out", "cat.jpg"])
    err = capsys.readouterr().err
    assert code == (1 if error is RuntimeError else 2), err
    assert len(err.strip().splitlines()) == 1 and "the reason, naming the input" in err, err
    assert "Traceback" not in err
