"""What the baselines share: training ratings as integer codes, clipping to the rating
scale, the summary of the pseudo-tasks they tune on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from graph_meta.dataset import RATING, Dataset, indexed_train

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
    t = indexed_train(dataset)
    return Ratings(
        user_ids=t.user_ids,
        item_ids=t.item_ids,
        u=t.u,
        i=t.i,
        r=t.frame[RATING].to_numpy(dtype=np.float64),
        user_pos={k: j for j, k in enumerate(t.user_ids)},
        item_pos={k: j for j, k in enumerate(t.item_ids)},
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
