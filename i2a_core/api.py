"""i2a from Python: the Sonifier for notebooks, and each job's entry point with its typed config.

    from i2a_core.api import Sonifier, sonify
    clips = Sonifier.from_pretrained(translator="runs/grid/best")(["cat.jpg"])
    summary = sonify(["photos/"], "out/", translator="runs/grid/best")

The CLI is a thin layer over these: each command builds the config and calls the same function.
"""

from i2a_core.jobs.embed import EmbedConfig
from i2a_core.jobs.embed import run_embed as embed
from i2a_core.jobs.eval import EvalJob
from i2a_core.jobs.eval import run as evaluate
from i2a_core.jobs.sonify import Clip, JobSummary, Sonifier, SonifyJob, sonify
from i2a_core.jobs.sonify import run as sonify_job
from i2a_core.jobs.train import TrainConfig
from i2a_core.jobs.train import train_grid as train
from i2a_core.specs import ClipSpec, GenerationSettings, ImageLimits, ModelSpec, resolve_models

__all__ = ["Clip", "ClipSpec", "EmbedConfig", "EvalJob", "GenerationSettings", "ImageLimits", "JobSummary",
           "ModelSpec", "Sonifier", "SonifyJob", "TrainConfig", "embed", "evaluate", "resolve_models", "sonify",
           "sonify_job", "train"]
