"""GraphMetaRecommender end to end on synthetic data: gradients, adaptation, checkpoints."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg  # noqa: F401  (sp.linalg.norm)
import torch

from graph_meta.config import Config, ConfigError, load_config
from graph_meta.dataset import Dataset
from graph_meta.eval.protocol import evaluate, training_view
from graph_meta.fitting.als import als
from graph_meta.fitting.priors import linear_prior, release_weights
from graph_meta.fitting.train import _Phase, episode_tensors, write_csv_row
from graph_meta.graph.features import encode_features, hashed_text
from graph_meta.model import GraphMetaRecommender
from graph_meta.nn.net import GraphMetaNet, init_precisions
from graph_meta.schema import ColumnSpec, TableSpec
from graph_meta.side_features import RidgeMap as _RidgeMap
from graph_meta.side_features import side_features
from training.benchmark import ABLATIONS, fine_tune_steps

ROOT = Path(__file__).resolve().parents[1]


def _cfg(**over) -> Config:
    base = {"model.dim": 8, "model.hidden": 16, "model.layers": 1, "meta.inner_steps": 2,
            "meta.adapt": "head+vector", "episodes.max_support": 20,
            "episodes.history_fanout": 32, "episodes.batch_users": 128,
            "episodes.batch_items": 16, "train.epochs": 2, "train.validate": False,
            "train.lr": 0.01}
    base.update(over)
    return Config().replace(**base)


@pytest.fixture(scope="module")
def fitted(catalog: Dataset) -> GraphMetaRecommender:
    torch.manual_seed(0)
    return GraphMetaRecommender(_cfg()).fit(catalog)


@pytest.mark.parametrize("conv", ["sage", "hgt"])
def test_every_input_receives_gradient(catalog: Dataset, conv: str) -> None:
    cfg = _cfg(**{"model.layers": 2, "model.conv": conv})
    model = GraphMetaRecommender(cfg)
    phase = _Phase(model, training_view(catalog), cfg, torch.device("cpu"))
    net = model.net
    assert net is not None
    assert net.prior_gate is not None
    with torch.no_grad():  # a gate still at its initial 0 would cut the GNN's gradient
        net.prior_gate.fill_(0.5)
    batch = phase.sampler.batch(np.random.default_rng(0), phase.sampler.task_users, 32)
    u_ep, i_ep = episode_tensors(batch, torch.device("cpu"))
    warm = phase.has_rating * torch.as_tensor(~batch.cold_items, dtype=torch.float32)
    items, users = net.states(phase.data, warm)
    loss = net.user_loss(u_ep, items, users) + net.item_loss(i_ep, items, users)
    loss.backward()
    # the warm item states are fitted by ALS (frozen), everything else learns by gradient
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    assert frozen == {"item_emb.weight"}
    dead = [n for n, p in net.named_parameters() if p.requires_grad and (
            p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0)]
    if conv == "hgt":
        # HGT's own attention/skip weights can be flat by construction (a relation whose
        # nodes all have one neighbour: softmax = 1); every *input* must still learn
        dead = [n for n in dead if not n.startswith("encoder.convs.")]
    assert not dead, f"parameters without gradient: {dead}"
    # every user/item side feature block and every attribute node type is an input
    names = {n for n, _ in net.named_parameters()}
    assert any(n.startswith("encoder.inputs.User.cat") for n in names)
    assert any(n.startswith("encoder.inputs.Item.") for n in names)
    assert any("CO_ENGAGED" in n for n in names)


def test_adaptation_changes_predictions_and_lowers_support_loss(
        fitted: GraphMetaRecommender, catalog: Dataset) -> None:
    adapted = GraphMetaRecommender(fitted.config)  # the adaptation alone: no neighbourhood
    adapted.cache = {k: v for k, v in fitted.cache.items() if not k.startswith("nbr_")}
    adapted.item_pos, adapted.user_pos = fitted.item_pos, fitted.user_pos
    moved, improved, full_before, full_after = [], [], [], []
    for task in catalog.tasks["user_cold"][:30]:
        query = [i for i, _ in task.query]
        support = task.support[:10]
        cold = adapted.predict(task.user_id, [], query)
        warm = adapted.predict(task.user_id, support, query)
        moved.append(np.abs(warm - cold).mean())
        s_items = [i for i, _ in support]
        y = np.array([r for _, r in support])
        before = np.mean((adapted.predict(task.user_id, [], s_items) - y) ** 2)
        after = np.mean((adapted.predict(task.user_id, support, s_items) - y) ** 2)
        improved.append(after < before)
        full_before.append(np.mean((fitted.predict(task.user_id, [], s_items) - y) ** 2))
        full_after.append(np.mean((fitted.predict(task.user_id, support, s_items) - y) ** 2))
    assert np.mean(moved) > 0.05, "adaptation is (nearly) a no-op"
    assert np.mean(improved) > 0.9
    # with the neighbourhood correction on top, the support is still fitted better on average
    assert np.mean(full_after) < 0.9 * np.mean(full_before)
    # the meta-learned inner steps themselves lower the support loss below the ridge start
    task = catalog.tasks["user_cold"][0]
    steps = fitted.cache["lr_theta"].copy(), fitted.cache["lr_head"].copy()
    s_items = [i for i, _ in task.support]
    y = np.array([r for _, r in task.support])
    after = np.mean((fitted.predict(task.user_id, task.support, s_items) - y) ** 2)
    fitted.cache["lr_theta"][:] = 0.0
    fitted.cache["lr_head"][:] = 0.0
    ridge_only = np.mean((fitted.predict(task.user_id, task.support, s_items) - y) ** 2)
    fitted.cache["lr_theta"], fitted.cache["lr_head"] = steps
    assert after < ridge_only


def test_numpy_inner_loop_matches_torch_func(fitted: GraphMetaRecommender,
                                             catalog: Dataset) -> None:
    net = fitted.net
    assert net is not None
    task = catalog.tasks["warm"][0]
    c = fitted.cache
    items = torch.from_numpy(c["item_states"]).float()
    uidx = fitted.user_pos[task.user_id]
    hist = catalog.train[catalog.train["user_id"].astype(str) == task.user_id]
    h_idx = torch.tensor([fitted.item_pos[str(i)] for i in hist["item_id"]])
    s_idx = torch.tensor([fitted.item_pos[i] for i, _ in task.support])
    s_y = torch.tensor([r for _, r in task.support], dtype=torch.float32)
    x = torch.cat([items[h_idx], items[s_idx]])[None]
    y = torch.cat([torch.tensor(hist["rating"].to_numpy(), dtype=torch.float32), s_y])[None]
    with torch.no_grad():
        prior = torch.from_numpy(c["user_prior"][uidx]).float()[None]
        theta0 = net.fold_in(prior, x, y, torch.ones_like(y))
    traj = net.adapt(theta0, items[s_idx][None], s_y[None], torch.ones_like(s_y)[None],
                     net.user_learner, head0=net.head0)
    theta_np, head_np = fitted.adapt_user(task.user_id, task.support)
    np.testing.assert_allclose(traj[-1]["theta"][0].detach().numpy(), theta_np, atol=2e-3)
    np.testing.assert_allclose(traj[-1]["head"][0].detach().numpy(), head_np, atol=2e-3)


def test_protocol_runner_and_latency(fitted: GraphMetaRecommender, catalog: Dataset) -> None:
    res = evaluate(fitted, catalog, fit=False)
    for block in res["scenarios"].values():
        assert np.isfinite(block["rmse"]) and block["rmse"] < 1.5
    scores = fitted.score_all_items(catalog.tasks["user_cold"][0].user_id,
                                    catalog.tasks["user_cold"][0].support[:10])
    assert scores.shape == (len(fitted.item_ids),) and np.isfinite(scores).all()


def test_score_all_users_matches_per_user_predict(fitted: GraphMetaRecommender,
                                                  catalog: Dataset) -> None:
    item = catalog.tasks["item_cold"][0].query[0][0]
    scores = fitted.score_all_users(item)
    users = fitted.user_ids
    assert scores.shape == (len(users),)
    picked = users[:: max(1, len(users) // 25)]
    expected = [fitted.predict(u, [], [item])[0] for u in picked]
    np.testing.assert_allclose(scores[[fitted.user_pos[u] for u in picked]], expected,
                               rtol=1e-10, atol=1e-10)
    assert scores.std() > 0  # users differ: their histories move the prediction
    with pytest.raises(KeyError, match="not in the model"):
        fitted.score_all_users("no-such-item")


def test_adaptation_curve_ends_at_predict_and_fits_the_support(
        fitted: GraphMetaRecommender, catalog: Dataset) -> None:
    tasks = [t for t in catalog.tasks["user_cold"] if len(t.support) >= 3][:40]
    first_step, last_trained = [], []
    for t in tasks:
        q = [i for i, _ in t.query]
        curve = fitted.adaptation_curve(t.user_id, t.support, q, extra_steps=3)
        steps = curve["trained_steps"]
        assert curve["labels"] == (["prior", "fold-in"]
                                   + [f"step {n}" for n in range(1, steps + 4)])
        assert curve["support"].shape == (steps + 5, len(t.support))
        np.testing.assert_allclose(curve["corrected"]["query"],
                                   fitted.predict(t.user_id, t.support, q))
        np.testing.assert_allclose(curve["corrected"]["support"],
                                   fitted.predict(t.user_id, t.support, [i for i, _ in t.support]))
        y = np.array([r for _, r in t.support])
        first_step.append(((curve["support"][1] - y) ** 2).mean())
        last_trained.append(((curve["support"][steps + 1] - y) ** 2).mean())
    assert np.mean(last_trained) < np.mean(first_step)  # the inner steps fit the support


def test_checkpoint_round_trip_weights_only(fitted: GraphMetaRecommender, catalog: Dataset,
                                            tmp_path: Path) -> None:
    path = fitted.save(tmp_path / "model.pt")
    torch.load(path, weights_only=True)  # plain tensors only
    loaded = GraphMetaRecommender.load(path)
    task = catalog.tasks["item_cold"][0]
    q = [i for i, _ in task.query]
    np.testing.assert_allclose(loaded.predict(task.user_id, task.support, q),
                               fitted.predict(task.user_id, task.support, q))
    assert loaded.config == fitted.config


def test_resume_after_a_kill_continues_identically(catalog: Dataset, tmp_path: Path) -> None:
    cfg3 = _cfg(**{"train.epochs": 3})
    ref = GraphMetaRecommender(cfg3).fit(catalog, checkpoint_dir=tmp_path / "ref")
    killed = GraphMetaRecommender(_cfg(**{"train.epochs": 2}))
    killed.fit(catalog, checkpoint_dir=tmp_path / "run", log_dir=tmp_path / "run")
    resumed = GraphMetaRecommender(cfg3).fit(catalog, checkpoint_dir=tmp_path / "run",
                                             log_dir=tmp_path / "run", resume=True)
    assert [h["epoch"] for h in resumed.history] == [3]
    lines = (tmp_path / "run" / "train_log.csv").read_text().strip().splitlines()
    assert len(lines) == 4  # header + 3 epochs
    np.testing.assert_allclose(resumed.cache["item_states"], ref.cache["item_states"],
                               rtol=1e-4, atol=1e-5)


def test_the_train_log_keeps_every_column_a_later_row_brings(tmp_path: Path) -> None:
    """Validation writes epoch 0 before any training row: the loss and seconds of the
    epochs after it must widen the header, not be dropped."""
    log = tmp_path / "train_log.csv"
    write_csv_row(log, {"phase": "val", "epoch": 0, "val_rmse": 0.9})
    write_csv_row(log, {"phase": "val", "epoch": 1, "loss": 2.2, "seconds": 21.5,
                        "val_rmse": 0.89})
    write_csv_row(log, {"phase": "val", "epoch": 2, "loss": 2.1, "seconds": 20.0,
                        "val_rmse": 0.88})
    with log.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert [r["loss"] for r in rows] == ["", "2.2", "2.1"]
    assert [r["seconds"] for r in rows] == ["", "21.5", "20.0"]
    assert not (tmp_path / "train_log.csv.tmp").exists()


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[meta]\ninner_stepz = 2\n")
    with pytest.raises(ConfigError, match=r"meta\.inner_stepz"):
        load_config(bad)
    bad.write_text("[meta]\ninner_steps = -1\n")
    with pytest.raises(ConfigError, match=r"meta\.inner_steps"):
        load_config(bad)
    bad.write_text("[train]\nlr = \"fast\"\n")
    with pytest.raises(ConfigError, match=r"train\.lr"):
        load_config(bad)
    bad.write_text("[trainer]\nlr = 1\n")
    with pytest.raises(ConfigError, match="trainer"):
        load_config(bad)
    for name in ("default.toml", "quick.toml"):
        load_config(ROOT / "configs" / name)


def test_prior_gate_starts_at_the_closed_form_bases(catalog: Dataset) -> None:
    cfg = _cfg()
    assert cfg.model.prior_gate
    model = GraphMetaRecommender(cfg)
    phase = _Phase(model, training_view(catalog), cfg, torch.device("cpu"))
    net = model.net
    assert net is not None and net.prior_gate is not None
    item_prior, user_prior = net.priors(phase.data)
    torch.testing.assert_close(item_prior, net.item_base)
    torch.testing.assert_close(user_prior, net.user_base)
    cold = phase.has_rating == 0
    assert cold.any() and net.item_base[cold].abs().sum() > 0  # new items get a real prior
    batch = phase.sampler.batch(np.random.default_rng(0), phase.sampler.task_users, 16)
    u_ep, i_ep = episode_tensors(batch, torch.device("cpu"))
    warm = phase.has_rating * torch.as_tensor(~batch.cold_items, dtype=torch.float32)
    items, users = net.states(phase.data, warm)
    (net.user_loss(u_ep, items, users) + net.item_loss(i_ep, items, users)).backward()
    assert net.prior_gate.grad is not None and net.prior_gate.grad.abs().sum() > 0
    ungated = GraphMetaNet(phase.data, cfg.replace(**{"model.prior_gate": False}), mu=3.0)
    assert ungated.prior_gate is None
    assert not torch.equal(ungated.priors(phase.data)[0], ungated.item_base)


def test_item_prior_row_weights_select_the_rows_it_is_fitted_on(catalog: Dataset) -> None:
    view = training_view(catalog)
    ids = list(view.items.index.astype(str))
    counts = view.train.groupby("item_id", observed=True).size()
    counts.index = counts.index.astype(str)
    n = counts.reindex(ids).fillna(0).to_numpy(dtype=np.float64)
    rng = np.random.default_rng(0)
    targets = rng.normal(size=(len(ids), 3))
    subset = (n > 0) & (rng.random(len(ids)) < 0.5)
    rho = np.where(subset, 1.0, 1e-12)
    weighted = linear_prior(view.spec.items, view.items, n, targets, 10.0, weight="count",
                            row_weights=rho)
    # the same map fitted on the subset alone (weights are normalised to mean 1 over the fit
    # rows, so the subset alone sees alpha scaled by |subset| / |rated|)
    feats = side_features(view.spec.items, view.items, n > 0)
    alone = _RidgeMap(feats, subset, n[subset]).predict(
        targets[subset], 10.0 * subset.sum() / (n > 0).sum())
    np.testing.assert_allclose(weighted, alone, rtol=1e-5, atol=1e-6)
    plain = linear_prior(view.spec.items, view.items, n, targets, 10.0, weight="count")
    assert np.abs(plain - alone).max() > 1e-2
    w = release_weights(view, ids, 4.0)
    assert w is not None and w.min() >= 1.0 and w.max() <= np.exp(4.0) + 1e-9
    assert release_weights(view, ids, 0.0) is None


def test_side_features_end_with_the_sparse_hashed_text_bag() -> None:
    table = TableSpec(file="items.csv", id="item_id", columns={
        "year": ColumnSpec("year", "numeric"),
        "plot": ColumnSpec("plot", "text"),
        "tags": ColumnSpec("tags", "multi", sep="|"),
    })
    frame = pd.DataFrame({"year": [1990.0, np.nan, 2000.0],
                          "plot": ["A boy and his toys", None, "Toys come to life"],
                          "tags": ["pixar|family", "", "pixar"]})
    text = hashed_text(table, frame, text_dim=64)
    assert sp.issparse(text) and text.shape == (3, 64)
    np.testing.assert_allclose(sp.linalg.norm(text, axis=1), [1.0, 0.0, 1.0])
    # the dense x_text of the encoder is the same bag
    np.testing.assert_allclose(encode_features(table, frame, text_dim=64)["x_text"].numpy(),
                               text.toarray(), rtol=1e-6)
    feats = side_features(table, frame, np.ones(3, bool), text_dim=64)
    # z-score + missing flag of year, then the 64 buckets
    assert feats.shape == (3, 2 + 64)
    np.testing.assert_allclose(feats[:, 2:].toarray(), text.toarray())
    assert side_features(table, frame, np.ones(3, bool)).shape == (3, 2 + 2048)
    assert hashed_text(table, frame, text_dim=0).shape == (3, 0)


def test_als_per_coordinate_precision_is_the_user_step(catalog: Dataset) -> None:
    cfg = _cfg(**{"meta.init_precision": 8.0, "meta.init_precision_bias": 1.5})
    assert init_precisions(cfg) == [1.5] + [8.0] * cfg.model.dim
    model = GraphMetaRecommender(cfg)
    phase = _Phase(model, training_view(catalog), cfg, torch.device("cpu"))
    idx = phase.index
    reg = np.array(init_precisions(cfg))
    mu, items, users = als(idx, cfg.model.dim, reg, 3, 0)
    u = int(np.bincount(idx.user).argmax())
    sel = idx.user == u
    x = np.concatenate([np.ones((sel.sum(), 1)), items[idx.item[sel], 1:]], axis=1)
    t = idx.rating[sel] - mu - items[idx.item[sel], 0]
    expected = np.linalg.solve(x.T @ x + np.diag(reg), x.T @ t)
    np.testing.assert_allclose(users[u], expected, rtol=1e-8, atol=1e-10)
    _, _, scalar = als(idx, cfg.model.dim, 8.0, 3, 0)
    assert not np.allclose(scalar[u, 0], users[u, 0])  # the bias precision is used


def test_untrained_model_wins_early_stopping_when_training_does_not_help(
        catalog: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    import graph_meta.fitting.train as tt

    for scores, best in (([0.5, 0.9, 0.8, 0.95, 0.99, 0.97], 0),
                         ([0.9, 0.6, 0.7, 0.8, 0.85, 0.9], 1)):
        seq = iter(scores)

        def fake_validate(self: _Phase, val: Dataset, seq=seq) -> dict[str, float]:
            self.model.build_cache(self.data_dev, self.index)
            return {"val_rmse": next(seq)}

        monkeypatch.setattr(tt._Phase, "validate", fake_validate)
        cfg = _cfg(**{"train.validate": True, "train.val_epoch0": True, "train.epochs": 5,
                      "train.patience": 1, "train.val_max_tasks": 50})
        model = GraphMetaRecommender(cfg).fit(catalog)
        assert model.history[0]["epoch"] == 0
        assert model.fit_info["val_best_epoch"] == best
        refit = [h for h in model.history if h["phase"] == "refit"]
        assert len(refit) == best
        assert model.fit_info["epochs_run"] == len(model.history) - 1
        task = catalog.tasks["item_cold"][0]
        assert np.isfinite(model.predict(task.user_id, task.support,
                                         [i for i, _ in task.query])).all()


def test_ablation_rows_are_valid_configs_and_fine_tuning_adapts(
        fitted: GraphMetaRecommender, catalog: Dataset) -> None:
    names = [name for name, _, _ in ABLATIONS]
    assert len(set(names)) == len(names) and all(n.startswith("graph-meta (") for n in names)
    for _, overrides, _ in ABLATIONS:
        Config().replace(**overrides)  # raises on a bad key or value
    saved = {k: fitted.cache[k].copy() for k in ("lr_theta", "lr_head")}
    try:
        task = catalog.tasks["user_cold"][1]
        s_items = [i for i, _ in task.support]
        y = np.array([r for _, r in task.support])
        fine_tune_steps(fitted, 3, 0.0)
        none = np.mean((fitted.predict(task.user_id, task.support, s_items) - y) ** 2)
        fine_tune_steps(fitted, 3, 0.05)
        assert fitted.cache["lr_theta"].shape == (3, fitted.cache["item_states"].shape[1])
        tuned = np.mean((fitted.predict(task.user_id, task.support, s_items) - y) ** 2)
        assert tuned < none
    finally:
        fitted.cache.update(saved)


def test_trains_from_a_neo4j_snapshot_like_from_the_folder(catalog: Dataset,
                                                          neo4j_store_factory) -> None:
    """``fit(store=...)`` trains on the server's snapshot: the same graph as the folder's, so
    the same model; a store that does not hold the dataset is refused."""
    import pandas as pd

    neo = neo4j_store_factory(catalog.spec)
    neo.ingest(catalog)
    cfg = _cfg(**{"train.epochs": 1})
    torch.manual_seed(0)
    from_folder = GraphMetaRecommender(cfg).fit(catalog)
    torch.manual_seed(0)
    from_neo4j = GraphMetaRecommender(cfg).fit(catalog, store=neo)
    assert from_neo4j.item_ids == from_folder.item_ids
    task = catalog.tasks["user_item_cold"][0]
    q = [i for i, _ in task.query]
    np.testing.assert_allclose(from_neo4j.predict(task.user_id, task.support, q),
                               from_folder.predict(task.user_id, task.support, q), atol=1e-4)
    row = catalog.train.drop_duplicates(["user_id", "item_id"], keep="last").iloc[0]
    changed = 1.0 if row["rating"] != 1.0 else 5.0
    neo.add_ratings([str(row["user_id"])], [str(row["item_id"])], [changed])
    with pytest.raises(ValueError, match=f"differ.*{row['item_id']}"):
        GraphMetaRecommender(cfg).fit(catalog, store=neo)  # same pairs, one rating changed
    neo.add_items(pd.DataFrame({"category": [catalog.items["category"].iloc[0]]},
                               index=["not-in-the-folder"]))
    with pytest.raises(ValueError, match="not-in-the-folder"):
        GraphMetaRecommender(cfg).fit(catalog, store=neo)
