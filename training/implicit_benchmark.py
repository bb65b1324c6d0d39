"""``graph-meta benchmark`` on an implicit dataset folder (``"implicit": true``).

Evaluates every implicit model on PROTOCOL.md's implicit protocol
(:func:`graph_meta.eval.ranking.evaluate_implicit`: candidate pools, recall@20, ndcg@20,
hit@20, few-shot curves) and writes into the output folder ``results/<model>.json``,
``results.md`` (the tables), ``scenarios.png`` (recall@20 per scenario and model),
``few_shot.png`` (recall@20 against K) and ``speed.json`` (fit times; the latency of ranking
the whole pool for a new user with K = 10). With ``online`` every model also runs PROTOCOL.md's
online replay (:func:`graph_meta.eval.ranking.evaluate_implicit_online`), a row
``"<model> online"`` each (``results/<model>_online.json``, ``online.md``).

The models: popularity (attribute popularity for new items), implicit ALS + fold-in (tuned on
pseudo-tasks carved from train unless ``quick``), LightFM with features (where the ``lightfm``
package imports; else a note), the content profile, and graph-meta's implicit model where
:mod:`graph_meta.implicit` provides one.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from graph_meta.dataset import Dataset
from training.plots import plot_results

SUPPORT_K: tuple[int | None, ...] = (0, 1, 3, 5, 10, None)


def implicit_models(*, quick: bool = False, seed: int = 0,
                    note: Callable[[str], None] | None = None) -> list[Any]:
    """The baselines of the implicit benchmark, in table order."""
    from graph_meta.implicit_baselines import (
        ContentProfile,
        ImplicitALS,
        LightFMBaseline,
        Popularity,
        lightfm_available,
    )

    models: list[Any] = [Popularity(), ImplicitALS(tune=not quick, seed=seed,
                                                   iters=5 if quick else 15,
                                                   exposure_weight=None)]
    if lightfm_available():
        models.append(LightFMBaseline(epochs=3 if quick else 10, seed=seed))
    elif note is not None:
        note("LightFM is not installed (pip install lightfm fails to build on Python 3.11 "
             "with current setuptools; see README): its row is left out")
    models.append(ContentProfile())
    return models


def graph_meta_implicit(cfg_seed: int, quick: bool) -> Any | None:
    """graph-meta's implicit model, where :mod:`graph_meta.implicit` exists (else None)."""
    try:
        from graph_meta.implicit import GraphMetaImplicit
    except ImportError:
        return None
    return GraphMetaImplicit(seed=cfg_seed, quick=quick, tune=True)


def latency_pool(model: Any, dataset: Dataset, *, k: int = 10, repeats: int = 200,
                 seed: int = 0) -> dict[str, float]:
    """Rank the whole warm pool for a new user (a ``user_cold`` task) from ``k`` support
    items: p50 / p99 ms over ``repeats`` draws."""
    from graph_meta.eval.ranking import CandidatePools, rank_task

    tasks = [t for t in dataset.tasks.get("user_cold", []) if len(t.support) >= k]
    if not tasks:
        return {}
    pools = CandidatePools(dataset)
    rng = np.random.default_rng(seed)
    name = str(getattr(model, "name", type(model).__name__))
    times, sizes = [], []
    for _ in range(repeats):
        j = int(rng.integers(len(tasks)))
        _, pool, ms = rank_task(model, name, "user_cold", j, tasks[j], k, pools)
        times.append(ms)
        sizes.append(len(pool))
    return {"support_k": k, "pool_size": round(float(np.mean(sizes)), 1),
            "rank_pool_ms_p50": round(float(np.percentile(times, 50)), 3),
            "rank_pool_ms_p99": round(float(np.percentile(times, 99)), 3)}


def plot_ranking(results: Sequence[dict[str, Any]], out: Path,
                 metric: str = "recall@20") -> list[Path]:
    """Bars of ``metric`` per scenario and model, and its few-shot curves."""
    return plot_results(results, out, metric=metric, label=metric, bottom=None,
                        support="support items K")


def run_implicit_benchmark(dataset: Dataset, out: Path, *, config_path: Path | None = None,
                           quick: bool = False, device: str = "auto", progress: bool = True,
                           support_k: Sequence[int | None] = SUPPORT_K,
                           ablations: bool = False, online: bool = False,
                           seed: int | None = None,
                           models: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """Evaluate the implicit models on ``dataset``'s tasks; write JSON, tables and plots.

    ``config_path``, ``device`` and ``ablations`` concern graph-meta's rating model and are
    not used here. ``online``: every model also runs the online replay after its offline
    evaluation (rows ``"<model> online"``, returned after the offline ones, and
    ``online.md``). ``models`` replaces the default list (:func:`implicit_models`).
    """
    from graph_meta.eval.protocol import write_results
    from graph_meta.eval.ranking import evaluate_implicit, evaluate_implicit_online, ranking_table

    def note(text: str) -> None:
        if progress:
            print(f"note: {text}", file=sys.stderr, flush=True)

    if ablations:
        note("--ablations: graph-meta's rating ablations do not apply to implicit data; "
             "skipped")
    seed = 0 if seed is None else int(seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results").mkdir(exist_ok=True)
    chosen = list(models) if models is not None else implicit_models(quick=quick, seed=seed,
                                                                    note=note)
    if models is None:
        ours = graph_meta_implicit(seed, quick)
        if ours is not None:
            chosen.append(ours)
        else:
            note("graph-meta has no implicit model in this version (graph_meta.implicit): "
                 "its row is left out")
    results = []
    online_rows: list[dict[str, Any]] = []
    speed: dict[str, Any] = {}
    als_params = None
    for m in chosen:
        if als_params is not None and hasattr(m, "als_params") and m.als_params is None:
            m.als_params = als_params  # graph-meta reuses the iALS tuning (same carve)
        t0 = time.perf_counter()
        res = evaluate_implicit(m, dataset, support_k=support_k, progress=progress)
        res["wall_s"] = round(time.perf_counter() - t0, 1)
        results.append(res)
        speed[res["model"]] = {"fit_s": res["fit_s"], **latency_pool(m, dataset, seed=seed)}
        if type(m).__name__ == "ImplicitALS" and m.tune:  # --quick's row is not tuned
            als_params = dict(m.params)
        if online:
            row = evaluate_implicit_online(m, dataset, fit=False, progress=progress)
            row["model"] = f"{row['model']} online"
            online_rows.append(row)
    for res in [*results, *online_rows]:
        name = res["model"].replace(" ", "_").replace("/", "_")
        write_results(res, out / "results" / f"{name}.json")
    if online_rows:
        (out / "online.md").write_text(f"# {dataset.name}: online replay (implicit protocol, "
                                       f"seed {seed})\n\n{ranking_table(online_rows)}\n")
    write_results(speed, out / "speed.json")
    table = ranking_table(results)
    (out / "results.md").write_text(
        f"# {dataset.name} (implicit protocol, seed {seed})\n\n{table}\n\nspeed (rank the "
        f"whole pool for a new user, K = 10): {json.dumps(speed)}\n")
    plot_ranking(results, out)
    return [*results, *online_rows]
