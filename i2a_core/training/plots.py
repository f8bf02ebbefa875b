"""The grid's figures as PNG bytes: loss curves per loss function, and held-out metrics per trial."""

from __future__ import annotations

import io


def _figure_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def loss_plot(records: list[dict]) -> bytes:
    """Validation (solid) and training (dashed) loss per epoch, one panel per loss function."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    by_loss: dict[str, dict] = {}
    for record in records:
        by_loss.setdefault(record["spec"]["loss"], {})[record["trial"]] = record["history"]
    figure = Figure(figsize=(5.5 * len(by_loss), 3.8), layout="constrained")
    axes = figure.subplots(1, len(by_loss), squeeze=False)[0]
    for ax, (loss, group) in zip(axes, by_loss.items(), strict=True):
        for name, history in group.items():
            epochs = [h["epoch"] for h in history]
            line, = ax.plot(epochs, [h["val_loss"] for h in history], label=name)
            ax.plot(epochs, [h["train_loss"] for h in history], "--", color=line.get_color(), alpha=0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(title=f"{loss} loss per epoch", xlabel="epoch", ylabel=f"{loss} loss (unitless)")
        styles = [Line2D([], [], color="0.3", label="validation"),
                  Line2D([], [], color="0.3", linestyle="--", alpha=0.5, label="training")]
        ax.legend(handles=ax.get_legend_handles_labels()[0] + styles, fontsize=7)
    return _figure_bytes(figure)


def metrics_plot(finished: list[dict], pool_size: int) -> bytes:
    """Image-row R@1, all-row R@1 and mean cosine per finished trial (best at the top)."""
    from matplotlib.figure import Figure

    names = [r["trial"] for r in finished][::-1]
    panels = [("image-row R@1", f"R@1 on image rows, pools of {pool_size:,}",
               lambda m: m.get("image", {}).get("r1")),
              ("R@1, all rows", f"R@1, pools of {pool_size:,} test rows", lambda m: m.get("all", {}).get("r1")),
              ("mean cosine, all rows", "cosine similarity (-1 to 1)", lambda m: m.get("all", {}).get("cosine"))]
    figure = Figure(figsize=(15, 0.35 * len(names) + 1.8), layout="constrained")
    axes = figure.subplots(1, len(panels), sharey=True)
    for ax, (title, label, value) in zip(axes, panels, strict=True):
        values = [value(r["metrics"]) for r in finished[::-1]]
        ax.barh(names, [v or 0.0 for v in values])
        for position, v in enumerate(values):
            if v is None:  # no rows to score on (no image rows): say so rather than draw a zero
                ax.text(0, position, " n/a", va="center", fontsize=8, color="0.4")
        ax.set(title=title, xlabel=label)
    axes[0].set_ylabel("trial (best at the top)")
    figure.suptitle("Translator grid: held-out test metrics")
    return _figure_bytes(figure)
