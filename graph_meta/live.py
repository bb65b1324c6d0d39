r"""Ratings that arrive after training, and the closed-form updates they drive.

A live shop's graph grows while the model serves: new ``RATED`` edges of known or new users on
known or new items. :class:`LiveRatings` is the log every model keeps of them (one rating per
``(user, item)`` pair: the same rating twice is one rating, a changed rating replaces the old),
indexed by user and by item so that an update touches only the rows it concerns.

:func:`posterior_update` is the item step of ALS written as a Bayesian update, shared by
graph-meta and the biased MF. With the state :math:`\theta_i` an item had before the new
ratings, the precision :math:`P_i = \Lambda + \sum_{u \in U_i} x_u x_u^\top` it was fitted
with (training raters only; :math:`\Lambda` alone for a never-rated item, whose
:math:`\theta_i` is then its side-feature / graph prior) and the new ratings' rows
:math:`x_u` and targets :math:`t_u`,

.. math:: \theta_i' = \theta_i + \big(P_i + \textstyle\sum_{new} x_u x_u^\top\big)^{-1}
          \textstyle\sum_{new} x_u \big(t_u - x_u^\top \theta_i\big),

which is exactly the ridge solution over old and new ratings when :math:`\theta_i` was the
ridge solution over the old ones, and costs :math:`O(n D^2 + D^3)` for :math:`n` new ratings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LiveRatings", "posterior_update", "rating_triples"]


def rating_triples(ratings: Iterable[tuple[str, str, float]], *,
                   scale: tuple[float, float] | None = None) -> list[tuple[str, str, float]]:
    """``(user_id, item_id, rating)`` triples as strings and floats, checked.

    Raises:
        ValueError: a triple that is not three values, an empty id, a rating that is not a
            finite number, or one outside ``scale``; the message names the triple's position.
    """
    out = []
    for n, triple in enumerate(ratings):
        try:
            user, item, value = triple
        except (TypeError, ValueError):
            raise ValueError(f"rating {n}: expected (user_id, item_id, rating), got "
                             f"{str(triple)[:80]!r}") from None
        user, item = str(user), str(item)
        if not user or not item:
            raise ValueError(f"rating {n}: empty user or item id")
        try:
            r = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"rating {n} ({user!r}, {item!r}): rating "
                             f"{str(value)[:40]!r} is not a number") from None
        if not math.isfinite(r):
            raise ValueError(f"rating {n} ({user!r}, {item!r}): rating {r} is not finite")
        if scale is not None and not scale[0] <= r <= scale[1]:
            raise ValueError(f"rating {n} ({user!r}, {item!r}): rating {r:g} outside the "
                             f"scale [{scale[0]:g}, {scale[1]:g}]")
        out.append((user, item, r))
    return out


@dataclass
class LiveRatings:
    """The ratings observed since training, one per ``(user, item)`` pair.

    ``by_user[u][i]`` and ``by_item[i][u]`` hold the same rating; :meth:`add` returns the pairs
    that changed (new, or a different rating), so that a model updates only what moved.
    """

    by_user: dict[str, dict[str, float]] = field(default_factory=dict)
    by_item: dict[str, dict[str, float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_user.values())

    def __iter__(self) -> Iterator[tuple[str, str, float]]:
        for user, items in self.by_user.items():
            for item, r in items.items():
                yield user, item, r

    def add(self, ratings: Iterable[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
        """Record ratings (checked by :func:`rating_triples`); returns those that changed."""
        changed = []
        for user, item, r in rating_triples(ratings):
            row = self.by_user.setdefault(user, {})
            if row.get(item) == r:
                continue
            row[item] = r
            self.by_item.setdefault(item, {})[user] = r
            changed.append((user, item, r))
        return changed

    def discard(self, user_id: str, item_id: str) -> bool:
        """Forget one pair (a rating set back to its training value); True if it was there."""
        row = self.by_user.get(user_id, {})
        if item_id not in row:
            return False
        del row[item_id]
        del self.by_item[item_id][user_id]
        if not row:
            del self.by_user[user_id]
        if not self.by_item[item_id]:
            del self.by_item[item_id]
        return True

    def user(self, user_id: str) -> dict[str, float]:
        """``{item_id: rating}`` observed for a user (empty when none)."""
        return self.by_user.get(str(user_id), {})

    def with_support(self, user_id: str, support: Sequence[tuple[str, float]]
                     ) -> list[tuple[str, float]]:
        """A user's observed ratings (those not in ``support``) followed by ``support``: the
        history a model without a history store adapts on."""
        observed = self.user(user_id)
        if not observed:
            return list(support)
        given = {i for i, _ in support}
        return [*((i, r) for i, r in observed.items() if i not in given), *support]

    def item(self, item_id: str) -> dict[str, float]:
        """``{user_id: rating}`` observed for an item (empty when none)."""
        return self.by_item.get(str(item_id), {})

    def clear(self) -> None:
        self.by_user.clear()
        self.by_item.clear()


def posterior_update(theta: np.ndarray, precision: np.ndarray, rows: np.ndarray,
                     targets: np.ndarray) -> np.ndarray:
    r"""``[D]`` the state after new observations (module docstring).

    Args:
        theta: ``[D]`` the state before them.
        precision: ``[D, D]`` :math:`P_i` the state was fitted with (or ``[D]``, a diagonal).
        rows: ``[n, D]`` the observations' rows :math:`x_u`.
        targets: ``[n]`` their targets :math:`t_u`.
    """
    p = np.diag(precision) if precision.ndim == 1 else precision.copy()
    if not len(rows):
        return theta.copy()
    p += rows.T @ rows
    return theta + np.linalg.solve(p, rows.T @ (targets - rows @ theta))
