"""Sonification as a job: images (or texts) -> WAVs, a manifest and a gallery, resumable; and the Python API.

`i2a sonify-job` (and `python jobs/sonify.py`) and `i2a sonify` are this one job: the second runs in this process
and adds a JSON sidecar beside each WAV. Steps: check everything -> take the output's lease -> plan (list the
inputs in windows, drop what the manifest already holds) -> run the stages on the runner -> report (manifest
compaction, errors.csv, gallery, summary).
"""

from __future__ import annotations

import io
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Callable, NamedTuple

import numpy as np
import pyarrow as pa

from i2a_core import checks, runner
from i2a_core.errors import ConfigError, Stalled, one_line
from i2a_core.io import gallery, images, lease, listing, manifest, storage
from i2a_core.raycluster import require_shared_output
from i2a_core.runner import STALL_TIMEOUT_S, Chain, Stage
from i2a_core.specs import (
    DEFAULT_PRESET,
    RANDOM_WEIGHTS_NOTE,
    GenerationSettings,
    ImageLimits,
    ModelSpec,
    generation_settings,
    resolve_models,
)
from i2a_core.stages.clips import text_key

LOCAL_MAX_INPUTS = 8  # `--runner auto` runs this many inputs or fewer in-process, without starting Ray
SHOWN_FAILURES = 5  # failed inputs named on the console; errors.csv has them all
IMAGES, TEXTS, WRITE = "i2a_core.stages.images", "i2a_core.stages.sonify", "i2a_core.stages.clips"


@dataclass(frozen=True)
class SonifyJob:
    inputs: tuple[str, ...]  # folders, s3:// prefixes, .txt/.csv/.parquet lists, files or URLs
    output: str
    models: ModelSpec
    settings: GenerationSettings
    texts: tuple[str, ...] = ()  # plain AudioLDM prompts, sonified beside the images
    text_images: tuple[str, ...] = ()  # per text, the image it describes (recorded for eval's CS), or none
    limits: ImageLimits = ImageLimits()
    runner: str = "auto"  # auto | local | ray
    gpus_per_actor: float | None = None  # None: 1 when the cluster has GPUs, else 0
    actors: int | None = None  # AudioLDM actors; None: one per GPU share
    device: str | None = None  # in-process runs only; Ray actors use the devices Ray gives them
    page_size: int = 100
    take_over_lease: bool = False  # take the output from a job that looks alive (see io/lease.py)
    sidecars: bool = False  # a JSON record beside each WAV (`i2a sonify`)
    missing_roots_are_errors: bool = True  # False: a missing path is that input's error row (`i2a sonify`)
    stall_timeout: float = STALL_TIMEOUT_S
    shown_failures: int = SHOWN_FAILURES  # failed inputs named on the console
    rows_per_part: int = manifest.PART_ROWS  # manifest rows per committed part ...
    commit_every: float = manifest.PART_EVERY_S  # ... or what finished within this many seconds


@dataclass
class JobSummary:
    listed: int = 0
    skipped: int = 0  # already in the manifest from an earlier run
    ok: int = 0
    error: int = 0
    error_kinds: Counter = field(default_factory=Counter)
    audio_s: float = 0.0
    wall_s: float = 0.0
    runner: str = "local"
    failed: int = 0  # failed inputs in the whole manifest (errors.csv)
    resubmitted: int = 0

    def line(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.error_kinds.items()))
        rate = self.ok / self.wall_s if self.wall_s else 0.0
        realtime = self.audio_s / self.wall_s if self.wall_s else 0.0
        return (f"{self.ok} ok, {self.error} error{f' ({kinds})' if kinds else ''}, {self.skipped} already done "
                f"of {self.listed} inputs; {self.wall_s:.1f} s on {self.runner}: {rate:.2f} clips/s, "
                f"{realtime:.2f} audio s per wall s")

    def commit(self, batch: dict) -> None:
        """Count a committed batch (the runner's on_commit)."""
        for status, kind, duration in zip(batch["status"], batch["error_kind"], batch["duration"]):
            if status == "ok":
                self.ok += 1
                self.audio_s += float(duration)
            else:
                self.error += 1
                self.error_kinds[str(kind)] += 1


# --- 1. check everything before the lease and before any model loads ---


def check(job: SonifyJob) -> None:
    """Everything a job can check before it touches its output: inputs, the output, the models, the settings."""
    if not job.inputs and not job.texts:
        raise ConfigError("nothing to sonify: give image files, folders, URLs or lists, or --text")
    if job.page_size < 1:
        raise ConfigError(f"--page-size {job.page_size}: must be at least 1")
    if job.gpus_per_actor is not None and job.gpus_per_actor < 0:
        raise ConfigError(f"--gpus-per-actor {job.gpus_per_actor:g}: must not be negative")
    if job.actors is not None and job.actors < 1:
        raise ConfigError(f"--actors {job.actors}: must be at least 1")
    if job.rows_per_part < 1 or not job.commit_every > 0:
        raise ConfigError("--rows-per-part must be at least 1 and --commit-every positive")
    if not job.stall_timeout > 0:
        raise ConfigError(f"--stall-timeout {job.stall_timeout:g}: must be a positive number of seconds")
    if job.missing_roots_are_errors:
        for root in job.inputs:
            if not images.is_url(root) and not storage.exists(root):
                raise FileNotFoundError(f"{root}: no such file, folder or prefix")
    storage.check_output(job.output)
    checks.check_limits(job.limits)
    checks.check_sonify(job.models, job.settings, images=bool(job.inputs), device=job.device)


# --- 2. plan: the inputs not done yet, listed in windows, spilled so that the driver holds none of them ---


def _image_windows(job: SonifyJob):
    """Image inputs as windows (input, relative, key, display, error, error_kind)."""
    roots = list(job.inputs)
    missing = [] if job.missing_roots_are_errors else [r for r in roots if not images.is_url(r)
                                                       and not storage.exists(r)]
    if len(missing) < len(roots):
        yield from listing.list_windows([r for r in roots if r not in missing])
    if missing:
        yield pa.table({"input": missing, "relative": missing, "key": [f"missing-{i}" for i in range(len(missing))],
                        "display": [images.display_name(m) for m in missing],
                        "error": [f"{images.display_name(m)}: no such file, folder or prefix" for m in missing],
                        "error_kind": ["missing"] * len(missing)})


def _text_windows(job: SonifyJob):
    described = dict(zip(job.texts, job.text_images))
    texts = list(dict.fromkeys(job.texts))
    if texts:
        yield pa.table({"input": texts, "relative": texts, "key": [text_key(t) for t in texts], "display": texts,
                        "error": [""] * len(texts), "error_kind": [""] * len(texts),
                        "image": [images.display_name(described[t]) if t in described else None for t in texts]})


@dataclass
class Plans:
    images: runner.Plan
    texts: runner.Plan
    listed: int


def plan(job: SonifyJob, directory: str) -> Plans:
    """Every listed input not finished by an earlier run, spilled to Parquet windows under `directory`."""
    done = manifest.done_inputs(job.output)
    listed = 0

    def todo(windows):
        nonlocal listed
        for window in windows:
            listed += window.num_rows
            yield window.filter(pa.array(~done.contains(window.column("display"))))

    image_plan = runner.spill(todo(_image_windows(job)), storage.join(directory, "images"))
    text_plan = runner.spill(todo(_text_windows(job)), storage.join(directory, "texts"))
    return Plans(image_plan, text_plan, listed)


# --- 3. stages ---


def image_chain(job: SonifyJob, strategy: str, cpus: float = 1.0, gpus: float = 0.0) -> Chain:
    models, settings, device = job.models, job.settings, job.device if strategy == "local" else None
    gpus_per_actor = job.gpus_per_actor if job.gpus_per_actor is not None else (1.0 if gpus else 0.0)
    generators = job.actors or (max(1, int(gpus // gpus_per_actor)) if gpus_per_actor else 1)
    return Chain(key="display", stages=(
        Stage(f"{IMAGES}:read_images", {"limits": job.limits, "batch_size": settings.batch_size}, streaming=True),
        Stage(f"{IMAGES}:DecodeImages", {"clip": models.clip, "limits": job.limits}, batch_size=16,
              actors=max(1, int(cpus // 2)), num_cpus=0.5),
        Stage(f"{TEXTS}:EncodeImages", {"models": models, "device": device}, batch_size=16,
              actors=max(1, int(cpus // 8)), num_cpus=0.5),
        Stage(f"{TEXTS}:GenerateAudio", {"audioldm": models.audioldm, "settings": settings, "device": device},
              batch_size=settings.batch_size, actors=generators, num_cpus=0.5, num_gpus=gpus_per_actor),
        Stage(f"{WRITE}:WriteClips", {"output": job.output, "models": models, "settings": settings,
                                      "sidecars": job.sidecars}, batch_size=settings.batch_size, actors=1),
    ))


def text_chain(job: SonifyJob) -> Chain:
    models, settings = job.models, job.settings
    return Chain(key="display", stages=(
        Stage(f"{TEXTS}:EncodeTexts", {"audioldm": models.audioldm, "device": job.device}),
        Stage(f"{TEXTS}:GenerateAudio", {"audioldm": models.audioldm, "settings": settings, "device": job.device}),
        Stage(f"{WRITE}:WriteClips", {"output": job.output, "models": models, "settings": settings,
                                      "modality": "text", "sidecars": job.sidecars}),
    ))


# --- the whole job ---


def run(job: SonifyJob, log: Callable[[str], None] = print) -> JobSummary:
    """The whole job under the output's lease. Ctrl-C and SIGTERM stop it within seconds: every committed
    batch is kept and KeyboardInterrupt (Terminated for SIGTERM) is raised; the next run does the rest."""
    check(job)
    storage.makedirs(job.output)
    with runner.interrupts(), lease.Lease(job.output, take_over=job.take_over_lease) as held:
        _remove_stale_temp_files(job.output, before=held.acquired)
        return _run_leased(job, held, log)


def _run_leased(job: SonifyJob, held: lease.Lease, log) -> JobSummary:
    with runner.plan_directory(job.output) as directory:
        # 1. Plan: what an earlier run did not finish.
        plans = plan(job, directory)  # an unreadable list file stops the job here, before job.json exists
        storage.claim_output(job.output, {"job": "sonify", **job.models.describe(), **job.settings.describe()})
        todo = plans.images.total + plans.texts.total
        strategy = runner.choose_strategy(job.runner, plans.images.total, job.gpus_per_actor,
                                          local_max=LOCAL_MAX_INPUTS) if plans.images.total else "local"
        summary = JobSummary(listed=plans.listed, skipped=plans.listed - todo,
                             runner="local" if strategy == "local" else "ray")
        log(f"{plans.listed} inputs, {summary.skipped} already done, {todo} to sonify ({runner.DESCRIBE[strategy]})")
        # 2. Run the stages; every batch is committed (its manifest rows written) as it finishes.
        if strategy != "local":
            require_shared_output(job.output)
        resources = runner.cluster_resources() if strategy != "local" else {}
        writer = manifest.PartWriter(manifest.directory(job.output), manifest.SCHEMA,
                                     rows_per_part=job.rows_per_part, every_s=job.commit_every)
        stopped: BaseException | None = None
        try:
            for part, chain, part_strategy in ((plans.images, image_chain(job, strategy, resources.get("CPU", 1.0),
                                                                          resources.get("GPU", 0.0)), strategy),
                                               (plans.texts, text_chain(job), "local")):
                if part.total:
                    report = runner.run(part, chain, writer, strategy=part_strategy, what="sonify", unit="clips",
                                        stall_timeout=job.stall_timeout, on_commit=summary.commit, lease=held,
                                        log=log)
                    summary.wall_s += report.seconds
                    summary.resubmitted += report.resubmitted
        except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: every finished batch is committed; keep them
            log(f"stopped: {summary.ok + summary.error} inputs committed this run; the next run does the rest and "
                f"brings the gallery and errors.csv up to date")
            raise stop
        except Stalled as stall:  # reported below, with everything committed so far
            stopped = stall
            log(f"stalled: {stall}")
    # 3. Report: one compacted manifest, errors.csv, the gallery, the summary.
    _report(job, summary, log)
    if stopped is not None:
        raise stopped
    return summary


def _report(job: SonifyJob, summary: JobSummary, log) -> None:
    manifest.compact(job.output)
    errors_path, summary.failed, first = manifest.write_errors(job.output, first=job.shown_failures)
    gallery.update_gallery(job.output, manifest.ok_rows(job.output), manifest.failed_rows(job.output),
                           info=_gallery_info(job, summary.listed), page_size=job.page_size)
    log(summary.line())
    for row in first[:job.shown_failures]:
        log("  failed: " + one_line(row["error"] if row["input"] in row["error"] else f"{row['input']}: "
                                                                                          f"{row['error']}"))
    if summary.failed:
        more = summary.failed - job.shown_failures
        log(f"  {'and ' + str(more) + ' more; ' if more > 0 else ''}every failed input with its reason: {errors_path}")
    log(f"manifest: {manifest.directory(job.output)}  gallery: {storage.join(job.output, 'index.html')}")
    if summary.resubmitted:
        log(f"note: {summary.resubmitted} inputs were redone on other workers after their worker was lost")
    if job.models.random_weights:
        log(RANDOM_WEIGHTS_NOTE)


def _gallery_info(job: SonifyJob, listed: int) -> dict:
    """The gallery header: which models and settings made these clips."""
    settings = job.settings
    return {"models": job.models.describe(), "translator": job.models.translator,
            "settings": {"scheduler": settings.scheduler, "steps": settings.steps, "guidance": settings.guidance,
                         "duration": f"{settings.duration:g} s", "seed": settings.seed},
            "inputs": listed, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "random_weights": job.models.random_weights}


_TEMP_FILE = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")


def _remove_stale_temp_files(output: str, before: float) -> None:
    """Temp parts of atomic writes cut short by a kill, in the folders a reader lists (manifest, gallery).

    Only files last written before this job took its lease go: a job that lost its lease but still runs
    may be writing the newer ones. Object stores have none (a PUT is all or nothing); a clip's stray temp
    file elsewhere is harmless and costs a walk of millions of files to find.
    """
    if storage.is_remote(output):
        return
    for folder in (output, manifest.directory(output), os.path.join(output, gallery.PAGES_DIR)):
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            path = os.path.join(folder, name)
            try:
                if _TEMP_FILE.match(name) and os.path.getmtime(path) < before:
                    os.remove(path)
            except FileNotFoundError:  # its writer renamed it meanwhile
                pass


# --- the Python API ---


class Clip(NamedTuple):
    waveform: np.ndarray  # mono float32
    sample_rate: int
    info: dict  # input, seed, settings, and the translator's explanation when it has one


class Sonifier:
    """Images to sound in this process, for notebooks: the job's own stages, loaded once.

        sonifier = Sonifier.from_pretrained(translator="runs/grid/best")
        clips = sonifier(["cat.jpg", "https://example.org/dog.png", pil_image])
        clips[0].waveform, clips[0].sample_rate, clips[0].info
    """

    def __init__(self, models: ModelSpec, settings: GenerationSettings, limits: ImageLimits = ImageLimits(),
                 device: str | None = None):
        checks.check_sonify(models, settings)
        self.models, self.settings, self.limits = models, settings, limits
        job = SonifyJob(inputs=("",), output="", models=models, settings=settings, limits=limits, device=device)
        # Read, decode, CLIP + translator, AudioLDM: the job's stages without the write stage.
        self.chain = runner.BuiltChain(Chain(image_chain(job, "local").stages[1:4]))

    @classmethod
    def from_pretrained(cls, translator: str | None = None, clip: str | None = None,
                        clip_pretrained: str | None = None, audioldm: str | None = None,
                        preset: str = DEFAULT_PRESET, device: str | None = None, **settings) -> "Sonifier":
        """The preset's models with any of them replaced; `settings` override generation (steps, duration...)."""
        models = resolve_models(preset, clip, clip_pretrained, audioldm, translator)
        return cls(models, generation_settings(preset, **settings), device=device)

    def __call__(self, images_or_paths: list) -> list[Clip]:
        """One clip per image: a path, URL, s3:// object, bytes or PIL image; a bad one raises naming it."""
        rows = [self._item(i, image) for i, image in enumerate(images_or_paths)]
        out = []
        for start in range(0, len(rows), self.settings.batch_size):
            batch = {name: np.array([row[name] for row in rows[start:start + self.settings.batch_size]],
                                    dtype=object) for name in rows[0]}
            made = runner._concat(list(self.chain.run([batch])))
            for i in range(len(made["input"])):
                if made["error"][i]:
                    raise ConfigError(made["error"][i])
                explanation = json.loads(made["explanation"][i]) if made["explanation"][i] else {}
                out.append(Clip(made["waveform"][i], int(made["sample_rate"][i]),
                                {"input": made["display"][i], "seed": int(made["seed"][i]),
                                 **self.settings.describe(), **explanation}))
        return out

    def _item(self, i: int, image) -> dict:
        if isinstance(image, (str, os.PathLike)):
            name = str(image)
            data = images.read_image_bytes(name, self.limits)
        elif isinstance(image, bytes):
            name, data = f"image {i}", image
        else:  # a PIL image
            name, buffer = f"image {i}", io.BytesIO()
            image.save(buffer, format="PNG")
            data = buffer.getvalue()
        return {"input": name, "display": images.display_name(name), "relative": os.path.basename(name) or name,
                "key": str(i), "error": "", "error_kind": "", "data": data}


def sonify(inputs: list[str], output: str, translator: str | None = None, preset: str = DEFAULT_PRESET,
           **options) -> JobSummary:
    """The bulk job from Python: `sonify(["photos/"], "out/", translator="runs/grid/best")`."""
    models = resolve_models(preset, translator=translator)
    settings = generation_settings(preset, **{k: options.pop(k) for k in ("duration", "steps", "guidance", "seed",
                                                                            "batch_size", "scheduler") if k in options})
    return run(replace(SonifyJob(inputs=tuple(inputs), output=output, models=models, settings=settings), **options))
