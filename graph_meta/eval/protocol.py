r"""The cold-start protocol runner (``benchmarks/PROTOCOL.md``).

:func:`evaluate` is the one way a quality number of this project is measured:

1. the model is fitted on a copy of the dataset with ``tasks = {}`` and ``root = None`` (it
   sees ``train.csv``, the side information and the relation files; no task file, and no
   folder path through which it could read one);
2. for every scenario and every support size ``K`` (``None`` = the whole support set, else
   its first ``K`` pairs) each task is solved alone: ``model.predict(user_id, support,
   query_items)`` receives fresh lists holding only that task's (truncated) support pairs and
   the query *item ids*: the query ratings are never passed, so they cannot leak;
3. the call is timed (adaptation + prediction, milliseconds); the predictions must be finite
   (a NaN/inf is a :class:`PredictionError` naming model, scenario and task index) and are
   clipped into the dataset's rating scale;
4. per-task metrics (:mod:`graph_meta.eval.metrics`) are averaged over the tasks of the
   scenario: :math:`\mathrm{RMSE} = \frac1T \sum_t \sqrt{\frac1{n_t}\sum_j
   (y_{tj}-\hat y_{tj})^2}` and likewise for MAE and both nDCG@5.

The result has PROTOCOL.md's JSON shape: ``{"dataset", "model", "scenarios": {scenario:
{"tasks", "mae", "rmse", "ndcg@5", "ndcg@5_metahin", "adapt_ms_p50", "adapt_ms_p99"}}}`` for
the whole support set, plus ``"few_shot": {scenario: {K: {...}}}`` (K as a string, ``"all"``
for the whole set, exactly the sizes asked) when a size other than the whole set is asked, and
a few more keys (``support_k``, ``fit_s``, ``params``, ``clipped``).

:func:`evaluate_online` is PROTOCOL.md's online replay: every task of the four scenarios in
one seeded order (``random.Random(20261130)``), each answered as above, after which its
*support* ratings are handed to the model's ``observe`` (new ratings in the graph); query
ratings never are, and the model is not refitted. A model without ``observe`` answers blind.

:func:`carve_validation` builds the pseudo-tasks that hyper-parameters are chosen on (rule 1):
the same cold-start split as the benchmark's, applied to ``train.csv`` alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from graph_meta.dataset import ITEM_ID, RATING, TIMESTAMP, USER_ID, Dataset
from graph_meta.dataset import training_view as training_view  # re-exported
from graph_meta.eval.jsonable import jsonable
from graph_meta.eval.metrics import METRICS, batch_task_metrics
from graph_meta.eval.ranking import ranking_table
from graph_meta.eval.replay import COUNT_BUCKETS as COUNT_BUCKETS  # re-exported
from graph_meta.eval.replay import REPLAY_SEED as REPLAY_SEED  # re-exported
from graph_meta.eval.replay import count_buckets, replay_order
from graph_meta.eval.selection import (
    chosen_scenarios,
    fit_timed,
    k_label,
    model_name,
    results_frame,
    support_sizes,
)
from graph_meta.eval.split import split_cold_start
from graph_meta.schema import SCENARIOS


@runtime_checkable
class ColdStartModel(Protocol):
    """What the runner needs of a model.

    ``fit`` sees the training interactions and the side information only (the dataset it
    gets has no tasks). ``predict`` solves one task: adapt to ``support`` (``(item_id,
    rating)`` pairs, possibly empty) for ``user_id`` and return one finite predicted rating per
    query item, in order. It must not keep anything from one task to the next.
    """

    name: str

    def fit(self, dataset: Dataset) -> ColdStartModel: ...

    def predict(self, user_id: str, support: list[tuple[str, float]],
                query_items: list[str]) -> np.ndarray: ...


class PredictionError(ValueError):
    """A model returned unusable predictions (wrong shape, NaN or inf)."""


def evaluate(model: ColdStartModel, dataset: Dataset, *,
             scenarios: Iterable[str] | None = None,
             support_k: Sequence[int | None] = (None,), fit: bool = True,
             progress: bool = False) -> dict[str, Any]:
    """Fit ``model`` (unless ``fit=False``) and run the protocol's tasks through it.

    Args:
        model: a :class:`ColdStartModel`.
        dataset: the dataset with its tasks (``read_dataset(path)``).
        scenarios: which scenarios to run; default every scenario the dataset has tasks for,
            in PROTOCOL.md's order.
        support_k: support sizes; ``None`` is the whole support set, ``K`` its first ``K``
            pairs. The ``"scenarios"`` block is always the whole set (computed even when
            ``None`` is not listed); ``"few_shot"`` holds every asked size and is added
            unless only ``None`` is asked.
        fit: call ``model.fit`` on :func:`training_view` first; ``False`` for a model that is
            already fitted (on a training view of the same data).
        progress: print one line per (scenario, K) to stderr.

    Returns:
        The results dict (see the module docstring).

    Raises:
        PredictionError: a prediction is not finite or has the wrong shape.
        KeyError: an asked scenario has no tasks in the dataset.
    """
    name = model_name(model)
    chosen = chosen_scenarios(dataset, scenarios)
    ks = support_sizes(support_k)
    fit_s = fit_timed(model, dataset, fit=fit, progress=progress)
    lo, hi = dataset.spec.rating_scale
    run_ks = ks if None in ks else [*ks, None]
    results = results_frame(model, dataset, fit_s, support_k=[k_label(k) for k in ks])
    few_shot: dict[str, dict[str, Any]] = {}
    clipped: dict[str, int] = {}
    for scenario in chosen:
        tasks = dataset.tasks[scenario]
        for k in run_ks:
            block, n_clipped = _run_scenario(model, name, scenario, tasks, k, lo, hi)
            if k is None:
                results["scenarios"][scenario] = block
                clipped[scenario] = n_clipped
            if ks != [None] and k in ks:
                few_shot.setdefault(scenario, {})[k_label(k)] = block
            if progress:
                print(f"[{name}] {scenario} K={k_label(k)}: {block['tasks']} tasks, "
                      f"RMSE {block['rmse']:.4f} MAE {block['mae']:.4f} "
                      f"nDCG@5 {block['ndcg@5']:.4f}, {block['adapt_ms_p50']:.2f} ms/task",
                      file=sys.stderr, flush=True)
    if few_shot:
        results["few_shot"] = few_shot
    results["clipped"] = clipped
    return results


def evaluate_online(model: ColdStartModel, dataset: Dataset, *, fit: bool = True,
                    progress: bool = False) -> dict[str, Any]:
    """The online replay (module docstring): one pass over every task, the graph growing.

    Before and after the replay the model's observed ratings are cleared (``reset_observed``
    where the model has it), so it starts from training and leaves as it came.

    Returns:
        The results dict of :func:`evaluate` for the whole support sets, with ``"online":
        true``, ``"observed"`` (support ratings handed to the model) and ``"reads_graph"``
        (whether the model has ``observe``); ``"observe_ms_p50"``/``"observe_ms_p99"`` time
        the absorption of one task's support.
    """
    name = model_name(model)
    fit_s = fit_timed(model, dataset, fit=fit)
    observe = getattr(model, "observe", None)
    reset = getattr(model, "reset_observed", None)
    if reset is not None:
        reset()
    lo, hi = dataset.spec.rating_scale
    order = replay_order(dataset)
    outcome: dict[str, list[tuple[int, Any, np.ndarray, float]]] = {}
    observe_ms: list[float] = []
    received: dict[str, int] = {}  # ratings handed over so far, per item
    by_count: dict[str, list[tuple[int, float]]] = {}
    t_start = time.perf_counter()
    try:
        _replay(model, name, dataset, order, observe, outcome, by_count, received, observe_ms,
                lo, hi, progress)
    finally:  # the model leaves as it came, whatever happened
        if reset is not None:
            reset()
    observed = sum(len(dataset.tasks[s][j].support) for s, j in order) if observe else 0
    replay_s = time.perf_counter() - t_start
    results: dict[str, Any] = {"dataset": dataset.name, "model": name, "online": True,
                               "reads_graph": observe is not None, "observed": observed,
                               "replay_s": round(replay_s, 2), "scenarios": {},
                               "fit_s": round(fit_s, 3)}
    if observe_ms:
        results["observe_ms_p50"] = float(np.percentile(observe_ms, 50))
        results["observe_ms_p99"] = float(np.percentile(observe_ms, 99))
    clipped: dict[str, int] = {}
    for scenario in [s for s in [*SCENARIOS, *sorted(outcome)] if s in outcome]:
        if scenario in results["scenarios"]:
            continue
        rows = sorted(outcome[scenario], key=lambda r: r[0])
        block, clipped[scenario] = _score_block(
            [r[1] for r in rows], [r[2] for r in rows], np.array([r[3] for r in rows]), lo, hi)
        results["scenarios"][scenario] = block
        if progress:
            print(f"[{name}] online {scenario}: RMSE {block['rmse']:.4f} MAE "
                  f"{block['mae']:.4f}", file=sys.stderr, flush=True)
    results["clipped"] = clipped
    results["by_item_ratings"] = {s: _rmse_by_count(rows) for s, rows in by_count.items()}
    return results


def _rmse_by_count(rows: Sequence[tuple[int, float]]) -> dict[str, dict[str, float]]:
    """Rating-level RMSE of query predictions grouped by how many ratings their item had
    received in the replay when it was asked (``"0"``, ``"1-2"``, ..., ``"300+"``)."""
    sq = np.array([e for _, e in rows])
    return {label: {"n": int(sel.sum()), "rmse": float(np.sqrt(sq[sel].mean()))}
            for label, sel in count_buckets(np.array([c for c, _ in rows], dtype=np.int64))}


def _replay(model: ColdStartModel, name: str, dataset: Dataset, order: list[tuple[str, int]],
            observe: Any, outcome: dict[str, list[tuple[int, Any, np.ndarray, float]]],
            by_count: dict[str, list[tuple[int, float]]], received: dict[str, int],
            observe_ms: list[float], lo: float, hi: float, progress: bool) -> None:
    """The replay's loop: answer each task, then hand its support to ``observe``."""
    for step, (scenario, j) in enumerate(order):
        task = dataset.tasks[scenario][j]
        pred, ms = _predict_task(model, name, scenario, j, task, None)
        outcome.setdefault(scenario, []).append((j, task, pred, ms))
        by_count.setdefault(scenario, []).extend(
            (received.get(str(i), 0), float(np.clip(p, lo, hi) - r) ** 2)
            for (i, r), p in zip(task.query, pred, strict=True))
        for i, _ in task.support:
            received[str(i)] = received.get(str(i), 0) + 1
        if observe is not None and task.support:
            t0 = time.perf_counter()
            observe([(str(task.user_id), str(i), float(r)) for i, r in task.support])
            observe_ms.append((time.perf_counter() - t0) * 1e3)
        if progress and (step + 1) % 1000 == 0:
            print(f"[{name}] online replay: {step + 1}/{len(order)} tasks", file=sys.stderr,
                  flush=True)


def _predict_task(model: ColdStartModel, name: str, scenario: str, index: int, task: Any,
                  k: int | None) -> tuple[np.ndarray, float]:
    """One task's checked predictions (query ratings never passed) and its time in ms."""
    pairs = task.support if k is None else task.support[:k]
    support = [(str(i), float(r)) for i, r in pairs]
    query_items = [str(i) for i, _ in task.query]
    t0 = time.perf_counter()
    raw = model.predict(str(task.user_id), support, list(query_items))
    ms = (time.perf_counter() - t0) * 1e3
    try:
        pred = np.asarray(raw, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise PredictionError(f"model {name!r}, scenario {scenario!r}, task {index} "
                              f"(user {task.user_id!r}, K={k_label(k)}): predictions are "
                              f"not numbers: {exc}") from exc
    if pred.shape != (len(query_items),):
        raise PredictionError(
            f"model {name!r}, scenario {scenario!r}, task {index} (user "
            f"{task.user_id!r}, K={k_label(k)}): {np.shape(raw)} predictions for "
            f"{len(query_items)} query items")
    bad = ~np.isfinite(pred)
    if bad.any():
        j = int(bad.argmax())
        raise PredictionError(
            f"model {name!r}, scenario {scenario!r}, task {index} (user "
            f"{task.user_id!r}, K={k_label(k)}): prediction {pred[j]} for query item "
            f"{query_items[j]!r} is not finite ({int(bad.sum())} of {len(pred)})")
    return pred, ms


def _score_block(tasks: Sequence[Any], preds: Sequence[np.ndarray], times: np.ndarray,
                 lo: float, hi: float) -> tuple[dict[str, Any], int]:
    """Per-scenario metrics of predictions clipped into the scale, and the clipped count."""
    y_true = [np.array([r for _, r in t.query], dtype=np.float64) for t in tasks]
    y_pred = [np.clip(p, lo, hi) for p in preds]
    n_clipped = int(sum(((p < lo) | (p > hi)).sum() for p in preds))
    # gains must not be negative: a scale reaching below 0 is shifted to start at 0 for nDCG
    per_task = batch_task_metrics(y_true, y_pred, gain_offset=min(lo, 0.0))
    block: dict[str, Any] = {"tasks": len(tasks)}
    for metric in METRICS:
        block[metric] = float(per_task[metric].mean()) if len(tasks) else math.nan
    block["adapt_ms_p50"] = float(np.percentile(times, 50)) if len(tasks) else math.nan
    block["adapt_ms_p99"] = float(np.percentile(times, 99)) if len(tasks) else math.nan
    return block, n_clipped


def _run_scenario(model: ColdStartModel, name: str, scenario: str, tasks: Sequence[Any],
                  k: int | None, lo: float, hi: float) -> tuple[dict[str, Any], int]:
    preds = []
    times = np.empty(len(tasks))
    for index, task in enumerate(tasks):
        pred, times[index] = _predict_task(model, name, scenario, index, task, k)
        preds.append(pred)
    return _score_block(tasks, preds, times, lo, hi)


def write_results(results: dict[str, Any] | list[dict[str, Any]], path: str | Path) -> Path:
    """Write results JSON atomically (a temporary sibling renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(jsonable(results), fh, indent=2, allow_nan=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _scenario_order(results: Sequence[dict[str, Any]]) -> list[str]:
    seen = [s for s in SCENARIOS if any(s in r.get("scenarios", {}) for r in results)]
    for r in results:
        seen += [s for s in r.get("scenarios", {}) if s not in seen]
    return seen


def results_table(results: Sequence[dict[str, Any]], *, digits: int = 3) -> str:
    """Markdown tables of several results: RMSE (MAE) per scenario, then nDCG@5.

    Rows are models, columns scenarios; the nDCG@5 table gives the sklearn nDCG@5 with the
    MetaHIN variant in parentheses. A missing scenario, or one without tasks, shows as
    ``-``. Results of the
    implicit protocol (:func:`graph_meta.eval.ranking.evaluate_implicit`) get its tables
    (recall@20, ndcg@20, hit@20) instead.
    """
    if results and all(r.get("protocol") == "implicit" for r in results):
        return ranking_table(results, digits=digits)
    scenarios = _scenario_order(results)

    def table(title: str, cell: Any) -> list[str]:
        head = f"| {title} | " + " | ".join(scenarios) + " |"
        rule = "|---|" + "---|" * len(scenarios)
        rows = []
        for r in results:
            cells = []
            for s in scenarios:
                block = r.get("scenarios", {}).get(s)
                cells.append(cell(block) if block and block.get("tasks") else "-")
            rows.append(f"| {r.get('model', '?')} | " + " | ".join(cells) + " |")
        return [head, rule, *rows]

    f = f"{{:.{digits}f}}"
    lines = table("model: RMSE (MAE)",
                  lambda b: f"{f.format(b['rmse'])} ({f.format(b['mae'])})")
    lines.append("")
    lines += table("model: nDCG@5 (MetaHIN variant)",
                   lambda b: f"{f.format(b['ndcg@5'])} ({f.format(b['ndcg@5_metahin'])})")
    lines.append("")
    lines += table("model: adapt+predict ms p50 / p99",
                   lambda b: f"{b['adapt_ms_p50']:.2f} / {b['adapt_ms_p99']:.2f}")
    return "\n".join(lines) + "\n"


_RELEASE_NAME = re.compile(r"year|release|date|time", re.IGNORECASE)


def release_column(dataset: Dataset) -> str | None:
    """The item column that orders items by release: the first ``numeric`` item column whose
    name contains year/release/date/time, else None (the splitter then uses the items'
    first-rating time when ``train`` has timestamps, else a random draw)."""
    for name, col in dataset.spec.items.columns.items():
        if col.type == "numeric" and _RELEASE_NAME.search(name):
            return name
    return None


def carve_validation(dataset: Dataset, *, new_user_fraction: float = 0.1,
                     new_item_fraction: float = 0.1, warm_task_fraction: float = 0.1,
                     max_tasks: int | None = 1000, seed: int = 0) -> Dataset:
    """Pseudo-tasks carved from ``train`` only, for choosing hyper-parameters.

    :func:`graph_meta.eval.split.split_cold_start` (the benchmark's own splitter) is run on
    the training interactions: a seeded random ``new_user_fraction`` of the training users
    become held-out (new) users, the newest
    ``new_item_fraction`` of the training items (by :func:`release_column`, else by their
    first rating time, else at random) held-out (new) items, and ``warm_task_fraction`` of
    the remaining users give up their latest ratings as warm tasks; the four scenarios follow
    (10 query ratings, 3..90 support, as the benchmark). Each scenario keeps at most
    ``max_tasks`` tasks (a seeded random subset, in their order).

    Returns:
        A :class:`Dataset` with the same side information, the reduced ``train`` and the
        pseudo-tasks; ``root`` is None and ``spec.stats["carved"]`` holds the split report.
        The task files of ``dataset`` are never read.
    """
    cols = [USER_ID, ITEM_ID, RATING] + ([TIMESTAMP] if TIMESTAMP in dataset.train else [])
    release = release_column(dataset)
    split = split_cold_start(
        dataset.train[cols],
        new_user_fraction=new_user_fraction,
        new_item_fraction=new_item_fraction,
        warm_task_fraction=warm_task_fraction,
        item_release=dataset.items[release] if release else None,
        seed=seed,
    )
    rng = np.random.default_rng(seed)
    tasks = {}
    for scenario, task_list in split.tasks.items():
        if max_tasks is not None and len(task_list) > max_tasks:
            keep = np.sort(rng.choice(len(task_list), size=max_tasks, replace=False))
            task_list = [task_list[j] for j in keep]
        tasks[scenario] = task_list
    stats = dict(dataset.spec.stats)
    stats["carved"] = {"release_column": release, "seed": seed, **split.report}
    spec = dataclasses.replace(dataset.spec, stats=stats,
                               tasks={s: f"tasks/{s}.jsonl" for s in tasks})
    return Dataset(spec=spec, users=dataset.users, items=dataset.items, train=split.train,
                   relations=dataset.relations, tasks=tasks, root=None,
                   warnings=list(dataset.warnings))
