"""What the baselines share: training ratings as integer codes, clipping to the rating
scale, the summary of the pseudo-tasks they tune on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from graph_meta.dataset import ITEM_ID, RATING, USER_ID, Dataset

__all__ = ["Ratings", "carve_summary", "clip", "ratings_of"]


@dataclass
class Ratings:
    """Training ratings as integer codes into ``dataset.users`` / ``dataset.items`` rows."""

    user_ids: pd.Index
    item_ids: pd.Index
    u: np.ndarray
    i: np.ndarray
    r: np.ndarray
    user_pos: dict[str, int]
    item_pos: dict[str, int]

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def ratings_of(dataset: Dataset) -> Ratings:
    train = dataset.train.drop_duplicates([USER_ID, ITEM_ID], keep="last")
    user_ids = pd.Index(dataset.users.index.astype(str), dtype=object)
    item_ids = pd.Index(dataset.items.index.astype(str), dtype=object)
    tu = train[USER_ID].astype(str).to_numpy(dtype=object)
    ti = train[ITEM_ID].astype(str).to_numpy(dtype=object)
    u = user_ids.get_indexer(tu)
    i = item_ids.get_indexer(ti)
    if (u < 0).any() or (i < 0).any():
        # a train id without a side-information row (hand-built datasets): extend the index
        user_ids = user_ids.append(pd.Index(pd.unique(tu[u < 0]), dtype=object))
        item_ids = item_ids.append(pd.Index(pd.unique(ti[i < 0]), dtype=object))
        u, i = user_ids.get_indexer(tu), item_ids.get_indexer(ti)
    return Ratings(
        user_ids=user_ids,
        item_ids=item_ids,
        u=u.astype(np.int64),
        i=i.astype(np.int64),
        r=train[RATING].to_numpy(dtype=np.float64),
        user_pos={k: j for j, k in enumerate(user_ids)},
        item_pos={k: j for j, k in enumerate(item_ids)},
    )


def clip(pred: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    return np.clip(pred, scale[0], scale[1])


def carve_summary(pseudo: Dataset) -> dict[str, Any]:
    rep = pseudo.spec.stats.get("carved", {})
    return {
        "release_column": rep.get("release_column"),
        "train_ratings": len(pseudo.train),
        "held_out_users": rep.get("new_users_drawn"),
        "held_out_items": rep.get("new_items_drawn"),
        "tasks": {s: len(t) for s, t in pseudo.tasks.items()},
    }
