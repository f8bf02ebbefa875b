"""The AudioLDM generator at full size: per-stage seconds, i2a's sampler against diffusers' pipeline, dpm++ at
20 steps against ddim at 50, and CLIP/CLAP encoding cost, all measured in this one process.

    python bench/generator.py --preset full-random            # real shapes, random weights, offline
    python bench/generator.py --preset full-random --gpu-batches 1,4,16,32   # on a GPU: clips/s, real-time factor

Timings on a shared machine are noisy: each comparison runs its sides interleaved, `--repeats` times, and
keeps each side's fastest run. GPU figures are only ever measured, never projected: without a GPU they are
reported as missing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
import torch
from peak_memory import PeakMemory

from i2a_core import refs
from i2a_core.models.audioldm import AudioLDMGenerator, ClapTextEncoder
from i2a_core.quiet import quiet_libraries
from i2a_core.specs import PRESETS, resolve_models


def unit_vectors(count: int, dim: int) -> np.ndarray:
    vectors = np.random.default_rng(0).standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def fastest(runs: int, call) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def interleaved(runs: int, calls: dict) -> dict:
    """Fastest wall of each call, the calls alternating so that a load change hits every side alike."""
    best = {name: float("inf") for name in calls}
    for _ in range(runs):
        for name, call in calls.items():
            started = time.perf_counter()
            call()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def pipeline_for(generator: AudioLDMGenerator, source: str):
    """diffusers' deprecated AudioLDM pipeline over the generator's own components, or None once it is gone."""
    import diffusers
    from transformers import AutoTokenizer

    if not hasattr(diffusers, "AudioLDMPipeline"):
        return None
    local = refs.resolve_audioldm(source)
    clap = ClapTextEncoder.load(local, device=str(generator.device))
    pipe = diffusers.AudioLDMPipeline(vae=generator.vae, text_encoder=clap.text_encoder,
                                      tokenizer=AutoTokenizer.from_pretrained(local, subfolder="tokenizer"),
                                      unet=generator.unet, scheduler=generator.scheduler("ddim"),
                                      vocoder=generator.vocoder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="full-random", choices=sorted(PRESETS))
    parser.add_argument("--stage-duration", type=float, default=10.0, help="clip seconds for per-stage figures")
    parser.add_argument("--stage-batch", type=int, default=2, help="clips per call for per-stage figures "
                        "(the UNet sees twice as many: guidance)")
    parser.add_argument("--compare-duration", type=float, default=2.5,
                        help="clip seconds for the sampler and scheduler comparisons (default: 2.5)")
    parser.add_argument("--compare-steps", type=int, default=3, help="steps for sampler vs pipeline")
    parser.add_argument("--repeats", type=int, default=2, help="runs per side of each comparison (fastest kept)")
    parser.add_argument("--gpu-batches", default="1,4,16,32", help="batch sizes for the GPU figures")
    parser.add_argument("--json", metavar="PATH", help="also write the measured figures to this JSON file")
    args = parser.parse_args()
    quiet_libraries()
    models = resolve_models(args.preset)
    figures: dict = {"benchmark": "generator", "checks": [], "stages_s": {},
                     "workload": f"preset {args.preset}, threads {torch.get_num_threads()}"}
    with PeakMemory() as memory:
        # 1. Load: no text encoder, only the cached empty-prompt embedding.
        started = time.perf_counter()
        generator = AudioLDMGenerator(models.audioldm)
        figures["load_s"] = time.perf_counter() - started
        print(f"generator loaded in {figures['load_s']:.1f} s on {generator.device} {generator.dtype}")
        dim = generator.clap_dim

        # 2. Per-stage seconds at the real clip length.
        batch = args.stage_batch
        generator.generate(unit_vectors(batch, dim), list(range(batch)), duration=args.stage_duration, steps=2)
        t = generator.timings
        figures["stages_s"].update({
            f"unet_step ({args.stage_duration:g} s, CFG batch {2 * batch})": t["unet_step"],
            f"vae_decode ({batch} clips of {args.stage_duration:g} s)": t["vae"],
            f"vocoder ({batch} clips of {args.stage_duration:g} s)": t["vocoder"]})

        # 3. CLIP per image, CLAP per caption (padded to the longest caption, and to 77 tokens as before).
        from i2a_core.models.clip import ClipEncoder

        clip = ClipEncoder(models.clip, batch_size=16)
        pixels = torch.randn(16, 3, clip.image_size, clip.image_size)
        clip.encode_pixels(pixels[:2])
        figures["stages_s"]["clip_per_image (batch 16)"] = fastest(args.repeats, lambda: clip.encode_pixels(pixels)) / 16
        from importlib import resources

        import pandas as pd

        captions = pd.read_csv(resources.files("i2a_core") / "data" / "sample_captions.csv").iloc[:, -1]
        captions = [str(c) for c in captions][:32]
        clap = ClapTextEncoder.load(models.audioldm)
        longest = fastest(args.repeats, lambda: clap.encode(captions, batch_size=32))
        tokenizer = clap.tokenizer

        def padded_to_max():
            tokens = tokenizer(captions, padding="max_length", max_length=clap.max_tokens, truncation=True,
                               return_tensors="pt")
            with torch.inference_mode():
                return clap.text_encoder(tokens.input_ids, attention_mask=tokens.attention_mask).text_embeds

        padded = fastest(args.repeats, padded_to_max)
        same = float(np.abs(clap.encode(captions) - torch.nn.functional.normalize(padded_to_max(), dim=-1)
                            .numpy()).max())
        figures["stages_s"]["clap_per_caption (batch 32, padded to longest)"] = longest / len(captions)
        figures["stages_s"]["clap_per_caption (batch 32, padded to 77)"] = padded / len(captions)
        figures["clap_padding_max_abs_diff"] = same
        print(f"CLAP padded to the longest caption: {padded / longest:.1f}x faster than to 77 tokens, "
              f"max abs difference {same:.1e}")

        # 4. i2a's sampler against diffusers' pipeline, same components and settings.
        pipe = pipeline_for(generator, models.audioldm)
        duration, steps = args.compare_duration, args.compare_steps
        vectors, seeds = unit_vectors(2, dim), [11, 12]
        if pipe is None:
            figures["pipeline_skipped"] = "this diffusers no longer ships AudioLDMPipeline"
        else:
            empty = generator._empty.to(generator.device, generator.dtype).expand(2, -1)

            def theirs():
                return pipe(prompt_embeds=torch.from_numpy(vectors).to(generator.device, generator.dtype),
                            negative_prompt_embeds=empty, audio_length_in_s=duration, num_inference_steps=steps,
                            guidance_scale=2.5, generator=[torch.Generator("cpu").manual_seed(s) for s in seeds],
                            output_type="np").audios

            def ours():
                return generator.generate(vectors, seeds, duration=duration, steps=steps)

            difference = float(max(np.abs(a - b).max() for a, b in zip(ours(), theirs())))
            walls = interleaved(args.repeats, {"ours": ours, "theirs": theirs})
            figures["checks"].append({
                "name": "owned sampler wall / diffusers pipeline wall", "ratio": walls["ours"] / walls["theirs"],
                "op": "<=", "value": 1.0, "baseline_s": walls["theirs"], "i2a_s": walls["ours"],
                "setting": f"2 clips of {duration:g} s, {steps} ddim steps, guidance 2.5",
                "max_abs_diff": difference})
            del pipe

        # 5. dpm++ at 20 steps against ddim at 50.
        one = unit_vectors(1, dim)
        walls, unet = {}, {}
        for name, scheduler, count in (("ddim50", "ddim", 50), ("dpm20", "dpm++", 20)):
            walls[name] = fastest(1, lambda count=count, scheduler=scheduler: generator.generate(
                one, [3], duration=duration, steps=count, scheduler=scheduler))
            unet[name] = generator.timings["unet"]
        figures["checks"].append({
            "name": "dpm++ 20 steps wall / ddim 50 steps wall", "ratio": walls["dpm20"] / walls["ddim50"],
            "op": "<=", "value": 0.45, "baseline_s": walls["ddim50"], "i2a_s": walls["dpm20"],
            "unet_only_ratio": unet["dpm20"] / unet["ddim50"],
            "setting": f"1 clip of {duration:g} s, guidance 2.5"})

        # 6. GPU throughput: measured only where there is a GPU.
        if generator.device.type == "cuda":
            rows = []
            for size in [int(b) for b in args.gpu_batches.split(",")]:
                for scheduler, count in (("ddim", 50), ("dpm++", 20)):
                    vectors = unit_vectors(size, dim)
                    wall = fastest(1, lambda v=vectors, n=size, count=count, scheduler=scheduler: generator.generate(
                        v, list(range(n)), duration=10.0, steps=count, scheduler=scheduler))
                    rows.append({"batch": size, "scheduler": scheduler, "steps": count,
                                 "clips_per_s": size / wall, "real_time_factor": size * 10.0 / wall})
            figures["gpu"] = rows
        else:
            figures["gpu"] = "no GPU in this run"
    figures["peak_rss_bytes"] = memory.peak
    for name, seconds in figures["stages_s"].items():
        print(f"  {name:50} {seconds:8.3f} s")
    for check in figures["checks"]:
        print(f"  {check['name']:50} {check['ratio']:.2f}x (target {check['op']} {check['value']}x)")
    print(f"  peak RSS {memory.peak / 2**30:.2f} GiB; GPU: {figures['gpu'] if isinstance(figures['gpu'], str) else 'measured'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
