"""The frame every protocol run shares (the rating protocol, its online replay and the
implicit protocol): which scenarios and support sizes it covers, the few-shot key of a
support size, the model's name and timed fit, and the results dict's common keys."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

from graph_meta.dataset import Dataset, training_view
from graph_meta.eval.jsonable import jsonable
from graph_meta.schema import SCENARIOS

__all__ = ["chosen_scenarios", "fit_timed", "k_label", "model_name", "results_frame",
           "support_sizes"]


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


def model_name(model: Any) -> str:
    """The name a model's results carry: its ``name``, else its class name."""
    return str(getattr(model, "name", type(model).__name__))


def fit_timed(model: Any, dataset: Dataset, *, fit: bool, progress: bool = False) -> float:
    """Seconds ``model.fit`` took on :func:`~graph_meta.dataset.training_view` of ``dataset``
    (0 without ``fit``: a model already fitted); ``progress`` prints one line to stderr."""
    if not fit:
        return 0.0
    t0 = time.perf_counter()
    model.fit(training_view(dataset))
    fit_s = time.perf_counter() - t0
    if progress:
        print(f"[{model_name(model)}] fitted in {fit_s:.1f}s", file=sys.stderr, flush=True)
    return fit_s


def results_frame(model: Any, dataset: Dataset, fit_s: float, **keys: Any) -> dict[str, Any]:
    """A run's results dict before its scenarios: ``dataset``, ``model``, ``keys`` (e.g.
    ``protocol``, ``support_k``), an empty ``scenarios``, ``fit_s`` and the model's
    ``params`` where it has a dict of them."""
    results: dict[str, Any] = {"dataset": dataset.name, "model": model_name(model), **keys,
                               "scenarios": {}, "fit_s": round(fit_s, 3)}
    params = getattr(model, "params", None)
    if isinstance(params, dict):
        results["params"] = jsonable(params)
    return results
