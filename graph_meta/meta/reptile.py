r"""Reptile (Nichol et al. 2018): MAML's first-order inner loop; the outer update is
:math:`\theta_0 \leftarrow \theta_0 + \epsilon(\theta_T - \theta_0)`, which the learner adds
to the query loss as :math:`\tfrac12\lVert\theta_0 - \mathrm{sg}(\theta_T)\rVert^2`
(:meth:`Reptile.outer_loss`): its gradient :math:`\theta_0 - \theta_T` is what any torch
optimizer applies."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from graph_meta.meta.base import register_learner
from graph_meta.meta.maml import FOMAML

__all__ = ["Reptile"]


@register_learner("reptile")
class Reptile(FOMAML):
    """Reptile: first-order inner loop; the outer direction is ``theta_0 - theta_T`` of the
    user state (:meth:`outer_loss`)."""

    def outer_loss(self, start: Mapping[str, Tensor], final: Mapping[str, Tensor]) -> Tensor:
        return 0.5 * ((start["theta"] - final["theta"].detach()) ** 2).sum(-1).mean()
