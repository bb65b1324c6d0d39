"""Training loop of :class:`graph_meta.model.GraphMetaRecommender` (``model.fit``).

``train_model(model, dataset, ...)``:

1. seeds numpy/torch from ``train.seed``; picks the device (``auto`` = CUDA if available);
2. with ``train.validate``: carves pseudo-tasks from ``train.csv`` only
   (:func:`graph_meta.eval.protocol.carve_validation`: held-out users, the *newest* items
   held out, warm tasks), meta-trains on the reduced train and evaluates the pseudo-tasks
   after every epoch (task-averaged RMSE, mean over the four scenarios); early stopping after
   ``patience`` epochs without improvement, best weights kept; with ``val_epoch0`` the
   untrained model (ALS states, closed-form priors, initial step sizes) is scored first
   and wins when no meta-training epoch beats it (then the refit trains 0 epochs);
3. with ``train.refit``: retrains from scratch on all of train for the best epoch count;
   otherwise the best carved-train weights are kept and the prediction cache is rebuilt on
   the full training graph (all histories folded in);
4. before anything heavy, a memory estimate (:func:`graph_meta.fitting.memory.
   estimate_memory`: graphs, ALS, caches, neighbour lists and co-rating regression from the
   data's sizes and the config) is checked against ``train.memory_limit_gb`` or else the
   memory available (``/proc/meminfo``); what cannot fit is refused with
   :class:`~graph_meta.fitting.memory.MemoryLimitError`, naming the limit and a config that
   fits. With ``progress``, every step prints a line to stderr when it starts and ends, and a
   heartbeat (elapsed, detail such as the ALS sweep, RSS) every 10 s while it runs;
5. every epoch writes ``checkpoint_dir/last.pt`` (weights, optimizer, RNG states, epoch,
   phase, best score; loadable with ``weights_only=True``) and appends to
   ``log_dir/train_log.csv``; ``resume=True`` continues from ``last.pt`` after a kill;
6. each meta-batch encodes (``train.encode``) the whole graph, or on a large graph (``"auto"``:
   more than ``train.auto_sample_nodes`` users + items) only the sampled k-hop
   neighbourhoods (``train.fanouts`` in-edges per node and edge type at each hop) of the
   users and items whose priors its tasks read (:meth:`_Phase.task_losses`); the
   ``prior_match`` / ``item_l2`` regularisers then run over those items only. Validation and
   the prediction cache always encode the whole graph;
7. launched by ``torchrun`` (``WORLD_SIZE > 1``), data-parallel
   (:mod:`graph_meta.fitting.distributed`): each rank trains on its shard of every
   meta-batch, gradients are averaged over the ranks, rank 0 validates, decides and writes
   (checkpoints, logs, ``model.pt``) and alone builds the prediction cache; the ranks'
   precomputed state (graph, ALS states, priors, initial weights) is checked identical.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from graph_meta.config import DEFAULT_FANOUT, Config
from graph_meta.dataset import ITEM_ID, RATING, USER_ID, Dataset
from graph_meta.eval.protocol import carve_validation, evaluate, training_view
from graph_meta.fitting import distributed
from graph_meta.fitting.als import (
    PRECISION_GRID,
    als,
    bias_precision,
    choose_precision,
    factor_precision,
    rebiased_items,
)
from graph_meta.fitting.distributed import SINGLE, DistContext
from graph_meta.fitting.graphs import build_graph, check_snapshot
from graph_meta.fitting.memory import available_memory_gb, check_memory
from graph_meta.fitting.path_weights import choose_known_item_scale, choose_path_weights
from graph_meta.fitting.prior_search import choose_item_prior, with_item_prior
from graph_meta.fitting.priors import release_drift, release_weights, side_prior
from graph_meta.fitting.progress import Progress, current_progress, use_progress
from graph_meta.graph.relations import rating_information
from graph_meta.live_tuning import choose_live_precision
from graph_meta.nn.net import GraphMetaNet, init_precisions
from graph_meta.rating_scale import INTERNAL_SCALE, RatingMap
from graph_meta.sampling.episodes import EpisodeBatch, EpisodeSampler, RatingIndex
from graph_meta.sampling.subgraph import NeighbourhoodSampler

__all__ = ["BatchLosses", "encode_mode", "episode_tensors", "resolve_device", "train_model",
           "write_csv_row"]


class BatchLosses(NamedTuple):
    """What :meth:`_Phase.task_losses` returns for one meta-batch."""

    user_loss: Tensor            # scalar
    item_loss: Tensor | None     # scalar; None without item tasks (or their weight 0)
    item_prior: Tensor           # [N_I, D]
    warm: Tensor                 # [N_I]: 1 for an item whose learned state the batch uses
    prior_rows: Tensor | None    # [S_I] the seed items of sampled encoding (None: full graph)


def encode_mode(cfg: Config, data: Any) -> str:
    """``"full"`` or ``"sampled"``: ``train.encode``, with ``"auto"`` sampled when the graph
    has more than ``train.auto_sample_nodes`` User + Item nodes."""
    return "sampled" if cfg.train.sampled(_nodes(data)) else "full"


def _nodes(data: Any) -> int:
    """User + Item nodes of the graph ``data``."""
    return int(data["User"].num_nodes) + int(data["Item"].num_nodes)


def refit_als_sweeps(cfg: Config, data: Any) -> int | None:
    """The refit's ALS sweeps from a warm start (``train.refit_als_iters``), or None: a fresh
    start with ``train.als_iters`` sweeps (auto, on a graph of at most
    ``train.auto_sample_nodes`` User + Item nodes)."""
    t = cfg.train
    if t.refit_als_iters >= 0:
        return t.refit_als_iters
    return max(3, t.als_iters // 4) if t.large(_nodes(data)) else None


def _warm_items(ids: list[str], states: np.ndarray, data: Any, seed: int) -> np.ndarray:
    """The item states ``states`` (``[len(ids), 1 + dim]``, rows for the items ``ids``) in
    graph ``data``'s item order, the start of a warm ALS; an item they lack starts as in a
    fresh ALS (zero bias, N(0, 0.1) vector)."""
    pos = pd.Index(ids).get_indexer([str(i) for i in data.node_ids["Item"]])
    items0 = np.zeros((len(pos), states.shape[1]))
    items0[:, 1:] = np.random.default_rng(seed).normal(0, 0.1, (len(pos), states.shape[1] - 1))
    items0[pos >= 0] = states[pos[pos >= 0]]
    return items0


def _seed(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def _sampler(index: RatingIndex, cfg: Config,
             cold_weights: np.ndarray | None = None) -> EpisodeSampler:
    e = cfg.episodes
    return EpisodeSampler(index, cold_item_weights=cold_weights,
                          query_size=e.query_size, query_fraction=e.query_fraction,
                          max_support=e.max_support,
                          history_fanout=e.history_fanout, item_max_support=e.item_max_support,
                          item_history_fanout=e.item_history_fanout,
                          cold_item_fraction=e.cold_item_fraction,
                          kind_probs=tuple(e.kind_probs),  # type: ignore[arg-type]
                          p_zero_shot=e.p_zero_shot)


def episode_tensors(batch: EpisodeBatch, device: torch.device) -> tuple[dict, dict | None]:
    """Numpy episodes -> tensors on ``device`` (indices long, the rest float)."""

    def conv(obj: Any, names: Sequence[str]) -> dict[str, Tensor]:
        out = {}
        for n in names:
            v = getattr(obj, n)
            dtype = torch.long if v.dtype.kind in "iu" else torch.float32
            out[n] = torch.as_tensor(v, dtype=dtype, device=device)
        return out

    u = conv(batch.users, ["users", "support_items", "support_y", "support_mask",
                           "query_items", "query_y", "query_mask", "hist_items", "hist_y",
                           "hist_mask"])
    i = None
    if batch.items is not None:
        i = conv(batch.items, ["items", "support_users", "support_y", "support_mask",
                               "query_users", "query_y", "query_mask", "ctx_users",
                               "hist_items", "hist_y", "hist_mask"])
    return u, i


def resolve_device(device: str) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda`` (RuntimeError when CUDA
    is not available) as a torch device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' asked for but CUDA is not available")
    return torch.device(device)


def write_csv_row(path: Path, row: Mapping[str, Any]) -> None:
    """Append ``row`` to a CSV log (header written when the file is new; a row with a field
    the header lacks rewrites the log with the header widened, earlier rows blank there)."""
    rows: list[dict[str, str]] = []
    fields: list[str] = []
    if path.exists() and path.stat().st_size:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = list(reader.fieldnames or [])
            if any(k not in fields for k in row):
                rows = list(reader)
    extra = [k for k in row if k not in fields]
    if fields and not extra:
        with path.open("a", newline="", encoding="utf-8") as fh:
            csv.DictWriter(fh, fieldnames=fields, restval="").writerow(row)
        return
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields + extra, restval="")
        w.writeheader()
        w.writerows([*rows, row])
    tmp.replace(path)


class _Phase:
    """One training run (carved-train validation phase, or the refit) on one dataset."""

    def __init__(self, model: Any, dataset: Dataset, cfg: Config,
                 device: torch.device, graph: Any = None, *, code: int = 0,
                 ctx: DistContext = SINGLE,
                 als_start: tuple[list[str], np.ndarray, int] | None = None) -> None:
        self.model = model
        self.cfg = cfg
        self.item_prior: dict[str, Any] | None = None  # the pair prior_search chose, if any
        #: the release drift test (train.prior_lean = "drift"), if it ran
        self.release_drift: dict[str, Any] | None = None
        #: per node type, the relation prior's beta by relation (what the priors leaned on)
        self.relation_priors: dict[str, dict[str, list[float]]] = {}
        self.device = device
        self.code = code  # 0: the validation phase, 1: the refit / plain training
        self.ctx = ctx
        progress = current_progress()
        if graph is not None:
            self.data = graph
        else:
            with progress.step(f"building the graph ({len(dataset.train):,} ratings, "
                               f"{len(dataset.users):,} users, {len(dataset.items):,} items)"):
                self.data = build_graph(dataset, text_dim=cfg.model.text_dim)
        self.index = RatingIndex.from_graph(self.data)
        self.sampler = _sampler(self.index, cfg, release_weights(
            dataset, [str(i) for i in self.data.node_ids["Item"]],
            cfg.episodes.cold_newest_bias))
        self.data_dev = self.data.to(device)
        model.net = GraphMetaNet(self.data, cfg, mu=self.index.mean).to(device)
        self.encode = encode_mode(cfg, self.data)
        self.nbhd: NeighbourhoodSampler | None = None
        self.fanouts: list[int] = []
        if self.encode == "sampled":
            hop_types = model.net.encoder.layer_edge_types[::-1]  # hop k: round L - k
            self.nbhd = NeighbourhoodSampler(self.data, hop_types)
            self.fanouts = (list(cfg.train.fanouts) or
                            [DEFAULT_FANOUT] * cfg.model.layers)[:len(hop_types)]
        self.nbhd_rng = np.random.default_rng([cfg.train.seed, code, 0, ctx.rank])
        if cfg.train.freeze_item_emb:
            model.net.item_emb.weight.requires_grad_(False)
        meta_names = ("raw_lr", "log_lam", "head0", "mu")
        named = [(n, p) for n, p in model.net.named_parameters() if p.requires_grad]
        inner = [p for n, p in named if n.split(".")[-1] in meta_names or ".raw_lr." in n]
        inner_ids = {id(p) for p in inner}
        rest = [p for _, p in named if id(p) not in inner_ids]
        self.params = [p for _, p in named]  # all-reduced in this order on every rank
        # the inner loop's own parameters (step sizes, precision, head init, mu) are few and
        # need larger steps than the encoder, which overfits quickly
        self.opt = torch.optim.Adam(
            [{"params": rest, "weight_decay": cfg.train.weight_decay},
             {"params": inner, "lr": cfg.train.meta_lr, "weight_decay": 0.0}],
            lr=cfg.train.lr)
        if cfg.train.als_iters > 0:
            sweeps, items0 = cfg.train.als_iters, None
            if als_start is not None:  # (item ids, their states, sweeps): a warm start
                ids, states, sweeps = als_start
                items0 = _warm_items(ids, states, self.data, cfg.train.seed)
            with progress.step(f"ALS ({sweeps} sweeps over {self.index.num_edges:,} ratings"
                               + (", warm-started)" if items0 is not None else ")")):
                mu, states, user_states = als(
                    self.index, cfg.model.dim, init_precisions(cfg), sweeps,
                    cfg.train.seed, items0=items0,
                    on_sweep=lambda k, n: setattr(progress, "detail", f"sweep {k}/{n}"))
            self.als_full = states
            model.prior_targets = states if cfg.train.linear_prior_alpha > 0 else None
            self.bias_reg: float | None = None
            self.emb_full = states  # the states items are scored with; priors keep ALS's
            self.factor_reg: float | None = None
            if cfg.train.item_bias_eb:
                reg = init_precisions(cfg)
                self.bias_reg = bias_precision(self.index, mu, states, user_states,
                                               ceiling=reg[0])
                if cfg.train.item_factor_eb:
                    self.factor_reg = factor_precision(self.index, mu, states, user_states,
                                                       ceiling=reg[1])
                self.emb_full = rebiased_items(self.index, mu, user_states,
                                               self.item_precisions(), self.bias_reg)
            with torch.no_grad():
                model.net.item_emb.weight.copy_(torch.from_numpy(self.emb_full).float())
                model.net.mu.fill_(mu)
            if cfg.train.linear_prior_alpha > 0:
                # the GNN prior heads learn a correction on top of this closed-form base
                ids = self.data.node_ids
                n_rated = {nt: np.bincount(self.index.item if nt == "Item" else self.index.user,
                                           minlength=len(ids[nt])).astype(np.float64)
                           for nt in ("Item", "User")}
                # what one rating tells an item's / a user's state (the relation priors)
                information = {"Item": rating_information(user_states, n_rated["User"]),
                               "User": rating_information(states, n_rated["Item"])}
                model.prior_information = information["Item"]
                for nt, st, buf in (("Item", states, "item_base"),
                                    ("User", user_states, "user_base")):
                    counts = n_rated[nt]
                    names = [str(i) for i in ids[nt]]
                    if nt == "Item" and cfg.train.prior_search:
                        with progress.step("item prior: ridge and release lean (backtest)"):
                            self.item_prior = choose_item_prior(dataset, cfg, names, counts, st)
                        if self.item_prior is not None:
                            cfg = self.cfg = with_item_prior(cfg, self.item_prior)
                    elif (nt == "Item" and cfg.train.prior_lean == "drift"
                          and cfg.train.prior_newest_bias > 0):
                        self.release_drift = release_drift(dataset, names)
                        if self.release_drift and not self.release_drift["drift"]:
                            cfg = self.cfg = cfg.replace(**{"train.prior_newest_bias": 0.0})
                    with progress.step(f"side-feature prior of {nt} nodes"):
                        base = side_prior(dataset, cfg, nt, names, counts, st,
                                          information[nt],
                                          record=self.relation_priors.setdefault(nt, {}))
                    getattr(model.net, buf).copy_(torch.from_numpy(base).float())
                    if nt == "Item" and self.bias_reg is not None and \
                            cfg.train.item_prior_target:
                        self.emb_serve = rebiased_items(
                            self.index, mu, user_states, self.item_precisions(),
                            self.bias_reg, target=np.asarray(base, dtype=np.float64))
        self.has_rating = torch.zeros(self.index.num_items, device=device)
        self.has_rating[torch.as_tensor(np.unique(self.index.item), device=device)] = 1.0
        model.net.item_trained.copy_(self.has_rating)
        self.n_ratings_item = torch.as_tensor(
            np.bincount(self.index.item, minlength=self.index.num_items), dtype=torch.float32,
            device=device)
        if ctx.active:
            with progress.step(f"checking the {ctx.world_size} ranks hold the same state"):
                self.digest = self.state_digest()
                distributed.check_same(self.digest, "graphs, ALS states, priors or initial "
                                       "weights", ctx)

    def state_digest(self) -> str:
        """Digest (:func:`~graph_meta.fitting.distributed.digest`) of what every rank must
        hold alike before training: the graph, the rating index, the cold-item weights and
        the net's initial state (ALS item states, closed-form priors, weights)."""
        net = self.model.net
        assert net is not None
        idx = self.index
        return distributed.digest(self.data, [idx.user, idx.item, idx.rating],
                                  self.sampler.cold_p, net.state_dict())

    def epoch(self, rng: np.random.Generator, progress: bool, desc: str,
              epoch: int = 0) -> dict[str, float]:
        """One pass over the task users (at most ``train.epoch_users`` of them, drawn afresh
        each epoch) in meta-batches of ``episodes.batch_users``.

        ``rng`` (the phase's, alike on every rank) orders the users and holds out the query
        ratings; in a distributed run each rank trains on its slice of every meta-batch
        (:func:`~graph_meta.fitting.distributed.shard_batches`) with its share of
        ``episodes.batch_items``, its episodes drawn from an RNG of ``(seed, phase, epoch,
        rank)``, and the gradients are averaged over the ranks before each step. Returns the
        mean losses over the batches (averaged over the ranks), ``seconds`` and
        ``tasks_per_s`` (all ranks' tasks)."""
        net = self.model.net
        assert net is not None
        cfg = self.cfg
        ctx = self.ctx
        chunks = self.sampler.epoch_users(rng, cfg.episodes.batch_users,
                                          cfg.train.epoch_users)
        n_items = cfg.episodes.batch_items
        local = rng
        if ctx.active:
            chunks = distributed.shard_batches(chunks, ctx.rank, ctx.world_size)
            n_items = distributed.share(n_items, ctx.rank, ctx.world_size)
            key = [cfg.train.seed, self.code, epoch, ctx.rank]
            local = np.random.default_rng(key)
            torch.manual_seed(int(np.random.SeedSequence(key).generate_state(1)[0]))
        # the neighbourhoods' own stream: the episodes are those of full-graph encoding
        self.nbhd_rng = np.random.default_rng([cfg.train.seed, self.code, epoch, ctx.rank])
        self.shard_users = int(sum(len(c) for c in chunks))
        it: Any = chunks
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(chunks, desc=desc, leave=False, file=sys.stderr)
            it = bar
        tot = {"loss": 0.0, "user_loss": 0.0, "item_loss": 0.0}
        tasks = 0
        query_mask = self._holdout_states(rng)
        t0 = time.perf_counter()
        for users in it:
            batch = self.sampler.batch(local, users, n_items, query_edges=query_mask)
            out = self.task_losses(batch)
            user_loss, task_item_loss, warm = out.user_loss, out.item_loss, out.warm
            # the regularisers' items: all (full graph), the seed items (sampled)
            rows: Any = slice(None) if out.prior_rows is None else out.prior_rows
            item_prior = out.item_prior[rows]
            emb = net.item_emb.weight[rows]
            has_rating = self.has_rating[rows]
            w = warm[rows].unsqueeze(-1)
            loss = user_loss
            item_loss = torch.zeros((), device=self.device)
            if task_item_loss is not None:
                item_loss = task_item_loss
                loss = loss + cfg.episodes.item_task_weight * item_loss
            hr = has_rating.unsqueeze(-1)
            n_warm = has_rating.sum().clamp(min=1.0)
            if cfg.train.prior_match > 0:
                # the prior regresses onto the learned states of warm items (with
                # collaborative inputs, of those playing cold: rebuilt from their neighbours)
                target = hr * (1.0 - w) if net.collab else hr
                gap = (((item_prior - emb.detach()) ** 2 * target).sum()
                       / target.sum().clamp(min=1.0))
                loss = loss + cfg.train.prior_match * gap
            if cfg.train.item_l2 > 0 and net.item_emb.weight.requires_grad:
                # warm states shrink toward their prior, more so with few ratings
                shrink = ((emb - item_prior.detach()) ** 2).sum(1)
                loss = loss + cfg.train.item_l2 * (shrink * has_rating).sum() / n_warm
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            distributed.average_gradients(self.params, ctx)
            if cfg.train.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(
                    [p for p in net.parameters() if p.requires_grad], cfg.train.grad_clip)
            self.opt.step()
            tot["loss"] += loss.item()
            tot["user_loss"] += user_loss.item()
            tot["item_loss"] += item_loss.item()
            tasks += len(users) + (0 if batch.items is None else len(batch.items))
            if bar is not None:
                bar.set_postfix(loss=f"{loss.item():.4f}")
        self._full_states()
        n = max(1, len(chunks))
        dt = time.perf_counter() - t0
        if ctx.active:  # losses: mean over the ranks; tasks: all ranks'
            *sums, tasks = distributed.sum_across([*tot.values(), tasks], ctx)
            tot = {k: v / ctx.world_size for k, v in zip(tot, sums, strict=True)}
        return {k: v / n for k, v in tot.items()} | {"seconds": dt,
                                                      "tasks_per_s": tasks / max(dt, 1e-9)}

    def task_losses(self, batch: EpisodeBatch, data: Any = None) -> BatchLosses:
        """The query losses of a meta-batch as :meth:`epoch` trains on them
        (:class:`BatchLosses`; ``item_loss`` None without item tasks or weight).

        Items playing new (``batch.cold_items``) take their graph prior, computed over
        ``data`` (default: the phase's graph), in place of their learned state (``warm``
        ``[N_I]`` is 0 for them); every rating a task reads comes from the episode tensors
        (:func:`episode_tensors`), none from the graph.

        With sampled encoding (:attr:`encode`, and no ``data`` given) the encoder runs on the
        sampled neighbourhoods (:class:`~graph_meta.sampling.subgraph.NeighbourhoodSampler`,
        fan-outs :attr:`fanouts`) of the seeds: the users whose prior the tasks read (task
        users, and item tasks' raters) and the items read with ``warm`` 0 (the cold items
        the tasks read, item tasks' items); ``item_prior`` / ``user_prior`` hold the seeds'
        priors scattered into the closed-form bases, whose other rows no loss reads, and
        ``prior_rows`` the seed items (the rows the regularisers use)."""
        net = self.model.net
        assert net is not None
        u_ep, i_ep = episode_tensors(batch, self.device)
        warm = self.has_rating * torch.as_tensor(~batch.cold_items, dtype=torch.float32,
                                                 device=self.device)
        with_items = i_ep is not None and self.cfg.episodes.item_task_weight > 0
        prior_rows = None
        if data is None and self.nbhd is not None:
            seeds = self._seeds(batch, warm, with_items)
            nbhd = self.nbhd.sample(seeds, self.fanouts, self.nbhd_rng, self.data_dev)
            seed_items, seed_users = nbhd.n_id("Item")[:len(seeds["Item"])], \
                nbhd.n_id("User")[:len(seeds["User"])]
            p_item, p_user = net.seed_priors(nbhd, warm)
            item_prior = net.item_base.index_copy(0, seed_items, p_item)
            user_prior = net.user_base.index_copy(0, seed_users, p_user)
            prior_rows = seed_items
        else:
            item_prior, user_prior = net.priors(self.data_dev if data is None else data, warm)
        w = warm.unsqueeze(-1)
        items = w * net.item_emb.weight + (1.0 - w) * item_prior
        user_loss = net.user_loss(u_ep, items, user_prior)
        item_loss = None
        if with_items:
            item_loss = net.item_loss(i_ep, items, user_prior)
        return BatchLosses(user_loss, item_loss, item_prior, warm, prior_rows)

    def _seeds(self, batch: EpisodeBatch, warm: Tensor, with_items: bool
               ) -> dict[str, np.ndarray]:
        """The nodes whose graph priors a meta-batch reads: ``{"User": [S_U], "Item":
        [S_I]}`` (sorted global indices): the task users (and item tasks' raters), and of
        every item a task reads (support, query, history, item tasks' items; padding
        included) those read through their prior (``warm`` 0)."""
        u = batch.users
        users = [u.users]
        items = [u.support_items.ravel(), u.query_items.ravel(), u.hist_items.ravel()]
        if with_items and batch.items is not None:
            users.append(batch.items.ctx_users)
            items += [batch.items.items, batch.items.hist_items.ravel()]
        item_ids = np.unique(np.concatenate(items))
        cold = warm.cpu().numpy()[item_ids] == 0
        return {"User": np.unique(np.concatenate(users)), "Item": item_ids[cold]}

    def _holdout_states(self, rng: np.random.Generator) -> np.ndarray | None:
        """Hold out ``query_holdout`` of the ratings for this epoch's query sets and refit the
        frozen item states without them (warm-started ALS), so that no training query rating
        is baked into the item states it is predicted with."""
        frac = self.cfg.train.query_holdout
        net = self.model.net
        assert net is not None
        if frac <= 0 or getattr(self, "als_full", None) is None or \
                net.item_emb.weight.requires_grad:
            return None
        mask = rng.random(self.index.num_edges) < frac
        reg = init_precisions(self.cfg)
        mu, states, users = als(self.index, self.cfg.model.dim, reg,
                                self.cfg.train.holdout_als_iters, 0, edges=~mask,
                                items0=self.als_full)
        if self.bias_reg is not None:
            states = rebiased_items(self.index, mu, users, self.item_precisions(),
                                    self.bias_reg, edges=~mask)
        with torch.no_grad():
            net.item_emb.weight.copy_(torch.from_numpy(states).float())
        return mask

    def item_precisions(self) -> list[float]:
        """``[D]`` the item step's precisions after ALS (bias first; its bias entry is
        replaced by ``bias_reg``): ALS's, the factors' empirical-Bayes one where
        ``train.item_factor_eb`` set it."""
        reg = init_precisions(self.cfg)
        if getattr(self, "factor_reg", None) is None:
            return reg
        return [reg[0]] + [float(self.factor_reg)] * (len(reg) - 1)

    def query_items(self, val: Dataset) -> np.ndarray:
        """Positions in this phase's graph of the query items of ``val``'s tasks."""
        pos = {str(i): k for k, i in enumerate(self.data.node_ids["Item"])}
        found = {pos.get(str(i), -1) for tasks in val.tasks.values() for t in tasks
                 for i, _ in t.query}
        found.discard(-1)
        return np.array(sorted(found), dtype=np.int64)

    def _full_states(self) -> None:
        net = self.model.net
        if getattr(self, "als_full", None) is not None and net is not None and \
                not net.item_emb.weight.requires_grad:
            with torch.no_grad():
                net.item_emb.weight.copy_(torch.from_numpy(self.emb_full).float())

    def serve_states(self) -> None:
        """Put the warm items' serving states (``train.item_prior_target``: shrunk toward
        their side-feature prior) in place of the training ones, for the prediction cache;
        only where training kept them frozen (``train.freeze_item_emb``), as ALS set them."""
        net = self.model.net
        if getattr(self, "emb_serve", None) is not None and net is not None and \
                not net.item_emb.weight.requires_grad:  # trained item states are kept
            with torch.no_grad():
                net.item_emb.weight.copy_(torch.from_numpy(self.emb_serve).float())

    def validate(self, val: Dataset) -> dict[str, float]:
        with current_progress().step("validation: prediction cache and pseudo-tasks"):
            # the pseudo-tasks predict their query items only: the learned co-rating weights
            # of the other items are not solved (the local solver; the exact one solves all)
            self.model.build_cache(self.data_dev, self.index,
                                   regression_rows=self.query_items(val))
            res = evaluate(self.model, val, fit=False)
        out = {f"val_rmse_{s}": b["rmse"] for s, b in res["scenarios"].items()}
        vals = [v for v in out.values() if np.isfinite(v)]
        out["val_rmse"] = float(np.mean(vals)) if vals else math.inf
        return out


def _state(model: Any, ph: _Phase, rng: np.random.Generator,
           **extra: Any) -> dict[str, Any]:
    assert model.net is not None
    out = {"net": model.net.state_dict(), "opt": ph.opt.state_dict(),
           "torch_rng": torch.get_rng_state(), "np_rng": json.dumps(rng.bit_generator.state),
           **extra}
    if ph.device.type == "cuda":  # dropout on the GPU draws from the CUDA generator
        out["cuda_rng"] = torch.cuda.get_rng_state(ph.device)
    return out


def _restore(model: Any, phase: _Phase, ckpt: dict[str, Any]
             ) -> np.random.Generator:
    assert model.net is not None
    model.net.load_state_dict(ckpt["net"])
    phase.opt.load_state_dict(ckpt["opt"])
    torch.set_rng_state(ckpt["torch_rng"].cpu())  # loaded onto the device on resume
    if "cuda_rng" in ckpt and phase.device.type == "cuda":
        torch.cuda.set_rng_state(ckpt["cuda_rng"].cpu(), phase.device)
    rng = np.random.default_rng()
    rng.bit_generator.state = json.loads(ckpt["np_rng"])
    return rng


def _run_phase(model: Any, dataset: Dataset, cfg: Config,
               device: torch.device, *, name: str, epochs: int, val: Dataset | None,
               progress: bool, log_path: Path | None, ckpt_dir: Path | None,
               resume_state: dict[str, Any] | None, deadline: float,
               extra_ckpt: dict[str, Any] | None = None, graph: Any = None,
               ctx: DistContext = SINGLE,
               als_start: tuple[list[str], np.ndarray, int] | None = None) -> dict[str, Any]:
    """Train one phase for up to ``epochs`` epochs (early stopping on ``val``).

    In a distributed run (``ctx``) every rank trains; rank 0 alone validates and checks the
    time limit, and its verdict (the validation row and whether to stop) is broadcast after
    every epoch, so all ranks keep the same best weights and stop at the same epoch. Only the
    rank given ``log_path`` / ``ckpt_dir`` (rank 0) writes."""
    code = 0 if name == "val" else 1
    rng = _seed(cfg.train.seed + code)
    phase = _Phase(model, dataset, cfg, device, graph, code=code, ctx=ctx, als_start=als_start)
    assert model.net is not None
    if progress:
        print(f"[graph-meta] {name}: meta-batches encode the "
              + ("whole graph" if phase.encode == "full" else
                 f"sampled neighbourhoods (fan-outs {phase.fanouts})"),
              file=sys.stderr, flush=True)
    start, best, best_epoch, bad = 0, math.inf, 0, 0
    best_state: dict[str, torch.Tensor] | None = None
    if resume_state is not None and resume_state.get("phase") == name:
        rng = _restore(model, phase, resume_state)
        start = int(resume_state["epoch"]) + 1
        best, best_epoch, bad = (float(resume_state["best"]), int(resume_state["best_epoch"]),
                                 int(resume_state["bad"]))
        best_state = resume_state.get("best_net")
        if best_state is not None:
            best_state = {k: v.to(device) for k, v in best_state.items()}
    stopped = "epochs"
    floor = 1
    users_per_rank: list[list[int]] = []
    if val is not None and cfg.train.val_epoch0:
        floor = 0  # the untrained model (ALS + closed-form priors + fold-in) is a candidate
        if resume_state is None or resume_state.get("phase") != name:
            scores = phase.validate(val) if ctx.is_main else None
            row0: dict[str, Any] = {"phase": name, "epoch": 0,
                                    **distributed.broadcast(scores, ctx)}
            best, best_epoch = row0["val_rmse"], 0
            best_state = {k: v.detach().clone() for k, v in model.net.state_dict().items()}
            model.history.append(row0)
            if progress:
                print(f"[graph-meta] {_fmt(row0)}", file=sys.stderr, flush=True)
            if log_path is not None:
                write_csv_row(log_path, _rounded(row0))
    for epoch in range(start, epochs):
        stats = phase.epoch(rng, progress, f"{name} epoch {epoch + 1}/{epochs}", epoch)
        if ctx.active:
            users_per_rank.append([int(n) for n in distributed.gather(phase.shard_users, ctx)])
        row: dict[str, Any] = {"phase": name, "epoch": epoch + 1, **stats}
        # rank 0's verdict: the validation scores, and whether time is up
        verdict = None
        if ctx.is_main:
            verdict = ((phase.validate(val) if val is not None else {}),
                       time.perf_counter() > deadline)
        scores, time_up = distributed.broadcast(verdict, ctx)
        if val is not None:
            row.update(scores)
            score = row["val_rmse"]
            if score < best - 1e-4:
                best, best_epoch, bad = score, epoch + 1, 0
                best_state = {k: v.detach().clone() for k, v in model.net.state_dict().items()}
            else:
                bad += 1
        else:
            best_epoch = epoch + 1
        if progress:
            print(f"[graph-meta] {_fmt(row)}", file=sys.stderr, flush=True)
        model.history.append(row)
        if log_path is not None:
            write_csv_row(log_path, _rounded(row))
        if ckpt_dir is not None:
            extra: dict[str, Any] = {"phase": name, "epoch": epoch, "best": best,
                                     "best_epoch": best_epoch, "bad": bad,
                                     **(extra_ckpt or {})}
            if best_state is not None:
                extra["best_net"] = best_state
            tmp = ckpt_dir / "last.pt.tmp"
            torch.save(_state(model, phase, rng, **extra), tmp)
            tmp.replace(ckpt_dir / "last.pt")
        if val is not None and bad > cfg.train.patience:
            stopped = "early"
            break
        if time_up:
            stopped = "time"
            break
    if val is not None and best_state is not None:
        model.net.load_state_dict(best_state)
    return {"phase": phase, "best": best, "best_epoch": max(floor, best_epoch),
            "stopped": stopped, "users_per_rank": users_per_rank}


def _fmt(row: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in row.items())


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}


def _record_item_prior(model: Any, info: dict[str, Any], phase: _Phase) -> None:
    """The item prior pair the final phase chose (``train.prior_search``): into ``info`` and
    the model's config (what ``add_items`` and the saved model use); the item bias
    precision it used (``train.item_bias_eb``); the release drift test and, where it found
    none, the lean it turned off (``"release_drift"``, ``train.prior_lean``); the relation
    priors' beta by node type and relation (``"relation_prior"``: ``{"Item":
    {"MADE_BY:shared": [...]}}``)."""
    if getattr(phase, "bias_reg", None) is not None:
        info["item_bias_precision"] = round(phase.bias_reg, 4)
    if getattr(phase, "factor_reg", None) is not None:
        info["item_factor_precision"] = round(phase.factor_reg, 4)
    drift = phase.release_drift
    if drift is not None:
        info["release_drift"] = drift
        if not drift["drift"]:  # what add_items and the saved model use
            model.config = model.config.replace(**{"train.prior_newest_bias": 0.0})
    if any(phase.relation_priors.values()):
        info["relation_prior"] = {nt: beta for nt, beta in phase.relation_priors.items()
                                  if beta}
    if phase.item_prior is None:
        return
    info["item_prior"] = phase.item_prior
    model.config = with_item_prior(model.config, phase.item_prior)


def train_model(model: Any, dataset: Dataset, *, device: str = "auto",
                progress: bool = False, log_dir: str | Path | None = None,
                checkpoint_dir: str | Path | None = None, resume: bool = False,
                store: Any = None) -> None:
    """Fit ``model`` (a :class:`graph_meta.model.GraphMetaRecommender`, which calls this from
    its ``fit``) on ``dataset`` (see the module docstring).

    ``store``: a :class:`~graph_meta.store.base.GraphStore` holding the dataset's graph (e.g.
    Neo4j); the full-train phase then trains on its ``snapshot()`` instead of a graph built
    from the folder (the validation phase always builds its reduced graph from the carved
    train). The snapshot must hold exactly the dataset's users and items.

    First, before anything heavy, the memory estimate
    (:func:`graph_meta.fitting.memory.check_memory`) refuses with
    :class:`~graph_meta.fitting.memory.MemoryLimitError` what cannot fit. With ``progress``,
    lines on stderr follow every step from the first second on: the estimate, each setup step
    (graph, ALS, priors, validation, caches) as it starts and ends with a heartbeat while it
    runs, the epochs.

    Launched by ``torchrun`` (``WORLD_SIZE > 1`` in the environment) or inside an initialised
    process group, training is data-parallel (:mod:`graph_meta.fitting.distributed`; the
    module docstring, item 6): every rank calls this with the same dataset (and a store
    holding the same graph); rank 0 alone prints, writes ``log_dir`` and ``checkpoint_dir``
    and ends with a predict-ready model; the others end with the trained :attr:`net` only
    (no prediction cache). ``model.fit_info["distributed"]`` records the world size, the
    backend, each rank's digest of the precomputed state and of the final weights, and the
    task users each rank trained on per epoch.
    """
    ctx, dev = distributed.setup(resolve_device(device))
    # a dataset rated on another scale trains on the model's own (graph_meta.rating_scale)
    rating_map = RatingMap.for_scale(dataset.spec.rating_scale, implicit=dataset.spec.implicit)
    scale = [float(v) for v in dataset.spec.rating_scale]
    dataset = rating_map.rescaled(dataset)  # the map is recorded (and served) once trained
    with use_progress(Progress(bool(progress) and ctx.is_main)) as printer:
        est = check_memory(dataset, model.config)  # up front: refuses what cannot fit
        avail, _ = available_memory_gb()
        printer.say(f"{est.sizes['ratings']:,} ratings, {est.sizes['users']:,} users, "
                    f"{est.sizes['items']:,} items: memory estimate {est.gb:.2f} GB"
                    + (f" of {avail:.1f} GB available" if avail is not None else ""))
        if ctx.active:
            printer.say(f"data-parallel over {ctx.world_size} ranks ({ctx.backend}), "
                        f"device {dev}")
        threads = torch.get_num_threads()
        try:  # train.threads holds for this fit only: the caller's count comes back after
            if model.config.train.threads > 0:
                torch.set_num_threads(model.config.train.threads)
            _train_model(model, dataset, dev=dev, ctx=ctx,
                         progress=bool(progress) and ctx.is_main,
                         log_dir=log_dir if ctx.is_main else None,
                         checkpoint_dir=checkpoint_dir if ctx.is_main else None,
                         resume=resume, store=store, rating_map=rating_map, raw_scale=scale)
        finally:
            torch.set_num_threads(threads)


def _train_model(model: Any, dataset: Dataset, *, dev: torch.device, ctx: DistContext,
                 progress: bool, log_dir: str | Path | None,
                 checkpoint_dir: str | Path | None, resume: bool, store: Any,
                 rating_map: RatingMap, raw_scale: list[float]) -> None:
    cfg = model.config
    model.prior_targets = model.prior_information = None  # set by the final net's phase
    full_graph = None
    if store is not None:
        with current_progress().step("reading the graph from the store"):
            full_graph = store.snapshot(text_dim=cfg.model.text_dim)
            if not rating_map.identity:  # the store's ratings are on the dataset's scale
                for et in full_graph.edge_types:  # RATED and its reverse share the tensor
                    if et[1] in ("RATED", "rev_RATED") and "rating" in full_graph[et]:
                        full_graph[et].rating = rating_map.to_internal(full_graph[et].rating)
                full_graph.rating_scale = INTERNAL_SCALE
            check_snapshot(full_graph, dataset, rating_map=rating_map)
    t_cfg = cfg.train
    dataset = training_view(dataset)
    searched = None
    # the value configured, not one an earlier fit of this model chose
    configured = float(model.fit_info.get("configured_init_precision", cfg.meta.init_precision))
    if t_cfg.precision_search and t_cfg.als_iters > 0 and len(dataset.train):
        with current_progress().step("ALS precision on held-out training ratings"):
            searched = choose_precision(
                pd.factorize(dataset.train[USER_ID])[0], pd.factorize(dataset.train[ITEM_ID])[0],
                dataset.train[RATING].to_numpy(), cfg.model.dim, PRECISION_GRID,
                t_cfg.als_iters, t_cfg.seed, default=configured,
                bias_reg=cfg.meta.init_precision_bias or None)
        cfg = model.config = cfg.replace(**{"meta.init_precision": searched[0]})
    log_path = ckpt_dir = None
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        log_path = Path(log_dir) / "train_log.csv"
        if not resume and log_path.exists():
            log_path.unlink()
    if checkpoint_dir is not None:
        ckpt_dir = Path(checkpoint_dir)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (ckpt_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    resume_state = None
    if resume and ckpt_dir is not None and (ckpt_dir / "last.pt").exists():
        resume_state = torch.load(ckpt_dir / "last.pt",
                                  map_location="cpu" if ctx.active else dev, weights_only=True)
    if resume and ctx.active:  # rank 0's checkpoint, on every rank
        resume_state = distributed.broadcast(resume_state, ctx)
    t0 = time.perf_counter()
    deadline = t0 + (t_cfg.max_minutes * 60 if t_cfg.max_minutes > 0 else math.inf)
    model.history = []
    info: dict[str, Any] = {"device": str(dev)}
    if searched is not None:
        info["init_precision"], info["precision_search"] = searched
        info["configured_init_precision"] = configured
    model.fit_info = {}  # a refit starts from equal path weights (chosen again below)
    shards: dict[str, list[list[int]]] = {}  # phase -> per epoch, task users of each rank
    digests: dict[str, str | None] = {}  # phase -> this rank's digest of its precomputed state
    epochs = t_cfg.epochs
    refit_done = False
    als_start = None  # the refit's warm ALS start (item ids, states, sweeps), if any
    if t_cfg.validate:
        if resume_state is not None and resume_state.get("phase") == "refit":
            epochs = int(resume_state["val_best_epoch"])
            info["val_best_epoch"] = epochs
            info.update(resume_state.get("chosen", {}))  # what the validation phase chose
            for key in ("path_weights", "known_item_path_scale"):
                if key in info:
                    model.fit_info[key] = info[key]
        else:
            with current_progress().step("carving validation tasks from train.csv"):
                carved = carve_validation(
                    dataset, new_user_fraction=t_cfg.val_new_user_fraction,
                    new_item_fraction=t_cfg.val_new_item_fraction,
                    warm_task_fraction=t_cfg.val_warm_task_fraction,
                    max_tasks=t_cfg.val_max_tasks, seed=t_cfg.seed)
            has_val = any(carved.tasks.values())
            if not has_val:  # nothing to stop early on: train every epoch
                print(f"[graph-meta] warning: no validation task could be carved from "
                      f"train.csv (too few ratings per user and item); meta-training runs "
                      f"its {t_cfg.epochs} epochs without early stopping", file=sys.stderr,
                      flush=True)
            res = _run_phase(model, training_view(carved), cfg, dev, name="val",
                             epochs=t_cfg.epochs,
                             val=carved if has_val else None,
                             progress=progress,
                             log_path=log_path, ckpt_dir=ckpt_dir, resume_state=resume_state,
                             deadline=deadline, ctx=ctx)
            epochs = res["best_epoch"]
            info.update(val_best_epoch=epochs, val_rmse=res["best"], val_stopped=res["stopped"])
            info.update(encode=res["phase"].encode, fanouts=res["phase"].fanouts)
            shards["val"] = res["users_per_rank"]
            digests["val"] = getattr(res["phase"], "digest", None)
            sweeps = refit_als_sweeps(cfg, res["phase"].data)
            if sweeps is not None and getattr(res["phase"], "als_full", None) is not None:
                als_start = ([str(i) for i in res["phase"].data.node_ids["Item"]],
                             res["phase"].als_full, sweeps)
            search_paths = cfg.model.path_weights == "auto"
            if ctx.is_main and (cfg.model.live_precision == 0 or search_paths):
                val_phase = res["phase"]
                val_phase.serve_states()
                model.build_cache(val_phase.data_dev, val_phase.index)
            if ctx.is_main and search_paths:  # on the carved tasks with new items
                with current_progress().step("path-type weights on the carved tasks"):
                    # every carved task (the same split, uncapped): more than the early
                    # stopping's sample
                    judged = carve_validation(
                        dataset, new_user_fraction=t_cfg.val_new_user_fraction,
                        new_item_fraction=t_cfg.val_new_item_fraction,
                        warm_task_fraction=t_cfg.val_warm_task_fraction, max_tasks=None,
                        seed=t_cfg.seed)
                    paths = choose_path_weights(model, judged, val_phase.data)
                if paths is not None:
                    info["path_weights"], info["path_weight_search"] = paths
                    model.fit_info["path_weights"] = paths[0]
                with current_progress().step("known items' attribute-path scale"):
                    scale = choose_known_item_scale(model, judged)
                if scale is not None:
                    info["known_item_path_scale"], info["known_item_scale_search"] = scale
            if ctx.is_main and cfg.model.live_precision == 0:  # auto: on the held-out items
                with current_progress().step("live update precision on held-out items"):
                    chosen = choose_live_precision(model, carved, seed=t_cfg.seed)
                if chosen is not None:
                    info["live_precision"] = chosen[0]
            if not t_cfg.refit:
                _record_item_prior(model, info, res["phase"])
                res["phase"].serve_states()  # every rank ends with the served states
            if not t_cfg.refit and ctx.is_main:
                with current_progress().step("prediction cache on the full training graph"):
                    full = (full_graph if full_graph is not None
                            else build_graph(dataset, text_dim=cfg.model.text_dim))
                    index = RatingIndex.from_graph(full)  # numpy, before the graph moves
                    # the carved phase's ALS targets miss the held-out items: not extendable
                    model.prior_targets = model.prior_information = None
                    model.build_cache(full.to(dev), index)
            refit_done = not t_cfg.refit
    if not refit_done:
        # the validation phase (its graph, index and predictor state) is not needed any more
        res = val_phase = carved = judged = None
        model.release_graph_state()
        res = _run_phase(model, dataset, cfg, dev, name="refit" if t_cfg.validate else "train",
                         epochs=epochs, val=None, progress=progress, log_path=log_path,
                         ckpt_dir=ckpt_dir, resume_state=resume_state, deadline=math.inf,
                         extra_ckpt={"val_best_epoch": epochs, "chosen": {
                             k: info[k] for k in ("path_weights", "known_item_path_scale",
                                                  "live_precision")
                             if k in info}}, graph=full_graph, ctx=ctx, als_start=als_start)
        phase = res["phase"]
        phase.serve_states()  # on every rank, so that the ranks end with the same net
        _record_item_prior(model, info, phase)
        info.update(encode=phase.encode, fanouts=phase.fanouts)
        name = "refit" if t_cfg.validate else "train"
        shards[name] = res["users_per_rank"]
        digests[name] = getattr(phase, "digest", None)
    if ctx.active:
        assert model.net is not None
        info["distributed"] = {
            "world_size": ctx.world_size, "backend": ctx.backend,
            "state_digests": {k: distributed.gather(v, ctx) for k, v in digests.items()},
            "weight_digests": distributed.gather(distributed.digest(model.net.state_dict()),
                                                 ctx),
            "users_per_rank": shards}
        if not ctx.is_main:  # rank 0 builds the prediction cache and writes the model
            model.fit_info = info
            return
    if not refit_done:
        with current_progress().step("prediction cache (neighbours, learned co-rating weights)"):
            model.build_cache(phase.data_dev, phase.index)
    if "live_precision" in info:
        model.cache["live_precision"] = np.array(info["live_precision"])
    info["fit_s"] = round(time.perf_counter() - t0, 2)
    trained = [h for h in model.history if "tasks_per_s" in h]
    info["epochs_run"] = len(trained)
    if trained:
        info["tasks_per_s"] = float(np.mean([h["tasks_per_s"] for h in trained]))
    info["rating_scale"] = raw_scale
    info["rating_map"] = rating_map.to_json()
    model.fit_info = info
    model._nbr_graph = None  # the neighbour lists live in the cache; drop the graph
    if ckpt_dir is not None:
        with current_progress().step("saving the model"):
            model.save(ckpt_dir / "model.pt")
