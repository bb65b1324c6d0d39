"""The synthetic e-commerce catalog (:mod:`loaders.synthetic`): content, planted model,
round trip through a dataset folder, determinism, the ``planted_makers`` option. Runs without
``../shared``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from graph_meta.dataset import Dataset
from graph_meta.schema import SCENARIOS, DatasetSpec, EdgeType
from loaders.folder import read_dataset, write_dataset
from loaders.synthetic import AFFINITIES, generate_catalog, maker_names


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


# ---------------------------------------------------------------------------------------------
# planted_makers: thin brands grouped under makers, the maker only in makers.csv

MAKERS_SIZE = {"n_users": 1500, "n_items": 400, "n_interactions": 30000, "seed": 3}


@pytest.fixture(scope="module")
def makers_catalog() -> Dataset:
    return generate_catalog(planted_makers=True, **MAKERS_SIZE)


def test_planted_makers_relation_maps_every_brand_to_one_maker(makers_catalog: Dataset) -> None:
    data = makers_catalog
    (rel,) = [r for r in data.spec.relations if r.type == "MADE_BY"]
    assert (rel.file, rel.src, rel.dst, rel.src_column, rel.dst_column) == (
        "makers.csv", "Brand", "Maker", "brand", "maker")
    made_by = data.relations["MADE_BY"]
    assert list(made_by.columns) == ["src", "dst", "weight"]
    assert (made_by["weight"] == 1).all()
    # one row per brand that has an item: every item's brand has exactly one maker
    assert made_by["src"].is_unique
    assert set(made_by["src"]) == set(data.items["brand"])
    n_brands = max(4 * 6, 400 // 4)  # thin brands: about four items each
    stats = data.spec.stats
    assert stats["brands"] == n_brands
    assert stats["planted_makers"]["makers"] == n_brands // 8 == 12
    assert stats["planted_makers"]["brands_with_items"] == len(made_by)
    assert set(made_by["dst"]) <= set(maker_names(12)) and made_by["dst"].nunique() >= 10
    # makers span departments
    dept = data.items.groupby("brand")["department"].first()
    spread = dept.reindex(made_by["src"]).groupby(made_by["dst"].to_numpy()).nunique()
    assert spread.mean() > 2
    # no side-information column holds (or names) the maker: only the relation file does
    assert "maker" not in data.items.columns and "maker" not in data.users.columns
    assert all(c.node != "Maker" for _, c in data.spec.node_columns)
    makers = set(made_by["dst"])
    for frame in (data.items, data.users):
        for col in frame.columns:
            if frame[col].dtype == object:
                assert not makers & set(frame[col]), col


def _between_share(values: np.ndarray, group: np.ndarray) -> float:
    """Share of the sum of squares of ``values`` between the groups ``group`` (codes)."""
    dev = values - values.mean()
    n = np.bincount(group)
    total = np.bincount(group, weights=dev)
    keep = n > 0
    return float((total[keep] ** 2 / n[keep]).sum() / (dev ** 2).sum())


def test_planted_makers_rating_signal_beyond_chance(makers_catalog: Dataset) -> None:
    """Items' mean training ratings differ between makers far more than between random
    groups of brands of the same sizes (brand effects alone, kept by the shuffle, don't)."""
    data = makers_catalog
    train = data.train.astype({"item_id": str})
    per_item = train.groupby("item_id")["rating"].agg(["mean", "size"])
    per_item = per_item[per_item["size"] >= 5]
    assert len(per_item) > 250
    made_by = data.relations["MADE_BY"]
    brands = made_by["src"].to_numpy()
    maker_code = pd.factorize(made_by["dst"])[0]
    brand_pos = pd.Index(brands).get_indexer(data.items["brand"].reindex(per_item.index))
    values = per_item["mean"].to_numpy()
    observed = _between_share(values, maker_code[brand_pos])
    rng = np.random.default_rng(0)
    null = np.array([_between_share(values, rng.permutation(maker_code)[brand_pos])
                     for _ in range(300)])
    assert observed > 2.5 * null.mean()
    assert observed > np.quantile(null, 0.99)


def test_planted_makers_round_trip_through_a_folder(makers_catalog: Dataset,
                                                    tmp_path: Path) -> None:
    out = write_dataset(makers_catalog, tmp_path / "makers")
    made = pd.read_csv(out / "makers.csv")
    assert list(made.columns) == ["brand", "maker"]
    back = read_dataset(out, strict=True)
    assert back.spec == makers_catalog.spec
    assert back.relations.keys() == makers_catalog.relations.keys() == {"PART_OF", "MADE_BY"}
    pd.testing.assert_frame_equal(back.relations["MADE_BY"], makers_catalog.relations["MADE_BY"])
    pd.testing.assert_frame_equal(back.items, makers_catalog.items)
    assert "Maker" in back.schema.node_types
    assert EdgeType("Brand", "MADE_BY", "Maker") in back.schema.edge_types
    assert not back.warnings


def test_planted_makers_off_changes_nothing(catalog: Dataset) -> None:
    """Without the flag: no MADE_BY relation, no maker stats, the old default brand count."""
    assert catalog.spec.stats["brands"] == max(4 * 6, 500 // 25) == 24
    assert catalog.items["brand"].nunique() <= 24
    assert "planted_makers" not in catalog.spec.stats
    assert [r.type for r in catalog.spec.relations] == ["PART_OF"]
    assert "MADE_BY" not in catalog.relations
    assert "Maker" not in catalog.schema.node_types
    graph = generate_catalog(n_users=300, n_items=120, n_interactions=4000, seed=3,
                             planted_graph=True)
    assert {r.type for r in graph.spec.relations} == {"PART_OF", "SUCCEEDS", "FRIEND_OF"}
    assert graph.spec.stats["brands"] == 24
    assert set(graph.spec.stats["planted_graph"]) == {"SUCCEEDS", "FRIEND_OF"}


def test_planted_makers_with_planted_graph_and_implicit(tmp_path: Path) -> None:
    """Both plants at once, through ``graph-meta synth --implicit --planted-makers``: the
    same users and items as without, thin brands, every relation file readable."""
    from click.testing import CliRunner

    from loaders.synthetic_implicit import generate_implicit_catalog
    from training.cli import main

    r = CliRunner().invoke(main, ["synth", "--implicit", "--planted-graph", "--planted-makers",
                                  "--users", "300", "--items", "160", "--interactions", "5000",
                                  "--seed", "1", "--out", str(tmp_path / "both")])
    assert r.exit_code == 0, r.output
    ds = read_dataset(tmp_path / "both")
    assert ds.spec.implicit
    assert {s.type for s in ds.spec.relations} == {"PART_OF", "SUCCEEDS", "FRIEND_OF",
                                                  "MADE_BY"}
    assert set(ds.spec.stats["planted_graph"]) == {"SUCCEEDS", "FRIEND_OF"}
    assert ds.spec.stats["planted_makers"]["makers"] == 40 // 8
    assert set(ds.relations["MADE_BY"]["src"]) == set(ds.items["brand"])
    plain = generate_implicit_catalog(n_users=300, n_items=160, n_interactions=5000,
                                      seed=1).dataset
    assert list(plain.users.index) == list(ds.users.index)
    assert plain.items["brand"].nunique() <= 24 < ds.items["brand"].nunique()
    r = CliRunner().invoke(main, ["synth", "--planted-makers", "--users", "300", "--items",
                                  "160", "--interactions", "5000", "--out",
                                  str(tmp_path / "explicit")])
    assert r.exit_code == 0, r.output
    assert "MADE_BY" in read_dataset(tmp_path / "explicit").relations
