"""graph-meta's implicit model: graph messages, planted preferences, train/evaluate commands."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from click.testing import CliRunner

from graph_meta.eval.protocol import training_view
from graph_meta.eval.ranking import evaluate_implicit
from graph_meta.implicit import GraphMetaImplicit, path_messages
from loaders.folder import write_dataset
from loaders.synthetic_implicit import generate_implicit_catalog, planted_segments
from training.cli import main


def test_path_messages_leave_the_item_out() -> None:
    rng = np.random.default_rng(0)
    inc = sp.csr_matrix((rng.random((30, 6)) < 0.3).astype(float))
    target = rng.normal(size=(30, 3))
    trained = rng.random(30) < 0.7
    msg, has = path_messages(inc, target, trained)
    dense = inc.toarray() > 0
    for i in range(30):
        per = []
        for a in np.flatnonzero(dense[i]):
            others = [j for j in np.flatnonzero(dense[:, a]) if j != i and trained[j]]
            if others:
                per.append(target[others].mean(axis=0))
        assert has[i] == bool(per)
        np.testing.assert_allclose(msg[i], np.mean(per, axis=0) if per else 0.0, atol=1e-12)


def test_the_prior_shrinks_a_paths_contrast_without_shrinking_the_mean() -> None:
    """Small groups, noisy targets: a group's message (its other members' mean) says a little
    about a member, so least squares shrinks the path's weight; the catalogue mean beside it
    keeps the offset the targets share, which a path weight below 1 alone would shrink too."""
    from graph_meta.implicit_prior import CATALOGUE_MEAN, side_prior

    rng = np.random.default_rng(3)
    n, groups = 3000, 1000
    group = rng.integers(0, groups, n)
    offset = np.array([3.0, -2.0])
    target = offset + rng.normal(0.0, 0.5, (groups, 2))[group] + rng.normal(0.0, 1.0, (n, 2))
    trained = np.arange(n) < 2400
    inc = sp.csr_matrix((np.ones(n), (np.arange(n), group)), shape=(n, groups))
    names, beta, prior, _ = side_prior(sp.csr_matrix((n, 0)), trained, np.ones(n), target,
                                       [("group", ("inc", inc))], 1.0)
    assert names == ["side-feature ridge", "group", CATALOGUE_MEAN]
    assert 0.05 < beta[1] < 0.6  # the contrast shrunk
    assert beta[1] + beta[2] == pytest.approx(1.0, abs=0.05)  # the offset kept
    grouped = ~trained & np.isin(group, group[trained])
    np.testing.assert_allclose(prior[~trained].mean(axis=0), offset, atol=0.1)
    # the prior beats the plain mean on the new rows that have group-mates
    err_prior = ((prior - target)[grouped] ** 2).mean()
    err_mean = ((target[trained].mean(axis=0) - target)[grouped] ** 2).mean()
    assert err_prior < err_mean


def test_the_score_metric_fits_the_weights_to_the_users_scores() -> None:
    """beta in the metric X^T X + lambda I is the least-squares fit of the scores x_u^T g_j
    (and sqrt(lambda) g_j) to x_u^T y_j over every user, each row weighted by w_j."""
    from graph_meta.implicit_prior import _combine_weights, score_metric

    rng = np.random.default_rng(5)
    n, n_users, d, k, reg = 30, 12, 4, 3, 0.5
    x = rng.normal(size=(n_users, d))
    blocks = [rng.normal(size=(n, d)) for _ in range(k)]
    target = rng.normal(size=(n, d))
    rows = np.flatnonzero(rng.random(n) < 0.7)
    w = rng.uniform(0.5, 2.0, n)
    beta = _combine_weights(blocks, target, rows, w[rows], ridge=1e-12,
                            metric=score_metric(x, reg))
    lift = np.vstack([x, np.sqrt(reg) * np.eye(d)])  # scores, then the lambda part
    design = np.concatenate([np.stack([np.sqrt(w[j]) * lift @ blk[j] for blk in blocks], 1)
                             for j in rows])
    wanted = np.concatenate([np.sqrt(w[j]) * lift @ target[j] for j in rows])
    np.testing.assert_allclose(beta, np.linalg.lstsq(design, wanted, rcond=None)[0],
                               rtol=1e-8)


def test_the_score_metric_trusts_the_path_right_where_the_users_look(monkeypatch) -> None:
    """Every user's factors lie along the first axis. Path "sharp" is exact there and noisy
    along the second, path "flat" the other way round: the identity prefers "flat", the
    users' scores (only the first axis reaches one) prefer "sharp"."""
    import graph_meta.implicit_prior as prior_module

    rng = np.random.default_rng(7)
    n, n_users = 400, 60
    target = rng.normal(size=(n, 2))
    blocks = {"sharp": target + np.c_[rng.normal(0, 0.05, n), rng.normal(0, 3.0, n)],
              "flat": target + np.c_[rng.normal(0, 1.0, n), rng.normal(0, 0.05, n)]}
    # each path's messages are its noisy copy of the targets, whatever the sources
    monkeypatch.setattr(prior_module, "_messages", lambda op, target, sources: blocks[op[0]])
    x = np.c_[rng.normal(1.0, 0.3, n_users), np.zeros(n_users)]

    def beta(metric: np.ndarray | None) -> dict[str, float]:
        names, b, _, _ = prior_module.side_prior(
            sp.csr_matrix((n, 0)), np.ones(n, bool), np.ones(n), target,
            [(p, (p, None)) for p in blocks], 1.0, metric=metric)
        return dict(zip(names, b, strict=True))

    identity = beta(None)
    scores = beta(prior_module.score_metric(x, 0.1))
    assert identity["flat"] > identity["sharp"]
    assert scores["sharp"] > 0.9 and scores["flat"] < 0.1


def test_the_score_metric_is_the_default_and_can_be_turned_off() -> None:
    ds = planted_segments()
    fitted = {m: GraphMetaImplicit(factors=8, reg=1.0, alpha=5.0, tune=False,
                                   backend="numpy", prior_metric=m).fit(ds)
              for m in ("scores", "euclidean")}
    assert GraphMetaImplicit().prior_metric == "scores"
    assert fitted["scores"].params["prior_metric"] == "scores"
    # same warm states, other weights: only the items without training rows move
    np.testing.assert_allclose(fitted["scores"].y_trained, fitted["euclidean"].y_trained)
    assert fitted["scores"].params["item_paths"] != fitted["euclidean"].params["item_paths"]
    trained = fitted["scores"].data.item_in_train
    np.testing.assert_allclose(fitted["scores"].y[trained], fitted["euclidean"].y[trained])
    assert not np.allclose(fitted["scores"].y[~trained], fitted["euclidean"].y[~trained])
    # more factors than users and no ridge: X^T X is singular, the fit still goes through
    wide = GraphMetaImplicit(factors=240, reg=0.0, iters=2, tune=False, backend="numpy").fit(ds)
    assert np.isfinite(wide.y).all()
    with pytest.raises(ValueError, match="prior_metric must be one of"):
        GraphMetaImplicit(prior_metric="cosine")


def test_planted_preference_far_above_chance() -> None:
    ds = planted_segments()
    model = GraphMetaImplicit(factors=8, reg=1.0, alpha=5.0, tune=False, backend="numpy")
    res = evaluate_implicit(model, ds)
    for scenario, block in res["scenarios"].items():
        assert block["recall@20"] > 0.9, (scenario, block)
        assert block["recall@20"] > 3 * min(1.0, 20 / block["pool_size"])
    # the category path carries the new items' factors
    assert model.params["item_paths"]["Item-Category-Item"] > 0.3


def test_tuned_model_beats_chance_on_the_shop_and_round_trips(tmp_path: Path) -> None:
    shop = generate_implicit_catalog(seed=6).dataset
    model = GraphMetaImplicit(quick=True, backend="numpy", seed=1)
    res = evaluate_implicit(model, shop, support_k=[0, None])
    for s, factor in (("warm", 3), ("user_cold", 3), ("item_cold", 1.5)):
        block = res["scenarios"][s]  # cold pools are small (~100 items, chance ~0.2)
        assert block["recall@20"] > factor * min(1.0, 20 / block["pool_size"]), (s, block)
    assert {"support_weight", "popularity_weight", "item_paths"} <= set(model.params)
    back = GraphMetaImplicit.load(model.save(tmp_path / "m.pkl"))
    task = shop.tasks["user_cold"][0]
    items = list(shop.items.index[:50])
    sup = [i for i, _ in task.support]
    np.testing.assert_array_equal(back.score_items(task.user_id, sup, items),
                                  model.score_items(task.user_id, sup, items))


def _whole_catalogue_recall(model: GraphMetaImplicit, shop) -> dict[str, float]:
    """recall@20 of every task ranked over the whole catalogue (training positives and
    support left out), apart for tasks whose queries are items with and without training
    rows."""
    trained = model.data.item_in_train
    out: dict[str, list[float]] = {"items with rows": [], "new items": []}
    for tasks in shop.tasks.values():
        for task in tasks:
            query = model.data.items_of([str(i) for i, _ in task.query])
            support = [str(i) for i, _ in task.support]
            scores = model.score_all_items(task.user_id, support)
            scores[np.concatenate([model.data.history(task.user_id)[0],
                                   model._support(support)])] = -np.inf
            top = np.argsort(-scores, kind="stable")[:20]
            key = "new items" if (~trained[query]).mean() > 0.5 else "items with rows"
            out[key].append(np.isin(query, top).sum() / min(len(query), 20))
    return {k: float(np.mean(v)) for k, v in out.items()}


def test_a_mixed_list_interleaves_the_two_kinds_by_the_offset_the_carve_chose() -> None:
    """Items with training rows and new ones are scored on their own states; one offset,
    chosen on the carve by whole-catalogue recall@20, sets how they interleave. Without it
    (offset 0) new items, whose factors come from the prior, crowd a list."""
    shop = generate_implicit_catalog(seed=6).dataset
    net = []
    for seed in (0, 1, 2):
        model = GraphMetaImplicit(quick=True, backend="numpy", seed=seed).fit(shop)
        delta = model.mixed_offset
        assert delta != 0.0 and model.params["mixed_offset"] == pytest.approx(delta, abs=1e-5)
        assert model.params["pseudo_mixed_recall@20_chosen"] > model.params[
            "pseudo_mixed_recall@20_at_0"]
        trained = model.data.item_in_train
        new = np.flatnonzero(~trained)
        ids = [str(model.data.item_ids[i]) for i in new]
        task = shop.tasks["user_cold"][0]
        x_new = model.user_factors(task.user_id, [], new_items=True)
        np.testing.assert_allclose(  # a pool of new items alone: the order tuned for it
            model.score_items(task.user_id, [], ids),
            model.y[new] @ x_new + model.popularity_weight * model.cold_bias[new] + delta)
        np.testing.assert_allclose(model.score_all_users(ids[0])[model.user_ids.index(
            task.user_id)], model.score_items(task.user_id, [], ids[:1])[0])
        tuned = _whole_catalogue_recall(model, shop)
        model.mixed_offset = 0.0
        untuned = _whole_catalogue_recall(model, shop)
        # on the held-out tasks, not the carve: the offset trades the two kinds' recall,
        # weighed by the share of positives the model expects on new items
        share = model.params["mixed_new_share"]
        assert 0.05 < share < 0.5
        assert tuned["items with rows"] > untuned["items with rows"]
        net.append((1 - share) * (tuned["items with rows"] - untuned["items with rows"])
                   - share * (untuned["new items"] - tuned["new items"]))
    # one carve's choice may overshoot a little; over three seeds the offset gains
    assert np.mean(net) > 0.01, net


@pytest.mark.slow
def test_train_and_evaluate_commands_on_an_implicit_folder(tmp_path: Path) -> None:
    cat = generate_implicit_catalog(n_users=400, n_items=120, n_interactions=7000, seed=7)
    data = write_dataset(cat.dataset, tmp_path / "shop")
    runner = CliRunner()
    r = runner.invoke(main, ["train", str(data), "--out", str(tmp_path / "run"), "--quick"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "run" / "implicit_model.pkl").is_file()
    r = runner.invoke(main, ["evaluate", str(data), "--run", str(tmp_path / "run"), "--out",
                             str(tmp_path / "res.json"), "--support-k", "0,all"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "res.json").read_text())
    assert res["model"] == "graph-meta" and res["protocol"] == "implicit"
    assert "recall@20" in r.output and "RMSE" not in r.output


def test_fit_logs_each_stage_with_its_time(planted_shop,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """``graph-meta -v train`` on a large implicit folder says what it is doing: the ALS,
    each tuning stage (what it chose, how long it took) and the final build, in order."""
    with caplog.at_level(logging.INFO, logger="graph_meta.implicit"):
        GraphMetaImplicit(quick=True, backend="numpy", seed=1).fit(training_view(planted_shop))
    lines = [r.getMessage() for r in caplog.records if r.name == "graph_meta.implicit"]
    stages = ["fitting on ", "ALS tuned in", "tuning: carved pseudo-tasks {'warm': ",
              "tuning: ALS and priors on the carve", "tuning: fold-in (s ",
              "tuning: own fold-in per kind of request", "tuning: new items: graph mix",
              "tuning: attribute-link weights", "tuning: mixed pools' offset and exposure",
              "priors and links built on the whole training set in"]
    at = [next((i for i, line in enumerate(lines) if line.startswith(stage)), -1)
          for stage in stages]
    assert -1 not in at, (stages[at.index(-1)], lines)
    assert at == sorted(at), lines
    assert all(line.endswith(" s)") for line in lines if line.startswith("tuning: "))


def test_each_scenario_gets_the_fold_in_its_own_pseudo_tasks_chose(monkeypatch) -> None:
    import graph_meta.implicit as implicit_module

    monkeypatch.setattr(implicit_module, "MIN_SCENARIO_TASKS", 20)
    shop = generate_implicit_catalog(seed=6).dataset
    model = GraphMetaImplicit(quick=True, backend="numpy", seed=1).fit(shop)
    choices = model.params["fold_choices"]
    assert {"warm", "user_cold_few", "user_cold"} <= set(choices)
    pooled = {False: (model.support_weight, model.fold_reg),
              True: (model.cold_support_weight, model.cold_fold_reg)}
    for scenario, (s, reg) in choices.items():
        key = f"pseudo_{scenario}_recall@20"
        tried = [row for row in model.params["inner_grid_scores"] if key in row]
        assert len(tried) == 3  # the quick grid: s in {1, 3, 8}, lambda the ALS's
        best = max(tried, key=lambda row: row[key])  # the first among equals
        best_pair = (best[f"{scenario}_support_weight"],
                     None if best[f"{scenario}_fold_reg_factor"] is None
                     else best[f"{scenario}_fold_reg_factor"] * model.reg)
        # the scenario's best, or the pooled pair where the carve cannot tell them apart
        assert (s, reg) in (best_pair, pooled[scenario in ("item_cold", "user_item_cold")])
        has_history, new_items = scenario in ("warm", "item_cold"), scenario in (
            "item_cold", "user_item_cold")
        size = 3 if scenario == "user_cold_few" else None  # a new user with 3 support items
        assert model.fold_setting(has_history, new_items, size) == (s, reg)


def test_a_scenario_choice_moves_only_its_own_kind_of_request() -> None:
    ds = planted_segments()
    model = GraphMetaImplicit(factors=8, reg=1.0, alpha=5.0, tune=False,
                              backend="numpy").fit(ds)
    warm_user = next(u for u in model.data.user_ids if len(model.data.history(u)[0]))
    new_user = next(u for u in model.data.user_ids if not len(model.data.history(u)[0]))
    support = [str(i) for i in model.data.item_ids[:3]]
    before = {(u, new): model.user_factors(u, support, new_items=new)
              for u in (warm_user, new_user) for new in (False, True)}
    model.fold_choices = {"user_cold": (8.0, 0.01)}
    after = {key: model.user_factors(key[0], support, new_items=key[1]) for key in before}
    for key, state in before.items():
        if key == (new_user, False):
            assert not np.allclose(after[key], state)
        else:
            np.testing.assert_array_equal(after[key], state)
