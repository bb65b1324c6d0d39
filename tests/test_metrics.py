"""Per-task metrics of PROTOCOL.md against sklearn and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import ndcg_score

from graph_meta.eval.metrics import (
    METRICS,
    batch_task_metrics,
    mae,
    ndcg_at_k,
    ndcg_at_k_metahin,
    rmse,
    task_metrics,
)


def _random_tasks(seed: int, n_tasks: int = 400) -> list[tuple[np.ndarray, np.ndarray]]:
    """Integer ratings (many ties) and predictions with ties of several kinds."""
    rng = np.random.default_rng(seed)
    out = []
    for j in range(n_tasks):
        n = int(rng.integers(2, 16))
        y = rng.integers(1, 6, n).astype(float)
        kind = j % 4
        if kind == 0:
            p = rng.integers(1, 6, n).astype(float)  # heavy ties
        elif kind == 1:
            p = np.round(rng.uniform(1, 5, n), 1)  # some ties
        elif kind == 2:
            p = np.full(n, 3.6)  # all tied (a global mean)
        else:
            p = rng.uniform(1, 5, n)  # no ties
        out.append((y, p))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_ndcg_equals_sklearn_with_ties(seed: int) -> None:
    for y, p in _random_tasks(seed):
        for k in (1, 3, 5, 10):
            expected = ndcg_score(y[None], p[None], k=k)
            assert ndcg_at_k(y, p, k) == pytest.approx(expected, abs=1e-12)


def test_ndcg_vectorized_equals_per_task() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(1, 6, (300, 10)).astype(float)
    p = rng.integers(1, 6, (300, 10)).astype(float)
    batch = ndcg_at_k(y, p, 5)
    assert isinstance(batch, np.ndarray) and batch.shape == (300,)
    single = [ndcg_score(a[None], b[None], k=5) for a, b in zip(y, p, strict=True)]
    np.testing.assert_allclose(batch, single, atol=1e-12)


def test_ndcg_edge_cases() -> None:
    assert ndcg_at_k([0.0, 0.0, 0.0], [1.0, 2.0, 3.0]) == 0.0  # IDCG = 0, as sklearn
    assert ndcg_at_k([5.0, 1.0], [2.0, 1.0]) == pytest.approx(1.0)
    assert ndcg_at_k([4.0], [1.0]) == pytest.approx(1.0)


def test_mae_rmse() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([2.0, 2.0, 1.0, 4.0])
    assert mae(y, p) == pytest.approx(3 / 4)
    assert rmse(y, p) == pytest.approx(math.sqrt(5 / 4))
    y2 = np.stack([y, y + 1])
    p2 = np.stack([p, y + 1])
    np.testing.assert_allclose(mae(y2, p2), [0.75, 0.0])
    np.testing.assert_allclose(rmse(y2, p2), [math.sqrt(1.25), 0.0])
    with pytest.raises(ValueError):
        mae([1.0, 2.0], [1.0])


def test_ndcg_metahin_hand_computed() -> None:
    y = np.array([5, 3, 4, 5, 1, 2, 4], dtype=float)
    p = np.array([4.5, 3.0, 3.5, 4.0, 2.0, 2.5, 1.0])
    # 5 highest true ratings: indices 0, 3 (5s), 2, 6 (4s), 1 (3); in original order
    # 0, 1, 2, 3, 6 -> predicted 4.5, 3.0, 3.5, 4.0, 1.0; true sorted 5, 5, 4, 4, 3.
    # Weights: 1, 1/log2(2), 1/log2(3), 1/log2(4), 1/log2(5).
    dcg = 4.5 + 3.0 / 1 + 3.5 / math.log2(3) + 4.0 / 2 + 1.0 / math.log2(5)
    idcg = 5 + 5 / 1 + 4 / math.log2(3) + 4 / 2 + 3 / math.log2(5)
    assert ndcg_at_k_metahin(y, p, 5) == pytest.approx(dcg / idcg, abs=1e-12)
    assert dcg / idcg == pytest.approx(0.767522, abs=1e-6)
    # the published code's discount, log2(i + 1) for i >= 2
    dcg_ref = 4.5 + 3.0 / math.log2(3) + 3.5 / 2 + 4.0 / math.log2(5) + 1.0 / math.log2(6)
    idcg_ref = 5 + 5 / math.log2(3) + 4 / 2 + 4 / math.log2(5) + 3 / math.log2(6)
    assert ndcg_at_k_metahin(y, p, 5, reference_discount=True) == pytest.approx(
        dcg_ref / idcg_ref, abs=1e-12)


def test_ndcg_metahin_ties_go_to_lower_index_and_can_exceed_one() -> None:
    y = np.array([4.0, 5.0, 4.0, 4.0, 2.0])
    p = np.array([1.0, 5.0, 2.0, 5.0, 5.0])
    # top 3 by a stable descending sort: 1 (5), then 0 and 2 (the first two 4s), not 3
    dcg = 1.0 + 5.0 + 2.0 / math.log2(3)
    idcg = 5.0 + 4.0 + 4.0 / math.log2(3)
    assert ndcg_at_k_metahin(y, p, 3) == pytest.approx(dcg / idcg, abs=1e-12)
    # it scores predicted values, not a ranking: inflated predictions exceed 1
    assert ndcg_at_k_metahin(y, y + 1.0, 5) > 1.0
    assert ndcg_at_k_metahin([0.0, 0.0], [1.0, 2.0]) == 0.0


def test_batch_task_metrics_mixed_sizes() -> None:
    tasks = _random_tasks(5, 60)
    ys = [t[0] for t in tasks]
    ps = [t[1] for t in tasks]
    batch = batch_task_metrics(ys, ps)
    assert set(batch) == set(METRICS)
    for j, (y, p) in enumerate(tasks):
        one = task_metrics(y, p)
        for name in METRICS:
            assert batch[name][j] == pytest.approx(one[name], abs=1e-12)
    assert one["ndcg@5"] == pytest.approx(ndcg_score(y[None], p[None], k=5))


def test_a_signed_scale_shifts_the_gains_to_start_at_zero() -> None:
    """On [-1, 1] the runner passes the low end: nDCG is then sklearn's on ratings + 1 (it
    refuses negative gains), in [0, 1]; MAE and RMSE do not move."""
    rng = np.random.default_rng(3)
    t = [rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=10) for _ in range(20)]
    p = [rng.uniform(-1, 1, size=10) for _ in range(20)]
    plain = batch_task_metrics(t, p)
    shifted = batch_task_metrics(t, p, gain_offset=-1.0)
    assert np.array_equal(plain["rmse"], shifted["rmse"])
    assert np.array_equal(plain["mae"], shifted["mae"])
    want = [ndcg_score((ti + 1.0)[None], (pi + 1.0)[None], k=5)
            for ti, pi in zip(t, p, strict=True)]
    np.testing.assert_allclose(shifted["ndcg@5"], want)
    assert (shifted["ndcg@5"] >= 0).all() and (shifted["ndcg@5"] <= 1 + 1e-12).all()
    assert (plain["ndcg@5"] < 0).any()  # what the runner reported before
    one = task_metrics(t[0], p[0], gain_offset=-1.0)
    assert one["ndcg@5"] == pytest.approx(shifted["ndcg@5"][0])
