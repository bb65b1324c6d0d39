r"""Data-parallel meta-training with ``torch.distributed`` (launched by ``torchrun``).

**Launch.** ``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` in every worker; :func:`setup` reads them and, when ``WORLD_SIZE > 1`` and no
process group is up yet, initialises one (``init_method="env://"``): the **gloo** backend on
CPU, **nccl** on CUDA (each worker then uses ``cuda:LOCAL_RANK``). A group the caller
initialised is used as it is. Without these variables training is the plain one-process loop.

**Gradients.** Every rank holds a full copy of :class:`~graph_meta.nn.net.GraphMetaNet`
(identical at the start: same seed, same data, checked by :func:`check_same`). After each
meta-batch's ``loss.backward()`` the gradients of the ``P`` trainable parameters are flattened
into one vector :math:`g_r \in \mathbb{R}^{\sum_p |p|}` per rank and all-reduced
(:func:`average_gradients`):

.. math:: g = \frac{1}{W} \sum_{r=0}^{W-1} g_r,

which is the gradient of the mean of the ranks' meta-batch losses, i.e. of the loss of the
union of the shards when they are of equal size (they differ by at most one task); every rank
then takes the same clipped Adam step, so the parameters stay identical. A parameter no rank
gave a gradient keeps ``grad = None`` (Adam skips it, as in one process): a flag per parameter
travels in the same vector. This is what DDP computes; it is done by hand because the losses
are not a ``forward()`` call (``priors``, ``user_loss``, ``item_loss`` of the net, with the
inner loop's second-order ``torch.func`` gradients inside) and a meta-batch touches only some
parameters, which DDP's reducer (prepared in ``forward``) would need
``find_unused_parameters`` and a wrapper module for. One collective per step, no bucketing.

**Episodes.** Each epoch the task users are permuted by an RNG every rank seeds alike and cut
into global meta-batches of ``episodes.batch_users``; :func:`shard_batches` gives rank ``r``
the ``r``-th of ``W`` near-equal slices of each (``np.array_split``; a batch with fewer
than ``W`` users joins its neighbour), so the ranks' shards are a partition of the epoch and
all ranks take the same number of steps. ``episodes.batch_items`` item tasks are shared out
likewise (:func:`share`). What each task draws (cold item set, kinds, supports, histories)
comes from a per-rank RNG seeded by ``(seed, phase, epoch, rank)``, so resuming needs no
per-rank state.

**Decisions** (validation score, early stop, the time limit) are taken on rank 0 and
broadcast (:func:`broadcast`), so every rank runs the same epochs and none waits forever in a
collective. Only rank 0 validates, writes ``last.pt``, ``train_log.csv``, ``config.json`` and
``model.pt`` and builds the prediction cache; resuming, rank 0 reads ``last.pt`` and
broadcasts it (the other machines need no copy of the run directory).
"""

from __future__ import annotations

import atexit
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

__all__ = [
    "DistContext",
    "average_gradients",
    "broadcast",
    "check_same",
    "digest",
    "gather",
    "setup",
    "shard_batches",
    "share",
    "sum_across",
]


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size`` (``local_rank`` on its machine);
    ``backend`` is None for a one-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        """True when there are several ranks."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the one that validates and writes."""
        return self.rank == 0


SINGLE = DistContext()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        raise RuntimeError(f"environment variable {name}={value!r} is not an integer "
                           "(set by torchrun)") from None


def setup(device: torch.device) -> tuple[DistContext, torch.device]:
    """The distributed context of this process and the device it trains on.

    With a process group already initialised (by the caller), that group; else with
    ``WORLD_SIZE > 1`` in the environment (torchrun), a new group (``gloo`` for a CPU
    ``device``, ``nccl`` for CUDA, ``env://`` rendezvous at ``MASTER_ADDR:MASTER_PORT``;
    destroyed at exit); else the one-process context. On CUDA each rank takes
    ``cuda:LOCAL_RANK``."""
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
        backend = str(dist.get_backend())
    else:
        world = _env_int("WORLD_SIZE", 1)
        if world <= 1:
            return SINGLE, device
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but this torch has no torch.distributed")
        rank = _env_int("RANK", 0)
        missing = [v for v in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(v)]
        if missing:
            raise RuntimeError(f"WORLD_SIZE={world} but {', '.join(missing)} not set: launch "
                               "with torchrun (README, 'Training on several machines')")
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://", rank=rank,
                                world_size=world)
        atexit.register(_shutdown)
    local = _env_int("LOCAL_RANK", rank)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    return DistContext(rank, world, local, backend), device


def _shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def shard_batches(batches: Sequence[np.ndarray], rank: int, world: int) -> list[np.ndarray]:
    """Rank ``rank``'s slice of every global meta-batch (``world`` ranks).

    ``batches`` (one epoch's users cut into meta-batches, identical on every rank) -> the
    ``rank``-th of ``world`` near-equal contiguous slices of each (``np.array_split``: sizes
    differ by at most 1); a batch with fewer than ``world`` users is merged with the next
    (the last with the one before), so no slice is empty. The slices of all ranks partition
    the epoch, and every rank gets the same number of batches. ValueError when the epoch has
    fewer than ``world`` users."""
    merged: list[np.ndarray] = []
    pending: list[np.ndarray] = []
    for b in batches:
        pending.append(np.asarray(b))
        if sum(len(x) for x in pending) >= world:
            merged.append(np.concatenate(pending))
            pending = []
    if pending and merged:
        merged[-1] = np.concatenate([merged[-1], *pending])
    elif pending:
        merged = [np.concatenate(pending)]
    if merged and len(merged[-1]) < world:
        raise ValueError(f"{sum(len(b) for b in merged)} task users cannot feed {world} ranks"
                         " (each rank needs at least one task per meta-batch)")
    return [np.array_split(b, world)[rank] for b in merged]


def share(total: int, rank: int, world: int) -> int:
    """Rank ``rank``'s part of ``total`` tasks: ``total // world``, one more for the first
    ``total % world`` ranks (the parts sum to ``total``)."""
    return total // world + (1 if rank < total % world else 0)


def average_gradients(params: Sequence[torch.nn.Parameter], ctx: DistContext) -> None:
    r"""All-reduce the gradients of ``params`` (same order on every rank) to their mean over
    the ranks, :math:`g = \frac{1}{W}\sum_r g_r` (a rank with no gradient for a parameter
    counts zeros); a parameter without a gradient on every rank keeps ``grad = None``. One
    all-reduce of a flat ``[sum |p| + P]`` vector (gradients, then one has-gradient flag per
    parameter)."""
    if not ctx.active or not params:
        return
    ref = params[0]
    parts = [p.grad.reshape(-1) if p.grad is not None else
             torch.zeros(p.numel(), dtype=p.dtype, device=p.device) for p in params]
    flags = torch.tensor([p.grad is not None for p in params], dtype=ref.dtype,
                         device=ref.device)
    flat = torch.cat([*parts, flags])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    grads = flat[:-len(params)] / ctx.world_size
    had = flat[-len(params):] > 0
    offset = 0
    for p, seen in zip(params, had.tolist(), strict=True):
        n = p.numel()
        if seen:
            g = grads[offset:offset + n].view_as(p)
            if p.grad is None:
                p.grad = g.clone()
            else:
                p.grad.copy_(g)
        offset += n


def sum_across(values: Sequence[float], ctx: DistContext) -> list[float]:
    """``values`` summed element-wise over the ranks (float64; unchanged in one process)."""
    if not ctx.active:
        return [float(v) for v in values]
    t = torch.tensor(list(values), dtype=torch.float64)
    if ctx.backend == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.cpu()]


def broadcast(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank (pickled; tensors should be on the CPU). The other
    ranks' ``obj`` is ignored."""
    if not ctx.active:
        return obj
    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any, ctx: DistContext) -> list[Any]:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in one process)."""
    if not ctx.active:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def _tensors(obj: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(obj, torch.Tensor | np.ndarray):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k in sorted(obj, key=str):
            yield from _tensors(obj[k], f"{prefix}/{k}")
    elif isinstance(obj, list | tuple):
        for k, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}/{k}")
    elif obj is not None and hasattr(obj, "stores"):  # a PyG HeteroData
        for store in obj.stores:
            key = getattr(store, "_key", None)
            for name in sorted(store.keys()):
                yield from _tensors(store[name], f"{prefix}/{key}/{name}")
    elif obj is not None:
        yield prefix, np.asarray(repr(obj))


def digest(*parts: Any) -> str:
    """SHA-256 (hex, 16 digits) of every tensor and array in ``parts`` (nested dicts, lists,
    a state dict, a HeteroData), with their names, dtypes and shapes: equal digests on two
    ranks mean bit-identical state."""
    h = hashlib.sha256()
    for name, value in _tensors(list(parts)):
        arr = (value.detach().cpu().contiguous().numpy() if isinstance(value, torch.Tensor)
               else np.ascontiguousarray(value))
        h.update(f"{name}|{arr.dtype}|{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:16]


def check_same(value: str, what: str, ctx: DistContext) -> list[str]:
    """Gather ``value`` (a digest) from every rank; RuntimeError on every rank alike when they
    differ, naming ``what``. Returns the gathered values."""
    values = gather(value, ctx)
    if len(set(values)) > 1:
        raise RuntimeError(f"the ranks' {what} differ (digests {values}): every rank must "
                           "read the same graph snapshot (was the store written while the "
                           "ranks started?) and precompute it deterministically")
    return values
