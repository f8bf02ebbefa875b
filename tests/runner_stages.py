"""Small stages for the runner's own tests, named by dotted path like the jobs' stages ("runner_stages:...")."""

from __future__ import annotations

import numpy as np


def double(batch: dict, fail_on: str = "") -> dict:
    """Doubles `value`; raises for the item named `fail_on` (unless it already failed): a bad item."""
    pending = [i for i, e in enumerate(batch["error"]) if not e]
    if fail_on and any(batch["key"][i] == fail_on for i in pending):
        raise ValueError(f"cannot double {fail_on}")
    return {**batch, "doubled": np.where([not e for e in batch["error"]], batch["value"] * 2, 0)}


class Rows:
    """The last stage: commit rows, failed items included."""

    def __init__(self, label: str = "row"):
        self.label = label

    def __call__(self, batch: dict) -> dict:
        return {"key": batch["key"], "status": np.array(["error" if e else "ok" for e in batch["error"]], object),
                "error": batch["error"], "error_kind": batch["error_kind"],
                "doubled": batch.get("doubled", np.zeros(len(batch["key"]), np.int64))}
