"""Implicit baselines: the iALS algebra, and planted preferences ranked far above chance."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from graph_meta.dataset import Dataset
from graph_meta.eval.ranking import evaluate_implicit
from graph_meta.ials import fit_ials, fold_in, solve_rows
from graph_meta.implicit_baselines import (
    ContentProfile,
    ImplicitALS,
    LightFMBaseline,
    Popularity,
    lightfm_available,
)
from loaders.synthetic_implicit import generate_implicit_catalog, planted_segments


def test_solve_rows_is_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    conf = sp.random(40, 30, density=0.2, random_state=1, format="csr") * 4
    y = rng.normal(size=(30, 5))
    prior = rng.normal(size=(40, 5))
    x = solve_rows(conf, y, 0.7, prior=prior, chunk=7)
    dense = conf.toarray()
    for u in range(40):
        c = dense[u]
        a = y.T @ y + 0.7 * np.eye(5) + (y * c[:, None]).T @ y
        b = y.T @ ((1 + c) * (c > 0)) + 0.7 * prior[u]
        np.testing.assert_allclose(x[u], np.linalg.solve(a, b), atol=1e-10)
        items = np.flatnonzero(c)
        np.testing.assert_allclose(fold_in(y, y.T @ y, 0.7, items, c[items], prior[u]), x[u],
                                   atol=1e-10)


def test_fit_ials_lowers_the_loss() -> None:
    rng = np.random.default_rng(1)
    truth = (rng.random((60, 40)) < 0.15).astype(float)
    conf = sp.csr_matrix(truth * 3)

    def loss(x, y):
        c = 1 + truth * 3
        return float((c * (truth - x @ y.T) ** 2).sum() + 0.5 * ((x ** 2).sum() + (y ** 2).sum()))

    x1, y1 = fit_ials(conf, 6, 0.5, 1)
    x5, y5 = fit_ials(conf, 6, 0.5, 8)
    assert loss(x5, y5) < loss(x1, y1)


@pytest.fixture(scope="module")
def planted() -> Dataset:
    return planted_segments()


def _chance(block: dict) -> float:
    return min(1.0, 20 / block["pool_size"])


@pytest.mark.parametrize("make", [
    lambda: ImplicitALS(factors=8, reg=1.0, alpha=5.0, backend="numpy"),
    lambda: ContentProfile(),
], ids=["ials", "content"])
def test_planted_preference_ranked_far_above_chance(planted: Dataset, make) -> None:
    res = evaluate_implicit(make(), planted, support_k=[None])
    for scenario, block in res["scenarios"].items():
        # the user's own category fits in the top 20: recall 1 is reachable, chance is
        # 20 / pool (about 0.27)
        assert block["recall@20"] > 0.9, (scenario, block)
        assert block["recall@20"] > 3 * _chance(block), (scenario, block)


def test_popularity_ranks_new_items_by_their_category(planted: Dataset) -> None:
    model = Popularity().fit(planted)
    new_a = [f"i{j}" for j in range(75, 95)]
    new_b = [f"i{j}" for j in range(95, 155)]
    scores = model.score_items("u50", [], new_a + new_b)
    # an A item has about 37 users in train, a B item about 20: a new A item is expected to
    # be the more popular
    assert scores[:20].min() > scores[20:].max()


@pytest.mark.skipif(not lightfm_available(), reason="lightfm is not installed")
def test_lightfm_ranks_planted_preference_above_chance(planted: Dataset) -> None:
    res = evaluate_implicit(LightFMBaseline(components=8, epochs=30), planted)
    for block in res["scenarios"].values():
        assert block["recall@20"] > 1.5 * _chance(block)


@pytest.fixture(scope="module")
def shop() -> Dataset:
    return generate_implicit_catalog(seed=4).dataset  # 2,000 users, 500 items


def test_ials_on_the_synthetic_shop_beats_chance_and_popularity(shop: Dataset) -> None:
    ials = evaluate_implicit(ImplicitALS(factors=16, reg=20.0, alpha=1.0, backend="numpy",
                                         iters=8), shop)
    pop = evaluate_implicit(Popularity(), shop)
    for s, block in ials["scenarios"].items():
        # cold pools are small (about 100 new items, chance 0.2): there only "beats
        # popularity" (of the items' categories and brands) is asked
        if s in ("warm", "user_cold"):
            assert block["recall@20"] > 3 * _chance(block), (s, block)
        assert block["recall@20"] > pop["scenarios"][s]["recall@20"], s


def test_ials_backends_agree(shop: Dataset) -> None:
    pytest.importorskip("implicit")
    a = evaluate_implicit(ImplicitALS(factors=16, reg=5.0, alpha=5.0, backend="numpy"),
                          shop, scenarios=["user_cold"])
    b = evaluate_implicit(ImplicitALS(factors=16, reg=5.0, alpha=5.0, backend="implicit"),
                          shop, scenarios=["user_cold"])
    assert abs(a["scenarios"]["user_cold"]["recall@20"]
               - b["scenarios"]["user_cold"]["recall@20"]) < 0.05


def test_tuning_chooses_on_pseudo_tasks(shop: Dataset) -> None:
    model = ImplicitALS(backend="numpy", iters=3, tune=True,
                        grid={"factors": [8], "reg": [1.0, 10.0], "alpha": [5.0],
                              "alpha_item": [10.0], "alpha_user": [None]})
    model.fit(shop)
    assert len(model.params["grid_scores"]) == 2
    assert model.reg in (1.0, 10.0)
    assert all(s.startswith(("warm", "user", "item")) for s in model.params["tuned_on"])


def test_cold_carve_holds_out_more_items_when_a_new_item_scenario_is_short(
        shop: Dataset) -> None:
    from graph_meta.implicit_baselines.data import carve_implicit, cold_carve

    first = carve_implicit(shop, seed=0, max_tasks=None)
    counts = [len(first.tasks.get(s, [])) for s in ("item_cold", "user_item_cold")]
    assert cold_carve(shop, seed=0, enough=min(counts), default=first) is first
    wider = cold_carve(shop, seed=0, enough=min(counts) + 1, default=first)
    assert wider is not first
    assert wider.train["item_id"].nunique() < first.train["item_id"].nunique()
    assert sum(len(wider.tasks.get(s, [])) for s in ("item_cold", "user_item_cold")) > sum(
        counts)
