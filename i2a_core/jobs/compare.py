"""Rank translators by the audio they make: sonify the same images with each (bulk job), score each set, rank."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, replace

from i2a_core.errors import EvalError
from i2a_core.io import listing, storage
from i2a_core.jobs import eval as evaluation
from i2a_core.jobs import sonify as bulk
from i2a_core.specs import GenerationSettings, ImageLimits, ModelSpec

TEXT_ROW = "text-audioldm"  # plain AudioLDM from each image's caption, the reference row
LEADERBOARD_COLUMNS = ("rank", "name", "translator", "clips", "scored", "errors", "cs", "cs_ci95_low", "cs_ci95_high",
                       "clap_score", "clap_score_ci95_low", "clap_score_ci95_high", "fad", "fd",
                       "embedding_image_r1", "embedding_cosine", "scores")


@dataclass(frozen=True)
class CompareJob:
    images: str
    output: str
    translators: tuple  # (name, translator dir) pairs
    models: ModelSpec  # generation models; the translator is replaced per row
    settings: GenerationSettings
    evaluation: evaluation.EvalJob  # scoring settings; input/output are filled per row
    text: bool = False  # add plain AudioLDM from each image's caption as a row
    embedding_rows: tuple = ()  # (name, row of the grid's leaderboard.csv) pairs
    limits: ImageLimits = ImageLimits()  # how images are read (URL lists: --allow-private-urls...)


def translators_from_grid(grid: str, top: int) -> tuple[tuple, tuple]:
    """The top K finished trials of an `i2a train` grid, in its ranking: ((name, dir)...), ((name, row)...)."""
    url = storage.join(grid, "leaderboard.csv")
    if not storage.exists(url):
        raise EvalError(f"--grid {grid}: no leaderboard.csv (is it an `i2a train` output?)")
    rows = [r for r in csv.DictReader(io.StringIO(storage.read_text(url))) if r.get("status") == "ok"]
    rows = rows[:top]
    if not rows:
        raise EvalError(f"--grid {grid}: no finished trials in leaderboard.csv")
    return (tuple((r["trial"], storage.join(grid, "trials", r["trial"])) for r in rows),
            tuple((r["trial"], r) for r in rows))


def translators_from_list(references: list[str]) -> tuple:
    """(name, dir) for each --translators entry; names from the folder, made unique."""
    named, seen = [], set()
    for reference in references:
        base = re.sub(r"[^A-Za-z0-9._-]+", "_", reference.rstrip("/").rsplit("/", 1)[-1]) or "translator"
        name, n = base, 2
        while name in seen or name == TEXT_ROW:
            name, n = f"{base}-{n}", n + 1
        seen.add(name)
        named.append((name, reference))
    return tuple(named)


def _sonify_texts(job: CompareJob, output: str, log) -> None:
    """AudioLDM from each image's caption (from --captions or img2dataset sidecars): the bulk job, resumable.

    Each clip records the image its caption describes (the manifest's `image` column), for its CS.
    """
    captions = evaluation.read_captions(job.evaluation.captions)
    pairs = {}
    for item in listing.list_inputs([job.images]):
        if item.error:  # an entry that is no input: the image rows report it
            continue
        caption = evaluation._lookup_caption(item.input, captions)
        if caption:
            pairs.setdefault(caption, item.input)
    if not pairs:
        raise EvalError("--text needs captions for the images: pass --captions CSV (key,caption)")
    log(f"{TEXT_ROW}: {len(pairs)} captions")
    e = job.evaluation
    bulk.run(bulk.SonifyJob(inputs=(), texts=tuple(pairs), text_images=tuple(pairs.values()), output=output,
                            models=replace(job.models, translator=None), settings=job.settings, runner="local",
                            device=e.device, page_size=e.page_size), log=log)


def run(job: CompareJob, log=print) -> list[dict]:
    rows, reference_cache = [], {}  # the reference set is embedded once for all rows
    embedding = dict(job.embedding_rows)
    names = list(job.translators) + ([(TEXT_ROW, "")] if job.text else [])
    for name, translator in names:
        # 1. Sonify (the bulk job resumes: finished inputs are skipped), 2. score.
        audio = storage.join(job.output, "sonify", name)
        if name == TEXT_ROW:
            _sonify_texts(job, audio, log)
        else:
            log(f"{name}: sonifying {job.images} with {translator}")
            e = job.evaluation
            sonify_job = bulk.SonifyJob(inputs=(job.images,), output=audio,
                                        models=replace(job.models, translator=translator), settings=job.settings,
                                        limits=job.limits, runner=e.runner, gpus_per_actor=e.gpus_per_actor,
                                        actors=e.actors, device=e.device, page_size=e.page_size)
            bulk.run(sonify_job, log=log)
        scores = storage.join(job.output, "scores", name)
        summary = evaluation.run(replace(job.evaluation, input=audio, output=scores), log=log,
                                 reference_cache=reference_cache)
        rows.append(_row(name, translator, summary, embedding.get(name, {}), f"scores/{name}/"))
    ranked = rank(rows)
    write_leaderboard(job.output, ranked, tiny=job.evaluation.models.tiny)
    return ranked


def _row(name: str, translator: str, summary: dict, grid_row: dict, scores: str) -> dict:
    def stats(key):
        s = summary[key]
        low, high = s["ci95"] if s["ci95"] else (None, None)
        return {key: s["mean"], f"{key}_ci95_low": low, f"{key}_ci95_high": high}

    return {"name": name, "translator": translator or "(none: AudioLDM from the caption)",
            "clips": summary["clips"], "scored": summary["scored"], "errors": summary["errors"],
            **stats("cs"), **stats("clap_score"), "fad": summary.get("fad"), "fd": summary.get("fd"),
            "embedding_image_r1": grid_row.get("image_r1"), "embedding_cosine": grid_row.get("cosine"),
            "scores": scores}


def rank(rows: list[dict]) -> list[dict]:
    """By mean CS, then mean CLAP score, both descending; rows without a CS last."""
    def key(row):
        missing = -1e9
        return (-(row["cs"] if row["cs"] is not None else missing),
                -(row["clap_score"] if row["clap_score"] is not None else missing))

    ranked = sorted(rows, key=key)
    for position, row in enumerate(ranked, 1):
        row["rank"] = position if row["cs"] is not None else ""
    return ranked


def _cell(value, digits: int = 6) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"  # significant digits: FAD on close sets is 1e-5, CS is 10
    return str(value)


def write_leaderboard(output: str, ranked: list[dict], tiny: bool = False) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LEADERBOARD_COLUMNS)
    writer.writeheader()
    writer.writerows({k: _cell(row.get(k)) for k in LEADERBOARD_COLUMNS} for row in ranked)
    storage.write_text_atomic(storage.join(output, "audio_leaderboard.csv"), buffer.getvalue())

    shown = ("rank", "name", "clips", "cs", "cs_ci95_low", "cs_ci95_high", "clap_score", "fad", "fd",
             "embedding_image_r1", "embedding_cosine")
    lines = ["# Audio leaderboard", "",
             "Ranked by mean CS (100 x cosine of Wav2CLIP audio and CLIP ViT-B/32 image embeddings), then mean "
             "CLAP score (audio against the image's caption); 95% bootstrap intervals. Same images, seeds and "
             "settings for every row; see docs/eval.md for the protocol and the published numbers.", ""]
    if tiny:
        lines += ["**Warning: tiny preset, random models: these numbers are meaningless.**", ""]
    lines += ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(_cell(row.get(c), 4) for c in shown) + " |" for row in ranked]
    storage.write_text_atomic(storage.join(output, "audio_leaderboard.md"), "\n".join(lines) + "\n")
    storage.write_bytes_atomic(storage.join(output, "audio_leaderboard.png"), _plot(ranked))


def _plot(ranked: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    scored = [r for r in ranked if r["cs"] is not None]
    figure, axis = plt.subplots(figsize=(7, 1.2 + 0.5 * max(1, len(scored))))
    if scored:
        means = [r["cs"] for r in scored]
        errors = [[m - r["cs_ci95_low"] for m, r in zip(means, scored)],
                  [r["cs_ci95_high"] - m for m, r in zip(means, scored)]]
        axis.barh([r["name"] for r in scored], means, xerr=errors, color="#4c72b0", capsize=4)
        axis.invert_yaxis()
    else:
        axis.text(0.5, 0.5, "n/a (no scored rows)", ha="center", va="center", transform=axis.transAxes)
    axis.set_title("Audio leaderboard: mean CS with 95% bootstrap interval")
    axis.set_xlabel("CS (100 x cosine)")
    axis.set_ylabel("translator")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()
