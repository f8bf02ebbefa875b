"""Absolute throughput of the two heavy stages: CLIP ViT-B-32 images/s and AudioLDM clips/s with real-time factor.

    python bench/absolute.py                          # on a GPU node: CLIP fp16, batch 256
    python bench/absolute.py --audioldm cvssp/audioldm-s-full-v2   # plus AudioLDM, 10 s clips, 50 steps
    python bench/absolute.py --quick                  # small sizes; on CPU too (fp32)

CLIP throughput depends on the architecture, not the weights, so ViT-B-32 is built with random weights
(offline) unless --clip-pretrained names a checkpoint. It encodes synthetic preprocessed tensors through
i2a's own ClipEncoder, so the figure is the GPU encode rate without image I/O; the decode+preprocess rate
of one CPU core is measured beside it, because that is what must keep the GPU fed. AudioLDM needs its real
config, so it runs only when --audioldm resolves (local path, cache, or hub); otherwise it is skipped and
the reason is printed. Nothing is estimated: a figure is either measured here or absent.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time

import numpy as np
import torch
from PIL import Image

from i2a_core.cli import quiet_libraries
from i2a_core.models import tiny
from i2a_core.models.clip import ClipEncoder, ClipSpec
from i2a_core.refs import ModelUnavailable


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clip_images_per_s(model: str, pretrained: str | None, batch_size: int, batches: int) -> dict:
    """Images/s of ClipEncoder.encode_pixels on synthetic tensors, after one warm-up batch."""
    encoder = ClipEncoder(ClipSpec(model, pretrained), batch_size=batch_size)
    size = encoder.image_size
    pixels = torch.randn(batch_size, 3, size, size)
    encoder.encode_pixels(pixels)  # warm-up: kernels, allocator, cudnn autotune
    synchronize(encoder.device)
    started = time.perf_counter()
    for _ in range(batches):
        encoder.encode_pixels(pixels)
    synchronize(encoder.device)
    seconds = time.perf_counter() - started
    return {"model": model, "weights": pretrained or "random (architecture only)", "device": str(encoder.device),
            "dtype": str(encoder.dtype).replace("torch.", ""), "batch_size": batch_size, "images": batch_size * batches,
            "seconds": seconds, "images_per_s": batch_size * batches / seconds, "image_size": size}


def decode_images_per_s(count: int, width: int, height: int) -> dict:
    """Images/s of one CPU thread decoding as embed's and sonify's decode stage does: decode, then CLIP's one
    preprocessing (ViT-B-32's: resize, crop to 224 px, normalise), from the model config alone."""
    from i2a_core.io.images import decode_image
    from i2a_core.models.clip import image_transform

    preprocess = image_transform(ClipSpec("ViT-B-32", None))

    rng = np.random.default_rng(0)
    # Smooth random images compress like photos, unlike pure noise.
    jpegs = []
    for _ in range(min(count, 16)):
        buffer = io.BytesIO()
        small = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((width, height), Image.BICUBIC).save(buffer, format="JPEG", quality=90)
        jpegs.append(buffer.getvalue())
    started = time.perf_counter()
    for i in range(count):
        preprocess(decode_image(jpegs[i % len(jpegs)], "bench.jpg", check_extension=False))
    seconds = time.perf_counter() - started
    return {"source_size": f"{width}x{height}", "images": count, "seconds": seconds,
            "images_per_s_per_core": count / seconds, "jpeg_kib": sum(map(len, jpegs)) / len(jpegs) / 1024}


def audioldm_clips_per_s(source: str, batch_size: int, batches: int, duration: float, steps: int) -> dict:
    """Clips/s and real-time factor of AudioLDMGenerator.generate on random unit CLAP vectors."""
    from i2a_core.models.audioldm import AudioLDMGenerator

    generator = AudioLDMGenerator(source)
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((batch_size, generator.clap_dim)).astype(np.float32)
    seeds = list(range(batch_size))
    # The CLAP text tower is what embed runs on every caption: time it too, since it comes with the checkpoint.
    captions = [f"a dog barks while rain falls on a tin roof, take {i}" for i in range(256)]
    generator.clap.encode(captions[:8])
    synchronize(generator.device)
    started = time.perf_counter()
    generator.clap.encode(captions)
    synchronize(generator.device)
    clap_texts_per_s = len(captions) / (time.perf_counter() - started)
    generator.generate(vectors[:1], seeds[:1], duration=duration, steps=2)  # warm-up
    synchronize(generator.device)
    started = time.perf_counter()
    for _ in range(batches):
        generator.generate(vectors, seeds, duration=duration, steps=steps)
    synchronize(generator.device)
    seconds = time.perf_counter() - started
    clips = batch_size * batches
    return {"source": source, "device": str(generator.device), "dtype": str(generator.dtype).replace("torch.", ""),
            "batch_size": batch_size, "clips": clips, "duration_s": duration, "steps": steps, "seconds": seconds,
            "clips_per_s": clips / seconds, "clap_texts_per_s": clap_texts_per_s,
            # Wall time per second of audio: below 1 is faster than real time.
            "real_time_factor": seconds / (clips * duration),
            **({"note": "tiny model: exercises the code path, says nothing about AudioLDM's speed"}
               if tiny.is_tiny(source) else {})}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small batches, for a CPU smoke run")
    parser.add_argument("--clip-model", default="ViT-B-32")
    parser.add_argument("--clip-pretrained", help="checkpoint or tag (default: random weights, same speed)")
    parser.add_argument("--clip-batch-size", type=int, help="default: 256 (16 with --quick)")
    parser.add_argument("--clip-batches", type=int, help="timed batches (default: 20, 2 with --quick)")
    parser.add_argument("--audioldm", help="AudioLDM path or hub id; without it AudioLDM is skipped")
    parser.add_argument("--audioldm-batch-size", type=int, help="default: 8 (1 with --quick)")
    parser.add_argument("--audioldm-batches", type=int, default=2)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--json", metavar="PATH", help="also write the measured figures to this JSON file")
    args = parser.parse_args()
    quiet_libraries()
    gpu = torch.cuda.is_available()
    result = {"benchmark": "absolute", "gpu": torch.cuda.get_device_name(0) if gpu else None,
              "cpu_count": os.cpu_count(), "load_average": os.getloadavg()}
    print(f"device: {result['gpu'] or 'CPU only'}, {os.cpu_count()} cores, load average "
          + ", ".join(f"{x:.1f}" for x in result["load_average"]))

    # 1. Image decode, one CPU core: the rate each decode worker feeds to the encoder. 224 px is what
    # `i2a fetch` stores (img2dataset resizes to the CLIP input size); 640x480 is a raw photo, as sonify reads.
    result["decode"] = [decode_images_per_s(100 if args.quick else 1000, w, h) for w, h in ((224, 224), (640, 480))]
    for decode in result["decode"]:
        print(f"decode {decode['source_size']} JPEG ({decode['jpeg_kib']:.0f} KiB) -> 224 px: "
              f"{decode['images_per_s_per_core']:.0f} images/s per core")

    # 2. CLIP image encoding on synthetic tensors.
    batch = args.clip_batch_size or (16 if args.quick else 256)
    clip = clip_images_per_s(args.clip_model, args.clip_pretrained, batch,
                             args.clip_batches or (2 if args.quick else 20))
    result["clip"] = clip
    print(f"CLIP {clip['model']} ({clip['weights']}, {clip['device']} {clip['dtype']}, batch {batch}): "
          f"{clip['images_per_s']:.1f} images/s")

    # 3. AudioLDM generation, only with a real checkpoint that resolves here.
    if not args.audioldm:
        result["audioldm"] = {"skipped": "no --audioldm given (it needs the real AudioLDM config and weights)"}
    else:
        try:
            result["audioldm"] = audioldm_clips_per_s(
                args.audioldm, args.audioldm_batch_size or (1 if args.quick else 8), args.audioldm_batches,
                args.duration, args.steps)
        except ModelUnavailable as e:
            result["audioldm"] = {"skipped": str(e)}
    audio = result["audioldm"]
    if "skipped" in audio:
        print(f"AudioLDM skipped: {audio['skipped']}")
    else:
        print(f"AudioLDM {audio['source']} ({audio['device']} {audio['dtype']}, batch {audio['batch_size']}, "
              f"{audio['duration_s']:g} s clips, {audio['steps']} steps): {audio['clips_per_s']:.3f} clips/s, "
              f"real-time factor {audio['real_time_factor']:.3f} (wall s per audio s); "
              f"CLAP text encoding {audio['clap_texts_per_s']:.1f} captions/s")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
