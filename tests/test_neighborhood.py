"""Attribute-path item neighbourhoods and the residual correction graph-meta adds with them."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from graph_meta.config import Config, ConfigError
from graph_meta.dataset import Dataset
from graph_meta.fitting.graphs import build_graph
from graph_meta.graph.neighborhood import ItemNeighbors, residual_correction
from graph_meta.model import GraphMetaRecommender


def _brute_force(profiles: np.ndarray, k: int) -> list[dict[int, float]]:
    norms = np.linalg.norm(profiles, axis=1, keepdims=True)
    unit = profiles / np.where(norms == 0, 1.0, norms)
    sim = unit @ unit.T
    np.fill_diagonal(sim, 0.0)
    out = []
    for row in sim:
        top = np.argsort(-row, kind="stable")[:k]
        out.append({int(j): float(row[j]) for j in top if row[j] > 1e-12})
    return out


def _as_dicts(nb: ItemNeighbors) -> list[dict[int, float]]:
    return [dict(zip(nb.indices[a:b].tolist(), nb.sim[a:b].tolist(), strict=True))
            for a, b in zip(nb.indptr[:-1], nb.indptr[1:], strict=True)]


@pytest.mark.parametrize("k", [1, 3, 50])
def test_top_k_cosine_matches_brute_force(k: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    profiles = (rng.random((40, 12)) < 0.2) * rng.random((40, 12))
    profiles[5] = 0.0  # an item without attributes has no neighbours
    # tiny chunks: the chunked computation must equal the one-shot one
    monkeypatch.setattr("graph_meta.graph.neighborhood._CHUNK_ENTRIES", 7 * 40)
    nb = ItemNeighbors.from_profiles(sp.csr_matrix(profiles), top_k=k)
    want = _brute_force(profiles, k)
    got = _as_dicts(nb)
    assert got[5] == {}
    every = _brute_force(profiles, 40)
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        # ties at the k-th place may pick different items with the same similarity
        np.testing.assert_allclose(sorted(g.values()), sorted(w.values()), rtol=1e-6)
        for j, s in g.items():
            assert s == pytest.approx(every[i][j], rel=1e-6)
    assert all(np.all(np.diff(nb.indices[a:b]) > 0) for a, b in zip(nb.indptr[:-1],
                                                                     nb.indptr[1:], strict=True))


def test_ties_at_the_cut_keep_the_most_rated_items() -> None:
    profiles = np.zeros((30, 3))
    profiles[:25, 0] = 1.0  # 25 items share their only attribute: all similarities are 1
    profiles[25:, 1] = 1.0
    counts = np.random.default_rng(3).permutation(30).astype(float)
    nb = ItemNeighbors.from_profiles(sp.csr_matrix(profiles), top_k=5, tie_break=counts)
    for i, row in enumerate(_as_dicts(nb)[:25]):
        others = [j for j in range(25) if j != i]
        want = sorted(others, key=lambda j: -counts[j])[:5]
        assert set(row) == set(want)
        assert all(v == pytest.approx(1.0) for v in row.values())


def _catalogue_profiles(n: int, seed: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """Department (3) > category (12) > brand (40) one-hot blocks of ``n`` items, row-
    normalised, and rating counts with ties."""
    rng = np.random.default_rng(seed)
    category = rng.integers(0, 12, n)
    department = category % 3
    brand = 4 * category + rng.integers(0, 4, n) - (rng.random(n) < 0.2)  # some cross over
    brand = np.clip(brand, 0, 47)
    rows = np.repeat(np.arange(n), 3)
    cols = np.c_[department, 3 + category, 15 + brand].ravel()
    profiles = sp.csr_matrix((np.ones(3 * n), (rows, cols)), shape=(n, 63))
    return profiles, rng.integers(0, 6, n).astype(float)


@pytest.mark.parametrize("k", [3, 10])
def test_pruned_candidates_give_the_exact_lists_of_a_catalogue(k: int,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    # departments hold more than 16k items: pruned; the exact top k of an item holds, from
    # them, only ties that the rating counts break
    profiles, counts = _catalogue_profiles(60 * k, seed=k)
    monkeypatch.setattr("graph_meta.graph.neighborhood._PAIRS_PER_CHUNK", 500)
    exact = ItemNeighbors.from_profiles(profiles, top_k=k, tie_break=counts)
    pruned = ItemNeighbors.from_profiles(profiles, top_k=k, tie_break=counts, prune_above=0)
    assert np.diff(profiles.tocsc().indptr).max() > 16 * k
    np.testing.assert_array_equal(pruned.indptr, exact.indptr)
    np.testing.assert_array_equal(pruned.indices, exact.indices)
    np.testing.assert_allclose(pruned.sim, exact.sim, rtol=1e-6)
    # the blocks' entry point prunes above PATH_PRUNE_ABOVE items only
    blocks = {"Profile": profiles}
    monkeypatch.setattr("graph_meta.graph.neighborhood.PATH_PRUNE_ABOVE", 10 ** 6)
    assert _as_dicts(ItemNeighbors.from_blocks(blocks, None, top_k=k, tie_break=counts,
                                               prune_above=60 * k - 1)) == _as_dicts(exact)


def test_pruned_lists_score_their_candidates_exactly() -> None:
    # random profiles, where pruning does drop some true neighbours: every kept similarity
    # is still the exact cosine, and the lists lose little against the exact ones
    rng = np.random.default_rng(5)
    dense = (rng.random((400, 30)) < np.linspace(0.02, 0.6, 30)) * rng.random((400, 30))
    k = 8
    assert ((dense > 0).sum(axis=0) > 16 * k).sum() >= 10  # a third of the columns pruned
    pruned = _as_dicts(ItemNeighbors.from_profiles(sp.csr_matrix(dense), top_k=k,
                                                   prune_above=0))
    every = _brute_force(dense, 400)
    want = _brute_force(dense, k)
    for i, row in enumerate(pruned):
        assert len(row) == len(want[i])
        for j, s in row.items():
            assert s == pytest.approx(every[i][j], rel=1e-6)
    kept = np.mean([sum(sorted(r.values())) / sum(sorted(w.values()))
                    for r, w in zip(pruned, want, strict=True) if w])
    assert 0.95 < kept <= 1.0 + 1e-9


def test_neighbours_come_from_shared_attribute_nodes_not_ratings(catalog: Dataset) -> None:
    graph = build_graph(catalog)
    nb = ItemNeighbors.from_graph(graph, top_k=1000)
    items = graph.node_ids["Item"]
    # every attribute node type of the items counts; a pair sharing none is not linked
    attr = {}
    for src, rel, dst in graph.edge_types:
        if src == "Item" and dst not in ("User", "Item") and not rel.startswith("rev_"):
            ei = graph[src, rel, dst].edge_index.numpy()
            for i, a in zip(ei[0], ei[1], strict=True):
                attr.setdefault(int(i), set()).add((dst, int(a)))
    got = _as_dicts(nb)
    for i in range(0, len(items), 7):
        mine = attr.get(i, set())
        shared = {j for j in range(len(items)) if j != i and mine & attr.get(j, set())}
        assert set(got[i]) == shared
    # the same lists with every rating changed: no rating edge is on an attribute path
    shuffled = dataclasses.replace(catalog, train=catalog.train.assign(
        rating=np.random.default_rng(1).permutation(catalog.train["rating"].to_numpy())))
    again = ItemNeighbors.from_graph(build_graph(shuffled), top_k=1000)
    np.testing.assert_array_equal(again.indices, nb.indices)
    np.testing.assert_allclose(again.sim, nb.sim)


def test_co_rating_neighbours_are_the_cosine_of_rater_sets(catalog: Dataset) -> None:
    graph = build_graph(catalog)
    ei = graph["User", "RATED", "Item"].edge_index.numpy()
    raters = np.zeros((graph["Item"].num_nodes, graph["User"].num_nodes))
    raters[ei[1], ei[0]] = 1.0
    got = _as_dicts(ItemNeighbors.from_ratings(graph, top_k=1000))
    want = _brute_force(raters, 1000)
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        np.testing.assert_allclose([g[j] for j in w], list(w.values()))


def test_residual_correction_formula() -> None:
    weights = sp.csr_matrix(np.array([[0.0, 0.5, 0.2, 0.0],
                                      [0.3, 0.0, 0.0, 0.0]]))
    residual = np.array([0.0, 1.0, -0.5, 2.0])
    known = np.array([0.0, 1.0, 1.0, 1.0])
    got = residual_correction(weights, residual, known, shrink=1.0)
    np.testing.assert_allclose(got, [(0.5 - 0.1) / (0.7 + 1.0), 0.0])


def _ridge_without_self(e: np.ndarray, l2: float) -> np.ndarray:
    """``B[h, j]``: column ``j`` of E regressed on the other columns, one ridge per item."""
    n = e.shape[1]
    b = np.zeros((n, n))
    for j in range(n):
        others = [h for h in range(n) if h != j]
        x = e[:, others]
        b[others, j] = np.linalg.solve(x.T @ x + l2 * np.eye(n - 1), x.T @ e[:, j])
    return b


@pytest.mark.parametrize("k", [2, 100])
def test_residual_regression_is_the_ridge_of_each_item_on_the_others(
        k: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("graph_meta.graph.neighborhood._CHUNK_ENTRIES", 3 * 8)  # 3 rows a time
    rng = np.random.default_rng(1)
    e = rng.normal(size=(60, 9)) * (rng.random((60, 9)) < 0.5)
    e[:, 4] = 0.0  # nobody rated item 4: it neither predicts nor is predicted
    e[:, 7] = 0.8 * e[:, 2] + 0.1 * rng.normal(size=60) * (e[:, 2] != 0)
    e = sp.csr_matrix(e)
    want = _ridge_without_self(e.toarray(), 3.0)
    got = ItemNeighbors.from_residuals(e, l2=3.0, top_k=k)
    rows = _as_dicts(got)
    assert rows[4] == {} and all(4 not in r for r in rows)
    for j, row in enumerate(rows):
        if j == 4:
            continue
        assert len(row) == min(k, 7)
        # row j holds the k largest |B[h, j]|
        top = np.argsort(-np.abs(np.delete(want[:, j], [j, 4])))[:k]
        assert sorted(row) == sorted(np.delete(np.arange(9), [j, 4])[top].tolist())
        np.testing.assert_allclose([row[h] for h in sorted(row)],
                                   want[sorted(row), j], rtol=1e-5, atol=1e-6)
    assert _as_dicts(got)[2][7] > 0.5  # the planted dependence is found


def _residuals_with_a_planted_pair() -> sp.csr_matrix:
    rng = np.random.default_rng(1)
    e = rng.normal(size=(60, 9)) * (rng.random((60, 9)) < 0.5)
    e[:, 4] = 0.0  # nobody rated item 4
    e[:, 7] = 0.8 * e[:, 2] + 0.1 * rng.normal(size=60) * (e[:, 2] != 0)
    return sp.csr_matrix(e)


def test_the_local_regression_over_every_other_item_is_the_exact_one() -> None:
    """Past the dense limit each item is its own ridge over candidate items: over every
    other rated item that is EASE's column, so the weights equal the exact solve's."""
    e = _residuals_with_a_planted_pair()
    n = e.shape[1]
    full = sp.csr_matrix(np.ones((n, n)) - np.eye(n))
    every = ItemNeighbors(full.indptr.astype(np.int64), full.indices, full.data)
    exact = ItemNeighbors.from_residuals(e, l2=3.0, top_k=4)
    local = ItemNeighbors.from_residuals_local(e, l2=3.0, top_k=4, candidates=every)
    np.testing.assert_array_equal(local.indptr, exact.indptr)
    np.testing.assert_array_equal(local.indices, exact.indices)
    np.testing.assert_allclose(local.sim, exact.sim, rtol=1e-5, atol=1e-6)


def test_the_local_regression_is_the_ridge_over_each_items_candidates() -> None:
    e = _residuals_with_a_planted_pair()
    dense = e.toarray()
    cand = {0: [2, 7], 2: [7, 4, 2], 7: [0, 2, 3, 5]}  # 4 unrated, 2 itself: both left out
    rows = [cand.get(j, []) for j in range(9)]
    lists = ItemNeighbors(np.r_[0, np.cumsum([len(r) for r in rows])].astype(np.int64),
                          np.array([h for r in rows for h in r], np.int32),
                          np.ones(sum(len(r) for r in rows), np.float32))
    got = _as_dicts(ItemNeighbors.from_residuals_local(e, l2=3.0, top_k=10, candidates=lists))
    for j, regressors in ((0, [2, 7]), (2, [7]), (7, [0, 2, 3, 5])):
        x = dense[:, regressors]
        b = np.linalg.solve(x.T @ x + 3.0 * np.eye(len(regressors)), x.T @ dense[:, j])
        assert sorted(got[j]) == regressors
        np.testing.assert_allclose([got[j][h] for h in regressors], b, rtol=1e-5, atol=1e-6)
    assert all(got[j] == {} for j in range(9) if j not in cand)
    assert got[7][2] > 0.5  # the planted dependence


def test_past_the_dense_limit_the_regression_solves_item_by_item(
        monkeypatch: pytest.MonkeyPatch) -> None:
    e = _residuals_with_a_planted_pair()
    monkeypatch.setattr("graph_meta.graph.neighborhood.MAX_REGRESSION_ITEMS", 3)
    got = _as_dicts(ItemNeighbors.from_residuals(e, l2=3.0, top_k=2))
    assert got[4] == {} and all(len(got[j]) == 2 for j in range(9) if j != 4)
    assert 7 in got[2] and got[2][7] > 0.5  # found among its co-rating candidates
    with pytest.raises(ValueError, match="l2 must be > 0"):
        ItemNeighbors.from_residuals(sp.csr_matrix(np.eye(2)), l2=0.0, top_k=2)
    with pytest.raises(ConfigError, match=r"model\.regression_solver"):
        Config().replace(**{"model.regression_solver": "dense"})


@pytest.mark.parametrize("weights", [None, {"Category": 0.5, "CO_ENGAGED": 1.0}])
def test_store_snapshots_give_the_same_neighbours(store, catalog: Dataset,
                                                  weights: dict | None) -> None:
    want = ItemNeighbors.from_graph(build_graph(catalog), top_k=20, type_weights=weights)
    got = ItemNeighbors.from_graph(store.snapshot(), top_k=20, type_weights=weights)
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_allclose(got.sim, want.sim, rtol=1e-5)


@pytest.fixture(scope="module")
def small_model(catalog: Dataset) -> GraphMetaRecommender:
    torch.manual_seed(0)
    cfg = Config().replace(**{"model.dim": 8, "model.hidden": 16, "model.layers": 1,
                              "train.epochs": 1, "train.validate": False,
                              "episodes.batch_users": 128, "episodes.batch_items": 16})
    return GraphMetaRecommender(cfg).fit(catalog)


def test_predict_adds_the_correction_of_the_user_residuals(small_model: GraphMetaRecommender,
                                                           catalog: Dataset) -> None:
    model = small_model
    c = model.cache
    m = model.config.model
    assert m.neighbor_rated_weight > 0 and len(c["nbr_rated_sim"]) > 0
    weights = (ItemNeighbors(c["nbr_indptr"], c["nbr_indices"], c["nbr_sim"]).weights(
        m.neighbor_power).toarray() + m.neighbor_rated_weight * ItemNeighbors(
        c["nbr_rated_indptr"], c["nbr_rated_indices"], c["nbr_rated_sim"]).weights(
        m.neighbor_power).toarray())
    learned = ItemNeighbors(c["reg_indptr"], c["reg_indices"], c["reg_weight"]).weights(
        1.0).toarray()
    assert m.regression_l2 > 0 and np.abs(learned).sum() > 0
    mu, items = float(c["mu"]), c["item_states"]
    checked = 0
    for scenario in ("warm", "item_cold", "user_cold"):
        for task in catalog.tasks[scenario][:5]:
            q = [i for i, _ in task.query]
            theta, head = model.adapt_user(task.user_id, task.support)

            def fitted(pos: int, theta=theta, head=head) -> float:
                x = items[pos]
                return mu + head[0] + (1 + head[1]) * (theta[0] + x[0] + x[1:] @ theta[1:])

            rated: list[tuple[int, float]] = []  # an item rated twice counts twice
            u = model.user_pos.get(task.user_id)
            if u is not None:
                lo, hi = c["hist_indptr"][u], c["hist_indptr"][u + 1]
                rated += zip(c["hist_items"][lo:hi].tolist(), c["hist_y"][lo:hi].tolist(),
                             strict=True)
            rated += [(model.item_pos[i], r) for i, r in task.support]
            want = []
            for item in q:
                j = model.item_pos[item]
                num = sum(weights[j, h] * (r - fitted(h)) for h, r in rated)
                den = sum(weights[j, h] for h, _ in rated)
                reg = sum(learned[j, h] * (r - fitted(h)) for h, r in rated)
                want.append(fitted(j) + num / (den + model.config.model.neighbor_shrink) + reg)
            np.testing.assert_allclose(model.predict(task.user_id, task.support, q), want,
                                       rtol=1e-6, atol=1e-6)  # float32 similarities
            checked += 1
    assert checked == 15
    assert np.abs(weights).sum() > 0


def test_every_scoring_path_agrees(small_model: GraphMetaRecommender, catalog: Dataset) -> None:
    model = small_model
    bare = GraphMetaRecommender(model.config)  # the same model without the correction
    bare.cache = {k: v for k, v in model.cache.items() if not k.startswith(("nbr_", "reg_"))}
    bare.item_pos, bare.user_pos = model.item_pos, model.user_pos
    task = catalog.tasks["warm"][0]
    # score_all_items (column slices of the weights) equals predict (row slices)
    np.testing.assert_allclose(model.score_all_items(task.user_id, task.support),
                               model.predict(task.user_id, task.support, model.item_ids))
    # the support's order does not matter, an item rated twice included
    doubled = [*task.support, task.support[0]]
    q = [i for i, _ in task.query]
    np.testing.assert_allclose(model.predict(task.user_id, doubled, q),
                               model.predict(task.user_id, doubled[::-1], q))
    # score_all_users equals predict(u, [], [item]) with the correction on, and it is on
    item = catalog.train["item_id"].astype(str).value_counts().index[0]  # a warm item
    scores = model.score_all_users(item)
    users = model.user_ids[::9]
    np.testing.assert_allclose(scores[[model.user_pos[u] for u in users]],
                               [model.predict(u, [], [item])[0] for u in users], atol=1e-10)
    assert np.abs(scores - bare.score_all_users(item)).max() > 1e-3
    # neighbor_k = 0 turns the correction off on a fitted model too
    off = GraphMetaRecommender(model.config.replace(**{"model.neighbor_k": 0}))
    off.cache, off.item_pos, off.user_pos = model.cache, model.item_pos, model.user_pos
    np.testing.assert_allclose(off.predict(task.user_id, task.support, q),
                               bare.predict(task.user_id, task.support, q))
    # regression_l2 = 0 turns the learned weights off and keeps the similarity correction
    no_reg = GraphMetaRecommender(model.config.replace(**{"model.regression_l2": 0.0}))
    no_reg.cache, no_reg.item_pos, no_reg.user_pos = model.cache, model.item_pos, model.user_pos
    sim_only = {k: v for k, v in model.cache.items() if not k.startswith("reg_")}
    want = GraphMetaRecommender(model.config)
    want.cache, want.item_pos, want.user_pos = sim_only, model.item_pos, model.user_pos
    got = no_reg.predict(task.user_id, task.support, q)
    np.testing.assert_allclose(got, want.predict(task.user_id, task.support, q))
    assert np.abs(got - model.predict(task.user_id, task.support, q)).max() > 1e-4
    assert np.abs(got - bare.predict(task.user_id, task.support, q)).max() > 1e-4
    # the learned weights alone (no attribute lists, no co-rating similarity): still applied,
    # and every scoring path agrees
    alone = GraphMetaRecommender(model.config.replace(**{"model.neighbor_rated_weight": 0.0}))
    alone.cache = dict(model.cache, nbr_indptr=np.zeros_like(model.cache["nbr_indptr"]),
                       nbr_indices=np.zeros(0, np.int32), nbr_sim=np.zeros(0, np.float32))
    alone.item_pos, alone.user_pos = model.item_pos, model.user_pos
    assert alone.neighborhood.weights() is None and alone.neighborhood.regression() is not None
    got = alone.predict(task.user_id, task.support, q)
    assert np.abs(got - bare.predict(task.user_id, task.support, q)).max() > 1e-4
    np.testing.assert_allclose(alone.score_all_items(task.user_id, task.support),
                               alone.predict(task.user_id, task.support, model.item_ids))
    np.testing.assert_allclose(alone.score_all_users(item)[[model.user_pos[u] for u in users]],
                               [alone.predict(u, [], [item])[0] for u in users], atol=1e-10)


def test_correction_is_off_without_the_graph(catalog: Dataset) -> None:
    cfg = Config().replace(**{"model.dim": 8, "model.hidden": 16, "model.layers": 1,
                              "model.use_graph": False, "train.epochs": 1,
                              "train.validate": False, "episodes.batch_users": 128,
                              "episodes.batch_items": 16})
    model = GraphMetaRecommender(cfg).fit(catalog)
    assert len(model.cache["nbr_sim"]) == 0 and model.neighborhood.weights() is None
    assert len(model.cache["reg_weight"]) == 0 and model.neighborhood.regression() is None


@pytest.mark.parametrize("how", ["past the limit", "model.regression_solver = local"])
def test_a_catalogue_past_the_dense_limit_keeps_the_co_rating_regression(
        catalog: Dataset, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    """Past model.regression_exact_max rated items (or when the config asks for it) the learned
    co-rating weights come from one ridge per item over its co-rating neighbours (no warning,
    no correction dropped), and they are those of the local solve over the model's co-rating
    lists."""
    over = {"model.dim": 8, "model.hidden": 16, "model.layers": 1, "train.epochs": 1,
            "train.validate": False, "episodes.batch_users": 128, "episodes.batch_items": 16}
    if how == "past the limit":
        over["model.regression_exact_max"] = 5  # the limit is a setting
    else:
        over["model.regression_solver"] = "local"
    cfg = Config().replace(**over)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="residual regression")
        model = GraphMetaRecommender(cfg).fit(catalog)
    c = model.cache
    assert len(c["reg_weight"]) > 0 and model.neighborhood.regression() is not None
    co_rated = {j: set(r) for j, r in enumerate(_as_dicts(ItemNeighbors(
        c["nbr_rated_indptr"], c["nbr_rated_indices"], c["nbr_rated_sim"])))}
    for j, row in enumerate(_as_dicts(ItemNeighbors(c["reg_indptr"], c["reg_indices"],
                                                     c["reg_weight"]))):
        assert set(row) <= co_rated[j]
    task = catalog.tasks["warm"][0]
    assert np.isfinite(model.predict(task.user_id, task.support,
                                     [i for i, _ in task.query])).all()


def test_item_relation_links_join_the_path_lists_and_carry_a_users_residual() -> None:
    """A new model and its predecessor (``successors.csv``) are linked before either has a
    rating in common: the link joins their attribute-path lists with
    ``model.neighbor_relation_weight`` (not with ``model.use_relations = false``), so a user's
    residual on the predecessor moves their prediction of the successor."""
    from graph_meta.config import load_config
    from graph_meta.graph.neighborhood import relation_links
    from graph_meta.serving.neighborhood import graph_neighbors
    from loaders.synthetic import generate_catalog

    data = generate_catalog(n_users=300, n_items=120, n_interactions=3000, seed=5,
                            planted_graph=True)
    graph = build_graph(data)
    pos = {str(i): k for k, i in enumerate(graph.node_ids["Item"])}
    pairs = [(pos[str(s)], pos[str(p)]) for s, p in zip(
        data.relations["SUCCEEDS"]["src"], data.relations["SUCCEEDS"]["dst"], strict=True)]
    links = relation_links(graph).toarray()
    np.testing.assert_array_equal(links, links.T)
    assert {tuple(map(int, x)) for x in zip(*np.nonzero(np.triu(links)), strict=True)} == {
        (min(a, b), max(a, b)) for a, b in pairs}
    with_links = graph_neighbors(graph, load_config(None))[0].weights(1.0).toarray()
    without = graph_neighbors(graph, load_config(None, **{"model.use_relations": False})
                              )[0].weights(1.0).toarray()
    w = load_config(None).model.neighbor_relation_weight
    assert w > 0
    np.testing.assert_allclose(with_links - without, w * links, atol=1e-6)
    s, p = pairs[0]
    residual, known = np.zeros(len(links)), np.zeros(len(links))
    residual[p], known[p] = 1.5, 1.0  # the user rated only the predecessor, 1.5 above
    moved = residual_correction(sp.csr_matrix(with_links[[s]]), residual, known, 1.0)[0]
    plain = residual_correction(sp.csr_matrix(without[[s]]), residual, known, 1.0)[0]
    assert moved > plain + 0.1 and 0 < moved < 1.5


@pytest.fixture(scope="module")
def planted_model() -> tuple[GraphMetaRecommender, Dataset]:
    """A small model of a catalogue with planted successors and friend circles."""
    from loaders.synthetic import generate_catalog

    data = generate_catalog(n_users=400, n_items=150, n_interactions=8000, seed=7,
                            planted_graph=True)
    torch.manual_seed(0)
    cfg = Config().replace(**{"model.dim": 8, "model.hidden": 16, "model.layers": 1,
                              "train.epochs": 1, "train.validate": False,
                              "episodes.batch_users": 128, "episodes.batch_items": 16})
    return GraphMetaRecommender(cfg).fit(data), data


def test_explanations_name_the_relation_links_and_still_add_up(planted_model, tmp_path
                                                              ) -> None:
    from graph_meta.dataset import training_view
    from graph_meta.serving.explain import RELATION_LINKS, path_contributions

    model, data = planted_model
    graph = build_graph(training_view(data))
    pred = dict(zip(data.relations["SUCCEEDS"]["src"].astype(str),
                    data.relations["SUCCEEDS"]["dst"].astype(str), strict=True))
    cases = [(t, str(i)) for s in ("item_cold", "warm") for t in data.tasks[s]
             for i, _ in t.query if pred.get(str(i)) in {str(h) for h, _ in t.support}]
    assert cases, "some task's support holds a query item's predecessor"
    linked = []
    for task, item in cases[:12]:
        parts = path_contributions(model, graph, task.user_id, task.support, item)
        want = model.predict(task.user_id, task.support, [item])[0]
        assert sum(v for k, v in parts.items() if k != "prediction") == pytest.approx(
            want, abs=1e-9)
        linked.append(parts[RELATION_LINKS])
    assert any(abs(v) > 1e-6 for v in linked), linked
    # the item relation prior's information is kept with the model, saved and loaded
    info = model.state.prior_information
    assert info is not None and info.shape == (model.config.model.dim + 1,) and info[0] == 1.0
    loaded = GraphMetaRecommender.load(model.save(tmp_path / "model.pt"))
    np.testing.assert_array_equal(loaded.state.prior_information, info)
