"""Evaluation: the cold-start protocol runner, its per-task metrics and the cold-start
splitter (``PROTOCOL.md``)."""

from graph_meta.eval.metrics import (
    METRICS,
    batch_task_metrics,
    mae,
    ndcg_at_k,
    ndcg_at_k_metahin,
    rmse,
    task_metrics,
)
from graph_meta.eval.protocol import (
    ColdStartModel,
    PredictionError,
    evaluate,
    results_table,
    training_view,
    write_results,
)

__all__ = [
    "METRICS",
    "ColdStartModel",
    "PredictionError",
    "batch_task_metrics",
    "evaluate",
    "mae",
    "ndcg_at_k",
    "ndcg_at_k_metahin",
    "results_table",
    "rmse",
    "task_metrics",
    "training_view",
    "write_results",
]
