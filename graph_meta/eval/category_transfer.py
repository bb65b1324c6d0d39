"""Category transfer: a sparse category learning from dense ones (the "apparel" case).

A shop opens a category (say apparel) that has few ratings yet, while its other categories are
dense. :func:`category_transfer_split` builds that situation from any rating dataset:

* **the category** is a value of the item column that ``dataset.json`` marks as the category
  (the item column with ``"node": "Category"``; another categorical or multi-valued item
  column can be named with ``column=``). An item *belongs* to the category when its value is
  the category or, for a ``multi`` column (e.g. movielens genres ``"Action|Comedy"``), when
  **any** of its values (split on the column's ``sep``, stripped) is the category: a film that
  is both action and comedy is an action film and a comedy. Values match exactly (case counts).
* **sparse training data**: of the training ratings of the category's items, a seeded uniform
  random share ``keep`` (exactly ``round(keep * n)`` of the ``n`` distinct ``(user, item)``
  pairs) stays in training; the others are removed. Every other training rating stays.
* **tasks**: a user with at least ``support_size + min_query`` removed ratings becomes one task
  (scenario :data:`SCENARIO`): their removed ratings in a seeded random order, the first
  ``support_size`` the support (the few-shot curves truncate it to K = 0, 1, 3, 5, 10), the rest
  the query (at most ``max_query`` when given). Removed ratings of the other users are dropped:
  they are neither trained on nor asked. The task users keep all their other training ratings
  (they are warm users who now shop in the sparse category), including the kept share of their
  ratings in the category.

Nothing removed stays in training, duplicate ``(user, item)`` rows included (the decision is
taken per pair); :func:`leaks` checks that. The split is a function of the data, the category
and ``seed`` alone (one seed sequence per ``(seed, category)``), so the same seed gives the same
split. The original task files are not used: the result's only scenario is :data:`SCENARIO`,
scored by :func:`graph_meta.eval.protocol.evaluate` like any other.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from graph_meta.dataset import ITEM_ID, RATING, USER_ID, Dataset, Task
from graph_meta.schema import CATEGORY, ColumnSpec, DatasetSpec

__all__ = ["SCENARIO", "SUPPORT_K", "TransferSplit", "categories_by_users",
           "category_column", "category_items", "category_transfer_split", "item_categories",
           "leaks"]

#: the scenario name of the transfer tasks
SCENARIO = "category_transfer"
#: the support sizes of the few-shot curve
SUPPORT_K: tuple[int, ...] = (0, 1, 3, 5, 10)


@dataclass(frozen=True)
class TransferSplit:
    """The transfer dataset of one held-out category.

    Attributes:
        dataset: the reduced training ratings and ``tasks = {SCENARIO: [...]}``.
        category: the held-out category.
        column: the item column it was read from.
        report: counts (``category_items``, ``category_pairs``, ``kept_pairs``,
            ``removed_pairs``, ``tasks``, ``support_ratings``, ``query_ratings``,
            ``dropped_pairs``, ``train_ratings_before``, ``train_ratings``,
            ``task_users_without_training``) and ``keep``.
    """

    dataset: Dataset
    category: str
    column: str
    report: dict[str, Any]


def category_column(spec: DatasetSpec, column: str | None = None) -> ColumnSpec:
    """The item column holding the categories: ``column`` if given, else the one item column
    with ``"node": "Category"``.

    Raises:
        ValueError: naming the field when the dataset has no such column, several of them,
            or ``column`` is not a categorical/multi item column.
    """
    items = spec.items.columns
    if column is not None:
        cspec = items.get(column)
        if cspec is None:
            raise ValueError(f"{spec.name}: items.columns.{column}: no such item column in "
                             f"dataset.json; item columns: {sorted(items)}")
        if cspec.type not in ("categorical", "multi"):
            raise ValueError(f"{spec.name}: items.columns.{column} is {cspec.type!r}; a "
                             "category column must be 'categorical' or 'multi'")
        return cspec
    found = [c for c in items.values() if c.node == CATEGORY]
    if not found:
        raise ValueError(
            f"{spec.name}: no category column: no item column of dataset.json declares "
            f"items.columns.<name>.node = {CATEGORY!r} (item columns: {sorted(items)}); "
            "mark one so, or name a categorical/multi item column (--column)")
    if len(found) > 1:
        raise ValueError(f"{spec.name}: several item columns have node {CATEGORY!r} "
                         f"({[c.name for c in found]}); name one (--column)")
    return found[0]


def item_categories(dataset: Dataset, column: str | None = None) -> pd.Series:
    """Per item (indexed by item id): the tuple of its category values ("" and blanks
    dropped)."""
    cspec = category_column(dataset.spec, column)
    values = dataset.items[cspec.name].fillna("").astype(str)
    if cspec.type == "multi":
        sep = cspec.sep or "|"
        parts = [tuple(p for p in (s.strip() for s in v.split(sep)) if p) for v in values]
    else:
        parts = [(v.strip(),) if v.strip() else () for v in values]
    return pd.Series(parts, index=dataset.items.index.astype(str), dtype=object)


def category_items(dataset: Dataset, category: str, column: str | None = None) -> set[str]:
    """The ids of the items that belong to ``category`` (any of their values is it).

    Raises:
        ValueError: no item has the category (naming it and the column, with the known
            values), or no category column (:func:`category_column`).
    """
    cats = item_categories(dataset, column)
    members = {i for i, vals in cats.items() if category in vals}
    if not members:
        name = category_column(dataset.spec, column).name
        known = Counter(v for vals in cats for v in vals)
        listed = ", ".join(repr(v) for v, _ in known.most_common(40))
        more = f" and {len(known) - 40} more" if len(known) > 40 else ""
        raise ValueError(f"{dataset.name}: unknown category {category!r}: no item has it in "
                         f"column items.columns.{name}; its values: {listed}{more}")
    return members


def categories_by_users(dataset: Dataset, min_ratings: int,
                        column: str | None = None) -> list[tuple[str, int]]:
    """Every category with the number of users who have at least ``min_ratings`` training
    ratings in it, most such users first (ties by name)."""
    cats = item_categories(dataset, column)
    train = dataset.train.drop_duplicates([USER_ID, ITEM_ID])
    frame = pd.DataFrame({"u": train[USER_ID].astype(str).to_numpy(),
                          "c": cats.reindex(train[ITEM_ID].astype(str).to_numpy()).to_numpy()})
    frame = frame.explode("c").dropna()
    counts = frame.groupby(["c", "u"]).size()
    users = (counts >= min_ratings).groupby(level=0).sum()
    for c in {v for vals in cats for v in vals} - set(users.index):
        users[c] = 0
    return sorted(((str(c), int(n)) for c, n in users.items()), key=lambda x: (-x[1], x[0]))


def category_transfer_split(dataset: Dataset, category: str, *, keep: float = 0.1,
                            seed: int = 0, support_size: int = 10, min_query: int = 5,
                            max_query: int | None = None,
                            column: str | None = None) -> TransferSplit:
    """Hold ``category`` out: keep a share ``keep`` of its training ratings, turn the removed
    ratings of its heavy users into tasks (module docstring).

    Raises:
        ValueError: an argument out of range, an unknown category or no category column.
    """
    if isinstance(keep, bool) or not 0 <= float(keep) < 1:
        raise ValueError(f"keep must be a number in [0, 1), got {keep!r}")
    for name, value, low in (("support_size", support_size, 0), ("min_query", min_query, 1),
                             ("seed", seed, 0)):
        if isinstance(value, bool) or int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if max_query is not None and (int(max_query) != max_query or max_query < min_query):
        raise ValueError(f"max_query must be None or an integer >= min_query, got "
                         f"{max_query!r}")
    cspec = category_column(dataset.spec, column)
    members = category_items(dataset, category, cspec.name)
    rng = np.random.default_rng(
        np.random.SeedSequence([int(seed), zlib.crc32(category.encode("utf-8"))]))

    train = dataset.train
    users = train[USER_ID].astype(str).to_numpy(dtype=object)
    items = train[ITEM_ID].astype(str).to_numpy(dtype=object)
    in_cat = pd.Index(items).isin(list(members))
    rows = np.flatnonzero(in_cat)
    # one decision per distinct (user, item) pair; its rating = the pair's last row
    u_codes, u_ids = pd.factorize(users[rows], sort=True)
    i_codes, i_ids = pd.factorize(items[rows], sort=True)
    keys, pair_codes = np.unique(u_codes.astype(np.int64) * max(len(i_ids), 1) + i_codes,
                                 return_inverse=True)
    pair_codes = pair_codes.reshape(-1)
    n_pairs = len(keys)
    pair_user, pair_item = keys // max(len(i_ids), 1), keys % max(len(i_ids), 1)
    last_row = np.full(n_pairs, -1, dtype=np.int64)
    last_row[pair_codes] = rows  # rows ascend: the last assignment is the pair's last row
    n_keep = min(int(np.floor(float(keep) * n_pairs + 0.5)), n_pairs)
    perm = rng.permutation(n_pairs)
    removed = perm[n_keep:]  # in random order: the order of the task's ratings
    removed_mask = np.zeros(n_pairs, dtype=bool)
    removed_mask[removed] = True

    # tasks: users with enough removed pairs (sorted by id), their pairs in the random order
    order = np.argsort(pair_user[removed], kind="stable")
    need = support_size + min_query
    tasks: list[Task] = []
    dropped = 0
    ratings = train[RATING].to_numpy(dtype=np.float64)
    for ucode, group in _groups(pair_user[removed][order], removed[order]):
        if len(group) < need:
            dropped += len(group)
            continue
        pairs = list(zip([str(x) for x in i_ids[pair_item[group]]],
                         ratings[last_row[group]].tolist(), strict=True))
        end = len(pairs) if max_query is None else support_size + int(max_query)
        dropped += max(len(pairs) - end, 0)
        tasks.append(Task(str(u_ids[ucode]), pairs[:support_size], pairs[support_size:end]))

    drop_rows = rows[removed_mask[pair_codes]]
    keep_rows = np.ones(len(train), dtype=bool)
    keep_rows[drop_rows] = False
    new_train = train.loc[keep_rows].reset_index(drop=True)
    for col in (USER_ID, ITEM_ID):
        if isinstance(new_train[col].dtype, pd.CategoricalDtype):
            new_train[col] = new_train[col].cat.remove_unused_categories()
    train_users = set(new_train[USER_ID].astype(str).unique())
    report: dict[str, Any] = {
        "category_items": len(members),
        "category_pairs": n_pairs,
        "kept_pairs": n_keep,
        "removed_pairs": n_pairs - n_keep,
        "tasks": len(tasks),
        "support_ratings": sum(len(t.support) for t in tasks),
        "query_ratings": sum(len(t.query) for t in tasks),
        "dropped_pairs": dropped,
        "train_ratings_before": len(train),
        "train_ratings": len(new_train),
        "task_users_without_training": sum(t.user_id not in train_users for t in tasks),
        "keep": float(keep),
    }
    spec = dataclasses.replace(
        dataset.spec, name=f"{dataset.name}: {cspec.name}={category}",
        tasks={SCENARIO: f"tasks/{SCENARIO}.jsonl"},
        stats={"category_transfer": {"source": dataset.name, "column": cspec.name,
                                     "category": category, "seed": int(seed),
                                     "support_size": int(support_size),
                                     "min_query": int(min_query), **report}})
    out = dataclasses.replace(dataset, spec=spec, train=new_train, tasks={SCENARIO: tasks},
                              root=None, warnings=list(dataset.warnings))
    return TransferSplit(out, category, cspec.name, report)


def leaks(split: TransferSplit) -> list[tuple[str, str]]:
    """The ``(user, item)`` pairs of a task's support or query that are still in training
    (empty for a correct split)."""
    train = split.dataset.train
    trained = set(zip(train[USER_ID].astype(str), train[ITEM_ID].astype(str), strict=True))
    return [(t.user_id, str(i)) for t in split.dataset.tasks[SCENARIO]
            for i, _ in (*t.support, *t.query) if (t.user_id, str(i)) in trained]


def _groups(keys: np.ndarray, values: np.ndarray) -> list[tuple[Any, np.ndarray]]:
    """Runs of equal ``keys`` (already grouped) with their ``values``."""
    if len(keys) == 0:
        return []
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    ends = np.r_[starts[1:], len(keys)]
    return [(keys[a], values[a:b]) for a, b in zip(starts, ends, strict=True)]
