"""The graph carries signal to a cold item: with collaborative inputs (``model.
collab_inputs``) a cold item's GNN prior is rebuilt from the learned states of the warm items
it shares attribute nodes with, and nothing else in the graph moves it."""

from __future__ import annotations

import numpy as np
import torch

from graph_meta.config import Config
from graph_meta.dataset import Dataset
from graph_meta.eval.protocol import training_view
from graph_meta.fitting.train import _Phase
from graph_meta.model import GraphMetaRecommender
from graph_meta.nn.net import GraphMetaNet

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


def test_the_planted_graph_holds_signal_no_column_has(tmp_path) -> None:
    import pandas as pd

    from loaders.folder import read_dataset, write_dataset
    from loaders.synthetic import generate_catalog

    data = generate_catalog(n_users=1200, n_items=400, n_interactions=30000, seed=3,
                            planted_graph=True)
    folder = write_dataset(data, tmp_path / "planted")
    back = read_dataset(folder)
    succ, friends = back.relations["SUCCEEDS"], back.relations["FRIEND_OF"]
    assert len(succ) > 50 and len(friends) > 2 * 1200
    columns = set(back.items.columns) | set(back.users.columns)
    assert not {"predecessor_id", "friend_id", "circle"} & columns
    items = back.items
    same = (items.loc[succ["src"], "category"].to_numpy()
            == items.loc[succ["dst"], "category"].to_numpy())
    assert same.all()
    release = items["release"]
    assert (release.loc[succ["src"]].to_numpy() >= release.loc[succ["dst"]].to_numpy()).all()
    # successors are received like their predecessors; friends rate alike
    every = pd.concat([back.train, *(pd.DataFrame(
        [(t.user_id, i, r) for t in ts for i, r in [*t.support, *t.query]],
        columns=["user_id", "item_id", "rating"]) for ts in back.tasks.values())])
    item_mean = every.groupby("item_id")["rating"].mean()
    pairs = succ[succ["src"].isin(item_mean.index) & succ["dst"].isin(item_mean.index)]
    r_succ = np.corrcoef(item_mean.loc[pairs["src"]], item_mean.loc[pairs["dst"]])[0, 1]
    user_mean = every.groupby("user_id")["rating"].mean()
    fr = friends[friends["src"].isin(user_mean.index) & friends["dst"].isin(user_mean.index)]
    r_friends = np.corrcoef(user_mean.loc[fr["src"]], user_mean.loc[fr["dst"]])[0, 1]
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(fr["dst"].to_numpy())
    r_random = np.corrcoef(user_mean.loc[fr["src"]], user_mean.loc[shuffled])[0, 1]
    assert r_succ > 0.3 and r_friends > 0.3 and abs(r_random) < 0.15


def test_new_users_inherit_their_friends_taste_through_the_relation_file(tmp_path) -> None:
    """With planted friend circles (FRIEND_OF, a relation file no column mirrors), a new
    user's prior moves toward what their rated friends learned: K = 0 predictions of the
    user_cold tasks improve over the model without relation files, trained alike; a new user
    without a rated friend keeps the side-feature prior; changing who the friends are moves
    the prior."""
    import dataclasses

    from graph_meta.config import Config
    from loaders.folder import read_dataset, write_dataset
    from loaders.synthetic import generate_catalog

    data = read_dataset(write_dataset(generate_catalog(
        n_users=1500, n_items=300, n_interactions=30000, seed=5, planted_graph=True),
        tmp_path / "planted"))
    small = {"model.dim": 8, "model.hidden": 16, "model.layers": 1, "train.epochs": 1,
             "train.validate": False, "model.neighbor_k": 0}

    def fit(dataset: Dataset, **over: object) -> GraphMetaRecommender:
        torch.manual_seed(0)
        return GraphMetaRecommender(Config().replace(**{**small, **over})).fit(
            training_view(dataset))

    with_rel, without = fit(data), fit(data, **{"model.use_relations": False})
    tasks = data.tasks["user_cold"]

    def rmse(model: GraphMetaRecommender) -> float:
        err = [model.predict(t.user_id, [], [i for i, _ in t.query]) - np.array(
            [r for _, r in t.query]) for t in tasks]
        return float(np.sqrt(np.mean(np.concatenate(err) ** 2)))

    assert rmse(with_rel) < rmse(without) - 0.01, (rmse(with_rel), rmse(without))
    # a new user whose friends are all new too has no rated friend: the relation adds nothing
    rated = set(data.train["user_id"].astype(str))
    friends = data.relations["FRIEND_OF"]
    new_user = str(tasks[0].user_id)
    mates = set(friends.loc[friends["src"] == new_user, "dst"]) | set(
        friends.loc[friends["dst"] == new_user, "src"])
    assert mates & rated
    cut = friends[(friends["src"] != new_user) & (friends["dst"] != new_user)]
    lonely = dataclasses.replace(data, relations={**data.relations, "FRIEND_OF": cut})
    alone = fit(lonely)
    pos = with_rel.user_pos[new_user]
    assert not np.allclose(alone.cache["user_prior"][pos], with_rel.cache["user_prior"][pos],
                           atol=1e-4)
    # other users' friends are unchanged, so their relation shift is the same up to the
    # refit's small differences: the new user's own prior moved the most
    moved = np.abs(alone.cache["user_prior"] - with_rel.cache["user_prior"]).sum(1)
    assert moved[pos] >= np.quantile(moved, 0.99)
