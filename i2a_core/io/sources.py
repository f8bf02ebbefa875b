"""Caption tables (AudioCaps, WIT, Conceptual Captions, any CSV/TSV/Parquet) read into one row schema, in windows.

Every reader streams: a window of WINDOW_ROWS rows at a time, never the whole table, so a 37.6M-row WIT TSV
costs a window's memory. `read_*` join the windows into one pandas frame for `i2a fetch` (img2dataset takes
the whole table as a file anyway).
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import urllib.error
import urllib.request
from typing import Iterable, Iterator

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from i2a_core.errors import SourceError, one_line
from i2a_core.io import storage

# Every reader returns these columns: the row schema that fetch and embed share.
ROW_SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string()), ("caption", pa.string()), ("url", pa.string())])
ROW_COLUMNS = ROW_SCHEMA.names
WINDOW_ROWS = 16_384  # rows per window: what a reader holds at once, whatever the table's size

AUDIOCAPS_TRAIN_URL = "https://raw.githubusercontent.com/cdjkim/audiocaps/master/dataset/train.csv"
WIT_COLUMNS = [
    "language", "page_url", "image_url", "page_title", "section_title", "hierarchical_section_title",
    "caption_reference_description", "caption_attribution_description", "caption_alt_text_description",
    "mime_type", "original_height", "original_width", "is_main_image", "attribution_passes_lang_id",
    "page_changed_recently", "context_page_description", "context_section_description",
]
# WIT's caption, best first: the reference description is what a page says about the image.
WIT_CAPTION_ORDER = ["caption_reference_description", "caption_alt_text_description",
                     "caption_attribution_description"]


def image_id(source: str, url: str) -> str:
    """A row id that is stable across reruns and re-fetches: the source and a hash of the URL."""
    return f"{source}-{hashlib.sha1(url.encode('utf-8')).hexdigest()[:20]}"


# Longest caption embed passes to the tokenizers, in characters (after whitespace is collapsed). Far past
# what CLIP (77 tokens) or CLAP (512 tokens) keep, so no embedding changes; an 8 MB scraped "caption" no
# longer costs gigabytes of tokens. Longer captions are cut and counted in stats.json.
MAX_CAPTION_CHARS = 8192


def clean_caption(value) -> str:
    """The caption as text; '' for missing, NaN or blank values (counted as empty downstream).

    Only a prefix of a huge value is cleaned (4 x MAX_CAPTION_CHARS), so the result stays short enough
    to handle and still shows that the caption was too long.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return " ".join(str(value)[:4 * MAX_CAPTION_CHARS].split())


def _delimited_windows(path: str, **kwargs) -> Iterator[pd.DataFrame]:
    """A CSV/TSV, plain or compressed, local or remote, in windows of WINDOW_ROWS rows; every cell a string,
    empty cells ''. A header-only table gives one empty window, so its columns can still be checked."""
    try:
        with fsspec.open(path, "rb", compression="infer") as f:
            reader = pd.read_csv(f, dtype=str, keep_default_na=False, chunksize=WINDOW_ROWS, **kwargs)
            while True:
                window = next(reader, None)
                if window is None:
                    return
                yield window
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except pd.errors.EmptyDataError:
        raise SourceError(f"{path}: an empty file, not a table") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: cannot parse ({one_line(str(e))[:300]})") from None


def _require(columns, wanted: list[str], path: str, what: str) -> None:
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise SourceError(f"{path}: not {what}: missing column(s) {', '.join(missing)} "
                          f"(has {', '.join(map(str, list(columns)[:20]))})")


def _url(value) -> str:
    return str(value).strip() if value is not None and not (isinstance(value, float) and math.isnan(value)) else ""


def _image_window(source: str, urls, captions) -> pa.Table:
    """Rows in ROW_SCHEMA; rows without a URL are dropped."""
    rows = [(url, clean_caption(caption)) for url, caption in zip(map(_url, urls), captions, strict=True) if url]
    return pa.table({"id": [image_id(source, url) for url, _ in rows], "source": [source] * len(rows),
                     "caption": [caption for _, caption in rows], "url": [url for url, _ in rows]},
                    schema=ROW_SCHEMA)


def _frame(windows: Iterable[pa.Table]) -> pd.DataFrame:
    """Windows as one pandas frame (fetch hands the whole table to img2dataset)."""
    return pa.concat_tables([ROW_SCHEMA.empty_table(), *windows]).to_pandas()


def wit_windows(path: str, languages: list[str] | None = None) -> Iterator[pa.Table]:
    """WIT's 17-column TSV (plain or gzipped), in windows; rows without an image URL are dropped."""
    for frame in _delimited_windows(path, sep="\t", quoting=csv.QUOTE_NONE):
        _require(frame.columns, ["language", "image_url", *WIT_CAPTION_ORDER], path, "a WIT TSV")
        if languages:
            frame = frame[frame["language"].isin(languages)]
        caption = frame[WIT_CAPTION_ORDER[0]].map(clean_caption)
        for fallback in WIT_CAPTION_ORDER[1:]:
            caption = caption.where(caption != "", frame[fallback].map(clean_caption))
        yield _image_window("wit", frame["image_url"], caption)


def cc_windows(path: str) -> Iterator[pa.Table]:
    """Conceptual Captions (`caption<TAB>url`, no header), in windows."""
    for frame in _delimited_windows(path, sep="\t", header=None, quoting=csv.QUOTE_NONE):
        if frame.shape[1] != 2:
            raise SourceError(f"{path}: not a Conceptual Captions TSV: expected 2 tab-separated columns "
                              f"(caption, url), found {frame.shape[1]}")
        yield _image_window("cc", frame[1], frame[0])


def table_windows(path: str, url_col: str = "url", caption_col: str = "caption",
                  source: str = "table") -> Iterator[pa.Table]:
    """Any CSV, TSV or Parquet table with a URL and a caption column, in windows."""
    what = "a table with --url-col/--caption-col"
    name = path.split("?")[0].lower()
    if not name.endswith(".parquet"):
        tsv = name.removesuffix(".gz").endswith((".tsv", ".tab"))
        for frame in _delimited_windows(path, sep="\t" if tsv else ","):
            _require(frame.columns, [url_col, caption_col], path, what)
            yield _image_window(source, frame[url_col], frame[caption_col])
        return
    try:
        with fsspec.open(path, "rb") as f:
            reader = pq.ParquetFile(f)
            _require(reader.schema_arrow.names, [url_col, caption_col], path, what)
            for batch in reader.iter_batches(batch_size=WINDOW_ROWS, columns=[url_col, caption_col]):
                yield _image_window(source, batch.column(0).to_pylist(), batch.column(1).to_pylist())
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except pa.ArrowException as e:
        raise SourceError(f"{path}: cannot read as Parquet ({one_line(str(e))[:300]})") from None


def read_wit(path: str, languages: list[str] | None = None) -> pd.DataFrame:
    """WIT rows (see wit_windows) as one frame."""
    return _frame(wit_windows(path, languages))


def read_cc(path: str) -> pd.DataFrame:
    """Conceptual Captions rows (see cc_windows) as one frame."""
    return _frame(cc_windows(path))


def read_table(path: str, url_col: str = "url", caption_col: str = "caption", source: str = "table") -> pd.DataFrame:
    """Rows of any URL + caption table (see table_windows) as one frame."""
    return _frame(table_windows(path, url_col, caption_col, source))


def audiocaps_csv(path: str | None, cache: str) -> str:
    """The AudioCaps CSV to read: `path`, or the official train CSV downloaded once into `cache` (the i2a cache,
    refs.cache_dir())."""
    if path:
        return path
    target = os.path.join(cache, "audiocaps", "train.csv")
    if not os.path.exists(target):
        try:
            with urllib.request.urlopen(AUDIOCAPS_TRAIN_URL, timeout=30) as response:
                data = response.read()
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise SourceError(f"{AUDIOCAPS_TRAIN_URL}: cannot download the AudioCaps train CSV ({e}); "
                              f"pass --input CSV") from None
        storage.write_bytes_atomic(target, data)
    return target


def audiocaps_windows(path: str) -> Iterator[pa.Table]:
    """AudioCaps rows (`audiocap_id,youtube_id,start_time,caption`) in windows, as id `audiocaps-<audiocap_id>`
    ('' when the id is blank) and no URL."""
    for frame in _delimited_windows(path):
        _require(frame.columns, ["audiocap_id", "caption"], path, "an AudioCaps CSV")
        ids = [i.strip() for i in frame["audiocap_id"].tolist()]  # not `.str`: its cycle keeps the window alive
        yield pa.table({"id": ["audiocaps-" + i if i else "" for i in ids], "source": ["audiocaps"] * len(ids),
                        "caption": [clean_caption(c) for c in frame["caption"]], "url": [None] * len(ids)},
                       schema=ROW_SCHEMA)
