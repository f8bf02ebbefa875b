"""io/storage: bounded reads of untrusted files, job.json, and object-store access that outlives a blip."""

from __future__ import annotations

import json
import os
import threading

import pandas as pd
import pytest

from i2a_core.cli import main
from i2a_core.errors import OutputError
from i2a_core.io import manifest, storage

NESTED = "[" * 100_000 + "]" * 100_000  # valid JSON that Python's parser cannot recurse through
TINY = ["--preset", "tiny", "--duration", "0.5", "--steps", "2"]


def within(seconds: float, call, fifo=None):
    """call() in a thread; fails the test if it has not returned in `seconds` (a read blocked on a FIFO), then
    frees that thread by opening the FIFO's other end."""
    outcome = {}

    def run():
        try:
            outcome["value"] = call()
        except Exception as e:  # handed to the test
            outcome["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if fifo is not None:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"still running after {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def test_read_json_is_bounded_and_names_the_file(tmp_path):
    good, nested, garbled = tmp_path / "good.json", tmp_path / "nested.json", tmp_path / "garbled.json"
    good.write_text('{"a": 1}')
    nested.write_text(NESTED)
    garbled.write_bytes(b"\xff{")
    assert storage.read_json(str(good), limit=100) == {"a": 1}
    with pytest.raises(ValueError, match="nested.json: not valid JSON .nested too deeply"):
        storage.read_json(str(nested), limit=1 << 20)
    with pytest.raises(ValueError, match="garbled.json: not UTF-8"):
        storage.read_json(str(garbled), limit=100)
    with pytest.raises(OSError, match="over the 100-byte limit"):
        storage.read_json(str(nested), limit=100)
    os.mkfifo(tmp_path / "fifo.json")
    os.symlink("/dev/zero", tmp_path / "zero.json")
    for special in ("fifo.json", "zero.json"):
        with pytest.raises(OSError, match="not a regular file"):
            within(5, lambda s=special: storage.read_json(str(tmp_path / s), limit=100), fifo=tmp_path / "fifo.json")


@pytest.mark.parametrize("make", ["fifo", "dev_zero", "nested", "list", "huge"])
def test_a_job_json_that_no_job_wrote_is_a_user_error(tmp_path, make):
    path = tmp_path / "job.json"
    if make == "fifo":
        os.mkfifo(path)
    elif make == "dev_zero":
        os.symlink("/dev/zero", path)  # before: read until memory ran out
    elif make == "nested":
        path.write_text(NESTED)  # before: RecursionError, exit 1
    elif make == "list":
        path.write_text("[1, 2]")  # before: AttributeError, exit 1
    else:
        path.write_text(json.dumps({"pad": "x" * (storage.MAX_JOB_JSON_BYTES + 1)}))
    with pytest.raises(OutputError, match=r"job.json: .*not a job.json that i2a wrote"):
        within(10, lambda: storage.claim_output(str(tmp_path), {"job": "sonify"}), fifo=path)


def test_nested_json_in_job_json_or_a_translator_config_exits_2_with_one_line(tmp_path, capsys):
    from helpers import write_images

    write_images(tmp_path / "in", ["a.png"])
    output = tmp_path / "out"
    output.mkdir()
    (output / "job.json").write_text(NESTED)
    assert main(["sonify-job", "--input", str(tmp_path / "in"), "--output", str(output), "--runner", "local",
                 *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "nested too deeply" in err and len(err.splitlines()) == 1, err

    translator = tmp_path / "translator"
    translator.mkdir()
    (translator / "config.json").write_text(NESTED)
    (translator / "model.safetensors").write_bytes(b"")
    assert main(["sonify", str(tmp_path / "in" / "a.png"), "--output", str(tmp_path / "clips"),
                 "--translator", str(translator), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert "config.json: not valid JSON" in err and len(err.splitlines()) == 1, err


# --- the object store going away for a moment ---


def test_s3_clients_retry_as_configured(s3_bucket):
    fs, _ = storage.filesystem(f"{s3_bucket}/x")
    config = fs.s3.meta.config  # what botocore was given: would be botocore's legacy defaults without storage's
    assert config.retries == {"mode": storage.RETRY_MODE, "total_max_attempts": storage.MAX_ATTEMPTS}
    assert (config.connect_timeout, config.read_timeout) == (storage.CONNECT_TIMEOUT_S, storage.READ_TIMEOUT_S)


@pytest.mark.parametrize("mode", ["refuse", "reset"])
def test_reads_writes_and_manifest_parts_outlive_a_2_s_outage(s3_bucket, s3_proxy, mode):
    output = f"{s3_bucket}/out"
    storage.write_bytes_atomic(f"{output}/a.bin", b"before")
    row = {name: None for name in manifest.SCHEMA.names}
    row.update(input="/x.png", output="audio/x.wav", status="ok", error="", error_kind="", seed=1,
               finished_at=pd.Timestamp.now(tz="UTC"))
    steps = {
        "write": lambda: storage.write_bytes_atomic(f"{output}/b.bin", b"during"),
        "read": lambda: storage.read_bytes(f"{output}/a.bin", limit=100),
        "manifest part": lambda: manifest.write_part(output, [row]),
        "manifest read": lambda: manifest.read(output),
        "job.json": lambda: storage.claim_output(output, {"job": "sonify"}),
    }
    if mode == "reset":  # the same calls as "refuse": only the client's error differs (ConnectionClosedError)
        steps = {name: steps[name] for name in ("write", "read")}
    for name, step in steps.items():
        s3_proxy.outage(2.0, mode)
        step()  # botocore retries (storage.RETRY_MODE) until the store is back
        assert not s3_proxy.down, name  # it did wait the outage out: nothing came from a cache
    assert s3_proxy.cut > 0
    assert storage.read_bytes(f"{output}/b.bin", limit=100) == b"during"
    assert manifest.read(output).num_rows == (1 if mode == "refuse" else 0)
