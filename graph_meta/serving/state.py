r"""What a fitted :class:`~graph_meta.model.GraphMetaRecommender` predicts from: the
:class:`PredictorState` (numpy arrays, saved by :mod:`graph_meta.serving.persistence`), and
how training builds it from the trained network (:func:`build_state`).

``D = 1 + model.dim`` is the size of a node state, ``T`` the number of inner steps. A model
saved by an older version may lack the fields marked optional; every reader copes.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from graph_meta.config import Config
from graph_meta.fitting import als as als_fit
from graph_meta.fitting.als import segment_sums
from graph_meta.graph.neighborhood import ItemNeighbors
from graph_meta.meta import InnerRule, ServingRule
from graph_meta.meta.base import rule_from_arrays
from graph_meta.nn.net import GraphMetaNet
from graph_meta.sampling.episodes import RatingIndex

__all__ = ["PredictorState", "build_state", "history_fold_in", "rating"]


@dataclass(eq=False)
class PredictorState(MutableMapping):
    """The arrays prediction reads (all ``float64`` unless noted).

    Also a mapping from field name to array over the fields that are set (``model.cache``
    reads and writes it so; a missing field is None), which is the saved format: one tensor
    per field, by name. Keys of a file this version does not know are kept in :attr:`extra`
    and saved back; so are the arrays of a learner's own serving rule
    (``rule.<role>.<kind>.<array>``, :meth:`user_rule`, :meth:`item_rule`).
    """

    # -- the backbone ------------------------------------------------------------------------
    item_states: np.ndarray | None = None  #: ``[N_I, D]`` (moved in place by observed ratings)
    mu: np.ndarray | None = None           #: ``()`` the global offset
    user_prior: np.ndarray | None = None   #: ``[N_U, D]`` graph priors of the known users
    lam: np.ndarray | None = None          #: ``[D]`` ridge precision of the user fold-in
    lam_item: np.ndarray | None = None     #: ``[D]`` ... of items' updates (optional)
    #: ``()`` the scale of ``lam_item`` in live updates chosen at fit time
    #: (``model.live_precision = 0``; optional)
    live_precision: np.ndarray | None = None
    # -- the inner loops (GraphMetaNet.serving_rules; a learned rule: in extra) -------------
    lr_theta: np.ndarray | None = None     #: ``[T, D]`` user learner's step sizes, state
    lr_head: np.ndarray | None = None      #: ``[T, 2]`` ... head (zeros: not adapted)
    lr_item: np.ndarray | None = None      #: ``[T, D]`` item learner's (optional)
    head0: np.ndarray | None = None        #: ``[2]`` the head before adaptation
    # -- training histories: CSR by user, and each user's fold-in sums ----------------------
    hist_indptr: np.ndarray | None = None  #: ``[N_U + 1]`` int64
    hist_items: np.ndarray | None = None   #: ``[E]`` int64 item positions
    hist_y: np.ndarray | None = None       #: ``[E]`` ratings
    #: ``[N_U, D, D]`` :math:`\sum x x^\top` (None: not kept, ``model.history_sums_max_gb``;
    #: read through :meth:`history_grams`)
    hist_a: np.ndarray | None = None
    hist_c: np.ndarray | None = None       #: ``[N_U, D]`` :math:`\sum x t`
    #: ``[N_I, D]`` the item states at fit time, which the sums use (only when ``hist_a`` is
    #: not kept: live updates move :attr:`item_states`)
    hist_states: np.ndarray | None = None
    # -- neighbour lists (CSR by item): attribute paths, co-rating, learned weights ----------
    nbr_indptr: np.ndarray | None = None
    nbr_indices: np.ndarray | None = None
    nbr_sim: np.ndarray | None = None
    nbr_rated_indptr: np.ndarray | None = None
    nbr_rated_indices: np.ndarray | None = None
    nbr_rated_sim: np.ndarray | None = None
    reg_indptr: np.ndarray | None = None
    reg_indices: np.ndarray | None = None
    reg_weight: np.ndarray | None = None
    # -- the ALS states the item side-feature prior was fitted to (add_items) ---------------
    prior_targets: np.ndarray | None = None  #: ``[N_I, D]`` (optional)
    #: ``[D]`` what one rating tells an item's state, which the item relation prior's fit used
    #: (:func:`graph_meta.graph.relations.rating_information`; optional)
    prior_information: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def fields(cls) -> tuple[str, ...]:
        """The names of the array fields, in saved order."""
        return _FIELDS

    @classmethod
    def from_mapping(cls, arrays: Mapping[str, Any]) -> PredictorState:
        """A state from ``{name: array}`` (unknown names go to :attr:`extra`)."""
        if isinstance(arrays, PredictorState):
            return arrays
        known = _FIELD_SET
        state = cls(**{k: v for k, v in arrays.items() if k in known})
        state.extra = {k: v for k, v in arrays.items() if k not in known}
        return state

    # -- the mapping view ----------------------------------------------------------------------
    def __getitem__(self, key: str) -> np.ndarray:
        if key in self.extra:
            return self.extra[key]
        value = getattr(self, key) if key in _FIELD_SET else None
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: np.ndarray) -> None:
        if key in _FIELD_SET:
            setattr(self, key, value)
        else:
            self.extra[key] = value

    def __delitem__(self, key: str) -> None:
        if key in self.extra:
            del self.extra[key]
        elif key in _FIELD_SET and getattr(self, key) is not None:
            setattr(self, key, None)
        else:
            raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield from (k for k in _FIELDS if getattr(self, k) is not None)
        yield from self.extra

    def __len__(self) -> int:
        return sum(1 for _ in self)

    # -- derived -------------------------------------------------------------------------------
    def history_grams(self, users: np.ndarray | slice) -> np.ndarray:
        r"""``[len(users), D, D]`` :math:`\sum x x^\top` over each user's training history,
        ``x = (1, v)`` of the item states at fit time: rows of :attr:`hist_a` (a view for a
        slice), or computed from the histories when the state does not keep it (the same
        sums, in another order)."""
        if self.hist_a is not None:
            return self.hist_a[users]
        assert self.hist_indptr is not None and self.hist_items is not None
        states = self.hist_states if self.hist_states is not None else self.item_states
        assert states is not None
        if isinstance(users, slice):
            users = np.arange(len(self.hist_indptr) - 1)[users]
        users = np.asarray(users, dtype=np.int64)
        if len(users) == 1:  # one user's read while serving: no segment bookkeeping
            u = int(users[0])
            x = states[self.hist_items[self.hist_indptr[u]:self.hist_indptr[u + 1]]]
            x[:, 0] = 1.0
            return (x.T @ x)[None]
        lo, counts = self.hist_indptr[users], np.diff(self.hist_indptr)[users]
        starts = np.repeat(lo - np.r_[0, np.cumsum(counts)[:-1]], counts)
        pos = starts + np.arange(int(counts.sum()))
        items = self.hist_items

        def rows_of(k: np.ndarray) -> tuple[np.ndarray, None]:
            x = states[items[pos[k]]]
            x[:, 0] = 1.0
            return x, None

        grams, _ = segment_sums(np.repeat(np.arange(len(users)), counts), len(users),
                                states.shape[1], rows_of, vec=False)
        assert grams is not None
        return grams

    @property
    def d_state(self) -> int:
        assert self.item_states is not None
        return int(self.item_states.shape[1])

    @property
    def item_precision(self) -> np.ndarray:
        """``[D]`` the items' ridge precision (the users' in a model saved before it had its
        own)."""
        lam = self.lam_item if self.lam_item is not None else self.lam
        assert lam is not None
        return lam

    def user_rule(self, fallback: float) -> ServingRule:
        """The user learner's inner loop: its own rule when it saved one
        (``rule.user.<kind>.*`` in :attr:`extra`), else the step sizes ``lr_theta`` /
        ``lr_head`` (``fallback``: the rate of steps past the trained ones when there are
        none, :meth:`~graph_meta.model.GraphMetaRecommender.adaptation_curve`)."""
        rule = rule_from_arrays("user", self.extra)
        if rule is not None:
            return rule
        return InnerRule({"theta": self.lr_theta, "head": self.lr_head}, fallback=fallback)

    def item_rule(self) -> ServingRule:
        """The item learner's inner loop: its own rule (``rule.item.<kind>.*``), else the
        step sizes ``lr_item`` (no steps in a model saved before it existed)."""
        rule = rule_from_arrays("item", self.extra)
        if rule is not None:
            return rule
        rates = self.lr_item if self.lr_item is not None else np.zeros((0, self.d_state))
        return InnerRule({"theta": rates})


_FIELDS = tuple(f.name for f in dataclasses.fields(PredictorState) if f.name != "extra")
_FIELD_SET = frozenset(_FIELDS)


def rating(mu: float, head: np.ndarray, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
    r"""``[E]`` predicted ratings :math:`\mu + h_0 + (1 + h_1)(\theta_0 + x_0 + \theta_{1:}
    \cdot x_{1:})` of item states ``x`` ``[E, D]`` under one user state ``theta`` ``[D]`` or
    one per row ``[E, D]`` (:func:`graph_meta.nn.heads.score` in numpy)."""
    dot = x[:, 1:] @ theta[1:] if theta.ndim == 1 else (theta[:, 1:] * x[:, 1:]).sum(1)
    return mu + head[0] + (1.0 + head[1]) * (theta[..., 0] + x[:, 0] + dot)


def history_fold_in(state: PredictorState) -> np.ndarray:
    """``[N_U, D]`` every known user's ridge fold-in of their training history toward their
    graph prior (batched ``D x D`` solves, :data:`~graph_meta.fitting.als.ROWS_PER_BLOCK`
    users at a time: each user's solve is its own, so the blocks change no value)."""
    lam = state.lam
    n = len(state.hist_c)
    out = np.empty((n, len(lam)))
    diag = np.diag(lam)
    for start in range(0, n, als_fit.ROWS_PER_BLOCK):
        stop = min(start + als_fit.ROWS_PER_BLOCK, n)
        a = state.history_grams(slice(start, stop)) + diag
        b = state.hist_c[start:stop] + lam * state.user_prior[start:stop]
        out[start:stop] = np.linalg.solve(a, b[..., None])[..., 0]
    return out


@torch.no_grad()
def build_state(net: GraphMetaNet, data: Any, index: RatingIndex, config: Config,
                neighbors: tuple[ItemNeighbors, ItemNeighbors],
                prior_targets: np.ndarray | None,
                regression_rows: np.ndarray | None = None, *,
                prior_information: np.ndarray | None = None) -> PredictorState:
    """The predictor state of the trained ``net`` on graph ``data`` with training ratings
    ``index``: item states and user priors from one forward pass, the users' history sums,
    the learners' inner loops (:meth:`~graph_meta.nn.net.GraphMetaNet.serving_rules`), the
    ``(attribute-path, co-rating)`` ``neighbors`` and the learned co-rating weights
    (:func:`residual_regression`; ``regression_rows``: only those items' weights, which is
    all that predicting them reads: a state for scoring some items only, as validation)."""
    net.eval()
    items_t, users_t = net.states(data, net.item_trained)
    items = items_t.double().cpu().numpy()
    mu = float(net.mu)
    d_state = items.shape[1]

    def rows_of(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = items[index.item[edges]]
        t = index.rating[edges] - mu - x[:, 0]
        x[:, 0] = 1.0
        return x, t

    keep = index.num_users * d_state * d_state * 8 <= config.model.history_sums_max_gb * 1e9
    hist_a, hist_c = segment_sums(index.user, index.num_users, d_state, rows_of, outer=keep)
    head0 = (net.head0.double().cpu().numpy() if net.head0 is not None else np.zeros(2))
    attribute, co_rated = neighbors
    state = PredictorState(
        item_states=items,
        user_prior=users_t.double().cpu().numpy(),
        hist_a=hist_a,
        hist_c=hist_c,
        hist_states=None if keep else items.copy(),
        lam=net.log_lam.detach().double().exp().cpu().numpy(),
        lam_item=net.log_lam_item.detach().double().exp().cpu().numpy(),
        head0=head0,
        mu=np.array(mu),
        hist_indptr=index.by_user.indptr.astype(np.int64),
        hist_items=index.by_user.indices.astype(np.int64),
        hist_y=index.rating[index.by_user.edge_ids].astype(np.float64),
        nbr_indptr=attribute.indptr,
        nbr_indices=attribute.indices,
        nbr_sim=attribute.sim,
        nbr_rated_indptr=co_rated.indptr,
        nbr_rated_indices=co_rated.indices,
        nbr_rated_sim=co_rated.sim)
    state.update(net.serving_rules())  # step sizes are fields, a learner's own rule extra
    lists = residual_regression(state, config, regression_rows)
    state.reg_indptr, state.reg_indices, state.reg_weight = lists.indptr, lists.indices, lists.sim
    if prior_targets is not None and prior_targets.shape == items.shape:
        state.prior_targets = np.asarray(prior_targets, dtype=np.float64)
        if prior_information is not None:
            state.prior_information = np.asarray(prior_information, dtype=np.float64)
    net.train()
    return state


def training_residuals(state: PredictorState) -> sp.csr_matrix:
    """``[N_U, N_I]`` the residual of every training rating under its user's history
    fold-in (what the learned co-rating weights regress on)."""
    theta = history_fold_in(state)
    users = np.repeat(np.arange(len(theta)), np.diff(state.hist_indptr))
    fitted = np.empty(len(users))
    for start in range(0, len(users), als_fit.ROWS_PER_BLOCK):  # no [E, D] temporaries
        stop = min(start + als_fit.ROWS_PER_BLOCK, len(users))
        fitted[start:stop] = rating(float(state.mu), state.head0, theta[users[start:stop]],
                                    state.item_states[state.hist_items[start:stop]])
    return sp.csr_matrix((state.hist_y - fitted, (users, state.hist_items)),
                         shape=(len(theta), len(state.item_states)))


def co_rating_lists(state: PredictorState) -> ItemNeighbors | None:
    """The co-rating neighbour lists of ``state`` (None when it has none)."""
    if state.nbr_rated_indices is None or not len(state.nbr_rated_indices):
        return None
    return ItemNeighbors(state.nbr_rated_indptr, state.nbr_rated_indices, state.nbr_rated_sim)


def residual_regression(state: PredictorState, config: Config,
                        rows: np.ndarray | None = None) -> ItemNeighbors:
    """The learned co-rating weights, fitted on :func:`training_residuals` (empty lists when
    off): the exact solve up to ``model.regression_exact_max`` rated items, past it (or with
    ``model.regression_solver``) one ridge per item over its co-rating neighbours (the lists
    in ``state``, or computed). ``rows``: only those items' weights are needed (the local
    solve skips the others; :func:`build_state`)."""
    m = config.model
    n = len(state.item_states)
    lists = ItemNeighbors(np.zeros(n + 1, np.int64), np.zeros(0, np.int32),
                          np.zeros(0, np.float32))
    if m.regression_l2 > 0 and m.neighbor_k > 0 and m.use_graph and len(state.hist_y):
        try:
            lists = ItemNeighbors.from_residuals(
                training_residuals(state), l2=m.regression_l2, top_k=m.neighbor_k,
                candidates=co_rating_lists(state), solver=m.regression_solver,
                exact_max=m.regression_exact_max, rows=rows)
        except MemoryError as exc:
            warnings.warn(f"residual regression skipped: {exc!s} (set "
                          "model.regression_l2 = 0 to turn it off)", stacklevel=2)
    return lists
