"""The new items' side-feature prior (ridge and lean toward new releases) chosen at fit time
on the carved tasks with new items (:mod:`graph_meta.fitting.prior_search`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from graph_meta.config import Config
from graph_meta.dataset import Dataset
from graph_meta.eval.protocol import carve_validation, training_view
from graph_meta.fitting import prior_search
from graph_meta.fitting.path_weights import MIN_GAIN, MIN_TASKS, NEW_ITEM_SCENARIOS
from graph_meta.fitting.prior_search import ALPHAS, NEWEST_BIASES
from graph_meta.model import GraphMetaRecommender
from loaders.synthetic import generate_catalog

_CFG = {"model.dim": 8, "model.hidden": 16, "model.layers": 1, "train.epochs": 1,
        "train.val_max_tasks": 80, "train.prior_search": True,
        "episodes.batch_users": 128, "episodes.batch_items": 16}


@pytest.fixture(scope="module")
def shop() -> Dataset:
    return generate_catalog(n_users=1200, n_items=300, n_interactions=30000, seed=3)


@pytest.fixture(scope="module")
def fitted(shop: Dataset, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[GraphMetaRecommender, object]:
    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("run")
    model = GraphMetaRecommender(Config().replace(**_CFG))
    with pytest.MonkeyPatch.context() as patch:  # a small shop carves few tasks
        patch.setattr(prior_search, "MIN_TASKS", 10)
        model.fit(shop, checkpoint_dir=run)
    return model, run


def test_the_carve_has_tasks_with_new_items(shop: Dataset) -> None:
    carved = carve_validation(training_view(shop), max_tasks=None)
    n = sum(len(carved.tasks.get(s, [])) for s in NEW_ITEM_SCENARIOS)
    assert 10 <= n < MIN_TASKS


def test_too_few_carved_new_item_tasks_keep_the_configured_prior(shop: Dataset) -> None:
    torch.manual_seed(0)
    model = GraphMetaRecommender(Config().replace(**_CFG)).fit(shop)
    assert "item_prior" not in model.fit_info


def test_fit_chooses_the_item_prior_on_the_carved_new_items(fitted) -> None:
    model, run = fitted
    chosen = model.fit_info["item_prior"]
    tried = chosen["tried"]
    pairs = {(t["alpha"], t["bias"]) for t in tried}
    assert pairs == {(a, b) for a in ALPHAS for b in NEWEST_BIASES} | {(10.0, 16.0)}
    scores = [t["rmse"] for t in tried]
    assert np.ptp(scores) > 1e-4, "each pair gives the held-out items other states"
    best = (chosen["linear_prior_alpha"], chosen["prior_newest_bias"])
    by_pair = {(t["alpha"], t["bias"]): t["rmse"] for t in tried}
    start = by_pair[(10.0, 16.0)]
    assert by_pair[best] <= min(scores) + (MIN_GAIN if best == (10.0, 16.0) else 0.0)
    assert best == (10.0, 16.0) or by_pair[best] < start - MIN_GAIN
    # the refit trained with the chosen pair, and the saved config says so
    t = model.config.train
    assert (t.linear_prior_alpha, t.prior_newest_bias) == best
    saved = json.loads((run / "config.json").read_text())["train"]
    assert (saved["linear_prior_alpha"], saved["prior_newest_bias"]) == best
    again = GraphMetaRecommender.load(run / "model.pt")
    assert again.config.train.linear_prior_alpha == best[0]
    assert again.config.train.prior_newest_bias == best[1]


def test_the_search_is_off_by_default(shop: Dataset) -> None:
    assert Config().train.prior_search is False
    torch.manual_seed(0)
    model = GraphMetaRecommender(Config().replace(**{**_CFG, "train.prior_search": False}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prior_search, "MIN_TASKS", 10)
        model.fit(shop)
    assert "item_prior" not in model.fit_info
    assert (model.config.train.linear_prior_alpha, model.config.train.prior_newest_bias) == (
        10.0, 16.0)
