"""Score a sonify output: list clips -> ScoreClips (in-process or Ray actors) -> scores.csv, summary, plots, gallery."""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

from i2a_core import runner
from i2a_core.errors import EvalError
from i2a_core.evaluation import metrics
from i2a_core.evaluation.loading import read_wav
from i2a_core.evaluation.protocols import TINY_WARNING, ScoringModels, cs_description, describe, describe_protocol
from i2a_core.evaluation.weights import check_available
from i2a_core.io import gallery, images, manifest, storage

LOCAL_MAX_CLIPS = 64  # `--runner auto` scores this many clips or fewer in-process, without starting Ray
SCORE_COLUMNS = ("input", "output", "cs", "clap_score", "caption", "error", "error_kind", "note")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")



@dataclass(frozen=True)
class EvalJob:
    input: str  # a sonify output (`i2a sonify` or `i2a sonify-job`: its manifest/)
    output: str
    models: ScoringModels
    reference_audio: str | None = None  # a folder of WAVs: FAD and FD against it
    captions: str | None = None  # CSV key,caption
    runner: str = "auto"
    gpus_per_actor: float | None = None
    actors: int | None = None
    device: str | None = None
    batch_size: int = 16
    page_size: int = 100


@dataclass
class Clips:
    rows: list  # one dict per clip: input, output, wav, image, caption, thumbnail, spectrogram, captions
    not_generated: int = 0  # inputs the sonify job itself failed on (no audio to score)
    source: str = "manifest"
    extra: dict = field(default_factory=dict)


# --- 1. list the clips ---


def read_captions(path: str | None) -> dict[str, str]:
    """key -> caption from a CSV with columns key,caption (a header row naming them, or the first two columns)."""
    if not path:
        return {}
    try:
        text = storage.read_text(path)
    except (FileNotFoundError, OSError, UnicodeDecodeError) as e:
        raise EvalError(f"--captions {path}: cannot read ({type(e).__name__})") from None
    rows = list(csv.reader(io.StringIO(text)))
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["key", "caption"]:
        rows = rows[1:]
    return {row[0].strip(): row[1].strip() for row in rows if len(row) >= 2 and row[0].strip()}


def _lookup_caption(source: str, captions: dict[str, str]) -> str:
    """The caption for an input: --captions by full input, file name or stem; else img2dataset's sidecars."""
    name = posixpath.basename(source.split("?")[0])
    for key in (source, name, os.path.splitext(name)[0]):
        if key in captions:
            return captions[key]
    if captions or ("://" in source and not source.startswith("s3://")):
        return ""  # with --captions, no sidecar lookups (two requests per image on a bucket)
    stem = os.path.splitext(source)[0]
    for sidecar in (stem + ".txt", stem + ".json"):  # img2dataset writes key.txt and key.json beside key.jpg
        try:
            text = storage.read_text(sidecar)
        except (FileNotFoundError, OSError, UnicodeDecodeError):
            continue
        if sidecar.endswith(".txt"):
            return text.strip()
        try:
            return str(json.loads(text).get("caption") or "").strip()
        except (ValueError, AttributeError):
            continue
    return ""


def list_clips(root: str, captions: dict[str, str]) -> Clips:
    """The clips of a sonify output (its manifest), or of a folder of audio files made elsewhere."""
    if not storage.exists(root):
        raise EvalError(f"--input {root}: no such folder or prefix")
    if not storage.exists(manifest.directory(root)):
        return _folder_clips(root, captions)
    rows, failed = [], 0
    for row in manifest.read(root).to_pylist():
        if row["status"] != "ok":
            failed += 1
            continue
        text = row.get("modality") == "text"  # `i2a sonify --text`: the prompt is the caption
        rows.append({"input": row["input"], "output": row["output"], "wav": storage.join(root, row["output"]),
                     "image": row.get("image") or ("" if text else row["input"]),
                     "caption": row["input"] if text else _lookup_caption(row["input"], captions),
                     "thumbnail": row["thumbnail"], "spectrogram": row["spectrogram"],
                     "captions": row["captions"] or [], "explanation": row["explanation"],
                     "duration": row["duration"], "sample_rate": row["sample_rate"]})
    if not rows and not failed:
        raise EvalError(f"--input {root}: the manifest holds no clips")
    return Clips(rows, not_generated=failed, source="manifest", extra={"models": _job_models(root)})


def _folder_clips(root: str, captions: dict[str, str]) -> Clips:
    """Every audio file under `root` (another system's output, say); NAME.json beside NAME.wav may name the
    image it was made from ({"input": ...}), for its CS; the caption comes from --captions or that image."""
    fs, path = storage.filesystem(root)
    protocol = root.split("://", 1)[0] + "://" if storage.is_remote(root) else ""
    base = path.rstrip("/")
    rows = []
    for found in sorted(fs.find(base)):
        if not found.lower().endswith(AUDIO_EXTENSIONS):
            continue
        relative = found[len(base):].lstrip("/")
        try:
            record = storage.read_json(protocol + os.path.splitext(found)[0] + ".json", limit=1 << 20)
        except (OSError, ValueError):
            record = {}
        image = str(record.get("image") or record.get("input") or "") if isinstance(record, dict) else ""
        stem = os.path.splitext(posixpath.basename(found))[0]
        caption = captions.get(relative) or captions.get(stem) or (_lookup_caption(image, captions) if image else "")
        rows.append({"input": image or relative, "output": relative, "wav": protocol + found, "image": image,
                     "caption": caption, "thumbnail": "", "spectrogram": "", "captions": [], "explanation": "",
                     "duration": None, "sample_rate": None})
    if not rows:
        raise EvalError(f"--input {root}: no clips (neither a sonify output's manifest/ nor audio files "
                        f"{', '.join(AUDIO_EXTENSIONS)})")
    return Clips(rows, source="folder")


def _job_models(root: str) -> dict:
    """The generation models the job recorded in job.json, for the gallery header ({} when unknown)."""
    try:
        record = storage.read_json(storage.join(root, "job.json"), limit=storage.MAX_JOB_JSON_BYTES)
    except (OSError, ValueError):
        return {}
    keys = ("clip_model", "clip_pretrained", "audioldm", "translator")
    return {k: record[k] for k in keys if isinstance(record, dict) and record.get(k) is not None}


def list_reference(folder: str) -> list[str]:
    if not storage.exists(folder):
        raise EvalError(f"--reference-audio {folder}: no such folder or prefix")
    fs, path = storage.filesystem(folder)
    protocol = folder.split("://", 1)[0] + "://" if storage.is_remote(folder) else ""
    found = sorted(protocol + p for p in fs.find(path.rstrip("/")) if p.lower().endswith(AUDIO_EXTENSIONS))
    if len(found) < 2:
        raise EvalError(f"--reference-audio {folder}: {len(found)} audio file{'s' if len(found) != 1 else ''} "
                        f"({', '.join(AUDIO_EXTENSIONS)}); FAD and FD need at least 2")
    return found


# --- 2. score them, in this process or as Ray actor stages ---


class _Scores:
    """The runner's commit for an eval: each clip's scores kept in memory (an eval set is thousands of clips,
    not millions), the embeddings folded into one running Gaussian per (set, model) for FAD and FD."""

    schema = pa.schema([("key", pa.string()), ("cs", pa.float64()), ("clap_score", pa.float64()),
                        ("error", pa.string()), ("error_kind", pa.string()), ("note", pa.string())])

    def __init__(self):
        self.results: dict[str, dict] = {}
        self.gaussians: dict[tuple, metrics.GaussianAccumulator] = {}

    def add(self, rows: dict) -> int:
        for i, key in enumerate(rows["key"]):
            self.results[str(key)] = {name: rows[name][i] for name in ("cs", "clap_score", "error", "error_kind",
                                                                       "note")}
        return len(rows["key"])

    def embeddings(self, batch: dict) -> None:
        for i, key in enumerate(batch["key"]):
            for name in ("vggish", "panns"):
                if name in batch and batch[name][i] is not None:
                    self.gaussians.setdefault((str(key).split(":")[0], name),
                                              metrics.GaussianAccumulator()).add(batch[name][i])

    def flush(self) -> int:
        return 0


def score_rows(rows: list[dict], job: EvalJob, want: tuple, log=print) -> tuple[dict, dict, str]:
    """key -> {cs, clap_score, error, note} for every row (rows need key, wav, image, caption), the running
    Gaussian of each (set, embedding) (set: the key's prefix, clip or reference), and the strategy used."""
    scores = _Scores()
    if not rows:
        return scores.results, scores.gaussians, "local"
    strategy = runner.choose_strategy(job.runner, len(rows), job.gpus_per_actor, local_max=LOCAL_MAX_CLIPS)
    resources = runner.cluster_resources() if strategy != "local" else {}
    gpus_per_actor = job.gpus_per_actor if job.gpus_per_actor is not None else (1.0 if resources.get("GPU") else 0.0)
    actors = job.actors or (max(1, int(resources.get("GPU", 0) // gpus_per_actor)) if gpus_per_actor else 1)
    chain = runner.Chain((runner.Stage("i2a_core.evaluation.scorers:ScoreClips",
                                       {"models": job.models, "want": want,
                                        "device": job.device if strategy == "local" else None},
                                       batch_size=job.batch_size, actors=actors, num_cpus=0.5,
                                       num_gpus=gpus_per_actor),))
    window = pa.table({"key": [r["key"] for r in rows], "wav": [r["wav"] for r in rows],
                       "display": [r["wav"] for r in rows], "image": [r["image"] for r in rows],
                       "caption": [r["caption"] for r in rows], "error": [""] * len(rows),
                       "error_kind": [""] * len(rows)})
    with runner.plan_directory(job.output) as directory:
        plan = runner.spill([window], directory)
        runner.run(plan, chain, scores, strategy=strategy, what="eval", unit="clips", chunk_size=job.batch_size,
                   on_commit=scores.embeddings, log=log)
    return scores.results, scores.gaussians, runner.DESCRIBE[strategy]


# --- 3. write what was found ---


def _float(value) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _scores_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SCORE_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "cs": "" if row["cs"] is None else f"{row['cs']:.4f}",
                         "clap_score": "" if row["clap_score"] is None else f"{row['clap_score']:.4f}"})
    return buffer.getvalue()


def histogram_png(values: list, title: str, label: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    values = [v for v in values if v is not None]
    figure, axis = plt.subplots(figsize=(6, 4))
    if values:
        axis.hist(values, bins=min(30, max(5, len(values) // 3)), color="#4c72b0")
        axis.axvline(float(np.mean(values)), color="#c44e52", linestyle="--", label=f"mean {np.mean(values):.2f}")
        axis.legend()
    else:
        axis.text(0.5, 0.5, "n/a (no scored clips)", ha="center", va="center", transform=axis.transAxes)
    axis.set_title(f"{title} (n={len(values)})")
    axis.set_xlabel(label)
    axis.set_ylabel("clips")
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def relative_link(source_root: str, eval_dir: str, target: str) -> str | None:
    """`target` (relative to the sonify output) as a link relative to EVAL_DIR; None across stores/buckets."""
    if not target:
        return ""
    if storage.is_remote(source_root) != storage.is_remote(eval_dir):
        return None
    if not storage.is_remote(source_root):
        return os.path.relpath(os.path.join(os.path.abspath(source_root), target),
                               os.path.abspath(eval_dir)).replace(os.sep, "/")
    source_scheme, source_path = source_root.split("://", 1)
    eval_scheme, eval_path = eval_dir.split("://", 1)
    if source_scheme != eval_scheme or source_path.split("/")[0] != eval_path.split("/")[0]:
        return None
    return posixpath.relpath(posixpath.join("/" + source_path, target), "/" + eval_path)


def _gallery_rows(job: EvalJob, rows: list[dict], log) -> list[dict] | None:
    """Manifest-like rows whose links point from EVAL_DIR back at the sonify output's files."""
    out = []
    for row in rows:
        if not row["error"] and not row["spectrogram"]:  # a folder of audio files: draw what the gallery needs
            row = {**row, **_draw_for_gallery(job, row)}
        links = {name: relative_link(job.input, job.output, row[name]) for name in ("output", "thumbnail",
                                                                                      "spectrogram")}
        if None in links.values():
            log(f"gallery skipped: {job.output} and {job.input} are on different stores, so relative links "
                f"between them cannot work; put EVAL_DIR beside the sonify output (same disk or bucket)")
            return None
        out.append({"input": row["input"], "status": "error" if row["error"] else "ok", "error": row["error"],
                    "error_kind": row["error_kind"] if row["error"] else "", **links, "captions": row["captions"],
                    "explanation": row["explanation"], "cs": row["cs"], "clap_score": row["clap_score"],
                    "duration": row["duration"], "sample_rate": row["sample_rate"]})
    return out


def _draw_for_gallery(job: EvalJob, row: dict) -> dict:
    """A spectrogram (and a thumbnail of the clip's image) in EVAL_DIR, linked as if from the input folder."""
    name = os.path.splitext(row["output"])[0]
    drawn = {}
    try:
        samples, rate = read_wav(row["wav"])
        storage.write_bytes_atomic(storage.join(job.output, f"spectrograms/{name}.png"),
                                   gallery.spectrogram_png(samples, rate))
        drawn.update(duration=len(samples) / rate, sample_rate=rate,
                     spectrogram=relative_link(job.output, job.input, f"spectrograms/{name}.png"))
        if row["image"]:
            storage.write_bytes_atomic(storage.join(job.output, f"thumbs/{name}.jpg"),
                                       gallery.thumbnail_jpeg(images.load_image(row["image"])))
            drawn["thumbnail"] = relative_link(job.output, job.input, f"thumbs/{name}.jpg")
    except (ValueError, OSError):
        pass
    return drawn


def _write_gallery(job: EvalJob, rows: list[dict], info: dict, log) -> None:
    gallery_rows = _gallery_rows(job, rows, log)
    if gallery_rows is None:
        return
    gallery.write_gallery(job.output, gallery_rows, job.page_size, info=info)


def _gallery_info(job: EvalJob, clips: Clips, summary: dict) -> dict:
    """The gallery header: what generated the clips, what scored them, and the set's scores."""
    models = clips.extra.get("models") or {}
    scored_by = (f"CS: {job.models.cs_clip.model} x Wav2CLIP; CLAP score: {job.models.clap}"
                 + ("; FAD: VGGish, FD: PANNs CNN14" if "fad" in summary else ""))
    return {"models": models, "settings": {"scored_with": scored_by, "scores": summary_line(summary)},
            "date": summary["created"], "inputs": summary["clips"] + summary["not_generated"],
            "random_weights": job.models.tiny or any("tiny:" in str(v) for v in models.values())}


def run(job: EvalJob, log=print, reference_cache: dict | None = None) -> dict:
    """Score every clip of job.input into job.output; returns the summary (also written as summary.json).

    reference_cache: a dict shared by runs against the same --reference-audio (the translator comparison),
    so the reference set is embedded once, not once per translator.
    """
    # 1. Check and list everything before loading a model.
    captions = read_captions(job.captions)
    clips = list_clips(job.input, captions)
    reference = list_reference(job.reference_audio) if job.reference_audio else []
    storage.makedirs(job.output)
    want = ("cs", "clap") + (("fad", "fd") if reference else ())
    check_available(job.models, want)
    cached = reference_cache is not None and reference_cache.get("folder") == job.reference_audio
    log(f"{len(clips.rows)} clips to score from {job.input}, {len(reference)} reference clips"
        f"{' (embedded by an earlier row)' if cached and reference else ''}")
    if job.models.tiny:
        log(f"warning: {TINY_WARNING}")

    # 2. Score generated and reference clips in one pass over the scoring models.
    for i, row in enumerate(clips.rows):
        row["key"] = f"clip:{i}"
    reference_rows = [] if cached else [{"key": f"reference:{i}", "wav": wav, "image": "", "caption": ""}
                                        for i, wav in enumerate(reference)]
    results, gaussians, _ = score_rows(clips.rows + reference_rows, job, want, log)
    if reference:
        if cached:
            gaussians.update(reference_cache["gaussians"])
            reference_errors = reference_cache["errors"]
        else:
            reference_errors = sum(1 for r in reference_rows if results[r["key"]]["error"])
        if reference_cache is not None:
            reference_cache.update(folder=job.reference_audio, errors=reference_errors,
                                   gaussians={k: v for k, v in gaussians.items() if k[0] == "reference"})

    # 3. Per-clip rows, then the set-level numbers.
    for row in clips.rows:
        result = results[row["key"]]
        row.update(cs=_float(result["cs"]), clap_score=_float(result["clap_score"]), error=str(result["error"]),
                   error_kind=str(result["error_kind"]), note=str(result["note"]))
    errors = [row for row in clips.rows if row["error"]]
    summary = {
        "input": job.input, "clips": len(clips.rows), "scored": len(clips.rows) - len(errors),
        "errors": len(errors), "not_generated": clips.not_generated,
        "cs": metrics.bootstrap_mean(r["cs"] for r in clips.rows),
        "clap_score": metrics.bootstrap_mean(r["clap_score"] for r in clips.rows),
        "captioned": sum(1 for r in clips.rows if r["caption"]),
        "protocol": describe_protocol(job.models), "cs_protocol": cs_description(job.models),
        "scoring_models": describe(job.models), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if reference:
        summary.update(_distances(len(reference), reference_errors, gaussians, job.reference_audio))
    if job.models.tiny:
        summary["warning"] = TINY_WARNING

    # 4. Files: scores.csv, summary.json, histograms, the scored gallery.
    storage.write_text_atomic(storage.join(job.output, "scores.csv"), _scores_csv(clips.rows))
    storage.write_text_atomic(storage.join(job.output, "summary.json"), json.dumps(summary, indent=2))
    storage.write_bytes_atomic(storage.join(job.output, "cs_hist.png"),
                               histogram_png([r["cs"] for r in clips.rows], "CS (Wav2CLIP x CLIP)", "CS"))
    storage.write_bytes_atomic(storage.join(job.output, "clap_score_hist.png"),
                               histogram_png([r["clap_score"] for r in clips.rows], "CLAP score (audio x caption)",
                                             "CLAP score"))
    _write_gallery(job, clips.rows, _gallery_info(job, clips, summary), log)
    for row in errors:
        log(f"error: {row['error']}")
    log(summary_line(summary))
    log(f"scores: {storage.join(job.output, 'scores.csv')}  summary: {storage.join(job.output, 'summary.json')}")
    return summary


def _distances(listed: int, bad: int, gaussians: dict, folder: str) -> dict:
    """FAD (VGGish patches) and FD (PANNs clips) of the scored clips against the reference set."""
    out = {"reference_audio": folder, "reference_clips": listed - bad, "reference_errors": bad}
    for name, embedding in (("fad", "vggish"), ("fd", "panns")):
        try:
            generated, reference = gaussians.get(("clip", embedding)), gaussians.get(("reference", embedding))
            if generated is None or reference is None:
                raise ValueError("no readable clips on one side")
            out[name] = metrics.frechet_distance(*generated.stats(), *reference.stats())
        except ValueError as e:
            out[name], out[f"{name}_error"] = None, str(e)
    return out


def summary_line(summary: dict) -> str:
    def interval(name):
        stats = summary[name]
        if stats["mean"] is None:
            return f"{name} n/a"
        return f"{name} {stats['mean']:.3f} [{stats['ci95'][0]:.3f}, {stats['ci95'][1]:.3f}] (n={stats['n']})"

    parts = [f"{summary['scored']} of {summary['clips']} clips scored", interval("cs"), interval("clap_score")]
    for name in ("fad", "fd"):
        if name in summary:
            parts.append(f"{name.upper()} {summary[name]:.4g}" if summary[name] is not None else f"{name} n/a")
    return "; ".join(parts)
