"""Relation files between attribute nodes reach the items two hops away: a brand's maker
(``(Brand)-[MADE_BY]->(Maker)``, no item column holds it) joins the path profiles and the
items' prior, and a new item of a thinly sold brand inherits its maker's reception."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from graph_meta.config import Config
from graph_meta.dataset import Dataset
from graph_meta.eval.protocol import training_view
from graph_meta.graph.neighborhood import default_weight, path_blocks
from graph_meta.graph.relations import RelationPrior, SharedValues, attribute_relation_incidence
from graph_meta.model import GraphMetaRecommender
from graph_meta.schema import DatasetSpec
from graph_meta.store.embedded import EmbeddedGraphStore
from loaders.synthetic import generate_catalog


@pytest.fixture(scope="module")
def makers() -> Dataset:
    return generate_catalog(n_users=2000, n_items=600, n_interactions=40000, seed=3,
                            planted_makers=True)


def _item_incidence(dataset: Dataset) -> dict[str, sp.csr_matrix]:
    return attribute_relation_incidence(dataset, "Item", dataset.items,
                                        pd.Index(dataset.items.index.astype(str)))


def _same_pairs(a: sp.spmatrix, b: sp.spmatrix) -> bool:
    """Do two owner x value incidences join the same owners (whatever their column order)?"""
    a, b = (sp.csr_matrix(m > 0).astype(np.float64) for m in (a, b))
    return abs(a @ a.T - b @ b.T).sum() == 0


def _with_relation(dataset: Dataset, rel: dict, frame: pd.DataFrame) -> Dataset:
    raw = dataset.spec.to_json()
    raw["relations"] = [*raw["relations"], rel]
    spec = DatasetSpec.from_json(raw, source="test")
    return dataclasses.replace(dataset, spec=spec,
                               relations={**dataset.relations, rel["type"]: frame})


def test_the_path_profiles_and_the_prior_reach_the_same_makers(makers: Dataset) -> None:
    inc = _item_incidence(makers)
    assert list(inc) == ["MADE_BY"]
    brand_of = makers.items["brand"]
    maker_of = makers.relations["MADE_BY"].set_index("src")["dst"]
    n_makers = maker_of.nunique()
    assert inc["MADE_BY"].shape == (len(makers.items), n_makers)
    assert (np.asarray(inc["MADE_BY"].sum(axis=1)).ravel() == 1).all()  # one maker each
    # two items share a column exactly when their brands have one maker
    same = (maker_of.loc[brand_of].to_numpy()[:, None]
            == maker_of.loc[brand_of].to_numpy()[None, :])
    joined = (inc["MADE_BY"] @ inc["MADE_BY"].T).toarray() > 0
    np.testing.assert_array_equal(joined, same)
    data = EmbeddedGraphStore.from_dataset(makers).snapshot()
    blocks = path_blocks(data)
    assert _same_pairs(blocks["Brand-MADE_BY-Maker"], inc["MADE_BY"])
    assert "Brand-MADE_BY-Maker" not in path_blocks(data, use_relations=False)
    assert default_weight("Brand-MADE_BY-Maker") == 0.0 and default_weight("Brand") == 1.0


def test_a_file_toward_a_type_the_items_have_a_column_for_adds_nothing(catalog: Dataset
                                                                       ) -> None:
    # the catalogue's category tree (Category)-[PART_OF]->(Department): items have a
    # department column, so the two hops say what one hop already does
    assert "PART_OF" in catalog.relations
    assert _item_incidence(catalog) == {}
    data = EmbeddedGraphStore.from_dataset(catalog).snapshot()
    assert set(path_blocks(data)) == {"Department", "Category", "Brand", "CO_ENGAGED"}


def _joined(inc: sp.spmatrix) -> np.ndarray:
    """``[N, N]`` bool: do two owners share a column of ``inc``?"""
    m = sp.csr_matrix(inc > 0).astype(np.float64)
    return (m @ m.T).toarray() > 0


def test_a_file_between_two_values_of_one_type_joins_their_items(catalog: Dataset) -> None:
    brands = sorted(catalog.items["brand"].unique())
    a, b, c, d = brands[:4]
    # a and b are sisters; c and d are both sisters of a brand no item carries
    sisters = pd.DataFrame({"src": [a, c, "Zeta"], "dst": [b, "Zeta", d],
                            "weight": [1.0, 1.0, 1.0]})
    ds = _with_relation(catalog, {"type": "SISTER_OF", "file": "sisters.csv", "src": "Brand",
                                  "dst": "Brand"}, sisters)
    joined = _joined(_item_incidence(ds)["SISTER_OF"])
    brand = catalog.items["brand"].to_numpy()
    of = {x: np.flatnonzero(brand == x) for x in (a, b, c, d)}
    assert joined[np.ix_(of[a], of[b])].all() and joined[np.ix_(of[c], of[d])].all()
    assert not joined[np.ix_(of[a], of[c])].any()
    others = np.flatnonzero(~np.isin(brand, [a, b, c, d]))
    assert not joined[np.ix_(others, of[a])].any()
    data = EmbeddedGraphStore.from_dataset(ds).snapshot()
    assert _same_pairs(path_blocks(data)["Brand-SISTER_OF-Brand"], _item_incidence(ds)["SISTER_OF"])


def test_either_direction_of_the_file_reaches_the_same_makers(makers: Dataset) -> None:
    made_by = makers.relations["MADE_BY"]
    flipped = pd.DataFrame({"src": made_by["dst"], "dst": made_by["src"],
                            "weight": made_by["weight"]})
    raw = makers.spec.to_json()
    raw["relations"] = [r for r in raw["relations"] if r["type"] != "MADE_BY"] + [{
        "type": "MAKES", "file": "makes.csv", "src": "Maker", "dst": "Brand"}]
    ds = dataclasses.replace(makers, spec=DatasetSpec.from_json(raw, source="test"),
                             relations={**{k: v for k, v in makers.relations.items()
                                           if k != "MADE_BY"}, "MAKES": flipped})
    assert _same_pairs(_item_incidence(ds)["MAKES"], _item_incidence(makers)["MADE_BY"])
    blocks = path_blocks(EmbeddedGraphStore.from_dataset(ds).snapshot())
    assert _same_pairs(blocks["Maker-MAKES-Brand"], _item_incidence(makers)["MADE_BY"])


def test_two_columns_of_one_type_make_one_block(makers: Dataset) -> None:
    raw = makers.spec.to_json()
    raw["items"]["columns"]["co_brand"] = {"type": "categorical", "node": "Brand"}
    items = makers.items.copy()
    items["co_brand"] = np.roll(items["brand"].to_numpy(), 7)
    ds = dataclasses.replace(makers, spec=DatasetSpec.from_json(raw, source="test"),
                             items=items)
    inc = _item_incidence(ds)["MADE_BY"]
    assert np.asarray((inc > 0).sum(axis=1)).max() == 2  # the two brands' makers
    blocks = path_blocks(EmbeddedGraphStore.from_dataset(ds).snapshot())
    assert _same_pairs(blocks["Brand-MADE_BY-Maker"], inc)
    assert _same_pairs(blocks["Brand"], sp.csr_matrix(pd.get_dummies(
        pd.concat([items["brand"], items["co_brand"]])).groupby(level=0).max().reindex(
        items.index).to_numpy(np.float64)))


def test_a_category_type_only_a_file_brings_has_no_co_engaged_edges(catalog: Dataset
                                                                    ) -> None:
    raw = catalog.spec.to_json()
    raw["items"]["columns"]["category"].pop("node")
    raw["relations"] = [r for r in raw["relations"] if r["type"] != "PART_OF"] + [{
        "type": "FILED_UNDER", "file": "tree.csv", "src": "Department", "dst": "Category"}]
    tree = catalog.relations["PART_OF"].rename(columns={"src": "dst", "dst": "src"})
    ds = dataclasses.replace(catalog, spec=DatasetSpec.from_json(raw, source="test"),
                             relations={"FILED_UNDER": tree[["src", "dst", "weight"]]})
    assert "Category" in ds.schema.node_types and ds.schema.co_engaged is None
    store = EmbeddedGraphStore.from_dataset(ds)
    store.refresh_derived_edges()
    assert store.counts().nodes["Category"] == catalog.items["category"].nunique()


def test_shared_values_equal_the_explicit_adjacency() -> None:
    rng = np.random.default_rng(0)
    a = sp.csr_matrix((rng.random((60, 7)) < 0.3).astype(np.float64))
    explicit = (a @ a.T).tolil()
    explicit.setdiag(0.0)
    explicit = explicit.tocsr()
    x = rng.normal(size=(60, 3))
    rated = rng.random(60) < 0.7
    residual = np.where(rated[:, None], x, 0.0)
    for reliability in (None, rng.random((60, 3))):
        np.testing.assert_allclose(
            RelationPrior.neighbor_means({"a": SharedValues(a)}, residual, rated, 1.0,
                                         reliability),
            RelationPrior.neighbor_means({"a": explicit}, residual, rated, 1.0, reliability),
            atol=1e-12)


_SMALL = {"model.dim": 8, "model.hidden": 16, "model.layers": 1, "train.epochs": 1,
          "train.validate": False}


def _fit(dataset: Dataset, **over: object) -> GraphMetaRecommender:
    torch.manual_seed(0)
    return GraphMetaRecommender(Config().replace(**{**_SMALL, **over})).fit(
        training_view(dataset))


def test_new_items_inherit_their_makers_reception(makers: Dataset) -> None:
    """K = 0 predictions of new items improve with the maker file over the same model
    without relation files; moving one brand to another maker moves its new items' priors
    (a never-rated item's state is its prior) more than almost any other item's."""
    with_rel = _fit(makers)
    without = _fit(makers, **{"model.use_relations": False})
    tasks = makers.tasks["item_cold"]

    def rmse(model: GraphMetaRecommender) -> float:
        err = [model.predict(t.user_id, [], [i for i, _ in t.query]) - np.array(
            [r for _, r in t.query]) for t in tasks]
        return float(np.sqrt(np.mean(np.concatenate(err) ** 2)))

    assert rmse(with_rel) < rmse(without) - 0.03, (rmse(with_rel), rmse(without))
    # what the prior leaned on is in fit_info: the maker relation, with real weight
    beta = with_rel.fit_info["relation_prior"]["Item"]["MADE_BY:shared"]
    assert len(beta) == with_rel.cache["item_states"].shape[1] and np.mean(beta) > 0.3
    assert "relation_prior" not in without.fit_info
    rated = set(makers.train["item_id"].astype(str))
    new_item = next(str(i) for t in tasks for i, _ in t.query if str(i) not in rated)
    brand = makers.items.loc[new_item, "brand"]
    made_by = makers.relations["MADE_BY"].copy()
    mine = made_by["src"] == brand
    others = sorted(set(made_by["dst"]) - set(made_by.loc[mine, "dst"]))
    made_by.loc[mine, "dst"] = others[0]
    moved_model = _fit(dataclasses.replace(
        makers, relations={**makers.relations, "MADE_BY": made_by}))
    moved = np.abs(moved_model.cache["item_states"] - with_rel.cache["item_states"]).sum(1)
    of_brand = [with_rel.item_pos[str(i)] for i in
                makers.items.index[makers.items["brand"] == brand]]
    assert moved[with_rel.item_pos[new_item]] > 1e-3
    assert moved[of_brand].mean() >= np.quantile(moved, 0.95)


def test_products_added_after_training_inherit_their_makers_reception(makers: Dataset
                                                                      ) -> None:
    """``add_items``: a product that arrives after training gets the maker's shift of its
    prior from the relation file as it stands then; moving its brand to another maker moves
    it more than the other added products."""
    rated = set(makers.train["item_id"].astype(str))
    ids = makers.items.index.astype(str)
    before = dataclasses.replace(makers, items=makers.items.loc[ids.isin(rated)], tasks={})
    model = _fit(before)
    n_old = len(model.item_ids)
    added = model.add_items(makers)
    assert added and model.fit_info["relation_prior"]["Item"]["MADE_BY:shared"]
    states = model.cache["item_states"][n_old:].copy()
    item = added[0]
    brand = makers.items.loc[item, "brand"]
    made_by = makers.relations["MADE_BY"].copy()
    mine = made_by["src"] == brand
    made_by.loc[mine, "dst"] = sorted(set(made_by["dst"]) - set(made_by.loc[mine, "dst"]))[0]
    again = _fit(before)
    again.add_items(dataclasses.replace(makers,
                                        relations={**makers.relations, "MADE_BY": made_by}))
    moved = np.abs(again.cache["item_states"][n_old:] - states).sum(axis=1)
    of_brand = [k for k, i in enumerate(added) if makers.items.loc[i, "brand"] == brand]
    assert moved[0] > 1e-3
    assert moved[of_brand].mean() > 5 * np.median(moved)


def test_ids_of_a_relation_file_that_reach_nobody_are_reported(tmp_path) -> None:
    from loaders.folder import read_dataset, write_dataset

    small = generate_catalog(n_users=300, n_items=120, n_interactions=4000, seed=3,
                             planted_makers=True)
    folder = write_dataset(small, tmp_path / "makers")
    assert read_dataset(folder).warnings == []
    with (folder / "makers.csv").open("a", encoding="utf-8") as fh:
        fh.write("Acmee,Atlas Group\n")  # a misspelt brand: no item carries it
    back = read_dataset(folder)
    assert len(back.warnings) == 1
    assert back.warnings[0].startswith("makers.csv: 1 of ")
    assert "'Acmee'" in back.warnings[0] and "'brand'" in back.warnings[0]
    assert "Acmee" in set(back.relations["MADE_BY"]["src"])  # kept: a warning, not an error
