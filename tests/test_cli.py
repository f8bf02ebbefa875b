"""Every job as a user runs it: the `i2a` script as a subprocess, in a clean environment, starting its own Ray."""

from __future__ import annotations

import subprocess

from helpers import clean_env, i2a_command, write_images

from i2a_core.synthetic import write_synthetic


def test_train_and_a_ray_sonify_job_started_together_on_a_fresh_machine_then_eval_on_ray(tmp_path):
    """No RAY_* variables, no ~/.ray, relative paths, two commands at once: `i2a train` and `i2a sonify-job
    --runner ray` each start a local Ray with token auth and finish; then `i2a eval --runner ray` on the audio."""
    write_synthetic(str(tmp_path / "pairs"), 200)
    write_images(tmp_path / "photos", ["cat.png", "dog.png"], size=(24, 24))
    env = clean_env(tmp_path / "home")
    commands = {
        "train": i2a_command("train", "--input", "pairs", "--output", "grid", "--datasets", "audiocaps", "--losses",
                             "cosine", "--hidden", "16", "--epochs", "1"),
        "sonify-job": i2a_command("sonify-job", "--preset", "tiny", "--input", "photos", "--output", "sounds",
                                  "--runner", "ray", "--duration", "0.5", "--steps", "2"),
    }
    runs = {name: subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True) for name, command in commands.items()}
    outputs = {name: run.communicate(timeout=400)[0] for name, run in runs.items()}
    for name, run in runs.items():
        assert run.returncode == 0, f"{name}: {outputs[name][-3000:]}"
    assert "1 trials finished, 0 skipped, 0 failed" in outputs["train"]
    assert (tmp_path / "grid" / "best" / "model.safetensors").exists()
    assert "2 ok, 0 error, 0 already done of 2 inputs" in outputs["sonify-job"]
    assert "(ray: " in outputs["sonify-job"]  # it ran on the Ray it started, not in-process
    assert (tmp_path / "home" / ".ray" / "auth_token").exists()  # token auth on, one token for both

    scored = subprocess.run(i2a_command("eval", "--preset", "tiny", "--input", "sounds", "--output", "scores",
                                        "--runner", "ray"),
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert scored.returncode == 0, scored.stdout[-3000:] + scored.stderr[-3000:]
    assert len((tmp_path / "scores" / "scores.csv").read_text().splitlines()) == 3  # a header and two clips
