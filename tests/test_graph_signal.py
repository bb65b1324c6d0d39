"""The graph carries signal to a cold item: with collaborative inputs (``model.
collab_inputs``) a cold item's GNN prior is rebuilt from the learned states of the warm items
it shares attribute nodes with, and nothing else in the graph moves it."""

from __future__ import annotations

import numpy as np
import torch

from graph_meta.dataset import Dataset
from graph_meta.eval.protocol import training_view
from graph_meta.model import GraphMetaNet, GraphMetaRecommender
from training.config import Config
from training.train import _Phase

_CFG = {"model.dim": 8, "model.hidden": 16, "model.layers": 2, "model.dropout": 0.0,
        "model.prior_gate": False, "model.collab_inputs": True, "model.use_text": False,
        "train.validate": False}


def _attribute_nodes(data, item: int) -> set[tuple[str, int]]:
    """The (node type, index) of every attribute node an item links to."""
    out = set()
    for et in data.edge_types:
        if et[0] == "Item" and et[1] != "RATED" and not et[1].startswith("rev_"):
            ei = data[et].edge_index
            out |= {(et[2], int(d)) for d in ei[1][ei[0] == item]}
    return out


def test_a_cold_items_prior_follows_its_warm_neighbours_states_only(catalog: Dataset) -> None:
    torch.manual_seed(0)
    cfg = Config().replace(**_CFG)
    model = GraphMetaRecommender(cfg)
    phase = _Phase(model, training_view(catalog), cfg, torch.device("cpu"))
    net = model.net
    assert isinstance(net, GraphMetaNet) and net.collab
    net.eval()
    data = phase.data
    warm = phase.has_rating.clone()
    cold = int(torch.nonzero(warm == 0)[0, 0])
    mine = _attribute_nodes(data, cold)
    n_items = int(data["Item"].num_nodes)
    sharing = [i for i in range(n_items) if i != cold and warm[i] and _attribute_nodes(
        data, i) & mine]
    apart = [i for i in range(n_items) if warm[i] and not _attribute_nodes(data, i) & mine]
    assert sharing and apart

    def prior() -> torch.Tensor:
        with torch.no_grad():
            return net.priors(data, warm)[0][cold].clone()

    base = prior()
    with torch.no_grad():
        net.item_emb.weight[apart[0]] += 3.0  # shares no attribute node: two hops away
    torch.testing.assert_close(prior(), base)
    with torch.no_grad():
        net.item_emb.weight[cold] += 3.0  # its own state is masked: it plays cold
    torch.testing.assert_close(prior(), base)
    with torch.no_grad():
        net.item_emb.weight[sharing[0]] += 3.0  # a warm item with the same brand/category
    assert (prior() - base).abs().max() > 1e-4
    # the same neighbour playing cold passes on nothing of its state
    warm[sharing[0]] = 0.0
    moved = prior()
    with torch.no_grad():
        net.item_emb.weight[sharing[0]] -= 3.0
    torch.testing.assert_close(prior(), moved)


def test_collaborative_inputs_train_and_predict(catalog: Dataset) -> None:
    torch.manual_seed(0)
    cfg = Config().replace(**{**_CFG, "train.epochs": 1, "episodes.batch_users": 128,
                              "episodes.batch_items": 16})
    model = GraphMetaRecommender(cfg).fit(training_view(catalog))
    task = catalog.tasks["item_cold"][0]
    pred = model.predict(task.user_id, task.support, [i for i, _ in task.query])
    assert np.isfinite(pred).all() and pred.std() > 0
