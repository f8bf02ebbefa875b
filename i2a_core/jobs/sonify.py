"""Bulk sonification: list -> read -> decode -> CLIP+translator -> AudioLDM -> write, in-process or as Ray stages."""

from __future__ import annotations

import collections
import io
import json
import os
import re
import signal
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterator

import numpy as np
import soundfile

from i2a_core import checks
from i2a_core.errors import Terminated, TranslatorError
from i2a_core.io import gallery, images, lease, listing, manifest, storage
from i2a_core.jobs.clips import seed_for, wav_bytes
from i2a_core.models.clip import ClipSpec
from i2a_core.models.devices import match_torch_threads_to_ray
from i2a_core.progress import Progress
from i2a_core.quiet import quiet_libraries
from i2a_core.raycluster import require_shared_output
from i2a_core.specs import RANDOM_WEIGHTS_NOTE, SOUNDS_LIKE, GenerationSettings, ImageLimits, ModelSpec

READ_BATCH = 256  # inputs per read task: its reads overlap, so a dead host costs one timeout per task at most
READ_THREADS = 64  # reads are I/O bound: one task keeps this many downloads in flight
DECODE_BATCH = 16
ENCODE_BATCH = 64
LOCAL_MAX_INPUTS = 8  # `--runner auto` runs this many inputs or fewer in-process, without starting Ray
# Logical CPUs per stage: small enough that every stage gets an actor on a 2-CPU machine.
TASK_CPUS = 0.25
ACTOR_CPUS = 0.5


Batch = dict  # column name -> numpy array, Ray Data's "numpy" batch format


@dataclass(frozen=True)
class SonifyJob:
    inputs: tuple[str, ...]  # folders, s3:// prefixes, .txt/.csv/.parquet lists, files or URLs
    output: str
    models: ModelSpec
    settings: GenerationSettings
    limits: ImageLimits = ImageLimits()
    runner: str = "auto"  # auto | local | ray
    gpus_per_actor: float | None = None  # None: 1 when the cluster has GPUs, else 0
    actors: int | None = None  # AudioLDM actors; None: one per GPU share, or 1 without GPUs
    device: str | None = None  # in-process runs only; Ray actors use the GPUs Ray gives them
    page_size: int = 100
    take_over_lease: bool = False  # take the output from a job that looks alive (see lease.py)


@dataclass
class JobSummary:
    listed: int
    skipped: int  # already in the manifest from an earlier run
    ok: int = 0
    error: int = 0
    error_kinds: dict = field(default_factory=dict)
    audio_s: float = 0.0
    wall_s: float = 0.0
    runner: str = "local"
    failed: list = field(default_factory=list)  # the first failed inputs {input, error_kind, error}; errors.csv: all

    def line(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.error_kinds.items()))
        rate = self.ok / self.wall_s if self.wall_s else 0.0
        realtime = self.audio_s / self.wall_s if self.wall_s else 0.0
        return (f"{self.ok} ok, {self.error} error{f' ({kinds})' if kinds else ''}, {self.skipped} already done "
                f"of {self.listed} inputs; {self.wall_s:.1f} s on {self.runner}: {rate:.2f} clips/s, "
                f"{realtime:.2f} audio s per wall s")


# --- stages: each takes and returns a numpy batch; the same functions run in-process and under Ray ---


def _strings(batch: Batch, name: str) -> list[str]:
    return [str(v) for v in batch[name].tolist()]


def _objects(values: list) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _read_one(source: str, limits: ImageLimits) -> tuple[bytes, str, str, float]:
    started = time.perf_counter()
    try:
        return images.read_image_bytes(source, limits), "", "", time.perf_counter() - started
    except images.ImageError as e:  # missing, unreadable, 404...; other errors (no credentials) stop the job
        return b"", str(e), e.kind, time.perf_counter() - started


def read_batch(batch: Batch, limits: ImageLimits, chunk: int = DECODE_BATCH) -> Iterator[Batch]:
    """I/O stage: the raw bytes of every input, or why they could not be read, in chunks as reads finish.

    READ_THREADS reads stay in flight: a host that never answers holds one thread until its timeout
    while the others go on, and finished inputs move on without waiting for it.
    """
    sources = _strings(batch, "input")
    submitted, pending, finished = 0, {}, []
    pool = ThreadPoolExecutor(READ_THREADS)
    try:
        while pending or submitted < len(sources):
            while len(pending) < READ_THREADS and submitted < len(sources):
                pending[pool.submit(_read_one, sources[submitted], limits)] = submitted
                submitted += 1
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            finished.extend((pending.pop(future), future.result()) for future in done)
            last = not pending and submitted == len(sources)
            while len(finished) >= chunk or (finished and last):
                ready, finished = finished[:chunk], finished[chunk:]
                yield _read_rows(batch, ready)
    finally:  # a job stopped early does not wait for the reads still in flight
        pool.shutdown(wait=False, cancel_futures=True)


def _read_rows(batch: Batch, ready: list[tuple[int, tuple]]) -> Batch:
    rows = [i for i, _ in ready]
    results = [result for _, result in ready]
    return {**{name: values[rows] for name, values in batch.items()},
            "data": _objects([r[0] for r in results]), "error": np.array([r[1] for r in results]),
            "error_kind": np.array([r[2] for r in results]), "read_s": np.array([r[3] for r in results])}


class DecodeImages:
    """CPU stage: bytes -> checked RGB image -> CLIP's own preprocessing, plus a gallery thumbnail."""

    def __init__(self, clip: ClipSpec, limits: ImageLimits, preprocess=None):
        from PIL import Image

        from i2a_core.models.clip import image_transform

        # In-process runs hand over the encoder's own transform; elsewhere it is built from the model config
        # alone, never from a copy of the model.
        self.preprocess = preprocess or image_transform(clip)
        self.limits = limits
        self.blank = np.zeros_like(self.preprocess(Image.new("RGB", (8, 8))).numpy())

    def __call__(self, batch: Batch) -> Batch:
        errors, kinds = _strings(batch, "error"), _strings(batch, "error_kind")
        pixels, thumbnails, seconds, warnings = [], [], [], []
        for i, (source, data) in enumerate(zip(_strings(batch, "input"), batch["data"])):
            started = time.perf_counter()
            pixel, thumbnail, warning = self.blank, b"", ""
            if not errors[i]:
                try:
                    image, warning = images.decode_checked(bytes(data), source, self.limits,
                                                           check_extension=not images.is_url(source))
                    pixel, thumbnail = self.preprocess(image).numpy(), gallery.thumbnail_jpeg(image)
                except images.ImageError as e:
                    errors[i], kinds[i] = str(e), e.kind
                except Exception as e:  # PIL can fail late in odd ways; that is this image's problem only
                    errors[i] = f"{images.display_name(source)}: cannot decode ({type(e).__name__})"
                    kinds[i] = "corrupt"
            pixels.append(pixel)
            thumbnails.append(thumbnail)
            warnings.append(warning)
            seconds.append(time.perf_counter() - started)
        rest = {k: v for k, v in batch.items() if k != "data"}
        return {**rest, "pixels": np.stack(pixels), "thumbnail": _objects(thumbnails), "error": np.array(errors),
                "error_kind": np.array(kinds), "decode_s": np.array(seconds), "warning": np.array(warnings)}


class EncodeImages:
    """Model stage: CLIP image vectors -> translator -> CLAP vectors, with the translator's explanations."""

    def __init__(self, models: ModelSpec, device: str | None = None):
        from i2a_core.models.clip import ClipEncoder
        from i2a_core.models.translator import load_translator

        quiet_libraries()
        match_torch_threads_to_ray()
        if not models.translator:
            raise TranslatorError("images need a translator: pass --translator DIR|URL "
                                  "(train one with `i2a train`), or use --preset tiny")
        self.clip = ClipEncoder(models.clip, device=device)
        self.translator = load_translator(models.translator)
        if self.translator.config.in_dim != self.clip.dim:
            raise TranslatorError(f"{models.translator}: maps {self.translator.config.in_dim}-d CLIP vectors, "
                                  f"but {models.clip.model} gives {self.clip.dim}-d ones")

    def __call__(self, batch: Batch) -> Batch:
        ok = [i for i, error in enumerate(_strings(batch, "error")) if not error]
        n = len(batch["input"])
        clap = np.zeros((n, self.translator.config.out_dim), np.float32)
        explanations = [""] * n
        seconds = 0.0
        if ok:
            started = time.perf_counter()
            clip_vectors = self.clip.encode_pixels(np.asarray(batch["pixels"])[ok])
            clap[ok] = self.translator.translate(clip_vectors)
            for i, explanation in zip(ok, self.translator.explain(clip_vectors) or []):
                explanations[i] = json.dumps(explanation, default=str) if explanation else ""
            seconds = (time.perf_counter() - started) / len(ok)
        rest = {k: v for k, v in batch.items() if k != "pixels"}
        return {**rest, "clap": clap, "explanation": np.array(explanations, dtype=object),
                "encode_s": np.full(n, seconds)}


class GenerateAudio:
    """GPU stage: batched AudioLDM generation (fp16 on GPU), one seed per input key, WAV bytes out."""

    def __init__(self, audioldm: str, settings: GenerationSettings, device: str | None = None):
        from i2a_core.models.audioldm import AudioLDMGenerator

        quiet_libraries()  # an actor is a fresh process: keep loading bars off the job's log
        match_torch_threads_to_ray()
        self.generator = AudioLDMGenerator(audioldm, device=device)
        self.generator.check_duration(settings.duration)
        if settings.compile:
            self.generator.compile()
        self.settings = settings

    def __call__(self, batch: Batch) -> Batch:
        ok = [i for i, error in enumerate(_strings(batch, "error")) if not error]
        n = len(batch["input"])
        seeds = [seed_for(relative, self.settings.seed) for relative in _strings(batch, "relative")]
        wavs = [b""] * n
        seconds = 0.0
        if ok:
            clap = np.asarray(batch["clap"], np.float32)[ok]
            if clap.shape[1] != self.generator.clap_dim:
                raise TranslatorError(f"the translator gives {clap.shape[1]}-d CLAP vectors but "
                                      f"{self.generator.source} expects {self.generator.clap_dim}-d ones")
            started = time.perf_counter()
            waveforms = self.generator.generate(clap, [seeds[i] for i in ok], duration=self.settings.duration,
                                                steps=self.settings.steps, guidance=self.settings.guidance,
                                                scheduler=self.settings.scheduler)
            seconds = (time.perf_counter() - started) / len(ok)
            for i, waveform in zip(ok, waveforms):
                wavs[i] = wav_bytes(waveform, self.generator.sample_rate)
        rest = {k: v for k, v in batch.items() if k != "clap"}
        return {**rest, "wav": _objects(wavs), "seed": np.array(seeds, np.int64), "generate_s": np.full(n, seconds),
                "sample_rate": np.full(n, self.generator.sample_rate, np.int32)}


class FusedStages:
    """Every stage in one process: read, decode, CLIP+translator, AudioLDM, write. It is the local runner, and
    the one actor per node of a Ray run without GPUs.

    Without a GPU the stages share the same cores anyway: one process holds one torch and one copy of each
    model on all the node's threads, and no worker process is started for the light stages (each Ray
    worker costs ~250 MB, and ~900 MB once something imports torch). bench/sonify.py measures it
    against `--runner local`.
    """

    def __init__(self, models: ModelSpec, settings: GenerationSettings, limits: ImageLimits, output: str,
                 device: str | None = None):
        self.encode = EncodeImages(models, device)
        self.decode = DecodeImages(models.clip, limits, preprocess=self.encode.clip.preprocess)
        self.generate = GenerateAudio(models.audioldm, settings, device)
        self.models, self.settings, self.limits, self.output = models, settings, limits, output

    def sonify(self, batch: Batch) -> Iterator[Batch]:
        """Every input of `batch`, one written batch at a time (a Ray streaming generator under Ray).

        Reads stay READ_THREADS deep across the whole chunk, as in the local runner, so a dead host holds
        up its own inputs only.
        """
        for chunk in read_batch(batch, self.limits, chunk=self.settings.batch_size):
            yield write_batch(self.generate(self.encode(self.decode(chunk))), self.output, self.models.translator,
                              self.settings)


def _captions(explanation) -> list[str]:
    """The captions of a translator's explanation ({"sounds_like": [{"caption": ..., "weight": ...}]})."""
    if not isinstance(explanation, dict):
        return []
    return [str(item["caption"]) for item in explanation.get(SOUNDS_LIKE, [])]


def _inside(key: str) -> str:
    if key.startswith("/") or ".." in key.split("/"):
        raise ValueError(f"refusing output key {key!r}: it would leave the output folder")
    return key


def write_batch(batch: Batch, output: str, translator: str, settings: GenerationSettings) -> Batch:
    """Write stage: thumbnail, spectrogram, then the WAV, each atomically; then one manifest part for the batch.

    The manifest row is the commit: an input without one is redone by the next run, which rewrites
    the same files with the same seed.
    """
    errors, kinds = _strings(batch, "error"), _strings(batch, "error_kind")
    rows = []
    for i, (source, key) in enumerate(zip(_strings(batch, "input"), _strings(batch, "key"))):
        started = time.perf_counter()
        ok = not errors[i]
        audio_key, thumbnail_key, spectrogram_key = (f"audio/{_inside(key)}.wav", f"thumbs/{key}.jpg",
                                                     f"spectrograms/{key}.png")
        if ok:
            try:
                waveform, sample_rate = soundfile.read(io.BytesIO(bytes(batch["wav"][i])), dtype="float32")
                storage.write_bytes_atomic(storage.join(output, thumbnail_key), bytes(batch["thumbnail"][i]))
                storage.write_bytes_atomic(storage.join(output, spectrogram_key),
                                           gallery.spectrogram_png(waveform, sample_rate))
                storage.write_bytes_atomic(storage.join(output, audio_key), bytes(batch["wav"][i]))
            except OSError as e:  # this clip's files only (a name the filesystem refuses, a full quota...)
                ok, kinds[i] = False, "write_failed"
                errors[i] = f"{images.display_name(source)}: cannot write {audio_key} ({e.strerror or e})"
        explanation = json.loads(batch["explanation"][i]) if ok and batch["explanation"][i] else None
        rows.append({
            "input": images.display_name(source), "output": audio_key if ok else "",
            "status": "ok" if ok else "error",
            "error": errors[i].replace(source, images.display_name(source)), "error_kind": kinds[i],
            "warning": str(batch["warning"][i]) if ok else "",
            "thumbnail": thumbnail_key if ok else "", "spectrogram": spectrogram_key if ok else "",
            "translator": translator, "seed": int(batch["seed"][i]), "scheduler": settings.scheduler, "steps": settings.steps,
            "guidance": settings.guidance, "duration": settings.duration,
            "sample_rate": int(batch["sample_rate"][i]),
            "read_s": float(batch["read_s"][i]), "decode_s": float(batch["decode_s"][i]),
            "encode_s": float(batch["encode_s"][i]), "generate_s": float(batch["generate_s"][i]),
            "write_s": time.perf_counter() - started,
            "captions": _captions(explanation), "explanation": json.dumps(explanation) if explanation else "",
            "finished_at": datetime.now(timezone.utc),
        })
    manifest.write_part(output, rows)
    return {"status": np.array([r["status"] for r in rows]), "error_kind": np.array(kinds),
            "duration": np.array([r["duration"] if r["status"] == "ok" else 0.0 for r in rows])}


# --- runners: the same stages, in this process or as a Ray Data pipeline ---


def _items_batch(items: list[listing.InputItem]) -> Batch:
    return {"input": np.array([i.input for i in items], dtype=object),
            "relative": np.array([i.relative for i in items], dtype=object),
            "key": np.array([i.key for i in items], dtype=object)}


def _run_local(todo: list[listing.InputItem], job: SonifyJob):
    # One read stream for the whole job: a dead host delays its own inputs, not the batches behind it.
    stages = FusedStages(job.models, job.settings, job.limits, job.output, job.device)
    yield from stages.sonify(_items_batch(todo))


def _run_ray(todo: list[listing.InputItem], job: SonifyJob):
    from i2a_core.quiet import init_ray

    ray = init_ray()  # joins the cluster under `ray job submit` (RAY_ADDRESS), else starts a local one
    _raise_on_sigterm()  # ray.init installs its own SIGTERM handler, which aborts the driver
    require_shared_output(job.output)
    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 1.0), resources.get("GPU", 0.0)
    gpus_per_actor = job.gpus_per_actor if job.gpus_per_actor is not None else (1.0 if gpus else 0.0)
    actors = job.actors or (max(1, int(gpus // gpus_per_actor)) if gpus_per_actor else 1)
    pool = ray.data.ActorPoolStrategy
    # Workers of a cluster started elsewhere may lack the driver's object-store settings (endpoint, keys).
    env = {"runtime_env": {"env_vars": storage.worker_env()}}
    rows = [{"input": i.input, "relative": i.relative, "key": i.key} for i in todo]
    if not gpus_per_actor:
        # No GPU: every stage in one actor per node, holding all its CPUs with as many torch threads, fed
        # chunks of inputs without Ray Data. Separate stage actors measured 0.45-0.56x the in-process run at
        # 2.1x its memory on a 2-core node; Ray Data's own helper actors alone weigh ~0.6 GB.
        nodes = [n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")]
        node_cpus = max(nodes, default=cpus)
        fused = job.actors or max(1, sum(1 for n in nodes if n >= node_cpus))
        actor = ray.remote(FusedStages).options(num_cpus=node_cpus, **env)
        workers = [actor.remote(job.models, job.settings, job.limits, job.output) for _ in range(fused)]
        # Chunks go round-robin to the actors, all submitted at once (each actor works through its queue);
        # their batches stream back as they are written, so progress and Ctrl-C work batch by batch.
        chunks = [_items_batch(todo[start:start + READ_BATCH]) for start in range(0, len(todo), READ_BATCH)]
        streams = [workers[i % fused].sonify.options(num_returns="streaming").remote(chunk)
                   for i, chunk in enumerate(chunks)]
        for stream in streams:
            for ref in stream:
                yield ray.get(ref)
        return
    dataset = (
        ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // READ_BATCH, 1000)))
        .map_batches(read_batch, fn_kwargs={"limits": job.limits}, batch_size=READ_BATCH,
                     batch_format="numpy", num_cpus=TASK_CPUS, **env)
        .map_batches(DecodeImages, fn_constructor_kwargs={"clip": job.models.clip, "limits": job.limits},
                     compute=pool(min_size=1, max_size=max(1, int(cpus // 2))), batch_size=DECODE_BATCH,
                     batch_format="numpy", num_cpus=ACTOR_CPUS, **env)
        .map_batches(EncodeImages, fn_constructor_kwargs={"models": job.models},
                     compute=pool(min_size=1, max_size=max(1, int(cpus // 8))), batch_size=ENCODE_BATCH,
                     batch_format="numpy", num_cpus=ACTOR_CPUS, **env)
        .map_batches(GenerateAudio, fn_constructor_kwargs={"audioldm": job.models.audioldm,
                                                           "settings": job.settings},
                     compute=pool(min_size=actors, max_size=actors), batch_size=job.settings.batch_size,
                     batch_format="numpy", num_cpus=ACTOR_CPUS, num_gpus=gpus_per_actor, **env)
        .map_batches(write_batch, fn_kwargs={"output": job.output, "translator": job.models.translator,
                                             "settings": job.settings},
                     batch_size=job.settings.batch_size, batch_format="numpy", num_cpus=TASK_CPUS, **env)
    )
    yield from dataset.iter_batches(batch_size=None, batch_format="numpy")


def _choose_runner(job: SonifyJob, count: int) -> str:
    if job.runner != "auto":
        return job.runner
    if count > LOCAL_MAX_INPUTS or os.environ.get("RAY_ADDRESS"):
        return "ray"
    ray = sys.modules.get("ray")  # a caller that already started Ray wants it used
    return "ray" if ray is not None and ray.is_initialized() else "local"


_TEMP_FILE = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")


def _remove_stale_temp_files(output: str, before: float) -> None:
    """Temp files of atomic writes cut short by a kill; object stores have none (a PUT is all or nothing).

    Only files last written before this job took its lease go: a job that lost its lease but still runs
    may be writing the newer ones.
    """
    if storage.is_remote(output):
        return
    for root, _, files in os.walk(output):
        for name in files:
            path = os.path.join(root, name)
            try:
                if _TEMP_FILE.match(name) and os.path.getmtime(path) < before:
                    os.remove(path)
            except FileNotFoundError:  # its writer renamed it meanwhile
                pass




def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def _raise_on_sigterm() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def check_job(job: SonifyJob) -> None:
    """Everything a job can check before it touches its output: the output, the models, the settings."""
    storage.check_output(job.output)
    checks.check_sonify(job.models, job.settings)




def run(job: SonifyJob, log=print) -> JobSummary:
    """The whole job under the output's lease. Ctrl-C and SIGTERM stop it after committing what finished
    and writing the gallery, then raise KeyboardInterrupt (Terminated for SIGTERM)."""
    items = listing.list_inputs(list(job.inputs))
    check_job(job)  # before job.json exists: a corrected rerun must not be refused
    storage.makedirs(job.output)
    previous = signal.getsignal(signal.SIGTERM)
    _raise_on_sigterm()
    try:
        with lease.Lease(job.output, take_over=job.take_over_lease) as held:
            return _run_leased(job, items, held, log)
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


def _run_leased(job: SonifyJob, items: list[listing.InputItem], held: lease.Lease, log) -> JobSummary:
    # 1. Drop the inputs an earlier run already finished.
    settings = job.settings
    storage.claim_output(job.output, {"job": "sonify", **job.models.describe(), "seed": settings.seed,
                                      "scheduler": settings.scheduler, "steps": settings.steps, "guidance": settings.guidance,
                                      "duration": settings.duration})
    _remove_stale_temp_files(job.output, before=held.acquired)
    manifest.compact(job.output)
    done = manifest.done_inputs(job.output).contains([images.display_name(item.input) for item in items])
    todo = [item for item, finished in zip(items, done, strict=True) if not finished]  # rows name no credentials
    summary = JobSummary(listed=len(items), skipped=len(items) - len(todo), runner=_choose_runner(job, len(todo)))
    log(f"{len(items)} inputs, {summary.skipped} already done, {len(todo)} to sonify ({summary.runner})")

    # 2. Run the stages; every finished batch has its manifest part written by then.
    started = time.perf_counter()
    kinds = collections.Counter()
    interrupted = None
    if todo:
        batches = _run_local(todo, job) if summary.runner == "local" else _run_ray(todo, job)
        try:
            with Progress(len(todo), "sonify", "clips") as progress:
                for batch in batches:
                    statuses = _strings(batch, "status")
                    summary.ok += statuses.count("ok")
                    summary.error += len(statuses) - statuses.count("ok")
                    summary.audio_s += float(np.sum(batch["duration"]))
                    kinds.update(k for k, s in zip(_strings(batch, "error_kind"), statuses) if s != "ok")
                    progress.update(len(statuses))
                    if held.lost:
                        raise lease.LeaseLost(held.lost)
        except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: every finished batch is committed; keep them
            interrupted = e
            log("interrupted: stopping; finished batches are kept, a rerun does the rest")
        finally:
            batches.close()  # stops Ray Data's executor before the driver goes on
    summary.wall_s = time.perf_counter() - started
    summary.error_kinds = dict(kinds)

    # 3. One manifest file, errors.csv, and the gallery over everything done so far.
    manifest.compact(job.output)
    table = manifest.read(job.output)
    errors_path, failed, summary.failed = manifest.write_errors(job.output, SHOWN_FAILURES)
    rows = table.select(["input", "output", "status", "error", "error_kind", "thumbnail", "spectrogram", "captions",
                         "explanation"]).to_pylist()
    pages = gallery.write_gallery(job.output, rows, job.page_size, info=_gallery_info(job, len(items)))
    log(summary.line())
    for row in summary.failed[:SHOWN_FAILURES]:
        log(f"  failed: {row['error'] if row['input'] in row['error'] else row['input'] + ': ' + row['error']}")
    if failed:
        more = failed - SHOWN_FAILURES
        log(f"  {'and ' + str(more) + ' more; ' if more > 0 else ''}every failed input with its reason: {errors_path}")
    log(f"manifest: {manifest.directory(job.output)}  gallery: {storage.join(job.output, 'index.html')} "
        f"({pages} page{'s' if pages > 1 else ''})")
    if job.models.random_weights:
        log(RANDOM_WEIGHTS_NOTE)
    if interrupted is not None:
        raise interrupted
    return summary


SHOWN_FAILURES = 5  # failed inputs named on the console; errors.csv has them all


def _gallery_info(job: SonifyJob, listed: int) -> dict:
    """The gallery header: which models and settings made these clips."""
    settings = job.settings
    return {"models": job.models.describe(), "translator": job.models.translator,
            "settings": {"scheduler": settings.scheduler, "steps": settings.steps, "guidance": settings.guidance,
                         "duration": f"{settings.duration:g} s", "seed": settings.seed},
            "inputs": listed, "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "random_weights": job.models.random_weights}
