"""The translator grid on Ray Tune: prepare data once, run unfinished trials in parallel, rank, plot, pick the best."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass

from i2a_core.errors import ConfigError
from i2a_core.io import lease, storage
from i2a_core.models.losses import LOSSES
from i2a_core.progress import Progress
from i2a_core.quiet import verbose
from i2a_core.raycluster import require_shared_output
from i2a_core.refs import cache_dir
from i2a_core.training.data import DATASET_GROUPS, load_prepared, prepare
from i2a_core.training.trial import TrialResult, TrialSpec, group_problem, run_trial

TRIAL_FILES = ("config.json", "model.safetensors", "metrics.json")
LEADERBOARD_COLUMNS = (
    "rank", "trial", "status", "dataset", "loss", "hidden", "mean_shift",
    "image_r1", "image_r5", "image_r10", "image_median_rank", "image_cosine",
    "shift_effect_image_r1", "shift_effect_image_cosine",
    "r1", "r5", "r10", "median_rank", "cosine", "mse", "best_val_loss",
    "epochs_run", "train_rows", "seconds", "reason",
)


@dataclass
class TrainConfig:
    """Every setting of `i2a train`, typed once; the CLI and jobs/train.py both build one."""

    input: str
    output: str
    datasets: tuple[str, ...] = DATASET_GROUPS
    losses: tuple[str, ...] = LOSSES
    hidden: tuple[int, ...] = (256, 512)
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    patience: int = 3
    temperature: float = 0.07
    mean_shift: bool = False
    retrieval: bool = False
    retrieval_k: int = 10
    retrieval_temperature: float = 0.05
    gpus_per_trial: float = 0.0
    cpus_per_trial: float = 1.0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    ray: bool = True  # False: trials one after another in this process (small runs, benchmark baseline)
    take_over_lease: bool = False  # take the output from a job that looks alive (see lease.py)

    def check(self) -> None:
        """Raise ValueError naming the setting when one cannot work."""
        unknown = [d for d in self.datasets if d not in DATASET_GROUPS]
        if unknown:
            raise ConfigError(f"--datasets {','.join(unknown)}: unknown (choose from {', '.join(DATASET_GROUPS)})")
        unknown = [loss for loss in self.losses if loss not in LOSSES]
        if unknown:
            raise ConfigError(f"--losses {','.join(unknown)}: unknown (choose from {', '.join(LOSSES)})")
        for name in ("epochs", "batch_size", "patience", "retrieval_k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"--hidden {','.join(map(str, self.hidden))}: sizes must be at least 1")
        for name in ("lr", "temperature", "retrieval_temperature", "cpus_per_trial"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be positive")
        if self.gpus_per_trial < 0:
            raise ConfigError(f"--gpus-per-trial {self.gpus_per_trial}: must not be negative")
        if not (0 < self.val_fraction and 0 < self.test_fraction and self.val_fraction + self.test_fraction < 1):
            raise ConfigError("--val-fraction and --test-fraction must be positive and sum to less than 1")
        if not (self.datasets and self.losses and self.hidden) and not self.retrieval:
            raise ConfigError("nothing to train: the grid is empty and --retrieval is off")

    def specs(self) -> list[TrialSpec]:
        shared = dict(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed,
                      patience=self.patience, mean_shift=self.mean_shift)
        grid = [TrialSpec(dataset=d, loss=loss, hidden=h, temperature=self.temperature, **shared)
                for d in self.datasets for loss in self.losses for h in self.hidden]
        if self.retrieval:
            grid.append(TrialSpec(dataset="audiocaps", loss="retrieval", hidden=0, kind="retrieval",
                                  top_k=self.retrieval_k, temperature=self.retrieval_temperature, **shared))
        return grid


@dataclass
class GridSummary:
    records: list[dict]  # one metrics.json record per trial, finished or skipped
    best: str | None  # winning trial's name
    stats: dict  # the prepared data's counts
    random_weights: bool = False  # the pairs came from untrained models: the metrics mean nothing


RANDOM_WEIGHTS_NOTE = ("**Made from pairs of random, untrained models (a test preset): these metrics are "
                       "meaningless and any translator here makes noise.**")


def pairs_from_random_models(input_url: str) -> bool:
    """Whether `i2a embed` wrote these pairs with random models (its stats.json says so, per folder)."""
    try:
        fs, path = storage.filesystem(input_url)
        found = fs.glob(f"{path.rstrip('/')}/stats.json") + fs.glob(f"{path.rstrip('/')}/*/stats.json")
        return any(json.loads(fs.cat_file(p)).get("random_weights") for p in found)
    except (OSError, ValueError):
        return False


def train_grid(config: TrainConfig, log=print) -> GridSummary:
    """Run the whole grid; trials whose metrics.json exists under --output are kept, not rerun."""
    # 1. check inputs, then hold the output for the whole run
    config.check()
    specs = config.specs()
    storage.check_output(config.output)
    storage.makedirs(config.output)
    with lease.Lease(config.output, take_over=config.take_over_lease):
        return _train_leased(config, specs, log)


def _train_leased(config: TrainConfig, specs: list[TrialSpec], log) -> GridSummary:
    # 2. read, validate and split the input once, for every trial
    data_url, stats = _prepare_data(config)
    log(f"data: {stats['rows_valid']} valid rows of {stats['rows_read']} (train/val/test "
        f"{stats['rows']['train']}/{stats['rows']['val']}/{stats['rows']['test']}), "
        f"CLIP {stats['clip_dim']}-d -> CLAP {stats['clap_dim']}-d; skipped: {_skipped_text(stats)}")
    storage.write_text_atomic(storage.join(config.output, "data.json"), json.dumps(stats, indent=2))
    # 3. keep finished trials, skip groups without rows, run the rest
    data = _open_prepared(data_url)
    records: dict[str, dict] = {}
    pending = []
    for spec in specs:
        finished = _finished_record(config.output, spec, data_url)
        problem = group_problem(data, spec.dataset)
        if finished:
            records[spec.name] = finished
        elif problem:
            records[spec.name] = TrialResult(spec, "skipped", problem).record()
        else:
            pending.append(spec)
    log(f"trials: {len(specs)} ({len(records) - _count(records, 'skipped')} finished earlier, "
        f"{_count(records, 'skipped')} skipped, {len(pending)} to run)")
    if pending:
        run_pending = _run_on_ray if config.ray else _run_in_process
        records.update(run_pending(pending, data_url, config, log))
    # 4. rank, copy the winner, plot
    ordered = [records[spec.name] for spec in specs]
    ranked = rank(ordered)
    random_weights = pairs_from_random_models(config.input)
    _write_leaderboard(config.output, ranked, random_weights)
    best = next((r["trial"] for r in ranked if r["status"] == "ok"), None)
    if best:
        _copy_trial(config.output, best, storage.join(config.output, "best"))
    _write_plots(config.output, ranked)
    return GridSummary(records=ranked, best=best, stats=stats, random_weights=random_weights)


def _prepare_data(config: TrainConfig) -> tuple[str, dict]:
    """Prepare once; on object storage, upload the prepared arrays so trials on any node can fetch them."""
    if not storage.is_remote(config.output):
        directory = prepare(config.input, storage.join(config.output, "prepared"),
                            config.val_fraction, config.test_fraction)
        return directory, load_prepared(directory).stats
    directory = prepare(config.input, os.path.join(cache_dir(), "prepared"),
                        config.val_fraction, config.test_fraction)
    url = storage.join(config.output, "prepared", os.path.basename(directory))
    if not storage.exists(storage.join(url, "stats.json")):
        fs, path = storage.filesystem(url)
        for name in sorted(os.listdir(directory), key=lambda n: n == "stats.json"):  # stats.json last: the marker
            fs.put_file(os.path.join(directory, name), f"{path}/{name}")
    return url, load_prepared(directory).stats


def _open_prepared(data_url: str):
    """Memory-map the prepared arrays: in place when local, else from this node's copy (made once)."""
    if storage.is_remote(data_url):
        # On the driver's node the arrays were prepared here before the upload: no need to download them.
        here = os.path.join(cache_dir(), "prepared", data_url.rstrip("/").rsplit("/", 1)[-1])
        if os.path.exists(os.path.join(here, "stats.json")):
            return load_prepared(here)
    return load_prepared(storage.local_copy(data_url, os.path.join(cache_dir(), "downloads")))


def _data_key(data_url: str) -> str:
    """Names the prepared data: input fingerprint and split fractions (see dataset.prepare)."""
    return data_url.rstrip("/").rsplit("/", 1)[-1]


def _finished_record(output: str, spec: TrialSpec, data_url: str) -> dict | None:
    url = storage.join(output, "trials", spec.name, "metrics.json")
    if not storage.exists(url):
        return None
    record = json.loads(storage.read_text(url))
    # Same name but other settings (epochs, lr...), other input rows or another split: train again,
    # so that every leaderboard row was scored on the same test split.
    if record.get("spec") != asdict(spec) or record.get("data") != _data_key(data_url):
        return None
    return record


def save_trial(output: str, result: TrialResult, data_url: str) -> dict:
    """Write the translator, its loss curve and, last, metrics.json: the marker that the trial is finished."""
    directory = storage.join(output, "trials", result.spec.name)
    record = {**result.record(), "data": _data_key(data_url)}
    if result.translator is not None:
        result.translator.save(directory)
    if result.history:
        storage.write_bytes_atomic(storage.join(directory, "loss.png"), _loss_plot([record]))
    storage.write_text_atomic(storage.join(directory, "metrics.json"), json.dumps(record, indent=2))
    return record


def tune_trial(trial_config: dict) -> None:
    """Ray Tune function trainable: one grid point, written straight to --output."""
    import torch
    from ray import tune

    from i2a_core.models.devices import pick_device

    torch.set_num_threads(max(1, int(trial_config["cpus"])))
    spec = TrialSpec(**trial_config["spec"])
    data = _open_prepared(trial_config["data_url"])
    device = pick_device(None) if trial_config["gpus"] > 0 else torch.device("cpu")
    result = run_trial(spec, data, device, on_epoch=lambda record: tune.report(record))
    record = save_trial(trial_config["output"], result, trial_config["data_url"])
    tune.report({"done": True, "status": record["status"]})


def _run_on_ray(specs: list[TrialSpec], data_url: str, config: TrainConfig, log) -> dict[str, dict]:
    from ray import tune

    from i2a_core.quiet import init_ray

    ray = init_ray()  # joins the cluster when run under `ray job submit` or with RAY_ADDRESS
    require_shared_output(config.output)
    available = ray.cluster_resources()
    gpus = config.gpus_per_trial
    if gpus > 0 and not available.get("GPU"):
        log(f"--gpus-per-trial {gpus:g}: the Ray cluster has no GPU, so trials run on CPU")
        gpus = 0.0
    if config.cpus_per_trial > available.get("CPU", 0):  # Tune would wait for them (unless it autoscales)
        log(f"warning: each trial asks for {config.cpus_per_trial:g} CPUs but the Ray cluster has "
            f"{available.get('CPU', 0):g}; trials wait until the cluster grows")
    resources = {"cpu": config.cpus_per_trial, "gpu": gpus}
    param_space = {"spec": tune.grid_search([asdict(s) for s in specs]), "data_url": data_url,
                   "output": config.output, "cpus": config.cpus_per_trial, "gpus": gpus}
    started = time.perf_counter()
    # Tune's own progress tables would bury ours; its experiment state is scratch (results live in --output).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    scratch = tempfile.mkdtemp(prefix="i2a-tune-")
    progress = Progress(len(specs), "train", "trials")
    tuner = tune.Tuner(
        tune.with_resources(tune_trial, resources),
        param_space=param_space,
        # Reusing actors saves each trial a fresh process and its torch import.
        tune_config=tune.TuneConfig(num_samples=1, reuse_actors=True),
        run_config=tune.RunConfig(name="i2a-train", verbose=2 if verbose() else 0, storage_path=scratch,
                                  callbacks=[_trial_progress(progress)]),
    )
    try:
        results = tuner.fit()
    finally:
        progress.close()
        shutil.rmtree(scratch, ignore_errors=True)
    records = {}
    for result in results:
        spec = TrialSpec(**result.config["spec"])
        if result.error is not None:
            # Not written to --output, so a rerun tries this trial again.
            message = str(result.error).strip().splitlines()[-1][:300]
            records[spec.name] = TrialResult(spec, "failed", message).record()
            log(f"  {spec.name}: failed ({message})")
            continue
        records[spec.name] = json.loads(storage.read_text(storage.join(config.output, "trials", spec.name,
                                                                       "metrics.json")))
    log(f"ran {len(specs)} trials on Ray in {time.perf_counter() - started:.1f}s")
    return records


def _trial_progress(progress: Progress):
    """A Tune callback (it runs in the driver) that counts finished trials."""
    from ray.tune import Callback

    class TrialProgress(Callback):
        def on_trial_complete(self, iteration, trials, trial, **info):
            progress.update(1)

        def on_trial_error(self, iteration, trials, trial, **info):
            progress.update(1)

    return TrialProgress()


def _run_in_process(specs: list[TrialSpec], data_url: str, config: TrainConfig, log) -> dict[str, dict]:
    import torch

    from i2a_core.models.devices import pick_device

    data = _open_prepared(data_url)
    device = pick_device(None) if config.gpus_per_trial > 0 else torch.device("cpu")
    started = time.perf_counter()
    records = {}
    with Progress(len(specs), "train", "trials") as progress:
        for spec in specs:
            records[spec.name] = save_trial(config.output, run_trial(spec, data, device), data_url)
            progress.update(1)
    log(f"ran {len(specs)} trials in this process in {time.perf_counter() - started:.1f}s")
    return records


def _count(records: dict, status: str) -> int:
    return sum(r["status"] == status for r in records.values())


def _skipped_text(stats: dict) -> str:
    bad = {k: v for k, v in stats["rows_skipped"].items() if v}
    return ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in bad.items()) or "none"


def leaderboard_row(record: dict) -> dict:
    metrics = record.get("metrics") or {}
    image, overall = metrics.get("image", {}), metrics.get("all", {})
    effect = metrics.get("image_shift_delta", {})
    spec = record["spec"]
    return {
        "trial": record["trial"], "status": record["status"], "dataset": spec["dataset"],
        "loss": spec["loss"], "hidden": spec["hidden"] or "", "mean_shift": spec["mean_shift"],
        **{f"image_{k}": image.get(k) for k in ("r1", "r5", "r10", "median_rank", "cosine")},
        "shift_effect_image_r1": effect.get("r1"), "shift_effect_image_cosine": effect.get("cosine"),
        **{k: overall.get(k) for k in ("r1", "r5", "r10", "median_rank", "cosine", "mse")},
        "best_val_loss": metrics.get("best_val_loss"), "epochs_run": record["epochs_run"],
        "train_rows": record["train_rows"], "seconds": record["seconds"], "reason": record["reason"],
    }


def rank(records: list[dict]) -> list[dict]:
    """Finished trials by image-row R@1, then mean cosine (all rows); the rest after them, unranked."""
    def key(record):
        metrics = record.get("metrics") or {}
        return (-metrics.get("image", {}).get("r1", -1.0), -metrics.get("all", {}).get("cosine", -1.0))

    ok = sorted((r for r in records if r["status"] == "ok"), key=key)
    rest = [r for r in records if r["status"] != "ok"]
    return ok + rest


def _write_leaderboard(output: str, ranked: list[dict], random_weights: bool = False) -> None:
    rows = []
    for position, record in enumerate(ranked, 1):
        row = leaderboard_row(record)
        rows.append({"rank": position if record["status"] == "ok" else "", **row})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LEADERBOARD_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    storage.write_text_atomic(storage.join(output, "leaderboard.csv"), buffer.getvalue())

    shown = ("rank", "trial", "status", "image_r1", "image_r10", "image_median_rank", "image_cosine",
             "shift_effect_image_r1", "shift_effect_image_cosine", "r1", "r10", "median_rank", "cosine", "mse",
             "epochs_run", "reason")
    lines = ["# Translator leaderboard", "", *([RANDOM_WEIGHTS_NOTE, ""] if random_weights else []),
             "Ranked by image-row R@1, then mean cosine, on the shared test split (split by hash of id). "
             "`shift_effect_*` is the change on image rows when the modality-gap mean shift is applied.", "",
             "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in shown) + " |" for row in rows]
    storage.write_text_atomic(storage.join(output, "leaderboard.md"), "\n".join(lines) + "\n")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1 else f"{value:.3f}"
    return str(value).replace("|", "/")


def _copy_trial(output: str, trial: str, target: str) -> None:
    for name in TRIAL_FILES:
        storage.write_bytes_atomic(storage.join(target, name),
                                   storage.read_bytes(storage.join(output, "trials", trial, name)))


def _figure_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _loss_plot(records: list[dict]) -> bytes:
    """Validation (solid) and training (dashed) loss per epoch, one panel per loss function."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    by_loss: dict[str, dict] = {}
    for record in records:
        by_loss.setdefault(record["spec"]["loss"], {})[record["trial"]] = record["history"]
    figure = Figure(figsize=(5.5 * len(by_loss), 3.8), layout="constrained")
    axes = figure.subplots(1, len(by_loss), squeeze=False)[0]
    for ax, (loss, group) in zip(axes, by_loss.items()):
        for name, history in group.items():
            epochs = [h["epoch"] for h in history]
            line, = ax.plot(epochs, [h["val_loss"] for h in history], label=name)
            ax.plot(epochs, [h["train_loss"] for h in history], "--", color=line.get_color(), alpha=0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(title=f"{loss} loss per epoch", xlabel="epoch", ylabel=f"{loss} loss (unitless)")
        styles = [Line2D([], [], color="0.3", label="validation"),
                  Line2D([], [], color="0.3", linestyle="--", alpha=0.5, label="training")]
        ax.legend(handles=ax.get_legend_handles_labels()[0] + styles, fontsize=7)
    return _figure_bytes(figure)


def _write_plots(output: str, ranked: list[dict]) -> None:
    from matplotlib.figure import Figure

    finished = [r for r in ranked if r["status"] == "ok"]
    curves = [r for r in finished if r.get("history")]
    if curves:
        storage.write_bytes_atomic(storage.join(output, "plots", "loss_curves.png"), _loss_plot(curves))
    if not finished:
        return
    names = [r["trial"] for r in finished][::-1]  # best at the top
    panels = [("image-row R@1", "R@1 on image rows (share of test rows)", lambda m: m.get("image", {}).get("r1")),
              ("R@1, all rows", "R@1 (share of test rows)", lambda m: m.get("all", {}).get("r1")),
              ("mean cosine, all rows", "cosine similarity (-1 to 1)", lambda m: m.get("all", {}).get("cosine"))]
    figure = Figure(figsize=(15, 0.35 * len(names) + 1.8), layout="constrained")
    axes = figure.subplots(1, len(panels), sharey=True)
    for ax, (title, label, value) in zip(axes, panels):
        values = [value(r["metrics"]) for r in finished[::-1]]
        ax.barh(names, [v or 0.0 for v in values])
        for position, v in enumerate(values):
            if v is None:  # no rows to score on (no image rows): say so rather than draw a zero
                ax.text(0, position, " n/a", va="center", fontsize=8, color="0.4")
        ax.set(title=title, xlabel=label)
    axes[0].set_ylabel("trial (best at the top)")
    figure.suptitle("Translator grid: held-out test metrics")
    storage.write_bytes_atomic(storage.join(output, "plots", "metrics.png"), _figure_bytes(figure))
