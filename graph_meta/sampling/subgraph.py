r"""Sampled k-hop neighbourhoods of seed nodes, as small graphs the encoder runs on.

A meta-batch needs the graph priors of a few hundred users and items, not of every node:
:class:`NeighbourhoodSampler` draws, hop by hop, up to ``fanouts[k]`` incoming edges per node
and edge type (:meth:`CSR.sample <graph_meta.sampling.csr.CSR.sample>` on CSRs indexed by the
edge's destination), starting from the seeds; only nodes first reached at hop ``k`` are
expanded at hop ``k + 1`` (GraphSAGE's minibatch scheme, what PyG's ``NeighborLoader`` does,
which needs pyg-lib or torch-sparse). Hop ``k`` samples the edge types of encoder round
``L - k`` (``layer_edge_types`` reversed), since a node first reached at hop ``k`` needs its
state after round ``L - k`` only.

:meth:`NeighbourhoodSampler.sample` returns a :class:`Neighbourhood`: a ``HeteroData`` with
every node type and every sampled edge type (possibly empty), nodes relabelled ``0 .. n_t - 1``
per type with the seeds first, in the order given, ``n_id`` ``[n_t]`` the global index of each
local node (the encoder's id embeddings read ``id_map[n_id]``), node features (``x_cat``,
``x_num``, ``x_text``, any per-node tensor) and per-edge attributes (``weight``, ...) sliced
from the full graph. The edges are the sampled ones, not the subgraph the nodes induce
(``HeteroData.subgraph``), which would cost a pass over every edge per batch and would not
respect the fan-outs.

With every fan-out at least the largest in-degree (or ``-1``, all) the seeds' outputs after
``L`` rounds equal the full graph's: every node a seed depends on keeps all its in-edges.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from graph_meta.sampling.csr import CSR

__all__ = ["Neighbourhood", "NeighbourhoodSampler"]

# per-type attributes that are not per node even when their length equals the node count
_TYPE_ATTRS = ("cat_sizes", "num_nodes")


@dataclass
class Neighbourhood:
    """The sampled graph (module docstring) and its seeds: the first ``num_seeds[t]`` nodes
    of type ``t`` are the seeds of that type, in the order they were given."""

    data: HeteroData
    num_seeds: dict[str, int]

    def n_id(self, node_type: str) -> Tensor:
        """Global index ``[n_t]`` of each local node of ``node_type``."""
        return self.data[node_type].n_id

    def num_nodes(self) -> int:
        return sum(int(self.data[nt].num_nodes) for nt in self.data.node_types)

    def num_edges(self) -> int:
        return sum(int(self.data[et].edge_index.shape[1]) for et in self.data.edge_types)


class NeighbourhoodSampler:
    """Typed k-hop sampling over the edge types of each hop.

    Args:
        data: the full graph (CPU tensors; only ``edge_index`` of ``hop_edge_types`` and the
            node counts are read here).
        hop_edge_types: ``[hops][edge types]``: the edge types hop ``k`` samples (the
            encoder's rounds, last round first); one list per hop.
    """

    def __init__(self, data: HeteroData, hop_edge_types: Sequence[Sequence[tuple]]) -> None:
        self.hop_edge_types = [[tuple(et) for et in ets] for ets in hop_edge_types]
        self.node_types = list(data.node_types)
        self.num_nodes = {nt: int(data[nt].num_nodes) for nt in self.node_types}
        self.edge_types = sorted({et for ets in self.hop_edge_types for et in ets})
        self.csr: dict[tuple, CSR] = {}
        self.sources: dict[tuple, np.ndarray] = {}
        for et in self.edge_types:
            ei = data[et].edge_index.cpu().numpy()
            self.csr[et] = CSR.from_edges(ei[1], ei[0], self.num_nodes[et[2]])
        # global -> local index of each node type, -1 outside the current neighbourhood
        self._local = {nt: np.full(n, -1, dtype=np.int64) for nt, n in self.num_nodes.items()}

    @property
    def hops(self) -> int:
        return len(self.hop_edge_types)

    def max_in_degree(self) -> int:
        """The largest number of in-edges of one type at one node (fan-outs at least this
        keep every neighbourhood whole)."""
        return max((int(np.diff(c.indptr).max(initial=0)) for c in self.csr.values()),
                   default=0)

    def sample(self, seeds: Mapping[str, np.ndarray], fanouts: Sequence[int],
               rng: np.random.Generator, features: HeteroData) -> Neighbourhood:
        """The sampled neighbourhood of ``seeds`` ``{node_type: [S_t]}`` (distinct global
        indices), ``fanouts[k]`` in-edges per node and edge type at hop ``k`` (``-1``: all),
        with node features and edge attributes sliced from ``features`` (the full graph, on
        the device the result should live on)."""
        if len(fanouts) != self.hops:
            raise ValueError(f"{self.hops} hops need {self.hops} fan-outs, got {list(fanouts)}")
        nodes: dict[str, list[np.ndarray]] = {nt: [] for nt in self.node_types}
        count = dict.fromkeys(self.node_types, 0)
        num_seeds: dict[str, int] = {}

        def admit(nt: str, ids: np.ndarray) -> np.ndarray:
            """Give the not yet seen ``ids`` (distinct) the next local indices."""
            ids = ids[self._local[nt][ids] < 0]
            self._local[nt][ids] = np.arange(count[nt], count[nt] + len(ids))
            count[nt] += len(ids)
            nodes[nt].append(ids)
            return ids

        try:
            frontier: dict[str, np.ndarray] = {}
            for nt in self.node_types:
                s = np.asarray(seeds.get(nt, np.zeros(0, np.int64)), dtype=np.int64)
                if len(np.unique(s)) != len(s):
                    raise ValueError(f"the {nt} seeds must be distinct")
                frontier[nt] = admit(nt, s)
                num_seeds[nt] = len(s)
            picked: dict[tuple, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {
                et: [] for et in self.edge_types}
            for ets, fanout in zip(self.hop_edge_types, fanouts, strict=True):
                reached: dict[str, list[np.ndarray]] = {nt: [] for nt in self.node_types}
                for et in ets:
                    rows = frontier[et[2]]
                    if not len(rows):
                        continue
                    pos, nbr, eid = self.csr[et].sample(rows, int(fanout), rng)
                    picked[et].append((nbr, rows[pos], eid))
                    reached[et[0]].append(nbr)
                frontier = {nt: admit(nt, np.unique(np.concatenate(r))) if r else
                            np.zeros(0, np.int64) for nt, r in reached.items()}
            n_id = {nt: np.concatenate(v) if v else np.zeros(0, np.int64)
                    for nt, v in nodes.items()}
            edges = {}
            for et, parts in picked.items():
                src = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
                dst = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
                eid = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0, np.int64)
                edges[et] = (self._local[et[0]][src], self._local[et[2]][dst], eid)
        finally:
            for nt, parts in nodes.items():
                for ids in parts:
                    self._local[nt][ids] = -1
        return Neighbourhood(_build(features, n_id, edges), num_seeds)


def _build(full: HeteroData, n_id: Mapping[str, np.ndarray],
           edges: Mapping[tuple, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> HeteroData:
    """The ``HeteroData`` of a neighbourhood: node rows ``n_id`` and edges ``(src, dst,
    edge id)`` (local endpoints) taken from ``full``."""
    out = HeteroData()
    device = next((full[et].edge_index.device for et in full.edge_types), torch.device("cpu"))
    for nt, ids in n_id.items():
        store = full[nt]
        n = int(store.num_nodes)
        idx = torch.as_tensor(ids, dtype=torch.long, device=device)
        sub = out[nt]
        sub.num_nodes = len(ids)
        for key, value in store.items():
            if key == "num_nodes":
                continue
            if torch.is_tensor(value) and key not in _TYPE_ATTRS and value.dim() >= 1 \
                    and value.shape[0] == n:
                sub[key] = value[idx]
            else:
                sub[key] = value
        sub.n_id = idx.to(device)
    for et, (src, dst, eid) in edges.items():
        store = full[et]
        e = int(store.edge_index.shape[1])
        dev = store.edge_index.device
        sub = out[et]
        sub.edge_index = torch.as_tensor(np.stack([src, dst]), dtype=torch.long, device=dev)
        eidx = torch.as_tensor(eid, dtype=torch.long, device=dev)
        for key, value in store.items():
            if key != "edge_index" and torch.is_tensor(value) and value.dim() >= 1 \
                    and value.shape[0] == e:
                sub[key] = value[eidx]
    return out

