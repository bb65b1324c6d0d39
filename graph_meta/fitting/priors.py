r"""The closed-form side-feature priors training gives users and items (and
:meth:`~graph_meta.model.GraphMetaRecommender.add_items` gives products added later): a ridge
map from side features onto the ALS states, rows weighted toward the newest releases, shifted
by what rated neighbours learned along same-type relation files and among the nodes sharing
a value two hops away (a brand's maker) (:class:`graph_meta.graph.relations.RelationPrior`,
``model.use_relations``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from graph_meta.config import Config
from graph_meta.dataset import ITEM_ID, RATING, TIMESTAMP, Dataset
from graph_meta.eval.protocol import release_column
from graph_meta.graph.relations import (
    RelationPrior,
    SharedValues,
    attribute_relation_incidence,
    relation_adjacency,
    state_reliability,
)
from graph_meta.nn.net import init_precisions
from graph_meta.side_features import RidgeMap, side_features

__all__ = ["DRIFT_MIN_RHO", "DRIFT_P", "linear_prior", "release_drift", "release_weights",
           "side_prior"]

#: the release lean needs the rated items' mean rating to drift with their release order: a
#: Spearman correlation of at least this size ...
DRIFT_MIN_RHO = 0.1
#: ... and a two-sided p-value under this
DRIFT_P = 0.01


def release_weights(dataset: Dataset, item_ids: list[str], bias: float) -> np.ndarray | None:
    """Cold-set sampling weights ``exp(bias * q)``, ``q`` in [0, 1] the item's release
    quantile (the release column of :func:`graph_meta.eval.protocol.release_column`, else the
    first rating time); None when ``bias`` is 0 or no release order exists."""
    if bias == 0:
        return None
    col = release_column(dataset)
    if col is not None:
        rel = dataset.items[col].reindex(pd.Index(item_ids)).to_numpy(dtype=np.float64)
    elif TIMESTAMP in dataset.train.columns:
        first = dataset.train.groupby(ITEM_ID, observed=True)[TIMESTAMP].min()
        first.index = first.index.astype(str)
        rel = first.reindex(pd.Index(item_ids)).to_numpy(dtype=np.float64)
    else:
        return None
    rel = np.array(rel, dtype=np.float64)
    ok = np.isfinite(rel)
    if not ok.any():
        return None
    rel[~ok] = np.nanmedian(rel)
    q = pd.Series(rel).rank(pct=True).to_numpy()
    return np.exp(bias * q)


def release_drift(dataset: Dataset, item_ids: list[str]) -> dict[str, Any] | None:
    r"""Does the mean training rating of the rated ``item_ids`` drift with their release order
    (:func:`release_weights`' quantile)? ``{"rho", "p", "items", "drift"}``: Spearman's
    :math:`\rho` and its two-sided p-value over the rated items, ``drift`` when
    :math:`|\rho| \ge` :data:`DRIFT_MIN_RHO` and p < :data:`DRIFT_P`; None without a release
    order or with fewer than 20 rated items.

    The lean toward the newest releases (``train.prior_newest_bias``) fits the new items'
    prior mostly on the latest rated ones, which pays where the catalogue drifts (movielens-1m:
    :math:`\rho` = -0.26, the newer films rated lower) and only throws rows away where it does
    not (the synthetic catalogues: :math:`|\rho|` <= 0.07; planted catalogue, 3 seeds,
    item_cold 0.851 -> 0.836 without the lean, README). With ``train.prior_lean = "drift"``
    the lean applies only where this finds drift."""
    from scipy.stats import spearmanr

    q = release_weights(dataset, item_ids, 1.0)
    if q is None:
        return None
    means = dataset.train.groupby(ITEM_ID, observed=True)[RATING].mean()
    means.index = means.index.astype(str)
    mean = means.reindex(pd.Index(item_ids)).to_numpy(np.float64)
    rated = np.isfinite(mean)
    if rated.sum() < 20:
        return None
    rho, p = spearmanr(np.log(q[rated]), mean[rated])
    rho, p = float(np.nan_to_num(rho)), float(np.nan_to_num(p, nan=1.0))
    return {"rho": round(rho, 4), "p": float(f"{p:.3g}"), "items": int(rated.sum()),
            "drift": bool(abs(rho) >= DRIFT_MIN_RHO and p < DRIFT_P)}


def linear_prior(table, frame, counts: np.ndarray, targets: np.ndarray, alpha: float, *,
                 weight: str = "sqrt", row_weights: np.ndarray | None = None) -> np.ndarray:
    r"""Closed-form side-feature prior: a ridge map from the one-hot / multi-hot / text
    features :math:`f` of :func:`graph_meta.side_features.side_features` onto the ALS states
    :math:`y` of the rated rows, applied to every row (new ones included):

    .. math:: \min_{W, b} \sum_{i:\,n_i>0} \omega_i \lVert W^\top f_i + b - y_i\rVert^2
              + \alpha \lVert W\rVert^2, \qquad \omega_i = s(n_i)\,\rho_i,

    :math:`s(n) = \sqrt n` (``weight="sqrt"``) or :math:`n` (``"count"``), :math:`\rho`
    = ``row_weights`` (1 when None; e.g. :func:`release_weights`, so that the map is fitted
    mostly on the newest rows, which new items resemble)."""
    fit = counts > 0
    feats = side_features(table, frame, fit)
    w = np.sqrt(counts[fit]) if weight == "sqrt" else counts[fit].astype(np.float64)
    if row_weights is not None:
        w = w * np.asarray(row_weights, dtype=np.float64)[fit]
    ridge = RidgeMap(feats, fit, w)
    return ridge.predict(targets[fit], alpha)


def side_prior(dataset: Dataset, cfg: Config, node_type: str, ids: list[str],
               counts: np.ndarray, targets: np.ndarray,
               information: np.ndarray | None = None,
               record: dict[str, Any] | None = None) -> np.ndarray:
    """The closed-form side-feature prior training gives the ``ids`` rows of ``node_type``
    (``"Item"``: ``train.linear_prior_alpha``, rows weighted toward the newest releases by
    ``train.prior_newest_bias``; ``"User"``: ``train.user_prior_alpha``), fitted on the rows
    with ``counts > 0`` to ``targets`` (:func:`linear_prior`), then shifted by what rated
    neighbours learned (with ``model.use_graph`` and ``model.use_relations``;
    :class:`~graph_meta.graph.relations.RelationPrior`, fitted on the same rows weighted by
    their rating counts, without the release lean): along the relation files whose two ends
    are ``node_type``, and among the nodes that share a value two hops away through a relation
    file between attribute nodes (the items of one maker, ``Brand -[MADE_BY]-> Maker``:
    :func:`~graph_meta.graph.relations.attribute_relation_incidence`, factored as
    :class:`~graph_meta.graph.relations.SharedValues`; planted makers, 3 seeds: item_cold
    0.878 -> 0.849, README). ``information``: ``[D]`` what
    one rating tells a state (:func:`~graph_meta.graph.relations.rating_information` of the
    other side's ALS states), from which the relation fit undoes the ALS shrinkage of thinly
    rated rows; None: not undone (a model saved before it was kept). ``record``: a dict that
    receives ``{relation: [beta per coordinate]}`` of the fitted relation prior (what the
    prior leaned on: near 0 where a relation carries nothing)."""
    t = cfg.train
    if node_type == "Item":
        frame, table, alpha = dataset.items, dataset.spec.items, t.linear_prior_alpha
        rho = release_weights(dataset, ids, t.prior_newest_bias)
    else:
        frame, table = dataset.users, dataset.spec.users
        alpha, rho = t.user_prior_alpha or t.linear_prior_alpha, None
    rows = frame.loc[pd.Index(ids).astype(frame.index.dtype)]
    use = cfg.model.use_graph and cfg.model.use_relations
    paths = (attribute_relation_incidence(dataset, node_type, rows, pd.Index(ids, dtype=object))
             if use else {})
    base = linear_prior(table, rows, counts, targets, alpha, weight=t.prior_weight,
                        row_weights=rho)
    adjacency: dict[str, Any] = relation_adjacency(dataset, node_type, ids) if use else {}
    adjacency.update({f"{rel}:shared": SharedValues(inc) for rel, inc in paths.items()})
    if adjacency:
        # rows weighted by how well their state is measured only: the release lean of the
        # side prior would hand the fit to the newest items, whose few ratings leave their
        # states shrunk, and so shrink beta (planted successors: 0.61 -> 1.30 on the bias)
        w = np.sqrt(counts) if t.prior_weight == "sqrt" else counts.astype(np.float64)
        reliability = (None if information is None else
                       state_reliability(counts, information, np.asarray(init_precisions(cfg))))
        relation = RelationPrior.fit(adjacency, base, targets, counts, weights=w,
                                     reliability=reliability)
        base = relation.apply(adjacency, base, targets, counts, reliability)
        if record is not None:
            record.update({name: [round(float(b), 4) for b in beta]
                           for name, beta in zip(relation.names, relation.beta, strict=True)})
    return base
