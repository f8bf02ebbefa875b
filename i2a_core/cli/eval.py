"""`i2a eval`: score sonifications (CS, CLAP score, FAD, FD) or rank translators by the audio they make."""

from __future__ import annotations

import argparse
import os
from dataclasses import replace

from i2a_core.cli.flags import (
    add_generation_arguments,
    add_model_arguments,
    add_url_arguments,
    generation_from_args,
    models_from_args,
)
from i2a_core.errors import ConfigError
from i2a_core.evaluation.protocols import DEFAULT_PROTOCOL, PROTOCOLS, TINY, ScoringModels
from i2a_core.evaluation.weights import check_available
from i2a_core.io import storage
from i2a_core.jobs import compare
from i2a_core.jobs import eval as evaluation
from i2a_core.specs import ClipSpec, ImageLimits

HELP = "score sonified audio (CS, CLAP score, FAD, FD) or rank translators by their audio"
DESCRIPTION = """\
Score audio the way the image-to-audio papers do (docs/eval.md has the protocol and published numbers):
  CS          100 x cosine(Wav2CLIP audio embedding, CLIP ViT-B/32 image embedding)
  CLAP score  100 x cosine(CLAP audio embedding, CLAP text embedding of the image's caption)
  FAD / FD    Frechet distances of VGGish / PANNs CNN14 embeddings to --reference-audio

Writes EVAL_DIR/scores.csv (one row per clip), summary.json (means with 95% bootstrap intervals, the
scoring models), histograms and a gallery sorted by score. With --images, sonifies the same images with
each translator (same seeds and settings, through the resumable bulk job) and writes
audio_leaderboard.csv/.md/.png ranked by CS, then CLAP score.

Exit status: 0 when every clip was scored, 1 when some clips could not be read (error rows in
scores.csv), 2 for a fatal error (bad flags, an empty reference folder, models that cannot load).

examples:
  i2a eval --input out/ --output eval/ --reference-audio vggsound_test/ --captions captions.csv
  i2a eval --images imagehear/ --grid runs/grid --top 3 --output eval-grid/ --captions imagehear.csv --text
  i2a eval --preset tiny --images photos/ --translators tiny:translator,runs/mlp --output eval/  # offline
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", help="what to score: a bulk sonify output (manifest/) or an `i2a sonify` "
                                        "folder (WAV + JSON sidecars), local or s3://")
    parser.add_argument("--images", help="compare translators on these images (folder, s3:// prefix or list)")
    parser.add_argument("--grid", help="with --images: an `i2a train` output; compares its --top trials")
    parser.add_argument("--top", type=int, default=3, help="with --grid: how many of its best trials (default: 3)")
    parser.add_argument("--translators", help="with --images: comma-separated translator dirs (local or s3://)")
    parser.add_argument("--text", action="store_true",
                        help="with --images: add plain AudioLDM from each image's caption as a leaderboard row")
    parser.add_argument("--output", required=True, help="EVAL_DIR, local or s3://")
    parser.add_argument("--reference-audio", help="folder of reference WAVs: FAD (VGGish) and FD (PANNs) against it")
    parser.add_argument("--captions", help="CSV key,caption (key: input path, file name or stem) for the CLAP "
                                           "score; default: img2dataset's KEY.txt/KEY.json beside each image")
    scoring = parser.add_argument_group("scoring models (fixed whatever generated the audio; --preset tiny "
                                        "swaps in random offline ones)")
    scoring.add_argument("--protocol", choices=list(PROTOCOLS), default=DEFAULT_PROTOCOL,
                         help="every front-end choice in one word (channels, DC, resampler, padding, CS window "
                              "and scale, FD statistics), recorded in summary.json: i2a (default; anti-aliased), "
                              "audioldm-eval (as audioldm_eval's EvaluationHelper(16000)), fad-package (as "
                              "frechet_audio_distance); docs/eval.md has the table")
    scoring.add_argument("--cs-clip", help="CLIP for CS: open_clip name, hf-hub:ORG/NAME or local-dir:PATH "
                                           "(default: ViT-B-32)")
    scoring.add_argument("--cs-clip-pretrained", help="its pretrained tag or checkpoint (default: openai)")
    scoring.add_argument("--cs-audio", help="Wav2CLIP checkpoint: path, s3:// or URL (default: the released "
                                            "Wav2CLIP.pt)")
    scoring.add_argument("--cs-seconds", type=float, help="audio seconds Wav2CLIP sees, cropped or zero-padded "
                                                          "(default: the protocol's, the whole clip)")
    scoring.add_argument("--clap-score-model", help="CLAP for the CLAP score: hub id, folder or s3:// "
                                                    "(default: laion/clap-htsat-unfused)")
    scoring.add_argument("--fad-model", help="VGGish checkpoint for FAD: path, s3:// or URL (default: torchvggish's "
                                             "vggish-10086976.pth)")
    scoring.add_argument("--fd-model", help="PANNs CNN14 checkpoint for FD: path, s3:// or URL "
                                            "(default: Cnn14_mAP=0.431.pth)")
    scoring.add_argument("--trust-checkpoints", action="store_true",
                         help="load .pt/.pth checkpoints with full unpickling (runs code in the file); by default "
                              "only plain tensors load (weights_only=True)")
    scale = parser.add_argument_group("scale")
    scale.add_argument("--runner", choices=["auto", "local", "ray"], default="auto",
                       help="auto: in-process for at most 64 clips without a Ray cluster (RAY_ADDRESS), else Ray "
                            "Data actors; also used for the sonify runs of --images")
    scale.add_argument("--gpus-per-actor", type=float, help="GPUs per scoring (and AudioLDM) actor "
                                                            "(default: 1 when the cluster has GPUs)")
    scale.add_argument("--actors", type=int, help="scoring actors (default: one per GPU share, or 1)")
    scale.add_argument("--score-batch-size", type=int, default=16, help="clips per scoring batch (default: 16)")
    scale.add_argument("--page-size", type=int, default=100, help="clips per gallery page (default: 100)")
    add_url_arguments(parser)
    add_model_arguments(parser)
    add_generation_arguments(parser)


def scoring_models_from_args(args: argparse.Namespace):
    models = TINY if args.preset == "tiny" else ScoringModels()
    if args.cs_clip:
        models = replace(models, cs_clip=ClipSpec(args.cs_clip, args.cs_clip_pretrained or "openai"))
    elif args.cs_clip_pretrained:
        models = replace(models, cs_clip=replace(models.cs_clip, pretrained=args.cs_clip_pretrained))
    overrides = {"cs_audio": args.cs_audio, "clap": args.clap_score_model, "fad": args.fad_model,
                 "fd": args.fd_model, "cs_seconds": args.cs_seconds}
    models = replace(models, **{k: v for k, v in overrides.items() if v is not None},
                     trust_pickles=args.trust_checkpoints, protocol=args.protocol)
    return models


def _check(args: argparse.Namespace) -> None:
    if bool(args.input) == bool(args.images):
        raise ConfigError("give either --input SONIFY_OUTPUT (score it) or --images DIR with --grid or "
                           "--translators (compare translators)")
    if args.images and bool(args.grid) == bool(args.translators):
        raise ConfigError("--images needs exactly one of --grid GRID_DIR or --translators T1,T2,...")
    if args.input and (args.grid or args.translators or args.text):
        raise ConfigError("--grid, --translators and --text go with --images, not --input")
    if args.top < 1:
        raise ConfigError(f"--top {args.top}: must be at least 1")
    if args.cs_seconds is not None and not args.cs_seconds > 0:
        raise ConfigError(f"--cs-seconds {args.cs_seconds:g}: must be a positive number of seconds")
    if args.score_batch_size < 1:
        raise ConfigError(f"--score-batch-size {args.score_batch_size}: must be at least 1")
    if args.page_size < 1:
        raise ConfigError(f"--page-size {args.page_size}: must be at least 1")
    if args.gpus_per_actor is not None and args.gpus_per_actor < 0:
        raise ConfigError(f"--gpus-per-actor {args.gpus_per_actor:g}: must not be negative")


def _absolute(path: str | None) -> str | None:
    """Local paths as absolute ones, so Ray actors (in other directories) read the same files; URLs, s3://,
    tiny: and hub ids pass unchanged."""
    if not path or storage.is_remote(path) or path.startswith("tiny:"):
        return path
    if path.count("/") == 1 and not os.path.exists(path) and not path.startswith((".", "/", "~")):
        return path  # a hub id (ORG/NAME)
    return os.path.abspath(os.path.expanduser(path))


def _absolute_paths(args: argparse.Namespace) -> None:
    for flag in ("input", "output", "images", "grid", "reference_audio", "captions", "cs_audio",
                 "clap_score_model", "fad_model", "fd_model"):
        setattr(args, flag, _absolute(getattr(args, flag)))
    if args.translators:
        args.translators = ",".join(_absolute(t.strip()) or "" for t in args.translators.split(","))


def run(args: argparse.Namespace) -> int:
    # 1. Flags, before any model loads.
    _check(args)
    _absolute_paths(args)
    scoring = scoring_models_from_args(args)
    job = evaluation.EvalJob(input=args.input or "", output=args.output, models=scoring,
                             reference_audio=args.reference_audio, captions=args.captions, runner=args.runner,
                             gpus_per_actor=args.gpus_per_actor, actors=args.actors, device=args.device,
                             batch_size=args.score_batch_size, page_size=args.page_size)
    # 2. Score one output, or 3. sonify the images with each translator and rank them.
    if args.input:
        summary = evaluation.run(job)
        return 1 if summary["errors"] else 0
    settings = generation_from_args(args)
    models = models_from_args(args)
    if args.grid:
        translators, embedding_rows = compare.translators_from_grid(args.grid, args.top)
    else:
        references = [t.strip() for t in args.translators.split(",") if t.strip()]
        if not references:
            raise ConfigError("--translators: give at least one translator directory")
        translators, embedding_rows = compare.translators_from_list(references), ()
    # An empty reference folder or a missing scoring model fails now, not after hours of generation.
    if args.reference_audio:
        evaluation.list_reference(args.reference_audio)
    check_available(scoring, ("cs", "clap") + (("fad", "fd") if args.reference_audio else ()))
    ranked = compare.run(compare.CompareJob(images=args.images, output=args.output, translators=translators,
                                            models=models, settings=settings, evaluation=job, text=args.text,
                                            embedding_rows=embedding_rows,
                                            limits=ImageLimits(allow_private_urls=args.allow_private_urls)))
    print(f"audio leaderboard: {storage.join(args.output, 'audio_leaderboard.md')} ({len(ranked)} rows)")
    return 1 if any(row["errors"] for row in ranked) else 0


COMMANDS = {"eval": (HELP, DESCRIPTION, add_arguments, run)}
