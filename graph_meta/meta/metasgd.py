r"""Meta-SGD (Li et al. 2017): a learned, positive step size :math:`\alpha_t` per parameter
entry (and per step, MAML++'s per-step rates, Antoniou et al. 2019), through ``softplus``;
second order unless ``first_order=True``. The trajectory returns every :math:`\theta_t`, so
that the outer loss can weight all steps (``meta.multi_step_loss``)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from graph_meta.meta.base import LossFn, MetaLearner, register_learner

__all__ = ["MetaSGD"]


@register_learner("metasgd")
class MetaSGD(MetaLearner):
    """Meta-SGD: a learned, positive step size per parameter entry (and per step).

    Args:
        shapes: parameter name -> shape of one task's parameter (no task dimension); the
            parameters it adapts.
        steps: inner steps.
        init_lr: initial step size.
        per_step: one step-size tensor per step (MAML++'s per-step rates) or one shared.
        first_order: detach inner gradients.
    """

    def __init__(self, loss_fn: LossFn, *, shapes: Mapping[str, tuple[int, ...]],
                 steps: int = 1, init_lr: float = 0.1, per_step: bool = True,
                 first_order: bool = False) -> None:
        super().__init__(loss_fn, steps=steps, shapes=shapes)
        self.first_order = bool(first_order)
        self.per_step = bool(per_step)
        n = max(1, steps) if per_step else 1
        raw = _softplus_inverse(init_lr)
        self.raw_lr = nn.ParameterDict({
            k: nn.Parameter(torch.full((n, *shape), raw)) for k, shape in shapes.items()})

    def lr(self, name: str, step: int) -> Tensor:
        """The positive step size of parameter ``name`` at inner step ``step``."""
        raw = self.raw_lr[name]
        return nn.functional.softplus(raw[step if self.per_step else 0])

    def step_size(self, name: str, step: int) -> Tensor:
        return self.lr(name, step)


def _softplus_inverse(y: float) -> float:
    y = float(y)
    if y <= 0:
        raise ValueError("init_lr must be > 0")
    return float(torch.log(torch.expm1(torch.tensor(y))))
