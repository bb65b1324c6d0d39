"""The cold-start splitter (:mod:`graph_meta.eval.split`): invariants, sizes, accounting,
determinism.

Every test builds its own small random interactions; nothing needs ``../shared``.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from graph_meta.eval.split import ColdStartSplit, split_cold_start
from graph_meta.schema import SCENARIOS

QUERY, MIN_SUPPORT, MAX_SUPPORT = 10, 3, 90


def make_interactions(n_users: int = 400, n_items: int = 150, n: int = 16000, *,
                      seed: int = 0, timestamps: bool = True) -> pd.DataFrame:
    """Heavy-tailed users and items, distinct (user, item) pairs, distinct timestamps."""
    rng = np.random.default_rng(seed)
    activity = rng.lognormal(0.0, 1.0, n_users)
    popularity = rng.lognormal(0.0, 1.0, n_items)
    u = rng.choice(n_users, size=2 * n, p=activity / activity.sum())
    i = rng.choice(n_items, size=2 * n, p=popularity / popularity.sum())
    pairs = pd.DataFrame({"u": u, "i": i}).drop_duplicates().iloc[:n]
    frame = pd.DataFrame({
        "user_id": [f"u{k:04d}" for k in pairs["u"]],
        "item_id": [f"i{k:04d}" for k in pairs["i"]],
        "rating": rng.integers(1, 6, len(pairs)).astype(np.float64),
    })
    if timestamps:  # items are released over time and rated after their release
        release = rng.uniform(0, 0.9, n_items)[pairs["i"].to_numpy()]
        when = release + (1 - release) * rng.random(len(pairs))
        rank = np.argsort(np.argsort(when, kind="stable"), kind="stable")  # distinct times
        frame["timestamp"] = (1_600_000_000 + rank * 37).astype(np.int64)
    return frame


def task_pairs(split: ColdStartSplit, scenario: str | None = None) -> set[tuple[str, str]]:
    scenarios = SCENARIOS if scenario is None else (scenario,)
    return {(t.user_id, item) for s in scenarios for t in split.tasks[s]
            for item, _ in (*t.support, *t.query)}


def train_pairs(split: ColdStartSplit) -> set[tuple[str, str]]:
    return set(zip(split.train["user_id"].astype(str), split.train["item_id"].astype(str),
                   strict=True))


def check_invariants(split: ColdStartSplit, interactions: pd.DataFrame,
                     query: int = QUERY, lo: int = MIN_SUPPORT, hi: int = MAX_SUPPORT) -> None:
    assert set(split.tasks) == set(SCENARIOS)
    train = split.train
    assert str(train["rating"].dtype) == "float32"
    assert isinstance(train["user_id"].dtype, pd.CategoricalDtype)
    train_users = set(train["user_id"].astype(str))
    train_items = set(train["item_id"].astype(str))
    tp = train_pairs(split)
    assert len(tp) == len(train), "train has duplicate pairs"
    # no task pair is in train; tasks of different scenarios never share a pair
    assert not task_pairs(split) & tp
    assert sum(len(task_pairs(split, s)) for s in SCENARIOS) == len(task_pairs(split))
    # new users / items never in train
    assert not split.new_users & train_users
    assert not split.new_items & train_items
    for scenario, tasks in split.tasks.items():
        users = [t.user_id for t in tasks]
        assert len(users) == len(set(users)), f"two {scenario} tasks for one user"
        assert users == sorted(users)
        for t in tasks:
            assert len(t.query) == query
            assert lo <= len(t.support) <= hi
            support = {i for i, _ in t.support}
            query_items = {i for i, _ in t.query}
            assert len(support) == len(t.support) and len(query_items) == len(t.query)
            assert not support & query_items
            items = support | query_items
            new_user = t.user_id in split.new_users
            assert new_user == (scenario in ("user_cold", "user_item_cold"))
            if scenario in ("warm", "user_cold"):
                assert not items & split.new_items
                assert items <= train_items, f"{scenario} item not seen in training"
            else:
                assert items <= split.new_items
            if scenario in ("warm", "item_cold"):
                assert t.user_id in train_users
    # every kept rating is an input rating, with its value
    given = dict(zip(zip(interactions["user_id"].astype(str),
                         interactions["item_id"].astype(str), strict=True),
                     interactions["rating"].astype(float), strict=True))
    for s in SCENARIOS:
        for t in split.tasks[s]:
            for item, r in (*t.support, *t.query):
                assert given[(t.user_id, item)] == r
    for (u, i), r in zip(tp, train.set_index(["user_id", "item_id"]).loc[list(tp), "rating"],
                         strict=True):
        assert given[(u, i)] == r
    # accounting: every input rating is in train, in a task, or counted as dropped
    rep = split.report
    assert rep["input_ratings"] == len(interactions)
    assert (rep["input_ratings"] - rep["duplicate_ratings_dropped"]
            == rep["train_ratings"] + rep["task_ratings"] + rep["ratings_dropped"])
    assert rep["train_ratings"] == len(train)
    assert rep["task_ratings"] == len(task_pairs(split))
    for s in SCENARIOS:
        assert rep[f"{s}_tasks"] == len(split.tasks[s])
    assert all(isinstance(v, int) for v in rep.values())


@pytest.fixture(scope="module")
def interactions() -> pd.DataFrame:
    return make_interactions()


@pytest.fixture(scope="module")
def split(interactions: pd.DataFrame) -> ColdStartSplit:
    return split_cold_start(interactions, seed=1)


def test_invariants_with_timestamps(split: ColdStartSplit, interactions: pd.DataFrame) -> None:
    check_invariants(split, interactions)
    assert all(split.tasks[s] for s in SCENARIOS), {s: len(t) for s, t in split.tasks.items()}
    assert "timestamp" in split.train and str(split.train["timestamp"].dtype) == "int64"


def test_invariants_without_timestamps() -> None:
    data = make_interactions(timestamps=False, seed=4)
    split = split_cold_start(data, seed=2)
    check_invariants(split, data)
    assert "timestamp" not in split.train
    assert all(split.tasks[s] for s in SCENARIOS)


def test_invariants_with_item_release_and_other_sizes() -> None:
    data = make_interactions(seed=5)
    items = sorted(set(data["item_id"]))
    release = pd.Series(np.arange(len(items), dtype=float)[::-1], index=items)
    split = split_cold_start(data, item_release=release, query_size=5, min_support=2,
                             max_support=20, warm_task_fraction=0.3, seed=3)
    check_invariants(split, data, query=5, lo=2, hi=20)
    # the newest releases are the new items
    newest = set(release.sort_values().index[-len(split.new_items):])
    assert split.new_items == newest
    assert split.report["ratings_truncated"] > 0


def test_counts_of_new_users_and_items(split: ColdStartSplit,
                                       interactions: pd.DataFrame) -> None:
    n_users, n_items = interactions["user_id"].nunique(), interactions["item_id"].nunique()
    assert len(split.new_users) == round(0.2 * n_users)
    assert len(split.new_items) == round(0.2 * n_items)
    n_existing = n_users - len(split.new_users)
    assert len(split.tasks["warm"]) == min(round(0.1 * n_existing),
                                           split.report["warm_users_eligible"])


def test_new_items_are_the_newest_by_first_rating(split: ColdStartSplit,
                                                  interactions: pd.DataFrame) -> None:
    first = interactions.groupby("item_id")["timestamp"].min()
    new = first[first.index.isin(split.new_items)]
    old = first[~first.index.isin(split.new_items)]
    assert new.min() > old.max()


def test_query_is_the_latest_and_support_chronological(split: ColdStartSplit,
                                                       interactions: pd.DataFrame) -> None:
    when = dict(zip(zip(interactions["user_id"], interactions["item_id"], strict=True),
                    interactions["timestamp"], strict=True))
    for tasks in split.tasks.values():
        for t in tasks:
            s_times = [when[(t.user_id, i)] for i, _ in t.support]
            q_times = [when[(t.user_id, i)] for i, _ in t.query]
            assert s_times == sorted(s_times) and q_times == sorted(q_times)
            assert max(s_times) < min(q_times)


def test_warm_tasks_hold_out_the_latest_and_keep_most_history(
        split: ColdStartSplit, interactions: pd.DataFrame) -> None:
    assert split.report["warm_ratings_kept_for_unseen_items"] == 0
    train = split.train.assign(user_id=split.train["user_id"].astype(str))
    per_user_last = train.groupby("user_id")["timestamp"].max()
    per_user_n = train.groupby("user_id").size()
    when = dict(zip(zip(interactions["user_id"], interactions["item_id"], strict=True),
                    interactions["timestamp"], strict=True))
    for t in split.tasks["warm"]:
        held = [when[(t.user_id, i)] for i, _ in (*t.support, *t.query)]
        assert min(held) > per_user_last[t.user_id]
        assert per_user_n[t.user_id] > len(held)


def test_too_many_ratings_are_truncated_and_counted() -> None:
    rng = np.random.default_rng(0)
    base = make_interactions(seed=6)
    items = sorted(set(base["item_id"]))
    # one user who rated every item, last: whatever its role, its tasks are capped
    heavy = pd.DataFrame({"user_id": "heavy", "item_id": items,
                          "rating": rng.integers(1, 6, len(items)).astype(float),
                          "timestamp": base["timestamp"].max() + 1 + np.arange(len(items))})
    data = pd.concat([base, heavy], ignore_index=True)
    for seed in range(20):
        split = split_cold_start(data, seed=seed, max_support=20)
        if "heavy" in split.new_users:
            break
    check_invariants(split, data, hi=20)
    assert "heavy" in split.new_users
    task = next(t for t in split.tasks["user_cold"] if t.user_id == "heavy")
    assert len(task.support) == 20
    assert split.report["user_cold_tasks_truncated"] >= 1
    assert split.report["user_cold_ratings_truncated"] >= 0.8 * len(items) - 30 - 10
    assert split.report["ratings_truncated"] >= split.report["user_cold_ratings_truncated"]


def test_too_few_ratings_are_dropped_and_counted(split: ColdStartSplit) -> None:
    rep = split.report
    dropped = sum(rep[f"{s}_ratings_dropped_too_few"] for s in SCENARIOS)
    assert dropped > 0
    assert rep["ratings_dropped"] >= dropped + rep["ratings_truncated"]
    assert rep["new_users_without_task"] > 0


def test_same_seed_same_split_and_other_seed_differs(interactions: pd.DataFrame) -> None:
    a = split_cold_start(interactions, seed=11)
    b = split_cold_start(interactions, seed=11)
    c = split_cold_start(interactions, seed=12)
    pd.testing.assert_frame_equal(a.train, b.train)
    assert a.tasks == b.tasks and a.report == b.report
    assert a.new_users == b.new_users and a.new_items == b.new_items
    assert a.new_users != c.new_users
    assert a.tasks != c.tasks


def test_random_new_items_depend_on_seed_without_timestamps() -> None:
    data = make_interactions(timestamps=False, seed=8)
    a = split_cold_start(data, seed=1)
    b = split_cold_start(data, seed=2)
    assert a.new_items != b.new_items
    assert a.tasks == split_cold_start(data, seed=1).tasks


def test_categorical_and_string_ids_give_the_same_split(interactions: pd.DataFrame) -> None:
    cat = interactions.astype({"user_id": "category", "item_id": "category"})
    a = split_cold_start(interactions, seed=5)
    b = split_cold_start(cat, seed=5)
    pd.testing.assert_frame_equal(a.train, b.train)
    assert a.tasks == b.tasks


def test_duplicates_keep_the_latest() -> None:
    data = pd.DataFrame({
        "user_id": ["a", "a", "b"], "item_id": ["x", "x", "x"], "rating": [1.0, 5.0, 3.0],
        "timestamp": [20, 10, 5],
    })
    split = split_cold_start(data, new_user_fraction=0, new_item_fraction=0,
                             warm_task_fraction=0)
    assert split.report["duplicate_ratings_dropped"] == 1
    train = split.train.assign(user_id=split.train["user_id"].astype(str))
    assert train.loc[train["user_id"] == "a", "rating"].tolist() == [1.0]
    assert all(not t for t in split.tasks.values())


def test_zero_fractions_give_only_train() -> None:
    data = make_interactions(n_users=50, n_items=30, n=600, seed=9)
    split = split_cold_start(data, new_user_fraction=0, new_item_fraction=0,
                             warm_task_fraction=0)
    assert len(split.train) == len(data)
    assert not split.new_users and not split.new_items
    assert set(split.tasks) == set(SCENARIOS) and not any(split.tasks.values())


def test_report_is_logged(interactions: pd.DataFrame, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="graph_meta.split"):
        split_cold_start(interactions, seed=0)
    records = [r for r in caplog.records if r.name == "graph_meta.split"]
    assert records and "user_cold" in records[-1].getMessage()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"new_user_fraction": 1.0}, "new_user_fraction must be a number in \\[0, 1\\)"),
    ({"new_item_fraction": -0.1}, "new_item_fraction"),
    ({"warm_task_fraction": float("nan")}, "warm_task_fraction"),
    ({"query_size": 0}, "query_size must be an integer >= 1"),
    ({"min_support": 0}, "min_support"),
    ({"max_support": 2}, "max_support \\(2\\) must be >= min_support \\(3\\)"),
    ({"query_size": 2.5}, "query_size"),
    ({"seed": -1}, "seed must be a non-negative integer"),
])
def test_bad_arguments_are_rejected(kwargs: dict, message: str) -> None:
    data = make_interactions(n_users=20, n_items=10, n=100)
    with pytest.raises(ValueError, match=message):
        split_cold_start(data, **kwargs)


def test_bad_input_is_rejected() -> None:
    data = make_interactions(n_users=20, n_items=10, n=100)
    with pytest.raises(ValueError, match="lack column"):
        split_cold_start(data.drop(columns="rating"))
    bad = data.copy()
    bad.loc[3, "rating"] = np.nan
    with pytest.raises(ValueError, match="rating of row 3"):
        split_cold_start(bad)
    bad = data.astype({"user_id": object})
    bad.loc[5, "user_id"] = None
    with pytest.raises(ValueError, match="user_id of row 5 is missing"):
        split_cold_start(bad)
    with pytest.raises(ValueError, match="item_release must hold numbers"):
        split_cold_start(data, item_release=pd.Series(["x"] * 10, index=sorted(
            set(data["item_id"]))))


def test_larger_input_is_fast() -> None:
    import time

    rng = np.random.default_rng(0)
    n = 300_000
    data = pd.DataFrame({
        "user_id": pd.Categorical.from_codes(rng.integers(0, 20_000, n),
                                             [f"u{k:05d}" for k in range(20_000)]),
        "item_id": pd.Categorical.from_codes(rng.integers(0, 3_000, n),
                                             [f"i{k:04d}" for k in range(3_000)]),
        "rating": rng.integers(1, 6, n).astype(float),
        "timestamp": rng.integers(0, 10**9, n),
    })
    t0 = time.perf_counter()
    split = split_cold_start(data)
    assert time.perf_counter() - t0 < 5.0
    assert sum(len(t) for t in split.tasks.values()) > 0
