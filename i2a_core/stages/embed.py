"""Embed's stages: image bytes out of webdataset tars, CLIP (image or text) + AudioLDM's CLAP (caption), pair rows.

Decoding is not here: embed decodes with stages.images.DecodeImages, CLIP's one preprocessing, as sonify does.
Every stage takes and returns a numpy batch and skips rows whose `error` is set; they are built where they
run (this process, a Ray actor), and drivers name them by dotted path.
"""

from __future__ import annotations

import collections
import tarfile
import time
import zlib
from dataclasses import dataclass

import numpy as np

from i2a_core.errors import classify, is_transient
from i2a_core.io import storage
from i2a_core.models.audioldm import ClapTextEncoder
from i2a_core.models.clip import ClipEncoder
from i2a_core.specs import ImageLimits, ModelSpec
from i2a_core.stages.images import objects, pending, strings

Batch = dict

TARS_KEPT = 4  # tars whose member index a reader keeps: a batch rarely spans more than two
SPAN_BYTES = 64 << 20  # one range read covers neighbouring members up to this many bytes...
SPAN_GAP = 1 << 20  # ...when less than this lies between one wanted member and the next
BROKEN, MISSING = "read_broken_tar", "read_missing_from_tar"
BROKEN_TAR = (tarfile.TarError, EOFError, zlib.error, OSError)  # what a truncated, corrupt or missing tar raises


def _seconds(started: float, count: int) -> np.ndarray:
    """A batch's seconds spread over its rows, so stage times survive re-batching."""
    return np.full(count, (time.perf_counter() - started) / max(count, 1))


@dataclass
class _Member:
    offset: int  # of its data in the tar
    size: int  # as its header says
    sparse: bool


@dataclass
class _TarIndex:
    """Where each `.jpg` member of a tar lies, from one pass over its headers."""

    members: dict  # member name -> _Member
    broken: bool  # the pass stopped at damage: members after it are unknown


class ReadTarMembers:
    """I/O stage: each row's JPEG out of its webdataset tar (`tar`, `key` columns -> `data` bytes).

    The first batch that needs a tar streams it once, taking its headers into an index and that batch's images
    on the way; later batches of the same tar read only their own members, one range request per run of
    neighbours. So a shard is read about once per process, not once per batch.

    A member larger than `max_bytes` by its header (a sparse member of a tiny tar can claim gigabytes) is
    `image_too_large` and never read; a row whose image is not in its tar is `read_missing_from_tar`; a tar
    that is truncated or unreadable fails the rows it cannot give (`read_broken_tar`), or, when the store was
    down or slow, gives them that transient kind and is read again by the next batch.
    """

    def __init__(self, max_bytes: int = ImageLimits.max_bytes):
        self.max_bytes = max_bytes
        self.indexes: collections.OrderedDict[str, _TarIndex] = collections.OrderedDict()

    def __call__(self, batch: Batch) -> Batch:
        started = time.perf_counter()
        count = len(batch["key"])
        errors, kinds, names = strings(batch, "error"), strings(batch, "error_kind"), strings(batch, "display")
        data = [b""] * count
        wanted: dict[str, dict[str, int]] = {}  # tar -> {member name: row}
        for i, (tar, key) in enumerate(zip(strings(batch, "tar"), strings(batch, "key"), strict=True)):
            if not errors[i]:
                wanted.setdefault(tar, {})[f"{key}.jpg"] = i
        for tar, members in wanted.items():
            for i, got in self._read(tar, members).items():
                if isinstance(got, bytes):
                    data[i] = got
                else:
                    kinds[i], errors[i] = got[0], f"{names[i]}: {got[1]}"
        rest = {k: v for k, v in batch.items() if k not in ("tar", "key")}
        return {**rest, "data": objects(data), "error": objects(errors), "error_kind": objects(kinds),
                "read_s": _seconds(started, count)}

    def _read(self, tar: str, members: dict[str, int]) -> dict[int, bytes | tuple[str, str]]:
        """Per row: its bytes, or (kind, reason)."""
        found: dict[str, bytes | tuple[str, str]] = {}
        index = self.indexes.get(tar)
        if index is None:
            index, found, transient = self._scan(tar, set(members))
            if transient:  # the store, not the tar: nothing learnt about it, the next batch reads it again
                return {row: transient for row in members.values()}
            self.indexes[tar] = index
            while len(self.indexes) > TARS_KEPT:
                self.indexes.popitem(last=False)
        self.indexes.move_to_end(tar)
        results: dict[int, bytes | tuple[str, str]] = {}
        ranges = []
        for name, row in members.items():
            member = index.members.get(name)
            if name in found:
                results[row] = found[name]
            elif member is None:
                results[row] = (BROKEN, "its tar ends or breaks before this image") if index.broken else \
                    (MISSING, "image not in its tar")
            elif member.size > self.max_bytes or member.sparse:
                results[row] = self._refuse(member)
            else:
                ranges.append((member.offset, member.size, row))
        results.update(self._read_ranges(tar, ranges))
        return results

    def _refuse(self, member: _Member) -> tuple[str, str] | None:
        if member.size > self.max_bytes:
            return "image_too_large", f"{member.size:,} bytes by its tar header, over the {self.max_bytes:,}-byte limit"
        if member.sparse:
            return "read_sparse_member", "a sparse tar member, not an image file"
        return None

    def _scan(self, tar: str, wanted: set[str]) -> tuple[_TarIndex, dict, tuple[str, str] | None]:
        """One streamed pass over the tar: its `.jpg` headers, and the wanted members' bytes on the way."""
        members: dict[str, _Member] = {}
        found: dict[str, bytes | tuple[str, str]] = {}
        fs, path = storage.filesystem(tar)
        try:
            with fs.open(path, "rb") as f, tarfile.open(fileobj=f, mode="r|") as archive:
                while (member := archive.next()) is not None:
                    archive.members.clear()  # tarfile keeps every header it has read: a tar of many tiny files
                    if not member.isreg() or not member.name.endswith(".jpg"):
                        continue
                    entry = _Member(member.offset_data, member.size, member.issparse())
                    members[member.name] = entry
                    if member.name in wanted:
                        refused = self._refuse(entry)
                        found[member.name] = refused or archive.extractfile(member).read(member.size)
            return _TarIndex(members, broken=False), found, None
        except Exception as error:  # truncated, not a tar, gone, or the store failed: this tar's rows only
            kind, _ = classify(error, tar)
            if kind == "internal" and not isinstance(error, BROKEN_TAR):  # i2a's own bug, not the tar's: the
                raise  # runner makes it these rows' error and logs its traceback
            if is_transient(kind) and kind != "internal":
                return _TarIndex({}, broken=True), {}, (kind, f"its tar could not be read ({kind}); a rerun retries it")
            return _TarIndex(members, broken=True), found, None

    def _read_ranges(self, tar: str, ranges: list[tuple[int, int, int]]) -> dict[int, bytes | tuple[str, str]]:
        """The bytes of members at (offset, size, row), one range request per run of close neighbours."""
        results: dict[int, bytes | tuple[str, str]] = {}
        fs, path = storage.filesystem(tar)
        ranges.sort()
        start = 0
        while start < len(ranges):
            end = start + 1
            while end < len(ranges) and ranges[end][0] - (ranges[end - 1][0] + ranges[end - 1][1]) < SPAN_GAP \
                    and ranges[end][0] + ranges[end][1] - ranges[start][0] <= SPAN_BYTES:
                end += 1
            span = ranges[start:end]
            first, last = span[0][0], span[-1][0] + span[-1][1]
            try:
                blob = fs.cat_file(path, start=first, end=last)
            except Exception as error:  # the store, or a tar that changed since it was indexed
                kind, _ = classify(error, tar)
                failure = (kind, f"its tar could not be read ({kind}); a rerun retries it") \
                    if is_transient(kind) and kind != "internal" else (BROKEN, "its tar could not be read")
                results.update({row: failure for _, _, row in span})
            else:
                for offset, size, row in span:
                    piece = blob[offset - first:offset - first + size]
                    results[row] = piece if len(piece) == size else (BROKEN, "its tar ends inside this image")
            start = end
        return results


class EncodePairs:
    """Model stage: CLIP (the decoded image's pixels, or the caption's text) and AudioLDM's CLAP (the caption).

    CLIP vectors are kept as CLIP outputs them (not normalised); CLAP vectors as AudioLDM consumes them. Captions
    longer than either tokenizer keeps are truncated, as the encoders do, and flagged per row.
    """

    def __init__(self, models: ModelSpec, modality: str, batch_size: int = 64, device: str | None = None):
        self.modality = modality
        self.batch_size = batch_size
        self.clip = ClipEncoder(models.clip, device=device, batch_size=batch_size)
        self.clap = ClapTextEncoder.load(models.audioldm, device=device)

    def __call__(self, batch: Batch) -> Batch:
        count = len(batch["id"])
        ok = pending(batch)
        captions = [str(batch["caption"][i]) for i in ok]

        started = time.perf_counter()
        clip = np.zeros((count, self.clip.dim), np.float32)
        clip_truncated = np.zeros(count, bool)
        if ok and self.modality == "image":
            clip[ok] = self.clip.encode_pixels(np.asarray(batch["pixels"])[ok])
        elif ok:
            clip[ok] = self.clip.encode_texts(captions)
            clip_truncated[ok] = clip_truncation(self.clip, captions)
        clip_s = _seconds(started, count)

        started = time.perf_counter()
        clap = np.zeros((count, self.clap.dim), np.float32)
        clap_truncated = np.zeros(count, bool)
        if ok:
            clap[ok] = self.clap.encode(captions, batch_size=self.batch_size)
            clap_truncated[ok] = self.clap.truncated(captions)
        clap_s = _seconds(started, count)

        rest = {k: v for k, v in batch.items() if k not in ("pixels", "thumbnail", "warning")}
        return {**rest, "clip": clip, "clap": clap, "clip_truncated": clip_truncated,
                "clap_truncated": clap_truncated, "clip_s": clip_s, "clap_s": clap_s}


def clip_truncation(encoder: ClipEncoder, texts: list[str]) -> np.ndarray:
    """Which texts are longer than CLIP's context (open_clip truncates them silently)."""
    tokenizer = encoder.tokenizer
    if hasattr(tokenizer, "encode"):  # open_clip's BPE tokenizer: ids without the start and end tokens
        return np.array([len(tokenizer.encode(t)) + 2 > encoder.context_length for t in texts], bool)
    return (tokenizer(texts)[:, -1] != 0).numpy()  # others: the text filled the last position


STAGE_SECONDS = ("read_s", "decode_s", "clip_s", "clap_s")


def failure_kind(kind: str, modality: str) -> str:
    """The reason a row is counted under in stats.json: an image's decoding failures as `image_<kind>`
    (image_corrupt, image_not_image...); the tar reader's and the transient kinds as they are."""
    kind = kind or "internal"
    if modality == "image" and not kind.startswith(("read_", "image_")) and not is_transient(kind):
        return f"image_{kind}"
    return kind


def pair_rows(batch: Batch, modality: str) -> Batch:
    """Last stage: every row as a pair row (id, source, modality, caption, url, clip, clap), with its failure
    (`error_kind`, '' when ok), truncation flags and stage seconds. The commit writes only the rows without
    error; it needs every row back all the same, failed ones too (the runner counts each item once)."""
    count = len(batch["id"])
    errors = strings(batch, "error")
    failures = [failure_kind(kind, modality) if error else ""
                for error, kind in zip(errors, strings(batch, "error_kind"), strict=True)]

    def column(name: str, empty) -> np.ndarray:  # a batch that failed before a stage ran lacks its columns
        return np.asarray(batch[name]) if name in batch else empty

    out = {
        "id": objects(strings(batch, "id")), "source": objects(strings(batch, "source")),
        "modality": objects([modality] * count), "caption": objects(strings(batch, "caption")),
        "url": objects(["" if url is None else str(url) for url in batch["url"]]),
        "clip": column("clip", np.zeros((count, 0), np.float32)),
        "clap": column("clap", np.zeros((count, 0), np.float32)),
        "error": objects(errors), "error_kind": objects(failures),
        "clip_truncated": column("clip_truncated", np.zeros(count, bool)),
        "clap_truncated": column("clap_truncated", np.zeros(count, bool)),
    }
    out.update({name: np.asarray(batch[name], np.float64) for name in STAGE_SECONDS if name in batch})
    return out
