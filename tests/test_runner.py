"""The one runner: isolation of a bad item, exactly-once commits, and (on a real two-node cluster) lost workers,
joining nodes and stalls; a storage outage mid-job behind a TCP proxy."""

from __future__ import annotations

import os
import subprocess

import pyarrow as pa
import pytest
from cluster import LocalCluster, wait_for
from helpers import i2a_command, write_images

from i2a_core import runner
from i2a_core.io import manifest

ROWS = pa.schema([("key", pa.string()), ("status", pa.string()), ("error", pa.string()), ("error_kind", pa.string()),
                  ("doubled", pa.int64())])
FAST = ["--preset", "tiny", "--duration", "0.5", "--steps", "2", "--batch-size", "1"]


class Collect:
    """A PartWriter's interface, in memory."""

    schema = ROWS

    def __init__(self):
        self.rows = []

    def add(self, rows: dict) -> int:
        self.rows += pa.table({n: pa.array(list(rows[n]), type=ROWS.field(n).type) for n in ROWS.names}).to_pylist()
        return len(rows["key"])

    def flush(self) -> int:
        return 0


def items(n: int) -> pa.Table:
    return pa.table({"key": [f"k{i}" for i in range(n)], "value": list(range(n)), "error": [""] * n,
                     "error_kind": [""] * n})


def test_a_stage_that_raises_on_one_item_fails_that_item_only(tmp_path):
    chain = runner.Chain((runner.Stage("runner_stages:double", {"fail_on": "k3"}), runner.Stage("runner_stages:Rows")))
    collected = Collect()
    report = runner.run(runner.spill([items(10)], str(tmp_path)), chain, collected, chunk_size=4, log=lambda _: None)
    assert report.done == 10
    rows = {row["key"]: row for row in collected.rows}
    assert sorted(rows) == sorted(f"k{i}" for i in range(10))  # every item once
    assert rows["k3"]["status"] == "error" and rows["k3"]["error_kind"] == "internal"
    assert "k3" in rows["k3"]["error"] and "ValueError" in rows["k3"]["error"]
    assert all(rows[f"k{i}"]["doubled"] == 2 * i for i in range(10) if i != 3)  # its batch-mates went on


def test_commits_are_once_per_item_when_a_stage_runs_twice():
    keys = runner.KeySet()
    assert keys.add_new(["a", "b", "a"]).tolist() == [True, True, False]
    for i in range(200_000 // 50_000):  # past the merge threshold: old keys stay known
        keys.add_new([f"x{i}-{j}" for j in range(50_000)])
    assert keys.add_new(["b", "x0-7", "new"]).tolist() == [False, False, True]


# --- faults on a real two-node cluster ---


@pytest.fixture(scope="module")
def cluster(i2a_cache):
    # One CPU a node: the nodes share this machine's cores, and actors with more torch threads than the machine has
    # cores slow each other down tenfold.
    with LocalCluster(head_cpus=1) as local:
        yield local


def _job(cluster, tmp_path, *args: str) -> subprocess.Popen:
    env = cluster.client_env({**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))})
    return subprocess.Popen(i2a_command("sonify-job", *FAST, "--input", str(tmp_path / "in"), "--output",
                                        str(tmp_path / "out"), "--runner", "ray", "--rows-per-part", "1", *args),
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _committed(output) -> int:
    try:
        return manifest.read(str(output)).num_rows
    except OSError:
        return 0


def test_a_lost_worker_node_is_redone_elsewhere_and_a_node_that_joins_gets_work(cluster, tmp_path):
    names = [f"img{i:03d}.png" for i in range(200)]  # about a minute of work: the job outlives the node
    write_images(tmp_path / "in", names, size=(16, 16))
    worker = cluster.add_node(cpus=1)
    job = _job(cluster, tmp_path, "--steps", "200", "--duration", "1")
    try:
        cluster.wait_for_actor(worker)
        wait_for(lambda: _committed(tmp_path / "out") >= 4 or job.poll() is not None, "first commits", 240)
        assert job.poll() is None, job.communicate()[0]
        cluster.kill_node(worker)  # a spot instance taken back mid-job
        joined = cluster.add_node(cpus=1)
        cluster.wait_for_actor(joined, timeout_s=120)  # the runner places an actor on the node that joined
        out, _ = job.communicate(timeout=600)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0, out[-4000:]
    table = manifest.read(str(tmp_path / "out"))
    assert sorted(os.path.basename(i) for i in table.column("input").to_pylist()) == names  # each input once
    assert set(table.column("status").to_pylist()) == {"ok"}
    assert "redone on other workers" in out
    cluster.kill_node(joined)


def test_losing_the_only_gpu_node_ends_in_a_stall_report(cluster, tmp_path):
    write_images(tmp_path / "in", [f"img{i:03d}.png" for i in range(60)], size=(16, 16))
    gpu = cluster.add_node(cpus=2, gpus=1)
    slow = ["--steps", "200", "--duration", "4"]  # a clip or two a second: the job outlives its GPU node
    job = _job(cluster, tmp_path, "--gpus-per-actor", "1", "--stall-timeout", "15", *slow)
    try:
        wait_for(lambda: _committed(tmp_path / "out") >= 1 or job.poll() is not None, "first commits", 300)
        assert job.poll() is None, job.communicate()[0]
        cluster.kill_node(gpu)
        out, _ = job.communicate(timeout=300)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 1, out[-4000:]
    assert "stalled: nothing finished for 15 s; waiting for 1 GPU; no alive node has one" in out, out[-4000:]
    done = _committed(tmp_path / "out")
    assert 0 < done < 60  # what finished is kept

    replacement = cluster.add_node(cpus=2, gpus=1)  # the autoscaler brings a GPU back: a rerun does the rest
    job = _job(cluster, tmp_path, "--gpus-per-actor", "1", *slow)
    out, _ = job.communicate(timeout=900)
    assert job.returncode == 0, out[-4000:]
    assert f"{done} already done" in out
    assert manifest.read(str(tmp_path / "out")).num_rows == 60
    cluster.kill_node(replacement)


def test_a_storage_outage_mid_job_never_ends_it(tmp_path, s3_bucket, s3_proxy):
    """S3 behind a TCP proxy that resets every connection for 3 s while parts and clips are written."""
    write_images(tmp_path / "in", [f"img{i:02d}.png" for i in range(16)])
    output = f"{s3_bucket}/out"
    command = i2a_command("sonify-job", *FAST, "--input", str(tmp_path / "in"), "--output", output, "--runner",
                          "local", "--rows-per-part", "1")
    env = {**os.environ, "AWS_ENDPOINT_URL": s3_proxy.url, "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))}
    job = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: _committed(output) >= 2 or job.poll() is not None, "first commits", 240)
        assert job.poll() is None, job.communicate()[0]
        s3_proxy.outage(3.0, mode="reset")
        out, _ = job.communicate(timeout=600)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode in (0, 1), out[-4000:]  # 1: some clips were error rows, retried by a rerun
    assert s3_proxy.cut > 0  # the outage did cut connections
    table = manifest.read(output)
    failed = [k for k, s in zip(table.column("error_kind").to_pylist(), table.column("status").to_pylist())
              if s != "ok"]
    assert all(kind == "storage_unavailable" for kind in failed), failed
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-2000:]
    table = manifest.read(output)
    assert sorted(table.column("status").to_pylist()) == ["ok"] * 16 and table.num_rows == 16
