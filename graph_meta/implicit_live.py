r"""Positives that arrive after an implicit model was trained, read without retraining.

:class:`LivePositives` is the log :meth:`graph_meta.implicit.GraphMetaImplicit.observe`
keeps: one confidence weight per (user, item) pair (the same positive twice is one positive;
a new weight replaces the old one). What it moves in the model:

* a user's state: their observed positives join their training positives in the iALS user
  step (:meth:`~graph_meta.implicit.GraphMetaImplicit.user_factors`);
* a new item's factors (no training positive): the iALS item step over its observed takers,
  toward its graph prior :math:`\hat y_i` with the model's ALS regularisation,

  .. math:: y_i = \big(X^\top X + \lambda I + \sum_{u} \alpha w_{ui}\, x_u x_u^\top\big)^{-1}
            \Big(\sum_u (1 + \alpha w_{ui})\, x_u + \lambda \hat y_i\Big),

  with :math:`x_u` the takers' states at training (their ALS factors, a user without training
  positives their prior) and :math:`X^\top X` over the training users' factors, as an ALS
  sweep would (:func:`new_item_factors`). An item with training positives keeps its factors;
  its new takers count on their side.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["LivePositives", "new_item_factors"]


class LivePositives:
    """The log of observed positives: ``(user, item) -> weight``, indexed both ways."""

    def __init__(self) -> None:
        self.by_user: dict[str, dict[str, float]] = {}
        self.by_item: dict[str, dict[str, float]] = {}

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_user.values())

    def add(self, positives: Iterable[Sequence[object]]) -> list[tuple[str, str]]:
        """Log ``(user, item)`` or ``(user, item, weight)`` rows (weight 1 when absent; the
        last row of a pair counts); returns the pairs whose weight changed.

        Raises:
            ValueError: a weight that is not a finite number > 0, naming the row.
        """
        last: dict[tuple[str, str], float] = {}
        for k, row in enumerate(positives):
            if len(row) not in (2, 3):
                raise ValueError(f"positive {k}: expected (user, item[, weight]), got {row!r}")
            weight = 1.0 if len(row) == 2 else row[2]
            try:
                w = float(weight)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                w = math.nan
            if not math.isfinite(w) or w <= 0:
                raise ValueError(f"positive {k} ({row[0]}, {row[1]}): weight must be a finite "
                                 f"number > 0, got {weight!r}")
            last[(str(row[0]), str(row[1]))] = w
        changed = []
        for (user, item), w in last.items():
            if self.by_user.get(user, {}).get(item) != w:
                self.by_user.setdefault(user, {})[item] = w
                self.by_item.setdefault(item, {})[user] = w
                changed.append((user, item))
        return changed

    def user(self, user: str) -> dict[str, float]:
        return self.by_user.get(user, {})

    def item(self, item: str) -> dict[str, float]:
        return self.by_item.get(item, {})

    def clear(self) -> None:
        self.by_user.clear()
        self.by_item.clear()


def new_item_factors(user_states: np.ndarray, user_gram: np.ndarray, reg: float,
                     alpha: float, takers: np.ndarray, weights: np.ndarray,
                     prior: np.ndarray) -> np.ndarray:
    """``[F]`` a new item's factors after its observed takers (module docstring).

    Args:
        user_states: ``[N_U, F]`` :math:`x_u`.
        user_gram: ``[F, F]`` :math:`X^\\top X`.
        reg: :math:`\\lambda`.
        alpha: :math:`\\alpha`.
        takers: ``[n]`` user positions.
        weights: ``[n]`` their weights :math:`w_{ui}`.
        prior: ``[F]`` :math:`\\hat y_i`.
    """
    x = user_states[takers]
    conf = alpha * np.asarray(weights, dtype=np.float64)
    a = user_gram + reg * np.eye(len(prior)) + (x * conf[:, None]).T @ x
    b = x.T @ (1.0 + conf) + reg * prior
    return np.linalg.solve(a, b)
