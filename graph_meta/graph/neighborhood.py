r"""Item neighbourhoods along graph paths, and the residual correction they drive.

Two items are neighbours when the graph joins them through attribute nodes: the meta-paths
``Item -HAS_X-> X <-HAS_X- Item`` for every attribute node type ``X`` of the snapshot
(``Category``, ``Director``, ``Actor``, ...; never a rating edge, so a never-rated item has
neighbours too). With :math:`A_X \in \{0,1\}^{N_I \times N_X}` the incidence of type ``X``,
an item's *path profile* is the concatenation of its row-normalised incidence rows

.. math:: f_i = \big[\, w_X A_X[i] / \lVert A_X[i] \rVert \,\big]_X, \qquad
          s_{ij} = \frac{\langle f_i, f_j\rangle}{\lVert f_i\rVert \lVert f_j\rVert}
          \in [0, 1],

each block scaled by its path type's weight :math:`w_X` (:func:`path_blocks`,
:meth:`ItemNeighbors.from_blocks`; by default 1 for every attribute type, chosen at fit time
by :mod:`graph_meta.fitting.path_weights`), and :math:`s_{ij}` is the cosine of the two
profiles (:math:`s_{ii} = 0`). One more block joins items across categories: ``CO_ENGAGED``,
:math:`A_{Category} (I + C/2)` with :math:`C` the categories' positive NPMI (the categories
the same users engage with; :func:`path_blocks`), weight 0 unless chosen.
:class:`ItemNeighbors` keeps the ``top_k`` largest :math:`s_{ij}` of every item (a CSR
``[N_I, N_I]``); among items tied at the cut (films sharing only their genres have equal
similarity) the most rated are kept, since those are the items a user is likely to have rated.
Building the lists exactly costs :math:`O(N_I^2)` time where most items share some attribute
(in chunks of bounded memory); where few pairs of items share one (a chunk's similarity at
most 1/8 stored) the selection runs over the stored pairs only, :math:`O(\text{pairs})`.
Above :data:`PATH_PRUNE_ABOVE` items the attribute-path lists
are built from *pruned candidates* (:func:`_pruned_top_k`): an item's candidates are the items
sharing one of its attribute nodes of at most ``8 M`` items (a brand), plus the ``M`` most
rated items of each larger node (a department, a big category), ``M = 2 top_k``; the cosine of
every candidate is exact, so the lists equal the exact ones whenever the exact top ``k`` of an
item holds, from the large nodes it shares with them, only items among the ``M`` most rated
of one of those nodes (as when the similarity through them is one tie broken by rating
count), at :math:`O(N_I\, M)` time where large nodes hold most of the pairs.
:meth:`ItemNeighbors.from_ratings` does the same along ``Item <-RATED- User -RATED-> Item``
(the cosine of the items' rater sets: co-rating neighbours, which a never-rated item does
not have).

**Residual correction.** A user ``u`` whose state predicts :math:`\hat r_{uh}` for the items
``h`` they rated (training history and task support) leaves residuals
:math:`e_{uh} = r_{uh} - \hat r_{uh}`; the neighbourhood moves the prediction of item ``j``
toward the residuals of its rated neighbours (Koren's neighbourhood term, with attribute
paths for the similarity):

.. math:: \hat r_{uj} \leftarrow \hat r_{uj} +
          \frac{\sum_{h \in N(j) \cap R(u)} s_{jh}^{p}\, e_{uh}}
               {\beta + \sum_{h \in N(j) \cap R(u)} s_{jh}^{p}}

with ``power`` :math:`p` sharpening the weights and ``shrink`` :math:`\beta` pulling an item
with few or weak rated neighbours back to the uncorrected prediction
(:func:`residual_correction`).

**Residual regression.** The co-rating path weights can also be *learned*:
:meth:`ItemNeighbors.from_residuals` regresses every item's training residuals on those of
the other items (EASE, Steck 2019, on the residual matrix
:math:`E \in \mathbb{R}^{N_U \times N_I}`, 0 where a user has not rated an item):

.. math:: B = \arg\min_{\operatorname{diag}(B) = 0} \lVert E - E B \rVert_F^2
          + \lambda \lVert B \rVert_F^2 = I - P \operatorname{diag}(P)^{-1},
          \qquad P = (E^\top E + \lambda I)^{-1},

and adds :math:`\sum_h e_{uh} B_{hj}` to the prediction of item ``j``. Weights are signed
(an item's residuals can predict the opposite on another), so they are added as they are,
without the normalisation of the similarity correction. The exact solve inverts a dense
``[R, R]`` over the ``R`` rated items, in place (Cholesky, :math:`O(R^3)` time, one
``[R, R]`` of memory); past :data:`MAX_REGRESSION_ITEMS` each item's column
is solved alone over its co-rating neighbours (:meth:`ItemNeighbors.from_residuals_local`:
the same ridge, restricted regressors), so a large catalogue keeps the correction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from graph_meta.graph.relations import relation_hop, two_hop_files
from graph_meta.schema import CATEGORY, CO_ENGAGED, CO_LIKED, ITEM, RATED, USER

__all__ = ["MAX_REGRESSION_ITEMS", "PATH_PRUNE_ABOVE", "ItemNeighbors", "default_weight",
           "path_blocks", "rating_counts", "relation_links", "residual_correction",
           "weighted_blocks"]

_CHUNK_ENTRIES = 1 << 24  # dense similarity entries computed at a time (128 MB of float64)
# a chunk of the similarity whose stored pairs are at most 1 / this of its entries is
# selected sparse (the same lists; time O(nnz log nnz) instead of O(rows * N_I))
_SPARSE_TOP_K_RATIO = 8
#: attribute-path lists of catalogues above this many items use pruned candidates (module
#: docstring; :func:`_pruned_top_k`)
PATH_PRUNE_ABOVE = 50_000
_PAIRS_PER_CHUNK = 1 << 22  # candidate pairs scored at a time by _pruned_top_k
_DENSE_LARGE_ENTRIES = 1 << 25  # bound on N_I x (pruned attribute nodes) held dense (256 MB)
MAX_REGRESSION_ITEMS = 15_000  # rated items of the dense [N, N] solve (one float64 [N, N],
                               # inverted in place: 1.8 GB at the limit)


def _row_normalised(m: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ m)


@dataclass
class ItemNeighbors:
    """The ``top_k`` path neighbours of every item (attribute paths or co-rating, module
    docstring).

    Attributes:
        indptr: ``[N_I + 1]`` CSR row pointers.
        indices: ``[nnz]`` neighbour item of each entry (sorted by item within a row).
        sim: ``[nnz]`` :math:`s_{ij} > 0` (float32; above 1 and beyond ``top_k`` per row
            where :meth:`joined` added relation links); for :meth:`from_residuals`, the signed
            regression weight :math:`B_{ji}` of neighbour ``j`` for item ``i``.
    """

    indptr: np.ndarray
    indices: np.ndarray
    sim: np.ndarray

    @property
    def num_items(self) -> int:
        return len(self.indptr) - 1

    @classmethod
    def from_graph(cls, data: Any, *, top_k: int = 200,
                   type_weights: Mapping[str, float] | None = None,
                   use_co_engaged: bool = True, relation_weight: float = 0.0,
                   use_relations: bool = True) -> ItemNeighbors:
        """Neighbours from a ``HeteroData`` snapshot: the cosine of the items' path profiles
        (:func:`path_blocks`, weighted by :meth:`from_blocks`), joined by the item-item
        relation files' links (:func:`relation_links`, :meth:`joined`) with
        ``relation_weight`` > 0; ``use_relations``: :func:`path_blocks`'s."""
        lists = cls.from_blocks(path_blocks(data, use_co_engaged, use_relations), type_weights,
                                top_k=top_k, tie_break=rating_counts(data))
        return lists.joined(relation_links(data), relation_weight) if relation_weight else lists

    def joined(self, links: sp.csr_matrix, weight: float) -> ItemNeighbors:
        r"""These lists with ``weight`` times ``links`` ``[N_I, N_I]`` added to the
        similarities (:math:`s_{ij} + w\,l_{ij}`; a linked pair absent from the lists joins
        them, so a row may hold more than ``top_k`` entries)."""
        if weight == 0 or links.nnz == 0:
            return self
        n = self.num_items
        merged = sp.csr_matrix((self.sim.astype(np.float64), self.indices, self.indptr),
                               shape=(n, n)) + weight * links
        merged.sort_indices()
        return ItemNeighbors(merged.indptr.astype(np.int64), merged.indices.astype(np.int32),
                             merged.data.astype(np.float32))

    @classmethod
    def from_blocks(cls, blocks: Mapping[str, sp.csr_matrix],
                    type_weights: Mapping[str, float] | None, *, top_k: int,
                    tie_break: np.ndarray | None = None,
                    prune_above: int | None = PATH_PRUNE_ABOVE) -> ItemNeighbors:
        """Neighbours from the profile ``blocks`` of :func:`path_blocks`, each scaled by its
        ``type_weights`` entry before the cosine (:func:`weighted_blocks`); above
        ``prune_above`` items (None: never) from pruned candidates (module docstring)."""
        scaled = list(weighted_blocks(blocks, type_weights).values())
        n = len(tie_break) if tie_break is not None else (
            next(iter(blocks.values())).shape[0] if blocks else 0)
        return cls.from_profiles(sp.hstack(scaled, format="csr") if scaled
                                 else sp.csr_matrix((n, 0)), top_k=top_k, tie_break=tie_break,
                                 prune_above=prune_above)

    @classmethod
    def from_profiles(cls, profiles: sp.spmatrix, *, top_k: int,
                      tie_break: np.ndarray | None = None,
                      prune_above: int | None = None) -> ItemNeighbors:
        """Top-``k`` cosine neighbours of the rows of ``profiles`` ``[N, F]``; among equal
        similarities the items with the larger ``tie_break`` ``[N]`` are kept. Above
        ``prune_above`` rows (None: never) each row's neighbours are chosen among pruned
        candidates (:func:`_pruned_top_k`)."""
        f = _row_normalised(sp.csr_matrix(profiles, dtype=np.float64))
        n = f.shape[0]
        k = min(int(top_k), max(n - 1, 0))
        indptr = np.zeros(n + 1, dtype=np.int64)
        if k == 0 or f.nnz == 0:
            return cls(indptr, np.zeros(0, np.int32), np.zeros(0, np.float32))
        # a nudge far below any real gap between two cosines orders the ties only
        nudge = np.zeros(n)
        if tie_break is not None:
            rank = np.argsort(np.argsort(tie_break, kind="stable"), kind="stable")
            nudge = 1e-9 * rank / max(n, 1)
        if prune_above is not None and n > prune_above:
            sizes, cols_all, vals_all = _pruned_top_k(f, k, nudge, members=2 * k,
                                                      small=16 * k)
            np.cumsum(sizes, out=sizes)
            return cls(np.r_[0, sizes].astype(np.int64), cols_all.astype(np.int32),
                       vals_all.astype(np.float32))
        ft = sp.csr_matrix(f.T)  # CSR: a CSC right operand is converted at every chunk
        rows_per_chunk = max(1, _CHUNK_ENTRIES // n)
        cols, vals = [], []
        for start in range(0, n, rows_per_chunk):
            stop = min(start + rows_per_chunk, n)
            prod = f[start:stop] @ ft
            if prod.nnz * _SPARSE_TOP_K_RATIO <= (stop - start) * n:
                # few pairs share a profile entry (co-rating lists of a large catalogue):
                # the same selection over the stored pairs only, O(nnz log nnz)
                sizes, top_cols, top_vals = _sparse_top_k(sp.csr_matrix(prod), start, k, nudge)
                indptr[start + 1:stop + 1] = sizes
                cols.append(top_cols)
                vals.append(top_vals)
                continue
            s = prod.toarray()
            del prod
            s[np.arange(stop - start), np.arange(start, stop)] = 0.0
            s += nudge
            top = np.argpartition(s, n - k, axis=1)[:, n - k:]
            top.sort(axis=1)
            v = np.take_along_axis(s, top, axis=1) - nudge[top]
            keep = v > 1e-12
            indptr[start + 1:stop + 1] = keep.sum(axis=1)
            cols.append(top[keep])
            vals.append(v[keep])
            del s
        np.cumsum(indptr, out=indptr)
        return cls(indptr, np.concatenate(cols).astype(np.int32),
                   np.concatenate(vals).astype(np.float32))

    @classmethod
    def from_ratings(cls, data: Any, *, top_k: int = 200) -> ItemNeighbors:
        """Co-rating neighbours: the cosine of the items' rater sets (``(User, RATED,
        Item)`` edges of a ``HeteroData`` snapshot; the rating values play no part)."""
        ei = data[USER, RATED, ITEM].edge_index.cpu().numpy()
        inc = sp.csr_matrix((np.ones(ei.shape[1]), (ei[1], ei[0])),
                            shape=(int(data[ITEM].num_nodes), int(data[USER].num_nodes)))
        inc.data[:] = 1.0
        return cls.from_profiles(inc, top_k=top_k, tie_break=rating_counts(data))

    @classmethod
    def from_residuals(cls, residuals: sp.spmatrix, *, l2: float, top_k: int,
                       candidates: ItemNeighbors | None = None, solver: str = "auto",
                       exact_max: int | None = None, rows: np.ndarray | None = None
                       ) -> ItemNeighbors:
        r"""Learned co-rating weights (module docstring, *Residual regression*): row ``j``
        keeps the ``top_k`` largest :math:`|B_{hj}|` over items ``h``.

        Up to :data:`MAX_REGRESSION_ITEMS` rated items the exact solve over every rated
        item (one dense ``[R, R]``, inverted in place); past it
        :meth:`from_residuals_local` over each item's
        ``candidates`` (``solver``: ``"auto"`` that rule, ``"exact"`` or ``"local"`` always;
        ``exact_max``: the limit of ``"auto"``, by default :data:`MAX_REGRESSION_ITEMS`;
        ``rows``: the local solve fills only those items' rows, the exact one every row).

        Args:
            residuals: ``[N_U, N_I]`` training residuals :math:`e_{uh}` (stored entries are
                the ratings; an item nobody rated gets no weights).
            l2: :math:`\lambda > 0`.
            top_k: weights kept per item.
            candidates: past the limit, the items each item is regressed on (CSR
                ``[N_I, N_I]``; by default its ``top_k`` co-rating neighbours, the cosine of
                the rater sets, built here).
        """
        if l2 <= 0:
            raise ValueError(f"l2 must be > 0, got {l2}")
        e = sp.csc_matrix(residuals, dtype=np.float64)
        n = e.shape[1]
        rated = np.flatnonzero(np.diff(e.indptr))
        if solver not in ("auto", "exact", "local"):
            raise ValueError(f"solver must be 'auto', 'exact' or 'local', got {solver!r}")
        limit = MAX_REGRESSION_ITEMS if exact_max is None else int(exact_max)
        if solver == "local" or (solver == "auto" and len(rated) > limit):
            if candidates is None:
                pattern = sp.csr_matrix(e.T)
                pattern.data[:] = 1.0
                candidates = cls.from_profiles(pattern, top_k=top_k)
            return cls.from_residuals_local(e, l2=l2, top_k=top_k, candidates=candidates,
                                            rows=rows)
        k = min(int(top_k), max(len(rated) - 1, 0))
        indptr = np.zeros(n + 1, dtype=np.int64)
        if k == 0:
            return cls(indptr, np.zeros(0, np.int32), np.zeros(0, np.float32))
        e = e[:, rated]
        gram = (e.T @ e).toarray()
        gram[np.diag_indices_from(gram)] += l2
        w = _spd_inverse_inplace(gram)
        del gram
        w /= -np.diag(w).copy()[:, None]  # w[j, h] = B[h, j] (P is symmetric)
        np.fill_diagonal(w, 0.0)
        n_rated = len(rated)
        step = max(1, _CHUNK_ENTRIES // n_rated)
        cols, vals, sizes = [], [], []
        for start in range(0, n_rated, step):
            block = w[start:start + step]
            top = np.argpartition(-np.abs(block), k - 1, axis=1)[:, :k]
            top.sort(axis=1)
            v = np.take_along_axis(block, top, axis=1)
            keep = v != 0.0
            sizes.append(keep.sum(axis=1))
            cols.append(rated[top[keep]])
            vals.append(v[keep])
        indptr[rated + 1] = np.concatenate(sizes)
        np.cumsum(indptr, out=indptr)
        return cls(indptr, np.concatenate(cols).astype(np.int32),
                   np.concatenate(vals).astype(np.float32))

    @classmethod
    def from_residuals_local(cls, residuals: sp.spmatrix, *, l2: float, top_k: int,
                             candidates: ItemNeighbors, rows: np.ndarray | None = None
                             ) -> ItemNeighbors:
        r"""The residual regression restricted to candidate regressors, one small ridge per
        item: with :math:`C_j` the rated candidates of item ``j`` (``candidates`` row
        ``j``, ``j`` itself left out),

        .. math:: b_j = \arg\min_b \lVert e_j - E_{C_j} b \rVert^2 + \lambda \lVert b
                  \rVert^2 = (E_{C_j}^\top E_{C_j} + \lambda I)^{-1} E_{C_j}^\top e_j,

        and row ``j`` keeps the ``top_k`` largest :math:`|b_{jh}|`. EASE's column ``j``
        is this ridge over every other item, so with :math:`C_j` = every other rated item
        the weights are those of :meth:`from_residuals`' exact solve. Memory: one
        ``[|C_j|, |C_j|]`` Gram at a time; time :math:`O(\sum_j \operatorname{nnz}
        (E_{C_j}) |C_j|)`, linear in the catalogue for bounded candidate lists.

        Args:
            residuals: ``[N_U, N_I]`` as in :meth:`from_residuals`.
            l2: :math:`\lambda > 0`.
            top_k: weights kept per item.
            candidates: the candidate regressors of every item (CSR ``[N_I, N_I]``).
            rows: the items whose weights are wanted (the others get none; the rows solved
                are those of every item): predictions of those items read only their rows,
                so a validation over some query items needs no more. None: every item.
        """
        e = sp.csc_matrix(residuals, dtype=np.float64)
        n = e.shape[1]
        has = np.diff(e.indptr) > 0
        indptr = np.zeros(n + 1, dtype=np.int64)
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        todo = np.flatnonzero(has)
        if rows is not None:
            todo = np.intersect1d(todo, np.asarray(rows, dtype=np.int64))
        slot = np.full(e.shape[0], -1, dtype=np.int64)
        for j in todo.tolist():
            cand = candidates.indices[candidates.indptr[j]:candidates.indptr[j + 1]]
            cand = np.unique(cand[(cand != j) & has[cand]].astype(np.int64))
            if not len(cand):
                continue
            gram, rhs = _local_system(e, cand, j, slot)
            gram[np.diag_indices_from(gram)] += l2
            b = scipy.linalg.solve(gram, rhs, assume_a="pos", check_finite=False)
            if len(b) > top_k:
                top = np.sort(np.argpartition(-np.abs(b), top_k - 1)[:top_k])
                cand, b = cand[top], b[top]
            keep = b != 0.0
            indptr[j + 1] = int(keep.sum())
            cols.append(cand[keep])
            vals.append(b[keep])
        np.cumsum(indptr, out=indptr)
        if not cols:
            return cls(indptr, np.zeros(0, np.int32), np.zeros(0, np.float32))
        return cls(indptr, np.concatenate(cols).astype(np.int32),
                   np.concatenate(vals).astype(np.float32))

    def weights(self, power: float) -> sp.csr_matrix:
        """The CSR ``[N_I, N_I]`` of :math:`s_{ij}^{p}`."""
        n = self.num_items
        return sp.csr_matrix((self.sim ** power, self.indices, self.indptr), shape=(n, n))


def path_blocks(data: Any, use_co_engaged: bool = True, use_relations: bool = True
                ) -> dict[str, sp.csr_matrix]:
    r"""The blocks of the items' path profiles in ``data``, by name, each ``[N_I, N_X]`` and
    row-normalised: for every attribute node type ``X`` joined to ``Item`` (neither ``User``
    nor ``Item``, either direction) its incidence :math:`A_X`; with a ``(Category,
    CO_ENGAGED, Category)`` edge type (and ``use_co_engaged``), the block ``CO_ENGAGED``
    :math:`A_{Category} (I + C / 2)`, :math:`C` the positive part of the edges' NPMI
    ``weight`` (symmetric, no self-links): two items are joined through categories the same
    users engage with, even when they share no attribute. Before normalisation the block's
    inner product of items of categories :math:`a \ne b` is :math:`((I + C/2)^2)_{ab} =
    C_{ab} + (C^2)_{ab} / 4`: the link itself, and a quarter of the two-link paths (the
    profile :math:`A_{Category} C` alone would join two categories only through partners
    they share, and weigh a category's own items as much as its partners'). With
    ``use_relations``, for every relation file that reaches the items' values two hops away
    (:func:`~graph_meta.graph.relations.two_hop_files`: a brand's maker, where no item column
    holds the maker; sister brands), the block ``"X-TYPE-Y"`` (the
    file's ends and relationship type, e.g. ``"Brand-MADE_BY-Maker"``), :math:`A_X R`, or
    :math:`A_X (I + R + R^\top)` between values of one type
    (:func:`~graph_meta.graph.relations.relation_hop`): two thinly sold brands of one maker
    join their items, as :func:`~graph_meta.graph.relations.attribute_relation_incidence`
    does for the side prior. Two item columns (or files) of one node type make one block."""
    n = int(data[ITEM].num_nodes)
    blocks: dict[str, sp.csr_matrix] = {}
    raw: dict[str, sp.csr_matrix] = {}
    for src, rel, dst in data.edge_types:
        if rel.startswith("rev_") or (src == ITEM) == (dst == ITEM) or USER in (src, dst):
            continue
        ei = data[src, rel, dst].edge_index.cpu().numpy()
        items, attrs, other = (ei[0], ei[1], dst) if src == ITEM else (ei[1], ei[0], src)
        inc = sp.csr_matrix((np.ones(ei.shape[1]), (items, attrs)),
                            shape=(n, int(data[other].num_nodes)))
        if other in raw:  # two columns (or files) of one node type: one block
            inc = inc + raw[other]
        inc.data[:] = 1.0  # an edge listed twice is still one path
        raw[other] = inc
        blocks[other] = _row_normalised(inc)
    co_type = (CATEGORY, CO_ENGAGED, CATEGORY)
    if use_co_engaged and CATEGORY in raw and co_type in data.edge_types:
        store = data[co_type]
        ei = store.edge_index.cpu().numpy()
        w = (store.weight.cpu().numpy().astype(np.float64) if "weight" in store
             else np.ones(ei.shape[1]))
        n_cat = raw[CATEGORY].shape[1]
        off = ei[0] != ei[1]  # a self-link joins nothing the identity does not
        co = sp.csr_matrix((np.maximum(w[off], 0.0), (ei[0][off], ei[1][off])),
                           shape=(n_cat, n_cat))
        co = co.maximum(co.T)  # either direction joins the two categories
        co.eliminate_zeros()
        if co.nnz:
            # (I + C/2)(I + C/2) = I + C + C^2/4: profiles whose inner products are the links
            reach = sp.identity(n_cat, format="csr") + 0.5 * co
            blocks[CO_ENGAGED] = _row_normalised(sp.csr_matrix(raw[CATEGORY] @ reach))
    # the items' node columns (their HAS_ edges; a relation file may not be named HAS_)
    own = {dst for src, rel, dst in data.edge_types if src == ITEM and rel.startswith("HAS_")}
    files = [et for et in data.edge_types if not et[1].startswith(("rev_", "HAS_"))
             and et[1] not in (CO_ENGAGED, CO_LIKED, RATED)]
    for src, rel, dst, near, far in two_hop_files(files, own) if use_relations else ():
        ei = data[src, rel, dst].edge_index.cpu().numpy()
        ends = (ei[0], ei[1]) if src == near else (ei[1], ei[0])
        block = relation_hop(raw[near], *ends, int(data[far].num_nodes),
                             same_type=near == far)
        if block.nnz:
            blocks[f"{src}-{rel}-{dst}"] = _row_normalised(block)
    return blocks


def relation_links(data: Any) -> sp.csr_matrix:
    """``[N_I, N_I]`` the links of every item-item relation file of ``data`` (``(Item)-
    [SUCCEEDS]->(Item)``, ...; not the rating-derived ``CO_LIKED``), either direction, the
    file's ``weight`` where it has one (the largest over the files and directions of a pair),
    no self-loops. A never-rated item's relation links are known before its first rating, so
    they may join its neighbour lists (``model.neighbor_relation_weight``)."""
    n = int(data[ITEM].num_nodes)
    out = sp.csr_matrix((n, n))
    for src, rel, dst in data.edge_types:
        if src != ITEM or dst != ITEM or rel.startswith("rev_") or rel == CO_LIKED:
            continue
        store = data[src, rel, dst]
        ei = store.edge_index.cpu().numpy()
        w = (store.weight.cpu().numpy().astype(np.float64) if "weight" in store
             else np.ones(ei.shape[1]))
        keep = (ei[0] != ei[1]) & (w > 0)
        one = sp.csr_matrix((w[keep], (ei[0][keep], ei[1][keep])), shape=(n, n))
        out = out.maximum(one).maximum(one.T)
    return sp.csr_matrix(out)


def default_weight(name: str) -> float:
    """A path type's weight when none is given: 1 for an attribute type, 0 for
    ``CO_ENGAGED`` and for a path through a relation file between attribute nodes (``"Brand-
    MADE_BY-Maker"``; a node type's name has no ``-``): the items of one maker are many and
    would crowd a new item's list out of its own category's (planted makers, seed 1: item_cold
    0.8432 without the block, 0.8631 with it at 1); the weight search turns them on where the
    carve says so (:mod:`graph_meta.fitting.path_weights`)."""
    return 0.0 if name == CO_ENGAGED or "-" in name else 1.0


def weighted_blocks(blocks: Mapping[str, sp.csr_matrix],
                    type_weights: Mapping[str, float] | None) -> dict[str, sp.csr_matrix]:
    """The profile ``blocks`` of :func:`path_blocks` scaled by their ``type_weights`` entry
    (:func:`default_weight` where it has none); a block weighted 0 is left out."""
    weights = dict(type_weights or {})
    out = {}
    for name, block in blocks.items():
        w = float(weights.get(name, default_weight(name)))
        if w > 0:
            out[name] = w * block
    return out


def _sparse_top_k(prod: sp.csr_matrix, start: int, k: int, nudge: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:meth:`ItemNeighbors.from_profiles`' selection on a chunk of rows ``start ...`` of the
    similarity held sparse: per row the ``k`` largest ``s + nudge`` among the stored pairs
    (the diagonal left out), values ``(s + nudge) - nudge`` above 1e-12, by column. A pair
    that is not stored has ``s = 0``, which the dense selection drops too, so the lists are
    the dense ones (the same float operations give the same values).

    Returns:
        ``(entries per row [m], columns, values)``.
    """
    m = prod.shape[0]
    sizes = np.zeros(m, np.int64)
    cols_out: list[np.ndarray] = []
    vals_out: list[np.ndarray] = []
    ptr, indices, data = prod.indptr, prod.indices, prod.data
    for r in range(m):
        cols = indices[ptr[r]:ptr[r + 1]]
        sim = data[ptr[r]:ptr[r + 1]]
        off = cols != start + r
        cols, sim = cols[off], sim[off]
        key = sim + nudge[cols]
        if len(key) > k:
            top = np.argpartition(key, len(key) - k)[len(key) - k:]
            cols, key = cols[top], key[top]
        v = key - nudge[cols]
        keep = v > 1e-12
        cols, v = cols[keep], v[keep]
        order = np.argsort(cols)
        sizes[r] = len(cols)
        cols_out.append(cols[order])
        vals_out.append(v[order])
    if not cols_out:
        return sizes, np.zeros(0, np.int64), np.zeros(0)
    return sizes, np.concatenate(cols_out), np.concatenate(vals_out)


def _local_system(e: sp.csc_matrix, cand: np.ndarray, j: int,
                  slot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(E_C^T E_C, E_C^T e_j)`` of :meth:`ItemNeighbors.from_residuals_local` (dense), over
    the users who rated a candidate only: a product over every user would build (and convert)
    index arrays as long as the user count for each item. ``slot`` ``[N_U]`` is scratch
    space, -1 everywhere on entry and on return."""
    ec = e[:, cand]
    first = np.arange(len(ec.indices))
    slot[ec.indices] = first  # one entry of each user is stored last: it names the user
    owner = slot[ec.indices]
    users = ec.indices[owner == first]
    slot[users] = np.arange(len(users))
    compact = sp.csc_matrix((ec.data, slot[ec.indices], ec.indptr),
                            shape=(len(users), len(cand)))
    raters = e.indices[e.indptr[j]:e.indptr[j + 1]]
    at = slot[raters]
    target = np.zeros(len(users))
    target[at[at >= 0]] = e.data[e.indptr[j]:e.indptr[j + 1]][at >= 0]
    slot[users] = -1
    return (compact.T @ compact).toarray(), compact.T @ target


def _pruned_top_k(f: sp.csr_matrix, k: int, nudge: np.ndarray, *, members: int, small: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-``k`` lists of the row-normalised profiles ``f`` ``[N, F]`` over pruned candidates
    (module docstring): the rows sharing a column of at most ``small`` rows with the
    row, and the ``members`` rows of largest ``nudge`` (the most rated) of each larger
    column. Every candidate's similarity is exact: the columns of each pair that the
    candidate matrix leaves out are added back from a dense copy of the large columns (at
    most :data:`_DENSE_LARGE_ENTRIES` entries; columns past that count as small). Selection
    and ties as in :func:`_sparse_top_k`.

    Returns:
        ``(entries per row [N], columns, values)``.
    """
    n, nf = f.shape
    fc = f.tocsc()
    deg = np.diff(fc.indptr)
    order = np.argsort(-deg, kind="stable")
    n_large = int(min((deg > small).sum(), max(_DENSE_LARGE_ENTRIES // max(n, 1), 1)))
    large = np.sort(order[:n_large])
    # the candidate entries: every entry of a small column, the `members` rows of largest
    # nudge of a large one
    keep = np.ones(fc.nnz, dtype=bool)
    for col in large.tolist():
        a, b = fc.indptr[col], fc.indptr[col + 1]
        rows = fc.indices[a:b]
        drop = np.argsort(-nudge[rows], kind="stable")[members:]
        keep[a + drop] = False
    cand = sp.csc_matrix((fc.data * keep, fc.indices.copy(), fc.indptr.copy()), shape=(n, nf))
    cand.eliminate_zeros()
    rest = (fc - cand)[:, large].tocsr()  # [N, L]: large-column entries left out of cand
    rest.eliminate_zeros()
    dense_large = f[:, large].toarray()  # [N, L]
    cand_t = sp.csr_matrix(cand.T)
    # an upper bound of each row's candidate pairs sizes the chunks
    per_row = np.asarray(f.astype(bool).astype(np.float64) @ np.diff(cand.indptr)).ravel()
    sizes = np.zeros(n, np.int64)
    cols_out: list[np.ndarray] = []
    vals_out: list[np.ndarray] = []
    start = 0
    cum = np.r_[0.0, np.cumsum(per_row)]
    while start < n:
        stop = int(np.searchsorted(cum, cum[start] + _PAIRS_PER_CHUNK, side="right")) - 1
        stop = min(max(stop, start + 1), n)
        prod = sp.csr_matrix(f[start:stop] @ cand_t).tocoo()
        r, c, v = prod.row, prod.col, prod.data.copy()
        if n_large and rest.nnz:  # each pair's large columns that cand left out of c
            part = rest[c]
            owner = np.repeat(np.arange(len(c)), np.diff(part.indptr))
            np.add.at(v, owner, dense_large[start + r[owner], part.indices] * part.data)
        chunk = sp.csr_matrix((v, (r, c)), shape=(stop - start, n))
        chunk_sizes, top_cols, top_vals = _sparse_top_k(chunk, start, k, nudge)
        sizes[start:stop] = chunk_sizes
        cols_out.append(top_cols)
        vals_out.append(top_vals)
        start = stop
    return sizes, np.concatenate(cols_out), np.concatenate(vals_out)


def _spd_inverse_inplace(a: np.ndarray) -> np.ndarray:
    """The inverse of the symmetric positive definite ``a`` ``[R, R]`` (C-contiguous
    float64), written over ``a`` and returned: a Cholesky factor and its inverse
    (LAPACK ``potrf`` / ``potri``, about half the flops of an LU inverse) in one triangle,
    then mirrored onto the other in row blocks, so no second ``[R, R]`` is ever allocated
    (``scipy.linalg.inv`` held two)."""
    n = a.shape[0]
    if n == 0:
        return a
    # a is symmetric, so its transpose (a Fortran-ordered view of the same memory) is a;
    # LAPACK's lower triangle of that view is the upper triangle of ``a``
    potrf, potri = scipy.linalg.lapack.get_lapack_funcs(("potrf", "potri"), (a,))
    c, info = potrf(a.T, lower=1, clean=1, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"potrf: the Gram matrix is not positive definite "
                                    f"(info {info})")
    inv, info = potri(c, lower=1, overwrite_c=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"potri failed (info {info})")
    a = np.ascontiguousarray(inv.T)  # a view of ``a`` again: its upper triangle is the inverse
    step = max(1, _CHUNK_ENTRIES // n)
    for start in range(0, n, step):
        stop = min(start + step, n)
        # the rows' left part (below the diagonal) from the upper triangle's columns
        a[start:stop, :start] = a[:start, start:stop].T
        block = a[start:stop, start:stop]
        block[...] = np.triu(block) + np.triu(block, 1).T
    return a


def rating_counts(data: Any) -> np.ndarray:
    """``[N_I]`` training ratings per item (0 when the snapshot has no rating edges)."""
    n = int(data[ITEM].num_nodes)
    if (USER, RATED, ITEM) not in data.edge_types:
        return np.zeros(n)
    return np.bincount(data[USER, RATED, ITEM].edge_index[1].cpu().numpy(), minlength=n)


def residual_correction(weights: sp.csr_matrix, residual: np.ndarray, known: np.ndarray,
                        shrink: float) -> np.ndarray:
    r"""The correction of every row of ``weights`` (module docstring).

    Args:
        weights: ``[Q, N_I]`` :math:`s_{jh}^p` of the items ``j`` to correct.
        residual: ``[N_I]`` :math:`e_{uh}` (0 where the user has not rated ``h``).
        known: ``[N_I]`` 1 where the user rated ``h``, else 0.
        shrink: :math:`\beta > 0`.

    Returns:
        ``[Q]`` the amounts to add to the predictions.
    """
    return (weights @ residual) / (weights @ known + shrink)
