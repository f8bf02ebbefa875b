"""A new user's first hour: relative paths from any directory, instant --help, exit codes, quiet Ray, errors.csv."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys

import pytest
from helpers import write_images

from i2a_core.cli import COMMANDS, main
from i2a_core.synthetic import write_synthetic

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEAVY = ("torch", "ray", "diffusers", "open_clip", "transformers")


def test_help_and_argument_errors_import_no_heavy_library():
    script = f"""
import sys
from i2a_core.cli import main
for argv in [["--help"], *[[c, "--help"] for c in {sorted(COMMANDS)!r}], ["train"], ["sonify", "--bogus"],
             ["train", "--input", "x", "--output", "y", "--hidden", "a,b"]]:
    try:
        main(argv)
    except SystemExit as e:
        assert e.code in (0, 2), (argv, e.code)
print(sorted(m for m in {HEAVY!r} if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": REPO})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "exit status" in result.stdout and "2  usage or configuration error" in result.stdout


@pytest.mark.parametrize("argv, message", [
    (["sonify", "--preset", "tiny", "--output", "out"], "nothing to sonify"),
    (["sonify-job", "--preset", "tiny", "--input", "no-such-folder", "--output", "out"], "no-such-folder"),
    (["sonify", "--preset", "tiny", "--steps", "0", "pic.png", "--output", "out"], "--steps 0"),
    (["sonify", "--preset", "tiny", "--translator", "no-such-translator", "pic.png", "--output", "out"],
     "no-such-translator"),
    (["train", "--input", "pairs", "--output", "grid", "--epochs", "0"], "--epochs 0"),
    (["embed", "--source", "images", "--preset", "tiny", "--output", "pairs"], "--source images needs --input"),
    (["sonify", "--preset", "tiny", "--max-bytes", "0", "pic.png", "--output", "out"], "--max-bytes 0"),
    (["sonify-job", "--preset", "tiny", "--input", "pic.png", "--output", "out", "--url-timeout", "0"],
     "--url-timeout 0"),
])
def test_user_mistakes_exit_2_in_one_line_and_debug_shows_the_traceback(tmp_path, monkeypatch, capsys, argv,
                                                                          message):
    monkeypatch.chdir(tmp_path)
    write_images(tmp_path, ["pic.png"])
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error and len(error.strip().splitlines()) == 1
    assert main(argv + ["--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_sonify_counts_what_it_wrote(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_images(tmp_path / "photos", ["a.png"])
    assert main(["sonify", "--preset", "tiny", "missing.jpg", "--output", "out"]) == 1
    assert "0 clips written to" in capsys.readouterr().out  # never -1
    assert main(["sonify", "--preset", "tiny", "missing.jpg", "photos/a.png", "--output", "out"]) == 1
    out = capsys.readouterr().out
    assert "1 clip written to" in out and "1 failed" in out and os.path.exists("out/audio/a.wav")


def test_bulk_job_names_failures_and_writes_errors_csv(tmp_path, monkeypatch, capsys):
    """In-process, from a relative folder: the summary names failed inputs, errors.csv has every one, exit 1."""
    monkeypatch.chdir(tmp_path)
    write_images(tmp_path / "photos", ["good.png"])
    for i in range(7):
        (tmp_path / "photos" / f"bad{i}.jpg").write_bytes(b"<html>not an image</html>")
    assert main(["sonify-job", "--preset", "tiny", "--input", "photos", "--output", "out", "--runner", "local"]) == 1
    out = capsys.readouterr().out
    assert "1 ok, 7 error" in out
    assert len(re.findall(r"^  failed: .*bad\d\.jpg", out, re.M)) == 5
    assert "and 2 more; every failed input with its reason: " + str(tmp_path / "out" / "errors.csv") in out
    with open("out/errors.csv") as f:
        errors = list(csv.DictReader(f))
    assert sorted(os.path.basename(r["input"]) for r in errors) == [f"bad{i}.jpg" for i in range(7)]
    assert all(r["error_kind"] and r["error"] for r in errors)
    assert os.path.exists("out/gallery/failed.html") and os.path.exists("out/audio/good.wav")


def test_train_on_ray_with_relative_paths(tmp_path, monkeypatch, ray_session, capsys):
    """Tune runs each trial in its own directory: relative --input/--output must still work."""
    monkeypatch.chdir(tmp_path)
    write_synthetic("pairs", 200)
    assert main(["train", "--input", "pairs", "--output", "grid", "--datasets", "audiocaps", "--losses", "cosine",
                 "--hidden", "16", "--epochs", "1"]) == 0
    assert os.path.exists("grid/best/model.safetensors")
    assert "1 trials finished, 0 skipped, 0 failed" in capsys.readouterr().out


# i2a's own console lines in a bulk job; anything else is Ray's or a library's.
OWN_LINES = re.compile(r"^(\d+ inputs, |\d+ ok, |manifest: |note: |sonify: |  failed: |  (and \d+ more; )?every failed)")


def test_a_ray_job_prints_i2a_lines_not_ray_logs(tmp_path):
    """A fresh process starting its own Ray, as a user's shell does: at most a few foreign lines."""
    write_images(tmp_path / "photos", ["a.png", "b.png"])
    env = {**os.environ, "PYTHONPATH": REPO}
    env.pop("RAY_ADDRESS", None)
    result = subprocess.run(
        [sys.executable, "-m", "i2a_core.cli", "sonify-job", "--preset", "tiny", "--input", "photos",
         "--output", "out", "--runner", "ray"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    foreign = [line for line in lines if not OWN_LINES.match(line)]
    assert len(foreign) <= 3, "\n".join(foreign)
    assert any(line.startswith("2 ok, 0 error") for line in lines)
    assert sorted(os.listdir(tmp_path / "out" / "audio")) == ["a.wav", "b.wav"]


def test_progress_prints_a_plain_line_every_few_seconds_off_a_terminal():
    import io
    import pickle
    import time

    from i2a_core.progress import Progress

    stream = io.StringIO()
    with Progress(4, "sonify", "clips", stream=stream, every_s=0.05) as progress:
        progress.update(1)
        time.sleep(0.3)
        pickle.dumps(progress)  # Tune pickles its callbacks, and this with them
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 2 and re.match(r"sonify: 1/4 clips \(25%\), [\d.]+ clips/s, \d+s elapsed, ETA \d+s", lines[-1])
    time.sleep(0.2)
    assert stream.getvalue().splitlines() == lines  # closed: no more lines
