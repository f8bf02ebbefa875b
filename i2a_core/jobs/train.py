"""The translator grid on Ray Tune: prepare data once, run unfinished trials in parallel, rank, plot, pick the best.

This driver imports no torch: trials are reached by dotted path (TUNE_TRIAL, IN_PROCESS) and built where they
run. Whatever happens to the trials (an error, a lost node, a stall), the leaderboard is written, with each
trial that did not finish marked failed and its reason.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass

from i2a_core.errors import ConfigError
from i2a_core.io import lease, storage
from i2a_core.models.losses import LOSSES
from i2a_core.progress import Progress
from i2a_core.quiet import init_ray, verbose
from i2a_core.raycluster import require_shared_output, waiting_for
from i2a_core.refs import cache_dir
from i2a_core.runner import load
from i2a_core.training.data import (
    DATASET_GROUPS,
    DEFAULT_POOL_SIZE,
    data_key,
    group_problem,
    load_prepared,
    open_prepared,
    prepare,
)
from i2a_core.training.plots import loss_plot, metrics_plot
from i2a_core.training.spec import TrialResult, TrialSpec

# The torch side of a trial (training/trial.py), imported only where trials run.
TUNE_TRIAL = "i2a_core.training.trial:tune_trial"
IN_PROCESS = "i2a_core.training.trial:run_trials"
TRIAL_RETRIES = 2  # Tune restarts a trial whose actor or node was lost (or that raised) this many times
DEFAULT_STALL_TIMEOUT_S = 1800.0
TRIAL_FILES = ("config.json", "model.safetensors", "metrics.json")
LEADERBOARD_COLUMNS = (
    "rank", "trial", "status", "dataset", "loss", "hidden", "mean_shift",
    "image_r1", "image_r5", "image_r10", "image_median_rank", "image_cosine",
    "shift_effect_image_r1", "shift_effect_image_cosine",
    "r1", "r5", "r10", "median_rank", "cosine", "mse", "best_val_loss", "pool_size",
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
    # The optimisation settings every trial shares: TrialSpec's defaults, written once there.
    epochs: int = TrialSpec.epochs
    batch_size: int = TrialSpec.batch_size
    lr: float = TrialSpec.lr
    seed: int = TrialSpec.seed
    patience: int = TrialSpec.patience
    temperature: float = TrialSpec.temperature
    mean_shift: bool = TrialSpec.mean_shift
    retrieval: bool = False
    retrieval_k: int = 10
    retrieval_temperature: float = 0.05
    gpus_per_trial: float = 0.0
    cpus_per_trial: float = 1.0
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    ray: bool = True  # False: trials one after another in this process (small runs, benchmark baseline)
    take_over_lease: bool = False  # take the output from a job that looks alive (see lease.py)
    pool_size: int = DEFAULT_POOL_SIZE  # R@k and median rank among this many test rows (see training/scoring.py)
    stall_timeout: float = DEFAULT_STALL_TIMEOUT_S  # no trial reported for this long: say why, stop, exit 1

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
        if self.pool_size < 2:
            raise ConfigError(f"--pool-size {self.pool_size}: must be at least 2 (a pool of one ranks every row first)")
        if not self.stall_timeout > 0:
            raise ConfigError(f"--stall-timeout {self.stall_timeout:g}: must be positive (seconds)")
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
    stalled: str = ""  # why the grid stopped waiting (--stall-timeout), '' when it did not


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
    data = open_prepared(data_url)
    records: dict[str, dict] = {}
    pending = []
    for spec in specs:
        finished = _finished_record(config.output, spec, data_url, config.pool_size)
        problem = group_problem(data, spec.dataset)
        if finished:
            records[spec.name] = finished
        elif problem:
            records[spec.name] = TrialResult(spec, "skipped", problem).record()
        else:
            pending.append(spec)
    log(f"trials: {len(specs)} ({len(records) - _count(records, 'skipped')} finished earlier, "
        f"{_count(records, 'skipped')} skipped, {len(pending)} to run)")
    stalled = ""
    if pending:
        run_pending = _run_on_ray if config.ray else _run_in_process
        outcome, stalled = run_pending(pending, data_url, config, log)
        records.update(outcome)
    # 4. rank, copy the winner, plot: always, whatever became of the trials
    ordered = [records[spec.name] for spec in specs]
    ranked = rank(ordered)
    random_weights = pairs_from_random_models(config.input)
    _write_leaderboard(config.output, ranked, config.pool_size, random_weights)
    best = next((r["trial"] for r in ranked if r["status"] == "ok"), None)
    if best:
        _copy_trial(config.output, best, storage.join(config.output, "best"))
    _write_plots(config.output, ranked, config.pool_size)
    return GridSummary(records=ranked, best=best, stats=stats, random_weights=random_weights, stalled=stalled)


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


def _finished_record(output: str, spec: TrialSpec, data_url: str, pool_size: int) -> dict | None:
    url = storage.join(output, "trials", spec.name, "metrics.json")
    if not storage.exists(url):
        return None
    try:
        record = json.loads(storage.read_text(url))
    except ValueError:  # cut short (by hand, or a full disk before atomic writes): train again
        return None
    # Same name but other settings (epochs, lr...), other input rows, another split or pool size: train
    # again, so that every leaderboard row was scored on the same test split in the same pools.
    if (record.get("spec") != asdict(spec) or record.get("data") != data_key(data_url)
            or record.get("pool_size") != pool_size):
        return None
    return record


def _tune_trainable(trial_config: dict) -> None:
    """Ray Tune's function trainable: imports the torch side in the trial's own process."""
    load(TUNE_TRIAL)(trial_config)


def _run_on_ray(specs: list[TrialSpec], data_url: str, config: TrainConfig, log) -> tuple[dict[str, dict], str]:
    """Run the trials on Ray Tune; returns a record for every one (failed ones with their reason) and the stall."""
    from ray import tune

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
    param_space = {"spec": tune.grid_search([asdict(s) for s in specs]), "data_url": data_url,
                   "output": config.output, "cpus": config.cpus_per_trial, "gpus": gpus,
                   "pool_size": config.pool_size}
    started = time.perf_counter()
    # Tune's own progress tables would bury ours; its experiment state is scratch (results live in --output).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if not verbose():  # i2a says each failure, retry and stall in one line; Tune's tracebacks stay in --verbose
        os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
        logging.getLogger("ray.tune.tune").setLevel(logging.CRITICAL)  # "Trials did not complete: [...]"
    scratch = tempfile.mkdtemp(prefix="i2a-tune-")
    progress = Progress(len(specs), "train", "trials")
    watch = GridWatch(config.stall_timeout, {"CPU": config.cpus_per_trial, "GPU": gpus}, progress, log)
    callback, stopper = _tune_hooks(watch)
    tuner = tune.Tuner(
        tune.with_resources(_tune_trainable, {"cpu": config.cpus_per_trial, "gpu": gpus}),
        param_space=param_space,
        # Reusing actors saves each trial a fresh process and its torch import.
        tune_config=tune.TuneConfig(num_samples=1, reuse_actors=True),
        run_config=tune.RunConfig(name="i2a-train", verbose=2 if verbose() else 0, storage_path=scratch,
                                  callbacks=[callback], stop=stopper,
                                  failure_config=tune.FailureConfig(max_failures=TRIAL_RETRIES)),
    )
    stopped = ""
    try:
        try:
            tuner.fit()
        except Exception as e:  # Tune itself gave up: keep what finished, mark the rest failed, rank anyway
            stopped = f"Tune stopped: {last_line(e)}"
            log(f"  {stopped}")
        # 5. a record per trial: its metrics.json, or failed with the error read when it happened (Tune keeps
        # errors in the scratch folder, which goes next)
        records = {}
        for spec in specs:
            record = _finished_record(config.output, spec, data_url, config.pool_size)
            if record is None:
                reason = (watch.errors.get(spec.name) or (f"stalled: {watch.stalled}" if watch.stalled else "")
                          or stopped or "did not finish (no metrics.json was written)")
                record = TrialResult(spec, "failed", reason).record()
                log(f"  {spec.name}: failed ({reason})")
            records[spec.name] = record
    finally:
        progress.close()
        shutil.rmtree(scratch, ignore_errors=True)
    log(f"ran {len(specs)} trials on Ray in {time.perf_counter() - started:.1f}s")
    return records, watch.stalled


class GridWatch:
    """What the driver learns while Tune runs: each failure's error as it happens, retries, and stalls.

    A stall is `stall_timeout` seconds in which no trial started, reported an epoch, finished, failed or was
    retried while trials remain; the grid then stops, saying in one line what it waits for.
    """

    def __init__(self, stall_timeout: float, demand: dict[str, float], progress=None, log=print,
                 clock=time.monotonic):
        self.stall_timeout, self.demand, self.progress = stall_timeout, demand, progress
        self.log, self.clock = log, clock
        self.errors: dict[str, str] = {}  # trial name -> its last error, one line
        self.stalled = ""
        self.last_event = clock()

    def alive(self) -> None:
        self.last_event = self.clock()

    def finished(self, name: str, error: str = "") -> None:
        if error:
            self.errors[name] = error
        if self.progress is not None:
            self.progress.update(1)
        self.alive()

    def retrying(self, name: str, error: str, failures: int) -> None:
        self.log(f"  {name}: {error}; retrying ({failures} of {TRIAL_RETRIES} retries)")
        self.alive()

    def should_stop(self, statuses: list[str]) -> bool:
        """Whether the grid has stalled (said once, in one line); `statuses` are the trials' Tune statuses."""
        if self.stalled:
            return True
        if self.clock() - self.last_event < self.stall_timeout:
            return False
        waiting, running = statuses.count("PENDING") + statuses.count("PAUSED"), statuses.count("RUNNING")
        what = waiting_for(self.demand) if waiting else ""
        if not what:
            what = (f"waiting for {running} running trial(s) that report nothing (is an epoch longer than "
                    f"--stall-timeout?)" if running else "waiting for Tune to start the trials")
        self.stalled = f"no trial reported for {self.stall_timeout:g} s with {waiting + running} left; {what}"
        self.log(f"stalled: {self.stalled}")
        return True


def _tune_hooks(watch: GridWatch):
    """A Tune callback and stopper (both run in this driver's Tune loop) that feed and consult `watch`."""
    from ray import tune

    def name(trial) -> str:
        return TrialSpec(**trial.config["spec"]).name

    class Hooks(tune.Callback):
        def __init__(self):
            self.trials = []

        def on_step_begin(self, iteration, trials, **info):
            self.trials = trials

        def on_trial_start(self, iteration, trials, trial, **info):
            watch.alive()

        def on_trial_result(self, iteration, trials, trial, result, **info):
            watch.alive()

        def on_trial_complete(self, iteration, trials, trial, **info):
            watch.finished(name(trial))

        def on_trial_recover(self, iteration, trials, trial, **info):
            watch.retrying(name(trial), _trial_error(trial), trial.run_metadata.num_failures)

        def on_trial_error(self, iteration, trials, trial, **info):
            watch.finished(name(trial), _trial_error(trial))

    hooks = Hooks()

    class StallStopper(tune.Stopper):
        def __call__(self, trial_id, result) -> bool:
            return False

        def stop_all(self) -> bool:
            return watch.should_stop([trial.status for trial in hooks.trials])

        def __reduce__(self):
            # Tune pickles its stopper into the experiment state (scratch here, never restored); the watch
            # (a console, a clock) is this driver's alone, so none of it goes in.
            return (dict, ())

    return hooks, StallStopper()


def _trial_error(trial) -> str:
    """A failed Tune trial's error, one line, read now: from the file Tune has just appended it to on this node,
    else from the trial's storage folder (where Tune would load it lazily, after the scratch folder is gone)."""
    try:
        if trial.error_file and os.path.exists(trial.error_file):
            with open(trial.error_file, encoding="utf-8", errors="replace") as f:
                error = f.read()
        else:
            error = trial.get_error()
    except (OSError, ValueError, AttributeError) as e:
        return f"failed (its error could not be read: {type(e).__name__})"
    return last_line(error) if error else "failed (no error recorded)"


def last_line(error) -> str:
    """The last non-empty line of an error (where a traceback names what went wrong), at most 300 characters."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:300]


def _run_in_process(specs: list[TrialSpec], data_url: str, config: TrainConfig, log) -> tuple[dict[str, dict], str]:
    started = time.perf_counter()
    with Progress(len(specs), "train", "trials") as progress:
        records = load(IN_PROCESS)([asdict(s) for s in specs], data_url, config.output, config.gpus_per_trial,
                                   config.pool_size, on_done=lambda record: progress.update(1))
    log(f"ran {len(specs)} trials in this process in {time.perf_counter() - started:.1f}s")
    return records, ""


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
        "best_val_loss": metrics.get("best_val_loss"), "pool_size": overall.get("pool_size"),
        "epochs_run": record["epochs_run"], "train_rows": record["train_rows"], "seconds": record["seconds"],
        "reason": record["reason"],
    }


def rank(records: list[dict]) -> list[dict]:
    """Finished trials by image-row R@1, then mean cosine (all rows); the rest after them, unranked."""
    def key(record):
        metrics = record.get("metrics") or {}
        return (-(metrics.get("image", {}).get("r1") or -1.0), -(metrics.get("all", {}).get("cosine") or -1.0))

    ok = sorted((r for r in records if r["status"] == "ok"), key=key)
    rest = [r for r in records if r["status"] != "ok"]
    return ok + rest


def pool_note(pool_size: int) -> str:
    """The leaderboard's sentence on what R@k and median rank mean."""
    return (f"R@k and median rank: each test row's own CLAP vector ranked among a pool of {pool_size:,} test rows "
            f"(`--pool-size`; pools are fixed by a hash of each row's id, as in the 1k retrieval protocols, so the "
            f"figures mean the same at any dataset size; image rows are pooled among image rows; the `pool_size` "
            f"column is smaller only when the test split has fewer rows than one pool). Cosine and MSE cover every "
            f"test row.")


def _write_leaderboard(output: str, ranked: list[dict], pool_size: int, random_weights: bool = False) -> None:
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
             "pool_size", "epochs_run", "reason")
    lines = ["# Translator leaderboard", "", *([RANDOM_WEIGHTS_NOTE, ""] if random_weights else []),
             "Ranked by image-row R@1, then mean cosine, on the shared test split (split by hash of id). "
             "`shift_effect_*` is the change on image rows when the modality-gap mean shift is applied.", "",
             pool_note(pool_size), "",
             "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in shown) + " |" for row in rows]
    storage.write_text_atomic(storage.join(output, "leaderboard.md"), "\n".join(lines) + "\n")


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) >= 1 else f"{value:.3f}"
    return str(value).replace("|", "/").replace("\n", " ")


def _copy_trial(output: str, trial: str, target: str) -> None:
    for name in TRIAL_FILES:
        storage.write_bytes_atomic(storage.join(target, name),
                                   storage.read_bytes(storage.join(output, "trials", trial, name)))


def _write_plots(output: str, ranked: list[dict], pool_size: int) -> None:
    finished = [r for r in ranked if r["status"] == "ok"]
    curves = [r for r in finished if r.get("history")]
    if curves:
        storage.write_bytes_atomic(storage.join(output, "plots", "loss_curves.png"), loss_plot(curves))
    if finished:
        storage.write_bytes_atomic(storage.join(output, "plots", "metrics.png"), metrics_plot(finished, pool_size))
