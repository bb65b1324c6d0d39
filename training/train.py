"""Training loop of :class:`graph_meta.model.GraphMetaRecommender`, and its command line.

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
4. before anything heavy, a memory estimate (:func:`estimate_memory`: graphs, ALS, caches,
   neighbour lists and co-rating regression from the data's sizes and the config) is checked
   against ``train.memory_limit_gb`` or else the memory available (``/proc/meminfo``); what
   cannot fit is refused with :class:`MemoryLimitError`, naming the limit and a config that
   fits. With ``progress``, every step prints a line to stderr when it starts and ends, and a
   heartbeat (elapsed, detail such as the ALS sweep, RSS) every 10 s while it runs;
5. every epoch writes ``checkpoint_dir/last.pt`` (weights, optimizer, RNG states, epoch,
   phase, best score; loadable with ``weights_only=True``) and appends to
   ``log_dir/train_log.csv``; ``resume=True`` continues from ``last.pt`` after a kill.

Command line::

    python -m training.train DATASET_DIR --config configs/default.toml --out runs/x \
        [--resume] [--evaluate] [--set section.key=value ...]
    python -m training.train synthetic --quick --evaluate      # CI smoke run, < 1 minute
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from graph_meta.config import Config, load_config
from graph_meta.dataset import Dataset
from graph_meta.errors import GraphMetaError
from graph_meta.model import (
    GraphMetaNet,
    GraphMetaRecommender,
    build_graph,
    episode_tensors,
    init_precisions,
    resolve_device,
    write_csv_row,
)
from graph_meta.sampling.episodes import EpisodeSampler, RatingIndex

__all__ = ["MemoryEstimate", "MemoryLimitError", "check_memory", "estimate_memory", "main",
           "train_model"]


def _seed(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def release_weights(dataset: Dataset, item_ids: list[str], bias: float) -> np.ndarray | None:
    """Cold-set sampling weights ``exp(bias * q)``, ``q`` in [0, 1] the item's release
    quantile (the release column of :func:`graph_meta.eval.protocol.release_column`, else the
    first rating time); None when ``bias`` is 0 or no release order exists."""
    from graph_meta.dataset import ITEM_ID, TIMESTAMP
    from graph_meta.eval.protocol import release_column

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
    from graph_meta.model import _segment_outer

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
        _segment_outer(a, rows_of, x)
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


def linear_prior(table, frame, counts: np.ndarray, targets: np.ndarray, alpha: float, *,
                 weight: str = "sqrt", row_weights: np.ndarray | None = None) -> np.ndarray:
    r"""Closed-form side-feature prior: a ridge map from the one-hot / multi-hot / text
    features :math:`f` of :func:`graph_meta.baselines.side_features` onto the ALS states
    :math:`y` of the rated rows, applied to every row (new ones included):

    .. math:: \min_{W, b} \sum_{i:\,n_i>0} \omega_i \lVert W^\top f_i + b - y_i\rVert^2
              + \alpha \lVert W\rVert^2, \qquad \omega_i = s(n_i)\,\rho_i,

    :math:`s(n) = \sqrt n` (``weight="sqrt"``) or :math:`n` (``"count"``), :math:`\rho`
    = ``row_weights`` (1 when None; e.g. :func:`release_weights`, so that the map is fitted
    mostly on the newest rows, which new items resemble)."""
    from graph_meta.baselines import _RidgeMap, side_features

    fit = counts > 0
    feats = side_features(table, frame, fit)
    w = np.sqrt(counts[fit]) if weight == "sqrt" else counts[fit].astype(np.float64)
    if row_weights is not None:
        w = w * np.asarray(row_weights, dtype=np.float64)[fit]
    ridge = _RidgeMap(feats, fit, w)
    return ridge.predict(targets[fit], alpha)


def side_prior(dataset: Dataset, cfg: Config, node_type: str, ids: list[str],
               counts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """The closed-form side-feature prior training gives the ``ids`` rows of ``node_type``
    (``"Item"``: ``train.linear_prior_alpha``, rows weighted toward the newest releases by
    ``train.prior_newest_bias``; ``"User"``: ``train.user_prior_alpha``), fitted on the rows
    with ``counts > 0`` to ``targets`` (:func:`linear_prior`)."""
    t = cfg.train
    if node_type == "Item":
        frame, table, alpha = dataset.items, dataset.spec.items, t.linear_prior_alpha
        rho = release_weights(dataset, ids, t.prior_newest_bias)
    else:
        frame, table = dataset.users, dataset.spec.users
        alpha, rho = t.user_prior_alpha or t.linear_prior_alpha, None
    rows = frame.loc[pd.Index(ids).astype(frame.index.dtype)]
    return linear_prior(table, rows, counts, targets, alpha, weight=t.prior_weight,
                        row_weights=rho)


# --- progress lines and the memory estimate -----------------------------------------------

_HEARTBEAT_S = 10.0  # seconds between "still running" lines of a long step


class MemoryLimitError(GraphMetaError):
    """Training would need more memory than the machine has (or ``train.memory_limit_gb``)."""


def _rss_gb() -> float | None:
    """The process's resident memory now, in GB (None where /proc is not available)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (OSError, ValueError, IndexError, AttributeError):
        return None


class _Progress:
    """Progress lines on stderr, ``[graph-meta 12.3s] ...``: every setup step says when it
    starts and ends, and while one runs a heartbeat line follows every ``_HEARTBEAT_S`` with
    its ``detail`` (e.g. the ALS sweep) and the process's RSS. Disabled: silent."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.detail = ""

    def say(self, text: str) -> None:
        if self.enabled:
            print(f"[graph-meta {time.perf_counter() - self.t0:6.1f}s] {text}", file=sys.stderr,
                  flush=True)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        self.say(f"{name} ...")
        start = time.perf_counter()
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(_HEARTBEAT_S):
                rss = _rss_gb()
                extra = [f"{time.perf_counter() - start:.0f} s"]
                if self.detail:
                    extra.append(self.detail)
                if rss is not None:
                    extra.append(f"RSS {rss:.2f} GB")
                self.say(f"{name}: still running ({', '.join(extra)})")

        thread = threading.Thread(target=beat, name="graph-meta-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self.detail = ""
        self.say(f"{name}: done in {time.perf_counter() - start:.1f} s")


_PROGRESS: ContextVar[_Progress | None] = ContextVar("graph_meta_progress", default=None)
_SILENT = _Progress(False)


def _progress() -> _Progress:
    """The progress printer of the training run in this context (silent outside one)."""
    return _PROGRESS.get() or _SILENT


def available_memory_gb() -> tuple[float | None, str]:
    """Memory the machine can still give this process, in GB, and where it was read:
    ``MemAvailable`` of ``/proc/meminfo``, else the free physical pages (``os.sysconf``)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / 1e9, "MemAvailable in /proc/meminfo"
    except (OSError, ValueError, IndexError):
        pass
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        return pages / 1e9, "free physical memory (os.sysconf)"
    except (OSError, ValueError, AttributeError):
        return None, "unknown"


@dataclass
class MemoryEstimate:
    """What training ``dataset`` with a config is expected to need on top of what the
    process holds already (the dataset is loaded): ``parts`` in bytes and ``total``."""

    parts: dict[str, float]
    total: float
    sizes: dict[str, int]

    @property
    def gb(self) -> float:
        return self.total / 1e9

    def largest(self, n: int = 3) -> str:
        top = sorted(self.parts.items(), key=lambda kv: -kv[1])[:n]
        return ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in top)


_SAFETY = 1.3  # over the formulas below (allocator slack, pandas/torch temporaries)
_RUNTIME_BYTES = 150e6  # torch's first autograd use, thread pools, allocator caches


def estimate_memory(dataset: Dataset, cfg: Config) -> MemoryEstimate:
    """The memory training needs beyond what is loaded, from the sizes of ``dataset``
    (users U, items I, training ratings E, attribute edges A and nodes N) and the config.

    The largest terms, in bytes: every graph copy (the carved validation graph and the full
    one live together) about 130 E + 100 A + 200 (U + I + N), while one is built 120 E more;
    ALS and the prediction cache 3 E (1 + dim) 8 plus 2 U (1 + dim)^2 8; the attribute and
    co-rating neighbour lists (``model.neighbor_k``) up to 28 x 2^24 bytes of dense blocks
    and 48 E; the learned co-rating weights (``model.regression_l2``) two dense
    [R, R] float64 over the R rated items (skipped past 15,000); the encoder's activations
    (U + I + N) hidden 4 (layers + 1) 6 and the episodes ``batch_users`` (``history_fanout``
    + ``max_support`` + ``query_size``) (1 + dim) 4 x 20; 150 MB for torch's runtime. The sum
    of what lives together and the largest transient, times 1.3: on the safe side of the
    peak RSS a fit adds (default config, 2026-11-30): 22 k training ratings (synthetic)
    0.22 GB measured / 0.42 GB estimated, 220 k 0.60 / 0.72, movielens-1m (585 k) 0.90 /
    1.38.
    """
    from graph_meta.graph.build import split_multi
    from graph_meta.graph.neighborhood import MAX_REGRESSION_ITEMS

    m, e, t = cfg.model, cfg.episodes, cfg.train
    n_users, n_items, n_edges = len(dataset.users), len(dataset.items), len(dataset.train)
    attr_edges = attr_nodes = 0
    for table, frame in ((dataset.spec.users, dataset.users), (dataset.spec.items, dataset.items)):
        for col, cspec in table.columns.items():
            if cspec.node:
                parts = split_multi(frame[col], cspec).explode().dropna()
                attr_edges += len(parts)
                attr_nodes += parts.nunique()
    attr_edges += sum(len(r) for r in dataset.relations.values())
    d = 1 + m.dim
    nodes = n_users + n_items + attr_nodes
    text = 0
    if m.use_text and m.text_dim > 0:
        for table, n in ((dataset.spec.users, n_users), (dataset.spec.items, n_items)):
            if any(c.type == "text" or (c.type == "multi" and not c.node)
                   for c in table.columns.values()):
                text += n * m.text_dim * 4
    graph = 130.0 * n_edges + 100.0 * attr_edges + 200.0 * nodes + text
    states = (n_users + n_items) * d * 8 * 4
    copies = 2 if t.validate else 1
    parts: dict[str, float] = {"runtime": _RUNTIME_BYTES, "graphs": copies * graph,
                               "states": copies * states}
    transient: dict[str, float] = {
        "graph build": 120.0 * n_edges,
        "ALS": 3.0 * n_edges * d * 8 + 2.0 * max(n_users, n_items) * d * d * 8,
        "encoder": nodes * m.hidden * 4 * (m.layers + 1) * 6.0
        + attr_edges * m.hidden * 4 * max(m.layers, 1) * 4.0
        + e.batch_users * (e.history_fanout + e.max_support + e.query_size) * d * 4 * 20.0
        + e.batch_items * (e.item_history_fanout + e.item_max_support) * d * 4 * 20.0,
    }
    cache = 3.0 * n_edges * d * 8 + n_users * d * d * 8
    k = m.neighbor_k if m.use_graph else 0
    neighbours = 0.0
    if k > 0:
        block = min(float(n_items) ** 2, float(1 << 24))
        neighbours = 28.0 * block + n_items * k * 8.0 * 3
        if m.neighbor_rated_weight > 0:
            neighbours = max(neighbours, 48.0 * n_edges + 28.0 * block)
    regression = 0.0
    rated = int(dataset.train["item_id"].nunique()) if n_edges else 0
    if m.regression_l2 > 0 and k > 0 and rated <= MAX_REGRESSION_ITEMS:
        regression = 2.0 * rated * rated * 8 + 2.0 * n_edges * d * 8 + 24.0 * n_edges
    transient["prediction cache"] = cache + max(neighbours, regression)
    if k > 0:
        parts["neighbour lists"] = 3.0 * n_items * k * 8
    if regression:
        transient["co-rating regression"] = cache + regression
    peak_name = max(transient, key=lambda name: transient[name])
    parts[peak_name] = transient[peak_name]
    total = _SAFETY * sum(parts.values())
    return MemoryEstimate({k_: _SAFETY * v for k_, v in parts.items()}, total,
                          {"users": n_users, "items": n_items, "ratings": n_edges,
                           "attribute_edges": attr_edges, "attribute_nodes": attr_nodes})


def _suggest(dataset: Dataset, cfg: Config, limit_bytes: float
             ) -> tuple[list[tuple[str, Any]], MemoryEstimate]:
    """Config changes, chosen greedily (the one that saves most first), until the estimate
    fits ``limit_bytes`` or nothing saves more: ``([(key, value), ...], estimate)``."""
    changes: list[tuple[str, Any]] = []
    current = cfg
    best = estimate_memory(dataset, cfg)
    for _ in range(8):
        if best.total <= limit_bytes:
            break
        m, e, t = current.model, current.episodes, current.train
        options: list[tuple[str, Any]] = []
        if m.regression_l2 > 0:
            options.append(("model.regression_l2", 0.0))
        if t.validate:
            options.append(("train.validate", False))
        if m.dim > 4:
            options.append(("model.dim", max(4, m.dim // 2)))
        if e.history_fanout > 16:
            options.append(("episodes.history_fanout", max(16, e.history_fanout // 2)))
        if m.neighbor_k > 0:
            options.append(("model.neighbor_k", 0))
        if m.hidden > 16:
            options.append(("model.hidden", max(16, m.hidden // 2)))
        tried = []
        for key, value in options:
            candidate = current.replace(**{key: value})
            tried.append((estimate_memory(dataset, candidate).total, key, value, candidate))
        if not tried:
            break
        total, key, value, candidate = min(tried, key=lambda x: x[0])
        if total >= best.total:
            break
        changes = [c for c in changes if c[0] != key] + [(key, value)]
        current, best = candidate, estimate_memory(dataset, candidate)
    return changes, best


def check_memory(dataset: Dataset, cfg: Config) -> MemoryEstimate:
    """The estimate (:func:`estimate_memory`), or :class:`MemoryLimitError` when it exceeds
    ``train.memory_limit_gb`` (0: the memory available now, :func:`available_memory_gb`),
    naming the limit and a config that fits (or the smallest one found)."""
    est = estimate_memory(dataset, cfg)
    if cfg.train.memory_limit_gb > 0:
        limit, source = cfg.train.memory_limit_gb, "train.memory_limit_gb"
    else:
        limit, source = available_memory_gb()
        if limit is None:
            return est
        source += "; train.memory_limit_gb overrides it"
    if est.gb <= limit:
        return est
    changes, smaller = _suggest(dataset, cfg, limit * 1e9)
    sizes = est.sizes
    what = (f"training on {sizes['ratings']:,} ratings ({sizes['users']:,} users, "
            f"{sizes['items']:,} items) needs about {est.gb:.2f} GB more memory (largest: "
            f"{est.largest()}), more than the {limit:g} GB allowed ({source})")
    settings = ", ".join(f"{k} = {str(v).lower() if isinstance(v, bool) else v}"
                         for k, v in changes)
    if changes and smaller.gb <= limit:
        hint = (f"suggested config: {settings} (about {smaller.gb:.2f} GB; set them in the "
                "--config TOML)")
    elif changes:
        hint = (f"even with {settings} it needs about {smaller.gb:.2f} GB: use a machine with "
                "more memory, or fewer ratings")
    else:
        hint = "use a machine with more memory, or fewer ratings"
    raise MemoryLimitError(f"{what}; {hint}")


class _Phase:
    """One training run (carved-train validation phase, or the refit) on one dataset."""

    def __init__(self, model: GraphMetaRecommender, dataset: Dataset, cfg: Config,
                 device: torch.device, graph: Any = None) -> None:
        self.model = model
        self.cfg = cfg
        self.device = device
        progress = _progress()
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
        if cfg.train.freeze_item_emb:
            model.net.item_emb.weight.requires_grad_(False)
        meta_names = ("raw_lr", "log_lam", "head0", "mu")
        named = [(n, p) for n, p in model.net.named_parameters() if p.requires_grad]
        inner = [p for n, p in named if n.split(".")[-1] in meta_names or ".raw_lr." in n]
        inner_ids = {id(p) for p in inner}
        rest = [p for _, p in named if id(p) not in inner_ids]
        # the inner loop's own parameters (step sizes, precision, head init, mu) are few and
        # need larger steps than the encoder, which overfits quickly
        self.opt = torch.optim.Adam(
            [{"params": rest, "weight_decay": cfg.train.weight_decay},
             {"params": inner, "lr": cfg.train.meta_lr, "weight_decay": 0.0}],
            lr=cfg.train.lr)
        if cfg.train.als_iters > 0:
            with progress.step(f"ALS ({cfg.train.als_iters} sweeps over "
                               f"{self.index.num_edges:,} ratings)"):
                mu, states, user_states = als(
                    self.index, cfg.model.dim, init_precisions(cfg), cfg.train.als_iters,
                    cfg.train.seed,
                    on_sweep=lambda k, n: setattr(progress, "detail", f"sweep {k}/{n}"))
            self.als_full = states
            model.prior_targets = states if cfg.train.linear_prior_alpha > 0 else None
            with torch.no_grad():
                model.net.item_emb.weight.copy_(torch.from_numpy(states).float())
                model.net.mu.fill_(mu)
            if cfg.train.linear_prior_alpha > 0:
                # the GNN prior heads learn a correction on top of this closed-form base
                ids = self.data.node_ids
                for nt, st, buf in (("Item", states, "item_base"),
                                    ("User", user_states, "user_base")):
                    counts = np.bincount(self.index.item if nt == "Item" else self.index.user,
                                         minlength=len(ids[nt])).astype(np.float64)
                    with progress.step(f"side-feature prior of {nt} nodes"):
                        base = side_prior(dataset, cfg, nt, [str(i) for i in ids[nt]], counts,
                                          st)
                    getattr(model.net, buf).copy_(torch.from_numpy(base).float())
        self.has_rating = torch.zeros(self.index.num_items, device=device)
        self.has_rating[torch.as_tensor(np.unique(self.index.item), device=device)] = 1.0
        model.net.item_trained.copy_(self.has_rating)
        self.n_ratings_item = torch.as_tensor(
            np.bincount(self.index.item, minlength=self.index.num_items), dtype=torch.float32,
            device=device)

    def epoch(self, rng: np.random.Generator, progress: bool, desc: str) -> dict[str, float]:
        net = self.model.net
        assert net is not None
        cfg = self.cfg
        chunks = self.sampler.epoch_users(rng, cfg.episodes.batch_users)
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
            batch = self.sampler.batch(rng, users, cfg.episodes.batch_items,
                                       query_edges=query_mask)
            u_ep, i_ep = episode_tensors(batch, self.device)
            warm = self.has_rating * torch.as_tensor(~batch.cold_items, dtype=torch.float32,
                                                     device=self.device)
            item_prior, user_prior = net.priors(self.data_dev, warm)
            w = warm.unsqueeze(-1)
            items = w * net.item_emb.weight + (1.0 - w) * item_prior
            user_loss = net.user_loss(u_ep, items, user_prior)
            loss = user_loss
            item_loss = torch.zeros((), device=self.device)
            if i_ep is not None and cfg.episodes.item_task_weight > 0:
                item_loss = net.item_loss(i_ep, items, user_prior)
                loss = loss + cfg.episodes.item_task_weight * item_loss
            hr = self.has_rating.unsqueeze(-1)
            n_warm = self.has_rating.sum().clamp(min=1.0)
            if cfg.train.prior_match > 0:
                # the prior regresses onto the learned states of warm items (with
                # collaborative inputs, of those playing cold: rebuilt from their neighbours)
                target = hr * (1.0 - w) if net.collab else hr
                gap = (((item_prior - net.item_emb.weight.detach()) ** 2 * target).sum()
                       / target.sum().clamp(min=1.0))
                loss = loss + cfg.train.prior_match * gap
            if cfg.train.item_l2 > 0 and net.item_emb.weight.requires_grad:
                # warm states shrink toward their prior, more so with few ratings
                shrink = ((net.item_emb.weight - item_prior.detach()) ** 2).sum(1)
                loss = loss + cfg.train.item_l2 * (shrink * self.has_rating).sum() / n_warm
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.train.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(
                    [p for p in net.parameters() if p.requires_grad], cfg.train.grad_clip)
            self.opt.step()
            tot["loss"] += loss.item()
            tot["user_loss"] += user_loss.item()
            tot["item_loss"] += item_loss.item()
            tasks += len(users) + (0 if i_ep is None else len(batch.items))  # type: ignore[arg-type]
            if bar is not None:
                bar.set_postfix(loss=f"{loss.item():.4f}")
        self._full_states()
        n = max(1, len(chunks))
        dt = time.perf_counter() - t0
        return {k: v / n for k, v in tot.items()} | {"seconds": dt,
                                                      "tasks_per_s": tasks / max(dt, 1e-9)}

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
        _, states, _ = als(self.index, self.cfg.model.dim, init_precisions(self.cfg),
                           self.cfg.train.holdout_als_iters, 0, edges=~mask,
                           items0=self.als_full)
        with torch.no_grad():
            net.item_emb.weight.copy_(torch.from_numpy(states).float())
        return mask

    def _full_states(self) -> None:
        net = self.model.net
        if getattr(self, "als_full", None) is not None and net is not None and \
                not net.item_emb.weight.requires_grad:
            with torch.no_grad():
                net.item_emb.weight.copy_(torch.from_numpy(self.als_full).float())

    def validate(self, val: Dataset) -> dict[str, float]:
        from graph_meta.eval.protocol import evaluate

        with _progress().step("validation: prediction cache and pseudo-tasks"):
            self.model.build_cache(self.data_dev, self.index)
            res = evaluate(self.model, val, fit=False)
        out = {f"val_rmse_{s}": b["rmse"] for s, b in res["scenarios"].items()}
        vals = [v for v in out.values() if np.isfinite(v)]
        out["val_rmse"] = float(np.mean(vals)) if vals else math.inf
        return out


def _state(model: GraphMetaRecommender, ph: _Phase, rng: np.random.Generator,
           **extra: Any) -> dict[str, Any]:
    assert model.net is not None
    return {"net": model.net.state_dict(), "opt": ph.opt.state_dict(),
            "torch_rng": torch.get_rng_state(), "np_rng": json.dumps(rng.bit_generator.state),
            **extra}


def _restore(model: GraphMetaRecommender, phase: _Phase, ckpt: dict[str, Any]
             ) -> np.random.Generator:
    assert model.net is not None
    model.net.load_state_dict(ckpt["net"])
    phase.opt.load_state_dict(ckpt["opt"])
    torch.set_rng_state(ckpt["torch_rng"])
    rng = np.random.default_rng()
    rng.bit_generator.state = json.loads(ckpt["np_rng"])
    return rng


def _run_phase(model: GraphMetaRecommender, dataset: Dataset, cfg: Config,
               device: torch.device, *, name: str, epochs: int, val: Dataset | None,
               progress: bool, log_path: Path | None, ckpt_dir: Path | None,
               resume_state: dict[str, Any] | None, deadline: float,
               extra_ckpt: dict[str, Any] | None = None, graph: Any = None) -> dict[str, Any]:
    rng = _seed(cfg.train.seed + (0 if name == "val" else 1))
    phase = _Phase(model, dataset, cfg, device, graph)
    assert model.net is not None
    start, best, best_epoch, bad = 0, math.inf, 0, 0
    best_state: dict[str, torch.Tensor] | None = None
    if resume_state is not None and resume_state.get("phase") == name:
        rng = _restore(model, phase, resume_state)
        start = int(resume_state["epoch"]) + 1
        best, best_epoch, bad = (float(resume_state["best"]), int(resume_state["best_epoch"]),
                                 int(resume_state["bad"]))
        best_state = resume_state.get("best_net")
    stopped = "epochs"
    floor = 1
    if val is not None and cfg.train.val_epoch0:
        floor = 0  # the untrained model (ALS + closed-form priors + fold-in) is a candidate
        if resume_state is None or resume_state.get("phase") != name:
            row0: dict[str, Any] = {"phase": name, "epoch": 0, **phase.validate(val)}
            best, best_epoch = row0["val_rmse"], 0
            best_state = {k: v.detach().clone() for k, v in model.net.state_dict().items()}
            model.history.append(row0)
            if progress:
                print(f"[graph-meta] {_fmt(row0)}", file=sys.stderr, flush=True)
            if log_path is not None:
                write_csv_row(log_path, _rounded(row0))
    for epoch in range(start, epochs):
        stats = phase.epoch(rng, progress, f"{name} epoch {epoch + 1}/{epochs}")
        row: dict[str, Any] = {"phase": name, "epoch": epoch + 1, **stats}
        if val is not None:
            row.update(phase.validate(val))
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
        if time.perf_counter() > deadline:
            stopped = "time"
            break
    if val is not None and best_state is not None:
        model.net.load_state_dict(best_state)
    return {"phase": phase, "best": best, "best_epoch": max(floor, best_epoch),
            "stopped": stopped}


def _fmt(row: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in row.items())


def _rounded(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}


def check_snapshot(graph: Any, dataset: Dataset) -> None:
    """ValueError unless a store's snapshot holds exactly the dataset's users and items and
    its training ratings (the same (user, item) pairs with the same ratings; a pair repeated
    in train.csv counts with its last rating, as the graph keeps it)."""
    for nt, frame in (("User", dataset.users), ("Item", dataset.items)):
        got = {str(i) for i in graph.node_ids[nt]}
        want = {str(i) for i in frame.index}
        if got != want:
            extra, missing = sorted(got - want)[:3], sorted(want - got)[:3]
            raise ValueError(f"the store's graph does not match the dataset's {nt} nodes "
                             f"(in the store only: {extra}, in the dataset only: {missing}); "
                             "re-ingest the dataset")
    store_rows = graph["User", "RATED", "Item"]
    users = np.asarray(graph.node_ids["User"], dtype=object)[store_rows.edge_index[0].numpy()]
    items = np.asarray(graph.node_ids["Item"], dtype=object)[store_rows.edge_index[1].numpy()]
    got = pd.DataFrame({"u": users.astype(str), "i": items.astype(str),
                        "r": store_rows.rating.numpy().astype(np.float64)})
    train = dataset.train.drop_duplicates(["user_id", "item_id"], keep="last")
    want = pd.DataFrame({"u": train["user_id"].astype(str).to_numpy(),
                         "i": train["item_id"].astype(str).to_numpy(),
                         "r": train["rating"].to_numpy(np.float64)})
    diff = got.merge(want, on=["u", "i"], how="outer", suffixes=("_store", "_train"),
                     indicator=True)
    bad = diff[(diff["_merge"] != "both") | ~np.isclose(diff["r_store"], diff["r_train"])]
    if len(bad):
        first = bad.iloc[0]
        raise ValueError(f"the store's ratings differ from the dataset's train.csv in "
                         f"{len(bad)} (user, item) pairs, e.g. ({first['u']!r}, "
                         f"{first['i']!r}): store {first['r_store']}, train.csv "
                         f"{first['r_train']}; re-ingest the dataset")


def train_model(model: GraphMetaRecommender, dataset: Dataset, *, device: str = "auto",
                progress: bool = False, log_dir: str | Path | None = None,
                checkpoint_dir: str | Path | None = None, resume: bool = False,
                store: Any = None) -> None:
    """Fit ``model`` on ``dataset`` (see the module docstring).

    ``store``: a :class:`~graph_meta.store.base.GraphStore` holding the dataset's graph (e.g.
    Neo4j); the full-train phase then trains on its ``snapshot()`` instead of a graph built
    from the folder (the validation phase always builds its reduced graph from the carved
    train). The snapshot must hold exactly the dataset's users and items.

    First, before anything heavy, the memory estimate (:func:`check_memory`) refuses with
    :class:`MemoryLimitError` what cannot fit. With ``progress``, lines on stderr follow every
    step from the first second on: the estimate, each setup step (graph, ALS, priors,
    validation, caches) as it starts and ends with a heartbeat while it runs, the epochs.
    """
    printer = _Progress(bool(progress))
    token = _PROGRESS.set(printer)
    try:
        est = check_memory(dataset, model.config)  # up front: refuses what cannot fit
        avail, _ = available_memory_gb()
        printer.say(f"{est.sizes['ratings']:,} ratings, {est.sizes['users']:,} users, "
                    f"{est.sizes['items']:,} items: memory estimate {est.gb:.2f} GB"
                    + (f" of {avail:.1f} GB available" if avail is not None else ""))
        _train_model(model, dataset, device=device, progress=bool(progress), log_dir=log_dir,
                     checkpoint_dir=checkpoint_dir, resume=resume, store=store)
    finally:
        _PROGRESS.reset(token)


def _train_model(model: GraphMetaRecommender, dataset: Dataset, *, device: str,
                 progress: bool, log_dir: str | Path | None,
                 checkpoint_dir: str | Path | None, resume: bool, store: Any) -> None:
    from graph_meta.eval.protocol import carve_validation, training_view

    cfg = model.config
    model.prior_targets = None  # set by the phase that trains the final net
    full_graph = None
    if store is not None:
        with _progress().step("reading the graph from the store"):
            full_graph = store.snapshot(text_dim=cfg.model.text_dim)
            check_snapshot(full_graph, dataset)
    t_cfg = cfg.train
    if t_cfg.threads > 0:
        torch.set_num_threads(t_cfg.threads)
    dev = resolve_device(device)
    dataset = training_view(dataset)
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
        resume_state = torch.load(ckpt_dir / "last.pt", map_location=dev, weights_only=True)
    t0 = time.perf_counter()
    deadline = t0 + (t_cfg.max_minutes * 60 if t_cfg.max_minutes > 0 else math.inf)
    model.history = []
    info: dict[str, Any] = {"device": str(dev)}
    epochs = t_cfg.epochs
    refit_done = False
    if t_cfg.validate:
        if resume_state is not None and resume_state.get("phase") == "refit":
            epochs = int(resume_state["val_best_epoch"])
            info["val_best_epoch"] = epochs
        else:
            with _progress().step("carving validation tasks from train.csv"):
                carved = carve_validation(
                    dataset, new_user_fraction=t_cfg.val_new_user_fraction,
                    new_item_fraction=t_cfg.val_new_item_fraction,
                    warm_task_fraction=t_cfg.val_warm_task_fraction,
                    max_tasks=t_cfg.val_max_tasks, seed=t_cfg.seed)
            res = _run_phase(model, training_view(carved), cfg, dev, name="val",
                             epochs=t_cfg.epochs, val=carved, progress=progress,
                             log_path=log_path, ckpt_dir=ckpt_dir, resume_state=resume_state,
                             deadline=deadline)
            epochs = res["best_epoch"]
            info.update(val_best_epoch=epochs, val_rmse=res["best"], val_stopped=res["stopped"])
            if not t_cfg.refit:
                with _progress().step("prediction cache on the full training graph"):
                    full = (full_graph if full_graph is not None
                            else build_graph(dataset, text_dim=cfg.model.text_dim))
                    index = RatingIndex.from_graph(full)  # numpy, before the graph moves
                    # the carved phase's ALS targets miss the held-out items: not extendable
                    model.prior_targets = None
                    model.build_cache(full.to(dev), index)
                refit_done = True
    if not refit_done:
        res = _run_phase(model, dataset, cfg, dev, name="refit" if t_cfg.validate else "train",
                         epochs=epochs, val=None, progress=progress, log_path=log_path,
                         ckpt_dir=ckpt_dir, resume_state=resume_state, deadline=math.inf,
                         extra_ckpt={"val_best_epoch": epochs}, graph=full_graph)
        phase = res["phase"]
        with _progress().step("prediction cache (neighbours, learned co-rating weights)"):
            model.build_cache(phase.data_dev, phase.index)
    info["fit_s"] = round(time.perf_counter() - t0, 2)
    trained = [h for h in model.history if "tasks_per_s" in h]
    info["epochs_run"] = len(trained)
    if trained:
        info["tasks_per_s"] = float(np.mean([h["tasks_per_s"] for h in trained]))
    info["rating_scale"] = [float(v) for v in dataset.spec.rating_scale]
    model.fit_info = info
    model._nbr_graph = None  # the neighbour lists live in the cache; drop the graph
    if ckpt_dir is not None:
        with _progress().step("saving the model"):
            model.save(ckpt_dir / "model.pt")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", help="dataset folder, or 'synthetic' for a small generated one")
    p.add_argument("--config", default=None, help="TOML config (default: built-in defaults)")
    p.add_argument("--quick", action="store_true",
                   help="CI smoke run: configs/quick.toml (unless --config is given)")
    p.add_argument("--out", default="runs/graph-meta", help="run directory")
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--evaluate", action="store_true",
                   help="run the protocol's tasks after training, write OUT/results.json")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a config value (TOML syntax for the value)")
    args = p.parse_args(argv)
    import tomllib

    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = tomllib.loads(f"v = {value}")["v"]
    config_path = args.config
    if args.quick and config_path is None:
        config_path = Path(__file__).resolve().parents[1] / "configs" / "quick.toml"
    cfg = load_config(config_path, **overrides)
    if args.dataset == "synthetic":
        from loaders.synthetic import generate_catalog
        dataset = generate_catalog(n_users=600, n_items=300, n_interactions=20000, seed=0)
    else:
        from loaders import read_dataset
        dataset = read_dataset(args.dataset)
    out = Path(args.out)
    model = GraphMetaRecommender(cfg)
    try:
        model.fit(dataset, device=args.device, progress=not args.quiet, log_dir=out,
                  checkpoint_dir=out, resume=args.resume)
    except MemoryLimitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(model.fit_info), flush=True)
    if args.evaluate:
        from graph_meta.eval.protocol import evaluate, results_table, write_results
        res = evaluate(model, dataset, fit=False, progress=not args.quiet)
        res["fit_s"] = model.fit_info.get("fit_s")
        write_results(res, out / "results.json")
        print(results_table([res]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
