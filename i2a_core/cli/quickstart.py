"""`i2a quickstart`: the whole mission on a small sample: captions -> pairs -> translators -> sounds -> gallery."""

from __future__ import annotations

import argparse
import io
from importlib import resources

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from i2a_core import refs
from i2a_core.cli import embed, flags, sonify, train
from i2a_core.cli.flags import add_model_arguments, models_from_args
from i2a_core.errors import ConfigError
from i2a_core.io import sources, storage
from i2a_core.specs import DEFAULT_SCHEDULER, PRESETS, RANDOM_WEIGHTS_NOTE, SCHEDULERS

HELP = "run the whole mission end to end on a small sample (embed, train, sonify, gallery)"
DESCRIPTION = """\
Run every i2a job once, on a small sample, and print where each artefact went:

  1. captions   a subset of AudioCaps (the official train CSV, downloaded once; or --captions CSV)
  2. embed      CLIP text + AudioLDM-CLAP pairs of those captions       -> OUTPUT/pairs/
  3. train      a small translator grid plus the retrieval translator   -> OUTPUT/translators/
  4. sonify     example images (public URLs, or --images DIR) to audio   -> OUTPUT/sounds/
  5. gallery    a page to look and listen                                -> OUTPUT/sounds/index.html

With the real models (the default preset) this downloads CLIP ViT-B/32 and AudioLDM-S-full-v2 once.
`--preset tiny` does the same offline in about a minute with tiny random models and a built-in
caption sample; its audio is noise. Reruns reuse what is already done.

examples:
  i2a quickstart --preset tiny --output quickstart/
  i2a quickstart --output quickstart/ --images my_photos/ --rows 5000
"""

# A few COCO val2017 photos (CC BY 4.0), fetched by URL like any other input.
EXAMPLE_URLS = [
    "http://images.cocodataset.org/val2017/000000039769.jpg",
    "http://images.cocodataset.org/val2017/000000000285.jpg",
    "http://images.cocodataset.org/val2017/000000000724.jpg",
    "http://images.cocodataset.org/val2017/000000000785.jpg",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="quickstart", help="where every artefact goes (default: ./quickstart)")
    parser.add_argument("--captions", help="AudioCaps-format CSV to sample from (default: the official train CSV; "
                                           "with --preset tiny: a built-in sample of 40 captions)")
    parser.add_argument("--rows", type=int, default=2000, help="captions to embed (default: 2000)")
    parser.add_argument("--images", help="folder of your own images (default: example photos from public URLs; "
                                         "with --preset tiny: a few drawn offline)")
    parser.add_argument("--epochs", type=int, default=10, help="most epochs per translator (default: 10)")
    add_model_arguments(parser, translator=False)
    flags.add_url_arguments(parser)
    parser.add_argument("--scheduler", choices=sorted(SCHEDULERS), default=DEFAULT_SCHEDULER,
                        help=f"diffusion sampler for the sounds (default: {DEFAULT_SCHEDULER})")


def _step(name: str, argv: list[str], args: argparse.Namespace) -> int:
    """One i2a command, parsed and run as the CLI would (flags, absolute paths), in this process."""
    _, _, add_arguments, run_command = COMMANDS_BY_NAME[name]
    parser = argparse.ArgumentParser(prog=f"i2a {name}")
    add_arguments(parser)
    step = parser.parse_args(argv)
    step.command, step.verbose, step.debug = name, args.verbose, args.debug
    flags.absolute_paths(step)
    return run_command(step)


def run(args: argparse.Namespace) -> int:
    # 1. Check the models first: offline with the real preset, say so now rather than minutes in.
    refs.check_models_reachable(models_from_args(args))
    if args.rows < 10:
        raise ConfigError(f"--rows {args.rows}: use at least 10 captions, so every split has rows")
    out = args.output
    model_flags = [f"--preset={args.preset}"] + [
        f"--{flag.replace('_', '-')}={getattr(args, flag)}"
        for flag in ("clip_model", "clip_pretrained", "audioldm", "device") if getattr(args, flag)]
    paths = {name: storage.join(out, name) for name in ("captions.csv", "pairs", "translators", "sounds")}

    # 2. Captions, 3. pairs, 4. translators, 5. sounds and gallery: each step is the i2a command itself.
    storage.write_text_atomic(paths["captions.csv"], sample_captions(args).to_csv(index=False))
    steps = [
        # Captions only (no images to read or decode): in this process too, without Ray's start-up.
        ["embed", "--source=audiocaps", f"--input={paths['captions.csv']}", f"--output={paths['pairs']}",
         "--runner=local", *model_flags],
        ["train", f"--input={paths['pairs']}", f"--output={paths['translators']}", "--datasets=audiocaps",
         "--losses=cosine,contrastive", "--hidden=256", "--retrieval", f"--epochs={args.epochs}"],
        # A handful of clips: in this process, without paying for Ray's start-up.
        ["sonify-job", *example_inputs(args, out), f"--output={paths['sounds']}", "--runner=local",
         f"--translator={storage.join(paths['translators'], 'best')}", *model_flags, f"--scheduler={args.scheduler}",
         *(["--allow-private-urls"] if args.allow_private_urls else [])],
    ]
    for number, step in enumerate(steps, 1):
        print(f"\n== step {number}/{len(steps)}: i2a {' '.join(step)}", flush=True)
        status = _step(step[0], step[1:], args)
        if status == 1 and step[0] != "train":  # a few bad rows or images: the rest is enough to go on
            print(f"(some inputs of `i2a {step[0]}` failed, named above; going on with the rest)")
        elif status != 0:
            raise ConfigError(f"step `{step[0]}` failed (exit status {status}); see the lines above. "
                               f"Rerun the same command to resume.")

    # 6. Where everything went.
    print("\nquickstart artefacts:")
    for label, path in [("captions", paths["captions.csv"]), ("pairs (Parquet)", paths["pairs"]),
                        ("embed stats", storage.join(paths["pairs"], "stats.json")),
                        ("leaderboard", storage.join(paths["translators"], "leaderboard.md")),
                        ("best translator", storage.join(paths["translators"], "best")),
                        ("audio", storage.join(paths["sounds"], "audio")),
                        ("manifest", storage.join(paths["sounds"], "manifest")),
                        ("gallery", storage.join(paths["sounds"], "index.html"))]:
        print(f"  {label:16} {path}")
    if PRESETS[args.preset].models.random_weights:
        print(f"\n{RANDOM_WEIGHTS_NOTE} (these runs show that every step works)")
    return 0


def sample_captions(args: argparse.Namespace) -> pd.DataFrame:
    """The first --rows captions of the chosen AudioCaps-format CSV."""
    if args.captions:
        path = args.captions
    elif args.preset == "tiny":
        path = str(resources.files("i2a_core") / "data" / "sample_captions.csv")
    else:
        try:
            path = sources.audiocaps_csv(None, refs.cache_dir())
        except sources.SourceError as e:
            raise ConfigError(str(e)) from None
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)  # pandas reads s3:// through s3fs
    missing = {"audiocap_id", "caption"} - set(frame.columns)
    if missing:
        raise ConfigError(f"{path}: not an AudioCaps-format CSV (missing {', '.join(sorted(missing))})")
    return frame.head(args.rows)


def example_inputs(args: argparse.Namespace, out: str) -> list[str]:
    """--input flags for the sonify step: the user's folder, drawn images (tiny), or example URLs."""
    if args.images:
        return [f"--input={args.images}"]
    if args.preset == "tiny":
        folder = storage.join(out, "images")
        for i, (name, colour) in enumerate([("sunset", (250, 120, 40)), ("sea", (30, 90, 200)),
                                            ("forest", (40, 140, 60)), ("city", (120, 120, 130))]):
            buffer = _drawn_scene(colour, seed=i)
            storage.write_bytes_atomic(storage.join(folder, f"{name}.png"), buffer)
        return [f"--input={folder}"]
    urls = storage.join(out, "example_urls.txt")
    storage.write_text_atomic(urls, "\n".join(EXAMPLE_URLS) + "\n")
    return [f"--input={urls}"]


def _drawn_scene(colour: tuple[int, int, int], seed: int) -> bytes:
    """A simple drawn picture (sky, ground, a few shapes) so the offline demo has images to sonify."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (256, 192), colour)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 120, 256, 192], fill=tuple(int(c * 0.5) for c in colour))
    for _ in range(6):
        x, y, r = (int(v) for v in rng.integers([0, 0, 8], [256, 192, 40]))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


COMMANDS = {"quickstart": (HELP, DESCRIPTION, add_arguments, run)}

COMMANDS_BY_NAME = {**embed.COMMANDS, **train.COMMANDS, **sonify.COMMANDS}
