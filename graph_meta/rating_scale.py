r"""The rating model's own scale: a dataset on another one is mapped onto it and back.

The rating model's fixed settings (ALS precisions and their search grid, the live and
item-bias precisions, shrinkages, inner learning rates) are in units of a 1-to-5 star scale,
where they were chosen. A dataset rated on :math:`[l, h]` is trained on the affine image

.. math:: r' = a r + b, \qquad a = \frac{4}{h - l}, \quad b = 1 - a l,

which maps :math:`[l, h]` onto :data:`INTERNAL_SCALE`; support and observed ratings go in by
the same map and predictions come out by its inverse :math:`(p - b) / a`, so that every
number a user sees is on the dataset's scale. On a 1-to-5 dataset (movielens-1m) the map is
the identity and nothing is computed. Without it a [0, 100] catalogue trained with precisions
meant for stars and ended worse than its global mean.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from graph_meta.dataset import RATING, Dataset

__all__ = ["INTERNAL_SCALE", "RatingMap"]

#: the scale the rating model's settings are made for
INTERNAL_SCALE = (1.0, 5.0)


@dataclasses.dataclass(frozen=True)
class RatingMap:
    """:math:`r' = a r + b` (module docstring); ``a = 1, b = 0`` is the identity."""

    a: float = 1.0
    b: float = 0.0

    @classmethod
    def for_scale(cls, scale: Sequence[float], *, implicit: bool = False) -> RatingMap:
        """The map of a dataset rated on ``scale`` ``[low, high]`` onto
        :data:`INTERNAL_SCALE`; the identity for an implicit dataset (positives, not
        stars) and for a single-valued scale (nothing to stretch)."""
        lo, hi = float(scale[0]), float(scale[1])
        if implicit or not hi > lo or (lo, hi) == INTERNAL_SCALE:
            return cls()
        a = (INTERNAL_SCALE[1] - INTERNAL_SCALE[0]) / (hi - lo)
        return cls(a, INTERNAL_SCALE[0] - a * lo)

    @classmethod
    def from_info(cls, info: Any) -> RatingMap:
        """The map a fitted model records (``fit_info["rating_map"]``; a model saved before
        there was one trained on its dataset's own scale: the identity)."""
        return cls(*map(float, info)) if info else cls()

    @property
    def identity(self) -> bool:
        return self.a == 1.0 and self.b == 0.0

    def to_internal(self, ratings: Any) -> Any:
        return ratings if self.identity else self.a * ratings + self.b

    def to_external(self, predictions: Any) -> Any:
        return predictions if self.identity else (predictions - self.b) / self.a

    def difference_to_external(self, delta: Any) -> Any:
        """A difference of predictions (a correction's share) on the dataset's scale."""
        return delta if self.identity else delta / self.a

    def rescaled(self, dataset: Dataset) -> Dataset:
        """``dataset`` with its training ratings and declared scale mapped (tasks dropped:
        training never reads them)."""
        if self.identity:
            return dataset
        train = dataset.train.copy()
        train[RATING] = self.to_internal(train[RATING].to_numpy(np.float64)).astype(np.float32)
        spec = dataclasses.replace(dataset.spec, rating_scale=INTERNAL_SCALE)
        return dataclasses.replace(dataset, train=train, spec=spec, tasks={})

    def to_json(self) -> list[float]:
        return [self.a, self.b]
