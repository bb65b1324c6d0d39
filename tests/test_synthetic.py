"""The synthetic e-commerce catalog (:mod:`loaders.synthetic`): content, planted model,
round trip through a dataset folder, determinism. Runs without ``../shared``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graph_meta.dataset import Dataset
from graph_meta.schema import SCENARIOS, DatasetSpec, EdgeType
from loaders.folder import read_dataset, write_dataset
from loaders.synthetic import AFFINITIES, generate_catalog


@pytest.fixture(scope="module")
def catalog() -> Dataset:
    return generate_catalog()  # the default small size


def all_ratings(data: Dataset) -> pd.DataFrame:
    """Train plus every task rating, with the item's category."""
    rows = [data.train[["user_id", "item_id", "rating"]].astype(
        {"user_id": str, "item_id": str})]
    for tasks in data.tasks.values():
        rows.append(pd.DataFrame(
            [(t.user_id, i, r) for t in tasks for i, r in (*t.support, *t.query)],
            columns=["user_id", "item_id", "rating"]))
    out = pd.concat(rows, ignore_index=True)
    out["category"] = data.items["category"].reindex(out["item_id"]).to_numpy()
    return out


def test_content_and_schema(catalog: Dataset) -> None:
    spec = catalog.spec
    assert spec.rating_scale == (1.0, 5.0)
    assert DatasetSpec.from_json(spec.to_json()) == spec
    assert list(catalog.users.columns) == ["age_band", "region"]
    assert list(catalog.items.columns) == ["department", "category", "brand", "price_band",
                                           "price", "title", "release"]
    nodes = {c.name: c.node for _, c in spec.node_columns}
    assert nodes == {"region": "Region", "department": "Department", "category": "Category",
                     "brand": "Brand"}
    assert spec.items.columns["title"].type == "text"
    assert spec.items.columns["price"].type == "numeric"
    assert EdgeType("Category", "PART_OF", "Department") in catalog.schema.edge_types
    assert set(spec.tasks) == set(SCENARIOS)
    assert len(catalog.users) == 2000 and len(catalog.items) == 500
    assert catalog.items["category"].nunique() == 30
    assert catalog.items["department"].nunique() == 6
    assert (catalog.items["price"] > 0).all()
    assert set(catalog.items["price_band"]) <= {"budget", "mid-range", "premium", "luxury"}
    titles_have_brand = [t.startswith(b) for t, b in zip(catalog.items["title"],
                                                         catalog.items["brand"], strict=True)]
    assert all(titles_have_brand)
    stats = spec.stats
    assert stats["interactions"] == 40000 and stats["input_ratings"] == 40000
    assert stats["users"] == 2000 and stats["items"] == 500
    assert "phones -> phone accessories" in stats["affinities"]


def test_category_tree_matches_items(catalog: Dataset) -> None:
    tree = catalog.relations["PART_OF"]
    assert list(tree.columns) == ["src", "dst", "weight"]
    parent = dict(zip(tree["src"], tree["dst"], strict=True))
    assert len(parent) == 30
    pairs = catalog.items[["category", "department"]].drop_duplicates()
    assert all(parent[c] == d for c, d in pairs.itertuples(index=False))
    rel = catalog.spec.relations[0]
    assert (rel.file, rel.src_column, rel.dst_column) == ("category_tree.csv", "category",
                                                          "department")


def test_all_scenarios_non_empty_and_cold(catalog: Dataset) -> None:
    counts = catalog.cold_counts()
    for s in SCENARIOS:
        assert counts[s]["tasks"] > 0, s
    assert counts["user_cold"]["cold_users"] == counts["user_cold"]["users"]
    assert counts["item_cold"]["cold_items"] == counts["item_cold"]["items"]
    assert counts["warm"]["cold_users"] == counts["warm"]["cold_items"] == 0
    for tasks in catalog.tasks.values():
        for t in tasks:
            assert len(t.query) == 10 and 3 <= len(t.support) <= 90


def test_ratings_in_scale_and_after_release(catalog: Dataset) -> None:
    ratings = all_ratings(catalog)["rating"].to_numpy()
    assert ratings.min() >= 1 and ratings.max() <= 5
    assert (ratings == np.round(ratings)).all()
    assert len(np.unique(ratings)) == 5
    train = catalog.train
    release = catalog.items["release"].reindex(train["item_id"].astype(str)).to_numpy()
    day0 = 1_546_300_800
    assert (train["timestamp"].to_numpy() >= day0 + release * 86400).all()
    assert (np.diff(train["timestamp"].to_numpy()) >= 0).all()


def test_new_items_are_the_newest(catalog: Dataset) -> None:
    task_items = {i for s in ("item_cold", "user_item_cold") for t in catalog.tasks[s]
                  for i, _ in (*t.support, *t.query)}
    train_items = set(catalog.train["item_id"].astype(str))
    release = catalog.items["release"]
    assert release[sorted(task_items)].min() >= release[sorted(train_items)].max()


def test_planted_affinity_is_visible(catalog: Dataset) -> None:
    ratings = all_ratings(catalog)
    rated = ratings.groupby(["user_id", "category"]).size().unstack(fill_value=0) > 0

    def lift(a: str, b: str) -> float:
        return float(rated.loc[rated[a], b].mean() / rated[b].mean())

    # users who rated phones rate phone accessories far more often than users at large
    assert lift("phones", "phone accessories") > 1.7
    assert lift("laptops", "laptop bags") > 1.7
    pairs = {(a, b) for a, b in AFFINITIES if a in rated and b in rated}
    assert len(pairs) == 10
    pairs |= {(b, a) for a, b in pairs}
    cats = list(rated.columns)
    planted = [lift(a, b) for a, b in pairs]
    other = [lift(a, b) for a in cats for b in cats if a != b and (a, b) not in pairs]
    assert np.mean(planted) > np.mean(other) + 0.3


def test_planted_pairs_are_the_strongest_co_engagement(catalog: Dataset) -> None:
    """NPMI of "the same user rated both categories": the planted pairs come out on top."""
    rated = (all_ratings(catalog).groupby(["user_id", "category"]).size()
             .unstack(fill_value=0) > 0).astype(float)
    cats = np.asarray(rated.columns)
    m = rated.to_numpy()
    p = m.mean(axis=0)
    p_ab = (m.T @ m) / len(m)
    with np.errstate(divide="ignore", invalid="ignore"):
        npmi = np.log(p_ab / np.outer(p, p)) / -np.log(p_ab)
    upper = np.triu_indices(len(cats), k=1)
    order = np.argsort(-npmi[upper])
    planted = {frozenset(pair) for pair in AFFINITIES if set(pair) <= set(cats)}
    top = {frozenset((cats[upper[0][k]], cats[upper[1][k]])) for k in order[:len(planted)]}
    assert len(top & planted) >= len(planted) - 1


def test_liked_categories_are_rated_higher(catalog: Dataset) -> None:
    ratings = all_ratings(catalog)
    per = ratings.groupby(["user_id", "category"]).size()
    share = per / per.groupby(level=0).transform("sum")
    ratings["share"] = share.reindex(pd.MultiIndex.from_frame(
        ratings[["user_id", "category"]])).to_numpy()
    hi = ratings.loc[ratings["share"] >= 0.3, "rating"].mean()
    lo = ratings.loc[ratings["share"] <= 0.05, "rating"].mean()
    assert hi > lo


def test_round_trip_through_a_folder(catalog: Dataset, tmp_path: Path) -> None:
    out = write_dataset(catalog, tmp_path / "catalog")
    assert (out / "category_tree.csv").is_file()
    back = read_dataset(out, strict=True)
    assert back.spec == catalog.spec
    pd.testing.assert_frame_equal(back.users, catalog.users)
    pd.testing.assert_frame_equal(back.items, catalog.items)
    pd.testing.assert_frame_equal(back.train, catalog.train)
    assert back.relations.keys() == catalog.relations.keys()
    pd.testing.assert_frame_equal(back.relations["PART_OF"], catalog.relations["PART_OF"])
    assert back.tasks == catalog.tasks
    assert not back.warnings


def test_deterministic_by_seed(catalog: Dataset) -> None:
    again = generate_catalog()
    pd.testing.assert_frame_equal(again.users, catalog.users)
    pd.testing.assert_frame_equal(again.items, catalog.items)
    pd.testing.assert_frame_equal(again.train, catalog.train)
    assert again.tasks == catalog.tasks and again.spec == catalog.spec
    other = generate_catalog(seed=1)
    assert not other.items.equals(catalog.items)
    assert len(other.train) != len(catalog.train) or not other.train.equals(catalog.train)
    assert other.tasks != catalog.tasks


def test_sizes_and_options() -> None:
    data = generate_catalog(n_users=300, n_items=400, n_interactions=6000, n_departments=8,
                            categories_per_department=9, n_brands=5, noise=0.0, seed=2,
                            new_user_fraction=0.3, new_item_fraction=0.1,
                            warm_task_fraction=0.2, name="tiny")
    assert data.spec.name == "tiny"
    assert data.items["category"].nunique() <= 72
    assert data.items["department"].nunique() == 8
    assert data.items["brand"].nunique() <= 5
    assert "books & media line 9" in set(data.relations["PART_OF"]["src"])
    assert data.spec.stats["input_ratings"] == 6000
    assert data.spec.stats["new_users_drawn"] == 90


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_users": 0}, "n_users must be an integer >= 1"),
    ({"n_items": 2.5}, "n_items"),
    ({"n_brands": 0}, "n_brands"),
    ({"noise": -1.0}, "noise must be a finite number >= 0"),
    ({"n_users": 10, "n_items": 10, "n_interactions": 100}, "at most"),
    ({"new_item_fraction": 1.5}, "new_item_fraction"),
    ({"seed": -3}, "seed"),
])
def test_bad_arguments_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_catalog(**kwargs)


def test_medium_size_is_fast() -> None:
    import time

    t0 = time.perf_counter()
    data = generate_catalog(n_users=20_000, n_items=3_000, n_interactions=300_000, seed=4)
    assert time.perf_counter() - t0 < 10.0
    assert data.spec.stats["input_ratings"] == 300_000
    assert all(data.tasks[s] for s in SCENARIOS)
