"""Implicit baselines: the iALS algebra, and planted preferences ranked far above chance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from graph_meta.dataset import ITEM_ID, RATING, USER_ID, Dataset, Task
from graph_meta.eval.ranking import evaluate_implicit
from graph_meta.ials import fit_ials, fold_in, solve_rows
from graph_meta.implicit_baselines import (
    ContentProfile,
    ImplicitALS,
    LightFMBaseline,
    Popularity,
    lightfm_available,
)
from graph_meta.schema import DatasetSpec
from loaders.synthetic_implicit import generate_implicit_catalog


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


def _planted() -> Dataset:
    """Two segments of users, two categories of items: segment A takes category A items,
    B takes B. A has 15 old and 20 new items, B 60 and 60 (an A item has more users than a B item);
    new items have no training row. The tasks are segment A's: new users (user_cold: 3
    support and 5 query items) and new items (item_cold: 2 and 4), so that the top 20 can
    hold every query item while chance is about 20 / 75."""
    rng = np.random.default_rng(0)
    n_users = 200
    users = pd.DataFrame({"segment": ["A" if u % 2 == 0 else "B" for u in range(n_users)]},
                         index=pd.Index([f"u{u}" for u in range(n_users)], name=USER_ID,
                                        dtype=object))
    cats = ["A"] * 15 + ["B"] * 60 + ["A"] * 20 + ["B"] * 60
    items = pd.DataFrame({"category": cats},
                         index=pd.Index([f"i{j}" for j in range(len(cats))], name=ITEM_ID,
                                        dtype=object))
    cat = np.array(cats)
    old = np.arange(75)
    new = np.arange(75, len(cats))
    rows, tasks_uc, tasks_ic = [], [], []
    for u in range(n_users):
        seg = users["segment"].iat[u]
        mine_old = old[cat[old] == seg]
        mine_new = new[cat[new] == seg]
        take = rng.choice(mine_old, 8 if seg == "A" else 12, replace=False)
        if u < 60 and seg == "A":  # new users: their positives become a user_cold task
            tasks_uc.append(Task(f"u{u}", [(f"i{j}", 1.0) for j in take[:3]],
                                 [(f"i{j}", 1.0) for j in take[3:]]))
            continue
        rows += [(f"u{u}", f"i{j}") for j in take]
        if u < 120 and seg == "A":
            fresh = rng.choice(mine_new, 6, replace=False)
            tasks_ic.append(Task(f"u{u}", [(f"i{j}", 1.0) for j in fresh[:2]],
                                 [(f"i{j}", 1.0) for j in fresh[2:]]))
    train = pd.DataFrame(rows, columns=[USER_ID, ITEM_ID])
    train[USER_ID] = train[USER_ID].astype("category")
    train[ITEM_ID] = train[ITEM_ID].astype("category")
    train[RATING] = np.ones(len(train), dtype=np.float32)
    spec = DatasetSpec.from_json({
        "name": "planted", "rating_scale": [0, 1], "implicit": True, "train": "train.csv",
        "users": {"file": "users.csv", "id": USER_ID,
                  "columns": {"segment": {"type": "categorical"}}},
        "items": {"file": "items.csv", "id": ITEM_ID,
                  "columns": {"category": {"type": "categorical", "node": "Category"}}},
        "tasks": {"user_cold": "tasks/user_cold.jsonl", "item_cold": "tasks/item_cold.jsonl"},
    })
    return Dataset(spec=spec, users=users, items=items, train=train,
                   tasks={"user_cold": tasks_uc, "item_cold": tasks_ic})


@pytest.fixture(scope="module")
def planted() -> Dataset:
    return _planted()


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
