"""Items added to the catalogue after training: scored from their side features and graph
paths by ``GraphMetaRecommender.add_items`` and ``graph-meta add-items``, without retraining."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from graph_meta.config import Config
from graph_meta.dataset import Dataset
from graph_meta.fitting.graphs import build_graph
from graph_meta.fitting.priors import linear_prior, release_weights
from graph_meta.graph.neighborhood import ItemNeighbors
from graph_meta.model import GraphMetaRecommender
from training.cli import main as cli

_SMALL = {"model.dim": 8, "model.hidden": 16, "model.layers": 1, "train.epochs": 1,
          "train.validate": False, "episodes.batch_users": 128, "episodes.batch_items": 16}


def _without_unrated(catalog: Dataset) -> tuple[Dataset, list[str]]:
    """The catalogue as it was before its never-rated items arrived."""
    rated = set(catalog.train["item_id"].astype(str))
    ids = catalog.items.index.astype(str)
    new = [i for i in ids if i not in rated]
    return dataclasses.replace(catalog, items=catalog.items.loc[ids.isin(rated)], tasks={}), new


@pytest.fixture(scope="module")
def before(catalog: Dataset) -> tuple[Dataset, list[str]]:
    return _without_unrated(catalog)


@pytest.fixture(scope="module")
def trained(before: tuple[Dataset, list[str]]) -> GraphMetaRecommender:
    torch.manual_seed(0)
    return GraphMetaRecommender(Config().replace(**_SMALL)).fit(before[0])


def _copy(model: GraphMetaRecommender) -> GraphMetaRecommender:
    out = GraphMetaRecommender(model.config)
    out.cache = {k: v.copy() for k, v in model.cache.items()}
    out.item_ids, out.item_pos = list(model.item_ids), dict(model.item_pos)
    out.user_pos = dict(model.user_pos)
    return out


def test_new_items_get_the_training_prior_and_their_path_neighbours(
        trained: GraphMetaRecommender, before: tuple[Dataset, list[str]],
        catalog: Dataset) -> None:
    old_ids, new = list(trained.item_ids), before[1]
    assert len(new) >= 5 and not set(new) & set(old_ids)
    model = _copy(trained)
    task = catalog.tasks["warm"][0]
    q = [i for i, _ in task.query]
    warm_before = model.predict(task.user_id, task.support, q)

    assert model.add_items(catalog) == new
    assert model.item_ids == old_ids + new
    n_old = len(old_ids)
    # existing items and their predictions are untouched
    np.testing.assert_array_equal(model.cache["item_states"][:n_old],
                                  trained.cache["item_states"])
    np.testing.assert_allclose(model.predict(task.user_id, task.support, q), warm_before)
    # the stored targets are those of the training prior: refitted over the training table
    # they give the net's closed-form item base back
    t = model.config.train
    old_frame = before[0].items.loc[pd.Index(old_ids)]
    old_counts = np.bincount(trained.cache["hist_items"], minlength=n_old).astype(float)
    assert trained.net is not None
    np.testing.assert_allclose(
        linear_prior(catalog.spec.items, old_frame, old_counts, trained.cache["prior_targets"],
                     t.linear_prior_alpha, weight=t.prior_weight,
                     row_weights=release_weights(before[0], old_ids, t.prior_newest_bias)),
        trained.net.item_base.double().numpy(), atol=1e-5)
    # the state of a new item is the training ridge prior over the extended item table
    frame = catalog.items.loc[pd.Index(model.item_ids)]
    counts = np.r_[np.bincount(trained.cache["hist_items"], minlength=n_old), np.zeros(len(new))]
    targets = trained.cache["prior_targets"]
    targets = np.r_[targets, np.zeros((len(new), targets.shape[1]))]
    want = linear_prior(catalog.spec.items, frame, counts, targets, t.linear_prior_alpha,
                        weight=t.prior_weight,
                        row_weights=release_weights(catalog, model.item_ids,
                                                    t.prior_newest_bias))
    np.testing.assert_allclose(model.cache["item_states"][n_old:], want[n_old:])
    assert np.ptp(model.cache["item_states"][n_old:, 0]) > 1e-3  # not one constant state
    # its neighbours are its attribute-path neighbours in the whole catalogue's graph
    data = build_graph(catalog)
    graph_ids = [str(i) for i in data.node_ids["Item"]]
    lists = ItemNeighbors.from_graph(data, top_k=model.config.model.neighbor_k,
                                     type_weights=model.path_weights)
    c = model.cache
    for item in new:
        g, p = graph_ids.index(item), model.item_pos[item]
        want_row = {graph_ids[j]: s for j, s in zip(
            lists.indices[lists.indptr[g]:lists.indptr[g + 1]],
            lists.sim[lists.indptr[g]:lists.indptr[g + 1]], strict=True)}
        got = {model.item_ids[j]: s for j, s in zip(
            c["nbr_indices"][c["nbr_indptr"][p]:c["nbr_indptr"][p + 1]],
            c["nbr_sim"][c["nbr_indptr"][p]:c["nbr_indptr"][p + 1]], strict=True)}
        assert got == pytest.approx(want_row)
        assert np.all(np.diff(c["nbr_indices"][c["nbr_indptr"][p]:c["nbr_indptr"][p + 1]]) > 0)
        assert c["nbr_rated_indptr"][p + 1] == c["nbr_rated_indptr"][p]  # nobody rated it
        assert c["reg_indptr"][p + 1] == c["reg_indptr"][p]
    assert model.add_items(catalog) == []  # nothing new the second time


def test_items_added_after_training_are_scored_like_cold_items(
        trained: GraphMetaRecommender, catalog: Dataset, tmp_path: Path) -> None:
    model = _copy(trained)
    model.add_items(catalog)
    y, pred = [], []
    for task in catalog.tasks["item_cold"]:
        q = [i for i, _ in task.query]
        assert all(i in model.item_pos for i in q)
        pred.append(model.predict(task.user_id, task.support, q))
        y.append([r for _, r in task.query])
    y_all, p_all = np.concatenate(y), np.concatenate(pred)
    mean = float(catalog.train["rating"].mean())
    assert np.sqrt(np.mean((y_all - p_all) ** 2)) < np.sqrt(np.mean((y_all - mean) ** 2))
    # score_all_users of a new item is predict(u, [], [item]) with the correction on
    item = model.item_ids[-1]
    scores = model.score_all_users(item)
    users = model.user_ids[::37]
    np.testing.assert_allclose(scores[[model.user_pos[u] for u in users]],
                               [model.predict(u, [], [item])[0] for u in users], atol=1e-10)
    # saved and loaded, the added items score the same
    loaded = GraphMetaRecommender.load(model.save(tmp_path / "model.pt"))
    task = catalog.tasks["item_cold"][0]
    q = [i for i, _ in task.query]
    np.testing.assert_allclose(loaded.predict(task.user_id, task.support, q),
                               model.predict(task.user_id, task.support, q))


def test_a_run_interrupted_between_its_two_files_still_loads(
        trained: GraphMetaRecommender, catalog: Dataset, tmp_path: Path) -> None:
    path = trained.save(tmp_path / "model.pt")
    old_json = (tmp_path / "model.pt.json").read_text()
    model = GraphMetaRecommender.load(path)
    model.add_items(catalog)
    model.save(path)
    (tmp_path / "model.pt.json").write_text(old_json)  # the json swap never happened
    loaded = GraphMetaRecommender.load(path)
    assert loaded.item_ids == model.item_ids
    # a resaved loaded model keeps the network weights
    blob = torch.load(path, weights_only=True)
    assert "net" in blob and blob["net"].keys() == trained.net.state_dict().keys()
    blob["cache"]["item_states"] = blob["cache"]["item_states"][:-2]
    torch.save(blob, path)
    with pytest.raises(ValueError, match=r"item states but .* item ids; the run is damaged"):
        GraphMetaRecommender.load(path)


def test_add_items_errors(trained: GraphMetaRecommender, before: tuple[Dataset, list[str]],
                          catalog: Dataset) -> None:
    model = _copy(trained)
    with pytest.raises(KeyError, match="graph-meta add-items"):
        model.score_all_users(before[1][0])
    gone = model.item_ids[3]
    partial = dataclasses.replace(catalog, items=catalog.items.drop(index=gone))
    with pytest.raises(KeyError, match=f"item '{gone}' of the model is not in the dataset"):
        model.add_items(partial)
    assert model.item_ids == trained.item_ids  # nothing half-added
    del model.cache["prior_targets"]
    with pytest.raises(RuntimeError, match="linear_prior_alpha = 0"):
        model.add_items(catalog)
    unfitted = GraphMetaRecommender(trained.config)
    with pytest.raises(RuntimeError, match="not fitted"):
        unfitted.add_items(catalog)


def test_cli_add_items_and_audience_of_an_item_newer_than_the_model(
        trained: GraphMetaRecommender, before: tuple[Dataset, list[str]], catalog_dir: Path,
        tmp_path: Path) -> None:
    run = tmp_path / "run"
    trained.save(run / "model.pt")
    new_item = before[1][0]
    runner = CliRunner()
    fans = runner.invoke(cli, ["audience", str(catalog_dir), "--run", str(run), "--item",
                               new_item, "-k", "3", "--json"])
    assert fans.exit_code == 0, fans.output
    assert f"{len(before[1])} item(s) of {catalog_dir} are newer than the model" in fans.output
    added = runner.invoke(cli, ["add-items", str(catalog_dir), "--run", str(run)])
    assert added.exit_code == 0, added.output
    assert f"added {len(before[1])} item(s)" in added.output
    meta = json.loads((run / "model.pt.json").read_text())
    assert meta["item_ids"][-len(before[1]):] == before[1]
    assert not list(run.glob("*.new*"))
    again = runner.invoke(cli, ["add-items", str(catalog_dir), "--run", str(run)])
    assert again.exit_code == 0 and "no new items" in again.output
    quiet = runner.invoke(cli, ["audience", str(catalog_dir), "--run", str(run), "--item",
                                new_item, "-k", "3", "--json"])
    assert quiet.exit_code == 0 and "newer than the model" not in quiet.output
    assert json.loads(quiet.output) == json.loads(fans.output[fans.output.index("["):])


def test_cli_with_a_model_that_cannot_add_items(
        trained: GraphMetaRecommender, before: tuple[Dataset, list[str]], catalog_dir: Path,
        tmp_path: Path) -> None:
    run = tmp_path / "old-run"
    old = _copy(trained)
    del old.cache["prior_targets"]  # as saved before add_items existed
    old.save(run / "model.pt")
    runner = CliRunner()
    item = trained.item_ids[0]
    fans = runner.invoke(cli, ["audience", str(catalog_dir), "--run", str(run), "--item",
                               item, "-k", "3", "--json"])
    assert fans.exit_code == 0, fans.output
    assert "has items newer than the model, left unscored" in fans.output
    added = runner.invoke(cli, ["add-items", str(catalog_dir), "--run", str(run)])
    assert added.exit_code == 2 and "run `graph-meta train` again" in added.output
