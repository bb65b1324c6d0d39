"""Encoding of user and item side information into tensors.

For a node type with side-information columns (``users.csv`` / ``items.csv``):

* ``x_cat``  ``[N, C]`` long: one column per ``categorical`` column, codes ``1..V`` in sorted
  value order, ``0`` for a missing or unseen value; ``cat_sizes`` ``[C]`` holds ``V + 1``;
* ``x_num``  ``[N, 2M]`` float: per ``numeric`` column the z-score (mean/std over the rows)
  and a missing-value indicator (the z-score is 0 where missing);
* ``x_text`` ``[N, D]`` float: an L2-normalised hashed bag of words over the ``text`` columns
  and the values of ``multi`` columns that are not graph nodes (as ``column=value`` tokens).

Node columns (``"node": ...``) are not encoded here: they are edges of the graph.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from sklearn.feature_extraction.text import HashingVectorizer

from graph_meta.schema import TableSpec

_WORD = re.compile(r"(?u)\b\w\w+\b")


def _tokens(row_values: list[tuple[str, str, str | None]]) -> list[str]:
    out: list[str] = []
    for kind, value, col in row_values:
        if kind == "text":
            out.extend(_WORD.findall(value.lower()))
        else:
            out.append(f"{col}={value}")
    return out


def encode_features(table: TableSpec, frame: pd.DataFrame, *,
                    text_dim: int = 256) -> dict[str, torch.Tensor]:
    """Tensors ``x_cat``, ``cat_sizes``, ``x_num`` and ``x_text`` for the rows of ``frame``."""
    n = len(frame)
    cat_cols = [c for c, s in table.columns.items() if s.type == "categorical" and not s.node]
    num_cols = [c for c, s in table.columns.items() if s.type == "numeric"]

    x_cat = np.zeros((n, len(cat_cols)), dtype=np.int64)
    sizes = []
    for j, col in enumerate(cat_cols):
        values = frame[col].fillna("").astype(str).str.strip()
        vocab = np.sort(values[values != ""].unique())
        codes = pd.Index(vocab).get_indexer(values) + 1
        codes[values.to_numpy() == ""] = 0
        x_cat[:, j] = codes
        sizes.append(len(vocab) + 1)

    x_num = np.zeros((n, 2 * len(num_cols)), dtype=np.float32)
    for j, col in enumerate(num_cols):
        v = frame[col].to_numpy(dtype=np.float64)
        missing = ~np.isfinite(v)
        mean = float(np.nanmean(v)) if (~missing).any() else 0.0
        std = float(np.nanstd(v)) if (~missing).any() else 1.0
        z = (v - mean) / (std if std > 0 else 1.0)
        x_num[:, 2 * j] = np.where(missing, 0.0, z)
        x_num[:, 2 * j + 1] = missing

    x_text = hashed_text(table, frame, text_dim=text_dim).toarray().astype(np.float32)
    return {
        "x_cat": torch.from_numpy(x_cat),
        "cat_sizes": torch.tensor(sizes, dtype=torch.long),
        "x_num": torch.from_numpy(x_num),
        "x_text": torch.from_numpy(x_text),
    }


def hashed_text(table: TableSpec, frame: pd.DataFrame, *, text_dim: int) -> sp.csr_matrix:
    """``[N, text_dim]`` (``[N, 0]`` without bag columns or with ``text_dim = 0``): the
    L2-normalised hashed bag of words of ``x_text``, sparse."""
    n = len(frame)
    bag_cols = [c for c, s in table.columns.items()
                if s.type == "text" or (s.type == "multi" and not s.node)]
    if not bag_cols or text_dim <= 0:
        return sp.csr_matrix((n, 0), dtype=np.float64)
    parts = []
    for col in bag_cols:
        spec = table.columns[col]
        values = frame[col].fillna("").astype(str).tolist()
        if spec.type == "text":
            parts.append([[("text", v, None)] for v in values])
        else:
            assert spec.sep is not None
            parts.append([[("multi", p.strip(), col) for p in v.split(spec.sep) if p.strip()]
                          for v in values])
    docs = [_tokens([t for part in parts for t in part[i]]) for i in range(n)]
    vectorizer = HashingVectorizer(n_features=text_dim, analyzer=lambda d: d,
                                   alternate_sign=False, norm="l2")
    return sp.csr_matrix(vectorizer.transform(docs), dtype=np.float64)
