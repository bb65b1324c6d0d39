"""Episodes: K-shot user/item tasks, mixed batches, and no query edge in an episode graph."""

from __future__ import annotations

import numpy as np
import pytest

from graph_meta.dataset import Dataset
from graph_meta.fitting.graphs import build_graph
from graph_meta.sampling.episodes import (
    EpisodeSampler,
    RatingIndex,
    episode_subgraph,
    pad_rows,
)


@pytest.fixture(scope="module")
def graph(catalog: Dataset):
    return build_graph(catalog)


@pytest.fixture(scope="module")
def index(graph) -> RatingIndex:
    return RatingIndex.from_graph(graph)


def _pairs(index: RatingIndex, edges: np.ndarray) -> set[tuple[int, int]]:
    return set(zip(index.user[edges].tolist(), index.item[edges].tolist(), strict=True))


def test_pad_rows_places_every_entry() -> None:
    pos = np.array([2, 0, 2, 2, 0])
    val = np.array([10, 11, 12, 13, 14])
    (out,), mask = pad_rows(pos, [val], 3, 4)
    assert mask.sum(1).tolist() == [2, 0, 3]
    assert out[0, :2].tolist() == [11, 14] and out[2, :3].tolist() == [10, 12, 13]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_query_edge_in_an_episode_graph(graph, index: RatingIndex, seed: int) -> None:
    rng = np.random.default_rng(seed)
    sampler = EpisodeSampler(index, max_support=20, history_fanout=-1, cold_item_fraction=0.2)
    batch = sampler.batch(rng, sampler.task_users[:64], n_item_tasks=16)
    ep = batch.users
    visible = ep.visible_edges()
    # the query edges are neither among the visible edge ids nor the visible (user, item) pairs
    assert not np.intersect1d(visible, ep.query_edges).size
    assert not _pairs(index, visible) & _pairs(index, ep.query_edges)
    # the episode graph, built from the visible edges: RATED and rev_RATED both hide the query
    sub = episode_subgraph(graph, visible)
    rated = sub["User", "RATED", "Item"].edge_index.numpy()
    rev = sub["Item", "rev_RATED", "User"].edge_index.numpy()
    query = _pairs(index, ep.query_edges)
    assert not set(zip(rated[0].tolist(), rated[1].tolist(), strict=True)) & query
    assert not set(zip(rev[1].tolist(), rev[0].tolist(), strict=True)) & query
    assert rated.shape[1] == len(np.unique(visible))
    # cold items: no history edge touches an item playing new
    assert not batch.cold_items[index.item[ep.hist_edges]].any()
    # item tasks: no edge of a task item is visible at all
    it = batch.items
    assert it is not None
    assert not np.isin(index.item[it.hist_edges], it.items).any()
    assert not np.intersect1d(it.visible_edges(), it.query_edges).size
    # and the support edges really are the task item's ratings, distinct from its query
    assert set(index.item[it.support_edges].tolist()) <= set(it.items.tolist())


def test_query_holdout_mask_is_honoured(index: RatingIndex) -> None:
    rng = np.random.default_rng(5)
    held = rng.random(index.num_edges) < 0.2
    sampler = EpisodeSampler(index, max_support=20, history_fanout=-1)
    ep = sampler.batch(rng, sampler.task_users[:64], 0, query_edges=held).users
    # queries come from the held-out ratings (the item states are refit without them) ...
    # (a user with no held-out rating in the pool falls back to its other ratings)
    assert held[ep.query_edges].mean() > 0.9
    # ... and no held-out rating is ever visible as support or history
    assert not held[ep.visible_edges()].any()


def test_kshot_shapes_and_kinds(index: RatingIndex) -> None:
    rng = np.random.default_rng(3)
    sampler = EpisodeSampler(index, max_support=15, query_size=10, history_fanout=32,
                             cold_item_fraction=0.3, kind_probs=(0.0, 0.0, 1.0, 0.0))
    batch = sampler.batch(rng, sampler.task_users[:50], n_item_tasks=0)
    ep = batch.users
    assert batch.items is None
    assert ep.support_items.shape == (50, 15) and ep.query_items.shape == (50, 10)
    assert ep.hist_items.shape == (50, 32)
    assert (ep.support_mask.sum(1) <= 15).all() and (ep.query_mask.sum(1) >= 1).all()
    # item_cold episodes (kind 2) draw support and query from the cold item set
    rows = np.flatnonzero(ep.kind == 2)
    assert len(rows) > 0
    q = ep.query_items[rows][ep.query_mask[rows] > 0]
    s = ep.support_items[rows][ep.support_mask[rows] > 0]
    assert batch.cold_items[q].all() and batch.cold_items[s].all()
    # user-cold kinds have no history
    ep2 = EpisodeSampler(index, kind_probs=(0, 1, 0, 0)).user_tasks(
        rng, sampler.task_users[:20], np.zeros(index.num_items, bool))
    assert ep2.hist_mask.sum() == 0 and (ep2.kind == 1).all()


def test_epoch_covers_every_task_user(index: RatingIndex) -> None:
    sampler = EpisodeSampler(index)
    chunks = sampler.epoch_users(np.random.default_rng(0), 64)
    assert sorted(np.concatenate(chunks).tolist()) == sorted(sampler.task_users.tolist())
