"""The graph training reads: built from a dataset folder's tables (:func:`build_graph`), or
a store's snapshot checked against the dataset (:func:`check_snapshot`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from graph_meta.dataset import Dataset
from graph_meta.store.embedded import EmbeddedGraphStore

__all__ = ["build_graph", "check_snapshot"]


def build_graph(dataset: Dataset, *, text_dim: int = 256) -> Any:
    """The dataset's HeteroData snapshot (embedded store; training ratings only)."""
    store = EmbeddedGraphStore.from_dataset(dataset)
    try:
        return store.snapshot(text_dim=text_dim)
    except TypeError:  # a store whose snapshot() takes no text_dim
        return store.snapshot()


def check_snapshot(graph: Any, dataset: Dataset, *, rating_map: Any = None) -> None:
    """ValueError unless a store's snapshot holds exactly the dataset's users and items and
    its training ratings (the same (user, item) pairs with the same ratings; a pair repeated
    in train.csv counts with its last rating, as the graph keeps it)."""
    for nt, frame in (("User", dataset.users), ("Item", dataset.items)):
        got = {str(i) for i in graph.node_ids[nt]}
        want = {str(i) for i in frame.index}
        if got != want:
            extra, missing = sorted(got - want)[:3], sorted(want - got)[:3]
            raise ValueError(f"the store's graph does not match the dataset's {nt} nodes "
                             f"(in the store only: {extra}, in the dataset only: {missing}); "
                             "re-ingest the dataset")
    store_rows = graph["User", "RATED", "Item"]
    users = np.asarray(graph.node_ids["User"], dtype=object)[store_rows.edge_index[0].numpy()]
    items = np.asarray(graph.node_ids["Item"], dtype=object)[store_rows.edge_index[1].numpy()]
    got = pd.DataFrame({"u": users.astype(str), "i": items.astype(str),
                        "r": store_rows.rating.numpy().astype(np.float64)})
    train = dataset.train.drop_duplicates(["user_id", "item_id"], keep="last")
    want = pd.DataFrame({"u": train["user_id"].astype(str).to_numpy(),
                         "i": train["item_id"].astype(str).to_numpy(),
                         "r": train["rating"].to_numpy(np.float64)})
    diff = got.merge(want, on=["u", "i"], how="outer", suffixes=("_store", "_train"),
                     indicator=True)
    bad = diff[(diff["_merge"] != "both") | ~np.isclose(diff["r_store"], diff["r_train"])]
    if len(bad):
        first = bad.iloc[0]
        # on the dataset's own scale (the ratings compared here are on the model's)
        shown = [first[k] if rating_map is None else rating_map.to_external(first[k])
                 for k in ("r_store", "r_train")]
        raise ValueError(f"the store's ratings differ from the dataset's train.csv in "
                         f"{len(bad)} (user, item) pairs, e.g. ({first['u']!r}, "
                         f"{first['i']!r}): store {shown[0]:g}, train.csv "
                         f"{shown[1]:g}; re-ingest the dataset")
