r"""Meta-training episodes from the training ratings, with their query edges hidden.

Every ``RATED`` edge ``e`` of a snapshot has an id (its position in ``(User, RATED, Item)``,
the same position in ``(Item, rev_RATED, User)``). :class:`RatingIndex` indexes them by user
and by item with :class:`~graph_meta.sampling.csr.CSR`.

**Cold item set.** Each training step draws a random set :math:`C` of items (fraction
``cold_item_fraction``; optionally weighted, e.g. toward the newest releases, as the
benchmark's new items are) that play *new items*: their learned residual embeddings are dropped
(the model sees their graph prior only) and their rating edges are hidden from every history.

**User tasks** (:meth:`EpisodeSampler.user_tasks`), one per user, of a kind mimicking the four
benchmark scenarios: ``warm`` / ``user_cold`` draw support and query from the user's ratings of
items outside :math:`C`, ``item_cold`` / ``user_item_cold`` from items inside :math:`C`
(falling back to the warm kind when the user has fewer than 4 such ratings). ``Q`` query
ratings, ``K ~ U{1..min(max_support, n-Q)}`` support ratings (``K = 0`` with probability
``p_zero_shot``). For the user-warm kinds the *history* is every other rating of the user on
items outside :math:`C`, sampled with ``CSR.sample(..., excluded=mask)`` where ``mask`` flags
the episode's query and support edges and every edge of :math:`C`; user-cold kinds have no
history.

**Item tasks** (:meth:`EpisodeSampler.item_tasks`), one per item of :math:`C`: ``K`` of its
ratings (log-uniform in ``1 .. item_max_support``, the range a new item's ratings span while
a live shop serves it) are the support, ``Q`` others the query; the users involved get their
histories with every edge of :math:`C` (so every edge of the task's item) excluded: the item
is seen cold.

**Mixed batches** (:meth:`EpisodeSampler.batch`): one cold set, ``batch_users`` user tasks and
``batch_items`` item tasks.

Shapes (numpy; ``B`` tasks, ``K = max_support``, ``Q = query_size``, ``L = history_fanout``):
``support_*`` ``[B, K]``, ``query_*`` ``[B, Q]``, ``hist_*`` ``[B, L]`` with float masks.
The invariant — a task sees no query rating, and an item playing new has no rating edge and no
learned state in the meta-batch's computation — is tested on the tensors and losses training
uses (``tests/test_episodes.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch_geometric.data import HeteroData

from graph_meta.sampling.csr import CSR

__all__ = [
    "KINDS",
    "EpisodeSampler",
    "ItemEpisodes",
    "RatingIndex",
    "UserEpisodes",
    "pad_rows",
]

KINDS = ("warm", "user_cold", "item_cold", "user_item_cold")
RATED_TYPE = ("User", "RATED", "Item")


@dataclass(frozen=True)
class RatingIndex:
    """The training rating edges, indexed by user and by item (edge id = position)."""

    user: np.ndarray
    item: np.ndarray
    rating: np.ndarray
    num_users: int
    num_items: int
    by_user: CSR
    by_item: CSR

    @classmethod
    def from_graph(cls, data: HeteroData) -> RatingIndex:
        store = data[RATED_TYPE]
        ei = store.edge_index.cpu().numpy()
        user, item = ei[0].astype(np.int64), ei[1].astype(np.int64)
        nu, ni = int(data["User"].num_nodes), int(data["Item"].num_nodes)
        rating = store.rating.cpu().numpy().astype(np.float32)
        return cls(user, item, rating, nu, ni, CSR.from_edges(user, item, nu),
                   CSR.from_edges(item, user, ni))

    @property
    def num_edges(self) -> int:
        return len(self.user)

    @property
    def mean(self) -> float:
        return float(self.rating.mean()) if len(self.rating) else 0.0


def pad_rows(seed_pos: np.ndarray, values: list[np.ndarray], n_rows: int,
             width: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Scatter flat ``(seed_pos, value)`` entries into ``[n_rows, width]`` arrays + mask.

    Entries beyond ``width`` in a row are dropped (the caller sizes ``width``).
    """
    order = np.argsort(seed_pos, kind="stable")
    seed_pos = seed_pos[order]
    counts = np.bincount(seed_pos, minlength=n_rows)
    starts = np.cumsum(counts) - counts
    col = np.arange(len(seed_pos)) - np.repeat(starts, counts)
    keep = col < width
    mask = np.zeros((n_rows, width), np.float32)
    mask[seed_pos[keep], col[keep]] = 1.0
    out = []
    for v in values:
        arr = np.zeros((n_rows, width), dtype=v.dtype)
        arr[seed_pos[keep], col[keep]] = v[order][keep]
        out.append(arr)
    return out, mask


@dataclass
class UserEpisodes:
    """A batch of user tasks (numpy arrays; see the module docstring for shapes)."""

    users: np.ndarray
    kind: np.ndarray
    support_items: np.ndarray
    support_y: np.ndarray
    support_mask: np.ndarray
    support_edges: np.ndarray
    query_items: np.ndarray
    query_y: np.ndarray
    query_mask: np.ndarray
    query_edges: np.ndarray
    hist_items: np.ndarray
    hist_y: np.ndarray
    hist_mask: np.ndarray
    hist_edges: np.ndarray

    def __len__(self) -> int:
        return len(self.users)


@dataclass
class ItemEpisodes:
    """A batch of item tasks; users index ``ctx_users`` (their own histories)."""

    items: np.ndarray
    support_users: np.ndarray
    support_y: np.ndarray
    support_mask: np.ndarray
    support_edges: np.ndarray
    query_users: np.ndarray
    query_y: np.ndarray
    query_mask: np.ndarray
    query_edges: np.ndarray
    ctx_users: np.ndarray
    hist_items: np.ndarray
    hist_y: np.ndarray
    hist_mask: np.ndarray
    hist_edges: np.ndarray

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class EpisodeBatch:
    """One mixed meta-batch: a cold item set, user tasks and item tasks."""

    cold_items: np.ndarray
    users: UserEpisodes
    items: ItemEpisodes | None
    dropped_users: int = 0
    dropped_items: int = 0


class EpisodeSampler:
    """Draws mixed meta-batches of user and item tasks from a :class:`RatingIndex`."""

    def __init__(self, index: RatingIndex, *, query_size: int = 10,
                 query_fraction: float = 0.0, max_support: int = 90,
                 history_fanout: int = 256, item_max_support: int = 20,
                 item_history_fanout: int = 64, cold_item_fraction: float = 0.15,
                 kind_probs: tuple[float, float, float, float] = (0.35, 0.2, 0.3, 0.15),
                 p_zero_shot: float = 0.05, min_user_ratings: int = 4,
                 min_item_ratings: int = 4,
                 cold_item_weights: np.ndarray | None = None) -> None:
        if not 0.0 <= cold_item_fraction < 1.0:
            raise ValueError("cold_item_fraction must be in [0, 1)")
        p = np.asarray(kind_probs, dtype=np.float64)
        if p.shape != (4,) or (p < 0).any() or p.sum() <= 0:
            raise ValueError("kind_probs must be 4 non-negative numbers, not all zero")
        self.index = index
        self.query_size = int(query_size)
        self.query_fraction = float(query_fraction)
        self.max_support = int(max_support)
        self.history_fanout = int(history_fanout)
        self.item_max_support = int(item_max_support)
        self.item_history_fanout = int(item_history_fanout)
        self.cold_item_fraction = float(cold_item_fraction)
        self.kind_probs = p / p.sum()
        self.p_zero_shot = float(p_zero_shot)
        deg_u = index.by_user.degree(np.arange(index.num_users))
        deg_i = index.by_item.degree(np.arange(index.num_items))
        self.task_users = np.flatnonzero(deg_u >= min_user_ratings)
        self.rated_items = np.flatnonzero(deg_i > 0)
        self.task_items_min = int(min_item_ratings)
        self.deg_i = deg_i
        self.cold_p: np.ndarray | None = None
        if cold_item_weights is not None:
            w = np.asarray(cold_item_weights, dtype=np.float64)[self.rated_items]
            self.cold_p = w / w.sum() if w.sum() > 0 else None

    # ------------------------------------------------------------------ cold item sets
    def cold_items(self, rng: np.random.Generator) -> np.ndarray:
        """A boolean ``[num_items]`` mask: the items playing *new* in this batch."""
        mask = np.zeros(self.index.num_items, dtype=bool)
        n = round(self.cold_item_fraction * len(self.rated_items))
        if n:
            mask[rng.choice(self.rated_items, size=n, replace=False, p=self.cold_p)] = True
        return mask

    def _edge_mask(self, cold: np.ndarray) -> np.ndarray:
        return cold[self.index.item]

    # ------------------------------------------------------------------ user tasks
    def user_tasks(self, rng: np.random.Generator, users: np.ndarray,
                   cold: np.ndarray, query_edges: np.ndarray | None = None) -> UserEpisodes:
        """One task per user in ``users`` (see the module docstring).

        ``query_edges`` (bool ``[E]``): when given, query ratings are drawn from these edges
        only and support/history never contain one of them (the training loop refits the
        item states without them)."""
        idx = self.index
        q_size, k_max = self.query_size, self.max_support
        kinds = rng.choice(4, size=len(users), p=self.kind_probs)
        sup_pos, sup_e, qry_pos, qry_e = [], [], [], []
        for b, u in enumerate(users):
            _, eid = idx.by_user.row(int(u))
            is_cold = cold[idx.item[eid]]
            k = int(kinds[b])
            pool = eid[is_cold] if k >= 2 else eid[~is_cold]
            if k >= 2 and len(pool) < 4:
                k -= 2
                pool = eid[~is_cold]
            if len(pool) < 2:
                pool = eid
            kinds[b] = k
            perm = rng.permutation(pool)
            if query_edges is not None and query_edges[perm].any():
                held = query_edges[perm]
                q_cand, rest = perm[held], perm[~held]
            else:
                q_cand, rest = perm, perm[:0]
            q = min(max(q_size, int(self.query_fraction * len(perm))),
                    max(1, len(q_cand) if len(rest) else len(q_cand) // 2))
            rest = np.concatenate([rest, q_cand[q:]]) if len(rest) else q_cand[q:]
            if query_edges is not None:
                rest = rest[~query_edges[rest]]
            if len(rest) == 0 or rng.random() < self.p_zero_shot:
                n_sup = 0
            else:
                n_sup = int(rng.integers(1, min(k_max, len(rest)) + 1))
            qry_e.append(q_cand[:q])
            qry_pos.append(np.full(q, b))
            sup_e.append(rest[:n_sup])
            sup_pos.append(np.full(n_sup, b))
        sup_e_a = np.concatenate(sup_e).astype(np.int64)
        qry_e_a = np.concatenate(qry_e).astype(np.int64)
        sup_pos_a = np.concatenate(sup_pos).astype(np.int64)
        qry_pos_a = np.concatenate(qry_pos).astype(np.int64)
        excluded = self._edge_mask(cold)
        excluded[sup_e_a] = True
        excluded[qry_e_a] = True
        if query_edges is not None:
            excluded |= query_edges
        warm_rows = np.flatnonzero(kinds % 2 == 0)  # warm and item_cold: the user is known
        h_pos, _, h_e = idx.by_user.sample(users[warm_rows], self.history_fanout, rng,
                                           excluded=excluded)
        h_pos = warm_rows[h_pos]
        n = len(users)
        (s_items, s_y, _s_e), s_mask = pad_rows(
            sup_pos_a, [idx.item[sup_e_a], idx.rating[sup_e_a], sup_e_a], n, k_max)
        q_width = max(q_size, int(np.bincount(qry_pos_a, minlength=n).max(initial=1)))
        (q_items, q_y, _q_e), q_mask = pad_rows(
            qry_pos_a, [idx.item[qry_e_a], idx.rating[qry_e_a], qry_e_a], n, q_width)
        width = max(1, self.history_fanout if self.history_fanout > 0 else int(
            np.bincount(h_pos, minlength=n).max(initial=1)))
        (h_items, h_y), h_mask = pad_rows(h_pos, [idx.item[h_e], idx.rating[h_e]], n, width)
        return UserEpisodes(users.astype(np.int64), kinds, s_items, s_y, s_mask, sup_e_a,
                            q_items, q_y, q_mask, qry_e_a, h_items, h_y, h_mask, h_e)

    # ------------------------------------------------------------------ item tasks
    def item_tasks(self, rng: np.random.Generator, n_tasks: int,
                   cold: np.ndarray) -> ItemEpisodes | None:
        """Up to ``n_tasks`` tasks over items of the cold set with enough ratings."""
        idx = self.index
        pool = np.flatnonzero(cold & (self.deg_i >= self.task_items_min))
        if n_tasks <= 0 or len(pool) == 0:
            return None
        items = rng.choice(pool, size=min(n_tasks, len(pool)), replace=False)
        q_size, k_max = self.query_size, self.item_max_support
        sup_pos, sup_e, qry_pos, qry_e = [], [], [], []
        for b, i in enumerate(items):
            _, eid = idx.by_item.row(int(i))
            perm = rng.permutation(eid)
            q = min(q_size, max(1, len(perm) // 2))
            # log-uniform K: a new item's support runs from its first rating to many dozens
            top = min(k_max, len(perm) - q)
            n_sup = min(top, int(np.exp(rng.uniform(0.0, np.log(top + 1.0)))))
            qry_e.append(perm[:q])
            qry_pos.append(np.full(q, b))
            sup_e.append(perm[q:q + n_sup])
            sup_pos.append(np.full(n_sup, b))
        sup_e_a = np.concatenate(sup_e).astype(np.int64)
        qry_e_a = np.concatenate(qry_e).astype(np.int64)
        n = len(items)
        (s_users, s_y, _), s_mask = pad_rows(
            np.concatenate(sup_pos), [idx.user[sup_e_a], idx.rating[sup_e_a], sup_e_a], n,
            k_max)
        (q_users, q_y, _), q_mask = pad_rows(
            np.concatenate(qry_pos), [idx.user[qry_e_a], idx.rating[qry_e_a], qry_e_a], n,
            q_size)
        ctx, inverse = np.unique(np.concatenate([s_users.ravel(), q_users.ravel()]),
                                 return_inverse=True)
        s_ctx = inverse[: s_users.size].reshape(s_users.shape)
        q_ctx = inverse[s_users.size:].reshape(q_users.shape)
        excluded = self._edge_mask(cold)  # every edge of every task item is hidden
        h_pos, _, h_e = idx.by_user.sample(ctx, self.item_history_fanout, rng,
                                           excluded=excluded)
        width = max(1, self.item_history_fanout)
        (h_items, h_y), h_mask = pad_rows(h_pos, [idx.item[h_e], idx.rating[h_e]], len(ctx),
                                          width)
        return ItemEpisodes(items.astype(np.int64), s_ctx, s_y, s_mask, sup_e_a, q_ctx, q_y,
                            q_mask, qry_e_a, ctx, h_items, h_y, h_mask, h_e)

    # ------------------------------------------------------------------ mixed
    def batch(self, rng: np.random.Generator, users: np.ndarray,
              n_item_tasks: int, query_edges: np.ndarray | None = None) -> EpisodeBatch:
        cold = self.cold_items(rng)
        return EpisodeBatch(cold, self.user_tasks(rng, users, cold, query_edges),
                            self.item_tasks(rng, n_item_tasks, cold))

    def epoch_users(self, rng: np.random.Generator, batch_size: int,
                    limit: int = 0) -> list[np.ndarray]:
        """The task users in a random order, cut into batches; ``limit`` > 0: only the
        first ``limit`` of that order (a fresh random subset every epoch)."""
        perm = rng.permutation(self.task_users)
        if limit > 0:
            perm = perm[:limit]
        return [perm[i:i + batch_size] for i in range(0, len(perm), batch_size)]
