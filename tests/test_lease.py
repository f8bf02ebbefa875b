"""io/lease: one job per output; the lease file or object is untrusted input, and its writes outlive lost answers."""

from __future__ import annotations

import json
import os
import time

import boto3
import pytest
from test_storage import within

from i2a_core.cli import main
from i2a_core.errors import OutputError
from i2a_core.io import lease, storage

TINY = ["--preset", "tiny", "--duration", "0.5", "--steps", "2"]


def test_local_lease_heartbeat_takeover_and_release(tmp_path):
    output = str(tmp_path)
    first = lease.Lease(output, heartbeat_s=0.05)
    path = os.path.join(output, lease.LEASE_NAME)
    beat = os.stat(path).st_mtime
    time.sleep(0.3)
    assert os.stat(path).st_mtime > beat  # the daemon thread refreshes it
    with pytest.raises(lease.LeaseHeld):
        lease.Lease(output)
    second = lease.Lease(output, take_over=True, heartbeat_s=0.05)
    time.sleep(0.3)
    assert "taken over by" in first.lost  # the first job learns it lost the output
    first.release()  # must not remove the new holder's lease
    assert json.load(open(path))["token"] == second.token
    second.release()
    assert not os.path.exists(path)


def test_lease_on_s3_uses_conditional_writes(s3_bucket):
    output = f"{s3_bucket}/out"
    first = lease.Lease(output, heartbeat_s=0.1)
    with pytest.raises(lease.LeaseHeld, match=f"pid {os.getpid()}"):
        lease.Lease(output)
    second = lease.Lease(output, take_over=True, heartbeat_s=0.1)
    time.sleep(0.5)
    assert first.lost and not second.lost  # If-Match on the heartbeat failed for the first holder
    first.release()
    second.release()
    assert not storage.exists(f"{output}/{lease.LEASE_NAME}")
    with pytest.raises(FileNotFoundError):  # a bucket that does not exist is not a lease we could take
        lease.Lease("s3://no-such-bucket-i2a/out")


@pytest.mark.parametrize("make", ["fifo", "dev_zero", "folder", "huge"])
def test_a_lease_path_that_is_not_a_lease_file_is_refused_at_once(tmp_path, make):
    path = tmp_path / lease.LEASE_NAME
    if make == "fifo":
        os.mkfifo(path)  # before: open() waited for a writer for ever
    elif make == "dev_zero":
        os.symlink("/dev/zero", path)
    elif make == "folder":
        path.mkdir()
    else:
        path.write_text(json.dumps({"pad": "x" * lease.MAX_LEASE_BYTES}))
    with pytest.raises(OutputError, match=f"{lease.LEASE_NAME}: not a lease that i2a wrote"):
        within(10, lambda: lease.Lease(str(tmp_path)), fifo=path)


def test_a_nested_json_lease_exits_2_with_one_line(tmp_path, capsys):
    from helpers import write_images

    write_images(tmp_path / "in", ["a.png"])
    output = tmp_path / "out"
    output.mkdir()
    (output / lease.LEASE_NAME).write_text("[" * 30_000 + "]" * 30_000)  # before: RecursionError, exit 1
    assert main(["sonify-job", "--input", str(tmp_path / "in"), "--output", str(output), "--runner", "local",
                 *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "another job holds it" in err and len(err.splitlines()) == 1, err


def test_an_s3_lease_object_is_read_bounded(s3_bucket, s3_endpoint):
    output = f"{s3_bucket}/out"
    bucket = s3_bucket[len("s3://"):]
    boto3.client("s3", endpoint_url=s3_endpoint).put_object(Bucket=bucket, Key=f"out/{lease.LEASE_NAME}",
                                                            Body=b" " * (lease.MAX_LEASE_BYTES + 1))
    with pytest.raises(OutputError, match="not a lease that i2a wrote"):
        lease.Lease(output)


def test_lease_writes_whose_answer_was_lost_are_still_ours(s3_bucket, s3_proxy):
    """A conditional PUT that landed but whose answer was lost is retried and then fails its condition: the
    lease is still ours, not another job's."""
    output = f"{s3_bucket}/out"
    s3_proxy.lose_responses(1)
    held = lease.Lease(output, heartbeat_s=3600)  # the create (If-None-Match) lands; its answer is lost
    assert s3_proxy.cut == 1
    s3_proxy.lose_responses(1)  # ... and so is a heartbeat's (If-Match)
    held._version = held.store.refresh(lease._record(held.token, held.started_at), held._version)
    assert s3_proxy.cut == 2 and not held.lost
    s3_proxy.outage(2.0)  # a heartbeat while the store is away waits for it
    held._version = held.store.refresh(lease._record(held.token, held.started_at), held._version)
    assert not s3_proxy.down
    held.release()
    assert not storage.exists(f"{output}/{lease.LEASE_NAME}")
