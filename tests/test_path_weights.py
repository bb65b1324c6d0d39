"""Path-type weights of the attribute-path neighbourhood: the profile blocks (one per
attribute type, and ``CO_ENGAGED`` paths across categories), their weights, and the choice
of the weights at fit time on the carved validation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from graph_meta.config import Config, ConfigError
from graph_meta.dataset import Dataset, training_view
from graph_meta.eval.protocol import carve_validation
from graph_meta.fitting import path_weights
from graph_meta.fitting.graphs import build_graph
from graph_meta.fitting.path_weights import (
    GRID,
    KNOWN_GRID,
    MIN_GAIN,
    MIN_TASKS,
    judged_tasks,
)
from graph_meta.graph.neighborhood import ItemNeighbors, path_blocks
from graph_meta.model import GraphMetaRecommender
from graph_meta.sampling.episodes import RatingIndex
from graph_meta.serving.explain import CO_RATING, LEARNED, path_contributions


def _attribute_sets(data) -> dict[str, sp.csr_matrix]:
    return {name: block for name, block in path_blocks(data).items() if name != "CO_ENGAGED"}


def _brute_force(blocks: dict[str, sp.csr_matrix], weights: dict[str, float]) -> np.ndarray:
    parts = [weights.get(n, 0.0 if n == "CO_ENGAGED" else 1.0) * b.toarray()
             for n, b in blocks.items()]
    f = np.hstack(parts)
    norm = np.linalg.norm(f, axis=1, keepdims=True)
    f = f / np.where(norm > 0, norm, 1.0)
    s = f @ f.T
    np.fill_diagonal(s, 0.0)
    return s


def test_co_engaged_paths_join_items_that_share_no_attribute(catalog: Dataset) -> None:
    data = build_graph(catalog)
    blocks = path_blocks(data)
    assert "CO_ENGAGED" in blocks and {"Category", "Brand"} <= set(blocks)
    shared = sum((b @ b.T).toarray() > 0 for b in _attribute_sets(data).values())
    co = (blocks["CO_ENGAGED"] @ blocks["Category"].T).toarray() > 0
    apart = np.argwhere(co & (shared == 0))
    assert len(apart), "some items are joined only across co-engaged categories"
    i, j = apart[0]
    n = int(data["Item"].num_nodes)

    def sim(lists: ItemNeighbors, a: int, b: int) -> float:
        row = slice(lists.indptr[a], lists.indptr[a + 1])
        hit = lists.indices[row] == b
        return float(lists.sim[row][hit].sum())

    plain = ItemNeighbors.from_graph(data, top_k=n)
    assert sim(plain, i, j) == 0.0  # by default CO_ENGAGED weighs 0
    with_co = ItemNeighbors.from_graph(data, top_k=n, type_weights={"CO_ENGAGED": 1.0})
    assert sim(with_co, i, j) > 0.0
    # the no-CO_ENGAGED ablation has no such block, whatever the weights say
    off = ItemNeighbors.from_graph(data, top_k=n, type_weights={"CO_ENGAGED": 1.0},
                                   use_co_engaged=False)
    assert "CO_ENGAGED" not in path_blocks(data, use_co_engaged=False)
    np.testing.assert_array_equal(off.indices, plain.indices)
    np.testing.assert_allclose(off.sim, plain.sim)


def _categories_graph(links: list[tuple[int, int, float]], n_cat: int = 4,
                      per_category: int = 3):
    """Items of one category each (item ``i`` in category ``i // per_category``) and the given
    ``CO_ENGAGED`` links; nothing else."""
    from torch_geometric.data import HeteroData

    data = HeteroData()
    n = n_cat * per_category
    data["Item"].num_nodes = n
    data["Category"].num_nodes = n_cat
    items = torch.arange(n)
    data["Item", "HAS_CATEGORY", "Category"].edge_index = torch.stack(
        [items, items // per_category])
    store = data["Category", "CO_ENGAGED", "Category"]
    store.edge_index = torch.tensor([[a for a, _, _ in links], [b for _, b, _ in links]])
    store.weight = torch.tensor([w for _, _, w in links], dtype=torch.float32)
    return data


def test_co_engaged_block_joins_the_linked_categories_items() -> None:
    """Two categories linked to each other and to nothing else: their items are joined by
    the link itself (the profiles A C alone made them orthogonal: they share no partner), in
    the proportion (I + C/2)^2 says; an unlinked category's items stay apart."""
    data = _categories_graph([(0, 1, 0.6), (2, 3, 0.2)])
    block = path_blocks(data)["CO_ENGAGED"].toarray()
    c = np.zeros((4, 4))
    c[0, 1] = c[1, 0] = 0.6
    c[2, 3] = c[3, 2] = 0.2
    reach = (np.eye(4) + c / 2) @ (np.eye(4) + c / 2)
    expected = reach / np.sqrt(np.outer(np.diag(reach), np.diag(reach)))
    cat = np.arange(12) // 3
    np.testing.assert_allclose(block @ block.T, expected[np.ix_(cat, cat)], atol=1e-12)
    gram = block @ block.T
    assert gram[0, 3] > gram[6, 9] > 0.0   # the stronger link joins more
    assert gram[0, 6] == 0.0               # no path between categories 0 and 2
    # a link listed in both directions (or twice) is one link, and a self-link adds nothing
    twice = _categories_graph([(0, 1, 0.6), (1, 0, 0.6), (2, 3, 0.2), (2, 2, 0.9)])
    np.testing.assert_allclose(path_blocks(twice)["CO_ENGAGED"].toarray(), block)


@pytest.mark.parametrize("weights", [{}, {"Department": 0.0}, {"Category": 0.25, "CO_ENGAGED": 0.5},
                                     {"Department": 2.0, "Brand": 0.5}])
def test_weighted_blocks_are_the_cosine_of_the_scaled_profiles(catalog: Dataset,
                                                                 weights: dict) -> None:
    data = build_graph(catalog)
    blocks = path_blocks(data)
    n = int(data["Item"].num_nodes)
    want = _brute_force(blocks, weights)
    got = ItemNeighbors.from_graph(data, top_k=n, type_weights=weights).weights(1.0).toarray()
    np.testing.assert_allclose(got, want, atol=1e-6)
    if weights.get("Department") == 0.0:  # a zero weight: sharing a department joins nothing
        b = blocks["Department"].toarray()
        rest = sum((blk @ blk.T).toarray() > 0 for name, blk in blocks.items()
                   if name not in ("Department", "CO_ENGAGED"))
        only_department = ((b @ b.T) > 0) & (rest == 0)
        np.fill_diagonal(only_department, False)
        assert only_department.any() and (got[only_department] == 0).all()


def test_the_config_names_the_path_weight_setting() -> None:
    with pytest.raises(ConfigError, match=r"model\.path_weights"):
        Config().replace(**{"model.path_weights": "learned"}).check()


@pytest.fixture(scope="module")
def searched(catalog: Dataset) -> GraphMetaRecommender:
    torch.manual_seed(0)
    cfg = Config().replace(**{"model.dim": 8, "model.hidden": 16, "model.layers": 1,
                              "train.epochs": 1, "train.val_max_tasks": 60,
                              "episodes.batch_users": 128, "episodes.batch_items": 16})
    assert judged_tasks(carve_validation(training_view(catalog), max_tasks=None)) < MIN_TASKS
    with pytest.MonkeyPatch.context() as patch:  # the tiny catalogue carves few tasks
        patch.setattr(path_weights, "MIN_TASKS", 10)
        return GraphMetaRecommender(cfg).fit(catalog)


def test_too_few_carved_tasks_leave_the_weights_equal(catalog: Dataset) -> None:
    torch.manual_seed(0)
    cfg = Config().replace(**{"model.dim": 8, "model.hidden": 16, "model.layers": 1,
                              "train.epochs": 1, "train.val_max_tasks": 60,
                              "episodes.batch_users": 128, "episodes.batch_items": 16})
    model = GraphMetaRecommender(cfg).fit(catalog)
    assert "path_weights" not in model.fit_info and model.path_weights == {}
    assert "known_item_path_scale" not in model.fit_info
    assert model.known_item_path_scale == 1.0


def test_fit_chooses_the_weights_on_the_carved_tasks(searched: GraphMetaRecommender,
                                                     catalog: Dataset) -> None:
    info = searched.fit_info
    chosen, tried = info["path_weights"], info["path_weight_search"]
    data = build_graph(catalog)
    assert set(chosen) == set(path_blocks(data))
    assert all(v in GRID for v in chosen.values())
    start = tried[0]
    assert start["weights"]["CO_ENGAGED"] == 0.0
    assert all(v == 1.0 for k, v in start["weights"].items() if k != "CO_ENGAGED")
    # every type was tried at every grid value (around the best of the types before it)
    assert len(tried) >= len(chosen) * (len(GRID) - 1)
    best = next(t["rmse"] for t in tried if t["weights"] == chosen)
    assert best <= min(t["rmse"] for t in tried) + MIN_GAIN
    assert best <= start["rmse"]
    # the model predicts with the lists those weights give on the full training graph
    want = ItemNeighbors.from_graph(data, top_k=searched.config.model.neighbor_k,
                                    type_weights=chosen)
    c = searched.cache
    np.testing.assert_array_equal(c["nbr_indptr"], want.indptr)
    np.testing.assert_array_equal(c["nbr_indices"], want.indices)
    np.testing.assert_allclose(c["nbr_sim"], want.sim, rtol=1e-6)


def test_the_chosen_weights_are_saved_with_the_model(searched: GraphMetaRecommender,
                                                     tmp_path) -> None:
    path = searched.save(tmp_path / "model.pt")
    again = GraphMetaRecommender.load(path)
    assert again.path_weights == searched.path_weights
    assert again.known_item_path_scale == searched.known_item_path_scale


def test_equal_weights_skip_the_search(catalog: Dataset) -> None:
    torch.manual_seed(0)
    cfg = Config().replace(**{"model.dim": 8, "model.hidden": 16, "model.layers": 1,
                              "train.epochs": 1, "train.val_max_tasks": 60,
                              "model.path_weights": "equal",
                              "episodes.batch_users": 128, "episodes.batch_items": 16})
    model = GraphMetaRecommender(cfg).fit(catalog)
    assert "path_weights" not in model.fit_info and model.path_weights == {}
    want = ItemNeighbors.from_graph(build_graph(catalog), top_k=cfg.model.neighbor_k)
    np.testing.assert_array_equal(model.cache["nbr_indices"], want.indices)


def test_the_paths_of_a_prediction_add_up_to_it(searched: GraphMetaRecommender,
                                                catalog: Dataset) -> None:
    data = build_graph(training_view(catalog))
    weights = searched.path_weights
    for scenario in ("item_cold", "warm", "user_item_cold"):
        task = catalog.tasks[scenario][0]
        for item, _ in task.query[:4]:
            parts = path_contributions(searched, data, task.user_id, task.support, item)
            want = searched.predict(task.user_id, task.support, [item])[0]
            assert parts["prediction"] == pytest.approx(want, abs=1e-9)
            assert sum(v for k, v in parts.items() if k != "prediction") == pytest.approx(
                want, abs=1e-9)
            assert set(parts) >= set(path_blocks(data)) | {"base", CO_RATING, LEARNED}
            for name, w in weights.items():
                if w == 0.0:  # a path type weighted 0 carries nothing
                    assert parts[name] == 0.0
            if scenario != "warm":  # a new item has no co-rating neighbours
                assert parts[CO_RATING] == pytest.approx(0.0, abs=1e-12)
                assert parts[LEARNED] == 0.0
    moved = [path_contributions(searched, data, t.user_id, t.support, i)
             for t in catalog.tasks["item_cold"][:20] for i, _ in t.query[:3]]
    assert any(abs(sum(v for k, v in p.items() if k not in ("base", "prediction"))) > 1e-6
               for p in moved), "the attribute paths move some new item's prediction"


def test_co_engaged_paths_move_new_items_predictions(searched: GraphMetaRecommender,
                                                     catalog: Dataset) -> None:
    model = searched
    data = build_graph(training_view(catalog))
    index = RatingIndex.from_graph(data)
    saved = dict(model.fit_info["path_weights"])
    tasks = [(t, i) for t in catalog.tasks["item_cold"][:15] for i, _ in t.query[:3]]
    try:
        model.fit_info["path_weights"] = {**saved, "CO_ENGAGED": 1.0}
        model.build_cache(data, index)
        parts = [path_contributions(model, data, t.user_id, t.support, i) for t, i in tasks]
        with_co = np.array([model.predict(t.user_id, t.support, [i])[0] for t, i in tasks])
        assert any(abs(p["CO_ENGAGED"]) > 1e-6 for p in parts)
        model.fit_info["path_weights"] = {**saved, "CO_ENGAGED": 0.0}
        model.build_cache(data, index)
        without = np.array([model.predict(t.user_id, t.support, [i])[0] for t, i in tasks])
        assert np.abs(with_co - without).max() > 1e-6
    finally:
        model.fit_info["path_weights"] = saved
        model.build_cache(data, index)


def test_the_known_item_scale_is_chosen_on_the_carved_known_item_tasks(
        searched: GraphMetaRecommender) -> None:
    info = searched.fit_info
    chosen, tried = info["known_item_path_scale"], info["known_item_scale_search"]
    assert tried[0]["scale"] == 1.0  # the scale a change must beat
    assert sorted(t["scale"] for t in tried) == sorted(KNOWN_GRID)
    assert set(tried[0]["scenarios"]) <= {"warm", "user_cold"} and tried[0]["scenarios"]
    # a larger scale is kept only for a gain of more than MIN_GAIN over the best before it
    best, best_rmse = 1.0, np.inf
    for t in tried:
        if t["rmse"] < best_rmse - MIN_GAIN:
            best, best_rmse = t["scale"], t["rmse"]
    assert chosen == best == searched.known_item_path_scale


def test_the_known_item_scale_weighs_only_known_items_attribute_paths(
        searched: GraphMetaRecommender, catalog: Dataset) -> None:
    model = searched
    c, m = model.state, model.config.model
    known = np.bincount(c.hist_items, minlength=len(c.item_states)) > 0
    attr = ItemNeighbors(c.nbr_indptr, c.nbr_indices, c.nbr_sim).weights(m.neighbor_power)
    rated = m.neighbor_rated_weight * ItemNeighbors(
        c.nbr_rated_indptr, c.nbr_rated_indices, c.nbr_rated_sim).weights(m.neighbor_power)
    data = build_graph(training_view(catalog))
    warm = [(t, i) for t in catalog.tasks["warm"][:10] for i, _ in t.query[:3]]
    cold = [(t, i) for t in catalog.tasks["item_cold"][:10] for i, _ in t.query[:3]]
    saved = model.fit_info.get("known_item_path_scale")
    preds = {}
    try:
        for scale in (1.0, 4.0):
            model.fit_info["known_item_path_scale"] = scale
            want = sp.diags(np.where(known, scale, 1.0)) @ attr + rated
            np.testing.assert_allclose(model.neighborhood.weights().toarray(), want.toarray(),
                                       rtol=1e-6, atol=1e-9)
            preds[scale] = {name: np.array([model.predict(t.user_id, t.support, [i])[0]
                                            for t, i in pairs])
                            for name, pairs in (("warm", warm), ("cold", cold))}
            for t, i in warm[:6] + cold[:6]:  # the explanation follows the scale
                parts = path_contributions(model, data, t.user_id, t.support, i)
                assert parts["prediction"] == pytest.approx(
                    model.predict(t.user_id, t.support, [i])[0], abs=1e-9)
    finally:
        if saved is None:
            model.fit_info.pop("known_item_path_scale", None)
        else:
            model.fit_info["known_item_path_scale"] = saved
    # a new item's correction runs on its attribute paths alone: untouched by the scale
    np.testing.assert_array_equal(preds[1.0]["cold"], preds[4.0]["cold"])
    assert np.abs(preds[1.0]["warm"] - preds[4.0]["warm"]).max() > 1e-6
