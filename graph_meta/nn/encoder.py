r"""Inductive heterogeneous GNN encoder over the attribute graph.

Input per node type (``h^{(0)}_v \in \mathbb{R}^{H}``, ``H = hidden``):

* ``User``/``Item``: :math:`\sum_c E_c[x_{cat,c}] + W_n x_{num} + W_t x_{text}` (an embedding
  per categorical column, linear maps of the numeric and hashed-text features; absent blocks
  are skipped);
* plus, with ``extra_dims``, :math:`W_c c_v`: a *collaborative* input per node (for items,
  what training learned about a warm item: its state and rating count, zeros and a flag for a
  node playing cold), so that message passing can rebuild a cold node's state from the warm
  nodes it shares directors, brands or categories with (the DropoutNet idea);
* every other node type (``Category``, ``Director``, ``Actor`` ...): a learned id embedding
  (nodes with fewer than ``min_degree`` attribute edges share one row: an actor of a single
  film could only memorise that film).

Then ``layers`` rounds of message passing over the attribute edges (``HAS_*`` and their
reverses, relation files, ``CO_ENGAGED``) with :class:`torch_geometric.nn.HeteroConv` over
``SAGEConv`` (or one ``HGTConv``). Edge weights (``CO_ENGAGED``'s NPMI, ``PART_OF``) are
carried in the graph but reach no convolution: a ``CO_ENGAGED`` link counts as much as any
other of its type (issue 14):

.. math:: h^{(l+1)}_v = h^{(l)}_v + \mathrm{ReLU}\Big(\sum_{r} \mathrm{SAGE}_r
          \big(h^{(l)}_v, \{h^{(l)}_u : u \in N_r(v)\}\big)\Big).

``RATED``/``rev_RATED`` edges and the item links derived from them (``CO_LIKED``, items liked
by the same users) are **never** used: every embedding is a function of side information and
the attribute graph only, so a node without rating edges (a new item, a new
user) is embedded exactly like a warm one, and no episode can see its own query ratings
through the encoder (inductive by construction). Output: ``{node_type: [N_type, H]}``.

The input may be the whole graph or a sampled neighbourhood
(:class:`~graph_meta.sampling.subgraph.Neighbourhood`, nodes relabelled, ``n_id`` the global
index of each), which training uses for its meta-batches on large graphs.

Switches: ``use_graph=False`` skips message passing (features only); ``use_co_engaged=False``
drops the ``CO_ENGAGED`` edges; ``use_relations=False`` the user-user and item-item relation
files' edges (a file between attribute nodes, ``(Category)-[PART_OF]->(Department)`` or
``(Brand)-[MADE_BY]->(Maker)``, keeps its edges).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.data import HeteroData

from graph_meta.nn.convs import conv_kind

# rating edges, and the item links computed from them: a new item has none, so an item playing
# new in a meta-batch must not have them either (its CO_LIKED links come from its own ratings)
RATING_RELS = ("RATED", "rev_RATED", "CO_LIKED", "rev_CO_LIKED")
OUTPUT_TYPES = ("User", "Item")

__all__ = ["HeteroEncoder", "encoder_edge_types"]


def encoder_edge_types(data: HeteroData, *, use_co_engaged: bool = True,
                       use_relations: bool = True) -> list[tuple]:
    """Edge types the encoder passes messages on: everything but the rating edges and the
    ``CO_LIKED`` links computed from them (without ``use_relations``, also without the
    user-user and item-item relation files)."""
    out = []
    for et in data.edge_types:
        if et[1] in RATING_RELS:
            continue
        if not use_co_engaged and et[1].endswith("CO_ENGAGED"):
            continue
        if not use_relations and et[0] == et[2] and et[0] in OUTPUT_TYPES:
            continue
        if data[et].edge_index.numel() == 0:
            continue
        out.append(tuple(et))
    return out


class _NodeInput(nn.Module):
    """Feature projection of one User/Item node type (or an id embedding for the others)."""

    def __init__(self, store, num_nodes: int, hidden: int, *, use_text: bool = True,
                 degree: Tensor | None = None, min_degree: int = 1, extra_dim: int = 0) -> None:
        super().__init__()
        self.cat = nn.ModuleList()
        self.num: nn.Linear | None = None
        self.text: nn.Linear | None = None
        self.ids: nn.Embedding | None = None
        self.extra = nn.Linear(extra_dim, hidden, bias=False) if extra_dim > 0 else None
        has_features = extra_dim > 0
        if "x_cat" in store and store["x_cat"].shape[1] > 0:
            for size in store["cat_sizes"].tolist():
                self.cat.append(nn.Embedding(max(int(size), 1), hidden))
                has_features = True
        if "x_num" in store and store["x_num"].shape[1] > 0:
            self.num = nn.Linear(store["x_num"].shape[1], hidden)
            has_features = True
        if use_text and "x_text" in store and store["x_text"].shape[1] > 0:
            self.text = nn.Linear(store["x_text"].shape[1], hidden, bias=False)
            has_features = True
        if not has_features:
            # nodes linked to fewer than min_degree users/items share one embedding (row 0):
            # an id seen once can only memorise its single neighbour, never transfer
            keep = (torch.ones(num_nodes, dtype=torch.bool) if degree is None
                    else degree >= min_degree)
            ids = torch.zeros(num_nodes, dtype=torch.long)
            ids[keep] = torch.arange(1, int(keep.sum()) + 1)
            self.register_buffer("id_map", ids)
            self.ids = nn.Embedding(int(keep.sum()) + 1, hidden)
            nn.init.normal_(self.ids.weight, std=0.1)
        for emb in self.cat:
            nn.init.normal_(emb.weight, std=0.1)
        self.bias = nn.Parameter(torch.zeros(hidden))

    def forward(self, store, extra: Tensor | None = None) -> Tensor:
        """``[N, H]`` for the store's ``N`` nodes; a sampled neighbourhood's store holds
        ``n_id`` ``[N]``, the global index of each node (its id embedding's row)."""
        if self.ids is not None:
            ids = self.id_map if "n_id" not in store else self.id_map[store["n_id"]]
            return self.ids(ids) + self.bias
        h = self.bias.expand(store["x_cat"].shape[0] if "x_cat" in store else
                             store.num_nodes, -1)
        if self.extra is not None:
            if extra is None:
                raise ValueError("this encoder was built with a collaborative input: pass it")
            h = h + self.extra(extra)
        for j, emb in enumerate(self.cat):
            h = h + emb(store["x_cat"][:, j])
        if self.num is not None:
            h = h + self.num(store["x_num"])
        if self.text is not None:
            h = h + self.text(store["x_text"])
        return h


class HeteroEncoder(nn.Module):
    """Side information + attribute graph -> an embedding per node of every type.

    Args:
        data: a graph snapshot (``store.snapshot()``); only its shapes and edge types are
            read here, the tensors are passed to :meth:`forward`.
        hidden: width ``H``.
        layers: message-passing rounds (0 = features only).
        conv: a registered kind (:func:`graph_meta.nn.convs.conv_names`): ``"sage"``
            (HeteroConv of SAGEConv) or ``"hgt"`` (HGTConv).
        heads: attention heads of HGT.
        use_graph: message passing on (False: features only, the "no graph" ablation).
        use_co_engaged: keep ``CO_ENGAGED`` edges.
        use_relations: keep the user-user and item-item relation files' edges.
        use_text: use the hashed text features.
        dropout: on the messages.
        min_degree: attribute nodes (directors, actors, ...) with fewer graph neighbours share
            one id embedding.
        extra_dims: ``{node_type: C}`` widths of the collaborative inputs :meth:`forward`
            takes for those types (``[N_type, C]`` each).
    """

    def __init__(self, data: HeteroData, *, hidden: int = 64, layers: int = 2,
                 conv: str = "sage", heads: int = 2, use_graph: bool = True,
                 use_co_engaged: bool = True, use_relations: bool = True,
                 use_text: bool = True,
                 dropout: float = 0.0, min_degree: int = 2,
                 extra_dims: dict[str, int] | None = None) -> None:
        super().__init__()
        self.conv_type = conv_kind(conv)
        self.hidden = hidden
        self.node_types = list(data.node_types)
        degree = {nt: torch.zeros(int(data[nt].num_nodes), dtype=torch.long)
                  for nt in self.node_types}
        for et in data.edge_types:
            if et[1] in RATING_RELS or et[1].startswith("rev_"):
                continue
            for end, nt in ((0, et[0]), (1, et[2])):
                ei = data[et].edge_index[end].cpu()  # the graph may be on the device
                degree[nt] += torch.bincount(ei, minlength=int(data[nt].num_nodes))
        self.inputs = nn.ModuleDict({
            nt: _NodeInput(data[nt], int(data[nt].num_nodes), hidden, use_text=use_text,
                           degree=degree[nt], min_degree=min_degree,
                           extra_dim=(extra_dims or {}).get(nt, 0))
            for nt in self.node_types})
        self.edge_types = (encoder_edge_types(data, use_co_engaged=use_co_engaged,
                                              use_relations=use_relations)
                           if use_graph and layers > 0 else [])
        self.convs = nn.ModuleList()
        self.layer_edge_types: list[list[tuple]] = []
        n_layers = layers if self.edge_types else 0
        for layer in range(n_layers):
            # the last round only feeds User/Item (the only outputs used): every conv's
            # output reaches the loss, so every parameter receives gradient
            ets = self.edge_types if layer < n_layers - 1 else [
                et for et in self.edge_types if et[2] in OUTPUT_TYPES]
            self.layer_edge_types.append(ets)
            self.convs.append(self.conv_type.build(hidden, ets, heads))
        self.dropout = nn.Dropout(dropout)
        self.norms = nn.ModuleList(
            nn.ModuleDict({nt: nn.LayerNorm(hidden) for nt in sorted({et[2] for et in ets})})
            for ets in self.layer_edge_types)

    def forward(self, data: HeteroData,
                extra: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        extra = extra or {}
        h = {nt: self.inputs[nt](data[nt], extra.get(nt)) for nt in self.node_types}
        for conv, norm, ets in zip(self.convs, self.norms, self.layer_edge_types, strict=True):
            edge_index = {et: data[et].edge_index for et in ets}
            msg = self.conv_type.call(conv, h, edge_index, ets)
            h = {nt: norm[nt](h[nt] + self.dropout(torch.relu(msg[nt])))
                 if nt in norm and msg.get(nt) is not None else h[nt]
                 for nt in self.node_types}
        return h
