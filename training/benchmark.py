"""``graph-meta benchmark``: train the model, evaluate it and every baseline on the protocol.

Writes into the output folder: ``results/<model>.json`` (PROTOCOL.md shape, with few-shot
curves), ``results.md`` (the tables), ``scenarios.png`` (RMSE per scenario and model),
``few_shot.png`` (RMSE against K per scenario) and ``speed.json`` (meta-training throughput;
adapt + score-all-items latency of one new user with K = 10).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from graph_meta.dataset import Dataset
from training.plots import plot_results

SUPPORT_K: tuple[int | None, ...] = (0, 1, 3, 5, 10, None)

#: ``run_benchmark(ablations=True)``: (row name, config overrides, fine-tune on support with
#: the fixed ``meta.inner_lr`` instead of meta-learned step sizes); the last rows swap the
#: meta-learner (``benchmarks/online_seeds.py --ablation NAME`` runs one)
ABLATIONS: tuple[tuple[str, dict[str, Any], bool], ...] = (
    ("graph-meta (no graph)", {"model.use_graph": False}, False),
    ("graph-meta (no neighbourhood correction)", {"model.neighbor_k": 0}, False),
    ("graph-meta (no learned co-rating weights)", {"model.regression_l2": 0.0}, False),
    ("graph-meta (no CO_ENGAGED)", {"model.use_co_engaged": False}, False),
    ("graph-meta (GNN prior ungated)", {"model.prior_gate": False}, False),
    ("graph-meta (GNN prior ungated, no CO_ENGAGED)",
     {"model.prior_gate": False, "model.use_co_engaged": False}, False),
    ("graph-meta (no relation files)", {"model.use_relations": False}, False),
    ("graph-meta (no meta-learning)", {"meta.learner": "none"}, False),
    ("graph-meta (pretrained, fine-tuned on support)", {"meta.learner": "none"}, True),
    # the other meta-learners in place of Meta-SGD (graph_meta/meta/)
    ("graph-meta (LSTM meta-learner)", {"meta.learner": "lstm"}, False),
    ("graph-meta (LEO)", {"meta.learner": "leo"}, False),
    ("graph-meta (prototype attention)", {"meta.learner": "proto"}, False),
)


def fine_tune_steps(model: Any, steps: int, lr: float) -> None:
    """Make a fitted model adapt with ``steps`` plain gradient steps of size ``lr`` on the
    support (the inner loop of :meth:`GraphMetaRecommender.adapt_user` with hand-set instead
    of meta-learned step sizes): the "pretrain, then fine-tune" ablation."""
    c = model.cache
    d_state = c["item_states"].shape[1]
    adapt = model.config.meta.adapt  # what a learner would adapt (the rest: rate 0)
    c["lr_theta"] = np.full((steps, d_state), float(lr) if "vector" in adapt else 0.0)
    c["lr_head"] = np.full((steps, 2), float(lr) if "head" in adapt else 0.0)


def latency_new_user(model: Any, dataset: Dataset, *, k: int = 10, repeats: int = 200,
                     seed: int = 0) -> dict[str, float]:
    """Adapt to one new user from ``k`` support ratings and score every item: p50/p99 ms."""
    rng = np.random.default_rng(seed)
    tasks = [t for s in ("user_cold", "user_item_cold") for t in dataset.tasks.get(s, [])
             if len(t.support) >= k]
    if not tasks or not hasattr(model, "score_all_items"):
        return {}
    times = []
    for _ in range(repeats):
        task = tasks[int(rng.integers(len(tasks)))]
        t = time.perf_counter()
        scores = model.score_all_items(task.user_id, task.support[:k])
        times.append(time.perf_counter() - t)
    return {"items_scored": len(scores), "support_k": k,
            "adapt_score_ms_p50": round(float(np.percentile(times, 50)) * 1000, 3),
            "adapt_score_ms_p99": round(float(np.percentile(times, 99)) * 1000, 3)}


def latency_observe(model: Any, dataset: Dataset, *, repeats: int = 200,
                    seed: int = 0) -> dict[str, float]:
    """Absorb one new rating of a cold item and re-score that item for every user: p50/p99
    ms over ``repeats`` ratings drawn from the cold-item tasks' supports (observed ratings
    are forgotten afterwards)."""
    if not hasattr(model, "observe") or not hasattr(model, "score_all_users"):
        return {}
    pool = [(t.user_id, str(i), float(r)) for s in ("item_cold", "user_item_cold")
            for t in dataset.tasks.get(s, []) for i, r in t.support
            if str(i) in getattr(model, "item_pos", {})]
    if not pool:
        return {}
    rng = np.random.default_rng(seed)
    times = []
    model.reset_observed()
    for k in rng.choice(len(pool), size=min(repeats, len(pool)), replace=False):
        rating = pool[int(k)]
        t = time.perf_counter()
        model.observe([rating])
        model.score_all_users(rating[1])
        times.append(time.perf_counter() - t)
    model.reset_observed()
    return {"observe_rescore_ms_p50": round(float(np.percentile(times, 50)) * 1000, 3),
            "observe_rescore_ms_p99": round(float(np.percentile(times, 99)) * 1000, 3),
            "ratings": len(times)}


def plot_by_item_ratings(rows: Sequence[dict[str, Any]], out: Path) -> Path | None:
    """RMSE of cold-item queries against the ratings their item had received in the replay,
    one line per model (``by_item_ratings`` of :func:`evaluate_online`)."""
    scenarios = [s for s in ("item_cold", "user_item_cold")
                 if any(s in r.get("by_item_ratings", {}) for r in rows)]
    if not scenarios:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(scenarios), figsize=(5.5 * len(scenarios), 4),
                             squeeze=False)
    for ax, s in zip(axes[0], scenarios, strict=True):
        for r in rows:
            curve = r.get("by_item_ratings", {}).get(s)
            if curve:
                ax.plot(range(len(curve)), [v["rmse"] for v in curve.values()], marker="o",
                        label=r["model"])
                ax.set_xticks(range(len(curve)), list(curve))
        ax.set_title(f"{s}: online replay")
        ax.set_xlabel("ratings the item had received")
        ax.set_ylabel("RMSE (rating level)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    path = out / "online_by_item_ratings.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_benchmark(dataset: Dataset, out: Path, *, config_path: Path | None = None,
                  quick: bool = False, device: str = "auto", progress: bool = True,
                  support_k: Sequence[int | None] = SUPPORT_K,
                  ablations: bool = False, online: bool = False,
                  seed: int | None = None) -> list[dict[str, Any]]:
    """Train graph-meta, evaluate it and the baselines, write JSON, tables and plots.

    With ``ablations`` graph-meta is also trained and evaluated once per row of
    :data:`ABLATIONS` (the same config with one part switched off), each a row of the tables.
    With ``online`` every model (ablations included) also runs the online replay
    (:func:`~graph_meta.eval.protocol.evaluate_online`), a row ``"<model> online"`` each,
    written to ``online.md`` beside the offline tables. ``seed`` (default: the config's
    ``train.seed``) seeds graph-meta, the MF's initial factors and tuning carve, and MeLU.

    A dataset with ``"implicit": true`` runs the implicit protocol instead
    (:func:`training.implicit_benchmark.run_implicit_benchmark`: candidate pools, recall@20,
    ndcg@20, hit@20, the implicit baselines).
    """
    if dataset.spec.implicit:
        from training.implicit_benchmark import run_implicit_benchmark

        return run_implicit_benchmark(dataset, out, config_path=config_path, quick=quick,
                                      device=device, progress=progress, support_k=support_k,
                                      ablations=ablations, online=online, seed=seed)
    from graph_meta.baselines import BiasedMF, GlobalMean, ItemMeanUserBias
    from graph_meta.config import load_config
    from graph_meta.eval.protocol import evaluate, evaluate_online, results_table, write_results
    from graph_meta.fitting.train import resolve_device
    from graph_meta.melu import MeLUStyle
    from graph_meta.model import GraphMetaRecommender

    out.mkdir(parents=True, exist_ok=True)
    (out / "results").mkdir(exist_ok=True)
    if config_path is None and quick:
        config_path = Path(__file__).resolve().parents[1] / "configs" / "quick.toml"
    cfg = load_config(config_path)
    if seed is not None:
        cfg = cfg.replace(**{"train.seed": int(seed)})
    seed = cfg.train.seed
    torch.manual_seed(seed)
    model = GraphMetaRecommender(cfg)
    t = time.perf_counter()
    model.fit(dataset, device=device, progress=progress, log_dir=out / "run",
              checkpoint_dir=out / "run")
    fit_s = time.perf_counter() - t
    melu_device = str(resolve_device(device))
    models: list[Any] = [GlobalMean(), ItemMeanUserBias(tune=not quick, seed=seed),
                         BiasedMF(tune=not quick, seed=seed),
                         MeLUStyle(epochs=2, device=melu_device, seed=seed) if quick
                         else MeLUStyle(device=melu_device, seed=seed)]
    results = []
    online_rows: list[dict[str, Any]] = []

    def replay(m: Any) -> None:
        if online:
            row = evaluate_online(m, dataset, fit=False, progress=progress)
            row["model"] = f"{row['model']} online"
            online_rows.append(row)

    for m in models:
        results.append(evaluate(m, dataset, support_k=support_k, progress=progress))
        replay(m)
    ours = evaluate(model, dataset, support_k=support_k, fit=False, progress=progress)
    ours["fit_s"] = round(fit_s, 1)
    results.append(ours)
    replay(model)
    if ablations:
        for name, overrides, fine_tune in ABLATIONS:
            if "model.use_relations" in overrides and not dataset.spec.relations:
                continue  # no relation file: the row would repeat graph-meta's
            variant = GraphMetaRecommender(cfg.replace(**overrides))
            variant.name = name
            t = time.perf_counter()
            variant.fit(dataset, device=device, progress=progress)
            if fine_tune:
                fine_tune_steps(variant, max(cfg.meta.inner_steps, 1), cfg.meta.inner_lr)
            res = evaluate(variant, dataset, support_k=support_k, fit=False,
                           progress=progress)
            res["fit_s"] = round(time.perf_counter() - t, 1)
            res["ablation"] = {"overrides": overrides, "fine_tune_on_support": fine_tune}
            results.append(res)
            replay(variant)
    for res in [*results, *online_rows]:
        name = res["model"].replace(" ", "_").replace("/", "_")
        write_results(res, out / "results" / f"{name}.json")
    if online_rows:
        (out / "online.md").write_text(f"# {dataset.name}: online replay\n\n"
                                       f"{results_table(online_rows)}\n")
        plot_by_item_ratings(online_rows, out)
    speed = {"fit_s": round(fit_s, 1), **latency_new_user(model, dataset),
             **(latency_observe(model, dataset) if online else {}),
             "fit_info": model.fit_info}
    write_results(speed, out / "speed.json")
    table = results_table(results)
    (out / "results.md").write_text(f"# {dataset.name}\n\n{table}\n\nspeed: {speed}\n")
    plot_results(results, out)
    return [*results, *online_rows]
