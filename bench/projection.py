"""Turn measured per-device rates (bench/results.json) into hours for WIT and Conceptual Captions on N GPUs.

    python bench/projection.py bench/results.json --gpus 1,8,64 --efficiency 0.8

hours = rows / (per-GPU rate x N x efficiency) / 3600. Efficiency covers what a perfect linear scale-up
ignores (actor start-up, stragglers, I/O stalls); 0.8 is an assumption, not a measurement.
"""

from __future__ import annotations

import argparse
import json

DATASETS = {"WIT": 37_600_000, "Conceptual Captions": 3_300_000}
# A published figure, NOT measured by us: clip-retrieval's README reports about 1,500 images/s for
# ViT-B/32 inference on one consumer GPU (a 3080). It is here so the table shows a GPU-scale row before
# bench/absolute.py has been run on one.
EXTERNAL = [("CLIP ViT-B/32 image embedding", 1500.0, "images/s",
             "external reference (clip-retrieval, one consumer GPU), NOT measured by us")]


def measured_rates(results: dict) -> list[tuple[str, float, str, str]]:
    """(stage, rate, unit, where it was measured) for each absolute figure in results.json."""
    absolute = results.get("absolute") or {}
    device = (results.get("environment") or {}).get("gpu") or "CPU"
    rates = []
    if "clip" in absolute:
        clip = absolute["clip"]
        rates.append((f"CLIP {clip['model']} image embedding", clip["images_per_s"], "images/s",
                      f"measured, {device} {clip['dtype']}, batch {clip['batch_size']}"))
    audio = absolute.get("audioldm") or {}
    if "clips_per_s" in audio and "note" not in audio:  # a tiny stand-in model projects nothing
        rates.append((f"AudioLDM {audio['duration_s']:g} s clips, {audio['steps']} steps", audio["clips_per_s"],
                      "clips/s", f"measured, {device} {audio['dtype']}, batch {audio['batch_size']}"))
        rates.append(("CLAP text encoding (embed, per caption)", audio["clap_texts_per_s"], "captions/s",
                      f"measured, {device} {audio['dtype']}"))
    return rates


def hours(rows: int, rate: float, gpus: int, efficiency: float) -> float:
    return rows / (rate * gpus * efficiency) / 3600


def format_hours(value: float) -> str:
    if value >= 48:
        return f"{value / 24:,.1f} d"
    return f"{value:,.1f} h" if value >= 1 else f"{value * 60:.0f} min"


def projection_markdown(results: dict, gpus: tuple[int, ...] = (1, 8, 64), efficiency: float = 0.8) -> str:
    rates = measured_rates(results) + EXTERNAL
    head = ["stage", "rate per device", "source"] + [f"{name}, N={n}" for name in DATASETS for n in gpus]
    lines = [f"hours = rows / (rate x N x {efficiency:g}); WIT {DATASETS['WIT']:,} rows, Conceptual Captions "
             f"{DATASETS['Conceptual Captions']:,} rows. A CPU rate is per process, not per GPU.", "",
             "| " + " | ".join(head) + " |", "| " + " | ".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + " |"]
    for stage, rate, unit, source in rates:
        cells = [format_hours(hours(rows, rate, n, efficiency)) for rows in DATASETS.values() for n in gpus]
        shown = f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"
        lines.append(f"| {stage} | {shown} {unit} | {source} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="?", default="bench/results.json")
    parser.add_argument("--gpus", default="1,8,64", help="comma-separated GPU counts (default: 1,8,64)")
    parser.add_argument("--efficiency", type=float, default=0.8)
    args = parser.parse_args()
    with open(args.results) as f:
        results = json.load(f)
    print(projection_markdown(results, tuple(int(n) for n in args.gpus.split(",")), args.efficiency))


if __name__ == "__main__":
    main()
