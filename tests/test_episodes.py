"""Episodes: K-shot user/item tasks, mixed batches, and what a meta-batch hides (query
ratings; the rating edges and learned states of the items playing new)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from graph_meta.config import Config
from graph_meta.dataset import Dataset
from graph_meta.eval.protocol import training_view
from graph_meta.fitting.graphs import build_graph
from graph_meta.fitting.train import _Phase, episode_tensors
from graph_meta.model import GraphMetaRecommender
from graph_meta.sampling.episodes import EpisodeSampler, RatingIndex, pad_rows


@pytest.fixture(scope="module")
def graph(catalog: Dataset):
    return build_graph(catalog)


@pytest.fixture(scope="module")
def index(graph) -> RatingIndex:
    return RatingIndex.from_graph(graph)


def test_pad_rows_places_every_entry() -> None:
    pos = np.array([2, 0, 2, 2, 0])
    val = np.array([10, 11, 12, 13, 14])
    (out,), mask = pad_rows(pos, [val], 3, 4)
    assert mask.sum(1).tolist() == [2, 0, 3]
    assert out[0, :2].tolist() == [11, 14] and out[2, :3].tolist() == [10, 12, 13]


def _phase(catalog: Dataset, **over) -> _Phase:
    """A training phase on the catalog, as ``fit`` builds it (ALS states, closed-form priors,
    the network), with the GNN's correction switched on (gate 0.5) and dropout off, so that
    whatever the graph carries reaches the losses deterministically."""
    cfg = Config().replace(**{
        "model.dim": 8, "model.hidden": 16, "model.layers": 2, "model.dropout": 0.0,
        "episodes.max_support": 20, "episodes.history_fanout": 32, "episodes.batch_items": 16,
        "episodes.cold_item_fraction": 0.2, "train.validate": False, **over})
    model = GraphMetaRecommender(cfg)
    phase = _Phase(model, training_view(catalog), cfg, torch.device("cpu"))
    assert model.net is not None and model.net.prior_gate is not None
    model.net.eval()
    with torch.no_grad():
        model.net.prior_gate.fill_(0.5)
    return phase


def _meta_batch(phase: _Phase, seed: int, query_edges: np.ndarray | None = None):
    """A meta-batch drawn as an epoch draws it, and the tensors training reads from it."""
    rng = np.random.default_rng(seed)
    users = phase.sampler.epoch_users(rng, 64)[0]
    batch = phase.sampler.batch(rng, users, 16, query_edges=query_edges)
    u_ep, i_ep = episode_tensors(batch, torch.device("cpu"))
    return batch, {k: v.numpy() for k, v in u_ep.items()}, (
        None if i_ep is None else {k: v.numpy() for k, v in i_ep.items()})


def _rows(ids: np.ndarray, mask: np.ndarray) -> list[set[int]]:
    return [set(ids[b][mask[b] > 0].tolist()) for b in range(len(ids))]


@pytest.fixture(scope="module")
def phase(catalog: Dataset) -> _Phase:
    return _phase(catalog)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_task_sees_its_query_ratings(phase: _Phase, seed: int) -> None:
    """On the episode tensors training reads (not the edge ids): per task, the query
    ratings are neither in the history nor in the support, and an item playing new has no
    rating in any history."""
    batch, u, it = _meta_batch(phase, seed)
    cold = batch.cold_items
    assert cold.any()
    hist, sup = _rows(u["hist_items"], u["hist_mask"]), _rows(u["support_items"],
                                                              u["support_mask"])
    qry = _rows(u["query_items"], u["query_mask"])
    for b in range(len(qry)):
        assert qry[b] and not qry[b] & (hist[b] | sup[b]), b
        # an item playing new shows up only as this task's own support or query
        assert not cold[sorted(hist[b])].any(), b
        if batch.users.kind[b] >= 2:  # item_cold / user_item_cold: new items only
            assert cold[sorted(sup[b] | qry[b])].all(), b
    # item tasks: the task items play new; their raters' histories hold no rating of any item
    # playing new (so none of the task item's); support and query raters differ
    assert it is not None
    assert cold[it["items"]].all()
    assert not cold[it["hist_items"][it["hist_mask"] > 0]].any()
    s_users, q_users = _rows(it["support_users"], it["support_mask"]), _rows(
        it["query_users"], it["query_mask"])
    assert all(q and not q & s for s, q in zip(s_users, q_users, strict=True))


def _without_rating_edges(data, cold: np.ndarray):
    """The snapshot without any ``RATED``/``rev_RATED`` edge and without the ``CO_LIKED``
    links (computed from ratings) that touch an item playing new."""
    out = data.clone()
    cold_ids = torch.from_numpy(np.flatnonzero(cold))
    removed = {}
    for et in out.edge_types:
        store = out[et]
        ei = store.edge_index
        if et[1] in ("RATED", "rev_RATED"):
            keep = torch.zeros(ei.shape[1], dtype=torch.bool)
        elif et[1] in ("CO_LIKED", "rev_CO_LIKED"):
            keep = ~(torch.isin(ei[0], cold_ids) | torch.isin(ei[1], cold_ids))
        else:
            continue
        n = ei.shape[1]
        removed[et[1]] = int((~keep).sum())
        for key, value in list(store.items()):
            if key == "edge_index":
                store[key] = value[:, keep]
            elif torch.is_tensor(value) and value.dim() >= 1 and value.shape[0] == n:
                store[key] = value[keep]
    return out, removed


@pytest.mark.parametrize("collab", [False, True])
def test_an_item_playing_new_has_no_rating_edge_and_no_learned_state(catalog: Dataset,
                                                                     collab: bool) -> None:
    """The query losses a meta-batch trains on (:meth:`_Phase.task_losses`, what an epoch
    calls) are the same without any rating edge in the graph and without the ``CO_LIKED``
    links of the items playing new, and with those items' learned states replaced by noise:
    a new item at test time has neither. (Their closed-form side-feature base, fitted once
    before training on every rated item's ALS state, is not re-fitted per batch.)"""
    phase = _phase(catalog, **{"model.collab_inputs": collab})
    net = phase.model.net
    batch, _, _ = _meta_batch(phase, 0)
    cold = batch.cold_items
    with torch.no_grad():
        user0, item0 = phase.task_losses(batch)[:2]
        assert item0 is not None
        stripped, removed = _without_rating_edges(phase.data, cold)
        assert removed["RATED"] > 0 and removed["CO_LIKED"] > 0  # the check has teeth
        user1, item1 = phase.task_losses(batch, stripped)[:2]
        torch.testing.assert_close(user1, user0, rtol=0, atol=0)
        torch.testing.assert_close(item1, item0, rtol=0, atol=0)
        saved = net.item_emb.weight.clone()
        gen = torch.Generator().manual_seed(0)
        noise = torch.randn(int(cold.sum()), saved.shape[1], generator=gen) * 3.0
        net.item_emb.weight[torch.from_numpy(cold)] = noise
        user2, item2 = phase.task_losses(batch)[:2]
        torch.testing.assert_close(user2, user0, rtol=0, atol=0)
        torch.testing.assert_close(item2, item0, rtol=0, atol=0)
        # the same noise on warm items' states does move the losses: the check has teeth
        net.item_emb.weight.copy_(saved)
        warm = np.flatnonzero(~cold & (phase.has_rating.numpy() > 0))[:len(noise)]
        net.item_emb.weight[torch.from_numpy(warm)] = noise[:len(warm)]
        user3 = phase.task_losses(batch).user_loss
        assert not torch.equal(user3, user0)


def test_query_holdout_mask_is_honoured(phase: _Phase) -> None:
    index = phase.index
    held = np.random.default_rng(5).random(index.num_edges) < 0.2
    _, u, _ = _meta_batch(phase, 5, query_edges=held)
    held_pairs = set(zip(index.user[held].tolist(), index.item[held].tolist(), strict=True))

    def pairs(items: np.ndarray, mask: np.ndarray) -> set[tuple[int, int]]:
        rows, cols = np.nonzero(mask > 0)
        return set(zip(u["users"][rows].tolist(), items[rows, cols].tolist(), strict=True))

    # queries come from the held-out ratings (the item states are refit without them) ...
    # (a user with no held-out rating in the pool falls back to its other ratings)
    query = pairs(u["query_items"], u["query_mask"])
    assert len(query & held_pairs) > 0.9 * len(query)
    # ... and no held-out rating is ever visible as support or history
    assert not pairs(u["support_items"], u["support_mask"]) & held_pairs
    assert not pairs(u["hist_items"], u["hist_mask"]) & held_pairs


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
