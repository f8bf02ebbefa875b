"""The Python API as the README shows it: its example runs, as written, in a fresh process."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from helpers import write_images

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_example() -> str:
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    section = text[text.index("### From Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_python_example_runs(tmp_path):
    write_images(tmp_path / "photos", ["cat.jpg", "dog.png"])
    env = {**os.environ, "PYTHONPATH": REPO}
    done = subprocess.run([sys.executable, "-c", readme_example()], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 ok, 0 error" in done.stdout  # summary.line() of the bulk job
    assert sorted(p.name for p in (tmp_path / "out" / "audio").glob("*.wav")) == ["cat.wav", "dog.wav"]


def test_the_api_sonifier_gives_waveforms_and_the_job_the_same_audio(tmp_path):
    import numpy as np
    import soundfile

    from i2a_core.api import Sonifier, sonify

    write_images(tmp_path / "photos", ["cat.jpg"])
    sonifier = Sonifier.from_pretrained(preset="tiny", duration=0.5, steps=2)
    (clip,) = sonifier([str(tmp_path / "photos" / "cat.jpg")])
    assert clip.sample_rate == 16000 and clip.waveform.shape == (8000,) and clip.info["steps"] == 2
    summary = sonify([str(tmp_path / "photos")], str(tmp_path / "out"), preset="tiny", duration=0.5, steps=2,
                     runner="local")
    assert summary.ok == 1
    written, _ = soundfile.read(tmp_path / "out" / "audio" / "cat.wav", dtype="float32")
    np.testing.assert_allclose(written, np.clip(clip.waveform, -1, 1), atol=1 / 2**15)  # the same seed: same clip
