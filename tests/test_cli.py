"""Every job as a user runs it: the `i2a` script as a subprocess, in a clean environment, starting its own Ray."""

from __future__ import annotations

import subprocess

from helpers import clean_env, i2a_command

from i2a_core.synthetic import write_synthetic


def test_two_trains_started_together_on_a_fresh_machine_each_start_ray(tmp_path):
    """No RAY_* variables, no ~/.ray, two commands at once: both start a local Ray with token auth and finish."""
    write_synthetic(str(tmp_path / "pairs"), 200)
    env = clean_env(tmp_path / "home")
    runs = [subprocess.Popen(i2a_command("train", "--input", "pairs", "--output", f"grid{i}", "--datasets",
                                         "audiocaps", "--losses", "cosine", "--hidden", "16", "--epochs", "1"),
                             cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for i in range(2)]
    for i, run in enumerate(runs):
        out, _ = run.communicate(timeout=300)
        assert run.returncode == 0, out[-3000:]
        assert "1 trials finished, 0 skipped, 0 failed" in out
        assert (tmp_path / f"grid{i}" / "best" / "model.safetensors").exists()
    assert (tmp_path / "home" / ".ray" / "auth_token").exists()  # token auth on, one token for both
