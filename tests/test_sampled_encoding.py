"""Sampled-neighbourhood encoding of meta-batches (``train.encode``, ``train.fanouts``):
whole neighbourhoods reproduce the full graph's priors and losses, small fan-outs bound the
subgraph and are reproducible, training runs on it, and the config refuses bad values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from graph_meta.config import Config, ConfigError, load_config
from graph_meta.dataset import Dataset
from graph_meta.eval.protocol import training_view
from graph_meta.fitting.train import _Phase, encode_mode
from graph_meta.model import GraphMetaRecommender
from graph_meta.sampling.subgraph import NeighbourhoodSampler

_CFG = {"model.dim": 8, "model.hidden": 16, "model.layers": 2, "model.dropout": 0.0,
        "model.prior_gate": False, "model.use_text": False, "episodes.max_support": 20,
        "episodes.history_fanout": 32, "episodes.batch_users": 64, "episodes.batch_items": 16,
        "train.validate": False, "train.encode": "sampled"}


def _phase(catalog: Dataset, **over) -> _Phase:
    torch.manual_seed(0)
    cfg = Config().replace(**{**_CFG, **over})
    phase = _Phase(GraphMetaRecommender(cfg), training_view(catalog), cfg, torch.device("cpu"))
    assert phase.model.net is not None
    phase.model.net.eval()
    return phase


def _batch(phase: _Phase, seed: int = 0):
    users = phase.sampler.task_users[:64]
    batch = phase.sampler.batch(np.random.default_rng(seed), users, 16)
    warm = phase.has_rating * torch.as_tensor(~batch.cold_items, dtype=torch.float32)
    return batch, warm


def _max_in_degree(phase: _Phase) -> int:
    assert phase.nbhd is not None
    return phase.nbhd.max_in_degree()


@pytest.mark.parametrize(("conv", "collab"), [("sage", False), ("sage", True), ("hgt", False)])
def test_whole_neighbourhoods_give_the_full_graph_priors(catalog: Dataset, conv: str,
                                                         collab: bool) -> None:
    phase = _phase(catalog, **{"model.conv": conv, "model.collab_inputs": collab})
    net = phase.model.net
    assert net is not None and phase.nbhd is not None
    deg = _max_in_degree(phase)
    assert deg > 20  # Region/Category/Brand nodes: fan-outs below this would sample
    batch, warm = _batch(phase)
    seeds = phase._seeds(batch, warm, with_items=True)
    assert len(seeds["User"]) > 64 and len(seeds["Item"]) > 0  # item tasks' raters too
    with torch.no_grad():
        full_item, full_user = net.priors(phase.data, warm)
        nbhd = phase.nbhd.sample(seeds, [deg, deg], np.random.default_rng(1), phase.data)
        item, user = net.seed_priors(nbhd, warm)
        small = phase.nbhd.sample(seeds, [1, 1], np.random.default_rng(1), phase.data)
        item1, user1 = net.seed_priors(small, warm)
    assert nbhd.num_nodes() < sum(int(phase.data[nt].num_nodes) for nt in phase.data.node_types)
    # the seeds come first, in order; the global ids index the id embeddings
    assert nbhd.n_id("Item")[:len(seeds["Item"])].tolist() == seeds["Item"].tolist()
    assert nbhd.n_id("User")[:len(seeds["User"])].tolist() == seeds["User"].tolist()
    torch.testing.assert_close(item, full_item[seeds["Item"]], rtol=0, atol=1e-5)
    torch.testing.assert_close(user, full_user[seeds["User"]], rtol=0, atol=1e-5)
    # teeth: the GNN moves the priors off their closed-form base, and sampling moves them
    assert (full_user[seeds["User"]] - net.user_base[seeds["User"]]).abs().max() > 1e-3
    assert (user1 - user).abs().max() > 1e-4
    assert (item1 - item).abs().max() > 1e-4


@pytest.mark.parametrize("collab", [False, True])
def test_whole_neighbourhoods_give_the_full_graph_losses(catalog: Dataset,
                                                         collab: bool) -> None:
    """The seeds are every prior the losses read: with whole neighbourhoods the sampled
    meta-batch's losses are the full graph's (a missing seed would read its base instead)."""
    sampled = _phase(catalog, **{"model.collab_inputs": collab, "train.fanouts": [-1, -1]})
    batch, _ = _batch(sampled)
    with torch.no_grad():
        out = sampled.task_losses(batch)
        full = sampled.task_losses(batch, sampled.data_dev)  # data given: the whole graph
    assert out.prior_rows is not None and full.prior_rows is None
    assert out.item_loss is not None and full.item_loss is not None
    torch.testing.assert_close(out.user_loss, full.user_loss, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.item_loss, full.item_loss, rtol=0, atol=1e-5)
    rows = out.prior_rows
    torch.testing.assert_close(out.item_prior[rows], full.item_prior[rows], rtol=0, atol=1e-5)
    # the seed items are exactly the items read with their prior: cold, and read by a task
    assert bool((out.warm[rows] == 0).all())
    read = np.unique(np.concatenate([batch.users.support_items.ravel(),
                                     batch.users.query_items.ravel(),
                                     batch.users.hist_items.ravel(), batch.items.items,
                                     batch.items.hist_items.ravel()]))
    assert set(rows.tolist()) == {i for i in read.tolist() if out.warm[i] == 0}
    # teeth: a batch computed with the bases for the seed items' priors scores differently
    net = sampled.model.net
    assert net is not None
    assert (full.item_prior[rows] - net.item_base[rows]).abs().max() > 1e-3


def test_small_fanouts_bound_the_subgraph_and_are_reproducible(catalog: Dataset) -> None:
    phase = _phase(catalog)
    assert phase.nbhd is not None
    sampler: NeighbourhoodSampler = phase.nbhd
    batch, warm = _batch(phase)
    seeds = phase._seeds(batch, warm, with_items=True)
    fanouts = [2, 3]

    def draw(seed: int):
        return sampler.sample(seeds, fanouts, np.random.default_rng(seed), phase.data)

    a, b, c = draw(5), draw(5), draw(6)
    n_seeds = sum(len(s) for s in seeds.values())
    # in-edge types per node type at each hop (the most any node type has)
    types = [max(sum(1 for et in ets if et[2] == nt) for nt in sampler.node_types)
             for ets in sampler.hop_edge_types]
    bound = n_seeds * np.prod([1 + t * f for t, f in zip(types, fanouts, strict=True)])
    assert n_seeds < a.num_nodes() <= bound
    full = sum(int(phase.data[nt].num_nodes) for nt in phase.data.node_types)
    assert a.num_nodes() < full
    for et in a.data.edge_types:  # no node keeps more than the largest fan-out per type
        ei = a.data[et].edge_index
        if ei.numel():
            assert int(torch.bincount(ei[1]).max()) <= max(fanouts)
            assert int(ei[0].max()) < a.data[et[0]].num_nodes
            assert int(ei[1].max()) < a.data[et[2]].num_nodes
    # every sampled edge is an edge of the graph, its attributes sliced with it
    for et in a.data.edge_types:
        sub, whole = a.data[et], phase.data[et]
        src = a.n_id(et[0])[sub.edge_index[0]]
        dst = a.n_id(et[2])[sub.edge_index[1]]
        pairs = set(zip(whole.edge_index[0].tolist(), whole.edge_index[1].tolist(),
                        strict=True))
        assert set(zip(src.tolist(), dst.tolist(), strict=True)) <= pairs
        if "weight" in whole and sub.edge_index.numel():
            lookup = {(int(s), int(d)): float(w) for s, d, w in zip(
                *whole.edge_index, whole.weight, strict=True)}
            assert [lookup[(int(s), int(d))] for s, d in zip(src, dst, strict=True)] == \
                sub.weight.tolist()
    # node features are the rows of the global ids
    torch.testing.assert_close(a.data["Item"].x_num, phase.data["Item"].x_num[a.n_id("Item")])
    # a fixed seed draws the same neighbourhood; another seed another one
    for nt in a.data.node_types:
        assert torch.equal(a.n_id(nt), b.n_id(nt))
    for et in a.data.edge_types:
        assert torch.equal(a.data[et].edge_index, b.data[et].edge_index)
    assert any(a.n_id(nt).tolist() != c.n_id(nt).tolist() for nt in a.data.node_types) or \
        any(not torch.equal(a.data[et].edge_index, c.data[et].edge_index)
            for et in a.data.edge_types)
    with pytest.raises(ValueError, match="2 hops need 2 fan-outs"):
        sampler.sample(seeds, [2], np.random.default_rng(0), phase.data)


def test_sampled_training_trains_and_validates(catalog: Dataset) -> None:
    torch.manual_seed(0)
    cfg = Config().replace(**{**_CFG, "model.dropout": 0.2, "train.fanouts": [3, 3],
                              "train.validate": True, "train.epochs": 2, "train.patience": 5,
                              "train.val_epoch0": False, "train.refit": False,
                              "train.val_max_tasks": 100, "train.lr": 0.01})
    model = GraphMetaRecommender(cfg).fit(catalog)
    assert model.fit_info["encode"] == "sampled" and model.fit_info["fanouts"] == [3, 3]
    rows = [h for h in model.history if "loss" in h]
    assert len(rows) == 2
    assert all(np.isfinite(h["loss"]) and np.isfinite(h["val_rmse"]) for h in rows)
    assert all(0.2 < h["val_rmse"] < 2.0 for h in rows)
    task = catalog.tasks["item_cold"][0]
    pred = model.predict(task.user_id, task.support, [i for i, _ in task.query])
    assert np.isfinite(pred).all() and pred.std() > 0


def test_auto_encodes_a_small_graph_whole(catalog: Dataset) -> None:
    auto = _phase(catalog, **{"train.encode": "auto"})
    assert auto.encode == "full" and auto.nbhd is None
    batch, _ = _batch(auto)
    with torch.no_grad():
        out = auto.task_losses(batch)
    assert out.prior_rows is None
    # the threshold is on User + Item nodes: just under the catalogue's count samples
    n = int(auto.data["User"].num_nodes) + int(auto.data["Item"].num_nodes)
    cfg = Config().replace(**{"train.auto_sample_nodes": n})
    assert encode_mode(cfg, auto.data) == "full"
    cfg = Config().replace(**{"train.auto_sample_nodes": n - 1})
    assert encode_mode(cfg, auto.data) == "sampled"
    assert encode_mode(Config(), auto.data) == "full"  # the default threshold
    assert Config().train.encode == "auto"
    # ... and the default fan-outs, one per encoder round
    sampled = _phase(catalog, **{"train.encode": "auto", "train.auto_sample_nodes": 0})
    assert sampled.encode == "sampled" and sampled.fanouts == [20, 20]


def test_encode_config_is_validated(tmp_path: Path) -> None:
    cases = [({"train.encode": "partial"}, "train.encode: must be one of"),
             ({"train.fanouts": [10, 0]}, r"train.fanouts\[1\]: must be >= 1 \(or -1: all\)"),
             ({"train.fanouts": [10, -2]}, r"train.fanouts\[1\]"),
             ({"train.fanouts": [10, 10, 10]}, r"train.fanouts: one per model.layers \(2\)"),
             ({"train.fanouts": [10, 10], "model.layers": 1},
              r"train.fanouts: one per model.layers \(1\)"),
             ({"train.fanouts": [10, 2.5]}, r"train.fanouts\[1\]: must be an integer"),
             ({"train.auto_sample_nodes": -1}, "train.auto_sample_nodes: must be >= 0")]
    for over, message in cases:
        with pytest.raises(ConfigError, match=message):
            Config().replace(**over)
    path = tmp_path / "bad.toml"
    path.write_text('[train]\nfanouts = "10"\n')
    with pytest.raises(ConfigError, match=r"train\.fanouts: must be a list"):
        load_config(path)
    path.write_text('[train]\nencode = "sampled"\nfanouts = [15, -1]\n')
    cfg = load_config(path)
    assert cfg.train.fanouts == [15, -1] and cfg.train.encode == "sampled"
    assert Config.from_dict(cfg.to_dict()).train.fanouts == [15, -1]  # saved with the run
