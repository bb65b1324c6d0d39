"""The benchmark's plots: a metric per scenario and model, and its few-shot curves (the rating
and the implicit benchmark alike)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_results"]


def plot_results(results: Sequence[dict[str, Any]], out: Path, *, metric: str = "rmse",
                 label: str = "RMSE", bottom: float | None = 0.6,
                 support: str = "support ratings K") -> list[Path]:
    """Bars of ``metric`` per scenario and model, and its few-shot curves (x: ``support``);
    returns the PNG paths (``scenarios.png``, ``few_shot.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(results[0]["scenarios"])
    fig, ax = plt.subplots(figsize=(2.2 * len(scenarios) + 3, 4))
    width = 0.8 / len(results)
    for m, res in enumerate(results):
        ax.bar(np.arange(len(scenarios)) + m * width,
               [res["scenarios"][s][metric] for s in scenarios], width, label=res["model"])
    ax.set_xticks(np.arange(len(scenarios)) + 0.4 - width / 2, scenarios)
    ax.set_ylabel(f"task-averaged {label}")
    if bottom is not None:
        ax.set_ylim(bottom=bottom)
    ax.legend(fontsize=8)
    ax.set_title(f"{results[0]['dataset']}: {label} per scenario")
    fig.tight_layout()
    paths = [out / "scenarios.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)
    if all("few_shot" in r for r in results):
        fig, axes = plt.subplots(1, len(scenarios), figsize=(4.5 * len(scenarios), 3.8),
                                 squeeze=False)
        for ax, s in zip(axes[0], scenarios, strict=True):
            for res in results:
                curve = res["few_shot"][s]
                keys = list(curve)
                ax.plot(range(len(keys)), [curve[k][metric] for k in keys], marker="o",
                        label=res["model"])
                ax.set_xticks(range(len(keys)), keys)
            ax.set_title(s)
            ax.set_xlabel(support)
            ax.set_ylabel(label)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        paths.append(out / "few_shot.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths
