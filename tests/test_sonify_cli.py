"""`i2a sonify` end to end with the tiny preset: files, folders, URLs, texts, reruns and every bad input."""

import json
import os
import subprocess
import sys
import time

import soundfile
from helpers import image_bytes, write_images

from i2a_core.cli import main
from i2a_core.models.translator import MLPTranslator, TranslatorConfig

TINY = ["--preset", "tiny", "--duration", "1.0", "--steps", "2"]


def read_wav(path):
    audio, rate = soundfile.read(path, dtype="int16")
    return audio, rate


def test_images_folders_and_urls(tmp_path, http_root, capsys):
    root, base = http_root
    (root / "from-web.png").write_bytes(image_bytes(seed=7))
    write_images(tmp_path / "in", ["x/a.jpg", "y/a.jpg", "b.png"])
    single = write_images(tmp_path / "other", ["a.jpg"])[0]
    out = tmp_path / "out"
    status = main(["sonify", str(tmp_path / "in"), "--input", str(single), f"{base}/from-web.png",
                   "--output", str(out), "--allow-private-urls", *TINY])
    assert status == 0, capsys.readouterr()
    wavs = sorted(str(p.relative_to(out / "audio")) for p in (out / "audio").rglob("*.wav"))
    # Folder inputs keep their relative path, URLs their host/path (as the bulk job lays them out);
    # the lone a.jpg collides with nothing, so it gets no hash.
    host = base.split("://")[1]
    assert wavs == sorted(["a.wav", "b.wav", f"{host}/from-web.wav", "x/a.wav", "y/a.wav"])
    audio, rate = read_wav(out / "audio" / "x" / "a.wav")
    assert rate == 16000 and audio.ndim == 1 and len(audio) == 16000
    record = json.loads((out / "audio" / host / "from-web.json").read_text())
    assert record["input"] == f"{base}/from-web.png"
    assert record["models"]["translator"] == "tiny:translator"
    assert {"seed", "steps", "guidance", "duration", "timings_s"} <= set(record)
    assert (record["steps"], record["duration"]) == (2, 1.0)


def test_same_names_from_different_places_never_collide(tmp_path):
    first = write_images(tmp_path / "p", ["a.jpg"])[0]
    second = write_images(tmp_path / "q", ["a.jpg"])[0]
    assert main(["sonify", str(first), str(second), "--output", str(tmp_path / "out"), *TINY]) == 0
    names = sorted(p.name for p in (tmp_path / "out" / "audio").glob("*.wav"))
    assert len(names) == 2 and all(name.startswith("a-") for name in names)


def test_seeded_rerun_is_bit_identical(tmp_path):
    write_images(tmp_path / "in", ["a.png", "b.png", "c.png"])
    for run in ("one", "two"):
        assert main(["sonify", str(tmp_path / "in"), "--output", str(tmp_path / run), "--seed", "5", *TINY]) == 0
    for name in ("a", "b", "c"):
        assert (tmp_path / "one" / "audio" / f"{name}.wav").read_bytes() == \
            (tmp_path / "two" / "audio" / f"{name}.wav").read_bytes()
    different = tmp_path / "three"
    assert main(["sonify", str(tmp_path / "in" / "a.png"), "--output", str(different), "--seed", "6", *TINY]) == 0
    assert (different / "audio" / "a.wav").read_bytes() != (tmp_path / "one" / "audio" / "a.wav").read_bytes()


def test_bad_inputs_are_named_and_the_rest_still_sound(tmp_path, http_root, capsys):
    root, base = http_root
    folder = tmp_path / "in"
    write_images(folder, ["good.png"])
    (folder / "page.jpg").write_text("<!DOCTYPE html>")
    (folder / "liar.jpg").write_bytes(image_bytes(fmt="PNG"))  # an image all the same: sounds, with a warning
    (folder / "cut.png").write_bytes(image_bytes(fmt="PNG")[:-200])
    (folder / "huge.png").write_bytes(image_bytes(size=(300, 300)))
    status = main(["sonify", str(folder), f"{base}/gone.png", f"{base}/slow.png", str(tmp_path / "nowhere.png"),
                   "--url-timeout", "1", "--allow-private-urls",
                   "--max-pixels", "50000", "--output", str(tmp_path / "out"), *TINY])
    errors = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  failed: ")]
    assert status == 1
    assert sorted(p.name for p in (tmp_path / "out" / "audio").glob("*.wav")) == ["good.wav", "liar.wav"]
    assert json.loads((tmp_path / "out" / "audio" / "liar.json").read_text())["warning"] == \
        "extension says JPEG but the content is PNG"
    expected = {"page.jpg": "not an image", "cut.png": "truncated",
                "huge.png": "over the 50,000-pixel limit", "gone.png": "HTTP 404", "slow.png": "timed out",
                "nowhere.png": "no such file"}
    assert len(errors) == len(expected)
    for name, reason in expected.items():
        assert any(name in line and reason in line for line in errors), (name, errors)


def test_text_prompts_need_no_translator(tmp_path):
    out = tmp_path / "out"
    assert main(["sonify", "--text", "a dog barks in the rain", "--text", "waves", "--output", str(out), *TINY]) == 0
    [record_path] = (out / "audio").glob("text-a_dog_barks_in_the_rain-*.json")
    record = json.loads(record_path.read_text())
    assert record["modality"] == "text" and record["models"]["translator"] is None
    assert len(list((out / "audio").glob("text-waves-*.wav"))) == 1


def run_error(capsys, *argv) -> str:
    assert main(list(argv)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_fatal_errors_are_one_line(tmp_path, capsys):
    image = str(write_images(tmp_path, ["a.png"])[0])
    out = str(tmp_path / "out")
    assert "AudioLDM makes clips from" in run_error(capsys, "sonify", image, "--output", out, "--preset", "tiny",
                                                    "--duration", "100")
    assert "--duration -1: must be a positive" in run_error(capsys, "sonify", image, "--output", out,
                                                           "--preset", "tiny", "--duration", "-1")
    assert f"{tmp_path}/nope: not a translator directory" in run_error(
        capsys, "sonify", image, "--output", out, "--preset", "tiny", "--translator", str(tmp_path / "nope"))
    MLPTranslator(TranslatorConfig(in_dim=512, out_dim=512, hidden=8)).save(str(tmp_path / "big"))
    assert "maps 512-d CLIP to 512-d CLAP, but the encoders give 32-d CLIP and 16-d CLAP" in run_error(
        capsys, "sonify", image, "--output", out, "--preset", "tiny", "--translator", str(tmp_path / "big"))
    assert "nothing to sonify" in run_error(capsys, "sonify", "--output", out, "--preset", "tiny")
    assert not os.path.exists(os.path.join(out, "audio", "a.wav"))


def test_real_preset_offline_fails_fast_naming_the_model(tmp_path, capsys):
    started = time.monotonic()
    line = run_error(capsys, "sonify", "--text", "rain", "--output", str(tmp_path))
    assert time.monotonic() - started < 20
    assert "cvssp/audioldm-s-full-v2" in line and "--audioldm DIR" in line and "--preset tiny" in line


def test_console_script_help():
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "i2a"), "sonify", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for flag in ("--translator", "--preset", "--duration", "--clip-model", "--audioldm", "--text", "--input"):
        assert flag in result.stdout


def test_bucket_in_bucket_out(tmp_path, s3_bucket):
    import fsspec

    fs = fsspec.filesystem("s3")
    for key in ("photos/a.png", "photos/deep/b.jpg"):
        fs.pipe_file(f"{s3_bucket}/{key}", image_bytes(fmt="JPEG" if key.endswith(".jpg") else "PNG"))
    fs.pipe_file(f"{s3_bucket}/photos/notes.txt", b"not an image, not listed")
    assert main(["sonify", f"{s3_bucket}/photos", "--output", f"{s3_bucket}/sounds", *TINY]) == 0
    fs.invalidate_cache()
    written = sorted(path.split("/sounds/audio/")[1] for path in fs.find(f"{s3_bucket}/sounds/audio"))
    assert written == ["a.json", "a.wav", "deep/b.json", "deep/b.wav"]
    record = json.loads(fs.cat_file(f"{s3_bucket}/sounds/audio/deep/b.json"))
    assert record["input"] == f"{s3_bucket}/photos/deep/b.jpg"


def test_i2a_sonify_memory_is_bounded_on_many_large_screen_gifs(tmp_path):
    """12 GIFs of 35 bytes whose screens are 8000x8000 (192 MB decoded each): decoded a batch at a time, not
    all at once (the old engine held every decoded image: 12 GB for 24 of them)."""
    from helpers import clean_env, i2a_command, peak_rss_mb, screen_gif

    (tmp_path / "gifs").mkdir()
    for i in range(12):
        (tmp_path / "gifs" / f"g{i:02d}.gif").write_bytes(screen_gif())
    peak, done = peak_rss_mb(i2a_command("sonify", *TINY, str(tmp_path / "gifs"), "--output", str(tmp_path / "out")),
                             env=clean_env(tmp_path / "home"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "12 clips written" in done.stdout
    assert peak < 3000, f"peak {peak:.0f} MB"  # about 2 GB: a batch of 4 decoded screens plus the models
