"""Relation files carry collaborative state (graph_meta.graph.relations): a node's prior moves
toward what its rated relation-file neighbours learned, by a weight fitted on rated nodes, and
a relation that carries nothing gets (close to) no weight."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from graph_meta.graph.relations import RelationPrior, relation_adjacency


def _circles(rng: np.random.Generator, n: int, size: int, d: int
             ) -> tuple[np.ndarray, sp.csr_matrix, np.ndarray]:
    """Nodes in circles of ``size`` sharing a state offset; each links to 4 circle mates."""
    circle = np.arange(n) // size
    offset = rng.normal(0.0, 1.0, (circle.max() + 1, d))
    src, dst = [], []
    for v in range(n):
        mates = np.flatnonzero((circle == circle[v]) & (np.arange(n) != v))
        for m in rng.choice(mates, 4, replace=False):
            src.append(v)
            dst.append(m)
    w = sp.csr_matrix((np.ones(len(src)), (src, dst)), shape=(n, n))
    return circle, w, offset[circle]


def test_a_new_nodes_prior_moves_toward_its_rated_neighbours_learned_states() -> None:
    rng = np.random.default_rng(0)
    n, d = 600, 3
    _, w, planted = _circles(rng, n, 12, d)
    targets = planted + rng.normal(0.0, 0.3, (n, d))
    counts = np.where(rng.random(n) < 0.8, 10.0, 0.0)  # 20 % new: no rating
    base = np.zeros((n, d))
    noise = sp.csr_matrix((np.ones(2 * n), (rng.integers(0, n, 2 * n),
                                            rng.integers(0, n, 2 * n))), shape=(n, n))
    adjacency = {"FRIEND_OF>": w, "FRIEND_OF<": w.T.tocsr(), "RANDOM>": noise}
    prior = RelationPrior.fit(adjacency, base, targets, counts)
    friends = prior.beta[prior.names.index("FRIEND_OF>")]
    assert (friends > 0.3).all(), prior.beta
    assert (np.abs(prior.beta[prior.names.index("RANDOM>")]) < 0.15).all(), prior.beta
    moved = prior.apply(adjacency, base, targets, counts)
    new = counts == 0
    err_before = np.mean((base[new] - planted[new]) ** 2)
    err_after = np.mean((moved[new] - planted[new]) ** 2)
    assert err_after < 0.5 * err_before, (err_before, err_after)
    # a node without rated neighbours keeps its side prior
    lonely = sp.csr_matrix((n, n))
    kept = prior.apply({"FRIEND_OF>": lonely, "FRIEND_OF<": lonely, "RANDOM>": lonely}, base,
                       targets, counts)
    np.testing.assert_array_equal(kept, base)


def test_a_new_node_reads_only_its_own_neighbours() -> None:
    rng = np.random.default_rng(1)
    n, d = 240, 2
    _, w, planted = _circles(rng, n, 12, d)
    targets = planted + rng.normal(0.0, 0.2, (n, d))
    counts = np.ones(n)
    counts[0] = 0.0
    adjacency = {"FRIEND_OF>": w}
    prior = RelationPrior.fit(adjacency, np.zeros((n, d)), targets, counts)
    before = prior.apply(adjacency, np.zeros((n, d)), targets, counts)
    friends = set(w[0].indices.tolist())
    stranger = next(v for v in range(1, n) if v not in friends and w[v, 0] == 0)
    changed = targets.copy()
    changed[stranger] += 5.0  # a node that is not node 0's neighbour learns something else
    assert np.allclose(prior.apply(adjacency, np.zeros((n, d)), changed, counts)[0],
                       before[0])
    friend = sorted(friends)[0]
    changed = targets.copy()
    changed[friend] += 5.0  # one of its friends does
    assert not np.allclose(prior.apply(adjacency, np.zeros((n, d)), changed, counts)[0],
                           before[0])


def test_relation_adjacency_keeps_same_type_relations_with_their_weights(catalog) -> None:
    import dataclasses

    from graph_meta.schema import RelationSpec

    users = [str(u) for u in catalog.users.index[:5]]
    frame = pd.DataFrame({"src": [users[0], users[1], users[2], "nobody"],
                          "dst": [users[1], users[1], users[3], users[0]],
                          "weight": [2.0, 7.0, 0.5, 1.0]})
    spec = dataclasses.replace(catalog.spec, relations=(
        *catalog.spec.relations,
        RelationSpec(type="FRIEND_OF", file="friends.csv", src="User", dst="User",
                     weight="weight")))
    ds = dataclasses.replace(catalog, spec=spec,
                             relations={**catalog.relations, "FRIEND_OF": frame})
    assert set(relation_adjacency(ds, "User", users)) == {"FRIEND_OF>", "FRIEND_OF<",
                                                         "FRIEND_OF>>", "FRIEND_OF<<"}
    two = relation_adjacency(ds, "User", users)["FRIEND_OF>>"].toarray()
    assert two.sum() == 0.0  # no path of two hops: 0 -> 1 -> (1 -> 1 is a self-loop)
    adjacency = relation_adjacency(ds, "User", users, hops=1)
    assert set(adjacency) == {"FRIEND_OF>", "FRIEND_OF<"}
    w = adjacency["FRIEND_OF>"].toarray()
    assert w[0, 1] == pytest.approx(2.0) and w[2, 3] == pytest.approx(0.5)
    assert w[1, 1] == 0.0 and w.sum() == pytest.approx(2.5)  # self-loop and unknown id out
    np.testing.assert_array_equal(adjacency["FRIEND_OF<"].toarray(), w.T)
    items = [str(i) for i in catalog.items.index]
    assert not any(k.startswith("FRIEND_OF") for k in relation_adjacency(ds, "Item", items))


def test_the_item_relation_fit_weighs_rows_by_counts_not_by_release(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The side prior leans toward the newest items; the relation fit must not: their few
    ratings leave their states shrunk, which shrank beta (planted successors, README)."""
    import graph_meta.fitting.priors as priors
    from graph_meta.config import load_config
    from graph_meta.graph.relations import RelationPrior as Fitted
    from loaders.synthetic import generate_catalog

    data = generate_catalog(n_users=600, n_items=200, n_interactions=9000, seed=3,
                            planted_graph=True)
    ids = [str(i) for i in data.items.index]
    counts = data.train["item_id"].value_counts().reindex(ids, fill_value=0).to_numpy(float)
    targets = np.random.default_rng(0).normal(size=(len(ids), 5))
    seen: list[np.ndarray] = []
    real = Fitted.fit.__func__

    def spy(cls, adjacency, base, targets, counts, **kw):
        seen.append(np.asarray(kw["weights"]))
        return real(cls, adjacency, base, targets, counts, **kw)

    monkeypatch.setattr(priors.RelationPrior, "fit", classmethod(spy))
    cfg = load_config(None, **{"train.prior_newest_bias": 16.0})
    priors.side_prior(data, cfg, "Item", ids, counts, targets)
    assert len(seen) == 1
    by_count = np.sqrt(counts) if cfg.train.prior_weight == "sqrt" else counts
    np.testing.assert_array_equal(seen[0], by_count)  # the release lean left out


def test_the_fit_undoes_the_shrinkage_of_thinly_rated_states() -> None:
    """Most nodes have few ratings, so their ridge states are shrunk toward 0 by
    state_reliability's rho; regressed as they are, they pull beta toward 0. Given the
    reliabilities, beta and the prior of a new node estimate unshrunk states."""
    from graph_meta.graph.relations import rating_information, state_reliability

    rng = np.random.default_rng(4)
    n, d = 1200, 2
    _, w, planted = _circles(rng, n, 12, d)
    counts = rng.choice([1.0, 2.0, 4.0, 40.0], size=n)
    counts[rng.random(n) < 0.2] = 0.0  # new: no rating
    information = rating_information(np.ones((5, d)), np.ones(5))
    precision = np.full(d, 4.0)
    rho = state_reliability(counts, information, precision)
    assert rho[counts == 40.0].min() > 0.9 and rho[counts == 1.0].max() == pytest.approx(0.2)
    assert (rho[counts == 0] == 0).all()
    targets = rho * (planted + rng.normal(0.0, 0.1, (n, d)))  # ridge states: shrunk toward 0
    adjacency = {"FRIEND_OF>": w}
    base = 0.3 + 0.4 * planted  # a side prior that knows part of each state
    plain = RelationPrior.fit(adjacency, base, targets, counts, weights=counts)
    undone = RelationPrior.fit(adjacency, base, targets, counts, weights=counts,
                               reliability=rho)
    new = counts == 0
    err = {name: np.mean((fit.apply(adjacency, base, targets, counts, r)[new]
                          - planted[new]) ** 2)
           for name, fit, r in (("plain", plain, None), ("undone", undone, rho))}
    assert err["undone"] < 0.8 * err["plain"], err


def test_rating_information_is_the_count_weighted_mean_square_with_a_unit_bias() -> None:
    from graph_meta.graph.relations import rating_information

    other = np.array([[0.3, 1.0, -2.0], [5.0, 3.0, 0.0]])
    v = rating_information(other, np.array([3.0, 1.0]))
    np.testing.assert_allclose(v, [1.0, (3 * 1.0 + 9.0) / 4, (3 * 4.0) / 4])
