"""Caption tables (AudioCaps, WIT, Conceptual Captions, any CSV/TSV/Parquet) read into one row schema."""

from __future__ import annotations

import csv
import hashlib
import math
import os
import urllib.error
import urllib.request

import fsspec
import pandas as pd

from i2a_core.errors import SourceError
from i2a_core.io import storage

# Every reader returns these columns: the row schema that fetch and embed share.
ROW_COLUMNS = ["id", "source", "caption", "url"]

AUDIOCAPS_TRAIN_URL = "https://raw.githubusercontent.com/cdjkim/audiocaps/master/dataset/train.csv"
AUDIOCAPS_COLUMNS = ["audiocap_id", "youtube_id", "start_time", "caption"]
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


def _read_delimited(path: str, **kwargs) -> pd.DataFrame:
    """A CSV/TSV, plain or compressed, local or remote; every cell a string, empty cells ''."""
    try:
        with fsspec.open(path, "rb", compression="infer") as f:
            return pd.read_csv(f, dtype=str, keep_default_na=False, **kwargs)
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: cannot parse ({e})") from None


def _require(frame: pd.DataFrame, columns: list[str], path: str, what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SourceError(f"{path}: not {what}: missing column(s) {', '.join(missing)} "
                          f"(has {', '.join(map(str, frame.columns[:20]))})")


def _image_rows(source: str, urls, captions) -> pd.DataFrame:
    urls = [str(u).strip() if u is not None and not (isinstance(u, float) and math.isnan(u)) else "" for u in urls]
    rows = pd.DataFrame({"source": source, "caption": [clean_caption(c) for c in captions], "url": urls})
    rows = rows[rows["url"] != ""].reset_index(drop=True)
    rows.insert(0, "id", [image_id(source, url) for url in rows["url"]])
    return rows[ROW_COLUMNS]


def read_wit(path: str, languages: list[str] | None = None) -> pd.DataFrame:
    """WIT's 17-column TSV (plain or gzipped); rows without an image URL are dropped."""
    frame = _read_delimited(path, sep="\t", quoting=csv.QUOTE_NONE)
    _require(frame, ["language", "image_url", *WIT_CAPTION_ORDER], path, "a WIT TSV")
    if languages:
        frame = frame[frame["language"].isin(languages)]
    caption = frame[WIT_CAPTION_ORDER[0]].map(clean_caption)
    for fallback in WIT_CAPTION_ORDER[1:]:
        caption = caption.where(caption != "", frame[fallback].map(clean_caption))
    return _image_rows("wit", frame["image_url"], caption)


def read_cc(path: str) -> pd.DataFrame:
    """Conceptual Captions: `caption<TAB>url`, no header."""
    frame = _read_delimited(path, sep="\t", header=None, quoting=csv.QUOTE_NONE)
    if frame.shape[1] != 2:
        raise SourceError(f"{path}: not a Conceptual Captions TSV: expected 2 tab-separated columns "
                          f"(caption, url), found {frame.shape[1]}")
    return _image_rows("cc", frame[1], frame[0])


def read_table(path: str, url_col: str = "url", caption_col: str = "caption", source: str = "table") -> pd.DataFrame:
    """Any CSV, TSV or Parquet table with a URL and a caption column."""
    name = path.split("?")[0].lower()
    if name.endswith(".parquet"):
        try:
            with fsspec.open(path, "rb") as f:
                frame = pd.read_parquet(f)
        except FileNotFoundError:
            raise SourceError(f"{path}: no such file") from None
    else:
        tsv = name.removesuffix(".gz").endswith((".tsv", ".tab"))
        frame = _read_delimited(path, sep="\t" if tsv else ",")
    _require(frame, [url_col, caption_col], path, "a table with --url-col/--caption-col")
    return _image_rows(source, frame[url_col], frame[caption_col])


def audiocaps_csv(path: str | None) -> str:
    """The AudioCaps CSV to read: `path`, or the official train CSV downloaded once into the i2a cache."""
    if path:
        return path
    from i2a_core import refs  # imports torch (via the tiny models); readers elsewhere stay light

    target = os.path.join(refs.cache_dir(), "audiocaps", "train.csv")
    if not os.path.exists(target):
        try:
            with urllib.request.urlopen(AUDIOCAPS_TRAIN_URL, timeout=30) as response:
                data = response.read()
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise SourceError(f"{AUDIOCAPS_TRAIN_URL}: cannot download the AudioCaps train CSV ({e}); "
                              f"pass --input CSV") from None
        storage.write_bytes_atomic(target, data)
    return target


def read_audiocaps(path: str) -> pd.DataFrame:
    """AudioCaps rows (`audiocap_id,youtube_id,start_time,caption`) as id `audiocaps-<audiocap_id>`, no URL."""
    frame = _read_delimited(path)
    _require(frame, ["audiocap_id", "caption"], path, "an AudioCaps CSV")
    ids = frame["audiocap_id"].str.strip()
    return pd.DataFrame({
        "id": ["audiocaps-" + i if i else "" for i in ids],
        "source": "audiocaps",
        "caption": frame["caption"].map(clean_caption),
        "url": None,
    })[ROW_COLUMNS]
