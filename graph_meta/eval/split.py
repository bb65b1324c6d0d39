"""The cold-start splitter: interactions to train ratings + four task sets.

Every importer (``loaders/``) splits with it, and the protocol runner carves its validation
pseudo-tasks with it (:func:`graph_meta.eval.protocol.carve_validation`).

:func:`split_cold_start` turns a table of ratings into what a dataset folder holds
(``benchmarks/PROTOCOL.md``): the training interactions and one task list per scenario.

* **New users** are a seeded random ``new_user_fraction`` of the users; **new items** are the
  newest ``new_item_fraction`` of the items (by ``item_release`` when given, else by the time
  of their first rating when there are timestamps, else a seeded random draw). Neither ever
  appears in ``train``.
* **Scenarios** follow from the two sets: ``warm`` = existing user x existing items,
  ``user_cold`` = new user x existing items, ``item_cold`` = existing user x new items,
  ``user_item_cold`` = new user x new items.
* **Warm tasks** are held out of ``train``: a seeded random ``warm_task_fraction`` of the
  existing users (drawn among those with enough ratings) give up their latest ratings (by
  timestamp, else a random subset), at most ``query_size + max_support`` of them and always
  fewer than half of their existing-item ratings, so that they keep most of their history in
  ``train``. A held-out rating whose item would otherwise vanish from ``train`` is put back.
* **A task** exists for a (user, scenario) with ``query_size + min_support`` to
  ``query_size + max_support`` ratings; above that a seeded random subset of that size is
  kept (the rest is counted as truncated), below it the ratings are dropped (counted).
  ``user_cold`` ratings on an item absent from ``train`` and ``item_cold`` ratings of a user
  absent from ``train`` are dropped too (counted), so that "seen in training" holds.
* **Query** = the last ``query_size`` ratings of the task (by timestamp when present, else
  after a seeded shuffle); **support** = the rest, in the same order.

Ratings of new users or new items that end up in no task are dropped from everything;
``ColdStartSplit.report`` counts every rating, user and item that was dropped and why, and it
is logged (logger ``graph_meta.split``). The result is a pure function of the input rows and
``seed``; everything is vectorized numpy/pandas (10 M ratings take seconds).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from numbers import Integral, Real

import numpy as np
import pandas as pd

from graph_meta.dataset import ITEM_ID, RATING, TIMESTAMP, USER_ID, Task
from graph_meta.schema import SCENARIOS

log = logging.getLogger("graph_meta.split")

__all__ = ["ColdStartSplit", "SplitOptions", "check_split_arguments", "split_cold_start"]

# Scenario codes of a rating; the first four index SCENARIOS.
_WARM, _USER_COLD, _ITEM_COLD, _USER_ITEM_COLD = 0, 1, 2, 3
_TRAIN = 4
_DROPPED = 5


@dataclass
class ColdStartSplit:
    """The result of :func:`split_cold_start`.

    Attributes:
        train: ``user_id``, ``item_id`` (categorical str, only the ids present), ``rating``
            (float32) and ``timestamp`` (int64) when the input had one; input row order.
        tasks: scenario -> tasks, for all four scenarios (possibly empty lists), ordered by
            user id.
        new_users: the users drawn as new (none of them is in ``train``; those without any
            task have no rating left anywhere).
        new_items: the items chosen as new (the same holds).
        report: counts (plain ints): input size, duplicates, what went where, what was
            dropped and why, tasks and ratings per scenario, truncations.
    """

    train: pd.DataFrame
    tasks: dict[str, list[Task]]
    new_users: set[str]
    new_items: set[str]
    report: dict[str, int] = field(default_factory=dict)


def split_cold_start(
    interactions: pd.DataFrame,
    *,
    new_user_fraction: float = 0.2,
    new_item_fraction: float = 0.2,
    warm_task_fraction: float = 0.1,
    query_size: int = 10,
    min_support: int = 3,
    max_support: int = 90,
    item_release: pd.Series | None = None,
    seed: int = 0,
) -> ColdStartSplit:
    """Split ratings into training interactions and the four cold-start task sets.

    Args:
        interactions: ``user_id``, ``item_id`` (str or categorical; other id types are
            turned into str), ``rating`` (float) and optionally ``timestamp`` (int64 seconds,
            or datetime64). Duplicate (user, item) rows: the latest (largest timestamp, else
            the last row) is kept and the others counted in ``report``.
        new_user_fraction: fraction of the users drawn (seeded) as new users, in [0, 1).
        new_item_fraction: fraction of the items that become new items, in [0, 1).
        warm_task_fraction: fraction of the existing users that get a warm task held out of
            ``train``, in [0, 1).
        query_size: query ratings per task (>= 1).
        min_support, max_support: support ratings per task (1 <= min <= max).
        item_release: item id -> release time or year (numeric or datetime); the newest
            items become the new items. Items missing from it count as the oldest. Without
            it the first-rating time is used when there are timestamps, else a random draw.
        seed: seed of every random choice (non-negative int).

    Returns:
        A :class:`ColdStartSplit`.

    Raises:
        ValueError: an argument is out of range, a column is missing, or an id, rating or
            timestamp is missing or not finite.
    """
    check_split_arguments(new_user_fraction, new_item_fraction, warm_task_fraction, query_size,
                     min_support, max_support, seed)
    if not isinstance(interactions, pd.DataFrame):
        raise ValueError(f"interactions must be a pandas DataFrame, got "
                         f"{type(interactions).__name__}")
    missing = [c for c in (USER_ID, ITEM_ID, RATING) if c not in interactions.columns]
    if missing:
        raise ValueError(f"interactions lack column(s) {missing}; they have "
                         f"{list(interactions.columns)}")
    lo = query_size + min_support
    hi = query_size + max_support
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    rng_users, rng_items, rng_warm, rng_order, rng_trunc, _ = streams

    u, user_ids = _encode(interactions[USER_ID], USER_ID)
    i, item_ids = _encode(interactions[ITEM_ID], ITEM_ID)
    rating = pd.to_numeric(interactions[RATING], errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(rating)
    if bad.any():
        k = int(bad.argmax())
        raise ValueError(f"rating of row {k} is not a finite number: "
                         f"{interactions[RATING].iat[k]!r}")
    ts = _timestamps(interactions[TIMESTAMP]) if TIMESTAMP in interactions.columns else None
    report: dict[str, int] = {"input_ratings": len(u)}

    # duplicates: keep the latest (largest timestamp, else the last row) of each pair
    key = u * max(len(item_ids), 1) + i
    n_dup = 0
    dup_any = pd.Series(key).duplicated(keep=False).to_numpy() if len(key) else key > 0
    if dup_any.any():
        rows = np.flatnonzero(dup_any)
        sort_keys = (rows, ts[rows], key[rows]) if ts is not None else (rows, key[rows])
        rows = rows[np.lexsort(sort_keys)]
        latest = np.r_[key[rows][1:] != key[rows][:-1], True]
        keep = np.ones(len(key), dtype=bool)
        keep[rows[~latest]] = False
        keep = np.flatnonzero(keep)
        n_dup = len(key) - len(keep)
        u, i, rating = u[keep], i[keep], rating[keep]
        ts = ts[keep] if ts is not None else None
        log.info("split: %d duplicate (user, item) rating(s) dropped, the latest kept", n_dup)
    del key, dup_any
    report["duplicate_ratings_dropped"] = n_dup
    n = len(u)
    n_users, n_items = len(user_ids), len(item_ids)
    report["input_users"] = n_users
    report["input_items"] = n_items

    # new users: a seeded random fraction
    new_user = np.zeros(n_users, dtype=bool)
    new_user[rng_users.permutation(n_users)[: _count(new_user_fraction, n_users)]] = True
    # new items: the newest fraction
    release, n_no_release = _release(item_release, item_ids, i, ts, rng_items)
    report["items_without_release"] = n_no_release
    tie = rng_items.random(n_items)
    newest_last = np.lexsort((tie, release))
    new_item = np.zeros(n_items, dtype=bool)
    n_new_items = _count(new_item_fraction, n_items)
    if n_new_items:
        new_item[newest_last[n_items - n_new_items:]] = True
    report["new_users_drawn"] = int(new_user.sum())
    report["new_items_drawn"] = n_new_items

    nu, ni = new_user[u], new_item[i]
    scen = np.full(n, _TRAIN, dtype=np.int8)
    scen[nu & ~ni] = _USER_COLD
    scen[~nu & ni] = _ITEM_COLD
    scen[nu & ni] = _USER_ITEM_COLD
    del nu, ni

    # chronological rank of every rating (a seeded shuffle breaks ties / stands in for time)
    time_rank = _time_rank(n, ts, rng_order)

    # warm tasks: held out of train for a fraction of the existing users
    existing = scen == _TRAIN
    n_ee = np.bincount(u[existing], minlength=n_users)
    held = np.minimum(hi, (n_ee - 1) // 2)
    eligible = np.flatnonzero(~new_user & (held >= lo))
    n_warm_wanted = _count(warm_task_fraction, int((~new_user).sum()))
    chosen = rng_warm.permutation(eligible)[:n_warm_wanted]
    report["warm_users_wanted"] = n_warm_wanted
    report["warm_users_eligible"] = len(eligible)
    if len(chosen) < n_warm_wanted:
        log.warning("split: only %d existing users have the %d+ ratings a warm task needs "
                    "(wanted %d warm tasks)", len(eligible), 2 * lo + 1, n_warm_wanted)
    is_warm_user = np.zeros(n_users, dtype=bool)
    is_warm_user[chosen] = True
    rows = np.flatnonzero(existing & is_warm_user[u])
    del existing
    if len(rows):
        rows = rows[np.argsort(u[rows] * n + time_rank[rows])]
        pos = _position_in_group(u[rows])
        last = pos >= n_ee[u[rows]] - held[u[rows]]
        scen[rows[last]] = _WARM
    # put back held-out ratings whose item would vanish from train
    item_train = np.bincount(i[scen == _TRAIN], minlength=n_items)
    back = (scen == _WARM) & (item_train[i] == 0)
    report["warm_ratings_kept_for_unseen_items"] = int(back.sum())
    scen[back] = _TRAIN
    warm_rows = scen == _WARM
    warm_count = np.bincount(u[warm_rows], minlength=n_users)
    small = (warm_count > 0) & (warm_count < lo)
    report["warm_tasks_given_back"] = int(small.sum())
    scen[warm_rows & small[u]] = _TRAIN
    del warm_rows

    # "seen in training": user_cold items and item_cold users must be in train
    train_rows = scen == _TRAIN
    item_train = np.bincount(i[train_rows], minlength=n_items)
    user_train = np.bincount(u[train_rows], minlength=n_users)
    del train_rows
    unseen = (scen == _USER_COLD) & (item_train[i] == 0)
    report["user_cold_ratings_dropped_item_not_in_train"] = int(unseen.sum())
    scen[unseen] = _DROPPED
    unseen = (scen == _ITEM_COLD) & (user_train[u] == 0)
    report["item_cold_ratings_dropped_user_not_in_train"] = int(unseen.sum())
    scen[unseen] = _DROPPED
    del unseen
    report["existing_items_not_in_train"] = int(((item_train == 0) & ~new_item).sum())
    report["existing_users_not_in_train"] = int(((user_train == 0) & ~new_user).sum())

    # task sizes: drop groups below lo, truncate groups above hi to a random subset
    rows = np.flatnonzero(scen < _TRAIN)
    group = u[rows] * 4 + scen[rows]
    count = np.bincount(group, minlength=4 * n_users)
    too_few = count[group] < lo
    for s, name in enumerate(SCENARIOS):
        in_s = scen[rows] == s
        report[f"{name}_tasks_dropped_too_few"] = int(
            ((count[s::4] > 0) & (count[s::4] < lo)).sum())
        report[f"{name}_ratings_dropped_too_few"] = int((too_few & in_s).sum())
        report[f"{name}_tasks_truncated"] = int((count[s::4] > hi).sum())
        report[f"{name}_ratings_truncated"] = int(
            np.maximum(count[s::4] - hi, 0).sum())
    scen[rows[too_few]] = _DROPPED
    big = np.flatnonzero(count[group] > hi)
    if len(big):
        cut = rows[big]
        cut = cut[np.lexsort((rng_trunc.random(len(cut)), group[big]))]
        pos = _position_in_group(u[cut] * 4 + scen[cut])
        scen[cut[pos >= hi]] = _DROPPED
    del group, count, too_few

    # assemble the tasks: per (user, scenario) in chronological order; query = the last ones
    rows = np.flatnonzero(scen < _TRAIN)
    group = u[rows] * 4 + scen[rows]
    order = np.argsort(group * n + time_rank[rows])
    rows, group = rows[order], group[order]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if len(rows) else \
        np.zeros(0, dtype=np.int64)
    ends = np.r_[starts[1:], len(rows)].astype(np.int64) if len(rows) else starts
    del order, group
    pairs = list(zip(item_ids[i[rows]].tolist(), rating[rows].tolist(), strict=True))
    task_user = user_ids[u[rows[starts]]].tolist() if len(rows) else []
    task_scen = scen[rows[starts]].tolist() if len(rows) else []
    tasks: dict[str, list[Task]] = {s: [] for s in SCENARIOS}
    for uid, s, a, b in zip(task_user, task_scen, starts.tolist(), ends.tolist(),
                            strict=True):
        tasks[SCENARIOS[s]].append(Task(uid, pairs[a:b - query_size], pairs[b - query_size:b]))
    del pairs

    # train, and what was dropped
    train_rows = np.flatnonzero(scen == _TRAIN)
    train = pd.DataFrame({
        USER_ID: _categorical(u[train_rows], user_ids),
        ITEM_ID: _categorical(i[train_rows], item_ids),
        RATING: rating[train_rows].astype(np.float32),
    })
    if ts is not None:
        train[TIMESTAMP] = ts[train_rows]
    task_rows = scen < _TRAIN
    users_in_tasks = np.bincount(u[task_rows], minlength=n_users) > 0
    items_in_tasks = np.bincount(i[task_rows], minlength=n_items) > 0
    report["train_ratings"] = len(train_rows)
    report["train_users"] = int(train[USER_ID].cat.categories.size)
    report["train_items"] = int(train[ITEM_ID].cat.categories.size)
    for s, name in enumerate(SCENARIOS):
        report[f"{name}_tasks"] = len(tasks[name])
        report[f"{name}_task_ratings"] = int((scen == s).sum())
    report["task_ratings"] = int(task_rows.sum())
    report["ratings_truncated"] = sum(report[f"{s}_ratings_truncated"] for s in SCENARIOS)
    report["ratings_dropped"] = int((scen == _DROPPED).sum())
    report["new_users_without_task"] = int((new_user & ~users_in_tasks).sum())
    report["new_items_without_task"] = int((new_item & ~items_in_tasks).sum())
    report = {k: int(v) for k, v in report.items()}
    log.info(
        "cold-start split: %d ratings -> %d train, %s; dropped %d (%d truncated); "
        "new users %d (%d without task), new items %d (%d without task)",
        report["input_ratings"], report["train_ratings"],
        ", ".join(f"{s} {report[f'{s}_tasks']} tasks" for s in SCENARIOS),
        report["ratings_dropped"], report["ratings_truncated"], report["new_users_drawn"],
        report["new_users_without_task"], report["new_items_drawn"],
        report["new_items_without_task"])
    log.debug("cold-start split report: %s", report)
    return ColdStartSplit(
        train=train,
        tasks=tasks,
        new_users=set(user_ids[new_user].tolist()),
        new_items=set(item_ids[new_item].tolist()),
        report=report,
    )


# ---------------------------------------------------------------------------------------------
# helpers


def check_split_arguments(new_user_fraction: float, new_item_fraction: float,
                          warm_task_fraction: float, query_size: int, min_support: int,
                          max_support: int, seed: int) -> None:
    """ValueError naming the first argument of :func:`split_cold_start` out of its range."""
    for name, value in (("new_user_fraction", new_user_fraction),
                        ("new_item_fraction", new_item_fraction),
                        ("warm_task_fraction", warm_task_fraction)):
        if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value < 1:
            raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    for name, value in (("query_size", query_size), ("min_support", min_support),
                        ("max_support", max_support)):
        if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if max_support < min_support:
        raise ValueError(f"max_support ({max_support}) must be >= min_support ({min_support})")
    if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")


def _count(fraction: float, total: int) -> int:
    """How many of ``total`` make up ``fraction`` (rounded half up, never all of them)."""
    k = int(np.floor(fraction * total + 0.5))
    return min(k, max(total - 1, 0)) if fraction < 1 else k


def _encode(column: pd.Series, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Codes (int64) into sorted unique string ids (object array) for an id column."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy().astype(np.int64)
        uniques = column.cat.categories
        if len(codes) and codes.min() < 0:
            k = int((codes < 0).argmax())
            raise ValueError(f"{name} of row {k} is missing")
        used = np.bincount(codes, minlength=len(uniques)) > 0
        if not used.all():
            remap = np.cumsum(used) - 1
            codes = remap[codes]
            uniques = uniques[used]
    else:
        try:
            codes, uniques = pd.factorize(column, sort=True, use_na_sentinel=True)
        except TypeError:  # ids of mixed types (e.g. int and str) cannot be sorted as such
            codes, uniques = pd.factorize(column, sort=False, use_na_sentinel=True)
        codes = codes.astype(np.int64, copy=False)
        if len(codes) and codes.min() < 0:
            k = int((codes < 0).argmax())
            raise ValueError(f"{name} of row {k} is missing")
    ids = np.asarray([str(v) for v in uniques] if not _is_str_index(uniques) else uniques,
                     dtype=object)
    order = np.argsort(ids, kind="stable")
    ids = ids[order]
    if len(ids) > 1 and (ids[1:] == ids[:-1]).any():
        k = int((ids[1:] == ids[:-1]).argmax())
        raise ValueError(f"{name} values {ids[k]!r} of different types become the same id")
    if not (order == np.arange(len(order))).all():
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order), dtype=np.int64)
        codes = rank[codes]
    return codes, ids


def _is_str_index(index: pd.Index) -> bool:
    return pd.api.types.is_string_dtype(index.dtype) and all(
        isinstance(v, str) for v in index[:1000])


def _timestamps(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(column.dtype):
        if column.isna().any():
            raise ValueError(f"timestamp of row {int(column.isna().to_numpy().argmax())} is "
                             "missing")
        values = column.to_numpy()
        return values.astype("datetime64[s]").astype(np.int64)
    numeric = pd.to_numeric(column, errors="coerce")
    values = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        k = int(bad.argmax())
        raise ValueError(f"timestamp of row {k} is not a finite number: {column.iat[k]!r}")
    if pd.api.types.is_integer_dtype(numeric.dtype):
        return numeric.to_numpy(dtype=np.int64)
    return values.astype(np.int64)


def _release(item_release: pd.Series | None, item_ids: np.ndarray, i: np.ndarray,
             ts: np.ndarray | None, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A release time per item (float64; larger = newer) and the number of items without one."""
    n_items = len(item_ids)
    if item_release is not None:
        if not isinstance(item_release, pd.Series):
            raise ValueError("item_release must be a pandas Series indexed by item id, got "
                             f"{type(item_release).__name__}")
        values = item_release
        if pd.api.types.is_datetime64_any_dtype(values.dtype):
            numeric = values.to_numpy().astype("datetime64[s]").astype(np.float64)
            numeric[values.isna().to_numpy()] = np.nan
        elif pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
                values.dtype):
            numeric = values.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            raise ValueError(f"item_release must hold numbers or datetimes, got dtype "
                             f"{values.dtype}")
        index = pd.Index([str(v) for v in values.index], dtype=object)
        if index.has_duplicates:
            raise ValueError(f"item_release has duplicate item id(s), e.g. "
                             f"{index[index.duplicated()][0]!r}")
        release = pd.Series(numeric, index=index).reindex(pd.Index(item_ids, dtype=object))
        release = release.to_numpy(dtype=np.float64, copy=True)
        missing = ~np.isfinite(release)
        release[missing] = -np.inf
        return release, int(missing.sum())
    if ts is not None:
        first = np.full(n_items, np.inf)
        np.minimum.at(first, i, ts.astype(np.float64))
        return first, 0
    return rng.random(n_items), 0


def _time_rank(n: int, ts: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """A dense rank 0..n-1 of the ratings by time, ties broken by a seeded random order
    (without timestamps: a seeded random permutation)."""
    shuffle = rng.permutation(n).astype(np.int64, copy=False)
    if ts is None or n == 0:
        return shuffle
    span = int(ts.max()) - int(ts.min())
    if span >= (np.iinfo(np.int64).max - n) // n:
        _, dense = np.unique(ts, return_inverse=True)  # huge time span: rank the times first
        base = dense.astype(np.int64).ravel()
    else:
        base = ts - ts.min()
    order = np.argsort(base * n + shuffle)  # distinct keys: every sort gives the same order
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n, dtype=np.int64)
    return rank


def _position_in_group(sorted_keys: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal values of an already grouped key array."""
    n = len(sorted_keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    lengths = np.diff(np.r_[starts, n])
    return np.arange(n, dtype=np.int64) - np.repeat(starts, lengths)


def _categorical(codes: np.ndarray, ids: np.ndarray) -> pd.Categorical:
    """Categorical of the ids in ``codes`` with only the ids present, sorted (as read_csv)."""
    used = np.bincount(codes, minlength=len(ids)) > 0
    remap = np.cumsum(used) - 1
    return pd.Categorical.from_codes(remap[codes].astype(np.int32, copy=False),
                                     categories=pd.Index(ids[used]), validate=False)


@dataclass(frozen=True)
class SplitOptions:
    """How an importer splits its interactions (the arguments of :func:`split_cold_start`)."""

    seed: int = 0
    new_user_fraction: float = 0.2
    new_item_fraction: float = 0.2
    warm_task_fraction: float = 0.1
    query_size: int = 10
    min_support: int = 3
    max_support: int = 90

    def apply(self, interactions: pd.DataFrame,
              item_release: pd.Series | None = None) -> ColdStartSplit:
        return split_cold_start(interactions, item_release=item_release, **asdict(self))

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)
