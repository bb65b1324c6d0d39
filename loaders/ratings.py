"""New ratings for a dataset's graph (``graph-meta ingest-ratings``).

:func:`read_new_ratings` reads a ratings file (``user_id,item_id,rating[,timestamp]``, the
``train.csv`` format) and checks it against a dataset's users, items and rating scale with the
same errors as ``train.csv`` (file, line, field). :func:`merge_into_train` writes them into the
folder's ``train.csv`` for the embedded store, which is built from the folder: a pair already
there gets the new rating (one rating per pair; on an implicit folder, a positive given without
a ``weight`` weighs 1), new pairs are appended, and the file is
replaced atomically (a temporary sibling renamed into place), so an interrupted run leaves
the old file whole.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from graph_meta.dataset import ITEM_ID, RATING, TIMESTAMP, USER_ID, WEIGHT, Dataset
from loaders.folder import _read_train, _utf8

__all__ = ["merge_into_train", "read_new_ratings"]


def read_new_ratings(path: str | Path, dataset: Dataset) -> pd.DataFrame:
    """The ratings of ``path``, validated against ``dataset`` (its users and items must have
    rows in ``users.csv``/``items.csv``: add new ones there first). A pair given twice keeps
    its last row.

    Raises:
        DataError: naming the file, line and field of the first problem.
    """
    warnings: list[str] = []
    with _utf8(Path(path)):  # a batch with its header only is an empty batch
        frame = _read_train(Path(path), dataset.spec, dataset.users.index.astype(str),
                            dataset.items.index.astype(str), False, warnings,
                            allow_empty=True)
    frame[USER_ID] = frame[USER_ID].astype(str)
    frame[ITEM_ID] = frame[ITEM_ID].astype(str)
    return frame.drop_duplicates([USER_ID, ITEM_ID], keep="last").reset_index(drop=True)


def merge_into_train(dataset: Dataset, ratings: pd.DataFrame) -> tuple[int, int]:
    """Write ``ratings`` into ``dataset``'s ``train.csv`` (atomic replace).

    Returns:
        ``(added, changed)``: new pairs, and pairs whose rating changed.
    """
    if dataset.root is None:
        raise ValueError("the dataset has no folder to write to")
    path = Path(dataset.root) / dataset.spec.train
    train = dataset.train.copy()
    train[USER_ID] = train[USER_ID].astype(str)
    train[ITEM_ID] = train[ITEM_ID].astype(str)
    key = [USER_ID, ITEM_ID]
    values = [RATING] + ([WEIGHT] if WEIGHT in train and WEIGHT in ratings else [])
    old = train.drop_duplicates(key, keep="last").set_index(key)[values]
    new = ratings.set_index(key)[values]
    both = new.index.intersection(old.index)
    changed = int((old.loc[both] != new.loc[both]).any(axis=1).sum())
    added = len(new) - len(both)
    if not added and not changed:
        return 0, 0
    columns = list(train.columns)
    merged = pd.concat([train, ratings.reindex(columns=columns)], ignore_index=True)
    merged = merged.drop_duplicates(key, keep="last")
    if WEIGHT in columns:  # implicit feedback: a positive given without a weight weighs 1
        merged[WEIGHT] = pd.to_numeric(merged[WEIGHT], errors="coerce").fillna(1.0)
    if TIMESTAMP in columns:  # rows given without a time are stamped now
        stamps = pd.to_numeric(merged[TIMESTAMP], errors="coerce")
        merged[TIMESTAMP] = stamps.fillna(int(time.time())).astype("int64")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, path.stat().st_mode & 0o7777)  # the file keeps its permissions
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            merged.to_csv(fh, index=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return added, changed
