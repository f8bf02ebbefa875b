"""A grid point and what its trial produced: plain data, no torch (the driver builds and reads these)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from i2a_core.models.translator import Translator


@dataclass(frozen=True)
class TrialSpec:
    """One grid point plus the optimisation settings every trial shares.

    kind "retrieval" is the training-free translator: it uses dataset audiocaps, top_k and temperature.
    """

    dataset: str
    loss: str
    hidden: int
    kind: str = "mlp"
    top_k: int = 10
    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    patience: int = 3
    temperature: float = 0.07
    mean_shift: bool = False

    @property
    def name(self) -> str:
        if self.kind == "retrieval":
            return f"retrieval-k{self.top_k}"
        return f"{self.dataset}-{self.loss}-h{self.hidden}"


@dataclass
class TrialResult:
    """What a trial produced: the translator (None when it failed), its history and its test metrics."""

    spec: TrialSpec
    status: str  # ok | skipped | diverged (| failed, set by the driver when a trial raised, was lost or stalled)
    reason: str = ""
    translator: Translator | None = None
    history: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    train_rows: int = 0
    seconds: float = 0.0

    def record(self) -> dict:
        """The JSON-able summary written as metrics.json."""
        return {"trial": self.spec.name, "spec": asdict(self.spec), "status": self.status, "reason": self.reason,
                "train_rows": self.train_rows, "seconds": round(self.seconds, 3),
                "epochs_run": len(self.history), "history": self.history, "metrics": self.metrics}
