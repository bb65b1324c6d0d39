"""The up-front memory estimate of training (:func:`estimate_memory`) and the check that
refuses what cannot fit (:func:`check_memory`, :class:`MemoryLimitError`), naming a config
that does."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from graph_meta.config import Config
from graph_meta.dataset import Dataset
from graph_meta.errors import GraphMetaError
from graph_meta.graph.build import split_multi
from graph_meta.schema import ITEM, USER

__all__ = ["MemoryEstimate", "MemoryLimitError", "available_memory_gb", "check_memory",
           "estimate_memory"]


class MemoryLimitError(GraphMetaError):
    """Training would need more memory than the machine has (or ``train.memory_limit_gb``)."""


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

    The largest terms, in bytes (D = 1 + dim): every graph copy (the carved validation graph
    and the full one) about 130 E + 100 A + 200 (U + I + N), while one is built 120 E more;
    ALS 100 E + max(U, I) (D (D + 1) / 2 + 3 D) 8 plus three [2^16, D, D] blocks; the
    prediction cache 32 E + U (D^2 + 2 D) 8 (the users' history sums, U D^2 8 of it only
    up to ``model.history_sums_max_gb``); the attribute and
    co-rating neighbour lists (``model.neighbor_k``) up to 28 x 2^24 bytes of dense blocks
    and 48 E; the learned co-rating weights (``model.regression_l2``) 56 E of residuals and
    one dense [R, R] float64 over the R rated items, inverted in place, with a scratch of at
    most 2^24 entries (R up to 15,000, counted when the carved
    validation graph may fall under it; past it one ridge per item over its co-rating
    neighbours); the encoder's activations (U + I + N) hidden 4 (layers + 1) 6 (with
    sampled meta-batches, ``train.encode``, the no-grad whole-graph passes only: (U + I + N)
    hidden 4 x 3) and the episodes ``batch_users`` (``history_fanout`` + ``max_support`` +
    ``query_size``) D 4 x 20; 150 MB for torch's runtime. The sum of what lives together
    and the largest transient, times 1.3: on the safe side of the peak RSS a fit adds
    (the default config of the day, ``model.dim = 16``; GB added measured / estimated):
    movielens-1m (585 k training ratings)
    0.90 / 1.10; synthetic catalogues (2026-12-01, ``benchmarks/scale.py``'s ``train`` peak
    less its ``validate`` peak, which reads the same folder) 1.09 M 3.8 / 4.0, 10.9 M 11.6 /
    14.1.
    """
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
    declared = {c.node for _, c in dataset.spec.node_columns}
    for rel in dataset.spec.relations:  # node types only a relation file brings (Maker)
        frame = dataset.relations.get(rel.type)
        for end, node in (("src", rel.src), ("dst", rel.dst)):
            if frame is not None and node not in (USER, ITEM, *declared):
                attr_nodes += frame[end].nunique()
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
    if t.sampled(n_users + n_items):  # batches encode neighbourhoods; whole-graph passes
        # run without a graph for backward
        encoder_graph = nodes * m.hidden * 4 * 3.0 + attr_edges * m.hidden * 4 * 2.0
    else:  # every meta-batch backpropagates through the whole graph
        encoder_graph = (nodes * m.hidden * 4 * (m.layers + 1) * 6.0
                         + attr_edges * m.hidden * 4 * max(m.layers, 1) * 4.0)
    parts: dict[str, float] = {"runtime": _RUNTIME_BYTES, "graphs": copies * graph,
                               "states": copies * states}
    transient: dict[str, float] = {
        "graph build": 120.0 * n_edges,
        # the two rating sides and their sparse patterns; the other side's outer products
        # and three blocks of Gram matrices (fitting/als.py ROWS_PER_BLOCK rows at a time)
        "ALS": 100.0 * n_edges + max(n_users, n_items) * (d * (d + 1) / 2 + 3 * d) * 8
        + 3.0 * min(max(n_users, n_items), 1 << 16) * d * d * 8,
        "encoder": encoder_graph
        + e.batch_users * (e.history_fanout + e.max_support + e.query_size) * d * 4 * 20.0
        + e.batch_items * (e.item_history_fanout + e.item_max_support) * d * 4 * 20.0,
    }
    # the users' history sums (one D x D each) and histories; the states
    sums = n_users * d * d * 8.0  # kept up to model.history_sums_max_gb, else read from
    sums = sums if sums <= m.history_sums_max_gb * 1e9 else 0.0  # the histories
    cache = 32.0 * n_edges + sums + n_users * 2 * d * 8 + n_items * d * 8 * 2
    k = m.neighbor_k if m.use_graph else 0
    neighbours = 0.0
    if k > 0:
        block = min(float(n_items) ** 2, float(1 << 24))
        neighbours = 28.0 * block + n_items * k * 8.0 * 3
        if m.neighbor_rated_weight > 0:
            neighbours = max(neighbours, 48.0 * n_edges + 28.0 * block)
    regression = 0.0
    rated = int(dataset.train["item_id"].nunique()) if n_edges else 0
    if m.regression_l2 > 0 and k > 0:
        regression = 56.0 * n_edges + n_users * d * 8  # the residuals as a sparse matrix
        # the carved validation graph holds fewer rated items (its newest items held out,
        # items rated only by held-out users gone): at 2M synthetic ratings 14,313 of 20,000,
        # so "auto" may solve it exactly although the full graph is past the limit
        fewest = rated * (1 - t.val_new_item_fraction) / 2 if t.validate else rated
        exact = (m.regression_solver == "exact" or
                 (m.regression_solver == "auto" and fewest <= m.regression_exact_max))
        local = (m.regression_solver == "local" or
                 (m.regression_solver == "auto" and rated > m.regression_exact_max))
        solve = 0.0  # the larger of the two solvers a fit may use (one per graph)
        if exact:  # inverted in place; mirrored through a scratch of at most 2^24 entries
            r = min(rated, m.regression_exact_max) if m.regression_solver == "auto" else rated
            solve = 8.0 * r * r + 8.0 * min(r * r, 1 << 24)
        if local and m.neighbor_rated_weight <= 0:  # one small Gram per item; its
            # candidates: co-rating lists built for it
            solve = max(solve, 48.0 * n_edges + 28.0 * min(float(n_items) ** 2, 1 << 24))
        regression += solve
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
