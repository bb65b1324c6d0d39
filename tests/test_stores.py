"""One suite for both graph stores: ingest, upserts, neighborhoods, candidates, snapshots.

Every test here runs against the embedded store and against a real Neo4j server (the
``store`` fixture); the parity tests compare the two answers directly.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from graph_meta.dataset import Dataset
from graph_meta.graph.build import graph_records
from graph_meta.schema import CATEGORY, ITEM, USER, EdgeType
from graph_meta.store.embedded import EmbeddedGraphStore


def expected_counts(dataset: Dataset) -> tuple[dict[str, int], dict[EdgeType, int]]:
    records = graph_records(dataset)
    return ({nt: len(b) for nt, b in records.nodes.items()},
            {et: len(b) for et, b in records.edges.items()})


def test_counts_match_the_dataset(store, catalog: Dataset) -> None:
    nodes, edges = expected_counts(catalog)
    counts = store.counts()
    assert counts.nodes == nodes
    assert counts.edges == edges
    assert counts.nodes[USER] == len(catalog.users)
    assert counts.nodes[ITEM] == len(catalog.items)
    rated = counts.edges[EdgeType(USER, "RATED", ITEM)]
    assert rated == len(catalog.train.drop_duplicates(["user_id", "item_id"]))
    assert counts.edges[EdgeType(CATEGORY, "CO_ENGAGED", CATEGORY)] > 0


def test_reingest_changes_nothing(store, catalog: Dataset) -> None:
    before = store.counts()
    store.ingest(catalog)
    assert store.counts() == before


def test_new_item_is_reachable_at_once(store, catalog: Dataset) -> None:
    category = catalog.items["category"].iloc[0]
    brand = "Brand-never-seen"
    new = pd.DataFrame({"category": [category], "brand": [brand]},
                       index=pd.Index(["new-item-1"]))
    before = store.counts()
    store.add_items(new)
    after = store.counts()
    assert after.nodes[ITEM] == before.nodes[ITEM] + 1
    assert after.nodes["Brand"] == before.nodes["Brand"] + 1
    hood = store.neighborhood(ITEM, "new-item-1", hops=1, fanout=None)
    assert hood.nodes[CATEGORY] == {category}
    assert hood.nodes["Brand"] == {brand}
    members = store.neighbors(CATEGORY, [category], EdgeType(ITEM, "HAS_CATEGORY", CATEGORY),
                              "in")
    assert ("new-item-1" in {b for _, b, _ in members})
    user = catalog.train["user_id"].iloc[0]
    store.add_ratings([user], ["new-item-1"], [5.0])
    assert store.counts().edges[store.schema.rated] == before.edges[store.schema.rated] + 1
    store.add_ratings([user], ["new-item-1"], [4.0])
    assert store.counts().edges[store.schema.rated] == before.edges[store.schema.rated] + 1
    got = store.neighbors(USER, [user], store.schema.rated, "out")
    assert (user, "new-item-1", 4.0) in got


def test_upsert_rejects_unknown_ends_and_bad_ratings(store, catalog: Dataset) -> None:
    with pytest.raises(KeyError):
        store.add_ratings(["no-such-user"], [catalog.items.index[0]], [3.0])
    with pytest.raises(ValueError, match="within"):
        store.add_ratings([catalog.users.index[0]], [catalog.items.index[0]], [99.0])
    with pytest.raises(ValueError, match="unknown"):
        store.add_items(pd.DataFrame({"colour": ["red"]}, index=["x"]))


def test_neighbors_are_ordered_and_limited(store, catalog: Dataset) -> None:
    item = catalog.train["item_id"].value_counts().index[0]
    got = store.neighbors(ITEM, [item], store.schema.rated, "in", limit=5)
    assert len(got) == 5
    ratings = [w for _, _, w in got]
    assert ratings == sorted(ratings, reverse=True)
    rows = catalog.train[catalog.train["item_id"] == item]
    assert max(ratings) == rows["rating"].max()


def test_snapshot_shapes_and_features(store, catalog: Dataset) -> None:
    data = store.snapshot()
    nodes, edges = expected_counts(catalog)
    for nt, n in nodes.items():
        assert data[nt].num_nodes == n
    for et, n in edges.items():
        assert data[tuple(et)].edge_index.shape == (2, n)
        assert data[tuple(et.reverse())].edge_index.shape == (2, n)
    rated = data[USER, "RATED", ITEM]
    assert torch.equal(rated.edge_index.flip(0), data[ITEM, "rev_RATED", USER].edge_index)
    assert rated.rating.min() >= 1 and rated.rating.max() <= 5
    assert data[ITEM].x_cat.shape[0] == nodes[ITEM]
    assert data[ITEM].x_text.shape == (nodes[ITEM], 256)
    assert data.node_ids[ITEM] == sorted(data.node_ids[ITEM])


def _snapshot_equal(a, b) -> None:
    assert a.node_ids == b.node_ids
    assert set(a.node_types) == set(b.node_types)
    assert set(a.edge_types) == set(b.edge_types)
    for nt in a.node_types:
        for key, value in a[nt].items():
            assert torch.equal(value, b[nt][key]) if torch.is_tensor(value) else value == b[nt][
                key], (nt, key)
    for et in a.edge_types:
        for key, value in a[et].items():
            assert torch.equal(value, b[et][key]), (et, key)


@pytest.mark.neo4j
def test_parity_embedded_and_neo4j(catalog: Dataset, neo4j_store_factory) -> None:
    embedded = EmbeddedGraphStore.from_dataset(catalog)
    neo = neo4j_store_factory(catalog.spec)
    neo.ingest(catalog)
    assert neo.counts() == embedded.counts()
    users = list(catalog.train["user_id"].astype(str).unique()[:5])
    items = list(catalog.items.index[:5])
    for nt, ids in ((USER, users), (ITEM, items), (CATEGORY, sorted(
            catalog.items["category"].unique())[:3])):
        for node_id in ids:
            for fanout in (None, 3, [5, 2]):
                hops = 2 if not isinstance(fanout, list) else len(fanout)
                assert (neo.neighborhood(nt, node_id, hops=hops, fanout=fanout)
                        == embedded.neighborhood(nt, node_id, hops=hops, fanout=fanout)), (
                    nt, node_id, fanout)
    many = list(catalog.train["user_id"].astype(str).unique()[::25])
    for user in users + many:
        assert neo.candidates(user_id=user, k=30) == embedded.candidates(user_id=user, k=30)
    rated = [(items[0], 5.0), (items[1], 4.0), (items[2], 2.0)]
    asks = [dict(rated=rated), dict(rated=[(i, 4.0) for i in items]),  # ties: id order
            dict(rated=[(i, 1.0) for i in items[:3]]),  # nothing liked: all are seeds
            dict(rated=[(str(i), 4.0) for i in catalog.items.index[:15]]),  # ties at the cut
            dict(user_id=users[0], rated=[(items[3], 1.0)]), dict(rated=[])]
    for ask in asks:
        assert neo.candidates(k=30, **ask) == embedded.candidates(k=30, **ask), ask
    _snapshot_equal(neo.snapshot(), embedded.snapshot())


def test_candidates_paths_and_reasons(store, catalog: Dataset) -> None:
    user = catalog.train["user_id"].value_counts().index[0]
    rated_items = set(catalog.train.loc[catalog.train["user_id"] == user, "item_id"].astype(str))
    cands = store.candidates(user_id=user, k=40)
    assert 0 < len(cands) <= 40
    assert not rated_items & {c.item_id for c in cands}
    scores = [c.score for c in cands]
    assert scores == sorted(scores, reverse=True)
    for c in cands:
        assert c.reason in {"collaborative", "category", "cross_category", "cold_item"}
        assert c.path[0][0] == ITEM and c.path[0][1] in rated_items
        assert c.path[-1] == (ITEM, c.item_id)
        if c.reason == "collaborative":
            assert len(c.path) == 2
            liked_with = store.neighbors(ITEM, [c.path[0][1]], store.schema.co_liked, "out")
            assert c.item_id in {b for _, b, _ in liked_with}
        if c.reason == "cross_category":
            assert [label for label, _ in c.path] == [ITEM, CATEGORY, CATEGORY, ITEM]
    assert "collaborative" in {c.reason for c in cands}


def test_cold_item_gets_exposure(store, catalog: Dataset) -> None:
    category = catalog.items["category"].value_counts().index[0]
    store.add_items(pd.DataFrame({"category": [category]}, index=["brand-new-product"]))
    in_cat = catalog.items.index[catalog.items["category"] == category]
    liked = catalog.train[catalog.train["item_id"].isin(in_cat)]["item_id"].astype(str)
    rated = [(liked.iloc[0], 5.0)]
    cands = store.candidates(rated=rated, k=20)
    cold = [c for c in cands if c.item_id == "brand-new-product"]
    assert cold and cold[0].reason == "cold_item"
    assert cold[0].path[:2] == ((ITEM, liked.iloc[0]), (CATEGORY, category))


def test_candidates_follow_later_changes(store, catalog: Dataset) -> None:
    """Ask, change the graph (a new item, ratings that make a cold item warm and reorder a
    category's most rated items), ask again: the answer is that of a store built with the
    changes from the start (the embedded store's cached category pools must not go stale)."""
    category = catalog.items["category"].value_counts().index[0]
    in_cat = [str(i) for i in catalog.items.index[catalog.items["category"] == category]]
    rated_items = set(catalog.train["item_id"].astype(str))
    warm = [i for i in in_cat if i in rated_items]
    cold = [i for i in in_cat if i not in rated_items]
    ask = {"rated": [(warm[0], 5.0)], "k": 40}
    before = store.candidates(**ask)
    users = list(catalog.train["user_id"].astype(str).unique()[:30])
    fresh = EmbeddedGraphStore.from_dataset(catalog)
    for s in (store, fresh):
        s.add_items(pd.DataFrame({"category": [category]}, index=["late-arrival"]))
        s.add_ratings(users, [warm[-1]] * len(users), [4.0] * len(users))
        if cold:
            s.add_ratings(users[:3], [cold[0]] * 3, [5.0] * 3)
    after = store.candidates(**ask)
    assert after == fresh.candidates(**ask)
    assert after != before
    assert "late-arrival" in {c.item_id for c in after}


def test_candidates_for_new_user_and_errors(store, catalog: Dataset) -> None:
    popular = store.candidates(rated=[], k=5)
    assert [c.reason for c in popular] == ["popular"] * 5
    counts = catalog.train["item_id"].astype(str).value_counts()
    assert popular[0].item_id in set(counts.index[counts == counts.max()])
    with pytest.raises(KeyError):
        store.candidates(rated=[("no-such-item", 4.0)])
    with pytest.raises(ValueError):
        store.candidates(rated=[(catalog.items.index[0], 7.0)])
    with pytest.raises(KeyError):
        store.candidates(user_id="no-such-user")


def test_hostile_ids_are_data(store, catalog: Dataset) -> None:
    hostile = ["it'em", 'q"uote', "back`tick", "{brace}", "x}) DETACH DELETE n //",
               "'); MATCH (n) DETACH DELETE n; //", "$param", "\\n newline\n"]
    category = catalog.items["category"].iloc[0]
    before = store.counts()
    store.add_items(pd.DataFrame({"category": [category] * len(hostile)}, index=hostile))
    after = store.counts()
    assert after.nodes[ITEM] == before.nodes[ITEM] + len(hostile)
    assert after.nodes[USER] == before.nodes[USER]
    for item in hostile:
        assert store.has_node(ITEM, item)
        hood = store.neighborhood(ITEM, item, hops=1, fanout=None)
        assert hood.nodes[ITEM] == {item}
    ids = set(store.node_ids(ITEM))
    assert set(hostile) <= ids


def test_neo4j_pins_the_seeds_when_cypher_orders_them_differently(
        catalog: Dataset, neo4j_store_factory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-statement query derives the seeds in Cypher; when Python's order differs, the
    store reruns the traversal from Python's seeds, so the answer still equals the embedded
    store's (forced here by reversing the seed order on the Python side of both stores)."""
    import graph_meta.store.candidates as cand_mod
    import graph_meta.store.neo4j as neo_mod

    embedded = EmbeddedGraphStore.from_dataset(catalog)
    neo = neo4j_store_factory(catalog.spec)
    neo.ingest(catalog)
    original = cand_mod.select_seeds

    def reversed_seeds(*args, **kw):
        return original(*args, **kw)[::-1]

    monkeypatch.setattr(cand_mod, "select_seeds", reversed_seeds)
    monkeypatch.setattr(neo_mod, "select_seeds", reversed_seeds)
    calls = []
    read = neo._read
    monkeypatch.setattr(neo, "_read", lambda q, **p: calls.append(q) or read(q, **p))
    user = catalog.train["user_id"].astype(str).value_counts().index[0]
    assert neo.candidates(user_id=user, k=30) == embedded.candidates(user_id=user, k=30)
    assert len(calls) == 2  # the derived-seed statement, then the pinned one


def test_csr_sampling_respects_fanout_and_exclusion(catalog: Dataset) -> None:
    store = EmbeddedGraphStore.from_dataset(catalog)
    csr = store.csr(store.schema.rated, "in")
    rows = np.arange(csr.num_rows)
    rng = np.random.default_rng(0)
    excluded = np.zeros(len(csr.edge_ids), dtype=bool)
    excluded[::3] = True
    pos, nbr, eid = csr.sample(rows, 4, rng, excluded=excluded)
    assert not excluded[eid].any()
    per_row = np.bincount(pos, minlength=len(rows))
    assert per_row.max() <= 4
    degree = csr.degree(rows)
    assert (per_row[degree == 0] == 0).all()
    pairs = set(zip(pos.tolist(), nbr.tolist(), strict=True))
    assert len(pairs) == len(pos)
    found = csr.find(rows[pos], nbr)
    assert (found == eid).all()


def test_refreshed_derived_edges_equal_a_fresh_build(catalog: Dataset) -> None:
    """``refresh_derived_edges`` (what ``graph-meta ingest-ratings --store neo4j`` runs after
    upserting ratings) gives the ``CO_LIKED``/``CO_ENGAGED`` links a store built from all the
    ratings has."""
    import dataclasses

    cut = len(catalog.train) - 1500
    early = dataclasses.replace(catalog, train=catalog.train.iloc[:cut])
    late = catalog.train.iloc[cut:]
    store = EmbeddedGraphStore.from_dataset(early)
    full = EmbeddedGraphStore.from_dataset(catalog)
    schema = store.schema
    derived = [schema.co_liked, schema.co_engaged]

    def links(s: EmbeddedGraphStore, et: EdgeType) -> dict[tuple[str, str], float]:
        b = s.edge_batch(et)
        return dict(zip(zip(b.src.tolist(), b.dst.tolist(), strict=True),
                        b.properties["weight"].tolist(), strict=True))

    assert links(store, schema.co_liked) != links(full, schema.co_liked)
    store.add_ratings(late["user_id"].astype(str).tolist(), late["item_id"].astype(str).tolist(),
                      late["rating"].to_numpy(),
                      late["timestamp"].to_numpy() if "timestamp" in late else None)
    counts = store.refresh_derived_edges()
    for et in derived:
        got, want = links(store, et), links(full, et)
        assert got.keys() == want.keys(), et
        assert np.allclose([got[k] for k in want], list(want.values())), et
        assert counts[et] == len(want)


@pytest.mark.neo4j
def test_a_node_type_only_a_relation_file_introduces(neo4j_store_factory) -> None:
    from loaders.synthetic import generate_catalog

    made = generate_catalog(n_users=300, n_items=120, n_interactions=4000, seed=3,
                            planted_makers=True)
    embedded = EmbeddedGraphStore.from_dataset(made)
    neo = neo4j_store_factory(made.spec)
    neo.ingest(made)
    counts = embedded.counts()
    assert counts.nodes["Maker"] == made.relations["MADE_BY"]["dst"].nunique()
    assert counts.edges[EdgeType("Brand", "MADE_BY", "Maker")] == len(made.relations["MADE_BY"])
    assert neo.counts() == counts
    maker = made.relations["MADE_BY"]["dst"].iloc[0]
    brands = set(made.relations["MADE_BY"].query("dst == @maker")["src"])
    hood = embedded.neighborhood("Maker", maker, hops=2, fanout=None)
    assert hood.nodes["Brand"] == brands
    assert hood.nodes[ITEM] == set(made.items.index[made.items["brand"].isin(brands)])
    assert neo.neighborhood("Maker", maker, hops=2, fanout=None) == hood
    _snapshot_equal(neo.snapshot(), embedded.snapshot())
