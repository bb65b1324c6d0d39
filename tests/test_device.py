"""The device a fit runs on: CUDA asked for where there is none is a clear error; where CUDA is
present, a fit on the GPU predicts what the same fit on the CPU predicts, and its saved model
loads and predicts on the CPU (the CUDA tests skip on a machine without a GPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from graph_meta.config import Config
from graph_meta.dataset import Dataset
from graph_meta.model import GraphMetaRecommender

CUDA = torch.cuda.is_available()


def _cfg() -> Config:
    return Config().replace(**{
        "model.dim": 8, "model.hidden": 16, "model.layers": 2, "meta.inner_steps": 2,
        "episodes.max_support": 20, "episodes.history_fanout": 32,
        "episodes.batch_users": 128, "episodes.batch_items": 16, "train.epochs": 2,
        "train.validate": False, "train.lr": 0.01,
        "model.dropout": 0.0})  # dropout masks come from each device's own generator


def _predictions(model: GraphMetaRecommender, catalog: Dataset) -> np.ndarray:
    """Every scenario's first 20 tasks, each query predicted from its support."""
    out = []
    for tasks in catalog.tasks.values():
        for task in tasks[:20]:
            out.append(model.predict(task.user_id, task.support, [i for i, _ in task.query]))
    return np.concatenate(out)


@pytest.mark.skipif(CUDA, reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_a_clear_error(catalog: Dataset) -> None:
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        GraphMetaRecommender(_cfg()).fit(catalog, device="cuda")


@pytest.mark.skipif(not CUDA, reason="no CUDA device")
def test_a_gpu_fit_predicts_what_the_cpu_fit_predicts(catalog: Dataset, tmp_path: Path) -> None:
    torch.manual_seed(0)
    on_cpu = GraphMetaRecommender(_cfg()).fit(catalog, device="cpu")
    torch.manual_seed(0)
    on_gpu = GraphMetaRecommender(_cfg()).fit(catalog, device="cuda")
    assert on_gpu.fit_info["device"].startswith("cuda")
    cpu_pred, gpu_pred = _predictions(on_cpu, catalog), _predictions(on_gpu, catalog)
    assert np.isfinite(gpu_pred).all()
    # the GPU's scatter sums run in another order: two epochs of training drift a little
    assert np.abs(cpu_pred - gpu_pred).mean() < 0.02
    assert np.abs(cpu_pred - gpu_pred).max() < 0.25
    # the model trained on the GPU is saved and served on the CPU
    loaded = GraphMetaRecommender.load(on_gpu.save(tmp_path / "model.pt"))
    np.testing.assert_allclose(_predictions(loaded, catalog), gpu_pred, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not CUDA, reason="no CUDA device")
def test_a_gpu_fit_resumes_after_a_kill(catalog: Dataset, tmp_path: Path) -> None:
    three = _cfg().replace(**{"train.epochs": 3, "model.dropout": 0.2})
    ref = GraphMetaRecommender(three).fit(catalog, device="cuda", checkpoint_dir=tmp_path / "ref")
    again = GraphMetaRecommender(three).fit(catalog, device="cuda")
    # the GPU's scatter sums need not repeat bit for bit: two uninterrupted runs set the scale
    noise = np.abs(again.cache["item_states"] - ref.cache["item_states"]).max()
    GraphMetaRecommender(three.replace(**{"train.epochs": 2})).fit(
        catalog, device="cuda", checkpoint_dir=tmp_path / "run", log_dir=tmp_path / "run")
    resumed = GraphMetaRecommender(three).fit(catalog, device="cuda", resume=True,
                                              checkpoint_dir=tmp_path / "run",
                                              log_dir=tmp_path / "run")
    assert [h["epoch"] for h in resumed.history] == [3]
    # the CPU and CUDA generators both restored: dropout masks as in the run never killed
    # (other masks would move the states by far more than the run-to-run noise)
    gap = np.abs(resumed.cache["item_states"] - ref.cache["item_states"]).max()
    assert gap <= max(10 * noise, 1e-5), (gap, noise)
