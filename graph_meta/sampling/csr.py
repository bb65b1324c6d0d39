"""Compressed sparse rows over typed edge arrays, and vectorized neighbor sampling on them.

A :class:`CSR` indexes the edges of one type by one endpoint: row ``r`` holds the edges whose
row endpoint is ``r``, sorted by the other endpoint, with their positions in the edge arrays
(``edge_ids``). Everything is numpy: ten million edges are three int64 arrays, and a batch of
seeds is sampled without a Python loop over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CSR:
    """Rows -> (neighbor, edge id), neighbors sorted within each row.

    Attributes:
        indptr: ``[num_rows + 1]``; row ``r`` spans ``indptr[r]:indptr[r+1]``.
        indices: ``[nnz]`` neighbor node index of each entry.
        edge_ids: ``[nnz]`` position of each entry in the original edge arrays.
        keys: ``[nnz]`` sorted ``row << 32 | col``, for vectorized edge look-up.
    """

    indptr: np.ndarray
    indices: np.ndarray
    edge_ids: np.ndarray
    keys: np.ndarray

    @classmethod
    def from_edges(cls, rows: np.ndarray, cols: np.ndarray, num_rows: int) -> CSR:
        """Index edges ``rows[e] -> cols[e]`` by ``rows``; O(E log E)."""
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        perm = np.lexsort((cols, rows))
        counts = np.bincount(rows, minlength=num_rows) if len(rows) else np.zeros(
            num_rows, np.int64)
        indptr = np.zeros(num_rows + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(indptr, cols[perm], perm.astype(np.int64), _composite(rows[perm], cols[perm]))

    @property
    def num_rows(self) -> int:
        return len(self.indptr) - 1

    def degree(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        inside = rows < self.num_rows
        out = np.zeros(len(rows), dtype=np.int64)
        r = rows[inside]
        out[inside] = self.indptr[r + 1] - self.indptr[r]
        return out

    def row(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """Neighbors and edge ids of one row (empty for rows beyond the index)."""
        if r >= self.num_rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        a, b = self.indptr[r], self.indptr[r + 1]
        return self.indices[a:b], self.edge_ids[a:b]

    def find(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Edge id of each ``(rows[k], cols[k])``, or -1 where there is none. Vectorized."""
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        if len(self.keys) == 0:
            return np.full(len(rows), -1, dtype=np.int64)
        key = _composite(rows, cols)
        pos = np.minimum(np.searchsorted(self.keys, key), len(self.keys) - 1)
        return np.where(self.keys[pos] == key, self.edge_ids[pos], -1)

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All entries of ``rows``: ``(seed_position, neighbor, edge_id)``. Vectorized."""
        rows = np.asarray(rows, dtype=np.int64)
        deg = self.degree(rows)
        total = int(deg.sum())
        seed_pos = np.repeat(np.arange(len(rows)), deg)
        if total == 0:
            z = np.zeros(0, np.int64)
            return seed_pos, z, z
        starts = np.where(deg > 0, self.indptr[np.minimum(rows, self.num_rows - 1)], 0)
        offsets = np.arange(total) - np.repeat(np.cumsum(deg) - deg, deg)
        flat = np.repeat(starts, deg) + offsets
        return seed_pos, self.indices[flat], self.edge_ids[flat]

    def sample(
        self,
        rows: np.ndarray,
        fanout: int,
        rng: np.random.Generator,
        *,
        excluded: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Up to ``fanout`` distinct entries per row, uniformly at random. Vectorized.

        Rows with at most ``fanout`` entries keep them all; larger rows draw ``fanout``
        positions with replacement and keep the distinct ones. ``fanout < 0`` keeps all.
        Entries whose edge id is flagged in the boolean mask ``excluded`` never appear.

        Returns:
            ``(seed_position, neighbor, edge_id)``, one element per sampled entry.
        """
        rows = np.asarray(rows, dtype=np.int64)
        if fanout < 0:
            seed_pos, nbr, eid = self.gather(rows)
        else:
            deg = self.degree(rows)
            small = deg <= fanout
            s_pos, s_nbr, s_eid = self.gather(rows[small])
            s_pos = np.flatnonzero(small)[s_pos]
            big = np.flatnonzero(~small)
            if len(big):
                starts = self.indptr[rows[big]]
                draw = (rng.random((len(big), fanout)) * deg[big][:, None]).astype(np.int64)
                draw.sort(axis=1)
                distinct = np.ones_like(draw, dtype=bool)
                distinct[:, 1:] = draw[:, 1:] != draw[:, :-1]
                flat = (starts[:, None] + draw)[distinct]
                b_pos = np.repeat(big, distinct.sum(axis=1))
                seed_pos = np.concatenate([s_pos, b_pos])
                nbr = np.concatenate([s_nbr, self.indices[flat]])
                eid = np.concatenate([s_eid, self.edge_ids[flat]])
            else:
                seed_pos, nbr, eid = s_pos, s_nbr, s_eid
        if excluded is not None and len(eid):
            keep = ~excluded[eid]
            seed_pos, nbr, eid = seed_pos[keep], nbr[keep], eid[keep]
        return seed_pos, nbr, eid


def _composite(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return (np.asarray(rows, np.int64) << np.int64(32)) | np.asarray(cols, np.int64)
