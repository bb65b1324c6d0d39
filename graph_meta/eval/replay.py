"""The online replay's shared parts (PROTOCOL.md, "Online replay"): the seeded order of
every task (:func:`replay_order`), and the buckets of how many ratings or positives an item
had received when it was asked (:func:`count_buckets`). The rating replay
(:func:`graph_meta.eval.protocol.evaluate_online`) and the implicit one
(:func:`graph_meta.eval.ranking.evaluate_implicit_online`) both read them from here."""

from __future__ import annotations

import itertools
import random

import numpy as np

from graph_meta.dataset import Dataset
from graph_meta.schema import SCENARIOS

__all__ = ["COUNT_BUCKETS", "REPLAY_SEED", "count_buckets", "replay_order"]

#: the seed of the online replay's task order (PROTOCOL.md, "Online replay")
REPLAY_SEED = 20261130


def replay_order(dataset: Dataset) -> list[tuple[str, int]]:
    """``(scenario, task index)`` in the online replay's order: the scenario files
    concatenated in PROTOCOL.md's order (file order within each), then shuffled once with
    ``random.Random(REPLAY_SEED)``."""
    seq = [(s, j) for s in [*SCENARIOS, *sorted(set(dataset.tasks) - set(SCENARIOS))]
           if s in dataset.tasks for j in range(len(dataset.tasks[s]))]
    random.Random(REPLAY_SEED).shuffle(seq)
    return seq



#: bucket edges of ``by_item_ratings``: how many ratings a query item had received
COUNT_BUCKETS: tuple[int, ...] = (0, 1, 3, 10, 30, 100, 300)


def count_buckets(counts: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """``(label, mask)`` of every non-empty :data:`COUNT_BUCKETS` bucket of ``counts`` (how
    many positives or ratings an item had received): ``"0"``, ``"1-2"``, ..., ``"300+"``."""
    counts = np.asarray(counts, dtype=np.int64)
    out = []
    edges = [*COUNT_BUCKETS, np.iinfo(np.int64).max]
    for a, b in itertools.pairwise(edges):
        sel = (counts >= a) & (counts < b)
        if sel.any():
            label = str(a) if b == a + 1 else (f"{a}+" if b == edges[-1] else f"{a}-{b - 1}")
            out.append((label, sel))
    return out
