"""`i2a train`: the translator grid (datasets x losses x hidden) on Ray Tune, ranked on held-out pairs."""

from __future__ import annotations

import argparse

from i2a_core.cli.flags import add_lease_argument
from i2a_core.jobs.train import DEFAULT_STALL_TIMEOUT_S, TrainConfig, train_grid
from i2a_core.models.losses import LOSSES
from i2a_core.training.data import DATASET_GROUPS, DEFAULT_POOL_SIZE

HELP = "train the translator grid on embedding Parquet and rank it"
DESCRIPTION = """\
Train one MLP translator per grid point (--datasets x --losses x --hidden) as parallel Ray Tune trials,
score each on a test split chosen by a hash of the row id (the same for every trial), and write under
OUTPUT: trials/<name>/ (translator, metrics.json, loss.png), leaderboard.csv and leaderboard.md (ranked
by image-row R@1, then cosine), best/ (the winner), plots/ and data.json (row counts, skipped rows).
R@k and median rank place each test row's own CLAP vector among a pool of --pool-size test rows (1,000,
fixed by a hash of the id), so they mean the same at any dataset size.

A trial whose node is lost is retried; one that still fails is marked failed in the leaderboard (exit 1).
When no trial reports for --stall-timeout seconds (e.g. no alive node has the GPU a trial asks for), the
grid says what it waits for, writes the leaderboard with what finished, and exits 1.

Rerunning the same command keeps finished trials (those with metrics.json) and runs the rest.
--retrieval adds the training-free retrieval translator (nearest AudioCaps captions) as one more row.

dataset groups: audiocaps (source audiocaps), images (every other source: wit, cc, ...), all.

examples:
  i2a train --input s3://bucket/pairs/ --output s3://bucket/grid/ --gpus-per-trial 0.25 --retrieval
  i2a train --input pairs/ --output grid/ --datasets audiocaps --losses cosine --hidden 512 --mean-shift
"""


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _sizes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in _names(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}': expected comma-separated integers") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, help="embedding Parquet file or folder, local or s3://")
    parser.add_argument("--output", required=True, help="output folder, local or s3://")
    grid = parser.add_argument_group("grid")
    grid.add_argument("--datasets", type=_names, default=DATASET_GROUPS,
                      help=f"dataset groups (default: {','.join(DATASET_GROUPS)})")
    grid.add_argument("--losses", type=_names, default=LOSSES, help=f"losses (default: {','.join(LOSSES)})")
    grid.add_argument("--hidden", type=_sizes, default=TrainConfig.hidden, help="hidden sizes (default: %s)" % ",".join(map(str, TrainConfig.hidden)))
    grid.add_argument("--retrieval", action="store_true",
                      help="also build the training-free retrieval translator (needs AudioCaps rows)")
    grid.add_argument("--retrieval-k", type=int, default=TrainConfig.retrieval_k,
                      help="captions averaged per input (default: %(default)s)")
    grid.add_argument("--retrieval-temperature", type=float, default=TrainConfig.retrieval_temperature,
                      help="softmax temperature over caption similarities (default: %(default)s)")
    optim = parser.add_argument_group("optimisation (shared by every trial)")
    optim.add_argument("--epochs", type=int, default=TrainConfig.epochs,
                       help="most epochs per trial (default: %(default)s)")
    optim.add_argument("--patience", type=int, default=TrainConfig.patience,
                       help="stop after this many epochs without a better validation loss (default: %(default)s)")
    optim.add_argument("--batch-size", type=int, default=TrainConfig.batch_size,
                       help="pairs per step (default: %(default)s)")
    optim.add_argument("--lr", type=float, default=TrainConfig.lr, help="AdamW learning rate (default: %(default)s)")
    optim.add_argument("--seed", type=int, default=TrainConfig.seed,
                       help="seed for initialisation and shuffling (default: %(default)s)")
    optim.add_argument("--temperature", type=float, default=TrainConfig.temperature,
                       help="contrastive loss temperature (default: %(default)s)")
    optim.add_argument("--mean-shift", action="store_true",
                       help="save the translators learnt from text pairs (audiocaps, retrieval) with the "
                            "modality-gap correction on (subtract the mean CLIP image vector, add the mean CLIP "
                            "text vector); its effect on image rows is in the leaderboard either way")
    optim.add_argument("--val-fraction", type=float, default=TrainConfig.val_fraction,
                       help="share of ids for validation (default: %(default)s)")
    optim.add_argument("--test-fraction", type=float, default=TrainConfig.test_fraction,
                       help="share of ids for testing (default: %(default)s)")
    optim.add_argument("--pool-size", type=int, default=TrainConfig.pool_size,
                       help=f"R@k and median rank place each test row among this many test rows, pooled by a hash "
                            f"of the id (default: {DEFAULT_POOL_SIZE})")
    run_group = parser.add_argument_group("execution")
    run_group.add_argument("--gpus-per-trial", type=float, default=TrainConfig.gpus_per_trial,
                           help="GPUs per trial, fractional (0.25 packs four trials per GPU); 0: CPU (default)")
    run_group.add_argument("--cpus-per-trial", type=float, default=TrainConfig.cpus_per_trial,
                           help="CPUs per trial (default: %(default)s)")
    run_group.add_argument("--stall-timeout", type=float, default=DEFAULT_STALL_TIMEOUT_S, metavar="SECONDS",
                           help="when no trial reports (an epoch, a start, an end) for this long, say what the grid "
                                "waits for, keep what finished and exit 1 (default: %(default)g)")
    run_group.add_argument("--no-ray", action="store_true",
                           help="run trials one after another in this process instead of on Ray Tune")
    add_lease_argument(run_group)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    config = TrainConfig(
        input=args.input, output=args.output, datasets=args.datasets, losses=args.losses, hidden=args.hidden,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, patience=args.patience,
        temperature=args.temperature, mean_shift=args.mean_shift, retrieval=args.retrieval,
        retrieval_k=args.retrieval_k, retrieval_temperature=args.retrieval_temperature,
        gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction, ray=not args.no_ray,
        take_over_lease=args.take_over_lease, pool_size=args.pool_size, stall_timeout=args.stall_timeout)
    config.check()
    return config


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    summary = train_grid(config)
    for position, record in enumerate(r for r in summary.records if r["status"] == "ok"):
        if position == 5:
            break
        image, overall = record["metrics"].get("image", {}), record["metrics"].get("all", {})
        print(f"  {position + 1}. {record['trial']}: image R@1 {_score(image.get('r1'))}, "
              f"cosine {_score(overall.get('cosine'))}, R@1 {_score(overall.get('r1'))}")
    failed = [r for r in summary.records if r["status"] in ("failed", "diverged")]
    skipped = [r for r in summary.records if r["status"] == "skipped"]
    for record in skipped + failed:
        print(f"  {record['trial']}: {record['status']} ({record['reason']})")
    print(f"{len(summary.records) - len(failed) - len(skipped)} trials finished, {len(skipped)} skipped, "
          f"{len(failed)} failed; best: {summary.best or 'none'}; leaderboard: {args.output}/leaderboard.md")
    if summary.random_weights:
        print("note: these pairs come from random, untrained models (a test preset): the metrics are meaningless")
    return 1 if failed or not summary.best else 0


def _score(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


COMMANDS = {"train": (HELP, DESCRIPTION, add_arguments, run)}
