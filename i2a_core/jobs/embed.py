"""Ray Data pipeline: caption or image rows -> paired CLIP/CLAP vectors as resumable zstd Parquet parts, with stats."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from i2a_core.errors import ConfigError
from i2a_core.io import images, lease, sources, storage
from i2a_core.progress import Progress
from i2a_core.raycluster import require_shared_output
from i2a_core.refs import clip_image_size
from i2a_core.specs import ImageLimits

if TYPE_CHECKING:  # presets imports torch; the read and decode workers never need it
    from i2a_core.specs import ModelSpec

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
STAGES = ("read", "decode", "clip", "clap", "write")
BATCHES_PER_BLOCK = 8
TASK_CPUS = 0.25  # read/decode and write tasks: light, and they must fit beside CPU-only encoder actors


@dataclass(frozen=True)
class EmbedConfig:
    source: str  # audiocaps | images
    input: str | None  # AudioCaps CSV or img2dataset shard folder; None: the official AudioCaps train CSV
    output: str
    models: ModelSpec
    actors: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: float | None = None  # None: 1 with GPUs, else the node's CPUs (see actor_cpus)
    batch_size: int = 64
    rows_per_part: int = 10_000
    device: str | None = None
    take_over_lease: bool = False  # take the output from a job that looks alive (see lease.py)

    @property
    def modality(self) -> str:
        return "text" if self.source == "audiocaps" else "image"


@dataclass
class Plan:
    """What a run must compute: rows not yet in the output, and the rows skipped before any model runs."""

    rows: pd.DataFrame  # id, source, caption, url (+ tar, key for images)
    input_rows: int
    already_done: int
    failures: Counter = field(default_factory=Counter)
    truncated: int = 0  # captions cut at sources.MAX_CAPTION_CHARS before any tokenizer saw them


# 1. Reader: the input table, cleaned and minus what an earlier run already wrote (driver side, no images).

def read_pairs(output: str, columns: list[str] | None = None) -> pa.Table:
    """Every pair written under `output` (all part files), in the PAIR_SCHEMA."""
    fs, path = storage.filesystem(output)
    parts = sorted(fs.glob(f"{path.rstrip('/')}/{PART_GLOB}"))
    if not parts:
        return PAIR_SCHEMA.empty_table().select(columns or PAIR_SCHEMA.names)
    return pq.ParquetDataset(parts, filesystem=fs).read(columns=columns)


def _input_rows(config: EmbedConfig) -> tuple[pd.DataFrame, Counter]:
    if config.source == "audiocaps":
        return sources.read_audiocaps(sources.audiocaps_csv(config.input)), Counter()
    if config.source == "images":
        return _shard_rows(config.input)
    raise sources.SourceError(f"unknown source '{config.source}' (choose from {', '.join(SOURCES)})")


# img2dataset's metadata columns that embed reads, and the Arrow types each may have.
SHARD_COLUMNS = {"key": "string", "url": "string", "caption": "string", "status": "string"}


def _shard_rows(folder: str) -> tuple[pd.DataFrame, Counter]:
    """Rows of img2dataset webdataset output, from the metadata Parquet beside each tar (no image is read).

    A shard whose metadata is missing or unreadable is skipped and counted (`shard_unreadable_metadata`,
    one per shard: its rows are unknown); one with missing or mistyped columns counts all its rows as
    `shard_bad_metadata`. The other shards go on.
    """
    fs, path = storage.filesystem(folder)
    tars = sorted(fs.glob(f"{path.rstrip('/')}/*.tar"))
    if not tars:
        raise sources.SourceError(f"{folder}: no webdataset shards (*.tar) found; fetch some with `i2a fetch`")
    frames, failures = [], Counter()
    for tar in tars:
        meta_path = tar[:-len(".tar")] + ".parquet"
        try:
            table = pq.read_table(meta_path, filesystem=fs)
        except (OSError, pa.ArrowException):  # missing, truncated, not Parquet
            failures["shard_unreadable_metadata"] += 1
            continue
        if not _shard_columns_ok(table.schema):
            failures["shard_bad_metadata"] += table.num_rows
            continue
        meta = table.to_pandas()
        # Rows img2dataset could not fetch never reached the tar; count them here by stage.
        failures.update({"fetch_failed_to_download": int((meta["status"] == "failed_to_download").sum()),
                         "fetch_failed_to_resize": int((meta["status"] == "failed_to_resize").sum())})
        meta = meta[meta["status"] == "success"]
        source = meta["source"].astype(str) if "source" in meta else pd.Series("images", index=meta.index)
        urls = meta["url"].fillna("").astype(str)
        ids = meta["id"].astype(str) if "id" in meta else [sources.image_id(s, u) for s, u in zip(source, urls)]
        frames.append(pd.DataFrame({
            "id": list(ids), "source": list(source), "caption": meta["caption"].map(sources.clean_caption).tolist(),
            "url": list(urls), "tar": fs.unstrip_protocol(tar) if storage.is_remote(folder) else tar,
            "key": list(meta["key"].astype(str)),
        }))
    if not frames:
        return pd.DataFrame(columns=["id", "source", "caption", "url", "tar", "key"]), +failures
    return pd.concat(frames, ignore_index=True), +failures


def _shard_columns_ok(schema: pa.Schema) -> bool:
    for name in SHARD_COLUMNS:
        if name not in schema.names:
            return False
        kind = schema.field(name).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)):
            return False
    return True


def plan(config: EmbedConfig) -> Plan:
    """The rows to embed: captioned, unique ids, and not already in the output (so reruns resume)."""
    rows, failures = _input_rows(config)
    input_rows = len(rows) + sum(failures.values())
    checks = {
        "missing_id": lambda r: r["id"] == "",
        "empty_caption": lambda r: r["caption"] == "",
        "duplicate_id": lambda r: r["id"].duplicated(),  # the first occurrence is kept
    }
    for reason, check in checks.items():
        bad = check(rows)
        failures[reason] += int(bad.sum())
        rows = rows[~bad]
    done = set(read_pairs(config.output, columns=["id"]).column("id").to_pylist())
    finished = rows["id"].isin(done)
    rows = rows[~finished].reset_index(drop=True)
    too_long = rows["caption"].str.len() > sources.MAX_CAPTION_CHARS
    if too_long.any():
        rows.loc[too_long, "caption"] = rows.loc[too_long, "caption"].str.slice(0, sources.MAX_CAPTION_CHARS)
    return Plan(rows, input_rows, int(finished.sum()), +failures, truncated=int(too_long.sum()))


# 2. Stages. Each takes and returns a dict of numpy columns; models are built inside the actor.

def read_images(batch: dict, max_bytes: int = ImageLimits.max_bytes) -> dict:
    """Stage `read`: the JPEG bytes of each row, streamed out of its tar (each tar opened once per batch).

    A tar that is truncated or unreadable fails only its rows not read yet (`read_broken_tar`); a row
    whose image is not in its tar is `read_missing_from_tar`; one whose member is over `max_bytes` (judged
    by its header, before a byte of it is read: a sparse member of a tiny tar can claim gigabytes) is
    `image_too_large`.
    """
    started = time.perf_counter()
    wanted: dict[str, dict[str, int]] = {}
    for i, (tar, key) in enumerate(zip(batch["tar"], batch["key"])):
        wanted.setdefault(tar, {})[f"{key}.jpg"] = i
    data = np.empty(len(batch["key"]), dtype=object)
    errors = np.array(batch["error"], dtype=object) if "error" in batch else np.full(len(data), "", dtype=object)
    for tar, members in wanted.items():
        fs, path = storage.filesystem(tar)
        try:
            with fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r|") as archive:
                left = len(members)
                for member in archive:
                    if member.name in members:
                        if member.size > max_bytes:
                            errors[members[member.name]] = "image_too_large"
                        else:
                            data[members[member.name]] = archive.extractfile(member).read(max_bytes + 1)
                        left -= 1
                        if not left:  # a block holds part of a shard: stop streaming once it is complete
                            break
            missing = "read_missing_from_tar"
        except (tarfile.TarError, OSError, EOFError):
            missing = "read_broken_tar"
        for i in members.values():
            if data[i] is None and not errors[i]:
                errors[i] = missing
    batch = {k: v for k, v in batch.items() if k not in ("tar", "key")}
    batch["image"] = np.array([d if d is not None else b"" for d in data], dtype=object)
    batch["error"] = errors
    batch["read_s"] = _per_row(started, len(data))
    return batch


def decode_images(batch: dict, image_size: int) -> dict:
    """Stage `decode`: bytes -> RGB -> resized and center-cropped uint8 pixels, as CLIP's eval transform does.

    A row that cannot be decoded keeps zero pixels and gets its failure kind in `error`.
    """
    started = time.perf_counter()
    count = len(batch["id"])
    pixels = np.zeros((count, image_size, image_size, 3), np.uint8)
    errors = np.array(batch["error"], dtype=object) if "error" in batch else np.full(count, "", dtype=object)
    for i, (data, url) in enumerate(zip(batch["image"], batch["url"])):
        if errors[i]:  # the read stage already failed this row
            continue
        try:
            image = images.decode_image(data, str(url), check_extension=False)
        except images.ImageError as e:
            errors[i] = f"image_{e.kind}"
            continue
        except Exception:  # PIL raises OSError, SyntaxError... from Image.open on some damaged files
            errors[i] = "image_corrupt"
            continue
        pixels[i] = np.asarray(resize_and_crop(image, image_size))
    batch = {k: v for k, v in batch.items() if k != "image"}
    batch.update(pixels=pixels, error=errors, decode_s=_per_row(started, count))
    return batch


def resize_and_crop(image, size: int):
    """open_clip's eval geometry (torchvision Resize(size, bicubic) then CenterCrop(size)) in plain PIL.

    Plain PIL keeps torch out of the decode workers; tests check the result against open_clip's transform.
    """
    from PIL import Image

    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    if short != size:
        long = int(size * long / short)
        image = image.resize((size, long) if width <= height else (long, size), Image.Resampling.BICUBIC)
    width, height = image.size
    left, top = int(round((width - size) / 2.0)), int(round((height - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def load_images(batch: dict, image_size: int) -> dict:
    """Stages `read` then `decode`, in one task."""
    return decode_images(read_images(batch), image_size)


class PairEncoder:
    """Stages `clip` and `clap` in one actor: CLIP (image pixels or caption text) and AudioLDM's CLAP (caption)."""

    def __init__(self, models: ModelSpec, modality: str, batch_size: int, device: str | None = None):
        import torch
        from torchvision.transforms import Normalize

        from i2a_core.models.audioldm import ClapTextEncoder
        from i2a_core.models.clip import ClipEncoder
        from i2a_core.models.devices import match_torch_threads_to_ray
        from i2a_core.quiet import quiet_libraries

        quiet_libraries()
        match_torch_threads_to_ray()
        self.modality = modality
        self.clip = ClipEncoder(models.clip, device=device, batch_size=batch_size)
        self.clap = ClapTextEncoder.load(models.audioldm, device=device)
        self.batch_size = batch_size
        normalize = next(t for t in self.clip.preprocess.transforms if isinstance(t, Normalize))
        self.mean = torch.tensor(normalize.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(normalize.std).view(1, 3, 1, 1)

    def __call__(self, batch: dict) -> dict:
        import torch

        count = len(batch["id"])
        ok = batch["error"] == "" if "error" in batch else np.ones(count, bool)
        captions = [str(c) for c in batch["caption"][ok]]

        started = time.perf_counter()
        clip = np.zeros((count, self.clip.dim), np.float32)
        if self.modality == "image":
            pixels = torch.from_numpy(np.ascontiguousarray(batch["pixels"][ok])).permute(0, 3, 1, 2)
            clip[ok] = self.clip.encode_pixels((pixels.float() / 255.0 - self.mean) / self.std)
            clip_truncated = np.zeros(count, bool)
        else:
            clip[ok] = self.clip.encode_texts(captions)
            clip_truncated = np.zeros(count, bool)
            clip_truncated[ok] = clip_truncation(self.clip, captions)
        clip_s = _per_row(started, count)

        started = time.perf_counter()
        clap = np.zeros((count, self.clap.dim), np.float32)
        clap[ok] = self.clap.encode(captions, batch_size=self.batch_size)
        clap_truncated = np.zeros(count, bool)
        clap_truncated[ok] = self.clap.truncated(captions)
        clap_s = _per_row(started, count)

        out = {k: v for k, v in batch.items() if k != "pixels"}
        out.update(error=np.where(ok, "", batch.get("error", np.full(count, "", object))).astype(object),
                   clip=clip, clap=clap, clip_truncated=clip_truncated, clap_truncated=clap_truncated,
                   clip_s=clip_s, clap_s=clap_s)
        return out


def clip_truncation(encoder, texts: list[str]) -> np.ndarray:
    """Which texts are longer than CLIP's context (open_clip truncates them silently)."""
    tokenizer = encoder.tokenizer
    if hasattr(tokenizer, "encode"):  # open_clip's BPE tokenizer: ids without the start and end tokens
        return np.array([len(tokenizer.encode(t)) + 2 > encoder.context_length for t in texts], bool)
    return (tokenizer(texts)[:, -1] != 0).numpy()  # others: the text filled the last position


def write_part(batch: dict, output: str, modality: str) -> dict:
    """Stage `write`: the batch's good rows as one zstd Parquet part, written atomically.

    The part is named by a hash of its ids, so a retried task rewrites the same file instead of adding a
    second copy. Returns one summary row (counts, stage seconds, norms) for the driver's stats.
    """
    started = time.perf_counter()
    ok = batch["error"] == "" if "error" in batch else np.ones(len(batch["id"]), bool)
    ids = [str(i) for i in batch["id"][ok]]
    table = pa.table({
        "id": ids,
        "source": [str(s) for s in batch["source"][ok]],
        "modality": [modality] * len(ids),
        "caption": [str(c) for c in batch["caption"][ok]],
        "url": [str(u) or None for u in batch["url"][ok]],
        "clip": _list_array(batch["clip"][ok]),
        "clap": _list_array(batch["clap"][ok]),
    }, schema=PAIR_SCHEMA)
    if ids:
        name = hashlib.sha1("\n".join(sorted(ids)).encode()).hexdigest()[:20]
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        storage.write_bytes_atomic(storage.join(output, f"part-{name}.parquet"), buffer.getvalue())
    stage_s = {stage: float(np.sum(batch[f"{stage}_s"])) for stage in STAGES[:-1] if f"{stage}_s" in batch}
    stage_s["write"] = time.perf_counter() - started
    return {
        "rows": np.array([len(ids)]),
        "batch_rows": np.array([len(batch["id"])]),
        "failures": np.array([json.dumps(Counter(str(e) for e in batch["error"][~ok]))], dtype=object),
        "clip_truncated": np.array([int(batch["clip_truncated"][ok].sum())]),
        "clap_truncated": np.array([int(batch["clap_truncated"][ok].sum())]),
        "stage_s": np.array([json.dumps(stage_s)], dtype=object),
        "clip_norms": np.array([np.linalg.norm(batch["clip"][ok], axis=1).astype(np.float32).tobytes()], dtype=object),
        "clap_norms": np.array([np.linalg.norm(batch["clap"][ok], axis=1).astype(np.float32).tobytes()], dtype=object),
    }


def _list_array(vectors: np.ndarray) -> pa.Array:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    offsets = np.arange(len(vectors) + 1, dtype=np.int32) * (vectors.shape[1] if vectors.ndim == 2 else 0)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(vectors.reshape(-1)))


def _per_row(started: float, count: int) -> np.ndarray:
    """A batch's seconds spread over its rows, so stage times survive Ray's re-batching."""
    return np.full(count, (time.perf_counter() - started) / max(count, 1))


# 3. Runner: wire the stages, stream the summaries back, write stats.json and the norm histograms.


def build_dataset(config: EmbedConfig, rows: pd.DataFrame, image_size: int | None):
    import ray

    forwarded = storage.worker_env()
    env = {"env_vars": forwarded} if forwarded else None  # a runtime env, even empty, needs fresh workers
    # Blocks of a few encoder batches: big enough that per-task overhead stays small, small enough to stream.
    block_rows = BATCHES_PER_BLOCK * config.batch_size
    # Missing URLs travel as '' (an all-null column would reach the writer as float NaN); written as null.
    rows = rows.assign(url=rows["url"].fillna(""))
    if config.modality == "image":
        # A block never spans two tars, so each read task opens one tar.
        groups = [group for _, group in rows.groupby("tar", sort=False)]
        blocks = [g.iloc[i:i + block_rows] for g in groups for i in range(0, len(g), block_rows)]
    else:
        blocks = [rows.iloc[i:i + block_rows] for i in range(0, len(rows), block_rows)]
    dataset = ray.data.from_pandas([b.reset_index(drop=True) for b in blocks])
    if config.modality == "image":
        # Read and decode run as one CPU task per block (timed as two stages). The memory reservation (a
        # block's pixels on top of a worker's base) also keeps Ray Data from fusing them into the encoder
        # actors, as it does for stages with equal resources: decoding runs beside encoding, not inside it.
        dataset = dataset.map_batches(load_images, fn_kwargs={"image_size": image_size}, batch_format="numpy",
                                      batch_size=None, runtime_env=env, num_cpus=TASK_CPUS,
                                      memory=512 * 2**20 + 8 * block_rows * 3 * image_size ** 2)
    dataset = dataset.map_batches(
        PairEncoder, fn_constructor_kwargs={"models": config.models, "modality": config.modality,
                                            "batch_size": config.batch_size, "device": config.device},
        compute=ray.data.ActorPoolStrategy(min_size=config.actors, max_size=config.actors),
        num_gpus=config.gpus_per_actor, num_cpus=actor_cpus(config), batch_size=config.batch_size,
        batch_format="numpy", runtime_env=env)
    return dataset.map_batches(write_part, fn_kwargs={"output": config.output, "modality": config.modality},
                               batch_size=config.rows_per_part, batch_format="numpy", runtime_env=env,
                               num_cpus=TASK_CPUS)


def actor_cpus(config: EmbedConfig) -> float:
    """CPUs (and so torch threads) per encoder actor: 1 beside a GPU; without one, the largest node's CPUs
    shared by the actors, less room for one read and one write task (one thread per actor measured 0.6x
    the plain loop on a 2-core node)."""
    import ray

    if config.cpus_per_actor is not None:
        return config.cpus_per_actor
    if config.gpus_per_actor:
        return 1.0
    nodes = [n["Resources"].get("CPU", 0.0) for n in ray.nodes() if n.get("Alive")]
    return max((max(nodes, default=1.0) - 2 * TASK_CPUS) / config.actors, TASK_CPUS)


def check_resources(config: EmbedConfig) -> None:
    import ray

    cpus = ray.cluster_resources().get("CPU", 0)
    if config.actors * actor_cpus(config) >= cpus:
        raise ConfigError(f"--actors {config.actors} x --cpus-per-actor {actor_cpus(config):g} takes all "
                         f"{cpus:g} CPUs of the Ray cluster, leaving none for reading, decoding and writing")


def run_embed(config: EmbedConfig, log=print) -> dict:
    """Embed every row of the input not yet in the output; returns the stats written to stats.json."""
    # 1. Plan on the driver: clean rows, drop duplicates and rows already written by an earlier run.
    started = time.perf_counter()
    work = plan(config)
    storage.check_output(config.output)
    storage.makedirs(config.output)
    with lease.Lease(config.output, take_over=config.take_over_lease):
        return _embed_leased(config, work, started, log)


def _embed_leased(config: EmbedConfig, work: Plan, started: float, log) -> dict:

    models = config.models
    storage.claim_output(config.output, {"job": "embed", "source": config.source, "clip_model": models.clip.model,
                                         "clip_pretrained": models.clip.pretrained, "audioldm": models.audioldm})
    log(f"{len(work.rows)} rows to embed ({work.already_done} already in {config.output}, "
        f"{sum(work.failures.values())} skipped, {work.truncated} captions cut at "
        f"{sources.MAX_CAPTION_CHARS} characters)")

    # 2. Stream the rows through the stages; each written part comes back as one summary row.
    summaries = []
    if len(work.rows):
        from i2a_core.quiet import init_ray

        init_ray()
        require_shared_output(config.output)
        check_resources(config)
        image_size = clip_image_size(config.models.clip) if config.modality == "image" else None
        with Progress(len(work.rows), "embed", "rows") as progress:
            for batch in build_dataset(config, work.rows, image_size).iter_batches(batch_size=None,
                                                                                   batch_format="numpy"):
                summaries.append(batch)
                progress.update(int(batch["batch_rows"].sum()))
    wall_s = time.perf_counter() - started

    # 3. Stats and histograms.
    stats = _stats(config, work, summaries, wall_s)
    storage.write_text_atomic(storage.join(config.output, "stats.json"), json.dumps(stats, indent=2))
    for name in ("clip", "clap"):
        norms = np.concatenate([np.frombuffer(b, np.float32) for s in summaries for b in s[f"{name}_norms"]]
                               or [np.zeros(0, np.float32)])
        storage.write_bytes_atomic(storage.join(config.output, f"{name}_norms.png"), _histogram(name, norms))
    return stats


def _stats(config: EmbedConfig, work: Plan, summaries: list[dict], wall_s: float) -> dict:
    failures, stage_s = Counter(work.failures), Counter()
    written = truncated_clip = truncated_clap = 0
    for s in summaries:
        written += int(s["rows"].sum())
        truncated_clip += int(s["clip_truncated"].sum())
        truncated_clap += int(s["clap_truncated"].sum())
        for f in s["failures"]:
            failures.update(json.loads(f))
        for t in s["stage_s"]:
            stage_s.update(json.loads(t))
    processed = int(sum(s["batch_rows"].sum() for s in summaries))
    return {
        "source": config.source,
        "input": config.input,
        "output": config.output,
        "models": config.models.describe(),
        "random_weights": config.models.random_weights,  # `i2a train` says so in its leaderboard
        "input_rows": work.input_rows,
        "rows": work.already_done + written,  # rows in the output after this run
        "rows_written": written,
        "rows_already_done": work.already_done,
        "failures": dict(failures.most_common()),
        # Cut at sources.MAX_CAPTION_CHARS before tokenizing, then by each tokenizer's own limit.
        "truncated_captions": {"characters": work.truncated, "clip": truncated_clip, "clap": truncated_clap},
        # Busy seconds summed over every worker of a stage: rows/s is one worker's throughput.
        "stages": {stage: {"rows": processed, "busy_s": round(seconds, 4),
                           "rows_per_s": round(processed / seconds, 2) if seconds else None}
                   for stage, seconds in stage_s.items()},
        "wall_s": round(wall_s, 3),
        "rows_per_s": round(written / wall_s, 2) if wall_s else None,
    }


def _histogram(name: str, norms: np.ndarray) -> bytes:
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
    axis.set_ylabel("rows (count)")
    axis.set_title(f"{name.upper()} vector norms ({len(norms)} rows written this run)")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
