"""The jobs, submitted with `ray job submit` to a real two-node Ray cluster (one node declares a logical GPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
from cluster import LocalCluster
from helpers import write_images

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAY = os.path.join(os.path.dirname(sys.executable), "ray")


@pytest.fixture(scope="module")
def cluster(i2a_cache):
    """`ray start --head` (CPU only) plus a second `ray start` node that declares one logical GPU."""
    with LocalCluster(head_cpus=2, head_gpus=0) as local:
        local.add_node(cpus=2, gpus=1)
        assert sorted(node["resources_total"].get("GPU", 0) for node in local.alive_nodes()) == [0, 1]
        yield {"dashboard": local.dashboard, "env": local.env, "cache": i2a_cache}


def submit(cluster, job: str, *args: str, timeout_s: float = 400) -> str:
    """`ray job submit --working-dir <repo> -- python jobs/<job>.py ...`; returns the job's logs."""
    runtime_env = {"env_vars": {"HF_HUB_OFFLINE": "1", "I2A_CACHE": cluster["cache"],
                                "NO_ALBUMENTATIONS_UPDATE": "1"}}
    command = [RAY, "job", "submit", "--address", cluster["dashboard"], "--working-dir", ROOT,
               "--runtime-env-json", json.dumps(runtime_env), "--", sys.executable, f"jobs/{job}.py", *args]
    for _ in range(30):
        result = subprocess.run(command, env=cluster["env"], capture_output=True, text=True, timeout=timeout_s)
        # The head's job agent starts a little after the node shows up; Ray says to try again later.
        if "No available agent to submit job" not in result.stdout + result.stderr:
            break
        time.sleep(2)
    assert result.returncode == 0 and "succeeded" in result.stdout, result.stdout[-4000:] + result.stderr[-2000:]
    return result.stdout


def test_embed_train_and_sonify_jobs_on_a_two_node_cluster(cluster, tmp_path):
    captions = tmp_path / "captions.csv"
    captions.write_text("audiocap_id,youtube_id,start_time,caption\n"
                        + "".join(f"{i},yt{i},0,sound number {i} with rain\n" for i in range(24)))
    pairs = tmp_path / "pairs"
    # The encoder actor asks for the GPU node's logical GPU; torch sees no CUDA there and falls back to CPU.
    submit(cluster, "embed", "--preset", "tiny", "--source", "audiocaps", "--input", str(captions),
           "--output", str(pairs), "--gpus-per-actor", "1", "--batch-size", "8")
    table = pq.ParquetDataset(sorted(str(p) for p in pairs.glob("part-*.parquet"))).read()
    assert table.num_rows == 24 and len(set(table.column("id").to_pylist())) == 24
    assert json.loads((pairs / "stats.json").read_text())["rows"] == 24

    # Trials ask for half of the logical GPU each, so both land on the GPU node and train on its CPU.
    translators = tmp_path / "translators"
    submit(cluster, "train", "--input", str(pairs), "--output", str(translators), "--datasets", "audiocaps",
           "--losses", "cosine,mse", "--hidden", "32", "--epochs", "2", "--gpus-per-trial", "0.5")
    leaderboard = (translators / "leaderboard.csv").read_text()
    assert "audiocaps-cosine-h32" in leaderboard and "audiocaps-mse-h32" in leaderboard
    assert (translators / "best" / "model.safetensors").exists()

    write_images(tmp_path / "photos", ["a.png", "deep/b.jpg", "deep/c.png"])
    sounds = tmp_path / "sounds"
    submit(cluster, "sonify", "--preset", "tiny", "--input", str(tmp_path / "photos"), "--output", str(sounds),
           "--runner", "ray", "--gpus-per-actor", "1", "--duration", "1", "--steps", "2")
    assert sorted(str(p.relative_to(sounds / "audio")) for p in (sounds / "audio").rglob("*.wav")) == \
        ["a.wav", "deep/b.wav", "deep/c.wav"]
    manifest = pq.ParquetDataset(sorted(str(p) for p in (sounds / "manifest").glob("*.parquet"))).read()
    assert sorted(manifest.column("status").to_pylist()) == ["ok"] * 3
    assert (sounds / "index.html").exists()
