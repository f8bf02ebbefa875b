"""bench/run_all.py and bench/projection.py: targets, projection arithmetic and the Markdown they write."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))

import projection
import run_all


def bench(ratio, op, value):
    return {"benchmark": "embed", "workload": "w", "ratio": ratio, "target": {"op": op, "value": value},
            "baseline": {"name": "loop", "value": 10.0, "unit": "rows/s"},
            "i2a": {"name": "ray", "value": 10.0 * ratio, "unit": "rows/s"},
            "run": {"command": "c", "load_average_before": (1, 1, 1), "load_average_after": (2, 2, 2)}}


def test_target_met_follows_the_direction_of_the_target():
    assert run_all.target_met(bench(1.6, ">=", 1.5)) is True
    assert run_all.target_met(bench(1.4, ">=", 1.5)) is False
    assert run_all.target_met(bench(0.5, "<=", 0.6)) is True
    assert run_all.target_met(bench(0.7, "<=", 0.6)) is False


def test_projection_hours():
    # 3.6M rows at 1000/s on 1 GPU at full efficiency is exactly one hour; 8 GPUs at 0.5 is a quarter.
    assert projection.hours(3_600_000, 1000.0, 1, 1.0) == 1.0
    assert projection.hours(3_600_000, 1000.0, 8, 0.5) == 0.25


def test_markdown_uses_measured_rates_and_labels_external_ones():
    results = {"quick": True, "relative": [{**bench(1.6, ">=", 1.5), "met": True}],
               "environment": {"date": "d", "gpu": "H100", "cpu_count": 2, "torch": "t", "commit": "c",
                               "load_average_start": (1, 1, 1)},
               "absolute": {"decode": [{"source_size": "224x224", "images_per_s_per_core": 900.0}],
                            "clip": {"model": "ViT-B-32", "weights": "random", "device": "cuda", "dtype": "float16",
                                     "batch_size": 256, "images_per_s": 3600.0},
                            "audioldm": {"skipped": "no --audioldm given"}}}
    text = run_all.results_markdown(results)
    assert "| embed | w | loop: 10.0 rows/s | ray: 16.0 rows/s | 1.60x | >= 1.5x | yes |" in text
    assert "AudioLDM skipped: no --audioldm given" in text
    # 37.6M WIT rows at 3600/s x 8 GPUs x 0.8: 37.6e6 / 23040 / 3600 = 0.45 h = 27 min.
    assert "| CLIP ViT-B-32 image embedding | 3,600 images/s | measured, H100 float16, batch 256 | " in text
    assert "27 min" in text
    assert "NOT measured by us" in text


def test_measured_audioldm_is_tabulated_and_projected_but_a_tiny_stand_in_is_not():
    audio = {"source": "cvssp/audioldm-s-full-v2", "device": "cuda", "dtype": "float16", "batch_size": 8,
             "duration_s": 10.0, "steps": 50, "clips_per_s": 2.0, "real_time_factor": 0.05,
             "clap_texts_per_s": 2000.0}
    results = {"quick": False, "relative": [],
               "environment": {"date": "d", "gpu": "H100", "cpu_count": 16, "torch": "t", "commit": "c",
                               "load_average_start": (0, 0, 0)},
               "absolute": {"decode": [], "audioldm": audio,
                            "clip": {"model": "ViT-B-32", "weights": "random", "device": "cuda", "dtype": "float16",
                                     "batch_size": 256, "images_per_s": 3600.0}}}
    text = run_all.results_markdown(results)
    assert "| AudioLDM generation | 2.000 clips/s, real-time factor 0.050 |" in text
    # CC: 3.3M clips at 2 clips/s x 64 GPUs x 0.8 = 8.95 h.
    assert "| AudioLDM 10 s clips, 50 steps | 2 clips/s | measured, H100 float16, batch 8 |" in text
    assert "9.0 h" in text
    audio["note"] = "tiny model"
    assert "| AudioLDM 10 s clips" not in run_all.results_markdown(results)


def test_full_size_section_prints_every_check_and_no_gpu_figures_without_a_gpu():
    run = {"command": "c", "load_average_before": (1, 1, 1), "load_average_after": (2, 2, 2)}
    full = [{"benchmark": "sonify", "run": run, "checks": [
                {"name": "speed", "ratio": 0.93, "op": ">=", "value": 0.9},
                {"name": "memory", "ratio": 1.7, "op": "<=", "value": 1.5}],
             "baseline": {"name": "local", "peak_rss_bytes": 2**30}, "i2a": {"name": "ray", "peak_rss_bytes": 2**31},
             "stages_s": {"generate_s per clip": 12.5}},
            {"benchmark": "generator", "run": run, "checks": [], "gpu": "no GPU in this run",
             "peak_rss_bytes": 3 * 2**30, "stages_s": {"unet_step": 2.6}}]
    results = {"quick": False, "relative": [], "full": full, "absolute_skipped": "x",
               "environment": {"date": "d", "gpu": None, "cpu_count": 2, "torch": "t", "commit": "c",
                               "load_average_start": (1, 1, 1)}}
    text = run_all.results_markdown(results)
    assert "| sonify | speed | 0.93x | >= 0.9x | yes |" in text
    assert "| sonify | memory | 1.70x | <= 1.5x | no |" in text
    assert "| generator | unet_step | 2.6000 |" in text
    assert "sonify local 1.00 GiB, ray 2.00 GiB" in text and "generator 3.00 GiB" in text
    assert "| - | - | no GPU in this run | no GPU in this run |" in text
