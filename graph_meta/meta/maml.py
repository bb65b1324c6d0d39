r"""MAML (Finn et al. 2017) and its first-order variant: one fixed scalar step size
:math:`\alpha` (``meta.inner_lr``) for every adapted parameter; MAML keeps the inner gradients
in the graph (the outer gradient flows through :math:`\nabla_\theta \mathcal{L}`, second
order), FOMAML treats them as constants."""

from __future__ import annotations

from collections.abc import Mapping

from graph_meta.meta.base import LossFn, MetaLearner, register_learner

__all__ = ["FOMAML", "MAML"]


@register_learner("maml")
class MAML(MetaLearner):
    """Second-order MAML with one scalar inner learning rate (fixed, not learned)."""

    def __init__(self, loss_fn: LossFn, *, steps: int = 1, inner_lr: float = 0.1,
                 shapes: Mapping[str, tuple[int, ...]] | None = None) -> None:
        super().__init__(loss_fn, steps=steps, shapes=shapes)
        self.inner_lr = float(inner_lr)

    @classmethod
    def from_config(cls, loss_fn: LossFn, *, shapes: Mapping[str, tuple[int, ...]],
                    steps: int, inner_lr: float, first_order: bool = False) -> MetaLearner:
        return cls(loss_fn, steps=steps, inner_lr=inner_lr, shapes=shapes)

    def step_size(self, name: str, step: int) -> float:
        return self.inner_lr


@register_learner("fomaml")
class FOMAML(MAML):
    """First-order MAML: the inner gradients are treated as constants by the outer loop."""

    first_order = True
