"""Training on large catalogues: the refit's ALS warm-started from the validation phase's item
states, epochs bounded by `train.epoch_users`, and the blocked ALS solves and history sums
(no array as long as the ratings times the state width)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import graph_meta.fitting.als as als_mod
from graph_meta.config import ConfigError, load_config
from graph_meta.dataset import Dataset
from graph_meta.eval.protocol import carve_validation, training_view
from graph_meta.fitting.als import als, segment_sums
from graph_meta.fitting.train import _Phase, _warm_items, refit_als_sweeps
from graph_meta.model import GraphMetaRecommender
from graph_meta.nn.net import init_precisions


def _loss(index, mu: float, items: np.ndarray, users: np.ndarray, reg: np.ndarray) -> float:
    """The biased-MF objective ALS descends."""
    pred = (mu + items[index.item, 0] + users[index.user, 0]
            + np.einsum("ij,ij->i", items[index.item, 1:], users[index.user, 1:]))
    return float(((index.rating - pred) ** 2).sum() + (reg * items ** 2).sum()
                 + (reg * users ** 2).sum())


def test_auto_warm_starts_only_above_the_sampling_limit(catalog: Dataset) -> None:
    cfg = load_config(None)
    phase_data = _Phase(GraphMetaRecommender(cfg), training_view(catalog), cfg,
                        torch.device("cpu")).data
    nodes = int(phase_data["User"].num_nodes) + int(phase_data["Item"].num_nodes)
    assert refit_als_sweeps(load_config(None, **{"train.auto_sample_nodes": nodes}),
                            phase_data) is None  # movielens-sized graphs: as before
    assert refit_als_sweeps(load_config(None, **{"train.auto_sample_nodes": nodes - 1}),
                            phase_data) == 5  # 20 // 4
    assert refit_als_sweeps(load_config(None, **{"train.auto_sample_nodes": nodes - 1,
                                                 "train.als_iters": 8}), phase_data) == 3
    assert refit_als_sweeps(load_config(None, **{"train.refit_als_iters": 2}), phase_data) == 2
    with pytest.raises(ConfigError, match="refit_als_iters"):
        load_config(None, **{"train.refit_als_iters": -2})


def test_warm_items_follow_the_graph_order(catalog: Dataset) -> None:
    cfg = load_config(None)
    data = _Phase(GraphMetaRecommender(cfg), training_view(catalog), cfg,
                  torch.device("cpu")).data
    ids = [str(i) for i in data.node_ids["Item"]]
    states = np.arange(len(ids) * 3, dtype=np.float64).reshape(-1, 3)
    shuffled = np.random.default_rng(0).permutation(len(ids))[:-4]  # 4 items unknown
    items0 = _warm_items([ids[k] for k in shuffled], states[shuffled], data, seed=0)
    np.testing.assert_array_equal(items0[shuffled], states[shuffled])
    missing = np.setdiff1d(np.arange(len(ids)), shuffled)
    assert np.all(items0[missing, 0] == 0.0)  # a fresh start: zero bias, small vector
    assert 0 < np.abs(items0[missing, 1:]).max() < 1.0


def test_a_few_warm_sweeps_reach_the_fresh_fit(catalog: Dataset) -> None:
    # the refit starts from the validation phase's states (fitted on the carved ratings): a
    # quarter of the sweeps gets within 1 % of the objective of a fresh fit with all of them
    cfg = load_config(None)
    reg = np.array(init_precisions(cfg))
    carved = carve_validation(catalog, seed=0)
    val = _Phase(GraphMetaRecommender(cfg), training_view(carved), cfg, torch.device("cpu"))
    full = _Phase(GraphMetaRecommender(cfg), training_view(catalog), cfg, torch.device("cpu"))
    _, val_items, _ = als(val.index, cfg.model.dim, reg, 20, 0)
    items0 = _warm_items([str(i) for i in val.data.node_ids["Item"]], val_items, full.data, 0)
    mu, fresh_items, fresh_users = als(full.index, cfg.model.dim, reg, 20, 0)
    fresh = _loss(full.index, mu, fresh_items, fresh_users, reg)
    _, warm_items, warm_users = als(full.index, cfg.model.dim, reg, 5, 0, items0=items0)
    warm = _loss(full.index, mu, warm_items, warm_users, reg)
    assert warm <= fresh * 1.01


def test_the_refit_starts_from_the_validation_states(catalog: Dataset,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import graph_meta.fitting.train as train_mod

    calls: list[tuple[int, np.ndarray | None]] = []
    real = train_mod.als

    def spy(index, dim, reg, iters, seed, **kw):
        out = real(index, dim, reg, iters, seed, **kw)
        if kw.get("edges") is None:  # the phases' full ALS, not an epoch's holdout refit
            calls.append((iters, kw.get("items0"), out[1]))
        return out

    monkeypatch.setattr(train_mod, "als", spy)
    quick = Path(__file__).resolve().parents[1] / "configs" / "quick.toml"
    cfg = load_config(quick, **{"train.epochs": 1, "train.als_iters": 8,
                                "train.refit_als_iters": 2, "train.refit": True})
    GraphMetaRecommender(cfg).fit(catalog)
    (val_iters, val_start, val_items), (refit_iters, refit_start, _) = calls
    assert (val_iters, val_start, refit_iters) == (8, None, 2)
    assert refit_start is not None
    # every item keeps its validation-phase state as its start (same catalogue, same order)
    np.testing.assert_array_equal(refit_start, val_items)


def test_epoch_users_bounds_the_users_of_an_epoch(catalog: Dataset,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import graph_meta.fitting.train as train_mod

    seen: list[int] = []
    real = train_mod._Phase.epoch

    def spy(self, *args, **kw):
        out = real(self, *args, **kw)
        seen.append(self.shard_users)
        return out

    monkeypatch.setattr(train_mod._Phase, "epoch", spy)
    quick = Path(__file__).resolve().parents[1] / "configs" / "quick.toml"
    GraphMetaRecommender(load_config(quick, **{"train.epochs": 2, "train.patience": 5,
                                               "train.epoch_users": 50})).fit(catalog)
    assert seen and all(n == 50 for n in seen)
    seen.clear()
    GraphMetaRecommender(load_config(quick, **{"train.epochs": 1})).fit(catalog)
    assert seen and all(n > 50 for n in seen)  # 0: every task user
    with pytest.raises(ConfigError, match="epoch_users"):
        load_config(None, **{"train.epoch_users": -1})


def test_blocked_als_equals_one_block(catalog: Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    index = _Phase(GraphMetaRecommender(load_config(None)), catalog, load_config(None),
                   torch.device("cpu")).index
    whole = als(index, 4, 3.0, 2, 0)
    monkeypatch.setattr(als_mod, "ROWS_PER_BLOCK", 7)  # many blocks, most rows mid-block
    blocked = als(index, 4, 3.0, 2, 0)
    assert whole[0] == blocked[0]
    for a, b in zip(whole[1:], blocked[1:], strict=True):
        np.testing.assert_array_equal(a, b)  # each row's solve is its own: bit for bit


def test_segment_sums(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    n, d, e = 40, 5, 600
    seg = rng.integers(0, n - 5, e)  # the last segments have no position
    x_all, t_all = rng.normal(size=(e, d)), rng.normal(size=e)
    calls: list[int] = []

    def rows_of(pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(pos))
        return x_all[pos], t_all[pos]

    outer, vec = segment_sums(seg, n, d, rows_of)
    assert calls == [e]
    ref_outer = np.zeros((n, d, d))
    ref_vec = np.zeros((n, d))
    for k in range(e):
        ref_outer[seg[k]] += np.outer(x_all[k], x_all[k])
        ref_vec[seg[k]] += x_all[k] * t_all[k]
    np.testing.assert_allclose(outer, ref_outer, atol=1e-12)
    np.testing.assert_allclose(vec, ref_vec, atol=1e-12)
    assert not outer[n - 5:].any() and not vec[n - 5:].any()
    calls.clear()
    monkeypatch.setattr(als_mod, "ROWS_PER_BLOCK", 32)
    blocked = segment_sums(seg, n, d, rows_of)
    # blocks of about 32 positions that never split a segment; the same sums bit for bit
    assert len(calls) > 10 and sum(calls) == e and max(calls) < 32 + np.bincount(seg).max()
    np.testing.assert_array_equal(blocked[0], outer)
    np.testing.assert_array_equal(blocked[1], vec)


def test_history_sums_not_kept_are_computed_when_read(catalog: Dataset, tmp_path: Path) -> None:
    cfg = load_config(None, **{
        "model.dim": 8, "model.hidden": 16, "model.layers": 1, "episodes.max_support": 20,
        "episodes.history_fanout": 32, "episodes.batch_users": 128,
        "episodes.batch_items": 16, "train.epochs": 1, "train.validate": False})
    torch.manual_seed(0)
    kept = GraphMetaRecommender(cfg).fit(catalog)
    torch.manual_seed(0)
    streamed = GraphMetaRecommender(cfg.replace(**{"model.history_sums_max_gb": 0.0})
                                    ).fit(catalog)
    assert kept.state.hist_a is not None and kept.state.hist_states is None
    assert streamed.state.hist_a is None and streamed.state.hist_states is not None
    users = np.arange(len(kept.user_ids))
    np.testing.assert_allclose(streamed.state.history_grams(users), kept.state.hist_a,
                               rtol=1e-12, atol=1e-12)

    def predictions(model: GraphMetaRecommender) -> np.ndarray:
        out = [model.score_all_users(catalog.tasks["item_cold"][0].query[0][0])]
        for task in catalog.tasks["warm"][:10]:
            out.append(model.predict(task.user_id, task.support, [i for i, _ in task.query]))
        return np.concatenate(out)

    np.testing.assert_allclose(predictions(streamed), predictions(kept), rtol=1e-8, atol=1e-8)
    # live ratings move item states; the history sums stay those of the fit-time states
    task = catalog.tasks["warm"][0]
    ratings = [(u, task.query[0][0], 5.0) for u in kept.user_ids[:30]]
    ratings += [(kept.user_ids[0], i, 1.0) for i in kept.item_ids[:5]]  # replaces some
    assert kept.observe(ratings) == streamed.observe(ratings) > 0
    moved = predictions(kept)
    np.testing.assert_allclose(predictions(streamed), moved, rtol=1e-8, atol=1e-8)
    loaded = GraphMetaRecommender.load(streamed.save(tmp_path / "model.pt"))
    assert loaded.state.hist_a is None
    loaded.observe(ratings)
    np.testing.assert_allclose(predictions(loaded), moved, rtol=1e-8, atol=1e-8)
