r"""Incremental caches that keep a live update's cost proportional to what it touches.

Two structures serve :meth:`graph_meta.model.GraphMetaRecommender.score_all_users` after
ratings were observed (:meth:`~graph_meta.model.GraphMetaRecommender.observe`):

- :class:`UserRowSums` holds, for every known user with observed ratings, the part of their
  ridge fold-in that comes from those ratings: :math:`A^{live}_u = \sum_j s\,x_j x_j^\top`
  ``[D, D]`` and :math:`c^{live}_u = \sum_j s\,x_j t_{uj}` ``[D]`` (``s = -1`` for a training
  rating an observed one replaced). The model adds one *block* per item (its observed
  raters' rows under the item's current state) and takes the old block out when the item's
  state or raters change, so a user's fold-in
  :math:`(A^{hist}_u + A^{live}_u + \Lambda)^{-1}(c^{hist}_u + c^{live}_u + \Lambda\theta^0_u)`
  is one ``D x D`` solve, whatever the size of their log.
- :class:`EdgeResiduals` keeps the residual :math:`e_{uh} = r_{uh} - \hat r_{uh}` of every
  training rating in item-major order, recomputed only where the user's or the item's state
  moved since (``dirty``); a training rating replaced by an observed one is flagged and
  weighs nothing. Re-scoring an item for every user then reads the columns of its
  neighbours, :math:`O(\sum_{h \in N(j)} n_h)`, instead of every rating.
"""

from __future__ import annotations

import numpy as np

from graph_meta.live_kernels import neighbour_sums

__all__ = ["EdgeResiduals", "RowPart", "UserRowSums", "ranges"]


def ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """``[sum(stops - starts)]`` the concatenation of ``arange(starts[k], stops[k])``."""
    lengths = stops - starts
    total = int(lengths.sum())
    if not total:
        return np.zeros(0, np.int64)
    offsets = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
    return offsets + np.arange(total)


#: one part of an item's block: ``(users [n] distinct, row [D], targets [n], sign)``, i.e.
#: :math:`A_u \mathrel{+}= s\,x x^\top`, :math:`c_u \mathrel{+}= s\,x\,t_u` for each user
RowPart = tuple[np.ndarray, np.ndarray, np.ndarray, float]


class UserRowSums:
    """Per-user sums ``A [D, D]`` and ``c [D]`` of signed rating rows, grown on demand."""

    def __init__(self, d_state: int) -> None:
        self.d_state = d_state
        self.slot_of = np.zeros(0, np.int64)  # user position -> row of a / c (-1: none)
        self.used = 0
        self.a = np.zeros((0, d_state, d_state))
        self.c = np.zeros((0, d_state))

    def _slots(self, users: np.ndarray) -> np.ndarray:
        if len(users) and users.max() >= len(self.slot_of):
            grown = np.full(max(int(users.max()) + 1, 2 * len(self.slot_of)), -1, np.int64)
            grown[:len(self.slot_of)] = self.slot_of
            self.slot_of = grown
        slots = self.slot_of[users]
        fresh = slots < 0
        if fresh.any():
            new = np.unique(users[fresh])
            self.slot_of[new] = np.arange(self.used, self.used + len(new))
            self.used += len(new)
            slots = self.slot_of[users]
            if self.used > len(self.a):
                cap = max(self.used, 2 * len(self.a), 64)
                a, c = np.zeros((cap, self.d_state, self.d_state)), np.zeros((cap, self.d_state))
                a[:len(self.a)], c[:len(self.c)] = self.a, self.c
                self.a, self.c = a, c
        return slots

    def add(self, part: RowPart, sign: float = 1.0) -> None:
        """Add ``part`` (:data:`RowPart`; ``sign = -1`` takes it out again)."""
        users, row, targets, s = part
        if not len(users):
            return
        slots = self._slots(np.asarray(users, dtype=np.int64))
        s = s * sign
        self.a[slots] += s * np.outer(row, row)
        self.c[slots] += (s * np.asarray(targets))[:, None] * row

    def get(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(A [n, D, D], c [n, D])`` of ``users`` (zeros for a user never added)."""
        users = np.asarray(users, dtype=np.int64)
        slots = np.full(len(users), -1, np.int64)
        inside = users < len(self.slot_of)
        slots[inside] = self.slot_of[users[inside]]
        has = slots >= 0
        a = np.zeros((len(users), self.d_state, self.d_state))
        c = np.zeros((len(users), self.d_state))
        a[has], c[has] = self.a[slots[has]], self.c[slots[has]]
        return a, c


class EdgeResiduals:
    """Residuals of the training ratings (item-major) and of the observed ones, each
    recomputed only after its user's or item's state moved.

    Training ratings carry a ``dirty`` flag set by :meth:`mark_items` / :meth:`mark_users`;
    observed ratings (:meth:`set_live`, appended as they arrive) carry the version of their
    user's and item's state they were computed under, so a user's move costs ``O(1)``.

    Args:
        indptr: ``[N_U + 1]`` the user-major (CSR) bounds of the training ratings.
        items: ``[E]`` their item positions (user-major order).
        ratings: ``[E]`` their ratings.
        num_items: ``N_I``.
    """

    def __init__(self, indptr: np.ndarray, items: np.ndarray, ratings: np.ndarray,
                 num_items: int) -> None:
        num_users = len(indptr) - 1
        user_of = np.repeat(np.arange(num_users), np.diff(indptr))
        order = np.argsort(items, kind="stable")
        self.col_ptr = np.searchsorted(items[order], np.arange(num_items + 1))
        self.users = user_of[order]
        self.ratings = ratings[order]
        self.user_ptr = np.asarray(indptr, dtype=np.int64)
        self.to_col = np.empty(len(order), np.int64)  # user-major position -> item-major
        self.to_col[order] = np.arange(len(order))
        self.residual = np.zeros(len(order))
        self.dirty = np.ones(len(order), dtype=bool)
        self.replaced = np.zeros(len(order), dtype=bool)
        # observed ratings: (user, item, rating, residual, user/item version) per edge id
        self.user_version = np.zeros(num_users, np.int64)
        self.item_version = np.zeros(num_items, np.int64)
        self.live_user = np.zeros(0, np.int64)
        self.live_rating = np.zeros(0)
        self.live_residual = np.zeros(0)
        self.live_user_stamp = np.zeros(0, np.int64)
        self.live_item_stamp = np.zeros(0, np.int64)
        self.live_ids: dict[int, np.ndarray] = {}  # item -> its observed ratings' edge ids
        self.live_source: dict[int, object] = {}  # item -> what set_live was last given
        self._free: list[int] = []

    def clear_live(self) -> None:
        """Back to training: no observed rating, every residual stale."""
        self.dirty[:] = True
        self.replaced[:] = False
        self.live_ids.clear()
        self.live_source.clear()
        self._free = list(range(len(self.live_user)))

    def column(self, item: int) -> slice:
        return slice(int(self.col_ptr[item]), int(self.col_ptr[item + 1]))

    def mark_items(self, items: np.ndarray) -> None:
        """The states of ``items`` moved: their ratings' residuals are stale."""
        for j in np.asarray(items).tolist():
            self.dirty[self.column(j)] = True
            self.item_version[j] += 1

    def mark_users(self, users: np.ndarray) -> None:
        """The states of ``users`` moved."""
        users = np.asarray(users, dtype=np.int64)
        self.dirty[self.to_col[ranges(self.user_ptr[users], self.user_ptr[users + 1])]] = True
        self.user_version[users] += 1

    def set_replaced(self, item: int, users: np.ndarray) -> None:
        """Flag the training ratings of ``item`` by ``users`` as replaced (the others not)."""
        col = self.column(item)
        self.replaced[col] = np.isin(self.users[col], users)

    def set_live(self, item: int, users: np.ndarray, ratings: np.ndarray) -> None:
        """The observed ratings of ``item`` are now ``(users, ratings)`` (all of them); the
        training ratings they replaced are flagged."""
        self.set_replaced(item, users)
        old = self.live_ids.pop(item, None)
        if old is not None:
            self._free.extend(old.tolist())
        if not len(users):
            return
        need = len(users) - len(self._free)
        if need > 0:  # grow the edge arrays (doubling)
            size = len(self.live_user)
            cap = max(size + need, 2 * size, 1024)
            self.live_user = np.resize(self.live_user, cap)
            self.live_rating = np.resize(self.live_rating, cap)
            self.live_residual = np.resize(self.live_residual, cap)
            self.live_user_stamp = np.resize(self.live_user_stamp, cap)
            self.live_item_stamp = np.resize(self.live_item_stamp, cap)
            self._free.extend(range(size, cap))
        ids = np.array([self._free.pop() for _ in range(len(users))], dtype=np.int64)
        self.live_user[ids] = users
        self.live_rating[ids] = ratings
        self.live_user_stamp[ids] = -1  # versions start at 0: stale
        self.live_ids[item] = ids

    def gather(self, cols: np.ndarray, theta: np.ndarray, items: np.ndarray, mu: float,
               head: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(user positions, item positions, residuals)`` of the ratings of the items
        ``cols``: training ratings that no observed rating replaced, then observed ratings,
        under user states ``theta`` ``[N_U, D]`` and item states ``items`` ``[N_I, D]``."""
        cols = np.asarray(cols, dtype=np.int64)
        edges = ranges(self.col_ptr[cols], self.col_ptr[cols + 1])
        hit = np.repeat(cols, self.col_ptr[cols + 1] - self.col_ptr[cols])
        users = self.users[edges]
        stale = np.flatnonzero(self.dirty[edges])
        if len(stale):
            e = edges[stale]
            self.residual[e] = self.ratings[e] - _fitted(mu, head, theta, items, users[stale],
                                                          hit[stale])
            self.dirty[e] = False
        res = self.residual[edges]
        if self.replaced[edges].any():
            keep = ~self.replaced[edges]
            users, hit, res = users[keep], hit[keep], res[keep]
        live = self.gather_live(cols, theta, items, mu, head)
        if live is None:
            return users, hit, res
        return (np.concatenate([users, live[0]]), np.concatenate([hit, live[1]]),
                np.concatenate([res, live[2]]))

    def live_edges(self, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """``(edge ids, item positions)`` of the observed ratings of the items ``cols`` (None
        when they have none)."""
        parts = [(j, self.live_ids[j]) for j in np.asarray(cols).tolist()
                 if j in self.live_ids]
        if not parts:
            return None
        ids = np.concatenate([p for _, p in parts]).astype(np.int64, copy=False)
        return ids, np.repeat(np.array([j for j, _ in parts], dtype=np.int64),
                              [len(p) for _, p in parts])

    def gather_live(self, cols: np.ndarray, theta: np.ndarray, items: np.ndarray, mu: float,
                    head: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """:meth:`gather`'s observed ratings alone (None when ``cols`` have none)."""
        edges = self.live_edges(cols)
        if edges is None:
            return None
        ids, live_items = edges
        live_users = self.live_user[ids]
        u_now, i_now = self.user_version[live_users], self.item_version[live_items]
        stale = np.flatnonzero((self.live_user_stamp[ids] != u_now)
                               | (self.live_item_stamp[ids] != i_now))
        if len(stale):
            e = ids[stale]
            self.live_residual[e] = self.live_rating[e] - _fitted(
                mu, head, theta, items, live_users[stale], live_items[stale])
            self.live_user_stamp[e], self.live_item_stamp[e] = u_now[stale], i_now[stale]
        return live_users, live_items, self.live_residual[ids]

    def neighbour_sums(self, cols: np.ndarray, theta: np.ndarray, items: np.ndarray,
                       mu: float, head: np.ndarray, w_sim: np.ndarray, w_reg: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        r"""``(num, den, learned)`` ``[N_U]`` each: over the ratings of the items ``cols``
        (:meth:`gather`), :math:`\sum w^{sim}_i e_{ui}`, :math:`\sum w^{sim}_i` and
        :math:`\sum w^{reg}_i e_{ui}` per user, with ``w_sim`` and ``w_reg`` ``[N_I]``:
        one compiled pass where it was built (:mod:`graph_meta.live_kernels`), else
        :meth:`gather` and three bincounts."""
        n = len(theta)
        cols = np.asarray(cols, dtype=np.int64)
        sums = neighbour_sums(self, cols, theta, items, mu, head, w_sim, w_reg)
        if sums is None:
            users, hit, e = self.gather(cols, theta, items, mu, head)
            return (np.bincount(users, w_sim[hit] * e, minlength=n),
                    np.bincount(users, w_sim[hit], minlength=n),
                    np.bincount(users, w_reg[hit] * e, minlength=n))
        return sums


def _fitted(mu: float, head: np.ndarray, theta: np.ndarray, items: np.ndarray,
            users: np.ndarray, hit: np.ndarray) -> np.ndarray:
    """``[E]`` the backbone's ratings of the pairs ``(users[k], hit[k])`` under user states
    ``theta`` ``[N_U, D]`` and item states ``items`` ``[N_I, D]``."""
    t, x = theta[users], items[hit]
    return mu + head[0] + (1.0 + head[1]) * (
        t[:, 0] + x[:, 0] + np.einsum("nd,nd->n", t[:, 1:], x[:, 1:]))
