"""Export of a store's graph as a PyG ``HeteroData`` snapshot.

Nodes of every type are numbered in sorted-id order and edges sorted by (source, target),
so both stores export identical snapshots of the same graph. Every edge type ``(s, r, d)``
gets its reverse ``(d, rev_r, s)`` with the same edge order and attributes, so edge ``e`` of
a type and of its reverse are the same relationship (used to hide query edges in episodes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import HeteroData

from graph_meta.graph.features import encode_features
from graph_meta.schema import ITEM, USER

if TYPE_CHECKING:
    from graph_meta.store.base import GraphStore


def store_snapshot(store: GraphStore, *, text_dim: int = 256) -> HeteroData:
    """Stream every node and edge of ``store`` into a ``HeteroData``.

    Node attributes: ``num_nodes``; for users and items ``x_cat``, ``cat_sizes``, ``x_num``,
    ``x_text`` (:func:`~graph_meta.graph.features.encode_features`). Edge attributes:
    ``edge_index`` ``[2, E]``, and ``rating``/``timestamp`` (``RATED``) or ``weight`` ``[E]``.
    Graph attributes: ``node_ids`` (type -> list of ids, position = node index) and
    ``rating_scale``.
    """
    data = HeteroData()
    index: dict[str, pd.Index] = {}
    for nt in store.schema.node_types:
        ids = store.node_ids(nt)
        index[nt] = pd.Index(ids, dtype=object)
        data[nt].num_nodes = len(ids)
        if nt in (USER, ITEM):
            frame = store.node_frame(nt)
            table = store.spec.users if nt == USER else store.spec.items
            for key, value in encode_features(table, frame, text_dim=text_dim).items():
                data[nt][key] = value
    for et in store.schema.edge_types:
        srcs, dsts = [], []
        props: dict[str, list[np.ndarray]] = {}
        for batch in store.iter_edges(et):
            srcs.append(index[et.src].get_indexer(batch.src))
            dsts.append(index[et.dst].get_indexer(batch.dst))
            for k, v in batch.properties.items():
                props.setdefault(k, []).append(np.asarray(v))
        src = np.concatenate(srcs) if srcs else np.zeros(0, np.int64)
        dst = np.concatenate(dsts) if dsts else np.zeros(0, np.int64)
        order = np.lexsort((dst, src))
        edge_index = torch.from_numpy(np.stack([src[order], dst[order]]).astype(np.int64))
        attrs = {k: torch.from_numpy(np.concatenate(v)[order]) for k, v in props.items()}
        for etype, ei in ((et, edge_index), (et.reverse(), edge_index.flip(0))):
            if etype == et.reverse() and et.src == et.dst:
                etype = (et.src, f"rev_{et.rel}", et.dst)
            data[tuple(etype)].edge_index = ei
            for k, v in attrs.items():
                data[tuple(etype)][k] = v
    data.node_ids = {nt: idx.tolist() for nt, idx in index.items()}
    data.rating_scale = tuple(store.spec.rating_scale)
    return data
