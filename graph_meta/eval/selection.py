"""Which scenarios and support sizes a protocol run covers (the rating and the implicit
protocol alike), and the few-shot key of a support size."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from graph_meta.dataset import Dataset
from graph_meta.schema import SCENARIOS

__all__ = ["chosen_scenarios", "k_label", "support_sizes"]


def chosen_scenarios(dataset: Dataset, scenarios: Iterable[str] | None) -> list[str]:
    """``scenarios``, or every scenario the dataset has tasks for in PROTOCOL.md's order.

    Raises:
        KeyError: an asked scenario has no tasks in the dataset.
    """
    if scenarios is None:
        chosen = [s for s in SCENARIOS if s in dataset.tasks]
        return chosen + [s for s in dataset.tasks if s not in chosen]
    chosen = list(scenarios)
    missing = [s for s in chosen if s not in dataset.tasks]
    if missing:
        raise KeyError(f"no tasks for scenario(s) {missing}; the dataset has "
                       f"{sorted(dataset.tasks)}")
    return chosen


def support_sizes(support_k: Sequence[int | None]) -> list[int | None]:
    """The distinct support sizes asked (None: the whole support), in order.

    Raises:
        ValueError: a size that is not None or an integer >= 0, or none at all.
    """
    ks: list[int | None] = []
    for k in support_k:
        if k is not None and (int(k) != k or k < 0):
            raise ValueError(f"support size must be None or an integer >= 0, got {k!r}")
        kk = None if k is None else int(k)
        if kk not in ks:
            ks.append(kk)
    if not ks:
        raise ValueError("support_k is empty")
    return ks


def k_label(k: int | None) -> str:
    """The few-shot key of a support size: ``"all"`` for None, else ``str(k)``."""
    return "all" if k is None else str(int(k))
