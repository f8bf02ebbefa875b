"""`i2a embed` as a job on the one runner: caption or image rows -> paired CLIP/CLAP vectors as zstd Parquet parts.

Steps: check everything -> take the output's lease -> plan (read the caption table or the shards' metadata in
windows, clean them, drop the ids the output already holds; spilled to Parquet windows) -> run the stages on
the runner (read tar members -> decode with CLIP's one preprocessing -> CLIP + CLAP -> pair rows), committing a
part by rows or by time -> stats.json and the norm histograms.
"""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from i2a_core import checks, refs, runner
from i2a_core.errors import ConfigError, SourceError, Stalled
from i2a_core.io import lease, manifest, sources, storage
from i2a_core.raycluster import require_shared_output
from i2a_core.runner import STALL_TIMEOUT_S, Chain, Stage
from i2a_core.specs import ImageLimits, ModelSpec

# The output contract: training and every other consumer reads exactly these columns.
PAIR_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("source", pa.string()),
    ("modality", pa.string()),  # what CLIP encoded: "text" or "image"
    ("caption", pa.string()),
    ("url", pa.string()),
    ("clip", pa.list_(pa.float32())),  # as CLIP outputs it, not normalised
    ("clap", pa.list_(pa.float32())),  # exactly as AudioLDM consumes it (unit vectors)
])
PART_GLOB = "part-*.parquet"
SOURCES = ("audiocaps", "images")
LOCAL_MAX_ROWS = 1000  # `--runner auto` embeds this many rows or fewer in this process, without starting Ray
NORMS_KEPT = 1 << 20  # norms per histogram: all of them up to this, then a uniform sample of this many
# Ray Data: CPUs per tar-reader actor and per pair-rows task, and those the plan's Parquet read tasks take
READ_CPUS, ROW_CPUS, PLAN_READ_CPUS = 0.25, 0.25, 1.0

READ_TARS = "i2a_core.stages.embed:ReadTarMembers"
DECODE = "i2a_core.stages.images:DecodeImages"
ENCODE = "i2a_core.stages.embed:EncodePairs"
PAIR_ROWS = "i2a_core.stages.embed:pair_rows"


@dataclass(frozen=True)
class EmbedConfig:
    source: str  # audiocaps | images
    input: str | None  # AudioCaps CSV or img2dataset shard folder; None: the official AudioCaps train CSV
    output: str
    models: ModelSpec
    actors: int = 1  # encoder actors on Ray Data (with GPUs); without GPUs, one actor per node runs every stage
    gpus_per_actor: float | None = None  # None: 1 when the cluster has GPUs, else 0
    cpus_per_actor: float | None = None  # per encoder actor on Ray Data; None: 1
    batch_size: int = 64
    rows_per_part: int = manifest.PART_ROWS  # a part is committed at this many rows...
    commit_every: float = manifest.PART_EVERY_S  # ...or once its oldest row has waited this many seconds
    runner: str = "auto"  # auto | local | ray
    device: str | None = None  # in-process runs only; Ray actors use the devices Ray gives them
    stall_timeout: float = STALL_TIMEOUT_S
    take_over_lease: bool = False  # take the output from a job that looks alive (see io/lease.py)
    limits: ImageLimits = ImageLimits()  # tar members over limits.max_bytes are refused by their header

    @property
    def modality(self) -> str:
        return "text" if self.source == "audiocaps" else "image"


# --- 1. check everything before the lease and before any model loads ---


def check(config: EmbedConfig) -> None:
    checks.check_limits(config.limits)
    if config.source not in SOURCES:
        raise SourceError(f"unknown source '{config.source}' (choose from {', '.join(SOURCES)})")
    if config.source == "images" and not config.input:
        raise ConfigError("--source images needs --input: the shard folder written by `i2a fetch`")
    for flag, value in (("actors", config.actors), ("batch-size", config.batch_size),
                        ("rows-per-part", config.rows_per_part)):
        if value < 1:
            raise ConfigError(f"--{flag} {value}: must be at least 1")
    if (config.gpus_per_actor is not None and config.gpus_per_actor < 0) or \
            (config.cpus_per_actor is not None and config.cpus_per_actor <= 0):
        raise ConfigError("--gpus-per-actor must be >= 0 and --cpus-per-actor > 0")
    if not config.commit_every > 0 or not config.stall_timeout > 0:
        raise ConfigError("--commit-every and --stall-timeout must be positive numbers of seconds")
    if config.runner not in ("auto", "local", "ray"):
        raise ConfigError(f"--runner {config.runner}: choose auto, local or ray")
    checks.check_device(config.device)
    storage.check_output(config.output)


# --- 2. plan: the rows not embedded yet, read and cleaned in windows, spilled to Parquet ---


@dataclass
class EmbedPlan:
    """What a run must compute (spilled: the driver holds file names, not rows), and what it skipped."""

    todo: runner.Plan
    input_rows: int = 0
    already_done: int = 0
    failures: Counter = field(default_factory=Counter)
    truncated: int = 0  # captions cut at sources.MAX_CAPTION_CHARS before any tokenizer saw them


def read_pairs(output: str, columns: list[str] | None = None) -> pa.Table:
    """Every pair written under `output` (all part files), in the PAIR_SCHEMA."""
    fs, parts = _parts(output)
    if not parts:
        return PAIR_SCHEMA.empty_table().select(columns or PAIR_SCHEMA.names)
    return pq.ParquetDataset(parts, filesystem=fs).read(columns=columns)


def _parts(output: str) -> tuple[object, list[str]]:
    fs, path = storage.filesystem(output)
    return fs, sorted(fs.glob(f"{path.rstrip('/')}/{PART_GLOB}"))


def done_ids(output: str) -> manifest.StringSet:
    """The ids the output's parts hold, as 16-byte hashes, reading only the `id` column a batch at a time."""
    fs, parts = _parts(output)
    done = manifest.StringSet()
    for part in parts:
        with fs.open(part, "rb") as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=sources.WINDOW_ROWS, columns=["id"]):
                done.add(batch.column(0))
    return done


def plan(config: EmbedConfig, directory: str) -> EmbedPlan:
    """The rows to embed, spilled to Parquet windows under `directory`: each with an id and a caption, the first
    row of its id, and not in the output yet (so reruns resume). Every row dropped is counted by reason.

    Memory: one window of rows at a time, plus 16 bytes per id the output holds and per distinct id of the input
    (hash sets), never the table itself.
    """
    work = EmbedPlan(runner.Plan([], 0))
    done = done_ids(config.output)
    seen = manifest.StringSet()  # the input's ids so far: the first occurrence of an id is kept
    windows = (_clean(window, work, seen, done, config.modality) for window in _input_windows(config, work.failures))
    work.todo = runner.spill(windows, directory)
    return work


def _input_windows(config: EmbedConfig, failures: Counter) -> Iterator[pa.Table]:
    if config.source == "audiocaps":
        return sources.audiocaps_windows(sources.audiocaps_csv(config.input, refs.cache_dir()))
    return _shard_windows(config.input, failures)


# img2dataset's metadata columns that embed reads, and the Arrow types each may have.
SHARD_COLUMNS = {"key": "string", "url": "string", "caption": "string", "status": "string"}


def _shard_windows(folder: str, failures: Counter) -> Iterator[pa.Table]:
    """Rows of img2dataset webdataset output, from the metadata Parquet beside each tar (no image is read), in
    windows (id, source, caption, url, tar, key).

    A shard whose metadata is missing or unreadable is skipped and counted (`shard_unreadable_metadata`,
    one per shard: its rows are unknown); one with missing or mistyped columns counts all its rows as
    `shard_bad_metadata`. The other shards go on.
    """
    fs, path = storage.filesystem(folder)
    tars = sorted(fs.glob(f"{path.rstrip('/')}/*.tar"))
    if not tars:
        raise SourceError(f"{folder}: no webdataset shards (*.tar) found; fetch some with `i2a fetch`")
    for tar in tars:
        name = fs.unstrip_protocol(tar) if storage.is_remote(folder) else tar
        try:
            with fs.open(tar[:-len(".tar")] + ".parquet", "rb") as f:
                reader = pq.ParquetFile(f)
                if not _shard_columns_ok(reader.schema_arrow):
                    failures["shard_bad_metadata"] += reader.metadata.num_rows
                    continue
                columns = [c for c in (*SHARD_COLUMNS, "id", "source") if c in reader.schema_arrow.names]
                for batch in reader.iter_batches(batch_size=sources.WINDOW_ROWS, columns=columns):
                    yield _shard_window(pa.Table.from_batches([batch]), name, failures)
        except (OSError, pa.ArrowException):  # missing, truncated, not Parquet
            failures["shard_unreadable_metadata"] += 1


def _shard_columns_ok(schema: pa.Schema) -> bool:
    for name in SHARD_COLUMNS:
        if name not in schema.names:
            return False
        kind = schema.field(name).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
            return False
    return True


def _text(table: pa.Table, name: str) -> pa.ChunkedArray:
    return pc.fill_null(table.column(name).cast(pa.string()), "")


def _shard_window(meta: pa.Table, tar: str, failures: Counter) -> pa.Table:
    status = _text(meta, "status")
    # Rows img2dataset could not fetch never reached the tar; count them here by stage.
    for reason in ("failed_to_download", "failed_to_resize"):
        failed = pc.sum(pc.equal(status, reason)).as_py() or 0
        if failed:
            failures[f"fetch_{reason}"] += failed
    meta = meta.filter(pc.equal(status, "success"))
    urls = _text(meta, "url").to_pylist()
    source = _text(meta, "source").to_pylist() if "source" in meta.column_names else ["images"] * meta.num_rows
    ids = _text(meta, "id").to_pylist() if "id" in meta.column_names else \
        [sources.image_id(s, u) for s, u in zip(source, urls, strict=True)]
    return pa.table({"id": ids, "source": source,
                     "caption": [sources.clean_caption(c) for c in meta.column("caption").to_pylist()],
                     "url": urls, "tar": [tar] * meta.num_rows, "key": _text(meta, "key")})


def _clean(window: pa.Table, work: EmbedPlan, seen: manifest.StringSet, done: manifest.StringSet,
           modality: str) -> pa.Table:
    """A window less its bad, repeated and finished rows (each counted), with the columns the runner's stages use."""
    work.input_rows += window.num_rows

    def drop(table: pa.Table, reason: str, bad: np.ndarray) -> pa.Table:
        if bad.any():
            work.failures[reason] += int(bad.sum())
            table = table.filter(pa.array(~bad))
        return table

    window = drop(window, "missing_id", _true(pc.equal(_text(window, "id"), "")))
    window = drop(window, "empty_caption", _true(pc.equal(_text(window, "caption"), "")))
    window = drop(window, "duplicate_id", ~seen.add_new(window.column("id")))  # the first occurrence is kept
    finished = done.contains(window.column("id"))
    work.already_done += int(finished.sum())
    window = window.filter(pa.array(~finished))

    long = _true(pc.greater(pc.utf8_length(window.column("caption")), sources.MAX_CAPTION_CHARS))
    if long.any():
        captions = window.column("caption").to_pylist()
        window = window.set_column(window.column_names.index("caption"), "caption", pa.array(
            [c[:sources.MAX_CAPTION_CHARS] if cut else c for c, cut in zip(captions, long, strict=True)],
            pa.string()))
        work.truncated += int(long.sum())
    count = window.num_rows
    # Missing URLs travel as '' (written as null); every row starts without error, named by its id.
    window = window.set_column(window.column_names.index("url"), "url", _text(window, "url"))
    window = window.append_column("display", window.column("id"))
    window = window.append_column("error", pa.array([""] * count, pa.string()))
    window = window.append_column("error_kind", pa.array([""] * count, pa.string()))
    if modality == "image":
        window = window.append_column("input", window.column("url"))
    return window


def _true(values) -> np.ndarray:
    return np.asarray(pc.fill_null(values, False).to_numpy(zero_copy_only=False), dtype=bool)


# --- 3. stages, and the commit ---


def chain(config: EmbedConfig, strategy: str, cpus: float = 1.0) -> Chain:
    """The stages, by dotted path: [read tar members -> decode (CLIP's preprocessing) ->] encode -> pair rows.

    Their Ray Data settings matter only for the "data" strategy: `--actors` encoders with `--gpus-per-actor`,
    tar readers and decoders on the CPUs left.
    """
    gpus = (config.gpus_per_actor if config.gpus_per_actor is not None else 1.0) if strategy == "data" else 0.0
    encoder_cpus = config.cpus_per_actor or 1.0
    encode = Stage(ENCODE, {"models": config.models, "modality": config.modality, "batch_size": config.batch_size,
                            "device": config.device if strategy == "local" else None},
                   batch_size=config.batch_size, actors=config.actors, num_cpus=encoder_cpus, num_gpus=gpus)
    rows = Stage(PAIR_ROWS, {"modality": config.modality}, num_cpus=ROW_CPUS)
    if config.modality == "text":
        return Chain((encode, rows), key="id")
    spare = max(cpus - config.actors * encoder_cpus - ROW_CPUS - PLAN_READ_CPUS, 2 * READ_CPUS)
    readers = max(1, min(4, int(spare // 4)))  # each reader indexes the tars it meets: few of them
    decode_cpus = spare - readers * READ_CPUS
    decoders = max(1, int(decode_cpus))
    return Chain((
        Stage(READ_TARS, {"max_bytes": config.limits.max_bytes}, batch_size=config.batch_size, actors=readers,
              num_cpus=READ_CPUS),
        Stage(DECODE, {"clip": config.models.clip, "limits": config.limits, "check_extension": False,
                       "thumbnails": False},
              batch_size=config.batch_size, actors=decoders, num_cpus=min(1.0, decode_cpus / decoders)),
        encode, rows), key="id")


def check_resources(config: EmbedConfig, cpus: float) -> None:
    """Ray Data's encoder actors must leave CPUs for reading the plan, the tars and decoding: every actor pool
    starts whole, so without them the job would wait for ever."""
    encoder_cpus = config.cpus_per_actor or 1.0
    others = PLAN_READ_CPUS + ROW_CPUS + (2 * READ_CPUS if config.modality == "image" else 0.0)
    if config.actors * encoder_cpus + others > cpus:
        raise ConfigError(f"--actors {config.actors} x --cpus-per-actor {encoder_cpus:g} leaves less than "
                          f"{others:g} of the Ray cluster's {cpus:g} CPUs for reading, decoding and writing")


def _list_array(vectors) -> pa.Array:
    vectors = np.asarray(vectors)
    if vectors.dtype == object:  # rows of vectors that travelled one by one
        vectors = np.stack(vectors) if len(vectors) else np.zeros((0, 0), np.float32)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    offsets = np.arange(len(vectors) + 1, dtype=np.int32) * (vectors.shape[1] if vectors.ndim == 2 else 0)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(vectors.reshape(-1)))


def pair_table(batch: dict, ok: np.ndarray) -> pa.Table:
    """The `ok` rows of a pair-rows batch in the PAIR_SCHEMA (a missing URL as null)."""
    def texts(name: str) -> list[str]:
        return [str(v) for v in np.asarray(batch[name], dtype=object)[ok]]

    return pa.table({"id": texts("id"), "source": texts("source"), "modality": texts("modality"),
                     "caption": texts("caption"), "url": [u or None for u in texts("url")],
                     "clip": _list_array(np.asarray(batch["clip"])[ok]),
                     "clap": _list_array(np.asarray(batch["clap"])[ok])}, schema=PAIR_SCHEMA)


class PairWriter:
    """Embed's commit: each batch's rows without error go into zstd Parquet parts (PAIR_SCHEMA) through
    manifest.PartWriter, a part per `rows_per_part` rows or sooner once its oldest row waited `every_s` seconds.

    The runner hands it the columns named in `schema`: the pairs' and `error`. Failed rows are not written
    (the job counts them by reason), so a rerun tries them again.
    """

    schema = pa.schema([*PAIR_SCHEMA, pa.field("error", pa.string())])

    def __init__(self, output: str, rows_per_part: int, every_s: float):
        self.parts = manifest.PartWriter(output, PAIR_SCHEMA, rows_per_part=rows_per_part, every_s=every_s)
        self.seconds = 0.0  # spent converting and writing: the `write` stage of stats.json

    def add(self, batch: dict) -> int:
        started = time.perf_counter()
        ok = np.array([not error for error in batch["error"]], dtype=bool)
        committed = self.parts.add(pair_table(batch, ok))
        self.seconds += time.perf_counter() - started
        return committed

    def flush(self) -> int:
        started = time.perf_counter()
        committed = self.parts.flush()
        self.seconds += time.perf_counter() - started
        return committed

    @property
    def written(self) -> int:
        return self.parts.written


class NormSample:
    """The norms of written vectors, for a histogram: every one up to `keep`, then a uniform sample of `keep`
    of them (reservoir sampling), so that the driver's memory stays flat however many rows a run writes."""

    def __init__(self, keep: int = NORMS_KEPT):
        self.keep, self.seen = keep, 0
        self.chunks: list[np.ndarray] = []
        self.sample: np.ndarray | None = None  # once more than `keep` were seen
        self.rng = np.random.default_rng(0)

    def add(self, norms: np.ndarray) -> None:
        norms = np.asarray(norms, np.float32)
        if self.sample is None:
            self.chunks.append(norms)
            self.seen += len(norms)
            if self.seen > self.keep:
                everything = np.concatenate(self.chunks)
                self.sample, self.chunks, self.seen = everything[:self.keep].copy(), [], self.keep
                norms = everything[self.keep:]
            else:
                return
        slots = (self.rng.random(len(norms)) * (self.seen + 1 + np.arange(len(norms)))).astype(np.int64)
        kept = slots < self.keep
        self.sample[slots[kept]] = norms[kept]
        self.seen += len(norms)

    def values(self) -> np.ndarray:
        if self.sample is not None:
            return self.sample
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)


class Tally:
    """What the committed batches held (the runner's on_commit): pairs written, failures by reason, truncations,
    per-stage busy seconds, and the vectors' norms."""

    def __init__(self):
        self.processed = self.written = self.clip_truncated = self.clap_truncated = 0
        self.failures: Counter = Counter()
        self.stage_s: Counter = Counter()
        self.norms = {"clip": NormSample(), "clap": NormSample()}

    def commit(self, batch: dict) -> None:
        ok = np.array([not error for error in batch["error"]], dtype=bool)
        self.processed += len(ok)
        self.written += int(ok.sum())
        self.failures.update(str(kind) for kind in np.asarray(batch["error_kind"], dtype=object)[~ok])
        self.clip_truncated += int(np.asarray(batch["clip_truncated"], bool)[ok].sum())
        self.clap_truncated += int(np.asarray(batch["clap_truncated"], bool)[ok].sum())
        for name in ("read", "decode", "clip", "clap"):
            if f"{name}_s" in batch:
                self.stage_s[name] += float(np.sum(batch[f"{name}_s"]))
        if ok.any():
            for name, sample in self.norms.items():
                sample.add(np.linalg.norm(np.asarray(batch[name], np.float32)[ok], axis=1))


# --- the whole job ---


def run_embed(config: EmbedConfig, log: Callable[[str], None] = print) -> dict:
    """Embed every row of the input not yet in the output; returns the stats written to stats.json.

    Ctrl-C and SIGTERM stop it within seconds, keeping every committed part (KeyboardInterrupt is raised); a
    rerun with the same arguments does the rest.
    """
    check(config)
    storage.makedirs(config.output)
    with runner.interrupts(), lease.Lease(config.output, take_over=config.take_over_lease) as held:
        return _run_leased(config, held, log)


def _run_leased(config: EmbedConfig, held: lease.Lease, log) -> dict:
    started = time.perf_counter()
    tally, writer = Tally(), PairWriter(config.output, config.rows_per_part, config.commit_every)
    stopped: BaseException | None = None
    with runner.plan_directory(config.output) as directory:
        # 1. Plan: clean rows not in the output yet (a bad table stops the job here, before job.json exists).
        work = plan(config, directory)
        models = config.models
        storage.claim_output(config.output, {"job": "embed", "source": config.source,
                                             "clip_model": models.clip.model, "clip_pretrained": models.clip.pretrained,
                                             "audioldm": models.audioldm})
        todo = work.todo.total
        strategy = runner.choose_strategy(config.runner, todo, config.gpus_per_actor, local_max=LOCAL_MAX_ROWS) \
            if todo else "local"
        log(f"{todo} rows to embed ({work.already_done} already in {config.output}, "
            f"{sum(work.failures.values())} skipped, {work.truncated} captions cut at "
            f"{sources.MAX_CAPTION_CHARS} characters; {runner.DESCRIBE[strategy]})")

        # 2. Run the stages; a part is committed every --rows-per-part rows or --commit-every seconds.
        cpus = 1.0
        if strategy != "local":
            require_shared_output(config.output)
            cpus = runner.cluster_resources().get("CPU", 1.0)
        if strategy == "data":
            check_resources(config, cpus)
        try:
            if todo:
                runner.run(work.todo, chain(config, strategy, cpus), writer, strategy=strategy, what="embed",
                           unit="rows", stall_timeout=config.stall_timeout, chunk_size=config.batch_size,
                           on_commit=tally.commit, lease=held, log=log)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: every finished row is committed; keep them
            log(f"stopped: {writer.written} pairs committed this run; rerun the same command to do the rest")
            raise
        except Stalled as stall:  # reported below, with everything committed so far
            stopped = stall
            log(f"stalled: {stall}")

    # 3. Stats and histograms.
    stats = _stats(config, work, tally, writer, time.perf_counter() - started)
    storage.write_text_atomic(storage.join(config.output, "stats.json"), json.dumps(stats, indent=2))
    for name, sample in tally.norms.items():
        storage.write_bytes_atomic(storage.join(config.output, f"{name}_norms.png"),
                                   _histogram(name, sample.values(), sample.seen))
    if stopped is not None:
        raise stopped
    return stats


def _stats(config: EmbedConfig, work: EmbedPlan, tally: Tally, writer: PairWriter, wall_s: float) -> dict:
    stage_s = {**tally.stage_s, "write": writer.seconds}
    failures = work.failures + tally.failures
    return {
        "source": config.source,
        "input": config.input,
        "output": config.output,
        "models": config.models.describe(),
        "random_weights": config.models.random_weights,  # `i2a train` says so in its leaderboard
        "input_rows": work.input_rows,
        "rows": work.already_done + writer.written,  # rows in the output after this run
        "rows_written": writer.written,
        "rows_already_done": work.already_done,
        "failures": dict(failures.most_common()),
        # Cut at sources.MAX_CAPTION_CHARS before tokenizing, then by each tokenizer's own limit.
        "truncated_captions": {"characters": work.truncated, "clip": tally.clip_truncated,
                               "clap": tally.clap_truncated},
        # Busy seconds summed over every worker of a stage: rows/s is one worker's throughput.
        "stages": {stage: {"rows": tally.processed, "busy_s": round(seconds, 4),
                           "rows_per_s": round(tally.processed / seconds, 2) if seconds else None}
                   for stage, seconds in stage_s.items()},
        "wall_s": round(wall_s, 3),
        "rows_per_s": round(writer.written / wall_s, 2) if wall_s else None,
    }


def _histogram(name: str, norms: np.ndarray, total: int) -> bytes:
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    figure = Figure(figsize=(5, 3.2), dpi=100, layout="constrained")
    axis = figure.add_subplot()
    if len(norms):
        # CLAP vectors are unit vectors: give a constant column a visible width instead of failing.
        low, high = float(norms.min()), float(norms.max())
        axis.hist(norms, bins=50, range=(low - 0.01, high + 0.01) if high - low < 1e-6 else (low, high))
    else:
        axis.text(0.5, 0.5, "n/a: no rows written this run", ha="center", va="center", transform=axis.transAxes,
                  color="0.4")
        axis.set_xticks([])
        axis.set_yticks([])
    # Few, short tick labels: norms near 1.0 otherwise print as long, overlapping decimals.
    if len(norms):
        axis.xaxis.set_major_locator(MaxNLocator(nbins=5))
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.4g}"))
        axis.yaxis.set_major_locator(MaxNLocator(nbins=5, integer=True))
    axis.set_xlabel(f"L2 norm of the {name.upper()} vector (unitless)")
    axis.set_ylabel("rows (count)" if len(norms) == total else f"rows (count, a sample of {len(norms):,})")
    axis.set_title(f"{name.upper()} vector norms ({total} rows written this run)")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
