r"""One definition of a learner's forward, two backends: the few elementwise functions the
learned inner rules use (:mod:`graph_meta.meta.lstm`, :mod:`graph_meta.meta.proto`), for torch
(training, inside ``torch.func.vmap``) and for numpy (serving), so that the torch forward and
the numpy forward are the same code.

Every function is written the same way in both (e.g. :math:`\sigma(x) = \tfrac12(1 +
\tanh(x/2))` and :math:`\operatorname{softplus}(x) = \max(x, 0) + \log(1 + e^{-|x|})`, both
free of overflow), so the two agree to rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["NUMPY", "TORCH", "Ops"]

Array = Any  # a torch.Tensor or a numpy array


@dataclass(frozen=True)
class Ops:
    """The elementwise functions of one backend."""

    tanh: Callable[[Array], Array]
    exp: Callable[[Array], Array]
    log: Callable[[Array], Array]
    log1p: Callable[[Array], Array]
    abs: Callable[[Array], Array]
    sign: Callable[[Array], Array]
    where: Callable[[Array, Array, Array], Array]
    cat: Callable[[Sequence[Array]], Array]       #: along the last axis
    stack: Callable[[Sequence[Array]], Array]     #: a new last axis
    detach: Callable[[Array], Array]              #: no gradient (identity in numpy)
    zeros: Callable[[Array, int], Array]          #: zeros ``[*x.shape, n]`` like ``x``

    def sigmoid(self, x: Array) -> Array:
        r""":math:`\tfrac12(1 + \tanh(x / 2))`."""
        return 0.5 * (1.0 + self.tanh(0.5 * x))

    def softplus(self, x: Array) -> Array:
        r""":math:`\log(1 + e^x) = \max(x, 0) + \log(1 + e^{-|x|})`."""
        return self.where(x > 0, x, 0.0 * x) + self.log1p(self.exp(-self.abs(x)))


TORCH = Ops(tanh=torch.tanh, exp=torch.exp, log=torch.log, log1p=torch.log1p, abs=torch.abs,
            sign=torch.sign, where=torch.where, cat=lambda xs: torch.cat(list(xs), -1),
            stack=lambda xs: torch.stack(list(xs), -1), detach=lambda x: x.detach(),
            zeros=lambda x, n: x.new_zeros((*x.shape, n)))

NUMPY = Ops(tanh=np.tanh, exp=np.exp, log=np.log, log1p=np.log1p, abs=np.abs, sign=np.sign,
            where=np.where, cat=lambda xs: np.concatenate(list(xs), -1),
            stack=lambda xs: np.stack(list(xs), -1), detach=lambda x: x,
            zeros=lambda x, n: np.zeros((*np.shape(x), n)))
