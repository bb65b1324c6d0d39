r"""MeLU-style baseline: attribute embeddings + a decision MLP + MAML, no graph, no history.

After Lee et al. 2019 ("MeLU: Meta-Learned User Preference Estimator for Cold-Start
Recommendation"), on this project's machinery (:func:`graph_meta.side_features.side_features`,
:mod:`graph_meta.meta`). Nothing is specific to a dataset: the columns come from
``dataset.spec``.

**Attribute embeddings.** Every side-information column :math:`c` of ``users.csv``
(``items.csv``) is encoded on its own by :func:`~graph_meta.side_features.side_features` into a
sparse row :math:`f_c(u) \in \mathbb{R}^{d_c}` (one-hot categorical, z-score + missing flag of
a numeric column, hashed bag of words of a text column, unit-norm multi-hot of a node
column; vocabularies from the users (items) with training ratings) and embedded by its own
table :math:`W_c \in \mathbb{R}^{d_c \times E}` (an ``nn.EmbeddingBag(mode="sum")`` with
the feature values as per-sample weights); the column embeddings are concatenated as in MeLU:

.. math:: e_u = \big[f_1(u) W^U_1 \,\|\, \dots \,\|\, f_{C_U}(u) W^U_{C_U}\big]
          \in \mathbb{R}^{C_U E},\qquad
          e_i = \big[f_1(i) W^I_1 \,\|\, \dots \,\|\, f_{C_I}(i) W^I_{C_I}\big]
          \in \mathbb{R}^{C_I E}.

A column with no feature (e.g. every value unique) is left out (``params["skipped"]``). An
id without a side-information row has all-zero features (zero embedding); a user id unknown
at prediction time gets the mean embedding of the training users, an unknown item id that of
the training items.

**Decision MLP** (MeLU's "decision-making layers"), with :math:`\mu` the mean training
rating as a fixed offset:

.. math:: \hat r_{ui} = \mu + \phi(e_u \,\|\, e_i),\qquad
          \phi = \mathrm{Linear}(h_L, 1) \circ \mathrm{ReLU} \circ \mathrm{Linear}(h_{L-1},
          h_L) \circ \dots \circ \mathrm{ReLU} \circ \mathrm{Linear}(C_U E + C_I E, h_1),

the last layer initialised at zero, so a fresh model predicts :math:`\mu`.

**Local update** (MeLU's inner loop): only the MLP weights :math:`\phi` are adapted, on the
task's support set :math:`S` (padded to ``max_support`` with a mask), by the learner of
:mod:`graph_meta.meta` (MAML, FOMAML or Meta-SGD), ``inner_steps`` steps:

.. math:: \phi_{t+1} = \phi_t - \alpha_t \odot \nabla_\phi \frac{1}{|S|}
          \sum_{(i, r) \in S} (\hat r_{ui}(\phi_t) - r)^2 .

The embeddings are global (not adapted). MeLU's published :math:`\alpha = 5 \cdot 10^{-6}`
makes this a no-op; the default here is a step size that measurably lowers the support loss.

**Global update.** A meta-batch is ``batch_tasks`` users drawn without replacement from every
training user with at least 2 ratings (an epoch is one task per such user; MeLU's own
13..100-ratings filter is *not* applied); a user's ratings are shuffled, the first
:math:`K \sim U\{1, \dots, \min(\texttt{max\_support}, n_u - 1)\}` are the support and the
next :math:`\min(10, n_u - K)` the query. The query MSE of the adapted MLP, averaged over
tasks, trains the embedding tables, the MLP's starting point :math:`\phi_0` and (Meta-SGD)
the step sizes with AdamW (decoupled weight decay on the embedding tables only). Shapes of
a batch: support inputs ``[B, K_max, C_U E + C_I E]``, query inputs ``[B, 10, C_U E + C_I
E]``; the inner loop is :func:`torch.func.vmap`-ed over ``B`` and second order for MAML /
Meta-SGD.

**Prediction** (:meth:`MeLUStyle.predict`): the user's and the items' attribute embeddings
(any item of ``items.csv``, rated or not), the local update on the support (none when it is
empty), then the query. As in MeLU, a warm user's training history is **not** used: the row
measures "attributes + MAML" without a graph and without history.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from graph_meta.dataset import RATING, Dataset, indexed_train
from graph_meta.live import LiveRatings
from graph_meta.meta import MetaLearner, make_learner
from graph_meta.rating_scale import RatingMap
from graph_meta.schema import TableSpec
from graph_meta.side_features import side_features

__all__ = ["MeLUStyle"]

QUERY_SIZE = 10
_log = logging.getLogger(__name__)


@dataclass
class _Bags:
    """Per-column sparse features of one table as bags: bag ``row * n_cols + c`` holds the
    nonzeros of column ``c`` of ``row``, at offset ``offsets[c]`` of the shared vocabulary."""

    indptr: np.ndarray  # [n_rows * n_cols + 1]
    indices: np.ndarray  # [nnz] feature ids into the shared vocabulary
    values: np.ndarray  # [nnz] feature values
    n_rows: int
    columns: list[str]
    dims: list[int]  # d_c per kept column

    @property
    def n_cols(self) -> int:
        return len(self.columns)

    @property
    def vocab(self) -> int:
        return int(sum(self.dims))

    def gather(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(indices, offsets, values)`` of ``EmbeddingBag`` for the bags of ``rows``
        (``len(rows) * n_cols`` bags, row-major)."""
        bags = (rows[:, None] * self.n_cols + np.arange(self.n_cols)[None, :]).reshape(-1)
        starts = self.indptr[bags]
        lengths = self.indptr[bags + 1] - starts
        offsets = np.cumsum(lengths) - lengths
        flat = np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()))
        return self.indices[flat], offsets, self.values[flat]


def _bags(table: TableSpec, frame: pd.DataFrame, n_rows: int, fit_rows: np.ndarray, *,
          text_dim: int, max_vocab: int) -> tuple[_Bags, list[str]]:
    """Encode each column of ``table`` alone with :func:`side_features`; columns without any
    feature are returned as skipped. Rows past ``len(frame)`` (ids without a side row) are
    all-zero."""
    blocks: list[sp.csr_matrix] = []
    columns: list[str] = []
    skipped: list[str] = []
    fit = fit_rows[: len(frame)]
    for name, col in table.columns.items():
        one = TableSpec(file=table.file, id=table.id, columns={name: col})
        block = side_features(one, frame, fit, max_vocab=max_vocab, text_dim=text_dim).tocsr()
        block.eliminate_zeros()
        if block.shape[1] == 0:
            skipped.append(name)
            continue
        blocks.append(block)
        columns.append(name)
    n_cols = len(blocks)
    dims = [b.shape[1] for b in blocks]
    col_offsets = np.concatenate([[0], np.cumsum(dims)]).astype(np.int64)
    bag_ids, feat_ids, vals = [], [], []
    for c, block in enumerate(blocks):
        coo = block.tocoo()
        bag_ids.append(coo.row.astype(np.int64) * n_cols + c)
        feat_ids.append(coo.col.astype(np.int64) + col_offsets[c])
        vals.append(coo.data.astype(np.float32))
    n_bags = n_rows * n_cols
    if n_cols:
        mat = sp.csr_matrix((np.concatenate(vals), (np.concatenate(bag_ids),
                                                    np.concatenate(feat_ids))),
                            shape=(n_bags, int(col_offsets[-1])))
        mat.sort_indices()
        indptr, indices, values = mat.indptr, mat.indices, mat.data
    else:
        indptr = np.zeros(1, dtype=np.int64)
        indices, values = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    return _Bags(indptr=indptr.astype(np.int64), indices=indices.astype(np.int64),
                 values=values.astype(np.float32), n_rows=n_rows, columns=columns,
                 dims=dims), skipped


class _AttributeEmbedding(nn.Module):
    """One ``EmbeddingBag`` over the concatenated column vocabularies; the output of a row is
    the concatenation of its per-column bag sums, ``[n, n_cols * E]``."""

    def __init__(self, bags: _Bags, dim: int, generator: torch.Generator) -> None:
        super().__init__()
        self.bags = bags
        self.dim = dim
        self.table = nn.EmbeddingBag(max(bags.vocab, 1), dim, mode="sum")
        # a one-hot row embeds to N(0, 0.3^2) entries; unit-norm multi-hot and text rows too
        nn.init.normal_(self.table.weight, std=0.3, generator=generator)

    @property
    def out_dim(self) -> int:
        return self.bags.n_cols * self.dim

    def forward(self, rows: np.ndarray) -> Tensor:
        device = self.table.weight.device
        if self.bags.n_cols == 0:
            return torch.zeros(len(rows), 0, device=device)
        idx, off, val = self.bags.gather(np.asarray(rows, dtype=np.int64))
        out = self.table(torch.from_numpy(idx).to(device), torch.from_numpy(off).to(device),
                         per_sample_weights=torch.from_numpy(val).to(device))
        return out.reshape(len(rows), self.out_dim)


class _Net(nn.Module):
    """User/item attribute embeddings and the decision MLP (its params are the fast weights)."""

    def __init__(self, users: _Bags, items: _Bags, embed_dim: int, hidden: Sequence[int],
                 seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.user_emb = _AttributeEmbedding(users, embed_dim, g)
        self.item_emb = _AttributeEmbedding(items, embed_dim, g)
        layers: list[nn.Module] = []
        width = self.user_emb.out_dim + self.item_emb.out_dim
        for h in hidden:
            lin = nn.Linear(width, int(h))
            _init_linear(lin, g)
            layers += [lin, nn.ReLU()]
            width = int(h)
        last = nn.Linear(width, 1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        layers.append(last)
        self.mlp = nn.Sequential(*layers)
        # learner keys cannot hold dots (nn.ParameterDict): "0.weight" <-> "0_weight"
        self.fast_names = {k.replace(".", "_"): k for k, _ in self.mlp.named_parameters()}

    def mlp_params(self) -> dict[str, Tensor]:
        named = dict(self.mlp.named_parameters())
        return {k: named[v] for k, v in self.fast_names.items()}

    def mlp_shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in self.mlp_params().items()}

    def decide(self, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
        """MLP output ``[...]`` for inputs ``[..., D]`` with fast weights ``params``."""
        weights = {self.fast_names[k]: v for k, v in params.items()}
        return functional_call(self.mlp, weights, (x,)).squeeze(-1)


def _init_linear(lin: nn.Linear, g: torch.Generator) -> None:
    bound = 1.0 / np.sqrt(lin.in_features)
    nn.init.kaiming_uniform_(lin.weight, a=np.sqrt(5.0), generator=g)
    nn.init.uniform_(lin.bias, -bound, bound, generator=g)


class MeLUStyle:
    """MeLU-style cold-start model: attributes + MLP + MAML, no graph (module docstring).

    Satisfies :class:`graph_meta.eval.protocol.ColdStartModel`. The defaults were chosen
    among a few settings by the RMSE on movielens-1m pseudo-tasks carved from train
    (:func:`graph_meta.eval.protocol.carve_validation`), never on the benchmark's tasks;
    meta-training then takes about 1.5 min on one CPU thread there.

    Args:
        embed_dim: :math:`E`, embedding size of every column.
        hidden: widths of the MLP's hidden layers.
        learner: ``"maml"``, ``"fomaml"`` or ``"metasgd"`` (:func:`make_learner`).
        inner_steps: local-update steps (0: no adaptation at all).
        inner_lr: the (initial, for Meta-SGD) local-update step size.
        epochs: passes over the training users (one task per user per pass).
        batch_tasks: tasks per meta-batch.
        max_support: largest support set of a meta-training task (and the padding ``K_max``).
        lr: Adam learning rate of the global update.
        weight_decay: decoupled (AdamW) weight decay of the embedding tables.
        dropout: dropout on the MLP inputs (the concatenated embeddings) in meta-training.
        seed: initialisation and task sampling.
        device: torch device of training and prediction.
        text_dim: hashed bag-of-words size of a text column.
        max_vocab: per-column vocabulary cap of :func:`side_features`.
        max_train_s: stop meta-training after this many seconds (checked per batch).

    Attributes:
        params: hyper-parameters, fit time, tasks/s and the counts of what was skipped.
    """

    name = "MeLU-style (attributes + MLP + MAML, no graph)"

    def __init__(self, *, embed_dim: int = 32, hidden: Sequence[int] = (64, 64),
                 learner: str = "maml", inner_steps: int = 2, inner_lr: float = 0.1,
                 epochs: int = 20, batch_tasks: int = 32, max_support: int = 30,
                 lr: float = 1e-3, weight_decay: float = 1.0, dropout: float = 0.0,
                 seed: int = 0, device: str = "cpu", text_dim: int = 256,
                 max_vocab: int = 2000, max_train_s: float | None = None) -> None:
        if learner not in ("maml", "fomaml", "metasgd"):
            raise ValueError(f"learner must be maml, fomaml or metasgd, got {learner!r}")
        if max_support < 1 or batch_tasks < 1 or epochs < 0 or inner_steps < 0:
            raise ValueError("max_support and batch_tasks must be >= 1, epochs and "
                             "inner_steps >= 0")
        self.embed_dim = int(embed_dim)
        self.hidden = tuple(int(h) for h in hidden)
        self.learner_kind = learner
        self.inner_steps = int(inner_steps)
        self.inner_lr = float(inner_lr)
        self.epochs = int(epochs)
        self.batch_tasks = int(batch_tasks)
        self.max_support = int(max_support)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.dropout = float(dropout)
        self.seed = int(seed)
        self.device = torch.device(device)
        self.text_dim = int(text_dim)
        self.max_vocab = int(max_vocab)
        self.max_train_s = max_train_s
        self.params: dict[str, Any] = {}
        self.live = LiveRatings()
        self.rating_map = RatingMap()  # fit sets it from the dataset's scale
        self.net: _Net | None = None
        self.learner: MetaLearner | None = None

    # -- fitting ------------------------------------------------------------------------------

    def _loss(self, params: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> Tensor:
        """Masked support MSE of one task: ``b["x"]`` ``[K, D]``, ``b["y"]``/``b["mask"]``
        ``[K]``, ``b["mu"]`` a scalar."""
        assert self.net is not None
        pred = self.net.decide(params, b["x"]) + b["mu"]
        err = (pred - b["y"]) ** 2 * b["mask"]
        return err.sum() / b["mask"].sum().clamp(min=1.0)

    def fit(self, dataset: Dataset) -> MeLUStyle:
        t0 = time.perf_counter()
        # its settings are in stars too: another scale trains on 1-to-5 (graph_meta.rating_scale)
        self.rating_map = RatingMap.for_scale(dataset.spec.rating_scale,
                                              implicit=dataset.spec.implicit)
        dataset = self.rating_map.rescaled(dataset)
        spec = dataset.spec
        train = dataset.train
        n_raw = len(train)
        t = indexed_train(dataset)  # train ids without a side row get zero features
        train, user_ids, item_ids, u, i = t.frame, t.user_ids, t.item_ids, t.u, t.i
        no_row = {"users": t.unlisted_users, "items": t.unlisted_items}
        r = train[RATING].to_numpy(dtype=np.float64)
        self.mu = float(r.mean()) if len(r) else float(np.mean(spec.rating_scale))
        self.scale = spec.rating_scale
        n_u, n_i = len(user_ids), len(item_ids)
        u_count = np.bincount(u, minlength=n_u)
        i_count = np.bincount(i, minlength=n_i)

        ubags, uskip = _bags(spec.users, dataset.users, n_u, u_count > 0,
                             text_dim=self.text_dim, max_vocab=self.max_vocab)
        ibags, iskip = _bags(spec.items, dataset.items, n_i, i_count > 0,
                             text_dim=self.text_dim, max_vocab=self.max_vocab)
        self._user_pos = {k: j for j, k in enumerate(user_ids)}
        self._item_pos = {k: j for j, k in enumerate(item_ids)}

        with _fork_rng(self.seed):
            self.net = _Net(ubags, ibags, self.embed_dim, self.hidden, self.seed).to(self.device)
            self.learner = make_learner(self.learner_kind, self._loss,
                                        shapes=self.net.mlp_shapes(), steps=self.inner_steps,
                                        inner_lr=self.inner_lr).to(self.device)

        # ratings grouped by user (CSR order), tasks from users with >= 2 ratings
        order = np.argsort(u, kind="stable")
        self._train_u, self._train_i = u[order], i[order]
        self._train_r = r[order].astype(np.float32)
        self._indptr = np.concatenate([[0], np.cumsum(u_count)]).astype(np.int64)
        eligible = np.flatnonzero(u_count >= 2)
        one = u_count == 1
        skipped = {"duplicate_ratings": int(n_raw - len(train)),
                   "users_with_1_rating": int(one.sum()),
                   "ratings_of_users_with_1_rating": int(u_count[one].sum()),
                   "user_columns_without_features": uskip,
                   "item_columns_without_features": iskip,
                   "train_ids_without_side_row": no_row}

        _log.info("MeLU-style: %d task users (>= 2 ratings); skipped %s", len(eligible), skipped)
        stats = self._meta_train(eligible, u_count)
        self._cache()
        self.params = {
            "embed_dim": self.embed_dim, "hidden": list(self.hidden),
            "learner": self.learner_kind, "inner_steps": self.inner_steps,
            "inner_lr": self.inner_lr, "epochs": self.epochs, "batch_tasks": self.batch_tasks,
            "max_support": self.max_support, "lr": self.lr,
            "weight_decay": self.weight_decay, "dropout": self.dropout, "seed": self.seed,
            "text_dim": self.text_dim,
            "max_vocab": self.max_vocab, "max_train_s": self.max_train_s,
            "user_columns": ubags.columns, "item_columns": ibags.columns,
            "user_features": ubags.vocab, "item_features": ibags.vocab,
            "mlp_input": self.net.user_emb.out_dim + self.net.item_emb.out_dim,
            "task_users": len(eligible), "skipped": skipped, **stats,
            "fit_s": round(time.perf_counter() - t0, 3),
        }
        return self

    def _meta_train(self, eligible: np.ndarray, u_count: np.ndarray) -> dict[str, Any]:
        assert self.net is not None and self.learner is not None
        net, learner = self.net, self.learner
        rng = np.random.default_rng(self.seed)
        opt = torch.optim.AdamW([
            {"params": [net.user_emb.table.weight, net.item_emb.table.weight],
             "weight_decay": self.weight_decay},
            {"params": list(net.mlp.parameters()) + list(learner.parameters()),
             "weight_decay": 0.0},
        ], lr=self.lr)
        t0 = time.perf_counter()
        tasks = batches = epochs_run = 0
        losses: list[float] = []
        stopped = False
        for _ in range(self.epochs if len(eligible) else 0):
            users = rng.permutation(eligible)
            # one shuffle of every user's ratings per epoch: a task is a prefix of the block
            perm = self._shuffled(rng)
            for s in range(0, len(users), self.batch_tasks):
                batch = self._task_batch(users[s: s + self.batch_tasks], u_count, perm, rng)
                loss = self._outer_loss(batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                tasks += len(users[s: s + self.batch_tasks])
                batches += 1
                if self.max_train_s is not None and time.perf_counter() - t0 > self.max_train_s:
                    stopped = True
                    break
            epochs_run += 1
            if stopped:
                break
        train_s = time.perf_counter() - t0
        tail = losses[-max(1, len(losses) // 10):] if losses else [float("nan")]
        return {"train_s": round(train_s, 3), "epochs_run": epochs_run,
                "stopped_by_time": stopped, "meta_tasks": tasks, "meta_batches": batches,
                "tasks_per_s": round(tasks / max(train_s, 1e-9), 1),
                "final_query_mse": round(float(np.mean(tail)), 5)}

    def _shuffled(self, rng: np.random.Generator) -> np.ndarray:
        """Positions of the ratings, shuffled within each user's block."""
        keys = rng.random(len(self._train_u))
        return np.lexsort((keys, self._train_u))

    def _task_batch(self, users: np.ndarray, u_count: np.ndarray, perm: np.ndarray,
                    rng: np.random.Generator) -> dict[str, Any]:
        """Support/query index arrays of a batch of tasks (vectorised; module docstring)."""
        n = u_count[users]
        k = rng.integers(1, np.minimum(self.max_support, n - 1) + 1)
        q = np.minimum(QUERY_SIZE, n - k)
        start = self._indptr[users]
        ks, qs = np.arange(self.max_support), np.arange(QUERY_SIZE)
        s_mask = ks[None, :] < k[:, None]
        q_mask = qs[None, :] < q[:, None]
        s_pos = np.where(s_mask, start[:, None] + ks[None, :], start[:, None])
        q_pos = np.where(q_mask, start[:, None] + k[:, None] + qs[None, :], start[:, None])
        s_pos, q_pos = perm[s_pos], perm[q_pos]
        return {"users": users, "s_items": self._train_i[s_pos], "s_y": self._train_r[s_pos],
                "s_mask": s_mask, "q_items": self._train_i[q_pos], "q_y": self._train_r[q_pos],
                "q_mask": q_mask}

    def _inputs(self, users: np.ndarray, items: np.ndarray) -> Tensor:
        """MLP inputs ``[B, L, D]`` of user rows ``[B]`` and item rows ``[B, L]``."""
        assert self.net is not None
        uniq, inv = np.unique(items, return_inverse=True)
        e_item = self.net.item_emb(uniq)[torch.from_numpy(inv.reshape(-1)).to(self.device)]
        e_item = e_item.reshape(*items.shape, -1)
        e_user = self.net.user_emb(users)[:, None, :].expand(-1, items.shape[1], -1)
        return torch.cat([e_user, e_item], dim=-1)

    def _outer_loss(self, b: Mapping[str, Any]) -> Tensor:
        """Query MSE after the local update, averaged over the batch's tasks."""
        assert self.net is not None and self.learner is not None
        net, dev = self.net, self.device
        items = np.concatenate([b["s_items"], b["q_items"]], axis=1)
        x = self._inputs(b["users"], items)
        if self.dropout > 0:  # on the embeddings, outside the vmapped inner loop
            x = nn.functional.dropout(x, self.dropout, training=True)
        ks = b["s_items"].shape[1]
        x_s, x_q = x[:, :ks], x[:, ks:]

        def t(a: np.ndarray) -> Tensor:
            return torch.as_tensor(a, dtype=torch.float32, device=dev)

        s_mask, q_mask = t(b["s_mask"]), t(b["q_mask"])
        mu = torch.full((len(b["users"]),), self.mu, device=dev)
        params = net.mlp_params()
        if self.inner_steps > 0:
            fast = self.learner.adapt_batch(
                params, {"x": x_s, "y": t(b["s_y"]), "mask": s_mask, "mu": mu})
            pred = vmap(net.decide)(fast, x_q)
        else:
            pred = net.decide(params, x_q)
        err = (pred + self.mu - t(b["q_y"])) ** 2 * q_mask
        per_task = err.sum(1) / q_mask.sum(1).clamp(min=1.0)
        return per_task.mean()

    def _cache(self) -> None:
        """Embedding tables of every user and item (and the training means) for predict."""
        assert self.net is not None
        with torch.no_grad():
            self._e_user = self.net.user_emb(np.arange(self.net.user_emb.bags.n_rows))
            self._e_item = self.net.item_emb(np.arange(self.net.item_emb.bags.n_rows))
            rated_u = np.flatnonzero(np.diff(self._indptr) > 0)
            rated_i = np.unique(self._train_i)
            dim_u, dim_i = self._e_user.shape[1], self._e_item.shape[1]
            self._mean_user = (self._e_user[rated_u].mean(0) if len(rated_u)
                               else torch.zeros(dim_u, device=self.device))
            self._mean_item = (self._e_item[rated_i].mean(0) if len(rated_i)
                               else torch.zeros(dim_i, device=self.device))

    # -- prediction ---------------------------------------------------------------------------

    def _item_rows(self, items: Sequence[str]) -> Tensor:
        rows = [self._item_pos.get(str(x), -1) for x in items]
        idx = torch.tensor([max(j, 0) for j in rows], dtype=torch.long, device=self.device)
        e = self._e_item[idx]
        unknown = torch.tensor([j < 0 for j in rows], device=self.device)
        if bool(unknown.any()):
            e = torch.where(unknown[:, None], self._mean_item[None, :], e)
        return e

    def _user_row(self, user_id: str) -> Tensor:
        j = self._user_pos.get(str(user_id))
        return self._mean_user if j is None else self._e_user[j]

    def adapted_params(self, user_id: str,
                       support: Sequence[tuple[str, float]]) -> dict[str, Tensor]:
        """The MLP's fast weights after the local update on ``support`` (no update if empty)."""
        if self.net is None or self.learner is None:
            raise RuntimeError("fit the model first")
        params = {k: v.detach() for k, v in self.net.mlp_params().items()}
        if not support or self.inner_steps == 0:
            return params
        e_u = self._user_row(user_id)
        x = torch.cat([e_u[None, :].expand(len(support), -1),
                       self._item_rows([i for i, _ in support])], dim=1)
        y = torch.tensor([self.rating_map.to_internal(float(r)) for _, r in support],
                         dtype=torch.float32, device=self.device)
        batch = {"x": x, "y": y, "mask": torch.ones_like(y),
                 "mu": torch.tensor(self.mu, device=self.device)}
        fast = self.learner.adapt(params, batch)
        assert isinstance(fast, dict)
        return {k: v.detach() for k, v in fast.items()}

    def observe(self, ratings: Sequence[tuple[str, str, float]]) -> int:
        """Ratings that arrived after training: MeLU has no item state and no history, so a
        user's observed ratings join their support in every later :meth:`predict`."""
        return len(self.live.add(ratings))

    def reset_observed(self) -> None:
        self.live.clear()

    def predict(self, user_id: str, support: list[tuple[str, float]],
                query_items: list[str]) -> np.ndarray:
        """Predicted ratings of ``query_items`` after adapting the MLP on ``support`` (and the
        user's observed ratings, :meth:`observe`)."""
        if self.net is None:
            raise RuntimeError("fit the model first")
        if not query_items:
            return np.zeros(0)
        support = self.live.with_support(user_id, support)
        params = self.adapted_params(user_id, support)
        with torch.no_grad():
            e_u = self._user_row(user_id)
            x = torch.cat([e_u[None, :].expand(len(query_items), -1),
                           self._item_rows(query_items)], dim=1)
            pred = self.net.decide(params, x) + self.mu
        out = pred.double().cpu().numpy()
        return self.rating_map.to_external(np.clip(out, self.scale[0], self.scale[1]))


@contextlib.contextmanager
def _fork_rng(seed: int) -> Iterator[None]:
    """Seed torch's global RNG inside, restore it after (module init uses it)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
