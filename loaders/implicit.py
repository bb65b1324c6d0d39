"""Implicit-feedback dataset folders (``benchmarks/PROTOCOL.md``, "Implicit feedback").

An implicit folder says ``"implicit": true`` in ``dataset.json``, has the rating scale
``[0, 1]``, ``rating`` 1 on every ``train.csv`` row and on every task pair, and optionally a
``weight`` column in ``train.csv``: the confidence of each positive (how strongly the user
engaged, e.g. view = 1, cart = 3, purchase = 5, summed over a pair's events).

* :func:`make_implicit` derives an implicit folder from a rating folder: a rating
  ``>= min_rating`` is a positive, everything else is dropped; the users, items, relation
  files and scenarios stay as they are (a task keeps its user, its support positives as the
  support, possibly none (K = 0), and its query positives as the query; a task without a
  query positive is dropped and counted).
* :func:`event_confidences` turns an event column (``view``, ``cart``, ``purchase``, ...) into
  confidences through a weight table, and :func:`aggregate_pairs` sums them per (user, item)
  pair (the pair's time is its first event): what ``import-csv --implicit --weight-col event
  --weights view=1,cart=3,purchase=5`` and ``synth --implicit`` do.
* :func:`confidences_to_weights` turns a dataset whose ``rating`` column carries confidences
  (what the cold-start splitter sees) into the implicit folder form.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from graph_meta.dataset import (
    ITEM_ID,
    RATING,
    TIMESTAMP,
    USER_ID,
    WEIGHT,
    Dataset,
    Task,
    confidences,
    confidences_to_weights,
)
from graph_meta.errors import DataError, short

__all__ = [
    "DEFAULT_EVENT_WEIGHTS",
    "aggregate_pairs",
    "confidences",
    "confidences_to_weights",
    "event_confidences",
    "make_implicit",
    "parse_weights",
]

#: the weights of ``--weights`` when a shop logs views, carts and purchases
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {"view": 1.0, "cart": 3.0, "purchase": 5.0}


def parse_weights(text: str) -> dict[str, float]:
    """``"view=1,cart=3,purchase=5"`` -> ``{"view": 1.0, "cart": 3.0, "purchase": 5.0}``
    (every weight a finite number > 0)."""
    out: dict[str, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.rpartition("=")
        name = name.strip()
        try:
            weight = float(value)
        except ValueError:
            weight = float("nan")
        if not sep or not name or not np.isfinite(weight) or weight <= 0:
            raise DataError(f"{short(part)}: expected EVENT=WEIGHT with a weight > 0",
                            field="weights")
        if name in out:
            raise DataError(f"event {short(name)} is given twice", field="weights")
        out[name] = weight
    if not out:
        raise DataError("no EVENT=WEIGHT pair", field="weights")
    return out


def event_confidences(events: pd.Series, weights: Mapping[str, float]) -> tuple[np.ndarray,
                                                                                 int | None]:
    """Map event names to confidences: ``(weights per row, first unknown row or None)``."""
    names = events.astype(str).str.strip()
    w = names.map(dict(weights)).to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isnan(w)
    return w, (int(bad.argmax()) if bad.any() else None)


def aggregate_pairs(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Sum the ``rating`` (confidence) of repeated (user, item) rows; a pair's ``timestamp``
    (if any) is its first event's. Returns the pairs (in order of first appearance) and how
    many rows were merged into others."""
    keys = [USER_ID, ITEM_ID]
    agg: dict[str, Any] = {RATING: "sum"}
    if TIMESTAMP in frame:
        agg[TIMESTAMP] = "min"
    out = frame.groupby(keys, sort=False, observed=True, as_index=False).agg(agg)
    return out.reset_index(drop=True), len(frame) - len(out)


def make_implicit(dataset: Dataset, *, min_rating: float = 4.0,
                  name: str | None = None) -> Dataset:
    """The implicit dataset of a rating dataset: a rating ``>= min_rating`` is a positive.

    ``train`` keeps its positive rows (rating 1, timestamps kept); the users, items and
    relation files are unchanged; every task keeps its user and scenario, its support
    positives (in order; possibly none: the pure cold case) and its query positives; tasks
    without a query positive are dropped. ``spec.stats["implicit"]`` counts what was kept
    and dropped, and the users and items that no longer have a training row.

    Raises:
        DataError: the dataset is already implicit, or ``min_rating`` is outside its scale.
    """
    if dataset.spec.implicit:
        raise DataError("the dataset is already implicit", field="implicit")
    lo, hi = dataset.spec.rating_scale
    if not lo < min_rating <= hi:
        raise DataError(f"min_rating {min_rating:g} must lie in ({lo:g}, {hi:g}] (the rating "
                        "scale)", field="min_rating")
    train = dataset.train
    keep = train[RATING].to_numpy(dtype=np.float64) >= min_rating
    pos = train[keep].reset_index(drop=True)
    for col in (USER_ID, ITEM_ID):
        pos[col] = pos[col].cat.remove_unused_categories()
    pos[RATING] = np.ones(len(pos), dtype=np.float32)
    if WEIGHT in pos:
        pos = pos.drop(columns=[WEIGHT])
    stats: dict[str, Any] = {
        "derived_from": dataset.name,
        "min_rating": float(min_rating),
        "train_rows": len(train),
        "train_positives": int(keep.sum()),
        "train_users_without_positive": int(train[USER_ID].nunique() - pos[USER_ID].nunique()),
        "train_items_without_positive": int(train[ITEM_ID].nunique() - pos[ITEM_ID].nunique()),
    }
    tasks: dict[str, list[Task]] = {}
    for scenario, task_list in dataset.tasks.items():
        kept, dropped, empty_support, queries = [], 0, 0, 0
        for t in task_list:
            query = [(i, 1.0) for i, r in t.query if r >= min_rating]
            if not query:
                dropped += 1
                continue
            support = [(i, 1.0) for i, r in t.support if r >= min_rating]
            empty_support += not support
            queries += len(query)
            kept.append(Task(t.user_id, support, query))
        tasks[scenario] = kept
        stats[f"{scenario}_tasks"] = len(kept)
        stats[f"{scenario}_tasks_dropped_no_query_positive"] = dropped
        stats[f"{scenario}_tasks_empty_support"] = empty_support
        stats[f"{scenario}_query_positives"] = queries
    spec_stats = {**{k: v for k, v in dataset.spec.stats.items() if k != "implicit"},
                  "implicit": stats}
    spec = dataclasses.replace(dataset.spec, name=name or f"{dataset.name}-implicit",
                               implicit=True, rating_scale=(0.0, 1.0), stats=spec_stats,
                               tasks={s: dataset.spec.tasks.get(s, f"tasks/{s}.jsonl")
                                      for s in tasks})
    return dataclasses.replace(dataset, spec=spec, train=pos, tasks=tasks, root=None,
                               warnings=[])
