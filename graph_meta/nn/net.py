r"""The network meta-training fits: :class:`GraphMetaNet` (encoder, prior heads, item
residuals, :math:`\mu`, the ridge precisions and the inner-loop learners, which adapt on
:func:`graph_meta.nn.support.support_loss`). :class:`graph_meta.model.GraphMetaRecommender`
holds one; :mod:`graph_meta.fitting` trains it; :meth:`GraphMetaNet.serving_rules` exports the
learners' inner loops for serving (:mod:`graph_meta.serving.adapt`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from graph_meta.config import Config
from graph_meta.meta import NO_LEARNER, InnerRule, MetaLearner, ServingRule, make_learner
from graph_meta.meta.base import rule_arrays
from graph_meta.nn.encoder import HeteroEncoder
from graph_meta.nn.heads import PriorHead, ridge_solve, score
from graph_meta.nn.support import support_loss
from graph_meta.sampling.subgraph import Neighbourhood

__all__ = ["GraphMetaNet", "init_precisions"]


class GraphMetaNet(nn.Module):
    """The trainable parts: encoder, prior heads, item residuals, mu, precision, learners."""

    def __init__(self, data: Any, cfg: Config, mu: float) -> None:
        super().__init__()
        m, meta = cfg.model, cfg.meta
        self.cfg = cfg
        self.dim = m.dim
        d_state = 1 + m.dim
        # collaborative inputs (model.collab_inputs): a warm item's state and log rating
        # count enter message passing, masked (with a flag) for items playing cold
        self.collab = m.collab_inputs
        self.encoder = HeteroEncoder(data, hidden=m.hidden, layers=m.layers, conv=m.conv,
                                     heads=m.heads, use_graph=m.use_graph,
                                     use_co_engaged=m.use_co_engaged,
                                     use_relations=m.use_relations, use_text=m.use_text,
                                     dropout=m.dropout, min_degree=m.min_attr_degree,
                                     extra_dims={"Item": d_state + 2} if self.collab else None)
        n_items = int(data["Item"].num_nodes)
        rated = data["User", "RATED", "Item"].edge_index[1] if ("User", "RATED", "Item") in \
            data.edge_types else torch.zeros(0, dtype=torch.long)
        self.register_buffer("item_log_count", torch.log1p(
            torch.bincount(rated.cpu(), minlength=n_items).float()))
        self.user_head = PriorHead(m.hidden, m.dim, mlp=m.prior_mlp)
        self.item_head = PriorHead(m.hidden, m.dim, mlp=m.prior_mlp)
        self.item_emb = nn.Embedding(int(data["Item"].num_nodes), d_state)
        nn.init.normal_(self.item_emb.weight, std=0.05)
        # 1 for the items whose state was learned (rated in the training data of the net)
        self.register_buffer("item_trained", torch.zeros(int(data["Item"].num_nodes)))
        # closed-form side-feature priors the GNN heads correct (zeros when not used)
        self.register_buffer("item_base", torch.zeros(int(data["Item"].num_nodes), d_state))
        self.register_buffer("user_base", torch.zeros(int(data["User"].num_nodes), d_state))
        self.mu = nn.Parameter(torch.tensor(float(mu)))
        # per-coordinate gate of the GNN corrections (model.prior_gate): starts at 0, so the
        # priors start as the closed-form bases and move only as far as training pays
        self.prior_gate = (nn.Parameter(torch.zeros(2, d_state)) if m.prior_gate else None)
        lam = torch.log(torch.as_tensor(init_precisions(cfg), dtype=torch.float32))
        # the item side's own precision: a cold item's fold-in from its first raters in item
        # tasks, and the items' updates from ratings observed after training (observe)
        if meta.learn_precision:
            self.log_lam = nn.Parameter(lam)
            self.log_lam_item = nn.Parameter(lam.clone())
        else:
            self.register_buffer("log_lam", lam)
            self.register_buffer("log_lam_item", lam.clone())
        self.adapt_vector = meta.adapt in ("vector", "head+vector")
        self.adapt_head = meta.adapt in ("head", "head+vector")
        self.head0 = nn.Parameter(torch.zeros(2)) if self.adapt_head else None
        shapes: dict[str, tuple[int, ...]] = {}
        if self.adapt_vector:
            shapes["theta"] = (d_state,)
        if self.adapt_head:
            shapes["head"] = (2,)
        self.user_learner: MetaLearner | None = None
        self.item_learner: MetaLearner | None = None
        if meta.learner != NO_LEARNER and meta.inner_steps > 0:
            # every learner adapts exactly what meta.adapt names (shapes)
            self.user_learner = make_learner(meta.learner, support_loss, shapes=shapes,
                                             steps=meta.inner_steps, inner_lr=meta.inner_lr,
                                             first_order=meta.first_order)
            self.item_learner = make_learner(meta.learner, support_loss,
                                             shapes={"theta": (d_state,)},
                                             steps=meta.inner_steps, inner_lr=meta.inner_lr,
                                             first_order=meta.first_order)

    @property
    def lam(self) -> Tensor:
        return self.log_lam.exp()

    @property
    def lam_item(self) -> Tensor:
        return self.log_lam_item.exp()

    def priors(self, data: Any, warm_items: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Graph priors ``(item_prior [N_I, D], user_prior [N_U, D])``; ``warm_items``
        ``[N_I]`` (default: the items with training ratings) flags the items whose learned
        state enters message passing (collaborative inputs only)."""
        extra = None
        if self.collab:
            w = (self.item_trained if warm_items is None else warm_items).unsqueeze(-1)
            extra = {"Item": torch.cat([self.item_emb.weight.detach() * w,
                                        self.item_log_count.unsqueeze(-1) * w, w], dim=1)}
        h = self.encoder(data, extra)
        d_item, d_user = self._corrections(h["Item"], h["User"])
        return self.item_base + d_item, self.user_base + d_user

    def seed_priors(self, nbhd: Neighbourhood, warm_items: Tensor | None = None
                    ) -> tuple[Tensor, Tensor]:
        """Graph priors of the seeds of a sampled neighbourhood (:class:`~graph_meta.sampling.
        subgraph.Neighbourhood`): ``(item_prior [S_I, D], user_prior [S_U, D])``, rows in the
        seeds' order; ``warm_items`` ``[N_I]`` (global) as in :meth:`priors`. With whole
        neighbourhoods these are the rows of :meth:`priors` at the seeds."""
        sub = nbhd.data
        item_ids, user_ids = nbhd.n_id("Item"), nbhd.n_id("User")
        extra = None
        if self.collab:
            w = (self.item_trained if warm_items is None else warm_items)[item_ids].unsqueeze(-1)
            extra = {"Item": torch.cat([self.item_emb.weight.detach()[item_ids] * w,
                                        self.item_log_count[item_ids].unsqueeze(-1) * w, w],
                                       dim=1)}
        h = self.encoder(sub, extra)
        n_i, n_u = nbhd.num_seeds.get("Item", 0), nbhd.num_seeds.get("User", 0)
        d_item, d_user = self._corrections(h["Item"][:n_i], h["User"][:n_u])
        return (self.item_base[item_ids[:n_i]] + d_item,
                self.user_base[user_ids[:n_u]] + d_user)

    def _corrections(self, h_item: Tensor, h_user: Tensor) -> tuple[Tensor, Tensor]:
        """The gated prior heads on encoder rows ``[N, H]``: ``([N_I, D], [N_U, D])``."""
        d_item, d_user = self.item_head(h_item), self.user_head(h_user)
        if self.prior_gate is not None:
            d_item, d_user = d_item * self.prior_gate[0], d_user * self.prior_gate[1]
        return d_item, d_user

    def states(self, data: Any, warm_items: Tensor) -> tuple[Tensor, Tensor]:
        """``(item_states [N_I, D], user_prior [N_U, D])``: the learned embedding of a warm
        item, the graph prior of a cold one (or one playing cold in this batch)."""
        item_prior, user_prior = self.priors(data, warm_items)
        w = warm_items.unsqueeze(-1)
        return w * self.item_emb.weight + (1.0 - w) * item_prior, user_prior

    def fold_in(self, prior: Tensor, x: Tensor, y: Tensor, mask: Tensor) -> Tensor:
        """Ridge fold-in (module docstring) of rows ``x`` ``[B, L, D]`` toward ``prior``."""
        rows = torch.cat([torch.ones_like(x[..., :1]), x[..., 1:]], dim=-1)
        t = y - self.mu - x[..., 0]
        return ridge_solve(prior, rows, t, mask, self.lam)

    def adapt(self, theta0: Tensor, items: Tensor, y: Tensor, mask: Tensor,
              learner: MetaLearner | None, *, head0: Tensor | None
              ) -> list[dict[str, Tensor]]:
        """Inner-loop trajectory ``[{theta, head?}, ...]`` of a batch of tasks, scored
        through ``head0`` ``[2]`` (None: without a head)."""
        b = theta0.shape[0]
        start: dict[str, Tensor] = {"theta": theta0}
        if head0 is not None:
            start["head"] = head0.expand(b, 2)
        if learner is None:
            return [start]
        params = {k: v for k, v in start.items() if learner.adapts(k)}
        batch = {"items": items, "y": y, "mask": mask, "theta": theta0,
                 "mu": self.mu.expand(b)}
        if self.cfg.meta.support_shrink > 0:
            batch["kappa"] = torch.full((b,), self.cfg.meta.support_shrink, device=y.device)
        if "head" in start:
            batch["head"] = start["head"]
        traj = learner.adapt_batch(params, batch, params_batched=True, return_trajectory=True)
        return [{**start, **p} for p in traj]

    def adapt_users(self, ep: Mapping[str, Tensor], items: Tensor, user_prior: Tensor
                    ) -> tuple[Tensor, list[dict[str, Tensor]]]:
        """``(theta0, trajectory)`` of a batch of user tasks (tensors from
        :func:`~graph_meta.fitting.train.episode_tensors`): the ridge fold-in of history (and
        support, ``meta.ridge_on_support``) toward the user prior, then the user learner's
        inner loop on the support (what serving computes in
        :mod:`graph_meta.serving.adapt`)."""
        cfg = self.cfg.meta
        sup_x = items[ep["support_items"]]
        hist_x = items[ep["hist_items"]]
        if cfg.ridge_on_support:
            x = torch.cat([hist_x, sup_x], 1)
            y = torch.cat([ep["hist_y"], ep["support_y"]], 1)
            m = torch.cat([ep["hist_mask"], ep["support_mask"]], 1)
        else:
            x, y, m = hist_x, ep["hist_y"], ep["hist_mask"]
        theta0 = self.fold_in(user_prior[ep["users"]], x, y, m)
        traj = self.adapt(theta0, sup_x, ep["support_y"], ep["support_mask"],
                          self.user_learner, head0=self.head0)
        return theta0, traj

    def user_loss(self, ep: Mapping[str, Tensor], items: Tensor,
                  user_prior: Tensor) -> Tensor:
        """Query MSE of a batch of user tasks (:meth:`adapt_users`), plus the user learner's
        outer term (:meth:`~graph_meta.meta.base.MetaLearner.outer_loss`)."""
        _, traj = self.adapt_users(ep, items, user_prior)
        qry_x = items[ep["query_items"]]
        steps = traj[1:] if (self.cfg.meta.multi_step_loss and len(traj) > 1) else traj[-1:]
        loss = sum(self._query_mse(p, qry_x, ep["query_y"], ep["query_mask"]) for p in steps)
        loss = loss / len(steps)
        if self.user_learner is not None:
            loss = loss + self.user_learner.outer_loss(traj[0], traj[-1])
        return loss

    def adapt_items(self, prior: Tensor, raters: Tensor, y: Tensor, mask: Tensor
                    ) -> list[dict[str, Tensor]]:
        """Inner-loop trajectory of a batch of cold items with priors ``prior`` ``[B, D]``
        rated ``y`` ``[B, K]`` by raters with states ``raters`` ``[B, K, D]``: the ridge
        fold-in toward the prior (precision :attr:`lam_item`), then the item learner's
        steps, every score through the users' head before adaptation ``head0`` (fixed here):
        what :meth:`GraphMetaRecommender.observe` serves with
        (:func:`~graph_meta.serving.adapt.new_item_state`)."""
        rows = torch.cat([torch.ones_like(raters[..., :1]), raters[..., 1:]], dim=-1)
        t = y - self.mu - raters[..., 0]
        # the head is the users': item tasks score through it and do not train it (their
        # cold items, rated lower than the rest, would pull every user's offset down)
        head0 = None if self.head0 is None else self.head0.detach()
        if head0 is not None:  # r = mu + h0 + (1 + h1) (b_u + <row, theta>)
            t = t - head0[0] - head0[1] * raters[..., 0]
            rows = (1.0 + head0[1]) * rows
        theta0 = ridge_solve(prior, rows, t, mask, self.lam_item)
        return self.adapt(theta0, raters, y, mask, self.item_learner, head0=head0)

    def item_loss(self, ep: Mapping[str, Tensor], items: Tensor,
                  user_prior: Tensor) -> Tensor:
        """Query MSE of a batch of item tasks (items cold, edges hidden): each item's
        :meth:`adapt_items` from its support raters, scored on its query raters."""
        ctx = self.fold_in(user_prior[ep["ctx_users"]], items[ep["hist_items"]], ep["hist_y"],
                           ep["hist_mask"])
        sup_u, qry_u = ctx[ep["support_users"]], ctx[ep["query_users"]]
        traj = self.adapt_items(items[ep["items"]], sup_u, ep["support_y"], ep["support_mask"])
        return self._query_mse(traj[-1], qry_u, ep["query_y"], ep["query_mask"])

    def serving_rules(self) -> dict[str, np.ndarray]:
        """The learners' inner loops as serving runs them (:meth:`~graph_meta.meta.base.
        MetaLearner.serving_rule`), as predictor-state arrays: a gradient-step learner's step
        sizes ``lr_theta`` ``[T, D]`` and ``lr_head`` ``[T, 2]`` (user learner), ``lr_item``
        ``[T, D]`` (item learner), zeros for what it does not adapt and ``T = 0`` without a
        learner; a learner with its own rule saves that rule's arrays instead
        (``rule.user.<kind>.*`` / ``rule.item.<kind>.*``, :func:`~graph_meta.meta.base.
        rule_arrays`)."""
        d_state = 1 + self.dim
        out: dict[str, np.ndarray] = {}
        for role, learner, sizes, keys in (
                ("user", self.user_learner, {"theta": d_state, "head": 2},
                 {"theta": "lr_theta", "head": "lr_head"}),
                ("item", self.item_learner, {"theta": d_state}, {"theta": "lr_item"})):
            rule = _rule(learner, sizes)
            if type(rule) is InnerRule:  # the fast path: step sizes, the old format
                out.update({key: rule.rates[name] for name, key in keys.items()})
            else:
                out.update(rule_arrays(role, rule))
        return out

    def _query_mse(self, p: Mapping[str, Tensor], qry_x: Tensor, y: Tensor,
                   mask: Tensor) -> Tensor:
        head = p.get("head")
        pred = score(self.mu, p["theta"].unsqueeze(1), qry_x,
                     None if head is None else head.unsqueeze(1))
        per_task = ((pred - y) ** 2 * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return per_task.mean()


def _rule(learner: MetaLearner | None, sizes: Mapping[str, int]) -> ServingRule:
    if learner is None:
        return InnerRule({k: np.zeros((0, n)) for k, n in sizes.items()})
    return learner.serving_rule(sizes)


def init_precisions(cfg: Config) -> list[float]:
    """Initial ridge precisions ``[D]`` (also ALS's regularisation): the bias coordinate's
    ``meta.init_precision_bias`` (when > 0), then ``meta.init_precision`` for the vector."""
    m = cfg.meta
    bias = m.init_precision_bias if m.init_precision_bias > 0 else m.init_precision
    return [float(bias)] + [float(m.init_precision)] * cfg.model.dim
