"""Biased MF by alternating ridge solves: the ALS start of meta-training and the targets of
the side-feature prior (:mod:`graph_meta.fitting.priors`)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

from graph_meta.sampling.episodes import RatingIndex

__all__ = ["als", "segment_outer"]


def segment_outer(out: np.ndarray, seg: np.ndarray, rows: np.ndarray) -> None:
    """``out[s] += sum_{k: seg[k]=s} rows[k] rows[k]^T`` in sorted chunks (no huge temp)."""
    if len(seg) == 0:
        return
    order = np.argsort(seg, kind="stable")
    seg, rows = seg[order], rows[order]
    bounds = np.r_[0, np.flatnonzero(seg[1:] != seg[:-1]) + 1, len(seg)]
    for a, b in itertools.pairwise(bounds):
        r = rows[a:b]
        out[seg[a]] += r.T @ r


def als(index: RatingIndex, dim: int, reg: float | Sequence[float], iters: int, seed: int, *,
        edges: np.ndarray | None = None, items0: np.ndarray | None = None,
        on_sweep: Callable[[int, int], None] | None = None
        ) -> tuple[float, np.ndarray, np.ndarray]:
    """Biased MF by alternating ridge solves: ``(mu, items [N_I, 1+dim], users [N_U, 1+dim])``.

    The user step is the model's fold-in with a zero prior and precision ``reg`` (a number, or
    ``[1+dim]`` per coordinate: bias first); the item step is its mirror image. ``edges``
    (bool ``[E]``) restricts the fit to those ratings, ``items0`` warm-starts it. Items
    without ratings get zeros. ``on_sweep(k, iters)`` is called after sweep ``k``.
    """
    rng = np.random.default_rng(seed)
    sel = np.ones(index.num_edges, bool) if edges is None else edges
    e_user, e_item, e_rating = index.user[sel], index.item[sel], index.rating[sel]
    mu = float(e_rating.mean()) if len(e_rating) else 0.0
    d = 1 + dim
    if items0 is None:
        items = np.zeros((index.num_items, d))
        items[:, 1:] = rng.normal(0, 0.1, (index.num_items, dim))
    else:
        items = np.asarray(items0, dtype=np.float64).copy()
    users = np.zeros((index.num_users, d))
    lam = np.diag(np.broadcast_to(np.asarray(reg, dtype=np.float64), (d,)))

    def solve(rows_of: np.ndarray, cols_of: np.ndarray, other: np.ndarray, n: int
              ) -> np.ndarray:
        x = np.concatenate([np.ones((len(cols_of), 1)), other[cols_of, 1:]], axis=1)
        t = e_rating - mu - other[cols_of, 0]
        a = np.zeros((n, d, d))
        segment_outer(a, rows_of, x)
        c = np.zeros((n, d))
        np.add.at(c, rows_of, x * t[:, None])
        return np.linalg.solve(a + lam, c[..., None])[..., 0]

    for sweep in range(iters):
        users = solve(e_user, e_item, items, index.num_users)
        items = solve(e_item, e_user, users, index.num_items)
        if on_sweep is not None:
            on_sweep(sweep + 1, iters)
    users = solve(e_user, e_item, items, index.num_users)
    return mu, items, users
