"""Download a URL/caption table into webdataset shards with img2dataset, resumably, and summarise the outcome."""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from i2a_core.io import sources, storage

DISTRIBUTORS = ("multiprocessing", "ray")
SOURCES = ("wit", "cc", "table")


@dataclass(frozen=True)
class FetchConfig:
    source: str  # wit | cc | table
    input: str
    output: str
    image_size: int
    languages: tuple[str, ...] = ()
    url_col: str = "url"
    caption_col: str = "caption"
    distributor: str = "multiprocessing"
    processes: int = 1
    threads: int = 64
    shard_size: int = 10_000
    timeout_s: int = 10
    retries: int = 0


@dataclass
class FetchSummary:
    rows: int  # rows of the input table with a URL
    successes: int
    failures: Counter  # reason -> count
    shards: int

    def lines(self) -> list[str]:
        out = [f"{self.successes} of {self.rows} images fetched into {self.shards} shard(s), "
               f"{sum(self.failures.values())} failed"]
        out += [f"  {count:>8}  {reason}" for reason, count in self.failures.most_common()]
        return out


def source_windows(config: FetchConfig) -> Iterator[pa.Table]:
    """The input table in the shared row schema, in windows, in input order (shard numbering depends on it)."""
    if config.source == "wit":
        return sources.wit_windows(config.input, list(config.languages))
    if config.source == "cc":
        return sources.cc_windows(config.input)
    if config.source == "table":
        return sources.table_windows(config.input, config.url_col, config.caption_col)
    raise sources.SourceError(f"unknown source '{config.source}' (choose from {', '.join(SOURCES)})")


def run_fetch(config: FetchConfig) -> FetchSummary:
    """Fetch every row's image; shards finished by an earlier run with the same input are skipped."""
    from img2dataset import download

    # 1. One table in the row schema, so every source shards the same way and keeps its id and source; written
    #    a window at a time (WIT's 37.6M rows never sit in memory).
    windows = source_windows(config)
    storage.makedirs(config.output)
    with tempfile.TemporaryDirectory(prefix="i2a-fetch-") as tmp:
        url_list = os.path.join(tmp, "rows.parquet")
        rows = 0
        with pq.ParquetWriter(url_list, sources.ROW_SCHEMA) as writer:
            for window in windows:
                writer.write_table(window)
                rows += window.num_rows
        # 2. img2dataset writes <shard>.tar + <shard>.parquet + <shard>_stats.json; the stats file marks
        #    a finished shard, and incremental mode skips those on a rerun.
        download(
            url_list=url_list, input_format="parquet", url_col="url", caption_col="caption",
            save_additional_columns=["id", "source"], output_folder=config.output, output_format="webdataset",
            image_size=config.image_size, resize_mode="center_crop", encode_format="jpg",
            processes_count=config.processes, thread_count=config.threads,
            number_sample_per_shard=config.shard_size, timeout=config.timeout_s, retries=config.retries,
            distributor=config.distributor, incremental_mode="incremental", extract_exif=False,
            enable_wandb=False,
        )
    # 3. Summary from the per-shard stats, including shards done by earlier runs.
    return summarise(config.output, rows)


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def summarise(output: str, rows: int) -> FetchSummary:
    """Successes and failures by reason over every finished shard in `output`."""
    fs, path = storage.filesystem(output)
    successes, failures, shards = 0, Counter(), 0
    for stats_path in sorted(fs.glob(path.rstrip("/") + "/*_stats.json")):
        with fs.open(stats_path, "r") as f:
            stats = json.load(f)
        shards += 1
        successes += stats["successes"]
        for message, count in stats["status_dict"].items():
            if message != "success":
                # img2dataset's messages embed object addresses; without them equal reasons count together.
                failures[_ADDRESS.sub("", message)] += count
    return FetchSummary(rows=rows, successes=successes, failures=failures, shards=shards)
