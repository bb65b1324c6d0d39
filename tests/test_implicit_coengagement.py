"""The implicit model's learned co-engagement links: the closed form, and where they act."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import scipy.sparse as sp

from graph_meta.implicit import GraphMetaImplicit
from graph_meta.implicit_coengagement import CoEngagement
from loaders.synthetic_implicit import generate_implicit_catalog


def test_links_are_the_closed_form_item_item_regression() -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((60, 14)) < 0.3).astype(float)
    x[:, 13] = 0.0  # an item nobody took: no links either way
    links = CoEngagement.fit(sp.csr_matrix(x * 3.0), l2=2.0, top_k=20)  # weights ignored
    taken = np.flatnonzero(x.sum(axis=0))
    p = np.linalg.inv(x[:, taken].T @ x[:, taken] + 2.0 * np.eye(len(taken)))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    want = np.zeros((14, 14))
    want[np.ix_(taken, taken)] = b
    np.testing.assert_allclose(links.links.toarray(), want, atol=1e-5)
    # a user's messages: one hop from each item taken, summed; past the fitted items, 0
    np.testing.assert_allclose(links.messages(np.array([2, 5, 5]), 16),
                               np.r_[want[2] + want[5], 0.0, 0.0], atol=1e-5)
    takers = sp.csr_matrix(x[:7])
    np.testing.assert_allclose(links.audience(takers, 4), x[:7] @ want[:, 4], atol=1e-5)


def test_top_k_keeps_each_items_strongest_in_links() -> None:
    rng = np.random.default_rng(1)
    x = sp.csr_matrix((rng.random((80, 30)) < 0.25).astype(float))
    full = CoEngagement.fit(x, l2=1.0, top_k=29).links.toarray()
    kept = CoEngagement.fit(x, l2=1.0, top_k=5).links.toarray()
    for j in range(30):
        nz = np.flatnonzero(kept[:, j])
        assert len(nz) == 5
        assert np.abs(full[nz, j]).min() >= np.sort(np.abs(full[:, j]))[-5] - 1e-12
        np.testing.assert_allclose(kept[nz, j], full[nz, j], atol=1e-6)


def test_a_catalogue_past_the_limit_goes_without_links() -> None:
    x = sp.csr_matrix(np.eye(6))
    assert CoEngagement.fit(x, l2=1.0, max_items=5) is None
    assert CoEngagement.fit(x, l2=1.0, max_items=6) is not None


@pytest.fixture(scope="module")
def shop_model() -> GraphMetaImplicit:
    shop = generate_implicit_catalog(seed=6).dataset
    return GraphMetaImplicit(factors=8, tune=False, backend="numpy",
                             coengagement_weight=0.5).fit(shop)


@contextmanager
def _with_weights(model: GraphMetaImplicit, weights: dict[str, float]) -> Iterator[None]:
    old = model.coengagement_weights
    model.coengagement_weights = weights
    try:
        yield
    finally:
        model.coengagement_weights = old


def test_links_move_only_items_with_training_rows_for_their_kind_of_user(shop_model) -> None:
    model = shop_model
    d = model.data
    trained = d.item_in_train
    ids = [str(i) for i in d.item_ids]
    new_user = next(u for u in d.user_ids if not len(d.history(u)[0]))
    warm_user = next(u for u in d.user_ids if len(d.history(u)[0]))
    support = [ids[k] for k in np.flatnonzero(trained)[:2]]
    links = model.coengagement.links.toarray()
    for user, kind in ((new_user, "user_cold"), (warm_user, "warm")):
        with _with_weights(model, {}):
            plain = model.score_items(user, support, ids)
        with _with_weights(model, {kind: 0.7}):
            scored = model.score_items(user, support, ids)
        taken = np.unique(np.concatenate([d.history(user)[0], d.items_of(support)]))
        want = plain + np.where(trained, 0.7 * links[taken].sum(axis=0), 0.0)
        np.testing.assert_allclose(scored, want, atol=1e-9)
        assert not np.allclose(scored[trained], plain[trained])
        other = "warm" if kind == "user_cold" else "user_cold"
        with _with_weights(model, {other: 0.7}):  # the other kind's weight: no effect
            np.testing.assert_array_equal(model.score_items(user, support, ids), plain)


def test_a_taken_items_strongest_link_climbs_the_list(shop_model) -> None:
    model = shop_model
    d = model.data
    trained = np.flatnonzero(d.item_in_train)
    links = model.coengagement.links.toarray()
    new_user = next(u for u in d.user_ids if not len(d.history(u)[0]))
    ids = [str(d.item_ids[k]) for k in trained]
    climbed = 0
    for a in trained[:20]:
        b = int(np.argmax(links[a]))
        with _with_weights(model, {}):
            before = model.score_items(new_user, [str(d.item_ids[a])], ids)
        with _with_weights(model, {"user_cold": 1.0}):
            after = model.score_items(new_user, [str(d.item_ids[a])], ids)
        k = list(trained).index(b)
        climbed += (after > after[k]).sum() < (before > before[k]).sum()
    assert climbed >= 15


def test_audience_and_observed_positives_carry_the_links(shop_model) -> None:
    model = shop_model
    d = model.data
    trained = np.flatnonzero(d.item_in_train)
    item = str(d.item_ids[trained[3]])
    users = [str(u) for u in d.user_ids[:40]]
    watcher = next(u for u in users if len(d.history(u)[0]))
    observed = str(d.item_ids[int(np.argmax(model.coengagement.links.toarray()[:, trained[3]]))])
    try:
        model.observe([(watcher, observed)])
        audience = model.score_all_users(item)
        for u in users:
            assert audience[model.user_ids.index(u)] == pytest.approx(
                model.score_items(u, [], [item])[0], abs=1e-9)
        c, eta = model.coengagement_messages(watcher, [])
        hist = d.history(watcher)[0]
        taken = np.unique(np.r_[hist, d.items_of([observed])])
        np.testing.assert_allclose(c, model.coengagement.messages(taken, len(d.item_ids)))
        assert eta == 0.5
    finally:
        model._live_log().discard(watcher, observed)
        model.__dict__.pop("_state_cache", None)


def test_tuning_keeps_a_kinds_weight_only_where_its_pseudo_tasks_gain() -> None:
    shop = generate_implicit_catalog(seed=6).dataset
    model = GraphMetaImplicit(quick=True, backend="numpy", seed=1).fit(shop)
    log = model.params["inner_grid_scores"]
    baseline = {row["support_weight"]: row for row in log if "pseudo_recall@20" in row}
    assert baseline  # the pooled grid ran first
    assert set(model.coengagement_weights) == {"warm", "user_cold_few", "user_cold"}
    for kind in ("warm", "user_cold_few", "user_cold"):
        key = f"{kind}_coengagement_weight"
        tried = [row for row in log if key in row
                 and row.get("coengagement_l2") == model.coengagement_l2]
        assert [row[key] for row in tried] == [0.3, 1.0]  # the quick grid
        best = max(tried, key=lambda row: row[f"pseudo_{kind}_coengagement_recall@20"])
        assert model.coengagement_weights.get(kind, 0.0) in (0.0, best[key])
    # on this shop the links gain for known users, and the held-out tasks agree
    assert model.coengagement_weights["warm"] > 0
    from graph_meta.eval.ranking import evaluate_implicit

    tuned = evaluate_implicit(model, shop, scenarios=["warm", "user_cold"], fit=False)
    model.coengagement_weights = {}
    plain = evaluate_implicit(model, shop, scenarios=["warm", "user_cold"], fit=False)
    assert tuned["scenarios"]["warm"]["recall@20"] > plain["scenarios"]["warm"]["recall@20"]


def test_tuning_skips_links_the_whole_catalogue_is_too_large_for(monkeypatch) -> None:
    """A training set past the links' limit whose carve is under it (the carve holds out the
    newest items): the tuning neither fits links on the carve nor weighs them, so its other
    choices are made for the model it tunes, which has none."""
    import graph_meta.implicit as implicit_module
    from graph_meta.implicit_baselines.data import interactions

    shop = generate_implicit_catalog(seed=6).dataset
    limit = int(interactions(shop).item_in_train.sum()) - 1  # the carve holds fewer
    monkeypatch.setattr(implicit_module, "COENGAGEMENT_MAX_ITEMS", limit, raising=False)
    fitted: list[int] = []
    real_fit = CoEngagement.fit.__func__

    def counting_fit(cls, positives, **kw):
        fitted.append(int((np.asarray(positives.sum(axis=0)).ravel() > 0).sum()))
        return real_fit(cls, positives, **{**kw, "max_items": limit})

    monkeypatch.setattr(CoEngagement, "fit", classmethod(counting_fit))
    model = GraphMetaImplicit(quick=True, backend="numpy", seed=1).fit(shop)
    assert fitted == []
    assert model.coengagement is None and model.params["coengagement_links"] is None
    assert not any(model.coengagement_weights.values())
    assert not any("coengagement_l2" in row for row in model.params["inner_grid_scores"])
    # at the limit, the same tuning fits and weighs them on the carve (fewer items), then on
    # the whole training set
    limit += 1
    monkeypatch.setattr(implicit_module, "COENGAGEMENT_MAX_ITEMS", limit, raising=False)
    fitted.clear()
    model = GraphMetaImplicit(quick=True, backend="numpy", seed=1).fit(shop)
    assert min(fitted) < max(fitted) == limit and model.coengagement is not None
    assert any("coengagement_l2" in row for row in model.params["inner_grid_scores"])
