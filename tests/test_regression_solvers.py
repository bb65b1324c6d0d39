"""The co-rating residual regression's solvers at scale (issue 17): the exact solve inverts in
place (one ``[R, R]``), and its weights equal those of the former LU inverse."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp

import graph_meta.fitting.als as als_fit
import graph_meta.graph.neighborhood as nbh
from graph_meta.graph.neighborhood import ItemNeighbors


def _residuals(seed: int, users: int = 80, items: int = 30, density: float = 0.3
               ) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(users, items)) * (rng.random((users, items)) < density)
    e[:, 3] = 0.0  # an unrated item
    e[:, 5] = 0.7 * e[:, 1] + 0.1 * rng.normal(size=users) * (e[:, 1] != 0)
    return sp.csr_matrix(e)


def _exact_with_lu_inverse(residuals: sp.spmatrix, l2: float, top_k: int) -> ItemNeighbors:
    """The exact solve as it was before the in-place inverse (``scipy.linalg.inv``)."""
    e = sp.csc_matrix(residuals, dtype=np.float64)
    n = e.shape[1]
    rated = np.flatnonzero(np.diff(e.indptr))
    k = min(int(top_k), max(len(rated) - 1, 0))
    indptr = np.zeros(n + 1, dtype=np.int64)
    e = e[:, rated]
    gram = (e.T @ e).toarray()
    gram[np.diag_indices_from(gram)] += l2
    w = scipy.linalg.inv(gram)
    w /= -np.diag(w).copy()[:, None]
    np.fill_diagonal(w, 0.0)
    top = np.argpartition(-np.abs(w), k - 1, axis=1)[:, :k]
    top.sort(axis=1)
    v = np.take_along_axis(w, top, axis=1)
    keep = v != 0.0
    indptr[rated + 1] = keep.sum(axis=1)
    np.cumsum(indptr, out=indptr)
    return ItemNeighbors(indptr, rated[top[keep]].astype(np.int32), v[keep].astype(np.float32))


@pytest.mark.parametrize("n", [1, 2, 7, 64])
@pytest.mark.parametrize("chunk", [1, 5 * 8, 1 << 24])
def test_the_in_place_inverse_is_the_inverse_in_the_same_memory(
        n: int, chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nbh, "_CHUNK_ENTRIES", chunk)  # mirrored 1, 5 or every row at a time
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n + 3, n))
    a = x.T @ x + 2.0 * np.eye(n)
    want = np.linalg.inv(a)
    work = a.copy()
    got = nbh._spd_inverse_inplace(work)
    assert np.shares_memory(got, work)  # no second [R, R]
    assert got.flags.c_contiguous
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(got, got.T)  # exactly symmetric


def test_the_in_place_inverse_refuses_a_matrix_that_is_not_positive_definite() -> None:
    with pytest.raises(np.linalg.LinAlgError, match="positive definite"):
        nbh._spd_inverse_inplace(np.array([[1.0, 2.0], [2.0, 1.0]]))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [1, 4, 100])
def test_the_exact_regression_equals_the_former_lu_inverse(
        seed: int, k: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nbh, "_CHUNK_ENTRIES", 4 * 8)
    e = _residuals(seed)
    want = _exact_with_lu_inverse(e, 3.0, k)
    got = ItemNeighbors.from_residuals(e, l2=3.0, top_k=k, solver="exact")
    np.testing.assert_array_equal(got.indptr, want.indptr)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_allclose(got.sim, want.sim, rtol=1e-6, atol=1e-7)
    assert got.indptr[4] == got.indptr[3]  # the unrated item has no weights


def test_the_exact_limit_is_a_setting_auto_goes_local_past_it() -> None:
    from graph_meta.config import Config, ConfigError

    e = _residuals(0)
    rated = int((np.diff(sp.csc_matrix(e).indptr) > 0).sum())
    exact = ItemNeighbors.from_residuals(e, l2=3.0, top_k=4, solver="exact")
    local = ItemNeighbors.from_residuals(e, l2=3.0, top_k=4, solver="local")
    for limit, want in ((rated, exact), (rated - 1, local), (0, local)):
        got = ItemNeighbors.from_residuals(e, l2=3.0, top_k=4, exact_max=limit)
        np.testing.assert_array_equal(got.indices, want.indices)
        np.testing.assert_array_equal(got.sim, want.sim)
    assert not np.array_equal(exact.sim, local.sim)  # the two solvers do differ here
    assert Config().model.regression_exact_max == nbh.MAX_REGRESSION_ITEMS
    with pytest.raises(ConfigError, match=r"model\.regression_exact_max"):
        Config().replace(**{"model.regression_exact_max": -1})


def test_the_memory_estimate_follows_the_exact_limit() -> None:
    from graph_meta.config import Config
    from graph_meta.fitting.memory import estimate_memory
    from loaders.synthetic import generate_catalog

    many = generate_catalog(n_users=1000, n_items=12000, n_interactions=60000, seed=1)
    cfg = Config()
    exact = estimate_memory(many, cfg).total
    local = estimate_memory(many, cfg.replace(**{"model.regression_exact_max": 100})).total
    assert local < exact
    assert estimate_memory(many, cfg.replace(**{"model.regression_solver": "local"})).total \
        == local


def _lists(nb: ItemNeighbors) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return nb.indptr, nb.indices, nb.sim


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("k", [1, 3, 50])
@pytest.mark.parametrize("chunk_rows", [1, 7, 200])
def test_the_sparse_top_k_selection_gives_the_dense_lists(
        seed: int, k: int, chunk_rows: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ties (binary profiles: many equal cosines, ordered by tie_break), rows with fewer
    than k neighbours and an empty row: the same lists, value for value."""
    rng = np.random.default_rng(seed)
    n = 120
    dense_profiles = (rng.random((n, 40)) < 0.06).astype(float)
    dense_profiles[5] = 0.0  # an item with no profile: no neighbours
    profiles = sp.csr_matrix(dense_profiles)
    tie_break = rng.integers(0, 20, n)
    monkeypatch.setattr(nbh, "_CHUNK_ENTRIES", chunk_rows * n)
    monkeypatch.setattr(nbh, "_SPARSE_TOP_K_RATIO", 10 ** 9)  # always dense
    dense = ItemNeighbors.from_profiles(profiles, top_k=k, tie_break=tie_break)
    monkeypatch.setattr(nbh, "_SPARSE_TOP_K_RATIO", 0)  # always sparse
    sparse = ItemNeighbors.from_profiles(profiles, top_k=k, tie_break=tie_break)
    for got, want in zip(_lists(sparse), _lists(dense), strict=True):
        np.testing.assert_array_equal(got, want)
    assert sparse.sim.dtype == np.float32 and sparse.indices.dtype == np.int32
    assert sparse.indptr[6] == sparse.indptr[5]
    if k == 50:
        assert (np.diff(sparse.indptr) < k).any()  # rows short of k were covered
    # the neighbours are real: no item is its own neighbour
    rows = np.repeat(np.arange(n), np.diff(sparse.indptr))
    assert not (rows == sparse.indices).any()


def test_co_rating_lists_of_a_catalogue_are_the_dense_ones(
        catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    from graph_meta.fitting.graphs import build_graph

    data = build_graph(catalog)
    monkeypatch.setattr(nbh, "_SPARSE_TOP_K_RATIO", 10 ** 9)
    dense = [ItemNeighbors.from_ratings(data, top_k=20), ItemNeighbors.from_graph(data,
                                                                                 top_k=20)]
    monkeypatch.setattr(nbh, "_SPARSE_TOP_K_RATIO", 0)
    sparse = [ItemNeighbors.from_ratings(data, top_k=20), ItemNeighbors.from_graph(data,
                                                                                  top_k=20)]
    for a, b in zip(sparse, dense, strict=True):
        assert len(b.sim) > 0
        for got, want in zip(_lists(a), _lists(b), strict=True):
            np.testing.assert_array_equal(got, want)


def test_the_local_solve_of_some_rows_is_those_rows_of_the_full_one() -> None:
    e = _residuals(2)
    n = e.shape[1]
    full_lists = sp.csr_matrix(np.ones((n, n)) - np.eye(n))
    cand = ItemNeighbors(full_lists.indptr.astype(np.int64), full_lists.indices,
                         full_lists.data.astype(np.float32))
    full = ItemNeighbors.from_residuals(e, l2=3.0, top_k=5, candidates=cand, solver="local")
    rows = np.array([0, 3, 5, 17])  # 3 is unrated: no weights either way
    part = ItemNeighbors.from_residuals(e, l2=3.0, top_k=5, candidates=cand, solver="local",
                                       rows=rows)
    w_full, w_part = full.weights(1.0).toarray(), part.weights(1.0).toarray()
    np.testing.assert_array_equal(w_part[rows], w_full[rows])
    others = np.setdiff1d(np.arange(n), rows)
    assert not w_part[others].any() and w_full[others].any()


@pytest.mark.parametrize("solver", ["local", "exact"])
def test_validation_scores_are_those_of_the_full_prediction_cache(catalog, solver: str
                                                                   ) -> None:
    """_Phase.validate solves the co-rating weights of the pseudo-tasks' query items only;
    its scores are those of the full state."""
    import torch

    from graph_meta.config import Config
    from graph_meta.eval.protocol import carve_validation, evaluate, training_view
    from graph_meta.fitting.train import _Phase
    from graph_meta.model import GraphMetaRecommender

    cfg = Config().replace(**{
        "model.dim": 8, "model.hidden": 16, "model.layers": 1, "train.epochs": 1,
        "train.als_iters": 3, "model.regression_solver": solver})
    carved = carve_validation(catalog, max_tasks=40, seed=0)
    model = GraphMetaRecommender(cfg)
    torch.manual_seed(0)
    phase = _Phase(model, training_view(carved), cfg, torch.device("cpu"))
    rows = phase.query_items(carved)
    assert 0 < len(rows) < phase.index.num_items
    got = phase.validate(carved)
    reg = model.cache["reg_indptr"]
    solved = np.flatnonzero(np.diff(reg))
    if solver == "local":
        assert set(solved.tolist()) <= set(rows.tolist())
    model.build_cache(phase.data_dev, phase.index)  # every row
    assert len(model.cache["reg_weight"]) > 0
    if solver == "local":
        assert len(np.flatnonzero(np.diff(model.cache["reg_indptr"]))) > len(solved)
    res = evaluate(model, carved, fit=False)
    want = {f"val_rmse_{s}": b["rmse"] for s, b in res["scenarios"].items()}
    assert {k: v for k, v in got.items() if k != "val_rmse"} == want


def test_fold_ins_and_residuals_in_blocks_are_the_one_pass_values(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from graph_meta.serving import state as st

    rng = np.random.default_rng(3)
    n_users, n_items, d = 11, 9, 4
    counts = rng.integers(0, 5, n_users)
    indptr = np.r_[0, np.cumsum(counts)]
    items = rng.integers(0, n_items, indptr[-1])
    x = rng.normal(size=(n_users, 6, d))
    state = st.PredictorState(
        item_states=rng.normal(size=(n_items, d)), mu=np.array(3.5),
        user_prior=rng.normal(size=(n_users, d)), lam=rng.random(d) + 0.5,
        head0=np.array([0.1, -0.2]), hist_indptr=indptr, hist_items=items,
        hist_y=rng.integers(1, 6, indptr[-1]).astype(float),
        hist_a=np.einsum("uki,ukj->uij", x, x), hist_c=rng.normal(size=(n_users, d)))
    # the one-pass formulas these replaced
    a = state.hist_a + np.diag(state.lam)
    theta = np.linalg.solve(a, (state.hist_c + state.lam * state.user_prior)[..., None])[..., 0]
    users = np.repeat(np.arange(n_users), counts)
    fitted = st.rating(3.5, state.head0, theta[users], state.item_states[items])
    for block in (1, 4, 1 << 16):
        monkeypatch.setattr(als_fit, "ROWS_PER_BLOCK", block)
        np.testing.assert_array_equal(st.history_fold_in(state), theta)
        e = st.training_residuals(state)
        want = sp.csr_matrix((state.hist_y - fitted, (users, items)), shape=e.shape)
        np.testing.assert_array_equal(e.toarray(), want.toarray())
