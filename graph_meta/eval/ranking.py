r"""The implicit-feedback protocol (``benchmarks/PROTOCOL.md``, "Implicit feedback").

An implicit dataset folder says ``"implicit": true``: ``train.csv`` holds positives only (a
``weight`` column, when present, is each pair's confidence: how strongly the user engaged),
and every pair of a task's support and query is a positive. A task is a ranking:

* **Candidate pool** (:class:`CandidatePools`). ``warm`` and ``user_cold``: every item with a
  row in ``train.csv``; ``item_cold`` and ``user_item_cold``: every item of ``items.csv``
  with **no** row in ``train.csv``. From either, the task's support items are removed, and
  the items of the user's ``train.csv`` rows. The pool is a fact of the catalogue and of the
  task's own support and user, never of any query. With a truncated support (few-shot curves,
  rule 4: the first ``K`` pairs) the pool still leaves out the *whole* support, so that every
  ``K`` ranks the same pool for the same query and the curves differ only by what the model
  is shown.
* The model scores the pool for the task's user adapted to the support
  (:func:`ranking_scores`: ``model.score_items(user_id, support_items, candidate_item_ids)``,
  or, for a rating model, its ``predict`` with every support pair rated 1) and the runner
  keeps the top ``n = 20`` (highest score first; tied scores are ordered by a fixed random key
  per item, the same for every model, so ties neither favour the file order nor anyone).
* Metrics per task, with :math:`T` the top 20, :math:`Q` the query items and
  :math:`m = \min(20, |Q|)`:

  .. math:: \mathrm{recall@20} = \frac{|T \cap Q|}{m}, \qquad
            \mathrm{hit@20} = [\,|T \cap Q| > 0\,], \qquad
            \mathrm{ndcg@20} = \frac{\sum_{r=1}^{20} [T_r \in Q] / \log_2(r+1)}
                                    {\sum_{r=1}^{m} 1 / \log_2(r+1)},

  then averaged over the tasks of the scenario. A query item outside the pool (an item
  without a training row in a warm task, say) can never be ranked: it counts as a miss and
  is counted in ``query_outside_pool``.
* ``adapt_ms_p50`` / ``adapt_ms_p99``: wall time of scoring the whole pool (adaptation
  included) and selecting the top 20, per task.

:func:`evaluate_implicit` returns PROTOCOL.md's JSON shape with ``recall@20``, ``ndcg@20``
and ``hit@20`` in place of the rating metrics (plus ``"protocol": "implicit"``, the mean
pool and query sizes, and ``few_shot`` curves as for ratings).

:func:`evaluate_implicit_online` is PROTOCOL.md's online replay on this protocol: every task
in the rating replay's seeded order (:func:`graph_meta.eval.replay.replay_order`), each
ranked as above, after which its support positives go to the model's ``observe``; the pools
stay the catalogue's.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from graph_meta.dataset import ITEM_ID, USER_ID, Dataset, positions
from graph_meta.eval.replay import count_buckets, replay_order
from graph_meta.eval.selection import (
    chosen_scenarios,
    fit_timed,
    k_label,
    model_name,
    results_frame,
    support_sizes,
)
from graph_meta.schema import SCENARIOS

__all__ = [
    "RANKING_METRICS",
    "TOP_N",
    "CandidatePools",
    "RankingModel",
    "evaluate_implicit",
    "evaluate_implicit_online",
    "hit_at_k",
    "ndcg_at_k_binary",
    "ranking_metrics",
    "ranking_scores",
    "ranking_table",
    "recall_at_k",
    "top_k",
]

#: the ranking cut-off of the implicit protocol
TOP_N = 20
#: metric names of the implicit protocol (results JSON keys)
RANKING_METRICS = ("recall@20", "ndcg@20", "hit@20")
#: the seed of the per-item tie-breaking key
TIE_SEED = 20261130
#: scenarios whose pool is the items with a training row (the others: items without one)
WARM_POOL_SCENARIOS = ("warm", "user_cold")
COLD_POOL_SCENARIOS = ("item_cold", "user_item_cold")


@runtime_checkable
class RankingModel(Protocol):
    """What the implicit runner needs of a model.

    ``fit`` sees the training positives and the side information only (no tasks).
    ``score_items`` solves one task: adapt to ``support_items`` (item ids the user took,
    possibly none) for ``user_id`` (a training user or a new one) and return one finite score
    per candidate, in order; higher is better. Only the order matters. It must not keep
    anything from one task to the next.
    """

    name: str

    def fit(self, dataset: Dataset) -> RankingModel: ...

    def score_items(self, user_id: str, support_items: list[str],
                    candidate_item_ids: list[str]) -> np.ndarray: ...


def ranking_scores(model: Any, user_id: str, support_items: list[str],
                   candidate_item_ids: list[str]) -> np.ndarray:
    """Scores of the candidates: ``model.score_items`` where the model has it, else a rating
    model's ``predict`` with every support pair rated 1 (its predicted ratings rank)."""
    score = getattr(model, "score_items", None)
    if score is not None:
        return score(user_id, support_items, candidate_item_ids)
    return model.predict(user_id, [(i, 1.0) for i in support_items], candidate_item_ids)


# ---------------------------------------------------------------------------------------------
# metrics


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(k) + 2.0)


def ranking_metrics(hits: np.ndarray, n_relevant: np.ndarray | Sequence[int],
                    k: int = TOP_N) -> dict[str, np.ndarray]:
    """Per-task ``recall@k``, ``ndcg@k``, ``hit@k`` from a hit matrix.

    Args:
        hits: ``[tasks, <= k]`` booleans, ``hits[t, r]``: the item at rank ``r + 1`` of task
            ``t``'s ranking is one of its query items (a row shorter than ``k`` is padded
            with False).
        n_relevant: ``|Q|`` per task (>= 1).
        k: the cut-off.

    Returns:
        ``{"recall@k", "ndcg@k", "hit@k"}`` -> ``[tasks]`` arrays.
    """
    h = np.asarray(hits, dtype=bool)
    if h.ndim != 2:
        raise ValueError(f"hits must be 2-D [tasks, ranks], got shape {h.shape}")
    if h.shape[1] > k:
        raise ValueError(f"hits has {h.shape[1]} ranks, more than k = {k}")
    if h.shape[1] < k:
        h = np.hstack([h, np.zeros((len(h), k - h.shape[1]), dtype=bool)])
    n_rel = np.asarray(n_relevant, dtype=np.int64)
    if n_rel.shape != (len(h),) or (n_rel < 1).any():
        raise ValueError("n_relevant must hold one count >= 1 per task")
    m = np.minimum(n_rel, k)
    found = h.sum(axis=1)
    if (found > n_rel).any():
        raise ValueError("more hits than relevant items")
    disc = _discounts(k)
    ideal = np.concatenate([[0.0], np.cumsum(disc)])[m]
    return {f"recall@{k}": found / m, f"ndcg@{k}": (h @ disc) / ideal,
            f"hit@{k}": (found > 0).astype(np.float64)}


def _single(top: Sequence[str], relevant: Iterable[str], k: int) -> tuple[np.ndarray, int]:
    rel = set(relevant)
    if not rel:
        raise ValueError("a task needs at least one relevant (query) item")
    top = list(top)[:k]
    return np.array([[t in rel for t in top]], dtype=bool).reshape(1, len(top)), len(rel)


def recall_at_k(top: Sequence[str], relevant: Iterable[str], k: int = TOP_N) -> float:
    """``|top k ∩ relevant| / min(k, |relevant|)`` for one ranked list."""
    h, n = _single(top, relevant, k)
    return float(ranking_metrics(h, [n], k)[f"recall@{k}"][0])


def ndcg_at_k_binary(top: Sequence[str], relevant: Iterable[str], k: int = TOP_N) -> float:
    """Binary-gain nDCG@k of one ranked list (ideal: ``min(k, |relevant|)`` hits on top)."""
    h, n = _single(top, relevant, k)
    return float(ranking_metrics(h, [n], k)[f"ndcg@{k}"][0])


def hit_at_k(top: Sequence[str], relevant: Iterable[str], k: int = TOP_N) -> float:
    """1.0 if the top k holds a relevant item, else 0.0."""
    h, n = _single(top, relevant, k)
    return float(ranking_metrics(h, [n], k)[f"hit@{k}"][0])


def top_k(scores: np.ndarray, tie_key: np.ndarray, k: int = TOP_N) -> np.ndarray:
    """Positions of the ``k`` highest scores, best first; equal scores ordered by ascending
    ``tie_key`` (one distinct value per position)."""
    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    if n > k:
        threshold = np.partition(s, n - k)[n - k]
        sel = np.flatnonzero(s >= threshold)
    else:
        sel = np.arange(n)
    order = np.lexsort((tie_key[sel], -s[sel]))
    return sel[order[:k]]


# ---------------------------------------------------------------------------------------------
# candidate pools


class CandidatePools:
    """The candidate pools of the implicit protocol for one dataset (module docstring).

    Built from ``train.csv`` and ``items.csv`` alone: it cannot depend on any task's query.
    """

    def __init__(self, dataset: Dataset) -> None:
        ids = pd.Index(dataset.items.index.astype(str), dtype=object)
        train_items = pd.unique(dataset.train[ITEM_ID].astype(str).to_numpy(dtype=object))
        extra = pd.Index(train_items, dtype=object).difference(ids)
        if len(extra):  # hand-built datasets: a train item without a row in items.csv
            ids = ids.append(extra)
        self.item_ids = ids
        self.ids_array = ids.to_numpy(dtype=object)
        self._position = {item: k for k, item in enumerate(self.ids_array)}
        in_train = np.zeros(len(ids), dtype=bool)
        in_train[ids.get_indexer(train_items)] = True
        self.in_train = in_train
        self.warm_base = np.flatnonzero(in_train)
        self.cold_base = np.flatnonzero(~in_train)
        codes = ids.get_indexer(dataset.train[ITEM_ID].astype(str).to_numpy(dtype=object))
        users = dataset.train[USER_ID].astype(str).to_numpy(dtype=object)
        order = np.argsort(users, kind="stable")
        users, codes = users[order], codes[order]
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else []
        ends = np.r_[starts[1:], len(users)] if len(users) else []
        self.user_items: dict[str, np.ndarray] = {
            str(users[a]): np.unique(codes[a:b]) for a, b in zip(starts, ends, strict=True)}
        rng = np.random.default_rng(TIE_SEED)
        self.tie_key = rng.permutation(len(ids))

    def base(self, scenario: str) -> np.ndarray:
        """The pool of ``scenario`` before a task's exclusions (item positions)."""
        if scenario in COLD_POOL_SCENARIOS:
            return self.cold_base
        if scenario in WARM_POOL_SCENARIOS:
            return self.warm_base
        raise KeyError(f"the implicit protocol has no candidate pool for scenario "
                       f"{scenario!r}; it knows {[*WARM_POOL_SCENARIOS, *COLD_POOL_SCENARIOS]}")

    def pool(self, scenario: str, user_id: str, support_items: Iterable[str]) -> np.ndarray:
        """Item positions of one task's pool: the scenario's base minus the support items and
        the user's training items, in item order."""
        base = self.base(scenario)
        drop = self.positions(support_items)
        drop = drop[drop >= 0]
        history = self.user_items.get(str(user_id))
        if history is not None and len(history):
            drop = np.concatenate([drop, history])
        if not len(drop):
            return base
        return base[~np.isin(base, drop)]

    def ids(self, positions: np.ndarray) -> list[str]:
        return self.ids_array[positions].tolist()

    def positions(self, item_ids: Iterable[str]) -> np.ndarray:
        """Positions of item ids (-1 where unknown)."""
        return positions(self._position, item_ids)


# ---------------------------------------------------------------------------------------------
# the runner


class RankingError(ValueError):
    """A model returned unusable scores (wrong shape, NaN or inf)."""


def _check_scores(raw: Any, n: int, where: str) -> np.ndarray:
    try:
        s = np.asarray(raw, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise RankingError(f"{where}: scores are not numbers: {exc}") from exc
    if s.shape != (n,):
        raise RankingError(f"{where}: {np.shape(raw)} scores for {n} candidates")
    bad = ~np.isfinite(s)
    if bad.any():
        raise RankingError(f"{where}: {int(bad.sum())} of {n} scores are not finite "
                           f"(first: {s[int(bad.argmax())]})")
    return s


def evaluate_implicit(model: Any, dataset: Dataset, *, scenarios: Iterable[str] | None = None,
                      support_k: Sequence[int | None] = (None,), fit: bool = True,
                      progress: bool = False, top_n: int = TOP_N,
                      max_tasks: int | None = None, per_task: bool = False) -> dict[str, Any]:
    """Fit ``model`` (unless ``fit=False``) and rank each task's candidate pool.

    Args:
        model: a :class:`RankingModel`, or a rating model (``predict``; see
            :func:`ranking_scores`).
        dataset: an implicit dataset with its tasks.
        scenarios: default every scenario with tasks, in PROTOCOL.md's order.
        support_k: support sizes as in :func:`graph_meta.eval.protocol.evaluate` (``None``:
            the whole support; the ``"scenarios"`` block is always the whole support).
        fit: call ``model.fit`` on the training view (no tasks, no folder path) first.
        progress: one line per (scenario, K) on stderr.
        top_n: the cut-off (PROTOCOL.md: 20; metric names follow it).
        max_tasks: score only the first ``max_tasks`` tasks of each scenario (tuning on
            pseudo-tasks; never for reported numbers).
        per_task: each block (the whole support's and the few-shot ones) also holds
            ``"recall@20_per_task"`` (file order).

    Returns:
        ``{"dataset", "model", "protocol": "implicit", "top_n", "scenarios": {scenario:
        {"tasks", "recall@20", "ndcg@20", "hit@20", "adapt_ms_p50", "adapt_ms_p99",
        "pool_size", "query_items", "query_outside_pool"}}, "support_k", "fit_s"}`` plus
        ``"few_shot"`` when a size other than the whole support is asked and ``"params"``
        when the model has them.

    Raises:
        RankingError: scores of the wrong shape, or not finite.
        KeyError: an asked scenario has no tasks, or has no pool definition.
    """
    name = model_name(model)
    chosen = chosen_scenarios(dataset, scenarios)
    ks = support_sizes(support_k)
    fit_s = fit_timed(model, dataset, fit=fit, progress=progress)
    pools = CandidatePools(dataset)
    run_ks = ks if None in ks else [*ks, None]
    results = results_frame(model, dataset, fit_s, protocol="implicit", top_n=int(top_n),
                            support_k=[k_label(k) for k in ks])
    few_shot: dict[str, dict[str, Any]] = {}
    for scenario in chosen:
        tasks = dataset.tasks[scenario]
        if max_tasks is not None:
            tasks = tasks[:max_tasks]
        for k in run_ks:
            block = _rank_scenario(model, name, scenario, tasks, k, pools, top_n,
                                   per_task=per_task)
            if k is None:
                results["scenarios"][scenario] = block
            if ks != [None] and k in ks:
                few_shot.setdefault(scenario, {})[k_label(k)] = block
            if progress:
                print(f"[{name}] {scenario} K={k_label(k)}: {block['tasks']} tasks, "
                      f"recall@{top_n} {block[f'recall@{top_n}']:.4f} ndcg@{top_n} "
                      f"{block[f'ndcg@{top_n}']:.4f} hit@{top_n} {block[f'hit@{top_n}']:.4f}, "
                      f"pool {block['pool_size']:.0f}, {block['adapt_ms_p50']:.2f} ms/task",
                      file=sys.stderr, flush=True)
    if few_shot:
        results["few_shot"] = few_shot
    return results


def rank_task(model: Any, name: str, scenario: str, index: int, task: Any, k: int | None,
              pools: CandidatePools, top_n: int = TOP_N) -> tuple[list[str], np.ndarray, float]:
    """One task: ``(top item ids, pool item positions, ms)``. The model gets fresh lists holding the
    (truncated) support item ids and the pool; never a query item's label."""
    pool = pools.pool(scenario, task.user_id, [str(i) for i, _ in task.support])
    pairs = task.support if k is None else task.support[:k]
    support = [str(i) for i, _ in pairs]
    candidates = pools.ids(pool)
    t0 = time.perf_counter()
    raw = ranking_scores(model, str(task.user_id), support, list(candidates))
    scores = _check_scores(raw, len(candidates),
                           f"model {name!r}, scenario {scenario!r}, task {index} (user "
                           f"{task.user_id!r}, K={k_label(k)})")
    best = top_k(scores, pools.tie_key[pool], top_n)
    ms = (time.perf_counter() - t0) * 1e3
    return [candidates[j] for j in best], pool, ms


def _task_hits(task: Any, top: list[str], pool: np.ndarray, pools: CandidatePools,
               top_n: int) -> tuple[np.ndarray, int, int]:
    """One ranked task against its query: ``(hits [top_n], |Q|, query items outside the
    pool)``."""
    query = {str(i) for i, _ in task.query}
    hits = np.zeros(top_n, dtype=bool)
    hits[:len(top)] = [t in query for t in top]
    q = pools.positions(query)
    return hits, len(query), int((~np.isin(q, pool)).sum())


def _ranking_block(hits: np.ndarray, n_rel: np.ndarray, times: np.ndarray,
                   pool_sizes: np.ndarray, outside: int, top_n: int) -> dict[str, Any]:
    """A scenario's results block from its tasks' hits, query sizes, times and pools."""
    n = len(n_rel)
    block: dict[str, Any] = {"tasks": n}
    per = ranking_metrics(hits, n_rel, top_n) if n else {}
    for metric in (f"recall@{top_n}", f"ndcg@{top_n}", f"hit@{top_n}"):
        block[metric] = float(per[metric].mean()) if n else math.nan
    block["adapt_ms_p50"] = float(np.percentile(times, 50)) if n else math.nan
    block["adapt_ms_p99"] = float(np.percentile(times, 99)) if n else math.nan
    block["pool_size"] = float(np.mean(pool_sizes)) if n else math.nan
    block["query_items"] = float(np.mean(n_rel)) if n else math.nan
    block["query_outside_pool"] = int(outside)
    return block


def _rank_scenario(model: Any, name: str, scenario: str, tasks: Sequence[Any], k: int | None,
                   pools: CandidatePools, top_n: int, *, per_task: bool = False
                   ) -> dict[str, Any]:
    n = len(tasks)
    hits = np.zeros((n, top_n), dtype=bool)
    n_rel = np.zeros(n, dtype=np.int64)
    times = np.empty(n)
    pool_sizes = np.empty(n)
    outside = 0
    for j, task in enumerate(tasks):
        top, pool, times[j] = rank_task(model, name, scenario, j, task, k, pools, top_n)
        hits[j], n_rel[j], out = _task_hits(task, top, pool, pools, top_n)
        pool_sizes[j] = len(pool)
        outside += out
    block = _ranking_block(hits, n_rel, times, pool_sizes, outside, top_n)
    if per_task:
        _add_per_task(block, hits, n_rel, top_n)
    return block


def _add_per_task(block: dict[str, Any], hits: np.ndarray, n_rel: np.ndarray,
                  top_n: int) -> None:
    """``block["recall@20_per_task"]``: each task's recall, in the order of ``hits``."""
    block[f"recall@{top_n}_per_task"] = (
        ranking_metrics(hits, n_rel, top_n)[f"recall@{top_n}"].tolist() if len(n_rel) else [])


def evaluate_implicit_online(model: Any, dataset: Dataset, *, fit: bool = True,
                             progress: bool = False, top_n: int = TOP_N,
                             per_task: bool = False) -> dict[str, Any]:
    """PROTOCOL.md's online replay ("Online replay") on the implicit protocol.

    Every task of the four scenario files, in :func:`graph_meta.eval.replay.replay_order`
    (the rating replay's seeded order), is ranked exactly as :func:`evaluate_implicit` ranks
    it (:func:`rank_task`: its own whole support, its own pool, its query hidden), after
    which its **support** positives are handed to the model's ``observe`` as ``(user_id,
    item_id, 1.0)`` rows (every task pair is ``[item, 1]``), where the model has one: the
    graph grows while tasks arrive. Query positives are never handed over, and the model is
    not refitted. A model without ``observe`` answers blind (``"reads_graph": false``).
    Before and after the replay the observed positives are cleared (``reset_observed``
    where the model has it), so the model starts from training and leaves as it came.

    The candidate pools stay the protocol's (:class:`CandidatePools`, built from
    ``train.csv`` and ``items.csv`` once): a fact of the catalogue, minus the task's support
    items and the user's ``train.csv`` items. They do **not** grow or shrink with the
    observed positives: a new item taken during the replay stays in the new-item pool of
    ``item_cold`` and ``user_item_cold`` (it still has no training row), and a user's
    positives observed in an earlier task are not removed from their later pools. Only what
    the model knows changes, never what it is asked.

    Returns:
        :func:`evaluate_implicit`'s results (whole supports only) with ``"online": true``,
        ``"reads_graph"``, ``"observed"`` (positives handed to ``observe``), ``"replay_s"``,
        ``"observe_ms_p50"`` / ``"observe_ms_p99"`` (absorbing one task's support) and
        ``"by_item_positives"``: per scenario and bucket of how many support positives the
        query item had received in the replay when it was asked (``"0"``, ``"1-2"``, ...),
        ``{"n": query items, "found@20": the share of them in the top 20}``. ``per_task``:
        each scenario block also holds ``"recall@20_per_task"`` (file order).

    Raises:
        RankingError: scores of the wrong shape, or not finite.
    """

    name = model_name(model)
    fit_s = fit_timed(model, dataset, fit=fit, progress=progress)
    observe = getattr(model, "observe", None)
    reset = getattr(model, "reset_observed", None)
    pools = CandidatePools(dataset)
    order = replay_order(dataset)
    rows: dict[str, list[tuple[int, np.ndarray, int, float, int, int]]] = {}
    found: dict[str, list[tuple[int, bool]]] = {}  # (positives received, in the top n)
    received: dict[str, int] = {}
    observe_ms: list[float] = []
    observed = 0
    t_start = time.perf_counter()
    if reset is not None:
        reset()
    try:
        for step, (scenario, j) in enumerate(order):
            task = dataset.tasks[scenario][j]
            top, pool, ms = rank_task(model, name, scenario, j, task, None, pools, top_n)
            hits, n_rel, outside = _task_hits(task, top, pool, pools, top_n)
            rows.setdefault(scenario, []).append((j, hits, n_rel, ms, len(pool), outside))
            chosen = set(top)
            found.setdefault(scenario, []).extend(
                (received.get(str(i), 0), str(i) in chosen) for i, _ in task.query)
            support = [(str(task.user_id), str(i), float(r)) for i, r in task.support]
            for _, i, _ in support:
                received[i] = received.get(i, 0) + 1
            if observe is not None and support:
                t0 = time.perf_counter()
                observe(support)
                observe_ms.append((time.perf_counter() - t0) * 1e3)
                observed += len(support)
            if progress and (step + 1) % 1000 == 0:
                print(f"[{name}] online replay: {step + 1}/{len(order)} tasks",
                      file=sys.stderr, flush=True)
    finally:  # the model leaves as it came, whatever happened
        if reset is not None:
            reset()
    results = results_frame(model, dataset, fit_s, protocol="implicit", top_n=int(top_n),
                            online=True, reads_graph=observe is not None, observed=observed,
                            replay_s=round(time.perf_counter() - t_start, 2))
    if observe_ms:
        results["observe_ms_p50"] = float(np.percentile(observe_ms, 50))
        results["observe_ms_p99"] = float(np.percentile(observe_ms, 99))
    for scenario in [s for s in [*SCENARIOS, *sorted(rows)] if s in rows]:
        if scenario in results["scenarios"]:
            continue
        r = sorted(rows[scenario], key=lambda row: row[0])  # file order, as offline
        hits = np.array([x[1] for x in r]).reshape(len(r), top_n)
        n_rel = np.array([x[2] for x in r], dtype=np.int64)
        block = _ranking_block(hits, n_rel, np.array([x[3] for x in r]),
                               np.array([x[4] for x in r]), sum(x[5] for x in r), top_n)
        if per_task:
            _add_per_task(block, hits, n_rel, top_n)
        results["scenarios"][scenario] = block
        if progress:
            print(f"[{name}] online {scenario}: recall@{top_n} {block[f'recall@{top_n}']:.4f} "
                  f"ndcg@{top_n} {block[f'ndcg@{top_n}']:.4f}", file=sys.stderr, flush=True)
    results["by_item_positives"] = {}
    for scenario, pairs in found.items():
        counts = np.array([c for c, _ in pairs], dtype=np.int64)
        hit = np.array([h for _, h in pairs], dtype=bool)
        results["by_item_positives"][scenario] = {
            label: {"n": int(sel.sum()), f"found@{top_n}": float(hit[sel].mean())}
            for label, sel in count_buckets(counts)}
    return results


def is_ranking_result(result: dict[str, Any]) -> bool:
    """Whether a results dict comes from :func:`evaluate_implicit`."""
    return result.get("protocol") == "implicit"


def ranking_table(results: Sequence[dict[str, Any]], *, digits: int = 3) -> str:
    """Markdown tables of implicit results: recall@20, ndcg@20, hit@20 and latency per
    scenario (rows models, columns scenarios; ``-`` where a scenario is missing or has no
    tasks)."""
    scenarios: list[str] = [s for s in SCENARIOS
                            if any(s in r.get("scenarios", {}) for r in results)]
    for r in results:
        scenarios += [s for s in r.get("scenarios", {}) if s not in scenarios]
    top_n = int(results[0].get("top_n", TOP_N)) if results else TOP_N
    f = f"{{:.{digits}f}}"

    def table(title: str, cell: Any) -> list[str]:
        head = f"| {title} | " + " | ".join(scenarios) + " |"
        rule = "|---|" + "---|" * len(scenarios)
        rows = []
        for r in results:
            cells = [cell(r["scenarios"][s]) if r.get("scenarios", {}).get(s, {}).get("tasks")
                     else "-" for s in scenarios]
            rows.append(f"| {r.get('model', '?')} | " + " | ".join(cells) + " |")
        return [head, rule, *rows]

    lines: list[str] = []
    for metric in (f"recall@{top_n}", f"ndcg@{top_n}", f"hit@{top_n}"):
        lines += table(f"model: {metric}", lambda b, m=metric: f.format(b[m]))
        lines.append("")
    lines += table("model: adapt+rank pool ms p50 / p99",
                   lambda b: f"{b['adapt_ms_p50']:.2f} / {b['adapt_ms_p99']:.2f}")
    lines.append("")
    lines += table("tasks / mean pool / query items outside the pool",
                   lambda b: f"{b['tasks']} / {b['pool_size']:.0f} / {b['query_outside_pool']}")
    return "\n".join(lines) + "\n"
