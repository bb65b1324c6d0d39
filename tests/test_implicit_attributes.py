"""The implicit model's learned attribute links: the closed form, a planted affinity between
attribute values carried to items nobody has taken, and where the model uses them."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from graph_meta.dataset import Dataset
from graph_meta.implicit import GraphMetaImplicit
from graph_meta.implicit_attributes import AttributeLinks, attribute_rows
from graph_meta.schema import DatasetSpec
from loaders.synthetic_implicit import generate_implicit_catalog


def _shop(makers: list[str], lines: list[str], positives: list[tuple[str, str]]) -> Dataset:
    """A hand-made implicit dataset: item ``i<k>`` has maker ``makers[k]`` and line
    ``lines[k]`` (two item node columns)."""
    spec = DatasetSpec.from_json({
        "name": "attribute-shop", "rating_scale": [0, 1], "train": "train.csv",
        "implicit": True,
        "users": {"file": "users.csv", "id": "user_id", "columns": {}},
        "items": {"file": "items.csv", "id": "item_id", "columns": {
            "maker": {"type": "categorical", "node": "Maker"},
            "line": {"type": "categorical", "node": "Line"}}}})
    items = pd.DataFrame({"maker": makers, "line": lines},
                         index=pd.Index([f"i{k}" for k in range(len(makers))], name="item_id"))
    users = sorted({u for u, _ in positives})
    train = pd.DataFrame(positives, columns=["user_id", "item_id"])
    train["rating"] = np.float32(1.0)
    return Dataset(spec, pd.DataFrame(index=pd.Index(users, name="user_id")), items, train)


def _planted(seed: int = 0) -> tuple[Dataset, list[str]]:
    """8 makers of 6 trained items each and one new item each (three lines across them all);
    4 groups of 60 users, group ``g`` taking about half of makers ``2g`` and ``2g + 1``'s
    items (and a few others)."""
    rng = np.random.default_rng(seed)
    makers = [f"m{k // 6}" for k in range(48)] + [f"m{k}" for k in range(8)]
    lines = [f"l{k % 3}" for k in range(48)] + ["l0"] * 8  # the new items share their line
    positives = []
    for u in range(240):
        g = u % 4
        for k in range(48):
            p = 0.5 if k // 6 in (2 * g, 2 * g + 1) else 0.03
            if rng.random() < p:
                positives.append((f"u{u}", f"i{k}"))
    return _shop(makers, lines, positives), [f"i{48 + k}" for k in range(8)]


def _positives(data: Dataset, ids: pd.Index) -> sp.csr_matrix:
    return sp.csr_matrix((np.ones(len(data.train)), (
        data.train.user_id.str[1:].astype(int), ids.get_indexer(data.train.item_id))),
        shape=(240, len(ids)))


def test_links_are_the_closed_form_value_value_regression() -> None:
    data, _ = _planted()
    ids = pd.Index(data.items.index)
    x = _positives(data, ids).toarray()
    links = AttributeLinks.fit(data, ids, sp.csr_matrix(x * 4.0), l2=5.0)  # weights ignored
    assert links is not None
    f = pd.get_dummies(data.items[["maker", "line"]]).to_numpy(dtype=float)
    names = [f"{c}_{v}" for c, v in links.keys]
    f = f[:, [list(pd.get_dummies(data.items[["maker", "line"]]).columns).index(n)
              for n in names]]
    u = np.minimum(1.0, x @ f)
    # column j of B: the ridge regression of value j's profile column on the others'
    b = np.zeros((len(names), len(names)))
    for j in range(len(names)):
        rest = np.arange(len(names)) != j
        a = u[:, rest]
        b[rest, j] = np.linalg.solve(a.T @ a + 5.0 * np.eye(len(names) - 1), a.T @ u[:, j])
    np.testing.assert_allclose(links.weights, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(links.features.toarray(), f)
    # a user's messages: the values of the items taken (each once), along B, averaged over
    # each target's values
    taken = np.array([0, 1, 50, 50])
    prof = np.minimum(1.0, f[taken].sum(axis=0))
    want = (f / f.sum(axis=1, keepdims=True)) @ (b.T @ prof)
    targets = np.arange(len(ids))
    np.testing.assert_allclose(links.messages(taken, targets), want, rtol=1e-4, atol=1e-6)
    takers = sp.csr_matrix(x[:9])
    np.testing.assert_allclose(links.audience(takers, 52),
                               np.minimum(1.0, x[:9] @ f) @ (b @ (f[52] / f[52].sum())),
                               rtol=1e-4, atol=1e-6)


def test_a_new_item_inherits_what_its_values_are_taken_with() -> None:
    data, new = _planted()
    ids = pd.Index(data.items.index)
    d_items = ids.get_indexer(new)
    links = AttributeLinks.fit(data, ids, _positives(data, ids), l2=10.0)
    assert links is not None
    # a newcomer who took one item of maker 2g: of the new items of the other makers, the
    # new one of maker 2g + 1 (the makers group g takes together) ranks first; chance: 1/7
    for g in range(4):
        scores = links.messages(np.array([ids.get_loc(f"i{12 * g}")]), d_items)
        others = [k for k in range(8) if k != 2 * g]
        assert max(others, key=lambda k: scores[k]) == 2 * g + 1
    # items nobody has taken stay out of the values' counts but get their rows
    assert links.features[d_items].sum() == 2 * len(new)


def test_a_multi_valued_column_gives_each_value_once() -> None:
    data, _ = _planted()
    spec = dataclasses.replace(data.spec, items=dataclasses.replace(
        data.spec.items, columns={**data.spec.items.columns, "line": dataclasses.replace(
            data.spec.items.columns["line"], type="multi", sep="|")}))
    items = data.items.copy()
    items.loc["i0", "line"] = "l0|l1| l0 |"
    rows, keys = attribute_rows(dataclasses.replace(data, spec=spec, items=items),
                                pd.Index(items.index))
    got = {keys[c] for c in rows[0].indices}
    assert got == {("maker", "m0"), ("line", "l0"), ("line", "l1")}
    assert rows[0].data.tolist() == [1.0, 1.0, 1.0]


def test_values_below_the_floor_are_left_out() -> None:
    data, _ = _planted()
    data.items.loc["i0", "line"] = "rare"
    ids = pd.Index(data.items.index)
    rows, keys = attribute_rows(data, ids)
    assert ("line", "rare") in keys and rows.shape == (56, 8 + 4)
    x = _positives(data, ids)
    links = AttributeLinks.fit(data, ids, x, l2=1.0)
    assert links is not None and ("line", "rare") not in links.keys
    assert len(links.keys) == 8 + 3
    assert AttributeLinks.fit(data, ids, x, l2=1.0, min_items=10_000) is None
    capped = AttributeLinks.fit(data, ids, x, l2=1.0, max_values=4)
    assert capped is not None and len(capped.keys) == 4


@pytest.fixture(scope="module")
def linked_model() -> GraphMetaImplicit:
    shop = generate_implicit_catalog(seed=6).dataset
    model = GraphMetaImplicit(factors=8, tune=False, backend="numpy").fit(shop)
    model.attribute_weights = {"item_cold": 0.4, "user_item_cold": 0.7}
    return model


def test_new_items_get_the_messages_by_kind_of_user(linked_model) -> None:
    model = linked_model
    d = model.data
    new = np.flatnonzero(~d.item_in_train)[:30]
    new_ids = [str(d.item_ids[k]) for k in new]
    warm_user = next(str(u) for u in d.user_ids if len(d.history(str(u))[0]))
    support = [str(d.item_ids[k]) for k in np.flatnonzero(d.item_in_train)[:2]]
    weights = dict(model.attribute_weights)
    for user, sup, kind in ((warm_user, [], "item_cold"),
                            ("stranger", support, "user_item_cold")):
        with_links = model.score_items(user, sup, new_ids)
        model.attribute_weights = {}
        plain = model.score_items(user, sup, new_ids)
        model.attribute_weights = weights
        hist, _, s = model._taken(user, sup)
        want = weights[kind] * model.attribute_links.messages(np.r_[hist, s], new)
        np.testing.assert_allclose(with_links - plain, want, atol=1e-9)
        assert np.abs(want).max() > 0
    # items with training rows are untouched
    warm_ids = [str(d.item_ids[k]) for k in np.flatnonzero(d.item_in_train)[:20]]
    model.attribute_weights = {}
    plain = model.score_items(warm_user, [], warm_ids)
    model.attribute_weights = weights
    np.testing.assert_array_equal(model.score_items(warm_user, [], warm_ids), plain)


def test_audience_matches_scoring_with_observed_positives(linked_model) -> None:
    model = linked_model
    d = model.data
    item = str(d.item_ids[np.flatnonzero(~d.item_in_train)[2]])
    users = [str(u) for u in d.user_ids[:40]]
    watcher = next(u for u in users if len(d.history(u)[0]))
    newcomer = next(u for u in users if not len(d.history(u)[0]))
    other_new = str(d.item_ids[np.flatnonzero(~d.item_in_train)[5]])
    try:
        model.observe([(watcher, other_new), (newcomer, other_new)])
        audience = model.score_all_users(item)
        for u in users:
            assert audience[model.user_ids.index(u)] == pytest.approx(
                model.score_items(u, [], [item])[0], abs=1e-6)  # float32 links
        term = model.attribute_links.audience(model._taken_matrix(),
                                              model.data.item_ids.get_loc(item))
        assert np.abs(term[[model.user_ids.index(u) for u in (watcher, newcomer)]]).min() > 0
    finally:
        for u in (watcher, newcomer):
            model._live_log().discard(u, other_new)
        model._refresh_live_items([other_new])


def test_added_items_get_their_values_and_survive_saving(linked_model, tmp_path) -> None:
    model = linked_model
    shop = generate_implicit_catalog(seed=6).dataset
    copy = GraphMetaImplicit.load(model.save(tmp_path / "m.pkl"))
    template = shop.items.iloc[[0, 1]].copy()
    template.index = pd.Index(["brand-new-a", "brand-new-b"], name=shop.items.index.name)
    items = pd.concat([shop.items, template])
    # an existing item's values edited in the table passed: the model's row stays
    before = copy.attribute_links.features[3].toarray()
    items.iloc[3, items.columns.get_loc("brand")] = "a brand nobody sells"
    grown = dataclasses.replace(shop, items=items)
    assert copy.add_items(grown) == ["brand-new-a", "brand-new-b"]
    links = copy.attribute_links
    assert links.features.shape[0] == len(copy.data.item_ids)
    np.testing.assert_array_equal(links.features[-2:].toarray(),
                                  links.features[[0, 1]].toarray())
    np.testing.assert_array_equal(links.features[3].toarray(), before)
    warm_user = next(str(u) for u in copy.data.user_ids if len(copy.data.history(str(u))[0]))
    old = [str(i) for i in model.data.item_ids[~model.data.item_in_train][:5]]
    np.testing.assert_allclose(copy.score_items(warm_user, [], old),
                               model.score_items(warm_user, [], old), atol=1e-12)
    assert np.isfinite(copy.score_items(warm_user, [], ["brand-new-a"])).all()


def test_tuning_keeps_a_kinds_weight_only_where_its_pseudo_tasks_gain() -> None:
    shop = generate_implicit_catalog(seed=6).dataset
    model = GraphMetaImplicit(quick=True, backend="numpy", seed=1).fit(shop)
    log = model.params["inner_grid_scores"]
    kinds = [k for k in ("item_cold", "user_item_cold")
             if any(f"{k}_attribute_weight" in row for row in log)]
    assert kinds  # the carve held enough new-item pseudo-tasks of some kind
    for kind in kinds:
        key = f"{kind}_attribute_weight"
        tried = [row for row in log if key in row]
        assert [row[key] for row in tried] == [0.0, 0.1, 0.3]  # none, then the quick grid
        recall = [row[f"pseudo_{kind}_attribute_recall@20"] for row in tried]
        chosen = model.attribute_weights[kind]
        # the weight kept is none, or the grid's best (ties at the log's rounding allowed)
        assert chosen == 0.0 or recall[tried.index(next(
            row for row in tried if row[key] == chosen))] == max(recall[1:])
        if chosen:
            assert max(recall[1:]) > recall[0]
    # the links are kept only where some weight was chosen
    if any(model.attribute_weights.values()):
        assert model.params["attribute_values"] == len(model.attribute_links.keys)
    else:
        assert model.attribute_links is None and model.params["attribute_values"] is None
