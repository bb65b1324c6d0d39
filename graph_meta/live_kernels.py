"""The compiled loop of live re-scoring (``graph_meta/_kernels.c``), called through ctypes.

:func:`neighbour_sums` is what :meth:`graph_meta.live_cache.EdgeResiduals.neighbour_sums`
runs for the training ratings of an item's neighbours: one pass over them that refreshes the
stale residuals and accumulates the per-user sums, where numpy needs a dozen passes (gathers,
masks, three bincounts). The extension is built by ``pip install`` where a C compiler is
found (``ext-modules`` in ``pyproject.toml``, optional); without it, or with
``GRAPH_META_NO_KERNELS=1``, :func:`neighbour_sums` returns None and the numpy path serves,
with the same results (tests hold the two equal).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from graph_meta.live_cache import EdgeResiduals

__all__ = ["available", "neighbour_sums"]

_P = ctypes.c_void_p
_I64 = ctypes.c_int64
_F64 = ctypes.c_double


def _load() -> Any:
    if os.environ.get("GRAPH_META_NO_KERNELS", "").strip() not in ("", "0"):
        return None
    try:
        spec = importlib.util.find_spec("graph_meta._kernels")
    except ImportError:
        return None
    if spec is None or not spec.origin or not spec.origin.endswith((".so", ".pyd", ".dylib")):
        return None
    try:
        lib = ctypes.CDLL(spec.origin)
        train, live = lib.neighbour_sums, lib.live_sums
    except (OSError, AttributeError):
        return None
    train.restype = live.restype = None
    train.argtypes = [_P, _I64, _P, _P, _P, _P, _P, _P, _P, _P, _I64, _F64, _F64, _F64,
                      _P, _P, _P, _P, _P]
    live.argtypes = [_P, _P, _I64, _P, _P, _P, _P, _P, _P, _P, _P, _P, _I64, _F64, _F64,
                     _F64, _P, _P, _P, _P, _P]
    return train, live


_NEIGHBOUR_SUMS = _load()


def available() -> bool:
    """Whether the compiled loop is loaded."""
    return _NEIGHBOUR_SUMS is not None


def _ptr(a: np.ndarray, dtype: Any) -> int:
    if a.dtype != dtype or not a.flags.c_contiguous:
        raise TypeError(f"expected a C-contiguous {np.dtype(dtype)} array, got {a.dtype}")
    return a.ctypes.data


def neighbour_sums(edges: EdgeResiduals, cols: np.ndarray, theta: np.ndarray,
                   items: np.ndarray, mu: float, head: np.ndarray, w_sim: np.ndarray,
                   w_reg: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """``(num, den, learned)`` ``[N_U]`` over the ratings of the items ``cols``, training
    and observed (:meth:`~graph_meta.live_cache.EdgeResiduals.neighbour_sums`), refreshing
    ``edges``' stale residuals in place; None when the compiled loop is not there."""
    if _NEIGHBOUR_SUMS is None:
        return None
    train, live = _NEIGHBOUR_SUMS
    n, d = theta.shape
    theta = np.ascontiguousarray(theta, dtype=np.float64)
    items = np.ascontiguousarray(items, dtype=np.float64)
    cols = np.ascontiguousarray(cols, dtype=np.int64)
    w_sim = np.ascontiguousarray(w_sim, dtype=np.float64)
    w_reg = np.ascontiguousarray(w_reg, dtype=np.float64)
    num, den, learned = np.zeros(n), np.zeros(n), np.zeros(n)
    common = (theta.ctypes.data, items.ctypes.data, d, float(mu), float(head[0]),
              float(head[1]), w_sim.ctypes.data, w_reg.ctypes.data, num.ctypes.data,
              den.ctypes.data, learned.ctypes.data)
    train(_ptr(cols, np.int64), len(cols), _ptr(edges.col_ptr, np.int64),
          _ptr(edges.users, np.int64), _ptr(edges.ratings, np.float64),
          _ptr(edges.residual, np.float64), _ptr(edges.dirty, np.bool_),
          _ptr(edges.replaced, np.bool_), *common)
    observed = edges.live_edges(cols)
    if observed is not None:
        ids, hit = observed
        live(_ptr(ids, np.int64), _ptr(hit, np.int64), len(ids), _ptr(edges.live_user, np.int64),
             _ptr(edges.live_rating, np.float64), _ptr(edges.live_residual, np.float64),
             _ptr(edges.live_user_stamp, np.int64), _ptr(edges.live_item_stamp, np.int64),
             _ptr(edges.user_version, np.int64), _ptr(edges.item_version, np.int64),
             *common)
    return num, den, learned
