"""Import a user's own interactions and catalog (CSV or Parquet) into a dataset folder.

:func:`import_interactions` reads an interactions file (one row per user-item event), an
items file (one row per item, with a category column) and optionally a users file, types
every side-information column, splits the interactions with
:func:`graph_meta.eval.split.split_cold_start` into training ratings and cold-start tasks, and
writes the folder with :func:`loaders.folder.write_dataset` (atomically).
:func:`interactions_dataset` does the same without writing.

Conventions:

* The file format follows the extension: ``.csv``/``.txt`` (comma), ``.tsv`` (tab), optionally
  compressed (``.gz``, ``.bz2``, ``.xz``), or ``.parquet``/``.pq``. CSV cells are read as
  text, so ids such as ``007`` stay as written; Parquet keeps its dtypes.
* Ids become strings; surrounding blanks are stripped. In the output the id columns are
  always ``user_id`` and ``item_id``.
* Explicit feedback (``rating_col`` given): the rating scale is ``rating_scale`` or else the
  observed ``[min, max]``. Implicit feedback (``rating_col=None``): every interaction is a
  positive with rating ``1``, ``dataset.json`` says ``"implicit": true`` and the rating scale
  is ``[0, 1]`` (0 being the label of a sampled negative).
* Duplicate ``(user, item)`` rows: the latest is kept (largest timestamp when a timestamp
  column is given, else the last row) and the rest are counted in ``stats``.
* The category column becomes a node type ``Category`` (``multi`` with ``category_sep``, else
  ``categorical``); ``node_columns`` turns other user/item columns into node types.
* Column types (``categorical``, ``multi``, ``numeric``, ``text``) are taken from
  ``item_columns``/``user_columns`` or inferred by :func:`infer_column_type`.
* Errors are :class:`graph_meta.DataError` naming the file, the line (CSV; the header is
  line 1) or row (Parquet) and the field.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from graph_meta.dataset import ITEM_ID, RATING, TIMESTAMP, USER_ID, Dataset
from graph_meta.errors import DataError, short, short_names
from graph_meta.eval.split import SplitOptions
from graph_meta.schema import (
    CATEGORY,
    DatasetSpec,
)
from loaders.folder import check_output_folder, write_dataset
from loaders.tables import (
    Table,
    check_label,
    epoch_seconds,
    id_values,
    infer_column_type,
    number_values,
    side_table,
    text_values,
    timestamp_values,
)

log = logging.getLogger(__name__)

__all__ = ["dataset_from_frames", "import_interactions", "infer_column_type",
           "interactions_dataset"]


# ---------------------------------------------------------------------------------------------
# Assembling a dataset (shared with loaders.movielens)


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set):
        return [_jsonable(x) for x in v]
    return v


def dataset_from_frames(
    name: str,
    interactions: pd.DataFrame,
    users: pd.DataFrame,
    items: pd.DataFrame,
    user_columns: Mapping[str, Mapping[str, Any]],
    item_columns: Mapping[str, Mapping[str, Any]],
    *,
    rating_scale: tuple[float, float],
    implicit: bool = False,
    item_release: pd.Series | None = None,
    stats: Mapping[str, Any] | None = None,
    split: SplitOptions | None = None,
) -> Dataset:
    """Split ``interactions`` into train and tasks and assemble a :class:`Dataset`.

    Args:
        name: dataset name for ``dataset.json``.
        interactions: ``user_id``, ``item_id`` (str), ``rating`` (float) and optionally
            ``timestamp`` (int64), one row per (user, item) pair.
        users, items: side information indexed by id (str); every id of ``interactions``
            must be in the index.
        user_columns, item_columns: the ``columns`` objects of ``dataset.json``.
        rating_scale: ``(low, high)``.
        implicit: marks implicit feedback in ``dataset.json``.
        item_release: per item id, a release time or year: the newest items become the cold
            ones (see ``split_cold_start``).
        stats: import counts, stored under ``stats`` with the split's report.
        split: the cold-start split's options (default :class:`SplitOptions`).
    """
    options = split or SplitOptions()
    raw_spec = {
        "name": name,
        "rating_scale": [float(rating_scale[0]), float(rating_scale[1])],
        "train": "train.csv",
        "users": {"file": "users.csv", "id": USER_ID, "columns": dict(user_columns)},
        "items": {"file": "items.csv", "id": ITEM_ID, "columns": dict(item_columns)},
        "relations": [],
        "implicit": implicit,
    }
    DatasetSpec.from_json(raw_spec, source="dataset.json")  # fail before the (slow) split
    split_ = options.apply(interactions, item_release)
    train = split_.train
    cols = [USER_ID, ITEM_ID, RATING] + ([TIMESTAMP] if TIMESTAMP in train.columns else [])
    train = pd.DataFrame({
        USER_ID: train[USER_ID].astype(str).astype("category"),
        ITEM_ID: train[ITEM_ID].astype(str).astype("category"),
        RATING: train[RATING].to_numpy(dtype=np.float32),
        **({TIMESTAMP: train[TIMESTAMP].to_numpy(dtype=np.int64)} if TIMESTAMP in cols else {}),
    })
    tasks = {s: list(t) for s, t in split_.tasks.items()}
    all_stats: dict[str, Any] = {
        **dict(stats or {}),
        **dict(split_.report),
        "users": len(users),
        "items": len(items),
        "train_interactions": len(train),
        "train_users": int(train[USER_ID].nunique()),
        "train_items": int(train[ITEM_ID].nunique()),
        "new_users": len(split_.new_users),
        "new_items": len(split_.new_items),
        **{f"{s}_tasks": len(t) for s, t in tasks.items()},
        **options.as_dict(),
    }
    raw_spec["tasks"] = {s: f"tasks/{s}.jsonl" for s in tasks}
    raw_spec["stats"] = _jsonable(all_stats)
    spec = DatasetSpec.from_json(raw_spec, source="dataset.json")
    return Dataset(spec=spec, users=users, items=items, train=train, tasks=tasks)


# ---------------------------------------------------------------------------------------------
# The importer


def _unknown_ids(table: Table, ids: pd.Series, known: pd.Index, noun: str, field: str,
                 other: Path, drop: bool) -> np.ndarray:
    """Mask of rows whose id is unknown; raise at the first one unless ``drop``."""
    unknown = ~ids.isin(known).to_numpy()
    if unknown.any() and not drop:
        k = int(unknown.argmax())
        raise table.fail(
            f"{noun} {short(ids.iat[k])} has no row in {other} ({int(unknown.sum())} interaction "
            "row(s) have unknown ids; pass drop_unknown=True to drop them)", row=k, field=field)
    return unknown


def _release_times(table: Table, column: str) -> np.ndarray:
    """A release year/time per row as float (NaN where empty); date text becomes Unix time."""
    s = table.frame[column]
    if not (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_datetime64_any_dtype(s)):
        text = text_values(s)
        present = (text.str.len() > 0).to_numpy()
        if pd.to_numeric(text[present], errors="coerce").isna().any():
            dates = pd.to_datetime(text.where(present), utc=True, errors="coerce",
                                   format="mixed")
            bad = present & dates.isna().to_numpy()
            if bad.any():
                k = int(bad.argmax())
                raise table.fail(f"neither a number nor a date: {short(text.iat[k])}", row=k,
                                 field=column)
            return epoch_seconds(dates)
    return number_values(table, column, "number or date")


def interactions_dataset(
    interactions_path: str | Path,
    items_path: str | Path,
    *,
    users_path: str | Path | None = None,
    user_col: str = "user_id",
    item_col: str = "item_id",
    rating_col: str | None = "rating",
    timestamp_col: str | None = None,
    category_col: str | None = "category",
    category_sep: str | None = None,
    item_columns: Mapping[str, str] | None = None,
    user_columns: Mapping[str, str] | None = None,
    node_columns: Mapping[str, str] | None = None,
    release_col: str | None = None,
    rating_scale: tuple[float, float] | None = None,
    drop_unknown: bool = False,
    name: str = "dataset",
    encoding: str = "utf-8",
    split: SplitOptions | None = None,
    weight_col: str | None = None,
    weights: Mapping[str, float] | None = None,
) -> Dataset:
    """Read, type and split the files into a :class:`Dataset` (what
    :func:`import_interactions` writes).

    Args:
        interactions_path: one row per interaction, with ``user_col``, ``item_col`` and
            ``rating_col`` (and ``timestamp_col``); CSV/TSV (optionally compressed) or Parquet.
        items_path: one row per item: ``item_col``, ``category_col`` and any other columns,
            which all become item side information.
        users_path: optional users file (``user_col`` + attributes). Without it
            ``users.csv`` lists the ids of the interactions and has no attributes.
        user_col, item_col: id columns (the same names in every file).
        rating_col: rating column, or ``None`` for implicit feedback (every row a positive
            with rating 1, ``"implicit": true``, rating scale ``[0, 1]``).
        timestamp_col: optional; numbers are kept as integers, dates become Unix seconds.
            Used to keep the latest of duplicate rows, and written to ``train.csv``.
        category_col: item category column, node type ``Category``; ``None`` if there is none.
        category_sep: separator of several categories in one cell (makes it ``multi``).
        item_columns: ``{column: type}`` (categorical | multi | numeric | text): only these
            item columns are kept (plus the category and node columns). ``None``: every
            column, types inferred by :func:`infer_column_type`.
        user_columns: the same for the users file.
        node_columns: ``{column: NodeType}``, e.g. ``{"brand": "Brand"}``: a user or item
            column whose distinct values become graph nodes.
        release_col: optional item column with a release date or year: the newest items are
            the cold ones. Without it the split chooses new items itself.
        rating_scale: ``(low, high)``; inferred as the observed min/max when ``None``.
        drop_unknown: drop (and count) interactions whose item (or user, with a users file)
            has no row, instead of failing on the first.
        name: dataset name.
        encoding: text encoding of CSV files.
        split: the cold-start split's options (:class:`graph_meta.eval.split.SplitOptions`).
        weight_col: implicit feedback only (``rating_col=None``): a column giving each row's
            confidence, numeric (> 0) or, with ``weights``, an event name. The rows of a
            (user, item) pair are summed into one positive whose confidence is ``train.csv``'s
            ``weight`` (its time: the pair's first event; :mod:`loaders.implicit`).
        weights: event name -> confidence, e.g. ``{"view": 1, "cart": 3, "purchase": 5}``;
            an event not in it is an error naming its line.
    """
    if weight_col is None and weights is not None:
        raise DataError("weights need weight_col (the event column)", field="weights")
    if weight_col is not None and rating_col is not None:
        raise DataError("weight_col is for implicit feedback (rating_col=None)",
                        field="weight_col")
    nodes = {str(c): check_label(lbl, f"node_columns[{c!r}]")
             for c, lbl in (node_columns or {}).items()}
    if category_col is not None and category_col in nodes and nodes[category_col] != CATEGORY:
        raise DataError(f"the category column is always node type {CATEGORY!r}",
                        field=f"node_columns[{category_col!r}]")
    if category_sep is not None and not category_sep:
        raise DataError("must be a non-empty separator", field="category_sep")

    inter = Table(interactions_path, "interactions", encoding)
    items_t = Table(items_path, "items", encoding)
    users_t = Table(users_path, "users", encoding) if users_path is not None else None

    inter.require(user_col, "user_col")
    inter.require(item_col, "item_col")
    if rating_col is not None:
        inter.require(rating_col, "rating_col",
                      "; pass rating_col=None (--implicit) for implicit feedback without ratings")
    if timestamp_col is not None:
        inter.require(timestamp_col, "timestamp_col")
    if weight_col is not None:
        inter.require(weight_col, "weight_col")
    items_t.require(item_col, "item_col")
    if users_t is not None:
        users_t.require(user_col, "user_col")
    if category_col is not None:
        items_t.require(category_col, "category_col",
                        "; pass category_col=None if the items have no category")
    if release_col is not None:
        items_t.require(release_col, "release_col")
    for c in nodes:
        in_items = c in items_t.columns and c != item_col
        in_users = users_t is not None and c in users_t.columns and c != user_col
        if not (in_items or in_users):
            where = f"items {items_t.columns}" + (
                f" and users {users_t.columns}" if users_t is not None else "")
            raise DataError(f"no column {c!r} in {where}", field=f"node_columns[{c!r}]")

    # --- side information
    item_nodes = {c: n for c, n in nodes.items() if c in items_t.columns}
    forced: dict[str, tuple[str, str | None]] = {}
    if category_col is not None:
        item_nodes[category_col] = CATEGORY
        declared = (item_columns or {}).get(category_col)
        if category_sep is not None or declared == "multi":
            forced[category_col] = ("multi", category_sep)
        elif declared == "categorical":
            forced[category_col] = ("categorical", None)
        elif declared is not None:
            raise DataError(f"the category column must be categorical or multi, not "
                            f"{declared!r}", field=f"item_columns[{category_col!r}]")
        else:
            ctype, sep = infer_column_type(items_t.frame[category_col])
            forced[category_col] = ("multi", sep) if ctype == "multi" else ("categorical", None)
    items, item_specs = side_table(items_t, item_col, ITEM_ID, item_columns, item_nodes,
                                    "item_columns", forced)
    if users_t is not None:
        user_nodes = {c: n for c, n in nodes.items() if c in users_t.columns}
        users, user_specs = side_table(users_t, user_col, USER_ID, user_columns, user_nodes,
                                        "user_columns")
    else:
        if user_columns:
            raise DataError("user_columns needs a users file", field="user_columns")
        users, user_specs = None, {}

    # --- interactions
    n_rows = len(inter.frame)
    if n_rows == 0:
        raise inter.fail("no interactions (the file has only a header)")
    uids = id_values(inter, user_col)
    iids = id_values(inter, item_col)
    if rating_col is not None:
        ratings = number_values(inter, rating_col, "rating")
        missing = np.isnan(ratings)
        if missing.any():
            k = int(missing.argmax())
            raise inter.fail("empty rating", row=k, field=rating_col)
    elif weight_col is not None:
        ratings = _confidences(inter, weight_col, weights)
    else:
        ratings = np.ones(n_rows, dtype=np.float64)
    ts = timestamp_values(inter, timestamp_col) if timestamp_col is not None else None

    keep = ~_unknown_ids(inter, iids, items.index, "item", item_col, items_t.path,
                         drop_unknown)
    dropped_items = int((~keep).sum())
    dropped_users = 0
    if users is not None:
        assert users_t is not None
        unknown_u = _unknown_ids(inter, uids, users.index, "user", user_col, users_t.path,
                                 drop_unknown)
        dropped_users = int((unknown_u & keep).sum())
        keep &= ~unknown_u

    if rating_col is not None:
        if rating_scale is not None:
            lo, hi = float(rating_scale[0]), float(rating_scale[1])
            if not lo <= hi:
                raise DataError(f"low {lo:g} > high {hi:g}", field="rating_scale")
            outside = keep & ((ratings < lo) | (ratings > hi))
            if outside.any():
                k = int(outside.argmax())
                raise inter.fail(f"rating {ratings[k]:g} outside the scale [{lo:g}, {hi:g}]",
                                 row=k, field=rating_col)
        else:
            lo, hi = float(ratings[keep].min()), float(ratings[keep].max())
        scale = (lo, hi)
    else:
        if rating_scale is not None and tuple(map(float, rating_scale)) != (0.0, 1.0):
            raise DataError("implicit feedback (rating_col=None) has the scale [0, 1]",
                            field="rating_scale")
        scale = (0.0, 1.0)

    frame = pd.DataFrame({USER_ID: uids.to_numpy(dtype=object),
                          ITEM_ID: iids.to_numpy(dtype=object), RATING: ratings})
    if ts is not None:
        frame[TIMESTAMP] = ts
    frame = frame[keep]
    if not len(frame):
        raise inter.fail("no interaction is left after dropping the unknown ids")
    if ts is not None:
        frame = frame.sort_values(TIMESTAMP, kind="stable")
    if weight_col is not None:  # events of a pair add up to one positive
        from loaders.implicit import aggregate_pairs

        frame, duplicates = aggregate_pairs(frame)
    else:
        dup = frame.duplicated([USER_ID, ITEM_ID], keep="last")
        duplicates = int(dup.sum())
        frame = frame[~dup.to_numpy()]
        frame = frame.sort_index().reset_index(drop=True)
    if users is None:
        users = pd.DataFrame(index=pd.Index(sorted(frame[USER_ID].unique()), name=USER_ID,
                                            dtype=object))
    if duplicates and weight_col is not None:
        log.info("%s: %d event row(s) summed into their (user, item) pairs", inter.path,
                 duplicates)
    elif duplicates:
        log.warning("%s: %d duplicate (user, item) row(s); kept the %s of each", inter.path,
                    duplicates, "latest" if ts is not None else "last")
    if dropped_items or dropped_users:
        log.warning("%s: dropped %d row(s) with unknown items and %d with unknown users",
                    inter.path, dropped_items, dropped_users)

    release = None
    if release_col is not None:
        times = _release_times(items_t, release_col)
        # an item without a release time counts as old: it never becomes a cold item
        oldest = np.nanmin(times) if np.isfinite(times).any() else 0.0
        release = pd.Series(np.where(np.isnan(times), oldest, times), index=items.index,
                            name=release_col)

    stats = {
        "source_interactions": str(inter.path.name),
        "interaction_rows": n_rows,
        "duplicates_dropped": duplicates,
        "unknown_items_dropped": dropped_items,
        "unknown_users_dropped": dropped_users,
    }
    dataset = dataset_from_frames(
        name, frame, users, items, user_specs, item_specs, rating_scale=scale,
        implicit=rating_col is None, item_release=release, stats=stats, split=split)
    if weight_col is not None:  # the split carried the confidences as ratings
        from loaders.implicit import confidences_to_weights

        dataset = confidences_to_weights(dataset)
    return dataset


def _confidences(table: Table, column: str,
                 weights: Mapping[str, float] | None) -> np.ndarray:
    """Per row: the event's weight (``weights``), else the column as a number > 0."""
    if weights is not None:
        from loaders.implicit import event_confidences

        values, bad = event_confidences(text_values(table.frame[column]), weights)
        if bad is not None:
            raise table.fail(f"event {short(text_values(table.frame[column]).iat[bad])} has no "
                             f"weight (weights: {short_names(list(weights))})", row=bad,
                             field=column)
        return values
    values = number_values(table, column, "weight")
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        k = int(bad.argmax())
        raise table.fail("a weight must be a number > 0", row=k, field=column)
    return values


def import_interactions(
    interactions_path: str | Path,
    items_path: str | Path,
    out_dir: str | Path,
    *,
    name: str | None = None,
    overwrite: bool = False,
    **options: Any,
) -> Path:
    """Import interactions + items (+ users) files into the dataset folder ``out_dir``.

    Args:
        interactions_path, items_path: as in :func:`interactions_dataset`.
        out_dir: dataset folder to write (atomically).
        name: dataset name; default: the name of ``out_dir``.
        overwrite: replace ``out_dir`` if it is a dataset folder (only an empty folder or a
            dataset folder is ever replaced).
        **options: every other keyword of :func:`interactions_dataset` (``users_path``,
            ``user_col``, ``item_col``, ``rating_col``, ``timestamp_col``, ``category_col``,
            ``category_sep``, ``item_columns``, ``user_columns``, ``node_columns``,
            ``release_col``, ``rating_scale``, ``drop_unknown``, ``encoding``, ``split``).

    Returns:
        ``out_dir``. Counts (rows read, duplicates and unknown ids dropped, the split's
        report) are in ``stats`` of ``dataset.json``.
    """
    out = check_output_folder(out_dir, overwrite=overwrite)  # before the slow part
    dataset = interactions_dataset(interactions_path, items_path,
                                   name=name or out.resolve().name, **options)
    return write_dataset(dataset, out, overwrite=overwrite)

