"""Embedding Parquet -> validated, split, memory-mapped training arrays (one streaming pass, shared by all trials).

The test split is stored in the order of a second hash of each row's id (its pool key), so that retrieval
pools of any size are consecutive runs of rows: pool i of size P is test rows [i*P, (i+1)*P).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyarrow.fs import FSSpecHandler, PyFileSystem

from i2a_core.errors import DatasetError
from i2a_core.io import storage
from i2a_core.refs import cache_dir

# The embed job's output contract (issue 3); training reads nothing else.
REQUIRED_COLUMNS = ("id", "source", "modality", "caption", "clip", "clap")
SPLITS = ("train", "val", "test")
# Dataset groups of the thesis grid: which rows each trains on.
DATASET_GROUPS = ("audiocaps", "images", "all")
PREPARED_VERSION = "3"  # bump when the prepared layout changes (3: test rows in pool-key order)
READ_BATCH_ROWS = 8192
# Retrieval metrics rank each test row's target among a pool of this many test rows (the 1k protocol), so
# that R@k means the same at any dataset size; `i2a train --pool-size` changes it.
DEFAULT_POOL_SIZE = 1000

def split_of(row_id: str, val_fraction: float = 0.1, test_fraction: float = 0.1) -> str:
    """train/val/test by a hash of the id alone: the same for every trial, run and machine."""
    digest = hashlib.blake2b(row_id.encode("utf-8"), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def pool_key(row_id: str) -> int:
    """A test row's place in the pool order: a hash of the id alone (salted, so unrelated to its split)."""
    return int.from_bytes(hashlib.blake2b(row_id.encode("utf-8"), digest_size=8, person=b"i2a-pool").digest(), "big")


def parquet_files(url: str) -> list[str]:
    """The Parquet files at `url` (one file, or every *.parquet below a folder), sorted."""
    fs, path = storage.filesystem(url)
    if not fs.exists(path):
        raise DatasetError(f"{url}: no such file or folder")
    if fs.isdir(path):
        # Hidden and underscore files are writers' temporaries and markers, not data.
        files = sorted(p for p in fs.find(path)
                       if p.endswith(".parquet") and not os.path.basename(p).startswith((".", "_")))
        if not files:
            raise DatasetError(f"{url}: empty input (no .parquet files in the folder)")
        return files
    return [path]


def input_fingerprint(url: str) -> str:
    """Changes when the input files change (names and sizes), so stale prepared data is never reused."""
    fs, _ = storage.filesystem(url)
    parts = [f"{p}:{fs.size(p)}" for p in parquet_files(url)]
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=8).hexdigest()


@dataclass
class SplitArrays:
    """One split's rows: raw CLIP vectors, CLAP targets and per-row flags (memory-mapped, read lazily)."""

    clip: np.ndarray  # [n, clip_dim] float32
    clap: np.ndarray  # [n, clap_dim] float32
    is_audiocaps: np.ndarray  # [n] bool
    is_image: np.ndarray  # [n] bool

    def __len__(self) -> int:
        return len(self.clip)

    def group_rows(self, group: str) -> np.ndarray:
        """Indices of the rows a dataset group trains on."""
        if group == "audiocaps":
            mask = self.is_audiocaps
        elif group == "images":
            mask = ~self.is_audiocaps
        elif group == "all":
            mask = np.ones(len(self), bool)
        else:
            raise ValueError(f"unknown dataset group '{group}' (choose from {', '.join(DATASET_GROUPS)})")
        return np.flatnonzero(mask)


@dataclass
class PreparedData:
    """Everything a trial needs: the three splits, dims, modality means and the input's row counts."""

    directory: str
    stats: dict
    splits: dict[str, SplitArrays]

    @property
    def clip_dim(self) -> int:
        return self.stats["clip_dim"]

    @property
    def clap_dim(self) -> int:
        return self.stats["clap_dim"]

    @property
    def image_mean(self) -> np.ndarray:
        return np.asarray(self.stats["image_mean"], np.float32)

    @property
    def text_mean(self) -> np.ndarray:
        return np.asarray(self.stats["text_mean"], np.float32)

    def retrieval_bank(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """AudioCaps (CLIP text, CLAP, caption) pairs from train+val: the retrieval translator's memory."""
        with open(os.path.join(self.directory, "bank_captions.json"), encoding="utf-8") as f:
            captions = json.load(f)
        clip, clap = [], []
        for split in ("train", "val"):
            rows = self.splits[split].group_rows("audiocaps")
            clip.append(np.asarray(self.splits[split].clip[rows]))
            clap.append(np.asarray(self.splits[split].clap[rows]))
        return np.concatenate(clip), np.concatenate(clap), captions


class _SplitWriter:
    """Appends one split's rows to flat float32/uint8 (and, for test, uint64 pool key) files: one batch in memory."""

    def __init__(self, directory: str, split: str):
        names = ("clip", "clap", "flags", "keys") if split == "test" else ("clip", "clap", "flags")
        self.files = {name: open(os.path.join(directory, f"{split}.{name}"), "wb") for name in names}
        self.rows = 0

    def append(self, clip: np.ndarray, clap: np.ndarray, flags: np.ndarray, keys: np.ndarray | None = None) -> None:
        self.files["clip"].write(np.ascontiguousarray(clip, np.float32).tobytes())
        self.files["clap"].write(np.ascontiguousarray(clap, np.float32).tobytes())
        self.files["flags"].write(np.ascontiguousarray(flags, np.uint8).tobytes())
        if "keys" in self.files:
            self.files["keys"].write(np.ascontiguousarray(keys, np.uint64).tobytes())
        self.rows += len(clip)

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def _sort_test_by_pool_key(directory: str, rows: int, clip_dim: int, clap_dim: int) -> None:
    """Rewrite the test split's files in pool-key order, a batch of rows at a time.

    Memory: the keys and their order (16 bytes per test row: 60 MB at WIT's 3.76M test rows) plus one batch.
    """
    keys_path = os.path.join(directory, "test.keys")
    keys = np.fromfile(keys_path, np.uint64)
    order = np.argsort(keys, kind="stable")  # equal keys (a repeated id) keep their input order
    for name, dtype, dim in (("clip", np.float32, clip_dim), ("clap", np.float32, clap_dim), ("flags", np.uint8, 1)):
        path = os.path.join(directory, f"test.{name}")
        unsorted = np.memmap(path, dtype, mode="r", shape=(rows, dim))
        with open(f"{path}.sorted", "wb") as out:
            for start in range(0, rows, READ_BATCH_ROWS):
                index = order[start:start + READ_BATCH_ROWS]
                forward = np.sort(index)  # read the map forwards, then put the rows in key order
                batch = np.asarray(unsorted[forward])[np.searchsorted(forward, index)]
                out.write(np.ascontiguousarray(batch).tobytes())
        del unsorted
        os.replace(f"{path}.sorted", path)
    keys[order].tofile(keys_path)


def _vectors(column, dim: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int | None]:
    """A list<float> column as [n, dim] float32, a mask of rows of length `dim`, and a mask of those also finite.

    When the dim is not yet known it is the most common length in this batch (dims come from the data,
    and one malformed first row must not make every good row look wrong).
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    # list_value_length also takes fixed-size and large lists, which a producer may write instead.
    lengths = pc.list_value_length(column).fill_null(0).to_numpy(zero_copy_only=False)
    if dim is None and (lengths > 0).any():
        dim = int(np.bincount(lengths[lengths > 0]).argmax())
    if dim is None:
        empty = np.zeros(len(column), bool)
        return np.zeros((len(column), 0), np.float32), empty, empty, None
    length_ok = lengths == dim
    out = np.zeros((len(column), dim), np.float32)
    if length_ok.any():
        values = column.filter(pa.array(length_ok)).flatten().to_numpy(zero_copy_only=False)
        out[length_ok] = np.asarray(values, np.float32).reshape(-1, dim)
    return out, length_ok, length_ok & np.isfinite(out).all(axis=1), dim


def prepare(input_url: str, work_dir: str, val_fraction: float = 0.1, test_fraction: float = 0.1) -> str:
    """Stream the embedding Parquet once into `work_dir`/<fingerprint>/ and return that directory.

    Reads READ_BATCH_ROWS rows at a time (only the needed columns), drops rows whose vectors are null,
    of the wrong length or non-finite (counting each reason), splits by id hash, and appends each split's
    vectors to flat files that trials memory-map. Reuses an earlier preparation of the same input.
    """
    fingerprint = input_fingerprint(input_url)
    split_tag = f"v{val_fraction:g}-t{test_fraction:g}"
    target = os.path.join(work_dir, f"prepared-v{PREPARED_VERSION}-{fingerprint}-{split_tag}")
    if os.path.exists(os.path.join(target, "stats.json")):
        return target
    staging = f"{target}.{uuid.uuid4().hex}.partial"
    os.makedirs(staging)  # the parent work_dir too
    try:
        stats = _prepare_into(input_url, staging, fingerprint, val_fraction, test_fraction)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    with open(os.path.join(staging, "stats.json"), "w") as f:
        json.dump(stats, f, indent=2)  # written last: a prepared folder without it is unfinished
    try:
        os.rename(staging, target)
    except OSError:  # a concurrent preparation of the same input finished first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _open_files(input_url: str, files: list[str]) -> tuple[dict[str, pq.ParquetFile], dict[str, int | None]]:
    """Open every file, check its columns, and check that all files agree on the vector dims.

    The dims of a file are those of its first rows (the most common length). Files that disagree are
    refused together, by name: mixing them would silently drop whichever rows came second.
    """
    fs, _ = storage.filesystem(input_url)
    arrow_fs = PyFileSystem(FSSpecHandler(fs))
    opened, dims_by_file = {}, {}
    for path in files:
        try:
            parquet = pq.ParquetFile(arrow_fs.open_input_file(path))
            schema = parquet.schema_arrow
        except (pa.ArrowException, OSError) as e:
            raise DatasetError(f"{path}: not readable as Parquet ({_first_line(e)})") from None
        missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
        if missing:
            raise DatasetError(f"{path}: missing column(s) {', '.join(missing)} "
                               f"(the embedding contract needs {', '.join(REQUIRED_COLUMNS)})")
        for name in REQUIRED_COLUMNS:
            kind = schema.field(name).type
            vector = name in ("clip", "clap")
            if vector and not ((pa.types.is_list(kind) or pa.types.is_large_list(kind)
                                or pa.types.is_fixed_size_list(kind))
                               and (pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type))):
                raise DatasetError(f"{path}: column {name} is {kind}, expected a list of floats")
            if not vector and not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
                                   or pa.types.is_null(kind)):
                raise DatasetError(f"{path}: column {name} is {kind}, expected strings")
        opened[path] = parquet
        dims = {"clip": None, "clap": None}
        try:
            for batch in parquet.iter_batches(batch_size=1024, columns=["clip", "clap"]):
                for name in dims:
                    dims[name] = dims[name] or _vectors(batch.column(name), None)[3]
                if all(dims.values()):
                    break
        except (pa.ArrowException, OSError) as e:
            raise DatasetError(f"{path}: corrupt Parquet ({_first_line(e)})") from None
        dims_by_file[path] = dims
    agreed = {}
    for name in ("clip", "clap"):
        groups: dict[int, list[str]] = {}
        for path, dims in dims_by_file.items():
            if dims[name] is not None:
                groups.setdefault(dims[name], []).append(path)
        if len(groups) > 1:
            described = "; ".join(f"{dim}-d in {', '.join(paths[:5])}{f' and {len(paths) - 5} more' if len(paths) > 5 else ''}"
                                  for dim, paths in sorted(groups.items(), key=lambda item: -len(item[1])))
            raise DatasetError(f"{input_url}: files disagree on the {name} vector dims ({described}); "
                               f"train on files from one embedding run")
        agreed[name] = next(iter(groups), None)
    return opened, agreed


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


def _prepare_into(input_url: str, staging: str, fingerprint: str, val_fraction: float,
                  test_fraction: float) -> dict:
    opened, known_dims = _open_files(input_url, parquet_files(input_url))

    def batches():
        for path, parquet in opened.items():
            try:
                yield from parquet.iter_batches(batch_size=READ_BATCH_ROWS, columns=list(REQUIRED_COLUMNS))
            except (pa.ArrowException, OSError) as e:
                raise DatasetError(f"{path}: corrupt Parquet ({_first_line(e)})") from None

    writers = {split: _SplitWriter(staging, split) for split in SPLITS}
    dims: dict[str, int | None] = dict(known_dims)
    counts = {"rows_read": 0, "null_or_wrong_dim_clip": 0, "null_or_wrong_dim_clap": 0, "non_finite": 0}
    sums = {"image": None, "text": None}
    sum_rows = {"image": 0, "text": 0}
    bank_captions: dict[str, list[str]] = {"train": [], "val": []}
    try:
        for batch in batches():
            if batch.num_rows == 0:
                continue
            counts["rows_read"] += batch.num_rows
            clip, clip_len_ok, clip_ok, dims["clip"] = _vectors(batch.column("clip"), dims["clip"])
            clap, clap_len_ok, clap_ok, dims["clap"] = _vectors(batch.column("clap"), dims["clap"])
            counts["null_or_wrong_dim_clip"] += int((~clip_len_ok).sum())
            counts["null_or_wrong_dim_clap"] += int((clip_len_ok & ~clap_len_ok).sum())
            counts["non_finite"] += int((clip_len_ok & clap_len_ok & ~(clip_ok & clap_ok)).sum())
            keep = clip_ok & clap_ok
            ids = batch.column("id").to_pylist()
            sources = batch.column("source").to_pylist()
            modalities = batch.column("modality").to_pylist()
            captions = batch.column("caption").to_pylist()
            split = np.array([split_of(str(i), val_fraction, test_fraction) for i in ids])
            is_audiocaps = np.array([s == "audiocaps" for s in sources], bool)
            test_rows = np.flatnonzero(keep & (split == "test"))
            test_keys = np.fromiter((pool_key(str(ids[i])) for i in test_rows), np.uint64, len(test_rows))
            is_image = np.array([m == "image" for m in modalities], bool)
            flags = is_audiocaps.astype(np.uint8) | (is_image.astype(np.uint8) << 1)
            for name in SPLITS:
                rows = np.flatnonzero(keep & (split == name))
                writers[name].append(clip[rows], clap[rows], flags[rows], test_keys if name == "test" else None)
                if name == "train":  # modality means come from training rows only
                    for modality, mask in (("image", is_image[rows]), ("text", ~is_image[rows])):
                        if mask.any():
                            part = clip[rows][mask].astype(np.float64).sum(axis=0)
                            sums[modality] = part if sums[modality] is None else sums[modality] + part
                            sum_rows[modality] += int(mask.sum())
                if name != "test":  # the retrieval bank's captions, in the order retrieval_bank() reads rows
                    bank_captions[name].extend(str(captions[i]) for i in rows if is_audiocaps[i])
    finally:
        for writer in writers.values():
            writer.close()

    valid = sum(w.rows for w in writers.values())
    if counts["rows_read"] == 0:
        raise DatasetError(f"{input_url}: empty input (no rows)")
    if valid == 0:
        raise DatasetError(f"{input_url}: no valid rows among {counts['rows_read']} "
                           f"(bad rows: {_describe_bad(counts)})")
    if writers["test"].rows:
        _sort_test_by_pool_key(staging, writers["test"].rows, dims["clip"], dims["clap"])
    stats = {
        "input": input_url, "fingerprint": fingerprint, "clip_dim": dims["clip"], "clap_dim": dims["clap"],
        "rows": {name: writers[name].rows for name in SPLITS}, "rows_valid": valid,
        "rows_skipped": {k: v for k, v in counts.items() if k != "rows_read"}, "rows_read": counts["rows_read"],
        "val_fraction": val_fraction, "test_fraction": test_fraction,
        "image_mean": _mean(sums["image"], sum_rows["image"], dims["clip"]),
        "text_mean": _mean(sums["text"], sum_rows["text"], dims["clip"]),
        "mean_rows": sum_rows,
        "test_order": "pool key (blake2b of the id, person i2a-pool); pool i of size P is test rows [i*P, (i+1)*P)",
    }
    with open(os.path.join(staging, "bank_captions.json"), "w", encoding="utf-8") as f:
        json.dump(bank_captions["train"] + bank_captions["val"], f)
    return stats


def _mean(total, rows: int, dim: int | None) -> list[float]:
    if total is None or rows == 0:
        return [0.0] * (dim or 0)
    return (total / rows).astype(np.float32).tolist()


def _describe_bad(counts: dict) -> str:
    bad = {k: v for k, v in counts.items() if k != "rows_read" and v}
    return ", ".join(f"{k}={v}" for k, v in bad.items()) or "none"


def _mapped(directory: str, split: str, name: str, rows: int, dim: int) -> np.ndarray:
    if rows == 0:
        return np.zeros((0, dim), np.float32)
    return np.memmap(os.path.join(directory, f"{split}.{name}"), np.float32, mode="r", shape=(rows, dim))


def load_prepared(directory: str) -> PreparedData:
    """Memory-map a prepared directory: nothing is read until a trial indexes it."""
    with open(os.path.join(directory, "stats.json")) as f:
        stats = json.load(f)
    splits = {}
    for split in SPLITS:
        n = stats["rows"][split]
        flags = np.fromfile(os.path.join(directory, f"{split}.flags"), np.uint8)
        splits[split] = SplitArrays(clip=_mapped(directory, split, "clip", n, stats["clip_dim"]),
                                    clap=_mapped(directory, split, "clap", n, stats["clap_dim"]),
                                    is_audiocaps=(flags & 1).astype(bool), is_image=(flags & 2).astype(bool))
    return PreparedData(directory=directory, stats=stats, splits=splits)


def open_prepared(data_url: str) -> PreparedData:
    """Memory-map the prepared arrays: in place when local, else from this node's copy (made once)."""
    if storage.is_remote(data_url):
        # On the driver's node the arrays were prepared here before the upload: no need to download them.
        here = os.path.join(cache_dir(), "prepared", data_key(data_url))
        if os.path.exists(os.path.join(here, "stats.json")):
            return load_prepared(here)
    return load_prepared(storage.local_copy(data_url, os.path.join(cache_dir(), "downloads")))


def data_key(data_url: str) -> str:
    """Names the prepared data: layout version, input fingerprint and split fractions (see prepare)."""
    return data_url.rstrip("/").rsplit("/", 1)[-1]


def group_problem(data: PreparedData, dataset: str) -> str:
    """Why a dataset group cannot be trained ('' when it can)."""
    train = len(data.splits["train"].group_rows(dataset))
    val = len(data.splits["val"].group_rows(dataset))
    if train == 0 or val == 0:
        return f"dataset '{dataset}' has no rows in the input's {'train' if train == 0 else 'val'} split"
    return ""
